"""Benchmarks for ``kodelyth-ecc session-export`` / ``session-import`` (issue 3).

Run with ``.venv/bin/python benchmarks/bench_bundle.py [--quick]``. It prints a
table of figures, each with its target and PASS/FAIL; it is not a test.

For sessions of N = 8, 64 and 512 workers (``--quick``: 8 and 64), each worker
directory holding a ~2 KB ``task.md``, a 1 MiB ``handoff.md`` of markdown with
some non-ASCII text and a ``status.md`` in our format, next to a ``session.json``
as ``swarm`` writes it (so export takes the meta path; the worktrees it names are
gone, as after a teardown), it measures:

(a) Time: ``kodelyth-ecc session-export`` and ``session-import`` run as real CLI
    processes, median of a few runs, against the floor ``cp -r`` of the same bytes:
    the session directory for export, the restored directory for import. Target:
    at most 3x the floor. Each command and its floor run alternately, on a warm
    page cache, with ``sync`` between runs so no run pays for another's writeback.

(b) Memory: the peak RSS of each CLI process (``ru_maxrss`` from ``os.wait4``),
    against the bundle's size. Target: at most 3x the bundle size.

(c) Growth: time per MB and peak memory per MB from 8 to 64 to 512 workers.

When a target is missed (or with ``--diagnose``) it runs both commands once more
with timing and memory instrumentation around their stages (file reads, msgspec
encode / format / decode, validation, sha256, writes) and prints where time and
memory go.

Isolation: everything lives in one temp tree (``--tmpdir``), the commands get a
private HOME and bytecode cache and no ``GIT_*``/``KODELYTH_*`` variables from the
caller; the tree is removed at exit, including on Ctrl-C, SIGTERM and SIGHUP.
"""

from __future__ import annotations

import argparse
import contextlib
import filecmp
import itertools
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchtable import (
    BenchError,
    Report,
    Row,
    print_machine,
    print_missed,
    print_report,
    progress,
    run_in_sandbox,
    versions,
)

from kodelyth_ecc import __version__
from kodelyth_ecc.coordination import SessionRecord, WorkerRecord, write_session_record
from kodelyth_ecc.prompts import agent_prompt, initial_handoff_md, worker_task_md
from kodelyth_ecc.statusfile import StatusRecord, render_status

TIME_TARGET = 3.0
MEMORY_TARGET = 3.0
HANDOFF_BYTES = 1024 * 1024
DEFAULT_MAX_BUNDLE = 256 * 1024 * 1024
MIB = 1024 * 1024
RUN_TIMEOUT_S = 600.0
BASE_COMMIT = "3f2c9a41d8e07b5c6a1f9e2d4b8c7a6e5f4d3c2b"
SHARED_TASK = (
    "Review the checkout flow end to end and tighten its error handling. Payment "
    "provider timeouts must surface as a retryable error with the provider's request "
    "id, never as a generic 500; card declines keep the user's basket; currency "
    "rounding follows the ledger's banker's rounding; the idempotency key survives a "
    "page reload. Add regression tests for each case you touch, keep the public API "
    "unchanged, and note in the handoff anything you found but did not fix, with the "
    "file and line. Coordinate through the handoff only: do not edit files another "
    "specialist owns (see the plan), and prefer small reviewable commits."
)

