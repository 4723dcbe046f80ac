"""``kodelyth-ecc sanitize``: redact secrets from a bundle before it is shared.

Output never shows a secret: only where (location, line), which rule and the
fingerprint. The helpers here are shared with ``session-export --sanitize``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from kodelyth_ecc.commands._common import print_json, writing
from kodelyth_ecc.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from kodelyth_ecc.sanitize import Finding, SanitizeReport

# --check: something would be redacted. Apart from 0 (clean), 1 (error), 2 (usage).
EXIT_FOUND = 4


def default_output(path: str) -> str:
    """``x.bundle.json`` -> ``x.bundle.sanitized.json``, next to the input."""
    stem = path[: -len(".json")] if path.endswith(".json") else path
    return f"{stem}.sanitized.json"


def allow_list(allow: Sequence[str], allow_files: Sequence[str]) -> list[str]:
    """Fingerprints from ``--allow``, ``--allow-file`` and the repository's own
    ``.kodelyth-allow`` (when the command runs in a repository that has one)."""
    from kodelyth_ecc.sanitize import ALLOW_FILE, parse_fingerprint, read_allow_file

    found = [parse_fingerprint(value, "--allow") for value in allow]
    for path in allow_files:
        found += read_allow_file(path)
    repo_file = _repo_allow_file(ALLOW_FILE)
    if repo_file and all(os.path.abspath(p) != repo_file for p in allow_files):
        found += read_allow_file(repo_file)
    return found


def _repo_allow_file(name: str) -> str | None:
    """``name`` at the top of the git work tree holding the current directory."""
    here = os.path.abspath(os.getcwd())
    while True:
        if os.path.exists(os.path.join(here, ".git")):
            path = os.path.join(here, name)
            return path if os.path.isfile(path) else None
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def _line(finding: Finding) -> str:
    return f"  {finding.location}:{finding.line}  {finding.rule}  {finding.fingerprint}"


def summary(report: SanitizeReport) -> str:
    """One line: counts only."""
    distinct = len({f.fingerprint for f in report.findings})
    text = f"{len(report.findings)} secret(s) redacted ({distinct} distinct)"
    if report.allowed:
        text += f", {len(report.allowed)} allowed"
    if report.paths:
        replaced = [f"{k} {v}" for k, v in report.paths.items() if v]
        text += f", {sum(report.paths.values())} path(s) replaced"
        text += f" ({', '.join(replaced)})" if replaced else ""
    return text


def check_output(path: str, report: SanitizeReport) -> str:
    names = set(report.unredactable)
    lines = [_line(f) + ("  (a name: rename it)" if f in names else "") for f in report.findings]
    lines += [_line(f) + "  (allowed)" for f in report.allowed]
    if any(report.paths.values()):
        counts = ", ".join(f"{k} {v}" for k, v in report.paths.items() if v)
        lines.append(f"  paths to replace: {counts}")
    if report.clean:
        head = f"{path}: no secrets found"
        if report.allowed:
            head += f" ({len(report.allowed)} allowed)"
    else:
        distinct = len({f.fingerprint for f in report.findings})
        head = (
            f"{path}: {len(report.findings)} secret(s) found ({distinct} distinct): run "
            f"`kodelyth-ecc sanitize {path}` to redact them, or allow a false positive "
            "with --allow FINGERPRINT"
        )
    return "\n".join([head, *lines]) + "\n"


def _check_out(out: str, bundle: str, in_place: bool) -> None:
    if os.path.isdir(out):
        raise UsageError(f"--out {out} is a directory: name a file, e.g. {out}/bundle.json")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise UsageError(f"--out {out}: directory {parent} does not exist; create it first")
    same = os.path.abspath(out) == os.path.abspath(bundle)
    if not same and os.path.exists(out):
        try:
            same = os.path.samefile(out, bundle)
        except OSError:
            same = False
    if same and not in_place:
        raise UsageError(f"--out {out} is the input bundle: pass --in-place to overwrite it")


def run(args: argparse.Namespace) -> int:
    if args.check and (args.out is not None or args.in_place):
        raise UsageError("--check writes nothing: drop --out/--in-place, or drop --check")
    if args.in_place and args.out is not None:
        raise UsageError("--in-place writes the input bundle: drop --out, or drop --in-place")
    if args.out is not None and not args.out.strip():
        raise UsageError("empty --out: name the output file, or - for stdout")
    if args.json and args.out == "-":
        raise UsageError("--json and --out - both write stdout: write the bundle to a file")
    out = args.bundle if args.in_place else (args.out or default_output(args.bundle))
    if out != "-":
        _check_out(out, args.bundle, args.in_place)
    allow = allow_list(args.allow, args.allow_file)

    from kodelyth_ecc.bundle import encode_bundle, read_bundle_file, write_bundle
    from kodelyth_ecc.sanitize import sanitize_bundle, scan_bundle

    bundle, sha256 = read_bundle_file(args.bundle, max_bytes=args.max_bundle_size)
    if args.check:
        report = scan_bundle(bundle, allow=allow, redact_paths=args.redact_paths)
        if args.json:
            print_json({"bundle": args.bundle, "bundle_sha256": sha256, **report.to_json()})
        else:
            sys.stdout.write(check_output(args.bundle, report))
        return 0 if report.clean else EXIT_FOUND
    cleaned, report = sanitize_bundle(bundle, allow=allow, redact_paths=args.redact_paths)
    if out == "-":
        sys.stdout.buffer.write(encode_bundle(cleaned))
        sys.stdout.flush()
        sys.stderr.write(f"sanitized {args.bundle}: {summary(report)}\n")
        return 0
    with writing(out):
        write_bundle(cleaned, out)
    if args.json:
        print_json({"bundle": args.bundle, "bundle_sha256": sha256, "out": out, **report.to_json()})
    else:
        sys.stdout.write(f"wrote {out}: {summary(report)}\n")
    return 0
