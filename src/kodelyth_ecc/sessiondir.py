"""The session on disk: the one owner of its names, paths, files and fields.

A session is ``<coordination-root>/<session>/`` holding ``session.json`` and one
directory per worker (``task.md``, ``handoff.md``, ``status.md``, ``transcript.log``,
and, when restored from a bundle, ``diff.patch`` and ``diffstat.txt``). Everything
that names a session, builds a path into one or reads a file of one goes through
this module, so that:

- one rule decides what a session name and a worker slug may be (swarm, import,
  status, replay, teardown and compare alike);
- nothing is read through a symlink, nothing but a regular file is opened (a FIFO
  would hang, ``/dev/zero`` would never end), and every size is capped before the
  read;
- the bundle's worker fields come from one table (``WORKER_FIELDS``): the bundle
  struct, the fast import path, the streaming export writer, sanitize and the schema
  test all derive from it, so adding a field is one edit here plus its tests.

The formats themselves live beside this module, each reader beside its writer:
``statusfile`` (status.md), ``prompts`` (task.md, the handoff template) and
``coordination`` (session.json). Standard library only: ``status`` and the pane
runner's callers import it on their start-up path.
"""

from __future__ import annotations

import errno
import os
import re
import stat

from kodelyth_ecc.errors import KodelythError, UsageError
from kodelyth_ecc.records import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

# --- file names ------------------------------------------------------------------------

SESSION_FILE = "session.json"
TASK_FILE = "task.md"
HANDOFF_FILE = "handoff.md"
STATUS_FILE = "status.md"
TRANSCRIPT_FILE = "transcript.log"
# Written by session-import when a bundle carried a diff but no worktree exists.
DIFF_FILE = "diff.patch"
DIFFSTAT_FILE = "diffstat.txt"
# Written by session-import when a bundle carried a worker's usage (a live worker's is in
# its status.md).
USAGE_FILE = "usage.json"
# The session's model proxy (``proxy``): its ports, in the session dir; and per worker
# the recorded exchanges (``exchanges``: one JSON object a line), their seal, what the
# recording needs to be replayed elsewhere (its worktree), the recording an offline
# replay answers from, and where that replay diverged from it.
PROXY_FILE = "proxy.json"
EXCHANGES_FILE = "exchanges.jsonl"
SEAL_FILE = "exchanges.seal"
RECORDING_FILE = "recording.json"
REPLAY_SOURCE_FILE = "replay-source.json"
DIVERGENCE_FILE = "divergence.json"
# The --verify check's outcome: command, exit code, duration, the tail of its output.
VERIFY_FILE = "verify.json"
# A sandboxed worker's private git objects and refs while it runs (kodelyth_ecc.sandbox).
SANDBOX_DIR = "sandbox-git"
# The files a swarm writes for every worker before it starts.
WORKER_FILES = (TASK_FILE, HANDOFF_FILE, STATUS_FILE)
# Siblings of a session dir that belong to the tool: ``<session>.teardown/`` holds the
# patches and copies teardown saved. No session may be named so that its dir is one.
TEARDOWN_SUFFIX = ".teardown"
GITIGNORE = ".gitignore"

# --- caps ------------------------------------------------------------------------------

# What is read of one file of a session. status.md and task.md are small by contract;
# handoffs and transcripts are capped again on export (1 MiB), but reading is capped
# first so that a hostile or runaway file cannot exhaust memory.
MAX_STATUS_BYTES = 64 * 1024
MAX_SESSION_RECORD_BYTES = 16 * 1024 * 1024
MAX_TEXT_BYTES = 256 * 1024 * 1024
# A worker count far beyond any swarm's (at most 12 agents) and any bundle seen.
MAX_WORKERS = 4096

# --- names -----------------------------------------------------------------------------

# A session name is a directory name, a tmux session name and part of branch names:
# letters, digits, '_' and '-'. No '.', which tmux silently turns into '_' (so the
# session could not be found again) and which would let a name collide with the
# tool's own siblings (``X.teardown``, ``X.bundle.json``).
MAX_SESSION_NAME = 100
_SESSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
# A worker slug is a directory name and part of a branch and a worktree path. slugify
# gives [a-z0-9-]; the JavaScript tool's and hand-written ones may hold '.' and '_'.
MAX_SLUG = 64
_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# A worker directory of this name would collide with the coordination dir's own file.
RESERVED_SLUGS = frozenset({SESSION_FILE, PROXY_FILE})
# What an error message shows of a rejected name: enough to recognise it, never a
# whole value (a name may hold a token pasted by mistake).
_SHOWN_NAME = 24


