"""Strip secrets (and, on request, the exporting machine's paths) from a bundle.

Bundles are public artifacts; agents print tokens, ``.env`` files and connection
strings into handoffs and transcripts. Every string of a bundle is scanned with the
rules of ``secretrules``: the top-level fields, every string field of every worker
(task, handoff, status, diff, diffstat, transcript, but also state and timestamps),
every meta value and key at any depth, and the strings of the findings an earlier run
recorded in ``meta.sanitized``. Each secret becomes ``[REDACTED:<rule>:<fingerprint>]``,
the fingerprint being the first 12 hex digits of the secret's sha256, so the same
secret reads as the same placeholder everywhere and nothing of it survives.

A secret found anywhere is redacted everywhere: once the scan has found every secret
(a password by its assignment, a URL's credentials), a second pass looks for each
found value (and the password inside a URL or connection string) in every string of
the bundle, bare, and replaces each copy with the same placeholder; each copy is a
finding of its own, so ``--check`` lists what writing redacts. Values shorter than
``secretrules.MIN_COPY_LENGTH`` (8) characters, or made of one character class (a
word such as ``production``), are not looked for: they would erase ordinary text. The
search is one pass per string whatever the number of secrets (``_Copies``).

Session and worker names are scanned too, but a name cannot be redacted (it is a
directory name, and a placeholder is not a valid one): a secret in a name is a
finding that ``--check`` reports, and ``sanitize_bundle`` refuses with an error naming
the field, never the value.

``meta.sanitized`` records what was done: never a secret, only where (location,
line), which rule and which fingerprint. Sanitizing is idempotent: a placeholder is
never matched again, and findings already in ``meta.sanitized`` are merged, not
repeated (only well-formed ones holding no secret are kept).
"""

from __future__ import annotations

import bisect
import getpass
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from kodelyth_ecc import __version__
from kodelyth_ecc.bundle import Bundle
from kodelyth_ecc.errors import KodelythError, UsageError
from kodelyth_ecc.secretrules import (
    PLACEHOLDER_RE,
    PLACEHOLDER_TEXT_RE,
    RULES_VERSION,
    copy_values,
    find_secrets,
    fingerprint,
    placeholder,
)

__all__ = [
    "ALLOW_FILE",
    "RULES_VERSION",
    "Finding",
    "PathRoots",
    "SanitizeReport",
    "SecretInNameError",
    "SecretMatch",
    "infer_path_roots",
    "read_allow_file",
    "redact_text",
    "sanitize_bundle",
    "scan_bundle",
    "scan_text",
]

# Looked for at the root of the repository the command runs in.
ALLOW_FILE = ".kodelyth-allow"
PATH_PLACEHOLDERS = ("<repo>", "<worktrees>", "<home>", "<user>")
_FINGERPRINT = re.compile(r"[0-9a-f]{12}")
_LOCATION = re.compile(
    r"schema|session|exported_at|exported_by"
    r"|workers\[\d{1,9}\]\.[a-z_]{1,32}(?:\.[A-Za-z0-9_-]{1,64}|\.\{\d{1,9}\}|\[\d{1,9}\])*"
    r"|meta(?:\.[A-Za-z0-9_-]{1,64}|\.\{\d{1,9}\}|\[\d{1,9}\])+"
)
_NAME_LOCATION = re.compile(r"schema|session|workers\[\d{1,9}\]\.slug")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
_RULE = re.compile(r"[a-z0-9-]{1,64}")


class SecretInNameError(KodelythError):
    """A secret in the session's or a worker's name, which cannot be redacted."""


@dataclass(frozen=True)
class SecretMatch:
    """A secret in a text: character offsets, 1-based line, rule and fingerprint."""

    rule: str
    start: int
    end: int
    line: int
    fingerprint: str


@dataclass(frozen=True)
class Finding:
    """A secret in a bundle, as reported and recorded: never the secret itself."""

    location: str
    line: int
    rule: str
    fingerprint: str

    def to_json(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "line": self.line,
            "rule": self.rule,
            "fingerprint": self.fingerprint,
        }


