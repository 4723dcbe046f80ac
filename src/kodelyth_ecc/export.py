"""``export_bundle``: a session's coordination dir (and its worktrees) as a bundle.

Meta comes from the session's ``session.json`` when there is one, and the
caller's overrides win. Directories written by the earlier JavaScript tool
(no ``session.json``, ``state: completed`` appended to status) export too.
Besides what each agent *said* (handoff, status), a bundle records what it
*did*: its diff against the base commit and its pane transcript, both capped.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from typing import Any, BinaryIO

from kodelyth_ecc import __version__
from kodelyth_ecc.bundleformat import (
    SCHEMA,
    BundleError,
    check_meta_shape,
    loosen_allocator,
    stream_to_file,
    valid_utf8,
    validate_meta,
    validate_names,
    write_stream,
)
from kodelyth_ecc.coordination import SessionRecord, read_session_record
from kodelyth_ecc.errors import KodelythError, UsageError
from kodelyth_ecc.sessiondir import (
    DIFF_FILE,
    DIFFSTAT_FILE,
    DIVERGENCE_FILE,
    EXCHANGES_FILE,
    MAX_STATUS_BYTES,
    MAX_TEXT_BYTES,
    RECORDING_FILE,
    SEAL_FILE,
    TRANSCRIPT_FILE,
    USAGE_FILE,
    VERIFY_FILE,
    WORKER_FIELDS,
    SessionDir,
    WorkerDir,
    session_name_problem,
    shown_name,
)
from kodelyth_ecc.statusfile import STATES, parse_status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from kodelyth_ecc.bundle import Bundle

MAX_DIFF_BYTES = 1024 * 1024
MAX_TRANSCRIPT_BYTES = 1024 * 1024
# What is read of a transcript's end before its control sequences are stripped: a pane
# full of escapes shrinks a lot, and the bundle keeps the last MAX_TRANSCRIPT_BYTES.
_TRANSCRIPT_READ_BYTES = 8 * MAX_TRANSCRIPT_BYTES

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), DCS/SOS/PM/APC (ESC P|X|^|_ ... ST),
# two- and three-byte escapes (ESC ( B, ESC =, ESC 7 ...), and C1 CSI.
_CONTROL_SEQ = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b[ -/]*[0-~]"
    r"|\x9b[0-?]*[ -/]*[@-~]"
)
_OTHER_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def strip_terminal_controls(text: str) -> str:
    """What a reader of the pane saw, as plain text: escape sequences removed,
    CRLF made LF, other control characters dropped (tabs and newlines stay)."""
    text = _CONTROL_SEQ.sub("", text).replace("\r\n", "\n")
    return _OTHER_CONTROLS.sub("", text)


def cap_text(text: str, limit: int, *, keep: str = "head") -> str:
    """At most ``limit`` bytes of UTF-8, the visible marker saying what was cut included,
    so capping a capped text changes nothing (an imported bundle re-exports as it was)."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text

    def marker(kept: int) -> str:
        omitted = len(data) - kept
        return f"\n[kodelyth-ecc: truncated, {omitted:,} of {len(data):,} bytes omitted]\n"

    kept = max(0, limit - len(marker(0).encode("utf-8")))  # the longest marker there can be
    if keep == "head":
        # A character cut in half is dropped whole (at most 3 bytes).
        head = data[:kept].decode("utf-8", errors="ignore")
        return head + marker(len(head.encode("utf-8")))
    tail = data[len(data) - kept :].decode("utf-8", errors="ignore")
    return marker(len(tail.encode("utf-8"))) + tail


