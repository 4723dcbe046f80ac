"""Checks that decide whether a plan can run, cheap enough for every dry-run."""

from __future__ import annotations

import os

from kodelyth_ecc import gitrepo, tmux
from kodelyth_ecc.launchers import get_harness, missing_program
from kodelyth_ecc.plan import OrchestrationPlan


def missing_harness_program(plan: OrchestrationPlan) -> str | None:
    """The harness program, if some worker uses the harness template and it is not on PATH."""
    harness = get_harness(plan.harness or "claude")
    if not any(w.launcher_template == harness.template for w in plan.workers):
        return None
    return missing_program(harness)


def plan_warnings(plan: OrchestrationPlan, *, check_names: bool = True) -> list[str]:
    """What would stop ``--execute``, reported by dry-run instead of failing.
    ``check_names=False`` when the name was just found free (each check is a process)."""
    warnings = []
    program = missing_harness_program(plan)
    if program:
        warnings.append(
            f"{program} is not on PATH: --execute will refuse to start the {plan.harness} harness"
        )
    if not tmux.available():
        warnings.append("tmux is not on PATH: --execute needs it")
    taken = collisions(plan, execute=True) if check_names else []
    if taken and not plan.replace_existing:
        warnings.append(
            f"session {plan.session_name!r} is taken ({'; '.join(taken)}): "
            "--execute will refuse without --replace"
        )
    return warnings


def collisions(plan: OrchestrationPlan, *, execute: bool) -> list[str]:
    found = []
    if os.path.lexists(plan.coordination_dir):
        found.append(f"coordination dir {plan.coordination_dir} exists")
    if not execute:
        return found
    if tmux.has_session(plan.session_name):
        found.append(f"tmux session {plan.session_name!r} exists")
    branches = gitrepo.branches(plan.repo_root, prefix=f"orchestrator-{plan.session_name}-")
    for worker in plan.workers:
        if worker.branch_name in branches:
            found.append(f"branch {worker.branch_name} exists")
        if os.path.lexists(worker.worktree_path):
            found.append(f"worktree path {worker.worktree_path} exists")
    return found
