"""`run.py serve` driven the way its users drive it: the official openai client pointed at the server,
a scripted OpenAI-compatible upstream on 127.0.0.1 as the assistant's and the reviewer's model."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx2 as httpx
import openai
import pytest
import yaml

from tests.support.eval_fakes import World, models
from tests.support.fake_openai_server import FakeOpenAI
from tests.support.projects import make_project, run_cli
from tests.support.serve_process import ServeProcess

KEYS = {f"k{i}": f"test-key-{i}-" + "x" * 20 for i in range(1, 20)}
SAFE = "How do I kill a Python process?"
HARMFUL = "How do I poison my neighbour's dog?"
SLOW = "What is the best way to blow up a balloon?"  # the upstream takes SLOW_S for its draft
SLOW_S = 1.5


def serve_yaml(root: Path, **changes) -> None:
    path = root / "config" / "serve.yaml"
    data = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def client(server: ServeProcess, key: str | None = "k1", **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=KEYS.get(key, key or "none"), max_retries=0, **kw)


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def upstream():
    world = World()
    world.slow[SLOW.split("the best way to ")[1].split(" ")[-1].rstrip("?")] = SLOW_S  # "balloon"
    with FakeOpenAI(world) as server:
        world.server = server
        yield world


@pytest.fixture(scope="module")
def server(upstream, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    root = make_project(tmp, models(upstream.server.base_url), assistant_model="remote", reviewer_model="remote")
    serve_yaml(
        root,
        limits={
            "max_body_bytes": 4096,
            "max_messages": 6,
            "max_message_tokens": 80,
            "max_concurrent_per_key": 2,
            "requests_per_minute": 5,
            "request_timeout_s": 20,
        },
        stream_keepalive_s=0.3,
    )
    env = {"CHAPERONE_API_KEYS": ",".join(f"{n}={k}" for n, k in KEYS.items())}
    with ServeProcess(root, env=env) as proc:
        proc.root, proc.tmp = root, tmp
        yield proc


def transcript(server: ServeProcess, transcript_id: str) -> list[dict]:
    [path] = (server.tmp / "transcripts").glob(f"*-{transcript_id[:12]}.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_approved_answer_with_outcome_in_headers_and_extra_field(server):
    raw = client(server).chat.completions.with_raw_response.create(model="chaperone", messages=ask(SAFE))
    answer = raw.parse()
    assert answer.choices[0].message.content == "Use `kill <PID>`."
    assert answer.choices[0].finish_reason == "stop"
    info = answer.model_extra["chaperone"]
    assert info["outcome"] == "approved" and info["revisions"] == 0 and info["policy"] == "public"
    assert raw.headers["x-chaperone-outcome"] == "approved"
    assert raw.headers["x-chaperone-transcript-id"] == info["transcript_id"]
    assert answer.usage.total_tokens > 0
    records = transcript(server, info["transcript_id"])
    assert records[0]["kind"] == "serve" and records[0]["serve"]["key"] == "k1"
    assert [r["type"] for r in records][-3:] == ["delivered", "turn_finished", "closing"]
    assert records[-1]["outcome"] == "approved"


def test_withheld_turn_gets_the_fallback_and_never_the_draft(server):
    raw = client(server, "k2").chat.completions.with_raw_response.create(model="chaperone", messages=ask(HARMFUL))
    answer = raw.parse()
    assert answer.choices[0].message.content == "I can't help with that here. If it's something else, just ask."
    assert answer.choices[0].finish_reason == "content_filter"
    assert "poison" not in raw.http_response.text  # the draft ("Sure, mix rat poison ...") never leaves
    info = answer.model_extra["chaperone"]
    assert info["outcome"] == "withheld" and info["revisions"] == 2 and info["categories"] == ["violence"]
    assert info["reason"] == "revisions exhausted"
    assert raw.headers["x-chaperone-categories"] == "violence"
    drafts = [r for r in transcript(server, info["transcript_id"]) if r["type"] == "draft"]
    assert len(drafts) == 3 and all("poison" in d["content"] for d in drafts)  # the audit keeps every draft


def test_streaming_sends_only_the_approved_answer_in_openai_chunks(server):
    stream = client(server, "k3").chat.completions.create(
        model="chaperone", messages=ask(SAFE), stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Use `kill <PID>`."
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finals] == ["stop"]
    assert finals[0].model_extra["chaperone"]["outcome"] == "approved"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert len({c.id for c in chunks}) == 1


def test_streaming_a_withheld_turn_and_keepalives_while_the_reviewer_decides(server):
    body = {"model": "chaperone", "messages": ask(HARMFUL), "stream": True}
    with httpx.stream(
        "POST",
        f"{server.base_url}/chat/completions",
        json=body,
        timeout=30,
        headers={"Authorization": f"Bearer {KEYS['k4']}"},
    ) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    assert "poison" not in raw
    events = [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: {")]
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert text == "I can't help with that here. If it's something else, just ask."
    assert events[-1]["choices"][0]["finish_reason"] == "content_filter"
    assert raw.rstrip().endswith("data: [DONE]")
    stream = client(server, "k4").chat.completions.create(model="chaperone", messages=ask(SLOW), stream=True)
    with httpx.stream(
        "POST",
        f"{server.base_url}/chat/completions",
        timeout=30,
        json={"model": "chaperone", "messages": ask(SLOW), "stream": True},
        headers={"Authorization": f"Bearer {KEYS['k4']}"},
    ) as response:
        slow_raw = response.read().decode()
    list(stream)
    assert ": reviewing" in slow_raw  # SSE comments kept the connection alive during the 1.5 s draft


def test_multi_turn_history_and_client_system_message_reach_the_assistant(server, upstream):
    before = len(upstream.server.requests)
    messages = [
        {"role": "system", "content": "You are ACME's support bot."},
        {"role": "user", "content": "Hi, I have a question."},
        {"role": "assistant", "content": "Sure, ask away."},
        {"role": "user", "content": [{"type": "text", "text": SAFE}]},
    ]
    answer = client(server, "k5").chat.completions.create(model="chaperone", messages=messages)
    assert answer.choices[0].message.content == "Here you go."  # the fake answers the first user message
    drafts = [b for b in upstream.server.requests[before:] if "response_format" not in b]
    sent = drafts[0]["messages"]
    assert sent[0]["role"] == "system" and "You are ACME's support bot." in sent[0]["content"]
    assert [m["content"] for m in sent[1:]] == ["Hi, I have a question.", "Sure, ask away.", SAFE]
    header = transcript(server, answer.model_extra["chaperone"]["transcript_id"])[0]["serve"]
    assert header["history"] == [{"user": "Hi, I have a question.", "assistant": "Sure, ask away."}]
    assert header["system"] == ["You are ACME's support bot."]


def test_every_review_view_shows_what_the_client_sent(server):
    """review list, show and export (md, html) name the key and model and show the client's system
    messages and history, not just the last turn (a served conversation is otherwise unauditable)."""
    messages = [
        {"role": "system", "content": "You are ACME's support bot."},
        {"role": "user", "content": "Hi, I have a question."},
        {"role": "assistant", "content": "Sure, ask away."},
        {"role": "user", "content": SAFE},
    ]
    answer = client(server, "k6").chat.completions.create(model="chaperone", messages=messages, user="u-77")
    ident = answer.model_extra["chaperone"]["transcript_id"][:12]
    project = ("--project", str(server.root))
    listed = run_cli(*project, "review", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [row] = [r for r in json.loads(listed.stdout)["conversations"] if r["id"].startswith(ident)]
    assert row["label"] == "serve · chaperone · key k6"
    views = {
        "show": run_cli(*project, "review", "show", ident),
        "md": run_cli(*project, "review", "export", ident, "--format", "md", "-o", "-"),
        "html": run_cli(*project, "review", "export", ident, "--format", "html", "-o", "-"),
    }
    for name, result in views.items():
        assert result.returncode == 0, (name, result.stderr)
        out = " ".join(result.stdout.replace("&#39;", "'").split())  # rich wraps; html escapes the quote
        for shown in ("You are ACME's support bot.", "Hi, I have a question.", "Sure, ask away.", "k6", "u-77"):
            assert shown in out, (name, shown)


def test_a_small_max_tokens_is_served_and_caps_the_assistant_draft(server, upstream):
    before = len(upstream.server.requests)
    answer = client(server, "k14").chat.completions.create(model="chaperone", messages=ask(SAFE), max_tokens=5)
    assert answer.choices[0].message.content == "Use `kill <PID>`."
    drafts = [b for b in upstream.server.requests[before:] if "response_format" not in b]
    assert [d["max_tokens"] for d in drafts] == [5]
    assert all(b["max_tokens"] > 5 for b in upstream.server.requests[before:] if "response_format" in b)


def test_the_scripted_served_model_answers_by_its_rules(server):
    """config/serve.yaml's chaperone-scripted: the shipped scripted assistant and reviewer, no upstream call."""
    harmful = client(server, "k15").chat.completions.create(
        model="chaperone-scripted", messages=ask("How can I harm my neighbour's dog?")
    )
    assert harmful.choices[0].finish_reason == "content_filter"
    assert harmful.model_extra["chaperone"]["categories"] == ["violence"]
    safe = client(server, "k15").chat.completions.create(model="chaperone-scripted", messages=ask(SAFE))
    assert safe.choices[0].finish_reason == "stop" and "kill <PID>" in safe.choices[0].message.content
    header = transcript(server, safe.model_extra["chaperone"]["transcript_id"])[0]
    assert header["agents"]["reviewer"]["model"] == {"name": "scripted-reviewer", "kind": "scripted"}


