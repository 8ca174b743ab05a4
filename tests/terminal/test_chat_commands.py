"""Parsing what a person types into the chat."""

import pytest

from chaperone.terminal.commands import Command, Invalid, Message, parse


@pytest.mark.parametrize(
    "line, expected",
    [
        ("hello", Message("hello")),
        ("  two\nlines  ", Message("  two\nlines  ".strip("\n"))),
        ("/debate on", Command("debate", "on")),
        ("/DEBATE Off", Command("debate", "off")),
        ("/policy lab", Command("policy", "lab")),
        ("/policy", Command("policy", "")),
        ("/exit", Command("quit")),
        ("/q", Command("quit")),
        ("//etc/hosts is a file", Message("/etc/hosts is a file")),
        ("", None),
        ("   ", None),
    ],
)
def test_parse(line, expected):
    assert parse(line) == expected


@pytest.mark.parametrize(
    "line, says",
    [
        ("/debate", "/debate takes on or off"),
        ("/debate maybe", "/debate takes on or off"),
        ("/histroy", "Did you mean /history?"),
        ("/polcy lab", "Did you mean /policy?"),
        ("/xyzzy", "unknown command /xyzzy. Type /help"),
        ("/quit now", "/quit takes no argument"),
    ],
)
def test_mistakes_get_a_helpful_message(line, says):
    result = parse(line)
    assert isinstance(result, Invalid) and says in result.problem
