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
from typing import Any

from kodelyth_ecc import __version__, naming
from kodelyth_ecc.bundle import SCHEMA, Bundle, BundleWorker, validate_bundle
from kodelyth_ecc.coordination import SessionRecord, read_session_record
from kodelyth_ecc.errors import KodelythError
from kodelyth_ecc.statusfile import parse_status

MAX_DIFF_BYTES = 1024 * 1024
MAX_TRANSCRIPT_BYTES = 1024 * 1024
WORKER_FILES = ("task.md", "handoff.md", "status.md")
TRANSCRIPT_FILE = "transcript.log"
# Written by session-import when a bundle carried a diff but no worktree exists.
DIFF_FILE = "diff.patch"
DIFFSTAT_FILE = "diffstat.txt"

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
    """At most ``limit`` bytes of UTF-8, with a visible marker saying what was cut."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    marker = f"\n[kodelyth-ecc: truncated, {len(data) - limit:,} of {len(data):,} bytes omitted]\n"
    if keep == "head":
        return data[:limit].decode("utf-8", errors="ignore") + marker
    return marker + data[-limit:].decode("utf-8", errors="ignore")


def exported_at(now: float | None = None) -> str:
    """ISO-8601 UTC; ``SOURCE_DATE_EPOCH`` wins, for reproducible bundles."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if now is None and epoch and epoch.strip().isdigit():
        now = float(epoch)
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if now is None else now))


def _read_text(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return None
    # Kept exactly (line endings, missing final newline); invalid UTF-8 cannot be JSON.
    return data.decode("utf-8", errors="replace")


def worker_dirs(coordination_dir: str) -> list[str]:
    """Only directories are workers; files beside them (session.json) are not."""
    with os.scandir(coordination_dir) as entries:
        return sorted(
            e.name
            for e in entries
            if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")
        )


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


def export_bundle(
    session: str,
    coordination_root: str,
    *,
    task: str | None = None,
    agents: Sequence[str] | None = None,
    harness: str | None = None,
    base_ref: str | None = None,
    include_changes: bool = True,
) -> Bundle:
    """Read a session into a validated ``Bundle`` (nothing is written)."""
    naming.validate_session_name(session)
    coordination_dir = os.path.join(coordination_root, session)
    if not os.path.isdir(coordination_dir):
        raise KodelythError(
            f"no session {session!r} under {coordination_root}: "
            "check the name (`kodelyth-ecc status` lists sessions) or pass --coord-root"
        )
    slugs = worker_dirs(coordination_dir)
    if not slugs:
        raise KodelythError(
            f"session {session!r} has no worker directories in {coordination_dir}: "
            "a bundle needs at least one worker"
        )
    record = read_session_record(coordination_dir)
    meta = session_meta(record)
    for key, value in (("task", task), ("harness", harness), ("base_ref", base_ref)):
        if value is not None:
            meta[key] = value
    if agents is not None:
        meta["agents"] = list(agents)
    meta = {k: meta[k] for k in sorted(meta, key=_meta_order)}

    worktree_of = {w.slug: w.worktree for w in record.workers} if record else {}
    base = record.base_commit if record else None
    jobs = []
    for slug in slugs:
        worker_dir = os.path.join(coordination_dir, slug)
        texts = [_read_text(os.path.join(worker_dir, name)) or "" for name in WORKER_FILES]
        status = parse_status(texts[2], slug)
        jobs.append((slug, worker_dir, texts, status))

    changes: dict[str, tuple[str | None, str | None]] = {}
    if include_changes and base:
        with_worktrees = [(s, worktree_of.get(s)) for s, *_ in jobs if worktree_of.get(s)]
        if with_worktrees:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(4, len(with_worktrees))) as pool:
                results = pool.map(lambda item: _worker_changes(item[1], base), with_worktrees)
                changes = dict(zip((s for s, _ in with_worktrees), results, strict=True))

    workers = []
    for slug, worker_dir, (task_md, handoff_md, status_md), status in jobs:
        diff, diffstat = changes.get(slug, (None, None))
        if diff is None:
            diff = _read_text(os.path.join(worker_dir, DIFF_FILE))
            diffstat = _read_text(os.path.join(worker_dir, DIFFSTAT_FILE))
        transcript = _read_text(os.path.join(worker_dir, TRANSCRIPT_FILE))
        if transcript is not None:
            transcript = cap_text(
                strip_terminal_controls(transcript), MAX_TRANSCRIPT_BYTES, keep="tail"
            )
        known_state = status.state in ("pending", "running", "completed", "failed")
        workers.append(
            BundleWorker(
                slug=slug,
                task=task_md,
                handoff=handoff_md,
                status=status_md,
                state=status.state if known_state else None,
                exit_code=status.exit_code,
                started_at=status.started,
                finished_at=status.finished,
                duration_s=status.duration_s,
                diff=diff,
                diffstat=diffstat,
                transcript=transcript,
            )
        )
    bundle = Bundle(
        schema=SCHEMA,
        session=session,
        exported_at=exported_at(),
        exported_by=f"kodelyth-ecc@{__version__}",
        meta=meta,
        workers=workers,
    )
    return validate_bundle(bundle, f"the export of {session!r}")


_META_KEYS = (
    "task", "agents", "harness", "base_ref", "base_commit", "launcher", "seed_paths",
    "created_at", "tool", "replay_of", "variation",
)  # fmt: skip


def _meta_order(key: str) -> tuple[int, str]:
    """The JS tool's keys first, in its order; then ours; then anything else by name."""
    return (_META_KEYS.index(key), "") if key in _META_KEYS else (len(_META_KEYS), key)
