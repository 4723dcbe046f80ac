"""Benchmark for ``kodelyth-ecc compare`` (issue 4).

Run with ``.venv/bin/python benchmarks/bench_compare.py [--quick]``. It prints a
table of figures, each with its target and PASS/FAIL; it is not a test.

Two bundles of N workers (8, and 64; ``--quick``: 8 only), each worker with a
~1 MiB handoff of markdown in the four required sections plus a few more, a
task.md, a status and a small patch. Two kinds of pair:

- *edited*: B is A with every 40th line reworded and one section rewritten, as
  two runs of the same agent look;
- *unrelated*: B's handoffs share no line with A's (the worst case for a line
  diff: it must fall back to a summary instead of going quadratic);
- *one-line*: each handoff's Summary is one line of 1 MiB, different in A and B
  (the case for the outputs' caps: the HTML stays a few MiB, not 2 MiB a worker).

Measured, as real CLI processes (median of a few runs; peak RSS from ``wait4``):
``compare A B`` (terminal), ``--json``, ``--full`` (section texts, changed lines,
unified diffs) and ``--html FILE``. The floor is reading both bundles with
``read_bundle_file`` in this process (validated, as compare does). Target for the
default compare: under 2x the floor plus 1 s; the other modes are shown against
the same budget for information.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchtable import Report, Row

from kodelyth_ecc import __version__
from kodelyth_ecc.bundle import read_bundle_file

HANDOFF_BYTES = 1024 * 1024
MIB = 1024 * 1024
WORDS = (
    "auth", "token", "refresh", "callback", "state", "session", "cookie", "header", "retry",
    "timeout", "ledger", "rounding", "basket", "currency", "idempotency", "provider", "request",
    "error", "handler", "test", "case", "fixture", "module", "review", "finding", "risk", "note",
    "path", "line", "function", "class", "change",
)  # fmt: skip
SECTIONS = (
    "Summary", "Files Changed", "Validation", "Remaining Risks", "Findings", "Notes",
)  # fmt: skip


def _line(rng: random.Random, tag: str) -> str:
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14)))
    return f"- {tag}{words} (`app/{rng.choice(WORDS)}.py:{rng.randint(1, 900)}`)"


def make_handoff(slug: str, seed: int, tag: str = "") -> list[str]:
    """About HANDOFF_BYTES of markdown: a title and the sections, as lines."""
    rng = random.Random(seed)
    lines = [f"# Handoff: {slug}", ""]
    per_section = HANDOFF_BYTES // len(SECTIONS)
    for title in SECTIONS:
        lines += [f"## {title}", ""]
        size = 0
        while size < per_section:
            line = _line(rng, tag)
            lines.append(line)
            size += len(line) + 1
        lines.append("")
    return lines


def edited(lines: list[str], seed: int) -> list[str]:
    """Every 40th line reworded and the Validation section rewritten."""
    rng = random.Random(seed)
    out = list(lines)
    for index in range(5, len(out), 40):
        if out[index].startswith("- "):
            out[index] = _line(rng, "edited ")
    start = out.index("## Validation") + 2
    stop = out.index("## Remaining Risks")
    out[start:stop] = [_line(rng, "rerun ") for _ in range(stop - start)]
    return out


def worker(slug: str, handoff: str, state: str = "completed") -> dict[str, object]:
    patch = (
        f"diff --git a/app/{slug}.py b/app/{slug}.py\n--- a/app/{slug}.py\n"
        f"+++ b/app/{slug}.py\n@@ -1,2 +1,2 @@\n-old = 1\n+new = 2\n context\n"
    )
    return {
        "slug": slug,
        "task": f"# Worker Task: {slug}\n\n## Objective\nreview the checkout flow\n\n"
        "## Completion\nReport results.\n",
        "handoff": handoff,
        "status": f"# Status: {slug}\n\n- State: {state}\n- Exit code: 0\n",
        "state": state,
        "exit_code": 0,
        "duration_s": 300.0,
        "diff": patch,
        "diffstat": f" app/{slug}.py | 2 +-\n 1 file changed, 1 insertion(+), 1 deletion(-)\n",
    }


def one_line_handoff(slug: str, seed: int) -> str:
    rng = random.Random(seed)
    words: list[str] = []
    size = 0
    while size < HANDOFF_BYTES:
        words.append(rng.choice(WORDS))
        size += len(words[-1]) + 1
    return f"# Handoff: {slug}\n\n## Summary\n{' '.join(words)}\n"


def write_pair(root: Path, workers: int, kind: str) -> tuple[Path, Path]:
    slugs = [f"agent-{n:02d}" for n in range(workers)]
    a_workers, b_workers = [], []
    for n, slug in enumerate(slugs):
        if kind == "one-line":
            a_workers.append(worker(slug, one_line_handoff(slug, n)))
            b_workers.append(worker(slug, one_line_handoff(slug, 5000 + n)))
            continue
        lines = make_handoff(slug, seed=n)
        a_workers.append(worker(slug, "\n".join(lines) + "\n"))
        other = (
            edited(lines, seed=1000 + n)
            if kind == "edited"
            else make_handoff(slug, seed=5000 + n, tag="other ")
        )
        b_workers.append(worker(slug, "\n".join(other) + "\n"))
    paths = []
    for name, items, harness in (("a", a_workers, "claude"), ("b", b_workers, "codex")):
        bundle = {
            "schema": "kodelyth.session-bundle/v1",
            "session": f"bench-{name}",
            "exported_at": "2026-11-26T00:00:00Z",
            "exported_by": f"kodelyth-ecc@{__version__}",
            "meta": {"task": "review the checkout flow", "harness": harness},
            "workers": items,
        }
        path = root / f"{kind}-{workers}-{name}.bundle.json"
        path.write_text(json.dumps(bundle, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        paths.append(path)
    return paths[0], paths[1]


def cli() -> list[str]:
    script = Path(sys.executable).parent / "kodelyth-ecc"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "kodelyth_ecc"]


def run_cli(args: Sequence[str], cwd: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one CLI run; it must exit 0."""
    start = time.monotonic()
    proc = subprocess.Popen(
        [*cli(), *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"bench_compare: `compare {' '.join(args)}` failed: {stderr[-600:]}")
    return seconds, usage.ru_maxrss * 1024


def read_floor(a: Path, b: Path, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        read_bundle_file(str(a), max_bytes=1 << 31)
        read_bundle_file(str(b), max_bytes=1 << 31)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(root: Path, workers: int, kind: str, reps: int, report: Report) -> None:
    a, b = write_pair(root, workers, kind)
    size = a.stat().st_size + b.stat().st_size
    floor = read_floor(a, b, reps)
    budget = 2 * floor + 1.0
    report.heading(
        f"{workers} workers, {kind} handoffs: bundles {size / MIB:.0f} MiB together, "
        f"median of {reps}"
    )
    report.add(
        Row("floor: read both bundles", floor, note="read_bundle_file, in process", indent=1)
    )
    report.add(Row("budget: 2x floor + 1 s", budget, indent=1))
    html = root / "report.html"
    big = ["--max-bundle-size", "2G"]
    for label, extra, targeted in (
        ("compare A B", [], True),
        ("compare --json", ["--json"], False),
        ("compare --full", ["--full"], False),
        ("compare --html FILE", ["--html", str(html)], False),
    ):
        runs = [run_cli(["compare", str(a), str(b), *big, *extra], root) for _ in range(reps)]
        seconds = statistics.median(r[0] for r in runs)
        peak = max(r[1] for r in runs)
        note = f"peak RSS {peak / MIB:.0f} MiB ({peak / size:.1f}x the bundles)"
        if extra[:1] == ["--html"]:
            note += f"; HTML {html.stat().st_size / MIB:.1f} MiB"
        report.add(
            Row(
                label,
                seconds,
                ratio=seconds / budget,
                target=1.0 if targeted else None,
                note=note if targeted else note + "; info",
                indent=1,
            )
        )
    for path in (a, b, html):
        path.unlink(missing_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="8 workers only, fewer runs")
    parser.add_argument("--reps", type=int, metavar="N", help="runs per measure (default 3)")
    parser.add_argument("--tmpdir", metavar="DIR", help="where the bundles go")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    reps = args.reps or (2 if args.quick else 3)
    sizes = [8] if args.quick else [8, 64]
    root = Path(tempfile.mkdtemp(prefix="kodelyth-bench-compare-", dir=args.tmpdir))
    report = Report(value_title="median")
    started = time.monotonic()
    try:
        for workers in sizes:
            for kind in ("edited", "unrelated", "one-line"):
                print(f"bench_compare: {workers} workers, {kind} ...", file=sys.stderr)
                bench(root, workers, kind, reps, report)
    except KeyboardInterrupt:
        print("bench_compare: interrupted", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"kodelyth-ecc {__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(report.render())
    print(f"\nfinished in {time.monotonic() - started:.0f}s")
    missed = report.missed
    if missed:
        print("\nmissed: " + "; ".join(r.label for r in missed))
    return 1 if missed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
