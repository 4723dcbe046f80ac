"""Benchmarks for ``kodelyth-ecc swarm`` (issue 2, "Tests and benchmarks").

Run with ``.venv/bin/python benchmarks/bench_swarm.py [--quick]``. It prints a
table of figures, each with its target and PASS/FAIL; it is not a test.

(a) Start-up: a dry-run of an 8-agent echo swarm
    (``python -m kodelyth_ecc swarm --task ... --agents 8 --harness echo``) in a
    temporary repo, as a multiple of ``python -c pass`` run by the same interpreter
    in the same environment (median of N runs each, interleaved). Target: <= 4x.
    When the target is missed (or with ``--diagnose``) it also prints where the
    time goes: interpreter vs imports vs work, the heaviest imports of the CLI path
    (from ``python -X importtime``) and every subprocess the dry-run starts.

(b) Execution: ``swarm --execute`` of 8 echo workers, from spawning the CLI until
    every worker's ``status.md`` says ``completed``, broken down into start-up
    (spawn -> ``execute_plan``), the steps of ``ExecutionResult.timings``
    (preflight, coordination, worktrees, tmux, launch) and workers (launch -> all
    completed). It is compared with the floor, the bare steps the tool cannot
    avoid, run by this script: 8 sequential ``git worktree add`` plus one tmux
    session of 8 panes each running ``true``, waited for until every pane is dead
    (remain-on-exit). Target: <= 1.5x the floor. Both run on generated repos of
    200 and 20,000 files (``--quick``: 200 only), torn down between runs.

Isolation: a private HOME, a private tmux server (``TMUX_TMPDIR`` in a short
directory under /tmp; this script's own tmux calls also name the socket with
``-S``), no ``TMUX``/``GIT_*`` variables from the caller, and a private
bytecode cache (``PYTHONPYCACHEPREFIX``), so the figures are for warm start-up as
users see it after the first run, whatever ``PYTHONDONTWRITEBYTECODE`` says.
Everything (temp dirs, tmux server, worktrees) is removed at exit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

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
from kodelyth_ecc.statusfile import parse_status

AGENTS = 8
TASK = "Review the checkout flow and tighten its error handling"
DRY_TARGET = 4.0
EXEC_TARGET = 1.5
POLL_S = 0.005
RUN_TIMEOUT_S = 120.0
SRC_DIR = Path(__file__).resolve().parent.parent / "src"

# Runs the real CLI entry point, recording when ``execute_plan`` is entered and
# left (CLOCK_MONOTONIC is system-wide, so the parent can compare) and its timings.
EXECUTE_WRAPPER = """\
import json, os, runpy, sys, time
import kodelyth_ecc.execute as _ex
_orig = _ex.execute_plan
def _timed(plan):
    enter = time.monotonic()
    result = _orig(plan)
    leave = time.monotonic()
    with open(os.environ["KBENCH_TIMINGS"], "w") as fh:
        json.dump({"enter": enter, "leave": leave, "timings": result.timings}, fh)
    return result
_ex.execute_plan = _timed
sys.argv[0] = "kodelyth_ecc"
runpy.run_module("kodelyth_ecc", run_name="__main__", alter_sys=True)
"""

# Runs the real CLI entry point, logging every subprocess.run call and its duration.
SUBPROCESS_WRAPPER = """\
import atexit, json, os, runpy, subprocess, sys, time
_log = []
_run = subprocess.run
def _timed(*args, **kwargs):
    start = time.perf_counter()
    try:
        return _run(*args, **kwargs)
    finally:
        argv = list(args[0] if args else kwargs.get("args", []))
        _log.append([argv, time.perf_counter() - start])
subprocess.run = _timed
def _dump():
    with open(os.environ["KBENCH_SUBPROCS"], "w") as fh:
        json.dump(_log, fh)
