"""The text a worker is given and starts with: agent prompt, task.md, handoff.md.

The headings (``# <agent> — swarm task``, ``## Shared Task``, ``## Objective``,
``## Completion``) are a format: replay parses them back, and bundles written
by the earlier JavaScript tool contain them, so they must not change.
"""

from __future__ import annotations

from collections.abc import Sequence

REQUIRED_HANDOFF_SECTIONS = ("Summary", "Files Changed", "Validation", "Remaining Risks")


def agent_prompt(agent: str, task: str) -> str:
    sections = "\n".join(
        f"{index}. {name}" for index, name in enumerate(REQUIRED_HANDOFF_SECTIONS, start=1)
    )
    return (
        f"# {agent} — swarm task\n"
        "\n"
        f"You are the `{agent}` specialist, one of several agents working in parallel on "
        "the same shared task, each in its own git worktree. Keep to your specialty and "
        "leave the rest to the others. End with a handoff that says plainly which "
        "findings and changes are yours.\n"
        "\n"
        "## Shared Task\n"
        "\n"
        f"{task}\n"
        "\n"
        "## Required handoff sections\n"
        f"{sections}"
    )


def worker_task_md(
    *,
    worker_name: str,
    session_name: str,
    repo_root: str,
    worktree_path: str,
    branch_name: str,
    status_file: str,
    handoff_file: str,
    objective: str,
    seed_paths: Sequence[str] = (),
) -> str:
    lines = [
        f"# Worker Task: {worker_name}",
        "",
        f"- Session: `{session_name}`",
        f"- Repo root: `{repo_root}`",
        f"- Worktree: `{worktree_path}`",
        f"- Branch: `{branch_name}`",
        f"- Launcher status file: `{status_file}`",
        f"- Launcher handoff file: `{handoff_file}`",
        "",
    ]
    if seed_paths:
        lines += ["## Seeded Local Overlays", *(f"- `{p}`" for p in seed_paths), ""]
    lines += [
        "## Objective",
        objective.rstrip("\n"),
        "",
        "## Completion",
        "Do not spawn subagents or external agents for this task.",
        "Report results in your final response.",
        f"The worker launcher captures your response in `{handoff_file}` automatically.",
        f"The worker launcher updates `{status_file}` automatically.",
        "",
    ]
    return "\n".join(lines)


def initial_handoff_md(worker_name: str) -> str:
    body = "".join(f"\n## {name}\n- Pending\n" for name in REQUIRED_HANDOFF_SECTIONS)
    return f"# Handoff: {worker_name}\n{body}"
