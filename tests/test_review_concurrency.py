"""Two runs at once: a run that loses the race for a session name, or fails while
another run shares its coordination root, must not remove what the other made.
Runs are held at a chosen git call by a wrapper first on PATH (real git otherwise)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from kodelyth_ecc import build_orchestration_plan, build_swarm_plan, materialize_plan
from kodelyth_ecc.errors import KodelythError
from tests.conftest import Sandbox
from tests.support import retry_until, run_cli
from tests.swarm_helpers import has_session, orchestrator_branches, wait_done


def _held_git(bin_dir: Path, match: Sequence[str], *, fail: bool) -> tuple[Path, Path]:
    """A git whose first call containing ``match`` announces itself, waits for
    ``release`` (30 s at most), then fails (``fail``) or runs the real git."""
    real = subprocess.run(["which", "git"], capture_output=True, text=True, check=True).stdout
    bin_dir.mkdir(parents=True, exist_ok=True)
    reached, release, once = bin_dir / "reached", bin_dir / "release", bin_dir / "once"
    q = shlex.quote
    then = "echo 'held and failed' >&2; exit 3" if fail else ""
    (bin_dir / "git").write_text(
        f"""#!/bin/sh
case " $* " in
  *" {" ".join(match)} "*)
    if [ ! -e {q(str(once))} ]; then
      : > {q(str(once))}
      : > {q(str(reached))}
      i=0
      while [ ! -e {q(str(release))} ] && [ "$i" -lt 600 ]; do sleep 0.05; i=$((i + 1)); done
      {then}
    fi
    ;;
esac
exec {q(real.strip())} "$@"
"""
    )
    (bin_dir / "git").chmod(0o755)
    return reached, release


def _start(sandbox: Sandbox, bin_dir: Path, session: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    args = ["swarm", "--task", "t", "--agents", "alpha", "--harness", "echo"]
    return subprocess.Popen(
        [sys.executable, "-m", "kodelyth_ecc", *args, "--session", session, "--execute"],
        cwd=sandbox.repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str], release: Path) -> tuple[int, str]:
    release.touch()
    try:
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, stderr


def test_losing_the_race_for_a_name_leaves_the_winner_alone(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    # Held in pre-flight (the branch check), after it found the name free.
    reached, release = _held_git(tmp_path / "bin", ["for-each-ref"], fail=False)
    proc = _start(sandbox, tmp_path / "bin", "race")
    try:
        retry_until(lambda: reached.exists() or proc.poll() is not None, message="the hold")
        assert proc.poll() is None
        # Meanwhile another run claims the name.
        winner = sandbox.coord_root / "race"
        winner.mkdir(parents=True)
        (winner / "session.json").write_text('{"session": "race"}\n')
    finally:
        code, stderr = _finish(proc, release)
    assert code == 1, stderr
    (line,) = stderr.strip().splitlines()
    assert "'race' is already taken" in line, line
    assert (winner / "session.json").read_text() == '{"session": "race"}\n'
    assert orchestrator_branches(sandbox.repo) == []
    assert not has_session("race")


def test_a_failed_run_keeps_another_runs_session_in_a_root_it_created(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    assert not sandbox.coord_root.exists()
    reached, release = _held_git(tmp_path / "bin", ["worktree", "add"], fail=True)
    proc = _start(sandbox, tmp_path / "bin", "loser")
    try:
        retry_until(lambda: reached.exists() or proc.poll() is not None, message="the hold")
        assert proc.poll() is None
        other = run_cli(
            "swarm", "--task", "t", "--agents", "beta", "--harness", "echo",
            "--session", "other", "--execute", cwd=sandbox.repo, env=os.environ,
        )  # fmt: skip
        assert other.code == 0, other
    finally:
        code, stderr = _finish(proc, release)
    assert code == 1, stderr
    assert "held and failed" in stderr
    assert not (sandbox.coord_root / "loser").exists()
    assert (sandbox.coord_root / "other" / "session.json").is_file()
    assert wait_done(sandbox, "other")["workers"][0]["state"] == "completed"
    assert (sandbox.coord_root / ".gitignore").is_file()


def test_materialize_plan_never_writes_into_an_existing_dir(sandbox: Sandbox) -> None:
    config = build_swarm_plan(
        "t", repo_root=str(sandbox.repo), agents="alpha", harness="echo", session_name="mine"
    )
    plan = build_orchestration_plan(config)
    os.makedirs(plan.coordination_dir)
    Path(plan.coordination_dir, "theirs.txt").write_text("theirs\n")
    with pytest.raises(KodelythError, match="already taken"):
        materialize_plan(plan)
    assert os.listdir(plan.coordination_dir) == ["theirs.txt"]