@dataclass(frozen=True)
class SanitizeReport:
    """What one run found: redacted secrets, allowed ones left as they were, and how
    many paths each placeholder replaced (empty without ``redact_paths``)."""

    findings: tuple[Finding, ...]
    allowed: tuple[Finding, ...]
    paths: dict[str, int] = field(default_factory=dict)
    rules_version: str = RULES_VERSION
    tool: str = f"kodelyth-ecc@{__version__}"

    @property
    def clean(self) -> bool:
        """Nothing to redact: what ``--check`` passes."""
        return not self.findings and not any(self.paths.values())

    @property
    def unredactable(self) -> tuple[Finding, ...]:
        """Findings in the session's or a worker's name: only renaming removes them."""
        return tuple(f for f in self.findings if _NAME_LOCATION.fullmatch(f.location))

    def to_json(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "tool": self.tool,
            "rules_version": self.rules_version,
            "findings": [f.to_json() for f in self.findings],
            "allowed": [f.to_json() for f in self.allowed],
            "unredactable": [f.to_json() for f in self.unredactable],
            "paths": dict(self.paths),
        }


@dataclass(frozen=True)
class PathRoots:
    """The exporting machine's paths that ``redact_paths`` replaces."""

    repo: tuple[str, ...] = ()
    worktrees: tuple[str, ...] = ()
    home: tuple[str, ...] = ()
    users: tuple[str, ...] = ()


# --- texts ---------------------------------------------------------------------------

# (start, end, line, rule, fingerprint): offsets into the text scanned
_Span = tuple[int, int, int, str, str]
# Found secrets: their exact bytes -> (rule, fingerprint, line prefix of a multi-line one)
_Found = dict[bytes, tuple[str, str, bytes]]
# A finding before it has a location: (line, rule, fingerprint)
_Hit = tuple[int, str, str]


def _replacement(secret: bytes, rule: str, fp: str, prefix: bytes) -> bytes:
    """The placeholder, plus one newline (and the diff sign or indentation it had) per
    line break of a multi-line secret: line numbers and patch hunks stay right."""
    out = placeholder(rule, fp)
    if b"\n" in secret:
        out += b"".join(
            b"\n" + (prefix if prefix and piece.startswith(prefix) else b"")
            for piece in secret.split(b"\n")[1:]
        )
    return out


def _redact_bytes(
    data: bytes,
    allow: frozenset[str],
    placed: list[tuple[int, int]],
    found_secrets: _Found | None = None,
) -> tuple[bytes, list[_Span], list[_Span]]:
    """(redacted data, redacted, allowed), offsets into ``data``; ``placed`` gets where
    each replacement landed in the output, ``found_secrets`` each redacted secret."""
    found = find_secrets(data)
    del placed[:]
    if not found:
        return data, [], []
    parts: list[bytes] = []
    written = 0  # bytes of output so far: where each placeholder lands
    redacted: list[_Span] = []
    allowed: list[_Span] = []
    pos = last = 0
    line = 1
    for start, end, rule, _priority, prefix in found:
        line += data.count(b"\n", last, start)
        last = start
        secret = data[start:end]
        fp = fingerprint(_canonical(secret, prefix))
        if fp in allow:
            allowed.append((start, end, line, rule, fp))
            continue
        if found_secrets is not None:
            found_secrets.setdefault(secret, (rule, fp, prefix))
        rep = _replacement(secret, rule, fp, prefix)
        parts.append(data[pos:start])
        written += start - pos
        placed.append((written, written + len(rep)))
        written += len(rep)
        parts.append(rep)
        pos = end
        redacted.append((start, end, line, rule, fp))
    parts.append(data[pos:])
    return b"".join(parts), redacted, allowed


def _canonical(secret: bytes, prefix: bytes) -> bytes:
    """A multi-line secret without its diff signs or indentation: the same key gets the
    same fingerprint in a handoff and in a diff."""
    if b"\n" not in secret:
        return secret
    lines = secret.replace(b"\r\n", b"\n").split(b"\n")
    if prefix:
        lines = [ln[len(prefix) :] if ln.startswith(prefix) else ln for ln in lines]
    return b"\n".join(ln.strip() for ln in lines)


def _redact_data(
    data: bytes, allow: frozenset[str], found_secrets: _Found | None = None
) -> tuple[bytes, list[_Span], list[_Span]]:
    """``_redact_bytes``, repeated until nothing new is found, so that a second run
    finds nothing either (a placeholder can end a token boundary). Offsets of the
    later passes are into the text they scanned (lines stay the same)."""
    placed: list[tuple[int, int]] = []
    out, redacted, allowed = _redact_bytes(data, allow, placed, found_secrets)
    if not redacted:
        return data, redacted, allowed
    # Only next to a placeholder can a second pass see anything new: look there, and
    # rescan the whole text in the (rare) case it does.
    for _ in range(3):
        if not _new_near(out, placed):
            break
        out, more, _ignored = _redact_bytes(out, allow, placed, found_secrets)
        if not more:
            break
        redacted += more
    return out, redacted, allowed


