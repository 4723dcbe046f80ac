"""The ``Comparison`` (``kodelyth.compare/v1``) and its parts, and the status words they use.

Every output (terminal, markdown, HTML, JSON) is rendered from these types only."""

from __future__ import annotations

import msgspec

SCHEMA = "kodelyth.compare/v1"

IDENTICAL = "identical"
CHANGED = "changed"
ADDED = "added"  # only in the second run
REMOVED = "removed"  # only in the first run
ABSENT = "absent"  # in neither
SAME_STATUSES = frozenset({IDENTICAL, ABSENT})

# A worker's verify check (the bundle's worker ``verify``): its exit code was 0, it was
# not, or no check ran (none recorded).
PASSED = "passed"
FAILED = "failed"
MISSING = "missing"

BOTH = "both"
ONLY_A = "only-a"
ONLY_B = "only-b"


class Side(msgspec.Struct):
    """One of the two runs. In a blind comparison only the label is kept."""

    label: str
    source: str | None
    kind: str | None  # "bundle" (a file) or "session" (exported in memory)
    session: str | None
    sha256: str | None
    exported_at: str | None
    workers: int


class VariationRow(msgspec.Struct):
    """A fact of the experiment (harness, agents, base, task...) in both runs."""

    field: str
    a: str | None
    b: str | None
    same: bool
    hidden: bool  # --blind: the values would tell the runs apart


class VerifyFacts(msgspec.Struct):
    """The objective check run after a worker's agent exited (the bundle's worker
    ``verify``): ``status`` is "passed" (exit code 0), "failed" (any other exit code, or
    it could not run or timed out) or "missing" (no check recorded; the rest is None).
    Strings are capped; ``output_tail`` (the last lines of its output) only with
    ``full=True``."""

    status: str
    command: str | None = None
    exit_code: int | None = None
    timed_out: bool | None = None
    duration_s: float | None = None
    output_tail: str | None = None


class RunFacts(msgspec.Struct):
    """One worker in one run."""

    state: str | None
    exit_code: int | None
    duration_s: float | None
    handoff_bytes: int
    handoff_lines: int
    handoff: str  # "empty", "placeholder" or "written"
    has_diff: bool
    files_changed: int | None
    insertions: int | None
    deletions: int | None
    diff_truncated: bool
    diffstat: str | None = None  # with patches
    patch: str | None = None  # with patches
    # What the agent used, as its CLI reported it (the bundle's worker `usage`).
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    # The model traffic the session's proxy recorded: how many turns, and for an exact
    # (offline) replay "identical to the recording" or "diverged at turn k".
    turns: int | None = None
    replay: str | None = None
    # The tokens the provider reported to the proxy (usage.recorded): the cross-check of
    # what the CLI reported.
    recorded_input_tokens: int | None = None
    recorded_output_tokens: int | None = None
    # The verify check (None only when built by hand: ``run_facts`` always sets it).
    verify: VerifyFacts | None = None


class Changes(msgspec.Struct):
    """What differs between the runs, per file: identical, changed, added, removed, absent.

    ``task`` compares what the worker was asked (paths and session names in task.md
    differ between any two runs); ``status`` compares state and exit code (times
    always differ)."""

    task: str
    handoff: str
    status: str
    diff: str


class SectionComparison(msgspec.Struct):
    title: str
    key: str
    required: bool
    status: str  # identical, changed, added, removed or absent
    a_lines: int | None
    b_lines: int | None
    a_placeholder: bool | None
    b_placeholder: bool | None
    # With full=True: the texts, and the indexes of the lines that differ.
    a_text: str | None = None
    b_text: str | None = None
    a_changed: list[int] | None = None
    b_changed: list[int] | None = None
    aligned: bool | None = None  # False: too large to align, lines matched by content
    # "line endings only" when the texts differ in CRLF/LF and nothing else (nothing is
    # highlighted then: changed lines are compared without their line endings).
    note: str | None = None


class TextDiff(msgspec.Struct):
    status: str  # "ok", "identical", "too-large" or "skipped"
    unified: str | None
    note: str | None  # why there is no diff, or (with one) that line endings were ignored


class WorkerComparison(msgspec.Struct):
    slug: str
    presence: str  # "both", "only-a" or "only-b"
    changed: bool
    a: RunFacts | None
    b: RunFacts | None
    changes: Changes
    sections: list[SectionComparison]
    handoff_diff: TextDiff | None = None  # with full=True
    # The first turn at which the two runs' recorded model traffic differs (None: it
    # does not, or a run has no recording; ``traffic_compared`` says which).
    first_differing_turn: int | None = None
    traffic_compared: bool = False


class Finding(msgspec.Struct):
    worker: str
    rule: str
    detail: str


class Gate(msgspec.Struct):
    baseline: str  # the label of the baseline run
    rules: list[str]
    findings: list[Finding]
    exit_code: int


class Summary(msgspec.Struct):
    workers: int
    in_both: int
    only_a: int
    only_b: int
    changed: int
    unchanged: int


class Options(msgspec.Struct):
    """The options a comparison records (part of the JSON output; see ``CompareOptions``
    for what ``compare_runs`` takes)."""

    full: bool
    patches: bool
    worker: str | None
    blind: bool


class Comparison(msgspec.Struct):
    schema: str
    tool: str
    options: Options
    a: Side
    b: Side
    variation: list[VariationRow]
    summary: Summary
    workers: list[WorkerComparison]
    gate: Gate | None
    notes: list[str]


def to_json_bytes(comparison: Comparison) -> bytes:
    """The ``--json`` output: one object, indented, newline-terminated."""
    return msgspec.json.format(msgspec.json.encode(comparison), indent=2) + b"\n"


def pair_status(a: object | None, b: object | None) -> str:
    if a is None and b is None:
        return ABSENT
    if a is None:
        return ADDED
    if b is None:
        return REMOVED
    return IDENTICAL if a == b else CHANGED