def session_name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a session name (None: it can). Never quotes the name."""
    if not isinstance(name, str):
        return f"must be a string, not {type(name).__name__}"
    if not name:
        return "is empty"
    if len(name) > MAX_SESSION_NAME:
        return f"is {len(name)} characters long (at most {MAX_SESSION_NAME})"
    if not _SESSION_NAME.fullmatch(name):
        return "must be letters, digits, '_' or '-', starting with a letter or digit"
    return None


def slug_problem(slug: object) -> str | None:
    """Why ``slug`` cannot be a worker slug (None: it can). Never quotes the slug."""
    if not isinstance(slug, str):
        return f"must be a string, not {type(slug).__name__}"
    if not slug:
        return "is empty"
    if len(slug) > MAX_SLUG:
        return f"is {len(slug)} characters long (at most {MAX_SLUG})"
    if not _SLUG.fullmatch(slug) or ".." in slug or slug.endswith(".lock"):
        return (
            "must be one path component of letters, digits, '.', '_' or '-', starting with "
            "a letter or digit (no '/', '\\', '..' or '.lock' ending)"
        )
    if slug in RESERVED_SLUGS:
        return "is reserved for the session's own file"
    return None


def shown_name(name: str) -> str:
    """A name for an error message: quoted and escaped by ``repr`` (controls, bidi and
    zero-width marks included), at most a few characters (a rejected name is hostile
    input)."""
    return repr(name if len(name) <= _SHOWN_NAME else name[: _SHOWN_NAME - 1] + "…")


def unknown_worker(session: str, slug: str, slugs: Sequence[str]) -> KodelythError:
    """The error for a worker a session does not have: its workers, the one fix for a typo
    (``slug`` is what the user typed: shown escaped)."""
    from kodelyth_ecc.termsafe import one_line

    return KodelythError(
        f"session {session!r} has no worker {one_line(slug, 64)!r}: its workers are "
        f"{', '.join(slugs) or 'none'} (see `kodelyth-ecc status {session}`)"
    )


def validate_session_name(name: str) -> str:
    """``name`` if it is a valid session name; else a ``UsageError`` saying why."""
    reason = session_name_problem(name)
    if reason is not None:
        raise UsageError(f"invalid session name {shown_name(name)}: it {reason}")
    return name


def is_session_name(name: str) -> bool:
    return session_name_problem(name) is None


def is_slug(slug: str) -> bool:
    return slug_problem(slug) is None


# --- safe reads ------------------------------------------------------------------------


class UnsafeFile(KodelythError):
    """A session file that is a symlink, not a regular file, or over its cap."""


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_file(
    path: str,
    limit: int,
    *,
    dir_fd: int | None = None,
    truncate: bool = False,
    tail: bool = False,
    shown: str | None = None,
) -> bytes | None:
    """The bytes of the regular file ``path`` (None when it does not exist).

    Never follows a symlink (the last component; use ``dir_fd`` from ``open_dir`` for
    the directories above it), never opens a FIFO, device or socket for reading (a
    non-blocking open, then ``fstat``), and never reads past ``limit``: over it, the
    first ``limit`` bytes with ``truncate``, the last ones with ``tail``, else
    ``UnsafeFile``.
    """
    truncate = truncate or tail
    name = shown or path
    fd = open_file(path, dir_fd=dir_fd, shown=name)
    if fd is None:
        return None
    try:
        info = os.fstat(fd)
        if info.st_size > limit and not truncate:
            raise UnsafeFile(
                f"{name} is {info.st_size:,} bytes, over the {limit:,}-byte limit for this file"
            )
        if tail and info.st_size > limit:
            os.lseek(fd, info.st_size - limit, os.SEEK_SET)
        chunks: list[bytes] = []
        left = limit + (0 if truncate else 1)
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
    finally:
        os.close(fd)
    if len(data) > limit:
        if truncate:
            return data[:limit]
        raise UnsafeFile(f"{name} grew past the {limit:,}-byte limit for this file while read")
    return data


def open_file(path: str, *, dir_fd: int | None = None, shown: str | None = None) -> int | None:
    """A read-only descriptor of the regular file ``path`` (None when it does not exist),
    opened as ``read_file`` opens it: never through a symlink, never a FIFO or device.
    For readers that follow a growing file (``logs --follow``); the caller closes it."""
    name = shown or path
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC | _NONBLOCK, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP or (
            exc.errno == errno.EMLINK and _is_link(path, dir_fd)
        ):  # FreeBSD says EMLINK
            raise UnsafeFile(
                f"{name} is a symlink: session files are never read through links; "
                "replace it with a regular file (or remove it)"
            ) from None
        raise UnsafeFile(f"cannot read {name}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFile(
                f"{name} is {_kind(info.st_mode)}, not a regular file: session files must be "
                "regular files; remove it or replace it with one"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


def _is_link(path: str, dir_fd: int | None) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def read_text(
    path: str, limit: int, *, dir_fd: int | None = None, truncate: bool = False
) -> str | None:
    """``read_file`` decoded as UTF-8 (bad bytes become U+FFFD)."""
    data = read_file(path, limit, dir_fd=dir_fd, truncate=truncate)
    return None if data is None else data.decode("utf-8", errors="replace")


def open_dir(path: str, *, dir_fd: int | None = None) -> int | None:
    """A descriptor of the real directory ``path`` (None when missing); a symlink or a
    file there is ``UnsafeFile``. Files are then read relative to it (``dir_fd``), so
    no component is followed through a link after this check."""
    try:
        return os.open(path, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            what = "a symlink" if _is_link(path, dir_fd) else "not a directory"
            raise UnsafeFile(
                f"{path} is {what}: a session directory must be a real directory"
            ) from None
        raise UnsafeFile(f"cannot open {path}: {exc.strerror}") from None


# --- the session and its workers -------------------------------------------------------


class WorkerDir(Record):
    """One worker's directory: ``<coordination-root>/<session>/<slug>/``."""

    session_dir: str
    slug: str

    @property
    def path(self) -> str:
        return os.path.join(self.session_dir, self.slug)

    def file(self, name: str) -> str:
        return os.path.join(self.session_dir, self.slug, name)

    @property
    def task_file(self) -> str:
        return self.file(TASK_FILE)

    @property
    def handoff_file(self) -> str:
        return self.file(HANDOFF_FILE)

    @property
    def status_file(self) -> str:
        return self.file(STATUS_FILE)

    @property
    def transcript_file(self) -> str:
        return self.file(TRANSCRIPT_FILE)

    def read(
        self, name: str, limit: int, *, truncate: bool = False, tail: bool = False
    ) -> bytes | None:
        """A file of this worker (None when missing), read safely: the worker dir
        must be a real directory and the file a regular file, capped."""
        fd = open_dir(self.path)
        if fd is None:
            return None
        try:
            return read_file(
                name, limit, dir_fd=fd, truncate=truncate, tail=tail, shown=self.file(name)
            )
        finally:
            os.close(fd)

    def open(self, name: str) -> int | None:
        """A descriptor of a regular file of this worker (None when missing), opened
        safely (``open_file``); the caller closes it."""
        fd = open_dir(self.path)
        if fd is None:
            return None
        try:
            return open_file(name, dir_fd=fd, shown=self.file(name))
        finally:
            os.close(fd)

    def read_text(self, name: str, limit: int, *, truncate: bool = False) -> str | None:
        data = self.read(name, limit, truncate=truncate)
        return None if data is None else data.decode("utf-8", errors="replace")

    def size(self, name: str) -> int | None:
        """The size of a regular file of this worker, without following links."""
        try:
            info = os.lstat(self.file(name))
        except OSError:
            return None
        return info.st_size if stat.S_ISREG(info.st_mode) else None


