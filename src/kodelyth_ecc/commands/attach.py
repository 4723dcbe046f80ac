"""``kodelyth-ecc attach``: the session's tmux session on this terminal, at a worker's
pane. The last step replaces this process with tmux (as `tmux attach` would be run by
hand), so detaching returns to the shell."""

from __future__ import annotations

import argparse
import os
import sys

from kodelyth_ecc import tmux
from kodelyth_ecc.commands._common import coordination_root, worker_of
from kodelyth_ecc.errors import KodelythError


def run(args: argparse.Namespace) -> int:
    from kodelyth_ecc.status import collect_status

    root = coordination_root(args.coordination_root)
    status = collect_status(args.session, root)
    worker = worker_of(status, args.worker) if args.worker is not None else None
    session = args.session
    record = status.record
    if record is None or record.tmux_session is None:
        made = record.mode if record is not None else "unknown"
        raise KodelythError(
            f"session {session!r} never ran here ({made}): there is no tmux session to "
            f"attach to; start it with `kodelyth-ecc replay {session} --execute`"
        )
    tmux.require()
    if not tmux.has_session(session):
        unfinished = [w.slug for w in status.workers if w.state in ("pending", "running", "lost")]
        hint = (
            f"`kodelyth-ecc resume {session}` starts {', '.join(unfinished)} again"
            if unfinished
            else f"its workers are done: `kodelyth-ecc logs {session} WORKER` shows a transcript"
        )
        raise KodelythError(f"the tmux session of {session!r} is gone: {hint}")
    inside = bool(os.environ.get("TMUX"))
    if not inside and not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise KodelythError(
            f"attach needs a terminal: run it in one (or `tmux attach -t ={session}` there)"
        )
    # Only a pane of this very session is selected (a dead one too: its last output):
    # session.json may name one of another session, and selecting it would change that.
    if worker is not None and not (
        worker.pane_id
        and worker.pane_id in (tmux.panes(session) or {})
        and tmux.select_pane(worker.pane_id)
    ):
        sys.stderr.write(f"warning: the pane of {worker.slug} is gone; attaching to the session\n")
    argv = tmux.attach_argv(session)
    sys.stdout.flush()
    sys.stderr.flush()
    # Not through cmd_output: the terminal is tmux's from here on.
    os.execvpe(argv[0], argv, tmux.attach_env())  # noqa: S606 (tmux, by name, as a user would)