def _redact_str(text: str, allow: frozenset[str]) -> tuple[str, list[_Span], list[_Span]]:
    data = text.encode("utf-8", errors="surrogatepass")
    out, redacted, allowed = _redact_data(data, allow)
    if not redacted:
        return text, redacted, allowed
    return out.decode("utf-8", errors="surrogatepass"), redacted, allowed


NEAR = 256


def _new_near(data: bytes, placed: list[tuple[int, int]]) -> bool:
    """Whether anything is found around the placeholders: windows that touch are
    scanned as one, so a text dense with secrets costs one more pass, not one per
    secret."""
    lo, hi = -1, -1
    for start, end in placed:
        if lo >= 0 and start - NEAR <= hi:
            hi = end + NEAR
            continue
        if lo >= 0 and find_secrets(data[lo:hi]):
            return True
        lo, hi = max(0, start - NEAR), end + NEAR
    return lo >= 0 and bool(find_secrets(data[lo:hi]))


# --- copies --------------------------------------------------------------------------

# Up to this many values are looked for with one ``bytes.find`` each (memory speed);
# more go through the block index below, whose cost does not grow with their number.
FIND_LIMIT = 32
# Values at least this long are indexed by 8-byte blocks, shorter ones by 4-byte
# blocks: an occurrence of length >= 2 * size - 1 always holds a whole aligned block.
_LONG = 15


class _Copies:
    """Where any of many known values occurs in a text, in one pass over it.

    Each text is cut into aligned blocks of 8 (or 4) bytes, read as integers at C speed
    (``memoryview.cast``) and intersected with an index: for each value and each of the
    block size's alignments, one of its blocks (the rarest among the values). An
    occurrence at any offset holds a whole aligned block at one of those alignments, so
    a value absent from the intersection is absent from the text; the few values
    present are then found exactly with ``bytes.find``."""

    def __init__(self, values: Iterable[bytes]) -> None:
        self.groups: list[tuple[int, list[bytes], dict[int, list[bytes]] | None]] = []
        ordered = sorted(set(values), key=lambda v: (-len(v), v))
        long = [v for v in ordered if len(v) >= _LONG]
        short = [v for v in ordered if len(v) < _LONG]
        for size, group in ((8, long), (4, short)):
            if not group:
                continue
            if len(group) <= FIND_LIMIT or _itemsize(size) != size:
                self.groups.append((size, group, None))
            else:
                self.groups.append((size, group, _block_index(size, group)))

    def spans(self, data: bytes) -> list[tuple[int, int, bytes]]:
        """(start, end, value) of every occurrence, overlapping ones included."""
        candidates: list[bytes] = []
        for size, group, index in self.groups:
            if len(data) < len(group[-1]):
                continue
            if index is None:
                candidates += group
                continue
            blocks = _blocks(data + bytes(-len(data) % size), size)
            hit: set[bytes] = set()
            for key in index.keys() & blocks:  # iterates the blocks, builds no set of them
                hit.update(index[key])
            candidates += sorted(hit, key=lambda v: (-len(v), v))
        out = []
        for value in candidates:
            if len(value) > len(data):
                continue
            at = data.find(value)
            while at >= 0:
                out.append((at, at + len(value), value))
                at = data.find(value, at + len(value))
        return out


def _blocks(data: bytes, size: int) -> memoryview[int]:
    """``data`` (a multiple of ``size`` long) as native integers of ``size`` bytes."""
    return memoryview(data).cast("Q" if size == 8 else "I")


def _itemsize(size: int) -> int:
    return _blocks(bytes(8), size).itemsize


def _block_index(size: int, values: list[bytes]) -> dict[int, list[bytes]]:
    """For each value and alignment, its rarest block (fewest values share it): a
    common block (``postgres`` in many URLs) would make every text a candidate."""
    span = 4 * size  # the first few blocks of each alignment are choice enough
    grams = [[v[o : o + size] for o in range(min(len(v), span + size) - size + 1)] for v in values]
    counts = Counter(g for per_value in grams for g in per_value)
    index: dict[int, list[bytes]] = {}
    for value, per_value in zip(values, grams, strict=True):
        for align in range(size):
            best = min(per_value[align::size], key=counts.__getitem__)
            index.setdefault(int.from_bytes(best, sys.byteorder), []).append(value)
    return index


