"""Task shaping, names and launcher templates: what a plan says each worker gets.

The expected ``task.md`` texts below are copied from the earlier JavaScript tool's
bundles (``shared/fixtures/reference-bundles``): replay parses these markers, so the
files we write must keep exactly that shape.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from pathlib import Path

import pytest

from kodelyth_ecc.errors import UsageError
from kodelyth_ecc.harnesses import HARNESSES, get_harness
from kodelyth_ecc.launchers import (
    PLACEHOLDERS,
    missing_program,
    render_template,
    shell_quote,
    validate_template,
)
from kodelyth_ecc.naming import branch_name, default_session_name, slugify, worktree_path
from kodelyth_ecc.plan import PlanConfig, WorkerSpec, build_orchestration_plan, build_swarm_plan
from kodelyth_ecc.prompts import agent_prompt, worker_task_md
from kodelyth_ecc.statusfile import parse_status
from tests.conftest import Sandbox, make_repo

# rich-meta.bundle.json, worker code-reviewer: `swarm --task ... --agents 3 --harness echo`.
FIXTURE_RICH_META_TASK = (
    "# Worker Task: code-reviewer\n"
    "\n"
    "- Session: `swarm-2026-11-20-3a`\n"
    "- Repo root: `/home/dev/src/acme-api`\n"
    "- Worktree: `/home/dev/src/acme-api-swarm-2026-11-20-3a-code-reviewer`\n"
    "- Branch: `orchestrator-swarm-2026-11-20-3a-code-reviewer`\n"
    "- Launcher status file: "
    "`/home/dev/src/acme-api/.orchestration/swarm-2026-11-20-3a/code-reviewer/status.md`\n"
    "- Launcher handoff file: "
    "`/home/dev/src/acme-api/.orchestration/swarm-2026-11-20-3a/code-reviewer/handoff.md`\n"
    "\n"
    "## Objective\n"
    "# code-reviewer — swarm task\n"
    "\n"
    "You are running as the ECC `code-reviewer` specialist in a parallel swarm. Other agents "
    "are running the same shared task in sibling worktrees. Stay strictly inside your "
    "specialty — do not duplicate what other agents will cover. Produce a focused handoff "
    "that names exactly which findings are yours and yours alone.\n"
    "\n"
    "## Shared Task\n"
    "\n"
    "audit oauth flow for security regressions\n"
    "\n"
    "## Required handoff sections\n"
    "1. Summary\n"
    "2. Files Changed\n"
    "3. Validation\n"
    "4. Remaining Risks\n"
    "\n"
    "## Completion\n"
    "Do not spawn subagents or external agents for this task.\n"
    "Report results in your final response.\n"
    "The worker launcher captures your response in "
    "`/home/dev/src/acme-api/.orchestration/swarm-2026-11-20-3a/code-reviewer/handoff.md` "
    "automatically.\n"
    "The worker launcher updates "
    "`/home/dev/src/acme-api/.orchestration/swarm-2026-11-20-3a/code-reviewer/status.md` "
    "automatically.\n"
)
FIXTURE_REPO = "/home/dev/src/acme-api"
RICH_META_SESSION = "swarm-2026-11-20-3a"
RICH_META_TASK = "audit oauth flow for security regressions"

# objective-only.bundle.json: a hand-written plan whose workers have their own tasks.
FIXTURE_OBJECTIVE_ONLY = {
    "docs": (
        "# Worker Task: docs\n"
        "\n"
        "- Session: `handwritten`\n"
        "- Repo root: `/home/dev/src/acme-api`\n"
        "- Worktree: `/home/dev/src/acme-api-handwritten-docs`\n"
        "- Branch: `orchestrator-handwritten-docs`\n"
        "- Launcher status file: "
        "`/home/dev/src/acme-api/.orchestration/handwritten/docs/status.md`\n"
        "- Launcher handoff file: "
        "`/home/dev/src/acme-api/.orchestration/handwritten/docs/handoff.md`\n"
        "\n"
        "## Objective\n"
        "document the retry policy\n"
        "\n"
        "## Completion\n"
        "Do not spawn subagents or external agents for this task.\n"
        "Report results in your final response.\n"
        "The worker launcher captures your response in "
        "`/home/dev/src/acme-api/.orchestration/handwritten/docs/handoff.md` automatically.\n"
        "The worker launcher updates "
        "`/home/dev/src/acme-api/.orchestration/handwritten/docs/status.md` automatically.\n"
    ),
    "fix-bug": (
        "# Worker Task: Fix Bug\n"
        "\n"
        "- Session: `handwritten`\n"
        "- Repo root: `/home/dev/src/acme-api`\n"
        "- Worktree: `/home/dev/src/acme-api-handwritten-fix-bug`\n"
        "- Branch: `orchestrator-handwritten-fix-bug`\n"
        "- Launcher status file: "
        "`/home/dev/src/acme-api/.orchestration/handwritten/fix-bug/status.md`\n"
        "- Launcher handoff file: "
        "`/home/dev/src/acme-api/.orchestration/handwritten/fix-bug/handoff.md`\n"
        "\n"
        "## Objective\n"
        "fix the flaky retry in payments/client.py\n"
        "\n"
        "## Completion\n"
        "Do not spawn subagents or external agents for this task.\n"
        "Report results in your final response.\n"
        "The worker launcher captures your response in "
        "`/home/dev/src/acme-api/.orchestration/handwritten/fix-bug/handoff.md` automatically.\n"
        "The worker launcher updates "
        "`/home/dev/src/acme-api/.orchestration/handwritten/fix-bug/status.md` automatically.\n"
    ),
}

# Values no shell must ever interpret: quotes, spaces, substitutions, globs, newlines.
NASTY = [
    "plain",
    "with space",
    "it's",
    "'",
    "''",
    '"double"',
    "$(touch {pwned})",
    "`touch {pwned}`",
    "${HOME}",
    "$HOME",
    "a;touch {pwned}",
    "a && touch {pwned}",
    "a | touch {pwned}",
    "*",
    "back\\slash\\",
    "line\nbreak",
    "-n",
    "{worker_slug}",
    "ünïcödé ✓",
]


def _values(**overrides: str) -> dict[str, str]:
    values = {name: f"/v/{name}" for name in PLACEHOLDERS}
    values.update(overrides)
    return values


def _sh(command: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        ["/bin/sh", "-c", command],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return proc.stdout


# -- names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("code-reviewer", "code-reviewer"),
        ("Fix Bug", "fix-bug"),
        ("tdd_guide", "tdd-guide"),
        ("api.guardian", "api-guardian"),
        ("A  B__C..D", "a-b-c-d"),
        ("Release 2 Captain", "release-2-captain"),
        ("x", "x"),
        ("trailing-", "trailing"),
        ("UPPER", "upper"),
    ],
)
def test_slug_lowercases_and_collapses_non_alphanumeric_runs(name: str, slug: str) -> None:
    assert slugify(name) == slug


def test_branch_and_worktree_names() -> None:
    assert branch_name("s1", "fix-bug") == "orchestrator-s1-fix-bug"
    assert worktree_path("/w", "/src/acme-api", "s1", "fix-bug") == "/w/acme-api-s1-fix-bug"
    assert worktree_path("/w", "/src/acme-api/", "s1", "a") == "/w/acme-api-s1-a"


def test_default_session_name() -> None:
    assert default_session_name(3, dt.date(2026, 11, 20)) == "swarm-2026-11-20-3a"
    assert default_session_name(12, dt.date(2027, 1, 5)) == "swarm-2027-01-05-12a"


def test_plan_names_every_worker_from_session_and_slug() -> None:
    config = build_swarm_plan(
        "audit auth",
        repo_root="/src/acme-api",
        agents="Fix Bug,docs",
        session_name="s1",
        worktree_root="/wt",
        coordination_root="/coord",
    )
    plan = build_orchestration_plan(config)
    assert plan.coordination_dir == "/coord/s1"
    worker = plan.workers[0]
    assert (worker.worker_name, worker.worker_slug) == ("Fix Bug", "fix-bug")
    assert worker.branch_name == "orchestrator-s1-fix-bug"
    assert worker.worktree_path == "/wt/acme-api-s1-fix-bug"
    assert worker.task_file_path == "/coord/s1/fix-bug/task.md"
    assert worker.handoff_file_path == "/coord/s1/fix-bug/handoff.md"
    assert worker.status_file_path == "/coord/s1/fix-bug/status.md"
    assert worker.git_args == (
        "worktree",
        "add",
        "-b",
        "orchestrator-s1-fix-bug",
        "/wt/acme-api-s1-fix-bug",
        "HEAD",
    )


def test_plan_defaults_worktree_root_to_repo_parent_and_coordination_into_repo() -> None:
    config = build_swarm_plan("t", repo_root="/src/acme-api", agents=1, today=dt.date(2026, 11, 20))
    plan = build_orchestration_plan(config)
    assert plan.session_name == "swarm-2026-11-20-1a"
    assert plan.worktree_root == "/src"
    assert plan.coordination_dir == "/src/acme-api/.orchestration/swarm-2026-11-20-1a"
    assert plan.workers[0].worktree_path == "/src/acme-api-swarm-2026-11-20-1a-code-reviewer"


def test_duplicate_slugs_are_refused() -> None:
    config = PlanConfig(
        session_name="s1",
        repo_root="/src/acme-api",
        workers=(WorkerSpec("Fix Bug", "a"), WorkerSpec("fix_bug", "b")),
    )
    with pytest.raises(UsageError, match="share the slug 'fix-bug'"):
        build_orchestration_plan(config)


# -- prompts and task.md -----------------------------------------------------------------


def test_agent_prompt_structure() -> None:
    prompt = agent_prompt("security-reviewer", "audit auth\nthoroughly")
    lines = prompt.split("\n")
    assert lines[0] == "# security-reviewer — swarm task"
    assert lines[1] == ""
    assert "`security-reviewer`" in lines[2]
    assert "parallel" in lines[2]
    assert lines[3:] == [
        "",
        "## Shared Task",
        "",
        "audit auth",
        "thoroughly",
        "",
        "## Required handoff sections",
        "1. Summary",
        "2. Files Changed",
        "3. Validation",
        "4. Remaining Risks",
    ]


def test_swarm_plan_gives_each_agent_its_own_prompt_of_the_stripped_task() -> None:
    config = build_swarm_plan("  audit auth \n", repo_root="/r", agents=2)
    assert config.task == "audit auth"
    assert [w.task for w in config.workers] == [
        agent_prompt("security-reviewer", "audit auth"),
        agent_prompt("code-reviewer", "audit auth"),
    ]


def test_seeded_overlays_section_only_with_seeds() -> None:
    common = {
        "worker_name": "w",
        "session_name": "s",
        "repo_root": "/r",
        "worktree_path": "/wt",
        "branch_name": "b",
        "status_file": "/c/status.md",
        "handoff_file": "/c/handoff.md",
        "objective": "do it",
    }
    without = worker_task_md(**common)
    assert "Seeded" not in without
    with_seeds = worker_task_md(**common, seed_paths=[".env", "config/local.yml"])
    lines = with_seeds.split("\n")
    start = lines.index("## Seeded Local Overlays")
    assert lines[start + 1 : start + 4] == ["- `.env`", "- `config/local.yml`", ""]
    assert lines[start + 4] == "## Objective"
    # Without the section, the files are otherwise identical.
    assert with_seeds.replace(
        "## Seeded Local Overlays\n- `.env`\n- `config/local.yml`\n\n", ""
    ) == (without)


def _acme_repo(sandbox: Sandbox) -> Path:
    """A repository named like the fixtures' (acme-api), so paths differ only in the prefix."""
    return make_repo(sandbox.root / "src" / "acme-api")


