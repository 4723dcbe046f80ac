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

Many runs (``kodelyth.compare/v2``): ``experiment`` (an experiment directory read:
``load_experiment``), ``many`` (arms of runs compared: ``compare_arms``, ``ManyOptions``,
and the arms built from an experiment, two experiments or two lists of runs),
``manyresults`` (its result types and the JSON document's shape), ``render_many`` and
``html_many`` (its terminal, markdown and HTML views; import them from there).
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
from kodelyth_ecc.compare.experiment import (
    EXPERIMENT_FILE,
    EXPERIMENT_SCHEMA,
    Experiment,
    ExperimentArm,
    ExperimentError,
    ExperimentRun,
    Skipped,
    is_experiment_dir,
    load_experiment,
)
from kodelyth_ecc.compare.facts import TRUNCATION_MARKER, diff_numbers, verify_facts
from kodelyth_ecc.compare.gate import (
    EXIT_REGRESSION,
    MANY_DEFAULT_RULES,
    MANY_RULES,
    RULES,
    VERIFY_RATE_DROPPED,
    parse_rules,
)
from kodelyth_ecc.compare.many import (
    Arm,
    ArmRun,
    ManyOptions,
    compare_arms,
    experiment_arms,
    experiment_skipped,
    match_experiments,
    runs_arms,
)
from kodelyth_ecc.compare.manyresults import (
    ALL_WORKERS,
    SCHEMA_V2,
    ArmResult,
    Difference,
    Differences,
    ManyComparison,
    ManyFinding,
    ManyGate,
    PairResult,
    Rate,
    Spread,
    Stats,
    WorkerStats,
    many_to_json_bytes,
)
from kodelyth_ecc.compare.results import (
    ABSENT,
    ADDED,
    BOTH,
    CHANGED,
    FAILED,
    IDENTICAL,
    MISSING,
    ONLY_A,
    ONLY_B,
    PASSED,
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
    VerifyFacts,
    WorkerComparison,
    to_json_bytes,
)
from kodelyth_ecc.compare.runs import RootGetter, Run, find_origin, is_bundle_path, load_run
from kodelyth_ecc.compare.sections import LINE_ENDINGS_ONLY, compare_sections
from kodelyth_ecc.compare.variation import arm_labels

__all__ = [
    "ABSENT",
    "ADDED",
    "ALL_WORKERS",
    "BLIND_KEY_SCHEMA",
    "BOTH",
    "CHANGED",
    "DIFF_BUDGET_LINES",
    "DIFF_CONTEXT",
    "EXIT_REGRESSION",
    "EXPERIMENT_FILE",
    "EXPERIMENT_SCHEMA",
    "FAILED",
    "IDENTICAL",
    "LINE_ENDINGS_ONLY",
    "MANY_DEFAULT_RULES",
    "MANY_RULES",
    "MAX_DIFF_LINES",
    "MISSING",
    "ONLY_A",
    "ONLY_B",
    "PASSED",
    "REMOVED",
    "RULES",
    "SAME_STATUSES",
    "SCHEMA",
    "SCHEMA_V2",
    "SKIPPED",
    "TOO_LARGE",
    "TRUNCATION_MARKER",
    "VERIFY_RATE_DROPPED",
    "Arm",
    "ArmResult",
    "ArmRun",
    "Changes",
    "CompareFlags",
    "CompareOptions",
    "Comparison",
    "DiffBudget",
    "Difference",
    "Differences",
    "Experiment",
    "ExperimentArm",
    "ExperimentError",
    "ExperimentRun",
    "Finding",
    "Gate",
    "ManyComparison",
    "ManyFinding",
    "ManyGate",
    "ManyOptions",
    "Opcode",
    "Options",
    "PairResult",
    "Rate",
    "RootGetter",
    "Run",
    "RunFacts",
    "SectionComparison",
    "Side",
    "Skipped",
    "Spread",
    "Stats",
    "Summary",
    "TextDiff",
    "VariationRow",
    "VerifyFacts",
    "WorkerComparison",
    "WorkerStats",
    "arm_labels",
    "blind_order",
    "changed_lines",
    "compare_arms",
    "compare_bundles",
    "compare_runs",
    "compare_sections",
    "diff_numbers",
    "experiment_arms",
    "experiment_skipped",
    "find_origin",
    "is_bundle_path",
    "is_experiment_dir",
    "load_experiment",
    "load_run",
    "many_to_json_bytes",
    "match_experiments",
    "parse_rules",
    "runs_arms",
    "text_lines",
    "to_json_bytes",
    "unified_diff",
    "verify_facts",
]