def exported_at(now: float | None = None) -> str:
    """ISO-8601 UTC; ``SOURCE_DATE_EPOCH`` wins, for reproducible bundles."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if now is None and epoch and epoch.strip().isdigit():
        now = float(epoch)
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if now is None else now))


def session_meta(record: SessionRecord | None) -> dict[str, Any]:
    if record is None:
        return {}
    imported = record.extra.get("bundle_meta")
    if isinstance(imported, dict):
        return dict(imported)
    meta: dict[str, Any] = {}
    for key, value in (
        ("task", record.task),
        ("agents", list(record.agents) if record.agents else None),
        ("harness", record.harness),
        ("base_ref", record.base_ref),
        ("base_commit", record.base_commit),
        ("launcher", record.launcher or None),
        ("seed_paths", list(record.seed_paths) if record.seed_paths else None),
        ("created_at", record.created_at or None),
        ("tool", record.tool or None),
    ):
        if value is not None:
            meta[key] = value
    for key, value in record.extra.items():
        if key not in ("imported_from", "bundle_meta"):
            meta[key] = value
    # Made here (an imported session keeps its bundle's own, above): a replay elsewhere
    # knows it runs a stranger's bundle.
    from kodelyth_ecc.provenance import machine_id

    meta["machine"] = machine_id()
    return meta


def _worker_changes(worktree: str | None, base: str | None) -> tuple[str | None, str | None]:
    if not worktree or not base or not os.path.isdir(worktree):
        return None, None
    from kodelyth_ecc import gitrepo

    try:
        patch, stat = gitrepo.worktree_changes(worktree, base, stat=True)
    except KodelythError:
        return None, None  # not a worktree any more, or the base is gone: no diff to show
    return cap_text(patch, MAX_DIFF_BYTES), stat


def _check_session(session: str) -> None:
    """The one rule for session names, and nothing that would leave the root."""
    reason = session_name_problem(session)
    if reason is not None:
        raise UsageError(
            f"invalid session name {shown_name(session)}: it {reason}; "
            "`kodelyth-ecc status` lists the sessions"
        )


def _prepare(
    session: str,
    coordination_root: str,
    *,
    task: str | None,
    agents: Sequence[str] | None,
    harness: str | None,
    base_ref: str | None,
) -> tuple[dict[str, Any], list[tuple[str, WorkerDir]], SessionRecord | None]:
    """Checks, meta and the worker directories, before any file is read."""
    _check_session(session)
    sdir = SessionDir(coordination_root, session)
    coordination_dir = sdir.path
    if not sdir.exists():
        raise KodelythError(
            f"no session {session!r} under {coordination_root}: "
            "check the name (`kodelyth-ecc status` lists sessions) or pass --coord-root"
        )
    slugs = sdir.worker_slugs()
    if not slugs:
        raise KodelythError(
            f"session {session!r} has no worker directories in {coordination_dir}: "
            "a bundle needs at least one worker"
        )
    where = f"the export of {session!r}"
    validate_names(session, slugs, where)
    record = read_session_record(coordination_dir)
    meta = session_meta(record)
    for key, value in (("task", task), ("harness", harness), ("base_ref", base_ref)):
        if value is not None:
            meta[key] = value
    if agents is not None:
        meta["agents"] = list(agents)
    meta = {k: meta[k] for k in sorted(meta, key=_meta_order)}
    validate_meta(meta, where)
    header = {
        "schema": SCHEMA,
        "session": session,
        "exported_at": exported_at(),
        "exported_by": f"kodelyth-ecc@{__version__}",
        "meta": meta,
    }
    return header, [(slug, sdir.worker(slug)) for slug in slugs], record


def _changes(
    record: SessionRecord | None, slugs: Sequence[str], include: bool
) -> dict[str, tuple[str | None, str | None]]:
    """Each worker's diff and diffstat against the base commit, a few git calls at a time."""
    base = record.base_commit if record else None
    if not include or not base or record is None:
        return {}
    worktree_of = {w.slug: w.worktree for w in record.workers}
    with_worktrees = [(s, worktree_of[s]) for s in slugs if worktree_of.get(s)]
    if not with_worktrees:
        return {}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(4, len(with_worktrees))) as pool:
        results = pool.map(lambda item: _worker_changes(item[1], base), with_worktrees)
        return dict(zip((s for s, _ in with_worktrees), results, strict=True))


