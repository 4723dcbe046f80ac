"""``kodelyth-ecc replay`` through the real CLI: dry-run, --json, --write-only,
--execute (with real git worktrees and tmux), --wait/--export, names, bases,
launcher trust and hostile bundles."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kodelyth_ecc.bundle import read_bundle
from tests.conftest import Sandbox
from tests.replay_helpers import (
    REFERENCE,
    bundle_dict,
    reference,
    swarm_task_md,
    task_md,
    write_json,
)
from tests.support import Result, git, retry_until, tmux
from tests.swarm_helpers import (
    TASK,
    has_session,
    orchestrator_branches,
    registered_worktrees,
    session_record,
    started,
    wait_done,
    worktree_of,
)

JS_TASK = "audit oauth flow for security regressions"
JS_SESSION = "swarm-2026-11-20-3a"
JS_AGENTS = ["security-reviewer", "code-reviewer", "pair-programmer"]
WAIT = ("--wait", "--timeout", "30")


# -- helpers ---------------------------------------------------------------------------


def _copy_reference(tmp_path: Path, name: str) -> Path:
    """A private copy of a reference bundle (outside the repo and its siblings)."""
    target = tmp_path / "bundles" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes((REFERENCE / name).read_bytes())
    return target


def _bundle(tmp_path: Path, data: dict[str, Any], name: str = "b.bundle.json") -> Path:
    return write_json(tmp_path / "bundles" / name, data)


def _tmux_server_running(sandbox: Sandbox) -> bool:
    return bool(list(sandbox.tmux_tmpdir.glob("tmux-*/*")))


def _disk(sandbox: Sandbox) -> dict[str, Any]:
    """Everything a replay could create: coordination root, branches, worktrees,
    siblings of the repo (worktree paths), files in the repo, the tmux server."""
    return {
        "coord_root": sandbox.coord_root.exists(),
        "branches": git(sandbox.repo, "for-each-ref", "--format=%(refname)", "refs/heads/"),
        "worktrees": git(sandbox.repo, "worktree", "list", "--porcelain"),
        "siblings": sorted(os.listdir(sandbox.root)),
        "status": git(sandbox.repo, "status", "--porcelain", "--ignored", "--untracked-files=all"),
        "tmux": _tmux_server_running(sandbox),
    }


def _lines(result: Result) -> list[str]:
    return result.stdout.splitlines()


def _started_name(result: Result) -> str:
    match = re.search(r"^started (\S+) \(replay of ", result.stdout, re.MULTILINE)
    assert match, result
    return match.group(1)


def _head(path: Path) -> str:
    return git(path, "rev-parse", "HEAD").strip()


def _keys(data: Any) -> set[str]:
    assert isinstance(data, dict), data
    return set(data)


# -- dry-run ---------------------------------------------------------------------------


def test_dry_run_is_the_default_shows_the_replay_and_creates_nothing(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    bundle = _copy_reference(tmp_path, "rich-meta.bundle.json")
    before = _disk(sandbox)
    assert before["tmux"] is False
    result = sandbox.cli("replay", str(bundle))
    assert result.code == 0, result
    head = _head(sandbox.repo)
    lines = _lines(result)
    assert f"Replay        {JS_SESSION} -> {JS_SESSION}-replay-1" in lines
    assert f"Workers       3: {', '.join(JS_AGENTS)}" in lines
    assert "Harness       echo" in lines
    assert f"Base          HEAD ({head[:12]}): the origin's base ref" in lines
    assert f"Task          {JS_TASK}" in lines
    assert f"Coordination  {sandbox.coord_root / (JS_SESSION + '-replay-1')}" in lines
    assert "Differs from the origin: nothing (same task, agents, harness and base)" in lines, result
    assert "dry run: nothing was created" in result.stderr
    assert _disk(sandbox) == before


def test_dry_run_says_what_differs(sandbox: Sandbox, tmp_path: Path) -> None:
    bundle = _copy_reference(tmp_path, "rich-meta.bundle.json")
    git(sandbox.repo, "branch", "other")
    before = _disk(sandbox)
    result = sandbox.cli(
        "replay", str(bundle), "--agents", "tdd-guide,Api Guardian", "--harness", "codex",
        "--base-ref", "other",
    )  # fmt: skip
    assert result.code == 0, result
    lines = _lines(result)
    assert "Workers       2: tdd-guide, api-guardian" in lines
    assert "Harness       codex" in lines
    assert "Differs from the origin:" in lines
    assert "  harness  echo -> codex" in lines
    assert f"  agents   {','.join(JS_AGENTS)} -> tdd-guide,Api Guardian" in lines
    assert "  base     HEAD -> other" in lines
    assert _disk(sandbox) == before


def test_dry_run_with_differing_tasks_says_so(sandbox: Sandbox, tmp_path: Path) -> None:
    bundle = _copy_reference(tmp_path, "objective-only.bundle.json")
    result = sandbox.cli("replay", str(bundle))
    assert result.code == 0, result
    assert "Replay        handwritten -> handwritten-replay-1" in _lines(result)
    assert "Harness       claude" in _lines(result)
    (task_line,) = [line for line in _lines(result) if line.startswith("Task ")]
    assert "each worker's own task" in task_line


def test_dry_run_warns_when_the_origin_commit_is_missing_here(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    missing = "a" * 40
    data = bundle_dict(
        {"alpha": swarm_task_md("alpha", TASK)},
        meta={"harness": "echo", "base_ref": "HEAD", "base_commit": missing},
    )
    result = sandbox.cli("replay", str(_bundle(tmp_path, data)))
    assert result.code == 0, result
    assert f"warning: the origin's base commit {missing[:12]} is not in this repository" in (
        result.stderr
    )
    head = _head(sandbox.repo)
    assert f"Base          HEAD ({head[:12]}): the origin's base ref" in _lines(result)
    assert f"  base     {missing} -> HEAD" in _lines(result)


def test_dry_run_warns_when_the_chosen_base_lacks_the_origin_commit(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    git(sandbox.repo, "branch", "old")
    (sandbox.repo / "new.txt").write_text("new\n")
    git(sandbox.repo, "add", "new.txt")
    git(sandbox.repo, "commit", "--quiet", "--no-gpg-sign", "-m", "new")
    origin = _head(sandbox.repo)
    data = bundle_dict(
        {"alpha": swarm_task_md("alpha", TASK)}, meta={"harness": "echo", "base_commit": origin}
    )
    bundle = _bundle(tmp_path, data)

    same = sandbox.cli("replay", str(bundle))
    assert same.code == 0, same
    assert "warning" not in same.stderr
    assert f"Base          {origin} ({origin[:12]}): the origin's base commit" in same.stdout

    other = sandbox.cli("replay", str(bundle), "--base-ref", "old")
    assert other.code == 0, other
    assert (
        f"warning: the chosen base old does not contain the origin's commit {origin[:12]}"
        in other.stderr
    )
    assert "Base          old (" in other.stdout


def test_dry_run_warns_when_the_session_is_taken(sandbox: Sandbox, tmp_path: Path) -> None:
    bundle = _copy_reference(tmp_path, "rich-meta.bundle.json")
    (sandbox.coord_root / "mine").mkdir(parents=True)
    result = sandbox.cli("replay", str(bundle), "--session", "mine")
    assert result.code == 0, result
    assert "session 'mine' is taken" in result.stderr


def test_unknown_harness_in_the_bundle_is_a_usage_error(sandbox: Sandbox, tmp_path: Path) -> None:
    data = bundle_dict({"alpha": swarm_task_md("alpha", TASK)}, meta={"harness": "gpt-9000"})
    bundle = _bundle(tmp_path, data)
    before = _disk(sandbox)
    for mode in ((), ("--json",), ("--execute",)):
        result = sandbox.cli("replay", str(bundle), *mode)
        assert result.code == 2, result
        assert (
            "the bundle's meta.harness is not a harness known here: pass --harness" in result.stderr
        )
        assert "Traceback" not in result.stderr
    assert _disk(sandbox) == before
    ok = sandbox.cli("replay", str(bundle), "--harness", "echo")
    assert ok.code == 0, ok


# -- --json ----------------------------------------------------------------------------


def test_json_prints_only_the_plan_with_the_js_tools_keys(sandbox: Sandbox, tmp_path: Path) -> None:
    bundle = _copy_reference(tmp_path, "objective-only.bundle.json")
    before = _disk(sandbox)
    result = sandbox.cli("replay", str(bundle), "--json")
    assert result.code == 0, result
    ours = json.loads(result.stdout)  # stdout is one JSON document and nothing else
    js = reference("objective-only.replay-plan.json")
    assert _keys(ours) == _keys(js) == {"planConfig", "plan"}

    # Every key the JS tool printed is there, at every level.
    config, js_config = ours["planConfig"], js["planConfig"]
    assert _keys(js_config) <= _keys(config)
    assert _keys(js_config["_meta"]) <= _keys(config["_meta"])
    for worker in config["workers"]:
        assert _keys(js_config["workers"][0]) <= _keys(worker)
    plan, js_plan = ours["plan"], js["plan"]
    assert _keys(js_plan) <= _keys(plan)
    for worker_plan in plan["workerPlans"]:
        assert _keys(js_plan["workerPlans"][0]) <= _keys(worker_plan)
    for command in plan["tmuxCommands"]:
        assert _keys(js_plan["tmuxCommands"][0]) <= _keys(command)

    # Same shape of values where the JS tool's are not machine-specific.
    name = "handwritten-replay-1"
    assert config["sessionName"] == plan["sessionName"] == js_config["sessionName"] == name
    assert config["repoRoot"] == str(sandbox.repo)
    assert plan["coordinationDir"] == str(sandbox.coord_root / name)
    assert config["_meta"]["pickedAgents"] == js_config["_meta"]["pickedAgents"]
    assert config["_meta"]["count"] == 2
    assert config["_meta"]["harness"] == "claude"
    assert [w["workerSlug"] for w in plan["workerPlans"]] == ["docs", "fix-bug"]
    assert plan["workerPlans"][1]["branchName"] == "orchestrator-handwritten-replay-1-fix-bug"
    assert plan["workerPlans"][1]["worktreePath"] == str(
        sandbox.root / "repo-handwritten-replay-1-fix-bug"
    )

    # ...but not the JS tool's bug: each worker keeps its own task.
    js_tasks = [w["task"] for w in js_config["workers"]]
    assert all("document the retry policy" in t for t in js_tasks)
    tasks = {w["name"]: w["task"] for w in config["workers"]}
    assert "document the retry policy" in tasks["docs"]
    assert "fix the flaky retry in payments/client.py" in tasks["fix-bug"]
    assert "document the retry policy" not in tasks["fix-bug"]
    assert [w["task"] for w in plan["workerPlans"]] == [tasks["docs"], tasks["fix-bug"]]

    assert _disk(sandbox) == before


def test_json_of_a_shared_task_bundle(sandbox: Sandbox, tmp_path: Path) -> None:
    bundle = _copy_reference(tmp_path, "no-meta.bundle.json")
    result = sandbox.cli("replay", str(bundle), "--json", "--agents", "a,b", "--harness", "echo")
    assert result.code == 0, result
    config = json.loads(result.stdout)["planConfig"]
    assert config["_meta"] == {
        "task": JS_TASK,
        "harness": "echo",
        "pickedAgents": ["a", "b"],
        "count": 2,
    }
    for worker in config["workers"]:
        assert f"## Shared Task\n\n{JS_TASK}\n" in worker["task"]


# -- --write-only ----------------------------------------------------------------------


def test_write_only_writes_coordination_files_and_nothing_else(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    bundle = _copy_reference(tmp_path, "rich-meta.bundle.json")
    before = _disk(sandbox)
    result = sandbox.cli("replay", str(bundle), "--write-only")
    assert result.code == 0, result
    name = f"{JS_SESSION}-replay-1"
    coord = sandbox.coord_root / name
    assert f"wrote {coord} (3 workers)" in result.stdout
    assert sorted(p.name for p in coord.iterdir()) == sorted([*JS_AGENTS, "session.json"])
    for slug in JS_AGENTS:
        assert sorted(p.name for p in (coord / slug).iterdir()) == [
            "handoff.md",
            "status.md",
            "task.md",
        ]
        assert f"## Shared Task\n\n{JS_TASK}\n" in (coord / slug / "task.md").read_text()
    record = session_record(sandbox, name)
    assert record["mode"] == "write-only"
    assert record["replay_of"]["session"] == JS_SESSION
    # No branches, worktrees or tmux; the repo itself is as it was.
    after = _disk(sandbox)
    assert after["branches"] == before["branches"]
    assert after["worktrees"] == before["worktrees"]
    assert after["siblings"] == before["siblings"]
    assert after["tmux"] is False
    assert orchestrator_branches(sandbox.repo) == []


def test_write_only_twice_picks_the_next_name(sandbox: Sandbox, tmp_path: Path) -> None:
    bundle = _copy_reference(tmp_path, "rich-meta.bundle.json")
    for number in (1, 2):
        result = sandbox.cli("replay", str(bundle), "--write-only")
        assert result.code == 0, result
        assert f"{JS_SESSION}-replay-{number} (3 workers)" in result.stdout


# -- --execute -------------------------------------------------------------------------


def test_execute_runs_the_replay_and_records_where_it_came_from(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    bundle = _copy_reference(tmp_path, "rich-meta.bundle.json")
    result = sandbox.cli("replay", str(bundle), "--execute")
    assert result.code == 0, result
    name = _started_name(result)
    assert name == f"{JS_SESSION}-replay-1"
    assert f"started {name} (replay of {JS_SESSION}): 3 workers from HEAD" in result.stdout
    status = wait_done(sandbox, name)
    assert {w["state"] for w in status["workers"]} == {"completed"}
    head = _head(sandbox.repo)
    for slug in JS_AGENTS:
        worktree = worktree_of(sandbox, name, slug)
        assert _head(worktree) == head
        handoff = (sandbox.coord_root / name / slug / "handoff.md").read_text()
        assert f"demo worker {slug}" in handoff
    assert has_session(name)

    record = session_record(sandbox, name)
    assert record["replay_of"] == {
        "session": JS_SESSION,
        "bundle_sha256": hashlib.sha256(bundle.read_bytes()).hexdigest(),
    }
    assert record["variation"] == {}
    assert record["task"] == JS_TASK
    assert record["agents"] == JS_AGENTS
    assert record["harness"] == "echo"
    assert record["base_commit"] == head

    # Its export carries replay_of and variation in meta.
    out = tmp_path / "replay.bundle.json"
    exported = sandbox.cli("session-export", name, "--out", str(out))
    assert exported.code == 0, exported
    meta = read_bundle(str(out)).meta
    assert meta["replay_of"] == record["replay_of"]
    assert meta["variation"] == {}
    assert meta["task"] == JS_TASK


@pytest.mark.parametrize(
    ("flags", "variation"),
    [
        (("--harness", "echo"), {"harness": "echo"}),
        (("--agents", "alpha,Beta Two"), {"agents": ["alpha", "Beta Two"]}),
        (("--base-ref", "HEAD"), {"base_ref": "HEAD"}),
        (("--session", "custom-name"), {"session": "custom-name"}),
        (
            ("--harness", "echo", "--agents", "solo", "--session", "s2"),
            {"harness": "echo", "agents": ["solo"], "session": "s2"},
        ),
    ],
    ids=["harness", "agents", "base-ref", "session", "several"],
)
def test_variation_is_exactly_the_overrides_given(
    sandbox: Sandbox, tmp_path: Path, flags: tuple[str, ...], variation: dict[str, Any]
) -> None:
    bundle = _copy_reference(tmp_path, "no-meta.bundle.json")
    if "--harness" not in flags:
        # The no-meta bundle would run claude: give it echo through its meta instead.
        data = reference("no-meta.bundle.json")
        data["meta"] = {"harness": "echo"}
        bundle = _bundle(tmp_path, data)
    result = sandbox.cli("replay", str(bundle), *flags, "--execute", *WAIT)
    assert result.code == 0, result
    name = _started_name(result)
    record = session_record(sandbox, name)
    assert record["variation"] == variation
    assert record["replay_of"]["bundle_sha256"] == hashlib.sha256(bundle.read_bytes()).hexdigest()
    if "--session" in flags:
        assert name == variation["session"]
    else:
        assert name == f"{JS_SESSION}-replay-1"
    if "agents" in variation:
        assert record["agents"] == variation["agents"]
        slugs = [w["slug"] for w in record["workers"]]
        assert slugs == [a.lower().replace(" ", "-") for a in variation["agents"]]


def test_replay_by_session_name(sandbox: Sandbox, tmp_path: Path) -> None:
    started(sandbox, "orig", agents="alpha,beta")
    wait_done(sandbox, "orig")
    out = tmp_path / "out" / "replay.bundle.json"
    out.parent.mkdir()
    result = sandbox.cli(
        "replay", "orig", "--agents", "alpha,gamma", "--execute", *WAIT, "--export", str(out)
    )
    assert result.code == 0, result
    assert _started_name(result) == "orig-replay-1"
    record = session_record(sandbox, "orig-replay-1")
    assert record["replay_of"]["session"] == "orig"
    assert re.fullmatch(r"[0-9a-f]{64}", record["replay_of"]["bundle_sha256"])
    assert record["variation"] == {"agents": ["alpha", "gamma"]}
    task = (sandbox.coord_root / "orig-replay-1" / "gamma" / "task.md").read_text()
    assert f"## Shared Task\n\n{TASK}\n" in task
    bundle = read_bundle(str(out))
    assert [w.slug for w in bundle.workers] == ["alpha", "gamma"]
    assert bundle.meta["replay_of"]["session"] == "orig"
    # Replaying the replay strips its suffix: the next is orig-replay-2.
    again = sandbox.cli("replay", "orig-replay-1")
    assert again.code == 0, again
    assert "Replay        orig-replay-1 -> orig-replay-2" in _lines(again)


def test_replay_of_a_missing_session_is_a_clear_error(sandbox: Sandbox) -> None:
    result = sandbox.cli("replay", "no-such-session", "--execute")
    assert result.code == 1, result
    assert "no session 'no-such-session'" in result.stderr
    assert not sandbox.coord_root.exists()


# -- base ------------------------------------------------------------------------------


def test_replay_against_another_base_ref_lands_on_that_commit(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    origin_head = _head(sandbox.repo)
    git(sandbox.repo, "checkout", "--quiet", "-b", "feature")
    (sandbox.repo / "feature.txt").write_text("feature\n")
    git(sandbox.repo, "add", "feature.txt")
    git(sandbox.repo, "commit", "--quiet", "--no-gpg-sign", "-m", "feature")
    feature = _head(sandbox.repo)
    git(sandbox.repo, "checkout", "--quiet", "main")
    assert _head(sandbox.repo) == origin_head != feature

    bundle = _copy_reference(tmp_path, "rich-meta.bundle.json")
    result = sandbox.cli("replay", str(bundle), "--base-ref", "feature", "--execute", *WAIT)
    assert result.code == 0, result
    assert f"from feature ({feature[:12]})" in result.stdout
    name = _started_name(result)
    for slug in JS_AGENTS:
        worktree = worktree_of(sandbox, name, slug)
        assert _head(worktree) == feature
        assert (worktree / "feature.txt").read_text() == "feature\n"
    record = session_record(sandbox, name)
    assert record["base_commit"] == feature
    assert record["variation"] == {"base_ref": "feature"}


def test_replay_defaults_to_the_origins_commit_when_it_exists(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    origin = _head(sandbox.repo)
    (sandbox.repo / "later.txt").write_text("later\n")
    git(sandbox.repo, "add", "later.txt")
    git(sandbox.repo, "commit", "--quiet", "--no-gpg-sign", "-m", "later")
    assert _head(sandbox.repo) != origin
    data = bundle_dict(
        {"alpha": swarm_task_md("alpha", TASK)},
        meta={"harness": "echo", "base_ref": "main", "base_commit": origin},
    )
    result = sandbox.cli("replay", str(_bundle(tmp_path, data)), "--execute", *WAIT)
    assert result.code == 0, result
    name = _started_name(result)
    worktree = worktree_of(sandbox, name, "alpha")
    assert _head(worktree) == origin
    assert not (worktree / "later.txt").exists()
    assert session_record(sandbox, name)["variation"] == {}


def test_unknown_base_ref_is_an_error_before_anything_is_created(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    bundle = _copy_reference(tmp_path, "rich-meta.bundle.json")
    before = _disk(sandbox)
    result = sandbox.cli("replay", str(bundle), "--base-ref", "no-such-ref", "--execute")
    assert result.code == 1, result
    assert "base ref 'no-such-ref' does not resolve" in result.stderr
    assert _disk(sandbox) == before


# -- names -----------------------------------------------------------------------------


def test_replays_of_one_bundle_get_successive_names(sandbox: Sandbox, tmp_path: Path) -> None:
    bundle = _copy_reference(tmp_path, "rich-meta.bundle.json")
    names = []
    for _ in range(2):
        result = sandbox.cli("replay", str(bundle), "--execute", *WAIT)
        assert result.code == 0, result
        names.append(_started_name(result))
    assert names == [f"{JS_SESSION}-replay-1", f"{JS_SESSION}-replay-2"]


def test_replaying_a_replay_bundle_strips_its_suffix(sandbox: Sandbox, tmp_path: Path) -> None:
    bundle = _copy_reference(tmp_path, "replay-1.bundle.json")
    (sandbox.coord_root / f"{JS_SESSION}-replay-1").mkdir(parents=True)
    result = sandbox.cli("replay", str(bundle))
    assert result.code == 0, result
    assert f"Replay        {JS_SESSION}-replay-1 -> {JS_SESSION}-replay-2" in _lines(result)


@pytest.mark.parametrize("kind", ["coordination-dir", "tmux-session", "branch", "worktree-path"])
def test_each_kind_of_collision_is_skipped(sandbox: Sandbox, tmp_path: Path, kind: str) -> None:
    # meta.agents differ from the worker slugs: the replay's own worktree paths count.
    data = bundle_dict(
        {"w1": swarm_task_md("w1", TASK)}, session="orig", meta={"harness": "echo", "agents": ["x"]}
    )
    bundle = _bundle(tmp_path, data)
    taken = "orig-replay-1"
    if kind == "coordination-dir":
        (sandbox.coord_root / taken).mkdir(parents=True)
    elif kind == "tmux-session":
        tmux("new-session", "-d", "-s", taken)
    elif kind == "branch":
        git(sandbox.repo, "branch", f"orchestrator-{taken}-x")
    else:
        (sandbox.root / f"repo-{taken}-x").mkdir()
    dry = sandbox.cli("replay", str(bundle))
    assert dry.code == 0, dry
    assert "Replay        orig -> orig-replay-2" in _lines(dry)
    assert "is taken" not in dry.stderr
    result = sandbox.cli("replay", str(bundle), "--execute", *WAIT)
    assert result.code == 0, result
    assert _started_name(result) == "orig-replay-2"


def test_a_taken_session_name_is_an_error_unless_replace(sandbox: Sandbox, tmp_path: Path) -> None:
    bundle = _copy_reference(tmp_path, "rich-meta.bundle.json")
    first = sandbox.cli(
        "replay", str(bundle), "--session", "mine", "--agents", "alpha", "--execute"
    )
    assert first.code == 0, first
    wait_done(sandbox, "mine")
    old_worktree = worktree_of(sandbox, "mine", "alpha")
    assert old_worktree.is_dir()
    old_record = session_record(sandbox, "mine")

    for mode in ("--execute", "--write-only"):
        refused = sandbox.cli("replay", str(bundle), "--session", "mine", "--agents", "beta", mode)
        assert refused.code == 1, refused
        assert "session 'mine' is already taken" in refused.stderr
        assert "--replace" in refused.stderr
    assert session_record(sandbox, "mine") == old_record
    assert old_worktree.is_dir()

    replaced = sandbox.cli(
        "replay", str(bundle), "--session", "mine", "--agents", "beta", "--replace", "--execute",
        *WAIT,
    )  # fmt: skip
    assert replaced.code == 0, replaced
    assert _started_name(replaced) == "mine"
    assert not old_worktree.exists()
    assert worktree_of(sandbox, "mine", "beta").is_dir()
    record = session_record(sandbox, "mine")
    assert [w["slug"] for w in record["workers"]] == ["beta"]
    assert record["variation"] == {"agents": ["beta"], "session": "mine"}
    assert sorted(orchestrator_branches(sandbox.repo)) == ["orchestrator-mine-beta"]


def test_an_invalid_session_name_is_a_usage_error(sandbox: Sandbox, tmp_path: Path) -> None:
    bundle = _copy_reference(tmp_path, "rich-meta.bundle.json")
    result = sandbox.cli("replay", str(bundle), "--session", "../up", "--execute")
    assert result.code == 2, result
    assert "invalid session name" in result.stderr
    assert not sandbox.coord_root.exists()


def _popen_cli(sandbox: Sandbox, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kodelyth_ecc", *args],
        cwd=sandbox.repo,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_concurrent_replays_of_one_bundle_get_different_names(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    bundle = _copy_reference(tmp_path, "rich-meta.bundle.json")
    # Some rounds, so that the runs really overlap at the moment they claim a name.
    for round_ in range(3):
        procs = [_popen_cli(sandbox, "replay", str(bundle), "--execute", *WAIT) for _ in range(2)]
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            results.append(Result(proc.returncode, out, err))
        for result in results:
            assert result.code == 0, result
        names = sorted(_started_name(r) for r in results)
        numbers = (2 * round_ + 1, 2 * round_ + 2)
        assert names == sorted(f"{JS_SESSION}-replay-{n}" for n in numbers), results
        for name in names:
            record = session_record(sandbox, name)
            assert {w["slug"] for w in record["workers"]} == set(JS_AGENTS)
            status = wait_done(sandbox, name)
            assert {w["state"] for w in status["workers"]} == {"completed"}
    assert len(orchestrator_branches(sandbox.repo)) == 3 * 2 * len(JS_AGENTS)


# -- launcher trust --------------------------------------------------------------------


def _pwned_bundle(tmp_path: Path) -> Path:
    data = bundle_dict(
        {"alpha": swarm_task_md("alpha", TASK)},
        session="stranger",
        meta={
            "harness": "echo",
            "launcher": (
                "touch {repo_root_sh}/PWNED; printf 'their launcher ran %s\\n' {worker_slug_sh}"
                " | tee -a {handoff_file_sh}"
            ),
        },
    )
    return _bundle(tmp_path, data)


def test_a_bundles_launcher_never_runs_without_trust(sandbox: Sandbox, tmp_path: Path) -> None:
    bundle = _pwned_bundle(tmp_path)
    marker = sandbox.repo / "PWNED"
    dry = sandbox.cli("replay", str(bundle))
    assert dry.code == 0, dry
    assert "PWNED" not in dry.stdout
    assert "pass --trust-launcher to use it" in dry.stderr

    result = sandbox.cli("replay", str(bundle), "--execute", *WAIT)
    assert result.code == 0, result
    name = _started_name(result)
    status = wait_done(sandbox, name)
    assert [w["state"] for w in status["workers"]] == ["completed"]
    assert not marker.exists()
    handoff = (sandbox.coord_root / name / "alpha" / "handoff.md").read_text()
    assert "demo worker alpha" in handoff
    assert "their launcher ran" not in handoff
    assert "PWNED" not in json.dumps(session_record(sandbox, name)["workers"])


def test_a_bundles_launcher_runs_with_trust(sandbox: Sandbox, tmp_path: Path) -> None:
    bundle = _pwned_bundle(tmp_path)
    marker = sandbox.repo / "PWNED"
    # A stranger's bundle: the trusted launcher runs, in the sandbox, which keeps it in its
    # worktree (issue 12); with --no-sandbox it runs with the user's permissions.
    for extra, reaches in (((), False), (("--no-sandbox",), True)):
        result = sandbox.cli("replay", str(bundle), "--trust-launcher", *extra, "--execute", *WAIT)
        assert result.code == 0, result
        name = _started_name(result)
        assert marker.exists() is reaches
        handoff = (sandbox.coord_root / name / "alpha" / "handoff.md").read_text()
        assert "their launcher ran alpha" in handoff
        assert session_record(sandbox, name)["variation"] == {"trusted_launcher": True}


# -- --wait / --export for CI ----------------------------------------------------------


def _launcher_bundle(tmp_path: Path, launcher: str, name: str) -> Path:
    data = bundle_dict(
        {"alpha": swarm_task_md("alpha", TASK), "beta": swarm_task_md("beta", TASK)},
        session="ci",
        meta={"harness": "echo", "launcher": launcher, "task": TASK},
    )
    return _bundle(tmp_path, data, name)


def test_wait_export_end_to_end_all_completed(sandbox: Sandbox, tmp_path: Path) -> None:
    bundle = _copy_reference(tmp_path, "rich-meta.bundle.json")
    out = tmp_path / "ci" / "replay.bundle.json"
    out.parent.mkdir()
    result = sandbox.cli(
        "replay", str(bundle), "--agents", "alpha,beta", "--execute", *WAIT, "--export", str(out)
    )
    assert result.code == 0, result
    name = _started_name(result)
    table = [line.split() for line in _lines(result) if line.startswith(("alpha", "beta"))]
    assert [(row[0], row[1], row[2]) for row in table] == [
        ("alpha", "completed", "0"),
        ("beta", "completed", "0"),
    ]
    assert f"wrote {out}" in result.stdout
    exported = read_bundle(str(out))  # validates
    assert exported.session == name
    assert [(w.slug, w.state, w.exit_code) for w in exported.workers] == [
        ("alpha", "completed", 0),
        ("beta", "completed", 0),
    ]
    assert "demo worker alpha" in exported.workers[0].handoff
    assert exported.meta["replay_of"] == {
        "session": JS_SESSION,
        "bundle_sha256": hashlib.sha256(bundle.read_bytes()).hexdigest(),
    }
    assert exported.meta["variation"] == {"agents": ["alpha", "beta"]}
    # And it replays in turn.
    again = sandbox.cli("replay", str(out), "--json")
    assert again.code == 0, again
    assert json.loads(again.stdout)["planConfig"]["sessionName"] == f"{JS_SESSION}-replay-2"


def test_wait_exits_1_when_a_worker_failed(sandbox: Sandbox, tmp_path: Path) -> None:
    launcher = (
        "if [ {worker_slug_sh} = beta ]; then exit 3; fi; printf 'ok\\n' | tee -a {handoff_file_sh}"
    )
    bundle = _launcher_bundle(tmp_path, launcher, "fails.bundle.json")
    out = tmp_path / "failed.bundle.json"
    result = sandbox.cli(
        "replay", str(bundle), "--trust-launcher", "--execute", *WAIT, "--export", str(out)
    )
    assert result.code == 1, result
    exported = read_bundle(str(out))
    assert [(w.slug, w.state, w.exit_code) for w in exported.workers] == [
        ("alpha", "completed", 0),
        ("beta", "failed", 3),
    ]


def test_wait_exits_124_on_timeout_and_still_exports(sandbox: Sandbox, tmp_path: Path) -> None:
    bundle = _launcher_bundle(tmp_path, "sleep 60", "slow.bundle.json")
    out = tmp_path / "slow-replay.bundle.json"
    result = sandbox.cli(
        "replay", str(bundle), "--trust-launcher", "--execute", "--wait", "--timeout", "1",
        "--export", str(out),
    )  # fmt: skip
    assert result.code == 124, result
    assert "timed out after 1s waiting for alpha, beta" in result.stderr
    exported = read_bundle(str(out))
    assert {w.state for w in exported.workers} <= {"pending", "running"}
    name = _started_name(result)
    down = sandbox.cli("teardown", name, "--force")
    assert down.code == 0, down
    retry_until(lambda: not has_session(name), timeout=10, message="the slow session to go")


def test_export_without_wait_writes_the_bundle_right_away(sandbox: Sandbox, tmp_path: Path) -> None:
    bundle = _copy_reference(tmp_path, "rich-meta.bundle.json")
    out = tmp_path / "now.bundle.json"
    result = sandbox.cli("replay", str(bundle), "--execute", "--export", str(out))
    assert result.code == 0, result
    assert read_bundle(str(out)).session == _started_name(result)


@pytest.mark.parametrize(
    "flags",
    [
        ("--wait",),
        ("--export", "x.json"),
        ("--timeout", "5"),
        ("--wait", "--json"),
        ("--export", "x.json", "--write-only"),
        ("--execute", "--timeout", "5"),
    ],
)
def test_wait_export_timeout_without_their_mode_are_usage_errors(
    sandbox: Sandbox, tmp_path: Path, flags: tuple[str, ...]
) -> None:
    bundle = _copy_reference(tmp_path, "rich-meta.bundle.json")
    before = _disk(sandbox)
    result = sandbox.cli("replay", str(bundle), *flags)
    assert result.code == 2, result
    assert "only appl" in result.stderr
    assert _disk(sandbox) == before
    assert not (sandbox.repo / "x.json").exists()


def test_modes_are_mutually_exclusive(sandbox: Sandbox, tmp_path: Path) -> None:
    bundle = _copy_reference(tmp_path, "rich-meta.bundle.json")
    result = sandbox.cli("replay", str(bundle), "--json", "--execute")
    assert result.code == 2, result
    assert "not allowed with" in result.stderr


# -- hostile bundles -------------------------------------------------------------------


def _valid() -> dict[str, Any]:
    return bundle_dict(
        {"alpha": swarm_task_md("alpha", TASK)}, session="hostile", meta={"harness": "echo"}
    )


def _with(**changes: Any) -> str:
    data = _valid()
    data.update(changes)
    return json.dumps(data)


def _worker(**changes: Any) -> dict[str, Any]:
    worker: dict[str, Any] = dict(_valid()["workers"][0])
    worker.update(changes)
    return worker


HOSTILE: dict[str, str] = {
    "bad-json": '{"schema": "kodelyth.session-bundle/v1",\n  "session": ',
    "not-an-object": "[1, 2, 3]\n",
    "wrong-schema": _with(schema="kodelyth.session-bundle/v2"),
    "traversal-slug": _with(workers=[_worker(slug="../../evil")]),
    "absolute-slug": _with(workers=[_worker(slug="/tmp/evil")]),
    "dot-slug": _with(workers=[_worker(slug=".hidden")]),
    "traversal-session": _with(session="../../evil"),
    "no-workers": _with(workers=[]),
    "duplicate-workers": _with(workers=[_worker(), _worker()]),
    "missing-handoff": _with(workers=[{"slug": "alpha", "task": "t", "status": "s"}]),
    "number-task": _with(workers=[_worker(task=5)]),
    "bad-meta-agents": _with(meta={"harness": "echo", "agents": "alpha"}),
    "bad-meta-harness": _with(meta={"harness": ["echo"]}),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_bundle_is_refused_like_import_and_nothing_is_created(
    sandbox: Sandbox, tmp_path: Path, case: str
) -> None:
    path = tmp_path / "bundles" / "hostile.bundle.json"
    path.parent.mkdir()
    path.write_text(HOSTILE[case], encoding="utf-8")
    before = _disk(sandbox)

    imported = sandbox.cli("session-import", str(path))
    assert imported.code != 0, imported
    assert not sandbox.coord_root.exists()
    for mode in ((), ("--json",), ("--write-only",), ("--execute", *WAIT)):
        result = sandbox.cli("replay", str(path), *mode)
        assert result.code == imported.code, result
        # The same validation, so the same one-line error.
        assert result.stderr == imported.stderr, (result.stderr, imported.stderr)
        assert result.stdout == ""
        assert "Traceback" not in result.stderr
        assert _disk(sandbox) == before
    # Escaping names did not reach the disk anywhere near us.
    for root in (sandbox.coord_root, sandbox.root, tmp_path / "bundles"):
        assert not (root / "evil").exists()
        assert not os.path.lexists(os.path.normpath(root / "../../evil"))
    assert not Path("/tmp/evil").exists()


def test_bad_json_error_names_line_and_column(sandbox: Sandbox, tmp_path: Path) -> None:
    path = tmp_path / "broken.bundle.json"
    path.write_text(HOSTILE["bad-json"], encoding="utf-8")
    result = sandbox.cli("replay", str(path), "--execute")
    assert result.code == 1, result
    assert re.search(r"not valid JSON: .*\(line 2, column \d+\)", result.stderr), result


def test_a_bundle_over_the_size_cap_is_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    bundle = _copy_reference(tmp_path, "rich-meta.bundle.json")
    before = _disk(sandbox)
    result = sandbox.cli("replay", str(bundle), "--max-bundle-size", "1K", "--execute")
    assert result.code == 1, result
    assert "over the 1,024-byte limit" in result.stderr
    assert _disk(sandbox) == before
    ok = sandbox.cli("replay", str(bundle), "--max-bundle-size", "1M")
    assert ok.code == 0, ok


def test_hostile_agent_names_in_meta_are_refused_before_anything_is_written(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    data = _valid()
    data["meta"]["agents"] = ["alpha", "$(touch PWNED)"]
    bundle = _bundle(tmp_path, data)
    before = _disk(sandbox)
    for mode in ("--execute", "--write-only"):
        result = sandbox.cli("replay", str(bundle), mode)
        assert result.code == 2, result
        assert "invalid agent name" in result.stderr
    assert _disk(sandbox) == before
    assert not (sandbox.repo / "PWNED").exists()


def test_hand_written_objectives_replay_with_their_own_tasks(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    data = bundle_dict(
        {
            "docs": task_md("docs", "document the retry policy"),
            "fix-bug": task_md("fix-bug", "fix"),
        },
        session="handwritten",
        meta={"harness": "echo"},
    )
    result = sandbox.cli("replay", str(_bundle(tmp_path, data)), "--execute", *WAIT)
    assert result.code == 0, result
    name = _started_name(result)
    docs = (sandbox.coord_root / name / "docs" / "task.md").read_text()
    fix = (sandbox.coord_root / name / "fix-bug" / "task.md").read_text()
    assert "## Objective\ndocument the retry policy\n\n## Completion" in docs
    assert "## Objective\nfix\n\n## Completion" in fix
    assert sorted(os.path.realpath(p) for p in registered_worktrees(sandbox.repo)) == sorted(
        os.path.realpath(p)
        for p in (sandbox.repo, *(worktree_of(sandbox, name, s) for s in ("docs", "fix-bug")))
    )


# -- sources and places ----------------------------------------------------------------


def test_replay_of_an_imported_bundle_by_session_name(sandbox: Sandbox, tmp_path: Path) -> None:
    bundle = _copy_reference(tmp_path, "rich-meta.bundle.json")
    imported = sandbox.cli("session-import", str(bundle))
    assert imported.code == 0, imported
    result = sandbox.cli("replay", JS_SESSION, "--json")
    assert result.code == 0, result
    config = json.loads(result.stdout)["planConfig"]
    assert config["sessionName"] == f"{JS_SESSION}-replay-1"
    assert config["_meta"] == {
        "task": JS_TASK,
        "harness": "echo",
        "pickedAgents": JS_AGENTS,
        "count": 3,
    }


def test_replay_of_a_js_coordination_dir_by_session_name(sandbox: Sandbox) -> None:
    source = Path(__file__).resolve().parent / "fixtures" / "js-coordination" / JS_SESSION
    shutil.copytree(source, sandbox.coord_root / JS_SESSION)
    result = sandbox.cli("replay", JS_SESSION, "--harness", "echo", "--execute", *WAIT)
    assert result.code == 0, result
    name = _started_name(result)
    assert name == f"{JS_SESSION}-replay-1"
    record = session_record(sandbox, name)
    assert record["task"] == JS_TASK  # recovered from the first worker's ## Shared Task
    assert record["agents"] == ["code-reviewer", "pair-programmer", "security-reviewer"]
    assert record["replay_of"]["session"] == JS_SESSION
    assert record["variation"] == {"harness": "echo"}


def test_coordination_root_flag(sandbox: Sandbox, tmp_path: Path) -> None:
    bundle = _copy_reference(tmp_path, "rich-meta.bundle.json")
    elsewhere = tmp_path / "coord"
    (elsewhere / f"{JS_SESSION}-replay-1").mkdir(parents=True)
    result = sandbox.cli("replay", str(bundle), "--coord-root", str(elsewhere), "--write-only")
    assert result.code == 0, result
    assert f"wrote {elsewhere / (JS_SESSION + '-replay-2')} (3 workers)" in result.stdout
    assert not sandbox.coord_root.exists()
    # A session there can be replayed by name with the same flag.
    by_name = sandbox.cli(
        "replay", f"{JS_SESSION}-replay-2", "--coordination-root", str(elsewhere), "--json"
    )
    assert by_name.code == 0, by_name
    plan = json.loads(by_name.stdout)["plan"]
    assert plan["sessionName"] == f"{JS_SESSION}-replay-3"
    assert plan["coordinationDir"] == str(elsewhere / f"{JS_SESSION}-replay-3")


def test_replay_outside_a_repository_is_a_clear_error(sandbox: Sandbox, tmp_path: Path) -> None:
    bundle = _copy_reference(tmp_path, "rich-meta.bundle.json")
    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    result = sandbox.cli("replay", str(bundle), "--execute", cwd=outside)
    assert result.code == 1, result
    assert "not inside a git work tree" in result.stderr
    assert list(outside.iterdir()) == []
