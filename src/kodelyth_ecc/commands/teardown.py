"""``kodelyth-ecc teardown``: stop a session without losing its work."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict

from kodelyth_ecc import gitrepo
from kodelyth_ecc.commands._common import coordination_root, print_json
from kodelyth_ecc.teardown import teardown
from kodelyth_ecc.termsafe import visible_controls


def run(args: argparse.Namespace) -> int:
    root = coordination_root(args.coordination_root)
    try:
        repo: str | None = gitrepo.repo_root()
    except gitrepo.NotInWorkTree:
        repo = None  # fine while session.json names the repository
    result = teardown(args.session, root, repo_root=repo, force=args.force, purge=args.purge)
    if args.json:
        print_json({"schema": "kodelyth.teardown/v1", **asdict(result)})
        return 0
    out = sys.stdout
    for applied in result.applied:
        out.write(
            f"work of {applied['worker']} is saved: applied to "
            f"{visible_controls(applied['target'])} as {applied['result'][:12]}\n"
        )
    for patch in result.saved_patches:
        out.write(f"saved unsaved work to {patch}\n")
    for copies in result.saved_ignored:
        out.write(f"saved copies of ignored files to {copies}\n")
    if result.killed_tmux:
        out.write(f"killed tmux session {result.session}\n")
    for path in result.removed_worktrees:
        out.write(f"removed worktree {path}\n")
    for branch in result.deleted_branches:
        out.write(f"deleted branch {branch}\n")
    for ref in result.deleted_refs:
        out.write(f"deleted ref {ref}\n")
    for name in result.left_alone:
        # Names read from the session's files: shown, never interpreted by the terminal.
        out.write(f"left {visible_controls(name)} alone: not one of this session's names\n")
    if result.purged:
        out.write(f"removed {result.purged}\n")
    if not (
        result.killed_tmux or result.removed_worktrees or result.deleted_branches or result.purged
    ):
        out.write(f"nothing to tear down for {result.session}\n")
    return 0
