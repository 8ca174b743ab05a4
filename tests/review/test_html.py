"""The browser view: a self-contained page, checked in a real headless chromium (Debian's, via Playwright).
This test fails, never skips, when chromium or playwright is missing: `make test` installs both."""

import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from chaperone.review.html import render
from chaperone.review.index import scan
from tests.support.projects import REPO, run_cli
from tests.support.review_corpus import build_corpus

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
ARTIFACTS = REPO / "tests" / "artifacts"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


def open_page(browser, path: Path):
    """A fresh page that records every request that is not the file itself, and any dialog."""
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    outside, dialogs = [], []
    page.route(
        "**/*",
        lambda route: (
            route.continue_()
            if route.request.url.startswith("file://")
            else (outside.append(route.request.url), route.abort())
        ),
    )
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(path.as_uri())
    return page, outside, dialogs


def test_the_page_is_self_contained_and_escapes_model_text(corpus):
    html = render(scan([corpus.folder]), title="t", single=False)
    assert "<script src" not in html and "<link" not in html and "@import" not in html and "url(" not in html
    assert not re.search(r"(src|href)=[\"']?https?:", html)
    assert re.search(r'<meta http-equiv="Content-Security-Policy" content="default-src \'none\';', html)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;/details&gt;" in html
    assert "<script>alert(1)" not in html
    assert html.count("<script>") == 1  # ours, allowed by its hash in the CSP


def test_export_html_in_a_real_browser(corpus, browser, tmp_path):
    out = tmp_path / "chat.html"
    prefix = corpus.chat.stem.split("-")[1][:8]
    proc = run_cli("review", "export", prefix, "--dir", str(corpus.folder), "--format", "html", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    page, outside, dialogs = open_page(browser, out)
    expect(page.locator(".badge")).to_have_text("✓ intact · hash chain and run manifest agree · 15 records")
    turns = page.locator("article.turn")
    expect(turns).to_have_count(2)
    second = turns.nth(1)
    expect(second.locator(".note")).to_have_text("policy switched from public to lab")
    expect(second.locator(".msg-withheld")).to_be_visible()
    expect(second.locator(".chip").first).to_have_text("violence")
    # The debate is folded: the rejected draft (which holds markup) is not visible until unfolded.
    draft = second.locator(".draft .text").first
    expect(draft).to_be_hidden()
    second.locator("details.debate > summary").click()
    expect(draft).to_be_visible()
    expect(draft).to_have_text("Poison the dog with <script>alert(1)</script></details>")
    expect(second.locator(".verdict.revise .critique").first).to_have_text("Harm to an animal.")
    expect(second.locator(".diff .d-add")).to_have_text("+Mix it into meat.")
    # The draft's </details> did not close the debate early: both rounds are inside it.
    expect(second.locator("details.debate .round")).to_have_count(2)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "review_export.png"), full_page=True)
    # Filters: untick "approved" and only the withheld turn stays.
    page.get_by_label("approved").uncheck()
    expect(turns.nth(0)).to_be_hidden()
    expect(second).to_be_visible()
    expect(page.locator("#filter-count")).to_have_text("showing 1 of 2 turns")
    page.get_by_label("approved").check()
    page.select_option("#category-filter", "violence")
    expect(turns.nth(0)).to_be_hidden()
    expect(page.locator("#filter-count")).to_have_text("showing 1 of 2 turns")
    assert outside == [] and dialogs == []
    page.close()


def test_index_page_filters_conversations_and_marks_tampering(corpus, browser, tmp_path):
    folder = tmp_path / "transcripts"
    shutil.copytree(corpus.folder, folder)
    edited = folder / corpus.insult.name
    edited.write_text(edited.read_text().replace("Drop the insult.", "Looks fine."))
    out = tmp_path / "index.html"
    proc = run_cli("review", "html", "--dir", str(folder), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    page, outside, dialogs = open_page(browser, out)
    ARTIFACTS.mkdir(exist_ok=True)
    convs = page.locator("section.conv")
    expect(convs).to_have_count(4)
    expect(page.locator(".badge-tampered")).to_have_count(1)
    expect(page.locator(".badge-tampered")).to_contain_text("TAMPERED: line 4: hash does not match")
    expect(page.locator(".badge-incomplete")).to_have_count(1)
    expect(page.locator(".badge-intact")).to_have_count(2)
    # Conversations are folded; a conversation's turns show when it is unfolded.
    first_turn = convs.nth(0).locator("article.turn").first
    expect(first_turn).to_be_hidden()
    convs.nth(0).locator("summary").first.click()
    expect(first_turn).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "review_index.png"), full_page=True)
    page.select_option("#category-filter", "harassment")
    expect(page.locator("section.conv:visible")).to_have_count(1)
    expect(page.locator("section.conv:visible .conv-label")).to_have_text("Scenario insult")
    page.select_option("#category-filter", "")
    page.get_by_label("withheld").uncheck()
    page.get_by_label("approved").uncheck()
    expect(page.locator("section.conv:visible")).to_have_count(0)
    assert outside == [] and dialogs == []
    page.close()


