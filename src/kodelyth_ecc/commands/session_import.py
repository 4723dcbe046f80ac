"""``kodelyth-ecc session-import``: restore a bundle as a coordination dir."""

from __future__ import annotations

import argparse
import os
import sys

from kodelyth_ecc.bundleformat import loosen_allocator
from kodelyth_ecc.commands._common import coordination_root
from kodelyth_ecc.errors import KodelythError
from kodelyth_ecc.importer import import_bundle
from kodelyth_ecc.rawbundle import read_raw_bundle


def run(args: argparse.Namespace) -> int:
    # Everything is validated before the first write, the target's name included.
    loosen_allocator()
    bundle = read_raw_bundle(args.bundle, max_bytes=args.max_bundle_size)
    new_root = None
    if args.target:
        target = os.path.abspath(args.target)
    else:
        root = coordination_root(args.coordination_root)
        target = os.path.join(root, bundle.session)
        new_root = None if os.path.lexists(root) else root
    try:
        result = import_bundle(bundle, target, overwrite=args.overwrite, source=args.bundle)
    except OSError as exc:
        # The staging dir is gone and any old target is back: say so, not a temp path.
        raise KodelythError(
            f"cannot import into {target}: {exc.strerror or exc}; nothing was changed"
        ) from None
    if new_root is not None:
        _ignore_in_repo(new_root)
    verb = "replaced" if result.replaced else "imported"
    sys.stdout.write(f"{verb} {result.session} ({result.workers} workers) into {result.target}\n")
    return 0


def _ignore_in_repo(root: str) -> None:
    """A coordination root this import created inside the repo stays out of
    ``git status``, as the one ``swarm`` creates does."""
    from kodelyth_ecc import gitrepo
    from kodelyth_ecc.fsutil import atomic_write_text

    try:
        repo = gitrepo.repo_root()
    except KodelythError:
        return
    if os.path.realpath(root).startswith(os.path.realpath(repo) + os.sep):
        atomic_write_text(os.path.join(root, ".gitignore"), "*\n")
