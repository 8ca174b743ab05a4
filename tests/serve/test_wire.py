"""The request parser and response builders of the OpenAI wire format."""

from __future__ import annotations

import pytest

from chaperone.serve.wire import RequestError, estimate_tokens, parse_request, pieces


def parse(body, **kw):
    opts = dict(ignored_fields={"temperature"}, max_messages=10, max_message_tokens=50, system_policy="append")
    opts.update(kw)
    return parse_request(body, **opts)


def test_history_pairs_and_consecutive_messages_merge():
    req = parse(
        {
            "model": "m",
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": "a"},
                {"role": "user", "content": "b"},
                {"role": "assistant", "content": "c"},
                {"role": "assistant", "content": "d"},  # a second assistant message with no user turn before it
                {"role": "user", "content": "e"},
                {"role": "user", "content": [{"type": "text", "text": "f"}]},
            ],
            "temperature": 0.3,
            "max_tokens": 100,
            "user": "u-1",
        }
    )
    assert req.history == [("a\n\nb", "c"), ("", "d")]
    assert req.last_user == "e\n\nf" and req.system == ["Be brief."]
    assert req.ignored == ["temperature"] and req.max_tokens == 100 and req.user == "u-1"


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize("value", [1, 5, 15])
def test_any_positive_max_tokens_is_accepted_as_openai_does(field, value):
    assert parse({"model": "m", "messages": [{"role": "user", "content": "q"}], field: value}).max_tokens == value


@pytest.mark.parametrize("policy, expected", [("append", ["rules"]), ("ignore", [])])
def test_system_message_policies(policy, expected):
    body = {"model": "m", "messages": [{"role": "system", "content": "rules"}, {"role": "user", "content": "q"}]}
    assert parse(body, system_policy=policy).system == expected
    with pytest.raises(RequestError) as err:
        parse(body, system_policy="reject")
    assert err.value.status == 400 and err.value.code == "system_not_accepted"


@pytest.mark.parametrize(
    "body, code",
    [
        ([], "invalid_value"),
        ({"messages": [{"role": "user", "content": "q"}]}, "missing_model"),
        ({"model": "m", "messages": []}, "invalid_value"),
        ({"model": "m", "messages": [{"role": "user", "content": "   "}]}, "invalid_value"),
        ({"model": "m", "messages": [{"role": "user", "content": None}]}, "invalid_value"),
        ({"model": "m", "messages": [{"role": "user", "content": "q", "tool_calls": []}]}, "unsupported_parameter"),
        ({"model": "m", "messages": [{"role": "user", "content": "q"}], "stream": "yes"}, "invalid_value"),
        ({"model": "m", "messages": [{"role": "user", "content": "q"}], "max_tokens": 0}, "invalid_value"),
        ({"model": "m", "messages": [{"role": "user", "content": "q"}], "max_completion_tokens": -1}, "invalid_value"),
        ({"model": "m", "messages": [{"role": "user", "content": "q"}], "max_tokens": "5"}, "invalid_value"),
        ({"model": "m", "messages": [{"role": "user", "content": "q"}], "max_tokens": True}, "invalid_value"),
        ({"model": "m", "messages": [{"role": "user", "content": "q"}], "stream_options": {"x": 1}}, "invalid_value"),
        ({"model": "m", "messages": [{"role": "user", "content": "q"}], "logprobs": True}, "unsupported_parameter"),
        ({"model": "m", "messages": [{"role": "user", "content": "q"}] * 11}, "too_many_messages"),
        ({"model": "m", "messages": [{"role": "user", "content": "w " * 51}]}, "message_too_long"),
    ],
)
def test_bad_requests_name_what_is_wrong(body, code):
    with pytest.raises(RequestError) as err:
        parse(body)
    assert err.value.status == 400 and err.value.code == code and err.value.message


def test_token_estimate_counts_words_and_punctuation_and_is_never_below_a_tokenizer():
    assert estimate_tokens("Hello, world!") == 4
    assert estimate_tokens("") == 0
    # A BPE tokenizer splits words into pieces, never merges two words: this count is a lower bound.
    assert estimate_tokens("antidisestablishmentarianism") == 1


def test_stream_pieces_rebuild_the_answer_exactly():
    text = "Use `kill <PID>`.\n\nThen   check with ps aux | grep python — done. " + "x" * 60
    assert "".join(pieces(text)) == text
    assert len(pieces(text)) > 3
    assert pieces("") == [""]
