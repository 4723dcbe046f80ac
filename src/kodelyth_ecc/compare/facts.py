"""What one worker of one run shows: state, handoff, patch numbers, usage, traffic, and
its verify check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kodelyth_ecc.bundle import BundleWorker
from kodelyth_ecc.compare.results import FAILED, MISSING, PASSED, RunFacts, VerifyFacts
from kodelyth_ecc.compare.runs import Run
from kodelyth_ecc.exchanges import first_differing_turn, replay_outcome
from kodelyth_ecc.handoff_sections import Handoff
from kodelyth_ecc.statusfile import LOST, parse_status

TRUNCATION_MARKER = "[kodelyth-ecc: truncated,"
# What is kept of a verify record's hostile strings: the command's first characters, the
# output's last ones (it is a tail).
MAX_VERIFY_COMMAND = 1000
MAX_VERIFY_TAIL = 16 * 1024
# The largest duration taken as one (a week); beyond, or negative or not finite: none.
MAX_DURATION_S = 7 * 24 * 3600.0


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
    tail: bool = False,
) -> RunFacts:
    """The facts of ``worker`` in ``run``; ``tail`` keeps its verify output's tail."""
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
        verify=verify_facts(worker.verify, tail=tail, redact=redact),
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


def _good_float(value: object, limit: float) -> float | None:
    """A number in [0, limit) (NaN, infinities and booleans are none)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if 0 <= value < limit else None


def verify_facts(
    raw: object, *, tail: bool = False, redact: Callable[[str], str] = str
) -> VerifyFacts:
    """A bundle worker's ``verify`` record, type by type (whatever its author wrote):
    passed only when its exit code is 0, it did not time out and ``passed`` is not
    false; any other record is failed; none (or not an object) is missing."""
    if not isinstance(raw, dict):
        return VerifyFacts(MISSING)
    code = raw.get("exit_code")
    exit_code = code if isinstance(code, int) and not isinstance(code, bool) else None
    if exit_code is not None and not -(2**63) <= exit_code < 2**63:
        exit_code = None
    timed_out = raw.get("timed_out") is True
    passed = exit_code == 0 and not timed_out and raw.get("passed") is not False
    command = raw.get("command")
    output = raw.get("output_tail")
    return VerifyFacts(
        status=PASSED if passed else FAILED,
        command=redact(command[:MAX_VERIFY_COMMAND]) if isinstance(command, str) else None,
        exit_code=exit_code,
        timed_out=timed_out,
        duration_s=_good_float(raw.get("duration_s"), MAX_DURATION_S),
        output_tail=redact(output[-MAX_VERIFY_TAIL:]) if tail and isinstance(output, str) else None,
    )