# Runs the real CLI entry point with timing and memory probes around its stages.
# Stages nest (a table in ``STAGE_PARENTS`` says how); a stage's peak is the
# highest VmHWM seen while it was open: VmHWM is reset (/proc/self/clear_refs
# "5") when a stage opens, after folding the old value into every open stage.
DIAGNOSE_WRAPPER = """\
import atexit, json, os, runpy, sys, time
_T0 = time.perf_counter()
import msgspec
import kodelyth_ecc.bundle as _b
import kodelyth_ecc.bundleformat as _bf
import kodelyth_ecc.export as _e
import kodelyth_ecc.rawbundle as _rb
import kodelyth_ecc.importer as _i
import kodelyth_ecc.main as _m
import kodelyth_ecc.commands.session_export as _se
import kodelyth_ecc.commands.session_import as _si
_IMPORTED = time.perf_counter()
_stages = {}
_open = []
_info = {}

def _mem():
    found = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                found[key] = int(value.split()[0]) * 1024
    return found["VmRSS"], found["VmHWM"]

def _fold():
    rss, hwm = _mem()
    for stage in _open:
        stage["peak"] = max(stage["peak"], hwm)
    return rss

def _reset():
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass

def _wrap(name, fn, after=None):
    def inner(*args, **kwargs):
        probe = time.perf_counter()
        rss = _fold()
        stage = _stages.setdefault(
            name, {"seconds": 0.0, "calls": 0, "peak": 0, "rss_before": rss, "rss_after": 0}
        )
        _reset()
        _open.append(stage)
        start = time.perf_counter()
        try:
            result = fn(*args, **kwargs)
        finally:
            end = time.perf_counter()
            stage["seconds"] += end - start
            stage["calls"] += 1
            stage["rss_after"] = _fold()
            _open.pop()
            _unprobe(start - probe + time.perf_counter() - end)
        if after is not None:
            probe = time.perf_counter()
            after(result)
            _unprobe(time.perf_counter() - probe)
        return result
    return inner

def _unprobe(spent):
    # Probing is not the command's time: take it out of every open stage.
    for outer in _open:
        outer["seconds"] -= spent
    _info["probe_seconds"] = _info.get("probe_seconds", 0.0) + spent

class _Proxy:
    pass

def _strings(workers):
    texts = [t for w in workers for t in (w.task, w.handoff, w.status) if t]
    _info["python_str_bytes"] = sum(sys.getsizeof(t) for t in texts)
    _info["utf8_bytes"] = sum(len(t.encode("utf-8")) for t in texts)
    kinds = {}
    for t in texts:
        # Bytes per character as CPython stores the str (PEP 393): 1, 2 or 4.
        width = 1 if t.isascii() else max(1, round((sys.getsizeof(t) - 80) / len(t)))
        kind = {1: "ascii/latin-1", 2: "ucs2", 4: "ucs4"}.get(width, str(width))
        kinds[kind] = kinds.get(kind, 0) + 1
    _info["str_kinds"] = kinds

def _bundle_strings(bundle):
    _strings(bundle.workers)

_missing = []

def _patch(owner, attr, name, after=None):
    # src/ changes under this script: a probe whose target is gone is skipped and listed.
    fn = getattr(owner, attr, None)
    if fn is None:
        _missing.append(f"{getattr(owner, '__name__', owner)}.{attr}")
        return
    setattr(owner, attr, _wrap(name, fn, after))

def _patch_coder(module, attr, method, name, after=None):
    inner = getattr(module, attr, None)
    if inner is None or not hasattr(inner, method):
        _missing.append(f"{module.__name__}.{attr}")
        return
    proxy = _Proxy()
    setattr(proxy, method, _wrap(name, getattr(inner, method), after))
    setattr(module, attr, proxy)

# session-export (streamed, msgspec-free)
_patch(_m, "main", "main")
_patch(_se, "export_to_stream", "export_to_stream")
_patch(_e, "read_session_record", "read session.json")
_patch(_e, "_read_bytes", "read files")
_patch(_bf, "is_utf8", "UTF-8 check")
_patch(_e, "parse_status", "parse status.md")
_patch(_bf, "_escaped", "escape")
# session-import (raw texts)
_patch(_si, "read_raw_bundle", "read_raw_bundle")
_patch(_rb, "_map", "map the file")
_patch_coder(_rb, "_DECODER", "decode", "msgspec decode")
_patch(_rb, "is_utf8", "UTF-8 check")
_patch(_si, "import_bundle", "import_bundle")
_patch(_rb, "text_bytes", "unescape")
_patch(_i, "_write_new", "write files")
_patch(_i, "write_session_record", "write session.json")
# Fallbacks, seen only when a bundle leaves the fast path
_patch(_b, "decode_bundle", "decode_bundle (fallback)", _bundle_strings)

def _dump():
    with open(os.environ["KBENCH_STAGES"], "w") as fh:
        json.dump(
            {"imports": _IMPORTED - _T0, "stages": _stages, "info": _info, "missing": _missing},
            fh,
        )

atexit.register(_dump)
sys.argv[0] = "kodelyth-ecc"
runpy.run_module("kodelyth_ecc", run_name="__main__", alter_sys=True)
"""

# How the stages above nest, for display: stage -> enclosing stage.
STAGE_PARENTS = {
    "export_to_stream": "main",
    "read session.json": "export_to_stream",
    "read files": "export_to_stream",
    "UTF-8 check": "export_to_stream",
    "parse status.md": "export_to_stream",
    "escape": "export_to_stream",
    "read_raw_bundle": "main",
    "map the file": "read_raw_bundle",
    "msgspec decode": "read_raw_bundle",
    "decode_bundle (fallback)": "read_raw_bundle",
    "import_bundle": "main",
    "unescape": "import_bundle",
    "write files": "import_bundle",
    "write session.json": "import_bundle",
}
# In import, the UTF-8 check belongs to reading the bundle.
IMPORT_OVERRIDES = {"UTF-8 check": "read_raw_bundle"}


# --------------------------------------------------------------------------- sandbox


