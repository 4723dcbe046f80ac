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


def human_elapsed(seconds: float | None) -> str:
    """A running clock in whole seconds (``12s``, ``1m12s``, ``2h05m``): it is redrawn
    while it runs, and tenths would change on every look."""
    if seconds is None:
        return "-"
    if not math.isfinite(seconds) or seconds < 0:
        return f"{seconds:.0f}s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def time_ago(seconds: float) -> str:
    """How long ago, as one says it: ``just now``, ``40s ago``, ``12 min ago``,
    ``3 h ago``, ``2 days ago`` (a clock set back shows ``just now``)."""
    if not math.isfinite(seconds) or seconds < 5:
        return "just now"
    if seconds < 60:
        return f"{int(seconds)}s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    return plural(int(seconds // 86400), "day") + " ago"


def local_time(epoch: float) -> str:
    """A moment in the reader's time zone, to the minute: ``2026-12-08 10:14``."""
    import time

    try:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))
    except (OverflowError, OSError, ValueError):
        return "-"
