"""The browser view: one self-contained HTML page for one conversation (`review export --format html`) or
many (`review html`). Inline CSS and one small inline script (the filters); nothing is loaded from
anywhere, and a Content-Security-Policy meta tag forbids it anyway (the script is allowed by its hash).

Transcript text is untrusted model output: the template autoescapes everything, so a draft holding
`<script>` or `</details>` shows as text.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from chaperone import __version__
from chaperone.engine.events import INCOMPLETE, TURN_OUTCOMES
from chaperone.review.index import Summary
from chaperone.review.story import CUT_NOTE, local_time, scores_text

# Filters offered on the page: every turn outcome the engine produces, and turns a transcript left unfinished.
PAGE_OUTCOMES = (*TURN_OUTCOMES, INCOMPLETE)


def _asset(name: str) -> str:
    return resources.files("chaperone.review").joinpath("templates", name).read_text(encoding="utf-8")


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("chaperone.review", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["local_time"] = local_time
    env.filters["all_scores"] = scores_text
    env.globals["cut_note"] = CUT_NOTE
    env.filters["diff_class"] = lambda line: (
        "meta"
        if line.startswith(("---", "+++"))
        else "add"
        if line.startswith("+")
        else "del"
        if line.startswith("-")
        else "hunk"
        if line.startswith("@@")
        else "ctx"
    )
    return env


def _csp(script: str) -> str:
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    return (
        f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{digest}'; img-src 'none'; "
        "font-src 'none'; connect-src 'none'; base-uri 'none'; form-action 'none'"
    )


def render(summaries: list[Summary], *, title: str, single: bool) -> str:
    """The page for these transcripts (readable ones only; the caller reports the others)."""
    conversations: list[dict[str, Any]] = []
    for s in summaries:
        if s.story is None:
            continue
        conversations.append({"story": s.story, "v": s.integrity.as_dict(), "row": s.row()})
    categories = sorted({c for conv in conversations for t in conv["story"].turns for c in t.raised})
    outcomes = [o for o in PAGE_OUTCOMES if any(t.outcome == o for c in conversations for t in c["story"].turns)]
    flagged = sum(t.flagged for c in conversations for t in c["story"].turns)  # turns flagged for a human
    script = _asset("review.js")
    page = (
        _environment()
        .get_template("review.html.j2")
        .render(
            title=title,
            single=single,
            conversations=conversations,
            categories=categories,
            outcomes=outcomes,
            flagged=flagged,
            css=Markup(_asset("review.css")),
            script=Markup(script),
            csp=Markup(_csp(script)),
            generated=datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z"),
            version=__version__,
        )
    )
    return page
