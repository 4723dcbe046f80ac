"""``kodelyth-ecc session-export``: a session as one portable JSON bundle."""

from __future__ import annotations

import argparse
import os
import sys

from kodelyth_ecc.commands._common import coordination_root
from kodelyth_ecc.errors import KodelythError, UsageError
from kodelyth_ecc.export import export_to_stream
from kodelyth_ecc.naming import validate_worker_name


def run(args: argparse.Namespace) -> int:
    root = coordination_root(args.coordination_root)
    agents = None
    if args.agents is not None:
        agents = [validate_worker_name(a.strip()) for a in args.agents.split(",")]
    if args.harness is not None:
        from kodelyth_ecc.launchers import get_harness

        get_harness(args.harness)
    if args.task is not None and not args.task.strip():
        raise UsageError('empty --task: give the task text, e.g. --task "audit auth"')
    if args.out is not None and not args.out.strip():
        raise UsageError("empty --out: name the bundle file, or - for stdout")
    out = None
    if args.out != "-" and args.out is not None:
        out = args.out
        # Checked before the (possibly slow) export: diffs of every worktree.
        if os.path.isdir(out):
            raise UsageError(
                f"--out {out} is a directory: name a file, e.g. {out}/session.bundle.json"
            )
        parent = os.path.dirname(os.path.abspath(out))
        if not os.path.isdir(parent):
            raise UsageError(f"--out {out}: directory {parent} does not exist; create it first")
    # Streamed one worker at a time (no msgspec, no whole-bundle buffer): the bytes are
    # those of encode_bundle(export_bundle(...)).
    options = {
        "task": args.task.strip() if args.task else None,
        "agents": agents,
        "harness": args.harness,
        "base_ref": args.base_ref,
    }
    if args.out == "-":
        export_to_stream(args.session, root, sys.stdout.buffer, **options)
        sys.stdout.flush()
        return 0
    out = out or os.path.join(root, f"{args.session}.bundle.json")
    try:
        count = export_to_stream(args.session, root, out, **options)
    except OSError as exc:
        # The temporary file is gone; name the file the user asked for.
        raise KodelythError(
            f"cannot write {out}: {exc.strerror or exc}; nothing was written"
        ) from None
    sys.stdout.write(f"wrote {out} ({count} workers)\n")
    return 0