class Sandbox:
    """One temp tree and a clean environment; everything goes away in ``close``."""

    def __init__(self, keep: bool = False, tmpdir: str | None = None) -> None:
        self.keep = keep
        self.root = Path(tempfile.mkdtemp(prefix="kodelyth-bench-bundle-", dir=tmpdir))
        self.home = self.root / "home"
        self.home.mkdir()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("GIT_", "KODELYTH_"))
            and k not in ("BASH_ENV", "ENV", "PYTHONDONTWRITEBYTECODE", "SOURCE_DATE_EPOCH")
        }
        env.update(
            HOME=str(self.home),
            LC_ALL="C.UTF-8",
            GIT_CONFIG_NOSYSTEM="1",
            PYTHONPYCACHEPREFIX=str(self.root / "pycache"),
        )
        self.env = env
        self.procs: list[subprocess.Popen[bytes]] = []

    def close(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        for proc in self.procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired, ChildProcessError):
                    proc.wait(timeout=5)
        if self.keep:
            print(f"kept {self.root}", file=sys.stderr)
            return
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Measured:
    seconds: float  # wall
    max_rss: int  # bytes
    cpu: float = 0.0  # user + system seconds
    faults: int = 0  # minor page faults: each a fresh page the kernel had to zero


def measure(
    argv: Sequence[str], sandbox: Sandbox, *, cwd: Path, env: dict[str, str] | None = None
) -> Measured:
    """Run ``argv`` to completion: wall time, and from ``os.wait4`` the child's peak RSS,
    CPU time and page faults."""
    with tempfile.TemporaryFile(dir=sandbox.root) as err:
        start = time.monotonic()
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env or sandbox.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
        sandbox.procs.append(proc)
        # A hung command must not hang the benchmark: kill its group after the timeout.
        watchdog = threading.Timer(RUN_TIMEOUT_S, os.killpg, (proc.pid, signal.SIGKILL))
        watchdog.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            watchdog.cancel()
        seconds = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        sandbox.procs.remove(proc)
        if proc.returncode != 0:
            err.seek(0)
            message = err.read().decode(errors="replace").strip()[-800:]
            raise BenchError(
                f"`{' '.join(argv[:4])} ...` failed (exit {proc.returncode}): {message}"
            )
    # Linux reports ru_maxrss in KiB.
    return Measured(
        seconds, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime, usage.ru_minflt
    )


def cli() -> list[str]:
    """The installed console script, as users run it (else ``python -m``)."""
    script = Path(sys.executable).parent / "kodelyth-ecc"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "kodelyth_ecc"]


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def settle() -> None:
    """Flush dirty pages so the next measured run does not pay for this one's writeback."""
    os.sync()


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- data


_WORDS = (
    "checkout", "basket", "payment", "provider", "timeout", "retry", "idempotency", "ledger",
    "rounding", "currency", "refund", "webhook", "signature", "session", "token", "cache",
    "invalidation", "handler", "middleware", "request", "response", "schema", "migration",
    "index", "query", "transaction", "rollback", "lock", "contention", "latency", "regression",
    "fixture", "assertion", "coverage", "flaky", "deterministic", "boundary", "overflow",
    "decimal", "serializer", "validator", "endpoint", "router", "controller", "service",
    "repository", "adapter", "queue",
)  # fmt: skip
# Some non-ASCII, as agents write it: typography, accents, arrows, ticks, a little
# CJK, Greek and Cyrillic (all in the BMP; --astral adds emoji beyond it).
_NON_ASCII = (
    "naïve", "café", "Müller", "Größe", "façade", "résumé", "→", "—", "…", "✓", "✅", "❌",
    "⚠️", "«ok»", "±0.5 €", "日本語のテスト", "Ελληνικά", "Привет", "São Paulo", "Zürich",
)  # fmt: skip
_ASTRAL = ("🚀", "🎉", "🐛", "🔥", "𝛼", "😀")


def _sentence(rng: random.Random, astral: bool) -> str:
    words = rng.choices(_WORDS, k=rng.randint(8, 18))
    if rng.random() < 0.25:
        words.insert(rng.randrange(len(words)), rng.choice(_NON_ASCII))
    if astral and rng.random() < 0.05:
        words.insert(rng.randrange(len(words)), rng.choice(_ASTRAL))
    return " ".join(words).capitalize() + "."


def _block(rng: random.Random, index: int, astral: bool) -> str:
    """One markdown block: prose, a list, code (quotes, backslashes, tabs) or a table."""
    kind = rng.random()
    if kind < 0.45:
        return " ".join(_sentence(rng, astral) for _ in range(rng.randint(2, 6))) + "\n"
    if kind < 0.7:
        items = []
        for _ in range(rng.randint(3, 7)):
            path = f"src/app/{rng.choice(_WORDS)}/{rng.choice(_WORDS)}.py"
            items.append(f"- `{path}:{rng.randint(1, 900)}` — {_sentence(rng, astral)}")
        return "\n".join(items) + "\n"
    if kind < 0.85:
        name = rng.choice(_WORDS)
        return (
            "```python\n"
            f"def handle_{name}_{index}(request: Request) -> Response:\n"
            f'    """Handle {name}; see the runbook \\u2192 «{name}»."""\n'
            f"    pattern = re.compile(r\"^(?P<id>[\\w-]+)\\\\s*=\\\\s*'(.*?)'$\")\n"
            f'    if not pattern.match(request.headers.get("X-{name.title()}", "")):\n'
            f'        raise ValidationError(f"bad {name}: {{request.path!r}}\\n")\n'
            f"    return Response(status={rng.choice((200, 201, 202, 409, 422))})\n"
            "```\n"
        )
    if kind < 0.93:
        rows = [
            f"| {rng.choice(_WORDS)} | {rng.randint(0, 9999)} ms "
            f"| {rng.choice(('✓', '✗', 'n/a'))} |"
            for _ in range(rng.randint(3, 8))
        ]
        return "| case | p95 | ok |\n| --- | ---: | :---: |\n" + "\n".join(rows) + "\n"
    return f"```make\ntest-{index}:\n\tpytest -q tests/test_{rng.choice(_WORDS)}.py\n```\n"