def _replace_copies(
    data: bytes, copies: _Copies, table: Mapping[bytes, tuple[str, str, bytes]]
) -> tuple[bytes, list[_Hit], list[tuple[int, int]]]:
    """``data`` with every copy of a known value replaced by its placeholder (never
    inside a placeholder; overlapping copies merge into one span), the hits, and where
    the replacements landed."""
    spans = copies.spans(data)
    if not spans:
        return data, [], []
    if b"[REDACTED:" in data:
        marks = [m.span() for m in PLACEHOLDER_RE.finditer(data)]
        starts = [s for s, _ in marks]

        def inside(start: int, end: int) -> bool:
            i = bisect.bisect_right(starts, end - 1) - 1
            return i >= 0 and marks[i][1] > start

        spans = [s for s in spans if not inside(s[0], s[1])]
        if not spans:
            return data, [], []
    spans.sort(key=lambda s: (s[0], -s[1]))
    merged: list[tuple[int, int, bytes]] = []
    for start, end, value in spans:
        if merged and start < merged[-1][1]:
            p_start, p_end, p_value = merged[-1]
            longest = p_value if len(p_value) >= len(value) else value
            merged[-1] = (p_start, max(p_end, end), longest)
        else:
            merged.append((start, end, value))
    parts: list[bytes] = []
    hits: list[_Hit] = []
    placed: list[tuple[int, int]] = []
    pos = last = written = 0
    line = 1
    for start, end, value in merged:
        line += data.count(b"\n", last, start)
        last = start
        secret = data[start:end]
        rule, fp, prefix = table[value]
        if secret != value:  # copies that overlap: one secret of their own
            fp = fingerprint(_canonical(secret, prefix))
        rep = _replacement(secret, rule, fp, prefix)
        parts.append(data[pos:start])
        written += start - pos
        placed.append((written, written + len(rep)))
        written += len(rep)
        parts.append(rep)
        pos = end
        hits.append((line, rule, fp))
    parts.append(data[pos:])
    return b"".join(parts), hits, placed


def scan_text(text: str) -> list[SecretMatch]:
    """The secrets in ``text`` with their character offsets (nothing is changed)."""
    data = text.encode("utf-8", errors="surrogatepass")
    ascii_only = text.isascii()
    matches = []
    line, last = 1, 0
    for start, end, rule, _priority, prefix in find_secrets(data):
        line += data.count(b"\n", last, start)
        last = start
        fp = fingerprint(_canonical(data[start:end], prefix))
        if ascii_only:
            c_start, c_end = start, end
        else:
            c_start = len(data[:start].decode("utf-8", errors="surrogatepass"))
            c_end = c_start + len(data[start:end].decode("utf-8", errors="surrogatepass"))
        matches.append(SecretMatch(rule, c_start, c_end, line, fp))
    return matches


def secret_fingerprints(data: bytes) -> list[str]:
    """The fingerprints of what looks like a secret in raw ``data`` (a bundle file as
    written), for a hint that it wants sanitizing. Text JSON escapes may hide some:
    ``scan_bundle`` (``sanitize --check``) is the one that knows."""
    return [fingerprint(_canonical(data[s:e], prefix)) for s, e, _, _, prefix in find_secrets(data)]


def redact_text(text: str, allow: Iterable[str] = ()) -> tuple[str, list[SecretMatch]]:
    """``text`` with every secret replaced by its placeholder, and what was replaced
    (offsets into the original ``text``; allowed fingerprints are left as they are)."""
    out, redacted, _allowed = _redact_str(text, frozenset(allow))
    return out, [SecretMatch(r, s, e, ln, fp) for s, e, ln, r, fp in redacted]


# --- paths ---------------------------------------------------------------------------

