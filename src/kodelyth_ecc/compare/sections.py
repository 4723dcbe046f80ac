"""Two handoffs compared section by section."""

from __future__ import annotations

from kodelyth_ecc.compare.diffs import DiffBudget, changed_lines, text_lines, without_cr
from kodelyth_ecc.compare.facts import line_count
from kodelyth_ecc.compare.results import CHANGED, SectionComparison, pair_status
from kodelyth_ecc.handoff_sections import Handoff, is_placeholder, required_titles, title_key

# Said of a section whose texts are the same once CRLF is read as LF.
LINE_ENDINGS_ONLY = "line endings only"


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
        status = pair_status(
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
            a_lines=None if body_a is None else line_count(body_a),
            b_lines=None if body_b is None else line_count(body_b),
            a_placeholder=None if body_a is None else is_placeholder(body_a),
            b_placeholder=None if body_b is None else is_placeholder(body_b),
            note=note,
        )
        if full:
            item.a_text, item.b_text = body_a, body_b
            if status == CHANGED and body_a is not None and body_b is not None:
                # Indexes into text_lines(); a line's ending is no change of its own.
                item.a_changed, item.b_changed, item.aligned = changed_lines(
                    without_cr(text_lines(body_a)), without_cr(text_lines(body_b)), budget
                )
        result.append(item)
    return result
