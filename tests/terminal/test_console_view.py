"""The terminal views print model text as data: no escape sequence from a draft reaches the terminal."""

import io

from rich.console import Console

from chaperone.engine.events import Delivered, Draft, Usage, VerdictEvent
from chaperone.terminal.chat_view import ChatView
from chaperone.terminal.console_view import ConsoleView

HOSTILE = "fine\x1b[2J\x1b]0;owned\x07 text\x9b31m and \x08\x08back"


def rendered(view_cls, *events) -> str:
    buf = io.StringIO()
    view = view_cls(Console(file=buf, force_terminal=True, width=100, color_system=None), show_drafts=True)
    for e in events:
        view(e)
    return buf.getvalue()


def test_control_characters_from_a_model_are_shown_not_obeyed():
    events = [
        Draft(turn=1, source="a", round=1, content=HOSTILE, model="m", usage=Usage(), latency_s=0.1),
        VerdictEvent(
            turn=1,
            source="r",
            round=1,
            decision="revise",
            categories=[],
            critique=HOSTILE,
            readable=True,
            raw="",
            model="m",
            usage=Usage(),
            latency_s=0.1,
        ),
        Delivered(turn=1, content=HOSTILE, revisions=1),
    ]
    for view_cls in (ConsoleView, ChatView):
        out = rendered(view_cls, *events)
        for raw in ("\x1b[2J", "\x1b]0;", "\x07", "\x9b", "\x08"):
            assert raw not in out
        assert out.count("\\x1b[2J") == 3 and "\\x9b31m" in out


def test_an_answer_cut_at_the_token_limit_says_so():
    draft = Draft(
        turn=1, source="a", round=1, content="Run kill and", model="m", usage=Usage(), latency_s=0.1, cut=True
    )
    for view_cls in (ConsoleView, ChatView):
        shown = rendered(view_cls, draft, Delivered(turn=1, content="Run kill and", revisions=0, cut=True))
        assert "(cut at the token limit)" in shown and "· cut at the token limit" in shown, view_cls
        assert "cut at the token limit" not in rendered(view_cls, Delivered(turn=1, content="Done.", revisions=0))
