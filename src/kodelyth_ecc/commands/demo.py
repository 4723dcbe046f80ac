"""``kodelyth-ecc demo``: an echo swarm in a throwaway repo, start to finish."""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from kodelyth_ecc.commands.status import print_table, wait_exit_code
from kodelyth_ecc.demo import demo_session_name, make_demo_repo
from kodelyth_ecc.execute import execute_plan
from kodelyth_ecc.plan import build_orchestration_plan, build_swarm_plan
from kodelyth_ecc.status import wait_for_session

DEMO_TASK = "review the auth module for security bugs and missing tests"


def run(args: argparse.Namespace) -> int:
    out = sys.stdout
    repo = make_demo_repo(args.dir)
    try:
        config = build_swarm_plan(
            DEMO_TASK, repo_root=repo, agents=3, harness="echo", session_name=demo_session_name()
        )
        plan = build_orchestration_plan(config)
        result = execute_plan(plan)
    except BaseException:
        # Nothing started: the throwaway repo is of no use to anyone.
        shutil.rmtree(os.path.dirname(repo), ignore_errors=True)
        raise
    out.write(f"demo repo     {repo}\n")
    out.write(f"swarm         {plan.session_name}: {len(plan.workers)} echo workers started\n")
    status = wait_for_session(plan.session_name, plan.coordination_root, timeout=args.timeout)
    out.write("\n")
    print_table(status, out)
    out.write("\n")
    out.write(f"coordination  {plan.coordination_dir}\n")
    for worker in plan.workers:
        out.write(f"worktree      {worker.worktree_path}\n")
    out.write(f"handoff       {plan.workers[0].handoff_file_path}\n")
    out.write(f"tmux          {result.attach_command}\n")
    out.write(f"status        cd {repo} && kodelyth-ecc status {plan.session_name}\n")
    out.write(
        f"clean up      cd {repo} && kodelyth-ecc teardown {plan.session_name} --purge"
        f" && rm -rf {repo.rsplit('/', 1)[0]}\n"
    )
    return wait_exit_code(status)
