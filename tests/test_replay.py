"""The replay library: recovering the task, choosing agents, harness, base and a
free ``<origin>-replay-N`` name, and building the replay's ``PlanConfig``."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kodelyth_ecc.bundle import encode_bundle
from kodelyth_ecc.errors import KodelythError, UsageError
from kodelyth_ecc.harnesses import HARNESSES
from kodelyth_ecc.plan import build_orchestration_plan
from kodelyth_ecc.prompts import agent_prompt
from kodelyth_ecc.replay import (
    build_replay_plan_config,
    choose_base,
    extract_task,
    load_replay_source,
    next_replay_name,
    recover_tasks,
)
from tests.conftest import Sandbox
from tests.replay_helpers import (
    make_bundle,
    reference,
    reference_bundle,
    swarm_task_md,
    task_md,
)
from tests.support import git, tmux
from tests.swarm_helpers import TASK, started, wait_done

JS_TASK = "audit oauth flow for security regressions"
ECHO = HARNESSES["echo"].template
# What a replay runs: claude's template, pointed at the session's recording proxy.
CLAUDE = HARNESSES["claude"].launch_template(None, HARNESSES["claude"].proxy_flags)
HOSTILE_LAUNCHER = "touch {repo_root_sh}/PWNED; cat {task_file_sh}"


# -- extract_task ----------------------------------------------------------------------


def test_extract_task_prefers_the_shared_task_body() -> None:
    text = swarm_task_md("code-reviewer", "audit the payments module\n\nfocus on retries")
    assert extract_task(text) == ("audit the payments module\n\nfocus on retries", "shared")


def test_extract_task_reads_the_js_tool_task_md() -> None:
    for worker in reference("no-meta.bundle.json")["workers"]:
        assert extract_task(worker["task"]) == (JS_TASK, "shared")


def test_extract_task_falls_back_to_the_objective_up_to_completion() -> None:
    text = task_md("fix-bug", "fix the flaky retry\nin payments/client.py")
    assert extract_task(text) == ("fix the flaky retry\nin payments/client.py", "objective")
    docs, fix_bug = reference("objective-only.bundle.json")["workers"]
    assert extract_task(docs["task"]) == ("document the retry policy", "objective")
    assert extract_task(fix_bug["task"]) == (
        "fix the flaky retry in payments/client.py",
        "objective",
    )


def test_extract_task_objective_keeps_sub_headings_until_completion() -> None:
    # `## Completion` ends the objective, not any heading inside it.
    text = "## Objective\nstep one\n## Notes\nstep two\n## Completion\nreport back\n"
    assert extract_task(text) == ("step one\n## Notes\nstep two", "objective")


def test_extract_task_objective_without_completion_runs_to_the_end() -> None:
    assert extract_task("# T\n\n## Objective\nrefactor the cache\n") == (
        "refactor the cache",
        "objective",
    )


def test_extract_task_empty_shared_task_falls_back_to_the_objective() -> None:
    text = "## Objective\nthe real work\n\n## Shared Task\n\n## Completion\ndone\n"
    assert extract_task(text) == ("the real work\n\n## Shared Task", "objective")


def test_extract_task_falls_back_to_the_whole_text() -> None:
    assert extract_task("  just do the thing\nplease\n\n") == ("just do the thing\nplease", "text")
    # A heading that only looks like ours is not one.
    assert extract_task("### Objective\nnot this\n") == ("### Objective\nnot this", "text")


_HEADING_LIKE = re.compile(r"## +.")
task_texts = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\x00"),
    min_size=1,
    max_size=300,
).filter(lambda t: t.strip() != "" and not any(_HEADING_LIKE.match(x) for x in t.split("\n")))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(task=task_texts)
def test_extract_task_recovers_any_shared_task_it_wrote(task: str) -> None:
    assert extract_task(swarm_task_md("agent", task)) == (task.strip(), "shared")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(objective=task_texts)
def test_extract_task_recovers_any_hand_written_objective(objective: str) -> None:
    assert extract_task(task_md("w", objective)) == (objective.strip(), "objective")


# -- recover_tasks ---------------------------------------------------------------------


def test_recover_tasks_prefers_meta_task() -> None:
    bundle = make_bundle(
        {"a": swarm_task_md("a", "the workers' task")}, meta={"task": "  the meta task \n"}
    )
    tasks = recover_tasks(bundle)
    assert (tasks.shared, tasks.per_worker, tasks.source) == ("the meta task", {}, "meta")
    assert recover_tasks(reference_bundle("rich-meta.bundle.json")).shared == JS_TASK


def test_recover_tasks_blank_meta_task_is_ignored() -> None:
    bundle = make_bundle({"a": swarm_task_md("a", "from the worker")}, meta={"task": "  "})
    assert recover_tasks(bundle).shared == "from the worker"


def test_recover_tasks_without_meta_reads_the_first_worker() -> None:
    tasks = recover_tasks(reference_bundle("no-meta.bundle.json"))
    assert (tasks.shared, tasks.source) == (JS_TASK, "shared")


def test_recover_tasks_keeps_differing_tasks_apart() -> None:
    tasks = recover_tasks(reference_bundle("objective-only.bundle.json"))
    assert tasks.shared is None
    assert tasks.source == "objective"
    assert tasks.per_worker == {
        "docs": "document the retry policy",
        "fix-bug": "fix the flaky retry in payments/client.py",
    }


def test_recover_tasks_same_objective_everywhere_is_shared() -> None:
    bundle = make_bundle({"a": task_md("a", "one job"), "b": task_md("b", "one job")})
    tasks = recover_tasks(bundle)
    assert (tasks.shared, tasks.source) == ("one job", "objective")


def test_recover_tasks_whole_text() -> None:
    bundle = make_bundle({"a": "free-form instructions\n"})
    tasks = recover_tasks(bundle)
    assert (tasks.shared, tasks.source) == ("free-form instructions", "text")


# -- build_replay_plan_config: tasks ---------------------------------------------------


def test_config_gives_every_worker_the_shared_task(sandbox: Sandbox) -> None:
    config = build_replay_plan_config(
        reference_bundle("no-meta.bundle.json"), repo_root=str(sandbox.repo)
    )
    assert config.task == JS_TASK
    assert [w.name for w in config.workers] == [
        "code-reviewer",
        "pair-programmer",
        "security-reviewer",
    ]
    for worker in config.workers:
        assert worker.task == agent_prompt(worker.name, JS_TASK)


def test_config_with_differing_tasks_gives_each_worker_its_own(sandbox: Sandbox) -> None:
    """The JS tool gave both workers the first one's task; we must not."""
    js = reference("objective-only.replay-plan.json")["planConfig"]
    js_tasks = {w["name"]: w["task"] for w in js["workers"]}
    # The fixture really shows the bug we are avoiding.
    assert all("document the retry policy" in t for t in js_tasks.values())

    config = build_replay_plan_config(
        reference_bundle("objective-only.bundle.json"), repo_root=str(sandbox.repo)
    )
    ours = {w.name: w.task for w in config.workers}
    assert set(ours) == set(js_tasks) == {"docs", "fix-bug"}
    assert "document the retry policy" in ours["docs"]
    assert "fix the flaky retry in payments/client.py" in ours["fix-bug"]
    assert "document the retry policy" not in ours["fix-bug"]
    assert ours["fix-bug"] != js_tasks["fix-bug"]
    assert config.task is None  # there is no one shared task


