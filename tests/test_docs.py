"""The README's commands and the CLI reference must match what actually runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _ci_command() -> str:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    return next(line for line in lines if line.startswith("python3 -m venv"))


def test_ci_runs_the_readme_test_command() -> None:
    head = (ROOT / "README.md").read_text().splitlines()[:5]
    assert _ci_command() in head


def test_readme_opens_with_the_demo_command() -> None:
    head = (ROOT / "README.md").read_text().splitlines()[:5]
    assert any("kodelyth-ecc demo" in line for line in head)


def test_cli_reference_is_current() -> None:
    spec = importlib.util.spec_from_file_location(
        "gen_cli_reference", ROOT / "scripts" / "gen_cli_reference.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = module.render()
    actual = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert actual == expected, "docs/cli.md is stale: run scripts/gen_cli_reference.py"
