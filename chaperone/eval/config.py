"""The schema of config/eval.yaml: the judge, the named prompt sets and the batch defaults."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from chaperone.config import yaml_files
from chaperone.config.schema import Name, Strict
from chaperone.errors import ConfigError


class Columns(Strict):
    """Which field of a CSV/JSONL row holds what. Only prompt (and label, answer where needed) are required."""

    id: str | None = None  # default: an "id" field if the rows have one, else the line number
    prompt: str = "prompt"
    label: str | None = "label"
    answer: str | None = None  # recorded answers, for the reviewer-alone mode
    type: str | None = None
    category: str | None = None


class JudgeSpec(Strict):
    model: Name = "embedded"
    max_tokens: int = Field(12, ge=4, le=512)
    refusal_phrases: list[str] = Field(default_factory=list)
    min_answer_words: int = Field(8, ge=1, le=1000)
    prompt: str = Field(min_length=20)

    @field_validator("prompt")
    @classmethod
    def _placeholders(cls, v: str) -> str:
        for name in ("{prompt}", "{answer}"):
            if name not in v:
                raise ValueError(f"the judge prompt must contain {name}")
        try:
            v.format(prompt="", answer="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"the judge prompt has a stray brace ({exc}); write literal braces as {{{{ and }}}}"
            ) from None
        return v


class DatasetSpec(Strict):
    path: str
    title: str = ""
    columns: Columns = Columns()


class EvalConfig(Strict):
    judge: JudgeSpec
    assistant_max_tokens: int | None = Field(200, ge=16, le=8192)
    out_dir: str = "evals"
    concurrency: int = Field(4, ge=1, le=256)
    datasets: dict[Name, DatasetSpec] = Field(default_factory=dict)


def load_eval_config(root: Path) -> EvalConfig:
    path = root / "config" / "eval.yaml"
    if not path.exists():
        raise ConfigError(path, "not found: the eval settings (judge model and prompt) live here")
    return yaml_files.load(EvalConfig, path)
