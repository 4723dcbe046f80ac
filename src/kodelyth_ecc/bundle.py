"""The session bundle, ``kodelyth.session-bundle/v1``: one portable JSON file.

Shared with the earlier JavaScript tool in both directions: its bundles read
here, and a reader that knows only the required fields reads ours, because
everything we add is optional (old readers ignore it).

A bundle from a stranger is hostile until ``validate_bundle`` accepts it: the
size is capped before reading, the JSON is decoded and type-checked in one pass
(msgspec), and every name that becomes a path must be one safe path component.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from typing import Any, BinaryIO

import msgspec

from kodelyth_ecc.bundleformat import (
    DEFAULT_MAX_BUNDLE_BYTES,
    MAX_META_DEPTH,
    SCHEMA,
    BundleError,
    check_name,
    problem,
    schema_problem,
    validate_meta,
    validate_names,
    validate_objects,
)
from kodelyth_ecc.exchanges import Exchange, RecordingError, validate_exchanges
from kodelyth_ecc.fsutil import atomic_write_bytes, remove_stale_temps
from kodelyth_ecc.sessiondir import RESERVED_SLUGS, WORKER_FIELDS

TYPE_CHECKING = False

__all__ = [
    "DEFAULT_MAX_BUNDLE_BYTES",
    "RESERVED_SLUGS",
    "SCHEMA",
    "Bundle",
    "BundleError",
    "BundleWorker",
    "check_name",
    "decode_bundle",
    "encode_bundle",
    "read_bundle",
    "read_bundle_file",
    "validate_bundle",
    "write_bundle",
]


_KIND_TYPES: dict[str, Any] = {
    "name": str,
    "text": str,
    "str": str,
    "int": int,
    "float": float,
    "object": dict[str, Any],
    "exchanges": list[Exchange],
}


def worker_struct_fields(text_type: Any = str, absent: Any = None) -> list[tuple[Any, ...]]:
    """msgspec field specs from ``sessiondir.WORKER_FIELDS``: required fields have no
    default; optional ones default to ``absent`` (None) and text fields take
    ``text_type`` (``msgspec.Raw`` on the fast import path)."""
    specs: list[tuple[Any, ...]] = []
    for field in WORKER_FIELDS:
        kind = text_type if field.kind == "text" else _KIND_TYPES[field.kind]
        if field.required:
            specs.append((field.name, kind))
        elif field.kind == "text" and text_type is not str:
            specs.append((field.name, kind, absent))
        else:
            specs.append((field.name, kind | None, None))
    return specs


if TYPE_CHECKING:

    class BundleWorker(msgspec.Struct, omit_defaults=True):
        """The static view of the struct built from ``sessiondir.WORKER_FIELDS``: the
        required fields typed, the optional ones through ``__getattr__``."""

        slug: str
        task: str
        handoff: str
        status: str

        def __init__(self, **fields: Any) -> None: ...

        def __getattr__(self, name: str) -> Any: ...

else:
    # One worker of a bundle; every field but the first four is optional (the JS tool
    # wrote only those), and None fields are left out when encoding.
    BundleWorker = msgspec.defstruct(
        "BundleWorker", worker_struct_fields(), omit_defaults=True, module=__name__
    )


class Bundle(msgspec.Struct):
    schema: str
    session: str
    exported_at: str
    exported_by: str
    meta: dict[str, Any]
    workers: list[BundleWorker]

    def worker(self, slug: str) -> BundleWorker | None:
        return next((w for w in self.workers if w.slug == slug), None)


def _line_col(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column (in characters, as editors count) of a byte offset."""
    head = data[:offset]
    line = head.count(b"\n") + 1
    col = len(head[head.rfind(b"\n") + 1 :].decode("utf-8", errors="replace")) + 1
    return line, col


def validate_bundle(bundle: Bundle, where: str = "bundle") -> Bundle:
    """Checks a decoded bundle beyond its types; raises ``BundleError`` naming the fix."""
    if bundle.schema != SCHEMA:
        raise problem(where, schema_problem(bundle.schema))
    validate_names(bundle.session, [w.slug for w in bundle.workers], where)
    validate_meta(bundle.meta, where)
    validate_objects(bundle.workers, where)
    validate_recordings(bundle.workers, where)
    return bundle


def validate_recordings(workers: list[Any], where: str) -> None:
    """Each worker's recorded exchanges within the recording format's limits."""
    for index, worker in enumerate(workers):
        recorded = getattr(worker, "exchanges", None)
        if recorded is not None:
            try:
                validate_exchanges(recorded, f"workers[{index}].exchanges")
            except RecordingError as exc:
                raise problem(where, str(exc)) from None