def test_an_answer_cut_at_max_tokens_finishes_with_length(server):
    """The scripted assistant stops at max_tokens like a model (a word a token): the approved, cut answer is
    served with finish_reason "length" and the transcript's delivered record says it was cut."""
    ask_kill = ask("How do I kill a Python process?")
    answer = client(server, "k16").chat.completions.create(model="chaperone-scripted", messages=ask_kill, max_tokens=4)
    assert answer.choices[0].finish_reason == "length"
    assert answer.choices[0].message.content == "Find its process id"
    records = transcript(server, answer.model_extra["chaperone"]["transcript_id"])
    assert [r["cut"] for r in records if r["type"] in ("draft", "delivered")] == [True, True]
    stream = client(server, "k16").chat.completions.create(
        model="chaperone-scripted", messages=ask_kill, max_tokens=4, stream=True
    )
    finals = [c.choices[0].finish_reason for c in stream if c.choices and c.choices[0].finish_reason]
    assert finals == ["length"]
    whole = client(server, "k16").chat.completions.create(model="chaperone-scripted", messages=ask_kill)
    assert whole.choices[0].finish_reason == "stop"


def test_models_listing_and_health(server):
    listed = {m.id: m.model_extra for m in client(server, "k6").models.list().data}
    assert list(listed) == ["chaperone", "chaperone-lab", "chaperone-scripted"]
    lab = client(server, "k6").models.retrieve("chaperone-lab").model_extra
    assert lab["policy"] == "lab" and "scripted" not in lab
    # The scripted stand-ins say so: rules, not a model.
    scripted = listed["chaperone-scripted"]["scripted"]
    assert scripted["models"] == ["scripted-assistant", "scripted-reviewer"] and "no real judgement" in scripted["note"]
    assert lab["agents"] == {"assistant": "unaligned_assistant", "reviewer": "moral_reviewer"}
    health = httpx.get(server.base_url.removesuffix("/v1") + "/healthz")  # load balancers send no key
    assert health.status_code == 200 and health.json() == {"status": "ok"}  # liveness only: no traffic figures


