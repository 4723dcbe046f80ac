"""The bundle format's rules and a streaming writer, without msgspec.

``session-export`` writes a bundle one worker at a time straight from the
files' UTF-8 bytes: no Python string per handoff, no whole-bundle buffer, no
second formatting pass. The output is byte-identical to ``bundle.encode_bundle``
(msgspec's and the JavaScript tool's layout), which tests check.
"""

from __future__ import annotations

import codecs
import functools
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, BinaryIO

from kodelyth_ecc.errors import KodelythError
from kodelyth_ecc.fsutil import remove_stale_temps, temp_sibling
from kodelyth_ecc.sessiondir import (
    OBJECT_FIELDS,
    WORKER_FIELD_NAMES,
    session_name_problem,
    slug_problem,
)

SCHEMA = "kodelyth.session-bundle/v1"
DEFAULT_MAX_BUNDLE_BYTES = 256 * 1024 * 1024
_META_TYPES: dict[str, tuple[type, ...]] = {
    "task": (str,),
    "harness": (str,),
    "base_ref": (str,),
    "base_commit": (str,),
    "launcher": (str,),
    "created_at": (str,),
    "tool": (str,),
    "model": (str,),
    "machine": (str,),
}


class BundleError(KodelythError):
    """A bundle that cannot be read or does not validate; the message names the file."""


def problem(where: str, detail: str) -> BundleError:
    return BundleError(f"{where} is not a valid session bundle: {detail}")


def schema_problem(schema: str) -> str:
    """Why a bundle's schema is refused, quoting it only when it is one we know the
    shape of (another version of ours): the field is the bundle's, and may hold anything."""
    known = re.fullmatch(r"kodelyth\.session-bundle/v[0-9]{1,3}", schema)
    shown = f"{schema!r}" if known else "something else"
    return f"schema is {shown}, expected {SCHEMA!r}"


def check_name(value: str, what: str, where: str) -> None:
    """``value`` must be a valid session name (``what == "session"``) or worker slug.
    The error names the field and the rule, never the value: a bundle is hostile, and
    a name may hold anything, a token included."""
    reason = session_name_problem(value) if what == "session" else slug_problem(value)
    if reason is not None:
        raise problem(where, f"{what} is not one safe path component: it {reason}")


def validate_names(session: str, slugs: Sequence[str], where: str) -> None:
    """The session and every slug become paths: each must be one safe component."""
    check_name(session, "session", where)
    if not slugs:
        raise problem(where, "it has no workers: a bundle needs at least one")
    seen: set[str] = set()
    for index, slug in enumerate(slugs):
        check_name(slug, f"workers[{index}].slug", where)
        if slug in seen:
            raise problem(where, f"workers[{index}].slug appears twice (as an earlier worker's)")
        seen.add(slug)


# How deep meta may nest: far beyond anything we write (3 levels), and far below what
# would make a recursive reader (compare, sanitize, json) hit Python's recursion limit.
MAX_META_DEPTH = 32
# How many values meta may hold in all: it is a header, not a payload.
MAX_META_VALUES = 100_000