class SessionDir(Record):
    """A session's coordination dir: ``<coordination_root>/<name>/``.

    Construct it with ``SessionDir.at(root, name)``, which validates the name."""

    coordination_root: str
    name: str

    @classmethod
    def at(cls, coordination_root: str, name: str) -> SessionDir:
        return cls(coordination_root, validate_session_name(name))

    @property
    def path(self) -> str:
        return os.path.join(self.coordination_root, self.name)

    @property
    def record_file(self) -> str:
        return os.path.join(self.path, SESSION_FILE)

    @property
    def teardown_dir(self) -> str:
        """Where teardown saves work: a sibling, so ``--purge`` keeps it."""
        return os.path.join(self.coordination_root, self.name + TEARDOWN_SUFFIX)

    def exists(self) -> bool:
        """A real directory is there (a symlink in its place is not a session)."""
        try:
            return stat.S_ISDIR(os.lstat(self.path).st_mode)
        except OSError:
            return False

    def worker(self, slug: str) -> WorkerDir:
        return WorkerDir(self.path, slug)

    def worker_slugs(self) -> list[str]:
        """The worker directories, sorted: real directories with a valid slug only
        (files such as session.json, symlinks, dot-dirs and stray names are not
        workers)."""
        return sorted(_worker_entries(self.path))

    def read(self, name: str, limit: int) -> bytes | None:
        """A file directly in the session dir (session.json), read safely."""
        fd = open_dir(self.path)
        if fd is None:
            return None
        try:
            return read_file(name, limit, dir_fd=fd, shown=os.path.join(self.path, name))
        finally:
            os.close(fd)


