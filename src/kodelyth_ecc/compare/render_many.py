"""The terminal and markdown views of a ``ManyComparison``; they return text, never print.

One table per worker (and one for all workers): a row per figure, a column per arm, then
a column per pair of arms with the difference (B minus A) and its 95% interval. Facts
side by side: no arm is marked, ranked or sorted by a figure. Labels, run names and
details come from experiment files and bundles: control characters and line breaks are
written out (``\\x1b``, ``\\n``), never sent to the terminal.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from kodelyth_ecc.compare.manyresults import (
    ArmResult,
    Difference,
    ManyComparison,
    Rate,
    Spread,
    Stats,
)
from kodelyth_ecc.compare_render import md_cell
from kodelyth_ecc.humanize import plural
from kodelyth_ecc.termsafe import one_line

# How much of a label the tables show (the JSON has it whole).
LABEL_CHARS = 60

LEGEND = (
    "rates: count/runs, % and its 95% Wilson interval; means: mean, median and the mean's "
    "95% t interval; B - A: the difference with its 95% interval (Newcombe for rates, in "
    "percentage points pp; Welch for means)"
)
ALL_WORKERS_NOTE = (
    "one value a run: completed, verify passed and sections when every worker did; the "
    "longest worker's duration; tokens, cost and diff lines summed over the workers"
)


def label(text: str, limit: int = LABEL_CHARS) -> str:
    """A label on one line, controls written out, cut to ``limit`` characters."""
    return one_line(text, limit)


def number(value: float | None, unit: str, *, signed: bool = False) -> str:
    """``12.5s``, ``1,234``, ``$0.0123``, ``42.0``; ``-`` for none (NaN and infinities too)."""
    if value is None or not math.isfinite(value):
        return "-"
    sign = ("+" if value >= 0 else "-") if signed else ("-" if value < 0 else "")
    size = abs(value)
    if unit == "s":
        return f"{sign}{size:,.1f}s"
    if unit == "$":
        return f"{sign}${size:,.4f}"
    if unit == "tokens":
        return f"{sign}{size:,.0f}"
    return f"{sign}{size:,.1f}"


def percent(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{100 * value:.1f}"


def rate_text(rate: Rate) -> str:
    """``9/10 90.0% [59.6, 98.2]``; ``-`` when no run counts."""
    if rate.n <= 0 or rate.estimate is None:
        return "-"
    interval = f"[{percent(rate.low)}, {percent(rate.high)}]"
    return f"{rate.count}/{rate.n} {percent(rate.estimate)}% {interval}"


def spread_text(spread: Spread, unit: str) -> str:
    """``mean 12.5s [10.1s, 14.9s], median 12.0s (n=10)``; ``-`` without values."""
    if spread.n == 0 or spread.mean is None:
        return "-"
    interval = (
        f" [{number(spread.low, unit)}, {number(spread.high, unit)}]" if spread.n >= 2 else ""
    )
    return (
        f"mean {number(spread.mean, unit)}{interval}, median {number(spread.median, unit)} "
        f"(n={spread.n})"
    )


def rate_difference_text(d: Difference) -> str:
    if d.estimate is None:
        return "-"
    points = f"{100 * d.estimate:+.1f} pp"
    if d.low is None or d.high is None:
        return points
    return f"{points} [{100 * d.low:+.1f}, {100 * d.high:+.1f}]"


def mean_difference_text(d: Difference, unit: str) -> str:
    if d.estimate is None:
        return "-"
    shown = number(d.estimate, unit, signed=True)
    if d.low is None or d.high is None:
        return shown + " (needs 2 runs a side for an interval)"
    return f"{shown} [{number(d.low, unit, signed=True)}, {number(d.high, unit, signed=True)}]"


def _figures() -> list[tuple[str, Callable[[Stats], str], str | None, str]]:
    """(row, cell of an arm, the Differences field, unit of the difference)."""
    return [
        ("runs", lambda s: f"{s.runs:,}", None, ""),
        ("completed", lambda s: rate_text(s.completed), "completed", "rate"),
        (
            "verify passed",
            lambda s: (
                rate_text(s.verify)
                + (f" ({s.verify_missing:,} missing)" if s.runs and s.verify_missing else "")
            ),
            "verify",
            "rate",
        ),
        ("sections written", lambda s: rate_text(s.sections), "sections", "rate"),
        ("duration", lambda s: spread_text(s.duration_s, "s"), "duration_s", "s"),
        ("tokens in+out", lambda s: spread_text(s.tokens, "tokens"), "tokens", "tokens"),
        ("cost", lambda s: spread_text(s.cost_usd, "$"), "cost_usd", "$"),
        ("diff lines", lambda s: spread_text(s.diff_lines, "lines"), "diff_lines", "lines"),
    ]


def arm_name(index: int) -> str:
    return f"arm {index + 1}"


def group_rows(comparison: ManyComparison, slug: str | None) -> list[list[str]]:
    """The table of one worker (``None``: all workers): a header, then a row a figure."""

    def stats(arm: ArmResult) -> Stats:
        if slug is None:
            return arm.all_workers
        return next(w.stats for w in arm.workers if w.slug == slug)

    def differences(pair_index: int) -> object:
        pair = comparison.pairs[pair_index]
        if slug is None:
            return pair.all_workers
        return next(w.differences for w in pair.workers if w.slug == slug)

    header = ["", *(arm_name(i) for i in range(len(comparison.arms)))]
    header += [f"{arm_name(p.b)} - {arm_name(p.a)}" for p in comparison.pairs]
    rows = [header]
    for name, cell, field, unit in _figures():
        row = [name, *(cell(stats(arm)) for arm in comparison.arms)]
        for index in range(len(comparison.pairs)):
            if field is None:
                row.append("")
                continue
            d = getattr(differences(index), field)
            row.append(rate_difference_text(d) if unit == "rate" else mean_difference_text(d, unit))
        rows.append(row)
    return rows


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _title(comparison: ManyComparison) -> str:
    runs = sum(len(arm.runs) for arm in comparison.arms)
    what = {
        "experiment": "an experiment",
        "experiments": "two experiments",
        "runs": "runs given",
    }.get(comparison.mode, comparison.mode)
    return (
        f"kodelyth-ecc compare: {plural(len(comparison.arms), 'arm')}, {plural(runs, 'run')} "
        f"({what})"
    )


def arm_lines(comparison: ManyComparison) -> list[str]:
    """Each arm: its number, label, runs and facts (one line each, escaped)."""
    out = []
    for index, arm in enumerate(comparison.arms):
        source = "" if arm.source == "arguments" else f" from {label(arm.source, 200)}"
        out.append(
            f"  {arm_name(index)}: {label(arm.label, 200)} ({plural(len(arm.runs), 'run')}{source})"
        )
        if arm.facts:
            facts = " · ".join(f"{f.field} {label(f.value, 80)}" for f in arm.facts)
            out.append(f"         {facts}")
        if arm.runs:
            names = ", ".join(label(r.name, 80) for r in arm.runs[:12])
            more = f", ... ({len(arm.runs) - 12:,} more)" if len(arm.runs) > 12 else ""
            out.append(f"         runs: {names}{more}")
    return out


def skipped_lines(comparison: ManyComparison) -> list[str]:
    return [
        f"  skipped {label(s.run, 80)} (arm {label(s.arm, 80)}, state "
        f"{label(s.state or '?', 40)}): {label(s.reason, 200)}"
        for s in comparison.skipped
    ]


def _slugs(comparison: ManyComparison) -> list[str]:
    return [w.slug for w in comparison.arms[0].workers] if comparison.arms else []


def render_many_terminal(comparison: ManyComparison) -> str:
    out = [_title(comparison), *arm_lines(comparison), *skipped_lines(comparison), ""]
    out += [f"All workers ({ALL_WORKERS_NOTE})", *_table(group_rows(comparison, None)), ""]
    for slug in _slugs(comparison):
        out += [f"Worker {label(slug)}", *_table(group_rows(comparison, slug)), ""]
    out.append(f"  ({LEGEND})")
    out += [f"note: {label(note, 1000)}" for note in comparison.notes]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- markdown


def _md_table(rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(md_cell(c) for c in rows[0]) + " |"]
    lines.append("| " + " | ".join("---" for _ in rows[0]) + " |")
    lines += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows[1:]]
    return lines


def render_many_markdown(comparison: ManyComparison) -> str:
    out = ["## kodelyth-ecc compare: many runs", "", md_cell(_title(comparison)), ""]
    out += ["| arm | label | runs | facts |", "| --- | --- | --- | --- |"]
    for index, arm in enumerate(comparison.arms):
        facts = " · ".join(f"{f.field} {label(f.value, 80)}" for f in arm.facts) or "-"
        out.append(
            f"| {arm_name(index)} | {md_cell(label(arm.label, 200))} | {len(arm.runs):,} | "
            f"{md_cell(facts)} |"
        )
    if comparison.skipped:
        out += ["", *(f"- {md_cell(line.strip())}" for line in skipped_lines(comparison))]
    out += ["", "### All workers", "", md_cell(ALL_WORKERS_NOTE), ""]
    out += _md_table(group_rows(comparison, None))
    for slug in _slugs(comparison):
        out += ["", f"### Worker {md_cell(label(slug))}", ""]
        out += _md_table(group_rows(comparison, slug))
    out += ["", f"_{md_cell(LEGEND)}_"]
    gate = comparison.gate
    if gate is not None:
        out += ["", "### Regression gate", "", md_cell(many_gate_summary(comparison)), ""]
        if gate.findings:
            out += ["| arms | runs | worker | rule | detail |", "| --- | --- | --- | --- | --- |"]
            out += [
                f"| {md_cell(label(f.b))} vs {md_cell(label(f.a))} | "
                f"{md_cell(label(f.runs or '-', 200))} | {md_cell(label(f.worker))} | "
                f"{f.rule} | {md_cell(label(f.detail, 1000))} |"
                for f in gate.findings
            ]
    if comparison.notes:
        out += ["", *[f"> note: {md_cell(label(note, 1000))}" for note in comparison.notes]]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- the gate


def many_gate_summary(comparison: ManyComparison) -> str:
    gate = comparison.gate
    assert gate is not None
    rules = ", ".join(gate.rules)
    if not gate.findings:
        return (
            f"regression gate: no finding (against baseline {label(gate.baseline, 200)}; "
            f"rules {rules}): exit 0"
        )
    return (
        f"regression gate: {plural(len(gate.findings), 'finding')} against baseline "
        f"{label(gate.baseline, 200)} (rules {rules}): exit {gate.exit_code}"
    )


def many_gate_lines(comparison: ManyComparison) -> list[str]:
    """The gate's line and one line a finding (arms, runs, worker, rule, detail), for
    stderr; everything quoted is written out on one line."""
    gate = comparison.gate
    if gate is None:
        return []
    lines = [many_gate_summary(comparison)]
    for f in gate.findings:
        runs = f" [{label(f.runs, 200)}]" if f.runs else ""
        lines.append(
            f"  {label(f.b)} vs {label(f.a)}{runs}  {label(f.worker)}  {f.rule}  "
            f"{label(f.detail, 1000)}"
        )
    return lines
