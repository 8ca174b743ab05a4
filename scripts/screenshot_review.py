"""docs/review-html.png, made again: a short chat on scripted models under chunked review, exported with
`run.py review export ... --format html` and photographed in headless chromium (Debian's, via Playwright,
launched as tests/review/test_html.py does).

    .venv/bin/python scripts/screenshot_review.py [-o docs/review-html.png]

No model is loaded and no key is read or written: the chat runs in a throwaway copy of the project
(agents/ and config/ in a temporary folder, where its transcript goes too) whose public policy reviews in
chunks (`streaming: chunks`) and whose models are scripted ones (config/models.yaml, kind `scripted`):
the shipped `scripted-reviewer`, and `scripted-demo-assistant`, defined here, whose answers run to a few
sentences so that chunk verdicts show. The chat has three turns: approved at once, sent back at its third
chunk (the first two had been shown; they are withdrawn) and approved when revised, and withheld. The second
turn's debate is unfolded in the picture.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from PIL import Image
from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WIDTH = 1100

ASSISTANT = "scripted-demo-assistant"
REVIEWER = "scripted-reviewer"  # shipped in config/models.yaml, used as it is
DEMO_ASSISTANT = {
    "kind": "scripted",
    "role": "assistant",
    "rules": [
        {
            "match": r"\bkill\b.*\bprocess",
            "reply": "Find its process id with `ps aux | grep python` first. "
            "Then run `kill <PID>` to ask it to stop politely. "
            "If it ignores that, `kill -9 <PID>` stops it at once.",
        },
        {
            "match": ["roast", "insult"],
            "reply": "Here is a roast for your coworker Dave. He replies to all on every single email. "
            "Honestly, Dave is an idiot who could not find the stapler with both hands and a map. "
            "He heats fish in the office microwave. He books a meeting to plan every meeting.",
            "revision": "Here is a roast for your coworker Dave. He replies to all on every single email. "
            "The mail server now sends him a birthday card. We will miss him, and so will the microwave.",
        },
        {
            "match": ["poison", "harm", "hurt"],
            "reply": "Sure, here is how to deal with the barking dog for good. "
            "Mix a lethal dose of a toxic substance into raw meat and drop it over the fence at night.",
        },
    ],
    "otherwise": "I am a scripted assistant with a few fixed answers.",
}
TURNS = [
    "How do I kill a stuck Python process?",
    "Write a roast of my coworker Dave for his farewell party.",
    "The neighbour's dog barks all night. How do I poison it?",
]
CHUNKS = {"min_tokens": 8, "max_tokens": 48}  # a scripted model streams a word or a space as one token


def make_project(tmp: Path) -> Path:
    """A copy of agents/ and config/ with the demo assistant and a public policy reviewed in chunks."""
    root = tmp / "project"
    shutil.copytree(REPO / "agents", root / "agents")
    shutil.copytree(REPO / "config", root / "config")
    models_path = root / "config" / "models.yaml"
    models = yaml.safe_load(models_path.read_text())
    models["models"][ASSISTANT] = DEMO_ASSISTANT
    models_path.write_text(yaml.safe_dump(models, sort_keys=False))
    policy_path = root / "config" / "policies" / "public.yaml"
    policy = yaml.safe_load(policy_path.read_text())
    policy.update({"streaming": "chunks", "chunks": CHUNKS})
    policy_path.write_text(yaml.safe_dump(policy, sort_keys=False))
    settings_path = root / "config" / "settings.yaml"
    settings = yaml.safe_load(settings_path.read_text())
    settings.update({"transcripts_dir": str(tmp / "transcripts"), "log_file": str(tmp / "chaperone.log")})
    settings_path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return root


def cli(root: Path, *args: str, stdin: str | None = None) -> str:
    """run.py on the throwaway project; no audit key from this environment (the badge is the unsigned one)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAPERONE_AUDIT_")}
    proc = subprocess.run(
        [sys.executable, str(REPO / "run.py"), "--project", str(root), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    if proc.returncode != 0:
        sys.exit(f"run.py {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def screenshot(html: Path, out: Path) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": WIDTH, "height": 900})
        # The page is self-contained: refuse anything that is not the file itself.
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file://") else r.abort())
        page.goto(html.as_uri())
        turns = page.locator("article.turn")
        if turns.count() != len(TURNS):
            sys.exit(f"expected {len(TURNS)} turns on the page, found {turns.count()}")
        second = turns.nth(1)
        second.locator("details.debate > summary").click()
        # What the picture is for: chunk verdicts, one sending the draft back, and the withdrawn text.
        if second.locator(".verdict.chunk.revise").count() != 1 or second.locator(".msg-error").count() != 1:
            sys.exit("the second turn does not show a chunk sent back and its withdrawn text")
        page.evaluate("window.scrollTo(0, 0)")  # the filter bar is sticky: keep it at the top of the picture
        png = page.screenshot(full_page=True)
        browser.close()
    # 256 colours are plenty for a page of text and keep the file small (Pillow comes with matplotlib).
    Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256).save(out, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, default=REPO / "docs" / "review-html.png")
    out = parser.parse_args().output
    with tempfile.TemporaryDirectory(prefix="chaperone-screenshot-") as name:
        tmp = Path(name)
        root = make_project(tmp)
        cli(root, "chat", "--assistant-model", ASSISTANT, "--reviewer-model", REVIEWER, stdin="\n".join(TURNS) + "\n")
        [conv] = json.loads(cli(root, "review", "list", "--json"))["conversations"]
        html = tmp / "chat.html"
        cli(root, "review", "export", conv["id"], "--format", "html", "-o", str(html))
        screenshot(html, out)
    print(f"{out}: {out.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
