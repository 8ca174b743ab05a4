"""`python run.py review ...`: list, show, stats, verify, export and html over the transcripts folder.

Exit codes: 0 done (verify: every transcript intact or incomplete), 1 verify found a file that is tampered,
unlisted, duplicate or unreadable, or a deleted one (or, with --strict, an incomplete one), 2 bad input
(unknown id, bad date, missing folder), one line, no traceback.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.text import Text

from chaperone.audit import signing
from chaperone.audit.integrity import Keys
from chaperone.audit.private_files import write_private_text
from chaperone.errors import EXIT_EXPECTATION_FAILED, EXIT_OK, ChaperoneError
from chaperone.review.index import OUTCOMES, Summary, make_filters, resolve, scan
from chaperone.startup import fail, open_project


def _console() -> Console:
    return Console(highlight=False, width=None if sys.stdout.isatty() else 120)


def _transcripts_dir(ctx: click.Context) -> Path:
    try:
        return open_project(ctx).transcripts_dir
    except ChaperoneError as exc:
        fail(str(exc))


def _folders(ctx: click.Context, folder: Path | None) -> list[Path]:
    if folder is not None:
        if not folder.is_dir():
            fail(f"{folder}: no such folder")
        return [folder]
    transcripts = _transcripts_dir(ctx)
    if not transcripts.is_dir():
        fail(f"no transcripts yet: {transcripts} does not exist (run a scenario or chat first, or give --dir)")
    return [transcripts]


def _keys(ctx: click.Context) -> Keys | None:
    """The public keys signatures are checked with: --public-key, else $CHAPERONE_AUDIT_PUBLIC_KEY, else
    audit.public_key in the project's settings; None when there is none (signatures are not checked)."""
    if "keys" in ctx.meta:
        return ctx.meta["keys"]
    paths = [Path(p) for p in ctx.meta.get("public_key_files", ())]
    if not paths and (from_env := os.environ.get(signing.ENV_PUBLIC_KEY, "").strip()):
        paths = [Path(from_env)]
    if not paths and ctx.obj and "project_root" in ctx.obj:
        try:
            project = open_project(ctx)
        except ChaperoneError:
            project = None  # no project (a --dir of its own): no key from settings
        if project is not None and project.settings.audit.public_key:
            paths = [project.resolve(project.settings.audit.public_key)]
    try:
        ctx.meta["keys"] = signing.public_keys(paths) if paths else None
    except ChaperoneError as exc:
        fail(str(exc))
    return ctx.meta["keys"]


def _scan(ctx: click.Context, folder: Path | None) -> list[Summary]:
    try:
        return scan(_folders(ctx, folder), _keys(ctx))
    except ChaperoneError as exc:
        fail(str(exc))


def _remember_keys(ctx: click.Context, _param: click.Parameter, value: tuple[Path, ...]) -> None:
    ctx.meta["public_key_files"] = value


def dir_option(f: Callable) -> Callable:
    """--dir, and --public-key: every command that shows a transcript's status checks it the same way."""
    f = click.option(
        "--public-key",
        type=click.Path(path_type=Path),
        multiple=True,
        expose_value=False,
        callback=_remember_keys,
        help="Ed25519 public key (PEM) to check the run manifests' signatures with (repeat for rotated keys; "
        "default: $CHAPERONE_AUDIT_PUBLIC_KEY, then audit.public_key in settings).",
    )(f)
    return click.option(
        "--dir",
        "folder",
        type=click.Path(path_type=Path),
        default=None,
        help="Transcripts folder (default: the project's transcripts_dir).",
    )(f)


FILTERS = (
    ("--since", "since", "Started on or after this date (YYYY-MM-DD, local) or ISO timestamp."),
    ("--until", "until", "Started before the end of this date, or before this ISO timestamp."),
    ("--scenario", "scenario", "Scenario name or file contains this text."),
    ("--policy", "policy", "Used this policy (at any point of the conversation)."),
    ("--model", "model", "Either agent ran on this model (its name in models.yaml)."),
    ("--outcome", "outcome", f"Conversation outcome: {', '.join(OUTCOMES)}."),
    ("--category", "category", "A verdict raised this category."),
    ("--kind", "kind", "Conversation kind: scenario, chat, eval, ..."),
)


def filter_options(f: Callable) -> Callable:
    @functools.wraps(f)
    def wrapper(*args: Any, limit: int | None, flagged: bool, **kwargs: Any) -> Any:
        values = {dest: kwargs.pop(dest) for _, dest, _ in FILTERS}
        try:
            kwargs["filters"] = make_filters(limit=limit, flagged=flagged, **values)
        except ChaperoneError as exc:
            fail(str(exc))
        return f(*args, **kwargs)

    for flag, dest, help_text in reversed(FILTERS):
        wrapper = click.option(flag, dest, default=None, metavar="TEXT", help=help_text)(wrapper)
    wrapper = click.option(
        "--flagged",
        is_flag=True,
        help="Only conversations with a turn flagged for a human (the reviewer head's score in the policy's band).",
    )(wrapper)
    return click.option("--limit", type=int, default=None, help="At most this many conversations (newest).")(wrapper)


