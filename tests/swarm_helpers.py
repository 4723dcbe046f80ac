"""Helpers for the execution and lifecycle tests: start swarms through the real
CLI, read their status, and inspect what git and tmux hold afterwards."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kodelyth_ecc.plan import WINDOW_NAME
from kodelyth_ecc.status import collect_status
from tests.conftest import Sandbox
from tests.support import DEFAULT_TIMEOUT, Result, git, retry_until, tmux

TASK = "audit the auth module"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def start_swarm(
    sandbox: Sandbox,
    session: str,
    *extra: str,
    agents: str = "alpha,beta",
    harness: str = "echo",
    launcher: str | None = None,
    task: str = TASK,
) -> Result:
    """``swarm --execute`` through the real CLI."""
    args = ["swarm", "--task", task, "--agents", agents, "--harness", harness]
    args += ["--session", session]
    if launcher is not None:
        args += ["--launcher-cmd", launcher]
    return sandbox.cli(*args, *extra, "--execute")


def started(sandbox: Sandbox, session: str, *extra: str, **kwargs: Any) -> Result:
    result = start_swarm(sandbox, session, *extra, **kwargs)
    assert result.code == 0, result
    return result


def status_json(sandbox: Sandbox, session: str) -> dict[str, Any]:
    result = sandbox.cli("status", session, "--json")
    assert result.code == 0, result
    data: dict[str, Any] = json.loads(result.stdout)
    session_data: dict[str, Any] = data["session"]
    return session_data


def workers_by_slug(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {w["slug"]: w for w in status["workers"]}


def wait_until_states(
    sandbox: Sandbox,
    session: str,
    wanted: dict[str, str] | str,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """Poll until every worker (or the named ones) is in the given state, then
    return what ``status --json`` says. Polls in-process through the library API
    (a CLI start per poll would dominate the suite's run time)."""

    def check() -> bool:
        status = collect_status(session, str(sandbox.coord_root))
        states = {w.slug: w.state for w in status.workers}
        targets = wanted if isinstance(wanted, dict) else dict.fromkeys(states, wanted)
        return bool(states) and all(states.get(s) == state for s, state in targets.items())

    retry_until(check, timeout=timeout, message=f"{session} workers to be {wanted}")
    status = status_json(sandbox, session)
    by_slug = workers_by_slug(status)
    targets = wanted if isinstance(wanted, dict) else dict.fromkeys(by_slug, wanted)
    assert {s: by_slug[s]["state"] for s in targets} == targets, status
    return status


def wait_done(sandbox: Sandbox, session: str, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """``status SESSION --wait --json``: every worker completed, failed or lost."""
    result = sandbox.cli("status", session, "--wait", "--timeout", str(timeout), "--json")
    assert result.code in (0, 1), result
    data: dict[str, Any] = json.loads(result.stdout)["session"]
    assert data["done"] is True, data
    assert result.code == (0 if all(w["state"] == "completed" for w in data["workers"]) else 1)
    return data


def session_record(sandbox: Sandbox, session: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (sandbox.coord_root / session / "session.json").read_text(encoding="utf-8")
    )
    return data


def worktree_of(sandbox: Sandbox, session: str, slug: str) -> Path:
    return sandbox.root / f"{sandbox.repo.name}-{session}-{slug}"


def branch_of(session: str, slug: str) -> str:
    return f"orchestrator-{session}-{slug}"


def orchestrator_branches(repo: Path) -> list[str]:
    out = git(repo, "branch", "--list", "orchestrator-*", "--format=%(refname:short)")
    return [line for line in out.splitlines() if line]


def registered_worktrees(repo: Path) -> list[str]:
    out = git(repo, "worktree", "list", "--porcelain")
    return [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("worktree ")]


def has_session(session: str) -> bool:
    return tmux("has-session", "-t", f"={session}", check=False).returncode == 0


@dataclass(frozen=True)
class Pane:
    pane_id: str
    title: str
    dead: bool
    pid: int
    window: str
    cwd: str


def panes(session: str) -> list[Pane]:
    """The panes of the session's orchestrator window: its banner, then the workers
    (the recording proxy has a window of its own)."""
    out = tmux(
        "list-panes",
        "-t",
        f"={session}:{WINDOW_NAME}",
        "-F",
        "#{pane_id}\t#{pane_title}\t#{pane_dead}\t#{pane_pid}\t#{window_name}\t"
        "#{pane_current_path}",
    ).stdout
    found = []
    for line in out.splitlines():
        pane_id, title, dead, pid, window, cwd = line.split("\t")
        found.append(Pane(pane_id, title, dead == "1", int(pid), window, cwd))
    return found


def capture(pane_id: str) -> str:
    return tmux("capture-pane", "-p", "-J", "-S", "-", "-t", pane_id).stdout


def assert_nothing_left(sandbox: Sandbox, session: str, slugs: Iterable[str]) -> None:
    """After a refused or rolled-back --execute: no trace of the session anywhere."""
    coord_dir = sandbox.coord_root / session
    assert not coord_dir.exists(), sorted(str(p) for p in coord_dir.rglob("*"))
    assert not sandbox.coord_root.exists(), "the coordination root this run created is left"
    assert orchestrator_branches(sandbox.repo) == []
    for slug in slugs:
        assert not worktree_of(sandbox, session, slug).exists(), slug
    leftovers = [p.name for p in sandbox.root.iterdir() if p.name != sandbox.repo.name]
    assert leftovers == [], leftovers
    assert [os.path.realpath(p) for p in registered_worktrees(sandbox.repo)] == [
        os.path.realpath(sandbox.repo)
    ]
    assert not has_session(session)
    assert git(sandbox.repo, "status", "--porcelain") == ""


def bin_dir_with(target: Path, programs: Iterable[str]) -> Path:
    """A directory holding only links to ``programs``: a PATH lacking everything else."""
    target.mkdir(parents=True, exist_ok=True)
    for program in programs:
        real = shutil.which(program)
        assert real, f"{program} is needed by the test suite"
        (target / program).symlink_to(real)
    return target


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc)."""
    children: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    for task in task_dir.iterdir():
        text = (task / "children").read_text()
        children += [int(c) for c in text.split()]
    return children


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def run_git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)


def disk_state(sandbox: Sandbox) -> dict[str, Any]:
    """What a swarm or replay could create: coordination root, branches, worktrees
    (siblings of the repo), files in the repo, the tmux server."""
    return {
        "coord_root": sandbox.coord_root.exists(),
        "branches": git(sandbox.repo, "for-each-ref", "--format=%(refname)", "refs/heads/"),
        "worktrees": git(sandbox.repo, "worktree", "list", "--porcelain"),
        "siblings": sorted(os.listdir(sandbox.root)),
        "status": git(sandbox.repo, "status", "--porcelain", "--ignored", "--untracked-files=all"),
        "tmux": bool(list(sandbox.tmux_tmpdir.glob("tmux-*/*"))),
    }
