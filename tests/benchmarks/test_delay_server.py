"""The endpoint benchmark's instrument answers a real openai client correctly, in parallel, and stops by itself."""

import json
import sys
import time
from pathlib import Path

import openai
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import delay_server

from chaperone.engine.verdict import decision_schema, parse_verdict


@pytest.fixture(scope="module")
def server():
    with delay_server.running(delay=0.05, draft_chars=120, lifetime=60) as url:
        yield url


def test_structured_request_gets_a_readable_approval_and_usage(server):
    client = openai.OpenAI(base_url=server, api_key="x", max_retries=0)
    messages = [{"role": "system", "content": "s" * 400}, {"role": "user", "content": "u" * 400}]
    fmt = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": decision_schema()}}
    reply = client.chat.completions.create(model="delay", messages=messages, response_format=fmt)
    verdict = parse_verdict(reply.choices[0].message.content)
    assert verdict.readable and verdict.approved
    assert reply.usage.prompt_tokens == 200  # 800 characters / 4
    assert reply.usage.completion_tokens > 0


def test_draft_has_the_fixed_length_and_streams_too(server):
    client = openai.OpenAI(base_url=server, api_key="x", max_retries=0)
    messages = [{"role": "user", "content": "hello"}]
    plain = client.chat.completions.create(model="delay", messages=messages)
    assert len(plain.choices[0].message.content) == 120
    pieces, usage = [], None
    for chunk in client.chat.completions.create(
        model="delay", messages=messages, stream=True, stream_options={"include_usage": True}
    ):
        pieces.extend(c.delta.content or "" for c in chunk.choices)
        usage = chunk.usage or usage
    assert "".join(pieces) == plain.choices[0].message.content
    assert usage.prompt_tokens == plain.usage.prompt_tokens == 2


async def test_parallel_requests_wait_out_one_delay_together(server):
    import asyncio

    client = openai.AsyncOpenAI(base_url=server, api_key="x", max_retries=0)
    start = time.perf_counter()
    await asyncio.gather(
        *(
            client.chat.completions.create(model="delay", messages=[{"role": "user", "content": "hi"}])
            for _ in range(32)
        )
    )
    assert time.perf_counter() - start < 32 * 0.05 / 2  # far from one after another
    await client.close()


def test_stats_count_what_was_sent_and_the_server_stops_when_its_parent_lets_go():
    import urllib.request

    with delay_server.running(delay=0.0, lifetime=60) as url:
        client = openai.OpenAI(base_url=url, api_key="x", max_retries=0)
        client.chat.completions.create(model="delay", messages=[{"role": "user", "content": "abcd" * 10}])
        stats = json.loads(urllib.request.urlopen(url.removesuffix("/v1") + "/stats?reset=1").read())
        assert [(s["kind"], s["chars"], s["prompt_tokens"]) for s in stats["requests"]] == [("draft", 40, 10)]
    with pytest.raises(OSError):  # gone: stdin closed, it exited
        urllib.request.urlopen(url.removesuffix("/v1") + "/stats", timeout=2)
