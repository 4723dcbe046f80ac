"""``kodelyth-ecc diff``: each worker's changes against the session's base commit."""

from __future__ import annotations

import argparse
import sys

from kodelyth_ecc.apply import WorkerDiff, worker_diffs
from kodelyth_ecc.commands._common import coordination_root
from kodelyth_ecc.termsafe import visible_controls


def _header(diff: WorkerDiff) -> str:
    where = "recorded diff" if diff.recorded else f"branch {diff.branch}"
    note = f": {diff.note}" if diff.note else ""
    return f"==> worker {diff.slug} ({where}){note} <==\n"


def run(args: argparse.Namespace) -> int:
    root = coordination_root(args.coordination_root)
    diffs = worker_diffs(args.session, root, args.worker, stat=args.stat)
    out = sys.stdout.buffer
    # A file or pipe gets git's bytes exactly (for `git apply`); a terminal never gets
    # a control character from what an agent or a bundle wrote, only its escape.
    terminal = sys.stdout.isatty()
    several = len(diffs) > 1
    for number, diff in enumerate(diffs):
        if several:
            out.write((("\n" if number else "") + _header(diff)).encode())
        elif diff.note:
            sys.stderr.write(f"worker {diff.slug}: {diff.note}\n")
        text = diff.text
        if terminal:
            text = visible_controls(text.decode("utf-8", errors="replace")).encode("utf-8")
        out.write(text)
        if text and not text.endswith(b"\n"):
            out.write(b"\n" if terminal or several else b"")
    out.flush()
    return 0