atexit.register(_dump)
sys.argv[0] = "kodelyth_ecc"
runpy.run_module("kodelyth_ecc", run_name="__main__", alter_sys=True)
"""


# --------------------------------------------------------------------------- repos


def make_repo(parent: Path, files: int, env: dict[str, str]) -> Path:
    """A repo of ``files`` small files in directories of 100, in one commit.

    The commit is written with ``git fast-import`` (one pack, no per-file hashing)
    and then checked out, which is much quicker than writing and adding the files.
    The worktrees of both the floor and the tool go next to it, in ``parent``.
    """
    repo = parent / "repo"
    repo.mkdir(parents=True)
    run(["git", "init", "--quiet", "--initial-branch=main"], cwd=repo, env=env)
    chunks: list[bytes] = []
    paths: list[str] = []
    for index in range(files):
        if index == 0:
            path, text = "README.md", f"# generated repo of {files} files\n"
        else:
            path = f"src/pkg{(index - 1) // 100:04d}/mod{index - 1:05d}.py"
            text = f'"""Generated module {index - 1}."""\n\nVALUE = {index - 1}\n'
        data = text.encode()
        chunks.append(b"blob\nmark :%d\ndata %d\n%s\n" % (index + 1, len(data), data))
        paths.append(path)
    message = b"generated"
    chunks.append(
        b"commit refs/heads/main\n"
        b"author Bench <bench@example.invalid> 1700000000 +0000\n"
        b"committer Bench <bench@example.invalid> 1700000000 +0000\n"
        b"data %d\n%s\n" % (len(message), message)
    )
    chunks.extend(b"M 100644 :%d %s\n" % (i + 1, p.encode()) for i, p in enumerate(paths))
    result = subprocess.run(
        ["git", "fast-import", "--quiet"],
        cwd=repo,
        env=env,
        input=b"".join(chunks) + b"\n",
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(f"git fast-import failed: {result.stderr.decode(errors='replace')}")
    run(["git", "reset", "--hard", "--quiet"], cwd=repo, env=env)
    return repo


def reset_repo(repo: Path, sandbox: Sandbox) -> None:
    """Tear down between runs: tmux server, worktrees, branches, coordination dir."""
    sandbox.kill_tmux()
    for entry in repo.parent.iterdir():
        if entry != repo and entry.is_dir():
            shutil.rmtree(entry)
    shutil.rmtree(repo / ".orchestration", ignore_errors=True)
    run(["git", "worktree", "prune"], cwd=repo, env=sandbox.env)
    branches = run(
        ["git", "for-each-ref", "--format=%(refname:short)", "refs/heads/"],
        cwd=repo,
        env=sandbox.env,
    ).stdout.split()
    extra = [b for b in branches if b != "main"]
    if extra:
        run(["git", "branch", "-D", "--quiet", *extra], cwd=repo, env=sandbox.env)


# --------------------------------------------------------------------------- timing


def timed(argv: Sequence[str], *, cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(
        list(argv),
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise BenchError(
            f"`{' '.join(argv)}` failed (exit {result.returncode}): "
            f"{result.stderr.decode(errors='replace').strip()[-800:]}"
        )
    return elapsed


def interleaved_medians(
    commands: dict[str, list[str]], runs: int, *, cwd: Path, env: dict[str, str], warmup: int = 2
) -> dict[str, float]:
    """Median wall time of each command, the commands taking turns to spread out drift."""
    for _ in range(warmup):
        for argv in commands.values():
            timed(argv, cwd=cwd, env=env)
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            samples[name].append(timed(argv, cwd=cwd, env=env))
    return {name: statistics.median(values) for name, values in samples.items()}


def median_dicts(runs: Sequence[dict[str, float]]) -> dict[str, float]:
    keys = list(dict.fromkeys(k for r in runs for k in r))
    return {k: statistics.median(r[k] for r in runs if k in r) for k in keys}


# --------------------------------------------------------------------------- (a) dry-run


def dry_run_argv() -> list[str]:
    return [
        sys.executable,
        "-m",
        "kodelyth_ecc",
        "swarm",
        "--task",
        TASK,
        "--agents",
        str(AGENTS),
        "--harness",
        "echo",
    ]


def check_dry_run(repo: Path, env: dict[str, str]) -> None:
    result = run(dry_run_argv(), cwd=repo, env=env)
    workers = sum(1 for line in result.stdout.splitlines() if line.strip().startswith("branch "))
    if workers != AGENTS or (repo / ".orchestration").exists():
        raise BenchError(f"the dry-run did not plan {AGENTS} workers without writing:\n{result}")


def bench_dry_run(repo: Path, sandbox: Sandbox, runs: int, report: Report) -> float:
    env = sandbox.env
    check_dry_run(repo, env)
    medians = interleaved_medians(
        {"base": [sys.executable, "-c", "pass"], "dry": dry_run_argv()}, runs, cwd=repo, env=env
    )
    ratio = medians["dry"] / medians["base"]
    report.heading(f"(a) dry-run start-up, {AGENTS} agents, median of {runs}")
    report.add(Row("python -c pass", medians["base"], indent=1))
    report.add(
        Row(
            f"swarm --agents {AGENTS} --harness echo (dry-run)",
            medians["dry"],
            ratio=ratio,
            target=DRY_TARGET,
            indent=1,
        )
    )
    script = Path(sys.executable).parent / "kodelyth-ecc"
    if script.is_file():
        argv = [str(script), *dry_run_argv()[3:]]
        via_script = interleaved_medians(
            {"base": [sys.executable, "-c", "pass"], "dry": argv},
            max(3, runs // 3),
            cwd=repo,
            env=env,
            warmup=1,
        )
        report.add(
            Row(
                "same via the kodelyth-ecc console script",
                via_script["dry"],
                ratio=via_script["dry"] / via_script["base"],
                note=f"info: no runpy (median of {max(3, runs // 3)})",
                indent=1,
            )
        )
    if sandbox.inherited_no_bytecode:
        cold_env = {k: v for k, v in env.items() if k != "PYTHONPYCACHEPREFIX"}
        cold_env["PYTHONDONTWRITEBYTECODE"] = "1"
        cold_runs = max(3, runs // 3)
        cold = interleaved_medians(
            {"base": [sys.executable, "-c", "pass"], "dry": dry_run_argv()},
            cold_runs,
            cwd=repo,
            env=cold_env,
            warmup=1,
        )
        report.add(
            Row(
                "same, PYTHONDONTWRITEBYTECODE=1 as inherited",
                cold["dry"],
                ratio=cold["dry"] / cold["base"],
                note=f"info: package bytecode never cached (median of {cold_runs})",
                indent=1,
            )
        )
    return ratio


def parse_importtime(stderr: str) -> dict[str, tuple[float, float, int]]:
    """module -> (self s, cumulative s, nesting level) from ``-X importtime`` output."""
    found: dict[str, tuple[float, float, int]] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        parts = line[len("import time:") :].split("|")
        if len(parts) != 3:
            continue
        name_field = parts[2].rstrip()
        level = (len(name_field) - len(name_field.lstrip()) - 1) // 2
        found[name_field.strip()] = (int(parts[0]) / 1e6, int(parts[1]) / 1e6, level)
    return found


def importtime(
    argv: Sequence[str], repo: Path, env: dict[str, str], runs: int
) -> dict[str, tuple[float, float, int]]:
    samples: list[dict[str, tuple[float, float, int]]] = []
    for _ in range(runs):
        result = subprocess.run(
            [argv[0], "-X", "importtime", *argv[1:]],
            cwd=repo,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        samples.append(parse_importtime(result.stderr))
    merged: dict[str, tuple[float, float, int]] = {}
    for name in samples[0]:
        rows = [s[name] for s in samples if name in s]
        merged[name] = (
            statistics.median(r[0] for r in rows),
            statistics.median(r[1] for r in rows),
            rows[0][2],
        )
    return merged


def diagnose_dry_run(repo: Path, sandbox: Sandbox, runs: int) -> list[str]:
    """Interpreter vs imports vs work, the heaviest imports, and the subprocesses."""
    env = sandbox.env
    lines: list[str] = [f"(a) where the dry-run's time goes (median of {runs} unless noted)"]
    say = lines.append
    steps = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "import kodelyth_ecc.main (argparse, CLI)": [
            sys.executable,
            "-c",
            "import kodelyth_ecc.main",
        ],
        "import kodelyth_ecc.commands.swarm (all imports)": [
            sys.executable,
            "-c",
            "import kodelyth_ecc.main, kodelyth_ecc.commands.swarm",
        ],
        "full dry-run": dry_run_argv(),
    }
    medians = interleaved_medians(steps, runs, cwd=repo, env=env, warmup=1)
    previous = 0.0
    say(f"  {'step (cumulative process wall time)':<52}{'median':>10}{'delta':>10}")
    for name, value in medians.items():
        say(f"  {name:<52}{value * 1000:8.1f}ms{(value - previous) * 1000:8.1f}ms")
        previous = value
    base = medians["python -c pass"]
    budget = base * DRY_TARGET
    say(
        f"  budget at {DRY_TARGET:g}x: {budget * 1000:.1f}ms; over by "
        f"{(medians['full dry-run'] - budget) * 1000:.1f}ms"
    )

    reps = max(3, runs // 3)
    base_imports = importtime([sys.executable, "-c", "pass"], repo, env, reps)
    cli_imports = importtime(dry_run_argv(), repo, env, reps)
    extra = {k: v for k, v in cli_imports.items() if k not in base_imports}
    total_self = sum(v[0] for v in extra.values())
    say(
        f"\n  -X importtime, median of {reps}: {len(extra)} modules beyond `python -c pass`, "
        f"{total_self * 1000:.1f}ms of import time (self, summed)"
    )
    say("  heaviest by cumulative time (the tree below a module included):")
    for name, (own, cumulative, level) in sorted(extra.items(), key=lambda kv: -kv[1][1])[:14]:
        say(f"    {cumulative * 1000:7.1f}ms  (self {own * 1000:5.1f}ms)  {'  ' * level}{name}")
    say("  heaviest by self time (the module's own top-level code):")
    for name, (own, _cumulative, _level) in sorted(extra.items(), key=lambda kv: -kv[1][0])[:10]:
        say(f"    {own * 1000:7.1f}ms  {name}")
    ours = sum(v[0] for k, v in extra.items() if k.startswith("kodelyth_ecc"))
    say(
        f"  kodelyth_ecc modules themselves: {ours * 1000:.1f}ms self; "
        f"stdlib pulled in: {(total_self - ours) * 1000:.1f}ms self"
    )

    log_path = sandbox.root / "subprocs.json"
    census_env = {**env, "KBENCH_SUBPROCS": str(log_path)}
    census_runs: list[list[tuple[list[str], float]]] = []
    for _ in range(3):
        run(
            [sys.executable, "-c", SUBPROCESS_WRAPPER, *dry_run_argv()[3:]],
            cwd=repo,
            env=census_env,
        )
        census_runs.append([(list(a), float(t)) for a, t in json.loads(log_path.read_text())])
    census = census_runs[-1]
    totals = [sum(t for _, t in c) for c in census_runs]
    say(
        f"\n  subprocesses started by the dry-run: {len(census)}, "
        f"{statistics.median(totals) * 1000:.1f}ms in total (median of 3):"
    )
    grouped: dict[str, list[float]] = {}
    for argv, seconds in census:
        key = " ".join(argv[:3])
        grouped.setdefault(key, []).append(seconds)
    for key, values in grouped.items():
        say(f"    {len(values):2d} x {key:<44} {sum(values) * 1000:7.1f}ms")
    return lines


# --------------------------------------------------------------------------- (b) execute


def floor_once(repo: Path, sandbox: Sandbox, tag: str) -> dict[str, float]:
    """8 ``git worktree add`` then one tmux session of 8 panes running ``true``."""
    env = sandbox.env
    start = time.monotonic()
    for index in range(AGENTS):
        path = repo.parent / f"floor-{tag}-{index}"
        run(
            ["git", "worktree", "add", "--quiet", "-b", f"floor-{tag}-{index}", str(path), "HEAD"],
            cwd=repo,
            env=env,
        )
    worktrees_done = time.monotonic()
    session = f"floor-{tag}"
    sequence: list[str] = [
        "start-server", ";",
        "set-option", "-gw", "remain-on-exit", "on", ";",
        "new-session", "-d", "-s", session, "-x", "200", "-y", "50", "true",
    ]  # fmt: skip
    for _ in range(AGENTS - 1):
        sequence += [";", "split-window", "-t", session, "true"]
        sequence += [";", "select-layout", "-t", session, "tiled"]
    sandbox.tmux(*sequence)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        dead = sandbox.tmux(
            "list-panes", "-s", "-t", f"={session}", "-F", "#{pane_dead}"
        ).stdout.split()
        if len(dead) == AGENTS and all(d == "1" for d in dead):
            break
        if time.monotonic() > deadline:
            raise BenchError(f"floor panes not dead after {RUN_TIMEOUT_S:g}s: {dead}")
        time.sleep(POLL_S)
    done = time.monotonic()
    return {
        "total": done - start,
        "worktrees": worktrees_done - start,
        "tmux": done - worktrees_done,
    }


VARIANTS = {
    "checkout.workers=0": "8 worktrees, git -c checkout.workers=0",
    "no-checkout+parallel": "8 worktrees, add --no-checkout + 8 reset at once",
}


def worktrees_variant(repo: Path, sandbox: Sandbox, tag: str, mode: str) -> float:
    """8 worktrees made another way than the floor's 8 sequential ``git worktree add``.

    (Running ``git worktree add`` itself concurrently is not an option: with git 2.39
    concurrent adds fail reading each other's half-made ``.git/worktrees/<name>``.)
    """
    env = sandbox.env
    paths = [repo.parent / f"var-{tag}-{index}" for index in range(AGENTS)]
    start = time.monotonic()
    for index, path in enumerate(paths):
        run(
            [
                "git",
                *(["-c", "checkout.workers=0"] if mode == "checkout.workers=0" else []),
                "worktree",
                "add",
                "--quiet",
                *(["--no-checkout"] if mode == "no-checkout+parallel" else []),
                "-b",
                f"var-{tag}-{index}",
                str(path),
                "HEAD",
            ],
            cwd=repo,
            env=env,
        )
    if mode == "no-checkout+parallel":
        procs = [
            subprocess.Popen(
                ["git", "reset", "--hard", "--quiet"],
                cwd=path,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            for path in paths
        ]
        sandbox.procs.extend(procs)
        for proc in procs:
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise BenchError(f"git reset --hard failed: {err.decode(errors='replace')}")
    return time.monotonic() - start


def worker_slugs() -> list[str]:
    return [slugify(name) for name in pick_agents(TASK, AGENTS)]


def check_process(proc: subprocess.Popen[bytes], deadline: float) -> None:
    code = proc.poll()
    if code is not None and code != 0:
        _, err = proc.communicate()
        raise BenchError(f"swarm --execute failed (exit {code}): {err.decode().strip()}")
    if time.monotonic() > deadline:
        raise BenchError(f"swarm --execute: workers not completed after {RUN_TIMEOUT_S:g}s")


def tool_once(repo: Path, sandbox: Sandbox, session: str) -> dict[str, float]:
    """``swarm --execute`` through the real CLI, until every worker is completed."""
    timings_path = sandbox.root / f"{session}.timings.json"
    env = {**sandbox.env, "KBENCH_TIMINGS": str(timings_path)}
    argv = [
        sys.executable, "-c", EXECUTE_WRAPPER,
        "swarm", "--task", TASK, "--agents", str(AGENTS), "--harness", "echo",
        "--session", session, "--execute",
    ]  # fmt: skip
    session_dir = repo / ".orchestration" / session
    status_files = [session_dir / slug / "status.md" for slug in worker_slugs()]

    start = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    sandbox.procs.append(proc)
    deadline = start + RUN_TIMEOUT_S
    all_started: float | None = None
    while True:
        # Until execute_plan has returned, only stat the timings file: reading and parsing
        # the status files every 5 ms would take CPU from git and tmux on a small machine.
        if not timings_path.exists():
            check_process(proc, deadline)
            time.sleep(POLL_S)
            continue
        states = []
        for path in status_files:
            try:
                states.append(parse_status(path.read_text(encoding="utf-8")).state)
            except OSError:
                states.append("absent")
        if all_started is None and all(s in ("running", "completed") for s in states):
            all_started = time.monotonic()
        if all(s == "completed" for s in states):
            done = time.monotonic()
            break
        if "failed" in states:
            raise BenchError(f"a worker failed: {dict(zip(worker_slugs(), states, strict=True))}")
        check_process(proc, deadline)
        time.sleep(POLL_S)
    _, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    if proc.returncode != 0:
        raise BenchError(f"swarm --execute exited {proc.returncode}: {err.decode().strip()}")

    from kodelyth_ecc.status import collect_status

    status = collect_status(session, str(repo / ".orchestration"))
    if not status.all_completed or len(status.workers) != AGENTS:
        raise BenchError(
            "collect_status disagrees: " + ", ".join(f"{w.slug}={w.state}" for w in status.workers)
        )
    recorded = json.loads(timings_path.read_text())
    timings: dict[str, float] = recorded["timings"]
    result = {"total": done - start, "startup": recorded["enter"] - start}
    result.update(timings)
    result["workers"] = done - recorded["leave"]
    if all_started is not None:
        result["all started"] = all_started - recorded["leave"]
        result["then all completed"] = done - all_started
    result["other"] = (recorded["leave"] - recorded["enter"]) - sum(timings.values())
    return result


def bench_execute(
    files: int, sandbox: Sandbox, reps: int, variant_reps: int, report: Report, warmup: bool
) -> None:
    parent = sandbox.root / f"r{files}"
    progress(f"generating a repo of {files} files ...")
    start = time.monotonic()
    repo = make_repo(parent, files, sandbox.env)
    progress(f"  done in {time.monotonic() - start:.1f}s")

    counter = iter(range(1_000_000))
    if warmup:
        for _ in range(1):
            floor_once(repo, sandbox, f"w{next(counter)}")
            reset_repo(repo, sandbox)
            tool_once(repo, sandbox, f"bench-w{next(counter)}")
            reset_repo(repo, sandbox)
    floors: list[dict[str, float]] = []
    tools: list[dict[str, float]] = []
    for rep in range(reps):
        progress(f"  {files} files: run {rep + 1}/{reps}")
        order: list[Callable[[], None]] = [
            lambda: floors.append(floor_once(repo, sandbox, f"f{next(counter)}")),
            lambda: tools.append(tool_once(repo, sandbox, f"bench-{next(counter)}")),
        ]
        for step in order if rep % 2 == 0 else reversed(order):
            step()
            reset_repo(repo, sandbox)
    floor = median_dicts(floors)
    tool = median_dicts(tools)

    report.heading(f"(b) --execute, {AGENTS} echo workers, {files} files, median of {reps}")
    report.add(Row("floor: 8 git worktree add + tmux 8 panes `true`", floor["total"], indent=1))
    report.add(Row("worktrees (sequential)", floor["worktrees"], indent=2))
    report.add(Row("tmux session, panes dead", floor["tmux"], indent=2))
    report.add(
        Row(
            "swarm --execute, spawn -> all completed",
            tool["total"],
            ratio=tool["total"] / floor["total"],
            target=EXEC_TARGET,
            indent=1,
        )
    )
    notes = {
        "startup": "spawn -> execute_plan (interpreter, imports, plan)",
        "preflight": "",
        "coordination": "",
        "worktrees": f"floor {floor['worktrees'] * 1000:.0f}ms",
        "tmux": "",
        "launch": "",
        "workers": "launch -> all completed",
    }
    for key, note in notes.items():
        if key in tool:
            report.add(Row(key, tool[key], note=note, indent=2))
    if "all started" in tool:
        report.add(
            Row(
                "all started",
                tool["all started"],
                note="launch -> every status.md past pending",
                indent=3,
            )
        )
        report.add(Row("then all completed", tool["then all completed"], indent=3))
    in_process = tool["total"] - tool["startup"]
    report.add(
        Row(
            "same without CLI start-up (execute_plan -> all completed)",
            in_process,
            ratio=in_process / floor["total"],
            note="info",
            indent=1,
        )
    )
    overhead = tool["total"] - floor["total"]
    report.notes.append(
        f"{files} files: tool - floor = {overhead * 1000:.0f}ms: start-up "
        f"{tool['startup'] * 1000:.0f}ms, preflight {tool.get('preflight', 0) * 1000:.0f}ms, "
        f"coordination {tool.get('coordination', 0) * 1000:.0f}ms, worktrees "
        f"{(tool.get('worktrees', 0) - floor['worktrees']) * 1000:+.0f}ms vs floor, "
        f"tmux+launch+workers {(tool.get('tmux', 0) + tool.get('launch', 0) + tool['workers'] - floor['tmux']) * 1000:+.0f}ms vs floor"  # noqa: E501
    )

    if variant_reps:
        progress(f"  {files} files: git worktree add variants")
        for mode, description in VARIANTS.items():
            values = []
            for _ in range(variant_reps):
                values.append(worktrees_variant(repo, sandbox, f"v{next(counter)}", mode))
                reset_repo(repo, sandbox)
            value = statistics.median(values)
            report.add(
                Row(
                    description,
                    value,
                    ratio=value / floor["worktrees"],
                    note=f"info: vs sequential {floor['worktrees'] * 1000:.0f}ms "
                    f"(median of {variant_reps})",
                    indent=2,
                )
            )
    shutil.rmtree(parent)


def bench_panes(sandbox: Sandbox, runs: int, report: Report) -> None:
    """What each worker pane pays before its gate: a fresh ``-I`` interpreter and the
    runner's imports (compare ``workers`` above, 8 of these on the machine's CPUs)."""
    bootstrap = f"import sys; sys.path.insert(0, {str(SRC_DIR)!r}); import kodelyth_ecc.runner"
    medians = interleaved_medians(
        {
            "bare": [sys.executable, "-I", "-c", "pass"],
            "runner": [sys.executable, "-I", "-c", bootstrap],
        },
        runs,
        cwd=sandbox.root,
        env=sandbox.env,
        warmup=1,
    )
    report.heading(f"(b) per-pane cost, median of {runs}")
    report.add(Row("python -I -c pass", medians["bare"], indent=1))
    report.add(
        Row(
            "python -I, import kodelyth_ecc.runner",
            medians["runner"],
            ratio=medians["runner"] / medians["bare"],
            note=f"info: every pane pays this; {AGENTS} panes on {os.cpu_count()} CPUs",
            indent=1,
        )
    )


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="fewer repetitions, only the 200-file repo"
    )
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="print the dry-run's import and subprocess breakdown even if on target",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir for inspection")
    parser.add_argument(
        "--tmpdir",
        metavar="DIR",
        help="where repos and worktrees go (default: the system temp dir); e.g. /dev/shm "
        "to take a slow or throttled disk out of the figures",
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if a target is missed (for CI)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for program in ("git", "tmux"):
        if shutil.which(program) is None:
            print(f"bench_swarm: {program} is not on PATH", file=sys.stderr)
            return 2
    dry_runs = 7 if args.quick else 21
    sizes = [(200, 2 if args.quick else 5, 0 if args.quick else 3)]
    if not args.quick:
        sizes.append((20_000, 2, 1))

    report = Report()
    diagnosis: list[str] = []

    def body(sandbox: Sandbox) -> None:
        sandbox.activate()
        progress(
            f"kodelyth-ecc {__version__} benchmark ({'quick' if args.quick else 'full'}): "
            f"{versions('git', 'tmux')}, {os.cpu_count()} CPUs, {platform.machine()}"
        )
        progress(f"sandbox {sandbox.root}, tmux socket {sandbox.socket}")
        small = make_repo(sandbox.root / "dry", 200, sandbox.env)
        progress(f"(a) dry-run: {dry_runs} interleaved runs ...")
        ratio = bench_dry_run(small, sandbox, dry_runs, report)
        if ratio > DRY_TARGET or args.diagnose:
            progress("(a) diagnosing the dry-run ...")
            diagnosis.extend(diagnose_dry_run(small, sandbox, max(5, dry_runs // 2)))
        shutil.rmtree(small.parent)
        for files, reps, variant_reps in sizes:
            bench_execute(files, sandbox, reps, variant_reps, report, warmup=files <= 1000)
        bench_panes(sandbox, 5 if args.quick else 11, report)

    load_before = os.getloadavg()[0]
    started = time.monotonic()
    code = run_in_sandbox("bench_swarm", lambda: Sandbox(keep=args.keep, tmpdir=args.tmpdir), body)
    if code:
        return code

    print_machine(
        f"kodelyth-ecc {__version__}, {versions('git', 'tmux')}, {os.cpu_count()} CPUs",
        load_before,
    )
    print_report(report)
    print(f"\nfinished in {time.monotonic() - started:.0f}s; poll interval {POLL_S * 1000:g}ms")
    if diagnosis:
        print()
        print("\n".join(diagnosis))
    missed = print_missed(report)
    return 1 if missed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
