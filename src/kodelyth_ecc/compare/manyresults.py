"""The many-run comparison, ``kodelyth.compare/v2``: arms of repeated runs, their rates and
means with 95% intervals, and the differences between arms. Every many-run output
(terminal, markdown, HTML, JSON) is rendered from these types only.

The JSON document (``--json``; ``None`` is ``null``)::

    {"schema": "kodelyth.compare/v2", "tool": "kodelyth-ecc@<version>",
     "mode": "experiment" | "experiments" | "runs",
     "options": {"worker": str|null, "baseline": bool},
     "arms": [{"label": str, "source": str, "facts": [{"field": str, "value": str}],
               "runs": [{"name": str, "repeat": int|null, "state": str|null,
                         "source": str, "session": str, "sha256": str|null}],
               "all_workers": Stats, "workers": [{"slug": str, "stats": Stats}]}],
     "pairs": [{"a": int, "b": int, "a_label": str, "b_label": str,
                "all_workers": Differences,
                "workers": [{"slug": str, "differences": Differences}]}],
     "gate": null | {"baseline": str, "rules": [str], "exit_code": 0|3,
                     "findings": [{"a": str, "b": str, "runs": str|null,
                                   "worker": str, "rule": str, "detail": str}]},
     "skipped": [{"experiment": str, "run": str, "arm": str, "state": str|null,
                  "bundle": str, "reason": str}],
     "notes": [str]}

    Stats = {"runs": int, "completed": Rate, "verify": Rate, "verify_missing": int,
             "sections": Rate, "duration_s": Spread, "tokens": Spread,
             "cost_usd": Spread, "diff_lines": Spread}
    Rate = {"count": int, "n": int, "estimate": float|null, "low": float|null,
            "high": float|null}                      # 95% Wilson; null when n == 0
    Spread = {"n": int, "mean", "median", "low", "high", "min", "max": float|null,
              "values": [float]}                     # 95% Student t for the mean
    Differences = {"completed", "verify", "sections": Difference,  # Newcombe
                   "duration_s", "tokens", "cost_usd", "diff_lines": Difference}  # Welch
    Difference = {"estimate": float|null, "low": float|null, "high": float|null}

A pair's differences are arm ``b`` minus arm ``a`` (indexes into ``arms``).
"""

from __future__ import annotations

import msgspec

SCHEMA_V2 = "kodelyth.compare/v2"
# The name the all-workers line goes by in findings.
ALL_WORKERS = "(all workers)"


class Rate(msgspec.Struct):
    """``count`` of ``n`` with its 95% Wilson interval (None when ``n`` is 0)."""

    count: int
    n: int
    estimate: float | None
    low: float | None
    high: float | None


class Spread(msgspec.Struct):
    """The values (in run order), their mean with its 95% Student-t interval, median and
    range (None when there are none)."""

    n: int
    mean: float | None
    median: float | None
    low: float | None
    high: float | None
    min: float | None
    max: float | None
    values: list[float]


class Stats(msgspec.Struct):
    """One worker (or all workers) in one arm. ``runs`` counts the runs the worker is in:
    the rates are over them; a missing verify counts as not passed (``verify_missing``
    says how many); ``sections``: all required handoff sections written."""

    runs: int
    completed: Rate
    verify: Rate
    verify_missing: int
    sections: Rate
    duration_s: Spread
    tokens: Spread
    cost_usd: Spread
    diff_lines: Spread


class WorkerStats(msgspec.Struct):
    slug: str
    stats: Stats


class ArmFact(msgspec.Struct):
    field: str
    value: str


class RunRef(msgspec.Struct):
    name: str
    repeat: int | None
    state: str | None
    source: str
    session: str
    sha256: str | None


class ArmResult(msgspec.Struct):
    label: str
    source: str  # the experiment directory, or "arguments"
    facts: list[ArmFact]
    runs: list[RunRef]
    all_workers: Stats
    workers: list[WorkerStats]


class Difference(msgspec.Struct):
    """B minus A with its 95% interval (None where it cannot be computed: a side with no
    value, or for a mean a side with fewer than 2)."""

    estimate: float | None
    low: float | None
    high: float | None


class Differences(msgspec.Struct):
    completed: Difference
    verify: Difference
    sections: Difference
    duration_s: Difference
    tokens: Difference
    cost_usd: Difference
    diff_lines: Difference


class WorkerDifferences(msgspec.Struct):
    slug: str
    differences: Differences


class PairResult(msgspec.Struct):
    a: int
    b: int
    a_label: str
    b_label: str
    all_workers: Differences
    workers: list[WorkerDifferences]


class ManyFinding(msgspec.Struct):
    a: str  # the baseline arm's label
    b: str
    runs: str | None  # "<run of a> vs <run of b>" for the per-run rules
    worker: str  # a slug, or ALL_WORKERS
    rule: str
    detail: str


class ManyGate(msgspec.Struct):
    baseline: str
    rules: list[str]
    findings: list[ManyFinding]
    exit_code: int


class SkippedRun(msgspec.Struct):
    experiment: str
    run: str
    arm: str
    state: str | None
    bundle: str
    reason: str


class ManyOptionsRecord(msgspec.Struct):
    worker: str | None
    baseline: bool


class ManyComparison(msgspec.Struct):
    schema: str
    tool: str
    mode: str  # "experiment", "experiments" (DIR_A DIR_B) or "runs" (A... --vs B...)
    options: ManyOptionsRecord
    arms: list[ArmResult]
    pairs: list[PairResult]
    gate: ManyGate | None
    skipped: list[SkippedRun]
    notes: list[str]


def many_to_json_bytes(comparison: ManyComparison) -> bytes:
    """The ``--json`` output: one object, indented, newline-terminated."""
    return msgspec.json.format(msgspec.json.encode(comparison), indent=2) + b"\n"


def many_json_schema() -> dict[str, object]:
    """The JSON Schema (draft 2020-12) of the ``--json`` document, from these types; the
    published copy is ``schemas/compare-v2.schema.json`` (a test keeps them equal)."""
    schema: dict[str, object] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": SCHEMA_V2,
        "description": "kodelyth-ecc compare over many runs (compare DIR, DIR_A DIR_B, "
        "or A... --vs B...): per arm and worker, rates and means with 95% intervals, and "
        "the differences between arms (B minus A).",
        **msgspec.json.schema(ManyComparison),
    }
    defs = schema["$defs"]
    assert isinstance(defs, dict)
    defs["ManyComparison"]["properties"]["schema"] = {"const": SCHEMA_V2}
    return schema
