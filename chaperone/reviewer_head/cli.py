"""`python run.py reviewer ...`: extract the head's features and train the reviewer's judgement head.

`reviewer extract` fills the feature cache (resumable: run it again after a stop), `reviewer train` rebuilds
the head and its card from the cached rows (docs/reviewer-head.md). Exit codes: 0 done, 2 bad input (no split
manifest, no or too few cached features, a bad option): one line saying what to run, no traceback; 130 when
stopped with Ctrl-C (what was extracted is kept).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from chaperone.errors import ChaperoneError
from chaperone.models.gguf import GGUF_SHA256
from chaperone.reviewer_head import compare, data, features, requests, train
from chaperone.reviewer_head.head import OVERALL, ReviewerHead
from chaperone.startup import fail

LAYERS_HELP = "The layer list the cache is keyed by (comma-separated)."
DEFAULT_LAYERS_TEXT = ",".join(map(str, features.DEFAULT_LAYERS))


def _console() -> Console:
    return Console(highlight=False, width=None if sys.stdout.isatty() else 120)


def _layers(text: str) -> list[int]:
    try:
        return train.parse_layers(text)
    except ChaperoneError as exc:
        fail(str(exc))


class _Bar(train.Steps):
    """Training progress on stderr: one step per candidate scored and per head fitted."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.task = progress.add_task("training", total=None, what="")

    def total(self, n: int) -> None:
        self.progress.update(self.task, total=n)

    def advance(self, what: str) -> None:
        self.progress.update(self.task, advance=1, what=what)


def _feature_cache_options(command: Callable) -> Callable:
    """--manifest, --layers, --cache, --prompt: which rows and which cache, the same for extract and train (applied
    bottom-up, as stacked decorators are, so --help lists them in this order)."""
    command = click.option(
        "--prompt",
        "prompt_file",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        default=None,
        help="The head prompt: config/reviewer_head.yaml (default, a judge's fenced prompt) or "
        "config/reviewer_head_in_context.yaml (the assistant's own conversation, then one question).",
    )(command)
    command = click.option(
        "--cache", type=click.Path(file_okay=False, path_type=Path), default=None, help="Feature cache root."
    )(command)
    command = click.option("--layers", default=DEFAULT_LAYERS_TEXT, show_default=True, help=LAYERS_HELP)(command)
    return click.option(
        "--manifest",
        type=click.Path(dir_okay=False, path_type=Path),
        default=data.DEFAULT_MANIFEST,
        help="The split manifest.  [default: heads/split-seed0.jsonl.gz]",
    )(command)


def _rows_option(example: str = "") -> Callable:
    """--rows FILE: only the manifest rows a row list names (extract, compare-sample, decisions)."""
    return click.option(
        "--rows",
        "rows_file",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        default=None,
        help="Only the rows this list names (a text sha256 per line, .gz or plain)"
        + (f", e.g. {example}." if example else "."),
    )


def _head_option(help_text: str) -> Callable:
    """--head FILE: a trained head (its card beside it); compare and decisions."""
    return click.option(
        "--head",
        type=click.Path(dir_okay=False, path_type=Path),
        default=data.REPO / "heads" / "reviewer-head.npz",
        help=help_text,
    )


def _dev_sample_option(help_text: str) -> Callable:
    """--dev-sample FILE (repeatable): the dev rows a threshold is chosen on; compare and threshold."""
    return click.option(
        "--dev-sample",
        type=click.Path(dir_okay=False, path_type=Path),
        multiple=True,
        default=[compare.DEFAULT_DEV_SAMPLE],
        help=f"{help_text}  [default: heads/compare-dev-seed0.jsonl]",
    )


@click.group()
def reviewer() -> None:
    """The reviewer's judgement head: extract features, train (docs/reviewer-head.md)."""


