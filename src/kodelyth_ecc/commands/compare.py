"""``kodelyth-ecc compare``: two runs side by side, and the regression gate for CI."""

from __future__ import annotations

import argparse
import os
import sys

from kodelyth_ecc.commands._common import coordination_root, writing
from kodelyth_ecc.errors import KodelythError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


def _colour_wanted() -> bool:
    """ANSI colour only for a terminal that wants it (https://no-color.org)."""
    return (
        sys.stdout.isatty()
        and not os.environ.get("NO_COLOR")
        and os.environ.get("TERM", "") != "dumb"
    )


def same_file(first: str, second: str) -> bool:
    """Whether two paths name one file: the same real path, or (hard links) the same
    inode. A path that does not exist yet is the same only by its real path."""
    if os.path.realpath(first) == os.path.realpath(second):
        return True
    try:
        return os.path.samefile(first, second)
    except (OSError, ValueError):
        return False


def check_output_file(path: str, flag: str, inputs: Sequence[str] = ()) -> None:
    """Checked before the work, so a typo does not cost the whole run and an output
    never overwrites an input: ``path``'s directory exists and is writable, ``path`` is
    not a directory and not one of ``inputs``."""
    if not path.strip():
        raise UsageError(f"empty {flag}: name a file")
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path} is a directory: name a file in it")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"{flag} {path}: directory {parent} does not exist; create it first")
    for source in inputs:
        if same_file(path, source):
            raise UsageError(
                f"{flag} {path} is the input {source}: writing it would overwrite the input; "
                "name another file"
            )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise KodelythError(
            f"{flag} {path}: directory {parent} is not writable; name a file elsewhere"
        )


def _blind_key_path(args: argparse.Namespace) -> str:
    if args.blind_key:
        return str(args.blind_key)
    if args.html:
        return str(os.path.splitext(args.html)[0]) + ".blind-key.json"
    return os.path.abspath(f"compare-blind-key-{os.urandom(4).hex()}.json")


def _outputs(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(flag, path) of the files compare writes: --html and the blind key. The key's
    default path (beside the --html file, or a fresh name) is included."""
    outputs: list[tuple[str, str]] = []
    if args.html is not None:
        outputs.append(("--html", args.html))
    if args.blind_key is not None:
        outputs.append(("--blind-key", args.blind_key))
    elif args.blind and args.html is not None and args.html.strip():
        outputs.append(("the blind key file", _blind_key_path(args)))
    return outputs


def _write(path: str, text: str) -> None:
    from kodelyth_ecc.fsutil import atomic_write_text

    with writing(path):
        atomic_write_text(path, text)


def run(args: argparse.Namespace) -> int:
    from kodelyth_ecc.compare import (
        CompareOptions,
        blind_order,
        compare_runs,
        find_origin,
        load_run,
        parse_rules,
    )

    if args.fail_on is not None and not args.baseline:
        raise UsageError("--fail-on only applies with --baseline A B (A is the baseline)")
    rules = parse_rules(args.fail_on)
    if args.blind and args.baseline:
        raise UsageError("--blind and --baseline do not mix: a gate needs to know its baseline")
    if args.blind_key is not None and not args.blind:
        raise UsageError("--blind-key only applies with --blind")
    if args.origin is not None and args.b is not None:
        raise UsageError("--origin is for the one-run form: compare REPLAY --origin ORIGIN")
    # Every input named on the command line that is a file; the origin found beside a
    # replay is checked again once known, still before anything is written.
    inputs = [p for p in (args.a, args.b, args.origin) if p is not None and os.path.isfile(p)]
    outputs = _outputs(args)
    for flag, path in outputs:
        check_output_file(path, flag, inputs)
    if len(outputs) == 2 and same_file(outputs[0][1], outputs[1][1]):
        raise UsageError(
            f"{outputs[1][0]} {outputs[1][1]} is the --html file: name two different files"
        )

    found: list[str] = []

    def root() -> str:
        # Resolved only when a side is a session name (needs git without --coord-root).
        if not found:
            found.append(coordination_root(args.coordination_root))
        return found[0]

    first = load_run(args.a, root, max_bytes=args.max_bundle_size)
    notes: list[str] = []
    if args.b is None:
        origin, notes = find_origin(first, root, origin=args.origin, max_bytes=args.max_bundle_size)
        side_a, side_b = origin, first
    else:
        side_a, side_b = first, load_run(args.b, root, max_bytes=args.max_bundle_size)
    for flag, path in outputs:
        check_output_file(
            path, flag, [run.source for run in (side_a, side_b) if run.kind == "bundle"]
        )
    key = None
    if args.blind:
        side_a, side_b, key = blind_order(side_a, side_b)
    options = CompareOptions(
        full=args.full or args.html is not None,
        patches=args.patch or args.html is not None,
        worker=args.worker,
        blind=args.blind,
        baseline=args.baseline,
        rules=rules,
    )
    comparison = compare_runs(side_a, side_b, options=options, notes=notes)

    if key is not None:
        import json

        path = _blind_key_path(args)
        _write(path, json.dumps(key, indent=2, ensure_ascii=False) + "\n")
        # The path only: the key itself stays out of every output a reviewer reads.
        sys.stderr.write(f"blind key written to {path} (open it after reviewing)\n")
    if args.html is not None:
        from kodelyth_ecc.compare_html import render_html

        _write(args.html, render_html(comparison))
        from kodelyth_ecc.humanize import plural

        sys.stderr.write(f"wrote {args.html} ({plural(comparison.summary.workers, 'worker')})\n")

    if args.json:
        from kodelyth_ecc.compare import to_json_bytes

        sys.stdout.flush()
        sys.stdout.buffer.write(to_json_bytes(comparison))
        sys.stdout.flush()
    elif args.markdown:
        from kodelyth_ecc.compare_render import render_markdown

        sys.stdout.write(render_markdown(comparison, diffs=args.full, patches=args.patch))
    else:
        from kodelyth_ecc.compare_render import render_terminal

        sys.stdout.write(
            render_terminal(
                comparison, colour=_colour_wanted(), diffs=args.full, patches=args.patch
            )
        )
    if comparison.gate is None:
        return 0
    from kodelyth_ecc.compare_render import gate_lines

    sys.stdout.flush()
    sys.stderr.write("\n".join(gate_lines(comparison)) + "\n")
    return comparison.gate.exit_code