def _worker_fields(
    slug: str,
    worker: WorkerDir,
    changes: dict[str, tuple[str | None, str | None]],
    include_exchanges: bool = True,
) -> dict[str, Any]:
    """One worker as bundle fields; the big texts stay UTF-8 bytes (kept exactly).

    Every file is read through ``sessiondir``: a symlink (``handoff.md`` pointing at
    ``~/.ssh/id_ed25519``), a FIFO or a device is refused with an error naming it,
    and nothing is read past its cap."""
    texts: dict[str, bytes | None] = {}
    for field in WORKER_FIELDS:
        if field.kind != "text" or field.name in ("diff", "diffstat", "transcript"):
            continue
        assert field.file is not None
        texts[field.name] = valid_utf8(worker.read(field.file, MAX_TEXT_BYTES) or b"")
    # Kept whole in the bundle; only its head is a status a runner wrote.
    status_text = (texts["status"] or b"")[:MAX_STATUS_BYTES].decode("utf-8", errors="ignore")
    status = parse_status(status_text, slug)
    diff, diffstat = changes.get(slug, (None, None))
    if diff is None:
        diff = _read_text(worker, DIFF_FILE, MAX_DIFF_BYTES)
        diffstat = _read_text(worker, DIFFSTAT_FILE, MAX_DIFF_BYTES)
    raw = worker.read(TRANSCRIPT_FILE, _TRANSCRIPT_READ_BYTES, tail=True)
    transcript = None
    if raw is not None:
        text = raw.decode("utf-8", errors="replace")
        transcript = cap_text(strip_terminal_controls(text), MAX_TRANSCRIPT_BYTES, keep="tail")
    # An empty or missing status.md says nothing, not "pending".
    known_state = bool(status_text.strip()) and status.state in STATES
    return {
        **texts,
        "slug": slug,
        "state": status.state if known_state else None,
        "exit_code": status.exit_code,
        "started_at": status.started,
        "finished_at": status.finished,
        "duration_s": status.duration_s,
        "diff": None if diff is None else diff.encode("utf-8"),
        "diffstat": None if diffstat is None else diffstat.encode("utf-8"),
        "transcript": None if transcript is None else transcript.encode("utf-8"),
        "divergence": _read_object(worker, DIVERGENCE_FILE),
        "verify": _read_object(worker, VERIFY_FILE),
        **_recording_fields(
            worker,
            _read_object(worker, USAGE_FILE) or status.usage,
            include_exchanges,
            slug,
            (texts["task"] or b"").decode("utf-8"),
        ),
    }


def _recording_fields(
    worker: WorkerDir, usage: dict[str, Any] | None, include: bool, slug: str, task: str
) -> dict[str, Any]:
    """The worker's recorded exchanges, the recording's context and seal, and its usage
    cross-checked against what the provider reported to the proxy: filled from it when
    the CLI reported none (a custom launcher), kept beside it as ``usage.recorded``."""
    from kodelyth_ecc import exchanges as ex

    data = worker.read(EXCHANGES_FILE, ex.MAX_RECORDING_BYTES) if include else None
    if not data:
        return {"usage": usage, "exchanges": None, "recording": None}
    recording = _read_object(worker, RECORDING_FILE) or {}
    sealed = None
    if recording and "seal" not in recording:
        seal_text = worker.read(SEAL_FILE, 1024)
        sealed = ex.file_sealed_here(
            data, seal_text.decode("ascii", "replace") if seal_text else None
        )
    # What the seal covers (a worker's proxy may be appending as we read).
    recorded = ex.parse_lines(data if sealed is None else data[:sealed])
    if sealed is not None:
        recording["seal"] = ex.seal(recorded, ex.Context.of(recording), slug, task)
    totals = ex.total_usage(recorded)
    if totals is not None:
        from kodelyth_ecc.statusfile import USAGE_KEYS

        usage = dict(usage or dict.fromkeys(USAGE_KEYS))
        if not any(isinstance(usage.get(k), int) for k in ex.USAGE_TOKENS):
            usage.update({k: v for k, v in totals.items() if k in USAGE_KEYS})
        usage["recorded"] = totals
    return {"usage": usage, "exchanges": recorded, "recording": recording or None}


