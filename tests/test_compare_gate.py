"""``compare --baseline A B --fail-on RULES``: the regression gate CI runs after a replay."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kodelyth_ecc.compare import EXIT_REGRESSION, RULES
from kodelyth_ecc.prompts import initial_handoff_md
from tests.support import run_cli
from tests.test_compare import full_handoff, handoff, pair, worker


def _gate(tmp_path: Path, b_workers: list[dict[str, Any]], *args: str) -> tuple[int, Any, str]:
    a_workers = [worker("code-reviewer"), worker("security-reviewer")]
    a, b = pair(tmp_path, a_workers, b_workers)
    result = run_cli("compare", "--baseline", str(a), str(b), "--json", *args, cwd=tmp_path)
    assert result.code in (0, EXIT_REGRESSION), result
    return result.code, json.loads(result.stdout), result.stderr


def _findings(data: Any) -> list[tuple[str, str]]:
    return [(f["worker"], f["rule"]) for f in data["gate"]["findings"]]


def test_exit_code_three_is_documented() -> None:
    assert EXIT_REGRESSION == 3
    help_text = run_cli("compare", "--help", cwd=Path.cwd()).stdout
    assert "3 the --baseline gate found a regression" in " ".join(help_text.split())
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "| 3 | `compare --baseline A B`: the regression gate" in readme


def test_no_finding_exits_zero(tmp_path: Path) -> None:
    b_workers = [worker("code-reviewer", session="run-b"), worker("security-reviewer")]
    code, data, stderr = _gate(tmp_path, b_workers)
    assert code == 0
    assert data["gate"] == {
        "baseline": "A",
        "rules": list(RULES),
        "findings": [],
        "exit_code": 0,
    }
    assert "regression gate: no finding" in stderr


def test_a_worker_missing_in_b(tmp_path: Path) -> None:
    code, data, stderr = _gate(tmp_path, [worker("code-reviewer"), worker("new-agent")])
    assert code == EXIT_REGRESSION
    assert _findings(data) == [("security-reviewer", "missing-worker")]
    assert "security-reviewer  missing-worker  in the baseline, missing here" in stderr
    assert "exit 3" in stderr


@pytest.mark.parametrize("state", ["failed", "lost", "running"])
def test_a_worker_completed_in_a_but_not_in_b(tmp_path: Path, state: str) -> None:
    b_workers = [worker("code-reviewer", state=state, exit_code=1), worker("security-reviewer")]
    code, data, stderr = _gate(tmp_path, b_workers)
    assert code == EXIT_REGRESSION
    assert _findings(data) == [("code-reviewer", "state-regressed")]
    assert f"completed in the baseline, {state} here" in stderr


@pytest.mark.parametrize(
    "text", ["", "\n\n", initial_handoff_md("code-reviewer"), "# Handoff: code-reviewer\n"]
)
def test_an_empty_or_placeholder_only_handoff_in_b(tmp_path: Path, text: str) -> None:
    b_workers = [worker("code-reviewer", handoff_text=text), worker("security-reviewer")]
    code, data, _ = _gate(tmp_path, b_workers)
    assert code == EXIT_REGRESSION
    # One finding per worker: its sections are not reported missing one by one.
    assert _findings(data) == [("code-reviewer", "empty-handoff")]


def test_a_required_section_present_in_a_but_missing_in_b(tmp_path: Path) -> None:
    without = handoff(
        "code-reviewer", Summary="s", Files_Changed="f", Remaining_Risks="r", Notes="n"
    )
    placeholder = full_handoff("security-reviewer", Validation="- Pending")
    b_workers = [
        worker("code-reviewer", handoff_text=without),
        worker("security-reviewer", handoff_text=placeholder),
    ]
    code, data, stderr = _gate(tmp_path, b_workers)
    assert code == EXIT_REGRESSION
    assert _findings(data) == [
        ("code-reviewer", "missing-section"),
        ("security-reviewer", "missing-section"),
    ]
    assert "## Validation: written in the baseline, missing here" in stderr
    assert "## Validation: written in the baseline, placeholder only here" in stderr


def test_a_section_the_baseline_lacked_too_is_no_finding(tmp_path: Path) -> None:
    lacking = handoff("code-reviewer", Summary="s")
    a, b = pair(
        tmp_path,
        [worker("code-reviewer", handoff_text=lacking)],
        [worker("code-reviewer", handoff_text=handoff("code-reviewer", Summary="other"))],
    )
    result = run_cli("compare", "--baseline", str(a), str(b), cwd=tmp_path)
    assert result.code == 0, result


def test_fail_on_selects_rules(tmp_path: Path) -> None:
    b_workers = [worker("code-reviewer", state="failed", exit_code=1, handoff_text="")]
    code, data, _ = _gate(tmp_path, b_workers)
    assert code == EXIT_REGRESSION
    assert sorted(rule for _, rule in _findings(data)) == [
        "empty-handoff",
        "missing-worker",
        "state-regressed",
    ]
    code, data, _ = _gate(tmp_path, b_workers, "--fail-on", "state-regressed,missing-worker")
    assert sorted(rule for _, rule in _findings(data)) == ["missing-worker", "state-regressed"]
    assert data["gate"]["rules"] == ["state-regressed", "missing-worker"]
    code, data, _ = _gate(tmp_path, b_workers, "--fail-on", "missing-section")
    # The empty handoff's sections count when empty-handoff is not chosen.
    assert code == EXIT_REGRESSION
    assert {rule for _, rule in _findings(data)} == {"missing-section"}
    complete = [worker("code-reviewer"), worker("security-reviewer")]
    code, data, _ = _gate(tmp_path, complete, "--fail-on", "all")
    assert code == 0


def test_the_gate_leaves_workers_new_in_b_alone(tmp_path: Path) -> None:
    b_workers = [
        worker("code-reviewer"),
        worker("security-reviewer"),
        worker("extra", state="failed"),
    ]
    code, data, _ = _gate(tmp_path, b_workers)
    assert code == 0
    assert data["summary"]["only_b"] == 1


def test_gate_usage_errors(tmp_path: Path) -> None:
    a, b = pair(tmp_path, [worker("x")], [worker("x")])
    unknown = run_cli("compare", "--baseline", str(a), str(b), "--fail-on", "slow", cwd=tmp_path)
    assert unknown.code == 2
    assert "unknown --fail-on rule 'slow'" in unknown.stderr
    for rule in RULES:
        assert rule in unknown.stderr
    alone = run_cli("compare", str(a), str(b), "--fail-on", "missing-worker", cwd=tmp_path)
    assert alone.code == 2
    assert "--fail-on only applies with --baseline" in alone.stderr


def test_the_gate_shows_in_markdown_and_the_terminal_report_stays_on_stdout(
    tmp_path: Path,
) -> None:
    a, b = pair(tmp_path, [worker("x"), worker("y")], [worker("x")])
    md = run_cli("compare", "--baseline", str(a), str(b), "--markdown", cwd=tmp_path)
    assert md.code == EXIT_REGRESSION
    assert "### Regression gate" in md.stdout
    assert "| y | missing-worker |" in md.stdout
    text = run_cli("compare", "--baseline", str(a), str(b), cwd=tmp_path)
    assert text.code == EXIT_REGRESSION
    assert "Workers:" in text.stdout
    assert "missing-worker" in text.stderr and "missing-worker" not in text.stdout
