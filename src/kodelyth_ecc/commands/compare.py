"""``kodelyth-ecc compare``: two runs side by side, many runs arm by arm, and the
regression gate for CI.

The arguments choose the mode: ``--vs`` compares many runs (the RUNs before it one arm,
after it the other); a directory holding ``experiment.json`` (one, or two) an experiment's
arms; otherwise two runs, or one replay and its origin, as always."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

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


@dataclass(frozen=True)
class _Views:
    """How to render one comparison, two-run or many-run, in each output."""

    html: Callable[[], str]
    html_what: str  # "3 workers", said after writing the HTML
    json: Callable[[], bytes]
    markdown: Callable[[], str]
    terminal: Callable[[], str]
    gate: Callable[[], list[str]]
    gate_exit: int | None  # None: no gate


def _emit(args: argparse.Namespace, views: _Views) -> int:
    """The HTML file if asked, the chosen output on stdout, the gate's lines on stderr;
    returns the exit code."""
    if args.html is not None:
        _write(args.html, views.html())
        sys.stderr.write(f"wrote {args.html} ({views.html_what})\n")
    if args.json:
        sys.stdout.flush()
        sys.stdout.buffer.write(views.json())
        sys.stdout.flush()
    elif args.markdown:
        sys.stdout.write(views.markdown())
    else:
        sys.stdout.write(views.terminal())
    if views.gate_exit is None:
        return 0
    sys.stdout.flush()
    sys.stderr.write("\n".join(views.gate()) + "\n")
    return views.gate_exit


def _write(path: str, text: str) -> None:
    from kodelyth_ecc.fsutil import atomic_write_text

    with writing(path):
        atomic_write_text(path, text)


# Flags of the two-run form only, refused with many runs (what they would mean there).
_TWO_RUN_ONLY = (
    ("blind", "--blind", "a blind review is of two runs"),
    ("blind_key", "--blind-key", "a blind review is of two runs"),
    ("full", "--full", "compare two of the runs for their diffs"),
    ("patch", "--patch", "compare two of the runs for their patches"),
    ("origin", "--origin", "it names the origin of one replay"),
)


def _mode(args: argparse.Namespace) -> str:
    """ "two" (A B, or one replay), "runs" (--vs), "experiment" (DIR) or "experiments"
    (DIR_A DIR_B)."""
    from kodelyth_ecc.compare import is_experiment_dir

    specs = [*args.runs, *(args.vs or [])]
    dirs = [spec for spec in specs if is_experiment_dir(spec)]
    if args.vs is not None:
        if dirs:
            raise UsageError(
                f"{dirs[0]} is an experiment directory: compare DIR, or DIR_A DIR_B, without "
                "--vs (--vs takes bundle files or session names)"
            )
        return "runs"
    if dirs:
        if len(dirs) != len(specs) or len(specs) > 2:
            raise UsageError(
                "give one experiment directory (compare DIR) or two (compare DIR_A DIR_B), "
                "with no other run"
            )
        return "experiment" if len(specs) == 1 else "experiments"
    if len(specs) > 2:
        raise UsageError(
            f"{len(specs)} runs given: compare two (A B), or many as two arms "
            "(compare A1 A2 ... --vs B1 B2 ...)"
        )
    return "two"


def _inputs(paths: Sequence[str]) -> list[str]:
    return [p for p in paths if os.path.isfile(p)]


def _run_many(args: argparse.Namespace, mode: str) -> int:
    from kodelyth_ecc.compare import (
        MANY_DEFAULT_RULES,
        MANY_RULES,
        ManyOptions,
        compare_arms,
        experiment_arms,
        experiment_skipped,
        load_experiment,
        load_run,
        match_experiments,
        parse_rules,
        runs_arms,
    )

    for name, flag, why in _TWO_RUN_ONLY:
        if getattr(args, name):
            raise UsageError(f"{flag} is for two runs only ({why}): leave it out with many runs")
    if args.fail_on is not None and not args.baseline:
        raise UsageError("--fail-on only applies with --baseline (the first arm is the baseline)")
    rules = parse_rules(args.fail_on, MANY_RULES, MANY_DEFAULT_RULES)
    if args.html is not None:
        check_output_file(args.html, "--html", _inputs([*args.runs, *(args.vs or [])]))
    pairs = None
    notes: list[str] = []
    skipped = []
    if mode == "runs":
        found: list[str] = []

        def root() -> str:
            if not found:
                found.append(coordination_root(args.coordination_root))
            return found[0]

        side_a = [load_run(s, root, max_bytes=args.max_bundle_size) for s in args.runs]
        side_b = [load_run(s, root, max_bytes=args.max_bundle_size) for s in args.vs]
        arms = runs_arms(side_a, side_b)
    else:
        experiments = [load_experiment(d, max_bytes=args.max_bundle_size) for d in args.runs]
        for experiment in experiments:
            skipped += experiment_skipped(experiment)
            notes += experiment.notes
        if mode == "experiment":
            arms = experiment_arms(experiments[0])
        else:
            arms, matched, match_notes = match_experiments(*experiments)
            pairs = matched
            notes += match_notes
    if args.html is not None:
        sources = [r.run.source for arm in arms for r in arm.runs if r.run.kind == "bundle"]
        sources += [os.path.join(d, "experiment.json") for d in args.runs if mode != "runs"]
        check_output_file(args.html, "--html", sources)
    options = ManyOptions(worker=args.worker, baseline=args.baseline, rules=rules, pairs=pairs)
    comparison = compare_arms(arms, options, mode=mode, skipped=skipped, notes=notes)
    from kodelyth_ecc.compare import many_to_json_bytes
    from kodelyth_ecc.compare.render_many import (
        many_gate_lines,
        render_many_markdown,
        render_many_terminal,
    )
    from kodelyth_ecc.humanize import plural

    def html() -> str:
        # Only with --html: the report's module is the largest of the views.
        from kodelyth_ecc.compare.html_many import render_many_html

        return render_many_html(comparison)

    return _emit(
        args,
        _Views(
            html=html,
            html_what=plural(len(comparison.arms), "arm"),
            json=lambda: many_to_json_bytes(comparison),
            markdown=lambda: render_many_markdown(comparison),
            terminal=lambda: render_many_terminal(comparison),
            gate=lambda: many_gate_lines(comparison),
            gate_exit=None if comparison.gate is None else comparison.gate.exit_code,
        ),
    )


def run(args: argparse.Namespace) -> int:
    mode = _mode(args)
    if mode != "two":
        return _run_many(args, mode)
    args.a = args.runs[0]
    args.b = args.runs[1] if len(args.runs) > 1 else None
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
    from kodelyth_ecc.compare import to_json_bytes
    from kodelyth_ecc.compare_render import gate_lines, render_markdown, render_terminal
    from kodelyth_ecc.humanize import plural

    def html() -> str:
        # Only with --html, as before the many-run views: 6.5 ms of every start-up.
        from kodelyth_ecc.compare_html import render_html

        return render_html(comparison)

    return _emit(
        args,
        _Views(
            html=html,
            html_what=plural(comparison.summary.workers, "worker"),
            json=lambda: to_json_bytes(comparison),
            markdown=lambda: render_markdown(comparison, diffs=args.full, patches=args.patch),
            terminal=lambda: render_terminal(
                comparison, colour=_colour_wanted(), diffs=args.full, patches=args.patch
            ),
            gate=lambda: gate_lines(comparison),
            gate_exit=None if comparison.gate is None else comparison.gate.exit_code,
        ),
    )