@reviewer.command("extract")
@_feature_cache_options
@click.option("--limit", type=int, default=None, help="Stop after this many new rows.")
@click.option("--per-source", type=int, default=None, help="Only a mixed sample: N rows of each source.")
@click.option("--sample-seed", type=int, default=0, show_default=True)
@click.option("--part", type=click.Choice(["train", "dev", "test"]), default=None, help="Only rows of this part.")
@click.option("--source", "sources", multiple=True, help="Only rows of this source (repeatable).")
@click.option("--threads", type=int, default=None, help="llama.cpp threads (default: every core).")
@click.option("--shard-rows", type=int, default=32, show_default=True, help="Rows written per shard.")
@_rows_option("a head's training rows")
def extract(
    manifest: Path,
    layers: str,
    cache: Path | None,
    limit: int | None,
    per_source: int | None,
    sample_seed: int,
    part: str | None,
    sources: tuple[str, ...],
    threads: int | None,
    shard_rows: int,
    rows_file: Path | None,
    prompt_file: Path | None,
) -> None:
    """Read the embedded model's hidden states for the manifest's rows into the feature cache (resumable)."""
    from chaperone.reviewer_head.prompt import load_prompt

    try:
        stats, feature_cache, wall = features.extract_features(
            prompt=load_prompt(prompt_file) if prompt_file else None,
            rows_file=rows_file,
            manifest=manifest,
            layers=_layers(layers),
            cache_root=cache,
            limit=limit,
            per_source=per_source,
            sample_seed=sample_seed,
            part=part,
            sources=sources,
            threads=threads,
            shard_rows=shard_rows,
        )
    except ChaperoneError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        Console(stderr=True).print("stopped: the rows written so far are kept; run the same command to resume")
        sys.exit(130)
    _console().print(features.summary_line(stats, feature_cache, wall))


@reviewer.command("train")
@_feature_cache_options
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=data.REPO / "heads" / "reviewer-head.npz",
    help="Where the head (.npz) goes; its card (.json) is written beside it.  [default: heads/reviewer-head.npz]",
)
@click.option("--loso", is_flag=True, help="Also train and measure leave-one-source-out folds.")
@click.option(
    "--select",
    type=click.Choice(train.SELECTIONS),
    default="cross-source",
    show_default=True,
    help="Choose layers and C by each source's dev part scored by a fit on the others (cross-source), or by dev.",
)
@click.option("--cv", type=int, default=5, show_default=True, help="Folds when dev is too small to choose on.")
@click.option("--cv-report", is_flag=True, help="Also report K-fold AUC of every layer on all rows.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the CV folds.")
@click.option("--model-sha256", default=GGUF_SHA256, hidden=True)
def train_command(
    manifest: Path,
    layers: str,
    cache: Path | None,
    out: Path,
    loso: bool,
    select: str,
    cv: int,
    cv_report: bool,
    seed: int,
    model_sha256: str,
    prompt_file: Path | None,
) -> None:
    """Rebuild the head and its card from the cached features: layers and C chosen on dev, test measured once."""
    columns = (
        TextColumn("training"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[what]}"),
    )
    try:
        with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
            head = train.train_head(
                manifest=manifest,
                layers=_layers(layers),
                cache_root=cache,
                out=out,
                cv=cv,
                cv_report=cv_report,
                loso=loso,
                select=select,
                seed=seed,
                model_sha256=model_sha256,
                steps=_Bar(progress),
                prompt_path=prompt_file,
            )
    except ChaperoneError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        Console(stderr=True).print("stopped: no head was written")
        sys.exit(130)
    _print_summary(head, out)


def _fig(figures: dict | None) -> str:
    if not figures or figures.get("auc") is None:
        return "–"
    return f"AUC {figures['auc']:.3f}, recall {figures.get('recall_at_fpr_0.05', 0):.2f} at 5% FPR (n={figures['n']})"


def _print_summary(head: ReviewerHead, out: Path) -> None:
    console = _console()
    card = head.card
    figures = card["figures"]
    categories = [o for o in head.outputs if o != OVERALL]
    console.print(
        f"layers {','.join(map(str, head.layers))}, C={card['training']['C']:g}, "
        f"{card['data']['rows_with_features']} of {card['data']['rows_in_manifest']} rows with features; "
        f"categories: {', '.join(categories) or 'none'}"
    )
    for part in ("dev", "test"):
        console.print(f"{part}: {_fig(figures[part].get('overall'))}")
    if "cross_source_dev" in figures:
        console.print(
            f"dev, each source scored by a head fitted without it: {_fig(figures['cross_source_dev']['overall'])}"
        )
    for source, fold in figures.get("loso", {}).items():
        console.print(f"left out {source} (its test part): {_fig(fold['test'])}")
    if "loso_pooled" in figures:
        console.print(f"left-out sources pooled: {_fig(figures['loso_pooled'])}")
    console.print(f"wrote {out} and {out.with_suffix('.json')} (every figure is in the card)")


