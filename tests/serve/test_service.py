"""The service behind the HTTP layer: what it does before the first request."""

from __future__ import annotations

from chaperone.config.project import load_project
from chaperone.models.pool import ModelHandle, ModelPool
from chaperone.serve.config import load_serve_config
from chaperone.serve.service import GuardedService
from tests.support.fake_embedded import ScoringClient
from tests.support.projects import REPO


async def test_the_server_reads_each_served_reviewers_prompt_ahead_on_the_embedded_model_only():
    project = load_project(REPO)
    config = load_serve_config(REPO)
    pool = ModelPool(project.models, REPO / "config" / "models.yaml")
    model = ScoringClient([(0.9, 0.1)] * 2)
    pool._handles["embedded"] = ModelHandle("embedded", project.models.models["embedded"], model)
    service = GuardedService(project, pool, config)
    warmed = await service.warm_up()
    # the shipped serve.yaml: two models on the embedded one (public and lab policies), one on scripted stand-ins
    assert warmed == ["chaperone", "chaperone-lab"]
    systems = [messages[0].content for messages, *_ in model.scored]
    assert len(systems) == 2 and systems[0] != systems[1]  # each policy's own rubric
    assert service.served == 0 and not service.open  # no conversation, no transcript
