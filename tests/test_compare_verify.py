"""Issue 13, two runs: the workers' verify check (the bundle's worker ``verify``) side by
side in every output, hostile text in it escaped, and the ``verify-regressed`` rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kodelyth_ecc.compare import EXIT_REGRESSION, MANY_RULES, RULES, verify_facts
from kodelyth_ecc.compare.facts import MAX_VERIFY_COMMAND, MAX_VERIFY_TAIL
from tests.support import run_cli
from tests.test_compare import pair, worker
from tests.test_compare_hostile import TERMINAL_CONTROLS

EVIL = "pytest -q\x1b]0;PWNED\x07\x1b[2J\nrm -rf /"


def verify_record(
    exit_code: int | None = 0,
    *,
    command: str = "pytest -q",
    duration: float = 3.25,
    timed_out: bool = False,
    output: str = "3 passed\n",
) -> dict[str, Any]:
    """A verify.json as the --verify check writes it."""
    return {
        "command": command,
        "exit_code": exit_code,
        "passed": exit_code == 0,
        "timed_out": timed_out,
        "duration_s": duration,
        "output_tail": output,
    }


PASSED = verify_record(0)
FAILED = verify_record(1, output="1 failed, 2 passed\n")


def _json(tmp_path: Path, *args: str, a: Any = PASSED, b: Any = FAILED) -> Any:
    first, second = pair(tmp_path, [worker("x", verify=a)], [worker("x", verify=b)])
    result = run_cli("compare", str(first), str(second), "--json", *args, cwd=tmp_path)
    assert result.code in (0, EXIT_REGRESSION), result
    return json.loads(result.stdout)


def test_verify_is_in_the_json_per_worker_and_side(tmp_path: Path) -> None:
    data = _json(tmp_path)
    facts_a, facts_b = data["workers"][0]["a"], data["workers"][0]["b"]
    assert facts_a["verify"] == {
        "status": "passed",
        "command": "pytest -q",
        "exit_code": 0,
        "timed_out": False,
        "duration_s": 3.25,
        "output_tail": None,  # only with --full
    }
    assert facts_b["verify"]["status"] == "failed"
    assert facts_b["verify"]["exit_code"] == 1
    # The output's tail only on request.
    full = _json(tmp_path, "--full")
    assert full["workers"][0]["b"]["verify"]["output_tail"] == "1 failed, 2 passed\n"
    # The v1 keys are all still there.
    assert {"state", "exit_code", "duration_s", "handoff", "cost_usd"} <= set(facts_a)


def test_missing_and_odd_verify_records(tmp_path: Path) -> None:
    data = _json(tmp_path, a=None, b={"exit_code": None, "timed_out": True, "command": 7})
    assert data["workers"][0]["a"]["verify"]["status"] == "missing"
    # Timed out: failed, without an exit code; a command that is no string is none.
    assert data["workers"][0]["b"]["verify"] == {
        "status": "failed",
        "command": None,
        "exit_code": None,
        "timed_out": True,
        "duration_s": None,
        "output_tail": None,
    }


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ({"exit_code": 0, "passed": True}, "passed"),
        ({"exit_code": 0}, "passed"),
        ({"exit_code": 0, "passed": False}, "failed"),  # the record says it did not pass
        ({"exit_code": 0, "timed_out": True}, "failed"),
        ({"exit_code": 2, "passed": True}, "failed"),  # the exit code is the fact
        ({"exit_code": None, "passed": True}, "failed"),
        ({"exit_code": True}, "failed"),  # a boolean is no exit code
        ({"exit_code": "0"}, "failed"),
        ({}, "failed"),
        (None, "missing"),
        ([], "missing"),
        ("passed", "missing"),
    ],
)
def test_verify_status_comes_from_the_exit_code(raw: object, status: str) -> None:
    assert verify_facts(raw).status == status


def test_verify_strings_are_capped_and_durations_checked() -> None:
    raw = {
        "exit_code": 0,
        "command": "c" * (MAX_VERIFY_COMMAND * 5),
        "output_tail": "head\n" + "t" * (MAX_VERIFY_TAIL * 5) + "\nLAST LINE",
        "duration_s": float("nan"),
    }
    facts = verify_facts(raw, tail=True)
    assert facts.command is not None and len(facts.command) == MAX_VERIFY_COMMAND
    assert facts.output_tail is not None and len(facts.output_tail) == MAX_VERIFY_TAIL
    assert facts.output_tail.endswith("\nLAST LINE")  # a tail keeps its end
    assert facts.duration_s is None
    for bad in (-1.0, float("inf"), 1e300, True, "3"):
        assert verify_facts({**raw, "duration_s": bad}).duration_s is None


def test_verify_shows_in_the_terminal_and_markdown(tmp_path: Path) -> None:
    a, b = pair(tmp_path, [worker("x", verify=PASSED), worker("y")], [worker("x", verify=FAILED)])
    out = run_cli("compare", str(a), str(b), cwd=tmp_path).stdout
    header = next(line for line in out.splitlines() if line.strip().startswith("worker"))
    assert "verify" in header.split()
    row = next(line for line in out.splitlines() if line.strip().startswith("x "))
    assert "passed / failed" in row
    assert (
        "verify    A: passed (exit 0, 3.2s): pytest -q · B: failed (exit 1, 3.2s): pytest -q" in out
    )
    # The other worker is only in A and has no check.
    assert "verify    A: missing · B: -" in out
    assert "1 failed, 2 passed" not in out
    full = run_cli("compare", str(a), str(b), "--full", cwd=tmp_path).stdout
    assert "verify output B (its last lines):\n    1 failed, 2 passed" in full
    md = run_cli("compare", str(a), str(b), "--markdown", cwd=tmp_path).stdout
    assert "| worker | in | state A | state B |" in md and " verify |" in md
    assert "| passed / failed |" in md
    assert (
        "  - verify: A passed (exit 0, 3.2s): pytest -q; B failed (exit 1, 3.2s): pytest -q" in md
    )
    md_full = run_cli("compare", str(a), str(b), "--markdown", "--full", cwd=tmp_path).stdout
    assert "Verify output B (its last lines):\n\n```text\n1 failed, 2 passed\n```" in md_full


def test_without_any_verify_the_outputs_are_as_before(tmp_path: Path) -> None:
    a, b = pair(tmp_path, [worker("x")], [worker("x")])
    out = run_cli("compare", a.name, b.name, cwd=tmp_path).stdout
    assert "verify" not in out
    md = run_cli("compare", a.name, b.name, "--markdown", cwd=tmp_path).stdout
    assert "verify" not in md


def test_hostile_verify_text_is_escaped_everywhere(tmp_path: Path) -> None:
    hostile = verify_record(1, command=EVIL, output=EVIL + "\n<script>x()</script>")
    a, b = pair(tmp_path, [worker("x", verify=PASSED)], [worker("x", verify=hostile)])
    html = tmp_path / "r.html"
    for extra in ([], ["--full"], ["--markdown", "--full"]):
        result = run_cli("compare", str(a), str(b), *extra, "--baseline", cwd=tmp_path)
        assert result.code == EXIT_REGRESSION, result
        for text in (result.stdout, result.stderr):
            assert not TERMINAL_CONTROLS.search(text.replace("\n", "").replace("\t", ""))
        assert "PWNED" in result.stdout
        if "--markdown" not in extra:
            # The command stays on its line: its newline is written out.
            assert "pytest -q\\x1b]0;PWNED\\x07\\x1b[2J\\nrm -rf /" in result.stdout
    result = run_cli("compare", str(a), str(b), "--html", str(html), cwd=tmp_path)
    assert result.code == 0, result
    text = html.read_text(encoding="utf-8")
    assert "<script>x()" not in text and "&lt;script&gt;x()&lt;/script&gt;" in text
    assert '<details class="verify-output"><summary>verify output B' in text


@pytest.mark.parametrize(
    ("a", "b", "fires"),
    [
        (PASSED, FAILED, True),
        (PASSED, None, True),  # missing in B
        (PASSED, verify_record(None, timed_out=True), True),
        (PASSED, PASSED, False),
        (FAILED, FAILED, False),
        (FAILED, PASSED, False),
        (None, FAILED, False),
        (None, None, False),
        (FAILED, None, False),
    ],
)
def test_verify_regressed_fires_only_from_passed_to_not_passed(
    tmp_path: Path, a: Any, b: Any, fires: bool
) -> None:
    assert "verify-regressed" in RULES
    first, second = pair(tmp_path, [worker("x", verify=a)], [worker("x", verify=b)])
    result = run_cli(
        "compare", "--baseline", str(first), str(second), "--fail-on", "verify-regressed",
        "--json", cwd=tmp_path,
    )  # fmt: skip
    assert result.code == (EXIT_REGRESSION if fires else 0), result
    findings = json.loads(result.stdout)["gate"]["findings"]
    assert [f["rule"] for f in findings] == (["verify-regressed"] if fires else [])
    if fires:
        status = "missing" if b is None else "failed"
        assert f"x  verify-regressed  verify passed in the baseline, {status} here" in (
            result.stderr
        )


def test_verify_regressed_is_among_the_default_rules(tmp_path: Path) -> None:
    first, second = pair(tmp_path, [worker("x", verify=PASSED)], [worker("x", verify=FAILED)])
    result = run_cli("compare", "--baseline", str(first), str(second), "--json", cwd=tmp_path)
    assert result.code == EXIT_REGRESSION
    gate = json.loads(result.stdout)["gate"]
    assert gate["rules"] == list(RULES)
    assert [(f["worker"], f["rule"]) for f in gate["findings"]] == [("x", "verify-regressed")]
    # --fail-on's help lists every rule (argparse may break a line after a hyphen).
    help_text = "".join(run_cli("compare", "--help", cwd=tmp_path).stdout.split())
    for rule in MANY_RULES:
        assert rule in help_text, rule


def test_the_many_run_rule_is_refused_for_two_runs(tmp_path: Path) -> None:
    first, second = pair(tmp_path, [worker("x")], [worker("x")])
    result = run_cli(
        "compare", "--baseline", str(first), str(second), "--fail-on", "verify-rate-dropped",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.code == 2
    assert "--fail-on verify-rate-dropped only applies to many runs" in result.stderr
    assert len(result.stderr.splitlines()) == 1
