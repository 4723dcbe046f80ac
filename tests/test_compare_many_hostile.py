"""Issue 13: an experiment directory is as hostile as a bundle. Paths out of it, links,
huge or deep files and wrong types are one-line errors (exit 1) naming the field; runs
not finished are skipped with a note."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from kodelyth_ecc.compare.experiment import MAX_EXPERIMENT_BYTES
from tests.support import Result, run_cli
from tests.test_compare import write
from tests.test_compare_many import make_experiment, passes


def _experiment(tmp_path: Path) -> Path:
    return make_experiment(tmp_path / "exp", {"a": passes(1, 2, "a"), "b": passes(1, 2, "b")})


def _edit(directory: Path, change: Any) -> None:
    path = directory / "experiment.json"
    data = json.loads(path.read_text())
    change(data)
    write(directory, "experiment.json", data)


def _refused(result: Result, *texts: str) -> None:
    assert result.code == 1, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result
    assert "Traceback" not in result.stderr
    for text in texts:
        assert text in lines[0], result


@pytest.mark.parametrize("name", ["../a1.bundle.json", "sub/x.bundle.json", "..", "/etc/passwd"])
def test_a_bundle_path_out_of_the_directory_is_refused(tmp_path: Path, name: str) -> None:
    exp = _experiment(tmp_path)
    write(tmp_path, "a1.bundle.json", json.loads((exp / "arm1-rep1.bundle.json").read_text()))

    def change(data: Any) -> None:
        data["runs"][0]["bundle"] = name

    _edit(exp, change)
    _refused(
        run_cli("compare", str(exp), cwd=tmp_path),
        "runs[0].bundle",
        "is not a plain file name inside the directory",
    )


def test_a_symlinked_bundle_is_refused(tmp_path: Path) -> None:
    exp = _experiment(tmp_path)
    target = exp / "arm1-rep1.bundle.json"
    outside = tmp_path / "outside.json"
    outside.write_bytes(target.read_bytes())
    target.unlink()
    target.symlink_to(outside)
    _refused(run_cli("compare", str(exp), cwd=tmp_path), "is a symlink", "arm1-rep1")


def test_a_symlinked_experiment_file_is_refused(tmp_path: Path) -> None:
    exp = _experiment(tmp_path)
    real = tmp_path / "real-experiment.json"
    (exp / "experiment.json").rename(real)
    (exp / "experiment.json").symlink_to(real)
    _refused(run_cli("compare", str(exp), cwd=tmp_path), "experiment.json is a symlink")


def test_a_bundle_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    exp = _experiment(tmp_path)
    (exp / "arm1-rep1.bundle.json").unlink()
    (exp / "arm1-rep1.bundle.json").mkdir()
    _refused(run_cli("compare", str(exp), cwd=tmp_path), "is a directory, not a regular file")


def test_a_huge_experiment_file_is_refused_before_reading(tmp_path: Path) -> None:
    exp = _experiment(tmp_path)
    with open(exp / "experiment.json", "r+b") as fh:
        fh.truncate(MAX_EXPERIMENT_BYTES + 1)  # sparse: no 16 MiB written
    _refused(run_cli("compare", str(exp), cwd=tmp_path), "over the 16,777,216-byte limit")


def test_bundles_keep_their_size_limit(tmp_path: Path) -> None:
    exp = _experiment(tmp_path)
    result = run_cli("compare", str(exp), "--max-bundle-size", "1k", cwd=tmp_path)
    _refused(result, ".bundle.json", "over the 1,024-byte limit", "--max-bundle-size")


@pytest.mark.parametrize(
    ("change", "text"),
    [
        (lambda d: d.update(schema="kodelyth.experiment/v9"), "not 'kodelyth.experiment/v1'"),
        (lambda d: d.update(arms={"a": 1}), "arms must be a list, got dict"),
        (lambda d: d.update(runs=None), "runs must be a list, got NoneType"),
        (lambda d: d["arms"].append(7), "arms[2] must be an object, got int"),
        (lambda d: d["arms"][0].update(label=3), "arms[0].label must be a non-empty string"),
        (lambda d: d["arms"][0].update(label="x" * 600), "arms[0].label is 600 characters"),
        (lambda d: d["arms"][1].update(label="a"), 'arms[1].label "a" is given twice'),
        (lambda d: d["runs"][0].update(repeat="1"), "runs[0].repeat must be a whole number"),
        (lambda d: d["runs"][0].update(repeat=True), "runs[0].repeat must be a whole number"),
        (lambda d: d["runs"][0].update(bundle=None), "runs[0].bundle must be a non-empty"),
        (lambda d: d["runs"][1].update(run=d["runs"][0]["run"]), "is given twice"),
        (
            lambda d: d["runs"][1].update(bundle=d["runs"][0]["bundle"]),
            "is the bundle of another run too",
        ),
        (lambda d: d["runs"][0].update(state=["done"]), "runs[0].state must be a non-empty"),
    ],
)
def test_wrong_types_are_one_line_errors(tmp_path: Path, change: Any, text: str) -> None:
    exp = _experiment(tmp_path)
    _edit(exp, change)
    _refused(run_cli("compare", str(exp), cwd=tmp_path), "experiment.json", text)


@pytest.mark.parametrize(
    ("content", "text"),
    [
        (b"[1, 2]", "it must hold a JSON object, got list"),
        (b"{not json", "is not valid JSON"),
        (b"\xff\xfe{}", "is not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nests too deeply"),
        (
            b'{"schema": "kodelyth.experiment/v1", "arms": [{"label": "\\ud800x"}], "runs": []}',
            "lone surrogate",
        ),
    ],
)
def test_broken_experiment_files(tmp_path: Path, content: bytes, text: str) -> None:
    exp = _experiment(tmp_path)
    (exp / "experiment.json").write_bytes(content)
    _refused(run_cli("compare", str(exp), cwd=tmp_path), text)


def test_a_bad_bundle_gets_the_import_error(tmp_path: Path) -> None:
    exp = _experiment(tmp_path)
    (exp / "arm2-rep1.bundle.json").write_text('{"schema": "nope"}')
    _refused(run_cli("compare", str(exp), cwd=tmp_path), "arm2-rep1.bundle.json")


def test_runs_not_finished_or_of_unknown_arms_are_skipped_with_a_note(tmp_path: Path) -> None:
    exp = _experiment(tmp_path)
    os.unlink(exp / "arm2-rep2.bundle.json")

    def change(data: Any) -> None:
        data["runs"].append(
            {"run": "stray", "arm": "gone", "repeat": 1, "bundle": "stray.json", "state": "done"}
        )

    _edit(exp, change)
    result = run_cli("compare", str(exp), "--json", cwd=tmp_path)
    assert result.code == 0, result
    data = json.loads(result.stdout)
    assert [(s["run"], s["reason"]) for s in data["skipped"]] == [
        ("arm2-rep2", "no bundle (not finished)"),
        ("stray", "its arm is not in arms"),
    ]
    assert [len(arm["runs"]) for arm in data["arms"]] == [2, 1]
    assert "2 runs of" in " ".join(data["notes"])
