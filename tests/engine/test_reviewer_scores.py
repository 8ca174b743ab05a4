"""The reviewer's decision from the decision token's probability and the policy's decision_threshold:
the embedded model's scoring path (a scripted stand-in for the model), an OpenAI-compatible endpoint that
returns logprobs, and one that returns none (the written yes/no decides)."""

import json
import math

import pytest
import yaml
from autogen_core.models import UserMessage

from chaperone.config.project import load_project
from chaperone.config.schema import EmbeddedModelSpec, ModelsFile
from chaperone.engine.decision_score import DECISION_PREFIX, OPTIONS, TOP_LOGPROBS
from chaperone.engine.memory import ConversationMemory
from chaperone.engine.reviewer import ReviewingAgent
from chaperone.models.pool import ModelHandle, ModelPool
from tests.support.fake_embedded import ScoringClient
from tests.support.fake_openai_server import FakeOpenAI
from tests.support.projects import REPO, run_cli

CRITIQUE = json.dumps({"critique": "Remove the instructions.", "categories": ["violence"]})


def reviewer(handle, threshold=None):
    project = load_project(REPO)
    policy = project.policy("public")
    if threshold is not None:
        policy = policy.model_copy(update={"decision_threshold": threshold})
    return ReviewingAgent(
        project.agents["moral_reviewer"],
        handle,
        policy,
        ConversationMemory(),
        user_name="user",
        assistant_name="assistant",
        context=project.settings.reviewer_context,
    )


async def test_embedded_scores_decide_by_the_policy_threshold_without_generating():
    client = ScoringClient([(0.7, 0.3), (0.7, 0.3)], replies=[CRITIQUE])
    spec = EmbeddedModelSpec(kind="embedded")
    lenient = await reviewer(ModelHandle("embedded", spec, client)).judge("q", "a draft", critique=False)
    assert lenient.verdict.approved and lenient.verdict.score == pytest.approx(0.3)
    assert (lenient.prompt_tokens, lenient.completion_tokens) == (321, 0)
    assert json.loads(lenient.raw) == {"ok_to_send": "yes", "p_not_ok": 0.3, "threshold": 0.5}
    strict = await reviewer(ModelHandle("embedded", spec, client), threshold=0.25).judge("q", "a draft")
    assert strict.verdict.decision == "revise" and strict.verdict.score == pytest.approx(0.3)
    # After a "no" the critique stage still runs (generated), and names the categories.
    assert strict.verdict.critique == "Remove the instructions." and strict.verdict.categories == ["violence"]
    messages, prefix, options = client.scored[0]
    assert prefix == DECISION_PREFIX and options == OPTIONS
    assert "a draft" in messages[-1].content  # the fenced draft, as the generating path sends it
    assert len(client.create_calls) == 1  # only the critique was generated


def logprob_reply(chosen: str, p_no: float):
    def lp(text, p):
        return {"token": text, "logprob": math.log(p), "bytes": list(text.encode()), "top_logprobs": []}

    value = {**lp(chosen, p_no if chosen == "no" else 1 - p_no), "top_logprobs": [lp("no", p_no), lp("yes", 1 - p_no)]}
    return [lp('{"', 1.0), lp("ok_to_send", 1.0), lp('":', 1.0), lp(' "', 1.0), value, lp('"}', 1.0)]


@pytest.mark.parametrize("with_logprobs", [True, False])
async def test_openai_compatible_reviewer_with_and_without_logprobs(with_logprobs):
    def responder(body):
        if "response_format" not in body:
            return "critique"
        text = json.dumps({"ok_to_send": "no"})
        return (text, logprob_reply("no", 0.4)) if with_logprobs else text

    with FakeOpenAI(responder) as server:
        models = {
            "remote": {
                "kind": "openai",
                "base_url": server.base_url,
                "model": "fake-model",
                "model_info": {"json_output": True, "structured_output": True},
            }
        }
        pool = ModelPool(
            ModelsFile.model_validate({"default": "remote", "models": models}), REPO / "config/models.yaml"
        )
        handle = pool.get("remote", max_tokens=160)
        result = await reviewer(handle).judge("q", "a draft", critique=False)
        await pool.close()
    body = server.requests[0]
    assert body["logprobs"] is True and body["top_logprobs"] == TOP_LOGPROBS
    if with_logprobs:  # P(not OK) 0.4 is under the 0.5 threshold: approved although the text said no
        assert result.verdict.score == pytest.approx(0.4) and result.verdict.approved
    else:  # no probabilities: the model's written decision stands
        assert result.verdict.score is None and result.verdict.decision == "revise"