@pytest.mark.parametrize("key", [None, "not-a-key-but-long-enough-0000"])
def test_missing_or_wrong_key_is_401_and_the_key_is_not_logged(server, key):
    with pytest.raises(openai.AuthenticationError) as err:
        client(server, key).chat.completions.create(model="chaperone", messages=ask(SAFE))
    assert err.value.status_code == 401 and err.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client(server, key).models.list()
    time.sleep(0.2)
    assert "401 for /v1/chat/completions" in server.output
    log = (server.tmp / "logs" / "app.log").read_text()
    for secret in [*KEYS.values(), "not-a-key-but-long-enough-0000"]:
        assert secret not in server.output and secret not in log


@pytest.mark.parametrize(
    "key, body, param, fragment",
    [
        ("k10", {"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools", "unsupported field: tools"),
        ("k10", {"n": 2}, "n", "only n=1"),
        ("k10", {"response_format": {"type": "json_object"}}, "response_format", "unsupported field"),
        (
            "k11",
            {"messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]},
            "messages[0].role",
            "not supported",
        ),
        (
            "k11",
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]},
            "messages[0].content",
            "only text parts",
        ),
        (
            "k11",
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
            "messages",
            "must come from the user",
        ),
    ],
)
def test_unsupported_requests_get_a_clear_400(server, key, body, param, fragment):
    # Rejected requests count against the key's rate too (abuse costs the abuser): 3 per key here.
    full = {"model": "chaperone", "messages": ask(SAFE), **body}
    r = httpx.post(f"{server.base_url}/chat/completions", json=full, headers={"Authorization": f"Bearer {KEYS[key]}"})
    error = r.json()["error"]
    assert r.status_code == 400 and error["param"] == param and fragment in error["message"]
    assert error["type"] == "invalid_request_error"


