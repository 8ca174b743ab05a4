"""Model text shown in a terminal is untrusted: control characters are made visible, never interpreted."""

from __future__ import annotations

from rich.text import Text

# C0 controls but newline and tab, DEL, and C1 controls: a model could otherwise write terminal escape
# sequences (clear the screen, move the cursor, retitle the window) into what the view prints.
CONTROLS = {c: f"\\x{c:02x}" for c in [*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0)]}


def untrusted(text: str, style: str = "") -> Text:
    """Model or user text for the terminal, with control characters shown as visible escapes."""
    return Text(text.translate(CONTROLS), style=style)
