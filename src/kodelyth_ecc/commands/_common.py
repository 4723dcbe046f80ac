"""Helpers shared by subcommands: where sessions live, JSON output."""

from __future__ import annotations

import os
import sys

# Re-exported: commands have always taken these from here; the library (reports)
# uses kodelyth_ecc.humanize directly.
from kodelyth_ecc.humanize import human_bytes, human_duration

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

JSON_SCHEMA_PREFIX = "kodelyth"

__all__ = [
    "JSON_SCHEMA_PREFIX",
    "coordination_root",
    "human_bytes",
    "human_duration",
    "print_json",
]


def coordination_root(explicit: str | None) -> str:
    if explicit:
        return os.path.abspath(explicit)
    from kodelyth_ecc import gitrepo  # not needed (nor its subprocess) with --coord-root

    return os.path.join(gitrepo.repo_root(), ".orchestration")


def print_json(data: Any) -> None:
    import json

    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