def test_config_differing_shared_tasks_follow_their_agents(sandbox: Sandbox) -> None:
    bundle = make_bundle(
        {"a": swarm_task_md("a", "task for a"), "b": swarm_task_md("b", "task for b")}
    )
    config = build_replay_plan_config(bundle, repo_root=str(sandbox.repo))
    assert {w.name: w.task for w in config.workers} == {
        "a": agent_prompt("a", "task for a"),
        "b": agent_prompt("b", "task for b"),
    }


def test_config_differing_tasks_new_agent_gets_the_first_workers_task(sandbox: Sandbox) -> None:
    bundle = make_bundle({"a": task_md("a", "job a"), "b": task_md("b", "job b")})
    config = build_replay_plan_config(bundle, repo_root=str(sandbox.repo), agents="b,newcomer")
    assert {w.name: w.task for w in config.workers} == {"b": "job b", "newcomer": "job a"}


# -- agents and harness ---------------------------------------------------------------


def test_agents_come_from_meta_in_its_order(sandbox: Sandbox) -> None:
    config = build_replay_plan_config(
        reference_bundle("rich-meta.bundle.json"), repo_root=str(sandbox.repo)
    )
    assert config.agents == ("security-reviewer", "code-reviewer", "pair-programmer")
    assert [w.name for w in config.workers] == list(config.agents)


