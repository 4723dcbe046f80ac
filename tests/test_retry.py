"""`retry SESSION WORKER`, end to end with real git and tmux: a worker runs again in its
own worktree and branch after a failure, a timeout or a lost pane; what the runner
writes again is kept under attempts/<N>/; the work so far stays; a running worker,
and sessions that cannot run here, are refused with nothing changed; a retry that
fails half way (a tmux that fails on cue) leaves the session as it was; no value of
the environment is on any command line; --message where the agent cannot continue
its conversation starts it afresh with the message in its task."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kodelyth_ecc.coordination import GONE_PANE
from kodelyth_ecc.execute import ENV_DIR_PREFIX
from kodelyth_ecc.retry import ATTEMPT_FILES, ATTEMPTS_DIR
from tests.conftest import Sandbox
from tests.support import Result, git, make_failing_tool, tmux
from tests.swarm_helpers import (
    session_record,
    started,
    wait_done,
    wait_until_states,
    worktree_of,
)
from tests.test_execute_env import _all_cmdlines as all_cmdlines

# First attempt: some work (a file, a commit), then it fails; the next one succeeds.
FLAKY = (
    "if [ -e .second-time ]; then echo second attempt ok; exit 0; fi; "
    "echo first > work.txt; git add work.txt; git commit -q -m 'first attempt'; "
    ": > .second-time; echo first attempt fails; exit 3"
)
# First attempt: runs until stopped (timeout, killed pane, killed server); then succeeds.
HANGS_ONCE = (
    "if [ -e .second-time ]; then echo second attempt ok; exit 0; fi; : > .second-time; sleep 60"
)


def retry(sandbox: Sandbox, session: str, worker: str, *extra: str, **env: str) -> Result:
    from tests.support import run_cli

    return run_cli("retry", session, worker, *extra, cwd=sandbox.repo, env={**os.environ, **env})


def worker_dir(sandbox: Sandbox, session: str, slug: str) -> Path:
    return sandbox.coord_root / session / slug


def files_of(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (relative path: bytes)."""
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def session_panes(session: str) -> dict[str, bool]:
    """Every pane of the tmux session: id -> dead."""
    out = tmux(
        "list-panes", "-s", "-t", f"={session}", "-F", "#{pane_id} #{pane_dead}", check=False
    )
    return {line.split()[0]: line.split()[1] == "1" for line in out.stdout.splitlines()}


def record_of(sandbox: Sandbox, session: str, slug: str) -> dict[str, Any]:
    workers: list[dict[str, Any]] = session_record(sandbox, session)["workers"]
    return next(w for w in workers if w["slug"] == slug)


def one_error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result
    assert lines[0].startswith("kodelyth-ecc: error: "), result
    return lines[0]


def test_a_failed_worker_runs_again_with_its_work_and_its_first_attempt_kept(
    sandbox: Sandbox,
) -> None:
    started(sandbox, "fl", launcher=FLAKY)
    wait_until_states(sandbox, "fl", "failed")
    tree = worktree_of(sandbox, "fl", "alpha")
    commit = git(tree, "rev-parse", "HEAD").strip()
    wdir = worker_dir(sandbox, "fl", "alpha")
    handoff = (wdir / "handoff.md").read_bytes()
    first_transcript = (wdir / "transcript.log").read_bytes()
    old_pane = record_of(sandbox, "fl", "alpha")["pane_id"]
    beta_before = record_of(sandbox, "fl", "beta")

    result = retry(sandbox, "fl", "alpha")
    assert result.code == 0, result
    assert "restarted alpha in fl (attempt 2): afresh on its task" in result.stdout
    assert "status fl --wait" in result.stdout and "attach fl alpha" in result.stdout
    status = wait_until_states(sandbox, "fl", {"alpha": "completed", "beta": "failed"})

    # The first attempt's status and transcript, kept as they were.
    kept = wdir / ATTEMPTS_DIR / "1"
    assert "- State: failed\n" in (kept / "status.md").read_text()
    assert "- Exit code: 3\n" in (kept / "status.md").read_text()
    assert (kept / "transcript.log").read_bytes() == first_transcript
    assert b"first attempt fails" in first_transcript
    transcript = (wdir / "transcript.log").read_text()
    assert "second attempt ok" in transcript and "first attempt fails" not in transcript
    # The work so far: the same worktree, branch and commit, the file; the handoff.
    assert (tree / "work.txt").read_text() == "first\n"
    assert git(tree, "rev-parse", "HEAD").strip() == commit
    assert git(tree, "log", "-1", "--format=%s").strip() == "first attempt"
    assert git(tree, "branch", "--show-current").strip() == "orchestrator-fl-alpha"
    assert (wdir / "handoff.md").read_bytes() == handoff
    # session.json: the new pane, the attempt counted; the other worker untouched.
    alpha = record_of(sandbox, "fl", "alpha")
    assert alpha["attempts"] == 2
    assert alpha["pane_id"] != old_pane
    panes = session_panes("fl")
    assert alpha["pane_id"] in panes
    assert old_pane not in panes  # the dead pane of the attempt before is closed
    assert record_of(sandbox, "fl", "beta") == beta_before
    assert {w["slug"]: w["pane_id"] for w in status["workers"]}["alpha"] == alpha["pane_id"]


