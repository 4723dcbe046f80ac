"""Two runs of a swarm side by side, and the regression gate CI runs on them.

The result is one typed ``Comparison`` (``kodelyth.compare/v1``): the terminal,
markdown, HTML and JSON outputs are all rendered from it. It states facts per
worker (present or not, state, exit code, duration, what changed, section by
section) and never ranks the runs: a human reviews, the tool picks no side.
The gate (``baseline=True``) only checks objective facts: workers missing, runs
that no longer complete, handoffs left empty, required sections gone.

Bundle text is untrusted: nothing here executes or interprets it, and line
diffs are capped so a pathological pair of megabyte handoffs cannot make the
comparison quadratic.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from kodelyth_ecc import __version__
from kodelyth_ecc.bundle import Bundle, BundleWorker, read_bundle_file
from kodelyth_ecc.bundleformat import DEFAULT_MAX_BUNDLE_BYTES, check_name
from kodelyth_ecc.errors import KodelythError, UsageError
from kodelyth_ecc.exchanges import first_differing_turn, replay_outcome
from kodelyth_ecc.handoff_sections import (
    EMPTY,
    WRITTEN,
    Handoff,
    is_placeholder,
    parse_handoff,
    required_titles,
    title_key,
)
from kodelyth_ecc.humanize import plural
from kodelyth_ecc.statusfile import LOST, parse_status

SCHEMA = "kodelyth.compare/v1"
BLIND_KEY_SCHEMA = "kodelyth.compare-blind-key/v1"
# `compare --baseline` exits with this when a gate rule fires (1 stays "error").
EXIT_REGRESSION = 3
RULES = ("missing-worker", "state-regressed", "empty-handoff", "missing-section")

IDENTICAL = "identical"
CHANGED = "changed"
ADDED = "added"  # only in the second run
REMOVED = "removed"  # only in the first run
ABSENT = "absent"  # in neither
SAME_STATUSES = frozenset({IDENTICAL, ABSENT})

BOTH = "both"
ONLY_A = "only-a"
ONLY_B = "only-b"

# Line diffs: past MAX_DIFF_LINES lines, common head and tail lines are set aside first
# (linear) and what is left of either side must fit in MAX_DIFF_LINES; one comparison
# spends at most DIFF_BUDGET_LINES lines on diffs in all. Past that: a summary, said so.
MAX_DIFF_LINES = 2000
DIFF_BUDGET_LINES = 50_000
DIFF_CONTEXT = 3
TRUNCATION_MARKER = "[kodelyth-ecc: truncated,"
_REDACTED = "[redacted]"
# Shorter names are redacted from texts in --blind as whole words only: "api" inside
# "rapid" stays, "api" on its own goes.
_MIN_REDACTED_CHARS = 4
# Said of a section whose texts are the same once CRLF is read as LF.
LINE_ENDINGS_ONLY = "line endings only"


# --------------------------------------------------------------------------- result types


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


# --------------------------------------------------------------------------- loading runs


@dataclass(frozen=True)
class Run:
    """A bundle and where it came from."""

    bundle: Bundle
    source: str  # the path as given, or the session name
    kind: str  # "bundle" or "session"
    sha256: str | None = None
    lost: frozenset[str] = frozenset()  # live session: workers whose pane died


RootGetter = Callable[[], str]


def is_bundle_path(spec: str) -> bool:
    return spec.endswith(".json") or os.sep in spec or "/" in spec or os.path.isfile(spec)


def _root(coordination_root: str | RootGetter | None) -> str | None:
    return coordination_root() if callable(coordination_root) else coordination_root


def load_run(
    spec: str,
    coordination_root: str | RootGetter | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_BUNDLE_BYTES,
) -> Run:
    """A bundle file (validated exactly as import does) or a session name, exported in
    memory from the coordination root (asked for only then)."""
    if is_bundle_path(spec):
        bundle, digest = read_bundle_file(spec, max_bytes=max_bytes)
        return Run(bundle, spec, "bundle", digest)
    root = _root(coordination_root)
    if root is None:
        raise UsageError(
            f"{spec!r} is not a bundle file (*.json): give a bundle path, or a session "
            "name together with --coord-root"
        )
    from kodelyth_ecc.export import export_bundle

    bundle = export_bundle(spec, root)
    return Run(bundle, spec, "session", None, _lost_workers(spec, root))


def _lost_workers(session: str, root: str) -> frozenset[str]:
    """Workers of a live session whose pane died before they recorded an outcome."""
    from kodelyth_ecc.status import collect_status

    try:
        status = collect_status(session, root)
    except KodelythError:
        return frozenset()
    return frozenset(w.slug for w in status.workers if w.state == LOST)


def find_origin(
    replay: Run,
    coordination_root: str | RootGetter | None = None,
    *,
    origin: str | None = None,
    max_bytes: int = DEFAULT_MAX_BUNDLE_BYTES,
) -> tuple[Run, list[str]]:
    """The run a replay was made from: ``origin`` when given; else the session named by
    its ``meta.replay_of``, as ``<origin>.bundle.json`` beside the replay's bundle or in
    the coordination root, or as the live session ``<coord-root>/<origin>/``.
    Returns the run and notes for the reader."""
    if origin is not None:
        return load_run(origin, coordination_root, max_bytes=max_bytes), []
    replay_of = replay.bundle.meta.get("replay_of") or {}
    name = replay_of.get("session")
    if not isinstance(name, str) or not name:
        raise UsageError(
            f"{replay.source} is not a replay (it has no meta.replay_of.session): give two "
            "runs to compare (compare A B), or the origin with --origin PATH"
        )
    check_name(name, "meta.replay_of.session", replay.source)
    candidates: list[tuple[str, str]] = []
    if replay.kind == "bundle":
        beside = os.path.dirname(os.path.abspath(replay.source))
        candidates.append(("bundle", os.path.join(beside, f"{name}.bundle.json")))
    root: str | None = None
    try:
        root = _root(coordination_root)
    except KodelythError:
        root = None  # outside a repository and no --coord-root: only the file beside it
    if root is not None:
        candidates.append(("bundle", os.path.join(root, f"{name}.bundle.json")))
        candidates.append(("session", os.path.join(root, name)))
    notes: list[str] = []
    for kind, path in candidates:
        if kind == "bundle" and os.path.isfile(path):
            run = load_run(path, max_bytes=max_bytes)
            recorded = replay_of.get("bundle_sha256")
            if isinstance(recorded, str) and recorded and recorded != run.sha256:
                notes.append(
                    f"the origin bundle found differs from the one the replay was made from "
                    f"(sha256 {run.sha256 or '?'} vs recorded {recorded}): it was exported "
                    "again or changed since"
                )
            return run, notes
        if kind == "session" and os.path.isdir(path):
            assert root is not None
            return load_run(name, root, max_bytes=max_bytes), notes
    looked = ", ".join(path for _, path in candidates) or "nowhere (no coordination root)"
    raise KodelythError(
        f"the origin {name!r} of {replay.source} was not found (looked in: {looked}): "
        "pass it with --origin PATH, or --coord-root"
    )


def blind_order(
    first: Run, second: Run, rng: random.Random | None = None
) -> tuple[Run, Run, dict[str, object]]:
    """The two runs in a random order, and the key saying which is which."""
    chooser = rng or random.SystemRandom()
    ordered = (first, second) if chooser.random() < 0.5 else (second, first)
    key: dict[str, object] = {
        "schema": BLIND_KEY_SCHEMA,
        "runs": {
            label: {
                "source": run.source,
                "kind": run.kind,
                "session": run.bundle.session,
                "sha256": run.sha256,
                "as_given": "A" if run is first else "B",
            }
            for label, run in zip(("Run 1", "Run 2"), ordered, strict=True)
        },
    }
    return ordered[0], ordered[1], key


# --------------------------------------------------------------------------- line diffs


def text_lines(text: str) -> list[str]:
    """The lines of ``text``, split on ``\\n`` only (a ``\\r`` stays on its line), without
    the empty piece after a final newline. Every line index in a ``Comparison`` counts
    lines this way, so the renderers must split the same way to highlight them."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def _without_cr(lines: list[str]) -> list[str]:
    """Lines compared regardless of their line ending (CRLF or LF)."""
    return [line[:-1] if line.endswith("\r") else line for line in lines]