def test_a_bad_threshold_names_the_file_and_the_field(project_factory):
    root = project_factory({"a": {"kind": "replay", "replies": ["x"]}}, assistant_model="a", reviewer_model="a")
    path = root / "config" / "policies" / "public.yaml"
    data = yaml.safe_load(path.read_text())
    data["decision_threshold"] = 1.5
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    proc = run_cli("--project", str(root), "scenario", str(root / "scenarios"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "public.yaml" in proc.stderr and "decision_threshold" in proc.stderr


async def test_a_draft_that_only_declines_is_asked_the_refusal_question():
    from chaperone.config.schema import RefusalCheckSpec

    client = ScoringClient([(0.9, 0.1), (0.9, 0.1), (0.9, 0.1)])
    agent = reviewer(ModelHandle("embedded", EmbeddedModelSpec(kind="embedded"), client))
    check = RefusalCheckSpec(phrases=["I can't"], prompt="Was declining right? {policy}")
    agent.spec = agent.spec.model_copy(update={"refusal_check": check})
    agent.policy = agent.policy  # rebuilds the prompts from the spec
    declined = await agent.judge("q", "I can't help with that.", critique=False)
    assert json.loads(declined.raw)["checked_as"] == "refusal" and declined.verdict.checked_as == "refusal"
    # P(not OK) 0.1 under the policy's 0.5 but not under the refusal check's own threshold: sent back.
    agent.spec = agent.spec.model_copy(update={"refusal_check": check.model_copy(update={"decision_threshold": 0.05})})
    client.probabilities.insert(0, (0.9, 0.1))
    needless = await agent.judge("q", "I can't help with that.", critique=False)
    assert needless.verdict.decision == "revise" and json.loads(needless.raw)["threshold"] == 0.05
    client.scored.pop(0)
    assert client.scored[0][0][0].content.startswith("Was declining right?")
    assert "Revise drafts that" in client.scored[0][0][0].content  # the policy's rubric in its place
    body = client.scored[0][0][1].content  # the request alone, and the refusal question
    assert "<<<REQUEST" in body and "DRAFT" not in body and body.endswith(check.question)
    # Content after the refusal, or an answer: the normal decision prompt.
    for draft in (
        "I can't help with that. But here is how: buy the parts, wire them, set the timer, run.",
        "Use kill <PID>.",
    ):
        result = await agent.judge("q", draft, critique=False)
        assert "checked_as" not in json.loads(result.raw)
    assert [m[0].content.startswith("Was declining") for m, _, _ in client.scored] == [True, False, False]


def test_refusal_check_is_for_reviewers_only():
    from chaperone.config.schema import AgentSpec

    with pytest.raises(ValueError, match="refusal_check is for an agent with role 'reviewer'"):
        AgentSpec(name="a", role="assistant", model="m", refusal_check={"phrases": ["i can't"], "prompt": "p"})


async def test_the_warm_up_reads_the_decision_prompt_once_on_the_embedded_model():
    """Before the first turn the reviewer reads its decision prompt (system prompt and rubric first), so the
    saved-state cache holds that prefix when the first real verdict comes; the verdict's own prompt starts
    with the same system message."""
    client = ScoringClient([(0.9, 0.1), (0.9, 0.1)])
    agent = reviewer(ModelHandle("embedded", EmbeddedModelSpec(kind="embedded"), client))
    assert await agent.warm_up() is True
    assert len(client.scored) == 1
    result = await agent.judge("How do I stop a process?", "Use `kill <PID>`.", critique=False)
    assert result.verdict.decision == "approve" and len(client.scored) == 2
    (warm_messages, *_), (real_messages, *_) = client.scored
    assert warm_messages[0].content == real_messages[0].content  # the same system prompt: a shared prefix
    assert "How do I stop a process?" not in warm_messages[1].content


async def test_the_warm_up_never_calls_an_endpoint_or_a_scripted_model():
    """A scripted reviewer's replies are not spent and an endpoint is not called (or billed) by a warm-up."""
    models = {
        "r": {"kind": "replay", "replies": ["x"]},
        "remote": {"kind": "openai", "model": "m", "base_url": "http://127.0.0.1:9"},
    }
    specs = ModelsFile.model_validate({"default": "r", "models": models}).models
    for name, spec in specs.items():
        # it could give scores and replies: the model's kind decides, not what the client can do
        client = ScoringClient([(0.9, 0.1)], replies=["the only reply"])
        assert await reviewer(ModelHandle(name, spec, client)).warm_up() is False
        assert client.scored == []
        unspent = await client.create([UserMessage(content="x", source="u")])
        assert unspent.content == "the only reply"


async def test_a_failing_warm_up_does_not_stop_the_session():
    class Broken(ScoringClient):
        async def option_logprobs(self, messages, prefix, options):
            raise RuntimeError("the model went away")

    agent = reviewer(ModelHandle("embedded", EmbeddedModelSpec(kind="embedded"), Broken([])))
    assert await agent.warm_up() is False