def test_agents_default_to_the_worker_slugs(sandbox: Sandbox) -> None:
    config = build_replay_plan_config(
        reference_bundle("no-meta.bundle.json"), repo_root=str(sandbox.repo)
    )
    assert config.agents == ("code-reviewer", "pair-programmer", "security-reviewer")


@pytest.mark.parametrize("agents", ["tdd-guide,Api Guardian", ["tdd-guide", "Api Guardian"]])
def test_agents_flag_replaces_the_list(sandbox: Sandbox, agents: str | list[str]) -> None:
    config = build_replay_plan_config(
        reference_bundle("rich-meta.bundle.json"), repo_root=str(sandbox.repo), agents=agents
    )
    assert config.agents == ("tdd-guide", "Api Guardian")
    assert [w.task for w in config.workers] == [
        agent_prompt("tdd-guide", JS_TASK),
        agent_prompt("Api Guardian", JS_TASK),
    ]
    plan = build_orchestration_plan(config)
    assert [w.worker_slug for w in plan.workers] == ["tdd-guide", "api-guardian"]


@pytest.mark.parametrize("agents", ["3", "a,,b", "../evil", "a;rm -rf ~"])
def test_bad_agents_are_usage_errors(sandbox: Sandbox, agents: str) -> None:
    with pytest.raises(UsageError):
        build_replay_plan_config(
            reference_bundle("rich-meta.bundle.json"), repo_root=str(sandbox.repo), agents=agents
        )


def test_bad_agent_names_in_meta_are_usage_errors(sandbox: Sandbox) -> None:
    bundle = make_bundle({"a": "x"}, meta={"agents": ["ok", "../../escape"]})
    with pytest.raises(UsageError, match=r"meta\.agents\[1\]"):
        build_replay_plan_config(bundle, repo_root=str(sandbox.repo))


def test_harness_from_flag_then_meta_then_claude(sandbox: Sandbox) -> None:
    rich = reference_bundle("rich-meta.bundle.json")  # meta.harness = echo
    no_meta = reference_bundle("no-meta.bundle.json")
    repo = str(sandbox.repo)
    assert build_replay_plan_config(rich, repo_root=repo).harness == "echo"
    assert build_replay_plan_config(rich, repo_root=repo, harness="codex").harness == "codex"
    assert build_replay_plan_config(no_meta, repo_root=repo).harness == "claude"
    plan = build_orchestration_plan(build_replay_plan_config(no_meta, repo_root=repo))
    assert {w.launcher_template for w in plan.workers} == {CLAUDE}


def test_unknown_harness_in_the_bundle_is_a_clear_error(sandbox: Sandbox) -> None:
    bundle = make_bundle({"a": "x"}, meta={"harness": "gpt-9000"})
    with pytest.raises(UsageError) as info:
        build_replay_plan_config(bundle, repo_root=str(sandbox.repo))
    assert "gpt-9000" not in info.value.message  # bundle values are never echoed
    assert "meta.harness" in info.value.message
    assert "--harness" in info.value.message
    # Choosing one explicitly gets past it.
    config = build_replay_plan_config(bundle, repo_root=str(sandbox.repo), harness="echo")
    assert config.harness == "echo"


def test_unknown_harness_flag_is_a_usage_error(sandbox: Sandbox) -> None:
    with pytest.raises(UsageError, match="unknown harness"):
        build_replay_plan_config(
            reference_bundle("no-meta.bundle.json"), repo_root=str(sandbox.repo), harness="nope"
        )


