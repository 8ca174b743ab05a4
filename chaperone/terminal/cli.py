"""`python run.py scenario` and `python run.py chat`: the terminal front doors of the guarded chat.

Exit codes: 0 every expectation held (chat: ended normally), 1 an expectation failed, 2 bad input.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from chaperone import signals
from chaperone.errors import EXIT_EXPECTATION_FAILED, EXIT_OK, ChaperoneError
from chaperone.startup import fail, open_project, ready_pool


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON instead of the coloured view.")
@click.option(
    "--show-drafts/--hide-drafts",
    default=True,
    show_default=True,
    help="Show the debate (drafts, verdicts, critiques) or only what the user would get.",
)
@click.option("--policy", default=None, help="Override every scenario's policy.")
@click.pass_context
def scenario(ctx: click.Context, paths: tuple[Path, ...], as_json: bool, show_drafts: bool, policy: str | None) -> None:
    """Run scenario files (files or folders; default: the project's scenarios/)."""
    from chaperone.terminal.console_view import ConsoleView, failure_lines, summary_table
    from chaperone.terminal.scenario import find_scenario_files, load_scenario, models_used, run_scenario

    try:
        project = open_project(ctx)
        files = find_scenario_files(list(paths) or [project.root / "scenarios"])
        loaded = [load_scenario(f, project) for f in files]
        if policy is not None:
            project.policy(policy, origin="--policy")
            for item in loaded:
                item.spec.policy = policy
    except ChaperoneError as exc:
        fail(str(exc))

    # Piped output (CI logs, files) gets 120 columns instead of rich's 80 so the table stays readable.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    view = ConsoleView(console, show_drafts=show_drafts)
    try:
        pool = ready_pool(project, {name for item in loaded for name in models_used(item, project)})
    except ChaperoneError as exc:
        fail(str(exc))
    run_id = uuid.uuid4().hex[:12]

    async def run_all() -> list:
        results = []
        # With --json stdout stays clean JSON; progress goes to stderr (a spinner when it is a terminal).
        progress = Console(stderr=True)
        try:
            for n, item in enumerate(loaded, start=1):
                policy_name = item.spec.policy or project.settings.default_policy
                if not as_json:
                    view.heading(item.spec.name, f"{item.path.name} · policy {policy_name}")
                    results.append(await run_scenario(item, project, pool, sinks=[view], run_id=run_id))
                    continue
                with progress.status(f"scenario {n}/{len(loaded)}: {escape(item.spec.name)}"):
                    results.append(await run_scenario(item, project, pool, run_id=run_id))
        finally:
            await pool.close()
        return results

    try:
        results = signals.run(run_all())
    except ChaperoneError as exc:
        fail(str(exc))
    except (KeyboardInterrupt, signals.Terminated) as stop:
        Console(stderr=True).print(
            "[yellow]interrupted[/]: the transcripts of the turns in progress are closed", highlight=False
        )
        sys.exit(getattr(stop, "code", 130))

    all_met = all(r.met for r in results)
    if as_json:
        click.echo(json.dumps({"run_id": run_id, "met": all_met, "results": [r.as_dict() for r in results]}, indent=2))
    else:
        console.print(summary_table(results))
        for line in failure_lines(results):
            console.print(f"[red]✗[/] {escape(line)}", soft_wrap=True)
        console.print(f"transcripts: {project.transcripts_dir}  (run {run_id})", style="dim")
    sys.exit(EXIT_OK if all_met else EXIT_EXPECTATION_FAILED)


@click.command()
@click.option("--policy", default=None, help="Reviewer policy (default: settings.default_policy). /policy switches it.")
@click.option("--assistant", default=None, help="Assistant agent from agents/ (default: settings.agents.assistant).")
@click.option("--reviewer", default=None, help="Reviewer agent from agents/ (default: settings.agents.reviewer).")
@click.option("--assistant-model", default=None, help="Model from config/models.yaml for the assistant.")
@click.option("--reviewer-model", default=None, help="Model from config/models.yaml for the reviewer.")
@click.option("--max-revisions", type=click.IntRange(0, 20), default=None, help="Redrafts before the fallback.")
@click.option(
    "--debate/--no-debate",
    default=False,
    show_default=True,
    help="Show the drafts, verdicts and critiques (/debate on|off switches it).",
)
@click.pass_context
def chat(
    ctx: click.Context,
    policy: str | None,
    assistant: str | None,
    reviewer: str | None,
    assistant_model: str | None,
    reviewer_model: str | None,
    max_revisions: int | None,
    debate: bool,
) -> None:
    """Talk to the guarded assistant in the terminal (the embedded model by default)."""
    from chaperone.engine.choice import SessionChoice, flag_blame, resolve
    from chaperone.engine.chunked_review import unavailable as chunk_fallback
    from chaperone.engine.conversation import Conversation
    from chaperone.terminal.chat import ChatSession, piped_input, terminal_input
    from chaperone.terminal.chat_view import ChatView, TurnStatus

    console = Console(highlight=False)
    try:
        project = open_project(ctx)
        choice = SessionChoice(
            policy=policy,
            assistant=assistant,
            reviewer=reviewer,
            assistant_model=assistant_model,
            reviewer_model=reviewer_model,
            max_revisions=max_revisions,
        )
        cast = resolve(project, choice, flag_blame)
        pool = ready_pool(project, cast.models)
        view, status = ChatView(console, show_drafts=debate), TurnStatus(console)
        with console.status("loading models…"):
            conv = Conversation(project, pool, cast, kind="chat", sinks=[view], watchers=[status])
    except ChaperoneError as exc:
        fail(str(exc))
    a, r = conv.chat.assistant, conv.chat.reviewer
    banner = (
        f"[bold]Chaperone chat[/] · assistant {escape(a.name)} ({escape(a.model.label)}) · "
        f"reviewer {escape(r.name)} ({escape(r.model.label)}) · policy [bold]{escape(conv.policy.name)}[/]\n"
        "[dim]Enter sends · Esc then Enter for a new line · /help lists commands · Ctrl-C cancels a turn · "
        f"Ctrl-D or /quit ends[/]\n[dim]transcript: {escape(str(conv.transcript_path))}[/]"
    )
    if conv.policy.streaming == "chunks":  # say so up front: text will appear before the whole answer is judged
        why = chunk_fallback(a.model, r.model)
        banner += (
            f"\n[yellow]policy asks for chunked review, but {escape(why)}: answers are reviewed whole[/]"
            if why
            else "\n[green]chunked review:[/] [dim]each part is shown once the reviewer approves it; a part sent back "
            "is marked withdrawn[/]"
        )
    scripted = list(dict.fromkeys(m.name for m in (a.model, r.model) if m.scripted))
    if scripted:
        banner += (
            f"\n[bold yellow]scripted:[/] [yellow]{escape(', '.join(scripted))} answer by fixed rules from "
            "config/models.yaml: no model, no real judgement[/]"
        )
    read = terminal_input() if sys.stdin.isatty() and sys.stdout.isatty() else piped_input()

    session = ChatSession(conv, console, view, status, read, banner)

    async def run() -> None:
        try:
            await session.run()
        finally:
            await pool.close()

    asyncio.run(run())
    sys.exit(session.exit_code)
