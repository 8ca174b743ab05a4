"""The docs cannot rot: every command in a fenced bash/sh/console block of README.md and docs/*.md is run.

The rule (docs/testing.md, "The docs test"):

- In a ```bash or ```sh block every line is a command (blank lines and `#` comment lines aside; a line
  ending in a backslash continues on the next; a leading `$ ` is dropped). In a ```console block only the
  lines that start with `$ ` are commands; the rest is output. Other fences (```yaml, ```python, plain ```)
  are not run.
- A command is classified by how it starts: `python run.py`, `.venv/bin/python run.py` or `chaperone`
  (the CLI), `echo ... | <the CLI>` (the CLI with that input), `curl`, `export NAME=VALUE`,
  `python scripts/import_graph.py`, or an entry of EXEMPT below. Anything else fails the test.
- The CLI runs against a throwaway copy of the project (agents/, config/, scenarios/, data/) whose every
  model is a scripted OpenAI-compatible server on 127.0.0.1 (tests/support/eval_fakes.py), with the
  transcripts of tests/support/review_corpus.py in its transcripts folder, from that copy as the working
  directory. It must exit 0 (`scenario`: 0 or 1, an unmet expectation) and print no traceback.
- `serve` is started on a free port (any `--port` is replaced), probed on /healthz, and kept up for the
  `curl` commands after it on the same page (127.0.0.1:8000 is replaced by its address); it is stopped
  with SIGTERM at the next `serve` or at the end of the page and must exit 143. `chat` without piped
  input gets one message and end of input.
- Placeholders: TRANSCRIPT_ID is an id prefix of a transcript in the corpus; RUN_ID is an eval run the
  test makes first (`eval xstest --limit 2 --run-id RUN_ID`).
- `export` lines are evaluated by bash and set the variable for the rest of the page.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.support.eval_fakes import models as fake_models
from tests.support.projects import REPO, make_project
from tests.support.serve_process import ServeProcess

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RUN_FENCES = {"bash", "sh", "console"}
CLI_PREFIXES = (".venv/bin/python run.py ", "python run.py ", "chaperone ")
SCRIPTS = {"scripts/import_graph.py"}  # scripts that only read the source: run as they are
PLACEHOLDER_RUN_ID = "docs-run"

# Commands the docs test does not run, and what covers each instead. An entry must still appear in the
# docs (test_exemptions_are_all_in_the_docs), so this table cannot silently outlive what it excuses.
EXEMPT = {
    "make demo": "needs the real embedded model (minutes); the same command, `run.py scenario scenarios/`, "
    "runs here on scripted models, and tests/e2e/test_embedded_e2e.py (slow) runs a scenario on the real model",
    "make test": "what CI runs (.ci/run); running the whole suite from inside one of its tests would recurse",
    "make bench": "benchmarks/bench.py needs the real embedded model (its figures and report are tested on "
    "scripted models by tests/benchmarks/test_bench.py); endpoint_bench.py is make bench-endpoint",
    "make bench-endpoint": "about a minute of measurement; its endpoint, benchmarks/delay_server.py, is tested by "
    "tests/benchmarks/test_delay_server.py",
    "make bench-serve": "about a minute of load; serving under concurrent clients is tested by "
    "tests/serve/test_serve.py and tests/e2e/test_serve_lifecycle.py",
}


@dataclass
class Command:
    page: Path
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}: {self.text}"


def commands(page: Path) -> list[Command]:
    found: list[Command] = []
    fence: str | None = None
    pending, start = "", 0
    for number, raw in enumerate(page.read_text().splitlines(), start=1):
        line = raw.rstrip()
        if line.lstrip().startswith("```"):
            fence = line.strip()[3:].strip() if fence is None else None
            continue
        if fence not in RUN_FENCES:
            continue
        text = line.strip()
        if not pending:
            start = number
            if fence == "console" and not text.startswith("$ "):
                continue
            if not text or text.startswith("#"):
                continue
            text = text.removeprefix("$ ")
        joined = pending + text
        if joined.endswith("\\"):
            pending = joined[:-1].rstrip() + " "
            continue
        pending = ""
        found.append(Command(page, start, _strip_comment(joined)))
    return found


def _strip_comment(text: str) -> str:
    """The command without a trailing `# comment`: the first ` #` outside quotes starts it."""
    for match in re.finditer(r"\s#", text):
        head = text[: match.start()]
        try:
            shlex.split(head)  # quotes balanced before it: this # is outside them
        except ValueError:
            continue
        return head.strip()
    return text.strip()


def classify(text: str) -> str:
    if text in EXEMPT:
        return "exempt"
    if text.startswith(CLI_PREFIXES):
        return "cli"
    if re.match(r"(echo|printf) .+ \| ", text) and text.split(" | ", 1)[1].startswith(CLI_PREFIXES):
        return "piped-cli"
    if text.startswith("curl "):
        return "curl"
    if re.match(r"export [A-Za-z_][A-Za-z0-9_]*=", text):
        return "export"
    words = shlex.split(text)
    if len(words) >= 2 and words[0] in ("python", "python3", ".venv/bin/python") and words[1] in SCRIPTS:
        return "script"
    return "unclassified"


ALL = [c for page in PAGES for c in commands(page)]


def test_the_docs_have_commands_and_each_is_classified():
    assert len(ALL) >= 20, [str(c) for c in ALL]
    unknown = [str(c) for c in ALL if classify(c.text) == "unclassified"]
    assert not unknown, "commands the docs test cannot classify (see docs/testing.md):\n" + "\n".join(unknown)


def test_relative_links_resolve():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert not broken, broken


def test_exemptions_are_all_in_the_docs():
    documented = {c.text for c in ALL}
    stale = sorted(set(EXEMPT) - documented)
    assert not stale, f"EXEMPT entries no longer in any fenced block of the docs: {stale}"


# ---------------------------------------------------------------------------------------------------------
# Running a page's commands


class Page:
    """One page's commands, run in order against a throwaway scripted project."""

    def __init__(self, tmp_path: Path, world, corpus):
        self.tmp = tmp_path
        self.world = world
        self.root = self._project(tmp_path, world)
        shutil.copytree(corpus.folder, tmp_path / "transcripts")  # the project's transcripts_dir
        self.placeholders = {"TRANSCRIPT_ID": corpus.insult.stem.split("-")[1][:8]}
        self.env = {**os.environ, "COLUMNS": "120", "NO_COLOR": "1"}
        self.server: ServeProcess | None = None

    @staticmethod
    def _project(tmp_path: Path, world) -> Path:
        endpoint = fake_models(world.server.base_url)["remote"]
        shipped = yaml.safe_load((REPO / "config" / "models.yaml").read_text())["models"]
        # Every model the shipped config names is the scripted endpoint (replay and scripted ones stay as they are).
        models = {
            name: spec if spec.get("kind") in ("replay", "scripted") else dict(endpoint)
            for name, spec in shipped.items()
        }
        root = make_project(tmp_path, models, assistant_model="embedded", reviewer_model="embedded")
        shutil.rmtree(root / "scenarios")
        shutil.copytree(REPO / "scenarios", root / "scenarios")
        # The data sets, every tenth row (both labels, every type): the commands are checked here, not the figures.
        (root / "data").mkdir()
        for path in (REPO / "data").iterdir():
            lines = path.read_text().splitlines(keepends=True)
            if path.suffix == ".csv":
                lines = lines[:1] + lines[1::10]
            elif path.suffix == ".jsonl":
                lines = lines[::10]
            (root / "data" / path.name).write_text("".join(lines))
        return root

    def run(self, command: Command) -> None:
        kind = classify(command.text)
        if kind == "exempt":
            return
        assert kind != "unclassified", f"cannot classify {command}"
        getattr(self, "_" + kind.replace("-", "_"))(command)

    # -- the kinds ------------------------------------------------------------------------------------

    def _cli(self, command: Command, stdin: str | None = None) -> None:
        text = command.text
        prefix = next(p for p in CLI_PREFIXES if text.startswith(p))
        args = self._expand(shlex.split(text[len(prefix) :]))
        sub = next((a for a in args if not a.startswith("-")), "")
        if sub == "serve":
            return self._serve(command, args)
        if sub == "chat" and stdin is None:
            stdin = "How do I kill a Python process?\n"
        if "RUN_ID" in command.text:
            self._make_run()
        proc = self._run_cli(args, stdin=stdin)
        allowed = {0, 1} if sub == "scenario" else {0}  # scenario: 1 is an unmet expectation
        self._check(command, proc, allowed)

    def _piped_cli(self, command: Command) -> None:
        left, right = command.text.split(" | ", 1)
        stdin = subprocess.run(["bash", "-c", left], capture_output=True, text=True, env=self.env, check=True).stdout
        self._cli(Command(command.page, command.line, right), stdin=stdin)

    def _serve(self, command: Command, args: list[str]) -> None:
        self._stop_server()
        i = args.index("serve")
        rest = args[i + 1 :]
        while "--port" in rest:  # the test's own free port instead
            j = rest.index("--port")
            del rest[j : j + 2]
        self.server = ServeProcess(self.root, *rest, env=self.env)
        self.server.start(timeout=60)
        with urllib.request.urlopen(f"http://127.0.0.1:{self.server.port}/healthz", timeout=10) as response:
            assert response.status == 200, f"{command}: /healthz answered {response.status}"
        assert "Traceback" not in self.server.output, f"{command}:\n{self.server.output}"

    def _curl(self, command: Command) -> None:
        assert self.server is not None, f"{command}: no `serve` before it on this page"
        line = command.text.replace("127.0.0.1:8000", f"127.0.0.1:{self.server.port}")
        proc = subprocess.run(["bash", "-c", line], capture_output=True, text=True, env=self.env, timeout=60)
        assert proc.returncode == 0, f"{command}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        assert proc.stdout.lstrip().startswith("{"), f"{command}: not a JSON answer:\n{proc.stdout}"

    def _export(self, command: Command) -> None:
        name = re.match(r"export ([A-Za-z_][A-Za-z0-9_]*)=", command.text).group(1)
        proc = subprocess.run(
            ["bash", "-c", f'{command.text}\nprintf %s "${name}"'], capture_output=True, text=True, env=self.env
        )
        assert proc.returncode == 0 and proc.stdout, f"{command}: {proc.stderr}"
        self.env[name] = proc.stdout

    def _script(self, command: Command) -> None:
        words = shlex.split(command.text)
        proc = subprocess.run(
            [sys.executable, str(REPO / words[1]), *words[2:]], capture_output=True, text=True, cwd=REPO, timeout=120
        )
        self._check(command, proc, {0})

    # -- helpers --------------------------------------------------------------------------------------

    def _expand(self, args: list[str]) -> list[str]:
        out: list[str] = []
        for arg in args:
            for name, value in self.placeholders.items():
                arg = arg.replace(name, value)
            arg = arg.replace("RUN_ID", PLACEHOLDER_RUN_ID)
            if any(ch in arg for ch in "*?["):  # a shell glob, expanded in the project as the shell would
                matches = sorted(glob.glob(arg, root_dir=self.root))
                out.extend(matches or [arg])
            else:
                out.append(arg)
        return out

    def _make_run(self) -> None:
        if not (self.root / "evals" / PLACEHOLDER_RUN_ID).exists():
            proc = self._run_cli(["eval", "xstest", "--limit", "2", "--run-id", PLACEHOLDER_RUN_ID])
            assert proc.returncode == 0, proc.stdout + proc.stderr

    def _run_cli(self, args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(REPO / "run.py"), "--project", str(self.root), *args],
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            cwd=self.root,
            env=self.env,
            timeout=300,
        )

    @staticmethod
    def _check(command: Command, proc: subprocess.CompletedProcess, allowed: set[int]) -> None:
        output = proc.stdout + proc.stderr
        assert proc.returncode in allowed, f"{command}: exit {proc.returncode} (expected {allowed})\n{output}"
        assert "Traceback" not in output, f"{command}: traceback\n{output}"

    def _stop_server(self) -> None:
        if self.server is not None:
            code = self.server.stop()
            output = self.server.output
            self.server = None
            assert code == 143, f"serve stopped with exit {code} (SIGTERM: 143)\n{output}"
            assert "Traceback" not in output, output

    def close(self) -> None:
        try:
            self._stop_server()
        finally:
            if self.server is not None and self.server.proc is not None:
                self.server.proc.kill()


