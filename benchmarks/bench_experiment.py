"""Benchmark for ``kodelyth-ecc experiment`` (issue: "3 arms x 5 repeats x 2 echo workers
at --max-parallel 8, experiment overhead against the sum of its replays' own times").

Run with ``.venv/bin/python benchmarks/bench_experiment.py [--repeat N] [--sleep S]``. It
prints a table of figures, each with its target and PASS/FAIL; it is not a test.

The origin is a 2-worker echo session (``swarm --harness echo --agents a,b --execute``,
``status --wait``, ``session-export``) in a throwaway repo. The three arms differ in one
variable, ``KODELYTH_ROUTER_TIER=a|b|c``. Each scenario measures:

(a) Own times: the experiment's 15 runs (3 arms x ``--repeat`` 5) made one at a time
    by hand, as a user would: ``replay ORIGIN.json --execute --wait --export X.json``
    with the arm's variable exported. Each run's wall time t_i, and the CPU time it
    cost: this process's children (``RUSAGE_CHILDREN``: the CLI and the git and tmux
    clients it waits for) plus the tmux server's own and its reaped children's (the
    pane runners), read from ``/proc/<server>/stat``.

(b) The experiment: ``experiment ORIGIN.json --arm env=KODELYTH_ROUTER_TIER=a ...
    --repeat 5 --max-parallel 8 --out DIR --execute``, wall time T and CPU time, from
    spawning it until it exits; it must exit 0 with every run completed.

(c) The ideal schedule: the 15 own times packed onto floor(8 / 2) = 4 slots with no
    overhead: the LPT (longest first) list schedule's makespan, and the lower bound
    max(max t_i, sum t_i / 4). Target: T at most 1.2x the LPT makespan. As echo workers
    finish at once, an echo run's own time is nearly all CPU (interpreters, git, tmux):
    on a machine of N cores 4 of them cannot overlap 4-wide, so "ideal on this machine"
    is also shown: max(LPT makespan, sum of the runs' CPU time / N).

Scenario "echo" is the issue's (echo workers). Scenario "sleep" makes the workers take
time as agents do: every arm also sets ``launcher-cmd='sleep S; printf ...'`` (the
hand-made runs pass the same ``--launcher-cmd``); its workers write the arm's tier into
their handoffs, which are checked in every exported bundle. The 1.2x target is really
about this one: the experiment's overhead against waiting for agents.

Where T goes is read from the experiment's own files: each run's ``duration_s`` in
``experiment.json`` (start until its bundle is exported), the bundle's mtime (its end),
its log's mtime (when its replay child last wrote, i.e. exited). Diagnostics (``info``)
time the parts of one run: the replay CLI's dry-run (start-up and plan), ``replay
--execute`` alone (the experiment's child), one ``collect_status`` (what the scheduler
does per running run each ``scheduler.POLL_S`` once its child has exited), one export,
and the experiment's own dry-run (start-up, arm checks). Then one more experiment of the
last scenario's arms runs through a timing wrapper (``WRAPPER``): calls and seconds of
naming the runs' sessions, rewriting ``experiment.json``, starting and looking at runs,
``collect_status``, exports, and the passes of the scheduler's loop.

Isolation (``benchtable.Sandbox``): a private HOME, tmux server (``TMUX_TMPDIR``) and
runtime dir (``XDG_RUNTIME_DIR``: the sessions' environment files), no ``TMUX``,
``GIT_*`` or ``KODELYTH_*`` from the caller, a private bytecode cache warmed by one
unmeasured replay and a 1-run experiment. Between phases the tmux server is killed and
the worktrees, branches and sessions removed (``bench_swarm.reset_repo``); each phase
starts with one idle tmux session so every phase's runs find a server running. The temp
tree and the tmux server are removed at exit, including on Ctrl-C, SIGTERM and SIGHUP.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_swarm import make_repo, reset_repo
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
    run_in_sandbox,
    versions,
)

from kodelyth_ecc import __version__
from kodelyth_ecc.scheduler import POLL_S

AGENTS = ("a", "b")
TIERS = ("a", "b", "c")
TIER_VAR = "KODELYTH_ROUTER_TIER"
MAX_PARALLEL = 8
REPEAT = 5
SLEEP_S = 3.0
TARGET = 1.2
WAIT_TIMEOUT_S = 300
RUN_TIMEOUT_S = 900.0
KEEPALIVE = "kbench-keep"
# Runs in the sandbox's environment: what the scheduler does per poll and per export.
PROBE = """\
import json, resource, sys, time
from kodelyth_ecc.bundle import write_bundle
from kodelyth_ecc.export import export_bundle
from kodelyth_ecc.status import collect_status
session, coord, out, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def cpu():
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime
done = collect_status(session, coord).done
write_bundle(export_bundle(session, coord), out)
figures = {"done": done}
for name, step in (
    ("status", lambda: collect_status(session, coord)),
    ("export", lambda: write_bundle(export_bundle(session, coord), out)),
):
    wall, used = time.perf_counter(), cpu()
    for _ in range(n):
        step()
    figures[name] = [(time.perf_counter() - wall) / n, (cpu() - used) / n]