# -- launcher trust --------------------------------------------------------------------


def test_bundle_launcher_is_not_used_without_trust(sandbox: Sandbox) -> None:
    bundle = make_bundle(
        {"a": swarm_task_md("a", "t")}, meta={"harness": "echo", "launcher": HOSTILE_LAUNCHER}
    )
    config = build_replay_plan_config(bundle, repo_root=str(sandbox.repo))
    assert config.launcher_command is None
    plan = build_orchestration_plan(config)
    assert [w.launcher_template for w in plan.workers] == [ECHO]
    assert "PWNED" not in plan.workers[0].launch_command
    assert "trusted_launcher" not in config.extra_meta["variation"]


def test_bundle_launcher_is_used_with_trust(sandbox: Sandbox) -> None:
    bundle = make_bundle(
        {"a": swarm_task_md("a", "t")}, meta={"harness": "echo", "launcher": HOSTILE_LAUNCHER}
    )
    config = build_replay_plan_config(bundle, repo_root=str(sandbox.repo), trust_launcher=True)
    assert config.launcher_command == HOSTILE_LAUNCHER
    plan = build_orchestration_plan(config)
    assert plan.workers[0].launch_command.startswith(f"touch '{sandbox.repo}'/PWNED;")
    assert config.extra_meta["variation"] == {"trusted_launcher": True}


def test_explicit_harness_wins_over_a_trusted_launcher(sandbox: Sandbox) -> None:
    bundle = make_bundle(
        {"a": swarm_task_md("a", "t")}, meta={"harness": "echo", "launcher": HOSTILE_LAUNCHER}
    )
    config = build_replay_plan_config(
        bundle, repo_root=str(sandbox.repo), trust_launcher=True, harness="echo"
    )
    assert config.launcher_command is None


# -- variation, replay_of, seeds -------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "variation"),
    [
        ({}, {}),
        ({"harness": "codex"}, {"harness": "codex"}),
        ({"agents": "x,y"}, {"agents": ["x", "y"]}),
        ({"base_ref": "main"}, {"base_ref": "main"}),
        ({"session_name": "mine"}, {"session": "mine"}),
        (
            {"harness": "echo", "agents": ["z"], "base_ref": "HEAD"},
            {"harness": "echo", "agents": ["z"], "base_ref": "HEAD"},
        ),
    ],
    ids=["none", "harness", "agents", "base-ref", "session", "several"],
)
def test_variation_records_exactly_the_overrides(
    sandbox: Sandbox, overrides: dict[str, object], variation: dict[str, object]
) -> None:
    config = build_replay_plan_config(
        reference_bundle("rich-meta.bundle.json"),
        repo_root=str(sandbox.repo),
        bundle_sha256="ab" * 32,
        **overrides,  # type: ignore[arg-type]
    )
    assert config.extra_meta["variation"] == variation
    assert config.extra_meta["replay_of"] == {
        "session": "swarm-2026-11-20-3a",
        "bundle_sha256": "ab" * 32,
    }


def test_seed_paths_from_a_bundle_must_be_inside_this_repo(sandbox: Sandbox) -> None:
    (sandbox.repo / ".env").write_text("KEY=1\n")
    outside = sandbox.root / "secret.txt"
    outside.write_text("no\n")
    bundle = make_bundle(
        {"a": "x"},
        meta={"seed_paths": [".env", "../secret.txt", "/etc/passwd", "missing", "", "a\x00b"]},
    )
    config = build_replay_plan_config(bundle, repo_root=str(sandbox.repo))
    assert config.seed_paths == (".env",)


@pytest.mark.parametrize("seed_paths", [5, "src", {"a": 1}, None])
def test_malformed_seed_paths_in_meta_are_ignored(sandbox: Sandbox, seed_paths: object) -> None:
    # validate_bundle refuses these; a Bundle built in code bypasses it and must not crash.
    bundle = msgspec.structs.replace(make_bundle({"a": "x"}), meta={"seed_paths": seed_paths})
    assert build_replay_plan_config(bundle, repo_root=str(sandbox.repo)).seed_paths == ()


