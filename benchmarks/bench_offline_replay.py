"""Benchmark for ``kodelyth-ecc replay --offline`` (issue 11, "Tests and benchmarks").

Run with ``.venv/bin/python benchmarks/bench_offline_replay.py [--quick]``. It prints a
table of figures, each with its target and PASS/FAIL; it is not a test.

The model is ``tests/providers/anthropic.py``'s ``AnthropicStub`` (a scripted Anthropic
Messages API on 127.0.0.1) made slow: it sleeps ``--latency`` seconds (default 2) before
answering each request, as a real provider takes its time per turn. Its script is one
``Bash`` tool call, then the answer: 2 model turns per worker. The agent is
``tests/standin_agent.py``, a real program that speaks the Messages API to
``$ANTHROPIC_BASE_URL`` and runs the model's Bash calls, started through a custom
launcher (``--launcher-cmd``). Each repetition (3; ``--quick``: 1) measures:

(a) The recorded run: a 2-worker swarm (``swarm --agents alpha,beta --launcher-cmd ...
    --execute``, which puts the session's recording proxy between the workers and the
    stub) from spawning the CLI until ``status --wait`` returns, both run back to back.
    The session is then exported (``session-export``), which carries the recording,
    the stub is stopped and ``ANTHROPIC_BASE_URL`` points at a closed port.

(b) The offline run: ``replay BUNDLE --offline --launcher-cmd ... --execute --wait``,
    from spawning it until it returns (every worker done), every model request
    answered from the recording. Its exit status must be 0 and both workers
    ``completed``.

Target: the offline run's wall time (median) at most 0.3x the recorded run's (median).
The model latency the recording holds (turns x latency) is shown as a note: the
recorded run cannot be quicker than one worker's turns, the offline run need not pay
any of it.

Isolation: a private HOME (which holds the recording key), a private tmux server
(``TMUX_TMPDIR`` in a short directory under /tmp), no ``TMUX``/``GIT_*``/``KODELYTH_*``/
``XDG_STATE_HOME`` or HTTP proxy variables from the caller (``NO_PROXY`` covers
127.0.0.1), a fake API key, and a private bytecode cache (``PYTHONPYCACHEPREFIX``),
warmed by one unmeasured recorded run and offline replay with no latency. Every
session is torn down (``teardown --force``) after use; the temp tree and the tmux
server are removed at exit, including on Ctrl-C, SIGTERM and SIGHUP.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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

REPO_ROOT = Path(__file__).resolve().parent.parent
SRC_DIR = REPO_ROOT / "src"
# ``tests`` is a package: its provider stubs are importable from the repo root.
sys.path.insert(0, str(REPO_ROOT))

from tests.providers.anthropic import AnthropicStub  # noqa: E402
from tests.providers.server import Request, Response  # noqa: E402

from kodelyth_ecc import __version__  # noqa: E402

STANDIN = REPO_ROOT / "tests" / "standin_agent.py"
LAUNCHER = (
    f"{shlex.quote(sys.executable)} {shlex.quote(str(STANDIN))}"
    " < {task_file_sh} >> {handoff_file_sh}"
)
AGENTS = ("alpha", "beta")
TASK = "bench"
ANSWER = "## Summary\nWrote hello.txt.\n\n## Files Changed\n- hello.txt"
TOOL_CALL = ("Bash", {"command": "printf 'hi\\n' > hello.txt && cat hello.txt"})
TURNS_PER_WORKER = 2
LATENCY_S = 2.0
TARGET = 0.3
WAIT_TIMEOUT_S = 300
RUN_TIMEOUT_S = 360.0
FAKE_KEY = "sk-ant-bench-0000000000000000-fake"
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


class SlowStub(AnthropicStub):
    """``AnthropicStub`` that takes ``latency`` seconds before answering each request."""

    def __init__(self, *, latency: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.latency = latency

    def respond(self, request: Request) -> Response:
        time.sleep(self.latency)
        return super().respond(request)


# --------------------------------------------------------------------------- sandbox


def make_sandbox(keep: bool) -> Sandbox:
    """The shared sandbox, also without the caller's state dir, provider and HTTP proxy
    settings: the workers talk to the stub or the recording, with a fake key."""
    return Sandbox(
        keep,
        prefix="kodelyth-bench-replay-",
        drop=("XDG_STATE_HOME", *PROXY_VARS),
        drop_prefixes=("KODELYTH_",),
        extra_env={
            "PYTHONPATH": str(SRC_DIR),
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "ANTHROPIC_API_KEY": FAKE_KEY,
            "ANTHROPIC_BASE_URL": closed_port_url(),
        },
    )


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (a port just freed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def cli(
    sandbox: Sandbox, repo: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[int, str, str, float]:
    """Run the real CLI; its exit status, stdout, stderr and wall time."""
    argv = [sys.executable, "-m", "kodelyth_ecc", *args]
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        cwd=repo,
        env=env or sandbox.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    sandbox.procs.append(proc)
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"`{' '.join(args[:2])}` still running after {RUN_TIMEOUT_S:g}s") from exc
    elapsed = time.perf_counter() - start
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"), elapsed


def cli_ok(
    sandbox: Sandbox, repo: Path, session: str, *args: str, env: dict[str, str] | None = None
) -> float:
    """``cli`` that must exit 0; else an error with the session's worker status files."""
    code, out, err, elapsed = cli(sandbox, repo, *args, env=env)
    if code != 0:
        raise BenchError(
            f"`kodelyth-ecc {' '.join(args[:2])}` exited {code}: "
            f"{(err or out).strip()[-1500:]}\n{worker_report(repo, session)}"
        )
    return elapsed