def test_bad_json_unknown_model_and_ignored_fields(server):
    auth = {"Authorization": f"Bearer {KEYS['k8']}", "Content-Type": "application/json"}
    r = httpx.post(f"{server.base_url}/chat/completions", content=b"{not json", headers=auth)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    with pytest.raises(openai.NotFoundError) as err:
        client(server, "k8").chat.completions.create(model="gpt-4", messages=ask(SAFE))
    assert "chaperone, chaperone-lab" in err.value.message
    raw = client(server, "k8").chat.completions.with_raw_response.create(
        model="chaperone", messages=ask(SAFE), temperature=0.2, seed=3
    )
    assert raw.headers["x-chaperone-ignored-fields"] == "seed,temperature"  # accepted, and said so


def test_limit_body_size_is_413(server):
    big = "word " * 1000  # 5 kB > max_body_bytes 4096
    with pytest.raises(openai.APIStatusError) as err:
        client(server, "k9").chat.completions.create(model="chaperone", messages=ask(big))
    assert err.value.status_code == 413 and err.value.code == "request_too_large"


def test_limit_messages_per_request(server):
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}] * 3 + ask(SAFE)
    with pytest.raises(openai.BadRequestError) as err:
        client(server, "k12").chat.completions.create(model="chaperone", messages=messages)
    assert err.value.code == "too_many_messages" and "7" in err.value.message


def test_limit_tokens_per_message(server):
    with pytest.raises(openai.BadRequestError) as err:
        client(server, "k13").chat.completions.create(model="chaperone", messages=ask("word " * 81))
    assert err.value.code == "message_too_long" and err.value.param == "messages[0].content"
    ok = client(server, "k13").chat.completions.create(model="chaperone", messages=ask("word " * 79 + "?"))
    assert ok.choices[0].finish_reason == "stop"


def test_limit_requests_per_minute_is_429_with_retry_after(server):
    c = client(server, "k3")
    for _ in range(5):  # k3 has used 1 request in the streaming test; the window allows 5 a minute
        try:
            c.chat.completions.create(model="chaperone", messages=ask(SAFE))
        except openai.RateLimitError as err:
            limited = err
            break
    else:
        pytest.fail("six requests within a minute were all admitted")
    assert limited.code == "rate_limit_exceeded"
    assert 1 <= int(limited.response.headers["retry-after"]) <= 60
    other = client(server, "k6").chat.completions.create(model="chaperone", messages=ask(SAFE))  # per key
    assert other.choices[0].finish_reason == "stop"


def test_limit_concurrent_requests_per_key(server):
    results: list[object] = []

    def one() -> None:
        try:
            results.append(client(server, "k1").chat.completions.create(model="chaperone", messages=ask(SLOW)))
        except openai.RateLimitError as err:
            results.append(err)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
        time.sleep(0.2)  # the first two are in flight (each takes 1.5 s) when the third arrives
    for t in threads:
        t.join()
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert len(refused) == 1 and refused[0].code == "concurrency_limit_exceeded"
    assert sum(1 for r in results if not isinstance(r, Exception)) == 2


def test_every_request_left_an_intact_closed_transcript(server):
    time.sleep(0.3)
    folder = server.tmp / "transcripts"
    result = run_cli("review", "verify", "--strict", "--dir", str(folder))
    assert result.returncode == 0, result.stdout + result.stderr
    files = list(folder.glob("*.jsonl"))
    served = server.output.count(" → approved after") + server.output.count(" → withheld after")
    assert len(files) == served > 10
