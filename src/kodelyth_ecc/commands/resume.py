"""``kodelyth-ecc resume``: restart a session's unfinished workers after its tmux
server is gone."""

from __future__ import annotations

import argparse
import sys

from kodelyth_ecc.commands._common import coordination_root, tool_command
from kodelyth_ecc.commands.retry import print_restarted
from kodelyth_ecc.termsafe import one_line


def run(args: argparse.Namespace) -> int:
    from kodelyth_ecc.progress import ProgressLine
    from kodelyth_ecc.retry import resume_session

    root = coordination_root(args.coordination_root)
    with ProgressLine() as line:
        result = resume_session(
            args.session, root, on_step=lambda step: line.update(f"{args.session}: {step}")
        )
    if not result.workers:
        session = one_line(args.session, 100)
        sys.stdout.write(
            f"nothing to resume in {session}: every worker completed or failed "
            f"(`{tool_command()} retry {session} WORKER` runs one again)\n"
        )
        return 0
    print_restarted(result, sys.stdout, explicit_root=bool(args.coordination_root))
    return 0