def make_repo(parent: Path, env: dict[str, str]) -> Path:
    repo = parent / "repo"
    repo.mkdir(parents=True)
    run(["git", "init", "--quiet", "--initial-branch=main"], cwd=repo, env=env)
    (repo / "README.md").write_text("# offline replay benchmark\n", encoding="utf-8")
    run(["git", "add", "README.md"], cwd=repo, env=env)
    run(["git", "commit", "--quiet", "--no-gpg-sign", "-m", "initial"], cwd=repo, env=env)
    return repo


# --------------------------------------------------------------------------- sessions


def worker_report(repo: Path, session: str) -> str:
    """Every worker's status.md of a session, for an error message."""
    session_dir = repo / ".orchestration" / session
    parts = []
    for slug in AGENTS:
        path = session_dir / slug / "status.md"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            text = "(no status.md)"
        parts.append(f"--- {slug}/status.md\n{text.strip()}")
    return "\n".join(parts)


def check_completed(sandbox: Sandbox, repo: Path, session: str) -> None:
    code, out, err, _ = cli(sandbox, repo, "status", session, "--json")
    if code not in (0, 1):
        raise BenchError(f"status {session} --json exited {code}: {err.strip()}")
    workers = json.loads(out)["session"]["workers"]
    states = {str(w.get("slug")): str(w.get("state")) for w in workers}
    if len(workers) != len(AGENTS) or any(s != "completed" for s in states.values()):
        raise BenchError(
            f"{session}: workers not all completed: {states}\n{worker_report(repo, session)}"
        )


def teardown(sandbox: Sandbox, repo: Path, session: str) -> None:
    cli_ok(sandbox, repo, session, "teardown", session, "--force")


def recorded_once(
    sandbox: Sandbox, repo: Path, session: str, bundle: Path, latency: float
) -> dict[str, float]:
    """A recorded swarm against the slow stub, until ``status --wait`` returns; exported."""
    with SlowStub(
        latency=latency, answer=ANSWER, tool_call=TOOL_CALL, lifetime_s=RUN_TIMEOUT_S
    ) as stub:
        env = {**sandbox.env, "ANTHROPIC_BASE_URL": stub.base_url}
        swarm = cli_ok(
            sandbox, repo, session,
            "swarm", "--task", TASK, "--agents", ",".join(AGENTS),
            "--launcher-cmd", LAUNCHER, "--session", session, "--execute",
            env=env,
        )  # fmt: skip
        code, out, err, wait = cli(
            sandbox, repo, "status", session, "--wait", "--timeout", str(WAIT_TIMEOUT_S), env=env
        )
        if code != 0:
            raise BenchError(
                f"status {session} --wait exited {code}: {(err or out).strip()[-800:]}\n"
                f"{worker_report(repo, session)}"
            )
        turns = list(stub.turns)
    expected = ["tool", "answer"] * len(AGENTS)
    if sorted(turns) != sorted(expected):
        raise BenchError(f"{session}: the stub answered turns {turns}, expected {expected}")
    check_completed(sandbox, repo, session)
    cli_ok(sandbox, repo, session, "session-export", session, "--out", str(bundle))
    teardown(sandbox, repo, session)
    return {"total": swarm + wait, "swarm": swarm, "wait": wait}


def offline_once(sandbox: Sandbox, repo: Path, session: str, bundle: Path) -> float:
    """``replay --offline --execute --wait`` from the bundle, the provider unreachable."""
    env = {**sandbox.env, "ANTHROPIC_BASE_URL": closed_port_url()}
    elapsed = cli_ok(
        sandbox, repo, session,
        "replay", str(bundle), "--offline", "--launcher-cmd", LAUNCHER,
        "--session", session, "--execute", "--wait", "--timeout", str(WAIT_TIMEOUT_S),
        env=env,
    )  # fmt: skip
    check_completed(sandbox, repo, session)
    teardown(sandbox, repo, session)
    return elapsed


