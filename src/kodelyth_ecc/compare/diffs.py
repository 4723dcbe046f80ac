"""Line diffs of handoff texts, capped so a pathological pair of megabyte handoffs cannot
make a comparison quadratic.

The unified diff is formatted here rather than by ``difflib.unified_diff``: that would
run its own matcher over the whole texts, without the linear head/tail matching and the
per-comparison budget ``_opcodes`` applies (``difflib`` still does the matching)."""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable, Sequence

from kodelyth_ecc.compare.results import IDENTICAL, TextDiff

# Line diffs: past MAX_DIFF_LINES lines, common head and tail lines are set aside first
# (linear) and what is left of either side must fit in MAX_DIFF_LINES; one comparison
# spends at most DIFF_BUDGET_LINES lines on diffs in all. Past that: a summary, said so.
MAX_DIFF_LINES = 2000
DIFF_BUDGET_LINES = 50_000
DIFF_CONTEXT = 3


def text_lines(text: str) -> list[str]:
    """The lines of ``text``, split on ``\\n`` only (a ``\\r`` stays on its line), without
    the empty piece after a final newline. Every line index in a ``Comparison`` counts
    lines this way, so the renderers must split the same way to highlight them."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def without_cr(lines: list[str]) -> list[str]:
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
    a, b = without_cr(raw_a), without_cr(raw_b)
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