_COMMON_USER_NAMES = frozenset(
    [
        "root",
        "admin",
        "administrator",
        "user",
        "users",
        "dev",
        "developer",
        "test",
        "tests",
        "ubuntu",
        "debian",
        "runner",
        "build",
        "builder",
        "ci",
        "git",
        "node",
        "app",
        "home",
        "guest",
        "default",
        "www",
        "docker",
        "vagrant",
        "pi",
        "me",
        "ec2-user",
        "centos",
        "fedora",
        "alpine",
        "nobody",
        "worker",
        "agent",
        "bot",
        "service",
    ]
)
_TASK_PATHS = re.compile(r"^- (Repo root|Worktree): `([^`\n]{2,4096})`$", re.MULTILINE)
_HOME_OF = re.compile(
    r"^(/home/[^/\s]+|/Users/[^/\s]+|/root|[A-Za-z]:\\Users\\[^\\\s]+)(?=[/\\]|$)"
)


def infer_path_roots(
    bundle: Bundle,
    *,
    repo: Iterable[str] = (),
    worktrees: Iterable[str] = (),
    home: str | None = None,
    user: str | None = None,
) -> PathRoots:
    """The paths to replace: those given (a session's own record, at export), those a
    bundle's task.md files name (``- Repo root:``, ``- Worktree:``), the home and
    user they lie under, and this machine's home and user name."""
    repos = [r for r in repo if r]
    trees = [w for w in worktrees if w]
    for key, target in (("repo_root", repos), ("worktree_root", trees)):
        value = bundle.meta.get(key)
        if isinstance(value, str):
            target.append(value)
    for worker in bundle.workers:
        for text in (worker.task, worker.status):
            for kind, path in _TASK_PATHS.findall(text):
                if kind == "Repo root":
                    repos.append(path)
                else:
                    trees.append(os.path.dirname(path.rstrip("/\\")) or path)
    homes = [home if home is not None else os.path.expanduser("~")]
    users: list[str] = []
    if user is None:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry, no LOGNAME: nothing to replace
            user = ""
    users.append(user)
    for path in (*repos, *trees):
        m = _HOME_OF.match(path)
        if m:
            homes.append(m.group(1))
            users.append(re.split(r"[/\\]", m.group(1))[-1])
    return PathRoots(
        repo=_usable(repos), worktrees=_usable(trees), home=_usable(homes), users=_unique(users)
    )


def _usable(paths: Iterable[str]) -> tuple[str, ...]:
    """Absolute paths deep enough to be someone's (never ``/``), with symlink-resolved
    spellings too (``/tmp`` is ``/private/tmp`` on macOS)."""
    out: list[str] = []
    for path in paths:
        for spelling in (path, os.path.realpath(path) if os.path.isabs(path) else path):
            clean = spelling.rstrip("/\\")
            is_abs = clean.startswith("/") or re.match(r"[A-Za-z]:\\", clean)
            if (
                is_abs and len(clean) > 3 and clean.count("/") + clean.count("\\") >= 2
            ) or clean in ("/root",):
                out.append(clean)
    return _unique(out)


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i for i in items if i))


class _PathRedactor:
    """One regex over all roots, longest first, each ending at a path boundary (so
    ``/src/app`` does not match in ``/src/app-worktree``); placeholders of secrets
    are matched first and left alone."""

    def __init__(self, roots: PathRoots) -> None:
        self.by_path: dict[str, str] = {}
        for kind, paths in (
            ("<repo>", roots.repo),
            ("<worktrees>", roots.worktrees),
            ("<home>", roots.home),
        ):
            for path in paths:
                self.by_path.setdefault(path, kind)
        alternatives = [PLACEHOLDER_TEXT_RE.pattern]
        if self.by_path:
            ordered = sorted(self.by_path, key=len, reverse=True)
            alternatives.append(
                r"(?<![\w.-])(?P<path>" + "|".join(re.escape(p) for p in ordered) + r")(?![\w.-])"
            )
        users = [u for u in roots.users if u and re.fullmatch(r"[\w.-]{2,64}", u)]
        if users:
            names = "|".join(re.escape(u) for u in sorted(users, key=len, reverse=True))
            # A path component (/home/alice, C:\Users\alice), a prompt (alice@host), or a
            # whole word when the name is not a common word or account name.
            alternatives.append(rf"(?<=[/\\])(?P<component>{names})(?=[/\\]|$|[^\w.-])")
            alternatives.append(rf"(?<![\w.-])(?P<prompt>{names})(?=@[\w-])")
            rare = [u for u in users if len(u) >= 3 and u.lower() not in _COMMON_USER_NAMES]
            if rare:
                words = "|".join(re.escape(u) for u in sorted(rare, key=len, reverse=True))
                alternatives.append(rf"(?<![\w.-])(?P<word>{words})(?![\w-])")
        self.active = len(alternatives) > 1
        self.pattern = re.compile("|".join(alternatives))
        self.counts: dict[str, int] = {}

    def _replace(self, m: re.Match[str]) -> str:
        if m.lastgroup == "path":
            kind = self.by_path[m.group("path")]
        elif m.lastgroup in ("component", "prompt", "word"):
            kind = "<user>"
        else:
            return m.group()  # a secret's placeholder
        self.counts[kind] = self.counts.get(kind, 0) + 1
        return kind

    def __call__(self, text: str) -> str:
        if not self.active:
            return text
        return self.pattern.sub(self._replace, text)


