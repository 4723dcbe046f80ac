"""``kodelyth-ecc demo``: an echo swarm in a throwaway repo, start to finish."""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import shutil
import sys

from kodelyth_ecc.bundle import write_bundle
from kodelyth_ecc.commands._common import tool_command
from kodelyth_ecc.commands.status import print_table, wait_exit_code
from kodelyth_ecc.demo import demo_session_name, make_demo_repo
from kodelyth_ecc.execute import execute_plan
from kodelyth_ecc.export import export_bundle
from kodelyth_ecc.plan import build_orchestration_plan, build_swarm_plan
from kodelyth_ecc.replay import build_replay_plan_config
from kodelyth_ecc.status import wait_for_session

DEMO_TASK = "review the auth module for security bugs and missing tests"
DEMO_REPLAY_AGENTS = ("security-reviewer", "tdd-guide")


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
    if not status.all_completed:
        return wait_exit_code(status)

    # Session replay: bundle the swarm, replay it with other agents, bundle the replay.
    first = os.path.join(os.path.dirname(repo), f"{plan.session_name}.bundle.json")
    bundle = export_bundle(plan.session_name, plan.coordination_root)
    write_bundle(bundle, first)
    out.write(f"exported      {first}\n")
    with open(first, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    replay_config = build_replay_plan_config(
        bundle,
        repo_root=repo,
        coordination_root=plan.coordination_root,
        agents=DEMO_REPLAY_AGENTS,
        bundle_sha256=digest,
    )
    replay_plan = build_orchestration_plan(replay_config)
    replay_result = execute_plan(replay_plan)
    out.write(f"replay        {replay_plan.session_name}: agents {', '.join(DEMO_REPLAY_AGENTS)}\n")
    replay_status = wait_for_session(
        replay_plan.session_name, plan.coordination_root, timeout=args.timeout
    )
    out.write("\n")
    print_table(replay_status, out)
    out.write("\n")
    second = os.path.join(os.path.dirname(repo), f"{replay_plan.session_name}.bundle.json")
    write_bundle(export_bundle(replay_plan.session_name, plan.coordination_root), second)
    out.write(f"exported      {second}\n\n")

    out.write(f"coordination  {plan.coordination_dir}\n")
    for worker in plan.workers:
        out.write(f"worktree      {worker.worktree_path}\n")
    out.write(f"handoff       {plan.workers[0].handoff_file_path}\n")
    out.write(f"tmux          {result.attach_command}\n")
    out.write(f"              {replay_result.attach_command}\n")
    # Commands to paste are shell-quoted: --dir may hold spaces.
    # The tool as it can be run from anywhere: not on PATH after the README's first line.
    q, tool = shlex.quote, tool_command()
    out.write(f"status        cd {q(repo)} && {tool} status\n")
    out.write(f"bundles       {first}\n              {second}\n")
    out.write(f"compare       {tool} compare {q(first)} {q(second)}\n")
    out.write(
        f"clean up      cd {q(repo)} && {tool} teardown {plan.session_name} --purge"
        f" && {tool} teardown {replay_plan.session_name} --purge"
        f" && rm -rf {q(os.path.dirname(repo))}\n"
    )
    return wait_exit_code(replay_status)
