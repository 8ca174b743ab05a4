"""The slash commands of the terminal chat: what they are called, what they take, and their help."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (argument synopsis, what it does)
    "debate": ("on|off", "show or hide the drafts, verdicts and critiques behind each answer"),
    "policy": ("[NAME]", "switch the reviewer's policy for the next turns (no name: list the policies)"),
    "history": ("", "the turns so far: what you asked, what you got, how the review went"),
    "transcript": ("", "where this conversation is being written"),
    "help": ("", "this list"),
    "quit": ("", "end the chat (Ctrl-D does the same)"),
}
ALIASES = {"exit": "quit", "q": "quit", "?": "help"}


@dataclass(frozen=True)
class Message:
    """Text to send to the assistant."""

    text: str


@dataclass(frozen=True)
class Command:
    name: str
    arg: str = ""


@dataclass(frozen=True)
class Invalid:
    """A slash command that cannot run, with what to tell the user."""

    problem: str


def parse(line: str) -> Message | Command | Invalid | None:
    """What the user typed: a message, a command, a mistake, or nothing (blank input)."""
    text = line.strip()
    if not text:
        return None
    if text.startswith("//"):  # an escape for messages that start with a slash
        return Message(text[1:])
    if not text.startswith("/"):
        return Message(line.strip("\n"))
    word, _, arg = text[1:].partition(" ")
    name = ALIASES.get(word.lower(), word.lower())
    arg = arg.strip()
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, [*COMMANDS, *ALIASES], n=1, cutoff=0.6)
        hint = f" Did you mean /{ALIASES.get(close[0], close[0])}?" if close else ""
        return Invalid(
            f"unknown command /{word}.{hint} Type /help for the list "
            "(start a message with // to send a line that begins with /)."
        )
    if name == "debate" and arg.lower() not in ("on", "off"):
        return Invalid("/debate takes on or off, for example: /debate on")
    if name in ("history", "transcript", "help", "quit") and arg:
        return Invalid(f"/{name} takes no argument")
    return Command(name, arg.lower() if name == "debate" else arg)


def help_rows() -> list[tuple[str, str]]:
    return [(f"/{name} {synopsis}".rstrip(), text) for name, (synopsis, text) in COMMANDS.items()]
