"""The terminal and markdown views of a ``Comparison``; they return text, never print.

Both are facts laid side by side, in the JSON's words (identical, changed,
added, removed, absent): no verdict, no ranking, and no colour that reads as one
(the sides get cyan and magenta, not green and red). Bundle text is hostile:
control characters in it are shown as escapes (``\x1b``), never sent to the
terminal, and long diffs and patches are cut with a note (the JSON has them whole).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

import msgspec

from kodelyth_ecc.compare import (
    ABSENT,
    ADDED,
    BOTH,
    CHANGED,
    IDENTICAL,
    MISSING,
    ONLY_A,
    REMOVED,
    Comparison,
    RunFacts,
    VariationRow,
    WorkerComparison,
    text_lines,
)
from kodelyth_ecc.humanize import human_bytes, human_duration, plural
from kodelyth_ecc.termsafe import one_line, visible_controls

# ANSI colours, used only when the caller says the terminal wants them. Neither side's
# colour says good or bad: A (removed, "-" lines) magenta, B (added, "+" lines) cyan.
_COLOURS = {
    IDENTICAL: "2",  # dim
    ABSENT: "2",
    CHANGED: "33",  # yellow
    ADDED: "36",  # cyan
    REMOVED: "35",  # magenta
    "heading": "1",
}
_SHORT_VALUE = 72
# What the terminal and markdown show of one diff or patch; the JSON has all of it.
MAX_BLOCK_CHARS = 64 * 1024

# Fields no text view shows (the HTML has its own escaping): not worth scanning.
_NOT_SHOWN = frozenset({"a_text", "b_text", "a_changed", "b_changed"})
_T = TypeVar("_T")


def displayable(value: _T) -> _T:
    """A copy of a ``Comparison`` (or any part of it) whose every string went through
    ``visible_controls``: done once, so no field a view prints can be missed."""
    if isinstance(value, str):
        return visible_controls(value)  # type: ignore[return-value]
    if isinstance(value, msgspec.Struct):
        changes = {
            name: displayable(getattr(value, name))
            for name in value.__struct_fields__
            if name not in _NOT_SHOWN
        }
        return msgspec.structs.replace(value, **changes)
    if isinstance(value, list):
        return [displayable(item) for item in value]  # type: ignore[return-value]
    return value


def clip(text: str, limit: int) -> tuple[str, str | None]:
    """At most ``limit`` characters of ``text``, cut after a line where one ends in
    reach, and a note of what was left out (None: nothing)."""
    if len(text) <= limit:
        return text, None
    shown = text[:limit]
    newline = shown.rfind("\n")
    if newline > 0:
        shown = shown[: newline + 1]
    return shown, left_out(text, len(shown))


def left_out(text: str, shown: int) -> str:
    """ "1,234 more characters (5 more lines)": what ``text`` holds past ``shown``."""
    rest = len(text) - shown
    lines = text.count("\n", shown) + (0 if text.endswith("\n") else 1)
    # A cut inside a line leaves the rest of that line: not a line of its own.
    if shown and text[shown - 1] != "\n":
        lines -= 1
    more = f"{rest:,} more character{'s' if rest != 1 else ''}"
    return more + (f" ({plural(lines, 'more line')})" if lines > 0 else "")


def _one_line(value: str, limit: int = _SHORT_VALUE) -> str:
    first = value.strip().splitlines()[0] if value.strip() else ""
    more = len(first) > limit or "\n" in value.strip()
    return (first[: limit - 1] + "…") if len(first) > limit else first + (" …" if more else "")


def facts_code(facts: RunFacts | None) -> str:
    if facts is None or not facts.has_diff:
        return "no diff recorded"
    files = facts.files_changed or 0
    if not files and not facts.insertions and not facts.deletions:
        return "no code changes"
    text = f"{files} file{'s' if files != 1 else ''} +{facts.insertions} -{facts.deletions}"
    return text + (" (truncated)" if facts.diff_truncated else "")


def presence_text(worker: WorkerComparison, comparison: Comparison) -> str:
    if worker.presence == BOTH:
        return "both"
    label = comparison.a.label if worker.presence == ONLY_A else comparison.b.label
    return f"only {label}"


def variation_value(row: VariationRow, side: str) -> str:
    if row.hidden:
        return "(hidden)"
    value = row.a if side == "a" else row.b
    return "-" if value is None else value


class _Style:
    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def __call__(self, text: str, kind: str) -> str:
        code = _COLOURS.get(kind)
        if not self.colour or not code:
            return text
        return f"\x1b[{code}m{text}\x1b[0m"


def _pair(a: str, b: str) -> str:
    return a if a == b else f"{a} / {b}"


def _state_text(facts: RunFacts | None) -> str:
    return "-" if facts is None else facts.state or "?"


def _exit_text(facts: RunFacts | None) -> str:
    return "-" if facts is None or facts.exit_code is None else str(facts.exit_code)


def _duration_text(facts: RunFacts | None) -> str:
    return "-" if facts is None else human_duration(facts.duration_s)


def usage_text(facts: RunFacts | None) -> str:
    """``1,234 in / 56 out, $0.0123`` (what the CLI reported; ``-`` where it said nothing)."""
    if facts is None or (facts.input_tokens is None and facts.output_tokens is None):
        return "-"

    def count(value: int | None) -> str:
        return "-" if value is None else f"{value:,}"

    cost = "" if facts.cost_usd is None else f", ${facts.cost_usd:.4f}"
    return f"{count(facts.input_tokens)} in / {count(facts.output_tokens)} out{cost}"


def traffic_text(facts: RunFacts | None) -> str:
    """``2 turns`` (recorded by the proxy), with an exact replay's outcome."""
    if facts is None or facts.turns is None:
        return "not recorded"
    turns = f"{facts.turns} turn{'s' if facts.turns != 1 else ''}"
    notes = [facts.replay] if facts.replay else []
    recorded = (facts.recorded_input_tokens, facts.recorded_output_tokens)
    if recorded not in ((None, None), (facts.input_tokens, facts.output_tokens)):
        shown = ["-" if n is None else f"{n:,}" for n in recorded]
        notes.append(f"the provider reported {shown[0]} in / {shown[1]} out")
    return f"{turns} ({'; '.join(notes)})" if notes else turns


