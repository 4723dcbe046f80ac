"""``swarm --execute`` for real: worktrees, seeds, the tmux session, the runner's
status contract, transcripts and session.json."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from kodelyth_ecc import __version__
from kodelyth_ecc.harnesses import HARNESSES
from kodelyth_ecc.runner import TitleFilter
from tests.conftest import Sandbox
from tests.support import git, retry_until, run_cli, tmux
from tests.swarm_helpers import (
    TASK,
    branch_of,
    capture,
    orchestrator_branches,
    panes,
    registered_worktrees,
    session_record,
    started,
    status_json,
    wait_done,
    wait_until_states,
    worktree_of,
)

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
SLUGS = ["alpha-one", "beta", "gamma"]
AGENTS = "Alpha One,beta,gamma"


def _status_fields(path: Path) -> dict[str, str]:
    fields = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"- ([A-Za-z ]+): (.*)", line)
        if match:
            fields[match.group(1)] = match.group(2)
    return fields


def test_worktrees_are_on_their_branches_at_the_base_commit(sandbox: Sandbox) -> None:
    base = git(sandbox.repo, "rev-parse", "HEAD").strip()
    result = started(sandbox, "s1", agents=AGENTS)
    assert "tmux attach -t s1" in result.stdout

    assert sorted(orchestrator_branches(sandbox.repo)) == sorted(branch_of("s1", s) for s in SLUGS)
    registered = {os.path.realpath(p) for p in registered_worktrees(sandbox.repo)}
    for slug in SLUGS:
        worktree = worktree_of(sandbox, "s1", slug)
        assert worktree.is_dir()
        assert os.path.realpath(worktree) in registered
        assert git(worktree, "rev-parse", "--abbrev-ref", "HEAD").strip() == branch_of("s1", slug)
        assert git(worktree, "rev-parse", "HEAD").strip() == base
        assert (worktree / "src" / "app.py").read_text() == "print('hello')\n"
    # The user's own checkout is untouched (the coordination root ignores itself).
    assert git(sandbox.repo, "status", "--porcelain") == ""
    assert git(sandbox.repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"


def test_tmux_session_has_one_titled_pane_per_worker(sandbox: Sandbox) -> None:
    started(sandbox, "s1", agents=AGENTS)
    windows = tmux("list-windows", "-t", "=s1", "-F", "#{window_name}").stdout.split()
    assert windows == ["orchestrator"]
    found = panes("s1")
    assert len(found) == len(SLUGS) + 1
    assert [p.title for p in found[1:]] == SLUGS
    assert {p.window for p in found} == {"orchestrator"}
    option = tmux("show-options", "-w", "-t", "=s1:orchestrator", "remain-on-exit").stdout
    assert option.split() == ["remain-on-exit", "on"]
    # Tiled: side by side as well as stacked, where plain splits would stack full-width panes.
    window_width = int(
        tmux("display-message", "-p", "-t", "=s1:orchestrator", "#{window_width}").stdout
    )
    widths = tmux("list-panes", "-t", "=s1:orchestrator", "-F", "#{pane_width}").stdout.split()
    assert all(int(w) < window_width for w in widths), (window_width, widths)


def test_echo_workers_complete_and_record_the_status_contract(sandbox: Sandbox) -> None:
    started(sandbox, "s1", agents=AGENTS)
    status = wait_done(sandbox, "s1")
    assert [w["state"] for w in status["workers"]] == ["completed"] * 3
    coord = sandbox.coord_root / "s1"
    for slug in SLUGS:
        worker_dir = coord / slug
        handoff = (worker_dir / "handoff.md").read_text(encoding="utf-8")
        assert f"demo worker {slug}\n" in handoff
        fields = _status_fields(worker_dir / "status.md")
        assert fields["State"] == "completed"
        assert ISO_UTC.fullmatch(fields["Started"]), fields
        assert ISO_UTC.fullmatch(fields["Finished"]), fields
        assert fields["Started"] <= fields["Finished"]
        assert fields["Exit code"] == "0"
        assert re.fullmatch(r"\d+\.\d\ds", fields["Duration"]), fields
        assert fields["Branch"] == f"`{branch_of('s1', slug)}`"
        assert fields["Worktree"] == f"`{worktree_of(sandbox, 's1', slug)}`"
        transcript = (worker_dir / "transcript.log").read_text(encoding="utf-8")
        assert f"demo worker {slug}" in transcript
        # Each worker's transcript is its own.
        others = [s for s in SLUGS if s != slug]
        assert not any(f"demo worker {o}" in transcript for o in others)
    assert all(w["exit_code"] == 0 for w in status["workers"])
    assert all(w["handoff_bytes"] > 0 for w in status["workers"])


def test_session_json_records_the_run(sandbox: Sandbox) -> None:
    base = git(sandbox.repo, "rev-parse", "HEAD").strip()
    started(sandbox, "s1", agents=AGENTS)
    record = session_record(sandbox, "s1")
    assert record["session"] == "s1"
    assert record["task"] == TASK
    assert record["agents"] == ["Alpha One", "beta", "gamma"]
    assert record["harness"] == "echo"
    assert record["launcher"] == HARNESSES["echo"].template
    assert record["base_ref"] == "HEAD"
    assert record["base_commit"] == base
    assert record["seed_paths"] == []
    assert ISO_UTC.fullmatch(record["created_at"]), record["created_at"]
    assert record["tool"] == f"kodelyth-ecc@{__version__}"
    assert record["tmux_session"] == "s1"
    assert os.path.realpath(record["repo_root"]) == os.path.realpath(sandbox.repo)
    # The pane ids recorded are the worker panes tmux really has, in order.
    worker_panes = [p.pane_id for p in panes("s1")[1:]]
    assert [w["pane_id"] for w in record["workers"]] == worker_panes
    assert [w["slug"] for w in record["workers"]] == SLUGS
    assert [w["branch"] for w in record["workers"]] == [branch_of("s1", s) for s in SLUGS]
    # It is a file beside the worker directories, not a directory of its own.
    assert (sandbox.coord_root / "s1" / "session.json").is_file()
    entries = sorted(p.name for p in (sandbox.coord_root / "s1").iterdir())
    assert entries == sorted([*SLUGS, "session.json"])


def test_finished_pane_stays_dead_and_readable(sandbox: Sandbox) -> None:
    started(sandbox, "s1", agents="beta,gamma")
    wait_done(sandbox, "s1")

    def worker_panes_dead() -> bool:
        found = panes("s1")
        return len(found) == 3 and all(p.dead for p in found[1:])

    retry_until(worker_panes_dead, message="worker panes to be dead")
    orchestrator, *workers = panes("s1")
    assert not orchestrator.dead  # the orchestrator pane is a shell for the user
    for pane in workers:
        text = capture(pane.pane_id)
        assert f"demo worker {pane.title}" in text, text
        assert f"[kodelyth-ecc] {pane.title}: completed (exit 0)" in text, text
    status = status_json(sandbox, "s1")
    assert [w["pane_alive"] for w in status["workers"]] == [False, False]
    assert status["tmuxAlive"] is True


def test_launcher_template_placeholders_and_working_directory(sandbox: Sandbox) -> None:
    launcher = (
        "printf '%s|%s|%s|%s|%s\\n' {worker_name_sh} {worker_slug} {branch_name_sh} "
        '{session_name_raw} "$PWD" > {handoff_file_sh}; '
        "test -f {task_file_sh} && test -f {status_file_sh} && echo transcript-{worker_slug}"
    )
    started(sandbox, "tpl", agents="Alpha One,beta", launcher=launcher)
    status = wait_done(sandbox, "tpl")
    assert [w["state"] for w in status["workers"]] == ["completed", "completed"]
    for name, slug in (("Alpha One", "alpha-one"), ("beta", "beta")):
        worker_dir = sandbox.coord_root / "tpl" / slug
        fields = (worker_dir / "handoff.md").read_text().strip().split("|")
        assert fields[:4] == [name, slug, branch_of("tpl", slug), "tpl"]
        assert os.path.realpath(fields[4]) == os.path.realpath(worktree_of(sandbox, "tpl", slug))
        assert f"transcript-{slug}" in (worker_dir / "transcript.log").read_text()
    record = session_record(sandbox, "tpl")
    assert record["launcher"] == launcher
    assert "{" not in record["workers"][0]["launch_command"]
    assert "'Alpha One'" in record["workers"][0]["launch_command"]


@pytest.mark.parametrize("kind", ["branch", "sha", "relative"])
def test_base_ref_selects_the_starting_commit(sandbox: Sandbox, kind: str) -> None:
    repo = sandbox.repo
    first = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "switch", "--quiet", "-c", "feature")
    (repo / "feature.txt").write_text("feature work\n")
    git(repo, "add", "feature.txt")
    git(repo, "commit", "--quiet", "--no-gpg-sign", "-m", "feature")
    feature = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "switch", "--quiet", "main")
    (repo / "later.txt").write_text("on main only\n")
    git(repo, "add", "later.txt")
    git(repo, "commit", "--quiet", "--no-gpg-sign", "-m", "later")

    ref, expected = {"branch": ("feature", feature), "sha": (first, first)}.get(
        kind, ("HEAD~1", first)
    )
    started(sandbox, "based", "--base-ref", ref)
    for slug in ("alpha", "beta"):
        worktree = worktree_of(sandbox, "based", slug)
        assert git(worktree, "rev-parse", "HEAD").strip() == expected
        assert (worktree / "feature.txt").exists() == (kind == "branch")
        assert not (worktree / "later.txt").exists()
    record = session_record(sandbox, "based")
    assert record["base_ref"] == ref
    assert record["base_commit"] == expected
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"


def test_seed_file_and_directory_are_copied_into_every_worktree(sandbox: Sandbox) -> None:
    repo = sandbox.repo
    (repo / ".gitignore").write_text("local.env\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "--quiet", "--no-gpg-sign", "-m", "ignore local.env")
    (repo / "local.env").write_text("TOKEN=local-only\n")
    data = repo / "fixtures" / "data"
    data.mkdir(parents=True)
    (data / "a.txt").write_text("nested seed\n")
    (repo / "fixtures" / "blob.bin").write_bytes(bytes(range(256)))
    (repo / "src" / "app.py").write_text("print('local edit')\n")  # uncommitted overlay

    started(
        sandbox,
        "seeded",
        "--seed",
        "local.env",
        "--seed",
        "fixtures",
        "--seed",
        "src/app.py",
    )
    for slug in ("alpha", "beta"):
        worktree = worktree_of(sandbox, "seeded", slug)
        assert (worktree / "local.env").read_text() == "TOKEN=local-only\n"
        assert (worktree / "fixtures" / "data" / "a.txt").read_text() == "nested seed\n"
        assert (worktree / "fixtures" / "blob.bin").read_bytes() == bytes(range(256))
        assert (worktree / "src" / "app.py").read_text() == "print('local edit')\n"
        task = (sandbox.coord_root / "seeded" / slug / "task.md").read_text(encoding="utf-8")
        assert "## Seeded Local Overlays" in task
        for seed in ("local.env", "fixtures", "src/app.py"):
            assert seed in task.split("## Seeded Local Overlays", 1)[1].split("## Objective")[0]
    assert session_record(sandbox, "seeded")["seed_paths"] == [
        "local.env",
        "fixtures",
        "src/app.py",
    ]
    # Seeding copies; the user's files stay where they were.
    assert (repo / "local.env").read_text() == "TOKEN=local-only\n"
    assert (repo / "src" / "app.py").read_text() == "print('local edit')\n"


def _hostile_startup(home: Path, body: str) -> Path:
    script = home / "startup.sh"
    script.write_text(body + "\n")
    for name in (".bashrc", ".bash_profile", ".profile", ".bash_login"):
        (home / name).write_text(body + "\n")
    return script


@pytest.mark.parametrize(
    ("shell", "body"),
    [
        ("/bin/bash", "sleep 30"),
        ("/bin/bash", "exit 1"),
        ("/bin/sh", "echo broken-profile >&2; exit 1"),
        ("/bin/false", "exit 1"),
    ],
    ids=["slow-bashrc", "exiting-bashrc", "broken-profile", "unusable-shell"],
)
def test_workers_do_not_depend_on_shell_startup(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, shell: str, body: str
) -> None:
    script = _hostile_startup(sandbox.home, body)
    monkeypatch.setenv("SHELL", shell)
    # bash -c reads $BASH_ENV and sh -c reads $ENV: the runner must not let them in.
    monkeypatch.setenv("BASH_ENV", str(script))
    monkeypatch.setenv("ENV", str(script))
    started(
        sandbox,
        "rc",
        agents="alpha,beta",
        launcher="echo ran-{worker_slug} | tee -a {handoff_file_sh}",
    )
    # Far below the 30 s a start-up file would cost if a worker read it.
    status = wait_until_states(sandbox, "rc", "completed", timeout=10)
    assert [w["exit_code"] for w in status["workers"]] == [0, 0]
    for slug in ("alpha", "beta"):
        transcript = (sandbox.coord_root / "rc" / slug / "transcript.log").read_text()
        assert f"ran-{slug}" in transcript
        assert "broken-profile" not in transcript


def test_plan_file_with_per_worker_launchers_and_seeds(sandbox: Sandbox, tmp_path: Path) -> None:
    (sandbox.repo / "only-b.txt").write_text("for b\n")
    (sandbox.repo / "shared.txt").write_text("for all\n")
    plan = {
        "sessionName": "planned",
        "launcherCommand": "echo default-{worker_slug} > {handoff_file_sh}",
        "seedPaths": ["shared.txt"],
        "workers": [
            {"name": "a", "task": "Task for a", "launcherCommand": "echo custom-a; exit 3"},
            {"name": "b", "task": "Task for b", "seedPaths": ["only-b.txt"]},
        ],
    }
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan))
    result = sandbox.cli("swarm", "--plan", str(plan_file), "--harness", "echo", "--execute")
    assert result.code == 0, result
    status = wait_done(sandbox, "planned")
    states = {w["slug"]: (w["state"], w["exit_code"]) for w in status["workers"]}
    assert states == {"a": ("failed", 3), "b": ("completed", 0)}
    coord = sandbox.coord_root / "planned"
    assert "custom-a" in (coord / "a" / "transcript.log").read_text()
    assert (coord / "b" / "handoff.md").read_text() == "default-b\n"
    assert "## Objective\nTask for a" in (coord / "a" / "task.md").read_text()
    for slug in ("a", "b"):
        assert (worktree_of(sandbox, "planned", slug) / "shared.txt").read_text() == "for all\n"
    assert (worktree_of(sandbox, "planned", "b") / "only-b.txt").read_text() == "for b\n"
    assert not (worktree_of(sandbox, "planned", "a") / "only-b.txt").exists()


def test_custom_worktree_and_coordination_roots(sandbox: Sandbox, tmp_path: Path) -> None:
    wt_root = tmp_path / "trees"
    coord_root = tmp_path / "coord"
    result = sandbox.cli(
        "swarm",
        "--task",
        TASK,
        "--agents",
        "alpha",
        "--harness",
        "echo",
        "--session",
        "roots",
        "--worktree-root",
        str(wt_root),
        "--coordination-root",
        str(coord_root),
        "--execute",
    )
    assert result.code == 0, result
    worktree = wt_root / f"{sandbox.repo.name}-roots-alpha"
    assert git(worktree, "rev-parse", "--abbrev-ref", "HEAD").strip() == branch_of("roots", "alpha")
    assert (coord_root / "roots" / "session.json").is_file()
    assert not sandbox.coord_root.exists()
    assert not (coord_root / ".gitignore").exists()  # outside the repo: nothing to hide
    # status and teardown find it from anywhere given the root, even outside the repo.
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    waited = sandbox.cli(
        "status", "roots", "--coordination-root", str(coord_root), "--wait", cwd=outside
    )
    assert waited.code == 0, waited
    down = sandbox.cli("teardown", "roots", "--coordination-root", str(coord_root), cwd=outside)
    assert down.code == 0, down
    assert not worktree.exists()
    assert orchestrator_branches(sandbox.repo) == []


def test_execute_from_inside_tmux_uses_that_server(sandbox: Sandbox) -> None:
    """Run from a tmux pane (TMUX set): the swarm lands on the same server, detached."""
    tmux("new-session", "-d", "-s", "outer")
    socket = tmux("display-message", "-p", "-t", "=outer", "#{socket_path}").stdout.strip()
    pid = tmux("display-message", "-p", "-t", "=outer", "#{pid}").stdout.strip()
    env = {**os.environ, "TMUX": f"{socket},{pid},0", "TMUX_PANE": "%0"}
    args = ["swarm", "--task", TASK, "--agents", "alpha", "--harness", "echo"]
    result = run_cli(*args, "--session", "inner", "--execute", cwd=sandbox.repo, env=env)
    assert result.code == 0, result
    assert wait_done(sandbox, "inner")["workers"][0]["state"] == "completed"
    sessions = tmux("list-sessions", "-F", "#{session_name}").stdout.split()
    assert sorted(sessions) == ["inner", "outer"]


def test_agents_cannot_retitle_their_panes(sandbox: Sandbox) -> None:
    """Agents (Claude Code among them) set the terminal title; the pane keeps its slug."""
    launcher = (
        "printf '\\033]2;hijacked\\033\\\\'; printf '\\033]0;also-hijacked\\007'; "
        "printf '\\033]2;split-'; sleep 0.2; printf 'across-writes\\007'; "
        "printf '\\033[1mbold\\033[0m\\n'; echo after-titles"
    )
    started(sandbox, "titles", agents="alpha,beta", launcher=launcher)
    wait_done(sandbox, "titles")
    _, *workers = panes("titles")
    assert [p.title for p in workers] == ["alpha", "beta"]
    for pane in workers:
        text = capture(pane.pane_id)
        assert "after-titles" in text
        assert "bold" in text
        assert "across-writes" not in text
        transcript = (sandbox.coord_root / "titles" / pane.title / "transcript.log").read_text()
        assert "after-titles" in transcript


def test_title_filter_handles_any_chunking() -> None:
    stream = (
        b"start \x1b]2;one\x1b\\mid \x1b]0;two\x07\x1b[1mbold\x1b[0m "
        b"\x1b]8;;https://example.invalid\x1b\\link\x1b]8;;\x1b\\ \x1b]1;three\x07end\x1b"
    )
    expected = (
        b"start mid \x1b[1mbold\x1b[0m "
        b"\x1b]8;;https://example.invalid\x1b\\link\x1b]8;;\x1b\\ end\x1b"
    )
    for cut in range(len(stream) + 1):
        for second_cut in (cut, min(cut + 3, len(stream))):
            titles = TitleFilter()
            out = titles.feed(stream[:cut])
            out += titles.feed(stream[cut:second_cut])
            out += titles.feed(stream[second_cut:])
            out += titles.flush()
            assert out == expected, (cut, second_cut, out)


def test_workers_get_the_callers_environment_from_an_older_tmux_server(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The user's tmux server was started before they exported their API key.
    subprocess.run(["tmux", "new-session", "-d", "-s", "older"], check=True)
    monkeypatch.setenv("KODELYTH_TEST_API_KEY", "exported-later; with spaces")
    launcher = 'printf "key=%s\\n" "$KODELYTH_TEST_API_KEY" >> {handoff_file_sh}'
    started(sandbox, "envs", "--agents", "alpha", "--launcher-cmd", launcher)
    wait_done(sandbox, "envs")
    handoff = (sandbox.coord_root / "envs" / "alpha" / "handoff.md").read_text()
    assert "key=exported-later; with spaces\n" in handoff


def test_worktrees_are_complete_clean_checkouts_of_the_base(sandbox: Sandbox) -> None:
    # Checked out in parallel after `worktree add --no-checkout`: same result as a checkout.
    (sandbox.repo / "docs").mkdir()
    (sandbox.repo / "docs" / "guide.md").write_text("guide\n")
    (sandbox.repo / "run.sh").write_text("#!/bin/sh\n")
    (sandbox.repo / "run.sh").chmod(0o755)
    git(sandbox.repo, "add", "--all")
    git(sandbox.repo, "commit", "--quiet", "--no-gpg-sign", "-m", "more")
    started(sandbox, "co", "--agents", "alpha,beta,gamma")
    wait_done(sandbox, "co")
    for slug in ("alpha", "beta", "gamma"):
        tree = worktree_of(sandbox, "co", slug)
        assert git(tree, "status", "--porcelain", "--untracked-files=all") == ""
        assert (tree / "docs" / "guide.md").read_text() == "guide\n"
        assert os.access(tree / "run.sh", os.X_OK)
        assert git(tree, "ls-files").split() == git(sandbox.repo, "ls-files").split()


def test_a_post_checkout_hook_runs_for_every_worktree(sandbox: Sandbox) -> None:
    log = sandbox.root / "hook.log"
    hook = sandbox.repo / ".git" / "hooks" / "post-checkout"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(f'#!/bin/sh\necho "$PWD" >> "{log}"\n')
    hook.chmod(0o755)
    started(sandbox, "hk", "--agents", "alpha,beta")
    wait_done(sandbox, "hk")
    ran_in = sorted(log.read_text().split())
    assert ran_in == sorted(str(worktree_of(sandbox, "hk", s)) for s in ("alpha", "beta"))
