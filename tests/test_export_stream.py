"""The streaming exporter behind ``session-export`` writes exactly the bytes that
``encode_bundle(export_bundle(...))`` gives, for every kind of field."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from kodelyth_ecc.bundle import encode_bundle
from kodelyth_ecc.bundleformat import json_string
from kodelyth_ecc.export import export_bundle, export_to_stream
from tests.conftest import Sandbox
from tests.swarm_helpers import started, wait_done

# Colours, a title sequence, a tab, a CR, a rare control, quotes, backslashes, non-ASCII;
# an edit, a new file and a commit in the worktree, so diff and diffstat are non-empty.
LAUNCHER = (
    "printf '\\033[31mred\\033[0m \\033]2;title\\007tab\\there \"q\" back\\\\slash é 東\\r\\n'"
    " | tee -a {handoff_file_sh}; printf 'bell\\001\\n' >> {handoff_file_sh};"
    " echo changed >> README.md; echo new > added.txt;"
    " git add added.txt && git -c user.name=t -c user.email=t@e.invalid"
    " commit -q --no-gpg-sign -m w"
)


@pytest.mark.parametrize("to_file", [True, False], ids=["file", "stream"])
def test_streamed_export_is_byte_identical_to_encode_bundle(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, to_file: bool
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    started(sandbox, "st", "--agents", "alpha,beta", "--launcher-cmd", LAUNCHER)
    wait_done(sandbox, "st")
    root = str(sandbox.coord_root)
    expected = encode_bundle(export_bundle("st", root))
    # The session exercises every optional field.
    for field in (b'"diff": "', b'"diffstat": "', b'"transcript": "', b'"duration_s": '):
        assert field in expected
    assert b"\\u0001" in expected and b"\\r" in expected and "東".encode() in expected
    if to_file:
        out = tmp_path / "b.json"
        assert export_to_stream("st", root, str(out)) == 2
        assert out.read_bytes() == expected
    else:
        buffer = io.BytesIO()
        assert export_to_stream("st", root, buffer) == 2
        assert buffer.getvalue() == expected


def test_cli_export_matches_the_library(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    started(sandbox, "cl", "--agents", "alpha", "--launcher-cmd", LAUNCHER)
    wait_done(sandbox, "cl")
    result = sandbox.cli("session-export", "cl", "--out", "-")
    assert result.code == 0, result
    expected = encode_bundle(export_bundle("cl", str(sandbox.coord_root)))
    assert result.stdout.encode() == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "plain",
        'q"uo\\te',
        "\x00\x07\x08\x0b\x0c\x1b\x1f\x7f",
        "é東\U0001f600\u2028",
        "a\r\nb\n",
    ],
)
def test_json_string_escapes_like_msgspec(text: str) -> None:
    import msgspec

    assert json_string(text.encode()) == msgspec.json.encode(text)
