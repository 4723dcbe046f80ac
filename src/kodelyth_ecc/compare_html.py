"""The HTML view of a ``Comparison``: one self-contained file for a reviewer.

Inline CSS and JavaScript only: no URL of any kind, no external font, and a
Content-Security-Policy that allows nothing but this page's own style and its
one script (by hash), so even text that slipped through escaping could neither
run nor fetch. Every string from a bundle is escaped; bundles are hostile.
Per-worker blocks are collapsible so 64 workers stay readable, and a "changed
only" filter hides workers and sections that are identical in both runs. The
sides' changes are amber (A) and blue (B), never red and green: no side is
marked as the right one; only the gate's findings are red.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape

from kodelyth_ecc.compare import (
    CHANGED,
    IDENTICAL,
    SAME_STATUSES,
    Comparison,
    RunFacts,
    SectionComparison,
    WorkerComparison,
    text_lines,
)
from kodelyth_ecc.compare_render import (
    facts_code,
    gate_summary,
    has_verify,
    left_out,
    presence_text,
    summary_text,
    traffic_text,
    usage_text,
    variation_value,
    verify_status,
    verify_text,
)
from kodelyth_ecc.humanize import human_bytes, human_duration, plural

# What one text (a side of a section, a diff, a patch, a meta value) shows at most, and
# all of them together; the JSON output has everything. A browser stays responsive
# with a few tens of MB of text.
MAX_SHOWN_CHARS = 256 * 1024
MAX_REPORT_CHARS = 32 * 1024 * 1024
# A title or state longer than this (one line of a hostile handoff) is cut.
MAX_LABEL_CHARS = 200
# Up to this many workers, those with changes start expanded.
OPEN_WORKERS_UP_TO = 8

_CSS = """
:root { color-scheme: light dark; --bg: #fff; --fg: #1d1d1f; --muted: #6b6b70;
  --line: #d8d8dc; --side-a: #fbe3c4; --side-b: #d6e6fb; --chg: #ece6f7; --bad: #fde8e8;
  --code: #f5f5f7; }
@media (prefers-color-scheme: dark) { :root { --bg: #17171a; --fg: #e8e8ea; --muted: #9a9aa2;
  --line: #3a3a40; --side-a: #4a3618; --side-b: #1c3350; --chg: #352e45; --bad: #45201f;
  --code: #222226; } }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1500px; padding: 1rem 1.5rem 4rem; background: var(--bg);
  color: var(--fg); font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; }
h1 { font-size: 1.4rem; margin: .2rem 0 .8rem; }
h2 { font-size: 1.15rem; margin: 1.6rem 0 .5rem; border-bottom: 1px solid var(--line); }
h3 { font-size: 1rem; margin: .2rem 0; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { font-weight: 600; color: var(--muted); }
td.val { white-space: pre-wrap; word-break: break-word; max-width: 40rem; }
pre { margin: 0; padding: .5rem; background: var(--code); border-radius: 4px; overflow-x: auto;
  white-space: pre-wrap; word-break: break-word; font: 12.5px/1.4 ui-monospace, monospace; }
.badge { display: inline-block; padding: 0 .45rem; border-radius: 9px; font-size: .8rem;
  border: 1px solid var(--line); margin-left: .25rem; }
.badge.changed, tr .changed { background: var(--chg); }
.badge.added, tr .added { background: var(--side-b); }
.badge.removed, tr .removed { background: var(--side-a); }
.badge.identical, .badge.absent { color: var(--muted); }
.controls { display: flex; gap: 1rem; align-items: center; margin: .5rem 0; }
details.worker { border: 1px solid var(--line); border-radius: 6px; margin: .5rem 0;
  padding: .3rem .8rem; }
details.worker > summary { cursor: pointer; font-weight: 600; padding: .2rem 0; }
.facts { margin: .3rem 0 .6rem; color: var(--muted); }
.section { margin: .6rem 0; }
.sbs { display: grid; grid-template-columns: 1fr 1fr; gap: .6rem; }
.col-head { font-size: .8rem; color: var(--muted); margin-bottom: .15rem; }
.missing { color: var(--muted); font-style: italic; padding: .5rem; }
pre .side-a { background: var(--side-a); display: inline-block; width: 100%; }
pre .side-b { background: var(--side-b); display: inline-block; width: 100%; }
pre.diff .hunk { color: var(--muted); }
.note { color: var(--muted); font-style: italic; }
.findings td { background: var(--bad); }
body.changed-only [data-changed="0"] { display: none; }
"""

_SCRIPT = """
(function () {
  var box = document.getElementById("changed-only");
  function apply() { document.body.classList.toggle("changed-only", box.checked); }
  box.addEventListener("change", apply);
  apply();
  function all(open) {
    document.querySelectorAll("details.worker").forEach(function (d) { d.open = open; });
  }
  document.getElementById("expand-all").addEventListener("click", function () { all(true); });
  document.getElementById("collapse-all").addEventListener("click", function () { all(false); });
  function reveal() {
    var id = decodeURIComponent(location.hash.slice(1));
    var target = id && document.getElementById(id);
    if (target && target.tagName === "DETAILS") { target.open = true; }
  }
  window.addEventListener("hashchange", reveal);
  reveal();
})();
"""


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _badge(status: str) -> str:
    return f'<span class="badge {_e(status)}">{_e(status)}</span>'


def _short(text: str) -> str:
    return text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 1] + "…"


class _Room:
    """How much bundle text (sections, diffs, patches, meta values) the report may
    still show."""

    def __init__(self) -> None:
        self.left = MAX_REPORT_CHARS

    def take(self, text: str) -> tuple[str, str | None]:
        """What of ``text`` to show, and a note on what is not (None: all of it)."""
        limit = min(MAX_SHOWN_CHARS, self.left)
        if not text:
            return "", None
        if limit <= 0:
            return "", (
                f"not shown: this report already holds {MAX_REPORT_CHARS // (1024 * 1024)} "
                "MiB of text (see --json, or --worker SLUG)"
            )
        if len(text) <= limit:
            self.left -= len(text)
            return text, None
        shown = text[:limit]
        newline = shown.rfind("\n")
        if newline > 0:
            shown = shown[: newline + 1]
        self.left -= len(shown)
        return shown, f"… {left_out(text, len(shown))} not shown here (see --json)"


def _note_html(note: str | None) -> str:
    return "" if note is None else f'\n<span class="note">{_e(note)}</span>'


def _lines_html(text: str, marked: set[int], css: str, room: _Room) -> str:
    """Escaped text, changed lines (indexes into ``text_lines``) wrapped for
    highlighting, cut at MAX_SHOWN_CHARS and at what is left of the report's room."""
    shown, note = room.take(text)
    if not marked:
        body = _e(shown)
    else:
        lines = text_lines(shown)
        body = "\n".join(
            f'<span class="{css}">{_e(line)}</span>' if index in marked else _e(line)
            for index, line in enumerate(lines)
        )
        if shown.endswith("\n"):
            body += "\n"
    return body + _note_html(note)


def _column(label: str, text: str | None, marked: list[int] | None, css: str, room: _Room) -> str:
    head = f'<div class="col-head">{_e(label)}</div>'
    if text is None:
        return f'<div class="col">{head}<div class="missing">not in this run</div></div>'
    if not text.strip():
        return f'<div class="col">{head}<div class="missing">(empty)</div></div>'
    shown = _lines_html(text, set(marked or ()), css, room)
    return f'<div class="col">{head}<pre>{shown}</pre></div>'


def _section_html(section: SectionComparison, labels: tuple[str, str], room: _Room) -> str:
    required = " (required)" if section.required else ""
    changed = "0" if section.status in SAME_STATUSES else "1"
    title = f"{_e(_short(section.title))}{required} {_badge(section.status)}"
    if section.status == IDENTICAL:
        return (
            f'<details class="section" data-changed="0"><summary>{title}</summary>'
            f"<pre>{_lines_html(section.a_text or '', set(), '', room)}</pre></details>"
        )
    if section.a_text is None and section.b_text is None:
        return f'<div class="section" data-changed="{changed}"><h3>{title}</h3></div>'
    note = ""
    if section.note:
        note = f'<p class="note section-note">{_e(section.note)}</p>'
    if section.status == CHANGED and section.aligned is False:
        note += (
            '<p class="note">too large to align line by line: highlighted lines are those '
            "the other run has nowhere</p>"
        )
    return (
        f'<div class="section" data-changed="{changed}"><h3>{title}</h3>{note}'
        f'<div class="sbs">{_column(labels[0], section.a_text, section.a_changed, "side-a", room)}'
        f"{_column(labels[1], section.b_text, section.b_changed, 'side-b', room)}</div></div>"
    )


def _diff_html(patch: str, room: _Room) -> str:
    shown, note = room.take(patch)
    lines = []
    for line in text_lines(shown):
        if line.startswith(("+++", "---", "diff --git", "index ")):
            lines.append(f"<b>{_e(line)}</b>")
        elif line.startswith("@@"):
            lines.append(f'<span class="hunk">{_e(line)}</span>')
        elif line.startswith("+"):
            lines.append(f'<span class="side-b">{_e(line)}</span>')
        elif line.startswith("-"):
            lines.append(f'<span class="side-a">{_e(line)}</span>')
        else:
            lines.append(_e(line))
    return '<pre class="diff">' + "\n".join(lines) + _note_html(note) + "</pre>"


def _facts_cells(facts: RunFacts | None) -> tuple[str, str, str, str, str]:
    if facts is None:
        return "-", "-", "-", "-", "-"
    handoff = human_bytes(facts.handoff_bytes)
    if facts.handoff != "written":
        handoff += f" ({facts.handoff})"
    return (
        _short(facts.state or "?"),
        "-" if facts.exit_code is None else str(facts.exit_code),
        human_duration(facts.duration_s),
        handoff,
        usage_text(facts),
    )


def _worker_row(w: WorkerComparison, comparison: Comparison, verify: bool) -> str:
    a = _facts_cells(w.a)
    b = _facts_cells(w.b)
    cells = [
        f'<td><a href="#w-{_e(w.slug)}">{_e(w.slug)}</a></td>',
        f"<td>{_e(presence_text(w, comparison))}</td>",
        *(f"<td>{_e(x)} / {_e(y)}</td>" for x, y in zip(a, b, strict=True)),
        *(
            [f'<td class="verify">{_e(verify_status(w.a))} / {_e(verify_status(w.b))}</td>']
            if verify
            else []
        ),
        *(
            f'<td class="{_e(status)}">{_e(status)}</td>'
            for status in (w.changes.task, w.changes.handoff, w.changes.status, w.changes.diff)
        ),
        "<td>"
        + " ".join(
            f'<span class="badge {_e(s.status)}" title="{_e(_short(s.title))}: {_e(s.status)}">'
            f"{_e(_short(s.title))}</span>"
            for s in w.sections
            if s.required or s.status not in SAME_STATUSES
        )
        + "</td>",
    ]
    return f'<tr class="worker-row" data-changed="{int(w.changed)}">{"".join(cells)}</tr>'


def _worker_block(w: WorkerComparison, comparison: Comparison, open_it: bool, room: _Room) -> str:
    labels = (comparison.a.label, comparison.b.label)
    status = "changed" if w.changed else "identical"
    parts = [
        f'<details class="worker" id="w-{_e(w.slug)}" data-changed="{int(w.changed)}"'
        f"{' open' if open_it else ''}><summary>{_e(w.slug)} {_badge(status)} "
        f'<span class="badge">{_e(presence_text(w, comparison))}</span></summary>',
        '<div class="facts">',
    ]
    for label, facts in zip(labels, (w.a, w.b), strict=True):
        state, exit_code, duration, handoff, usage = _facts_cells(facts)
        parts.append(
            f"<div>{_e(label)}: state {_e(state)}, exit code {_e(exit_code)}, duration "
            f"{_e(duration)}, handoff {_e(handoff)}, code {_e(facts_code(facts))}, "
            f"tokens {_e(usage)}, model traffic {_e(traffic_text(facts))}</div>"
        )
    if has_verify(comparison):
        parts.append(
            '<div class="verify">'
            + " · ".join(
                f"{_e(label)}: verify {_e(verify_text(facts))}"
                for label, facts in zip(labels, (w.a, w.b), strict=True)
            )
            + "</div>"
        )
    if w.traffic_compared:
        turn = w.first_differing_turn
        where = f"first differing turn {turn}" if turn else "no turn differs"
        parts.append(f"<div>model traffic: {_e(where)}</div>")
    parts.append(
        f"<div>task {_badge(w.changes.task)} handoff {_badge(w.changes.handoff)} status "
        f"{_badge(w.changes.status)} diff {_badge(w.changes.diff)}</div></div>"
    )
    for label, facts in zip(labels, (w.a, w.b), strict=True):
        if facts is not None and facts.verify is not None and facts.verify.output_tail:
            parts.append(
                f'<details class="verify-output"><summary>verify output {_e(label)} (its last '
                f"lines)</summary><pre>{_value_html(facts.verify.output_tail, room)}</pre>"
                "</details>"
            )
    parts += [_section_html(section, labels, room) for section in w.sections]
    if w.handoff_diff is not None and w.handoff_diff.status != IDENTICAL:
        if w.handoff_diff.note:
            parts.append(f'<p class="note">{_e(w.handoff_diff.note)}</p>')
        if w.handoff_diff.unified:
            parts.append(
                "<details><summary>unified diff of handoff.md</summary>"
                f"{_diff_html(w.handoff_diff.unified, room)}</details>"
            )
    for label, facts in zip(labels, (w.a, w.b), strict=True):
        if facts is None or facts.patch is None:
            continue
        stat = ""
        if facts.diffstat:
            shown, note = room.take(facts.diffstat)
            stat = f"<pre>{_e(shown)}{_note_html(note)}</pre>"
        parts.append(
            f'<details class="patch"><summary>patch {_e(label)}: {_e(facts_code(facts))}'
            f"</summary>{stat}{_diff_html(facts.patch, room)}</details>"
        )
    parts.append("</details>")
    return "".join(parts)


def _value_html(text: str, room: _Room) -> str:
    shown, note = room.take(text)
    return _e(shown) + _note_html(note)


def content_security_policy(script: str | None) -> str:
    """Nothing but the page's own style and (by its hash) its one script, if any."""
    if script is None:
        scripts = "'none'"
    else:
        digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
        scripts = f"'sha256-{digest}'"
    return (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        f"script-src {scripts}; base-uri 'none'; form-action 'none'"
    )


def page_head(title: str, *, script: str | None, css: str = "") -> list[str]:
    """The report's opening lines up to ``<body>``: charset, the CSP, the title (escaped)
    and the stylesheet (``css`` after the shared one)."""
    csp = content_security_policy(script)
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}{css}</style></head><body>",
    ]


def render_html(comparison: Comparison) -> str:
    a, b = comparison.a, comparison.b
    room = _Room()
    out = [
        *page_head(f"kodelyth-ecc compare: {a.label} and {b.label}", script=_SCRIPT),
        "<h1>kodelyth-ecc compare</h1>",
        '<table class="sides"><tr><th></th><th>source</th><th>session</th><th>workers</th>'
        "<th>exported</th></tr>",
    ]
    for side in (a, b):
        if side.source is None:
            out.append(
                f"<tr><th>{_e(side.label)}</th><td colspan=2>hidden (--blind)</td>"
                f"<td>{side.workers:,}</td><td>-</td></tr>"
            )
        else:
            out.append(
                f"<tr><th>{_e(side.label)}</th><td>{_e(side.source)} ({_e(side.kind)})</td>"
                f"<td>{_e(side.session)}</td><td>{side.workers:,}</td>"
                f"<td>{_e(_short(side.exported_at or '-'))}</td></tr>"
            )
    out.append("</table>")

    out += [
        '<h2>What varied</h2><table id="variation"><tr><th>field</th>'
        f"<th>{_e(a.label)}</th><th>{_e(b.label)}</th><th></th></tr>"
    ]
    for row in comparison.variation:
        out.append(
            f'<tr data-changed="{0 if row.same else 1}"><td>{_e(row.field)}</td>'
            f'<td class="val">{_value_html(variation_value(row, "a"), room)}</td>'
            f'<td class="val">{_value_html(variation_value(row, "b"), room)}</td>'
            f"<td>{_badge('identical' if row.same else 'changed')}</td></tr>"
        )
    out.append("</table>")

    verify = has_verify(comparison)
    out += [
        "<h2>Workers</h2>",
        f'<p id="summary">{_e(plural(comparison.summary.workers, "worker"))}: '
        f"{_e(summary_text(comparison))}.</p>",
        '<div class="controls"><label><input type="checkbox" id="changed-only"> changed only'
        '</label><button type="button" id="expand-all">expand all</button>'
        '<button type="button" id="collapse-all">collapse all</button></div>',
        '<table id="worker-table"><thead><tr><th>worker</th><th>in</th>'
        f"<th>state {_e(a.label)} / {_e(b.label)}</th><th>exit</th><th>duration</th>"
        "<th>handoff size</th><th>tokens, cost</th>"
        + ("<th>verify</th>" if verify else "")
        + "<th>task</th><th>handoff</th><th>status</th><th>diff</th>"
        "<th>sections</th></tr></thead><tbody>",
    ]
    out += [_worker_row(w, comparison, verify) for w in comparison.workers]
    out.append("</tbody></table>")

    gate = comparison.gate
    if gate is not None:
        out.append(f'<h2>Regression gate</h2><p id="gate">{_e(gate_summary(comparison))}</p>')
        if gate.findings:
            out.append(
                '<table class="findings"><tr><th>worker</th><th>rule</th><th>detail</th></tr>'
            )
            out += [
                f"<tr><td>{_e(f.worker)}</td><td>{_e(f.rule)}</td>"
                f"<td>{_value_html(f.detail, room)}</td></tr>"
                for f in gate.findings
            ]
            out.append("</table>")
    if comparison.notes:
        out += [f'<p class="note">note: {_e(note)}</p>' for note in comparison.notes]

    out.append('<h2>Per worker</h2><div id="worker-blocks">')
    few = len(comparison.workers) <= OPEN_WORKERS_UP_TO
    out += [_worker_block(w, comparison, few and w.changed, room) for w in comparison.workers]
    out += ["</div>", f"<script>{_SCRIPT}</script>", "</body></html>"]
    return "\n".join(out) + "\n"