def test_task_md_matches_the_js_fixture_for_a_swarm(sandbox: Sandbox) -> None:
    repo = _acme_repo(sandbox)
    result = sandbox.cli(
        "swarm",
        "--task",
        RICH_META_TASK,
        "--agents",
        "3",
        "--harness",
        "echo",
        "--session",
        RICH_META_SESSION,
        "--write-only",
        cwd=repo,
    )
    assert result.code == 0, result
    coord = repo / ".orchestration" / RICH_META_SESSION
    # The same agents as the JS tool picked for this task (rich-meta's meta.agents).
    record = json.loads((coord / "session.json").read_text())
    assert record["agents"] == ["security-reviewer", "code-reviewer", "pair-programmer"]
    for agent in record["agents"]:
        expected = FIXTURE_RICH_META_TASK.replace(FIXTURE_REPO, str(repo)).replace(
            "code-reviewer", agent
        )
        actual = (coord / agent / "task.md").read_text(encoding="utf-8")
        expected_lines, actual_lines = expected.split("\n"), actual.split("\n")
        assert len(actual_lines) == len(expected_lines), actual
        # Only the wording of the one introductory paragraph may differ.
        intro = expected_lines.index(f"# {agent} — swarm task") + 2
        for index, (want, got) in enumerate(zip(expected_lines, actual_lines, strict=True)):
            if index == intro:
                assert got.startswith("You are") and f"`{agent}`" in got, got
            else:
                assert got == want, f"line {index + 1}: {got!r} != {want!r}"


