"""Issue 13, many runs: ``compare DIR`` (an experiment), ``compare DIR_A DIR_B`` and
``compare A... --vs B...``: rates and means with their 95% intervals per arm and worker,
the differences between arms, the outputs, and the gate over many runs.

The bundles are synthetic with known outcomes; the expected figures come from
``kodelyth_ecc.stats`` (itself checked against published values in ``test_stats.py``).
The experiment directory's hostile cases are in ``test_compare_many_hostile.py``, the
HTML plots (in Chromium) in ``test_compare_many_html.py``.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from kodelyth_ecc.compare import (
    EXIT_REGRESSION,
    MANY_DEFAULT_RULES,
    ManyOptions,
    compare_arms,
    experiment_arms,
    load_experiment,
)
from kodelyth_ecc.compare.render_many import render_many_markdown, render_many_terminal
from kodelyth_ecc.stats import mean_difference, mean_interval, rate_difference, wilson
from tests.support import Result, run_cli
from tests.test_compare import VERDICT_WORDS, bundle, worker, write
from tests.test_compare_verify import FAILED, PASSED

SLUGS = ("code-reviewer", "tdd-guide")


def outcome(
    slug: str,
    session: str,
    *,
    passed: bool | None = True,
    cost: float | None = 0.01,
    duration: float = 10.0,
    completed: bool = True,
    tokens: tuple[int, int] = (1000, 200),
) -> dict[str, Any]:
    """A worker with a known verify outcome (None: no check recorded), cost and duration."""
    usage: dict[str, Any] = {"input_tokens": tokens[0], "output_tokens": tokens[1]}
    if cost is not None:
        usage["cost_usd"] = cost
    return worker(
        slug,
        session=session,
        state="completed" if completed else "failed",
        exit_code=0 if completed else 1,
        duration=duration,
        verify=None if passed is None else PASSED if passed else FAILED,
        usage=usage,
    )


def run_of(session: str, passed: bool | None, **facts: Any) -> list[dict[str, Any]]:
    """The workers of one run: every slug with the same outcome."""
    return [outcome(slug, session, passed=passed, **facts) for slug in SLUGS]


def make_experiment(
    directory: Path,
    arms: dict[str, Sequence[list[dict[str, Any]] | None]],
    *,
    arm_facts: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """An experiment directory: per arm label its runs' workers (None: a run not finished,
    no bundle). Runs are named armN-repK; the runs are listed shuffled (by repeat, last
    first) so that ordering by repeat is tested."""
    directory.mkdir(parents=True, exist_ok=True)
    runs = []
    for number, (label, arm_runs) in enumerate(arms.items(), 1):
        for repeat, workers in enumerate(arm_runs, 1):
            name = f"arm{number}-rep{repeat}"
            session = f"origin-replay-{number * 100 + repeat}"
            runs.append(
                {
                    "run": name,
                    "arm": label,
                    "repeat": repeat,
                    "session": session,
                    "bundle": f"{name}.bundle.json",
                    "state": "running" if workers is None else "done",
                }
            )
            if workers is not None:
                write(directory, f"{name}.bundle.json", bundle(session, workers))
    facts = arm_facts or {}
    data = {
        "schema": "kodelyth.experiment/v1",
        "origin": {"session": "origin"},
        "arms": [{"label": label, **facts.get(label, {})} for label in arms],
        "runs": list(reversed(runs)),
        "state": "done",
    }
    write(directory, "experiment.json", data)
    return directory


def passes(count: int, of: int, prefix: str, **facts: Any) -> list[list[dict[str, Any]]]:
    """``of`` runs, the first ``count`` of them passing verify."""
    return [run_of(f"{prefix}-{n}", n < count, **facts) for n in range(of)]


def cli(tmp_path: Path, *args: str) -> Result:
    return run_cli("compare", *args, cwd=tmp_path)


def as_json(tmp_path: Path, *args: str, code: int = 0) -> Any:
    result = cli(tmp_path, *args, "--json")
    assert result.code == code, result
    return json.loads(result.stdout)


def pct(value: float) -> str:
    return f"{100 * value:.1f}"


def stats_of(data: Any, arm: int, slug: str | None = None) -> Any:
    chosen = data["arms"][arm]
    if slug is None:
        return chosen["all_workers"]
    return next(w["stats"] for w in chosen["workers"] if w["slug"] == slug)


# --------------------------------------------------------------------------- figures


def test_verify_rates_and_their_difference_are_the_stats_of_the_counts(tmp_path: Path) -> None:
    exp = make_experiment(
        tmp_path / "exp",
        {"harness=claude": passes(9, 10, "a"), "harness=codex": passes(2, 10, "b")},
    )
    data = as_json(tmp_path, str(exp))
    assert data["schema"] == "kodelyth.compare/v2" and data["mode"] == "experiment"
    assert [arm["label"] for arm in data["arms"]] == ["harness=claude", "harness=codex"]
    expected_a, expected_b = wilson(9, 10), wilson(2, 10)
    difference = rate_difference((9, 10), (2, 10))
    for slug in (*SLUGS, None):  # every worker passes or fails with its run here
        a, b = stats_of(data, 0, slug)["verify"], stats_of(data, 1, slug)["verify"]
        assert (a["count"], a["n"]) == (9, 10) and (b["count"], b["n"]) == (2, 10)
        assert (a["estimate"], a["low"], a["high"]) == pytest.approx(
            (expected_a.estimate, expected_a.low, expected_a.high)
        )
        assert (b["estimate"], b["low"], b["high"]) == pytest.approx(
            (expected_b.estimate, expected_b.low, expected_b.high)
        )
    pair = data["pairs"][0]
    assert (pair["a"], pair["b"]) == (0, 1)
    shown = pair["all_workers"]["verify"]
    assert (shown["estimate"], shown["low"], shown["high"]) == pytest.approx(
        (difference.estimate, difference.low, difference.high)
    )
    # The terminal shows the same numbers: rates in %, the difference in points.
    out = cli(tmp_path, str(exp)).stdout
    verify_row = next(line for line in out.splitlines() if line.strip().startswith("verify"))
    assert f"9/10 90.0% [{pct(expected_a.low)}, {pct(expected_a.high)}]" in verify_row
    assert f"2/10 20.0% [{pct(expected_b.low)}, {pct(expected_b.high)}]" in verify_row
    assert (
        f"{100 * difference.estimate:+.1f} pp [{100 * difference.low:+.1f}, "
        f"{100 * difference.high:+.1f}]"
    ) in verify_row
    assert "arm 2 - arm 1" in out


def test_means_medians_and_welch_differences(tmp_path: Path) -> None:
    costs_a = [0.010, 0.012, 0.011, 0.015, 0.009]
    costs_b = [0.020, 0.018, 0.025, 0.022, 0.019]
    durations_a = [10.0, 12.0, 11.0, 30.0, 9.0]
    durations_b = [20.0, 21.0, 19.0, 25.0, 22.0]
    runs_a = [
        [outcome("w", f"a{n}", cost=cost, duration=d)]
        for n, (cost, d) in enumerate(zip(costs_a, durations_a, strict=True))
    ]
    runs_b = [
        [outcome("w", f"b{n}", cost=cost, duration=d, tokens=(2000, 100 * n))]
        for n, (cost, d) in enumerate(zip(costs_b, durations_b, strict=True))
    ]
    exp = make_experiment(tmp_path / "exp", {"one": runs_a, "two": runs_b})
    data = as_json(tmp_path, str(exp))
    cost_a = stats_of(data, 0, "w")["cost_usd"]
    interval = mean_interval(costs_a)
    assert cost_a["values"] == pytest.approx(costs_a)
    assert (cost_a["mean"], cost_a["low"], cost_a["high"]) == pytest.approx(
        (interval.estimate, interval.low, interval.high)
    )
    assert cost_a["median"] == pytest.approx(statistics.median(costs_a))
    assert (cost_a["min"], cost_a["max"]) == (min(costs_a), max(costs_a))
    welch = mean_difference(costs_a, costs_b)
    shown = data["pairs"][0]["workers"][0]["differences"]["cost_usd"]
    assert (shown["estimate"], shown["low"], shown["high"]) == pytest.approx(
        (welch.estimate, welch.low, welch.high)
    )
    duration = mean_difference(durations_a, durations_b)
    shown = data["pairs"][0]["all_workers"]["duration_s"]
    assert shown["estimate"] == pytest.approx(duration.estimate)
    tokens_b = stats_of(data, 1, "w")["tokens"]
    assert tokens_b["values"] == [2000.0, 2100.0, 2200.0, 2300.0, 2400.0]
    out = cli(tmp_path, str(exp)).stdout
    cost_row = next(line for line in out.splitlines() if line.strip().startswith("cost"))
    assert (
        f"mean ${interval.estimate:.4f} [${interval.low:.4f}, ${interval.high:.4f}], "
        f"median ${statistics.median(costs_a):.4f} (n=5)"
    ) in cost_row
    assert f"+${welch.estimate:.4f} [+${welch.low:.4f}, +${welch.high:.4f}]" in cost_row


def test_all_workers_is_one_value_a_run(tmp_path: Path) -> None:
    # Two workers: the run passes only when both do; the duration is the longest one's;
    # the cost is the sum.
    runs = [
        [outcome("x", "r1", passed=True, duration=5, cost=0.1),
         outcome("y", "r1", passed=True, duration=8, cost=0.2)],
        [outcome("x", "r2", passed=True, duration=5, cost=0.1),
         outcome("y", "r2", passed=False, duration=9, cost=0.3)],
        [outcome("x", "r3", passed=None, duration=5, cost=None),
         outcome("y", "r3", passed=True, duration=7, cost=0.3)],
    ]  # fmt: skip
    exp = make_experiment(tmp_path / "exp", {"only": runs})
    data = as_json(tmp_path, str(exp))
    whole = stats_of(data, 0)
    assert whole["runs"] == 3
    assert (whole["verify"]["count"], whole["verify"]["n"], whole["verify_missing"]) == (1, 3, 1)
    assert whole["duration_s"]["values"] == [8.0, 9.0, 7.0]
    assert whole["cost_usd"]["values"] == pytest.approx([0.3, 0.4])  # r3: x has no cost
    x = stats_of(data, 0, "x")
    # A missing verify counts as not passed, and is counted.
    assert (x["verify"]["count"], x["verify"]["n"], x["verify_missing"]) == (2, 3, 1)
    out = cli(tmp_path, str(exp)).stdout
    assert "2/3 66.7%" in out and "(1 missing)" in out
    # One arm: nothing to set beside it, no difference column.
    assert data["pairs"] == [] and " - arm 1" not in out


def test_json_v2_shape(tmp_path: Path) -> None:
    exp = make_experiment(
        tmp_path / "exp",
        {"a": passes(2, 2, "a"), "b": [run_of("b0", True), None]},
        arm_facts={"a": {"harness": "codex", "model": "gpt-5", "env": {"OPENAI_KEY": "sk-zzz"}}},
    )
    data = as_json(tmp_path, str(exp))
    assert set(data) == {
        "schema", "tool", "mode", "options", "arms", "pairs", "gate", "skipped", "notes",
    }  # fmt: skip
    assert data["options"] == {"worker": None, "baseline": False}
    arm = data["arms"][0]
    assert set(arm) == {"label", "source", "facts", "runs", "all_workers", "workers"}
    assert arm["source"] == str(exp)
    # An arm's env: the names only, never the values.
    assert arm["facts"] == [
        {"field": "harness", "value": "codex"},
        {"field": "model", "value": "gpt-5"},
        {"field": "env", "value": "OPENAI_KEY"},
    ]
    assert "sk-zzz" not in json.dumps(data)
    assert [r["name"] for r in arm["runs"]] == ["arm1-rep1", "arm1-rep2"]  # by repeat
    assert set(arm["runs"][0]) == {"name", "repeat", "state", "source", "session", "sha256"}
    assert set(arm["all_workers"]) == {
        "runs", "completed", "verify", "verify_missing", "sections", "duration_s", "tokens",
        "cost_usd", "diff_lines",
    }  # fmt: skip
    assert set(arm["all_workers"]["verify"]) == {"count", "n", "estimate", "low", "high"}
    assert set(arm["all_workers"]["cost_usd"]) == {
        "n", "mean", "median", "low", "high", "min", "max", "values",
    }  # fmt: skip
    assert [w["slug"] for w in arm["workers"]] == list(SLUGS)
    pair = data["pairs"][0]
    assert set(pair) == {"a", "b", "a_label", "b_label", "all_workers", "workers"}
    assert set(pair["all_workers"]) == {
        "completed", "verify", "sections", "duration_s", "tokens", "cost_usd", "diff_lines",
    }  # fmt: skip
    # The run without a bundle is skipped, and listed.
    assert data["skipped"] == [
        {
            "experiment": str(exp),
            "run": "arm2-rep2",
            "arm": "b",
            "state": "running",
            "bundle": "arm2-rep2.bundle.json",
            "reason": "no bundle (not finished)",
        }
    ]
    assert any("skipped" in note for note in data["notes"])
    # A side with one run has a mean but no interval, nor does the difference.
    cost = pair["all_workers"]["cost_usd"]
    assert cost["estimate"] == pytest.approx(0.0) and cost["low"] is None
    terminal = cli(tmp_path, str(exp)).stdout
    assert "skipped arm2-rep2 (arm b, state running): no bundle (not finished)" in terminal


def test_an_arm_without_runs_and_runs_without_costs(tmp_path: Path) -> None:
    exp = make_experiment(
        tmp_path / "exp", {"ran": passes(1, 2, "r", cost=None), "none": [None, None]}
    )
    data = as_json(tmp_path, str(exp))
    empty = stats_of(data, 1)
    assert empty["runs"] == 0 and empty["verify"]["estimate"] is None
    assert stats_of(data, 0)["cost_usd"] == {
        "n": 0, "mean": None, "median": None, "low": None, "high": None, "min": None,
        "max": None, "values": [],
    }  # fmt: skip
    assert data["pairs"][0]["all_workers"]["verify"]["estimate"] is None
    html = tmp_path / "r.html"
    for extra in ([], ["--markdown"], ["--html", str(html)]):
        result = cli(tmp_path, str(exp), *extra)
        assert result.code == 0, result
    assert "1 arm without a finished run" in result.stdout or "without a finished run" in (
        html.read_text()
    )


def test_markdown_tables(tmp_path: Path) -> None:
    exp = make_experiment(
        tmp_path / "exp", {"model=a | <b>x</b>": passes(9, 10, "a"), "b": passes(2, 10, "b")}
    )
    out = cli(tmp_path, str(exp), "--markdown").stdout
    assert out.startswith("## kodelyth-ecc compare: many runs\n")
    assert "| arm 1 | model=a \\| &lt;b&gt;x&lt;/b&gt; | 10 |" in out
    assert "<b>" not in out
    assert "### All workers" in out and "### Worker code-reviewer" in out
    low, high = wilson(9, 10).low, wilson(9, 10).high
    assert f"| verify passed | 9/10 90.0% \\[{pct(low)}, {pct(high)}\\] |" in out


def test_no_many_run_output_ranks_the_arms(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path / "exp", {"a": passes(10, 10, "a"), "b": passes(0, 10, "b")})
    html = tmp_path / "r.html"
    texts = []
    for extra in ([], ["--json"], ["--markdown"], ["--html", str(html)]):
        for gate in ([], ["--baseline"]):
            result = cli(tmp_path, str(exp), *extra, *gate)
            assert result.code in (0, EXIT_REGRESSION), result
            texts += [result.stdout, result.stderr]
    texts.append(html.read_text(encoding="utf-8"))
    for text in texts:
        assert not VERDICT_WORDS.search(text), VERDICT_WORDS.search(text)


def test_worker_narrows_many_runs(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path / "exp", {"a": passes(1, 2, "a"), "b": passes(1, 2, "b")})
    data = as_json(tmp_path, str(exp), "--worker", "tdd-guide")
    assert [w["slug"] for w in data["arms"][0]["workers"]] == ["tdd-guide"]
    assert data["options"]["worker"] == "tdd-guide"
    result = cli(tmp_path, str(exp), "--worker", "nobody")
    assert result.code == 2 and "no worker 'nobody' in any run" in result.stderr


# --------------------------------------------------------------------------- the modes


def test_runs_vs_runs_are_labelled_by_what_varied(tmp_path: Path) -> None:
    claude = {"harness": "claude", "task": "t"}
    codex = {"harness": "codex", "task": "t"}
    a = [
        write(tmp_path, f"a{n}.json", bundle(f"a{n}", run_of(f"a{n}", True), claude))
        for n in range(3)
    ]
    b = [write(tmp_path, f"b{n}.json", bundle(f"b{n}", run_of(f"b{n}", n == 0), codex))
         for n in range(3)]  # fmt: skip
    data = as_json(tmp_path, *map(str, a), "--vs", *map(str, b))
    assert data["mode"] == "runs"
    assert [arm["label"] for arm in data["arms"]] == ["harness=claude", "harness=codex"]
    assert [r["name"] for r in data["arms"][1]["runs"]] == list(map(str, b))
    assert stats_of(data, 1)["verify"]["count"] == 1
    # Nothing recorded differs: A and B.
    same = as_json(tmp_path, str(a[0]), str(a[1]), "--vs", str(a[2]))
    assert [arm["label"] for arm in same["arms"]] == ["A", "B"]


def test_two_experiments_are_matched_by_arm_label(tmp_path: Path) -> None:
    first = make_experiment(tmp_path / "e1", {"x": passes(2, 2, "a"), "y": passes(1, 2, "b")})
    second = make_experiment(tmp_path / "e2", {"y": passes(0, 2, "c"), "z": passes(2, 2, "d")})
    data = as_json(tmp_path, "e1", "e2")
    assert data["mode"] == "experiments"
    assert [arm["label"] for arm in data["arms"]] == ["e1: x", "e1: y", "e2: y", "e2: z"]
    assert [(p["a_label"], p["b_label"]) for p in data["pairs"]] == [("e1: y", "e2: y")]
    assert any("no arm of the same label" in note for note in data["notes"])
    assert first.is_dir() and second.is_dir()
    # One arm each: paired whatever their labels.
    make_experiment(tmp_path / "e3", {"harness=claude": passes(1, 2, "e")})
    make_experiment(tmp_path / "e4", {"harness=codex": passes(1, 2, "f")})
    data = as_json(tmp_path, "e3", "e4")
    assert [(p["a_label"], p["b_label"]) for p in data["pairs"]] == [
        ("e3: harness=claude", "e4: harness=codex")
    ]


def test_a_gate_with_nothing_to_check_does_not_pass(tmp_path: Path) -> None:
    """Two experiments whose arms share no label: the gate compared nothing, and says
    so (exit 1), rather than exit 0 as if B held up."""
    make_experiment(tmp_path / "e1", {"x": passes(2, 2, "a"), "y": passes(1, 2, "b")})
    make_experiment(tmp_path / "e2", {"p": passes(0, 2, "c"), "q": passes(2, 2, "d")})
    result = run_cli("compare", "--baseline", "e1", "e2", cwd=tmp_path)
    assert result.code == 1, result
    assert "nothing was checked" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""


def test_two_bundles_still_compare_as_two_runs(tmp_path: Path) -> None:
    a = write(tmp_path, "a.json", bundle("a", run_of("a", True)))
    b = write(tmp_path, "b.json", bundle("b", run_of("b", False)))
    assert as_json(tmp_path, str(a), str(b))["schema"] == "kodelyth.compare/v1"


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["exp", "--blind"], "--blind is for two runs only"),
        (["exp", "--patch"], "--patch is for two runs only"),
        (["exp", "--full"], "--full is for two runs only"),
        (["exp", "--origin", "x.json"], "--origin is for two runs only"),
        (["a.json", "--vs", "b.json", "--blind"], "--blind is for two runs only"),
        (["exp", "a.json"], "give one experiment directory"),
        (["exp", "exp", "exp"], "give one experiment directory"),
        (["a.json", "--vs", "exp"], "is an experiment directory"),
        (["a.json", "b.json", "c.json"], "3 runs given"),
        (["exp", "--fail-on", "missing-worker"], "--fail-on only applies with --baseline"),
        (["exp", "--baseline", "--fail-on", "slow"], "unknown --fail-on rule 'slow'"),
    ],
)
def test_many_run_usage_errors(tmp_path: Path, args: list[str], text: str) -> None:
    make_experiment(tmp_path / "exp", {"a": passes(1, 1, "a")})
    for name in ("a.json", "b.json", "c.json"):
        write(tmp_path, name, bundle(name[0], run_of(name[0], True)))
    result = cli(tmp_path, *args)
    assert result.code == 2, result
    assert text in result.stderr
    assert len(result.stderr.splitlines()) == 1, result
    assert result.stdout == ""


def test_html_never_overwrites_an_experiment_input(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path / "exp", {"a": passes(1, 1, "a")})
    for target in (exp / "arm1-rep1.bundle.json", exp / "experiment.json"):
        before = target.read_bytes()
        result = cli(tmp_path, str(exp), "--html", str(target))
        assert result.code == 2 and "is the input" in result.stderr, result
        assert target.read_bytes() == before


# --------------------------------------------------------------------------- the gate


def _gate(tmp_path: Path, *args: str) -> tuple[int, Any, str]:
    result = cli(tmp_path, "--baseline", *args, "--json")
    assert result.code in (0, EXIT_REGRESSION), result
    return result.code, json.loads(result.stdout)["gate"], result.stderr


def test_a_real_drop_fires_and_noise_does_not(tmp_path: Path) -> None:
    make_experiment(tmp_path / "drop", {"a": passes(10, 10, "a"), "b": passes(0, 10, "b")})
    code, gate, stderr = _gate(tmp_path, "drop")
    assert code == EXIT_REGRESSION
    assert gate["rules"] == list(MANY_DEFAULT_RULES)
    assert sorted(f["worker"] for f in gate["findings"]) == sorted(["(all workers)", *SLUGS])
    assert {f["rule"] for f in gate["findings"]} == {"verify-rate-dropped"}
    assert all(f["runs"] is None for f in gate["findings"])
    assert "regression gate: 3 findings against baseline a" in stderr
    assert "verify passed 0/10 (0.0%" in stderr and "10/10 (100.0%" in stderr
    make_experiment(tmp_path / "noise", {"a": passes(6, 10, "a"), "b": passes(4, 10, "b")})
    code, gate, stderr = _gate(tmp_path, "noise")
    assert code == 0 and gate["findings"] == []
    assert "regression gate: no finding" in stderr


def test_the_drop_is_the_intervals_not_overlapping(tmp_path: Path) -> None:
    # 9/10 vs 2/10: the Wilson intervals are apart (B.high < A.low), so it fires.
    assert wilson(2, 10).high < wilson(9, 10).low
    make_experiment(tmp_path / "e", {"a": passes(9, 10, "a"), "b": passes(2, 10, "b")})
    assert _gate(tmp_path, "e")[0] == EXIT_REGRESSION
    # 8/10 vs 4/10 overlap: no finding.
    assert wilson(4, 10).high >= wilson(8, 10).low
    make_experiment(tmp_path / "f", {"a": passes(8, 10, "a"), "b": passes(4, 10, "b")})
    assert _gate(tmp_path, "f")[0] == 0


@pytest.mark.parametrize("count", [0, 3, 5, 10])
def test_an_arm_against_itself_never_fires(tmp_path: Path, count: int) -> None:
    runs = passes(count, 10, "a")
    make_experiment(tmp_path / "e1", {"same": runs})
    make_experiment(tmp_path / "e2", {"same": runs})
    code, gate, _ = _gate(tmp_path, "e1", "e2", "--fail-on", "all")
    assert code == 0 and gate["findings"] == []
    files = sorted(str(p) for p in (tmp_path / "e1").glob("*.bundle.json"))
    code, gate, _ = _gate(tmp_path, *files, "--vs", *files)
    assert code == 0 and gate["findings"] == []


def test_a_drop_between_runs_given_on_the_command_line(tmp_path: Path) -> None:
    a = [
        str(write(tmp_path, f"a{n}.json", bundle(f"a{n}", run_of(f"a{n}", True))))
        for n in range(10)
    ]
    b = [str(write(tmp_path, f"b{n}.json", bundle(f"b{n}", run_of(f"b{n}", False))))
         for n in range(10)]  # fmt: skip
    code, gate, _ = _gate(tmp_path, *a, "--vs", *b)
    assert code == EXIT_REGRESSION
    assert gate["baseline"] == "A"


def test_per_run_rules_name_the_run_pair(tmp_path: Path) -> None:
    arm_b = [run_of("b0", True), [outcome("code-reviewer", "b1", completed=False)]]
    make_experiment(tmp_path / "e", {"a": passes(2, 2, "a"), "b": arm_b})
    code, gate, stderr = _gate(tmp_path, "e", "--fail-on", "state-regressed,missing-worker")
    assert code == EXIT_REGRESSION
    found = [(f["runs"], f["worker"], f["rule"]) for f in gate["findings"]]
    assert found == [
        ("arm1-rep2 vs arm2-rep2", "code-reviewer", "state-regressed"),
        ("arm1-rep2 vs arm2-rep2", "tdd-guide", "missing-worker"),
    ]
    assert "b vs a [arm1-rep2 vs arm2-rep2]  code-reviewer  state-regressed" in stderr
    # The default rules leave the state alone (noise across repeats), not a missing worker.
    code, gate, _ = _gate(tmp_path, "e")
    assert [f["rule"] for f in gate["findings"]] == ["missing-worker"]


def test_more_arms_are_each_set_against_the_first(tmp_path: Path) -> None:
    exp = make_experiment(
        tmp_path / "e", {"a": passes(5, 5, "a"), "b": passes(0, 5, "b"), "c": passes(5, 5, "c")}
    )
    data = as_json(tmp_path, str(exp))
    assert [(p["a"], p["b"]) for p in data["pairs"]] == [(0, 1), (0, 2)]
    out = cli(tmp_path, str(exp)).stdout
    assert "arm 2 - arm 1" in out and "arm 3 - arm 1" in out
    # The arms keep the experiment's order, whatever their figures.
    assert [arm["label"] for arm in data["arms"]] == ["a", "b", "c"]


# --------------------------------------------------------------------------- library


def test_the_library_returns_records_and_prints_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exp = make_experiment(tmp_path / "e", {"a": passes(10, 10, "a"), "b": passes(0, 10, "b")})
    experiment = load_experiment(str(exp))
    assert [arm.label for arm in experiment.arms] == ["a", "b"]
    assert [r.repeat for r in experiment.arms[0].runs] == list(range(1, 11))
    result = compare_arms(experiment_arms(experiment), ManyOptions(baseline=True))
    assert result.gate is not None and result.gate.exit_code == EXIT_REGRESSION
    assert result.arms[0].all_workers.verify.count == 10
    render_many_terminal(result)
    render_many_markdown(result)
    assert capsys.readouterr() == ("", "")


def test_terminal_escapes_hostile_labels(tmp_path: Path) -> None:
    evil = "harness=x\x1b]0;PWNED\x07\x1b[2J\nline two\u202e"
    exp = make_experiment(
        tmp_path / "e",
        {evil: passes(1, 1, "a"), "b": passes(0, 1, "b")},
        arm_facts={evil: {"harness": "h\x1b[31m", "launcher_cmd": "run\nme"}},
    )
    for extra in ([], ["--markdown"], ["--baseline", "--fail-on", "all"]):
        result = cli(tmp_path, str(exp), *extra)
        assert result.code in (0, EXIT_REGRESSION), result
        for text in (result.stdout, result.stderr):
            assert "\x1b" not in text and "\u202e" not in text and "\x07" not in text
    out = cli(tmp_path, str(exp)).stdout
    assert "arm 1: harness=x\\x1b]0;PWNED\\x07\\x1b[2J\\nline two\\u202e (1 run" in out
    assert "harness h\\x1b[31m · launcher_cmd run\\nme" in out


def test_the_published_v2_schema_is_current_and_matched(tmp_path: Path) -> None:
    import jsonschema  # type: ignore[import-untyped]

    from kodelyth_ecc.compare.manyresults import many_json_schema

    published = Path(__file__).resolve().parent.parent / (
        "src/kodelyth_ecc/schemas/compare-v2.schema.json"
    )
    schema = json.loads(published.read_text(encoding="utf-8"))
    assert schema == many_json_schema(), (
        "compare-v2.schema.json is stale: write json.dumps(many_json_schema(), indent=2) to it"
    )
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    make_experiment(tmp_path / "e1", {"a": passes(3, 4, "a"), "b": [run_of("b", None), None]})
    make_experiment(tmp_path / "e2", {"b": passes(0, 2, "c")})
    for args in (["e1"], ["e1", "e2"], ["e1", "--baseline", "--fail-on", "all"]):
        result = cli(tmp_path, *args, "--json")
        assert result.code in (0, EXIT_REGRESSION), result
        validator.validate(json.loads(result.stdout))
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**json.loads(result.stdout), "schema": "kodelyth.compare/v1"})


def test_the_html_report_is_imported_only_for_html(tmp_path: Path) -> None:
    """Start-up: the HTML modules (the largest of the views) load only with --html."""
    make_experiment(tmp_path / "exp", {"a": passes(1, 2, "a"), "b": passes(2, 2, "b")})
    code = (
        "import sys; from kodelyth_ecc.main import main; rc = main(sys.argv[1:]); "
        "print([m for m in ('kodelyth_ecc.compare_html', 'kodelyth_ecc.compare.html_many') "
        "if m in sys.modules], rc, file=sys.stderr)"
    )
    bundles = [str(tmp_path / "exp" / f"arm{i}-rep1.bundle.json") for i in (1, 2)]
    for args in (["exp"], bundles):
        run = subprocess.run(
            [sys.executable, "-c", code, "compare", *args],
            cwd=tmp_path, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert run.stderr.strip().splitlines()[-1] == "[] 0", run.stderr
        html = subprocess.run(
            [sys.executable, "-c", code, "compare", *args, "--html", str(tmp_path / "r.html")],
            cwd=tmp_path, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert "kodelyth_ecc.compare" in html.stderr.strip().splitlines()[-1], html.stderr
