"""``kodelyth-ecc status``: sessions, workers, and waiting for them."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from typing import Any, TextIO

from kodelyth_ecc.commands._common import (
    coordination_root,
    human_bytes,
    human_duration,
    print_json,
)
from kodelyth_ecc.errors import EXIT_FAILURE, EXIT_OK, EXIT_WAIT_TIMEOUT, UsageError
from kodelyth_ecc.status import (
    SessionStatus,
    WaitTimeout,
    collect_status,
    list_sessions,
    wait_for_session,
)
from kodelyth_ecc.termsafe import one_line

STATUS_SCHEMA = "kodelyth.status/v1"


def session_json(status: SessionStatus) -> dict[str, Any]:
    return {
        "session": status.session,
        "coordinationDir": status.coordination_dir,
        "tmuxAlive": status.tmux_alive,
        "done": status.done,
        "counts": status.counts(),
        "workers": [asdict(w) for w in status.workers],
    }


def _pane(alive: bool | None) -> str:
    return "-" if alive is None else ("alive" if alive else "dead")


def print_table(status: SessionStatus, out: TextIO) -> None:
    with_usage = any(w.usage for w in status.workers)
    with_verify = any(w.verify for w in status.workers)
    head: tuple[str, ...] = ("WORKER", "STATE", "EXIT", "DURATION", "PANE", "HANDOFF")
    head += ("VERIFY",) if with_verify else ()
    rows = [head + (("MODEL", "TOKENS IN/OUT", "COST") if with_usage else ())]
    for w in status.workers:
        row: tuple[str, ...] = (
            w.slug,
            # status.md is written by whatever runs in the pane: never raw to a terminal.
            one_line(w.state, 24) + (f" ({one_line(w.reason, 40)})" if w.reason else ""),
            "-" if w.exit_code is None else str(w.exit_code),
            human_duration(w.duration_s),
            _pane(w.pane_alive),
            human_bytes(w.handoff_bytes),
        )
        if with_verify:
            # "passed (exit 0, 1.2s): ...": the outcome, the command is in status.md.
            row += (one_line((w.verify or "-").split(":", 1)[0], 40),)
        rows.append(row + (_usage_cells(w.usage) if with_usage else ()))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            + "\n"
        )
    for w in status.workers:
        if w.problem:
            out.write(f"{w.slug}: {one_line(w.problem)}\n")


def _usage_cells(usage: dict[str, object] | None) -> tuple[str, str, str]:
    """Model, tokens in/out and cost, as the agent's CLI reported them ('-' unknown)."""
    usage = usage or {}

    def number(key: str) -> str:
        value = usage.get(key)
        return f"{value:,}" if isinstance(value, int) else "-"

    cost = usage.get("cost_usd")
    model = usage.get("model")
    return (
        one_line(model, 32) if isinstance(model, str) else "-",
        f"{number('input_tokens')}/{number('output_tokens')}",
        f"${cost:.4f}" if isinstance(cost, (int, float)) else "-",
    )


def _summary(status: SessionStatus) -> str:
    counts = ", ".join(f"{n} {one_line(state, 24)}" for state, n in status.counts().items() if n)
    total = len(status.workers)
    return f"{status.session}  {total} worker{'' if total == 1 else 's'}: {counts or 'none'}"


def wait_exit_code(status: SessionStatus) -> int:
    return EXIT_OK if status.all_completed else EXIT_FAILURE


def wait_with_exit_code(
    session: str, coordination_root: str, timeout: float | None
) -> tuple[SessionStatus, int]:
    """``--wait`` for `status` and `replay`: the last status seen, and 0, 1 or 124."""
    try:
        status = wait_for_session(session, coordination_root, timeout=timeout)
    except WaitTimeout as exc:
        sys.stderr.write(f"kodelyth-ecc: {exc.message}\n")
        return exc.status, EXIT_WAIT_TIMEOUT
    return status, wait_exit_code(status)


def run(args: argparse.Namespace) -> int:
    root = coordination_root(args.coordination_root)
    if args.session is None:
        if args.wait:
            raise UsageError("--wait needs a SESSION to wait for")
        sessions = list_sessions(root)
        if args.json:
            print_json({"schema": STATUS_SCHEMA, "sessions": [session_json(s) for s in sessions]})
        elif not sessions:
            sys.stderr.write(f"no sessions under {root}\n")
        else:
            for status in sessions:
                sys.stdout.write(_summary(status) + "\n")
        return EXIT_OK
    if args.timeout is not None and not args.wait:
        raise UsageError("--timeout only applies with --wait")
    code = EXIT_OK
    if args.wait:
        status, code = wait_with_exit_code(args.session, root, args.timeout)
    else:
        status = collect_status(args.session, root)
    if args.json:
        print_json({"schema": STATUS_SCHEMA, "session": session_json(status)})
    else:
        print_table(status, sys.stdout)
    return code
