"""Issue 9, compare: an output file (``--html``, the blind key) never overwrites an
input bundle. Refused in one line, before anything is written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import Result, run_cli
from tests.test_compare import bundle, typical_pair, worker, write


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def _refused(result: Result, flag: str) -> None:
    assert result.code == 2, result
    assert result.stdout == "", result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result
    assert flag in lines[0] and "is the input" in lines[0], result
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("which", ["a", "b"])
def test_html_onto_an_input_is_refused_and_nothing_is_written(tmp_path: Path, which: str) -> None:
    a, b = typical_pair(tmp_path)
    before = _snapshot(tmp_path)
    target = a if which == "a" else b
    result = run_cli("compare", str(a), str(b), "--html", str(target), cwd=tmp_path)
    _refused(result, "--html")
    assert _snapshot(tmp_path) == before


def test_html_onto_an_input_by_another_name_is_refused(tmp_path: Path) -> None:
    a, b = typical_pair(tmp_path)
    (tmp_path / "link.json").symlink_to(a)
    os.link(b, tmp_path / "hard.json")
    sub = tmp_path / "sub"
    sub.mkdir()
    before = _snapshot(tmp_path)
    for target in (
        tmp_path / "link.json",  # a symlink to A
        tmp_path / "hard.json",  # a hard link to B
        Path("sub") / ".." / a.name,  # A, relative and roundabout
    ):
        result = run_cli("compare", str(a), str(b), "--html", str(target), cwd=tmp_path)
        _refused(result, "--html")
    assert _snapshot(tmp_path) == before


def test_blind_key_onto_an_input_is_refused(tmp_path: Path) -> None:
    a, b = typical_pair(tmp_path)
    before = _snapshot(tmp_path)
    result = run_cli("compare", str(a), str(b), "--blind", "--blind-key", str(b), cwd=tmp_path)
    _refused(result, "--blind-key")
    assert _snapshot(tmp_path) == before


def test_default_blind_key_beside_the_html_onto_an_input_is_refused(tmp_path: Path) -> None:
    # --html r.html writes its key to r.blind-key.json: here, that is run B's bundle.
    a, _ = typical_pair(tmp_path)
    b = write(tmp_path, "r.blind-key.json", bundle("run-b", [worker("code-reviewer")]))
    before = _snapshot(tmp_path)
    html = tmp_path / "r.html"
    result = run_cli("compare", str(a), str(b), "--blind", "--html", str(html), cwd=tmp_path)
    _refused(result, "blind key")
    assert _snapshot(tmp_path) == before
    assert not html.exists()


def test_html_and_blind_key_must_differ(tmp_path: Path) -> None:
    a, b = typical_pair(tmp_path)
    out = tmp_path / "out.html"
    result = run_cli(
        "compare", str(a), str(b), "--blind", "--html", str(out), "--blind-key", str(out),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.code == 2, result
    assert "name two different files" in result.stderr
    assert not out.exists()


def test_html_onto_the_origin_found_beside_a_replay_is_refused(tmp_path: Path) -> None:
    origin = write(tmp_path, "run-a.bundle.json", bundle("run-a", [worker("code-reviewer")]))
    replay = write(
        tmp_path,
        "run-a-replay-1.bundle.json",
        bundle(
            "run-a-replay-1",
            [worker("code-reviewer", session="run-a-replay-1")],
            meta={"replay_of": {"session": "run-a"}},
        ),
    )
    before = _snapshot(tmp_path)
    result = run_cli("compare", str(replay), "--html", str(origin), cwd=tmp_path)
    _refused(result, "--html")
    assert _snapshot(tmp_path) == before


def test_html_elsewhere_is_still_written(tmp_path: Path) -> None:
    a, b = typical_pair(tmp_path)
    html = tmp_path / "review.html"
    result = run_cli("compare", str(a), str(b), "--html", str(html), cwd=tmp_path)
    assert result.code == 0, result
    assert html.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
