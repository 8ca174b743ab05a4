"""A project on disk: agents/, config/models.yaml, config/settings.yaml, config/policies/.

Loading checks every file against its schema and every cross-reference (agent →
model, settings → agents and policy) so that a mistake is reported before any
model is loaded. Which folder is the project (--project, the checkout, the current
folder or the shipped defaults) is decided in chaperone/config/discovery.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from chaperone.config import yaml_files
from chaperone.config.discovery import find_project, writable_root
from chaperone.config.schema import AgentSpec, ModelsFile, PolicySpec, Settings
from chaperone.errors import ConfigError


@dataclass
class Project:
    root: Path
    models: ModelsFile
    settings: Settings
    agents: dict[str, AgentSpec]
    policies: dict[str, PolicySpec]
    agent_files: dict[str, Path] = field(default_factory=dict)
    policy_files: dict[str, Path] = field(default_factory=dict)
    # Where relative writable paths go: the project folder, or the user's data folder for the shipped defaults.
    data_root: Path | None = None

    @property
    def transcripts_dir(self) -> Path:
        return self.writable(self.settings.transcripts_dir)

    def resolve(self, relative: str) -> Path:
        """A file the project reads (a dataset, a scenario), relative to the project folder."""
        p = Path(relative).expanduser()
        return p if p.is_absolute() else self.root / p

    def writable(self, relative: str) -> Path:
        """A path the project writes (transcripts, logs, caches, eval results)."""
        p = Path(relative).expanduser()
        return p if p.is_absolute() else (self.data_root or self.root) / p

    def agent(self, name: str, *, role: str, origin: str = "") -> AgentSpec:
        spec = self.agents.get(name)
        if spec is None:
            known = ", ".join(sorted(self.agents)) or "none"
            raise ConfigError(origin or self.root / "agents", f"no agent named '{name}' (known: {known})")
        if spec.role != role:
            raise ConfigError(
                self.agent_files.get(name, name), f"agent '{name}' has role '{spec.role}', expected '{role}'"
            )
        return spec

    def policy(self, name: str, origin: str = "") -> PolicySpec:
        spec = self.policies.get(name)
        if spec is None:
            known = ", ".join(sorted(self.policies)) or "none"
            raise ConfigError(origin or self.root / "config/policies", f"no policy named '{name}' (known: {known})")
        return spec

    def check_model(self, name: str, origin: object, where: str) -> None:
        if name not in self.models.models:
            known = ", ".join(sorted(self.models.models))
            raise ConfigError(
                origin, f"model '{name}' is not defined in config/models.yaml (known: {known})", where=where
            )


def _load_named(directory: Path, model: type, kind: str) -> tuple[dict, dict]:
    specs: dict = {}
    files: dict = {}
    if not directory.is_dir():
        raise ConfigError(directory, f"{kind} folder not found")
    for path in sorted(directory.glob("*.y*ml")):
        spec = yaml_files.load(model, path)
        if spec.name in specs:
            raise ConfigError(path, f"{kind} name '{spec.name}' is already used by {files[spec.name]}", where="name")
        specs[spec.name] = spec
        files[spec.name] = path
    if not specs:
        raise ConfigError(directory, f"no {kind} files (*.yaml) found")
    return specs, files


def load_project(root: Path | None = None) -> Project:
    """The project in `root`, or (None) the one find_project() discovers from the current folder."""
    root = find_project(Path(root) if root else None)
    models = yaml_files.load(ModelsFile, root / "config" / "models.yaml")
    settings_path = root / "config" / "settings.yaml"
    settings = yaml_files.load(Settings, settings_path) if settings_path.exists() else Settings()
    agents, agent_files = _load_named(root / "agents", AgentSpec, "agent")
    policies, policy_files = _load_named(root / "config" / "policies", PolicySpec, "policy")
    project = Project(root, models, settings, agents, policies, agent_files, policy_files, writable_root(root))

    for name, spec in agents.items():
        if spec.model is not None:
            project.check_model(spec.model, agent_files[name], "model")
    for role in ("assistant", "reviewer", "user_proxy"):
        project.agent(getattr(settings.agents, role), role=role, origin=str(settings_path))
    project.policy(settings.default_policy, origin=str(settings_path))
    return project