def _resolve(ctx: click.Context, folder: Path | None, ident: str) -> Summary:
    as_path = Path(ident)
    summaries = [] if as_path.suffix == ".jsonl" and as_path.is_file() else _scan(ctx, folder)
    try:
        found = resolve(summaries, ident, _keys(ctx))
    except ChaperoneError as exc:
        fail(str(exc))
    if not found.readable:
        fail(f"{found.path}: {found.problem}")
    return found


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def review() -> None:
    """Read, check and export conversation transcripts (for auditors and safety leads)."""


@review.command("list")
@dir_option
@filter_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON only.")
@click.pass_context
def list_cmd(ctx: click.Context, folder: Path | None, filters: Any, as_json: bool) -> None:
    """One row per conversation, newest first. A transcript that is not intact (or unfinished) shows its
    status (TAMPERED, UNLISTED, DUPLICATE, ...) in place of its outcome. No transcripts folder yet
    (a fresh install) is an empty list, exit 0; a missing --dir is an error."""
    from chaperone.review.view import list_table, unreadable_line

    if folder is None and not (folder := _transcripts_dir(ctx)).is_dir():
        if as_json:
            click.echo(json.dumps({"conversations": [], "unreadable": []}, indent=2))
        else:
            _console().print(f"no transcripts yet in {folder} (a scenario or a chat writes them)", soft_wrap=True)
        return
    summaries = _scan(ctx, folder)
    selected = filters.apply(summaries)
    unreadable = [s for s in summaries if not s.readable]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "conversations": [s.row() for s in selected],
                    "unreadable": [{"path": str(s.path), "problem": s.problem} for s in unreadable],
                },
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    console = _console()
    if selected:
        console.print(list_table(selected))
    else:
        console.print("no conversations match" if any(s.readable for s in summaries) else "no transcripts found")
    for s in unreadable:
        console.print(unreadable_line(s), soft_wrap=True)


@review.command()
@click.argument("ident", metavar="ID")
@dir_option
@click.option("--hide-debate", is_flag=True, help="Only the user's turns and what they got.")
@click.pass_context
def show(ctx: click.Context, ident: str, folder: Path | None, hide_debate: bool) -> None:
    """A conversation as a story: turns, drafts, verdicts, diffs, what was delivered. ID: a unique id
    prefix (or a transcript file)."""
    from chaperone.review.view import print_story

    found = _resolve(ctx, folder, ident)
    print_story(_console(), found.story, found.integrity, show_debate=not hide_debate)


@review.command()
@dir_option
@filter_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON only.")
@click.pass_context
def stats(ctx: click.Context, folder: Path | None, filters: Any, as_json: bool) -> None:
    """Figures across the selected conversations. Rates count finished turns (approved, withheld, error);
    cancelled and unfinished turns are reported apart. Categories: turns that raised each, and verdicts
    naming it. p95 latency is nearest-rank. Tokens and model seconds include every draft and verdict."""
    from chaperone.review.stats import compute
    from chaperone.review.view import stats_tables

    figures = compute(filters.apply(_scan(ctx, folder)))
    if as_json:
        click.echo(json.dumps(figures, indent=2))
        return
    console = _console()
    for table in stats_tables(figures):
        console.print(table)
    for path in figures["unreadable"]:
        console.print(f"[red]skipped unreadable[/] {path}", markup=True, soft_wrap=True, highlight=False)