RUNNABLE = [p for p in PAGES if any(classify(c.text) != "exempt" for c in commands(p))]


def _run_page(page: Path, tmp_path: Path, world, corpus) -> str | None:
    """Run one page's commands in order; the first failure, or None."""
    (tmp_path / page.stem).mkdir()
    runner = Page(tmp_path / page.stem, world, corpus)
    try:
        for command in commands(page):
            runner.run(command)
    except AssertionError as exc:
        return str(exc)
    finally:
        try:
            runner.close()
        except AssertionError as exc:
            return str(exc)
    return None


def test_every_documented_command_runs(world, corpus, tmp_path):
    """The pages run side by side (each page's commands in order, in its own project): they share nothing
    but the scripted endpoint, and most of the time is Python starting run.py."""
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        failures = list(pool.map(lambda page: _run_page(page, tmp_path, world, corpus), RUNNABLE))
    errors = [f"{page.relative_to(REPO)}: {error}" for page, error in zip(RUNNABLE, failures, strict=True) if error]
    assert not errors, "\n\n".join(errors)
    assert time.monotonic() - started < 240, "the docs' commands should stay few and fast"


def test_the_extraction_rule(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "```bash\n"
        "# a comment line\n"
        "python run.py review list   # a trailing comment\n"
        "$ chaperone eval xstest \\\n"
        "    --limit 2\n"
        "make demo\n"
        "```\n"
        "```console\n"
        "$ curl -s 'http://x/#frag'\n"
        "some output\n"
        "```\n"
        "```python\n"
        "python run.py never\n"
        "```\n"
        "```sh\n"
        "rm -rf /\n"
        "```\n"
    )
    found = [(c.line, c.text, classify(c.text)) for c in commands(page)]
    assert found == [
        (3, "python run.py review list", "cli"),
        (4, "chaperone eval xstest --limit 2", "cli"),
        (6, "make demo", "exempt"),
        (9, "curl -s 'http://x/#frag'", "curl"),
        (16, "rm -rf /", "unclassified"),
    ]
