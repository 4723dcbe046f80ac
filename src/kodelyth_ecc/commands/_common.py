"""Helpers shared by subcommands: where sessions live, JSON output."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

JSON_SCHEMA_PREFIX = "kodelyth"


def coordination_root(explicit: str | None) -> str:
    if explicit:
        return os.path.abspath(explicit)
    from kodelyth_ecc import gitrepo  # not needed (nor its subprocess) with --coord-root

    return os.path.join(gitrepo.repo_root(), ".orchestration")


def print_json(data: Any) -> None:
    import json

    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


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
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"