class DiffBudget:
    """How many lines this comparison may still spend on line diffs."""

    def __init__(self, lines: int = DIFF_BUDGET_LINES) -> None:
        self.left = lines
        self.exhausted = False

    def take(self, lines: int) -> bool:
        if lines > self.left:
            self.exhausted = True
            return False
        self.left -= lines
        return True


Opcode = tuple[str, int, int, int, int]


TOO_LARGE = "too-large"
SKIPPED = "skipped"


def _opcodes(a: Sequence[str], b: Sequence[str], budget: DiffBudget) -> list[Opcode] | str:
    """difflib's opcodes for the lines of ``a`` and ``b``, or why not: TOO_LARGE, or
    SKIPPED when this comparison's budget is used up.

    Texts over MAX_DIFF_LINES have their common leading and trailing lines matched
    first (linear), so two long handoffs that share most of their text cost only what
    differs; difflib then sees only the rest, which must fit under the cap."""
    head = tail = 0
    if len(a) > MAX_DIFF_LINES or len(b) > MAX_DIFF_LINES:
        limit = min(len(a), len(b))
        while head < limit and a[head] == b[head]:
            head += 1
        while tail < limit - head and a[len(a) - 1 - tail] == b[len(b) - 1 - tail]:
            tail += 1
    mid_a = a[head : len(a) - tail]
    mid_b = b[head : len(b) - tail]
    if len(mid_a) > MAX_DIFF_LINES or len(mid_b) > MAX_DIFF_LINES:
        return TOO_LARGE
    if not budget.take(len(mid_a) + len(mid_b)):
        return SKIPPED
    ops: list[Opcode] = []
    if head:
        ops.append(("equal", 0, head, 0, head))
    if mid_a or mid_b:
        matcher = difflib.SequenceMatcher(None, mid_a, mid_b)
        ops += [
            (tag, i1 + head, i2 + head, j1 + head, j2 + head)
            for tag, i1, i2, j1, j2 in matcher.get_opcodes()
        ]
    if tail:
        ops.append(("equal", len(a) - tail, len(a), len(b) - tail, len(b)))
    return ops


