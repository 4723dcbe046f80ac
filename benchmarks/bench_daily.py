"""Benchmarks for the everyday commands (issue 14): ``status``, completion, ``diff``,
``logs`` and ``status --watch``.

Run with ``.venv/bin/python benchmarks/bench_daily.py [--quick]``. It prints a table of
figures, each with its target and PASS/FAIL where it has one; it is not a test. It needs
``git`` and ``tmux`` on PATH and the package installed in the venv.

The setting: a temporary 200-file repo holding a real finished echo swarm of 8 workers
(``swarm --harness echo --agents 8 --execute``, waited for with ``status --wait``; each
worker is then given a commit, an uncommitted edit and a new file, so ``diff`` has work
to do), and 49 more sessions of 8 workers written with ``swarm --write-only``: a
coordination root of 50 sessions. Every command runs through the real CLI, both as
``python -m kodelyth_ecc`` and as the venv's ``kodelyth-ecc`` console script when it exists.

(a) ``status`` (the list of 50), ``status SESSION`` and ``status SESSION --json``, each
    as a multiple of ``python -c pass`` run by the same interpreter in the same
    environment; median (and p90) of N interleaved runs. Target: <= 4x, the target of
    the swarm dry-run's start-up in ``bench_swarm.py``.
(b) What a Tab press runs: ``kodelyth-ecc __complete sessions`` and ``__complete workers
    SESSION`` (the argv the completion scripts use); wall time per call. Target: median
    under 100 ms.
(c) ``diff SESSION --stat`` and ``logs SESSION WORKER``: figures only, no target.
(d) ``status SESSION --watch`` with stdout on a pipe, against a second session of 8
    workers that are still running (a ``--launcher-cmd`` that waits for a file) so that
    nothing changes: the CPU time it uses per second of watching, once its first look is
    printed: its own (``/proc/<pid>/task/*/schedstat``, nanoseconds, over a 5 s window)
    plus the ``tmux list-panes`` client each full look starts (timed alone by its rusage,
    one every ``FULL_LOOK_S``). Cross-checked with rusage (``os.wait4`` after SIGINT: a
    whole watch minus one stopped at its first look). The tmux server's CPU meanwhile is
    shown apart. Figure only.

When a target is missed (or with ``--diagnose``) it also prints where the time goes: the
process wall time after each stage of imports, the heaviest imports from ``python -X
importtime`` and the subprocesses the command starts.

Isolation as in ``bench_swarm.py`` (``benchtable.Sandbox``): a private HOME and tmux
server (``TMUX_TMPDIR`` in a short directory under /tmp; this script's own tmux calls
also name the socket with ``-S``), no ``TMUX``/``GIT_*``/``KODELYTH_*`` variables from the
caller, a private bytecode cache (``PYTHONPYCACHEPREFIX``) warmed by unmeasured runs. The
temp tree, the tmux server and everything started are removed at exit, also on
Ctrl-C/SIGTERM/SIGHUP.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench_swarm import SUBPROCESS_WRAPPER, importtime, make_repo
from benchtable import (
    BenchError,
    Report,
    Row,
    Sandbox,
    add_keep_check,
    missing_programs,
    print_machine,
    print_missed,
    print_report,
    progress,
    run,
    run_in_sandbox,
    versions,
)

from kodelyth_ecc import __version__
from kodelyth_ecc.sessiondir import TRANSCRIPT_FILE
from kodelyth_ecc.status import FULL_LOOK_S, WATCH_INTERVAL_S, collect_status

AGENTS = 8
SESSIONS = 50
SESSION = "daily"
WATCHED = "watched"
TASK = "Review the checkout flow and tighten its error handling"
CLI_TARGET = 4.0
COMPLETE_TARGET_S = 0.100
WATCH_S = 5.0
RUN_TIMEOUT_S = 120.0
POLL_S = 0.05
BIG_TRANSCRIPT_BYTES = 1 << 20
SCRIPT = Path(sys.executable).parent / "kodelyth-ecc"
BASE = "python -c pass"

# Runs the real CLI entry point under cProfile once its command's modules (KBENCH_MODULES)
# are imported, its stdout thrown away; the stats go to KBENCH_PROFILE.
PROFILE_WRAPPER = """\
import cProfile, importlib, os, sys
from kodelyth_ecc.main import main
for name in os.environ["KBENCH_MODULES"].split(","):
    importlib.import_module(name)