json.dump(figures, sys.stdout)
"""
# Runs the real CLI, timing (calls, seconds) the steps of an experiment where its
# overhead could hide: picking each run's session name (each candidate checked with
# tmux and git), rewriting experiment.json, starting and looking at runs (one
# collect_status per running run and pass once its replay has exited), exporting,
# and the passes of the scheduler's loop (each ends in a sleep of POLL_S).
WRAPPER = """\
import atexit, json, os, runpy, sys, time
import kodelyth_ecc.experiment as ex, kodelyth_ecc.freename as fn
import kodelyth_ecc.scheduler as sch, kodelyth_ecc.status as st
spent, entered = {}, {"main": time.monotonic()}
def timed(owner, attr):
    orig, key = getattr(owner, attr), attr.strip("_")
    def wrapper(*args, **kwargs):
        entered.setdefault(key, time.monotonic())
        start = time.perf_counter()
        try:
            return orig(*args, **kwargs)
        finally:
            step = spent.setdefault(key, [0, 0.0])
            step[0] += 1
            step[1] += time.perf_counter() - start
    setattr(owner, attr, wrapper)
for owner, attr in ((ex, "_free_session"), (fn, "name_is_free"), (ex, "write_experiment"),
                    (sch.LocalScheduler, "_start"), (sch.LocalScheduler, "_look"),
                    (st, "collect_status"), (sch, "_export"), (sch.LocalScheduler, "run")):
    timed(owner, attr)
class Clock:
    def __getattr__(self, name):
        return getattr(time, name)
    def sleep(self, seconds):
        step = spent.setdefault("sleep", [0, 0.0])
        step[0] += 1
        step[1] += seconds
        time.sleep(seconds)
sch.time = Clock()
def dump():
    with open(os.environ["KBENCH_SPENT"], "w") as fh:
        json.dump({"spent": spent, "entered": entered}, fh)