def traffic_line(w: WorkerComparison, a_label: str, b_label: str) -> str | None:
    """Both runs' recorded model traffic and where it first differs."""
    if (w.a is None or w.a.turns is None) and (w.b is None or w.b.turns is None):
        return None
    line = f"{a_label}: {traffic_text(w.a)} · {b_label}: {traffic_text(w.b)}"
    if w.traffic_compared:
        turn = w.first_differing_turn
        line += f" · first differing turn: {turn}" if turn else " · no turn differs"
    return line


def has_verify(comparison: Comparison) -> bool:
    """Whether any worker of either run recorded a verify check (else no view shows the
    verify column: every one would say missing)."""
    return any(
        facts is not None and facts.verify is not None and facts.verify.status != MISSING
        for w in comparison.workers
        for facts in (w.a, w.b)
    )


def verify_status(facts: RunFacts | None) -> str:
    """passed, failed or missing (``-``: the worker is not in this run)."""
    if facts is None:
        return "-"
    return facts.verify.status if facts.verify is not None else MISSING


def verify_text(facts: RunFacts | None, *, command: bool = True) -> str:
    """``passed (exit 0, 3.2s): pytest -q``: status, exit code or timeout, duration and
    the command on one line (its controls and newlines written out)."""
    status = verify_status(facts)
    verify = facts.verify if facts is not None else None
    if verify is None or status == MISSING:
        return status
    details = []
    if verify.timed_out:
        details.append("timed out")
    elif verify.exit_code is not None:
        details.append(f"exit {verify.exit_code}")
    else:
        details.append("did not run")
    if verify.duration_s is not None:
        details.append(human_duration(verify.duration_s))
    text = f"{status} ({', '.join(details)})"
    if command and verify.command:
        text += f": {one_line(verify.command, 200)}"
    return text


def _handoff_text(facts: RunFacts | None) -> str:
    if facts is None:
        return "-"
    size = human_bytes(facts.handoff_bytes)
    return size if facts.handoff == "written" else f"{size} ({facts.handoff})"


