"""``kodelyth-ecc swarm``: plan, write or execute a swarm."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TypeVar

from kodelyth_ecc import gitrepo
from kodelyth_ecc.agents import DEFAULT_AGENTS
from kodelyth_ecc.commands._common import print_json, sandbox_policy
from kodelyth_ecc.errors import KodelythError, UsageError
from kodelyth_ecc.plan import (
    OrchestrationPlan,
    PlanConfig,
    build_orchestration_plan,
    build_swarm_plan,
    check_verify,
    plan_config_from_json,
    sandbox_summary,
)


def _load_plan_file(path: str) -> object:
    import json

    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise UsageError(f"plan file {path} does not exist: check the --plan path") from None
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"plan file {path} is not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read plan file {path}: {exc}") from None


def _config_from_args(args: argparse.Namespace) -> tuple[PlanConfig, str | None]:
    """The plan config, and the base commit when it was found on the way."""
    if args.plan:
        if args.task:
            raise UsageError(
                "--task and --plan are exclusive: a plan file names each worker's task"
            )
        if args.agents is not None:
            raise UsageError("--agents and --plan are exclusive: a plan file names its workers")
        data = _load_plan_file(args.plan)
        try:
            default_root: str | None = gitrepo.repo_root()
        except gitrepo.NotInWorkTree:
            default_root = None
        config = plan_config_from_json(data, default_repo_root=default_root, harness=args.harness)
        overrides = {
            "session_name": args.session,
            "worktree_root": args.worktree_root,
            "coordination_root": args.coordination_root,
            "base_ref": args.base_ref,
            "launcher_command": args.launcher_cmd,
            "model": args.model,
            "worker_timeout": args.worker_timeout,
            "verify": check_verify(args.verify),
            "verify_timeout": args.verify_timeout,
        }
        changes = {k: v for k, v in overrides.items() if v is not None}
        if args.seed:
            changes["seed_paths"] = (*config.seed_paths, *args.seed)
        if args.replace:
            changes["replace_existing"] = True
        return config._replace(**changes), None
    if not args.task or not args.task.strip():
        raise UsageError('missing --task: say what the agents should do, e.g. --task "audit auth"')
    repo_root, commit = gitrepo.locate(args.base_ref or "HEAD")
    config = build_swarm_plan(
        args.task,
        repo_root=repo_root,
        agents=args.agents if args.agents is not None else DEFAULT_AGENTS,
        harness=args.harness,
        launcher_command=args.launcher_cmd,
        seed_paths=args.seed,
        session_name=args.session,
        worktree_root=args.worktree_root,
        coordination_root=args.coordination_root,
        base_ref=args.base_ref or "HEAD",
        replace_existing=args.replace,
        model=args.model,
        worker_timeout=args.worker_timeout,
        verify=args.verify,
        verify_timeout=args.verify_timeout,
    )
    return config, commit


def _print_plan(plan: OrchestrationPlan, commit: str) -> None:
    out = sys.stdout
    out.write(f"Session       {plan.session_name}\n")
    out.write(f"Repo          {plan.repo_root}\n")
    out.write(f"Base          {plan.base_ref} ({commit[:12]})\n")
    out.write(f"Harness       {plan.harness}\n")
    out.write(f"Coordination  {plan.coordination_dir}\n")
    if plan.task:
        out.write(f"Task          {plan.task}\n")
    if plan.seed_paths:
        out.write(f"Seeds         {', '.join(plan.seed_paths)}\n")
    out.write(f"Recording     {plan.recording_summary()}\n")
    out.write(f"Sandbox       {sandbox_summary(plan)}\n")
    out.write(f"Verify        {plan.verify_summary()}\n")
    out.write(f"Workers       {len(plan.workers)}\n")
    for worker in plan.workers:
        out.write(f"  {worker.worker_slug}\n")
        out.write(f"    branch    {worker.branch_name}\n")
        out.write(f"    worktree  {worker.worktree_path}\n")
        out.write(f"    launch    {worker.launch_command}\n")


def _check_repo_root(plan: OrchestrationPlan) -> None:
    """A plan file can name any repoRoot: make sure it is a git work tree before using it."""
    if not os.path.isdir(plan.repo_root):
        raise KodelythError(
            f"repo root {plan.repo_root} does not exist: fix 'repoRoot' in the plan file"
        )
    gitrepo.repo_root(plan.repo_root)


T = TypeVar("T")


def _auto_named(args: argparse.Namespace) -> bool:
    """Whether we pick the session name: no --session, no plan file naming it, and no
    --replace (which replaces the default name itself, as before)."""
    return args.session is None and not args.plan and not args.replace


def _renamed(config: PlanConfig, plan: OrchestrationPlan, name: str) -> OrchestrationPlan:
    if name == plan.session_name:
        return plan
    return build_orchestration_plan(config._replace(session_name=name))


def _under_free_name(
    config: PlanConfig, plan: OrchestrationPlan, action: Callable[[OrchestrationPlan], T]
) -> tuple[OrchestrationPlan, T]:
    """``action`` under the smallest free ``<default>``, ``<default>-2``, ...; when
    another run claims that name first, under the next free one."""
    from kodelyth_ecc.freename import claim_free_name

    def attempt(name: str) -> tuple[OrchestrationPlan, T]:
        named = _renamed(config, plan, name)
        return named, action(named)

    root, repo, trees = plan.coordination_root, plan.repo_root, plan.worktree_root
    slugs = [w.worker_slug for w in plan.workers]
    return claim_free_name(
        plan.session_name,
        attempt,
        coordination_root=root,
        repo_root=repo,
        worktree_root=trees,
        slugs=slugs,
    )


def _run_named(
    args: argparse.Namespace,
    config: PlanConfig,
    plan: OrchestrationPlan,
    action: Callable[[OrchestrationPlan], T],
) -> tuple[OrchestrationPlan, T]:
    if not _auto_named(args):
        return plan, action(plan)
    return _under_free_name(config, plan, action)


def run(args: argparse.Namespace) -> int:
    if args.verify_timeout is not None and args.verify is None:
        raise UsageError("--verify-timeout only applies with --verify")
    config, commit = _config_from_args(args)
    if args.no_record:
        config = config._replace(record=False)
    policy = sandbox_policy(args, on=args.sandbox, reason="--sandbox")
    if policy is not None:
        config = config._replace(sandbox=policy)
    plan = build_orchestration_plan(config)
    if args.plan:
        _check_repo_root(plan)
    # The dry-run path imports only planning modules: start-up time is a feature.
    if args.write_only:
        from kodelyth_ecc.execute import write_plan_files

        # Resolve the base ref first: a typo must fail before anything is written, and
        # session.json records the commit it resolved to.
        commit = commit or gitrepo.resolve_commit(plan.repo_root, plan.base_ref)
        base_commit = commit
        plan, _ = _run_named(
            args, config, plan, lambda p: write_plan_files(p, base_commit=base_commit)
        )
        sys.stdout.write(f"wrote {plan.coordination_dir} ({len(plan.workers)} workers)\n")
        return 0
    if args.execute:
        from kodelyth_ecc.execute import ExecutionResult, execute_plan
        from kodelyth_ecc.preflight import checkout_warnings
        from kodelyth_ecc.progress import ProgressLine

        # The agents start from a commit: edits only in this checkout never reach them.
        # Looked at first, said once the swarm started (a refusal stays one line).
        unseen = checkout_warnings(plan)
        # On a terminal, each step on one line of stderr (a big repo's checkouts take
        # a while); cleared before the summary, or the error, is printed.
        with ProgressLine() as line:

            def start(p: OrchestrationPlan) -> ExecutionResult:
                return execute_plan(
                    p, on_step=lambda step: line.update(f"{p.session_name}: {step}")
                )

            plan, result = _run_named(args, config, plan, start)
        # The hints must work as printed (from the repo): name a root of one's own.
        root = ""
        if plan.coordination_root != os.path.join(plan.repo_root, ".orchestration"):
            from kodelyth_ecc.launchers import shell_quote

            root = f" --coordination-root {shell_quote(plan.coordination_root)}"
        sys.stdout.write(
            f"started {plan.session_name}: {len(plan.workers)} workers from "
            f"{plan.base_ref} ({result.base_commit[:12]})\n"
            f"  coordination  {plan.coordination_dir}\n"
            f"  watch         kodelyth-ecc status {plan.session_name}{root} --wait\n"
            f"  attach        {result.attach_command}\n"
            f"  clean up      kodelyth-ecc teardown {plan.session_name}{root}\n"
        )
        for warning in unseen:
            sys.stderr.write(f"warning: {warning}\n")
        return 0
    from kodelyth_ecc.preflight import plan_warnings

    commit = commit or gitrepo.resolve_commit(plan.repo_root, plan.base_ref)
    auto_named = _auto_named(args)
    if auto_named:
        # Show the name --execute would use now.
        from kodelyth_ecc.freename import first_free_name

        root, repo, trees = plan.coordination_root, plan.repo_root, plan.worktree_root
        slugs = [w.worker_slug for w in plan.workers]
        name = first_free_name(
            plan.session_name,
            coordination_root=root,
            repo_root=repo,
            worktree_root=trees,
            slugs=slugs,
        )
        plan = _renamed(config, plan, name)
    # An auto-picked name was just found free: checking it again costs processes.
    for warning in plan_warnings(plan, check_names=not auto_named):
        sys.stderr.write(f"warning: {warning}\n")
    if args.json:
        print_json(plan.to_json())
        return 0
    _print_plan(plan, commit)
    sys.stderr.write(
        "dry run: nothing was created; add --execute to start it, --write-only to write files\n"
    )
    return 0
