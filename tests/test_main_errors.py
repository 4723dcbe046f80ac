"""The top-level handler: values that are not numbers of seconds, closed streams,
exception text with control characters."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from kodelyth_ecc.main import _shown
from tests.conftest import Sandbox


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0"])
def test_a_timeout_must_be_a_finite_number_of_seconds(sandbox: Sandbox, value: str) -> None:
    result = sandbox.cli("status", "s", "--wait", "--timeout", value)
    assert result.code == 2
    assert "must be a number of seconds more than 0" in result.stderr


def test_a_closed_stdout_is_not_an_internal_error(sandbox: Sandbox) -> None:
    proc = subprocess.run(
        f"exec {sys.executable} -m kodelyth_ecc status --json >&-",
        shell=True, cwd=sandbox.repo, env=os.environ, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc
    assert "internal error" not in proc.stderr


def test_exception_text_reaches_the_terminal_escaped() -> None:
    shown = _shown(RuntimeError("bad \x1b]52;c;aGk=\x07 value\nnext"))
    assert "\x1b" not in shown and "\x07" not in shown and "\n" not in shown
