"""Strip secrets (and, on request, the exporting machine's paths) from a bundle.

Bundles are public artifacts; agents print tokens, ``.env`` files and connection
strings into handoffs and transcripts. Every string of a bundle is scanned with the
rules of ``secretrules``; each secret becomes ``[REDACTED:<rule>:<fingerprint>]``,
the fingerprint being the first 12 hex digits of the secret's sha256, so the same
secret reads as the same placeholder everywhere and nothing of it survives.
``meta.sanitized`` records what was done: never a secret, only where (location,
line), which rule and which fingerprint.

Sanitizing is idempotent: a placeholder is never matched again, and findings
already in ``meta.sanitized`` are merged, not repeated.
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from kodelyth_ecc import __version__
from kodelyth_ecc.bundle import Bundle
from kodelyth_ecc.errors import KodelythError, UsageError
from kodelyth_ecc.secretrules import (
    PLACEHOLDER_TEXT_RE,
    RULES_VERSION,
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
    "SecretMatch",
    "infer_path_roots",
    "read_allow_file",
    "redact_text",
    "sanitize_bundle",
    "scan_text",
]

# Looked for at the root of the repository the command runs in.
ALLOW_FILE = ".kodelyth-allow"
# The worker fields that hold text (the others are names, states and timestamps).
WORKER_TEXT_FIELDS = ("task", "handoff", "status", "diff", "diffstat", "transcript")
PATH_PLACEHOLDERS = ("<repo>", "<worktrees>", "<home>", "<user>")
_FINGERPRINT = re.compile(r"[0-9a-f]{12}")
_LOCATION = re.compile(
    r"workers\[\d{1,9}\]\.[a-z_]{1,32}|meta(?:\.[A-Za-z0-9_-]{1,64}|\.\{\d{1,9}\}|\[\d{1,9}\])+"
)
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
_RULE = re.compile(r"[a-z0-9-]{1,64}")


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

    def to_json(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "tool": self.tool,
            "rules_version": self.rules_version,
            "findings": [f.to_json() for f in self.findings],
            "allowed": [f.to_json() for f in self.allowed],
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


def _redact_bytes(
    data: bytes, allow: frozenset[str], placed: list[tuple[int, int]]
) -> tuple[bytes, list[tuple[int, int, int, str, str]], list[tuple[int, int, int, str, str]]]:
    """(redacted data, redacted, allowed); each as (start, end, line, rule, fingerprint),
    offsets into ``data``; ``placed`` gets where each replacement landed in the output.
    A multi-line secret keeps its line count (and a diff's ``+`` on each line), so line
    numbers and patch hunks stay right."""
    found = find_secrets(data)
    del placed[:]
    if not found:
        return data, [], []
    parts: list[bytes] = []
    written = 0  # bytes of output so far: where each placeholder lands
    redacted: list[tuple[int, int, int, str, str]] = []
    allowed: list[tuple[int, int, int, str, str]] = []
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
        parts.append(data[pos:start])
        parts.append(placeholder(rule, fp))
        for piece in secret.split(b"\n")[1:]:
            parts.append(b"\n" + (prefix if prefix and piece.startswith(prefix) else b""))
        written += start - pos
        landed = written
        written += sum(len(p) for p in parts[-1 - secret.count(b"\n") :])
        pos = end
        redacted.append((start, end, line, rule, fp))
        placed.append((landed, written))
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


def _redact_str(
    text: str, allow: frozenset[str]
) -> tuple[str, list[tuple[int, int, int, str, str]], list[tuple[int, int, int, str, str]]]:
    """``_redact_bytes`` on a string, repeated until nothing new is found, so that a
    second run finds nothing either (a placeholder can end a token boundary)."""
    data = text.encode("utf-8", errors="surrogatepass")
    placed: list[tuple[int, int]] = []
    out, redacted, allowed = _redact_bytes(data, allow, placed)
    if not redacted:
        return text, redacted, allowed
    # Only next to a placeholder can a second pass see anything new: look there, and
    # rescan the whole text in the (rare) case it does.
    for _ in range(3):
        if not _new_near(out, placed):
            break
        out, more, _ignored = _redact_bytes(out, allow, placed)
        if not more:
            break
        redacted += more
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


def sanitize_bundle(
    bundle: Bundle,
    *,
    allow: Iterable[str] = (),
    redact_paths: bool = False,
    roots: PathRoots | None = None,
) -> tuple[Bundle, SanitizeReport]:
    """The bundle with every secret redacted (and paths replaced, with
    ``redact_paths``; ``roots`` defaults to ``infer_path_roots``), and what was found.
    Workers come out sorted by slug, as written, so locations name the written order."""
    allowed_fps = frozenset(a.lower() for a in allow)
    paths = None
    if redact_paths:
        paths = _PathRedactor(roots if roots is not None else infer_path_roots(bundle))
    findings: list[Finding] = []
    allowed: list[Finding] = []

    def clean(text: str, location: str) -> str:
        out, redacted, passed = _redact_str(text, allowed_fps)
        findings.extend(Finding(location, ln, rule, fp) for _s, _e, ln, rule, fp in redacted)
        allowed.extend(Finding(location, ln, rule, fp) for _s, _e, ln, rule, fp in passed)
        return paths(out) if paths is not None else out

    workers = []
    for index, worker in enumerate(sorted(bundle.workers, key=lambda w: w.slug)):
        changes = {}
        for name in WORKER_TEXT_FIELDS:
            value = getattr(worker, name)
            if isinstance(value, str):
                cleaned = clean(value, f"workers[{index}].{name}")
                if cleaned is not value:
                    changes[name] = cleaned
        workers.append(msgspec.structs.replace(worker, **changes) if changes else worker)
    meta: dict[str, Any] = {}
    for key, value in bundle.meta.items():
        if key != "sanitized":
            meta[key] = _clean_value(value, f"meta.{key}", clean)
    path_counts = (
        {k: paths.counts.get(k, 0) for k in PATH_PLACEHOLDERS} if paths is not None else {}
    )
    report = SanitizeReport(tuple(findings), tuple(allowed), path_counts)
    meta["sanitized"] = _merged_record(bundle.meta.get("sanitized"), report, redact_paths)
    result = msgspec.structs.replace(bundle, meta=meta, workers=workers)
    return result, report


def _clean_value(value: Any, location: str, clean: Any) -> Any:
    """Strings anywhere in meta, nested ones and keys too; other values as they are. A
    key that is not a plain name is located by its position (``meta.x.{2}``): a
    location is shown and recorded, so it must not carry text from the bundle."""
    if isinstance(value, str):
        return clean(value, location)
    if isinstance(value, list):
        return [_clean_value(v, f"{location}[{i}]", clean) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for i, (key, item) in enumerate(value.items()):
            by_position = f"{location}.{{{i}}}"
            new_key = clean(key, by_position)
            where = f"{location}.{new_key}" if _PLAIN_KEY.fullmatch(new_key) else by_position
            out[new_key] = _clean_value(item, where, clean)
        return out
    return value


def _merged_record(previous: Any, report: SanitizeReport, redact_paths: bool) -> dict[str, Any]:
    """``meta.sanitized``: earlier findings (from a bundle already sanitized) first,
    then new ones, each once. Only well-formed entries of an earlier record are kept:
    it is not scanned, so nothing else of it may pass through."""
    old_findings: list[dict[str, Any]] = []
    old_paths: dict[str, int] = {}
    if isinstance(previous, Mapping):
        for item in previous.get("findings") or []:
            entry = _valid_finding(item)
            if entry is not None:
                old_findings.append(entry)
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
