"""What one worker of one run shows: state, handoff, patch numbers, usage, traffic."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kodelyth_ecc.bundle import BundleWorker
from kodelyth_ecc.compare.results import RunFacts
from kodelyth_ecc.compare.runs import Run
from kodelyth_ecc.exchanges import first_differing_turn, replay_outcome
from kodelyth_ecc.handoff_sections import Handoff
from kodelyth_ecc.statusfile import LOST, parse_status

TRUNCATION_MARKER = "[kodelyth-ecc: truncated,"


def _state(run: Run, worker: BundleWorker) -> tuple[str | None, int | None, float | None]:
    """State, exit code and duration: the bundle's fields, else parsed from status.md (the
    JavaScript tool's bundles); a live session's dead panes make ``lost``."""
    state, exit_code, duration = worker.state, worker.exit_code, worker.duration_s
    if state is None or exit_code is None or duration is None:
        parsed = parse_status(worker.status, worker.slug) if worker.status.strip() else None
        if parsed is not None:
            state = state or parsed.state
            exit_code = exit_code if exit_code is not None else parsed.exit_code
            duration = duration if duration is not None else parsed.duration_s
    if worker.slug in run.lost and state in (None, "pending", "running"):
        state = LOST
    return state, exit_code, duration


def diff_numbers(patch: str) -> tuple[int, int, int]:
    """(files, inserted lines, deleted lines) of a git patch."""
    files = insertions = deletions = 0
    header = False
    for line in patch.split("\n"):
        if line.startswith("diff --git "):
            files += 1
            header = True
        elif line.startswith("@@"):
            header = False
        elif header:
            continue
        elif line.startswith("+"):
            insertions += 1
        elif line.startswith("-"):
            deletions += 1
    return files, insertions, deletions


def line_count(text: str) -> int:
    return text.count("\n") + (1 if text and not text.endswith("\n") else 0)


def run_facts(
    run: Run,
    worker: BundleWorker,
    handoff: Handoff,
    handoff_text: str,
    *,
    patches: bool,
    redact: Callable[[str], str],
    blind: bool = False,
) -> RunFacts:
    state, exit_code, duration = _state(run, worker)
    diff = worker.diff
    numbers = diff_numbers(diff) if diff is not None else None
    return RunFacts(
        state=state,
        exit_code=exit_code,
        duration_s=duration,
        handoff_bytes=len(worker.handoff.encode("utf-8")),
        handoff_lines=line_count(handoff_text),
        handoff=handoff.kind,
        has_diff=diff is not None,
        files_changed=numbers[0] if numbers else None,
        insertions=numbers[1] if numbers else None,
        deletions=numbers[2] if numbers else None,
        diff_truncated=diff is not None and TRUNCATION_MARKER in diff,
        diffstat=redact(worker.diffstat) if patches and worker.diffstat is not None else None,
        patch=redact(diff) if patches and diff is not None else None,
        # --blind: the model would tell the runs apart (tokens and cost are facts).
        **{**_usage_facts(worker.usage), **({"model": None} if blind else {})},
        turns=len(worker.exchanges) if worker.exchanges is not None else None,
        replay=replay_outcome(worker.exchanges, worker.divergence, worker.recording),
        **_recorded_tokens(worker.usage),
    )


def traffic(a: BundleWorker | None, b: BundleWorker | None) -> dict[str, Any]:
    """Where two runs' recorded model traffic first differs, when both recorded it."""
    if a is None or b is None or a.exchanges is None or b.exchanges is None:
        return {}
    turn = first_differing_turn(a.exchanges, a.recording, b.exchanges, b.recording)
    return {"first_differing_turn": turn, "traffic_compared": True}


def _recorded_tokens(usage: object) -> dict[str, Any]:
    recorded = usage.get("recorded") if isinstance(usage, dict) else None
    facts = _usage_facts(recorded)
    return {
        "recorded_input_tokens": facts.get("input_tokens"),
        "recorded_output_tokens": facts.get("output_tokens"),
    }


def _usage_facts(usage: object) -> dict[str, Any]:
    """The usage figures compare shows, taken only when they have the right type (a
    bundle's usage is whatever its author wrote)."""
    if not isinstance(usage, dict):
        return {}

    def count(key: str) -> int | None:
        value = usage.get(key)
        good = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**15
        return value if good and isinstance(value, int) else None

    cost = usage.get("cost_usd")
    model = usage.get("model")
    # NaN and Infinity fail the range check; a negative figure is no figure.
    priced = isinstance(cost, (int, float)) and not isinstance(cost, bool) and 0 <= cost < 1e12
    return {
        "model": model[:200] if isinstance(model, str) else None,
        "input_tokens": count("input_tokens"),
        "output_tokens": count("output_tokens"),
        "cost_usd": float(cost) if priced and isinstance(cost, (int, float)) else None,
    }