def test_task_md_matches_the_js_fixture_for_a_plan_file(sandbox: Sandbox) -> None:
    repo = _acme_repo(sandbox)
    plan_file = sandbox.root / "plan.json"
    plan_file.write_text(
        json.dumps(
            {
                "sessionName": "handwritten",
                "repoRoot": str(repo),
                "workers": [
                    {"name": "docs", "task": "document the retry policy"},
                    {"name": "Fix Bug", "task": "fix the flaky retry in payments/client.py"},
                ],
            }
        )
    )
    result = sandbox.cli("swarm", "--plan", str(plan_file), "--write-only", cwd=sandbox.root)
    assert result.code == 0, result
    coord = repo / ".orchestration" / "handwritten"
    for slug, expected in FIXTURE_OBJECTIVE_ONLY.items():
        actual = (coord / slug / "task.md").read_text(encoding="utf-8")
        assert actual == expected.replace(FIXTURE_REPO, str(repo))


def test_write_only_files_start_as_pending_with_seeds_listed(sandbox: Sandbox) -> None:
    (sandbox.repo / ".env").write_text("TOKEN=local\n")
    result = sandbox.cli(
        "swarm",
        "--task",
        "audit auth",
        "--agents",
        "Fix Bug",
        "--harness",
        "echo",
        "--session",
        "s1",
        "--seed",
        ".env",
        "--seed",
        "src",
        "--write-only",
    )
    assert result.code == 0, result
    worker = sandbox.coord_root / "s1" / "fix-bug"
    assert sorted(p.name for p in worker.iterdir()) == ["handoff.md", "status.md", "task.md"]
    branch = "orchestrator-s1-fix-bug"
    worktree = str(sandbox.root / "repo-s1-fix-bug")

    task = (worker / "task.md").read_text()
    assert "## Seeded Local Overlays\n- `.env`\n- `src`\n\n## Objective\n" in task

    assert (worker / "handoff.md").read_text() == (
        "# Handoff: Fix Bug\n"
        "\n## Summary\n- Pending\n"
        "\n## Files Changed\n- Pending\n"
        "\n## Validation\n- Pending\n"
        "\n## Remaining Risks\n- Pending\n"
    )
    status_text = (worker / "status.md").read_text()
    assert status_text == (
        f"# Status: Fix Bug\n\n- State: pending\n- Branch: `{branch}`\n- Worktree: `{worktree}`\n"
    )
    status = parse_status(status_text)
    assert (status.name, status.state, status.branch, status.worktree) == (
        "Fix Bug",
        "pending",
        branch,
        worktree,
    )
    assert status.started is None and status.exit_code is None


