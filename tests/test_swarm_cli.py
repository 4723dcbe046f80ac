"""``kodelyth-ecc swarm`` planning modes and flags, through the real CLI and real git.

Dry-run and ``--json`` must create nothing; ``--write-only`` only the coordination
files. ``--execute`` itself is covered elsewhere.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kodelyth_ecc import __version__
from tests.conftest import Sandbox
from tests.support import Result, git, run_cli, tmux

# Keys the JavaScript tool printed (objective-only.replay-plan.json); scripts rely on them.
JS_PLAN_KEYS = {
    "sessionName",
    "repoRoot",
    "coordinationDir",
    "baseRef",
    "replaceExisting",
    "tmuxCommands",
    "workerPlans",
}
JS_WORKER_KEYS = {
    "workerName",
    "workerSlug",
    "branchName",
    "worktreePath",
    "coordinationDir",
    "taskFilePath",
    "handoffFilePath",
    "statusFilePath",
    "repoRoot",
    "sessionName",
    "seedPaths",
    "task",
    "gitArgs",
    "gitCommand",
    "launchCommand",
}
ECHO_TEMPLATE = "printf 'demo worker %s\\n' {slug} | tee -a {handoff}"


def _state(sandbox: Sandbox) -> dict[str, Any]:
    """Everything a planning command could leave behind, outside the coordination root."""
    repo = sandbox.repo
    return {
        "branches": git(repo, "for-each-ref", "--format=%(refname)", "refs/heads"),
        "worktrees": git(repo, "worktree", "list", "--porcelain"),
        "siblings": sorted(os.listdir(sandbox.root)),
        "tracked": git(repo, "status", "--porcelain", "--untracked-files=all"),
        "tmux": _tmux_server_running(sandbox),
    }


def _tmux_server_running(sandbox: Sandbox) -> bool:
    sockets = list(sandbox.tmux_tmpdir.glob("tmux-*/*"))
    return bool(sockets) or tmux("list-sessions", check=False).returncode == 0


def _json(sandbox: Sandbox, *args: str, cwd: Path | None = None) -> dict[str, Any]:
    result = sandbox.cli("swarm", *args, "--json", cwd=cwd)
    assert result.code == 0, result
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def _limited_path(tmp: Path, *programs: str) -> str:
    """A PATH holding only ``programs`` (symlinks to the real ones)."""
    bin_dir = tmp / "limited-bin"
    bin_dir.mkdir(exist_ok=True)
    for program in programs:
        real = shutil.which(program)
        assert real, program
        (bin_dir / program).symlink_to(real)
    return str(bin_dir)


def _cli_with_path(sandbox: Sandbox, path: str, *args: str) -> Result:
    return run_cli(*args, cwd=sandbox.repo, env={**os.environ, "PATH": path})


def _sq(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


# -- dry-run -----------------------------------------------------------------------------


def test_dry_run_is_the_default_and_creates_nothing(sandbox: Sandbox) -> None:
    before = _state(sandbox)
    assert before["tmux"] is False
    result = sandbox.cli(
        "swarm", "--task", "audit auth", "--agents", "2", "--harness", "echo", "--session", "s1"
    )
    assert result.code == 0, result
    coord = sandbox.coord_root / "s1"
    lines = result.stdout.splitlines()
    assert "Session       s1" in lines
    assert f"Repo          {sandbox.repo}" in lines
    assert f"Coordination  {coord}" in lines
    assert "Task          audit auth" in lines
    assert "Workers       2" in lines
    head = git(sandbox.repo, "rev-parse", "HEAD").strip()
    assert f"Base          HEAD ({head[:12]})" in lines
    for slug in ("security-reviewer", "code-reviewer"):
        handoff = coord / slug / "handoff.md"
        assert f"  {slug}" in lines
        assert f"    branch    orchestrator-s1-{slug}" in lines
        assert f"    worktree  {sandbox.root / f'repo-s1-{slug}'}" in lines
        launch = ECHO_TEMPLATE.format(slug=_sq(slug), handoff=_sq(str(handoff)))
        assert f"    launch    {launch}" in lines
    assert "dry run: nothing was created" in result.stderr

    # Nothing at all: no coordination dir, branch, worktree or tmux server.
    assert not sandbox.coord_root.exists()
    assert _state(sandbox) == before


def test_dry_run_warns_when_the_harness_program_is_missing(sandbox: Sandbox) -> None:
    path = _limited_path(sandbox.root.parent, "git", "tmux")
    result = _cli_with_path(sandbox, path, "swarm", "--task", "audit auth")
    assert result.code == 0, result
    assert "warning: claude is not on PATH" in result.stderr
    assert "--execute will refuse" in result.stderr
    assert "Harness       claude" in result.stdout
    assert not sandbox.coord_root.exists()

    # A `claude` in the repo does not count; one on PATH silences the warning.
    for where in (sandbox.repo, Path(path)):
        fake = where / "claude"
        fake.write_text("#!/bin/sh\n")
        fake.chmod(0o755)
        result = _cli_with_path(sandbox, path, "swarm", "--task", "audit auth")
        assert result.code == 0, result
        assert ("claude is not on PATH" in result.stderr) == (where == sandbox.repo)


def test_dry_run_warns_for_the_chosen_harness(sandbox: Sandbox) -> None:
    path = _limited_path(sandbox.root.parent, "git", "tmux")
    result = _cli_with_path(sandbox, path, "swarm", "--task", "t", "--harness", "codex")
    assert result.code == 0, result
    assert "warning: codex is not on PATH" in result.stderr
    assert "claude" not in result.stderr


def test_dry_run_warns_when_tmux_is_missing_but_not_for_echo(sandbox: Sandbox) -> None:
    # tee: the echo workers' template pipes into it (pre-flight checks it is there).
    path = _limited_path(sandbox.root.parent, "git", "tee")
    result = _cli_with_path(sandbox, path, "swarm", "--task", "t", "--harness", "echo")
    assert result.code == 0, result
    assert result.stderr.count("warning:") == 1
    assert "warning: tmux is not on PATH" in result.stderr


def test_dry_run_with_custom_launcher_does_not_warn_about_the_harness(sandbox: Sandbox) -> None:
    path = _limited_path(sandbox.root.parent, "git", "tmux")
    result = _cli_with_path(
        sandbox, path, "swarm", "--task", "t", "--launcher-cmd", "true {task_file_sh}"
    )
    assert result.code == 0, result
    assert "warning" not in result.stderr


def test_dry_run_warns_when_the_session_is_taken(sandbox: Sandbox) -> None:
    base = ("swarm", "--task", "t", "--harness", "echo", "--session", "s1")
    assert sandbox.cli(*base, "--write-only").code == 0
    result = sandbox.cli(*base)
    assert result.code == 0, result
    assert "session 's1' is taken" in result.stderr
    assert "--replace" in result.stderr
    result = sandbox.cli(*base, "--replace")
    assert result.code == 0, result
    assert "taken" not in result.stderr
    # Even with --replace, a dry run tears nothing down.
    assert (sandbox.coord_root / "s1" / "session.json").is_file()


def test_dry_run_from_a_subdirectory_plans_for_the_whole_repo(sandbox: Sandbox) -> None:
    plan = _json(
        sandbox, "--task", "t", "--agents", "1", "--session", "s1", cwd=sandbox.repo / "src"
    )
    assert plan["repoRoot"] == str(sandbox.repo)
    assert plan["coordinationDir"] == str(sandbox.coord_root / "s1")
    assert plan["workerPlans"][0]["worktreePath"] == str(sandbox.root / "repo-s1-code-reviewer")


# -- --json ------------------------------------------------------------------------------


def test_json_prints_only_the_plan_with_the_js_keys(sandbox: Sandbox) -> None:
    before = _state(sandbox)
    result = sandbox.cli(
        "swarm",
        "--task",
        "audit auth",
        "--agents",
        "2",
        "--harness",
        "echo",
        "--session",
        "s1",
        "--json",
    )
    assert result.code == 0, result
    plan = json.loads(result.stdout)  # the whole of stdout is one JSON document
    assert result.stdout.startswith("{")
    assert plan.keys() >= JS_PLAN_KEYS
    coord = sandbox.coord_root / "s1"
    assert plan["sessionName"] == "s1"
    assert plan["repoRoot"] == str(sandbox.repo)
    assert plan["coordinationDir"] == str(coord)
    assert plan["baseRef"] == "HEAD"
    assert plan["replaceExisting"] is False
    assert [w["workerSlug"] for w in plan["workerPlans"]] == ["security-reviewer", "code-reviewer"]
    for worker in plan["workerPlans"]:
        assert worker.keys() >= JS_WORKER_KEYS
        slug = worker["workerSlug"]
        assert worker["workerName"] == slug
        assert worker["sessionName"] == "s1"
        assert worker["repoRoot"] == str(sandbox.repo)
        assert worker["branchName"] == f"orchestrator-s1-{slug}"
        assert worker["worktreePath"] == str(sandbox.root / f"repo-s1-{slug}")
        assert worker["coordinationDir"] == str(coord / slug)
        assert worker["taskFilePath"] == str(coord / slug / "task.md")
        assert worker["handoffFilePath"] == str(coord / slug / "handoff.md")
        assert worker["statusFilePath"] == str(coord / slug / "status.md")
        assert worker["seedPaths"] == []
        assert worker["task"].startswith(f"# {slug} — swarm task\n")
        assert worker["gitArgs"] == [
            "worktree",
            "add",
            "-b",
            worker["branchName"],
            worker["worktreePath"],
            "HEAD",
        ]
        assert shlex.split(worker["gitCommand"]) == ["git", *worker["gitArgs"]]
        assert worker["launchCommand"] == ECHO_TEMPLATE.format(
            slug=_sq(slug), handoff=_sq(worker["handoffFilePath"])
        )
    commands = plan["tmuxCommands"]
    assert all(c["cmd"] == "tmux" and isinstance(c["description"], str) for c in commands)
    assert commands[0]["args"][:4] == ["new-session", "-d", "-s", "s1"]
    assert sum(c["args"][0] == "split-window" for c in commands) == 2
    assert not sandbox.coord_root.exists()
    assert _state(sandbox) == before


def test_json_launch_command_is_the_launcher_template_filled_in(sandbox: Sandbox) -> None:
    template = (
        "agent --name {worker_name_sh} --slug {worker_slug} --session {session_name_sh} "
        "--repo {repo_root_sh} --wt {worktree_path_sh} --branch {branch_name_raw} "
        "--task {task_file_sh} --handoff {handoff_file_sh} --status {status_file_sh} ${HOME}"
    )
    plan = _json(
        sandbox,
        "--task",
        "t",
        "--agents",
        "Fix Bug",
        "--session",
        "s1",
        "--launcher-cmd",
        template,
    )
    worker = plan["workerPlans"][0]
    assert worker["launcherTemplate"] == template
    assert worker["launchCommand"] == (
        f"agent --name 'Fix Bug' --slug fix-bug --session 's1' --repo {_sq(str(sandbox.repo))} "
        f"--wt {_sq(worker['worktreePath'])} --branch orchestrator-s1-fix-bug "
        f"--task {_sq(worker['taskFilePath'])} --handoff {_sq(worker['handoffFilePath'])} "
        f"--status {_sq(worker['statusFilePath'])} ${{HOME}}"
    )


@pytest.mark.parametrize("harness", ["claude", "opencode"])
def test_json_uses_the_harness_template(sandbox: Sandbox, harness: str) -> None:
    plan = _json(sandbox, "--task", "t", "--agents", "1", "--harness", harness)
    worker = plan["workerPlans"][0]
    assert worker["launchCommand"].startswith(f"exec {harness} ")
    # The task on stdin, never argv; the runner writes the handoff from the result.
    assert worker["launchCommand"].endswith(f" < {_sq(worker['taskFilePath'])}")


def test_json_default_session_name_has_date_and_count(sandbox: Sandbox) -> None:
    before = dt.date.today()
    plan = _json(sandbox, "--task", "t", "--agents", "3")
    after = dt.date.today()
    assert plan["sessionName"] in {f"swarm-{d.isoformat()}-3a" for d in (before, after)}
    assert (
        plan["workerPlans"][0]["branchName"]
        == f"orchestrator-{plan['sessionName']}-" + (plan["workerPlans"][0]["workerSlug"])
    )


def test_json_replace_and_base_ref(sandbox: Sandbox) -> None:
    first = git(sandbox.repo, "rev-parse", "HEAD").strip()
    git(sandbox.repo, "tag", "v1")
    (sandbox.repo / "new.txt").write_text("x\n")
    git(sandbox.repo, "add", "new.txt")
    git(sandbox.repo, "commit", "--quiet", "--no-gpg-sign", "-m", "second")
    plan = _json(sandbox, "--task", "t", "--agents", "1", "--base-ref", "v1", "--replace")
    assert plan["baseRef"] == "v1"
    assert plan["replaceExisting"] is True
    assert plan["workerPlans"][0]["gitArgs"][-1] == "v1"
    dry = sandbox.cli("swarm", "--task", "t", "--agents", "1", "--base-ref", "v1")
    assert dry.code == 0, dry
    assert f"Base          v1 ({first[:12]})" in dry.stdout.splitlines()


# -- --write-only ------------------------------------------------------------------------


def test_write_only_writes_coordination_files_and_nothing_else(sandbox: Sandbox) -> None:
    before = _state(sandbox)
    head = git(sandbox.repo, "rev-parse", "HEAD").strip()
    result = sandbox.cli(
        "swarm",
        "--task",
        "audit auth",
        "--agents",
        "2",
        "--harness",
        "echo",
        "--session",
        "s1",
        "--write-only",
    )
    assert result.code == 0, result
    coord = sandbox.coord_root / "s1"
    assert result.stdout == f"wrote {coord} (2 workers)\n"
    assert sorted(p.name for p in coord.iterdir()) == [
        "code-reviewer",
        "security-reviewer",
        "session.json",
    ]
    for slug in ("code-reviewer", "security-reviewer"):
        assert sorted(p.name for p in (coord / slug).iterdir()) == [
            "handoff.md",
            "status.md",
            "task.md",
        ]
    # The coordination root keeps itself out of `git status`.
    assert (sandbox.coord_root / ".gitignore").read_text() == "*\n"
    # No branch, worktree, tmux server, or change git can see.
    assert _state(sandbox) == before

    record = json.loads((coord / "session.json").read_text())
    assert record["session"] == "s1"
    assert record["task"] == "audit auth"
    assert record["agents"] == ["security-reviewer", "code-reviewer"]
    assert record["harness"] == "echo"
    assert (
        record["launcher"]
        == "printf 'demo worker %s\\n' {worker_slug_sh} | tee -a {handoff_file_sh}"
    )
    assert record["base_ref"] == "HEAD"
    assert record["base_commit"] == head
    assert record["seed_paths"] == []
    assert record["mode"] == "write-only"
    assert record["tool"] == f"kodelyth-ecc@{__version__}"
    assert record["created_at"].endswith("Z")
    assert [w["slug"] for w in record["workers"]] == ["security-reviewer", "code-reviewer"]


def test_write_only_twice_needs_replace_and_replace_rewrites(sandbox: Sandbox) -> None:
    base = ("swarm", "--task", "t", "--agents", "1", "--harness", "echo", "--session", "s1")
    assert sandbox.cli(*base, "--write-only").code == 0
    handoff = sandbox.coord_root / "s1" / "code-reviewer" / "handoff.md"
    original = handoff.read_text()
    handoff.write_text(original + "work in progress\n")

    refused = sandbox.cli(*base, "--write-only")
    assert refused.code == 1, refused
    assert "already taken" in refused.stderr and "--replace" in refused.stderr
    assert handoff.read_text() == original + "work in progress\n"  # untouched

    replaced = sandbox.cli(*base, "--write-only", "--replace")
    assert replaced.code == 0, replaced
    assert handoff.read_text() == original


def test_write_only_base_ref_records_the_resolved_commit(sandbox: Sandbox) -> None:
    first = git(sandbox.repo, "rev-parse", "HEAD").strip()
    git(sandbox.repo, "branch", "stable")
    git(sandbox.repo, "commit", "--quiet", "--no-gpg-sign", "--allow-empty", "-m", "second")
    result = sandbox.cli(
        "swarm",
        "--task",
        "t",
        "--agents",
        "1",
        "--session",
        "s1",
        "--base-ref",
        "stable",
        "--write-only",
    )
    assert result.code == 0, result
    record = json.loads((sandbox.coord_root / "s1" / "session.json").read_text())
    assert (record["base_ref"], record["base_commit"]) == ("stable", first)


@pytest.mark.parametrize("flag", ["--coordination-root", "--coord-root"])
def test_coordination_root_flag_and_alias(sandbox: Sandbox, flag: str) -> None:
    elsewhere = sandbox.root.parent / "coord"
    plan = _json(sandbox, "--task", "t", "--agents", "1", "--session", "s1", flag, str(elsewhere))
    assert plan["coordinationDir"] == str(elsewhere / "s1")
    assert plan["workerPlans"][0]["taskFilePath"] == str(elsewhere / "s1/code-reviewer/task.md")
    assert not elsewhere.exists()

    result = sandbox.cli(
        "swarm",
        "--task",
        "t",
        "--agents",
        "1",
        "--session",
        "s1",
        flag,
        str(elsewhere),
        "--write-only",
    )
    assert result.code == 0, result
    assert (elsewhere / "s1" / "code-reviewer" / "task.md").is_file()
    assert not (elsewhere / ".gitignore").exists()  # outside the repo: nothing to hide
    assert not sandbox.coord_root.exists()


def test_relative_coordination_and_worktree_roots_are_from_the_cwd(sandbox: Sandbox) -> None:
    plan = _json(
        sandbox,
        "--task",
        "t",
        "--agents",
        "1",
        "--session",
        "s1",
        "--coordination-root",
        "../coord",
        "--worktree-root",
        "../trees",
    )
    assert plan["coordinationDir"] == str(sandbox.root / "coord" / "s1")
    worker = plan["workerPlans"][0]
    assert worker["worktreePath"] == str(sandbox.root / "trees" / "repo-s1-code-reviewer")
    assert worker["gitArgs"][4] == worker["worktreePath"]


def test_absolute_worktree_root(sandbox: Sandbox) -> None:
    trees = sandbox.root.parent / "trees"
    plan = _json(
        sandbox, "--task", "t", "--agents", "2", "--session", "s1", "--worktree-root", str(trees)
    )
    assert [w["worktreePath"] for w in plan["workerPlans"]] == [
        str(trees / "repo-s1-code-reviewer"),
        str(trees / "repo-s1-pair-programmer"),
    ]
    assert not trees.exists()


# -- --seed ------------------------------------------------------------------------------


def test_seed_is_repeatable_and_normalised(sandbox: Sandbox) -> None:
    (sandbox.repo / ".env").write_text("TOKEN=x\n")
    (sandbox.repo / "config").mkdir()
    (sandbox.repo / "config" / "local.yml").write_text("a: 1\n")
    plan = _json(
        sandbox,
        "--task",
        "t",
        "--agents",
        "2",
        "--session",
        "s1",
        "--seed",
        ".env",
        "--seed",
        "./config/local.yml",
        "--seed",
        str(sandbox.repo / "src"),
        "--seed",
        ".env",
    )
    expected = [".env", "config/local.yml", "src"]
    assert plan["seedPaths"] == expected
    assert all(w["seedPaths"] == expected for w in plan["workerPlans"])


def test_seed_symlink_inside_the_repo_keeps_its_own_name(sandbox: Sandbox) -> None:
    (sandbox.repo / "envs").mkdir()
    (sandbox.repo / "envs" / "dev.env").write_text("TOKEN=x\n")
    (sandbox.repo / ".env").symlink_to("envs/dev.env")
    plan = _json(sandbox, "--task", "t", "--agents", "1", "--seed", ".env")
    assert plan["seedPaths"] == [".env"]


def test_write_only_lists_seeds_in_task_md(sandbox: Sandbox) -> None:
    (sandbox.repo / ".env").write_text("TOKEN=x\n")
    result = sandbox.cli(
        "swarm",
        "--task",
        "t",
        "--agents",
        "1",
        "--session",
        "s1",
        "--seed",
        ".env",
        "--seed",
        "src/app.py",
        "--write-only",
    )
    assert result.code == 0, result
    task = (sandbox.coord_root / "s1" / "code-reviewer" / "task.md").read_text()
    assert "\n## Seeded Local Overlays\n- `.env`\n- `src/app.py`\n\n## Objective\n" in task
    record = json.loads((sandbox.coord_root / "s1" / "session.json").read_text())
    assert record["seed_paths"] == [".env", "src/app.py"]
    # Seeds are listed, not copied: write-only creates no worktree to copy into.
    assert not (sandbox.root / "repo-s1-code-reviewer").exists()


# -- --plan ------------------------------------------------------------------------------


def _write_plan(sandbox: Sandbox, data: Any, name: str = "plan.json") -> Path:
    path = sandbox.root.parent / name
    path.write_text(json.dumps(data))
    return path


def test_plan_file_with_every_js_key(sandbox: Sandbox) -> None:
    (sandbox.repo / ".env").write_text("TOKEN=x\n")
    git(sandbox.repo, "tag", "v1")
    trees, coord = sandbox.root.parent / "trees", sandbox.root.parent / "coord"
    plan_file = _write_plan(
        sandbox,
        {
            "sessionName": "hand",
            "repoRoot": str(sandbox.repo),
            "worktreeRoot": str(trees),
            "coordinationRoot": str(coord),
            "baseRef": "v1",
            "launcherCommand": "shared-agent {task_file_sh}",
            "seedPaths": [".env"],
            "workers": [
                {"name": "docs", "task": "document the retry policy"},
                {
                    "name": "Fix Bug",
                    "task": "fix the flaky retry",
                    "launcherCommand": "own-agent {worker_slug_sh}",
                    "seedPaths": ["src/app.py"],
                },
            ],
        },
    )
    before = _state(sandbox)
    plan = _json(sandbox, "--plan", str(plan_file), cwd=sandbox.root.parent)
    assert plan["sessionName"] == "hand"
    assert plan["repoRoot"] == str(sandbox.repo)
    assert plan["coordinationDir"] == str(coord / "hand")
    assert plan["baseRef"] == "v1"
    docs, fix = plan["workerPlans"]
    assert (docs["workerName"], docs["workerSlug"]) == ("docs", "docs")
    assert (fix["workerName"], fix["workerSlug"]) == ("Fix Bug", "fix-bug")
    assert docs["task"] == "document the retry policy"
    assert fix["task"] == "fix the flaky retry"
    assert docs["worktreePath"] == str(trees / "repo-hand-docs")
    assert fix["branchName"] == "orchestrator-hand-fix-bug"
    assert docs["launchCommand"] == f"shared-agent {_sq(docs['taskFilePath'])}"
    assert fix["launchCommand"] == "own-agent 'fix-bug'"
    assert docs["seedPaths"] == [".env"]
    assert fix["seedPaths"] == [".env", "src/app.py"]
    assert docs["gitArgs"][-1] == "v1"
    assert not coord.exists() and not trees.exists()
    assert _state(sandbox) == before


def test_plan_file_defaults_and_cli_overrides(sandbox: Sandbox) -> None:
    (sandbox.repo / ".env").write_text("TOKEN=x\n")
    # No repoRoot: the repo around the cwd. Relative --plan path: from the cwd.
    _write_plan(sandbox, {"sessionName": "hand", "workers": [{"name": "a", "task": "do a"}]})
    plan = _json(sandbox, "--plan", "../../plan.json", "--harness", "echo")
    assert plan["repoRoot"] == str(sandbox.repo)
    assert plan["sessionName"] == "hand"
    assert plan["baseRef"] == "HEAD"
    assert plan["coordinationDir"] == str(sandbox.coord_root / "hand")
    assert plan["workerPlans"][0]["launchCommand"].startswith("printf 'demo worker %s\\n' 'a'")

    plan = _json(
        sandbox,
        "--plan",
        "../../plan.json",
        "--session",
        "other",
        "--base-ref",
        "main",
        "--seed",
        ".env",
        "--launcher-cmd",
        "x {worker_slug_sh}",
        "--replace",
    )
    assert plan["sessionName"] == "other"
    assert plan["baseRef"] == "main"
    assert plan["replaceExisting"] is True
    worker = plan["workerPlans"][0]
    assert worker["seedPaths"] == [".env"]
    assert worker["launchCommand"] == "x 'a'"
    assert worker["branchName"] == "orchestrator-other-a"


def test_plan_file_write_only(sandbox: Sandbox) -> None:
    plan_file = _write_plan(
        sandbox,
        {
            "sessionName": "hand",
            "workers": [{"name": "a", "task": "do a"}, {"name": "b", "task": "do b"}],
        },
    )
    before = _state(sandbox)
    result = sandbox.cli("swarm", "--plan", str(plan_file), "--harness", "echo", "--write-only")
    assert result.code == 0, result
    coord = sandbox.coord_root / "hand"
    assert "## Objective\ndo b\n\n## Completion\n" in (coord / "b" / "task.md").read_text()
    record = json.loads((coord / "session.json").read_text())
    assert record["agents"] == ["a", "b"]
    assert record["task"] is None
    assert _state(sandbox) == before


# -- help, version, entry points ---------------------------------------------------------


def test_version(sandbox: Sandbox) -> None:
    result = sandbox.cli("--version")
    assert (result.code, result.stdout) == (0, f"kodelyth-ecc {__version__}\n")


@pytest.mark.parametrize("command", [[], ["swarm"], ["status"], ["teardown"], ["demo"]])
def test_help_on_every_subcommand(sandbox: Sandbox, command: list[str]) -> None:
    result = sandbox.cli(*command, "--help", cwd=sandbox.root)
    assert result.code == 0, result
    assert result.stdout.startswith(f"usage: {' '.join(['kodelyth-ecc', *command])}")
    assert result.stderr == ""


def test_swarm_help_lists_every_flag(sandbox: Sandbox) -> None:
    result = sandbox.cli("swarm", "--help")
    assert result.code == 0, result
    for flag in (
        "--task",
        "--agents",
        "--harness",
        "--launcher-cmd",
        "--seed",
        "--session",
        "--worktree-root",
        "--coordination-root",
        "--coord-root",
        "--base-ref",
        "--replace",
        "--plan",
        "--write-only",
        "--json",
        "--execute",
    ):
        assert flag in result.stdout, flag


def test_python_dash_m_outside_any_repo(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kodelyth_ecc", "--version"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (proc.returncode, proc.stdout) == (0, f"kodelyth-ecc {__version__}\n")


def test_console_script(sandbox: Sandbox) -> None:
    script = Path(sys.executable).parent / "kodelyth-ecc"
    if not script.exists():
        pytest.skip("package not installed into this interpreter's environment")
    proc = subprocess.run(
        [str(script), "swarm", "--task", "t", "--agents", "1", "--harness", "echo", "--json"],
        cwd=sandbox.repo,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["repoRoot"] == str(sandbox.repo)