# -- next_replay_name ------------------------------------------------------------------


def _name(sandbox: Sandbox, session: str = "origin", slugs: tuple[str, ...] = ("alpha",)) -> str:
    return next_replay_name(session, str(sandbox.coord_root), str(sandbox.repo), slugs=slugs)


def test_first_replay_is_replay_1_and_the_origin_suffix_is_stripped(sandbox: Sandbox) -> None:
    assert _name(sandbox) == "origin-replay-1"
    assert _name(sandbox, "origin-replay-7") == "origin-replay-1"
    assert _name(sandbox, "swarm-2026-11-20-3a-replay-1") == "swarm-2026-11-20-3a-replay-1"
    # Only a trailing -replay-<digits> is the suffix.
    assert _name(sandbox, "origin-replay-x") == "origin-replay-x-replay-1"
    assert _name(sandbox, "replay-2-origin") == "replay-2-origin-replay-1"


def test_a_coordination_dir_takes_the_name(sandbox: Sandbox) -> None:
    (sandbox.coord_root / "origin-replay-1").mkdir(parents=True)
    assert _name(sandbox) == "origin-replay-2"


def test_a_file_or_dangling_symlink_in_the_coordination_root_takes_the_name(
    sandbox: Sandbox,
) -> None:
    sandbox.coord_root.mkdir()
    (sandbox.coord_root / "origin-replay-1").write_text("")
    (sandbox.coord_root / "origin-replay-2").symlink_to(sandbox.root / "nowhere")
    assert _name(sandbox) == "origin-replay-3"


def test_a_tmux_session_takes_the_name(sandbox: Sandbox) -> None:
    tmux("new-session", "-d", "-s", "origin-replay-1")
    assert _name(sandbox) == "origin-replay-2"


def test_a_tmux_session_with_a_longer_name_does_not(sandbox: Sandbox) -> None:
    # tmux matches name prefixes unless told otherwise: origin-replay-1 is free here.
    tmux("new-session", "-d", "-s", "origin-replay-10")
    assert _name(sandbox) == "origin-replay-1"


def test_a_branch_takes_the_name(sandbox: Sandbox) -> None:
    git(sandbox.repo, "branch", "orchestrator-origin-replay-1-alpha")
    assert _name(sandbox) == "origin-replay-2"
    # Any worker's branch of that session counts, not only the replay's own agents.
    git(sandbox.repo, "branch", "orchestrator-origin-replay-2-someone-else")
    assert _name(sandbox) == "origin-replay-3"


def test_a_branch_of_a_longer_name_does_not(sandbox: Sandbox) -> None:
    git(sandbox.repo, "branch", "orchestrator-origin-replay-10-alpha")
    assert _name(sandbox) == "origin-replay-1"


def test_a_worktree_path_takes_the_name(sandbox: Sandbox) -> None:
    (sandbox.root / "repo-origin-replay-1-alpha").mkdir()
    assert _name(sandbox) == "origin-replay-2"
    # Only the paths the replay's own workers would use.
    assert _name(sandbox, slugs=("beta",)) == "origin-replay-1"


def test_a_dangling_symlink_at_a_worktree_path_takes_the_name(sandbox: Sandbox) -> None:
    (sandbox.root / "repo-origin-replay-1-alpha").symlink_to(sandbox.root / "gone")
    assert _name(sandbox) == "origin-replay-2"


def test_custom_worktree_root_is_checked(sandbox: Sandbox, tmp_path: Path) -> None:
    elsewhere = tmp_path / "trees"
    (elsewhere / "repo-origin-replay-1-alpha").mkdir(parents=True)
    name = next_replay_name(
        "origin",
        str(sandbox.coord_root),
        str(sandbox.repo),
        worktree_root=str(elsewhere),
        slugs=["alpha"],
    )
    assert name == "origin-replay-2"