sys.stdout = open(os.devnull, "w")
profile = cProfile.Profile()
profile.enable()
code = main(sys.argv[1:])
profile.disable()
profile.dump_stats(os.environ["KBENCH_PROFILE"])
sys.exit(code)
"""

# Workers that run until RELEASE exists (at most 10 minutes): a watched session in which
# nothing changes. A 1 s sleep between looks keeps the 8 of them nearly idle.
HOLD = "i=0; until [ -e {release} ] || [ $i -ge 600 ]; do sleep 1; i=$((i+1)); done"


# --------------------------------------------------------------------------- helpers


def clis() -> dict[str, list[str]]:
    """How the real CLI is started: ``python -m`` and, if installed, the console script."""
    found = {"python -m": [sys.executable, "-m", "kodelyth_ecc"]}
    if SCRIPT.is_file():
        found["kodelyth-ecc"] = [str(SCRIPT)]
    return found


def p90(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


def ms(value: float) -> str:
    return f"{value * 1000:.1f} ms"


def timed(argv: Sequence[str], *, cwd: Path, env: dict[str, str]) -> float:
    """Wall time of one run, stdout on a pipe read to the end (as a shell's ``$(...)``
    reads completion candidates); a failure is a ``BenchError``."""
    start = time.perf_counter()
    result = subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise BenchError(
            f"`{' '.join(argv)}` failed (exit {result.returncode}): "
            f"{result.stderr.decode(errors='replace').strip()[-800:]}"
        )
    return elapsed


def interleaved(
    commands: dict[str, list[str]], runs: int, *, cwd: Path, env: dict[str, str], warmup: int = 2
) -> dict[str, list[float]]:
    """Every wall time of each command, the commands taking turns to spread out drift;
    ``warmup`` unmeasured rounds first (they also fill the bytecode cache)."""
    for _ in range(warmup):
        for argv in commands.values():
            timed(argv, cwd=cwd, env=env)
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            samples[name].append(timed(argv, cwd=cwd, env=env))
    return samples


def wait_until(check: Callable[[], bool], what: str, timeout: float = RUN_TIMEOUT_S) -> None:
    """Poll ``check`` every ``POLL_S`` until true; a ``BenchError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise BenchError(f"{what} not reached after {timeout:g}s")
        time.sleep(POLL_S)