@reviewer.command("train-requests")
@click.option(
    "--manifest",
    type=click.Path(dir_okay=False, path_type=Path),
    default=requests.MANIFEST,
    help="The request manifest.  [default: heads/requests-seed0.jsonl.gz]",
)
@click.option("--layers", default=DEFAULT_LAYERS_TEXT, show_default=True, help=LAYERS_HELP)
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None, help="Feature cache root.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=requests.HEAD,
    help="Where the request head (.npz) goes; its card (.json) beside it.  [default: heads/request-head.npz]",
)
@click.option(
    "--extract",
    is_flag=True,
    help="First write the manifest (if missing) and read the embedded model's hidden states for the requests not "
    "yet cached (resumable; loads the model).",
)
@click.option("--threads", type=int, default=None, help="llama.cpp threads for --extract (default: every core).")
@click.option("--model-sha256", default=GGUF_SHA256, hidden=True)
def train_requests_command(
    manifest: Path, layers: str, cache: Path | None, out: Path, extract: bool, threads: int | None, model_sha256: str
) -> None:
    """Rebuild the request head (P(request harmful), for the refusal check) and its card; XSTest left out for
    the cross-source figure."""
    from chaperone.reviewer_head.prompt import load_request_prompt

    layer_list = _layers(layers)
    try:
        if extract:
            if not manifest.is_file():
                rows, summary = requests.build(0)
                data.write_manifest(rows, summary, manifest)
            stats, feature_cache, wall = features.extract_features(
                manifest=manifest,
                layers=layer_list,
                cache_root=cache,
                threads=threads,
                prompt=load_request_prompt(),
            )
            _console().print(features.summary_line(stats, feature_cache, wall))
        with Progress(
            TextColumn("training"), BarColumn(), MofNCompleteColumn(), console=Console(stderr=True), transient=True
        ) as progress:
            head = requests.train_request_head(
                manifest=manifest,
                layers=layer_list,
                cache_root=cache,
                out=out,
                model_sha256=model_sha256,
                steps=_Bar(progress),
            )
    except ChaperoneError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        Console(stderr=True).print("stopped: what was extracted is kept; no head was written")
        sys.exit(130)
    card = head.card
    figures = card["figures"]
    console = _console()
    console.print(f"layer {','.join(map(str, head.layers))}, C={card['training']['C']:g}")
    console.print(f"XSTest left out (every row, head fitted without it): {_fig(figures.get('loso_xstest'))}")
    for part in ("dev", "test"):
        console.print(f"{part}: {_fig(figures[part].get('overall'))}")
    t = card["request_threshold"]
    console.print(
        f"request_threshold {t.get('value')} (dev: {t.get('harmless_sent_back')} of harmless and "
        f"{t.get('harmful_sent_back')} of harmful requests below it)"
    )
    console.print(f"wrote {out} and {out.with_suffix('.json')} (every figure is in the card)")


@reviewer.command("compare-sample")
@click.option(
    "--manifest",
    type=click.Path(dir_okay=False, path_type=Path),
    default=data.DEFAULT_MANIFEST,
    help="The split manifest.  [default: heads/split-seed0.jsonl.gz]",
)
@click.option("--per-source", type=int, default=30, show_default=True, help="Rows of each source.")
@click.option("--sample-seed", type=int, default=0, show_default=True)
@click.option(
    "--part",
    type=click.Choice(["test", "dev", "all"]),
    default="test",
    show_default=True,
    help="test: the rows compared; dev: rows to fit a combination of the two on; all: every part (with --rows).",
)
@_rows_option()
@click.option(
    "--source",
    "sources",
    multiple=True,
    help="Only these sources (repeatable): a source added later gets its own sample; the others' stay as they were.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=compare.DEFAULT_SAMPLE,
    help="[default: heads/compare-test-seed0.jsonl]",
)
def compare_sample_command(
    manifest: Path,
    per_source: int,
    sample_seed: int,
    part: str,
    rows_file: Path | None,
    sources: tuple[str, ...],
    out: Path,
) -> None:
    """Write the held-out rows the head and the prompted reviewer are compared on (test part, or dev)."""
    if per_source < 1:
        fail(f"--per-source {per_source}: must be at least 1")
    if not manifest.is_file():
        fail(f"{manifest}: no split manifest; write it with `python -m chaperone.reviewer_head.data --seed 0`")
    try:
        n = compare.write_sample(manifest, out, per_source, sample_seed, part, sources, rows_file)
    except (compare.CompareInputError, features.ExtractInputError) as exc:
        fail(str(exc))
    run_dir = "evals/prompted-compare" + ("" if part == "test" else f"-{part}") + "".join(f"-{s}" for s in sources)
    rows = "".join(
        [
            "" if manifest == data.DEFAULT_MANIFEST else f" --manifest {manifest}",
            *(f" --source {s}" for s in sources),
            "" if part == "all" else f" --part {part} --per-source {per_source}",  # extract has no --part all
            "" if rows_file is None else f" --rows {rows_file}",
            "" if sample_seed == 0 else f" --sample-seed {sample_seed}",
        ]
    )
    _console().print(
        f"wrote {n} {part} rows to {out}; next: `python run.py reviewer extract{rows}`, then "
        f"`python run.py eval run {out} --reviewer-only --no-head --columns {compare.EVAL_COLUMNS} --out {run_dir}`"
    )