def test_a_timed_out_worker_runs_again(sandbox: Sandbox) -> None:
    started(sandbox, "to", "--worker-timeout", "1", launcher=HANGS_ONCE, agents="solo")
    status = wait_until_states(sandbox, "to", "failed", timeout=30)
    assert status["workers"][0]["reason"] == "timeout"
    result = retry(sandbox, "to", "solo")
    assert result.code == 0, result
    assert wait_done(sandbox, "to")["workers"][0]["state"] == "completed"
    assert (
        "- Reason: timeout\n"
        in (worker_dir(sandbox, "to", "solo") / "attempts/1/status.md").read_text()
    )


def test_a_worker_whose_pane_was_lost_runs_again(sandbox: Sandbox) -> None:
    started(sandbox, "lp", launcher=HANGS_ONCE, agents="solo")
    wait_until_states(sandbox, "lp", "running")
    pane = record_of(sandbox, "lp", "solo")["pane_id"]
    tmux("kill-pane", "-t", pane)
    wait_until_states(sandbox, "lp", "lost")
    result = retry(sandbox, "lp", "solo")
    assert result.code == 0, result
    assert wait_done(sandbox, "lp")["workers"][0]["state"] == "completed"
    assert (
        "- State: running\n"
        in (worker_dir(sandbox, "lp", "solo") / "attempts/1/status.md").read_text()
    )


def test_a_running_worker_is_refused_and_nothing_changes(sandbox: Sandbox) -> None:
    started(sandbox, "busy", launcher="sleep 60", agents="solo")
    wait_until_states(sandbox, "busy", "running")
    coord = sandbox.coord_root / "busy"
    before = (files_of(coord), session_panes("busy"))
    result = retry(sandbox, "busy", "solo")
    assert result.code == 1, result
    line = one_error_line(result)
    assert "solo of 'busy' is still running" in line and "status busy --wait" in line
    assert (files_of(coord), session_panes("busy")) == before


def test_a_completed_worker_may_run_again_and_each_attempt_is_kept(sandbox: Sandbox) -> None:
    launcher = 'n=$(cat .runs 2>/dev/null || echo 0); n=$((n + 1)); echo $n > .runs; echo "run $n"'
    started(sandbox, "again", launcher=launcher, agents="solo")
    wait_until_states(sandbox, "again", "completed")
    for attempt in (2, 3):
        result = retry(sandbox, "again", "solo")
        assert result.code == 0, result
        assert f"(attempt {attempt})" in result.stdout
        wait_until_states(sandbox, "again", "completed")
    wdir = worker_dir(sandbox, "again", "solo")
    assert "run 1" in (wdir / "attempts/1/transcript.log").read_text()
    assert "run 2" in (wdir / "attempts/2/transcript.log").read_text()
    assert "run 3" in (wdir / "transcript.log").read_text()
    assert record_of(sandbox, "again", "solo")["attempts"] == 3


