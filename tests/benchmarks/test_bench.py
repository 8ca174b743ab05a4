"""`make bench` (benchmarks/bench.py): its figures and report from scripted events and scripted models.

No model and no timing is checked here: the clock is scripted, so every figure is arithmetic."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench

from chaperone.config.project import load_project
from chaperone.engine.events import Delivered, Draft, Released, TurnResult, Usage, Withheld
from chaperone.models.pool import ModelPool
from tests.support.chunked import REVISED, chunked_project


class Ticks:
    """A clock that reads the next scripted time each time it is asked."""

    def __init__(self, *times: float):
        self.times = list(times)

    def __call__(self) -> float:
        return self.times.pop(0)


def result(outcome: str, usage: dict[str, tuple[int, int]], *, delivered: bool = True, revisions: int = 0):
    return TurnResult(
        turn=1,
        outcome=outcome,
        text="x",
        delivered=delivered,
        revisions=revisions,
        categories=[],
        usage_by_agent={a: Usage(prompt_tokens=p, completion_tokens=c) for a, (p, c) in usage.items()},
        seconds=0.0,
    )


def draft(tokens: int, **kw) -> Draft:
    u = Usage(prompt_tokens=10, completion_tokens=tokens)
    return Draft(turn=1, source="asst", round=1, content="d", model="m", usage=u, latency_s=0.0, **kw)


ROLES = {"asst": "assistant", "rev": "reviewer"}


def record(arm: str, group: str, clock_times: list[float], events, res, wall, contexts=None):
    clock = bench.TurnClock(now=Ticks(*clock_times))
    clock.start()  # t0 = first tick
    for e in events:
        if e == "token":
            clock.hook("drafting", 1, 1, "Hi")
        else:
            clock(e)
    return bench.turn_record(
        group=group, prompt="p", arm=arm, clock=clock, result=res, wall_s=wall, roles=ROLES, contexts=contexts
    )


def test_first_delivered_token_is_the_first_streamed_token_bare_the_first_release_chunked_the_answer_whole():
    bare = record(
        "bare",
        "benign",
        [100, 101.5, 104],
        ["token", Delivered(turn=1, content="a", revisions=0)],
        result("unreviewed", {"asst": (50, 100)}),
        4.0,
    )
    assert (bare["first_delivered_s"], bare["first_delivered"], bare["first_token_s"]) == (1.5, "token", 1.5)

    released = Released(turn=1, round=1, chunk=1, start=0, end=5, content="Hello")
    chunks = record(
        "chunks",
        "benign",
        [0, 1.0, 2.5, 6.0],
        ["token", released, Delivered(turn=1, content="a", revisions=0)],
        result("approved", {"asst": (50, 100), "rev": (300, 2)}),
        6.5,
        {"assistant": {"prompt_tokens": 50, "evaluated": 50, "cache_hits": 0}},
    )
    assert (chunks["first_delivered_s"], chunks["first_delivered"], chunks["released_chunks"]) == (2.5, "chunk", 1)

    whole = record(
        "whole",
        "benign",
        [0, 1.0, 7.0],
        ["token", Delivered(turn=1, content="a", revisions=0)],
        result("approved", {"asst": (50, 100), "rev": (400, 2)}),
        7.5,
    )
    assert (whole["first_delivered_s"], whole["first_delivered"]) == (7.0, "answer")
    assert whole["agents"] == {
        "assistant": {"prompt_tokens": 50, "completion_tokens": 100},
        "reviewer": {"prompt_tokens": 400, "completion_tokens": 2},
    }


def test_a_withheld_turn_delivers_the_fallback_and_an_early_stop_counts_the_budget_left():
    stopped = draft(20, stopped_at_chunk=2, tokens_saved=180)
    withheld = Withheld(turn=1, content="fallback", revisions=2, reason="revisions exhausted")
    r = record(
        "chunks",
        "harmful",
        [0, 3.0, 9.0],
        [stopped, withheld],
        result("withheld", {"asst": (50, 20)}, delivered=False, revisions=2),
        9.0,
    )
    assert (r["first_delivered_s"], r["first_delivered"]) == (9.0, "fallback")
    assert (r["stopped_at_chunk"], r["tokens_saved"], r["drafts"]) == ([2], 180, 1)


def test_totals_and_ratios_to_the_bare_arm_on_the_same_prompts():
    def turn(arm, group, wall, first, a, r=None, ctx=None, saved=0, stopped=(), head=None):
        agents = {"assistant": dict(zip(("prompt_tokens", "completion_tokens"), a, strict=True))}
        if r:
            agents["reviewer"] = dict(zip(("prompt_tokens", "completion_tokens"), r, strict=True))
        return {
            "group": group,
            "prompt": "p",
            "arm": arm,
            "outcome": "approved",
            "wall_s": wall,
            "first_delivered_s": first,
            "agents": agents,
            "contexts": ({"reviewer": ctx} if ctx else {}) | ({"reviewer head": head} if head else {}),
            "tokens_saved": saved,
            "stopped_at_chunk": list(stopped),
        }

    ctx = {"prompt_tokens": 500, "evaluated": 60, "cache_hits": 440}
    head = {"prompt_tokens": 300, "evaluated": 40, "cache_hits": 260}  # the judgement head's own context
    turns = [
        turn("bare", "benign", 10.0, 1.0, (50, 150)),
        turn("bare", "benign", 30.0, 3.0, (50, 150)),
        turn("whole", "benign", 12.0, 12.0, (50, 150), (500, 2), ctx),
        turn("whole", "benign", 36.0, 36.0, (50, 150), (500, 2), ctx),
        turn("chunks", "benign", 11.0, 2.0, (50, 150), (900, 4), ctx, head=head),
        turn("chunks", "benign", 33.0, 4.0, (50, 150), (900, 4), ctx, head=head),
        turn("bare", "harmful", 20.0, 1.0, (50, 200)),
        turn("whole", "harmful", 60.0, 60.0, (150, 600), (1500, 6)),
        turn("chunks", "harmful", 15.0, 15.0, (150, 60), (1500, 6), saved=540, stopped=(1, 1, 1)),
    ]
    s = bench.summarize(turns)
    benign = s["benign"]
    assert benign["arms"]["bare"]["wall_s"] == 40.0 and benign["arms"]["bare"]["tokens"] == 400
    assert benign["ratios"]["whole"]["wall"] == 48.0 / 40.0
    assert benign["ratios"]["chunks"]["wall"] == 44.0 / 40.0
    assert benign["ratios"]["whole"]["tokens"] == (400 + 1004) / 400
    assert benign["ratios"]["chunks"]["first_delivered_minus_bare_s"] == 3.0 - 2.0
    assert benign["ratios"]["whole"]["reviewer_evaluated_per_bare_token"] == 120 / 400
    # what the reviewer evaluated is its rubric prompt's context and its head's together
    assert benign["ratios"]["chunks"]["reviewer_evaluated_per_bare_token"] == (120 + 80) / 400
    assert benign["arms"]["chunks"]["contexts"]["reviewer"] == {
        "prompt_tokens": 1000,
        "evaluated": 120,
        "cache_hits": 880,
    }
    harmful = s["harmful"]
    assert harmful["early_stop"] == {
        "assistant_generated_whole": 600,
        "assistant_generated_chunks": 60,
        "budget_left_by_early_stops": 540,
    }
    assert harmful["arms"]["chunks"]["stopped_early"] == 1


ANCHOR_OUTPUT = [
    '{"prompt": "How do I reverse a list in Pyt", "bare_s": 4.0, "refl_s": 6.0, "bare_tok": 100, "refl_tok": 250,'
    ' "msgs": 3, "stop": "Text \'APPROVE\' mentioned"}\n',
    "llama_context: n_ctx_per_seq (4096) < n_ctx_train (32768)\n",
    '{"prompt": "What is the capital of Austral", "bare_s": 1.0, "refl_s": 2.0, "bare_tok": 50, "refl_tok": 150,'
    ' "msgs": 3, "stop": "Text \'APPROVE\' mentioned"}\n',
    '{"time_ratio": 1.6, "token_ratio": 2.67}\n',
]


def test_the_reflection_anchors_lines_are_read_and_its_ratios_recomputed_over_the_prompts_run():
    out = bench.parse_reflection(ANCHOR_OUTPUT)
    assert [r["refl_tok"] for r in out["rows"]] == [250, 150]
    assert out["time_ratio"] == 8.0 / 5.0 and out["token_ratio"] == 400 / 150
    assert out["anchor_ratios"] == {"time_ratio": 1.6, "token_ratio": 2.67}
    assert out["other_output"] == ["llama_context: n_ctx_per_seq (4096) < n_ctx_train (32768)"]
    stopped_early = bench.parse_reflection(ANCHOR_OUTPUT[:1])
    assert stopped_early["anchor_ratios"] is None and stopped_early["time_ratio"] == 1.5


def test_the_anchors_prompts_are_read_from_its_source_without_running_it(tmp_path):
    anchor = tmp_path / "anchor.py"
    anchor.write_text('import sys\nsys.exit("never run")\nPROMPTS = ["a?", "b?"]\n')
    assert bench.anchor_prompts(anchor) == ["a?", "b?"]
    assert bench.anchor_prompts(tmp_path / "absent.py") is None


async def test_the_three_arms_on_scripted_models_report_an_early_stop_and_a_released_chunk(project_factory, tmp_path):
    root = chunked_project(project_factory, streaming="whole", chunks={"min_tokens": 1, "max_tokens": 8})
    project = load_project(root)
    pool = ModelPool(project.models, root / "config" / "models.yaml")
    prompts = [("benign", "Say something friendly."), ("harmful", "Tell me about pets and the dog next door.")]
    turns = await bench.run_arms(project, pool, prompts, max_tokens=200)
    await pool.close()
    assert [(t["group"], t["arm"]) for t in turns] == [(g, a) for g, _ in prompts for a in bench.ARMS]
    by = {(t["group"], t["arm"]): t for t in turns}
    assert by["benign", "bare"]["first_delivered"] == "token" and by["benign", "bare"]["outcome"] == "unreviewed"
    assert by["benign", "whole"]["first_delivered"] == "answer" and by["benign", "whole"]["released_chunks"] == 0
    assert by["benign", "chunks"]["first_delivered"] == "chunk" and by["benign", "chunks"]["released_chunks"] >= 1
    assert "reviewer" in by["benign", "whole"]["agents"] and "reviewer" not in by["benign", "bare"]["agents"]
    harmful = by["harmful", "chunks"]
    assert harmful["stopped_at_chunk"] and harmful["tokens_saved"] > 0
    assert by["harmful", "whole"]["revisions"] >= 1 and not by["harmful", "whole"]["stopped_at_chunk"]
    assert by["harmful", "whole"]["text"] == REVISED and "lethal" not in by["harmful", "chunks"]["text"]

    report = bench.build_report(turns, bench.parse_reflection(ANCHOR_OUTPUT[:1]), {"date": "today"})
    assert report["reflection_vs_bare_wall"] == 6.0 / by["benign", "bare"]["wall_s"]
    out = io.StringIO()
    bench.render(report, Console(file=out, width=250))
    text = out.getvalue()
    assert "reflection" in text and "early stop (harmful)" in text
    json.dumps(report)  # what --json writes


async def test_a_second_head_adds_guarded_arms_deciding_at_its_cards_thresholds(project_factory, tmp_path):
    root = chunked_project(project_factory, streaming="whole", chunks={"min_tokens": 1, "max_tokens": 8})
    project = load_project(root)
    head = root / "heads" / "other.npz"
    head.parent.mkdir(exist_ok=True)
    card = {"alone": {"threshold": {"value": 0.2432}, "proposed_category_thresholds": {"violence": {"threshold": 0.7}}}}
    head.with_suffix(".json").write_text(json.dumps(card))
    base = project.policy(project.settings.default_policy)
    reviewer, whole, chunks = bench.add_second_head(project, head)
    assert project.agents[reviewer].head == "heads/other.npz"
    assert project.policy(whole).head.not_ok_threshold == 0.2432 and project.policy(chunks).streaming == "chunks"
    for name, rule in (base.head.categories if base.head else {}).items():
        assert project.policy(whole).head.categories[name].block == rule.block  # the policy's block or allow kept
    pool = ModelPool(project.models, root / "config" / "models.yaml")
    turns = await bench.run_arms(
        project, pool, [("benign", "Say hi.")], max_tokens=200, arms=bench.ARMS + bench.SECOND_ARMS, second_head=head
    )
    await pool.close()
    assert [t["arm"] for t in turns] == [*bench.ARMS, *bench.SECOND_ARMS]
    assert all("reviewer" in t["agents"] for t in turns if t["arm"] != "bare")  # the copy counts as the reviewer
    summary = bench.summarize(turns)["benign"]
    assert set(summary["ratios"]) == {"whole", "chunks", *bench.SECOND_ARMS}


async def test_a_chunk_head_adds_a_chunked_arm_whose_reviewer_names_it(project_factory):
    root = chunked_project(project_factory, streaming="whole", chunks={"min_tokens": 1, "max_tokens": 8})
    project = load_project(root)
    reviewer = bench.add_chunk_head(project, root / "heads" / "chunk.npz")
    assert project.agents[reviewer].chunk_head == "heads/chunk.npz"
    pool = ModelPool(project.models, root / "config" / "models.yaml")
    turns = await bench.run_arms(
        project,
        pool,
        [("benign", "Say hi.")],
        max_tokens=200,
        arms=bench.ARMS + bench.CHUNK_HEAD_ARMS,
        chunk_head=root / "heads" / "chunk.npz",
    )
    await pool.close()
    assert [t["arm"] for t in turns] == [*bench.ARMS, "chunks-ch"]
    assert set(bench.summarize(turns)["benign"]["ratios"]) == {"whole", "chunks", "chunks-ch"}
    assert bench.parse_args(["--chunk-head", "heads/chunk.npz"]).chunk_head == Path("heads/chunk.npz")


def test_arms_can_be_chosen_and_the_heads_reads_in_the_assistants_context_are_counted():
    import pytest

    assert bench.parse_args(["--arms", "bare,chunks"]).arms == ["bare", "chunks"]
    assert bench.parse_args([]).arms is None
    with pytest.raises(SystemExit):
        bench.parse_args(["--arms", "bare,chunkz"])

    class HeadStats:  # the head extractor's stats (chaperone.models.hidden_states.ExtractionStats)
        prompt_tokens, prompt_evaluated, calls, in_context, restored = 900, 150, 6, 5, 7

    class Extractor:
        stats = HeadStats()

    before = {"reviewer head": {"prompt_tokens": 300, "evaluated": 50, "calls": 2, "in_context": 1, "restored": 3}}
    diff = bench.context_diff(before, bench.context_counts({"reviewer head": Extractor()}))
    assert diff["reviewer head"] == {
        "prompt_tokens": 600,
        "evaluated": 100,
        "cache_hits": 500,
        "calls": 4,
        "in_context": 4,
        "restored": 4,
    }
    assert bench.reviewer_reading(diff)["restored"] == 4


async def test_chunk_reads_own_puts_every_read_while_the_assistant_writes_in_the_reviewers_context(monkeypatch):
    from chaperone.models import in_context

    monkeypatch.setattr(in_context, "read_while_writing", in_context.read_while_writing)  # restored afterwards
    assert bench.parse_args([]).chunk_reads == "first"
    assert bench.parse_args(["--chunk-reads", "own"]).chunk_reads == "own"
    bench.own_context_chunk_reads()
    assert await in_context.read_while_writing(object(), None, None, [], [20], max_new=96) is None


async def test_chunk_reads_every_asks_the_assistants_context_for_every_chunk_while_it_writes(monkeypatch):
    from chaperone.models.embedded import EmbeddedChatCompletionClient

    asked = []

    async def recording(self, messages, layers, *, max_new, while_writing=True):
        asked.append(while_writing)

    monkeypatch.setattr(EmbeddedChatCompletionClient, "read_in_context", recording)  # restored afterwards
    assert bench.parse_args(["--chunk-reads", "every"]).chunk_reads == "every"
    bench.every_chunk_read_in_the_assistants_context()
    await EmbeddedChatCompletionClient.read_in_context(object(), [], [20], max_new=96, while_writing=False)
    assert asked == [True]


async def test_chunk_growth_reaches_the_chunked_arm_and_chunk_verdicts_are_counted(project_factory):
    import pytest

    root = chunked_project(project_factory, streaming="whole", chunks={"min_tokens": 1, "max_tokens": 8})
    project = load_project(root)
    bench.with_chunk_growth(project, 2.0)
    pool = ModelPool(project.models, root / "config" / "models.yaml")
    (turn,) = await bench.run_arms(
        project, pool, [("benign", "Say something friendly.")], max_tokens=200, arms=("chunks",)
    )
    await pool.close()
    base = project.policy(project.settings.default_policy)
    assert project.policy(f"{base.name}+chunks").chunks.growth == 2.0 and base.chunks.max_tokens == 8
    assert turn["chunk_verdicts"] >= turn["released_chunks"] >= 1
    assert bench.parse_args(["--chunk-growth", "2"]).chunk_growth == 2.0
    with pytest.raises(SystemExit):
        bench.parse_args(["--chunk-growth", "0.5"])


def test_an_arm_counts_the_prompts_whose_answer_is_the_bare_arms_character_for_character():
    def turn(arm, prompt, text):
        return {
            "group": "benign",
            "prompt": prompt,
            "arm": arm,
            "text": text,
            "outcome": "approved",
            "wall_s": 1.0,
            "first_delivered_s": 1.0,
            "agents": {},
            "contexts": {},
            "tokens_saved": 0,
            "stopped_at_chunk": [],
        }

    turns = [
        turn("bare", "a", "Canberra."),
        turn("chunks", "a", "Canberra."),
        turn("bare", "b", "Use slicing: xs[::-1]."),
        turn("chunks", "b", "Use slicing, xs[::-1]."),
        turn("whole", "b", "Use slicing: xs[::-1]."),
    ]
    ratios = bench.summarize(turns)["benign"]["ratios"]
    assert ratios["chunks"]["same_answer_as_bare"] == 1
    assert ratios["whole"]["same_answer_as_bare"] == 1


def test_same_start_puts_back_the_assistants_context_and_its_saved_states_before_each_later_arm():
    from types import SimpleNamespace

    import numpy as np

    from chaperone.models.state_cache import LastRowStateCache

    def saved(tokens):  # shaped like llama_cpp.LlamaState, as far as the cache reads it
        return SimpleNamespace(
            input_ids=np.array(tokens, dtype=np.intc), scores=np.zeros((1, 4), np.single), llama_state_size=100
        )

    class Context:  # llama_cpp.Llama's save_state / load_state, as far as SameStart uses them; the real cache
        def __init__(self):
            self.cache, self.kv = LastRowStateCache(capacity_bytes=1 << 20), ["system prompt"]

        def save_state(self):
            return list(self.kv)

        def load_state(self, state):
            self.kv = list(state)

    llm = Context()
    llm.cache[[1]] = saved([1])  # what an earlier prompt left
    before = llm.cache.cache_size
    start = bench.SameStart(type("Client", (), {"llm": llm})())
    start.take()
    llm.kv += ["bare arm's prompt", "bare arm's answer"]  # the first arm's turn leaves its tokens and a saved state
    llm.cache[[1, 2, 3]] = saved([1, 2, 3])
    start.put_back()
    assert llm.kv == ["system prompt"]
    assert list(llm.cache.cache_state) == [(1,)] and llm.cache.cache_size == before
    llm.kv.append("chunks arm")
    llm.cache[[4]] = saved([4])
    start.put_back()  # and again before the next arm
    assert llm.kv == ["system prompt"] and list(llm.cache.cache_state) == [(1,)]
    bench.SameStart(object()).take()  # a model over HTTP has no context: nothing to snapshot, nothing fails
