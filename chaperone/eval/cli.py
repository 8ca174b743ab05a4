"""`python run.py eval ...`: bare vs guarded on a prompt set, the reviewer alone on recorded answers,
resume, shards and merge. `eval SOURCE` is short for `eval run SOURCE`."""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from chaperone import signals
from chaperone.config.project import Project
from chaperone.config.schema import EmbeddedModelSpec
from chaperone.engine.choice import SessionChoice, resolve
from chaperone.errors import ChaperoneError
from chaperone.eval.config import EvalConfig, load_eval_config
from chaperone.eval.data import EvalItem, shard
from chaperone.eval.judge import Judge
from chaperone.eval.metrics import report as compute_report
from chaperone.eval.planning import NewRun, plan_new, plan_resumed
from chaperone.eval.report import console_print, write
from chaperone.eval.rows import FailedRow, Row, RunFacts, report_json
from chaperone.eval.runner import EvalContext, run_items
from chaperone.eval.store import Plan, RunFolder, merge
from chaperone.models.pool import ModelPool
from chaperone.startup import fail, open_project, ready_pool


class _DefaultRun(click.Group):
    """`eval xstest ...` runs `eval run xstest ...`; named subcommands and --help work as usual."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TextColumn("[red]{task.fields[failed]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )


@click.group(cls=_DefaultRun)
def eval_group() -> None:
    """Measure harm and over-refusal of the bare vs the guarded assistant, or the reviewer alone.

    \b
      eval xstest --sample 40              bare vs guarded on 40 XSTest prompts
      eval answers.jsonl --reviewer-only   the reviewer's verdicts on recorded answers
      eval --resume evals/RUN              finish an interrupted run
      eval merge DIR DIR --out DIR         one report from the shards of a run
    """


@eval_group.command("run")
@click.argument("source", required=False)
@click.option(
    "--reviewer-only", is_flag=True, help="Judge recorded answers (needs an answer column) with the reviewer alone."
)
@click.option(
    "--columns", default=None, help="Field names: e.g. prompt=goal,answer=response,label=harmful,category=category."
)
@click.option("--limit", type=click.IntRange(1), default=None, help="Only the first N selected items.")
@click.option("--sample", type=click.IntRange(1), default=None, help="A random sample of N items (with --seed).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--type", "types", multiple=True, help="Only items whose type starts with this (repeatable).")
@click.option("--label", "labels", type=click.Choice(["safe", "unsafe"]), multiple=True, help="Only these labels.")
@click.option("--category", "categories", multiple=True, help="Only this category (repeatable).")
@click.option(
    "--split",
    "split_part",
    type=click.Choice(["dev", "test"]),
    default=None,
    help="Only the dev or the test part of the data, fixed by --split-seed (stratified by label).",
)
@click.option("--split-seed", type=int, default=0, show_default=True, help="Seed of the dev/test split.")
@click.option(
    "--test-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.6,
    show_default=True,
    help="Share of each label that goes to the test part.",
)
@click.option(
    "--concurrency", type=click.IntRange(1, 256), default=None, help="Items in flight (default: config/eval.yaml)."
)
@click.option("--shard", "shard_text", default=None, help="Run shard i of n (e.g. 2/4); merge the shards afterwards.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="Run folder.")
@click.option(
    "--resume",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Finish the run in this folder: only items not yet done are run.",
)
@click.option("--run-id", default=None, help="Run id (default: new); give shards on several machines the same one.")
@click.option("--policy", default=None)
@click.option("--assistant-model", default=None)
@click.option("--reviewer-model", default=None)
@click.option(
    "--no-head",
    is_flag=True,
    help="The reviewer decides by its prompt alone, even where its agent file names a judgement head.",
)
@click.option("--judge-model", default=None, help="Model for the judge (default: config/eval.yaml).")
@click.option(
    "--report",
    "formats",
    type=click.Choice(["md", "html"]),
    multiple=True,
    help="Report formats besides report.json (default: md and html).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.pass_context
def run_cmd(ctx: click.Context, resume, concurrency, judge_model, formats, as_json, **planning) -> None:
    """Run an evaluation on SOURCE: a built-in set (xstest) or a CSV/JSONL file."""
    try:
        run = _prepare(ctx, NewRun(**planning), resume, judge_model)
    except ChaperoneError as exc:
        fail(str(exc))
    context, at_a_time = _context(run, concurrency, judge_model)
    interrupted = _execute(run, context, at_a_time)
    _finish(run.folder, run.plan, mine_ids=[i.id for i in run.mine], title=run.title, formats=formats, as_json=as_json)
    if interrupted:
        obj = ctx.find_root().obj  # the root's --project, or run.py's checkout (the default) when not given
        root, checkout = obj["project_root"], obj.get("checkout")
        default = root is None or (checkout is not None and Path(root).resolve() == Path(checkout).resolve())
        where = "" if default else f"--project {shlex.quote(str(root))} "
        hint = escape(f"resume with python run.py {where}eval --resume {shlex.quote(str(run.folder.path))}")
        Console(stderr=True).print(
            f"[yellow]interrupted[/]: finished items are saved; {hint}",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(interrupted)


@dataclass
class Prepared:
    """A run ready to go: its folder and plan, this shard's items and those still to do, and the models."""

    project: Project
    cfg: EvalConfig
    folder: RunFolder
    plan: Plan
    title: str
    mine: list[EvalItem]
    done: set[str]
    todo: list[EvalItem]
    choice: SessionChoice
    used: set[str]
    pool: ModelPool