def _worker_entries(path: str) -> Iterator[str]:
    try:
        entries = os.scandir(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    with entries:
        for count, entry in enumerate(entries):
            if count > MAX_WORKERS * 4:
                raise UnsafeFile(
                    f"{path} holds over {MAX_WORKERS * 4:,} entries: not a session directory"
                )
            if entry.is_dir(follow_symlinks=False) and is_slug(entry.name):
                yield entry.name


def list_session_names(coordination_root: str) -> list[str]:
    """Names of the directories under the root that can be sessions, sorted."""
    try:
        entries = os.scandir(coordination_root)
    except (FileNotFoundError, NotADirectoryError):
        return []
    with entries:
        return sorted(
            e.name for e in entries if e.is_dir(follow_symlinks=False) and is_session_name(e.name)
        )


# --- the bundle's worker fields --------------------------------------------------------


class WorkerField(Record):
    """One field of a bundle worker.

    ``kind``: ``name`` (the slug), ``text`` (a file's text, kept exactly; large),
    ``str``, ``int`` or ``float`` (short facts), ``object`` (a small JSON object),
    ``exchanges`` (a recording: a list of ``exchanges.Exchange``).
    ``file``: the worker file a text field is read from on export and restored to on
    import (None: computed, not a file)."""

    name: str
    kind: str
    required: bool = False
    file: str | None = None


# In the order fields are written. The first four are the JavaScript tool's, required;
# everything after is ours and optional (old readers ignore it).
WORKER_FIELDS: tuple[WorkerField, ...] = (
    WorkerField("slug", "name", required=True),
    WorkerField("task", "text", required=True, file=TASK_FILE),
    WorkerField("handoff", "text", required=True, file=HANDOFF_FILE),
    WorkerField("status", "text", required=True, file=STATUS_FILE),
    WorkerField("state", "str"),
    WorkerField("exit_code", "int"),
    WorkerField("started_at", "str"),
    WorkerField("finished_at", "str"),
    WorkerField("duration_s", "float"),
    WorkerField("diff", "text", file=DIFF_FILE),
    WorkerField("diffstat", "text", file=DIFFSTAT_FILE),
    WorkerField("transcript", "text", file=TRANSCRIPT_FILE),
    # What the agent used: model, tokens, cost, turns, its own session id, the CLI.
    WorkerField("usage", "object", file=USAGE_FILE),
    # The model traffic the session's proxy recorded, and what replaying it needs: the
    # worktree it ran in and the seal of the machine that recorded it.
    WorkerField("exchanges", "exchanges", file=EXCHANGES_FILE),
    WorkerField("recording", "object", file=RECORDING_FILE),
    # Where an offline replay parted from its recording: turn and a short reason.
    WorkerField("divergence", "object", file=DIVERGENCE_FILE),
    # The objective check run after the agent exited (--verify): command, exit code,
    # whether it passed or timed out, duration, the tail of its output.
    WorkerField("verify", "object", file=VERIFY_FILE),
)
WORKER_FIELD_NAMES = tuple(f.name for f in WORKER_FIELDS)
TEXT_FIELDS = tuple(f.name for f in WORKER_FIELDS if f.kind == "text")
OBJECT_FIELDS = tuple(f.name for f in WORKER_FIELDS if f.kind == "object")
EXCHANGE_FIELDS = tuple(f.name for f in WORKER_FIELDS if f.kind == "exchanges")
REQUIRED_FIELDS = tuple(f.name for f in WORKER_FIELDS if f.required)
# Text and object fields and the file each is restored as on import.
FILE_FIELDS = tuple((f.name, f.file) for f in WORKER_FIELDS if f.file is not None)