def test_every_kind_of_collision_is_skipped_together(sandbox: Sandbox) -> None:
    (sandbox.coord_root / "origin-replay-1").mkdir(parents=True)
    tmux("new-session", "-d", "-s", "origin-replay-2")
    git(sandbox.repo, "branch", "orchestrator-origin-replay-3-alpha")
    (sandbox.root / "repo-origin-replay-4-alpha").mkdir()
    assert _name(sandbox) == "origin-replay-5"
    # The smallest free number, not one past the largest taken.
    (sandbox.coord_root / "origin-replay-7").mkdir()
    assert _name(sandbox) == "origin-replay-5"


def test_start_skips_lower_numbers(sandbox: Sandbox) -> None:
    name = next_replay_name(
        "origin", str(sandbox.coord_root), str(sandbox.repo), slugs=["alpha"], start=4
    )
    assert name == "origin-replay-4"


def test_config_picks_a_free_name_from_the_replays_own_agents(sandbox: Sandbox) -> None:
    bundle = make_bundle({"alpha": "x"}, session="origin")
    (sandbox.root / "repo-origin-replay-1-new-agent").mkdir()
    repo = str(sandbox.repo)
    assert build_replay_plan_config(bundle, repo_root=repo).session_name == "origin-replay-1"
    config = build_replay_plan_config(bundle, repo_root=repo, agents="New Agent")
    assert config.session_name == "origin-replay-2"
    explicit = build_replay_plan_config(bundle, repo_root=repo, session_name="origin-replay-1")
    assert explicit.session_name == "origin-replay-1"


def test_config_checks_a_coordination_root_elsewhere(sandbox: Sandbox, tmp_path: Path) -> None:
    root = tmp_path / "coord"
    (root / "origin-replay-1").mkdir(parents=True)
    bundle = make_bundle({"alpha": "x"}, session="origin")
    config = build_replay_plan_config(
        bundle, repo_root=str(sandbox.repo), coordination_root=str(root)
    )
    assert config.session_name == "origin-replay-2"
    assert config.coordination_root == str(root)


# -- choose_base -----------------------------------------------------------------------


def _commit(repo: Path, name: str) -> str:
    (repo / name).write_text(f"{name}\n")
    git(repo, "add", name)
    git(repo, "commit", "--quiet", "--no-gpg-sign", "-m", name)
    return git(repo, "rev-parse", "HEAD").strip()


@pytest.fixture
def history(sandbox: Sandbox) -> dict[str, str]:
    """``old`` (a branch at the first commit) and ``main`` one commit further."""
    repo = sandbox.repo
    first = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "branch", "old")
    second = _commit(repo, "second.txt")
    return {"first": first, "second": second}


def test_base_ref_flag_wins(sandbox: Sandbox, history: dict[str, str]) -> None:
    bundle = make_bundle({"a": "x"}, meta={"base_commit": history["first"], "base_ref": "old"})
    choice = choose_base(bundle, str(sandbox.repo), "main")
    assert (choice.ref, choice.reason, choice.warnings) == ("main", "--base-ref", ())


def test_origin_commit_is_used_when_it_exists_here(
    sandbox: Sandbox, history: dict[str, str]
) -> None:
    bundle = make_bundle({"a": "x"}, meta={"base_commit": history["first"], "base_ref": "main"})
    choice = choose_base(bundle, str(sandbox.repo), None)
    assert choice.ref == history["first"]
    assert "origin's base commit" in choice.reason
    assert choice.warnings == ()


def test_missing_origin_commit_falls_back_to_base_ref_and_warns(
    sandbox: Sandbox, history: dict[str, str]
) -> None:
    missing = "0123456789abcdef" * 2 + "01234567"
    bundle = make_bundle({"a": "x"}, meta={"base_commit": missing, "base_ref": "old"})
    choice = choose_base(bundle, str(sandbox.repo), None)
    assert choice.ref == "old"
    assert choice.reason == "the origin's base ref"
    (warning,) = choice.warnings
    assert missing[:12] in warning
    assert "not in this repository" in warning


def test_missing_origin_commit_and_no_ref_falls_back_to_head(sandbox: Sandbox) -> None:
    bundle = make_bundle({"a": "x"}, meta={"base_commit": "f" * 40})
    choice = choose_base(bundle, str(sandbox.repo), None)
    assert choice.ref == "HEAD"
    assert len(choice.warnings) == 1


