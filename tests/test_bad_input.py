"""Bad input to ``kodelyth-ecc swarm``: a one-line error, a non-zero exit (2 for a bad
command line, 1 for bad state), no traceback, and nothing left behind on disk, in git
or in tmux, whichever mode was asked for."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Sandbox
from tests.support import Result, git

BASE = ("swarm", "--harness", "echo", "--session", "s1")
MODES = ("dry-run", "--json", "--write-only", "--execute")


def _state(sandbox: Sandbox) -> dict[str, Any]:
    repo = sandbox.repo
    return {
        "branches": git(repo, "for-each-ref", "--format=%(refname)", "refs/heads"),
        "worktrees": git(repo, "worktree", "list", "--porcelain"),
        "siblings": sorted(os.listdir(sandbox.root)),
        # --ignored: the coordination root hides itself from plain `git status`.
        "files": git(repo, "status", "--porcelain", "--ignored", "--untracked-files=all"),
        # A tmux server, started by anything, makes a socket under TMUX_TMPDIR.
        "tmux": sorted(str(p) for p in sandbox.tmux_tmpdir.rglob("*") if not p.is_dir()),
    }


def assert_refused(result: Result, code: int, *needles: str) -> None:
    assert result.code == code, result
    assert "Traceback" not in result.stderr, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result
    assert lines[0].startswith("kodelyth-ecc"), result
    assert "error:" in lines[0], result
    for needle in needles:
        assert needle in lines[0], result
    assert result.stdout == "", result


def _mode(mode: str) -> tuple[str, ...]:
    return () if mode == "dry-run" else (mode,)


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    code: int
    needles: tuple[str, ...]


USAGE_CASES = [
    Case("no-task", (), 2, ("missing --task",)),
    Case("blank-task", ("--task", "  \n "), 2, ("missing --task",)),
    Case("agents-0", ("--task", "t", "--agents", "0"), 2, ("--agents 0 is out of range",)),
    Case("agents-13", ("--task", "t", "--agents", "13"), 2, ("--agents 13 is out of range",)),
    Case("agents-negative", ("--task", "t", "--agents", "-1"), 2, ("out of range",)),
    Case("agents-empty-name", ("--task", "t", "--agents", "a,,b"), 2, ("empty agent name",)),
    Case(
        "agents-too-many-names",
        ("--task", "t", "--agents", ",".join(f"a{i}" for i in range(13))),
        2,
        ("at most 12",),
    ),
    Case("agents-dup-slug", ("--task", "t", "--agents", "Fix Bug,fix_bug"), 2, ("share the slug",)),
    Case("harness", ("--task", "t", "--harness", "gpt"), 2, ("unknown harness 'gpt'",)),
    Case(
        "placeholder",
        ("--task", "t", "--launcher-cmd", "agent {task_file_sh} {prompt}"),
        2,
        ("unknown placeholder {prompt}",),
    ),
    Case("empty-template", ("--task", "t", "--launcher-cmd", " "), 2, ("empty launcher template",)),
    Case("seed-missing", ("--task", "t", "--seed", "nope.txt"), 2, ("'nope.txt' does not exist",)),
    Case("seed-dotdot", ("--task", "t", "--seed", "../outside.txt"), 2, ("outside the repo",)),
    Case("seed-symlink", ("--task", "t", "--seed", "link-out"), 2, ("outside the repo",)),
    Case(
        "seed-symlinked-dir",
        ("--task", "t", "--seed", "dir-out/secret.txt"),
        2,
        ("outside the repo",),
    ),
    Case("seed-whole-repo", ("--task", "t", "--seed", "."), 2, ("whole repo",)),
    Case("seed-git-dir", ("--task", "t", "--seed", ".git"), 2, (".git",)),
    Case("seed-empty", ("--task", "t", "--seed", ""), 2, ("empty --seed path",)),
    Case("session-dotdot", ("--task", "t", "--session", "../x"), 2, ("invalid session name",)),
    Case(
        "session-metachar",
        ("--task", "t", "--session", "s;touch pwned"),
        2,
        ("invalid session name",),
    ),
    Case("base-ref", ("--task", "t", "--base-ref", "nope"), 1, ("base ref 'nope'",)),
    Case(
        "base-ref-option-injection",
        ("--task", "t", "--base-ref=--output=pwned"),
        1,
        ("base ref '--output=pwned'",),
    ),
    Case("bad-flag", ("--task", "t", "--bogus"), 2, ("unrecognized arguments: --bogus",)),
]


@pytest.fixture
def bad_seeds(sandbox: Sandbox) -> Sandbox:
    """Things next to and inside the repo that seeds must not reach."""
    (sandbox.root / "outside.txt").write_text("outside\n")
    (sandbox.root / "outdir").mkdir()
    (sandbox.root / "outdir" / "secret.txt").write_text("secret\n")
    (sandbox.repo / "link-out").symlink_to(sandbox.root / "outside.txt")
    (sandbox.repo / "dir-out").symlink_to(sandbox.root / "outdir")
    return sandbox


@pytest.mark.parametrize("case", USAGE_CASES, ids=lambda c: c.id)
def test_bad_command_line_is_refused_before_execute_creates_anything(
    bad_seeds: Sandbox, case: Case
) -> None:
    sandbox = bad_seeds
    before = _state(sandbox)
    result = sandbox.cli(*BASE, *case.args, "--execute")
    assert_refused(result, case.code, *case.needles)
    assert not sandbox.coord_root.exists()
    assert not (sandbox.repo / "pwned").exists()
    assert _state(sandbox) == before


# A sample across the checks (names, harness, seeds, git); every case runs with --execute above.
EVERY_MODE_CASES = ("no-task", "agents-13", "placeholder", "seed-symlink", "base-ref")


@pytest.mark.parametrize(
    "case", [c for c in USAGE_CASES if c.id in EVERY_MODE_CASES], ids=lambda c: c.id
)
def test_bad_command_line_is_refused_in_every_planning_mode(bad_seeds: Sandbox, case: Case) -> None:
    sandbox = bad_seeds
    before = _state(sandbox)
    for mode in ("dry-run", "--json", "--write-only"):
        result = sandbox.cli(*BASE, *case.args, *_mode(mode))
        assert_refused(result, case.code, *case.needles)
        assert not sandbox.coord_root.exists(), mode
        assert _state(sandbox) == before, mode


METACHAR_NAMES = [
    "a;rm -rf x",
    "$(touch pwned)",
    "`touch pwned`",
    "a && touch pwned",
    "a|touch pwned",
    "a>pwned",
    "-rf",
    "a\ntouch pwned",
    "'quoted'",
]


@pytest.fixture
def sentinel(sandbox: Sandbox) -> Path:
    """What `rm -rf x` would delete if a name ever reached a shell."""
    keep = sandbox.repo / "x" / "keep"
    keep.parent.mkdir()
    keep.write_text("keep\n")
    return keep


@pytest.mark.parametrize("name", METACHAR_NAMES)
def test_agent_names_with_shell_metacharacters_are_refused(
    sandbox: Sandbox, sentinel: Path, tmp_path: Path, name: str
) -> None:
    before = _state(sandbox)
    result = sandbox.cli(*BASE, "--task", "t", "--agents", f"ok,{name}", "--execute")
    assert_refused(result, 2, "invalid agent name", repr(name))
    assert sentinel.is_file()
    assert not list(tmp_path.rglob("pwned"))
    assert not sandbox.coord_root.exists()
    assert _state(sandbox) == before


def test_metacharacter_names_are_refused_in_every_planning_mode(
    sandbox: Sandbox, sentinel: Path, tmp_path: Path
) -> None:
    before = _state(sandbox)
    for mode in ("dry-run", "--json", "--write-only"):
        name = "$(touch pwned)"
        result = sandbox.cli(*BASE, "--task", "t", "--agents", name, *_mode(mode))
        assert_refused(result, 2, "invalid agent name", repr(name))
    assert sentinel.is_file()
    assert not list(tmp_path.rglob("pwned"))
    assert not sandbox.coord_root.exists()
    assert _state(sandbox) == before


@pytest.mark.parametrize("mode", ["--write-only", "--execute"])
def test_metacharacter_worker_name_in_a_plan_file_is_refused(
    sandbox: Sandbox, tmp_path: Path, mode: str
) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps({"sessionName": "s1", "workers": [{"name": "$(touch pwned)", "task": "t"}]})
    )
    before = _state(sandbox)
    result = sandbox.cli("swarm", "--plan", str(plan), "--harness", "echo", mode)
    assert_refused(result, 2, "invalid agent name '$(touch pwned)'")
    assert not list(tmp_path.rglob("pwned"))
    assert _state(sandbox) == before


def test_not_a_git_repo(sandbox: Sandbox, tmp_path: Path) -> None:
    elsewhere = tmp_path / "not-a-repo"
    elsewhere.mkdir()
    for mode in MODES:
        result = sandbox.cli(*BASE, "--task", "t", *_mode(mode), cwd=elsewhere)
        assert_refused(result, 1, "not inside a git work tree", str(elsewhere))
        assert list(elsewhere.iterdir()) == [], mode


@pytest.mark.parametrize(
    ("flags", "conflict"),
    [
        (("--json", "--write-only"), "--write-only"),
        (("--write-only", "--execute"), "--execute"),
        (("--json", "--execute"), "--execute"),
    ],
)
def test_modes_are_mutually_exclusive(
    sandbox: Sandbox, flags: tuple[str, ...], conflict: str
) -> None:
    before = _state(sandbox)
    result = sandbox.cli(*BASE, "--task", "t", *flags)
    assert_refused(result, 2, "not allowed with", conflict)
    assert _state(sandbox) == before


def test_task_and_plan_are_exclusive(sandbox: Sandbox, tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"sessionName": "s1", "workers": [{"name": "a", "task": "t"}]}))
    result = sandbox.cli(*BASE, "--task", "t", "--plan", str(plan), "--write-only")
    assert_refused(result, 2, "--task and --plan")
    assert not sandbox.coord_root.exists()


# -- a session that is already taken -----------------------------------------------------


@pytest.mark.parametrize("mode", ["--write-only", "--execute"])
def test_taken_coordination_dir_is_refused_without_replace(sandbox: Sandbox, mode: str) -> None:
    taken = sandbox.coord_root / "s1"
    taken.mkdir(parents=True)
    (taken / "notes.md").write_text("mine\n")
    before = _state(sandbox)
    result = sandbox.cli(*BASE, "--task", "t", "--agents", "1", mode)
    assert_refused(result, 1, "session 's1' is already taken", str(taken), "--replace")
    assert sorted(p.name for p in taken.iterdir()) == ["notes.md"]
    assert _state(sandbox) == before


def test_taken_branch_is_refused_without_replace(sandbox: Sandbox) -> None:
    git(sandbox.repo, "branch", "orchestrator-s1-code-reviewer")
    before = _state(sandbox)
    result = sandbox.cli(*BASE, "--task", "t", "--agents", "1", "--execute")
    assert_refused(result, 1, "already taken", "branch orchestrator-s1-code-reviewer exists")
    assert not sandbox.coord_root.exists()
    assert _state(sandbox) == before


def test_taken_worktree_path_is_refused_without_replace(sandbox: Sandbox) -> None:
    path = sandbox.root / "repo-s1-code-reviewer"
    path.mkdir()
    (path / "precious.txt").write_text("keep\n")
    before = _state(sandbox)
    result = sandbox.cli(*BASE, "--task", "t", "--agents", "1", "--execute")
    assert_refused(result, 1, "already taken", f"worktree path {path} exists")
    assert (path / "precious.txt").read_text() == "keep\n"
    assert not sandbox.coord_root.exists()
    assert _state(sandbox) == before


def test_taken_session_only_warns_in_a_dry_run(sandbox: Sandbox) -> None:
    git(sandbox.repo, "branch", "orchestrator-s1-code-reviewer")
    result = sandbox.cli(*BASE, "--task", "t", "--agents", "1")
    assert result.code == 0, result
    assert "branch orchestrator-s1-code-reviewer exists" in result.stderr
    assert "--execute will refuse without --replace" in result.stderr


# -- --plan files ------------------------------------------------------------------------

GOOD_WORKER = {"name": "a", "task": "do a"}

PLAN_CASES: list[tuple[str, Any, int, tuple[str, ...]]] = [
    ("not-an-object", [GOOD_WORKER], 2, ("must hold a JSON object",)),
    ("no-session", {"workers": [GOOD_WORKER]}, 2, ("needs a 'sessionName' string",)),
    ("session-invalid", {"sessionName": "a/b", "workers": [GOOD_WORKER]}, 2, ("'a/b'",)),
    ("no-workers", {"sessionName": "s1"}, 2, ("'workers' must be a non-empty list",)),
    ("workers-not-list", {"sessionName": "s1", "workers": {"a": "t"}}, 2, ("non-empty list",)),
    ("worker-not-object", {"sessionName": "s1", "workers": ["a"]}, 2, ("workers[0]",)),
    (
        "worker-no-task",
        {"sessionName": "s1", "workers": [GOOD_WORKER, {"name": "b"}]},
        2,
        ("workers[1] needs a 'task'",),
    ),
    (
        "worker-name-not-str",
        {"sessionName": "s1", "workers": [{"name": 7, "task": "t"}]},
        2,
        ("workers[0].name must be a string, got int",),
    ),
    (
        "worker-seeds-not-list",
        {"sessionName": "s1", "workers": [{**GOOD_WORKER, "seedPaths": "src"}]},
        2,
        ("workers[0].seedPaths must be a list of strings",),
    ),
    (
        "worker-launcher-placeholder",
        {"sessionName": "s1", "workers": [{**GOOD_WORKER, "launcherCommand": "x {oops}"}]},
        2,
        ("unknown placeholder {oops}",),
    ),
    (
        "worker-seed-outside",
        {"sessionName": "s1", "workers": [{**GOOD_WORKER, "seedPaths": ["../"]}]},
        2,
        ("outside the repo",),
    ),
    (
        "duplicate-slugs",
        {"sessionName": "s1", "workers": [GOOD_WORKER, {"name": "A", "task": "t"}]},
        2,
        ("share the slug 'a'",),
    ),
    (
        "replace-not-bool",
        {"sessionName": "s1", "replaceExisting": "no", "workers": [GOOD_WORKER]},
        2,
        ("replaceExisting must be true or false",),
    ),
    (
        "relative-repo-root",
        {"sessionName": "s1", "repoRoot": "repo", "workers": [GOOD_WORKER]},
        2,
        ("must be an absolute path",),
    ),
    (
        "missing-repo-root",
        {"sessionName": "s1", "repoRoot": "/nonexistent/acme", "workers": [GOOD_WORKER]},
        1,
        ("/nonexistent/acme does not exist",),
    ),
]


@pytest.mark.parametrize(
    ("data", "code", "needles"),
    [pytest.param(d, c, n, id=i) for i, d, c, n in PLAN_CASES],
)
def test_bad_plan_file_is_refused(
    sandbox: Sandbox, tmp_path: Path, data: Any, code: int, needles: tuple[str, ...]
) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(data))
    before = _state(sandbox)
    result = sandbox.cli("swarm", "--plan", str(plan), "--harness", "echo", "--execute")
    assert_refused(result, code, *needles)
    assert not sandbox.coord_root.exists()
    assert _state(sandbox) == before


@pytest.mark.parametrize(
    ("data", "code", "needles"),
    [
        pytest.param(d, c, n, id=i)
        for i, d, c, n in PLAN_CASES
        if i in {"worker-no-task", "missing-repo-root"}
    ],
)
def test_bad_plan_file_is_refused_in_every_planning_mode(
    sandbox: Sandbox, tmp_path: Path, data: Any, code: int, needles: tuple[str, ...]
) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(data))
    before = _state(sandbox)
    for mode in ("dry-run", "--json", "--write-only"):
        result = sandbox.cli("swarm", "--plan", str(plan), "--harness", "echo", *_mode(mode))
        assert_refused(result, code, *needles)
        assert not sandbox.coord_root.exists(), mode
        assert _state(sandbox) == before, mode


def test_plan_repo_root_that_is_not_a_repo(sandbox: Sandbox, tmp_path: Path) -> None:
    elsewhere = tmp_path / "plain-dir"
    elsewhere.mkdir()
    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps({"sessionName": "s1", "repoRoot": str(elsewhere), "workers": [GOOD_WORKER]})
    )
    for mode in ("dry-run", "--write-only"):
        result = sandbox.cli("swarm", "--plan", str(plan), "--harness", "echo", *_mode(mode))
        assert_refused(result, 1, "not inside a git work tree")
        assert list(elsewhere.iterdir()) == []


def test_missing_plan_file(sandbox: Sandbox, tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    result = sandbox.cli("swarm", "--plan", str(missing), "--write-only")
    assert_refused(result, 2, f"plan file {missing} does not exist")
    assert not sandbox.coord_root.exists()


def test_invalid_json_names_line_and_column(sandbox: Sandbox, tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(
        '{\n  "sessionName": "s1",\n  "workers": [\n    {"name": "a", "task": "t"},\n  ]\n}\n'
    )
    result = sandbox.cli("swarm", "--plan", str(plan), "--write-only")
    assert_refused(result, 2, f"plan file {plan} is not valid JSON", "line 5, column 3")
    assert not sandbox.coord_root.exists()


@pytest.mark.parametrize("content", [b"\xff\xfe{not utf-8", None])
def test_unreadable_plan_file(sandbox: Sandbox, tmp_path: Path, content: bytes | None) -> None:
    plan = tmp_path / "plan.json"
    if content is None:
        plan.mkdir()  # a directory where the file should be
    else:
        plan.write_bytes(content)
    result = sandbox.cli("swarm", "--plan", str(plan), "--write-only")
    assert_refused(result, 2, str(plan))
    assert not sandbox.coord_root.exists()


def test_agents_and_plan_are_exclusive(sandbox: Sandbox, tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"sessionName": "p1", "workers": [{"name": "a", "task": "t"}]}))
    before = _state(sandbox)
    result = sandbox.cli("swarm", "--plan", str(plan), "--agents", "3", "--execute")
    assert_refused(result, 2, "--agents and --plan are exclusive")
    assert _state(sandbox) == before
