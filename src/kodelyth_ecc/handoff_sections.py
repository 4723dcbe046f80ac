"""A handoff as its ``## `` sections, so two runs compare section by section.

Workers start from the placeholder template in ``prompts.initial_handoff_md``
(every required section holding ``- Pending``), and harnesses append their
answer to it (``tee -a``). So a handoff is read as: an optional leading
template, then the agent's own text, split on ``## `` headings that are not
inside fenced code blocks. Everything here is linear in the text's size.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from kodelyth_ecc.prompts import REQUIRED_HANDOFF_SECTIONS

EMPTY = "empty"
PLACEHOLDER = "placeholder"
WRITTEN = "written"

# Lines that only stand in for an answer (the template's "- Pending", and its kin).
_PLACEHOLDER_LINE = re.compile(r"[-*+]?\s*(?:pending|todo|tbd)\.?", re.IGNORECASE)
# A `## ` heading (ATX, up to 3 spaces of indentation) or a code fence opener/closer:
# the only lines the splitter has to look at. Every quantifier is followed by the end
# of the line, so nothing backtracks (Python 3.10 has no possessive quantifiers): the
# title's whitespace and closing hashes are taken off in Python (_heading_title).
_CANDIDATE = re.compile(
    r"^ {0,3}(?:##(?P<rest>[ \t][^\n]*)?\r?$|(?P<fence>`{3,}|~{3,})(?P<info>[^\n]*)$)",
    re.MULTILINE,
)
# Where such a line may start: found with a fast literal scan for the newline, so
# only lines starting with '#', '`' or '~' reach _CANDIDATE.
_MAYBE = re.compile(r"\n {0,3}[#`~]")
_TOP_HEADING = re.compile(r" {0,3}#(?:[ \t][^\n]*)?")
_BLANKS = " \t\r"


@dataclass(frozen=True)
class Section:
    title: str  # as written, whitespace collapsed
    key: str  # casefolded title; a repeated title gets " (2)", " (3)", ...
    body: str

    @property
    def placeholder(self) -> bool:
        return is_placeholder(self.body)


@dataclass(frozen=True)
class Handoff:
    preamble: str  # the agent's text before its first `## ` heading
    sections: tuple[Section, ...]
    kind: str  # EMPTY, PLACEHOLDER or WRITTEN
    template_chars: int  # length of a leading placeholder template set aside (0: none)

    def section(self, key: str) -> Section | None:
        return next((s for s in self.sections if s.key == key), None)

    def has_content(self, title: str) -> bool:
        """Some section of this title says more than a placeholder."""
        want = title_key(title)
        return any(title_key(s.title) == want and not s.placeholder for s in self.sections)


def title_key(title: str) -> str:
    return " ".join(title.split()).casefold()


def is_placeholder(body: str) -> bool:
    """Nothing but blank lines and stand-ins such as ``- Pending``."""
    return all(_placeholder_line(line) for line in _lines(body))


def _placeholder_line(line: str) -> bool:
    # Stripped in Python first: a regex that skips leading blanks and then tests what
    # follows backtracks quadratically on a long run of them.
    stripped = line.strip(_BLANKS + "\n")
    return not stripped or _PLACEHOLDER_LINE.fullmatch(stripped) is not None


def _heading_title(rest: str | None) -> str:
    """The title of a ``## `` heading from what follows the hashes: surrounding blanks
    and an optional closing run of ``#`` (after a blank) removed, whitespace collapsed."""
    title = (rest or "").strip(_BLANKS)
    bare = title.rstrip("#")
    if not bare:
        title = ""  # "## ###" is an empty heading
    elif bare != title and bare[-1] in _BLANKS:
        title = bare
    return " ".join(title.split())


def _headings(text: str) -> list[tuple[int, int, str]]:
    """(line start, line end, title) of every ``## `` heading outside code fences."""
    found: list[tuple[int, int, str]] = []
    fence: str | None = None
    starts = [0] if text[:4].lstrip(" ")[:1] in ("#", "`", "~") else []
    starts += [m.start() + 1 for m in _MAYBE.finditer(text)]
    for start in starts:
        match = _CANDIDATE.match(text, start)
        if match is None:
            continue
        marker = match.group("fence")
        if marker is not None:
            if fence is None:
                # A backtick fence's info string may not hold backticks (CommonMark).
                if marker[0] == "`" and "`" in match.group("info"):
                    continue
                fence = marker
            elif (
                marker[0] == fence[0]
                and len(marker) >= len(fence)
                and not match.group("info").strip()
            ):
                fence = None
            continue
        if fence is None:
            found.append((match.start(), match.end(), _heading_title(match.group("rest"))))
    return found


def split_sections(text: str) -> tuple[str, list[Section]]:
    """(text before the first heading, the sections in order)."""
    headings = _headings(text)
    preamble = text[: headings[0][0]] if headings else text
    sections: list[Section] = []
    seen: dict[str, int] = {}
    for index, (_, end, title) in enumerate(headings):
        stop = headings[index + 1][0] if index + 1 < len(headings) else len(text)
        base = title_key(title)
        seen[base] = seen.get(base, 0) + 1
        key = base if seen[base] == 1 else f"{base} ({seen[base]})"
        sections.append(Section(title or "(untitled)", key, text[end:stop].strip("\r\n")))
    return preamble, sections


def _lines(text: str) -> Iterator[str]:
    """The lines of ``text`` with their endings, one at a time (callers stop early)."""
    start = 0
    while start < len(text):
        stop = text.find("\n", start)
        stop = len(text) if stop < 0 else stop + 1
        yield text[start:stop]
        start = stop


def _template_end(text: str) -> int:
    """Where a leading placeholder template (headings over stand-in lines) ends, when
    the agent's own sectioned text follows it; else 0."""
    position = 0
    end = 0  # just after the last stand-in line under a heading
    saw_heading = False
    for line in _lines(text):
        stripped = line.strip()
        if stripped.startswith("## "):
            saw_heading = True
        elif saw_heading and stripped and _placeholder_line(stripped):
            end = position + len(line)
        elif stripped and not (position == 0 and _TOP_HEADING.fullmatch(line.rstrip("\r\n"))):
            break
        position += len(line)
    if not end or end >= len(text):
        return 0
    # Set the template aside only when what follows has sections of its own; else the
    # appended text belongs to the template's last section.
    return end if _headings(text[end:]) else 0


def parse_handoff(text: str) -> Handoff:
    if not text.strip():
        return Handoff("", (), EMPTY, 0)
    start = _template_end(text)
    preamble, sections = split_sections(text[start:] if start else text)
    # A first line "# Handoff: x" (or any top heading) is a title, not content.
    lines = preamble.strip().split("\n")
    if lines and _TOP_HEADING.fullmatch(lines[0].rstrip("\r")):
        lines = lines[1:]
    intro = "\n".join(lines).strip()
    placeholder = is_placeholder(intro) and all(s.placeholder for s in sections)
    return Handoff(intro, tuple(sections), PLACEHOLDER if placeholder else WRITTEN, start)


def required_titles() -> tuple[str, ...]:
    return REQUIRED_HANDOFF_SECTIONS