def changed_lines(
    a: Sequence[str], b: Sequence[str], budget: DiffBudget
) -> tuple[list[int], list[int], bool]:
    """Indexes of the lines of ``a`` and of ``b`` that the other side does not match, and
    whether they were aligned (False: too large, so a line counts as changed when the
    other side has no equal line anywhere; still linear)."""
    ops = _opcodes(a, b, budget)
    if isinstance(ops, str):
        in_a, in_b = set(a), set(b)
        return (
            [i for i, line in enumerate(a) if line not in in_b],
            [j for j, line in enumerate(b) if line not in in_a],
            False,
        )
    changed_a: list[int] = []
    changed_b: list[int] = []
    for tag, i1, i2, j1, j2 in ops:
        if tag != "equal":
            changed_a.extend(range(i1, i2))
            changed_b.extend(range(j1, j2))
    return changed_a, changed_b, True


def _groups(ops: list[Opcode], context: int) -> Iterable[list[Opcode]]:
    """Hunks of opcodes with ``context`` equal lines around each change (as difflib)."""
    if not ops:
        return
    if ops[0][0] == "equal":
        tag, i1, i2, j1, j2 = ops[0]
        ops[0] = (tag, max(i1, i2 - context), i2, max(j1, j2 - context), j2)
    if ops[-1][0] == "equal":
        tag, i1, i2, j1, j2 = ops[-1]
        ops[-1] = (tag, i1, min(i2, i1 + context), j1, min(j2, j1 + context))
    group: list[Opcode] = []
    for tag, i1, i2, j1, j2 in ops:
        start_a, start_b = i1, j1
        if tag == "equal" and i2 - i1 > context * 2:
            group.append((tag, i1, min(i2, i1 + context), j1, min(j2, j1 + context)))
            yield group
            group = []
            start_a, start_b = max(i1, i2 - context), max(j1, j2 - context)
        group.append((tag, start_a, i2, start_b, j2))
    if group and not (len(group) == 1 and group[0][0] == "equal"):
        yield group


