"""The fast read path behind ``session-import``: a bundle validated and restored
without turning its texts into Python strings.

``read_bundle`` gives every handoff as a ``str``: for text with non-ASCII
characters that is two bytes per character, built by decoding and undone by
encoding again before the file is written (measured: 3.2x the bundle's size in
memory and most of the import's time). Here the file is mapped, msgspec checks
the whole document's syntax and types in one pass while keeping each text as a
zero-copy ``msgspec.Raw`` slice, the slices' UTF-8 is checked, and only then are
the texts unescaped, 64 KiB at a time, straight into the files.

Anything unusual (a text that is not a string, bad UTF-8, a JSON syntax error)
goes back through ``decode_bundle``, so errors read exactly as they do there.
"""

from __future__ import annotations

import codecs
import mmap
import os
import stat
import warnings
from collections.abc import Iterator
from typing import Any

import msgspec

from kodelyth_ecc.bundle import (
    Bundle,
    decode_bundle,
    open_capped,
    read_upto,
    validate_recordings,
    worker_struct_fields,
)
from kodelyth_ecc.bundleformat import (
    CHUNK,
    SCHEMA,
    is_utf8,
    problem,
    schema_problem,
    validate_meta,
    validate_names,
    validate_objects,
)
from kodelyth_ecc.sessiondir import REQUIRED_FIELDS, TEXT_FIELDS

TYPE_CHECKING = False

_ABSENT = msgspec.Raw()
_NULL = b"null"
_QUOTE = ord('"')

if TYPE_CHECKING:

    class RawWorker(msgspec.Struct):
        """The static view of the struct built from ``sessiondir.WORKER_FIELDS``, each
        text kept as raw JSON."""

        slug: str
        task: msgspec.Raw
        handoff: msgspec.Raw
        status: msgspec.Raw

        def __getattr__(self, name: str) -> Any: ...

else:
    RawWorker = msgspec.defstruct(
        "RawWorker", worker_struct_fields(msgspec.Raw, _ABSENT), module=__name__
    )


class RawBundle(msgspec.Struct):
    schema: str
    session: str
    exported_at: str
    exported_by: str
    meta: dict[str, Any]
    workers: list[RawWorker]


_DECODER = msgspec.json.Decoder(RawBundle)


def read_raw_bundle(path: str, *, max_bytes: int) -> RawBundle | Bundle:
    """A fully validated bundle: a ``RawBundle`` on the fast path, or a ``Bundle``
    when ``decode_bundle`` had to look at it (and found it valid after all)."""
    data = _map(path, max_bytes)
    try:
        raw = _DECODER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return decode_bundle(bytes(data), path)  # raises the usual, precise error
    if raw.schema != SCHEMA:
        raise problem(path, schema_problem(raw.schema))
    validate_names(raw.session, [w.slug for w in raw.workers], path)
    validate_meta(raw.meta, path)
    validate_objects(raw.workers, path)
    validate_recordings(raw.workers, path)
    for worker in raw.workers:
        for name in TEXT_FIELDS:
            value: msgspec.Raw = getattr(worker, name)
            view = memoryview(value)
            if view and view[0] == _QUOTE:
                if not is_utf8(view):
                    return decode_bundle(bytes(data), path)
            elif name in REQUIRED_FIELDS or view not in (b"", _NULL):
                return decode_bundle(bytes(data), path)  # a number, list, ...: its error
    return raw


def _map(path: str, max_bytes: int) -> bytes | mmap.mmap:
    """The file's bytes, mapped rather than read: a 64 MiB read into fresh memory
    costs 16,000 page faults (measured: 60 ms); the mapping shares the page cache."""
    with open_capped(path, max_bytes) as (fh, size):
        # A pipe or device cannot be mapped: the open file says what it is, not its name.
        if size == 0 or not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return read_upto(fh, max_bytes + 1)
        try:
            return mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            return read_upto(fh, max_bytes + 1)


def text_bytes(value: msgspec.Raw) -> list[bytes] | None:
    """A validated text field as UTF-8 pieces (None when absent or null).

    JSON and Python's bytes escapes agree on ``\\" \\\\ \\n \\r \\t \\b \\f``, and msgspec
    has rejected every other escape but ``\\/`` and ``\\uXXXX``; those two make
    ``codecs.escape_decode`` warn, and then msgspec decodes the field instead."""
    view = memoryview(value)
    if not view or view[0] != _QUOTE:
        return None
    inner = view[1:-1]
    if not inner:
        return [b""]
    pieces: list[bytes] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        try:
            for chunk in _escape_safe_chunks(inner):
                pieces.append(codecs.escape_decode(chunk)[0])
        except DeprecationWarning:
            return [msgspec.json.decode(value, type=str).encode("utf-8")]
    return pieces


def _escape_safe_chunks(view: memoryview) -> Iterator[bytes]:
    """Cut where no escape is split: never right after an odd run of backslashes."""
    start, size = 0, len(view)
    while start < size:
        end = min(size, start + CHUNK)
        back = end
        while back > start and view[back - 1] == 0x5C:
            back -= 1
        if (end - back) % 2:
            end -= 1
        yield bytes(view[start:end])
        start = end