# -- launcher templates ------------------------------------------------------------------


def test_every_placeholder_renders_in_all_three_forms() -> None:
    for name in PLACEHOLDERS:
        value = f"/some path/it's {name}"
        template = f"<{{{name}}}|{{{name}_raw}}|{{{name}_sh}}>"
        rendered = render_template(template, _values(**{name: value}))
        assert rendered == f"<{value}|{value}|'/some path/it'\\''s {name}'>"


def test_all_placeholders_in_one_template_render_independently() -> None:
    template = " ".join(f"{{{n}_sh}}" for n in PLACEHOLDERS)
    assert render_template(template, _values()) == " ".join(f"'/v/{n}'" for n in PLACEHOLDERS)


def test_sh_form_is_one_inert_shell_word(tmp_path: Path) -> None:
    """Render every nasty value into a real command and let /bin/sh run it."""
    work = tmp_path / "cwd"
    work.mkdir()
    pwned = work / "pwned"
    values = [raw.replace("{pwned}", str(pwned)) for raw in NASTY]
    template = "printf '[%s]\\n' {worker_name_sh} {repo_root_sh}"
    for value in values:
        assert shell_quote(value).startswith("'") and shell_quote(value).endswith("'")
        command = render_template(template, _values(worker_name=value, repo_root=value))
        assert _sh(command, work) == f"[{value}]\n[{value}]\n", value
    # Nothing ran: neither the absolute `touch` targets nor any relative file.
    assert list(work.iterdir()) == []


