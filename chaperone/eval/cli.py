"""`python run.py eval ...`: bare vs guarded on a prompt set, the reviewer alone on recorded answers,
resume, shards and merge. `eval SOURCE` is short for `eval run SOURCE`."""

from __future__ import annotations

import json
import re
import sys
import uuid
from dataclasses import asdict
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from chaperone import signals
from chaperone.config.schema import EmbeddedModelSpec
from chaperone.engine.choice import SessionChoice, flag_blame, resolve
from chaperone.errors import ChaperoneError
from chaperone.eval.config import Columns, EvalConfig, load_eval_config
from chaperone.eval.data import load_items, parse_shard, select, shard, split
from chaperone.eval.judge import Judge
from chaperone.eval.metrics import report as compute_report
from chaperone.eval.report import console_print, write
from chaperone.eval.rows import FailedRow, Row, RunFacts, report_json
from chaperone.eval.runner import EvalContext, run_items
from chaperone.eval.store import Plan, RunFolder, file_sha256, merge
from chaperone.startup import fail, open_project, ready_pool

RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class _DefaultRun(click.Group):
    """`eval xstest ...` runs `eval run xstest ...`; named subcommands and --help work as usual."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


def _columns(base: Columns, text: str | None) -> Columns:
    if not text:
        return base
    values = base.model_dump()
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in values:
            raise ChaperoneError(
                f"--columns: expected NAME=COLUMN pairs with NAME one of {', '.join(values)}; got {part!r}"
            )
        values[key] = value.strip() or None
    return Columns(**values)


def _source(cfg: EvalConfig, project, source: str) -> tuple[Path, Columns, str]:
    """A built-in set's file and columns, or a file path with default columns."""
    if source in cfg.datasets:
        spec = cfg.datasets[source]
        return project.resolve(spec.path), spec.columns, spec.title or source
    path = Path(source)
    if not path.exists():
        known = ", ".join(sorted(cfg.datasets)) or "none"
        raise ChaperoneError(f"{source}: no such file, and not a built-in set (built-in: {known})")
    return path, Columns(), path.name


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
def run_cmd(
    ctx: click.Context,
    source,
    reviewer_only,
    columns,
    limit,
    sample,
    seed,
    types,
    labels,
    categories,
    split_part,
    split_seed,
    test_fraction,
    concurrency,
    shard_text,
    out,
    resume,
    run_id,
    policy,
    assistant_model,
    reviewer_model,
    judge_model,
    formats,
    as_json,
) -> None:
    """Run an evaluation on SOURCE: a built-in set (xstest) or a CSV/JSONL file."""
    err = Console(stderr=True)
    try:
        project = open_project(ctx)
        cfg = load_eval_config(project.root)
        if resume is not None:
            folder = RunFolder(resume)
            plan = folder.plan()
            path, base_columns, title = _source(cfg, project, plan.source)
            if file_sha256(path) != plan.source_sha256:
                raise ChaperoneError(f"{path} changed since run {plan.run_id} started: resuming would mix data")
            sel = plan.selection
            cols = Columns(**sel["columns"])
        else:
            if not source:
                raise ChaperoneError(
                    "name a prompt set (built-in: " + ", ".join(cfg.datasets) + ") or a file, or --resume a run folder"
                )
            path, base_columns, title = _source(cfg, project, source)
            cols = _columns(base_columns, columns)
            sel = {
                "types": list(types),
                "labels": list(labels),
                "categories": list(categories),
                "sample": sample,
                "seed": seed,
                "limit": limit,
                "columns": cols.model_dump(),
            }
            if split_part:
                sel["split"] = {"part": split_part, "seed": split_seed, "test_fraction": test_fraction}
        mode = plan.mode if resume is not None else ("reviewer" if reviewer_only else "ab")
        items = load_items(path, cols, need_label=(mode == "reviewer"), need_answer=(mode == "reviewer"))
        if sel.get("split"):  # before the filters and the sample, so both parts are fixed by the data alone
            sp = sel["split"]
            items = split(items, sp["part"], test_fraction=sp["test_fraction"], seed=sp["seed"])
        chosen = select(
            items,
            types=tuple(sel["types"]),
            labels=tuple(sel["labels"]),
            categories=tuple(sel["categories"]),
            sample=sel["sample"],
            seed=sel["seed"],
            limit=sel["limit"],
        )
        if not chosen:
            raise ChaperoneError(f"{path}: no item matches the filters")
        if resume is None:
            i, n = parse_shard(shard_text) if shard_text else (1, 1)
            choice = SessionChoice(
                policy=policy,
                assistant_model=assistant_model,
                reviewer_model=reviewer_model,
                assistant_max_tokens=cfg.assistant_max_tokens,
            )
            resolve(project, choice, flag_blame)  # a wrong flag fails before the run folder exists
            if run_id is not None and not RUN_ID.fullmatch(run_id):
                raise ChaperoneError(
                    f"--run-id: {run_id!r} must be 1-64 letters, digits, '-' or '_' "
                    "(it names the run's folder and manifest)"
                )
            run_id = run_id or uuid.uuid4().hex[:12]
            plan = Plan(run_id, mode, source, file_sha256(path), sel, [it.id for it in chosen], asdict(choice), (i, n))
            suffix = f"-shard{i}of{n}" if n > 1 else ""
            folder = RunFolder(out or project.resolve(cfg.out_dir) / f"{run_id}{suffix}")
            folder.create(plan)
        choice = SessionChoice(**plan.choice)
        mine = shard(chosen, *plan.shard)
        done = folder.done()
        todo = [it for it in mine if it.id not in done]
        cast = resolve(project, choice)
        used = cast.models | ({judge_model or cfg.judge.model} if mode == "ab" else set())
        pool = ready_pool(project, used)
    except ChaperoneError as exc:
        fail(str(exc))

    # The embedded model serialises its calls: items in parallel would only queue (and inflate each one's
    # latency), so runs that use it go one item at a time unless told otherwise.
    embedded = any(isinstance(project.models.models.get(m), EmbeddedModelSpec) for m in used)
    concurrency = concurrency or (1 if embedded else cfg.concurrency)
    judge = None
    if mode == "ab":
        judge_name = judge_model or cfg.judge.model
        judge = Judge(cfg.judge, pool.get(judge_name, max_tokens=cfg.judge.max_tokens))
    context = EvalContext(project, pool, choice, plan, folder, judge)
    err.print(
        f"eval run {plan.run_id} · {title} · {len(mine)} items in this shard, {len(done & {i.id for i in mine})} "
        f"already done · {concurrency} at a time · folder {folder.path}",
        highlight=False,
        soft_wrap=True,
    )
    interrupted = 0
    with _progress(err) as progress:
        task = progress.add_task(
            f"{'reviewer' if mode == 'reviewer' else 'bare vs guarded'}",
            total=len(mine),
            completed=len(mine) - len(todo),
            rate="",
            failed="",
        )
        counts = {"done": 0, "failed": 0}

        def on_row(row: Row) -> None:
            counts["done"] += 1
            counts["failed"] += row.status != "ok"
            elapsed = progress.tasks[task].elapsed or 1e-9
            progress.update(
                task,
                advance=1,
                rate=f"{counts['done'] / elapsed * 60:.1f}/min",
                failed=f"{counts['failed']} failed" if counts["failed"] else "",
            )
            if not err.is_terminal:  # a log file gets one line per item instead of a live bar
                t = progress.tasks[task]
                eta = f", about {t.time_remaining / 60:.0f} min left" if t.time_remaining else ""
                error = row.error if isinstance(row, FailedRow) else ""
                err.print(
                    f"[{int(t.completed)}/{int(t.total)}] item {row.id}: {row.status}"
                    f"{': ' + error if error else ''}{eta}",
                    highlight=False,
                    soft_wrap=True,
                )

        async def go() -> None:
            try:
                await run_items(context, todo, concurrency, on_row)
            finally:
                await pool.close()

        try:
            signals.run(go())
        except KeyboardInterrupt:
            interrupted = 130
        except signals.Terminated as stop:
            interrupted = stop.code
    _finish(folder, plan, mine_ids=[i.id for i in mine], title=title, formats=formats, as_json=as_json)
    if interrupted:
        err.print(
            f"[yellow]interrupted[/]: finished items are saved; resume with python run.py eval --resume {folder.path}",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(interrupted)


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