def test_sessions_that_cannot_run_here_are_refused_with_the_fix(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    started(sandbox, "done", launcher="true", agents="solo")
    wait_done(sandbox, "done")
    record_file = sandbox.coord_root / "done" / "session.json"
    original = json.loads(record_file.read_text())

    def refused(session: str, worker: str = "solo", *extra: str) -> str:
        result = retry(sandbox, session, worker, *extra)
        assert result.code == 1, result
        return one_error_line(result)

    assert "has no worker 'nope': its workers are solo" in refused("done", "nope")
    assert "no session 'ghost'" in refused("ghost")
    # Made before session.json recorded the plan.
    record_file.write_text(json.dumps({k: v for k, v in original.items() if k != "plan_config"}))
    assert "older kodelyth-ecc" in refused("done")
    record_file.write_text(json.dumps({**original, "torn_down_at": "2026-01-02T03:04:05Z"}))
    assert "torn down at 2026-01-02T03:04:05Z" in refused("done")
    record_file.write_text(json.dumps({**original, "plan_config": {"schema": "other"}}))
    assert "plan_config is damaged" in refused("done")
    record_file.write_text(json.dumps(original))
    # Written, never started.
    wrote = sandbox.cli("swarm", "--task", "t", "--agents", "solo", "--harness", "echo",
                        "--session", "paper", "--write-only")  # fmt: skip
    assert wrote.code == 0, wrote
    assert "--write-only and never started" in refused("paper")
    # Imported from a bundle: it never ran here.
    bundle = tmp_path / "done.bundle.json"
    assert sandbox.cli("session-export", "done", "--out", str(bundle)).code == 0
    # What a retry rebuilds the worker from stays here: a bundle's meta does not carry it.
    assert "plan_config" not in json.loads(bundle.read_text())["meta"]
    other = tmp_path / "elsewhere"
    imported = sandbox.cli("session-import", str(bundle), "--coordination-root", str(other))
    assert imported.code == 0, imported
    line = refused("done", "solo", "--coordination-root", str(other))
    assert "imported from a bundle" in line and "replay done --execute" in line
    # Torn down for real (its coordination dir kept): its worktrees are gone.
    assert sandbox.cli("teardown", "done").code == 0
    assert "was torn down at" in refused("done")


@pytest.mark.parametrize(
    ("failing", "step"),
    [("split-window", "adding the panes"), ("wait-for -S", "launching the workers")],
)
def test_a_retry_that_fails_leaves_the_session_as_it_was(
    sandbox: Sandbox, tmp_path: Path, failing: str, step: str
) -> None:
    """tmux fails adding the pane, or opening the launch gate once the runner waits at
    it: the files go back, the new pane goes, session.json is as it was."""
    started(sandbox, "rb", launcher=FLAKY, agents="solo")
    wait_until_states(sandbox, "rb", "failed")
    coord = sandbox.coord_root / "rb"
    before = (files_of(coord), session_panes("rb"))
    bin_dir = tmp_path / "bin"
    make_failing_tool(bin_dir, "tmux", failing.split())
    result = retry(sandbox, "rb", "solo", PATH=f"{bin_dir}:{os.environ['PATH']}")
    assert result.code == 1, result
    line = one_error_line(result)
    assert f"retry failed while {step}: " in line
    assert "injected failure" in line and "the session was left as it was" in line
    assert (files_of(coord), session_panes("rb")) == before
    assert not (coord / "solo" / ATTEMPTS_DIR).exists()
    # And it can be retried for real afterwards.
    assert retry(sandbox, "rb", "solo").code == 0
    wait_until_states(sandbox, "rb", "completed")


def test_a_retry_that_fails_to_make_the_tmux_session_again_leaves_none(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    started(sandbox, "gone", launcher=FLAKY, agents="solo")
    wait_until_states(sandbox, "gone", "failed")
    tmux("kill-server")
    coord = sandbox.coord_root / "gone"
    before = files_of(coord)
    bin_dir = tmp_path / "bin"
    make_failing_tool(bin_dir, "tmux", ["new-session"])
    result = retry(sandbox, "gone", "solo", PATH=f"{bin_dir}:{os.environ['PATH']}")
    assert result.code == 1, result
    assert "creating the tmux session" in one_error_line(result)
    assert files_of(coord) == before
    assert tmux("has-session", "-t", "=gone", check=False).returncode != 0


def test_after_the_tmux_server_ended_the_worker_runs_in_a_new_session(sandbox: Sandbox) -> None:
    started(sandbox, "srv", launcher=FLAKY)
    wait_until_states(sandbox, "srv", "failed")
    tmux("kill-server")
    result = retry(sandbox, "srv", "alpha")
    assert result.code == 0, result
    assert "the tmux session srv was gone: made again" in result.stdout
    wait_until_states(sandbox, "srv", {"alpha": "completed", "beta": "failed"})
    # beta's pane was the old server's: recorded as gone, never another worker's.
    assert record_of(sandbox, "srv", "beta")["pane_id"] == GONE_PANE
    assert record_of(sandbox, "srv", "alpha")["pane_id"] in session_panes("srv")


def test_a_secret_reaches_the_retried_agent_and_never_a_command_line(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private = tmp_path / "private-tmp"
    private.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(private))
    monkeypatch.setenv("TMPDIR", str(private))
    release = tmp_path / "release"
    launcher = (
        'if [ -e .second-time ]; then printf "%s" "$KODELYTH_FAKE_API_KEY" > secret.txt; '
        f"i=0; until [ -e '{release}' ] || [ $i -ge 600 ]; do sleep 0.05; i=$((i+1)); done; "
        "exit 0; fi; "
        ": > .second-time; exit 3"
    )
    started(sandbox, "sec", launcher=launcher, agents="solo")
    wait_until_states(sandbox, "sec", "failed")
    secret = "kdl-" + secrets.token_hex(20)
    needle = secret.encode()
    env = {**os.environ, "KODELYTH_FAKE_API_KEY": secret}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kodelyth_ecc", "retry", "sec", "solo"],
        cwd=sandbox.repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    leaked = polls = 0
    tree = worktree_of(sandbox, "sec", "solo")
    deadline = time.monotonic() + 60
    try:
        # While the retry starts the worker, and while the worker runs.
        while (
            proc.poll() is None or not (tree / "secret.txt").exists()
        ) and time.monotonic() < deadline:
            leaked += sum(needle in line for line in all_cmdlines())
            polls += 1
        leaked += sum(needle in line for line in all_cmdlines())
    finally:
        release.touch()
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, "retry failed (output withheld: may hold the secret)"
    assert polls > 0
    assert needle not in out and needle not in err, "the secret leaked into the CLI's output"
    assert leaked == 0, "the secret was on a process's command line"
    assert (tree / "secret.txt").read_bytes() == needle, "the agent did not get the secret"
    wait_until_states(sandbox, "sec", "completed")
    assert [p for p in os.listdir(private) if p.startswith(ENV_DIR_PREFIX)] == []
    for path in (sandbox.coord_root / "sec").rglob("*"):
        if path.is_file():
            assert needle not in path.read_bytes(), f"the secret was written to {path.name}"


def test_a_message_for_an_agent_that_cannot_continue_goes_into_its_task(sandbox: Sandbox) -> None:
    launcher = (
        "cat {task_file_sh} > seen-task.md; [ -e .second-time ] || { : > .second-time; exit 3; }"
    )
    started(sandbox, "msg", launcher=launcher, agents="solo")
    wait_until_states(sandbox, "msg", "failed")
    wdir = worker_dir(sandbox, "msg", "solo")
    task = (wdir / "task.md").read_text()
    result = retry(sandbox, "msg", "solo", "--message", "Also write NOTES.md, please.")
    assert result.code == 0, result
    notes = [line for line in result.stdout.splitlines() if line.startswith("note: ")]
    assert notes == ["note: solo could not continue its conversation: a custom launcher "
                     "cannot continue a conversation"]  # fmt: skip
    assert "afresh on its task, your message added to its task.md" in result.stdout
    wait_until_states(sandbox, "msg", "completed")
    seen = (worktree_of(sandbox, "msg", "solo") / "seen-task.md").read_text()
    assert seen.startswith(task)
    assert seen.endswith("\n## Message for attempt 2\n\nAlso write NOTES.md, please.\n")
    assert (wdir / "attempts/1/task.md").read_text() == task


def test_a_message_for_echo_says_it_starts_afresh(sandbox: Sandbox) -> None:
    started(sandbox, "ech", agents="solo")
    wait_until_states(sandbox, "ech", "completed")
    result = retry(sandbox, "ech", "solo", "--message", "once more")
    assert result.code == 0, result
    assert (
        "note: solo could not continue its conversation: echo cannot continue a conversation"
        in result.stdout
    )
    assert "once more" in (worker_dir(sandbox, "ech", "solo") / "task.md").read_text()
    wait_until_states(sandbox, "ech", "completed")
    empty = retry(sandbox, "ech", "solo", "--message", "  ")
    assert empty.code == 2 and "message: it is empty" in empty.stderr, empty


def test_what_a_runner_writes_again_is_what_is_kept() -> None:
    """Every file the runner or the proxy writes for an attempt is among those kept: a
    stale divergence.json would fail the new attempt, a stale verify.json mislead."""
    from kodelyth_ecc import sessiondir

    for name in ("STATUS_FILE", "TRANSCRIPT_FILE", "VERIFY_FILE", "DIVERGENCE_FILE",
                 "EXCHANGES_FILE", "SEAL_FILE", "RECORDING_FILE", "SANDBOX_DIR"):  # fmt: skip
        assert getattr(sessiondir, name) in ATTEMPT_FILES
    for kept in ("task.md", "handoff.md", "replay-source.json"):
        assert kept not in ATTEMPT_FILES


def test_two_retries_at_once_one_is_refused(sandbox: Sandbox) -> None:
    import fcntl

    started(sandbox, "lock", launcher="exit 3", agents="solo")
    wait_until_states(sandbox, "lock", "failed")
    fd = os.open(sandbox.coord_root / "lock", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a retry under way holds it
        result = retry(sandbox, "lock", "solo")
    finally:
        os.close(fd)
    assert result.code == 1
    assert "another retry or resume of session 'lock' is under way" in one_error_line(result)
    assert not (worker_dir(sandbox, "lock", "solo") / ATTEMPTS_DIR).exists()
    assert retry(sandbox, "lock", "solo").code == 0  # the lock went with its holder


# --- what a retry is built from --------------------------------------------------------


def _config(sandbox: Sandbox) -> Any:
    from kodelyth_ecc.plan import build_swarm_plan
    from kodelyth_ecc.sandbox import SandboxPolicy

    config = build_swarm_plan(
        "fix the bug", repo_root=str(sandbox.repo), agents="alpha,beta", harness="claude",
        session_name="cfg", model="claude-x", worker_timeout=90, verify="true",
        verify_timeout=30,
    )  # fmt: skip
    return config._replace(
        record=False,
        on_divergence="continue",
        sandbox=SandboxPolicy(("pypi.org",), ("/opt",), "--sandbox"),
        workers=(config.workers[0]._replace(launcher_command="my-agent {task_file_sh}"),
                 config.workers[1]),
    )  # fmt: skip


def test_the_plan_config_session_json_keeps_rebuilds_the_same_plan(sandbox: Sandbox) -> None:
    from kodelyth_ecc.plan import build_orchestration_plan, plan_config_from_record

    config = _config(sandbox)
    plan = build_orchestration_plan(config)
    record = plan.config_record()
    assert record is not None
    read = plan_config_from_record(json.loads(json.dumps(record)))
    # The roots as the plan resolved them: the same worktrees wherever it is rebuilt.
    assert read == config._replace(
        worktree_root=plan.worktree_root, coordination_root=plan.coordination_root
    )
    rebuilt = build_orchestration_plan(read)
    assert rebuilt.workers == plan.workers
    assert rebuilt.sandbox == plan.sandbox and rebuilt.verify == plan.verify
    assert "replay_sources" not in record and "extra_meta" not in record


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"workers": []}, "workers"),
        ({"worker_timeout": "soon"}, "worker_timeout"),
        ({"record": "yes"}, "record"),
        ({"agents": [1]}, "agents"),
        ({"sandbox": {"allow_hosts": "x"}}, "allow_hosts"),
        ({"schema": None}, "kodelyth.plan-config/v1"),
    ],
)
def test_a_damaged_plan_config_is_named_not_run(
    sandbox: Sandbox, change: dict[str, Any], named: str
) -> None:
    from kodelyth_ecc.errors import KodelythError
    from kodelyth_ecc.plan import build_orchestration_plan, plan_config_from_record

    record = build_orchestration_plan(_config(sandbox)).config_record()
    assert record is not None
    with pytest.raises(KodelythError, match="plan_config is damaged") as caught:
        plan_config_from_record({**record, **change})
    assert named in caught.value.message


