"""Start-up is a feature: the everyday commands must not import what only other
commands need (msgspec for bundles, the proxy, the sandbox, the planner). Checked in a
fresh interpreter, as a user's call starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import Sandbox
from tests.swarm_helpers import started, wait_done

HEAVY = (
    "msgspec",
    "kodelyth_ecc.proxy",
    "kodelyth_ecc.sandbox",
    "kodelyth_ecc.exchanges",
    "kodelyth_ecc.execute",
    "kodelyth_ecc.plan",
    "kodelyth_ecc.retry",
    "kodelyth_ecc.apply",
    "kodelyth_ecc.compare",
    "difflib",
)

_PROBE = """
import contextlib, io, json, sys
from kodelyth_ecc.main import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
print(json.dumps([code, [m for m in HEAVY if m in sys.modules]]))
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["--version"],
        ["help"],
        ["status"],
        ["status", "s"],
        ["status", "s", "--json"],
        ["logs", "s", "a"],
        ["attach", "--help"],
        ["diff", "--help"],
        ["apply", "--help"],
        ["retry", "--help"],
        ["resume", "--help"],
    ],
    ids=" ".join,
)
def test_everyday_commands_start_without_heavy_imports(sandbox: Sandbox, argv: list[str]) -> None:
    started(sandbox, "s", agents="a")
    wait_done(sandbox, "s")
    probe = f"HEAVY = {HEAVY!r}\n{_PROBE}"
    out = subprocess.run(
        [sys.executable, "-c", probe, *argv],
        cwd=sandbox.repo, env=os.environ, capture_output=True, text=True, check=True,
    )  # fmt: skip
    code, loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert code == 0, out
    assert loaded == [], f"{' '.join(argv)} imported {loaded}"
