"""``kodelyth-ecc session-export``: a session as one portable JSON bundle."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from kodelyth_ecc.commands._common import coordination_root, writing
from kodelyth_ecc.errors import UsageError
from kodelyth_ecc.export import export_to_stream
from kodelyth_ecc.launchers import shell_quote
from kodelyth_ecc.naming import validate_worker_name


def run(args: argparse.Namespace) -> int:
    root = coordination_root(args.coordination_root)
    agents = None
    if args.agents is not None:
        agents = [validate_worker_name(a.strip()) for a in args.agents.split(",")]
    if args.harness is not None:
        from kodelyth_ecc.harnesses import get_harness

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
        "include_exchanges": not args.no_exchanges,
    }
    _warn_if_running(args.session, root)
    if args.sanitize:
        return _export_sanitized(args, root, options, out)
    if args.redact_paths or args.allow or args.allow_file:
        raise UsageError("--redact-paths, --allow and --allow-file go with --sanitize: add it")
    if args.out == "-":
        export_to_stream(args.session, root, sys.stdout.buffer, **options)
        sys.stdout.flush()
        return 0
    out = out or os.path.join(root, f"{args.session}.bundle.json")
    with writing(out):
        count = export_to_stream(args.session, root, out, **options)
    sys.stdout.write(f"wrote {out} ({count} workers)\n")
    _hint_if_secrets(out)
    return 0


def _warn_if_running(session: str, root: str) -> None:
    """A bundle of a session still at work holds its work so far: say so."""
    from kodelyth_ecc.errors import KodelythError
    from kodelyth_ecc.status import collect_status

    try:
        status = collect_status(session, root)
    except KodelythError:
        return  # no such session (or name): the export says so, in its own words
    running = [w.slug for w in status.workers if w.state in ("pending", "running") and w.pane_alive]
    if running:
        sys.stderr.write(
            f"warning: {', '.join(running)} {'is' if len(running) == 1 else 'are'} still "
            f"running: the bundle holds their work so far (wait with `kodelyth-ecc status "
            f"{session} --wait`, then export again)\n"
        )


# Bundles larger than this are not read back for the hint (the export itself streams).
HINT_SCAN_BYTES = 64 * 1024 * 1024


def _hint_if_secrets(path: str) -> None:
    """What looks like a secret in the bundle just written (fingerprints in the repo's
    .kodelyth-allow aside): the hint to check it before sharing. Never the secret."""
    from kodelyth_ecc.commands.sanitize import allow_list
    from kodelyth_ecc.sanitize import secret_fingerprints

    if os.path.getsize(path) > HINT_SCAN_BYTES:
        return
    with open(path, "rb") as fh:
        found = set(secret_fingerprints(fh.read())) - set(allow_list([], []))
    if found:
        count = len(found)
        sys.stderr.write(
            f"hint: the bundle holds {count} value{'' if count == 1 else 's'} that look"
            f"{'s' if count == 1 else ''} like a secret: run `kodelyth-ecc sanitize --check "
            f"{shell_quote(path)}` before sharing it (or export with --sanitize)\n"
        )


def _export_sanitized(
    args: argparse.Namespace, root: str, options: dict[str, Any], out: str | None
) -> int:
    """The bundle in memory, sanitized, then written atomically: the streamed path
    cannot redact (a secret may span what it writes piece by piece)."""
    from kodelyth_ecc.bundle import encode_bundle, write_bundle
    from kodelyth_ecc.commands.sanitize import allow_list, summary
    from kodelyth_ecc.coordination import read_session_record
    from kodelyth_ecc.export import export_bundle
    from kodelyth_ecc.sanitize import infer_path_roots, sanitize_bundle

    allow = allow_list(args.allow, args.allow_file)
    bundle = export_bundle(args.session, root, **options)
    roots = None
    if args.redact_paths:
        record = read_session_record(os.path.join(root, args.session))
        repos, trees = [], []
        if record is not None:
            repos.append(record.repo_root)
            trees.append(record.worktree_root)
            trees += [os.path.dirname(w.worktree) for w in record.workers if w.worktree]
        roots = infer_path_roots(bundle, repo=repos, worktrees=trees)
    cleaned, report = sanitize_bundle(
        bundle, allow=allow, redact_paths=args.redact_paths, roots=roots
    )
    if args.out == "-":
        sys.stdout.buffer.write(encode_bundle(cleaned))
        sys.stdout.flush()
        sys.stderr.write(f"sanitized: {summary(report)}\n")
        return 0
    out = out or os.path.join(root, f"{args.session}.bundle.json")
    with writing(out):
        write_bundle(cleaned, out)
    sys.stdout.write(f"wrote {out} ({len(cleaned.workers)} workers; {summary(report)})\n")
    return 0
