"""What the benchmark scripts share: the figures table they print (one row a
measure, with its ratio against a floor and the target it must meet), and
SIGTERM/SIGHUP handling so their temp trees are always removed."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import FrameType


@dataclass
class Row:
    label: str
    # Seconds (shown in milliseconds), or a value already formatted (a size, say).
    value: float | str | None = None
    note: str = ""
    ratio: float | None = None
    target: float | None = None
    indent: int = 0

    @property
    def passed(self) -> bool | None:
        if self.ratio is None or self.target is None:
            return None
        return self.ratio <= self.target


@dataclass
class Report:
    value_title: str = "median"
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def heading(self, text: str) -> None:
        self.rows.append(Row(text))

    def render(self) -> str:
        width = max(len("  " * r.indent + r.label) for r in self.rows) + 2
        head = (
            f"{'measure':<{width}}{self.value_title:>10}  {'ratio':>7}  {'target':>8}  result  note"
        )
        lines = [head, "-" * len(head)]
        for r in self.rows:
            label = "  " * r.indent + r.label
            if r.value in (None, "") and r.ratio is None and not r.note:
                lines.append(label)
                continue
            value = f"{r.value * 1000:8.1f}ms" if isinstance(r.value, float) else r.value or ""
            ratio = f"{r.ratio:6.2f}x" if r.ratio is not None else ""
            target = f"<={r.target:.1f}x" if r.target is not None else ""
            verdict = {True: "PASS", False: "FAIL", None: ""}[r.passed]
            line = f"{label:<{width}}{value:>10}  {ratio:>7}  {target:>8}  {verdict:<6}  {r.note}"
            lines.append(line.rstrip())
        return "\n".join(lines)

    @property
    def missed(self) -> list[Row]:
        return [r for r in self.rows if r.passed is False]


@contextlib.contextmanager
def terminate_gracefully() -> Iterator[None]:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so the sandbox is cleaned up."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
