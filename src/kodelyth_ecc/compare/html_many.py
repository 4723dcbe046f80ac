"""The HTML view of a ``ManyComparison``: one self-contained file with the tables and plots
drawn as inline SVG here, in Python (no script, no URL, the same Content-Security-Policy
as the two-run report, with no script allowed at all).

The plots: per group (all workers, then each worker) the pass rates (verify passed,
completed) of every arm as a dot at the rate and a whisker over its 95% interval, on a
0-100% axis; and the distribution of duration and of cost, one row an arm: a dot a run,
the mean as a bar with its 95% interval as a whisker. Arms are drawn in their order, in
one neutral colour: none is marked. Every text is escaped; a coordinate is written only
when it is a finite number; an arm without values says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from kodelyth_ecc.compare.manyresults import ManyComparison, Rate, Spread, Stats
from kodelyth_ecc.compare.render_many import (
    ALL_WORKERS_NOTE,
    LEGEND,
    arm_name,
    group_rows,
    label,
    many_gate_summary,
    number,
    percent,
)
from kodelyth_ecc.compare_html import page_head
from kodelyth_ecc.humanize import plural

# The plots' geometry (px): labels left of PLOT_LEFT, the axis PLOT_WIDTH wide.
PLOT_LEFT = 240.0
PLOT_WIDTH = 420.0
ROW_HEIGHT = 20.0
TOP = 24.0
SVG_WIDTH = PLOT_LEFT + PLOT_WIDTH + 190.0
# At ~6.5 px a character in the report's font, what fits left of the axis.
SVG_LABEL_CHARS = 32

_CSS = """
svg.plot { display: block; margin: .4rem 0 1rem; max-width: 100%; height: auto;
  font: 11px system-ui, sans-serif; }