def _range(start: int, stop: int) -> str:
    length = stop - start
    first = start + 1 if length else start
    return f"{first}" if length == 1 else f"{first},{length}"


def unified_diff(
    a_text: str, b_text: str, a_label: str, b_label: str, budget: DiffBudget
) -> TextDiff:
    """A unified diff of two texts, or a one-line summary when it would be too large."""
    if a_text == b_text:
        return TextDiff(IDENTICAL, None, None)
    raw_a, raw_b = text_lines(a_text), text_lines(b_text)
    # Line endings are set aside (and said so): a CRLF handoff against an LF one would
    # otherwise be one hunk of every line.
    a, b = _without_cr(raw_a), _without_cr(raw_b)
    endings = raw_a != a or raw_b != b
    if a == b:
        what = []
        if raw_a != raw_b:
            what.append("line endings (CRLF/LF)")
        if a_text.endswith("\n") != b_text.endswith("\n"):
            what.append("a final newline")
        return TextDiff("ok", None, f"the texts differ only in {' and '.join(what)}")
    ops = _opcodes(a, b, budget)
    if isinstance(ops, str):
        digest_a = hashlib.sha256(a_text.encode("utf-8")).hexdigest()[:12]
        digest_b = hashlib.sha256(b_text.encode("utf-8")).hexdigest()[:12]
        if ops == SKIPPED:
            return TextDiff(
                SKIPPED,
                None,
                f"diff skipped: this comparison's budget of {DIFF_BUDGET_LINES:,} diffed "
                f"lines is used up ({len(a):,} lines vs {len(b):,} lines, sha256 "
                f"{digest_a} vs {digest_b}); narrow it with --worker SLUG",
            )
        return TextDiff(
            TOO_LARGE,
            None,
            f"diff too large: {len(a):,} lines vs {len(b):,} lines, sha256 differs "
            f"({digest_a} vs {digest_b}); more than {MAX_DIFF_LINES:,} lines differ "
            "on one side",
        )
    note = None
    if endings and any(
        raw_a[i1:i2] != raw_b[j1:j2] for tag, i1, i2, j1, j2 in ops if tag == "equal"
    ):
        note = "the line endings differ too (CRLF/LF): this diff ignores them"
    out = [f"--- {a_label}", f"+++ {b_label}"]
    for group in _groups(ops, DIFF_CONTEXT):
        first, last = group[0], group[-1]
        out.append(f"@@ -{_range(first[1], last[2])} +{_range(first[3], last[4])} @@")
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                out += [" " + line for line in a[i1:i2]]
                continue
            out += ["-" + line for line in a[i1:i2]]
            out += ["+" + line for line in b[j1:j2]]
    return TextDiff("ok", "\n".join(out) + "\n", note)


# --------------------------------------------------------------------------- comparing


