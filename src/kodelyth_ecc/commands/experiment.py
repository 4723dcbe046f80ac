"""``kodelyth-ecc experiment``: one session replayed N times per arm, for compare."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from typing import Any

from kodelyth_ecc import gitrepo
from kodelyth_ecc.commands._common import print_json
from kodelyth_ecc.errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_WAIT_TIMEOUT,
    KodelythError,
    UsageError,
)
from kodelyth_ecc.experiment import (
    EXPERIMENT_FILE,
    ORIGIN_ARM,
    Experiment,
    Progress,
    Settings,
    create_experiment,
    load_experiment,
    parse_arm,
    plan_experiment,
)
from kodelyth_ecc.termsafe import one_line

# The settings of a run that --resume takes from experiment.json, never from flags.
_SETTING_FLAGS = (
    ("arm", "--arm"),
    ("repeat", "--repeat"),
    ("verify", "--verify"),
    ("verify_timeout", "--verify-timeout"),
    ("worker_timeout", "--worker-timeout"),
    ("offline", "--offline"),
    ("on_divergence", "--on-divergence"),
    ("no_record", "--no-record"),
    ("sandbox", "--sandbox/--no-sandbox"),
    ("sandbox_allow_host", "--sandbox-allow-host"),
    ("sandbox_allow_path", "--sandbox-allow-path"),
    ("trust_recording", "--trust-recording"),
)


def _given(args: argparse.Namespace, name: str) -> bool:
    value = getattr(args, name)
    return value not in (None, False, [], ())


def _check_args(args: argparse.Namespace) -> None:
    if args.resume:
        if args.out is None:
            raise UsageError("--resume needs --out DIR: the experiment to continue")
        given = [flag for name, flag in _SETTING_FLAGS if _given(args, name)]
        if given:
            raise UsageError(
                f"--resume runs the experiment as it was made: drop {', '.join(given)}"
            )
        if args.target is not None:
            raise UsageError("--resume takes the origin from DIR/experiment.json: drop TARGET")
        return
    if args.target is None:
        raise UsageError("missing BUNDLE.json|SESSION: the session the experiment replays")
    if args.timeout is not None and not args.execute:
        raise UsageError("--timeout only applies with --execute or --resume")
    if args.verify_timeout is not None and args.verify is None:
        raise UsageError("--verify-timeout only applies with --verify")
    if (args.on_divergence is not None or args.trust_recording) and not args.offline:
        raise UsageError("--on-divergence and --trust-recording only apply with --offline")
    if args.offline and args.no_record:
        raise UsageError("--offline answers through the session's proxy: drop --no-record")
    if (args.sandbox_allow_host or args.sandbox_allow_path) and args.sandbox is False:
        raise UsageError("--sandbox-allow-host and --sandbox-allow-path need the sandbox")


def _settings(args: argparse.Namespace) -> Settings:
    from kodelyth_ecc.plan import check_verify

    return Settings(
        repeat=args.repeat or 1,
        max_parallel=args.max_parallel,
        verify=check_verify(args.verify),
        verify_timeout=args.verify_timeout,
        worker_timeout=args.worker_timeout,
        offline=args.offline,
        on_divergence=args.on_divergence,
        record=not args.no_record,
        sandbox=args.sandbox,
        sandbox_allow_hosts=tuple(args.sandbox_allow_host),
        sandbox_allow_paths=tuple(os.path.abspath(p) for p in args.sandbox_allow_path),
        trust_recording=args.trust_recording,
        max_bundle_size=args.max_bundle_size,
    )


def _print_plan(experiment: Experiment, directory_exists: bool) -> None:
    out = sys.stdout
    doc = experiment.doc
    runs = doc["runs"]
    counts = doc["worker_counts"]
    workers = sum(counts[r["arm"]] for r in runs)
    s = experiment.settings
    out.write(f"Experiment    {one_line(doc['origin']['session'])} -> {experiment.directory}\n")
    out.write(f"Arms          {len(experiment.arms)}\n")
    for index, arm in enumerate(experiment.arms, 1):
        out.write(f"  arm{index}  {one_line(arm.label)} ({counts[arm.label]} workers)\n")
    out.write(
        f"Runs          {len(experiment.arms)} arms x {s.repeat} repeats = {len(runs)} runs, "
        f"{workers} workers in all; at most {s.max_parallel} workers at once\n"
    )
    out.write(f"Verify        {one_line(s.verify) if s.verify else 'none'}\n")
    e = doc["estimate"]
    if e["input_tokens"] is None and e["cost_usd"] is None:
        out.write(f"Estimate      unknown ({e['note']})\n")
    else:
        tokens = (
            f"~{e['input_tokens']:,} tokens in, ~{e['output_tokens'] or 0:,} out"
            if e["input_tokens"] is not None
            else "tokens unknown"
        )
        cost = f", ~${e['cost_usd']:.2f}" if e["cost_usd"] is not None else ""
        out.write(f"Estimate      {tokens}{cost} ({e['note']})\n")
    if directory_exists:
        out.write(f"Note          {experiment.directory} exists: --execute refuses it\n")


@contextlib.contextmanager
def _locked(directory: str) -> Iterator[None]:
    """One experiment process per directory: a second one (a --resume while it runs)
    is refused, not run beside it."""
    import fcntl

    fd = os.open(os.path.join(directory, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise KodelythError(
                f"{directory} is being run by another experiment process: wait for it, or "
                "stop it (Ctrl-C) and --resume"
            ) from None
        yield
    finally:
        os.close(fd)


class _ProgressLine:
    """On a terminal, one line on stderr rewritten in place (``progress.ProgressLine``);
    otherwise a line per run that finishes; nothing under --json."""

    def __init__(self, quiet: bool) -> None:
        from kodelyth_ecc.progress import ProgressLine

        self.line = ProgressLine(quiet=quiet)
        self.tty = self.line.active
        self.quiet = quiet

    def progress(self, p: Progress) -> None:
        self.line.update(
            f"experiment: {p.done}/{p.total} runs done, {p.running} running, "
            f"{p.queued} queued, {p.failed} failed ({p.elapsed_s:.0f}s)"
        )

    def run(self, run: dict[str, Any]) -> None:
        if self.quiet or self.tty:
            return
        took = f" in {run['duration_s']:.1f}s" if run.get("duration_s") is not None else ""
        why = f": {one_line(run['reason'], 120)}" if run.get("reason") else ""
        sys.stderr.write(f"{run['run']} {run['state']}{took}{why}\n")

    def end(self) -> None:
        """The last figures stay on screen, ended by a newline."""
        self.line.close(keep=True)


def _summary(experiment: Experiment) -> None:
    out = sys.stdout
    for index, arm in enumerate(experiment.arms, 1):
        runs = [r for r in experiment.runs if r["arm"] == arm.label]
        states = [r["state"] for r in runs]
        counted = ", ".join(
            f"{states.count(s)} {s}"
            for s in ("completed", "failed", "error", "interrupted", "pending")
            if states.count(s)
        )
        out.write(f"arm{index}  {one_line(arm.label, 80)}: {counted}\n")
    for run in experiment.runs:
        if run["state"] == "error" and run.get("reason"):
            out.write(f"  {run['run']}: {one_line(run['reason'], 160)}\n")
    out.write(f"runs in {experiment.directory}; compare them: kodelyth-ecc compare ")
    out.write(f"{experiment.directory}\n")
    sessions = [r["session"] for r in experiment.runs if r.get("session")]
    if sessions:
        out.write(
            f"the runs' worktrees and branches are kept ({len(sessions)} sessions, "
            f"{sessions[0]} ...); remove one with: kodelyth-ecc teardown SESSION\n"
        )


def _exit_code(experiment: Experiment) -> int:
    return EXIT_OK if all(r["state"] == "completed" for r in experiment.runs) else EXIT_FAILURE


def _resume_hint(experiment: Experiment) -> str:
    return f"kodelyth-ecc experiment --resume --out {experiment.directory}"


def _execute(experiment: Experiment, args: argparse.Namespace) -> int:
    import time

    from kodelyth_ecc.experiment import run_experiment
    from kodelyth_ecc.scheduler import LocalScheduler, Stopped

    line = _ProgressLine(quiet=args.json)
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    parallel = args.max_parallel if args.resume and args.max_parallel_given else None
    scheduler = LocalScheduler(parallel or experiment.settings.max_parallel)
    try:
        run_experiment(
            experiment, scheduler, on_progress=line.progress, on_run=line.run, deadline=deadline
        )
    except Stopped as exc:
        # Stopped and recorded: a further Ctrl-C while this is said changes nothing.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        line.end()
        stopped = [r for r in experiment.runs if r["state"] == "interrupted"]
        kept = ", ".join(r["session"] for r in stopped if r.get("session"))
        sys.stderr.write(
            f"kodelyth-ecc: experiment {exc.message}: {len(stopped)} runs stopped"
            + (f" (their sessions are kept: {kept})" if kept else "")
            + f"; continue with: {_resume_hint(experiment)}\n"
        )
        if args.json:
            print_json(experiment.doc)
        return EXIT_WAIT_TIMEOUT if exc.timed_out else EXIT_INTERRUPTED
    except BaseException:
        line.line.clear()  # an error (or a second Ctrl-C): its message starts the line
        raise
    line.end()
    if args.json:
        print_json(experiment.doc)
    else:
        _summary(experiment)
    return _exit_code(experiment)


def _resume(args: argparse.Namespace) -> int:
    directory = os.path.abspath(args.out)
    if not os.path.isfile(os.path.join(directory, EXPERIMENT_FILE)):
        raise KodelythError(f"{directory} holds no {EXPERIMENT_FILE}: nothing to resume")
    repo_root = gitrepo.repo_root()
    with _locked(directory):
        return _execute(load_experiment(directory, repo_root), args)


def run(args: argparse.Namespace) -> int:
    args.max_parallel_given = args.max_parallel is not None
    if args.max_parallel is None:
        args.max_parallel = 8
    _check_args(args)
    if args.resume:
        return _resume(args)
    repo_root = gitrepo.repo_root()
    coord_root = (
        os.path.abspath(args.coordination_root)
        if args.coordination_root
        else os.path.join(repo_root, ".orchestration")
    )
    experiment = plan_experiment(
        args.target,
        [parse_arm(text) for text in args.arm] or [ORIGIN_ARM],
        _settings(args),
        repo_root=repo_root,
        coordination_root=coord_root,
        directory=os.path.abspath(args.out) if args.out else None,
    )
    directory = experiment.directory
    exists = os.path.lexists(directory)
    if not args.execute:
        if args.json:
            print_json(experiment.doc)
        else:
            _print_plan(experiment, exists)
        sys.stderr.write("dry run: nothing was created; add --execute to run the experiment\n")
        return EXIT_OK
    if exists:
        what = (
            "holds an experiment: continue it with --resume --out DIR"
            if os.path.isfile(os.path.join(directory, EXPERIMENT_FILE))
            else "exists"
        )
        raise KodelythError(f"{directory} {what}, or give another --out")
    create_experiment(experiment)
    with _locked(directory):
        return _execute(experiment, args)