def handoff_text(name: str, rng: random.Random, size: int, astral: bool) -> bytes:
    """About ``size`` bytes of UTF-8 markdown, cut at a character boundary."""
    parts = [f"# Handoff: {name}\n\n## Summary\n"]
    total = len(parts[0])
    sections = ("Files Changed", "Validation", "Remaining Risks", "Notes")
    index = 0
    while total < size:
        if index and index % 400 == 0:
            part = f"\n## {sections[(index // 400) % len(sections)]} ({index // 400})\n"
        else:
            part = "\n" + _block(rng, index, astral)
        parts.append(part)
        total += len(part.encode("utf-8"))
        index += 1
    data = "".join(parts).encode("utf-8")[: size - 1]
    return data.decode("utf-8", errors="ignore").encode("utf-8") + b"\n"


def make_session(coord_root: Path, session: str, workers: int, astral: bool) -> Path:
    """A coordination dir as ``swarm`` leaves it after the workers finished and the
    worktrees were torn down: session.json plus one directory per worker."""
    session_dir = coord_root / session
    session_dir.mkdir(parents=True)
    repo_root = str(coord_root.parent / "repo")
    worktree_root = str(coord_root.parent / "worktrees")
    agents = [f"agent-{index:03d}" for index in range(workers)]
    records = []
    rng = random.Random(f"{session}-{workers}")
    for index, slug in enumerate(agents):
        worker_dir = session_dir / slug
        worker_dir.mkdir()
        branch = f"orchestrator-{session}-{slug}"
        worktree = f"{worktree_root}/{session}-{slug}"
        task = worker_task_md(
            worker_name=slug,
            session_name=session,
            repo_root=repo_root,
            worktree_path=worktree,
            branch_name=branch,
            status_file=str(worker_dir / "status.md"),
            handoff_file=str(worker_dir / "handoff.md"),
            objective=agent_prompt(slug, SHARED_TASK),
        )
        (worker_dir / "task.md").write_text(task, encoding="utf-8")
        (worker_dir / "handoff.md").write_bytes(handoff_text(slug, rng, HANDOFF_BYTES, astral))
        started = f"2026-05-09T10:{index % 60:02d}:00Z"
        status = StatusRecord(
            name=slug,
            state="completed",
            started=started,
            finished=f"2026-05-09T11:{index % 60:02d}:30Z",
            exit_code=0,
            duration_s=3630.0 + index,
            branch=branch,
            worktree=worktree,
        )
        (worker_dir / "status.md").write_text(render_status(status), encoding="utf-8")
        records.append(
            WorkerRecord(
                name=slug,
                slug=slug,
                branch=branch,
                worktree=worktree,
                launch_command=f"claude -p \"$(cat '{worker_dir / 'task.md'}')\"",
            )
        )
    record = SessionRecord(
        session=session,
        repo_root=repo_root,
        worktree_root=worktree_root,
        coordination_root=str(coord_root),
        task=SHARED_TASK,
        agents=agents,
        harness="claude",
        launcher="",
        base_ref="main",
        seed_paths=[],
        workers=records,
        base_commit=BASE_COMMIT,
        mode="execute",
        tmux_session=f"kodelyth-{session}",
    )
    write_session_record(str(session_dir), record)
    return session_dir


def make_tiny_session(coord_root: Path, session: str) -> None:
    """One worker with the files ``swarm`` starts it with: the commands' fixed cost."""
    worker_dir = coord_root / session / "solo"
    worker_dir.mkdir(parents=True)
    (worker_dir / "task.md").write_text("# Worker Task: solo\n", encoding="utf-8")
    (worker_dir / "handoff.md").write_text(initial_handoff_md("solo"), encoding="utf-8")
    (worker_dir / "status.md").write_text(render_status(StatusRecord("solo")), encoding="utf-8")


# --------------------------------------------------------------------------- report


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}ms" if seconds < 10 else f"{seconds:.2f}s"


def mb(size: float) -> str:
    return f"{size / MIB:.1f}MiB"


# --------------------------------------------------------------------------- benchmark


@dataclass
class SizeResult:
    workers: int
    session_bytes: int
    bundle_bytes: int
    restored_bytes: int
    export: Measured
    export_floor: Measured
    import_: Measured
    import_floor: Measured
    reps: int
    diagnosis: list[str] = field(default_factory=list)