@review.command("verify")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@dir_option
@click.option("--strict", is_flag=True, help="Also exit 1 when a transcript is incomplete (no closing record).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON only.")
@click.pass_context
def verify_cmd(ctx: click.Context, paths: tuple[Path, ...], folder: Path | None, strict: bool, as_json: bool) -> None:
    """Check each transcript (files or folders; default: the transcripts folder) against its own hash chain,
    its folder's run manifests and the other transcripts of its folder: intact, incomplete, tampered,
    unsigned, unlisted, duplicate or unreadable (docs/review.md, "What verify says"). A file gets the same
    word checked alone or with its folder. A folder also reports transcripts its manifests list that are
    gone (deleted) and damaged manifests. With a public key, each closed transcript's manifest entry must
    carry a valid signature by it; without one, the last line says what an unkeyed check cannot show.
    Exit 0 when every file is intact or incomplete (--strict: intact only) and the folder has no problem,
    1 otherwise."""
    from chaperone.audit.integrity import STATUSES, folder_problems
    from chaperone.review.index import summarize_all, transcript_files
    from chaperone.review.view import verify_line

    targets = list(paths) or _folders(ctx, folder)
    try:
        files = transcript_files(targets)
    except ChaperoneError as exc:
        fail(str(exc))
    keys = _keys(ctx)
    summaries = summarize_all(files, keys)
    problems = [p for f in targets if Path(f).is_dir() for p in folder_problems(Path(f))]
    failing = [s for s in summaries if s.integrity.fails(strict)]
    failed = bool(failing) or bool(problems)
    counts = {status: sum(s.status == status for s in summaries) for status in STATUSES}
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": not failed,
                    "keyed": keys is not None,
                    "keys": sorted(keys or ()),
                    "note": "" if keys else signing.UNKEYED_NOTE,
                    "counts": counts,
                    "files": [{"path": str(s.path), **s.integrity.as_dict()} for s in summaries],
                    "folder_problems": [p.as_dict() for p in problems],
                },
                indent=2,
            )
        )
    else:
        console = _console()
        for s in summaries:
            console.print(verify_line(s), soft_wrap=True)
        for p in problems:
            console.print(Text(p.text(), style="bold red"), soft_wrap=True)
        shown = [f"{n} {status}" for status, n in counts.items() if n or status in ("intact", "incomplete")]
        deleted = sum(p.kind == "deleted" for p in problems)
        unreadable_manifests = len(problems) - deleted
        console.print(
            f"{len(summaries)} transcript(s): {', '.join(shown)}"
            + (f"; {deleted} deleted" if deleted else "")
            + (f"; {unreadable_manifests} run-manifest problem(s)" if unreadable_manifests else ""),
            style="bold",
        )
        if keys is None:
            console.print(signing.UNKEYED_NOTE, style="yellow", soft_wrap=True)
        else:
            console.print(f"signatures checked with key {', '.join(sorted(keys))}", soft_wrap=True)
    sys.exit(EXIT_EXPECTATION_FAILED if failed else EXIT_OK)


def _write(text: str, output: str | None, default_name: str) -> None:
    if output == "-":
        click.echo(text, nl=False)
        return
    target = Path(output or default_name)
    try:
        write_private_text(target, text)  # a conversation's words: owner-only, like its transcript
    except OSError as exc:
        fail(f"{target}: cannot write: {exc.strerror}")
    Console(stderr=True, highlight=False).print(f"wrote {target}", soft_wrap=True)


@review.command()
@click.argument("ident", metavar="ID")
@dir_option
@click.option(
    "--format",
    "fmt",
    default="md",
    metavar="md|html|json",
    show_default=True,
    help="md: readable text; html: a self-contained page; json: the story model + verification.",
)
@click.option(
    "-o", "--output", default=None, help="File to write (default: conversation-<id>.<format> here; '-' for stdout)."
)
@click.pass_context
def export(ctx: click.Context, ident: str, folder: Path | None, fmt: str, output: str | None) -> None:
    """One conversation as a file to read or attach to an audit."""
    from chaperone.review.export import FORMATS, to_json, to_markdown

    if fmt not in FORMATS:
        fail(f"--format: '{fmt}' is not one of {', '.join(FORMATS)}")
    found = _resolve(ctx, folder, ident)
    story, v = found.story, found.integrity
    if fmt == "html":
        from chaperone.review.html import render

        text = render([found], title=f"Conversation {story.conversation_id[:12]} · {story.label}", single=True)
    else:
        text = to_json(story, v) + "\n" if fmt == "json" else to_markdown(story, v)
    _write(text, output, f"conversation-{story.conversation_id[:12]}.{fmt}")


@review.command()
@dir_option
@filter_options
@click.option("-o", "--output", default="review.html", show_default=True, help="File to write ('-' for stdout).")
@click.pass_context
def html(ctx: click.Context, folder: Path | None, filters: Any, output: str) -> None:
    """One self-contained page of the selected conversations, each collapsible, with in-page filters."""
    from chaperone.review.html import render

    selected = [s for s in filters.apply(_scan(ctx, folder))]
    _write(render(selected, title="Chaperone transcripts", single=False), output, "review.html")


@review.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder for the key pair (created 0700). Keep it outside the transcripts folder.",
)
@click.pass_context
def keygen(ctx: click.Context, out_dir: Path) -> None:
    """Make an Ed25519 key pair for signing the run manifests: the private key (0600) for the deployment
    (CHAPERONE_AUDIT_SIGNING_KEY or audit.signing_key), the public key for the auditors (publish it where
    whoever writes the transcripts cannot change it; review verify --public-key)."""
    try:
        private, public, kid = signing.generate(out_dir)
    except ChaperoneError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{out_dir}: cannot write the key pair: {exc.strerror}")
    click.echo(f"key id {kid}")
    click.echo(f"private key (signs; keep it secret, mode 0600): {private}")
    click.echo(f"public key (checks; give it to the auditors): {public}")
    click.echo(f"sign with: export {signing.ENV_SIGNING_KEY}={private}")
    click.echo(f"check with: run.py review verify --public-key {public}")
