"""``kodelyth-ecc apply``: bring one worker's work into your branch."""

from __future__ import annotations

import argparse
import sys

from kodelyth_ecc.apply import ApplyResult, apply_worker, few_paths
from kodelyth_ecc.commands._common import coordination_root
from kodelyth_ecc.errors import EXIT_FAILURE, EXIT_INTERRUPTED, UsageError
from kodelyth_ecc.termsafe import one_line


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _how(result: ApplyResult) -> str:
    if result.mode == "squash":
        return "squash"
    return f"{result.mode} of {_plural(result.commits, 'commit')}"


def run(args: argparse.Namespace) -> int:
    if args.message is not None and not args.message.strip():
        raise UsageError('empty --message: give the commit message, e.g. -m "Add the parser"')
    try:
        root = coordination_root(args.coordination_root)
        result = apply_worker(
            args.session,
            root,
            args.worker,
            onto=args.onto,
            mode=args.mode or "squash",
            message=args.message,
        )
    except KeyboardInterrupt:
        # Raised only where the target is as it was (a git stopped half way is undone).
        sys.stderr.write(
            "kodelyth-ecc: interrupted: nothing was applied (your branches and checkout are "
            "as they were)\n"
        )
        return EXIT_INTERRUPTED
    target = one_line(result.target, 80)
    if result.conflicts:
        return _conflicts(result, target)
    out = sys.stdout
    assert result.result is not None
    if result.already:
        out.write(
            f"worker {result.worker}'s work is already in {target} "
            f"({result.result[:12]}): nothing new to apply\n"
        )
    else:
        changed = (
            ""
            if result.files_changed is None
            else f", {_plural(result.files_changed, 'file')} changed"
        )
        out.write(
            f"applied worker {result.worker} to {target} as {result.result[:12]} "
            f"({_how(result)}{changed})\n"
        )
    if result.recorded:
        out.write(
            f"teardown now counts worker {result.worker}'s commits and edits as saved "
            "(until they change)\n"
        )
    elif result.unrecorded:
        out.write(
            f"note: not recorded for teardown ({one_line(result.unrecorded, 200)}): teardown "
            "will still refuse it; apply again to record it\n"
        )
    else:
        out.write(
            f"note: git could not confirm the result holds all of worker {result.worker}'s "
            "work (it changed meanwhile, or git is older than 2.38): teardown will still "
            "refuse it\n"
        )
    if result.message_unused:
        out.write("note: --message was not used: the worker had no uncommitted edits\n")
    if result.ignored:
        out.write(
            f"not carried: {_plural(len(result.ignored), 'git-ignored file')} "
            f"({few_paths(result.ignored)}); teardown still refuses them without --force\n"
        )
    if result.edited_seeds:
        out.write(
            f"not carried: {_plural(len(result.edited_seeds), 'edited seed file')} "
            f"({few_paths(result.edited_seeds)}); teardown still refuses them without --force\n"
        )
    if result.interrupted:
        out.flush()
        sys.stderr.write(
            "kodelyth-ecc: interrupted once git had changed the branch: the apply was finished "
            "first, as said above\n"
        )
        return EXIT_INTERRUPTED
    return 0


def _conflicts(result: ApplyResult, target: str) -> int:
    err = sys.stderr
    where = result.checkout
    if where is None:
        err.write(
            f"kodelyth-ecc: error: applying worker {result.worker} to {target} ({result.mode}) "
            f"conflicts in {_plural(len(result.conflicts), 'file')}; {target} is not checked "
            f"out, so nothing was changed: check it out (`git switch {target}`) and run apply "
            "again to resolve them there\n"
        )
        for path in result.conflicts:
            err.write(f"  conflict: {one_line(path)}\n")
        return EXIT_FAILURE
    err.write(
        f"kodelyth-ecc: error: applying worker {result.worker} to {target} ({result.mode}) "
        f"stopped on conflicts in {where}:\n"
    )
    for path in result.conflicts:
        err.write(f"  conflict: {one_line(path)}\n")
    err.write(f"resolve them, then finish: {result.finish}\n")
    err.write(f"or abort (puts {target} back exactly as it was): {result.abort}\n")
    if result.mode == "merge":
        after = (
            f"once the merge is committed, `kodelyth-ecc apply {result.session} "
            f"{result.worker} --merge` records the work as saved for teardown"
        )
    else:
        after = (
            "teardown cannot confirm a resolved squash or cherry-pick: once finished, "
            "`teardown --force` still saves the worker's patch first"
        )
    err.write(f"the worker's worktree and branch are untouched; {after}\n")
    return EXIT_FAILURE