def test_raw_form_is_really_raw(tmp_path: Path) -> None:
    # The raw form is for users who quote themselves; it must not be quoted twice.
    command = render_template('printf "%s" "{worker_name}"', _values(worker_name="a b"))
    assert _sh(command, tmp_path) == "a b"


def test_rendering_is_single_pass() -> None:
    rendered = render_template(
        "{worker_name_sh} {worker_slug}", _values(worker_name="{worker_slug}")
    )
    assert rendered == "'{worker_slug}' /v/worker_slug"


def test_shell_variables_are_not_placeholders(tmp_path: Path) -> None:
    template = 'printf "%s|%s|%s\\n" "${HOME}" "${worker_slug:-unset}" {worker_slug_sh}'
    assert validate_template(template) == template
    command = render_template(template, _values(worker_slug="s"))
    assert command == 'printf "%s|%s|%s\\n" "${HOME}" "${worker_slug:-unset}" \'s\''
    env = {"HOME": str(tmp_path), "PATH": os.environ["PATH"]}
    assert _sh(command, tmp_path, env=env) == f"{tmp_path}|unset|s\n"


def test_doubled_braces_are_literal_braces(tmp_path: Path) -> None:
    template = "printf 'a b\\n' | awk '{{print $2}}' && echo {{worker_slug}} {worker_slug_sh}"
    command = render_template(template, _values(worker_slug="s"))
    assert command == "printf 'a b\\n' | awk '{print $2}' && echo {worker_slug} 's'"
    assert _sh(command, tmp_path) == "b\n{worker_slug} s\n"


@pytest.mark.parametrize(
    ("template", "unknown"),
    [
        ("agent {nope}", "{nope}"),
        ("agent {task_file_quoted}", "{task_file_quoted}"),
        ("agent {HOME}", "{HOME}"),
        ("agent {Worker_Name}", "{Worker_Name}"),
        ("agent {task_file_sh} {zzz} {aaa}", "{aaa}, {zzz}"),
    ],
)
def test_unknown_placeholder_is_refused(template: str, unknown: str) -> None:
    with pytest.raises(UsageError, match="unknown placeholder") as info:
        validate_template(template)
    assert unknown in info.value.message
    with pytest.raises(UsageError):
        render_template(template, _values())


def test_empty_template_is_refused() -> None:
    with pytest.raises(UsageError, match="empty launcher template"):
        validate_template("   ")


