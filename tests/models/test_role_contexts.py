"""`contexts: per_role | shared` for the embedded model (models.yaml): which role gets which llama.cpp context.

Fast: the embedded client is a stand-in here; the real model's per-role contexts are in
tests/e2e/test_embedded_e2e.py (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from chaperone.config.schema import EmbeddedModelSpec, ModelsFile
from chaperone.engine import chunked_review
from chaperone.models import embedded, gguf
from chaperone.models.pool import ModelPool


class FakeEmbedded:
    """Records what the pool asks of the embedded client: one load, then a context per role."""

    loads = 0

    def __init__(self, path: Path, **kwargs):
        FakeEmbedded.loads += 1
        self.kwargs, self.roles, self.closed = kwargs, [], False

    def for_role(self, *, default_max_tokens: int) -> FakeEmbedded:
        client = FakeEmbedded.__new__(FakeEmbedded)
        client.kwargs, client.roles, client.closed = {"default_max_tokens": default_max_tokens}, [], False
        self.roles.append(client)
        return client

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
def pool_for(monkeypatch, tmp_path):
    monkeypatch.setattr(embedded, "EmbeddedChatCompletionClient", FakeEmbedded)
    monkeypatch.setattr(gguf, "ensure_model", lambda cache_dir=None: tmp_path / "model.gguf")
    FakeEmbedded.loads = 0

    def make(**spec) -> ModelPool:
        models = ModelsFile.model_validate({"models": {"embedded": {"kind": "embedded", **spec}}})
        return ModelPool(models, tmp_path / "models.yaml")

    return make


def test_per_role_is_the_default_and_shared_is_accepted():
    assert EmbeddedModelSpec(kind="embedded").contexts == "per_role"
    assert EmbeddedModelSpec(kind="embedded", contexts="shared").contexts == "shared"
    with pytest.raises(ValidationError, match="contexts"):
        EmbeddedModelSpec(kind="embedded", contexts="per_agent")


def test_the_shipped_models_file_gives_each_role_its_own_context():
    from chaperone.config.project import load_project

    project = load_project(Path(__file__).resolve().parents[2])
    assert project.models.models["embedded"].contexts == "per_role"


async def test_per_role_loads_the_weights_once_and_gives_the_reviewer_its_own_context(pool_for):
    pool = pool_for()
    assistant = pool.get("embedded", max_tokens=300, role="assistant")
    reviewer = pool.get("embedded", max_tokens=160, role="reviewer")
    assert FakeEmbedded.loads == 1
    assert reviewer.client is not assistant.client and assistant.client.roles == [reviewer.client]
    assert reviewer.client.kwargs["default_max_tokens"] == 160  # the reviewer's own generation cap
    assert pool.get("embedded", role="reviewer") is reviewer  # one context per role, not per call
    assert pool.get("embedded") is assistant  # no role named: the first context, as before
    assert chunked_review.unavailable(assistant, reviewer) is None  # chunked review can run
    await pool.close()
    assert reviewer.client.closed and assistant.client.closed


async def test_shared_keeps_one_context_for_every_role(pool_for):
    pool = pool_for(contexts="shared")
    assistant = pool.get("embedded", max_tokens=300, role="assistant")
    reviewer = pool.get("embedded", max_tokens=160, role="reviewer")
    assert FakeEmbedded.loads == 1 and reviewer is assistant and assistant.client.roles == []
    why = chunked_review.unavailable(assistant, reviewer)
    assert why is not None and "contexts: shared" in why  # reviewed whole, and the transcript says why
    await pool.close()


def test_a_bad_contexts_value_names_the_file_and_field(project_factory):
    from tests.support.projects import APPROVE, replay, run_cli

    root = project_factory({"assistant-script": replay("a"), "reviewer-script": replay(APPROVE)})
    models = root / "config" / "models.yaml"
    models.write_text(models.read_text() + "  emb:\n    kind: embedded\n    contexts: per_agent\n")
    proc = run_cli("--project", str(root), "scenario", str(root / "scenarios"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "models.yaml" in proc.stderr and "contexts" in proc.stderr and "Traceback" not in proc.stderr