def median_measured(values: Sequence[Measured]) -> Measured:
    """Median time, CPU and faults; the highest peak (a target is about the worst run)."""
    return Measured(
        statistics.median(v.seconds for v in values),
        max(v.max_rss for v in values),
        statistics.median(v.cpu for v in values),
        int(statistics.median(v.faults for v in values)),
    )


def size_flag(bundle_bytes: int) -> list[str]:
    """``--max-bundle-size`` only when the default cap (256 MiB) is too small."""
    if bundle_bytes <= DEFAULT_MAX_BUNDLE:
        return []
    return ["--max-bundle-size", f"{-(-bundle_bytes // 1024**3)}G"]


def verify_restored(source: Path, restored: Path, workers: int) -> None:
    slugs = sorted(p.name for p in source.iterdir() if p.is_dir())
    got = sorted(p.name for p in restored.iterdir() if p.is_dir())
    if got != slugs or len(slugs) != workers:
        raise BenchError(f"restored {len(got)} workers, expected {workers}")
    for slug in slugs:
        for name in ("task.md", "handoff.md", "status.md"):
            if not filecmp.cmp(source / slug / name, restored / slug / name, shallow=False):
                raise BenchError(f"{slug}/{name} differs after export + import")


def bench_fixed_cost(sandbox: Sandbox, runs: int) -> tuple[Measured, Measured]:
    """Export and import of a 1-worker session of small files: interpreter, imports
    and the command's fixed work. Its RSS is the floor under every peak below."""
    base = sandbox.root / "tiny"
    coord = base / "coord"
    make_tiny_session(coord, "tiny")
    bundle = base / "tiny.bundle.json"
    target = base / "restored"
    export_argv = [*cli(), "session-export", "tiny", "--coord-root", str(coord)]
    export_argv += ["--out", str(bundle)]
    import_argv = [*cli(), "session-import", str(bundle), "--target", str(target)]
    exports: list[Measured] = []
    imports: list[Measured] = []
    for rep in range(runs + 1):
        exported = measure(export_argv, sandbox, cwd=base)
        imported = measure(import_argv, sandbox, cwd=base)
        remove(target)
        if rep:  # the first run warms the bytecode cache
            exports.append(exported)
            imports.append(imported)
    shutil.rmtree(base)
    return median_measured(exports), median_measured(imports)


def missed_targets(result: SizeResult) -> bool:
    return (
        max(
            result.export.seconds / result.export_floor.seconds,
            result.import_.seconds / result.import_floor.seconds,
        )
        > TIME_TARGET
        or max(result.export.max_rss, result.import_.max_rss) > MEMORY_TARGET * result.bundle_bytes
    )


def bench_size(
    workers: int, sandbox: Sandbox, reps: int, astral: bool, diagnose: bool
) -> SizeResult:
    base = sandbox.root / f"n{workers}"
    coord = base / "coord"
    session = f"bench-{workers}"
    progress(f"{workers} workers: generating the session ...")
    start = time.monotonic()
    source = make_session(coord, session, workers, astral)
    session_bytes = tree_bytes(source)
    progress(f"  {mb(session_bytes)} in {time.monotonic() - start:.1f}s")

    bundle = base / "reference.bundle.json"  # what import reads, made once
    restored_ref = base / "reference-restored"  # what import's floor copies
    out = base / "out.bundle.json"
    target = base / "restored"
    copy = base / "copy"

    def export_argv(path: Path) -> list[str]:
        return [*cli(), "session-export", session, "--coord-root", str(coord), "--out", str(path)]

    def import_argv(into: Path) -> list[str]:
        argv = [*cli(), "session-import", str(bundle), "--target", str(into)]
        return argv + size_flag(bundle.stat().st_size)

    # Unmeasured: make the reference bundle and restored dir and check them.
    measure(export_argv(bundle), sandbox, cwd=base)
    bundle_bytes = bundle.stat().st_size
    measure(import_argv(restored_ref), sandbox, cwd=base)
    verify_restored(source, restored_ref, workers)
    restored_bytes = tree_bytes(restored_ref)
    progress(f"  bundle {mb(bundle_bytes)}, restored {mb(restored_bytes)}; verified")

    exports: list[Measured] = []
    export_floors: list[Measured] = []
    imports: list[Measured] = []
    import_floors: list[Measured] = []

    def step(action: Callable[[], Measured], into: list[Measured], cleanup: Path) -> None:
        into.append(action())
        remove(cleanup)
        settle()

    steps: list[Callable[[], None]] = [
        lambda: step(
            lambda: measure(["cp", "-r", str(source), str(copy)], sandbox, cwd=base),
            export_floors,
            copy,
        ),
        lambda: step(lambda: measure(export_argv(out), sandbox, cwd=base), exports, out),
        lambda: step(
            lambda: measure(["cp", "-r", str(restored_ref), str(copy)], sandbox, cwd=base),
            import_floors,
            copy,
        ),
        lambda: step(lambda: measure(import_argv(target), sandbox, cwd=base), imports, target),
    ]
    settle()
    # One unmeasured round warms the page cache for every path involved.
    for action in steps:
        action()
    exports.clear()
    export_floors.clear()
    imports.clear()
    import_floors.clear()
    for rep in range(reps):
        progress(f"  {workers} workers: run {rep + 1}/{reps}")
        # Alternate which of each pair goes first.
        order = steps if rep % 2 == 0 else [steps[1], steps[0], steps[3], steps[2]]
        for action in order:
            action()

    result = SizeResult(
        workers=workers,
        session_bytes=session_bytes,
        bundle_bytes=bundle_bytes,
        restored_bytes=restored_bytes,
        export=median_measured(exports),
        export_floor=median_measured(export_floors),
        import_=median_measured(imports),
        import_floor=median_measured(import_floors),
        reps=reps,
    )
    if diagnose or missed_targets(result):
        progress(f"  {workers} workers: instrumented runs ...")
        result.diagnosis = diagnose_size(
            sandbox, base, export_argv(out), import_argv(target), result
        )
    shutil.rmtree(base)
    settle()
    return result


