"""``kodelyth-ecc swarm``: plan, write or execute a swarm."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from kodelyth_ecc import gitrepo
from kodelyth_ecc.agents import DEFAULT_AGENTS
from kodelyth_ecc.commands._common import print_json
from kodelyth_ecc.coordination import write_session_record
from kodelyth_ecc.errors import KodelythError, UsageError
from kodelyth_ecc.execute import execute_plan, plan_warnings, write_plan_files
from kodelyth_ecc.plan import (
    OrchestrationPlan,
    PlanConfig,
    build_orchestration_plan,
    build_swarm_plan,
    plan_config_from_json,
)


def _load_plan_file(path: str) -> object:
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


def _config_from_args(args: argparse.Namespace) -> PlanConfig:
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
        except KodelythError:
            default_root = None
        config = plan_config_from_json(data, default_repo_root=default_root, harness=args.harness)
        overrides = {
            "session_name": args.session,
            "worktree_root": args.worktree_root,
            "coordination_root": args.coordination_root,
            "base_ref": args.base_ref,
            "launcher_command": args.launcher_cmd,
        }
        changes = {k: v for k, v in overrides.items() if v is not None}
        if args.seed:
            changes["seed_paths"] = (*config.seed_paths, *args.seed)
        if args.replace:
            changes["replace_existing"] = True
        return dataclasses.replace(config, **changes)
    if not args.task or not args.task.strip():
        raise UsageError('missing --task: say what the agents should do, e.g. --task "audit auth"')
    return build_swarm_plan(
        args.task,
        repo_root=gitrepo.repo_root(),
        agents=args.agents if args.agents is not None else DEFAULT_AGENTS,
        harness=args.harness,
        launcher_command=args.launcher_cmd,
        seed_paths=args.seed,
        session_name=args.session,
        worktree_root=args.worktree_root,
        coordination_root=args.coordination_root,
        base_ref=args.base_ref or "HEAD",
        replace_existing=args.replace,
    )


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


def run(args: argparse.Namespace) -> int:
    plan = build_orchestration_plan(_config_from_args(args))
    if args.plan:
        _check_repo_root(plan)
    if args.write_only:
        # Resolve the base ref first: a typo must fail before anything is written, and
        # session.json records the commit it resolved to.
        commit = gitrepo.resolve_commit(plan.repo_root, plan.base_ref)
        record = write_plan_files(plan)
        record.base_commit = commit
        write_session_record(plan.coordination_dir, record)
        sys.stdout.write(f"wrote {plan.coordination_dir} ({len(plan.workers)} workers)\n")
        return 0
    if args.execute:
        result = execute_plan(plan)
        sys.stdout.write(
            f"started {plan.session_name}: {len(plan.workers)} workers from "
            f"{plan.base_ref} ({result.base_commit[:12]})\n"
            f"  coordination  {plan.coordination_dir}\n"
            f"  watch         kodelyth-ecc status {plan.session_name} --wait\n"
            f"  attach        {result.attach_command}\n"
            f"  clean up      kodelyth-ecc teardown {plan.session_name}\n"
        )
        return 0
    commit = gitrepo.resolve_commit(plan.repo_root, plan.base_ref)
    for warning in plan_warnings(plan):
        sys.stderr.write(f"warning: {warning}\n")
    if args.json:
        print_json(plan.to_json())
        return 0
    _print_plan(plan, commit)
    sys.stderr.write(
        "dry run: nothing was created; add --execute to start it, --write-only to write files\n"
    )
    return 0