atexit.register(dump)
sys.argv[0] = "kodelyth_ecc"
runpy.run_module("kodelyth_ecc", run_name="__main__", alter_sys=True)
"""


@dataclass(frozen=True)
class Arm:
    tier: str
    launcher: str | None = None

    def experiment_arm(self) -> str:
        text = f"env={TIER_VAR}={self.tier}"
        if self.launcher is None:
            return text
        return f"{text} launcher-cmd={shlex.quote(self.launcher)}"

    def replay_flags(self) -> list[str]:
        return [] if self.launcher is None else ["--launcher-cmd", self.launcher]


@dataclass
class Timed:
    code: int
    out: str
    err: str
    wall: float
    cpu: float | None
    spawned: float  # time.time() at the spawn, to place the run's own file times
    mono: float  # time.monotonic() at the spawn, to place what a wrapper recorded


@dataclass
class Scenario:
    name: str
    arms: list[Arm]
    own: list[float] = field(default_factory=list)
    own_cpu: list[float] = field(default_factory=list)
    bundles: list[tuple[Path, str]] = field(default_factory=list)


# --------------------------------------------------------------------------- measuring


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (not gone, not a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class Bench:
    """The sandbox, the throwaway repo and the origin bundle; runs the real CLI."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        runtime = sandbox.root / "run"
        runtime.mkdir(mode=0o700)
        sandbox.env.update(XDG_RUNTIME_DIR=str(runtime), TMPDIR=str(runtime))
        self.out = sandbox.root / "out"
        self.out.mkdir()
        self.repo = make_repo(sandbox.root / "w", 1, sandbox.env)
        self.coord = self.repo / ".orchestration"
        self.origin = self.out / "origin.bundle.json"
        self.server: int | None = None
        self.counter = 0

    def fresh(self) -> None:
        """No sessions, worktrees or branches; a tmux server with one idle session."""
        self.stop_server()
        reset_repo(self.repo, self.sandbox)
        self.sandbox.tmux("new-session", "-d", "-s", KEEPALIVE, "sleep 86400")
        pid = self.sandbox.tmux("display-message", "-p", "-t", KEEPALIVE, "#{pid}").stdout
        self.server = int(pid.strip())

    def stop_server(self) -> None:
        """Kill our tmux server and wait (bounded) until it is gone. tmux 3.3a leaves its
        socket behind, and ``Sandbox.kill_tmux`` would wait 5 s for it: remove it once
        the server can no longer unlink it itself."""
        if self.server is None:
            return
        self.sandbox.tmux("kill-server", check=False)
        deadline = time.monotonic() + 5
        while running(self.server) and time.monotonic() < deadline:
            time.sleep(0.01)
        if not running(self.server):
            Path(self.sandbox.socket).unlink(missing_ok=True)
        self.server = None

    def cpu(self) -> float | None:
        """CPU seconds so far of our reaped children and of the tmux server (with its
        reaped panes); None where /proc cannot tell."""
        own = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            stat = Path(f"/proc/{self.server}/stat").read_text()
        except (OSError, TypeError):
            return None
        ticks = sum(int(v) for v in stat.rsplit(")", 1)[1].split()[11:15])
        return own.ru_utime + own.ru_stime + ticks / os.sysconf("SC_CLK_TCK")

    def cli(
        self, *args: str, env: dict[str, str] | None = None, wrapper: str | None = None
    ) -> Timed:
        """The real CLI, as the experiment's children run it (or through ``wrapper``);
        it must exit 0."""
        before = self.cpu()
        spawned, mono = time.time(), time.monotonic()
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, *(["-c", wrapper] if wrapper else ["-m", "kodelyth_ecc"]), *args],
            cwd=self.repo,
            env=env or self.sandbox.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.sandbox.procs.append(proc)
        try:
            out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"`{' '.join(args[:2])}` ran over {RUN_TIMEOUT_S:g}s") from exc
        wall = time.perf_counter() - start
        after = self.cpu()
        cpu = None if before is None or after is None else after - before
        text, errors = out.decode(errors="replace"), err.decode(errors="replace")
        timed = Timed(proc.returncode, text, errors, wall, cpu, spawned, mono)
        if timed.code != 0:
            raise BenchError(
                f"`kodelyth-ecc {' '.join(args[:2])}` exited {timed.code}: "
                f"{(timed.err or timed.out).strip()[-1500:]}"
            )
        return timed

    def env_for(self, arm: Arm) -> dict[str, str]:
        return {**self.sandbox.env, TIER_VAR: arm.tier}

    def make_origin(self) -> None:
        self.fresh()
        agents = ",".join(AGENTS)
        self.cli("swarm", "--task", "bench", "--harness", "echo", "--agents", agents,
                 "--session", "orig", "--execute")  # fmt: skip
        self.cli("status", "orig", "--wait", "--timeout", str(WAIT_TIMEOUT_S))
        self.cli("session-export", "orig", "--out", str(self.origin))

    def replay(self, arm: Arm, *, wait: bool = True) -> tuple[Timed, Path]:
        """One hand-made run: ``replay ORIGIN --execute --wait --export X``."""
        self.counter += 1
        bundle = self.out / f"hand-{self.counter:03d}.bundle.json"
        args = ["replay", str(self.origin), "--execute", *arm.replay_flags()]
        if wait:
            args += ["--wait", "--timeout", str(WAIT_TIMEOUT_S), "--export", str(bundle)]
        return self.cli(*args, env=self.env_for(arm)), bundle

    def experiment(
        self,
        arms: Sequence[Arm],
        repeat: int,
        *,
        execute: bool = True,
        env: dict[str, str] | None = None,
        wrapper: str | None = None,
    ) -> tuple[Timed, Path]:
        self.counter += 1
        directory = self.out / f"experiment-{self.counter:03d}"
        args = ["experiment", str(self.origin)]
        for arm in arms:
            args += ["--arm", arm.experiment_arm()]
        args += ["--repeat", str(repeat), "--max-parallel", str(MAX_PARALLEL)]
        args += ["--out", str(directory), *(["--execute"] if execute else [])]
        return self.cli(*args, env=env, wrapper=wrapper), directory