def table_lines(rows: list[list[str]], style: Callable[[str, str], str] | None = None) -> list[str]:
    """Left-aligned columns; cells that are a status word get its colour."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = []
        for i, cell in enumerate(row):
            padded = cell.ljust(widths[i]) if i < len(row) - 1 else cell
            if style is not None and index > 0 and cell in _COLOURS:
                padded = style(cell, cell) + " " * (len(padded) - len(cell))
            cells.append(padded)
        lines.append("  " + "  ".join(cells).rstrip())
    return lines


def _block(text: str, indent: str, style: _Style | None = None) -> list[str]:
    """A diff or patch as indented lines, cut at MAX_BLOCK_CHARS with a note."""
    shown, note = clip(text, MAX_BLOCK_CHARS)
    lines = [indent + (_diff_line(line, style) if style else line) for line in text_lines(shown)]
    if note:
        lines.append(f"{indent}[… {note} not shown here: see --json]")
    return lines


def _section_text(title: str, status: str, note: str | None, required: bool) -> str:
    return f"{title}{' *' if required else ''}: {status}" + (f" ({note})" if note else "")


def render_terminal(
    comparison: Comparison, *, colour: bool = False, diffs: bool = False, patches: bool = False
) -> str:
    style = _Style(colour)
    comparison = displayable(comparison)
    a, b = comparison.a, comparison.b
    out = [style(f"kodelyth-ecc compare: {a.label} and {b.label}", "heading")]
    for side in (a, b):
        if side.source is None:
            out.append(
                f"  {side.label:<6} {plural(side.workers, 'worker')} (identity hidden: --blind)"
            )
        else:
            exported = f", exported {side.exported_at}" if side.exported_at else ""
            out.append(
                f"  {side.label:<6} {side.source} ({side.kind} {side.session}, "
                f"{plural(side.workers, 'worker')}{exported})"
            )
    out.append("")
    varied = [r for r in comparison.variation if not r.same]
    same = [r for r in comparison.variation if r.same]
    out.append(style("What varied", "heading"))
    if not varied:
        out.append("  nothing recorded in meta differs between the runs")
    for row in varied:
        if row.hidden:
            out.append(f"  {row.field:<12} differs (hidden: --blind)")
            continue
        out.append(f"  {row.field:<12} {a.label:<6} {_one_line(variation_value(row, 'a'))}")
        out.append(f"  {'':<12} {b.label:<6} {_one_line(variation_value(row, 'b'))}")
    if same:
        out.append(style("Same in both", "heading"))
        for row in same:
            shown = "(hidden: --blind)" if row.hidden else _one_line(variation_value(row, "a"))
            out.append(f"  {row.field:<12} {shown}")
    out.append("")

    s = comparison.summary
    out.append(style(f"Workers: {s.workers} ({summary_text(comparison)})", "heading"))
    label_pair = f"{a.label} / {b.label}"
    verify = has_verify(comparison)
    rows = [
        [
            "worker",
            "in",
            f"state {label_pair}",
            "exit",
            *(["verify"] if verify else []),
            "duration",
            "handoff size",
            "tokens, cost",
            "task",
            "handoff",
            "status",
            "diff",
        ]
    ]
    for w in comparison.workers:
        rows.append(
            [
                w.slug,
                presence_text(w, comparison),
                _pair(_state_text(w.a), _state_text(w.b)),
                _pair(_exit_text(w.a), _exit_text(w.b)),
                *([_pair(verify_status(w.a), verify_status(w.b))] if verify else []),
                _pair(_duration_text(w.a), _duration_text(w.b)),
                f"{_handoff_text(w.a)} / {_handoff_text(w.b)}",
                f"{usage_text(w.a)} | {usage_text(w.b)}",
                w.changes.task,
                w.changes.handoff,
                w.changes.status,
                w.changes.diff,
            ]
        )
    out += table_lines(rows, style)
    out.append("")

    for w in comparison.workers:
        out.append(style(w.slug, "heading") + ("" if w.changed else "  (identical in both runs)"))
        parts = [
            _section_text(
                section.title,
                style(section.status, section.status),
                section.note,
                section.required,
            )
            for section in w.sections
        ]
        out.append("  sections  " + " · ".join(parts))
        out.append(f"  code      {a.label}: {facts_code(w.a)} · {b.label}: {facts_code(w.b)}")
        traffic = traffic_line(w, a.label, b.label)
        if traffic is not None:
            out.append(f"  traffic   {traffic}")
        if verify:
            out.append(f"  verify    {a.label}: {verify_text(w.a)} · {b.label}: {verify_text(w.b)}")
        if diffs:
            for label, facts in ((a.label, w.a), (b.label, w.b)):
                if facts is not None and facts.verify is not None and facts.verify.output_tail:
                    out.append(f"  verify output {label} (its last lines):")
                    out += _block(facts.verify.output_tail, "    ")
        if diffs and w.handoff_diff is not None:
            if w.handoff_diff.unified:
                note = f" ({w.handoff_diff.note})" if w.handoff_diff.note else ""
                out.append(f"  handoff diff{note}:")
                out += _block(w.handoff_diff.unified, "    ", style)
            elif w.handoff_diff.note:
                out.append(f"  handoff diff: {w.handoff_diff.note}")
        if patches:
            for label, facts in ((a.label, w.a), (b.label, w.b)):
                if facts is None or facts.patch is None:
                    continue
                out.append(f"  patch {label}:")
                out += _block(facts.patch, "    ", style)
    out.append("  (* a required handoff section)")
    out += _notes(comparison)
    return "\n".join(out) + "\n"


def _diff_line(line: str, style: _Style) -> str:
    if line.startswith(("+++", "---")):
        return style(line, "heading")
    if line.startswith("+"):
        return style(line, ADDED)
    if line.startswith("-"):
        return style(line, REMOVED)
    return line


def _notes(comparison: Comparison) -> list[str]:
    if not comparison.notes:
        return []
    return ["", *(f"note: {note}" for note in comparison.notes)]


def gate_lines(comparison: Comparison) -> list[str]:
    """The gate's verdict line and one line per finding (worker, rule, detail), control
    characters written out (the details quote bundle text)."""
    gate = comparison.gate
    if gate is None:
        return []
    width = max((len(f.worker) for f in gate.findings), default=0)
    rule_width = max((len(f.rule) for f in gate.findings), default=0)
    lines = [
        gate_summary(comparison),
        *(f"  {f.worker:<{width}}  {f.rule:<{rule_width}}  {f.detail}" for f in gate.findings),
    ]
    return [visible_controls(line) for line in lines]


def gate_summary(comparison: Comparison) -> str:
    gate = comparison.gate
    assert gate is not None
    other = comparison.b.label
    if not gate.findings:
        return (
            f"regression gate: no finding ({other} against baseline {gate.baseline}; rules "
            f"{', '.join(gate.rules)}): exit 0"
        )
    return (
        f"regression gate: {plural(len(gate.findings), 'finding')} in {other} against "
        f"baseline {gate.baseline} (rules {', '.join(gate.rules)}): exit {gate.exit_code}"
    )


def summary_text(comparison: Comparison) -> str:
    """ "2 in both, 1 only in A, ...": the workers' summary, as every view words it."""
    s, a, b = comparison.summary, comparison.a, comparison.b
    return (
        f"{s.in_both:,} in both, {s.only_a:,} only in {a.label}, {s.only_b:,} only in "
        f"{b.label}; {s.changed:,} with changes, {s.unchanged:,} identical"
    )


