"""Sizes, durations and counts as a reader wants them; shared by commands and reports.

Values come from bundles, which anyone can write: nothing here may fail on a
negative, huge or non-finite number, it is shown as given instead.
"""

from __future__ import annotations

import math


def human_bytes(size: int | None) -> str:
    if size is None:
        return "-"
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if not math.isfinite(seconds) or seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def plural(count: int, word: str, words: str | None = None) -> str:
    """``1 worker``, ``2 workers`` (``words`` when the plural is not ``word + "s"``)."""
    return f"{count:,} {word if count == 1 else words or word + 's'}"