# --------------------------------------------------------------------------- schedules


def lpt_makespan(times: Sequence[float], slots: int) -> float:
    """Longest first, each onto the least loaded slot."""
    loads = [0.0] * slots
    for t in sorted(times, reverse=True):
        loads[loads.index(min(loads))] += t
    return max(loads)


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def read_runs(directory: Path, expected: int) -> list[dict[str, Any]]:
    """experiment.json's runs, checked: done, ``expected`` runs, all completed."""
    doc = json.loads((directory / "experiment.json").read_text(encoding="utf-8"))
    runs: list[dict[str, Any]] = doc["runs"]
    states = [r["state"] for r in runs]
    if doc["state"] != "done" or len(runs) != expected or set(states) != {"completed"}:
        raise BenchError(f"{directory}: state {doc['state']}, runs {states}")
    return runs


@dataclass
class Phases:
    """Where the experiment's wall time went, from its files."""

    startup: float  # spawn until the first run started
    span: float  # first start until the last run was exported
    tail: float  # then until the experiment exited
    durations: list[float]  # each run: start until its bundle was written
    child: list[float]  # each run: start until its replay child last wrote (exited)
    gaps: list[float]  # each freed slot: a run's end until the next run started


def phases(directory: Path, runs: Sequence[dict[str, Any]], timed: Timed, slots: int) -> Phases:
    ends = [(directory / r["bundle"]).stat().st_mtime for r in runs]
    durations = [float(r["duration_s"]) for r in runs]
    starts = [end - d for end, d in zip(ends, durations, strict=True)]
    logs = [(directory / r["log"]).stat().st_mtime for r in runs]
    gaps = []
    for start in sorted(starts)[slots:]:
        freed = [end for end in ends if end <= start + 0.001]
        if freed:
            gaps.append(max(0.0, start - max(freed)))
    return Phases(
        startup=min(starts) - timed.spawned,
        span=max(ends) - min(starts),
        tail=timed.spawned + timed.wall - max(ends),
        durations=durations,
        child=[log - start for log, start in zip(logs, starts, strict=True)],
        gaps=gaps,
    )


def agents_time(bundle: Path) -> float:
    """The run's slowest worker's own duration (its runner's, from status.md)."""
    workers = json.loads(bundle.read_text(encoding="utf-8"))["workers"]
    return max(float(w.get("duration_s") or 0.0) for w in workers)


def check_tiers(bundles: Sequence[tuple[Path, str]]) -> str:
    """Every bundle's handoffs name the tier its arm set: the arm's variable reached the
    agents."""
    wrong = []
    for path, tier in bundles:
        workers = json.loads(path.read_text(encoding="utf-8"))["workers"]
        if len(workers) != len(AGENTS) or not all(
            f"tier={tier}" in str(w.get("handoff")) for w in workers
        ):
            wrong.append(path.name)
    if wrong:
        return f"MISMATCH: the arm's {TIER_VAR} did not reach the agents in {', '.join(wrong)}"
    return f"checked: each of the {len(bundles)} bundles' handoffs names its arm's {TIER_VAR}"


# --------------------------------------------------------------------------- scenarios


def s(seconds: float) -> str:
    return f"{seconds:.2f}s"


def run_scenario(bench: Bench, sc: Scenario, repeat: int, report: Report) -> None:
    n = len(sc.arms) * repeat
    bench.fresh()
    progress(f"{sc.name}: {n} hand-made replays, one at a time ...")
    for rep in range(repeat):
        for arm in sc.arms:
            timed, bundle = bench.replay(arm)
            sc.own.append(timed.wall)
            if timed.cpu is not None:
                sc.own_cpu.append(timed.cpu)
            sc.bundles.append((bundle, arm.tier))
        progress(f"  repeat {rep + 1}/{repeat}: last run {timed.wall:.2f}s")
    bench.fresh()
    progress(f"{sc.name}: the experiment ({n} runs, --max-parallel {MAX_PARALLEL}) ...")
    exp, directory = bench.experiment(sc.arms, repeat)
    runs = read_runs(directory, n)
    progress(f"  experiment took {exp.wall:.2f}s, exit {exp.code}, {n}/{n} completed")
    slots = MAX_PARALLEL // len(AGENTS)
    sc.bundles += [(directory / r["bundle"], sc.arms[r["arm_index"] - 1].tier) for r in runs]
    report_scenario(sc, exp, phases(directory, runs, exp, slots), slots, repeat, report)


