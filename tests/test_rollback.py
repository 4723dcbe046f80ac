"""A failed or interrupted ``--execute`` removes everything it created, says what
failed in one line, and leaves what existed before alone. Faults are injected
with wrapper scripts first on PATH around the real git and tmux."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.conftest import Sandbox
from tests.support import Result, git, make_failing_tool, retry_until, run_cli
from tests.swarm_helpers import (
    assert_nothing_left,
    bin_dir_with,
    branch_of,
    has_session,
    orchestrator_branches,
    registered_worktrees,
    start_swarm,
    started,
    wait_done,
    worktree_of,
)

SLUGS = ["first", "second", "third"]
AGENTS = ",".join(SLUGS)


def _prepend_path(monkeypatch: pytest.MonkeyPatch, bin_dir: Path) -> None:
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def _assert_one_line_error(result: Result, *needles: str) -> None:
    assert result.code == 1, result
    assert "Traceback" not in result.stderr, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result
    assert lines[0].startswith("kodelyth-ecc: error: "), result
    for needle in needles:
        assert needle in lines[0], result


def _late_failing_tool(bin_dir: Path, tool: str, match: Sequence[str], nth: int = 1) -> Path:
    """A wrapper whose ``nth`` call containing ``match`` runs the real tool and then
    reports failure: the tool did its work (or part of it) before it failed."""
    real = subprocess.run(["which", tool], capture_output=True, text=True, check=True).stdout
    bin_dir.mkdir(parents=True, exist_ok=True)
    counter = shlex.quote(str(bin_dir / f".{tool}-count"))
    path = bin_dir / tool
    path.write_text(
        f"""#!/bin/sh
case " $* " in
  *" {" ".join(match)} "*)
    n=$(cat {counter} 2>/dev/null || echo 0)
    n=$((n + 1))
    echo "$n" > {counter}
    if [ "$n" -eq {nth} ]; then
      {shlex.quote(real.strip())} "$@"
      echo "late injected failure" >&2
      exit 3
    fi
    ;;
esac
exec {shlex.quote(real.strip())} "$@"
"""
    )
    path.chmod(0o755)
    return path


def _blocking_tool(bin_dir: Path, tool: str, match: Sequence[str], nth: int) -> tuple[Path, Path]:
    """A wrapper whose ``nth`` call containing ``match`` announces itself (creates
    ``reached``) and blocks until ``release`` appears (30 s at most)."""
    real = subprocess.run(["which", tool], capture_output=True, text=True, check=True).stdout
    bin_dir.mkdir(parents=True, exist_ok=True)
    counter, reached, release = (bin_dir / f".{tool}-{n}" for n in ("count", "reached", "release"))
    q = shlex.quote
    path = bin_dir / tool
    path.write_text(
        f"""#!/bin/sh
case " $* " in
  *" {" ".join(match)} "*)
    n=$(cat {q(str(counter))} 2>/dev/null || echo 0)
    n=$((n + 1))
    echo "$n" > {q(str(counter))}
    if [ "$n" -eq {nth} ]; then
      : > {q(str(reached))}
      i=0
      while [ ! -e {q(str(release))} ] && [ "$i" -lt 600 ]; do sleep 0.05; i=$((i + 1)); done
    fi
    ;;
