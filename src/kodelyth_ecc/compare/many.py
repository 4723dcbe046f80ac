"""Many runs compared arm by arm (``kodelyth.compare/v2``, see ``manyresults``): per arm
and worker, rates with 95% Wilson intervals and means with 95% Student-t intervals; per
pair of arms, the differences (B minus A) with Newcombe's and Welch's intervals.

Facts side by side: nothing is ranked, sorted by a figure or called the better one.

- **Arms**: an experiment directory's arms (``load_experiment``, ``experiment_arms``), two
  experiments' arms (``match_experiments``: matched by label, or paired when each has one
  arm) or two lists of runs (``runs_arms``: labelled by what varied).
- **Pairs**: each arm against the first (``ManyOptions.pairs`` names others); with
  ``baseline=True`` the pair's first arm is the baseline.
- **All workers**: one value a run, so that runs stay the unit the intervals are about:
  completed and verify passed when every worker did, sections when every worker wrote all
  required ones, the duration is the longest worker's, tokens, cost and diff lines the sum
  over the workers (a run where some worker has no figure has none).
- **The gate**: ``verify-rate-dropped`` fires for a worker slug, or for all workers, when
  B's verify pass-rate interval lies wholly below A's (B.high < A.low): an arm compared
  with itself never fires it. The two-run rules (``gate.RULES``) are checked on each pair
  of runs, paired by position (repeat number, or the order given). Without ``rules``:
  ``MANY_DEFAULT_RULES`` (verify-rate-dropped, missing-worker): per-run state rules fire
  on noise.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from kodelyth_ecc import __version__
from kodelyth_ecc.compare.blind import keep
from kodelyth_ecc.compare.comparison import CompareOptions, compare_runs
from kodelyth_ecc.compare.experiment import Experiment
from kodelyth_ecc.compare.facts import MAX_DURATION_S, run_facts
from kodelyth_ecc.compare.gate import (
    EXIT_REGRESSION,
    MANY_DEFAULT_RULES,
    MANY_RULES,
    RULES,
    VERIFY_RATE_DROPPED,
    check_rules,
)
from kodelyth_ecc.compare.manyresults import (
    ALL_WORKERS,
    SCHEMA_V2,
    ArmFact,
    ArmResult,
    Difference,
    Differences,
    ManyComparison,
    ManyFinding,
    ManyGate,
    ManyOptionsRecord,
    PairResult,
    Rate,
    RunRef,
    SkippedRun,
    Spread,
    Stats,
    WorkerDifferences,
    WorkerStats,
)
from kodelyth_ecc.compare.results import MISSING, PASSED
from kodelyth_ecc.compare.runs import Run
from kodelyth_ecc.compare.variation import arm_labels
from kodelyth_ecc.errors import KodelythError, UsageError
from kodelyth_ecc.handoff_sections import WRITTEN, parse_handoff, required_titles
from kodelyth_ecc.humanize import plural
from kodelyth_ecc.stats import mean_difference, mean_interval, rate_difference, wilson

# Largest figures taken as facts (beyond: none): tokens and cost as facts.py takes them.
_MAX_FIGURE = 1e15


@dataclass(frozen=True)
class ArmRun:
    """One run of an arm: its name (the experiment's, or the path given), and repeat."""

    name: str
    run: Run
    repeat: int | None = None
    state: str | None = None


@dataclass(frozen=True)
class Arm:
    """Runs made alike: ``label`` names what set them apart (shown escaped)."""

    label: str
    runs: tuple[ArmRun, ...]
    source: str = "arguments"
    facts: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ManyOptions:
    """What ``compare_arms`` is asked for: ``worker`` narrows to one slug; ``baseline``
    runs the gate with ``rules`` (None: ``MANY_DEFAULT_RULES``); ``pairs`` the arms to
    set side by side as (A, B) indexes (None: each arm against the first)."""

    worker: str | None = None
    baseline: bool = False
    rules: Sequence[str] | None = None
    pairs: Sequence[tuple[int, int]] | None = None


@dataclass(frozen=True)
class _Obs:
    """One worker (or all of them) in one run."""

    completed: bool
    verify: str
    sections: bool
    duration: float | None
    tokens: float | None
    cost: float | None
    diff_lines: float | None


# --------------------------------------------------------------------------- arms


def experiment_arms(experiment: Experiment, *, prefix: str | None = None) -> list[Arm]:
    """The arms of an experiment, in its order; ``prefix`` (its directory, when two are
    compared) goes before each label."""
    return [
        Arm(
            label=f"{prefix}: {arm.label}" if prefix else arm.label,
            runs=tuple(ArmRun(r.name, r.run, r.repeat, r.state) for r in arm.runs),
            source=experiment.directory,
            facts=arm.facts,
        )
        for arm in experiment.arms
    ]


def runs_arms(a: Sequence[Run], b: Sequence[Run]) -> list[Arm]:
    """Two arms from two lists of runs (``compare A... --vs B...``), labelled by what
    varied between them (harness, model, agents, base ref, launcher), else "A" and "B"."""
    if not a or not b:
        raise UsageError("each side needs at least one run: compare A... --vs B...")
    labels = arm_labels([[r.bundle for r in a], [r.bundle for r in b]], ("A", "B"))
    return [
        Arm(label, tuple(ArmRun(r.source, r) for r in runs))
        for label, runs in zip(labels, (a, b), strict=True)
    ]


def match_experiments(
    a: Experiment, b: Experiment
) -> tuple[list[Arm], list[tuple[int, int]], list[str]]:
    """Two experiments' arms (labelled with their directory), the pairs to compare (A's
    arm against B's of the same label; the two arms when each has exactly one) and notes
    on arms left unpaired."""
    arms_a = experiment_arms(a, prefix=a.directory)
    arms_b = experiment_arms(b, prefix=b.directory)
    arms = arms_a + arms_b
    notes: list[str] = []
    if len(a.arms) == 1 and len(b.arms) == 1:
        return arms, [(0, 1)], notes
    labels_b = {arm.label: index for index, arm in enumerate(b.arms)}
    pairs = [
        (index, len(arms_a) + labels_b[arm.label])
        for index, arm in enumerate(a.arms)
        if arm.label in labels_b
    ]
    paired = {label for label in labels_b if any(arm.label == label for arm in a.arms)}
    unpaired = [arm.label for arm in (*a.arms, *b.arms) if arm.label not in paired]
    if unpaired:
        notes.append(
            f"{plural(len(unpaired), 'arm')} with no arm of the same label in the other "
            "experiment: shown, not compared"
        )
    return arms, pairs, notes


# --------------------------------------------------------------------------- figures


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _rate(count: int, n: int) -> Rate:
    if n <= 0:
        return Rate(count, n, None, None, None)
    interval = wilson(count, n)
    return Rate(count, n, interval.estimate, interval.low, interval.high)


def _spread(raw: Sequence[float | None]) -> Spread:
    values = [float(v) for v in raw if v is not None and math.isfinite(v)]
    if not values:
        return Spread(0, None, None, None, None, None, None, [])
    interval = mean_interval(values)
    mean, low, high = _finite(interval.estimate), _finite(interval.low), _finite(interval.high)
    if low is not None and min(values) >= 0:
        # Every figure here (seconds, tokens, dollars, lines) is at least 0: so is the
        # interval's low end (a t interval of a few small values dips below it).
        low = max(0.0, low)
    return Spread(
        n=len(values),
        mean=mean,
        median=_finite(statistics.median(values)),
        low=low if mean is not None else None,
        high=high if mean is not None else None,
        min=min(values),
        max=max(values),
        values=values,
    )


def _stats(observations: Sequence[_Obs]) -> Stats:
    n = len(observations)
    return Stats(
        runs=n,
        completed=_rate(sum(o.completed for o in observations), n),
        verify=_rate(sum(o.verify == PASSED for o in observations), n),
        verify_missing=sum(o.verify == MISSING for o in observations),
        sections=_rate(sum(o.sections for o in observations), n),
        duration_s=_spread([o.duration for o in observations]),
        tokens=_spread([o.tokens for o in observations]),
        cost_usd=_spread([o.cost for o in observations]),
        diff_lines=_spread([o.diff_lines for o in observations]),
    )


def _bounded(value: float | None, limit: float) -> float | None:
    return value if value is not None and math.isfinite(value) and 0 <= value < limit else None


def _observe(run: Run, slug: str) -> _Obs | None:
    worker = run.bundle.worker(slug)
    if worker is None:
        return None
    handoff = parse_handoff(worker.handoff)
    facts = run_facts(run, worker, handoff, worker.handoff, patches=False, redact=keep)
    tokens = (
        facts.input_tokens + facts.output_tokens
        if facts.input_tokens is not None and facts.output_tokens is not None
        else None
    )
    diff = (
        facts.insertions + facts.deletions
        if facts.insertions is not None and facts.deletions is not None
        else None
    )
    return _Obs(
        completed=facts.state == "completed",
        verify=facts.verify.status if facts.verify is not None else MISSING,
        sections=handoff.kind == WRITTEN and all(handoff.has_content(t) for t in required_titles()),
        duration=_bounded(facts.duration_s, MAX_DURATION_S),
        tokens=float(tokens) if tokens is not None else None,
        cost=_bounded(facts.cost_usd, _MAX_FIGURE),
        diff_lines=float(diff) if diff is not None else None,
    )


def _every(values: Sequence[float | None]) -> list[float] | None:
    known = [v for v in values if v is not None]
    return known if len(known) == len(values) else None


def _whole_run(observations: Sequence[_Obs]) -> _Obs:
    """All workers of one run as one observation (see the module's docstring)."""
    durations = [o.duration for o in observations if o.duration is not None]
    tokens = _every([o.tokens for o in observations])
    cost = _every([o.cost for o in observations])
    diff = _every([o.diff_lines for o in observations])
    verifies = [o.verify for o in observations]
    return _Obs(
        completed=all(o.completed for o in observations),
        verify=PASSED
        if all(v == PASSED for v in verifies)
        else MISSING
        if MISSING in verifies
        else "failed",
        sections=all(o.sections for o in observations),
        duration=max(durations) if durations else None,
        tokens=math.fsum(tokens) if tokens is not None else None,
        cost=math.fsum(cost) if cost is not None else None,
        diff_lines=math.fsum(diff) if diff is not None else None,
    )


def _rate_difference(a: Rate, b: Rate) -> Difference:
    if a.n <= 0 or b.n <= 0:
        return Difference(None, None, None)
    d = rate_difference((a.count, a.n), (b.count, b.n))
    return Difference(_finite(d.estimate), _finite(d.low), _finite(d.high))


def _mean_difference(a: Spread, b: Spread) -> Difference:
    if a.mean is None or b.mean is None:
        return Difference(None, None, None)
    if a.n < 2 or b.n < 2:
        return Difference(_finite(b.mean - a.mean), None, None)
    d = mean_difference(a.values, b.values)
    return Difference(_finite(d.estimate), _finite(d.low), _finite(d.high))


def _differences(a: Stats, b: Stats) -> Differences:
    return Differences(
        completed=_rate_difference(a.completed, b.completed),
        verify=_rate_difference(a.verify, b.verify),
        sections=_rate_difference(a.sections, b.sections),
        duration_s=_mean_difference(a.duration_s, b.duration_s),
        tokens=_mean_difference(a.tokens, b.tokens),
        cost_usd=_mean_difference(a.cost_usd, b.cost_usd),
        diff_lines=_mean_difference(a.diff_lines, b.diff_lines),
    )


# --------------------------------------------------------------------------- the gate


def _pct(rate: Rate) -> str:
    assert rate.estimate is not None and rate.low is not None and rate.high is not None
    return (
        f"{rate.count}/{rate.n} ({100 * rate.estimate:.1f}%, 95% interval "
        f"{100 * rate.low:.1f}-{100 * rate.high:.1f}%)"
    )


def _rate_dropped(a: ArmResult, b: ArmResult, slugs: Sequence[str]) -> list[ManyFinding]:
    found = []
    groups = [(ALL_WORKERS, a.all_workers, b.all_workers)]
    by_slug_a = {w.slug: w.stats for w in a.workers}
    by_slug_b = {w.slug: w.stats for w in b.workers}
    groups += [(slug, by_slug_a[slug], by_slug_b[slug]) for slug in slugs]
    for name, stats_a, stats_b in groups:
        rate_a, rate_b = stats_a.verify, stats_b.verify
        if rate_a.low is None or rate_b.high is None or not rate_b.high < rate_a.low:
            continue
        found.append(
            ManyFinding(
                a=a.label,
                b=b.label,
                runs=None,
                worker=name,
                rule=VERIFY_RATE_DROPPED,
                detail=f"verify passed {_pct(rate_b)} here, {_pct(rate_a)} in the baseline: "
                "the intervals do not overlap",
            )
        )
    return found


def _per_run_findings(
    a: Arm, b: Arm, rules: Sequence[str], worker: str | None
) -> tuple[list[ManyFinding], list[str]]:
    found: list[ManyFinding] = []
    options = CompareOptions(worker=worker, baseline=True, rules=rules)
    for run_a, run_b in zip(a.runs, b.runs, strict=False):
        if worker is not None and not (
            run_a.run.bundle.worker(worker) or run_b.run.bundle.worker(worker)
        ):
            continue
        gate = compare_runs(run_a.run, run_b.run, options=options).gate
        assert gate is not None
        found += [
            ManyFinding(
                a.label, b.label, f"{run_a.name} vs {run_b.name}", f.worker, f.rule, f.detail
            )
            for f in gate.findings
        ]
    notes = []
    if len(a.runs) != len(b.runs):
        left = abs(len(a.runs) - len(b.runs))
        notes.append(
            f"the gate paired {min(len(a.runs), len(b.runs)):,} runs of {a.label} and "
            f"{b.label} by position; {plural(left, 'run')} had no partner"
        )
    return found, notes


# --------------------------------------------------------------------------- compare


def _pairs(count: int, pairs: Sequence[tuple[int, int]] | None) -> list[tuple[int, int]]:
    chosen = [(0, index) for index in range(1, count)] if pairs is None else list(pairs)
    for a, b in chosen:
        if not (0 <= a < count and 0 <= b < count) or a == b:
            raise UsageError(f"pairs: ({a}, {b}) does not name two of the {count} arms")
    return chosen


def compare_arms(
    arms: Sequence[Arm],
    options: ManyOptions | None = None,
    *,
    mode: str = "runs",
    skipped: Sequence[SkippedRun] = (),
    notes: Sequence[str] = (),
) -> ManyComparison:
    """Arms of runs side by side (see the module's docstring). ``mode`` is recorded
    ("experiment", "experiments" or "runs"), as are ``skipped`` runs and ``notes``."""
    chosen = options or ManyOptions()
    if not arms:
        raise UsageError("arms: nothing to compare (no arm)")
    pairs = _pairs(len(arms), chosen.pairs)
    rules = check_rules(
        MANY_DEFAULT_RULES if chosen.rules is None else chosen.rules, valid=MANY_RULES
    )
    slugs = sorted({w.slug for arm in arms for r in arm.runs for w in r.run.bundle.workers})
    if chosen.worker is not None:
        if chosen.worker not in slugs:
            shown = ", ".join(slugs[:20]) + (", ..." if len(slugs) > 20 else "")
            raise UsageError(f"no worker {chosen.worker!r} in any run: the workers are {shown}")
        slugs = [chosen.worker]
    results: list[ArmResult] = []
    for arm in arms:
        per_slug: dict[str, list[_Obs]] = {slug: [] for slug in slugs}
        whole: list[_Obs] = []
        for arm_run in arm.runs:
            seen = []
            for slug in slugs:
                observed = _observe(arm_run.run, slug)
                if observed is not None:
                    per_slug[slug].append(observed)
                    seen.append(observed)
            if seen:
                whole.append(_whole_run(seen))
        results.append(
            ArmResult(
                label=arm.label,
                source=arm.source,
                facts=[ArmFact(name, value) for name, value in arm.facts],
                runs=[
                    RunRef(
                        r.name, r.repeat, r.state, r.run.source, r.run.bundle.session, r.run.sha256
                    )
                    for r in arm.runs
                ],
                all_workers=_stats(whole),
                workers=[WorkerStats(slug, _stats(per_slug[slug])) for slug in slugs],
            )
        )
    pair_results = [
        PairResult(
            a=i,
            b=j,
            a_label=arms[i].label,
            b_label=arms[j].label,
            all_workers=_differences(results[i].all_workers, results[j].all_workers),
            workers=[
                WorkerDifferences(slug, _differences(sa.stats, sb.stats))
                for slug, sa, sb in zip(slugs, results[i].workers, results[j].workers, strict=True)
            ],
        )
        for i, j in pairs
    ]
    all_notes = list(notes)
    gate = None
    if chosen.baseline and not pairs:
        # A gate that checked nothing must not pass: arms the other side lacks (labels
        # that differ) are an error, not a clean bill.
        raise KodelythError(
            "baseline: no arm of the baseline has a counterpart to check against (arms "
            "are matched by label, or paired when each side has one): nothing was checked"
        )
    if chosen.baseline:
        findings: list[ManyFinding] = []
        per_run = [rule for rule in rules if rule in RULES]
        for i, j in pairs:
            if VERIFY_RATE_DROPPED in rules:
                findings += _rate_dropped(results[i], results[j], slugs)
            if per_run:
                found, gate_notes = _per_run_findings(arms[i], arms[j], per_run, chosen.worker)
                findings += found
                all_notes += gate_notes
        baselines = sorted({arms[i].label for i, _ in pairs})
        gate = ManyGate(
            baseline=", ".join(baselines) or "(no pair of arms to check)",
            rules=rules,
            findings=findings,
            exit_code=EXIT_REGRESSION if findings else 0,
        )
    empty = [arm.label for arm in arms if not arm.runs]
    if empty:
        all_notes.append(f"{plural(len(empty), 'arm')} without a finished run: nothing to show")
    return ManyComparison(
        schema=SCHEMA_V2,
        tool=f"kodelyth-ecc@{__version__}",
        mode=mode,
        options=ManyOptionsRecord(worker=chosen.worker, baseline=chosen.baseline),
        arms=results,
        pairs=pair_results,
        gate=gate,
        skipped=list(skipped),
        notes=all_notes,
    )


def experiment_skipped(experiment: Experiment) -> list[SkippedRun]:
    """An experiment's skipped runs as the comparison records them."""
    return [
        SkippedRun(experiment.directory, s.name, s.arm, s.state, s.bundle, s.reason)
        for s in experiment.skipped
    ]