_DECODER = msgspec.json.Decoder(Bundle)


def decode_bundle(data: bytes, where: str = "bundle") -> Bundle:
    try:
        bundle = _DECODER.decode(data)
    except msgspec.ValidationError as exc:
        raise problem(where, str(exc).replace(" - at `$", " at `$")) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{where} is not valid JSON: {_syntax_error(data, exc)}") from None
    except RecursionError:
        # Only meta may nest (workers are flat): anything this deep is over its limit.
        raise problem(
            where, f"it nests deeper than {MAX_META_DEPTH} levels (meta may nest at most that)"
        ) from None
    return validate_bundle(bundle, where)


def _syntax_error(data: bytes, exc: Exception) -> str:
    """Why and where (line, column) the JSON breaks. Only on the error path: msgspec
    gives a byte offset at best (none for truncated input, a string-relative one for
    bad UTF-8), so the standard library's parser pinpoints it."""
    import json

    if data.startswith(b"\xef\xbb\xbf"):
        return "it starts with a byte-order mark (line 1, column 1): save it as UTF-8 without BOM"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as bad:
        line, col = _line_col(data, bad.start)
        return f"byte 0x{data[bad.start]:02x} is not UTF-8 (line {line}, column {col})"
    try:
        json.loads(text)
    except json.JSONDecodeError as err:
        return f"{err.msg} (line {err.lineno}, column {err.colno})"
    except RecursionError:
        pass
    # The standard library accepts what JSON does not (NaN, lone surrogates): msgspec's reason.
    message = str(exc)
    match = re.search(r"\(byte (\d+)\)", message)
    line, col = _line_col(data, int(match.group(1)) if match else len(data))
    return f"{message.split(' (byte', maxsplit=1)[0]} (line {line}, column {col})"


def read_bundle(path: str, *, max_bytes: int = DEFAULT_MAX_BUNDLE_BYTES) -> Bundle:
    """Read and validate a bundle file; nothing is trusted before this returns."""
    return decode_bundle(_read_capped(path, max_bytes), path)


def read_bundle_file(path: str, *, max_bytes: int = DEFAULT_MAX_BUNDLE_BYTES) -> tuple[Bundle, str]:
    """``read_bundle``, plus the sha256 of the file's bytes (replays record it)."""
    import hashlib

    data = _read_capped(path, max_bytes)
    return decode_bundle(data, path), hashlib.sha256(data).hexdigest()


def _read_capped(path: str, max_bytes: int) -> bytes:
    """The file's bytes, refusing anything over ``max_bytes`` before reading it."""
    with open_capped(path, max_bytes) as (fh, _size):
        data = read_upto(fh, max_bytes + 1)
    if len(data) > max_bytes:
        raise BundleError(f"{path} grew past the {max_bytes:,}-byte limit while being read")
    return data


def read_upto(fh: BinaryIO, limit: int) -> bytes:
    """At most ``limit`` bytes, read a piece at a time: ``read(limit)`` would allocate
    the whole limit up front (a pipe given with --max-bundle-size 1T)."""
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = fh.read(min(left, 16 * 1024 * 1024))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


@contextlib.contextmanager
def open_capped(path: str, max_bytes: int) -> Iterator[tuple[BinaryIO, int]]:
    """The open file and its size, once the size is known to be under the cap;
    errors name the path and the fix."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > max_bytes:
                raise BundleError(
                    f"{path} is {size:,} bytes, over the {max_bytes:,}-byte limit: "
                    "raise it with --max-bundle-size if you trust this bundle"
                )
            yield fh, size
    except FileNotFoundError:
        raise BundleError(f"{path} does not exist: check the bundle path") from None
    except IsADirectoryError:
        raise BundleError(f"{path} is a directory, not a bundle file") from None
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror}") from None


_ENCODER = msgspec.json.Encoder()


def encode_bundle(bundle: Bundle) -> bytes:
    """Indented UTF-8 JSON with a final newline: diff-friendly, the JS tool's layout."""
    workers = sorted(bundle.workers, key=lambda w: w.slug)
    ordered = msgspec.structs.replace(bundle, workers=workers)
    return msgspec.json.format(_ENCODER.encode(ordered), indent=2) + b"\n"


def write_bundle(bundle: Bundle, path: str) -> str:
    """Validate, then write atomically (no partial file after a crash or Ctrl-C)."""
    validate_bundle(bundle, path)
    remove_stale_temps(os.path.abspath(path))
    atomic_write_bytes(path, encode_bundle(bundle))
    return path
