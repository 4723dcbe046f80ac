"""The default session name is the smallest free one (issue 9, item 16): the second
`swarm --execute` of a day without --session gets `swarm-<date>-<N>a-2`, not an error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from kodelyth_ecc import naming
from kodelyth_ecc.errors import SessionTaken
from kodelyth_ecc.freename import claim_free_name, first_free_name, name_is_free, numbered
from tests.conftest import Sandbox
from tests.support import git, run_cli, tmux
from tests.swarm_helpers import has_session, orchestrator_branches, wait_done

SWARM = ("swarm", "--task", "t", "--agents", "alpha,beta", "--harness", "echo")


def _default() -> str:
    return naming.default_session_name(2)


def _started_name(stdout: str) -> str:
    first = stdout.splitlines()[0]
    assert first.startswith("started "), stdout
    return first.split()[1].rstrip(":")


def test_second_execute_of_the_day_gets_the_next_free_name(sandbox: Sandbox) -> None:
    first = sandbox.cli(*SWARM, "--execute")
    assert first.code == 0, first
    assert _started_name(first.stdout) == _default()
    second = sandbox.cli(*SWARM, "--execute")
    assert second.code == 0, second
    assert _started_name(second.stdout) == f"{_default()}-2"
    for name in (_default(), f"{_default()}-2"):
        assert wait_done(sandbox, name)["workers"][0]["state"] == "completed"
        assert (sandbox.coord_root / name / "session.json").is_file()
    # Teardown of the first frees its name again: the smallest free one is picked.
    assert sandbox.cli("teardown", _default(), "--purge").code == 0
    third = sandbox.cli(*SWARM, "--write-only")
    assert third.code == 0, third
    assert third.stdout.startswith(f"wrote {sandbox.coord_root / _default()} "), third


def test_dry_run_and_json_show_the_name_that_would_be_used(sandbox: Sandbox) -> None:
    assert sandbox.cli(*SWARM, "--write-only").code == 0
    dry = sandbox.cli(*SWARM)
    assert dry.code == 0, dry
    assert dry.stdout.splitlines()[0].split() == ["Session", f"{_default()}-2"], dry
    assert "taken" not in dry.stderr, dry
    plan = json.loads(sandbox.cli(*SWARM, "--json").stdout)
    assert plan["sessionName"] == f"{_default()}-2"
    assert plan["workerPlans"][0]["branchName"] == f"orchestrator-{_default()}-2-alpha"
    # Dry-run claims nothing.
    assert sorted(p.name for p in sandbox.coord_root.iterdir() if p.is_dir()) == [_default()]


def test_a_name_given_with_session_is_never_swapped(sandbox: Sandbox) -> None:
    assert sandbox.cli(*SWARM, "--session", "mine", "--write-only").code == 0
    again = sandbox.cli(*SWARM, "--session", "mine", "--execute")
    assert again.code == 1, again
    assert "'mine' is already taken" in again.stderr
    assert not (sandbox.coord_root / "mine-2").exists()
    assert orchestrator_branches(sandbox.repo) == []


def test_replace_without_session_still_replaces_the_default_name(sandbox: Sandbox) -> None:
    assert sandbox.cli(*SWARM, "--write-only").code == 0
    replaced = sandbox.cli(*SWARM, "--write-only", "--replace")
    assert replaced.code == 0, replaced
    assert replaced.stdout.startswith(f"wrote {sandbox.coord_root / _default()} "), replaced
    assert not (sandbox.coord_root / f"{_default()}-2").exists()


def test_runs_started_together_without_session_all_get_names(sandbox: Sandbox) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "kodelyth_ecc", *SWARM, "--execute"],
            cwd=sandbox.repo,
            env=os.environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    names = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, err
        names.append(_started_name(out))
    assert sorted(names) == [_default(), f"{_default()}-2", f"{_default()}-3"]
    for name in names:
        wait_done(sandbox, name)
        assert run_cli("teardown", name, "--purge", cwd=sandbox.repo, env=os.environ).code == 0
    assert orchestrator_branches(sandbox.repo) == []


# -- freename ------------------------------------------------------------------------------


def _first(sandbox: Sandbox, base: str = "s", **kwargs: object) -> str:
    return first_free_name(
        base,
        coordination_root=str(sandbox.coord_root),
        repo_root=str(sandbox.repo),
        slugs=["alpha"],
        **kwargs,  # type: ignore[arg-type]
    )


def test_numbering_schemes() -> None:
    assert [numbered("s", n) for n in (1, 2, 3)] == ["s", "s-2", "s-3"]
    replay = [numbered("o-replay", n, bare_first=False) for n in (1, 2)]
    assert replay == ["o-replay-1", "o-replay-2"]


def test_every_kind_of_use_takes_a_name(sandbox: Sandbox, tmp_path: Path) -> None:
    assert _first(sandbox) == "s"
    (sandbox.coord_root / "s").mkdir(parents=True)
    tmux("new-session", "-d", "-s", "s-2")
    git(sandbox.repo, "branch", "orchestrator-s-3-someone")
    (sandbox.root / "repo-s-4-alpha").symlink_to(tmp_path / "nowhere")
    assert _first(sandbox) == "s-5"
    assert _first(sandbox, start=7) == "s-7"
    assert _first(sandbox, "o-replay", bare_first=False) == "o-replay-1"
    assert not name_is_free(
        "s-4", str(sandbox.coord_root), str(sandbox.repo), str(sandbox.root), ["alpha"]
    )
    # A tmux session whose name only starts with the candidate does not take it.
    tmux("new-session", "-d", "-s", "t-10")
    assert _first(sandbox, "t", start=1) == "t"
    assert has_session("t-10")


def test_claim_moves_on_when_another_run_claims_first(sandbox: Sandbox) -> None:
    tried: list[str] = []

    def attempt(name: str) -> str:
        tried.append(name)
        if len(tried) < 3:
            raise SessionTaken(f"session {name!r} is already taken")
        return name

    claimed = claim_free_name(
        "s",
        attempt,
        coordination_root=str(sandbox.coord_root),
        repo_root=str(sandbox.repo),
        slugs=["alpha"],
    )
    assert (claimed, tried) == ("s-3", ["s", "s-2", "s-3"])