def _redactor(runs: Sequence[Run]) -> Callable[[str], str]:
    """--blind: session names, source paths and bundle digests taken out of every text
    shown (names shorter than _MIN_REDACTED_CHARS as whole words only)."""
    secrets: set[str] = set()
    for run in runs:
        secrets.add(run.bundle.session)
        secrets.add(run.source)
        if run.sha256:
            secrets.add(run.sha256)
        if run.kind == "bundle":
            secrets.add(os.path.abspath(run.source))
            secrets.add(os.path.basename(run.source))
        replay_of = run.bundle.meta.get("replay_of") or {}
        for field in ("session", "bundle_sha256"):
            if isinstance(replay_of.get(field), str):
                secrets.add(replay_of[field])
    ordered = sorted((s for s in secrets if len(s) >= _MIN_REDACTED_CHARS), key=len, reverse=True)
    # A word: not inside a longer name (names are letters, digits, '.', '_' and '-').
    words = [
        (secret, re.compile(rf"(?<![\w.-]){re.escape(secret)}(?![\w.-])"))
        for secret in sorted(secrets, key=len, reverse=True)
        if 0 < len(secret) < _MIN_REDACTED_CHARS
    ]

    def redact(text: str) -> str:
        for secret in ordered:
            if secret in text:
                text = text.replace(secret, _REDACTED)
        for secret, pattern in words:
            if secret in text:
                text = pattern.sub(_REDACTED, text)
        return text

    return redact


def _keep(text: str) -> str:
    return text


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


def _line_count(text: str) -> int:
    return text.count("\n") + (1 if text and not text.endswith("\n") else 0)


def _facts(
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
        handoff_lines=_line_count(handoff_text),
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


def _traffic(a: BundleWorker | None, b: BundleWorker | None) -> dict[str, Any]:
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


def _models_of(bundle: Bundle) -> object:
    """meta.model, else the model(s) the workers' CLIs reported."""
    if bundle.meta.get("model"):
        return bundle.meta.get("model")
    models = sorted(
        {
            w.usage["model"]
            for w in bundle.workers
            if isinstance(w.usage, dict) and isinstance(w.usage.get("model"), str)
        }
    )
    return ", ".join(models) if models else None


def _pair_status(a: object | None, b: object | None) -> str:
    if a is None and b is None:
        return ABSENT
    if a is None:
        return ADDED
    if b is None:
        return REMOVED
    return IDENTICAL if a == b else CHANGED


def _task_status(a: str, b: str) -> str:
    if a == b:
        return IDENTICAL
    # Two runs' task.md always differ in paths and session names: compare what the
    # worker was asked to do.
    from kodelyth_ecc.replay import extract_task

    return IDENTICAL if extract_task(a)[0] == extract_task(b)[0] else CHANGED


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n") if "\r" in text else text


_INTRO_KEY = ""
_INTRO_TITLE = "(before the first section)"


def compare_sections(
    a: Handoff | None, b: Handoff | None, *, full: bool, budget: DiffBudget
) -> list[SectionComparison]:
    """Every section of either handoff, in the first's order then the second's, and the
    four required sections always (``absent`` when neither has them)."""
    required = {title_key(t): t for t in required_titles()}
    titles: dict[str, str] = {}
    bodies_a: dict[str, str] = {}
    bodies_b: dict[str, str] = {}
    for handoff, bodies in ((a, bodies_a), (b, bodies_b)):
        if handoff is None:
            continue
        if handoff.preamble:
            titles.setdefault(_INTRO_KEY, _INTRO_TITLE)
            bodies[_INTRO_KEY] = handoff.preamble
        for section in handoff.sections:
            titles.setdefault(section.key, section.title)
            bodies[section.key] = section.body
    for key, title in required.items():
        titles.setdefault(key, title)
    result = []
    for key, title in titles.items():
        body_a, body_b = bodies_a.get(key), bodies_b.get(key)
        status = _pair_status(
            None if body_a is None else body_a.strip(), None if body_b is None else body_b.strip()
        )
        note = None
        if (
            status == CHANGED
            and body_a is not None
            and body_b is not None
            and _lf(body_a).strip() == _lf(body_b).strip()
        ):
            note = LINE_ENDINGS_ONLY
        item = SectionComparison(
            title=title,
            key=key,
            required=key in required,
            status=status,
            a_lines=None if body_a is None else _line_count(body_a),
            b_lines=None if body_b is None else _line_count(body_b),
            a_placeholder=None if body_a is None else is_placeholder(body_a),
            b_placeholder=None if body_b is None else is_placeholder(body_b),
            note=note,
        )
        if full:
            item.a_text, item.b_text = body_a, body_b
            if status == CHANGED and body_a is not None and body_b is not None:
                # Indexes into text_lines(); a line's ending is no change of its own.
                item.a_changed, item.b_changed, item.aligned = changed_lines(
                    _without_cr(text_lines(body_a)), _without_cr(text_lines(body_b)), budget
                )
        result.append(item)
    return result


def _gate_findings(
    worker: WorkerComparison, a: Handoff | None, b: Handoff | None, rules: Sequence[str]
) -> list[Finding]:
    """What the second run lacks that the baseline (first) has: objective facts only."""
    found: list[Finding] = []
    slug = worker.slug
    if worker.a is None:
        return found  # new in the second run: nothing to fall short of
    if worker.b is None:
        if "missing-worker" in rules:
            found.append(Finding(slug, "missing-worker", "in the baseline, missing here"))
        return found
    if (
        "state-regressed" in rules
        and worker.a.state == "completed"
        and worker.b.state != "completed"
    ):
        exit_note = f", exit code {worker.b.exit_code}" if worker.b.exit_code is not None else ""
        found.append(
            Finding(
                slug,
                "state-regressed",
                f"completed in the baseline, {worker.b.state or 'no state recorded'} "
                f"here{exit_note}",
            )
        )
    empty_fired = False
    if "empty-handoff" in rules and worker.b.handoff != WRITTEN and worker.a.handoff == WRITTEN:
        what = "empty" if worker.b.handoff == EMPTY else "placeholder-only"
        found.append(
            Finding(
                slug,
                "empty-handoff",
                f"handoff is {what} here ({worker.b.handoff_bytes:,} bytes), written in the "
                f"baseline ({worker.a.handoff_bytes:,} bytes)",
            )
        )
        empty_fired = True
    if "missing-section" in rules and not empty_fired and a is not None and b is not None:
        for title in required_titles():
            if a.has_content(title) and not b.has_content(title):
                key = title_key(title)
                gone = b.section(key) is None and not any(
                    title_key(s.title) == key for s in b.sections
                )
                found.append(
                    Finding(
                        slug,
                        "missing-section",
                        f"## {title}: written in the baseline, "
                        f"{'missing' if gone else 'placeholder only'} here",
                    )
                )
    return found


def _meta_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}={_meta_text(v)}" for k, v in sorted(value.items())) or None
    return str(value)