# --------------------------------------------------------------------------- report


def warm_up(sandbox: Sandbox, repo: Path) -> None:
    """One unmeasured recorded run and offline replay with no latency: the private
    bytecode cache starts empty, and the first run would pay for compiling it."""
    bundle = sandbox.root / "warm.bundle.json"
    recorded_once(sandbox, repo, "warm-rec", bundle, 0.0)
    offline_once(sandbox, repo, "warm-off", bundle)


def bench(sandbox: Sandbox, repo: Path, reps: int, latency: float, report: Report) -> None:
    progress("warm-up: one unmeasured recorded run and offline replay, no latency ...")
    warm_up(sandbox, repo)
    recorded: list[dict[str, float]] = []
    offline: list[float] = []
    for rep in range(reps):
        bundle = sandbox.root / f"rec-{rep}.bundle.json"
        progress(f"repetition {rep + 1}/{reps}: recorded run (stub latency {latency:g}s) ...")
        recorded.append(recorded_once(sandbox, repo, f"rec-{rep}", bundle, latency))
        progress(f"  recorded in {recorded[-1]['total']:.2f}s; offline replay ...")
        offline.append(offline_once(sandbox, repo, f"off-{rep}", bundle))
        progress(f"  replayed offline in {offline[-1]:.2f}s")
    rec = {k: statistics.median(r[k] for r in recorded) for k in recorded[0]}
    off = statistics.median(offline)
    workers = len(AGENTS)
    turns = workers * TURNS_PER_WORKER
    report.heading(
        f"{workers} stand-in workers, {TURNS_PER_WORKER} turns each, stub latency "
        f"{latency:g}s per turn, median of {reps}"
    )
    report.add(Row("recorded run: swarm --execute + status --wait", rec["total"], indent=1))
    report.add(Row("swarm --execute returns", rec["swarm"], indent=2))
    report.add(Row("then status --wait returns", rec["wait"], indent=2))
    report.add(
        Row(
            "offline: replay --offline --execute --wait",
            off,
            ratio=off / rec["total"],
            target=TARGET,
            indent=1,
        )
    )
    report.notes.append(
        f"model latency in the recording: {turns} turns x {latency:g}s = "
        f"{turns * latency:g}s in all, {TURNS_PER_WORKER * latency:g}s per worker "
        f"(the workers run side by side); recorded runs "
        + ", ".join(f"{r['total']:.2f}s" for r in recorded)
        + "; offline runs "
        + ", ".join(f"{v:.2f}s" for v in offline)
    )
    report.notes.append(
        f"recorded minus one worker's model latency: "
        f"{rec['total'] - TURNS_PER_WORKER * latency:.2f}s (what the tool and agent cost "
        f"besides the model); offline: {off:.2f}s"
    )


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one repetition instead of 3")
    parser.add_argument(
        "--latency",
        type=float,
        default=LATENCY_S,
        metavar="S",
        help=f"seconds the stub takes before each answer (default {LATENCY_S:g})",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir for inspection")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if a target is missed (for CI)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for program in ("git", "tmux"):
        if shutil.which(program) is None:
            print(f"bench_offline_replay: {program} is not on PATH", file=sys.stderr)
            return 2
    if args.latency < 0:
        print("bench_offline_replay: --latency must be >= 0", file=sys.stderr)
        return 2
    reps = 1 if args.quick else 3

    report = Report()

    def body(sandbox: Sandbox) -> None:
        progress(
            f"kodelyth-ecc {__version__} offline replay benchmark "
            f"({'quick' if args.quick else 'full'}): {versions('git', 'tmux')}, "
            f"{os.cpu_count()} CPUs, {platform.machine()}"
        )
        progress(f"sandbox {sandbox.root}, tmux socket {sandbox.socket}")
        repo = make_repo(sandbox.root, sandbox.env)
        bench(sandbox, repo, reps, args.latency, report)

    load_before = os.getloadavg()[0]
    started = time.monotonic()
    code = run_in_sandbox("bench_offline_replay", lambda: make_sandbox(args.keep), body)
    if code:
        return code

    print_machine(
        f"kodelyth-ecc {__version__}, {versions('git', 'tmux')}, {os.cpu_count()} CPUs",
        load_before,
    )
    print_report(report)
    print(f"\nfinished in {time.monotonic() - started:.0f}s")
    missed = print_missed(report)
    return 1 if missed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