def _read_object(worker: WorkerDir, name: str) -> dict[str, Any] | None:
    """An object field session-import restored (``usage.json``); a damaged one is
    ignored like a damaged session.json."""
    import json

    data = worker.read(name, MAX_STATUS_BYTES)
    if data is None:
        return None
    try:
        value = json.loads(data)
        check_meta_shape(value, worker.file(name), name)
    except (ValueError, RecursionError, BundleError):
        return None
    return value if isinstance(value, dict) else None


def _read_text(worker: WorkerDir, name: str, limit: int) -> str | None:
    """A restored diff or diffstat, capped as export caps the worktree's."""
    data = worker.read(name, limit * 2, truncate=True)
    if data is None:
        return None
    # Kept exactly (line endings, missing final newline); invalid UTF-8 cannot be JSON.
    return cap_text(data.decode("utf-8", errors="replace"), limit)


def export_bundle(
    session: str,
    coordination_root: str,
    *,
    task: str | None = None,
    agents: Sequence[str] | None = None,
    harness: str | None = None,
    base_ref: str | None = None,
    include_changes: bool = True,
    include_exchanges: bool = True,
) -> Bundle:
    """Read a session into a validated ``Bundle`` (nothing is written)."""
    from kodelyth_ecc.bundle import Bundle, BundleWorker, validate_bundle

    header, dirs, record = _prepare(
        session, coordination_root, task=task, agents=agents, harness=harness, base_ref=base_ref
    )
    changes = _changes(record, [s for s, _ in dirs], include_changes)
    workers = []
    for slug, worker_dir in dirs:
        fields = _worker_fields(slug, worker_dir, changes, include_exchanges)
        for key, value in fields.items():
            if isinstance(value, bytes):
                fields[key] = value.decode("utf-8")
        workers.append(BundleWorker(**fields))
    bundle = Bundle(workers=workers, **header)
    return validate_bundle(bundle, f"the export of {session!r}")


def export_to_stream(
    session: str,
    coordination_root: str,
    out: BinaryIO | str,
    *,
    task: str | None = None,
    agents: Sequence[str] | None = None,
    harness: str | None = None,
    base_ref: str | None = None,
    include_changes: bool = True,
    include_exchanges: bool = True,
) -> int:
    """Export straight to a file path (atomically) or an open binary stream, one worker
    at a time: memory stays at about one worker's files, whatever the session's size.
    The bytes are those ``encode_bundle(export_bundle(...))`` would give."""
    header, dirs, record = _prepare(
        session, coordination_root, task=task, agents=agents, harness=harness, base_ref=base_ref
    )
    changes = _changes(record, [s for s, _ in dirs], include_changes)
    loosen_allocator()
    workers = (
        _worker_fields(slug, worker_dir, changes, include_exchanges) for slug, worker_dir in dirs
    )
    if isinstance(out, str):
        return stream_to_file(out, header, workers)
    return write_stream(out, header, workers)


_META_KEYS = (
    "task", "agents", "harness", "base_ref", "base_commit", "launcher", "seed_paths",
    "created_at", "tool", "model", "worker_timeout_s", "sandbox", "replay_of", "variation",
    "sanitized", "machine", "verify", "experiment",
)  # fmt: skip


def _meta_order(key: str) -> tuple[int, str]:
    """The JS tool's keys first, in its order; then ours; then anything else by name."""
    return (_META_KEYS.index(key), "") if key in _META_KEYS else (len(_META_KEYS), key)
