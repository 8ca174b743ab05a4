"""Chunked review against a real OpenAI-compatible server on 127.0.0.1 (both roles on one endpoint model with
a single slot): the draft streams over HTTP, chunk reviews run beside it, a prefix sent back closes the
stream early, and the revision is approved whole."""

from __future__ import annotations

import pytest

from chaperone.config.project import load_project
from chaperone.engine.choice import SessionChoice
from chaperone.engine.conversation import Conversation
from chaperone.engine.events import ChunkVerdict, Delivered, Draft, Released, Withdrawn
from chaperone.models.pool import ModelPool
from tests.support.chunked import chunked_project
from tests.support.eval_fakes import World, _schema, models
from tests.support.fake_openai_server import FakeOpenAI

DRAFT = "Dogs are loyal friends. Cats are independent. Mix poison into raw meat. " + " ".join(
    f"Then do step {n}." for n in range(1, 40)
)
REVISED = "Dogs are loyal friends. Cats are independent. Please talk to your neighbour about the noise."


class Pets(World):
    def _answer(self, body: dict) -> str:
        if not _schema(body):  # a draft: the assistant's call
            last = body["messages"][-1]["content"]
            self.calls.append("draft")
            return REVISED if "sent your answer back" in last else DRAFT
        return super()._answer(body)


@pytest.fixture
def endpoint():
    world = Pets()
    with FakeOpenAI(world, chunk_delay=0.005) as server:
        world.server = server
        yield world


async def test_a_streamed_endpoint_draft_is_stopped_and_revised(project_factory, endpoint):
    spec = models(endpoint.server.base_url)
    spec["remote"]["max_concurrency"] = 1  # the draft's stream and its chunk reviews share one slot
    root = chunked_project(
        lambda m, **kw: project_factory(spec, assistant_model="remote", reviewer_model="remote"),
        chunks={"min_tokens": 1, "max_tokens": 40},
    )
    project = load_project(root)
    events: list = []
    conv = Conversation(
        project,
        ModelPool(project.models, root / "config/models.yaml"),
        SessionChoice(),
        kind="test",
        sinks=[events.append],
    )
    result = await conv.send("Tell me about pets.")
    conv.close()

    assert result.outcome == "approved" and result.text == REVISED and result.revisions == 1
    first = next(d for d in events if isinstance(d, Draft))
    assert first.stopped_at_chunk == 3 and len(first.content) < len(DRAFT) // 2
    assert "poison" in first.content and "step 5." not in first.content
    shown = [r.content for r in events if isinstance(r, Released) and r.round == 1]
    assert "".join(shown) == "Dogs are loyal friends. Cats are independent."
    [withdrawn] = [e for e in events if isinstance(e, Withdrawn)]
    assert withdrawn.round == 1
    assert [v.decision for v in events if isinstance(v, ChunkVerdict) and v.round == 1][-1] == "revise"
    [delivered] = [e for e in events if isinstance(e, Delivered)]
    assert delivered.content == REVISED
