"""Helpers shared by subcommands: where sessions live, JSON output."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

# Re-exported: commands have always taken these from here; the library (reports)
# uses kodelyth_ecc.humanize directly.
from kodelyth_ecc.humanize import human_bytes, human_duration

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from kodelyth_ecc.sandbox import SandboxPolicy

JSON_SCHEMA_PREFIX = "kodelyth"

__all__ = [
    "JSON_SCHEMA_PREFIX",
    "coordination_root",
    "human_bytes",
    "human_duration",
    "print_json",
]


def coordination_root(explicit: str | None) -> str:
    if explicit:
        return os.path.abspath(explicit)
    from kodelyth_ecc import gitrepo  # not needed (nor its subprocess) with --coord-root

    return os.path.join(gitrepo.repo_root(), ".orchestration")


def print_json(data: Any) -> None:
    """``data`` as JSON on stdout. Characters JSON leaves raw (it escapes only
    U+0000-U+001F) that would still drive or deceive a terminal (DEL, C1 controls,
    U+009B is CSI, zero-width and bidi marks) are written as ``\\uXXXX``: the same JSON
    value, safe to show."""
    import json

    from kodelyth_ecc.termsafe import json_safe

    text = json_safe(json.dumps(data, indent=2, ensure_ascii=False))
    sys.stdout.write(text + "\n")


@contextlib.contextmanager
def writing(path: str) -> Iterator[None]:
    """An OSError while writing ``path`` (atomically: the temporary file is gone)
    as one line naming the file the user asked for."""
    from kodelyth_ecc.errors import KodelythError

    try:
        yield
    except OSError as exc:
        raise KodelythError(
            f"cannot write {path}: {exc.strerror or exc}; nothing was written"
        ) from None


def sandbox_policy(args: Any, *, on: bool, reason: str) -> SandboxPolicy | None:
    """The sandbox the command line asks for (None: none), its --sandbox-allow-host
    entries checked and its --sandbox-allow-path entries made absolute."""
    from kodelyth_ecc.errors import UsageError

    hosts, paths = args.sandbox_allow_host, args.sandbox_allow_path
    if not on:
        if hosts or paths:
            raise UsageError(
                "--sandbox-allow-host and --sandbox-allow-path only apply to sandboxed "
                "workers: add --sandbox"
            )
        return None
    from kodelyth_ecc.egress import check_allow_host
    from kodelyth_ecc.sandbox import SandboxPolicy

    checked = []
    for entry in hosts:
        try:
            checked.append(check_allow_host(entry))
        except ValueError as exc:
            raise UsageError(f"--sandbox-allow-host {entry!r}: {exc}") from None
    found = []
    for path in paths:
        if not os.path.exists(path):
            raise UsageError(f"--sandbox-allow-path {path!r} does not exist: check the path")
        found.append(os.path.abspath(path))
    return SandboxPolicy(tuple(dict.fromkeys(checked)), tuple(dict.fromkeys(found)), reason)


def worker_of(status: Any, slug: str) -> Any:
    """The ``WorkerStatus`` of ``slug`` in a ``SessionStatus``, or the error listing the
    session's workers."""
    from kodelyth_ecc.sessiondir import unknown_worker

    for worker in status.workers:
        if worker.slug == slug:
            return worker
    raise unknown_worker(status.session, slug, [w.slug for w in status.workers])


def tool_command() -> str:
    """This tool as a command to paste anywhere: ``kodelyth-ecc`` when that is on PATH,
    else the program's own absolute path (``.venv/bin/kodelyth-ecc`` after the README's
    first line: a hint printed after a ``cd`` must still find it), else
    ``python -m kodelyth_ecc`` with this Python."""
    import shlex
    import shutil

    if shutil.which("kodelyth-ecc"):
        return "kodelyth-ecc"
    program = sys.argv[0] if sys.argv else ""
    if os.path.basename(program) == "kodelyth-ecc" and os.path.isfile(program):
        return shlex.quote(os.path.abspath(program))
    return f"{shlex.quote(sys.executable)} -m kodelyth_ecc"
