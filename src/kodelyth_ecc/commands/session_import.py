"""``kodelyth-ecc session-import``: restore a bundle as a coordination dir."""

from __future__ import annotations

import argparse
import os
import sys

from kodelyth_ecc.bundle import read_bundle
from kodelyth_ecc.commands._common import coordination_root
from kodelyth_ecc.importer import import_bundle


def run(args: argparse.Namespace) -> int:
    # Everything is validated before the first write, the target's name included.
    bundle = read_bundle(args.bundle, max_bytes=args.max_bundle_size)
    if args.target:
        target = os.path.abspath(args.target)
    else:
        target = os.path.join(coordination_root(args.coordination_root), bundle.session)
    result = import_bundle(bundle, target, overwrite=args.overwrite, source=args.bundle)
    verb = "replaced" if result.replaced else "imported"
    sys.stdout.write(f"{verb} {result.session} ({result.workers} workers) into {result.target}\n")
    return 0