esac
exec {q(real.strip())} "$@"
"""
    )
    path.chmod(0o755)
    return reached, release


@pytest.mark.parametrize("k", [1, 2, 3])
def test_worktree_failure_at_kth_worker_rolls_everything_back(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, k: int
) -> None:
    make_failing_tool(tmp_path / "bin", "git", ["worktree", "add"], nth=k)
    _prepend_path(monkeypatch, tmp_path / "bin")
    result = start_swarm(sandbox, "rb", agents=AGENTS)
    _assert_one_line_error(
        result,
        f"creating the worktree for {SLUGS[k - 1]}",
        "injected failure",
        "everything this run created was removed",
    )
    # The wrapper really saw k calls: the first k-1 worktrees existed and were removed.
    assert (tmp_path / "bin" / ".git-count").read_text().strip() == str(k)
    assert_nothing_left(sandbox, "rb", SLUGS)


@pytest.mark.parametrize("k", [1, 3])
def test_worktree_made_but_reported_failed_is_rolled_back(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, k: int
) -> None:
    """git created the k-th worktree and branch, then failed: they go too."""
    _late_failing_tool(tmp_path / "bin", "git", ["worktree", "add"], nth=k)
    _prepend_path(monkeypatch, tmp_path / "bin")
    result = start_swarm(sandbox, "rb", agents=AGENTS)
    _assert_one_line_error(result, f"creating the worktree for {SLUGS[k - 1]}", "late injected")
    assert_nothing_left(sandbox, "rb", SLUGS)


@pytest.mark.parametrize(
    ("match", "late"),
    [
        (["new-session"], False),
        (["split-window"], False),
        (["split-window"], True),
        (["wait-for", "-S"], False),
    ],
    ids=["new-session", "split-window", "split-window-after-tmux-ran", "launch-signal"],
)
def test_tmux_failure_rolls_everything_back(
    sandbox: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    match: list[str],
    late: bool,
) -> None:
    if late:
        _late_failing_tool(tmp_path / "bin", "tmux", match)
    else:
        make_failing_tool(tmp_path / "bin", "tmux", match)
    _prepend_path(monkeypatch, tmp_path / "bin")
    result = start_swarm(sandbox, "rb", agents=AGENTS)
    step = "launching the workers" if match[0] == "wait-for" else "creating the tmux session"
    _assert_one_line_error(result, step, "injected failure")
    assert_nothing_left(sandbox, "rb", SLUGS)
    if late:
        assert (tmp_path / "bin" / ".tmux-count").read_text().strip() == "1"


def test_rollback_leaves_an_earlier_session_alone(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    started(sandbox, "keep", agents="one,two")
    wait_done(sandbox, "keep")
    before = sorted(p.name for p in sandbox.root.iterdir())
    make_failing_tool(tmp_path / "bin", "git", ["worktree", "add"], nth=2)
    _prepend_path(monkeypatch, tmp_path / "bin")

    result = start_swarm(sandbox, "rb", agents=AGENTS)
    _assert_one_line_error(result, "creating the worktree for second")
    assert not (sandbox.coord_root / "rb").exists()
    assert (sandbox.coord_root / "keep" / "session.json").is_file()
    assert sorted(orchestrator_branches(sandbox.repo)) == [
        branch_of("keep", "one"),
        branch_of("keep", "two"),
    ]
    assert sorted(p.name for p in sandbox.root.iterdir()) == before
    assert len(registered_worktrees(sandbox.repo)) == 3
    assert has_session("keep")
    assert not has_session("rb")


def _start_cli(args: Sequence[str], cwd: Path) -> subprocess.Popen[str]:
    def child_setup() -> None:
        # Own process group (like a terminal job), SIGINT handled as at a terminal,
        # even when the test suite itself runs with SIGINT ignored in the background.
        os.setpgrp()
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    return subprocess.Popen(
        [sys.executable, "-m", "kodelyth_ecc", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=child_setup,  # noqa: PLW1509 - single-threaded test process
    )


@pytest.mark.parametrize(
    ("tool", "match", "nth", "target"),
    [
        ("git", ["worktree", "add"], 2, "process"),
        ("git", ["worktree", "add"], 3, "group"),
        ("tmux", ["wait-for", "-S"], 1, "process"),
    ],
    ids=["git-2nd-worktree", "git-3rd-worktree-ctrl-c-group", "tmux-launch"],
)
def test_ctrl_c_rolls_everything_back(
    sandbox: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    tool: str,
    match: list[str],
    nth: int,
    target: str,
) -> None:
    reached, release = _blocking_tool(tmp_path / "bin", tool, match, nth)
    _prepend_path(monkeypatch, tmp_path / "bin")
    args = ["swarm", "--task", "t", "--agents", AGENTS, "--harness", "echo"]
    proc = _start_cli([*args, "--session", "rb", "--execute"], sandbox.repo)
    try:
        retry_until(
            lambda: reached.exists() or proc.poll() is not None,
            message=f"the CLI to block in {tool} {' '.join(match)}",
        )
        assert proc.poll() is None, proc.communicate()
        # Something to roll back exists when the interrupt comes.
        assert (sandbox.coord_root / "rb" / "first" / "task.md").is_file()
        assert worktree_of(sandbox, "rb", "first").is_dir()
        # The panes (runners held at the launch gate) exist before the worktrees.
        assert has_session("rb")
        if target == "group":
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C at a terminal
        else:
            proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        release.touch()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (stdout, stderr)
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines() == ["kodelyth-ecc: interrupted"], stderr
    assert_nothing_left(sandbox, "rb", SLUGS)


def _cli_with_path(sandbox: Sandbox, path: Path, *args: str) -> Result:
    """Run the CLI with ``path`` as its whole PATH; the sandbox keeps its own."""
    return run_cli(*args, cwd=sandbox.repo, env={**os.environ, "PATH": str(path)})


def test_missing_harness_program_is_refused_before_anything_exists(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    path = bin_dir_with(tmp_path / "no-claude", ["git", "tmux", "bash"])
    args = ["swarm", "--task", "t", "--agents", AGENTS, "--harness", "claude", "--session", "nc"]
    result = _cli_with_path(sandbox, path, *args, "--execute")
    _assert_one_line_error(result, "claude is not on PATH", "--harness")
    assert_nothing_left(sandbox, "nc", SLUGS)
    # With claude on PATH the same command gets past the check (and is then stopped
    # by a taken name, proving the refusal above was about the missing program).
    fake = path / "claude"
    fake.write_text("#!/bin/sh\necho 2.1.197 '(Claude Code)'\n")
    fake.chmod(0o755)
    (sandbox.coord_root / "nc").mkdir(parents=True)
    retry = _cli_with_path(sandbox, path, *args, "--execute")
    _assert_one_line_error(retry, "already taken" if os.geteuid() else "refuses to skip")


def test_missing_harness_is_fine_with_a_launcher_of_ones_own(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    path = bin_dir_with(tmp_path / "no-claude", ["git", "tmux", "bash"])
    args = ["swarm", "--task", "t", "--agents", "one", "--harness", "claude", "--session", "own"]
    result = _cli_with_path(sandbox, path, *args, "--launcher-cmd", "echo custom", "--execute")
    assert result.code == 0, result
    assert wait_done(sandbox, "own")["workers"][0]["state"] == "completed"


def test_missing_tmux_is_refused_before_anything_exists(sandbox: Sandbox, tmp_path: Path) -> None:
    path = bin_dir_with(tmp_path / "only-git", ["git"])
    args = ["swarm", "--task", "t", "--agents", AGENTS, "--harness", "echo", "--session", "nt"]
    result = _cli_with_path(sandbox, path, *args, "--execute")
    _assert_one_line_error(result, "tmux")
    assert "not found" in result.stderr or "not on PATH" in result.stderr
    assert_nothing_left(sandbox, "nt", SLUGS)


def test_taken_session_is_refused_and_left_intact(sandbox: Sandbox) -> None:
    started(sandbox, "taken", agents="one")
    wait_done(sandbox, "taken")
    record = (sandbox.coord_root / "taken" / "session.json").read_bytes()
    result = start_swarm(sandbox, "taken", agents="one")
    _assert_one_line_error(result, "'taken' is already taken", "--replace")
    assert (sandbox.coord_root / "taken" / "session.json").read_bytes() == record
    assert worktree_of(sandbox, "taken", "one").is_dir()
    assert orchestrator_branches(sandbox.repo) == [branch_of("taken", "one")]
    assert has_session("taken")
    assert git(sandbox.repo, "status", "--porcelain") == ""


@pytest.mark.parametrize("slug", ["first", "third"])
def test_checkout_failure_in_one_worktree_rolls_everything_back(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, slug: str
) -> None:
    # Worktrees are added without a checkout, then checked out in parallel: fail the
    # checkout of one of them (by directory, as the order of parallel calls varies).
    real = shlex.quote(
        subprocess.run(["which", "git"], capture_output=True, text=True, check=True).stdout.strip()
    )
    wrapper = tmp_path / "bin" / "git"
    wrapper.parent.mkdir()
    wrapper.write_text(
        "#!/bin/sh\n"
        f'case "$PWD $*" in *-{slug}" reset --hard"*) echo "injected failure" >&2; exit 3;; esac\n'
        f'exec {real} "$@"\n'
    )
    wrapper.chmod(0o755)
    _prepend_path(monkeypatch, tmp_path / "bin")
    result = start_swarm(sandbox, "rb", agents=AGENTS)
    _assert_one_line_error(
        result,
        "checking out the worktrees",
        "injected failure",
        "everything this run created was removed",
    )
    assert_nothing_left(sandbox, "rb", SLUGS)
