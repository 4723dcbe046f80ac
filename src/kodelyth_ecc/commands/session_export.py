"""``kodelyth-ecc session-export``: a session as one portable JSON bundle."""

from __future__ import annotations

import argparse
import os
import sys

from kodelyth_ecc.bundle import encode_bundle, write_bundle
from kodelyth_ecc.commands._common import coordination_root
from kodelyth_ecc.errors import UsageError
from kodelyth_ecc.export import export_bundle
from kodelyth_ecc.launchers import get_harness
from kodelyth_ecc.naming import validate_worker_name


def run(args: argparse.Namespace) -> int:
    root = coordination_root(args.coordination_root)
    agents = None
    if args.agents is not None:
        agents = [validate_worker_name(a.strip()) for a in args.agents.split(",")]
    if args.harness is not None:
        get_harness(args.harness)
    if args.task is not None and not args.task.strip():
        raise UsageError('empty --task: give the task text, e.g. --task "audit auth"')
    bundle = export_bundle(
        args.session,
        root,
        task=args.task.strip() if args.task else None,
        agents=agents,
        harness=args.harness,
        base_ref=args.base_ref,
    )
    if args.out == "-":
        sys.stdout.buffer.write(encode_bundle(bundle))
        return 0
    out = args.out or os.path.join(root, f"{bundle.session}.bundle.json")
    if os.path.isdir(out):
        raise UsageError(f"--out {out} is a directory: name a file, e.g. {out}/session.bundle.json")
    write_bundle(bundle, out)
    sys.stdout.write(f"wrote {out} ({len(bundle.workers)} workers)\n")
    return 0