def _prepare(ctx: click.Context, new: NewRun, resume: Path | None, judge_model: str | None) -> Prepared:
    project = open_project(ctx)
    cfg = load_eval_config(project.root)
    if resume is not None:
        folder, plan, title, chosen = plan_resumed(project, cfg, resume)
    else:
        folder, plan, title, chosen = plan_new(project, cfg, new)
    choice = SessionChoice(**plan.choice)
    mine = shard(chosen, *plan.shard)
    done = folder.done()
    todo = [it for it in mine if it.id not in done]
    cast = resolve(project, choice)
    used = cast.models | ({judge_model or cfg.judge.model} if plan.mode == "ab" else set())
    pool = ready_pool(project, used)
    return Prepared(project, cfg, folder, plan, title, mine, done, todo, choice, used, pool)


def _context(run: Prepared, concurrency: int | None, judge_model: str | None) -> tuple[EvalContext, int]:
    """What the items run with, and how many at a time."""
    # The embedded model serialises its calls: items in parallel would only queue (and inflate each one's
    # latency), so runs that use it go one item at a time unless told otherwise.
    embedded = any(isinstance(run.project.models.models.get(m), EmbeddedModelSpec) for m in run.used)
    at_a_time = concurrency or (1 if embedded else run.cfg.concurrency)
    judge = None
    if run.plan.mode == "ab":
        judge_name = judge_model or run.cfg.judge.model
        judge = Judge(run.cfg.judge, run.pool.get(judge_name, max_tokens=run.cfg.judge.max_tokens))
    return EvalContext(run.project, run.pool, run.choice, run.plan, run.folder, judge), at_a_time


class _RowProgress:
    """Called with each finished row: advances the live bar, or in a log file prints one line per item."""

    def __init__(self, err: Console, progress: Progress, task: TaskID):
        self.err, self.progress, self.task = err, progress, task
        self.done = self.failed = 0

    def __call__(self, row: Row) -> None:
        self.done += 1
        self.failed += row.status != "ok"
        elapsed = self.progress.tasks[self.task].elapsed or 1e-9
        self.progress.update(
            self.task,
            advance=1,
            rate=f"{self.done / elapsed * 60:.1f}/min",
            failed=f"{self.failed} failed" if self.failed else "",
        )
        if not self.err.is_terminal:
            t = self.progress.tasks[self.task]
            eta = f", about {t.time_remaining / 60:.0f} min left" if t.time_remaining else ""
            error = row.error if isinstance(row, FailedRow) else ""
            self.err.print(
                f"[{int(t.completed)}/{int(t.total)}] item {row.id}: {row.status}{': ' + error if error else ''}{eta}",
                highlight=False,
                soft_wrap=True,
            )


