"""The ``status.md`` contract: ``- Key: value`` bullets, rewritten atomically.

Also reads what the earlier JavaScript tool wrote (``- State: not started``
with ``state: completed`` appended), so its coordination dirs keep working.
This module is imported by the worker runner, so it stays small and stdlib-only.
"""

from __future__ import annotations

import re

STATES = ("pending", "running", "completed", "failed")
# Computed by status collection, never written by a runner.
LOST = "lost"
# A status.md that could not be read safely (a symlink, a FIFO, ...): nothing more will
# be learnt by waiting for it.
UNREADABLE = "unreadable"
DONE_STATES = frozenset({"completed", "failed", LOST, UNREADABLE})
# The bounds of what a status file may say: an exit status fits in 32 bits and a
# duration in a few digits; longer runs of digits are not numbers a runner wrote (and
# Python refuses to parse over 4,300 digits).
_EXIT_CODE = re.compile(r"-?\d{1,10}")
_DURATION = re.compile(r"\d{1,12}(?:\.\d{1,9})?")
_MAX_EXIT_CODE = 2**31

_BULLET = re.compile(r"^\s*(?:-\s+)?([A-Za-z][A-Za-z ]*?)\s*:\s*(.*?)\s*$")
_STATE_ALIASES = {"not started": "pending", "done": "completed", "success": "completed"}


class StatusRecord:
    """One worker's status. A plain class: the runner imports this in every pane,
    and ``dataclasses`` (with ``inspect``) would double its start-up time."""

    __slots__ = (
        "branch",
        "divergence",
        "duration_s",
        "exit_code",
        "finished",
        "name",
        "reason",
        "started",
        "state",
        "usage",
        "verify",
        "worktree",
    )

    def __init__(  # noqa: PLR0917 - mirrors the bullets, usually called by keyword
        self,
        name: str,
        state: str = "pending",
        started: str | None = None,
        finished: str | None = None,
        exit_code: int | None = None,
        duration_s: float | None = None,
        branch: str | None = None,
        worktree: str | None = None,
        reason: str | None = None,
        usage: dict[str, object] | None = None,
        divergence: str | None = None,
        verify: str | None = None,
    ) -> None:
        self.name = name
        self.state = state
        self.started = started
        self.finished = finished
        self.exit_code = exit_code
        self.duration_s = duration_s
        self.branch = branch
        self.worktree = worktree
        # Why a worker failed, in a few words ("timeout", "authentication failed").
        self.reason = reason
        # What the agent used (USAGE_BULLETS), as its CLI reported it.
        self.usage = usage
        # Where an offline replay parted from its recording ("turn 3: a tool result ...").
        self.divergence = divergence
        # The --verify check after the agent exited ("passed (exit 0, 1.2s): pytest -q").
        self.verify = verify

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StatusRecord):
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"StatusRecord({fields})"


# The usage keys (the bundle's ``usage`` object) as status bullets, and their types.
USAGE_BULLETS: tuple[tuple[str, str, type], ...] = (
    ("model", "Model", str),
    ("input_tokens", "Input tokens", int),
    ("output_tokens", "Output tokens", int),
    ("cache_read_tokens", "Cache read tokens", int),
    ("cache_write_tokens", "Cache write tokens", int),
    ("cost_usd", "Cost USD", float),
    ("turns", "Turns", int),
    ("agent_session_id", "Agent session", str),
    ("cli", "CLI", str),
)
USAGE_KEYS = tuple(key for key, _, _ in USAGE_BULLETS)
_USAGE_BY_BULLET = {bullet.lower(): (key, kind) for key, bullet, kind in USAGE_BULLETS}
_SHORT = re.compile(r"[A-Za-z0-9._:/@+ -]{1,200}")
_INT = re.compile(r"[0-9]{1,15}")
# What str.splitlines() (the parser) cuts a line at.
_LINE_BREAKS = re.compile("[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
_COST = re.compile(r"\d{1,9}(?:\.\d{1,12})?")


def _usage_value(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".") if value else "0"
    return str(value)


def render_status(record: StatusRecord) -> str:
    fields: list[tuple[str, str | None]] = [
        ("State", record.state),
        ("Started", record.started),
        ("Finished", record.finished),
        ("Exit code", None if record.exit_code is None else str(record.exit_code)),
        ("Duration", None if record.duration_s is None else f"{record.duration_s:.2f}s"),
        ("Reason", record.reason),
        ("Divergence", record.divergence),
        ("Verify", record.verify),
    ]
    usage = record.usage or {}
    fields += [(bullet, _usage_value(usage.get(key))) for key, bullet, _ in USAGE_BULLETS]
    fields += [
        ("Branch", f"`{record.branch}`" if record.branch else None),
        ("Worktree", f"`{record.worktree}`" if record.worktree else None),
    ]
    # One line each, whatever a CLI put in a reason or a model name: a newline would add
    # bullets of its own ("- State: completed") that the parser reads after ours.
    bullets = "".join(
        f"- {key}: {_LINE_BREAKS.sub(' ', value)}\n" for key, value in fields if value is not None
    )
    return f"# Status: {record.name}\n\n{bullets}"


def parse_status(text: str, default_name: str = "") -> StatusRecord:
    record = StatusRecord(name=default_name)
    for line in text.splitlines():
        if line.startswith("# Status:"):
            record.name = line[len("# Status:") :].strip() or default_name
            continue
        match = _BULLET.match(line)
        if not match:
            continue
        key, value = match.group(1).lower(), match.group(2).strip().strip("`")
        if key == "state":
            state = value.lower()
            record.state = _STATE_ALIASES.get(state, state)
        elif key == "started":
            record.started = value or None
        elif key == "finished":
            record.finished = value or None
        elif key == "exit code":
            code = int(value) if _EXIT_CODE.fullmatch(value) else None
            record.exit_code = code if code is not None and abs(code) < _MAX_EXIT_CODE else None
        elif key == "duration":
            number = value.rstrip("s")
            record.duration_s = float(number) if _DURATION.fullmatch(number) else None
        elif key == "reason":
            record.reason = value[:200] or None
        elif key == "divergence":
            record.divergence = value[:300] or None
        elif key == "verify":
            record.verify = value[:300] or None
        elif key in _USAGE_BY_BULLET:
            name, kind = _USAGE_BY_BULLET[key]
            parsed = _parse_usage(value, kind)
            if parsed is not None:
                record.usage = {**(record.usage or dict.fromkeys(USAGE_KEYS)), name: parsed}
        elif key == "branch":
            record.branch = value or None
        elif key == "worktree":
            record.worktree = value or None
    return record


def _parse_usage(value: str, kind: type) -> object:
    """A usage bullet's value, bounded like every number a status file may hold."""
    if kind is int:
        return int(value) if _INT.fullmatch(value) else None
    if kind is float:
        return float(value) if _COST.fullmatch(value) else None
    return value if _SHORT.fullmatch(value) else None