@dataclass
class Stage:
    seconds: float
    calls: int
    peak: int
    rss_before: int
    rss_after: int


@dataclass
class Staged:
    measured: Measured
    imports: float
    stages: dict[str, Stage]
    info: dict[str, object]
    missing: list[str]


def staged_run(argv: Sequence[str], sandbox: Sandbox, cwd: Path) -> Staged:
    """The command once more, through ``DIAGNOSE_WRAPPER`` (same interpreter and CLI)."""
    stages_path = sandbox.root / "stages.json"
    env = {**sandbox.env, "KBENCH_STAGES": str(stages_path)}
    wrapped = [sys.executable, "-c", DIAGNOSE_WRAPPER, *argv[len(cli()) :]]
    measured = measure(wrapped, sandbox, cwd=cwd, env=env)
    data = json.loads(stages_path.read_text())
    stages_path.unlink()
    return Staged(
        measured=measured,
        imports=float(data["imports"]),
        stages={name: Stage(**values) for name, values in data["stages"].items()},
        info=dict(data["info"]),
        missing=[str(m) for m in data.get("missing", [])],
    )


def render_stages(title: str, run: Staged, bundle_bytes: int, importing: bool) -> list[str]:
    stages = run.stages
    parents = {**STAGE_PARENTS, **(IMPORT_OVERRIDES if importing else {})}
    measured = run.measured
    # Resetting VmHWM also resets what wait4 reports: the peak is the stages' highest.
    peak = max([measured.max_rss, *(s.peak for s in stages.values())])
    probing = run.info.get("probe_seconds")
    probe_s = probing if isinstance(probing, float) else 0.0
    lines = [
        f"  {title}: {ms(measured.seconds - probe_s)} wall without the probes' "
        f"{ms(probe_s)}, peak RSS {mb(peak)} ({peak / bundle_bytes:.2f}x the bundle), "
        f"CPU {ms(measured.cpu)}, {measured.faults:,} page faults",
        f"    {'stage (inclusive)':<36}{'time':>10}{'calls':>7}{'RSS before':>12}"
        f"{'peak':>11}{'RSS after':>11}",
    ]
    main_s = stages["main"].seconds if "main" in stages else 0.0
    lines.append(
        f"    {'start-up, exit':<36}{ms(measured.seconds - probe_s - main_s):>10}"
        f"         (interpreter, imports ({ms(run.imports)}), freeing at exit)"
    )

    def depth(name: str) -> int:
        level = 0
        while name in parents:
            name = parents[name]
            level += 1
        return level

    def emit(name: str) -> None:
        stage = stages[name]
        label = "  " * depth(name) + name
        lines.append(
            f"    {label:<36}{ms(stage.seconds):>10}{stage.calls:>7}"
            f"{mb(stage.rss_before):>12}{mb(stage.peak):>11}{mb(stage.rss_after):>11}"
        )
        kids = [s for s in stages if s != "main" and parents.get(s) == name]
        for kid in kids:
            emit(kid)
        if kids:
            rest = stage.seconds - sum(stages[k].seconds for k in kids)
            lines.append(f"    {'  ' * (depth(name) + 1) + '(rest)':<36}{ms(rest):>10}")

    if "main" in stages:
        emit("main")
    info = run.info
    utf8 = info.get("utf8_bytes")
    held = info.get("python_str_bytes")
    if isinstance(utf8, int) and isinstance(held, int) and utf8:
        lines.append(
            f"    worker texts: {mb(utf8)} as UTF-8, {mb(held)} as Python str "
            f"({held / utf8:.2f}x; str kinds {info.get('str_kinds')})"
        )
    if run.missing:
        lines.append(f"    not probed (no longer in src/): {', '.join(run.missing)}")
    return lines