# --------------------------------------------------------------------------- markdown

_MD_SPECIAL = re.compile(r"[|<>&\\`*_\[\]]")
_MD_ENTITIES = {"<": "&lt;", ">": "&gt;", "&": "&amp;"}


def md_cell(text: str) -> str:
    """Safe inside a table cell: no pipes, tags, markup or line breaks."""
    text = " ".join(text.split())
    return _MD_SPECIAL.sub(lambda m: _MD_ENTITIES.get(m.group(), "\\" + m.group()), text)


def md_fence(text: str, info: str = "") -> str:
    """A fenced block longer than any backtick run inside, so the text cannot close it."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    body = text if text.endswith("\n") else text + "\n"
    return f"{fence}{info}\n{body}{fence}\n"


def _md_block(text: str, info: str = "diff") -> list[str]:
    shown, note = clip(text, MAX_BLOCK_CHARS)
    return [md_fence(shown, info)] + ([f"… {note} not shown here: see --json", ""] if note else [])


def render_markdown(comparison: Comparison, *, diffs: bool = False, patches: bool = False) -> str:
    comparison = displayable(comparison)
    a, b = comparison.a, comparison.b
    out = ["## kodelyth-ecc compare", ""]
    out += [f"| | {a.label} | {b.label} |", "| --- | --- | --- |"]
    if a.source is not None and b.source is not None:
        out.append(f"| source | {md_cell(a.source)} | {md_cell(b.source)} |")
        out.append(f"| session | {md_cell(a.session or '-')} | {md_cell(b.session or '-')} |")
    out.append(f"| workers | {a.workers:,} | {b.workers:,} |")
    out.append("")
    out += [
        "### What varied",
        "",
        f"| field | {a.label} | {b.label} | |",
        "| --- | --- | --- | --- |",
    ]
    for row in comparison.variation:
        out.append(
            f"| {row.field} | {md_cell(_one_line(variation_value(row, 'a'), 200))} | "
            f"{md_cell(_one_line(variation_value(row, 'b'), 200))} | "
            f"{'same' if row.same else 'differs'} |"
        )
    s = comparison.summary
    verify = has_verify(comparison)
    out += [
        "",
        "### Workers",
        "",
        f"{plural(s.workers, 'worker')}: {summary_text(comparison)}.",
        "",
        f"| worker | in | state {a.label} | state {b.label} | exit | duration | handoff size "
        "| tokens, cost | task | handoff | status | diff |" + (" verify |" if verify else ""),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        + (" --- |" if verify else ""),
    ]
    for w in comparison.workers:
        verify_cell = f" {_pair(verify_status(w.a), verify_status(w.b))} |" if verify else ""
        out.append(
            f"| {md_cell(w.slug)} | {presence_text(w, comparison)} | {md_cell(_state_text(w.a))} | "
            f"{md_cell(_state_text(w.b))} | {_pair(_exit_text(w.a), _exit_text(w.b))} | "
            f"{_pair(_duration_text(w.a), _duration_text(w.b))} | "
            f"{_handoff_text(w.a)} / {_handoff_text(w.b)} | "
            f"{md_cell(usage_text(w.a))} / {md_cell(usage_text(w.b))} | {w.changes.task} | "
            f"{w.changes.handoff} | {w.changes.status} | {w.changes.diff} |{verify_cell}"
        )
    out += ["", "### Handoff sections", ""]
    for w in comparison.workers:
        parts = [
            f"{md_cell(section.title)}{' (required)' if section.required else ''}: "
            f"**{section.status}**" + (f" ({section.note})" if section.note else "")
            for section in w.sections
        ]
        out.append(f"- **{md_cell(w.slug)}**: " + " · ".join(parts))
        out.append(f"  - code: {a.label} {facts_code(w.a)}; {b.label} {facts_code(w.b)}")
        traffic = traffic_line(w, a.label, b.label)
        if traffic is not None:
            out.append(f"  - model traffic: {md_cell(traffic)}")
        if verify:
            out.append(
                f"  - verify: {a.label} {md_cell(verify_text(w.a))}; "
                f"{b.label} {md_cell(verify_text(w.b))}"
            )
    for w in comparison.workers:
        blocks: list[str] = []
        if diffs and w.handoff_diff is not None and w.handoff_diff.status != IDENTICAL:
            if w.handoff_diff.unified:
                if w.handoff_diff.note:
                    blocks += [md_cell(w.handoff_diff.note), ""]
                blocks += _md_block(w.handoff_diff.unified)
            elif w.handoff_diff.note:
                blocks += [md_cell(w.handoff_diff.note), ""]
        if diffs:
            for label, facts in ((a.label, w.a), (b.label, w.b)):
                if facts is not None and facts.verify is not None and facts.verify.output_tail:
                    blocks += [f"Verify output {label} (its last lines):", ""]
                    blocks += _md_block(facts.verify.output_tail, "text")
        if patches:
            for label, facts in ((a.label, w.a), (b.label, w.b)):
                if facts is not None and facts.patch is not None:
                    blocks += [f"Patch {label}:", "", *_md_block(facts.patch)]
        if blocks:
            out += ["", f"<details><summary>{md_cell(w.slug)}</summary>", "", *blocks, "</details>"]
    gate = comparison.gate
    if gate is not None:
        out += ["", "### Regression gate", "", md_cell(gate_summary(comparison)), ""]
        if gate.findings:
            out += ["| worker | rule | detail |", "| --- | --- | --- |"]
            out += [
                f"| {md_cell(f.worker)} | {f.rule} | {md_cell(f.detail)} |" for f in gate.findings
            ]
    if comparison.notes:
        out += ["", *[f"> note: {md_cell(note)}" for note in comparison.notes]]
    return "\n".join(out) + "\n"