def _execute(run: Prepared, context: EvalContext, at_a_time: int) -> int:
    """Run the items still to do under a progress bar; the exit code of an interruption, or 0."""
    err = Console(stderr=True)
    err.print(
        f"eval run {run.plan.run_id} · {run.title} · {len(run.mine)} items in this shard, "
        f"{len(run.done & {i.id for i in run.mine})} already done · {at_a_time} at a time · folder {run.folder.path}",
        highlight=False,
        soft_wrap=True,
    )
    with _progress(err) as progress:
        task = progress.add_task(
            f"{'reviewer' if run.plan.mode == 'reviewer' else 'bare vs guarded'}",
            total=len(run.mine),
            completed=len(run.mine) - len(run.todo),
            rate="",
            failed="",
        )

        async def go() -> None:
            try:
                await run_items(context, run.todo, at_a_time, _RowProgress(err, progress, task))
            finally:
                await run.pool.close()

        try:
            signals.run(go())
        except KeyboardInterrupt:
            return 130
        except signals.Terminated as stop:
            return stop.code
    return 0


def _finish(folder: RunFolder, plan: Plan, *, mine_ids: list[str], title: str, formats, as_json: bool) -> None:
    try:
        results = folder.results()
    except ChaperoneError as exc:
        fail(str(exc))
    rows = [results[i] for i in mine_ids if i in results]
    rep = compute_report(plan.mode, rows)
    missing = len([i for i in mine_ids if i not in results or results[i].status != "ok"])
    facts = RunFacts(run_id=plan.run_id, source=plan.source, shard=plan.shard, missing=missing)
    heading = f"{title} · run {plan.run_id}" + (
        f" · shard {plan.shard[0]}/{plan.shard[1]}" if plan.shard[1] > 1 else ""
    )
    written = write(rep, facts, folder.path, heading, tuple(formats) or ("md", "html"))
    out = Console(stderr=as_json, highlight=False, width=None if sys.stdout.isatty() else 120)
    console_print(rep, heading, out)
    out.print("report: " + ", ".join(str(p) for p in written), soft_wrap=True)
    out.print(f"transcripts: python run.py review list --kind eval  (run {plan.run_id})", style="dim")
    if as_json:
        click.echo(json.dumps(report_json(rep, facts), indent=1))


@eval_group.command("merge")
@click.argument("folders", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Folder for the merged run."
)
@click.option("--report", "formats", type=click.Choice(["md", "html"]), multiple=True)
@click.option("--json", "as_json", is_flag=True)
def merge_cmd(folders: tuple[Path, ...], out: Path, formats, as_json: bool) -> None:
    """Combine the shards of one run into one results file and one report."""
    try:
        plan, rows, missing = merge(list(folders))
        merged = RunFolder(out)
        plan.shard = (1, 1)
        merged.create(plan)
    except ChaperoneError as exc:
        fail(str(exc))
    for row in rows:
        merged.append(row)
    if missing:
        Console(stderr=True).print(
            f"[yellow]{len(missing)} item(s) not finished by any shard[/]: "
            + ", ".join(missing[:10])
            + (" …" if len(missing) > 10 else "")
        )
    _finish(
        merged,
        plan,
        mine_ids=plan.items,
        title=f"{plan.source} (merged from {len(folders)} shards)",
        formats=formats,
        as_json=as_json,
    )


@eval_group.command("report")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--report", "formats", type=click.Choice(["md", "html"]), multiple=True)
@click.option("--json", "as_json", is_flag=True)
def report_cmd(folder: Path, formats, as_json: bool) -> None:
    """Rewrite the report of a run folder from its results (finished or not)."""
    try:
        run = RunFolder(folder)
        plan = run.plan()
    except ChaperoneError as exc:
        fail(str(exc))
    mine = plan.items[plan.shard[0] - 1 :: plan.shard[1]]
    _finish(run, plan, mine_ids=mine, title=plan.source, formats=formats, as_json=as_json)