def diagnose_size(
    sandbox: Sandbox,
    base: Path,
    export_argv: Sequence[str],
    import_argv: Sequence[str],
    result: SizeResult,
) -> list[str]:
    out = Path(export_argv[export_argv.index("--out") + 1])
    target = Path(import_argv[import_argv.index("--target") + 1])
    remove(out)
    settle()
    exported = staged_run(export_argv, sandbox, base)
    settle()
    imported = staged_run(import_argv, sandbox, base)
    lines = [f"where the time and memory go, {result.workers} workers (one instrumented run each)"]
    lines += render_stages("session-export", exported, result.bundle_bytes, importing=False)
    lines += render_stages("session-import", imported, result.bundle_bytes, importing=True)
    remove(target)
    lines.append(
        f"  floors: cp -r session dir {ms(result.export_floor.seconds)} "
        f"(CPU {ms(result.export_floor.cpu)}), cp -r restored dir "
        f"{ms(result.import_floor.seconds)} (CPU {ms(result.import_floor.cpu)})"
    )
    if platform.libc_ver()[0] == "glibc":
        lines += malloc_comparison(sandbox, base, export_argv, import_argv, result)
    return lines


# glibc returns freed blocks above the mmap threshold (and a heap top above the trim
# threshold) to the kernel at once, so every large str/bytes the commands allocate
# gets fresh pages, each zeroed on first touch. These settings keep freed memory.
NO_TRIM = "glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=4294967295"


def malloc_comparison(
    sandbox: Sandbox,
    base: Path,
    export_argv: Sequence[str],
    import_argv: Sequence[str],
    result: SizeResult,
) -> list[str]:
    """The same commands with glibc keeping freed memory: how much is page-fault cost."""
    out = Path(export_argv[export_argv.index("--out") + 1])
    target = Path(import_argv[import_argv.index("--target") + 1])
    env = {**sandbox.env, "GLIBC_TUNABLES": NO_TRIM}
    lines = ["  page-fault cost: the same commands with GLIBC_TUNABLES=" + NO_TRIM]
    for label, argv, cleanup, usual in (
        ("session-export", export_argv, out, result.export),
        ("session-import", import_argv, target, result.import_),
    ):
        runs = []
        for _ in range(max(1, min(2, result.reps))):
            remove(cleanup)
            settle()
            runs.append(measure(argv, sandbox, cwd=base, env=env))
        remove(cleanup)
        tuned = median_measured(runs)
        lines.append(
            f"    {label}: {ms(tuned.seconds)} wall, CPU {ms(tuned.cpu)}, "
            f"{tuned.faults:,} page faults, peak {mb(tuned.max_rss)} "
            f"(as shipped: {ms(usual.seconds)}, CPU {ms(usual.cpu)}, "
            f"{usual.faults:,} faults, peak {mb(usual.max_rss)})"
        )
    settle()
    return lines


def report_size(result: SizeResult, fixed: tuple[Measured, Measured], report: Report) -> None:
    bundle = result.bundle_bytes
    report.heading(
        f"{result.workers} workers: session {mb(result.session_bytes)}, bundle {mb(bundle)}, "
        f"median of {result.reps}"
    )
    for label, tool, floor, floor_label, fixed_cost in (
        ("session-export", result.export, result.export_floor, "cp -r session dir", fixed[0]),
        ("session-import", result.import_, result.import_floor, "cp -r restored dir", fixed[1]),
    ):
        report.add(Row(f"floor: {floor_label}", ms(floor.seconds), indent=1))
        report.add(
            Row(
                f"{label} time",
                ms(tool.seconds),
                ratio=tool.seconds / floor.seconds,
                target=TIME_TARGET,
                note=f"{result.session_bytes / MIB / tool.seconds:.0f} MiB/s; CPU "
                f"{ms(tool.cpu)} vs {ms(floor.cpu)}; {tool.faults:,} page faults",
                indent=1,
            )
        )
        without = max(tool.seconds - fixed_cost.seconds, 0.0)
        report.add(
            Row(
                "without the fixed cost (1-worker run)",
                ms(without),
                ratio=without / floor.seconds,
                note="info",
                indent=2,
            )
        )
        report.add(
            Row(
                f"{label} peak RSS",
                mb(tool.max_rss),
                ratio=tool.max_rss / bundle,
                target=MEMORY_TARGET,
                note=f"x bundle size; highest of {result.reps} runs",
                indent=1,
            )
        )
        report.add(
            Row(
                "above the 1-worker run's RSS",
                mb(tool.max_rss - fixed_cost.max_rss),
                ratio=(tool.max_rss - fixed_cost.max_rss) / bundle,
                note="info",
                indent=2,
            )
        )