def test_a_heads_scores_and_a_flagged_turn_show_on_the_page(corpus, browser, tmp_path):
    """The reviewer head's conversation of the corpus: a blocking category sends the first draft back, the
    revision is approved with its overall score in the policy's flag band, and a refusal is approved by the
    request head."""
    out = tmp_path / "reagent.html"
    prefix = corpus.reagent.stem.split("-")[1][:8]
    proc = run_cli("review", "export", prefix, "--dir", str(corpus.head_folder), "--format", "html", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    page, outside, dialogs = open_page(browser, out)
    turns = page.locator("article.turn")
    expect(turns).to_have_count(2)
    first, second = turns.nth(0), turns.nth(1)
    # The flag is on the turn's header, seen while the debate is still folded.
    expect(first.locator(".turn-head .flag")).to_have_text("⚑ flagged for a human")
    expect(first.locator(".turn-head .flag")).to_be_visible()
    expect(second.locator(".flag")).to_have_count(0)
    first.locator("details.debate > summary").click()
    sent_back, approved = first.locator(".verdict.revise"), first.locator(".verdict.approve")
    expect(sent_back.locator(".head-scores")).to_have_text(
        "head not_ok 0.83 ≥ 0.5 · flag band [0.3, 0.5) · hazardous_chemistry 0.91 ≥ 0.5 (blocking)"
        " · rule: blocking category"
    )
    expect(sent_back.locator(".flag")).to_have_count(0)
    expect(approved.locator(".who .flag")).to_have_text("⚑ flagged for a human")
    expect(approved.locator(".head-scores")).to_have_text(
        "head not_ok 0.41 < 0.5 · flag band [0.3, 0.5) · hazardous_chemistry 0.22 < 0.5 (blocking)"
        " · rule: below every threshold"
    )
    expect(approved.locator(".head-scores")).to_have_attribute(
        "title", "head scores: not_ok 0.41 · hazardous_chemistry 0.22 · unspecified 0.09 · violence 0.03"
    )
    second.locator("details.debate > summary").click()
    expect(second.locator(".head-scores")).to_have_text("request head P(request harmful) 0.97 ≥ 0.0292")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "review_head.png"), full_page=True)
    # The filter: only the flagged turn stays.
    page.get_by_label("only flagged turns").check()
    expect(first).to_be_visible()
    expect(second).to_be_hidden()
    expect(page.locator("#filter-count")).to_have_text("showing 1 of 2 turns")
    assert outside == [] and dialogs == []
    page.close()

    # The index page marks the conversation in its folded summary.
    index = tmp_path / "index.html"
    assert run_cli("review", "html", "--dir", str(corpus.head_folder), "-o", str(index)).returncode == 0
    page, outside, dialogs = open_page(browser, index)
    expect(page.locator("section.conv summary .flag")).to_have_text("⚑ flagged: turn 1")
    expect(page.get_by_label("only flagged turns")).to_be_visible()
    assert outside == [] and dialogs == []
    page.close()


def test_head_fields_from_an_edited_transcript_stay_text(corpus, browser, tmp_path):
    """A score's name and the rule come from the transcript: markup in them shows as text (the file is then
    tampered, and still shown)."""
    folder = tmp_path / "transcripts"
    shutil.copytree(corpus.head_folder, folder)
    edited = folder / corpus.reagent.name
    text = edited.read_text().replace("unspecified", "<img src=x onerror=alert(1)>")
    edited.write_text(text.replace("blocking category", "<script>alert(2)</script>"))
    html = render(scan([folder]), title="t", single=True)
    assert "<img src=x" not in html and "<script>alert(2)" not in html and html.count("<script>") == 1
    assert "rule: &lt;script&gt;alert(2)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt; 0.12" in html  # in the title attribute: every score
    out = tmp_path / "edited.html"
    out.write_text(html)
    page, outside, dialogs = open_page(browser, out)
    expect(page.locator(".badge-tampered")).to_have_count(1)
    page.locator("details.debate > summary").first.click()
    expect(page.locator(".verdict.revise .head-scores")).to_contain_text("rule: <script>alert(2)</script>")
    assert outside == [] and dialogs == []
    page.close()