def test_origin_commit_that_is_not_a_sha_is_never_passed_to_git(sandbox: Sandbox) -> None:
    # A ref name or an option in base_commit is not "the same commit as the origin".
    for fake in ("HEAD", "--output=/tmp/x", "main~0"):
        bundle = make_bundle({"a": "x"}, meta={"base_commit": fake})
        choice = choose_base(bundle, str(sandbox.repo), None)
        assert choice.ref == "HEAD"
        assert choice.reason.startswith("default")
        assert "not in this repository" in choice.warnings[0]


def test_base_ref_from_meta_then_head(sandbox: Sandbox, history: dict[str, str]) -> None:
    with_ref = make_bundle({"a": "x"}, meta={"base_ref": "old"})
    assert choose_base(with_ref, str(sandbox.repo), None).ref == "old"
    bare = make_bundle({"a": "x"})
    choice = choose_base(bare, str(sandbox.repo), None)
    assert (choice.ref, choice.warnings) == ("HEAD", ())
    assert "names no base" in choice.reason


def test_warns_when_the_chosen_base_lacks_the_origin_commit(
    sandbox: Sandbox, history: dict[str, str]
) -> None:
    bundle = make_bundle({"a": "x"}, meta={"base_commit": history["second"]})
    choice = choose_base(bundle, str(sandbox.repo), "old")
    assert choice.ref == "old"
    (warning,) = choice.warnings
    assert "does not contain" in warning
    assert history["second"][:12] in warning


def test_no_warning_when_the_chosen_base_contains_the_origin_commit(
    sandbox: Sandbox, history: dict[str, str]
) -> None:
    bundle = make_bundle({"a": "x"}, meta={"base_commit": history["first"]})
    assert choose_base(bundle, str(sandbox.repo), "main").warnings == ()


def test_config_uses_the_chosen_base(sandbox: Sandbox, history: dict[str, str]) -> None:
    bundle = make_bundle({"a": "x"}, meta={"base_commit": history["first"], "base_ref": "main"})
    repo = str(sandbox.repo)
    assert build_replay_plan_config(bundle, repo_root=repo).base_ref == history["first"]
    assert build_replay_plan_config(bundle, repo_root=repo, base_ref="old").base_ref == "old"


# -- load_replay_source ----------------------------------------------------------------


def test_source_from_a_file_records_the_sha256_of_its_bytes(sandbox: Sandbox) -> None:
    path = sandbox.root / "b.json"
    data = (Path(__file__).parent / "fixtures/reference-bundles/rich-meta.bundle.json").read_bytes()
    path.write_bytes(data)
    bundle, digest = load_replay_source(str(path), str(sandbox.coord_root), max_bytes=10**6)
    assert bundle.session == "swarm-2026-11-20-3a"
    assert digest == hashlib.sha256(data).hexdigest()
    with pytest.raises(KodelythError, match="over the 100-byte limit"):
        load_replay_source(str(path), str(sandbox.coord_root), max_bytes=100)


def test_source_from_a_session_is_exported_in_memory(sandbox: Sandbox) -> None:
    started(sandbox, "orig")
    wait_done(sandbox, "orig")
    before = sorted(os.listdir(sandbox.coord_root))
    bundle, digest = load_replay_source("orig", str(sandbox.coord_root), max_bytes=10**6)
    assert bundle.session == "orig"
    assert [w.slug for w in bundle.workers] == ["alpha", "beta"]
    assert bundle.meta["task"] == TASK
    assert digest == hashlib.sha256(encode_bundle(bundle)).hexdigest()
    assert sorted(os.listdir(sandbox.coord_root)) == before  # nothing written


def test_source_that_is_neither_is_a_clear_error(sandbox: Sandbox) -> None:
    with pytest.raises(KodelythError, match="no session 'nothing-here'"):
        load_replay_source("nothing-here", str(sandbox.coord_root), max_bytes=10**6)
    with pytest.raises(KodelythError, match="does not exist"):
        load_replay_source("nothing.json", str(sandbox.coord_root), max_bytes=10**6)