# --- bundles -------------------------------------------------------------------------

# What a string of the bundle is: free text (redacted in place), a name (the session,
# a slug: never changed, a secret there is refused), or a string of an earlier run's
# finding (the finding is dropped when it holds a secret).
TEXT, NAME, RECORD = "text", "name", "record"
# A secret found in a copy's neighbourhood is looked for in turn: at most this many
# rounds (one is the rule; each further round needs a newly exposed secret).
MAX_COPY_ROUNDS = 4

# (text, kind, location) -> the text to keep
_Visit = Callable[[str, str, str], str]


@dataclass
class _Slot:
    kind: str
    data: bytes
    hits: list[_Hit]
    allowed: list[_Hit]


def sanitize_bundle(
    bundle: Bundle,
    *,
    allow: Iterable[str] = (),
    redact_paths: bool = False,
    roots: PathRoots | None = None,
) -> tuple[Bundle, SanitizeReport]:
    """The bundle with every secret redacted, each copy of it too (and paths replaced,
    with ``redact_paths``; ``roots`` defaults to ``infer_path_roots``), and what was
    found. Workers come out sorted by slug, as written, so locations name the written
    order. Raises ``SecretInNameError`` when the session's or a worker's name holds a
    secret: a name cannot be redacted (``scan_bundle`` reports it instead)."""
    cleaned, report = _sanitize(bundle, allow, redact_paths, roots)
    if report.unredactable:
        first = report.unredactable[0]
        more = len(report.unredactable) - 1
        raise SecretInNameError(
            f"{first.location} holds a secret ({first.rule}, fingerprint {first.fingerprint})"
            + (f" and {more} more name(s) do" if more else "")
            + ": a name cannot be redacted; rename it in the bundle, or allow the "
            f"fingerprint (--allow {first.fingerprint}) if it is not a secret"
        )
    return cleaned, report


def scan_bundle(
    bundle: Bundle,
    *,
    allow: Iterable[str] = (),
    redact_paths: bool = False,
    roots: PathRoots | None = None,
) -> SanitizeReport:
    """What ``sanitize_bundle`` would find (and redact), names included: ``--check``."""
    return _sanitize(bundle, allow, redact_paths, roots)[1]


def _sanitize(
    bundle: Bundle, allow: Iterable[str], redact_paths: bool, roots: PathRoots | None
) -> tuple[Bundle, SanitizeReport]:
    allowed_fps = frozenset(a.lower() for a in allow)
    # 1. Every string of the bundle, in a fixed order, scanned with the rules.
    texts: list[tuple[str, str]] = []

    def collect(text: str, kind: str, _location: str) -> str:
        texts.append((text, kind))
        return text

    _walk(bundle, collect)
    found: _Found = {}
    slots = []
    for text, kind in texts:
        data = text.encode("utf-8", errors="surrogatepass")
        out, redacted, passed = _redact_data(data, allowed_fps, found)
        slots.append(_Slot(kind, out, [s[2:] for s in redacted], [s[2:] for s in passed]))
    # 2. Every copy of what was found, in every string.
    _redact_copies(slots, found, allowed_fps)
    # 3. The bundle rebuilt in the same order: locations name the redacted keys.
    paths = None
    if redact_paths:
        paths = _PathRedactor(roots if roots is not None else infer_path_roots(bundle))
    findings: list[Finding] = []
    allowed: list[Finding] = []
    pending = iter(slots)

    def apply(text: str, kind: str, location: str) -> str:
        slot = next(pending)
        findings.extend(Finding(location, *hit) for hit in sorted(slot.hits, key=_line))
        allowed.extend(Finding(location, *hit) for hit in sorted(slot.allowed, key=_line))
        out = text
        if slot.hits and kind != NAME:
            out = slot.data.decode("utf-8", errors="surrogatepass")
        if kind == TEXT and paths is not None:
            out = paths(out)
        return out

    top, workers, meta, kept = _walk(bundle, apply)
    path_counts = (
        {k: paths.counts.get(k, 0) for k in PATH_PLACEHOLDERS} if paths is not None else {}
    )
    report = SanitizeReport(tuple(findings), tuple(allowed), path_counts)
    meta["sanitized"] = _merged_record(bundle.meta.get("sanitized"), kept, report, redact_paths)
    result = msgspec.structs.replace(bundle, **top, meta=meta, workers=workers)
    return result, report


