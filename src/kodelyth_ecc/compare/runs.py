"""The two runs compared: a bundle file, or a session exported in memory; and the run a
replay was made from."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from kodelyth_ecc.bundle import Bundle, read_bundle_file
from kodelyth_ecc.bundleformat import DEFAULT_MAX_BUNDLE_BYTES, check_name
from kodelyth_ecc.errors import KodelythError, UsageError
from kodelyth_ecc.statusfile import LOST


@dataclass(frozen=True)
class Run:
    """A bundle and where it came from."""

    bundle: Bundle
    source: str  # the path as given, or the session name
    kind: str  # "bundle" or "session"
    sha256: str | None = None
    lost: frozenset[str] = frozenset()  # live session: workers whose pane died


RootGetter = Callable[[], str]


def is_bundle_path(spec: str) -> bool:
    return spec.endswith(".json") or os.sep in spec or "/" in spec or os.path.isfile(spec)


def _root(coordination_root: str | RootGetter | None) -> str | None:
    return coordination_root() if callable(coordination_root) else coordination_root


def load_run(
    spec: str,
    coordination_root: str | RootGetter | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_BUNDLE_BYTES,
) -> Run:
    """A bundle file (validated exactly as import does) or a session name, exported in
    memory from the coordination root (asked for only then)."""
    if is_bundle_path(spec):
        bundle, digest = read_bundle_file(spec, max_bytes=max_bytes)
        return Run(bundle, spec, "bundle", digest)
    root = _root(coordination_root)
    if root is None:
        raise UsageError(
            f"{spec!r} is not a bundle file (*.json): give a bundle path, or a session "
            "name together with --coord-root"
        )
    from kodelyth_ecc.export import export_bundle

    bundle = export_bundle(spec, root)
    return Run(bundle, spec, "session", None, _lost_workers(spec, root))


def _lost_workers(session: str, root: str) -> frozenset[str]:
    """Workers of a live session whose pane died before they recorded an outcome."""
    from kodelyth_ecc.status import collect_status

    try:
        status = collect_status(session, root)
    except KodelythError:
        return frozenset()
    return frozenset(w.slug for w in status.workers if w.state == LOST)


def find_origin(
    replay: Run,
    coordination_root: str | RootGetter | None = None,
    *,
    origin: str | None = None,
    max_bytes: int = DEFAULT_MAX_BUNDLE_BYTES,
) -> tuple[Run, list[str]]:
    """The run a replay was made from: ``origin`` when given; else the session named by
    its ``meta.replay_of``, as ``<origin>.bundle.json`` beside the replay's bundle or in
    the coordination root, or as the live session ``<coord-root>/<origin>/``.
    Returns the run and notes for the reader."""
    if origin is not None:
        return load_run(origin, coordination_root, max_bytes=max_bytes), []
    replay_of = replay.bundle.meta.get("replay_of") or {}
    name = replay_of.get("session")
    if not isinstance(name, str) or not name:
        raise UsageError(
            f"{replay.source} is not a replay (it has no meta.replay_of.session): give two "
            "runs to compare (compare A B), or the origin with --origin PATH"
        )
    check_name(name, "meta.replay_of.session", replay.source)
    candidates: list[tuple[str, str]] = []
    if replay.kind == "bundle":
        beside = os.path.dirname(os.path.abspath(replay.source))
        candidates.append(("bundle", os.path.join(beside, f"{name}.bundle.json")))
    root: str | None = None
    try:
        root = _root(coordination_root)
    except KodelythError:
        root = None  # outside a repository and no --coord-root: only the file beside it
    if root is not None:
        candidates.append(("bundle", os.path.join(root, f"{name}.bundle.json")))
        candidates.append(("session", os.path.join(root, name)))
    notes: list[str] = []
    for kind, path in candidates:
        if kind == "bundle" and os.path.isfile(path):
            run = load_run(path, max_bytes=max_bytes)
            recorded = replay_of.get("bundle_sha256")
            if isinstance(recorded, str) and recorded and recorded != run.sha256:
                notes.append(
                    f"the origin bundle found differs from the one the replay was made from "
                    f"(sha256 {run.sha256 or '?'} vs recorded {recorded}): it was exported "
                    "again or changed since"
                )
            return run, notes
        if kind == "session" and os.path.isdir(path):
            assert root is not None
            return load_run(name, root, max_bytes=max_bytes), notes
    looked = ", ".join(path for _, path in candidates) or "nowhere (no coordination root)"
    raise KodelythError(
        f"the origin {name!r} of {replay.source} was not found (looked in: {looked}): "
        "pass it with --origin PATH, or --coord-root"
    )