def cpu_s(pid: int) -> float:
    """The CPU seconds a process's threads have run, to the nanosecond (summed from
    ``/proc/<pid>/task/*/schedstat``; ``/proc/<pid>/stat`` counts 10 ms ticks). Its
    reaped children are not in it."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/schedstat", encoding="ascii") as fh:
            total += int(fh.read().split()[0])
    return total / 1e9


# --------------------------------------------------------------------------- the setting


def cli(sandbox: Sandbox, repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run([*clis()["python -m"], *args], cwd=repo, env=sandbox.env)


def git(worktree: Path, env: dict[str, str], *args: str) -> None:
    run(["git", *args], cwd=worktree, env=env)


def give_changes(workers: list[dict[str, Any]], env: dict[str, str]) -> None:
    """What an agent leaves in its worktree: a commit (a new file, an edited one), an
    uncommitted edit and an untracked file."""
    for index, worker in enumerate(workers):
        tree = Path(worker["worktree"])
        slug = worker["slug"]
        (tree / "notes").mkdir(exist_ok=True)
        lines = [f"- finding {n} of {slug}: the handler swallows error {n}\n" for n in range(40)]
        (tree / "notes" / f"{slug}.md").write_text("".join(lines), encoding="utf-8")
        readme = tree / "README.md"
        readme.write_text(readme.read_text() + f"\nReviewed by {slug}.\n", encoding="utf-8")
        git(tree, env, "add", "notes", "README.md")
        git(tree, env, "commit", "--quiet", "-m", f"{slug}: review notes")
        module = tree / "src" / "pkg0000" / f"mod{index:05d}.py"
        module.write_text(module.read_text() + "\n\ndef check() -> bool:\n    return True\n")
        (tree / "scratch.txt").write_text(f"scratch of {slug}\n", encoding="utf-8")


def big_transcript(path: Path) -> None:
    """About ``BIG_TRANSCRIPT_BYTES`` of what an agent CLI prints: colours, cursor moves,
    carriage-return spinners, non-ASCII."""
    line = (
        "\x1b[2K\r\x1b[32m✓\x1b[0m step {n}: ran \x1b[1mpytest -q tests/test_checkout.py\x1b[0m"
        " → 12 passed in 0.84s; next: tighten the error path of checkout.pay()\r\n"
    )
    chunks: list[str] = []
    size = 0
    n = 0
    while size < BIG_TRANSCRIPT_BYTES:
        text = line.format(n=n)
        chunks.append(text)
        size += len(text.encode())
        n += 1
    path.write_text("".join(chunks), encoding="utf-8")


def build_setting(sandbox: Sandbox) -> tuple[Path, list[str]]:
    """The repo with the finished 8-worker swarm and 49 written sessions; its slugs."""
    repo = make_repo(sandbox.root / "work", 200, sandbox.env)
    progress(f"swarm --harness echo --agents {AGENTS} --execute, waited for ...")
    cli(sandbox, repo, "swarm", "--task", TASK, "--agents", str(AGENTS), "--harness", "echo",
        "--session", SESSION, "--execute")  # fmt: skip
    done = cli(sandbox, repo, "status", SESSION, "--wait", "--timeout", "120", "--json")
    workers: list[dict[str, Any]] = json.loads(done.stdout)["session"]["workers"]
    if len(workers) != AGENTS or any(w["state"] != "completed" for w in workers):
        raise BenchError(f"the echo swarm did not complete: {done.stdout[-800:]}")
    give_changes(workers, sandbox.env)
    progress(f"writing {SESSIONS - 1} sessions with swarm --write-only ...")
    for index in range(1, SESSIONS):
        cli(sandbox, repo, "swarm", "--task", f"{TASK} (part {index})", "--agents", str(AGENTS),
            "--harness", "echo", "--session", f"written-{index:02d}", "--write-only")  # fmt: skip
    return repo, [w["slug"] for w in workers]


def check_outputs(sandbox: Sandbox, repo: Path, slugs: list[str]) -> None:
    """The measured commands do what they should in this setting, before any is timed."""
    listing = cli(sandbox, repo, "status").stdout.splitlines()
    if len([line for line in listing if line.strip()]) != SESSIONS:
        raise BenchError(f"`status` did not list {SESSIONS} sessions: {listing[:5]} ...")
    shown = json.loads(cli(sandbox, repo, "status", SESSION, "--json").stdout)["session"]
    if [w["state"] for w in shown["workers"]] != ["completed"] * AGENTS:
        raise BenchError(f"`status {SESSION} --json` is not {AGENTS} completed workers")
    sessions = cli(sandbox, repo, "__complete", "sessions").stdout.split()
    if len(sessions) != SESSIONS or SESSION not in sessions:
        raise BenchError(f"`__complete sessions` gave {len(sessions)} names, not {SESSIONS}")
    workers = cli(sandbox, repo, "__complete", "workers", SESSION).stdout.split()
    if sorted(workers) != sorted(slugs):
        raise BenchError(f"`__complete workers {SESSION}` did not give the {AGENTS} slugs")
    stat = cli(sandbox, repo, "diff", SESSION, "--stat").stdout
    if stat.count("scratch.txt") != AGENTS or "no changes" in stat:
        raise BenchError(f"`diff {SESSION} --stat` does not show every worker's changes")
    if not cli(sandbox, repo, "logs", SESSION, slugs[0]).stdout.strip():
        raise BenchError(f"`logs {SESSION} {slugs[0]}` printed nothing")


# --------------------------------------------------------------------------- (a) (b) (c)


def commands_for(slugs: list[str]) -> dict[str, list[str]]:
    """The measured argv tails, by label."""
    return {
        "status": ["status"],
        "status SESSION": ["status", SESSION],
        "status SESSION --json": ["status", SESSION, "--json"],
        "__complete sessions": ["__complete", "sessions"],
        "__complete workers SESSION": ["__complete", "workers", SESSION],
        "diff SESSION --stat": ["diff", SESSION, "--stat"],
        "logs SESSION WORKER": ["logs", SESSION, slugs[0]],
        "logs SESSION WORKER, 1 MiB transcript": ["logs", SESSION, slugs[-1]],
    }


def bench_commands(
    repo: Path, sandbox: Sandbox, slugs: list[str], runs: int, other_runs: int, report: Report
) -> list[str]:
    """(a), (b), (c); the labels of the rows that missed their target."""
    tails = commands_for(slugs)
    missed: list[str] = []
    base_argv = [sys.executable, "-c", "pass"]

    groups = {
        "a": ["status", "status SESSION", "status SESSION --json"],
        "b": ["__complete sessions", "__complete workers SESSION"],
    }
    progress(f"(a)+(b) status and completion: {runs} interleaved runs ...")
    commands = {BASE: base_argv}
    for how, prefix in clis().items():
        for label in (*groups["a"], *groups["b"]):
            commands[f"{label} [{how}]"] = [*prefix, *tails[label]]
    samples = interleaved(commands, runs, cwd=repo, env=sandbox.env)
    base = statistics.median(samples[BASE])

    # label group: (heading, what the median is divided by, the ratio's target, note)
    headings = {
        "a": (f"(a) status, {SESSIONS} sessions, median of {runs}", base, CLI_TARGET, ""),
        "b": (
            f"(b) completion candidates (a Tab press), median of {runs}",
            COMPLETE_TARGET_S,
            1.0,
            f"target under {COMPLETE_TARGET_S * 1000:g} ms; ",
        ),
    }
    for group, (heading, unit, target, note) in headings.items():
        report.heading(heading)
        if group == "a":
            report.add(Row(BASE, base, note=f"p90 {ms(p90(samples[BASE]))}", indent=1))
        for how in clis():
            for label in groups[group]:
                values = samples[f"{label} [{how}]"]
                median = statistics.median(values)
                row = report.add(
                    Row(
                        f"{label} [{how}]",
                        median,
                        ratio=median / unit,
                        target=target,
                        note=f"p90 {ms(p90(values))}; {note}{median / base:.2f}x python -c pass",
                        indent=1,
                    )
                )
                if row.passed is False:
                    missed.append(row.label)

    progress(f"(c) diff and logs: {other_runs} interleaved runs ...")
    commands = {}
    for how, prefix in clis().items():
        for label in ("diff SESSION --stat", "logs SESSION WORKER"):
            commands[f"{label} [{how}]"] = [*prefix, *tails[label]]
    big = "logs SESSION WORKER, 1 MiB transcript"
    commands[f"{big} [python -m]"] = [*clis()["python -m"], *tails[big]]
    samples = interleaved(commands, other_runs, cwd=repo, env=sandbox.env)
    report.heading(f"(c) diff and logs, median of {other_runs}")
    for label, values in samples.items():
        median = statistics.median(values)
        note = f"p90 {ms(p90(values))}; {median / base:.2f}x python -c pass"
        if label.startswith("diff"):
            note += f"; {AGENTS} workers, each a commit, an edit, a new file"
        elif label.startswith(big):
            note = "info: " + note + "; colours, spinners, non-ASCII"
        else:
            note += "; an echo worker's transcript"
        report.add(Row(label, median, note=note, indent=1))
    return missed


# --------------------------------------------------------------------------- (d) --watch


class Watch:
    """``status SESSION --watch`` on a pipe, its lines read as they come."""

    def __init__(self, repo: Path, sandbox: Sandbox) -> None:
        self.proc = subprocess.Popen(
            [*clis()["python -m"], "status", WATCHED, "--watch"],
            cwd=repo,
            env=sandbox.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        sandbox.procs.append(self.proc)
        self.started = time.monotonic()
        self.lines: list[bytes] = []
        self.first_at = 0.0
        self.looked = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if len(self.lines) == AGENTS:
                self.first_at = time.monotonic()
                self.looked.set()

    def first_look(self) -> float:
        """When the first look (a line per worker) was printed: start-up is over."""
        deadline = time.monotonic() + 30
        while not self.looked.wait(POLL_S):
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise BenchError(f"status --watch exited {self.proc.returncode}: {err[-800:]}")
            if time.monotonic() > deadline:
                raise BenchError("status --watch printed no first look after 30s")
        return self.first_at

    def interrupt(self) -> float:
        """SIGINT (Ctrl-C); the CPU seconds the watch used in all, from its rusage (its
        own and its reaped children's: the git and tmux clients it ran)."""
        os.kill(self.proc.pid, signal.SIGINT)
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.reader.join(timeout=10)
        err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
        if self.proc.returncode != 130:
            raise BenchError(f"status --watch exited {self.proc.returncode} on SIGINT: {err}")
        return usage.ru_utime + usage.ru_stime


def tmux_client_cpu(sandbox: Sandbox, runs: int = 20) -> float:
    """The CPU seconds of one ``tmux list-panes`` client as ``tmux.panes`` runs it
    (rusage of the reaped process): what each of the watch's full looks starts."""
    argv = ["tmux", "-S", sandbox.socket, "list-panes", "-s", "-t", f"={WATCHED}", "-F",
            "#{pane_id}\t#{pane_dead}\t#{pane_dead_status}"]  # fmt: skip
    values = []
    for _ in range(runs):
        proc = subprocess.Popen(argv, env=sandbox.env, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise BenchError(f"tmux list-panes -t ={WATCHED} failed")
        values.append(usage.ru_utime + usage.ru_stime)
    return statistics.median(values)


def start_watched(repo: Path, sandbox: Sandbox) -> Path:
    """The second session, 8 workers held running until the returned file exists."""
    release = sandbox.root / "release-watched"
    launcher = HOLD.format(release=shlex.quote(str(release)))
    cli(sandbox, repo, "swarm", "--task", TASK, "--agents", str(AGENTS), "--harness", "echo",
        "--launcher-cmd", launcher, "--session", WATCHED, "--execute")  # fmt: skip
    root = str(repo / ".orchestration")

    def running() -> bool:
        states = [w.state for w in collect_status(WATCHED, root).workers]
        if any(s in ("failed", "lost") for s in states):
            raise BenchError(f"a held worker ended: {states}")
        return len(states) == AGENTS and all(s == "running" for s in states)

    wait_until(running, f"{AGENTS} held workers running")
    return release


def tmux_server_pid(sandbox: Sandbox) -> int:
    return int(sandbox.tmux("display-message", "-p", "#{pid}").stdout.strip())


def bench_watch(repo: Path, sandbox: Sandbox, pairs: int, report: Report) -> None:
    progress(f"(d) status --watch: {pairs} x ({WATCH_S:g}s watch + a start-up-only watch) ...")
    release = start_watched(repo, sandbox)
    server = tmux_server_pid(sandbox)
    client = tmux_client_cpu(sandbox)

    # The tmux server's own CPU with nobody watching, over as long as a watch.
    before = cpu_s(server)
    time.sleep(WATCH_S)  # a measurement window: nothing is awaited
    idle_server = (cpu_s(server) - before) / WATCH_S

    own: list[float] = []  # the watch process itself, per second watched
    servers: list[float] = []  # the tmux server, per second watched
    startups: list[float] = []  # CPU of a watch stopped at its first look (rusage)
    startup_walls: list[float] = []
    totals: list[tuple[float, float]] = []  # (rusage CPU of a whole watch, seconds watched)
    for _ in range(pairs):
        short = Watch(repo, sandbox)
        startup_walls.append(short.first_look() - short.started)
        startups.append(short.interrupt())

        long = Watch(repo, sandbox)
        first = long.first_look()
        start, own_start, server_start = time.monotonic(), cpu_s(long.proc.pid), cpu_s(server)
        time.sleep(WATCH_S)  # the window measured: nothing changes in it
        end, own_end, server_end = time.monotonic(), cpu_s(long.proc.pid), cpu_s(server)
        if len(long.lines) != AGENTS:
            raise BenchError(f"the watched session changed: {long.lines[AGENTS:]}")
        totals.append((long.interrupt(), time.monotonic() - first))
        own.append((own_end - own_start) / (end - start))
        servers.append((server_end - server_start) / (end - start))

    own_rate = statistics.median(own)
    clients_rate = client / FULL_LOOK_S
    server_rate = max(0.0, statistics.median(servers) - idle_server)
    rate = own_rate + clients_rate
    startup_cpu = statistics.median(startups)
    by_rusage = statistics.median((cpu - startup_cpu) / seconds for cpu, seconds in totals)
    report.heading(
        f"(d) status SESSION --watch on a pipe, {AGENTS} running workers, nothing changing, "
        f"median of {pairs} x {WATCH_S:g}s"
    )
    report.add(
        Row(
            "CPU per second watched",
            f"{rate * 1000:.2f}ms/s",
            note=f"= {rate * 100:.2f}% of a CPU: the watch and its tmux clients; it reads the "
            f"status files every {WATCH_INTERVAL_S:g} s and asks tmux every {FULL_LOOK_S:g} s",
            indent=1,
        )
    )
    report.add(
        Row(
            "the watch process itself",
            f"{own_rate * 1000:.2f}ms/s",
            note=f"schedstat over the window (runs: {', '.join(f'{v * 1000:.2f}' for v in own)});"
            f" {own_rate * WATCH_INTERVAL_S * 1000:.2f} ms a look",
            indent=2,
        )
    )
    report.add(
        Row(
            "its tmux list-panes clients",
            f"{clients_rate * 1000:.2f}ms/s",
            note=f"{client * 1000:.2f} ms a call (rusage, median of 20), one every "
            f"{FULL_LOOK_S:g} s",
            indent=2,
        )
    )
    report.add(
        Row(
            "the tmux server answering them",
            f"{server_rate * 1000:.2f}ms/s",
            note=f"info: not in the total; {statistics.median(servers) * 1000:.2f} ms/s "
            f"watched, {idle_server * 1000:.2f} ms/s unwatched",
            indent=2,
        )
    )
    report.add(
        Row(
            "cross-check from rusage",
            f"{by_rusage * 1000:.2f}ms/s",
            note="info: (a whole watch - one stopped at its first look) / seconds watched "
            f"(runs: {', '.join(f'{(c - startup_cpu) / t * 1000:.2f}' for c, t in totals)})",
            indent=2,
        )
    )
    report.add(
        Row(
            "start-up until the first look printed",
            statistics.median(startup_walls),
            note=f"info: wall time; {ms(startup_cpu)} of CPU, Ctrl-C and exit included",
            indent=1,
        )
    )
    release.touch()
    root = str(repo / ".orchestration")
    wait_until(
        lambda: collect_status(WATCHED, root).all_completed, f"{AGENTS} held workers completed"
    )
    cli(sandbox, repo, "teardown", WATCHED, "--force", "--purge")


# --------------------------------------------------------------------------- diagnosis


def diagnose(label: str, tail: list[str], repo: Path, sandbox: Sandbox, runs: int) -> list[str]:
    """Where one command's time goes (as ``python -m``): the process wall time after each
    stage of imports, the heaviest imports, what its work after the imports calls most
    (cProfile), and the subprocesses it starts."""
    env = sandbox.env
    lines = [f"where `{label}` spends its time (python -m; median of {runs} unless noted)"]
    say = lines.append
    modules = (
        ["kodelyth_ecc.commands.completion", "kodelyth_ecc.completion"]
        if tail[0] == "__complete"
        else [f"kodelyth_ecc.commands.{tail[0]}"]
    )
    steps = {
        BASE: [sys.executable, "-c", "pass"],
        "import kodelyth_ecc.main": [sys.executable, "-c", "import kodelyth_ecc.main"],
        f"+ import {', '.join(modules)}": [
            sys.executable,
            "-c",
            f"import kodelyth_ecc.main, {', '.join(modules)}",
        ],
        "the whole command": [sys.executable, "-m", "kodelyth_ecc", *tail],
    }
    samples = interleaved(steps, runs, cwd=repo, env=env, warmup=1)
    previous = 0.0
    say(f"  {'step (cumulative process wall time)':<72}{'median':>10}{'delta':>10}")
    for name, values in samples.items():
        value = statistics.median(values)
        say(f"  {name:<72}{value * 1000:8.1f}ms{(value - previous) * 1000:8.1f}ms")
        previous = value
    budget = statistics.median(samples[BASE]) * CLI_TARGET
    say(f"  budget at {CLI_TARGET:g}x: {budget * 1000:.1f}ms")

    reps = max(3, runs // 3)
    base_imports = importtime([sys.executable, "-c", "pass"], repo, env, reps)
    cli_imports = importtime(steps["the whole command"], repo, env, reps)
    extra = {k: v for k, v in cli_imports.items() if k not in base_imports}
    total_self = sum(v[0] for v in extra.values())
    ours = sum(v[0] for k, v in extra.items() if k.startswith("kodelyth_ecc"))
    say(
        f"  -X importtime, median of {reps}: {len(extra)} modules beyond `python -c pass`, "
        f"{total_self * 1000:.1f}ms of import time (self, summed): kodelyth_ecc's own "
        f"{ours * 1000:.1f}ms, the stdlib they pull in {(total_self - ours) * 1000:.1f}ms"
    )
    say("  heaviest by cumulative time (the tree below a module included):")
    for name, (own, cumulative, level) in sorted(extra.items(), key=lambda kv: -kv[1][1])[:14]:
        say(f"    {cumulative * 1000:7.1f}ms  (self {own * 1000:5.1f}ms)  {'  ' * level}{name}")
    say("  heaviest by self time:")
    for name, (own, _cumulative, _level) in sorted(extra.items(), key=lambda kv: -kv[1][0])[:8]:
        say(f"    {own * 1000:7.1f}ms  {name}")

    stats_path = sandbox.root / "profile.stats"
    run(
        [sys.executable, "-c", PROFILE_WRAPPER, *tail],
        cwd=repo,
        env={**env, "KBENCH_PROFILE": str(stats_path), "KBENCH_MODULES": ",".join(modules)},
    )
    import pstats

    stats = pstats.Stats(str(stats_path)).stats  # type: ignore[attr-defined]
    entries = [(key, value[2], value[3], value[1]) for key, value in stats.items()]
    total = max((cumulative for _, _, cumulative, _ in entries), default=0.0)
    say(
        f"  after the imports (cProfile, one run; its overhead inflates it): {total * 1000:.1f}ms;"
        " heaviest by own time:"
    )
    for (path, line, func), own, cumulative, calls in sorted(entries, key=lambda e: -e[1])[:10]:
        where = f"{Path(path).name}:{line}" if line else path
        say(
            f"    {own * 1000:7.1f}ms own {cumulative * 1000:7.1f}ms cum {calls:6d} calls  "
            f"{func} ({where})"
        )

    log_path = sandbox.root / "subprocs.json"
    run(
        [sys.executable, "-c", SUBPROCESS_WRAPPER, *tail],
        cwd=repo,
        env={**env, "KBENCH_SUBPROCS": str(log_path)},
    )
    census = [(list(a), float(t)) for a, t in json.loads(log_path.read_text())]
    say(
        f"  subprocesses: {len(census)}, {sum(t for _, t in census) * 1000:.1f}ms in all"
        + "".join(f"\n    {' '.join(a[:3])}  {t * 1000:.1f}ms" for a, t in census[:12])
    )
    return lines


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (~1 minute)")
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="print where status's and completion's time goes even if on target",
    )
    parser.add_argument(
        "--tmpdir", metavar="DIR", help="where the repo and worktrees go (default: system temp)"
    )
    add_keep_check(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if missing_programs("bench_daily"):
        return 2
    runs = 7 if args.quick else 21
    other_runs = 5 if args.quick else 11
    pairs = 1 if args.quick else 3
    report = Report()
    diagnosis: list[str] = []

    def body(sandbox: Sandbox) -> None:
        sandbox.activate()
        progress(
            f"kodelyth-ecc {__version__} daily-commands benchmark "
            f"({'quick' if args.quick else 'full'}): {versions('git', 'tmux')}, "
            f"{os.cpu_count()} CPUs, {platform.machine()}"
        )
        progress(f"sandbox {sandbox.root}, tmux socket {sandbox.socket}")
        repo, slugs = build_setting(sandbox)
        big_transcript(repo / ".orchestration" / SESSION / slugs[-1] / TRANSCRIPT_FILE)
        check_outputs(sandbox, repo, slugs)
        missed = bench_commands(repo, sandbox, slugs, runs, other_runs, report)
        bench_watch(repo, sandbox, pairs, report)
        if args.diagnose:
            missed += ["status", "status SESSION", "__complete sessions"]
        # The console script runs the same code: each command is diagnosed once.
        tails = commands_for(slugs)
        for label in dict.fromkeys(label.split(" [")[0] for label in missed):
            progress(f"diagnosing {label} ...")
            diagnosis.extend(["", *diagnose(label, tails[label], repo, sandbox, max(5, runs // 2))])

    load_before = os.getloadavg()[0]
    started = time.monotonic()
    code = run_in_sandbox(
        "bench_daily",
        lambda: Sandbox(keep=args.keep, tmpdir=args.tmpdir, drop_prefixes=("KODELYTH_",)),
        body,
    )
    if code:
        return code
    print_machine(
        f"kodelyth-ecc {__version__}, {versions('git', 'tmux')}, {os.cpu_count()} CPUs", load_before
    )
    print_report(report)
    print(f"\nfinished in {time.monotonic() - started:.0f}s")
    if diagnosis:
        print("\n".join(diagnosis))
    missed = print_missed(report)
    return 1 if missed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