def _line(hit: _Hit) -> int:
    return hit[0]


def _redact_copies(slots: list[_Slot], found: _Found, allow: frozenset[str]) -> None:
    """Replace, in every slot, each copy of a found secret (and of the password inside
    it); what a replacement exposes is scanned, and its secrets looked for in turn."""
    searched: set[bytes] = set()
    new = found
    for _ in range(MAX_COPY_ROUNDS):
        table: dict[bytes, tuple[str, str, bytes]] = {}
        for secret, (rule, fp, prefix) in new.items():
            for value in copy_values(secret, rule):
                if value in searched or value in table:
                    continue
                info = (rule, fp, prefix) if value == secret else (rule, fingerprint(value), b"")
                if info[1] not in allow:
                    table[value] = info
        if not table:
            return
        searched.update(table)
        copies = _Copies(table)
        exposed: _Found = {}
        for slot in slots:
            out, hits, placed = _replace_copies(slot.data, copies, table)
            if not hits:
                continue
            slot.hits += hits
            if _new_near(out, placed):
                out, more, _passed = _redact_data(out, allow, exposed)
                slot.hits += [s[2:] for s in more]
            slot.data = out
        new = {k: v for k, v in exposed.items() if k not in found}
        found.update(new)


def _walk(
    bundle: Bundle, visit: _Visit
) -> tuple[dict[str, str], list[Any], dict[str, Any], list[dict[str, Any]]]:
    """Every string of the bundle through ``visit``, always in the same order: the
    top-level fields, each worker's string fields (sorted by slug), meta (keys and
    values at any depth; not ``meta.sanitized``), then the strings of the earlier
    findings in ``meta.sanitized``. Returns the top-level fields, the workers, meta and
    the earlier findings to keep (those whose strings came back unchanged)."""
    top = {}
    for name in ("schema", "session", "exported_at", "exported_by"):
        value = getattr(bundle, name)
        kept = visit(value, NAME if name in ("schema", "session") else TEXT, name)
        if kept is not value:
            top[name] = kept
    workers = []
    for index, worker in enumerate(sorted(bundle.workers, key=lambda w: w.slug)):
        changes = {}
        for name in worker.__struct_fields__:
            value = getattr(worker, name)
            if isinstance(value, str):
                kind = NAME if name == "slug" else TEXT
                cleaned = visit(value, kind, f"workers[{index}].{name}")
                if cleaned is not value:
                    changes[name] = cleaned
            elif isinstance(value, (dict, list)):  # e.g. usage: its strings too
                cleaned = _clean_value(value, f"workers[{index}].{name}", visit)
                if cleaned != value:
                    changes[name] = cleaned
        workers.append(msgspec.structs.replace(worker, **changes) if changes else worker)
    meta: dict[str, Any] = {}
    for i, (key, value) in enumerate(bundle.meta.items()):
        if key != "sanitized":
            new_key, where = _visit_key(key, "meta", i, visit)
            meta[new_key] = _clean_value(value, where, visit)
    kept_findings = []
    previous = bundle.meta.get("sanitized")
    items = previous.get("findings") if isinstance(previous, Mapping) else None
    for i, item in enumerate(items if isinstance(items, list) else []):
        entry = _valid_finding(item)
        if entry is None:
            continue
        same = True
        for key in ("location", "rule", "fingerprint"):
            text = entry[key]
            if visit(text, RECORD, f"meta.sanitized.findings[{i}].{key}") != text:
                same = False
        if same:
            kept_findings.append(entry)
    return top, workers, meta, kept_findings


