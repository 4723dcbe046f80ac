"""The session bundle, ``kodelyth.session-bundle/v1``: one portable JSON file.

Shared with the earlier JavaScript tool in both directions: its bundles read
here, and a reader that knows only the required fields reads ours, because
everything we add is optional (old readers ignore it).

A bundle from a stranger is hostile until ``validate_bundle`` accepts it: the
size is capped before reading, the JSON is decoded and type-checked in one pass
(msgspec), and every name that becomes a path must be one safe path component.
"""

from __future__ import annotations

import os
import re
from typing import Any

import msgspec

from kodelyth_ecc.errors import KodelythError
from kodelyth_ecc.fsutil import atomic_write_bytes

SCHEMA = "kodelyth.session-bundle/v1"
DEFAULT_MAX_BUNDLE_BYTES = 256 * 1024 * 1024
# One path component: no separators, no `..`, no leading dot, nothing a shell or
# tmux would read specially. JS-written sessions and slugs all fit.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_META_TYPES: dict[str, tuple[type, ...]] = {
    "task": (str,),
    "harness": (str,),
    "base_ref": (str,),
    "base_commit": (str,),
    "launcher": (str,),
    "created_at": (str,),
    "tool": (str,),
}


class BundleError(KodelythError):
    """A bundle that cannot be read or does not validate; the message names the file."""


class BundleWorker(msgspec.Struct, omit_defaults=True):
    slug: str
    task: str
    handoff: str
    status: str
    # Optional, written by kodelyth-ecc (Python); absent in JS bundles.
    state: str | None = None
    exit_code: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    diff: str | None = None
    diffstat: str | None = None
    transcript: str | None = None


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
    head = data[:offset]
    line = head.count(b"\n") + 1
    col = offset - (head.rfind(b"\n") + 1) + 1
    return line, col


def _problem(where: str, detail: str) -> BundleError:
    return BundleError(f"{where} is not a valid session bundle: {detail}")


def check_name(value: str, what: str, where: str) -> None:
    if not _SAFE_NAME.fullmatch(value) or ".." in value:
        raise _problem(
            where,
            f"{what} {value!r} is not one safe path component "
            "(letters, digits, '.', '_', '-'; no '/', '\\\\', '..' or leading dot)",
        )


def validate_bundle(bundle: Bundle, where: str = "bundle") -> Bundle:
    """Checks a decoded bundle beyond its types; raises ``BundleError`` naming the fix."""
    if bundle.schema != SCHEMA:
        raise _problem(where, f"schema is {bundle.schema!r}, expected {SCHEMA!r}")
    check_name(bundle.session, "session", where)
    if not bundle.workers:
        raise _problem(where, "it has no workers: a bundle needs at least one")
    seen: set[str] = set()
    for index, worker in enumerate(bundle.workers):
        check_name(worker.slug, f"workers[{index}].slug", where)
        if worker.slug in seen:
            raise _problem(where, f"workers[{index}].slug {worker.slug!r} appears twice")
        seen.add(worker.slug)
    for key, types in _META_TYPES.items():
        value = bundle.meta.get(key)
        if value is not None and not isinstance(value, types):
            raise _problem(where, f"meta.{key} must be a string, got {type(value).__name__}")
    agents = bundle.meta.get("agents")
    if agents is not None and (
        not isinstance(agents, list) or not all(isinstance(a, str) for a in agents)
    ):
        raise _problem(where, "meta.agents must be a list of strings")
    return bundle


_DECODER = msgspec.json.Decoder(Bundle)


def decode_bundle(data: bytes, where: str = "bundle") -> Bundle:
    try:
        bundle = _DECODER.decode(data)
    except msgspec.ValidationError as exc:
        raise _problem(where, str(exc).replace(" - at `$", " at `$")) from None
    except msgspec.DecodeError as exc:
        message = str(exc)
        match = re.search(r"\(byte (\d+)\)", message)
        if match:
            line, col = _line_col(data, int(match.group(1)))
            message = f"{message.split(' (byte', maxsplit=1)[0]} (line {line}, column {col})"
        raise BundleError(f"{where} is not valid JSON: {message}") from None
    return validate_bundle(bundle, where)


def read_bundle(path: str, *, max_bytes: int = DEFAULT_MAX_BUNDLE_BYTES) -> Bundle:
    """Read and validate a bundle file; nothing is trusted before this returns."""
    return read_bundle_file(path, max_bytes=max_bytes)[0]


def read_bundle_file(path: str, *, max_bytes: int = DEFAULT_MAX_BUNDLE_BYTES) -> tuple[Bundle, str]:
    """``read_bundle``, plus the sha256 of the file's bytes (replays record it)."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > max_bytes:
                raise BundleError(
                    f"{path} is {size:,} bytes, over the {max_bytes:,}-byte limit: "
                    "raise it with --max-bundle-size if you trust this bundle"
                )
            data = fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise BundleError(f"{path} does not exist: check the bundle path") from None
    except IsADirectoryError:
        raise BundleError(f"{path} is a directory, not a bundle file") from None
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > max_bytes:
        raise BundleError(f"{path} grew past the {max_bytes:,}-byte limit while being read")
    import hashlib

    return decode_bundle(data, path), hashlib.sha256(data).hexdigest()


_ENCODER = msgspec.json.Encoder()


def encode_bundle(bundle: Bundle) -> bytes:
    """Indented UTF-8 JSON with a final newline: diff-friendly, the JS tool's layout."""
    workers = sorted(bundle.workers, key=lambda w: w.slug)
    ordered = msgspec.structs.replace(bundle, workers=workers)
    return msgspec.json.format(_ENCODER.encode(ordered), indent=2) + b"\n"


def write_bundle(bundle: Bundle, path: str) -> str:
    """Validate, then write atomically (no partial file after a crash or Ctrl-C)."""
    validate_bundle(bundle, path)
    atomic_write_bytes(path, encode_bundle(bundle))
    return path
