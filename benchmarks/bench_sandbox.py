"""Benchmark for ``swarm --sandbox``: the bubblewrap sandbox around each worker's agent.

Run with ``.venv/bin/python benchmarks/bench_sandbox.py [--quick]``. It prints a table
of figures, each with its target and PASS/FAIL where it has one; it is not a test. It
needs ``bwrap``, ``git`` and ``tmux`` on PATH and the package installed in the venv.

(a) Per-worker start-up, in process, as the runner does it: in a temp repo with a
    worktree (``git worktree add``), ``sandbox.prepare()`` (the private git state and
    the bwrap command line), running ``Prepared.argv`` around ``/bin/true``, then
    ``sandbox.bring_back()``; against running ``/bin/true`` directly. Twice: without
    the relay, and with ``proxy=(port, socket)`` (a unix socket this script listens
    on), so the relay's Python starts inside too. The added time is split into
    prepare / bwrap (+ relay) start / bring_back; median and p90 of N interleaved
    runs after a warm-up. Target: added total under 50 ms (median).
    ``info`` lines show where the time goes: bwrap with a minimal mount list, the
    relay's interpreter alone, the runner's extra import of ``kodelyth_ecc.sandbox``,
    and ``bring_back`` after a worker that committed.

(b) End to end: ``python -m kodelyth_ecc swarm --task t --agents 8 --execute`` with
    ``--launcher-cmd '/usr/bin/python3 -c pass'`` (a custom launcher is proxied, so
    the session's proxy starts and every sandboxed worker gets the relay;
    ``ANTHROPIC_BASE_URL`` names a dead local port) and with ``--harness echo`` (no
    proxy), each with and without ``--sandbox``. Time from spawning the CLI until
    every worker's ``status.md`` says ``completed``; ``kodelyth-ecc teardown SESSION
    --force --purge`` between runs (not timed). No target: the figures and the
    difference the sandbox makes.

Isolation as in ``bench_swarm.py`` (``benchtable.Sandbox``): a private HOME and tmux
server (``TMUX_TMPDIR`` in a short directory under /tmp), no ``TMUX``/``GIT_*``/
``KODELYTH_*`` variables from the caller, a private bytecode cache; the temp tree, the
tmux server and everything started are removed at exit, also on Ctrl-C/SIGTERM/SIGHUP.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from bench_swarm import make_repo, reset_repo
from benchtable import (
    BenchError,
    Report,
    Row,
    Sandbox,
    print_machine,
    print_missed,
    print_report,
    progress,
    run,
    run_in_sandbox,
    versions,
)

from kodelyth_ecc import __version__
from kodelyth_ecc.agents import pick_agents
from kodelyth_ecc.naming import slugify
from kodelyth_ecc.sandbox import (
    Prepared,
    WorkerSandbox,
    bring_back,
    prepare,
    relay_python,
    sandbox_problem,
)
from kodelyth_ecc.statusfile import StatusRecord, parse_status

STARTUP_TARGET_S = 0.050
AGENTS = 8
TASK = "t"
LAUNCHER = "/usr/bin/python3 -c pass"
# The proxy's environment for the custom launcher: a dead local port (no request is
# made: the launcher makes none) and a key, so the session's proxy starts.
MODEL_ENV = {"ANTHROPIC_BASE_URL": "http://127.0.0.1:9", "ANTHROPIC_API_KEY": "x"}
TRUE = "/bin/true"
RELAY_PORT = 40123
POLL_S = 0.005
RUN_TIMEOUT_S = 120.0
PROXY_EXIT_TIMEOUT_S = 30.0
SRC_DIR = Path(__file__).resolve().parent.parent / "src"
# Inside the sandbox, through the relay: ask the benchmark's unix socket for a pong.
PING = (
    "import socket, sys\n"
    f"s = socket.create_connection(('127.0.0.1', {RELAY_PORT}), timeout=10)\n"
    "s.sendall(b'ping')\n"
    "s.shutdown(socket.SHUT_WR)\n"
    "sys.stdout.write(s.recv(16).decode())\n"
)


def _p(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(value: float) -> str:
    return f"{value * 1000:.1f} ms"


# --------------------------------------------------------------------------- (a)


class PongServer:
    """A unix socket standing in for the proxy's: answers ``pong`` to each connection."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(self.path)
        self.sock.listen(64)
        self.served = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                with contextlib.suppress(OSError):
                    conn.recv(64)
                    conn.sendall(b"pong")
                self.served += 1

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def spawn(argv: Sequence[str], cwd: str) -> tuple[float, str]:
    """Run ``argv`` to completion: (wall time, its stdout); a failure is a BenchError."""
    start = time.perf_counter()
    result = subprocess.run(
        list(argv), cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, check=False
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise BenchError(
            f"`{' '.join(argv[:3])} ... {' '.join(argv[-3:])}` failed (exit "
            f"{result.returncode}): {result.stderr.decode(errors='replace').strip()[-600:]}"
        )
    return elapsed, result.stdout.decode(errors="replace")


class Worker:
    """One worktree and coordination dir, sandboxed again and again."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.repo = make_repo(root / "a", 200, env)
        run(["git", "config", "user.name", "Bench User"], cwd=self.repo, env=env)
        run(["git", "config", "user.email", "user@example.invalid"], cwd=self.repo, env=env)
        self.worktree = root / "a" / "wt"
        self.branch = "bench-sandbox"
        run(
            ["git", "worktree", "add", "--quiet", "-b", self.branch, str(self.worktree), "HEAD"],
            cwd=self.repo,
            env=env,
        )
        coordination = root / "a" / "coord" / "worker"
        coordination.mkdir(parents=True)
        (coordination / "task.md").write_text("# Task\n\nbenchmark\n")
        (coordination / "handoff.md").write_text("")
        python, python_paths = relay_python()
        self.ws = WorkerSandbox(
            worktree=str(self.worktree),
            branch=self.branch,
            state_dir=str(coordination / "sandbox-git"),
            task_file=str(coordination / "task.md"),
            handoff_file=str(coordination / "handoff.md"),
            readable=python_paths,
            python=python,
        )

    def once(
        self, command: Sequence[str], proxy: tuple[int, str] | None
    ) -> tuple[float, float, float, str, Prepared]:
        """prepare, run, bring_back: their times, the command's stdout, the Prepared."""
        t0 = time.perf_counter()
        prepared = prepare(self.ws, command, proxy=proxy)
        t1 = time.perf_counter()
        _, out = spawn(prepared.argv, str(self.worktree))
        t2 = time.perf_counter()
        note = bring_back(self.ws, prepared)
        t3 = time.perf_counter()
        if note is not None:
            raise BenchError(note)
        return t1 - t0, t2 - t1, t3 - t2, out, prepared


def bench_startup(sandbox: Sandbox, runs: int, report: Report) -> None:
    env = sandbox.env
    worker = Worker(sandbox.root, env)
    cwd = str(worker.worktree)
    server = PongServer(sandbox.root / "proxy.sock")
    proxy = (RELAY_PORT, server.path)
    try:
        # The relay really forwards: a request inside reaches the socket outside.
        python = worker.ws.python or "python3"
        *_, out, prepared = worker.once([python, "-I", "-S", "-c", PING], proxy)
        if out != "pong" or server.served != 1:
            raise BenchError(f"the relay did not forward (got {out!r}, {server.served} served)")
        argc = len(prepared.argv)

        warmup = 3
        direct: list[float] = []
        phases: dict[str, list[tuple[float, float, float]]] = {"plain": [], "relay": []}
        for index in range(warmup + runs):
            base, _ = spawn([TRUE], cwd)
            plain = worker.once([TRUE], None)[:3]
            relay = worker.once([TRUE], proxy)[:3]
            if index >= warmup:
                direct.append(base)
                phases["plain"].append((plain[0], plain[1] - base, plain[2]))
                phases["relay"].append((relay[0], relay[1] - base, relay[2]))

        # Where the bwrap + relay time goes, and bring_back after a commit.
        minimal = [
            "bwrap", "--die-with-parent", "--unshare-pid", "--unshare-net",
            "--ro-bind", "/", "/", "--", TRUE,
        ]  # fmt: skip
        extra: dict[str, list[float]] = {"bwrap": [], "python": [], "imports": []}
        for index in range(warmup + max(5, runs // 2)):
            base, _ = spawn([TRUE], cwd)
            bw, _ = spawn(minimal, cwd)
            py, _ = spawn([python, "-I", "-S", "-c", "pass"], cwd)
            imp, _ = spawn([python, "-I", "-S", "-c", "import _socket, _thread"], cwd)
            if index >= warmup:
                extra["bwrap"].append(bw - base)
                extra["python"].append(py - base)
                extra["imports"].append(imp - py)
        commit = ["git", "commit", "--quiet", "--allow-empty", "-m", "bench"]
        committed = []
        for _ in range(max(3, runs // 4)):
            before = run(["git", "rev-parse", worker.branch], cwd=worker.repo, env=env).stdout
            committed.append(worker.once(commit, None)[2])
            after = run(["git", "rev-parse", worker.branch], cwd=worker.repo, env=env).stdout
            if before == after:
                raise BenchError("bring_back did not move the branch to the worker's commit")
    finally:
        server.close()

    bootstrap = f"import sys; sys.path.insert(0, {str(SRC_DIR)!r}); import kodelyth_ecc.runner"
    imports: dict[str, list[float]] = {"runner": [], "sandbox": []}
    for index in range(2 + max(5, runs // 3)):
        for name, code in (
            ("runner", bootstrap),
            ("sandbox", bootstrap + ", kodelyth_ecc.errors, kodelyth_ecc.sandbox"),
        ):
            elapsed, _ = spawn([sys.executable, "-I", "-c", code], cwd)
            if index >= 2:
                imports[name].append(elapsed)
    import_cost = statistics.median(imports["sandbox"]) - statistics.median(imports["runner"])

    report.heading(f"(a) per-worker start-up, median of {runs} (after {warmup} warm-up)")
    report.add(Row(f"{TRUE} directly", statistics.median(direct), indent=1))
    labels = {
        "plain": "sandboxed, no relay",
        "relay": f"sandboxed, relay to a unix socket (proxy={RELAY_PORT})",
    }
    for key, label in labels.items():
        samples = phases[key]
        totals = [sum(s) for s in samples]
        added = statistics.median(totals)
        report.add(
            Row(
                f"{label}: added total",
                added,
                ratio=added / STARTUP_TARGET_S,
                target=1.0,
                note=f"p90 {_ms(_p(totals, 0.9))}; target under {STARTUP_TARGET_S * 1000:g} ms",
                indent=1,
            )
        )
        for index, phase in enumerate(
            (
                "prepare()",
                "bwrap" + (" + relay" if key == "relay" else "") + " start",
                "bring_back()",
            )
        ):
            values = [s[index] for s in samples]
            report.add(
                Row(phase, statistics.median(values), note=f"p90 {_ms(_p(values, 0.9))}", indent=2)
            )
    report.add(
        Row(
            "bwrap, minimal (--ro-bind / /, pid+net ns)",
            statistics.median(extra["bwrap"]),
            note=f"info: added to {TRUE}; the real argv has {argc} arguments",
            indent=1,
        )
    )
    report.add(
        Row(
            f"{python} -I -S -c pass",
            statistics.median(extra["python"]),
            note="info: added to /bin/true; the relay's interpreter",
            indent=1,
        )
    )
    report.add(
        Row(
            "the relay's imports (_socket, _thread)",
            statistics.median(extra["imports"]),
            note="info: added to the interpreter's start-up",
            indent=2,
        )
    )
    report.add(
        Row(
            "bring_back() after a commit inside",
            statistics.median(committed),
            note=f"info: index-pack --strict + update-ref (median of {len(committed)})",
            indent=1,
        )
    )
    report.add(
        Row(
            "runner: import kodelyth_ecc.sandbox (+errors)",
            import_cost,
            note="info: a fresh `python -I` beyond importing kodelyth_ecc.runner",
            indent=1,
        )
    )
    shutil.rmtree(sandbox.root / "a")


# --------------------------------------------------------------------------- (b)


VARIANTS: dict[str, list[str]] = {
    "custom launcher (proxied)": ["--launcher-cmd", LAUNCHER],
    "custom launcher (proxied), --sandbox": ["--launcher-cmd", LAUNCHER, "--sandbox"],
    "echo harness": ["--harness", "echo"],
    "echo harness, --sandbox": ["--harness", "echo", "--sandbox"],
}


def swarm_argv(extra: Sequence[str], session: str, execute: bool = True) -> list[str]:
    return [
        sys.executable, "-m", "kodelyth_ecc", "swarm", "--task", TASK,
        "--agents", str(AGENTS), "--session", session, *extra,
        *(["--execute"] if execute else []),
    ]  # fmt: skip


def check_dry_runs(repo: Path, env: dict[str, str]) -> None:
    """Each variant plans 8 workers, sandboxed exactly when it says so."""
    for name, extra in VARIANTS.items():
        out = run(swarm_argv(extra, "bench-dry", execute=False), cwd=repo, env=env).stdout
        sandboxed = any(line.startswith("Sandbox") and " on " in line for line in out.splitlines())
        if sandboxed != ("--sandbox" in extra):
            raise BenchError(f"{name}: the dry-run's sandbox line is not as expected:\n{out}")
        if "proxied" in name and "Recording     on" not in out:
            raise BenchError(f"{name}: the dry-run does not start the proxy:\n{out}")


def execute_once(
    repo: Path, sandbox: Sandbox, session: str, extra: Sequence[str]
) -> dict[str, float]:
    """``swarm --execute`` until every worker is completed, then torn down."""
    session_dir = repo / ".orchestration" / session
    status_files = [session_dir / slugify(name) / "status.md" for name in pick_agents(TASK, AGENTS)]
    start = time.monotonic()
    proc = subprocess.Popen(
        swarm_argv(extra, session),
        cwd=repo,
        env=sandbox.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    sandbox.procs.append(proc)
    deadline = start + RUN_TIMEOUT_S
    # Until the CLI has returned (it does once the workers are launched), only wait on it.
    while proc.poll() is None:
        if time.monotonic() > deadline:
            raise BenchError(f"swarm --execute did not return within {RUN_TIMEOUT_S:g}s")
        time.sleep(POLL_S)
    cli_done = time.monotonic()
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise BenchError(f"swarm --execute exited {proc.returncode}: {err.decode().strip()}")
    while True:
        records: list[StatusRecord | None] = []
        for path in status_files:
            try:
                records.append(parse_status(path.read_text(encoding="utf-8")))
            except OSError:
                records.append(None)
        states = [r.state if r is not None else "absent" for r in records]
        if all(s == "completed" for s in states):
            done = time.monotonic()
            break
        if "failed" in states:
            reasons = [r.reason for r in records if r is not None and r.state == "failed"]
            raise BenchError(f"a worker failed: {states} ({reasons[0]})")
        if time.monotonic() > deadline:
            raise BenchError(f"workers not completed after {RUN_TIMEOUT_S:g}s: {states}")
        time.sleep(POLL_S)
    durations = [r.duration_s or 0.0 for r in records if r is not None]
    proxy_exit = teardown(repo, sandbox, session)
    return {
        **({"proxy exit": proxy_exit} if proxy_exit is not None else {}),
        "total": done - start,
        "cli": cli_done - start,
        "workers": done - cli_done,
        "duration": statistics.median(durations),
        "duration max": max(durations),
    }


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def teardown(repo: Path, sandbox: Sandbox, session: str) -> float | None:
    """``teardown --force --purge``, then wait (bounded) for the session's proxy to end
    and check nothing is left; a fresh tmux server for the next run. Returns how long
    the proxy took to exit after the teardown returned (None: there was none)."""
    proxy_file = repo / ".orchestration" / session / "proxy.json"
    pid = json.loads(proxy_file.read_text())["pid"] if proxy_file.exists() else None
    run(
        [sys.executable, "-m", "kodelyth_ecc", "teardown", session, "--force", "--purge"],
        cwd=repo,
        env=sandbox.env,
    )
    torn_down = time.monotonic()
    deadline = torn_down + PROXY_EXIT_TIMEOUT_S
    while pid is not None and _alive(pid):
        if time.monotonic() > deadline:
            raise BenchError(
                f"the session's proxy (pid {pid}) outlived the teardown by "
                f"{PROXY_EXIT_TIMEOUT_S:g} s"
            )
        time.sleep(POLL_S)
    proxy_exit = time.monotonic() - torn_down if pid is not None else None
    worktrees = run(["git", "worktree", "list", "--porcelain"], cwd=repo, env=sandbox.env)
    branches = run(["git", "branch", "--format=%(refname:short)"], cwd=repo, env=sandbox.env)
    if worktrees.stdout.count("worktree ") != 1 or branches.stdout.split() != ["main"]:
        raise BenchError(f"teardown left worktrees or branches:\n{worktrees.stdout}{branches}")
    # Killing the last session ends the tmux server but leaves its socket behind, and
    # ``Sandbox.kill_tmux`` would wait 5 s for it to go: remove a stale one first.
    if os.path.exists(sandbox.socket) and sandbox.tmux("list-sessions", check=False).returncode:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(sandbox.socket)
    # A fresh tmux server each run, as a first swarm gets (and anything left removed).
    reset_repo(repo, sandbox)
    return proxy_exit


def bench_execute(sandbox: Sandbox, reps: int, report: Report) -> None:
    progress("(b) generating a repo of 200 files ...")
    repo = make_repo(sandbox.root / "b", 200, sandbox.env)
    check_dry_runs(repo, sandbox.env)
    counter = iter(range(1_000_000))
    results: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
    names = list(VARIANTS)
    for rep in range(reps + 1):
        if rep:
            progress(f"(b) run {rep}/{reps}")
        else:
            progress("(b) warm-up run of each variant")
        # Rotate the order, so no variant always follows the same one.
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            result = execute_once(repo, sandbox, f"bench-{next(counter)}", VARIANTS[name])
            if rep:
                results[name].append(result)
    medians = {
        name: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        for name, runs in results.items()
    }

    report.heading(
        f"(b) swarm --execute, {AGENTS} workers, spawn -> all completed, median of {reps}"
    )
    for name in names:
        m = medians[name]
        totals = [r["total"] for r in results[name]]
        report.add(
            Row(
                name,
                m["total"],
                note=f"min {_ms(min(totals))}, max {_ms(max(totals))}",
                indent=1,
            )
        )
        report.add(Row("CLI returned", m["cli"], indent=2))
        report.add(Row("then all completed", m["workers"], indent=2))
        report.add(
            Row(
                "worker Duration (status.md)",
                m["duration"],
                note=f"median of the 8; slowest {_ms(m['duration max'])}",
                indent=2,
            )
        )
        if "proxy exit" in m:
            report.add(
                Row(
                    "proxy gone, after teardown returned",
                    m["proxy exit"],
                    note="info: not in the total; waited for before the next run",
                    indent=2,
                )
            )
    for plain in ("custom launcher (proxied)", "echo harness"):
        with_sandbox = medians[f"{plain}, --sandbox"]
        without = medians[plain]
        difference = with_sandbox["total"] - without["total"]
        report.add(
            Row(
                f"--sandbox adds, {plain}",
                difference,
                ratio=with_sandbox["total"] / without["total"],
                note=f"info: CLI {_ms(with_sandbox['cli'] - without['cli'])}, workers "
                f"{_ms(with_sandbox['workers'] - without['workers'])}; per worker "
                f"Duration {_ms(with_sandbox['duration'] - without['duration'])}",
                indent=1,
            )
        )
    shutil.rmtree(repo.parent)


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir for inspection")
    parser.add_argument(
        "--tmpdir",
        metavar="DIR",
        help="where repos and worktrees go (default: the system temp dir); e.g. /dev/shm",
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if a target is missed (for CI)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for program in ("git", "tmux"):
        if shutil.which(program) is None:
            print(f"bench_sandbox: {program} is not on PATH", file=sys.stderr)
            return 2
    if shutil.which("bwrap") is None:
        print("bench_sandbox: bwrap is not on PATH: nothing to measure", file=sys.stderr)
        return 2
    problem = sandbox_problem()
    if problem is not None:
        print(f"bench_sandbox: {problem}", file=sys.stderr)
        return 2
    runs = 15 if args.quick else 41
    reps = 2 if args.quick else 5
    report = Report()

    def body(sandbox: Sandbox) -> None:
        sandbox.activate()
        progress(
            f"kodelyth-ecc {__version__} sandbox benchmark ({'quick' if args.quick else 'full'})"
            f": {versions('git', 'tmux', 'bwrap')}, {os.cpu_count()} CPUs, {platform.machine()}"
        )
        progress(f"sandbox {sandbox.root}, tmux socket {sandbox.socket}")
        progress(f"(a) per-worker start-up: {runs} interleaved runs ...")
        bench_startup(sandbox, runs, report)
        bench_execute(sandbox, reps, report)

    def make() -> Sandbox:
        return Sandbox(
            keep=args.keep,
            tmpdir=args.tmpdir,
            prefix="kodelyth-bench-sbx-",
            drop_prefixes=("KODELYTH_",),
            extra_env=MODEL_ENV,
        )

    load_before = os.getloadavg()[0]
    started = time.monotonic()
    code = run_in_sandbox("bench_sandbox", make, body)
    if code:
        return code
    print_machine(
        f"kodelyth-ecc {__version__}, {versions('git', 'tmux', 'bwrap')}, {os.cpu_count()} CPUs",
        load_before,
    )
    print_report(report)
    print(f"\nfinished in {time.monotonic() - started:.0f}s; poll interval {POLL_S * 1000:g}ms")
    missed = print_missed(report)
    return 1 if missed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