def _task_of(bundle: Bundle) -> str | None:
    task = bundle.meta.get("task")
    if isinstance(task, str) and task.strip():
        return task.strip()
    first = bundle.workers[0].task
    if not first.strip():
        return None
    from kodelyth_ecc.replay import extract_task

    return extract_task(first)[0]


# (field, how to read it, hidden in --blind: it would tell the runs apart)
_VARIATION: tuple[tuple[str, Callable[[Bundle], object], bool], ...] = (
    ("harness", lambda b: b.meta.get("harness"), True),
    ("model", _models_of, True),
    ("agents", lambda b: b.meta.get("agents") or [w.slug for w in b.workers], False),
    ("base_ref", lambda b: b.meta.get("base_ref"), True),  # a branch may name the model
    ("base_commit", lambda b: b.meta.get("base_commit"), False),
    ("task", _task_of, False),
    ("launcher", lambda b: b.meta.get("launcher"), True),
    ("seed_paths", lambda b: b.meta.get("seed_paths"), False),
    ("variation", lambda b: b.meta.get("variation"), True),
    ("replay_of", lambda b: (b.meta.get("replay_of") or {}).get("session"), True),
    ("session", lambda b: b.session, True),
    ("exported_by", lambda b: b.exported_by, True),
)


def _variation(
    a: Bundle, b: Bundle, blind: bool, redact: Callable[[str], str]
) -> list[VariationRow]:
    rows = []
    for name, read, hide in _VARIATION:
        raw_a, raw_b = read(a), read(b)
        value_a, value_b = _meta_text(raw_a), _meta_text(raw_b)
        if value_a is None and value_b is None:
            continue
        same = value_a == value_b
        if name == "agents" and isinstance(raw_a, list) and isinstance(raw_b, list):
            same = sorted(map(str, raw_a)) == sorted(map(str, raw_b))  # order means nothing
        hidden = blind and hide
        rows.append(
            VariationRow(
                field=name,
                a=None if hidden or value_a is None else redact(value_a),
                b=None if hidden or value_b is None else redact(value_b),
                same=same,
                hidden=hidden,
            )
        )
    # What the experiment changed first.
    rows.sort(key=lambda row: row.same)
    return rows


