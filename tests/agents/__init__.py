"""The real agent CLIs the harness tests drive, installed from npm at pinned versions
by ``.ci/run`` into ``tests/agents/node_modules`` (``package.json`` here pins them)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

BIN = Path(__file__).resolve().parent / "node_modules" / ".bin"
PINNED = {"claude": "2.1.197", "codex": "0.171.0", "opencode": "1.18.33", "gemini": "0.61.0"}


def agent_cli(name: str) -> str:
    """The pinned CLI's path; outside CI a test without it skips, under CI it fails
    (a real-CLI test may never skip there)."""
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail(f"{name} is not installed: .ci/run must install tests/agents (npm)")
    pytest.skip(f"{name} is not installed (npm install --prefix tests/agents)")
