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

The modules: ``results`` (the result types and status words), ``runs`` (loading a
bundle or a session, finding a replay's origin), ``diffs`` (line diffs), ``blind``
(``--blind``: order and redaction), ``gate`` (the regression gate), ``facts`` (one
worker of one run), ``sections`` (handoffs section by section), ``variation`` (the
experiment's facts) and ``comparison`` (``compare_runs``, ``CompareOptions``).
"""

from __future__ import annotations

from kodelyth_ecc.compare.blind import BLIND_KEY_SCHEMA, blind_order
from kodelyth_ecc.compare.comparison import (
    CompareFlags,
    CompareOptions,
    compare_bundles,
    compare_runs,
)
from kodelyth_ecc.compare.diffs import (
    DIFF_BUDGET_LINES,
    DIFF_CONTEXT,
    MAX_DIFF_LINES,
    SKIPPED,
    TOO_LARGE,
    DiffBudget,
    Opcode,
    changed_lines,
    text_lines,
    unified_diff,
)
from kodelyth_ecc.compare.facts import TRUNCATION_MARKER, diff_numbers
from kodelyth_ecc.compare.gate import EXIT_REGRESSION, RULES, parse_rules
from kodelyth_ecc.compare.results import (
    ABSENT,
    ADDED,
    BOTH,
    CHANGED,
    IDENTICAL,
    ONLY_A,
    ONLY_B,
    REMOVED,
    SAME_STATUSES,
    SCHEMA,
    Changes,
    Comparison,
    Finding,
    Gate,
    Options,
    RunFacts,
    SectionComparison,
    Side,
    Summary,
    TextDiff,
    VariationRow,
    WorkerComparison,
    to_json_bytes,
)
from kodelyth_ecc.compare.runs import RootGetter, Run, find_origin, is_bundle_path, load_run
from kodelyth_ecc.compare.sections import LINE_ENDINGS_ONLY, compare_sections

__all__ = [
    "ABSENT",
    "ADDED",
    "BLIND_KEY_SCHEMA",
    "BOTH",
    "CHANGED",
    "DIFF_BUDGET_LINES",
    "DIFF_CONTEXT",
    "EXIT_REGRESSION",
    "IDENTICAL",
    "LINE_ENDINGS_ONLY",
    "MAX_DIFF_LINES",
    "ONLY_A",
    "ONLY_B",
    "REMOVED",
    "RULES",
    "SAME_STATUSES",
    "SCHEMA",
    "SKIPPED",
    "TOO_LARGE",
    "TRUNCATION_MARKER",
    "Changes",
    "CompareFlags",
    "CompareOptions",
    "Comparison",
    "DiffBudget",
    "Finding",
    "Gate",
    "Opcode",
    "Options",
    "RootGetter",
    "Run",
    "RunFacts",
    "SectionComparison",
    "Side",
    "Summary",
    "TextDiff",
    "VariationRow",
    "WorkerComparison",
    "blind_order",
    "changed_lines",
    "compare_bundles",
    "compare_runs",
    "compare_sections",
    "diff_numbers",
    "find_origin",
    "is_bundle_path",
    "load_run",
    "parse_rules",
    "text_lines",
    "to_json_bytes",
    "unified_diff",
]
