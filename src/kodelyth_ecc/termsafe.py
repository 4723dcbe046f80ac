"""Text from bundles, status files and recordings, made safe to print on a terminal.

Hostile text can carry escape sequences (OSC 52 writes the clipboard, OSC 8 makes
links, CSI moves the cursor), carriage returns that overwrite a line, and bidi or
invisible characters that reorder or hide what follows. Everything that prints such
text goes through ``visible_controls`` (or ``one_line``, ``json_safe``); tab and
newline are kept. Stdlib only: ``status`` imports it on its start-up path.
"""

from __future__ import annotations

import re

# Zero-width and bidi marks, the Arabic letter mark (a bidi control), the soft hyphen and
# the Mongolian vowel separator (invisible), deprecated format controls, interlinear
# annotation marks, and the tag characters U+E0000-E007F (invisible text, "ASCII
# smuggling").
_INVISIBLE = (
    "\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb"
    "\U000e0000-\U000e007f"
)
# Characters that would drive a terminal (escape sequences, carriage return, bell, C1
# controls) or hide or reorder text: shown as escapes. Tab and newline are kept.
_CONTROLS = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_INVISIBLE}]")
# The same, newline and tab included: for values that must stay on one line.
_CONTROLS_ONE_LINE = re.compile(f"[\x00-\x1f\x7f-\x9f{_INVISIBLE}]")
# What JSON leaves raw (it escapes only U+0000-U+001F) of the above.
_JSON_RAW_CONTROLS = re.compile(f"[\x7f-\x9f{_INVISIBLE}]")


def _escape_control(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\r":
        return "\\r"
    if char == "\n":
        return "\\n"
    if char == "\t":
        return "\\t"
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


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


def json_safe(text: str) -> str:
    """JSON text with the controls JSON leaves raw written as ``\\uXXXX`` escapes (a
    surrogate pair above U+FFFF): the same JSON value, safe to show on a terminal."""

    def escape(match: re.Match[str]) -> str:
        code = ord(match.group())
        if code < 0x10000:
            return f"\\u{code:04x}"
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"

    return _JSON_RAW_CONTROLS.sub(escape, text) if _JSON_RAW_CONTROLS.search(text) else text


# --- colour ------------------------------------------------------------------------------

# SGR codes of the styles the CLI uses; added to text already made safe above.
_STYLES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33"}


def is_terminal(stream: object) -> bool:
    """Whether ``stream`` is a terminal that understands cursor movement: a tty, and not
    ``TERM=dumb`` (Emacs' shell, some CI logs)."""
    import os

    if os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # closed
        return False


def colour_wanted(stream: object) -> bool:
    """Colour on ``stream``: only on a terminal, and never with ``NO_COLOR`` set and not
    empty (https://no-color.org)."""
    import os

    return not os.environ.get("NO_COLOR") and is_terminal(stream)


def paint(text: str, style: str | None, colour: bool = True) -> str:
    """``text`` (already safe) in ``style`` ("green", "red", "yellow", "dim", "bold") when
    ``colour``; unchanged otherwise or for an unknown style."""
    code = _STYLES.get(style or "") if colour else None
    return f"\x1b[{code}m{text}\x1b[0m" if code else text


def _char_cells(char: str) -> int:
    import unicodedata

    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def cells(text: str) -> int:
    """How many terminal columns ``text`` (safe text) takes: two for a wide character
    (CJK, most emoji), none for a combining mark. ASCII without a lookup."""
    if text.isascii():
        return len(text)
    return sum(_char_cells(char) for char in text)


def cut_cells(text: str, width: int) -> tuple[str, int]:
    """The longest start of ``text`` that fits in ``width`` columns, and its width."""
    if text.isascii():
        piece = text[: max(0, width)]
        return piece, len(piece)
    used = 0
    for i, char in enumerate(text):
        size = _char_cells(char)
        if used + size > width:
            return text[:i], used
        used += size
    return text, used


def fit_cells(text: str, width: int) -> str:
    """``text`` (safe text) cut to ``width`` columns with an ellipsis: one line that
    never wraps, whatever its characters' widths (the progress line)."""
    if cells(text) <= width:
        return text
    piece, _ = cut_cells(text, width - 1)
    return piece + "…" if width > 0 else ""


def fit_width(segments: list[tuple[str, str | None]], width: int, colour: bool) -> str:
    """Segments of (safe text, style) painted and cut to ``width`` columns on screen
    (``cells``: a wide character takes two), with an ellipsis when cut: a line that
    never wraps (a redraw counts lines)."""
    out: list[str] = []
    left = width
    total = sum(cells(text) for text, _ in segments)
    cut = total > width
    if cut:
        left = max(0, width - 1)
    for text, style in segments:
        if left <= 0:
            break
        piece, used = cut_cells(text, left)
        left -= used
        out.append(paint(piece, style, colour))
        if used < cells(text):
            break  # a wide character that does not fit: nothing after it either
    return "".join(out) + ("…" if cut and width > 0 else "")