def report_scenario(
    sc: Scenario, exp: Timed, ph: Phases, slots: int, repeat: int, report: Report
) -> None:
    own, total = sc.own, sum(sc.own)
    lpt = lpt_makespan(own, slots)
    bound = max(*own, total / slots)
    cpu_total = sum(sc.own_cpu) if len(sc.own_cpu) == len(own) else None
    n_cores = cores()
    report.heading(
        f"{sc.name}: {len(sc.arms)} arms x {repeat} repeats x {len(AGENTS)} workers, "
        f"--max-parallel {MAX_PARALLEL} ({slots} runs at once), {n_cores} cores"
    )
    cpu_note = f", CPU {cpu_total:.1f}s" if cpu_total is not None else ""
    report.add(
        Row(
            f"(a) own times: {len(own)} replays by hand, sum",
            s(total),
            f"median {statistics.median(own):.2f}s, {min(own):.2f}-{max(own):.2f}s{cpu_note}",
            indent=1,
        )
    )
    report.add(Row(f"(c) ideal schedule: LPT on {slots} slots", s(lpt), indent=1))
    report.add(Row(f"lower bound max(max t, sum t / {slots})", s(bound), indent=2))
    machine = None
    if cpu_total is not None:
        machine = max(lpt, cpu_total / n_cores)
        report.add(
            Row(
                f"ideal on this machine: max(LPT, CPU / {n_cores})",
                s(machine),
                f"CPU / {n_cores} cores = {cpu_total / n_cores:.2f}s",
                indent=2,
            )
        )
    exp_cpu = f", CPU {exp.cpu:.1f}s" if exp.cpu is not None else ""
    report.add(
        Row(
            "(b) experiment --execute: T",
            s(exp.wall),
            f"exit {exp.code}, {len(own)}/{len(own)} completed{exp_cpu}",
            indent=1,
        )
    )
    report.add(
        Row("T vs the ideal schedule (the target)", "", ratio=exp.wall / lpt, target=TARGET,
            indent=2)
    )  # fmt: skip
    report.add(Row("T vs the lower bound", "", f"{exp.wall / bound:.2f}x", indent=2))
    if machine is not None:
        report.add(
            Row("T vs the ideal on this machine", "", ratio=exp.wall / machine, target=TARGET,
                indent=2)
        )  # fmt: skip
    report.add(Row("where T goes", indent=1))
    report.add(Row("start-up: spawn until the first run starts", s(ph.startup), indent=2))
    report.add(Row("runs: first start until the last export", s(ph.span), indent=2))
    report.add(Row("exit: last export until the process ends", s(ph.tail), indent=2))
    agents = [agents_time(path) for path, _ in sc.bundles]
    besides_hand = [t - a for t, a in zip(own, agents[: len(own)], strict=True)]
    besides_exp = [d - a for d, a in zip(ph.durations, agents[len(own) :], strict=True)]
    rest = [d - c for d, c in zip(ph.durations, ph.child, strict=True)]
    median = statistics.median
    inside = sum(ph.durations)
    sums = f"sum {inside:.1f}s vs {total:.1f}s by hand (x{inside / total:.2f})"
    by_hand = f"by hand {median(besides_hand):.2f}s; the agents {median(agents):.2f}s"
    for label, value, note, indent in (
        ("each run in the experiment (median)", median(ph.durations), sums, 2),
        ("besides the agents (run - its slowest worker)", median(besides_exp), by_hand, 3),
        ("its replay child (until it exits)", median(ph.child), "", 3),
        ("then workers' end + poll + export", median(rest), "", 3),
    ):
        report.add(Row(label, s(value), note, indent=indent))
    if ph.gaps:
        gaps = f"median of {len(ph.gaps)}; {sum(ph.gaps):.2f}s in all, {sum(ph.gaps) / slots:.2f}s"
        report.add(
            Row("a freed slot idle until the next start", s(median(ph.gaps)), f"{gaps} per slot",
                indent=3)
        )  # fmt: skip
    idle = slots * ph.span - sum(ph.durations)
    report.add(
        Row("slot time left idle in the runs' span", s(idle),
            f"{slots} x span - sum of runs = {idle / (slots * ph.span):.0%} of it", indent=3)
    )  # fmt: skip
    verdict = "meets" if exp.wall / lpt <= TARGET else "misses"
    line = f"{sc.name}: T/ideal = {exp.wall / lpt:.2f}x: {verdict} the {TARGET:g}x target"
    if machine is not None:
        ok = "meets" if exp.wall / machine <= TARGET else "misses"
        line += f"; against the ideal on this machine {exp.wall / machine:.2f}x ({ok} it)"
    report.notes.append(line)