@reviewer.command("compare")
@_feature_cache_options
@click.option(
    "--eval",
    "eval_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    multiple=True,
    help="The eval run folder (repeatable: one per --sample, in the same order).",
)
@click.option(
    "--sample",
    type=click.Path(dir_okay=False, path_type=Path),
    multiple=True,
    default=[compare.DEFAULT_SAMPLE],
    help="A comparison sample (repeatable: a source added later has its own).  "
    "[default: heads/compare-test-seed0.jsonl]",
)
@_head_option("The trained head; its held-out scores are read from the .scores.jsonl beside it.")
@click.option(
    "--dev-eval",
    type=click.Path(file_okay=False, path_type=Path),
    multiple=True,
    help="The prompted reviewer's eval run on the dev sample: also fit and measure the two scores combined "
    "(repeatable: one per --dev-sample).",
)
@_dev_sample_option("The dev sample (repeatable).")
@click.option(
    "--stack-into",
    is_flag=True,
    help="Write the combination fitted on --dev-eval, its dev-chosen threshold and proposed category thresholds "
    "into the head's card: the embedded reviewer then decides with both scores.",
)
@click.option(
    "--alone-into",
    is_flag=True,
    help="Write the head-alone threshold (no prompted pass; chosen on the dev sample by the same rule) into the "
    "head's card, dropping any combination.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the whole comparison as JSON.")
def compare_command(
    manifest: Path,
    layers: str,
    cache: Path | None,
    eval_dir: tuple[Path, ...],
    sample: tuple[Path, ...],
    head: Path,
    dev_eval: tuple[Path, ...],
    dev_sample: tuple[Path, ...],
    stack_into: bool,
    alone_into: bool,
    as_json: bool,
    prompt_file: Path | None,
) -> None:
    """The head and the prompted reviewer on the same held-out rows: AUC, recall at 1%/5% FPR, cost."""
    from chaperone.reviewer_head.prompt import load_prompt

    try:
        feature_cache = features.FeatureCache(
            cache or features.default_root(),
            GGUF_SHA256,
            load_prompt(prompt_file).sha256,
            _layers(layers),
            readonly=True,
        )
        costs = compare.head_costs(feature_cache)
    except (OSError, ValueError):
        costs = None
    try:
        report = compare.compare(sample, eval_dir, train.scores_path(head), costs, dev_sample, dev_eval)
        if stack_into and alone_into:
            raise compare.CompareInputError("--stack-into and --alone-into: choose one way for the head to decide")
        card = compare.write_stack(head, report) if stack_into else None
        card = compare.write_alone(head, report) if alone_into else card
    except compare.CompareInputError as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps(report, indent=1))
        return
    _console().print(
        f"{report['joined']} of {report['rows']} rows scored by all three (missing: {report['missing']})\n"
    )
    _console().print(compare.markdown(report))
    if card is not None:
        t = report["stack" if stack_into else "alone"]["threshold"]
        what = "combination" if stack_into else "head-alone threshold"
        _console().print(
            f"\n{what} written into {card}: threshold {t['value']} (dev recall {t['recall']}, "
            f"false positives {t['fpr']}); set it as the policy's head.not_ok_threshold"
        )


