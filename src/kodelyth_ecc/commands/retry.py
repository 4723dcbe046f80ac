"""``kodelyth-ecc retry``: run a worker again in its own worktree."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TextIO

from kodelyth_ecc.commands._common import coordination_root, tool_command
from kodelyth_ecc.termsafe import one_line

TYPE_CHECKING = False
if TYPE_CHECKING:
    from kodelyth_ecc.retry import RetryResult


def run(args: argparse.Namespace) -> int:
    from kodelyth_ecc.progress import ProgressLine
    from kodelyth_ecc.retry import retry_workers

    root = coordination_root(args.coordination_root)
    with ProgressLine() as line:
        result = retry_workers(
            args.session,
            root,
            [args.worker],
            message=args.message,
            on_step=lambda step: line.update(f"{args.session}: {step}"),
        )
    print_restarted(result, sys.stdout, explicit_root=bool(args.coordination_root))
    return 0


def print_restarted(result: RetryResult, out: TextIO, *, explicit_root: bool) -> None:
    """What was started again, how, and the commands to follow it."""
    session = one_line(result.session, 100)
    for worker in result.workers:
        slug = one_line(worker.slug, 64)
        how = (
            f"continuing its agent's conversation {one_line(worker.resumed, 64)} with your message"
            if worker.resumed
            else "afresh on its task, your message added to its task.md"
            if worker.afresh_because
            else "afresh on its task"
        )
        out.write(f"restarted {slug} in {session} (attempt {worker.attempt}): {how}\n")
        if worker.afresh_because:
            out.write(
                f"note: {slug} could not continue its conversation: {worker.afresh_because}\n"
            )
        kept = os.path.relpath(worker.kept, os.getcwd()) if worker.kept else "-"
        out.write(f"  previous attempt kept in {one_line(kept, 300)}\n")
        if worker.stranded:
            out.write(
                f"note: {slug}'s previous attempt ended in its sandbox before its commits were "
                f"brought back: its objects and refs are kept in {one_line(worker.stranded, 300)}\n"
            )
    if result.new_tmux_session:
        out.write(f"the tmux session {session} was gone: made again\n")
    if result.proxy == "started":
        out.write("the session's model proxy was started again\n")
    for slug in result.left_lost:
        out.write(
            f"{one_line(slug, 64)} had not finished either and is lost: "
            f"`{tool_command()} retry {session} {one_line(slug, 64)}` starts it again\n"
        )
    root = ""
    if explicit_root:
        from kodelyth_ecc.launchers import shell_quote

        root = f" --coordination-root {shell_quote(result.coordination_root)}"
    tool = tool_command()
    first = one_line(result.workers[0].slug, 64) if result.workers else ""
    out.write(
        f"  watch         {tool} status {session}{root} --wait\n"
        f"  attach        {tool} attach {session} {first}{root}\n".replace(" \n", "\n")
    )