def _visit_key(key: str, location: str, position: int, visit: _Visit) -> tuple[str, str]:
    """A key and where its value is: by name when the key is a plain name, else by its
    position (``meta.x.{2}``): a location is shown and recorded, so it must not carry
    text from the bundle."""
    by_position = f"{location}.{{{position}}}"
    new_key = visit(key, TEXT, by_position)
    return new_key, f"{location}.{new_key}" if _PLAIN_KEY.fullmatch(new_key) else by_position


def _clean_value(value: Any, location: str, visit: _Visit) -> Any:
    """Strings anywhere in meta (or a worker's object field), nested ones and keys too;
    other values as they are."""
    if isinstance(value, str):
        return visit(value, TEXT, location)
    if isinstance(value, list):
        return [_clean_value(v, f"{location}[{i}]", visit) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for i, (key, item) in enumerate(value.items()):
            new_key, where = _visit_key(key, location, i, visit)
            out[new_key] = _clean_value(item, where, visit)
        return out
    if isinstance(value, msgspec.Struct):  # a recorded exchange: every string of it
        changes = {}
        for name in value.__struct_fields__:
            item = getattr(value, name)
            cleaned = _clean_value(item, f"{location}.{name}", visit)
            if cleaned != item:
                changes[name] = cleaned
        return msgspec.structs.replace(value, **changes) if changes else value
    return value


def _merged_record(
    previous: Any, old_findings: list[dict[str, Any]], report: SanitizeReport, redact_paths: bool
) -> dict[str, Any]:
    """``meta.sanitized``: earlier findings (from a bundle already sanitized; only
    well-formed ones holding no secret) first, then new ones, each once. Nothing else
    of an earlier record passes through but its path counts."""
    old_paths: dict[str, int] = {}
    if isinstance(previous, Mapping):
        raw_paths = previous.get("paths")
        if isinstance(raw_paths, Mapping):
            for kind in PATH_PLACEHOLDERS:
                count = raw_paths.get(kind)
                if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
                    old_paths[kind] = count
    seen: set[tuple[Any, ...]] = set()
    merged = []
    for entry in [*old_findings, *(f.to_json() for f in report.findings)]:
        key = tuple(entry.values())
        if key not in seen:
            seen.add(key)
            merged.append(entry)
    record: dict[str, Any] = {
        "tool": report.tool,
        "rules_version": report.rules_version,
        "findings": merged,
    }
    if redact_paths or old_paths:
        totals = dict(old_paths)
        for kind, count in report.paths.items():
            totals[kind] = totals.get(kind, 0) + count
        record["paths"] = {k: totals.get(k, 0) for k in PATH_PLACEHOLDERS}
    return record


def _valid_finding(item: Any) -> dict[str, Any] | None:
    if not isinstance(item, Mapping):
        return None
    location, line, rule, fp = (item.get(k) for k in ("location", "line", "rule", "fingerprint"))
    if not (
        isinstance(location, str)
        and _LOCATION.fullmatch(location)
        and isinstance(line, int)
        and not isinstance(line, bool)
        and line >= 1
        and isinstance(rule, str)
        and _RULE.fullmatch(rule)
        and isinstance(fp, str)
        and _FINGERPRINT.fullmatch(fp)
    ):
        return None
    return {"location": location, "line": line, "rule": rule, "fingerprint": fp}


# --- allow lists ---------------------------------------------------------------------


def parse_fingerprint(value: str, where: str) -> str:
    """The value is not echoed in the error: it might be a secret pasted by mistake."""
    fp = value.strip().lower()
    if not _FINGERPRINT.fullmatch(fp):
        error = UsageError if where.startswith("--") else KodelythError
        raise error(
            f"{where}: not a fingerprint ({len(value.strip())} characters): give the 12 hex "
            "digits a finding shows (e.g. 3f2a9c1b0d4e), not the secret"
        )
    return fp


def read_allow_file(path: str) -> list[str]:
    """Fingerprints, one a line; ``#`` starts a comment, blank lines are skipped."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        raise KodelythError(f"allow file {path} does not exist: check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise KodelythError(f"cannot read allow file {path}: {reason}") from None
    found = []
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if text:
            found.append(parse_fingerprint(text.split()[0], f"{path}:{number}"))
    return found


def known_fingerprints(findings: Sequence[Finding]) -> list[str]:
    return list(dict.fromkeys(f.fingerprint for f in findings))