def check_meta_shape(meta: object, where: str, what: str = "meta") -> None:
    """Depth and size limits, walked without recursion (a hostile bundle may nest
    thousands deep): every recursive reader after this is safe. ``what`` names the
    field (meta, or a worker's object field such as ``workers[0].usage``)."""
    stack: list[tuple[object, int]] = [(meta, 1)]
    count = 0
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_META_VALUES:
            raise problem(where, f"{what} holds over {MAX_META_VALUES:,} values")
        if isinstance(value, dict):
            children: Iterable[object] = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > MAX_META_DEPTH:
            raise problem(where, f"{what} nests deeper than {MAX_META_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)


def validate_objects(workers: Iterable[Any], where: str) -> None:
    """The shape limits for every worker's object fields (``usage``)."""
    for index, worker in enumerate(workers):
        for name in OBJECT_FIELDS:
            value = getattr(worker, name, None)
            if value is not None:
                check_meta_shape(value, where, f"workers[{index}].{name}")


def validate_meta(meta: Mapping[str, Any], where: str) -> None:
    """Types of the meta fields we read (others are carried along untouched), and
    the shape limits of ``check_meta_shape``."""
    check_meta_shape(meta, where)
    for key, types in _META_TYPES.items():
        value = meta.get(key)
        if value is not None and not isinstance(value, types):
            raise problem(where, f"meta.{key} must be a string, got {type(value).__name__}")
    for key in ("agents", "seed_paths"):
        items = meta.get(key)
        if items is not None and (
            not isinstance(items, list) or not all(isinstance(a, str) for a in items)
        ):
            raise problem(where, f"meta.{key} must be a list of strings")
    for key in ("replay_of", "variation"):
        value = meta.get(key)
        if value is not None and not isinstance(value, dict):
            raise problem(where, f"meta.{key} must be an object, got {type(value).__name__}")
    replay_of = meta.get("replay_of") or {}
    for key in ("session", "bundle_sha256"):
        value = replay_of.get(key)
        if value is not None and not isinstance(value, str):
            raise problem(where, f"meta.replay_of.{key} must be a string")


# Per-worker fields in the order they are written (sessiondir owns the table).
WORKER_FIELDS = WORKER_FIELD_NAMES

# Control characters other than \t \n \r: rare in text, escaped one by one.
_RARE_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_NOT_RARE_CONTROL = bytes(b for b in range(256) if not _RARE_CONTROL.fullmatch(bytes([b])))
_RARE_ESCAPES = {
    bytes([c]): (b"\\b" if c == 8 else b"\\f" if c == 12 else b"\\u%04x" % c)
    for c in (*range(0, 9), 11, 12, *range(14, 32))
}


# Texts are checked and escaped 64 KiB at a time: the pieces stay in the CPU's cache
# and below glibc's mmap threshold (measured: 3x faster than whole megabytes).
CHUNK = 64 * 1024


@functools.cache
def loosen_allocator() -> None:
    """Let glibc keep freed memory instead of handing it back at once.

    By default glibc returns any free block over 128 KiB at the top of the heap to
    the kernel, so a loop that allocates and frees 64 KiB pieces faults fresh pages
    in every time (measured: half of an export's time, in a VM). Freeing one big
    block that malloc got from mmap raises its dynamic thresholds (mmap 16 MiB, trim
    32 MiB) for the rest of the process. ``bytes(n)`` is calloc'ed, so no page of it
    is ever touched; under other allocators this costs one mmap/munmap pair."""
    bytes(16 * 1024 * 1024)


def valid_utf8(data: bytes) -> bytes:
    """``data`` if it is UTF-8 (JSON must be); else with bad bytes as U+FFFD."""
    if is_utf8(data):
        return data
    return data.decode("utf-8", errors="replace").encode("utf-8")


def is_utf8(data: bytes | memoryview) -> bool:
    """Checked in chunks, skipping pure-ASCII ones: decoding a whole megabyte of text
    with a few non-ASCII characters into one (2-byte-per-character) string costs
    more than the rest of the export of that text."""
    if isinstance(data, bytes) and data.isascii():
        return True
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    try:
        for start in range(0, len(view), CHUNK):
            chunk = bytes(view[start : start + CHUNK])
            # An ASCII chunk can't finish a character the previous one began.
            if chunk.isascii() and not decoder.getstate()[0]:
                continue
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _escaped(data: bytes) -> bytes:
    """The inside of a JSON string for UTF-8 ``data``, escaped exactly as msgspec and
    ``json.dumps(ensure_ascii=False)`` do: only quote, backslash and controls."""
    data = (
        data.replace(b"\\", b"\\\\")
        .replace(b'"', b'\\"')
        .replace(b"\n", b"\\n")
        .replace(b"\r", b"\\r")
        .replace(b"\t", b"\\t")
    )
    # translate() with almost every byte deleted finds the rare controls far faster
    # than a regex search over the whole text.
    if data.translate(None, _NOT_RARE_CONTROL):
        data = _RARE_CONTROL.sub(lambda m: _RARE_ESCAPES[m.group()], data)
    return data


def _write_escaped(out: BinaryIO, data: bytes) -> None:
    """Escaping is byte by byte, so any cut between chunks is a valid one."""
    if len(data) <= CHUNK:
        out.write(_escaped(data))
        return
    view = memoryview(data)
    for start in range(0, len(data), CHUNK):
        out.write(_escaped(bytes(view[start : start + CHUNK])))


def json_string(data: bytes) -> bytes:
    """The JSON string literal for UTF-8 ``data``."""
    return b'"' + _escaped(data) + b'"'


def _json_value(value: Any, indent: int) -> bytes:
    if isinstance(value, list) and value and not isinstance(value[0], (str, int, dict, list)):
        # A recording (msgspec structs, so msgspec is loaded): as encode_bundle writes it.
        import msgspec

        formatted = msgspec.json.format(msgspec.json.encode(value), indent=2)
        return formatted.replace(b"\n", b"\n" + b" " * indent)
    text = json.dumps(value, indent=2, ensure_ascii=False)
    return text.replace("\n", "\n" + " " * indent).encode("utf-8")


def write_stream(
    out: BinaryIO, header: Mapping[str, Any], workers: Iterable[Mapping[str, Any]]
) -> int:
    """Write a bundle: ``header`` holds schema, session, exported_at, exported_by and
    meta; each worker maps field names to values, text fields as UTF-8 bytes (None
    fields are left out). Workers must come sorted by slug. Returns the worker count.

    Big texts go to ``out`` piece by piece: no copy of a handoff is made beyond its
    escaping."""
    out.write(b"{\n")
    for key in ("schema", "session", "exported_at", "exported_by", "meta"):
        out.write(b'  "%s": %s,\n' % (key.encode(), _json_value(header[key], 2)))
    out.write(b'  "workers": [')
    count = 0
    for worker in workers:
        out.write(b"\n    {" if count == 0 else b",\n    {")
        separator = b"\n"
        for name in WORKER_FIELDS:
            value = worker.get(name)
            if value is None:
                continue
            out.write(b'%s      "%s": ' % (separator, name.encode()))
            if isinstance(value, bytes):
                out.write(b'"')
                _write_escaped(out, value)
                out.write(b'"')
            else:
                out.write(_json_value(value, 6))
            separator = b",\n"
        out.write(b"\n    }")
        count += 1
    out.write(b"\n  ]\n}\n" if count else b"]\n}\n")
    return count


def stream_to_file(
    path: str, header: Mapping[str, Any], workers: Iterable[Mapping[str, Any]]
) -> int:
    """``write_stream`` into a temporary sibling renamed over ``path``: atomic."""
    path = os.path.abspath(path)
    remove_stale_temps(path)  # what a killed export of the same file left behind
    tmp = temp_sibling(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, 0o666)
    try:
        # Escaped chunks are at least CHUNK bytes, so most bypass the buffer (no copy).
        with os.fdopen(fd, "wb", buffering=CHUNK) as fh:
            count = write_stream(fh, header, workers)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return count