def growth_lines(results: Sequence[SizeResult]) -> list[str]:
    lines = [
        "growth (per MiB of session; memory per MiB of bundle)",
        f"  {'workers':>7}{'bundle':>11}{'export ms/MiB':>15}{'import ms/MiB':>15}"
        f"{'cp ms/MiB':>11}{'export RSS/MiB':>16}{'import RSS/MiB':>16}",
    ]

    def per_mib(r: SizeResult) -> tuple[float, float, float, float, float]:
        session = r.session_bytes / MIB
        return (
            r.export.seconds * 1000 / session,
            r.import_.seconds * 1000 / session,
            r.export_floor.seconds * 1000 / session,
            r.export.max_rss / r.bundle_bytes,
            r.import_.max_rss / r.bundle_bytes,
        )

    for r in results:
        e, i, c, em, im = per_mib(r)
        lines.append(
            f"  {r.workers:>7}{mb(r.bundle_bytes):>11}{e:>15.2f}{i:>15.2f}{c:>11.2f}"
            f"{em:>16.2f}{im:>16.2f}"
        )
    for before, after in itertools.pairwise(results):
        b, a = per_mib(before), per_mib(after)
        lines.append(
            f"  {before.workers} -> {after.workers} workers ({after.workers / before.workers:g}x "
            f"the data): time/MiB export x{a[0] / b[0]:.2f}, import x{a[1] / b[1]:.2f}, "
            f"cp x{a[2] / b[2]:.2f}; RSS/MiB export x{a[3] / b[3]:.2f}, import x{a[4] / b[4]:.2f}"
        )
    lines.append("  (x1.00 = linear growth; below 1 the fixed cost is being amortised)")
    return lines


# --------------------------------------------------------------------------- main


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected e.g. 8,64,512") from None
    if not sizes or any(n <= 0 for n in sizes):
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive worker counts")
    return sizes


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="8 and 64 workers, fewer runs")
    parser.add_argument(
        "--sizes", type=parse_sizes, metavar="N,N,...", help="worker counts (default 8,64,512)"
    )
    parser.add_argument("--reps", type=int, metavar="N", help="measured runs per size")
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="print the stage breakdown for every size, even when on target",
    )
    parser.add_argument(
        "--astral",
        action="store_true",
        help="put some emoji (beyond the BMP) in the handoffs: Python then holds them at "
        "4 bytes per character",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir for inspection")
    parser.add_argument(
        "--tmpdir",
        metavar="DIR",
        help="where sessions and bundles go (default: the system temp dir); e.g. /dev/shm "
        "to take the disk out of the figures",
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if a target is missed (for CI)"
    )
    return parser.parse_args(argv)


def default_reps(workers: int, quick: bool) -> int:
    if quick:
        return 3
    return 7 if workers <= 8 else 5 if workers <= 64 else 3


def check_room(root: Path, workers: int) -> str | None:
    """Disk: the session, the reference bundle and restored dir, one output, one copy."""
    need = workers * HANDOFF_BYTES * 6 + 256 * MIB
    free = shutil.disk_usage(root).free
    if free < need:
        return f"needs about {mb(need)} free in {root}, has {mb(free)}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("cp") is None:
        print("bench_bundle: cp is not on PATH", file=sys.stderr)
        return 2
    sizes: list[int] = args.sizes or ([8, 64] if args.quick else [8, 64, 512])
    report = Report(value_title="value")
    results: list[SizeResult] = []
    diagnosis: list[str] = []

    def body(sandbox: Sandbox) -> None:
        progress(
            f"kodelyth-ecc {__version__} bundle benchmark "
            f"({'quick' if args.quick else 'full'}): {versions()}, "
            f"{os.cpu_count()} CPUs, {platform.machine()}; sandbox {sandbox.root}"
        )
        progress("fixed cost: 1-worker export/import ...")
        fixed = bench_fixed_cost(sandbox, 5)
        report.heading("fixed cost: 1 worker of small files, median of 5")
        report.add(
            Row(
                "session-export",
                ms(fixed[0].seconds),
                note=f"RSS {mb(fixed[0].max_rss)}",
                indent=1,
            )
        )
        report.add(
            Row(
                "session-import",
                ms(fixed[1].seconds),
                note=f"RSS {mb(fixed[1].max_rss)}",
                indent=1,
            )
        )
        for workers in sizes:
            problem = check_room(sandbox.root, workers)
            if problem:
                report.heading(f"{workers} workers: skipped, {problem}")
                continue
            reps = args.reps or default_reps(workers, args.quick)
            result = bench_size(workers, sandbox, reps, args.astral, args.diagnose)
            results.append(result)
            report_size(result, fixed, report)
            if result.diagnosis:
                diagnosis.extend(["", *result.diagnosis])

    load_before = os.getloadavg()[0]
    started = time.monotonic()
    code = run_in_sandbox("bench_bundle", lambda: Sandbox(keep=args.keep, tmpdir=args.tmpdir), body)
    if code:
        return code

    print_machine(
        f"kodelyth-ecc {__version__}, {versions()}, {os.cpu_count()} CPUs, "
        f"data in {args.tmpdir or tempfile.gettempdir()}",
        load_before,
    )
    print_report(report)
    if results:
        print()
        print("\n".join(growth_lines(results)))
    print(f"\nfinished in {time.monotonic() - started:.0f}s")
    if diagnosis:
        print("\n".join(diagnosis))
    missed = print_missed(report)
    return 1 if missed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
