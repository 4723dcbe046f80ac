"""``compare_runs``: two runs into one ``Comparison``; it states facts and never ranks the
runs."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

from kodelyth_ecc import __version__
from kodelyth_ecc.bundle import Bundle
from kodelyth_ecc.compare.blind import keep, redactor
from kodelyth_ecc.compare.diffs import (
    DIFF_BUDGET_LINES,
    MAX_DIFF_LINES,
    TOO_LARGE,
    DiffBudget,
    unified_diff,
)
from kodelyth_ecc.compare.facts import run_facts, traffic
from kodelyth_ecc.compare.gate import EXIT_REGRESSION, check_rules, gate_findings
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
    Side,
    Summary,
    WorkerComparison,
    pair_status,
)
from kodelyth_ecc.compare.runs import Run
from kodelyth_ecc.compare.sections import compare_sections
from kodelyth_ecc.compare.variation import variation
from kodelyth_ecc.errors import UsageError
from kodelyth_ecc.handoff_sections import parse_handoff
from kodelyth_ecc.humanize import plural

if TYPE_CHECKING:
    from typing_extensions import Unpack


@dataclass(frozen=True)
class CompareOptions:
    """What ``compare_runs`` is asked for.

    ``full`` adds section texts with their changed lines and unified handoff diffs;
    ``patches`` each worker's patch; ``worker`` narrows to one slug; ``blind`` labels
    the runs "Run 1"/"Run 2" and hides what would tell them apart (order them with
    ``blind_order`` first); ``baseline`` runs the gate with ``rules`` (None: every rule),
    the first run as the baseline."""

    full: bool = False
    patches: bool = False
    worker: str | None = None
    blind: bool = False
    baseline: bool = False
    rules: Sequence[str] | None = None

    def recorded(self) -> Options:
        """The options the ``Comparison`` records."""
        return Options(full=self.full, patches=self.patches, worker=self.worker, blind=self.blind)


class CompareFlags(TypedDict, total=False):
    """``CompareOptions`` fields passed as keywords (``compare_runs(a, b, full=True)``)."""

    full: bool
    patches: bool
    worker: str | None
    blind: bool
    baseline: bool
    rules: Sequence[str] | None


def _options(options: CompareOptions | None, flags: CompareFlags) -> CompareOptions:
    chosen = options or CompareOptions()
    return dataclasses.replace(chosen, **flags) if flags else chosen


def _task_status(a: str, b: str) -> str:
    if a == b:
        return IDENTICAL
    # Two runs' task.md always differ in paths and session names: compare what the
    # worker was asked to do.
    from kodelyth_ecc.replay import extract_task

    return IDENTICAL if extract_task(a)[0] == extract_task(b)[0] else CHANGED


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
    options: CompareOptions | None = None,
    notes: Sequence[str] = (),
    **flags: Unpack[CompareFlags],
) -> Comparison:
    """Compare two runs, ``first`` as A (the baseline with ``baseline=True``), as
    ``options`` says (see ``CompareOptions``; its fields may also be passed as keywords,
    which override ``options``). ``notes`` are added to the comparison's notes."""
    chosen = _options(options, flags)
    full, patches, worker, blind = chosen.full, chosen.patches, chosen.worker, chosen.blind
    baseline = chosen.baseline
    if blind and baseline:
        raise UsageError("--blind and --baseline do not mix: a gate needs to know its baseline")
    chosen_rules = check_rules(chosen.rules)
    labels = ("Run 1", "Run 2") if blind else ("A", "B")
    redact = redactor((first, second)) if blind else keep
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
            run_facts(
                first, wa, handoff_a, text_a, patches=patches, redact=redact, blind=blind, tail=full
            )
            if wa and handoff_a and text_a is not None
            else None
        )
        facts_b = (
            run_facts(
                second,
                wb,
                handoff_b,
                text_b,
                patches=patches,
                redact=redact,
                blind=blind,
                tail=full,
            )
            if wb and handoff_b and text_b is not None
            else None
        )
        if wa and wb:
            changes = Changes(
                task=_task_status(redact(wa.task), redact(wb.task)),
                handoff=IDENTICAL if text_a == text_b else CHANGED,
                status=pair_status(
                    (facts_a.state, facts_a.exit_code) if facts_a else None,
                    (facts_b.state, facts_b.exit_code) if facts_b else None,
                ),
                diff=pair_status(
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
            **traffic(wa, wb),
        )
        compared.append(item)
        if baseline:
            findings += gate_findings(item, handoff_a, handoff_b, chosen_rules)
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
        options=chosen.recorded(),
        a=_side(labels[0], first, blind),
        b=_side(labels[1], second, blind),
        variation=variation(first.bundle, second.bundle, blind, redact),
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
    options: CompareOptions | None = None,
    **flags: Unpack[CompareFlags],
) -> Comparison:
    """``compare_runs`` for two bundles already in memory (A is ``a``)."""
    return compare_runs(
        Run(a, a.session, "bundle"), Run(b, b.session, "bundle"), options=_options(options, flags)
    )
