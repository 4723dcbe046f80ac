"""Text from bundles, status files and recordings, made safe to print on a terminal.

Hostile text can carry escape sequences (OSC 52 writes the clipboard, OSC 8 makes
links, CSI moves the cursor), carriage returns that overwrite a line, and bidi or
zero-width marks that reorder or hide what follows. Everything that prints such
text goes through ``visible_controls``; tab and newline are kept. Stdlib only: the
status command and the pane runner's callers import it on their start-up path.
"""

from __future__ import annotations

import re

# Characters that would drive a terminal (escape sequences, carriage return, bell, C1
# controls) or hide or reorder text (zero-width and bidirectional marks): shown as
# escapes. Tab and newline are kept.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
# The same, newline and tab included: for values that must stay on one line.
_CONTROLS_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def _escape_control(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\r":
        return "\\r"
    if char == "\n":
        return "\\n"
    if char == "\t":
        return "\\t"
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible_controls(text: str) -> str:
    """``text`` with every control character written out (``\\x1b``, ``\\r``), so that
    printing it cannot move the cursor, set the title or hide what follows."""
    return _CONTROLS.sub(_escape_control, text) if _CONTROLS.search(text) else text


def one_line(text: str, limit: int | None = None) -> str:
    """``visible_controls`` with newlines and tabs escaped too, cut to ``limit``
    characters with an ellipsis: a bundle value shown inside a one-line message."""
    if _CONTROLS_ONE_LINE.search(text):
        text = _CONTROLS_ONE_LINE.sub(_escape_control, text)
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - 1)] + "…"
    return text
