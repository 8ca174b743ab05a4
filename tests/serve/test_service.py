"""The service behind the HTTP layer: what it does before the first request."""

from __future__ import annotations

import math

from autogen_ext.models.replay import ReplayChatCompletionClient

from chaperone.config.project import load_project
from chaperone.models.pool import ModelHandle, ModelPool
from chaperone.serve.config import load_serve_config
from chaperone.serve.service import GuardedService
from tests.support.projects import REPO


class ScoringModel(ReplayChatCompletionClient):
    """The embedded model's stand-in (outside the system under test): decision-token odds, counted."""

    def __init__(self):
        super().__init__([])
        self.systems: list[str] = []

    async def option_logprobs(self, messages, prefix, options):
        self.systems.append(messages[0].content)
        return {"yes": math.log(0.9), "no": math.log(0.1)}, 500

    def count_tokens(self, messages, **_):
        return sum(len(m.content) for m in messages) // 4


async def test_the_server_reads_each_served_reviewers_prompt_ahead_on_the_embedded_model_only():
    project = load_project(REPO)
    config = load_serve_config(REPO)
    pool = ModelPool(project.models, REPO / "config" / "models.yaml")
    model = ScoringModel()
    pool._handles["embedded"] = ModelHandle("embedded", project.models.models["embedded"], model)
    service = GuardedService(project, pool, config)
    warmed = await service.warm_up()
    # the shipped serve.yaml: two models on the embedded one (public and lab policies), one on scripted stand-ins
    assert warmed == ["chaperone", "chaperone-lab"]
    assert len(model.systems) == 2 and model.systems[0] != model.systems[1]  # each policy's own rubric
    assert service.served == 0 and not service.open  # no conversation, no transcript
