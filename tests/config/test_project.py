"""Loading a project: schemas and cross-references checked before any model loads."""

import pytest
import yaml

from chaperone.config.project import load_project
from chaperone.errors import ConfigError
from tests.support.projects import APPROVE, REPO, replay


def test_the_shipped_project_loads():
    project = load_project(REPO)
    assert {"public", "lab"} <= set(project.policies)
    assert project.agents["moral_reviewer"].role == "reviewer"
    assert project.models.default == "embedded"


@pytest.fixture
def root(project_factory):
    return project_factory({"assistant-script": replay("a"), "reviewer-script": replay(APPROVE)})


def test_settings_naming_an_agent_of_the_wrong_role(root):
    settings = root / "config" / "settings.yaml"
    data = yaml.safe_load(settings.read_text())
    data["agents"]["assistant"] = "moral_reviewer"
    settings.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="has role 'reviewer', expected 'assistant'"):
        load_project(root)


def test_duplicate_agent_names(root):
    (root / "agents" / "copy.yaml").write_text((root / "agents" / "user_proxy.yaml").read_text())
    with pytest.raises(ConfigError, match="already used"):
        load_project(root)


def test_speaking_agent_without_a_model(root):
    (root / "agents" / "x.yaml").write_text("name: x\nrole: assistant\n")
    with pytest.raises(ConfigError, match="needs a model") as err:
        load_project(root)
    assert "x.yaml" in str(err.value)


def test_unknown_default_policy(root):
    settings = root / "config" / "settings.yaml"
    data = yaml.safe_load(settings.read_text())
    data["default_policy"] = "casino"
    settings.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="no policy named 'casino'"):
        load_project(root)


def test_oversized_file_is_refused(root):
    (root / "agents" / "big.yaml").write_text("name: big\n" + "# filler\n" * 400_000)
    with pytest.raises(ConfigError, match="limited to"):
        load_project(root)