@reviewer.command("threshold")
@_head_option("The trained head (trained with --loso); the threshold is written into its card.")
@click.option("--recall", type=float, required=True, help="The recall to keep on the dev sample (0-1].")
@_dev_sample_option("The dev rows the threshold is chosen on (repeatable).")
@click.option(
    "--sample",
    type=click.Path(dir_okay=False, path_type=Path),
    multiple=True,
    help="Test rows to report the figures with each source left out on (repeatable; optional).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the threshold and its figures without writing the card (e.g. a flag band's lower end at a higher "
    "recall, beside the threshold the card keeps).",
)
def threshold_command(
    head: Path, recall: float, dev_sample: tuple[Path, ...], sample: tuple[Path, ...], dry_run: bool
) -> None:
    """Write a head-alone threshold at a stated dev recall into the head's card (no prompted reviewer run)."""
    from chaperone.reviewer_head.threshold import alone_at_recall, write_alone_at_recall

    try:
        if dry_run:
            section, where = alone_at_recall(head, recall, dev_sample, sample), "not written (--dry-run)"
        else:
            card, section = write_alone_at_recall(head, recall, dev_sample, sample)
            where = f"written into {card}"
    except compare.CompareInputError as exc:
        fail(str(exc))
    t, left_out = section["threshold"], section["test_left_out"]
    _console().print(
        f"head-alone threshold {where}: {t['value']} (dev recall {t['recall']}, false positives "
        f"{t['fpr']}, {section['fitted_on_dev_rows']} dev rows; dev AUC {section['dev']['auc']}"
        + (f"; test AUC with each source left out {left_out['auc']}" if left_out else "")
        + (")" if dry_run else "); set it as the policy's head.not_ok_threshold")
    )


@reviewer.command("decisions")
@_feature_cache_options
@_head_option("The trained head, with the threshold its card ships (combination or head alone).")
@click.option("--part", type=click.Choice(["train", "dev", "test", "all"]), default="dev", show_default=True)
@click.option("--source", "sources", multiple=True, help="Only rows of this source (repeatable).")
@_rows_option("a confirmation set")
@click.option(
    "--sample",
    type=click.Path(dir_okay=False, path_type=Path),
    multiple=True,
    help="For a head combined with the prompted score: a comparison sample holding the rows (repeatable).",
)
@click.option(
    "--eval",
    "eval_dir",
    type=click.Path(file_okay=False, path_type=Path),
    multiple=True,
    help="The prompted reviewer's eval run on each --sample, in the same order.",
)
@click.option(
    "--rows-out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Each row's decision (JSONL)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def decisions_command(
    manifest: Path,
    layers: str,
    cache: Path | None,
    prompt_file: Path | None,
    head: Path,
    part: str,
    sources: tuple[str, ...],
    rows_file: Path | None,
    sample: tuple[Path, ...],
    eval_dir: tuple[Path, ...],
    rows_out: Path | None,
    as_json: bool,
) -> None:
    """What the head decides, at its shipped threshold, on every cached row of a part: harmless rows sent back
    (needless refusals) and harmful rows caught, by kind of row."""
    from dataclasses import asdict

    from chaperone.reviewer_head import decisions
    from chaperone.reviewer_head.head import HeadError, load_head
    from chaperone.reviewer_head.prompt import load_prompt

    if not manifest.is_file():
        fail(f"{manifest}: no split manifest; write it with `python -m chaperone.reviewer_head.data --seed 0`")
    try:
        prompt_sha = load_prompt(prompt_file).sha256
        loaded = load_head(head, model_sha256=GGUF_SHA256, prompt_sha256=prompt_sha)
        feature_cache = features.FeatureCache(
            cache or features.default_root(), GGUF_SHA256, prompt_sha, _layers(layers), readonly=True
        )
        rows = decisions.rows_of(manifest, part, sources, rows_file)
        prompted = decisions.prompted_scores(sample, eval_dir) if sample or eval_dir else None
        made, info = decisions.decide_rows(rows, loaded, feature_cache, prompted)
    except (HeadError, decisions.DecisionsInputError, ChaperoneError, ValueError) as exc:  # incl. a bad row list
        fail(str(exc))
    summary = decisions.summarise(made)
    if rows_out is not None:
        rows_out.write_text("".join(json.dumps(asdict(d)) + "\n" for d in made), encoding="utf-8")
    if as_json:
        print(json.dumps({**info, "summary": summary}, indent=1))
        return
    _console().print(
        f"{len(made)} {part} rows decided at the card's {info['rule']} threshold {info['threshold']} "
        f"(skipped: {info['skipped']})\n"
    )
    _console().print(decisions.markdown(summary))
