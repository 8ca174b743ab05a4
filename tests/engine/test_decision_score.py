"""Reading the reviewer's decision as a probability: from token log-probabilities, renormalised over yes/no."""

import math

import pytest
from autogen_core.models import ChatCompletionTokenLogprob, TopLogprob

from chaperone.engine.decision_score import from_token_logprobs, p_not_ok, revise

LN = math.log


def tokens(value_token: str, alternatives: dict[str, float], chosen_lp: float) -> list[dict]:
    head = [{"token": t, "logprob": 0.0, "top_logprobs": []} for t in ('{"', "ok", "_to", "_send", '":', ' "')]
    value = {
        "token": value_token,
        "logprob": chosen_lp,
        "top_logprobs": [{"token": t, "logprob": lp} for t, lp in alternatives.items()],
    }
    return [*head, value, {"token": '"}', "logprob": 0.0, "top_logprobs": []}]


def test_p_not_ok_renormalises_over_the_two_answers():
    assert p_not_ok({"yes": LN(0.3), "no": LN(0.1)}) == pytest.approx(0.25)
    assert p_not_ok({"no": LN(0.2)}) == 1.0  # an answer never seen counts as impossible
    assert p_not_ok({}) is None
    assert revise(0.25, 0.25) and not revise(0.24, 0.25)


def test_from_openai_style_token_logprobs():
    seq = tokens("yes", {"yes": LN(0.6), "no": LN(0.2), "Yes": LN(0.1)}, LN(0.6))
    assert from_token_logprobs(seq) == pytest.approx(0.2 / 0.8)  # "Yes" is not an answer the schema allows
    # The value token may carry the opening quote; spellings of one answer are summed.
    seq = tokens(' "no', {' "no': LN(0.5), "no": LN(0.2), ' "yes': LN(0.3)}, LN(0.5))
    del seq[5]  # the value token follows `":` directly
    assert from_token_logprobs(seq) == pytest.approx(0.7)


def test_autogen_objects_whose_alternatives_carry_only_bytes():
    seq = [
        ChatCompletionTokenLogprob(token='{"ok_to_send": "', logprob=0.0, top_logprobs=[]),
        ChatCompletionTokenLogprob(
            token="no",
            logprob=LN(0.7),
            top_logprobs=[
                TopLogprob(logprob=LN(0.7), bytes=list(b"no")),
                TopLogprob(logprob=LN(0.3), bytes=list(b"yes")),
            ],
        ),
        ChatCompletionTokenLogprob(token='"}', logprob=0.0, top_logprobs=[]),
    ]
    assert from_token_logprobs(seq) == pytest.approx(0.7)
    # No text for the alternatives at all: the chosen token's own probability against the rest.
    seq[1] = ChatCompletionTokenLogprob(token="yes", logprob=LN(0.8), top_logprobs=[TopLogprob(logprob=LN(0.8))])
    assert from_token_logprobs(seq) == pytest.approx(0.2)


def test_no_score_without_the_verdicts_value():
    assert from_token_logprobs([]) is None
    assert from_token_logprobs([{"token": '{"decision": "approve"}', "logprob": 0.0, "top_logprobs": []}]) is None
    assert from_token_logprobs(tokens("maybe", {"maybe": 0.0}, 0.0)) is None