@pytest.mark.parametrize("harness", ["claude", "codex", "opencode", "gemini"])
def test_a_resumed_launch_names_the_session_and_reads_the_message_file(
    sandbox: Sandbox, harness: str
) -> None:
    """The id and the file's path are literal words for the shell, whatever they hold;
    the message itself is in the file. An id no CLI would give is not resumed."""
    import shlex

    from kodelyth_ecc.plan import build_orchestration_plan, build_swarm_plan

    config = build_swarm_plan("t", repo_root=str(sandbox.repo), agents="solo",
                              harness=harness, session_name="rs", model="p/m")  # fmt: skip
    plan = build_orchestration_plan(config._replace(record=False))
    worker = plan.workers[0]
    odd = str(sandbox.root / "a {task_file} $(touch x) 'q'" / "message.md")
    resumed = plan.resumed_worker(worker, "0b1c-2d.3:e_f", odd)
    assert resumed is not None
    words = shlex.split(resumed.launch_command)
    assert words[-2:] == ["<", odd]
    assert "0b1c-2d.3:e_f" in words
    assert resumed._replace(launch_command=worker.launch_command) == worker
    for bad in ("", "-rf", "a b", "$(id)", "x" * 200):
        assert plan.resumed_worker(worker, bad, odd) is None
    boxed = build_orchestration_plan(config._replace(sandbox=_config(sandbox).sandbox))
    assert boxed.resumed_worker(boxed.workers[0], "abc", odd) is None
    echo = build_orchestration_plan(config._replace(harness="echo", model=None))
    assert echo.resumed_worker(echo.workers[0], "abc", odd) is None


def test_a_sandboxed_attempts_stranded_commits_are_kept_and_named(sandbox: Sandbox) -> None:
    """A machine restart ends a sandboxed worker before it brings its commits back: its
    private git state stays in the worker's dir. A retry keeps it with the attempt and
    says where (the next attempt's sandbox starts from an empty one)."""
    started(sandbox, "strand", launcher="exit 3", agents="solo")
    wait_until_states(sandbox, "strand", "failed")
    state = worker_dir(sandbox, "strand", "solo") / "sandbox-git"
    (state / "objects" / "ab").mkdir(parents=True)
    (state / "objects" / "ab" / "cdef").write_bytes(b"an object")
    result = retry(sandbox, "strand", "solo")
    assert result.code == 0, result
    kept = worker_dir(sandbox, "strand", "solo") / "attempts" / "1" / "sandbox-git"
    assert (kept / "objects" / "ab" / "cdef").read_bytes() == b"an object"
    assert not state.exists()
    assert (
        "before its commits were brought back: its objects and refs are kept in " in result.stdout
    )
    assert str(kept.relative_to(sandbox.repo)) in result.stdout
