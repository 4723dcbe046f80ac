"""The fast import path (``rawbundle``): texts restored from raw JSON without a
Python string each. Whatever JSON escaping a writer chose (ours, ``json.dumps``
with or without ``ensure_ascii``, the JS tool's), cut wherever the 64 KiB chunks
fall, the files must be the bytes ``decode_bundle`` would give; and a bad bundle
fails with ``decode_bundle``'s own message, writing nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kodelyth_ecc.bundle import Bundle, BundleError, decode_bundle
from kodelyth_ecc.bundleformat import CHUNK
from kodelyth_ecc.importer import import_bundle, import_bundle_file
from kodelyth_ecc.rawbundle import RawBundle, read_raw_bundle, text_bytes
from tests.replay_helpers import bundle_dict
from tests.test_roundtrip import texts

FILES = {"task": "task.md", "handoff": "handoff.md", "status": "status.md"}


def _dumps(doc: dict[str, Any], style: str) -> bytes:
    if style == "msgspec":
        return msgspec.json.format(msgspec.json.encode(doc), indent=2) + b"\n"
    if style == "ascii":  # every non-ASCII character as \uXXXX (surrogate pairs beyond the BMP)
        return json.dumps(doc, indent=2, ensure_ascii=True).encode()
    if style == "slashes":  # '/' escaped as '\/', as some writers do
        return json.dumps(doc, ensure_ascii=False).replace("/", "\\/").encode()
    return json.dumps(doc, indent=2, ensure_ascii=False).encode()


def _bundle_file(tmp_path: Path, handoffs: dict[str, str], style: str = "plain") -> Path:
    doc = bundle_dict({slug: f"task of {slug}\n" for slug in handoffs})
    for worker in doc["workers"]:
        worker["handoff"] = handoffs[worker["slug"]]
    path = tmp_path / f"bundle-{style}.json"
    path.write_bytes(_dumps(doc, style))
    return path


def _restored(tmp_path: Path, path: Path) -> Path:
    target = tmp_path / "restored"
    import_bundle_file(str(path), str(target))
    return target


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=texts(),
    style=st.sampled_from(["plain", "msgspec", "ascii", "slashes"]),
)
def test_texts_restore_exactly_whatever_the_escaping(text: str, style: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        path = _bundle_file(tmp_path, {"a": text, "b": "plain"}, style)
        raw = read_raw_bundle(str(path), max_bytes=1 << 30)
        assert isinstance(raw, RawBundle)  # the fast path, not the fallback
        target = _restored(tmp_path, path)
        assert (target / "a" / "handoff.md").read_bytes() == text.encode("utf-8")
        assert (target / "b" / "handoff.md").read_bytes() == b"plain"


# Escapes straddling the first chunk boundary, at every offset around it.
@pytest.mark.parametrize("shift", range(-7, 8))
@pytest.mark.parametrize(
    "tail",
    ["\\", "\\\\", "\\\\\\", '"', "\n", "\\n", "\u00e9", "\U0001f600", "\\u00e9", "\x01", "/"],
)
def test_chunk_boundaries_never_split_an_escape(tmp_path: Path, shift: int, tail: str) -> None:
    # The raw JSON string starts after its quote: put the tail's escape right on CHUNK.
    text = "x" * (CHUNK + shift) + tail * 3 + "y" * 10 + tail
    for style in ("plain", "ascii"):
        path = _bundle_file(tmp_path, {"a": text}, style)
        target = tmp_path / f"restored-{style}"
        import_bundle_file(str(path), str(target))
        assert (target / "a" / "handoff.md").read_bytes() == text.encode("utf-8"), style


def test_long_backslash_runs_across_many_chunks(tmp_path: Path) -> None:
    text = "\\" * (3 * CHUNK + 1) + "\n" + "a\\" * CHUNK
    path = _bundle_file(tmp_path, {"a": text})
    assert (_restored(tmp_path, path) / "a" / "handoff.md").read_bytes() == text.encode()


def test_text_bytes_matches_msgspec_on_every_json_escape() -> None:
    text = 'q"b\\s/ \b\f\n\r\t \x00\x1f \u00e9 \u2028 \U0001f600 C:\\users\\u0041'
    for raw in (
        msgspec.json.encode(text),
        json.dumps(text).encode(),
        json.dumps(text).replace("/", "\\/").encode(),
    ):
        pieces = text_bytes(msgspec.Raw(raw))
        assert pieces is not None
        assert b"".join(pieces) == text.encode("utf-8")


def _error_of(data: bytes, where: Path) -> str:
    with pytest.raises(BundleError) as caught:
        decode_bundle(data, str(where))
    return caught.value.message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("handoff", 42),
        ("handoff", None),
        ("task", ["a"]),
        ("status", {"a": 1}),
        ("diff", 7),
        ("transcript", True),
    ],
)
def test_mistyped_texts_fail_as_decode_bundle_says(
    tmp_path: Path, field: str, value: object
) -> None:
    doc = bundle_dict({"a": "task\n"})
    doc["workers"][0][field] = value
    data = json.dumps(doc).encode()
    path = tmp_path / "same"
    path.write_bytes(data)
    with pytest.raises(BundleError) as caught:
        read_raw_bundle(str(path), max_bytes=1 << 20)
    assert caught.value.message == _error_of(data, path)
    assert f"workers[0].{field}" in caught.value.message


def test_bad_utf8_in_a_text_fails_with_line_and_column(tmp_path: Path) -> None:
    doc = bundle_dict({"a": "task\n"})
    doc["workers"][0]["handoff"] = "PLACEHOLDER"
    data = json.dumps(doc, indent=2).encode().replace(b"PLACEHOLDER", b"caf\xe9 ok")
    path = tmp_path / "same"
    path.write_bytes(data)
    target = tmp_path / "restored"
    with pytest.raises(BundleError) as caught:
        import_bundle_file(str(path), str(target))
    assert caught.value.message == _error_of(data, path)
    assert "line" in caught.value.message and "column" in caught.value.message
    assert not target.exists()
    assert sorted(os.listdir(tmp_path)) == ["home", "same"]  # home: the test's HOME


def test_optional_texts_null_or_absent_make_no_file(tmp_path: Path) -> None:
    doc = bundle_dict({"a": "task\n", "b": "task\n"})
    doc["workers"][0]["diff"] = None
    doc["workers"][1]["diff"] = "--- a\n+++ b\n"
    path = tmp_path / "b.json"
    path.write_text(json.dumps(doc))
    target = _restored(tmp_path, path)
    assert not (target / "a" / "diff.patch").exists()
    assert (target / "b" / "diff.patch").read_text() == "--- a\n+++ b\n"


def test_empty_and_syntax_broken_files_fail_as_decode_bundle_says(tmp_path: Path) -> None:
    for name, data in (("empty", b""), ("cut", b'{"schema": "kodelyth.sess')):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(BundleError) as caught:
            read_raw_bundle(str(path), max_bytes=1 << 20)
        assert caught.value.message == _error_of(data, path)


def test_raw_and_decoded_imports_write_the_same_tree(tmp_path: Path) -> None:
    handoffs = {"a": "é\\\n" * 50_000, "b": "", "c": '{"json": "inside"}\r\n'}
    path = _bundle_file(tmp_path, handoffs, "ascii")
    fast = _restored(tmp_path, path)
    bundle = decode_bundle(path.read_bytes(), "b")
    assert isinstance(bundle, Bundle)
    slow = tmp_path / "slow"
    import_bundle(bundle, str(slow))
    for slug in handoffs:
        for name in FILES.values():
            assert (fast / slug / name).read_bytes() == (slow / slug / name).read_bytes()


def test_a_lead_byte_is_not_completed_across_an_ascii_chunk(tmp_path: Path) -> None:
    # An incomplete character at the end of one chunk, a pure-ASCII chunk, then a
    # continuation byte: invalid, though each non-ASCII chunk alone might pass.
    doc = bundle_dict({"a": "task\n"})
    doc["workers"][0]["handoff"] = "PLACEHOLDER"
    text = b"a" * (CHUNK - 2) + b"\xc3" + b"b" * CHUNK + b"\xa9"
    data = json.dumps(doc).encode().replace(b"PLACEHOLDER", text)
    path = tmp_path / "split.json"
    path.write_bytes(data)
    with pytest.raises(BundleError) as caught:
        read_raw_bundle(str(path), max_bytes=1 << 20)
    assert "not UTF-8" in caught.value.message
    # The export's check has the same shape: bad bytes become U+FFFD there.
    from kodelyth_ecc.bundleformat import valid_utf8

    fixed = valid_utf8(text)
    assert fixed != text and fixed.decode("utf-8").count("\ufffd") == 2


def test_import_bundle_file_defaults_to_the_coordination_root(tmp_path: Path) -> None:
    path = _bundle_file(tmp_path, {"a": "hello\n"})
    result = import_bundle_file(str(path), coordination_root=str(tmp_path / "coord"))
    assert result.target == str(tmp_path / "coord" / "origin")
    assert (tmp_path / "coord" / "origin" / "a" / "handoff.md").read_text() == "hello\n"
    with pytest.raises(ValueError, match="target or a coordination_root"):
        import_bundle_file(str(path))


def test_short_writes_are_resumed_where_they_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A file system may write less than asked (a signal, a quota): each call here
    # writes at most 1,000 bytes, starting inside whichever piece comes first.
    real_write = os.write

    def short_writev(fd: int, buffers: list[memoryview]) -> int:
        return real_write(fd, bytes(buffers[0])[:1000])

    monkeypatch.setattr(os, "writev", short_writev)
    text = "".join(f"line {i} é\\\n" for i in range(30_000))
    path = _bundle_file(tmp_path, {"a": text})
    assert (_restored(tmp_path, path) / "a" / "handoff.md").read_bytes() == text.encode()