svg.plot text { fill: var(--fg); }
svg.plot .axis, svg.plot .tick { stroke: var(--muted); stroke-width: 1; }
svg.plot .whisker, svg.plot .mean-interval { stroke: var(--fg); stroke-width: 2; }
svg.plot .estimate, svg.plot .value { fill: #5b7fb5; }
svg.plot .value { fill-opacity: .55; }
svg.plot .mean { stroke: var(--fg); stroke-width: 3; }
svg.plot .empty { fill: var(--muted); font-style: italic; }
td.fig { white-space: nowrap; }
"""


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _n(value: float) -> str:
    """A coordinate: always finite here (callers check), two decimals."""
    return f"{value:.2f}"


def _x(fraction: float) -> float:
    return PLOT_LEFT + min(1.0, max(0.0, fraction)) * PLOT_WIDTH


def _finite(*values: float | None) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def _svg(title: str, rows: int, body: list[str], axis: list[str]) -> str:
    height = TOP + rows * ROW_HEIGHT + 24
    return (
        f'<svg class="plot" role="img" '
        f'width="{_n(SVG_WIDTH)}" height="{_n(height)}" '
        f'viewBox="0 0 {_n(SVG_WIDTH)} {_n(height)}"><title>{_e(title)}</title>'
        f'<text x="0" y="14" font-weight="600">{_e(title)}</text>'
        + "".join(axis)
        + "".join(body)
        + "</svg>"
    )


def _axis(rows: int, ticks: Sequence[tuple[float, str]]) -> list[str]:
    bottom = TOP + rows * ROW_HEIGHT
    parts = [
        f'<line class="axis" x1="{_n(PLOT_LEFT)}" y1="{_n(bottom)}" '
        f'x2="{_n(PLOT_LEFT + PLOT_WIDTH)}" y2="{_n(bottom)}"/>'
    ]
    for fraction, text in ticks:
        x = _x(fraction)
        parts.append(
            f'<line class="tick" x1="{_n(x)}" y1="{_n(bottom)}" x2="{_n(x)}" '
            f'y2="{_n(bottom + 4)}"/><text x="{_n(x)}" y="{_n(bottom + 15)}" '
            f'text-anchor="middle">{_e(text)}</text>'
        )
    return parts


def _row_label(y: float, text: str) -> str:
    return (
        f'<text x="{_n(PLOT_LEFT - 8)}" y="{_n(y + 4)}" text-anchor="end">'
        f"{_e(label(text, SVG_LABEL_CHARS))}</text>"
    )


def rate_plot(title: str, group: str, rates: Sequence[tuple[str, Rate]]) -> str:
    """One row an arm: the rate as a dot, its 95% interval as a whisker (0-100%)."""
    body = []
    for index, (name, rate) in enumerate(rates):
        y = TOP + index * ROW_HEIGHT + ROW_HEIGHT / 2
        body.append(_row_label(y, name))
        data = f'data-group="{_e(group)}" data-arm="{index}"'
        if rate.n <= 0 or not _finite(rate.estimate, rate.low, rate.high):
            body.append(
                f'<text class="empty" {data} x="{_n(PLOT_LEFT + 4)}" y="{_n(y + 4)}">no run</text>'
            )
            continue
        assert rate.estimate is not None and rate.low is not None and rate.high is not None
        body.append(
            f'<line class="whisker" {data} x1="{_n(_x(rate.low))}" y1="{_n(y)}" '
            f'x2="{_n(_x(rate.high))}" y2="{_n(y)}"/>'
            f'<circle class="estimate" {data} cx="{_n(_x(rate.estimate))}" cy="{_n(y)}" r="4"/>'
            f'<text x="{_n(PLOT_LEFT + PLOT_WIDTH + 8)}" y="{_n(y + 4)}">'
            f"{rate.count}/{rate.n} {_e(percent(rate.estimate))}% "
            f"[{_e(percent(rate.low))}, {_e(percent(rate.high))}]</text>"
        )
    ticks = [(f, f"{int(f * 100)}%") for f in (0.0, 0.25, 0.5, 0.75, 1.0)]
    return _svg(title, len(rates), body, _axis(len(rates), ticks))


def spread_plot(title: str, group: str, unit: str, spreads: Sequence[tuple[str, Spread]]) -> str:
    """One row an arm: a dot a run, the mean as a bar, its 95% interval as a whisker; the
    axis spans every value and interval shown. No value at all: a note instead."""
    points = [
        v
        for _, s in spreads
        for v in (*s.values, s.low, s.high)
        if v is not None and math.isfinite(v)
    ]
    if not points:
        return f'<p class="note">{_e(title)}: no run recorded one</p>'
    low, high = min(points), max(points)
    if high - low <= 0 or not math.isfinite(high - low):
        low, high = low - 1.0, high + 1.0
        if not math.isfinite(high - low):
            return f'<p class="note">{_e(title)}: values out of range</p>'

    def at(value: float) -> float:
        return _x((value - low) / (high - low))

    body = []
    for index, (name, spread) in enumerate(spreads):
        y = TOP + index * ROW_HEIGHT + ROW_HEIGHT / 2
        body.append(_row_label(y, name))
        data = f'data-group="{_e(group)}" data-arm="{index}"'
        if not spread.values or spread.mean is None:
            body.append(
                f'<text class="empty" {data} x="{_n(PLOT_LEFT + 4)}" y="{_n(y + 4)}">'
                "no value</text>"
            )
            continue
        body += [
            f'<circle class="value" {data} cx="{_n(at(v))}" cy="{_n(y)}" r="3"/>'
            for v in spread.values
            if math.isfinite(v)
        ]
        if _finite(spread.low, spread.high) and spread.n >= 2:
            assert spread.low is not None and spread.high is not None
            body.append(
                f'<line class="mean-interval" {data} x1="{_n(at(spread.low))}" y1="{_n(y)}" '
                f'x2="{_n(at(spread.high))}" y2="{_n(y)}"/>'
            )
        mean_x = at(spread.mean)
        body.append(
            f'<line class="mean" {data} x1="{_n(mean_x)}" y1="{_n(y - 7)}" x2="{_n(mean_x)}" '
            f'y2="{_n(y + 7)}"/><text x="{_n(PLOT_LEFT + PLOT_WIDTH + 8)}" y="{_n(y + 4)}">'
            f"mean {_e(number(spread.mean, unit))} (n={spread.n})</text>"
        )
    ticks = [
        (0.0, number(low, unit)),
        (0.5, number((low + high) / 2, unit)),
        (1.0, number(high, unit)),
    ]
    return _svg(title, len(spreads), body, _axis(len(spreads), ticks))


def _plots(comparison: ManyComparison, slug: str | None) -> str:
    def stats(index: int) -> Stats:
        arm = comparison.arms[index]
        if slug is None:
            return arm.all_workers
        return next(w.stats for w in arm.workers if w.slug == slug)

    group = slug if slug is not None else "*"
    names = [
        f"{arm_name(i)} {label(arm.label, SVG_LABEL_CHARS)}"
        for i, arm in enumerate(comparison.arms)
    ]
    every = range(len(comparison.arms))
    return "".join(
        [
            rate_plot(
                "verify passed (95% Wilson interval)",
                group,
                [(names[i], stats(i).verify) for i in every],
            ),
            rate_plot(
                "completed (95% Wilson interval)",
                group,
                [(names[i], stats(i).completed) for i in every],
            ),
            spread_plot(
                "duration (runs, mean and its 95% interval)",
                group,
                "s",
                [(names[i], stats(i).duration_s) for i in every],
            ),
            spread_plot(
                "cost (runs, mean and its 95% interval)",
                group,
                "$",
                [(names[i], stats(i).cost_usd) for i in every],
            ),
        ]
    )


def _table_html(rows: list[list[str]], group: str) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in rows[0])
    body = "".join(
        "<tr>" + "".join(f'<td class="fig">{_e(c)}</td>' for c in row) + "</tr>" for row in rows[1:]
    )
    return f'<table class="figures" data-group="{_e(group)}"><tr>{head}</tr>{body}</table>'


def render_many_html(comparison: ManyComparison) -> str:
    arms = comparison.arms
    out = [
        *page_head(f"kodelyth-ecc compare: {plural(len(arms), 'arm')}", script=None, css=_CSS),
        "<h1>kodelyth-ecc compare: many runs</h1>",
        '<table id="arms"><tr><th>arm</th><th>label</th><th>runs</th><th>source</th>'
        "<th>facts</th></tr>",
    ]
    for index, arm in enumerate(arms):
        facts = " · ".join(f"{f.field} {f.value}" for f in arm.facts) or "-"
        out.append(
            f"<tr><td>{_e(arm_name(index))}</td><td>{_e(label(arm.label, 500))}</td>"
            f"<td>{len(arm.runs):,}</td><td>{_e(label(arm.source, 500))}</td>"
            f'<td class="val">{_e(label(facts, 2000))}</td></tr>'
        )
    out.append("</table>")
    if comparison.skipped:
        out.append(
            '<h2>Skipped runs</h2><table id="skipped"><tr><th>run</th><th>arm</th>'
            "<th>state</th><th>bundle</th><th>why</th></tr>"
        )
        out += [
            f"<tr><td>{_e(label(s.run, 200))}</td><td>{_e(label(s.arm, 200))}</td>"
            f"<td>{_e(label(s.state or '-', 40))}</td><td>{_e(label(s.bundle, 200))}</td>"
            f"<td>{_e(s.reason)}</td></tr>"
            for s in comparison.skipped
        ]
        out.append("</table>")
    gate = comparison.gate
    if gate is not None:
        out.append(f'<h2>Regression gate</h2><p id="gate">{_e(many_gate_summary(comparison))}</p>')
        if gate.findings:
            out.append(
                '<table class="findings"><tr><th>arms</th><th>runs</th><th>worker</th>'
                "<th>rule</th><th>detail</th></tr>"
            )
            out += [
                f"<tr><td>{_e(label(f.b, 200))} vs {_e(label(f.a, 200))}</td>"
                f"<td>{_e(label(f.runs or '-', 200))}</td><td>{_e(label(f.worker))}</td>"
                f"<td>{_e(f.rule)}</td><td>{_e(label(f.detail, 2000))}</td></tr>"
                for f in gate.findings
            ]
            out.append("</table>")
    out += [f'<p class="note">note: {_e(label(note, 2000))}</p>' for note in comparison.notes]
    out += [
        '<h2>All workers</h2><div class="group" id="g-all">',
        f'<p class="note">{_e(ALL_WORKERS_NOTE)}</p>',
        _table_html(group_rows(comparison, None), "*"),
        _plots(comparison, None),
        "</div>",
    ]
    slugs = [w.slug for w in arms[0].workers] if arms else []
    for slug in slugs:
        out += [
            f'<details class="worker" id="w-{_e(slug)}"><summary>{_e(label(slug))}</summary>',
            _table_html(group_rows(comparison, slug), slug),
            _plots(comparison, slug),
            "</details>",
        ]
    out += [f'<p class="note">{_e(LEGEND)}</p>', "</body></html>"]
    return "\n".join(out) + "\n"