def _side(label: str, run: Run, blind: bool) -> Side:
    if blind:
        return Side(label, None, None, None, None, None, len(run.bundle.workers))
    return Side(
        label,
        run.source,
        run.kind,
        run.bundle.session,
        run.sha256,
        run.bundle.exported_at,
        len(run.bundle.workers),
    )


def compare_runs(
    first: Run,
    second: Run,
    *,
    full: bool = False,
    patches: bool = False,
    worker: str | None = None,
    blind: bool = False,
    baseline: bool = False,
    rules: Sequence[str] | None = None,
    notes: Sequence[str] = (),
) -> Comparison:
    """Compare two runs, ``first`` as A (the baseline with ``baseline=True``).

    ``full`` adds section texts with their changed lines and unified handoff diffs;
    ``patches`` each worker's patch; ``worker`` narrows to one slug; ``blind`` labels
    the runs "Run 1"/"Run 2" and hides what would tell them apart (order them with
    ``blind_order`` first)."""
    if blind and baseline:
        raise UsageError("--blind and --baseline do not mix: a gate needs to know its baseline")
    chosen_rules = list(RULES if rules is None else rules)
    unknown = [r for r in chosen_rules if r not in RULES]
    if unknown:
        raise UsageError(f"unknown gate rule {unknown[0]!r}: valid rules are {', '.join(RULES)}")
    labels = ("Run 1", "Run 2") if blind else ("A", "B")
    redact = _redactor((first, second)) if blind else _keep
    workers_a = {w.slug: w for w in first.bundle.workers}
    workers_b = {w.slug: w for w in second.bundle.workers}
    slugs = sorted(set(workers_a) | set(workers_b))
    if worker is not None:
        if worker not in slugs:
            shown = ", ".join(slugs[:20]) + (", ..." if len(slugs) > 20 else "")
            raise UsageError(f"no worker {worker!r} in either run: the workers are {shown}")
        slugs = [worker]
    budget = DiffBudget()
    compared: list[WorkerComparison] = []
    findings: list[Finding] = []
    for slug in slugs:
        wa, wb = workers_a.get(slug), workers_b.get(slug)
        text_a = redact(wa.handoff) if wa else None
        text_b = redact(wb.handoff) if wb else None
        handoff_a = parse_handoff(text_a) if text_a is not None else None
        handoff_b = parse_handoff(text_b) if text_b is not None else None
        facts_a = (
            _facts(first, wa, handoff_a, text_a, patches=patches, redact=redact, blind=blind)
            if wa and handoff_a and text_a is not None
            else None
        )
        facts_b = (
            _facts(second, wb, handoff_b, text_b, patches=patches, redact=redact, blind=blind)
            if wb and handoff_b and text_b is not None
            else None
        )
        if wa and wb:
            changes = Changes(
                task=_task_status(redact(wa.task), redact(wb.task)),
                handoff=IDENTICAL if text_a == text_b else CHANGED,
                status=_pair_status(
                    (facts_a.state, facts_a.exit_code) if facts_a else None,
                    (facts_b.state, facts_b.exit_code) if facts_b else None,
                ),
                diff=_pair_status(
                    None if wa.diff is None else redact(wa.diff),
                    None if wb.diff is None else redact(wb.diff),
                ),
            )
        else:
            gone = REMOVED if wa else ADDED
            only = wa or wb
            has_diff = only is not None and only.diff is not None
            changes = Changes(gone, gone, gone, gone if has_diff else ABSENT)
        presence = BOTH if wa and wb else ONLY_A if wa else ONLY_B
        handoff_diff = None
        if full and text_a is not None and text_b is not None:
            handoff_diff = unified_diff(
                text_a,
                text_b,
                f"{labels[0]}/{slug}/handoff.md",
                f"{labels[1]}/{slug}/handoff.md",
                budget,
            )
        item = WorkerComparison(
            slug=slug,
            presence=presence,
            changed=presence != BOTH
            or any(
                status not in SAME_STATUSES
                for status in (changes.task, changes.handoff, changes.status, changes.diff)
            ),
            a=facts_a,
            b=facts_b,
            changes=changes,
            sections=compare_sections(handoff_a, handoff_b, full=full, budget=budget),
            handoff_diff=handoff_diff,
            **_traffic(wa, wb),
        )
        compared.append(item)
        if baseline:
            findings += _gate_findings(item, handoff_a, handoff_b, chosen_rules)
    all_notes = [redact(note) for note in notes]
    if budget.exhausted:
        all_notes.append(
            f"some line diffs were skipped: one comparison diffs at most {DIFF_BUDGET_LINES:,} "
            "lines; narrow it with --worker SLUG"
        )
    oversized = sum(
        1 for w in compared if w.handoff_diff is not None and w.handoff_diff.status == TOO_LARGE
    )
    if oversized:
        all_notes.append(
            f"{plural(oversized, 'handoff diff')} too large to show (over {MAX_DIFF_LINES:,} "
            "differing lines on one side): summarised instead"
        )
    in_both = sum(1 for w in compared if w.presence == BOTH)
    changed = sum(1 for w in compared if w.changed)
    gate = None
    if baseline:
        gate = Gate(
            baseline=labels[0],
            rules=chosen_rules,
            findings=findings,
            exit_code=EXIT_REGRESSION if findings else 0,
        )
    return Comparison(
        schema=SCHEMA,
        tool=f"kodelyth-ecc@{__version__}",
        options=Options(full=full, patches=patches, worker=worker, blind=blind),
        a=_side(labels[0], first, blind),
        b=_side(labels[1], second, blind),
        variation=_variation(first.bundle, second.bundle, blind, redact),
        summary=Summary(
            workers=len(compared),
            in_both=in_both,
            only_a=sum(1 for w in compared if w.presence == ONLY_A),
            only_b=sum(1 for w in compared if w.presence == ONLY_B),
            changed=changed,
            unchanged=len(compared) - changed,
        ),
        workers=compared,
        gate=gate,
        notes=all_notes,
    )


def compare_bundles(
    a: Bundle,
    b: Bundle,
    *,
    full: bool = False,
    patches: bool = False,
    worker: str | None = None,
    baseline: bool = False,
    rules: Sequence[str] | None = None,
) -> Comparison:
    """``compare_runs`` for two bundles already in memory (A is ``a``)."""
    return compare_runs(
        Run(a, a.session, "bundle"),
        Run(b, b.session, "bundle"),
        full=full,
        patches=patches,
        worker=worker,
        baseline=baseline,
        rules=rules,
    )


def parse_rules(text: str | None) -> list[str]:
    """``--fail-on a,b``: the rules, checked; None or "all" means every rule."""
    if text is None or text.strip() == "all":
        return list(RULES)
    rules = [part.strip() for part in text.split(",") if part.strip()]
    if not rules:
        raise UsageError(f"empty --fail-on: name rules from {', '.join(RULES)} (or all)")
    for rule in rules:
        if rule not in RULES:
            raise UsageError(f"unknown --fail-on rule {rule!r}: valid rules are {', '.join(RULES)}")
    return rules