def diagnose(bench: Bench, report: Report, repeat: int, last: Scenario | None) -> None:
    """The parts of one echo run, the experiment's fixed cost, and one more experiment
    of the last scenario's arms through the timing wrapper."""
    bench.fresh()
    arm = Arm(TIERS[0])
    progress("diagnostics: the parts of one run ...")
    dry = [bench.cli("replay", str(bench.origin), env=bench.env_for(arm)).wall for _ in range(3)]
    starts = [bench.replay(arm, wait=False)[0] for _ in range(3)]
    execute = [timed.wall for timed in starts]
    # "started orig-replay-N (replay of orig): ..."
    session = starts[-1].out.split()[1]
    bench.cli("status", session, "--wait", "--timeout", str(WAIT_TIMEOUT_S))
    result = subprocess.run(
        [sys.executable, "-c", PROBE, session, str(bench.coord), str(bench.out / "probe.json"),
         "20"],
        cwd=bench.repo, env=bench.sandbox.env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise BenchError(f"the probe failed: {result.stderr.strip()[-800:]}")
    figures = json.loads(result.stdout)
    arms = [Arm(t) for t in TIERS]
    plan = [bench.experiment(arms, repeat, execute=False)[0].wall for _ in range(2)]
    report.heading("info: the parts of one echo run (medians)")
    report.add(Row("replay ORIGIN (dry-run: start-up + plan)", s(statistics.median(dry)), indent=1))
    report.add(
        Row("replay ORIGIN --execute (the experiment's child)", s(statistics.median(execute)),
            indent=1)
    )  # fmt: skip
    wall, cpu = figures["status"]
    report.add(
        Row("collect_status, one poll", f"{wall * 1000:.1f}ms",
            f"CPU {cpu * 1000:.1f}ms; the scheduler makes one per running run every "
            f"{POLL_S * 1000:g}ms once its child has exited", indent=1)
    )  # fmt: skip
    wall, cpu = figures["export"]
    report.add(Row("export_bundle + write_bundle", f"{wall * 1000:.1f}ms",
                   f"CPU {cpu * 1000:.1f}ms", indent=1))  # fmt: skip
    report.add(
        Row(f"experiment dry-run, {len(arms)} arms x {repeat}", s(statistics.median(plan)),
            "its own start-up, loading the origin, checking the arms", indent=1)
    )  # fmt: skip
    if last is not None:
        diagnose_experiment(bench, last, repeat, report)


def diagnose_experiment(bench: Bench, sc: Scenario, repeat: int, report: Report) -> None:
    """One experiment of ``sc``'s arms through ``WRAPPER``: where its own time goes."""
    arms = sc.arms
    bench.fresh()
    progress(f"diagnostics: one {sc.name} experiment through a timing wrapper ...")
    spent_file = bench.out / "spent.json"
    env = {**bench.sandbox.env, "KBENCH_SPENT": str(spent_file)}
    timed, directory = bench.experiment(arms, repeat, env=env, wrapper=WRAPPER)
    read_runs(directory, len(arms) * repeat)
    data = json.loads(spent_file.read_text(encoding="utf-8"))
    spent: dict[str, list[float]] = data["spent"]
    entered: dict[str, float] = data["entered"]

    def step(key: str) -> tuple[int, float]:
        calls, seconds = spent.get(key, [0, 0.0])
        return int(calls), seconds

    runs = len(arms) * repeat
    report.heading(
        f"info: inside one {sc.name} experiment of {runs} runs (T {timed.wall:.2f}s), "
        "through a timing wrapper"
    )
    report.add(Row("spawn until main (interpreter)", s(entered["main"] - timed.mono), indent=1))
    report.add(
        Row("main until the scheduler starts", s(entered["run"] - entered["main"]),
            "arguments, the origin, arm checks, the directory, the runs' names", indent=1)
    )  # fmt: skip
    calls, seconds = step("free_session")
    checks, checked = step("name_is_free")
    report.add(
        Row(f"_free_session x{calls}", s(seconds),
            f"{checks} name checks ({checked / max(checks, 1) * 1000:.1f}ms each: "
            "tmux has-session, git for-each-ref)", indent=2)
    )  # fmt: skip
    calls, seconds = step("write_experiment")
    report.add(Row(f"write_experiment x{calls} (in all)", s(seconds), indent=2))
    calls, seconds = step("run")
    report.add(Row("LocalScheduler.run", s(seconds), indent=1))
    sleeps, slept = step("sleep")
    report.add(Row(f"passes of its loop: {sleeps} sleeps of POLL_S", s(slept), indent=2))
    for key, what in (
        ("start", "_start (spawn the replay child)"),
        ("look", "_look (poll, status, export)"),
        ("collect_status", "collect_status"),
        ("export", "_export"),
    ):
        calls, seconds = step(key)
        indent = 3 if key in ("collect_status", "export") else 2
        report.add(Row(f"{what} x{calls}", s(seconds), indent=indent))


def warm_up(bench: Bench) -> None:
    """The private bytecode cache starts empty: one unmeasured replay and a 1-run
    experiment compile what the measured runs import."""
    bench.fresh()
    bench.replay(Arm(TIERS[0]))
    read_runs(bench.experiment([Arm(TIERS[0])], 1)[1], 1)


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    number = {"--repeat": (int, REPEAT, "N", "runs per arm"),
              "--sleep": (float, SLEEP_S, "S", "seconds each worker of the sleep scenario "
                          "takes; 0 skips that scenario")}  # fmt: skip
    for flag, (kind, default, metavar, what) in number.items():
        parser.add_argument(
            flag, type=kind, default=default, metavar=metavar, help=f"{what} (default {default:g})"
        )
    for flag, what in (("--no-echo", "skip the echo scenario"),
                       ("--no-diagnose", "skip timing the parts of one run")):  # fmt: skip
        parser.add_argument(flag, action="store_true", help=what)
    add_keep_check(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if missing_programs("bench_experiment"):
        return 2
    if not 1 <= args.repeat <= 100 or args.sleep < 0:
        print("bench_experiment: --repeat must be 1-100 and --sleep >= 0", file=sys.stderr)
        return 2
    report = Report(value_title="time")
    tier_notes: list[str] = []

    def body(sandbox: Sandbox) -> None:
        progress(
            f"kodelyth-ecc {__version__} experiment benchmark: {versions('git', 'tmux')}, "
            f"{cores()} cores; sandbox {sandbox.root}"
        )
        bench = Bench(sandbox)
        progress("origin: a 2-worker echo swarm, exported ...")
        bench.make_origin()
        progress("warm-up: one replay and a 1-run experiment, unmeasured ...")
        warm_up(bench)
        scenarios = []
        if not args.no_echo:
            scenarios.append(Scenario("echo", [Arm(t) for t in TIERS]))
        if args.sleep > 0:
            launcher = (
                f"sleep {args.sleep:g}; printf 'tier=%s\\n' \"${TIER_VAR}\" >> {{handoff_file_sh}}"
            )
            scenarios.append(Scenario(f"sleep {args.sleep:g}s", [Arm(t, launcher) for t in TIERS]))
        for sc in scenarios:
            run_scenario(bench, sc, args.repeat, report)
            if sc.arms[0].launcher is not None:
                tier_notes.append(f"{sc.name}: {check_tiers(sc.bundles)}")
        if not args.no_diagnose:
            diagnose(bench, report, args.repeat, scenarios[-1] if scenarios else None)

    load_before = os.getloadavg()[0]
    started = time.monotonic()
    code = run_in_sandbox(
        "bench_experiment",
        lambda: Sandbox(args.keep, prefix="kodelyth-bench-exp-", drop_prefixes=("KODELYTH_",)),
        body,
    )
    if code:
        return code
    report.notes += tier_notes
    print_machine(
        f"kodelyth-ecc {__version__}, {versions('git', 'tmux')}, {cores()} cores", load_before
    )
    print_report(report)
    print(f"\nfinished in {time.monotonic() - started:.0f}s; scheduler.POLL_S {POLL_S:g}s")
    missed = print_missed(report)
    return 1 if missed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