@pytest.mark.parametrize("harness", sorted(HARNESSES))
def test_builtin_templates_render_quoted_and_use_no_repo_script(harness: str) -> None:
    template = get_harness(harness).launch_template("model-x")
    assert validate_template(template) == template
    # Every placeholder a built-in uses is a quoted one, and none points into the repo.
    assert "{repo_root" not in template and "{worktree_path" not in template
    values = _values(task_file="/c o/task.md", handoff_file="/c o/handoff.md", worker_slug="w")
    rendered = render_template(template, values)
    assert "{" not in rendered.replace("${", "")
    if harness == "echo":
        assert "'/c o/handoff.md'" in rendered
    else:
        # The agent is exec'd (its exit code is the worker's, whatever the shell), the task
        # comes on stdin (never argv: that caps at ~128 KiB), and the model is quoted.
        assert rendered.startswith(f"exec {harness} ")
        assert rendered.endswith(" < '/c o/task.md'")
        assert " --model 'model-x'" in rendered
        assert "$(cat" not in rendered and "| tee" not in rendered


@pytest.mark.parametrize("harness", sorted(set(HARNESSES) - {"echo"}))
def test_builtin_agent_template_gives_the_task_on_stdin(harness: str, tmp_path: Path) -> None:
    """Run the real template against a stand-in program, in paths full of shell syntax:
    the task arrives byte for byte on stdin, the exit code is the program's own."""
    pwned = tmp_path / "pwned"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / harness
    fake.write_text("#!/bin/sh\ncat\nexit 7\n")
    fake.chmod(0o755)
    coord = tmp_path / "it's $(touch pwned) `touch pwned` dir"
    coord.mkdir()
    task_file, handoff_file = coord / "task.md", coord / "handoff.md"
    task = "# Worker Task: w\n\n$(touch x) 'quoted' \"dq\"\n" + "y" * 300_000
    task_file.write_text(task)
    command = render_template(
        get_harness(harness).launch_template(),
        _values(task_file=str(task_file), handoff_file=str(handoff_file), worker_slug="w"),
    )
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    result = subprocess.run(["/bin/sh", "-c", command], cwd=tmp_path, env=env,
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert result.stdout == task
    assert result.returncode == 7
    assert not pwned.exists()
    assert not (tmp_path / "x").exists()


def test_echo_template_writes_demo_line_into_the_handoff(tmp_path: Path) -> None:
    handoff = tmp_path / "it's a $(dir)"
    handoff.write_text("# Handoff: w\n")
    command = render_template(
        get_harness("echo").template, _values(worker_slug="fix-bug", handoff_file=str(handoff))
    )
    assert _sh(command, tmp_path) == "demo worker fix-bug\n"
    assert handoff.read_text() == "# Handoff: w\ndemo worker fix-bug\n"


def test_missing_program_detection(tmp_path: Path) -> None:
    empty = str(tmp_path)
    assert missing_program(get_harness("claude"), path=empty) == "claude"
    assert missing_program(get_harness("echo"), path=empty) is None  # needs no program
    fake = tmp_path / "codex"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert missing_program(get_harness("codex"), path=empty) is None


def test_unknown_harness_is_refused() -> None:
    with pytest.raises(UsageError, match="unknown harness 'gpt'"):
        get_harness("gpt")


def test_windsurf_was_removed_with_a_reason() -> None:
    with pytest.raises(UsageError, match="the windsurf harness was removed: there is no windsurf"):
        get_harness("windsurf")


def test_plan_fills_each_workers_own_template() -> None:
    config = PlanConfig(
        session_name="s1",
        repo_root="/src/acme-api",
        workers=(
            WorkerSpec("a", "task a"),
            WorkerSpec("b", "task b", launcher_command="run-b {worker_name_sh} {branch_name}"),
        ),
        launcher_command="run {worker_slug_sh} {task_file_sh}",
        harness="echo",
    )
    plan = build_orchestration_plan(config)
    assert plan.workers[0].launch_command == ("run 'a' '/src/acme-api/.orchestration/s1/a/task.md'")
    assert plan.workers[1].launch_command == "run-b 'b' orchestrator-s1-b"
    assert plan.launcher_template == "run {worker_slug_sh} {task_file_sh}"
