"""``kodelyth-ecc session-import`` through the real CLI: reference bundles restore
byte for byte, and a hostile bundle or target is refused with one line on stderr
and leaves the disk exactly as it was (no target, no escaping path, no temp dir)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from kodelyth_ecc import importer
from kodelyth_ecc.bundle import Bundle, decode_bundle, encode_bundle, read_bundle
from kodelyth_ecc.importer import import_bundle
from tests.conftest import Sandbox
from tests.support import Result, git, run_cli_with_file_size_limit
from tests.test_bundle import (
    MUTATIONS,
    REFERENCE_BUNDLES,
    _mutated,
    assert_one_line_error,
    encode_doc,
    fixture_ids,
    full_bundle,
    minimal_doc,
)

WORKER_FILES = {"task": "task.md", "handoff": "handoff.md", "status": "status.md"}


def snapshot(path: Path) -> dict[str, bytes | str | None]:
    """Everything under ``path``: file bytes, link targets, directories as None."""
    found: dict[str, bytes | str | None] = {}
    for p in sorted(path.rglob("*")):
        key = str(p.relative_to(path))
        if p.is_symlink():
            found[key] = "-> " + os.readlink(p)
        elif p.is_file():
            found[key] = p.read_bytes()
        else:
            found[key] = None
    return found


def write_bundle_file(sandbox: Sandbox, data: bytes, name: str = "in.bundle.json") -> Path:
    inbox = sandbox.root / "inbox"
    inbox.mkdir(exist_ok=True)
    path = inbox / name
    path.write_bytes(data)
    return path


def import_cli(sandbox: Sandbox, bundle: Path, *flags: str) -> Result:
    return sandbox.cli("session-import", str(bundle), *flags)


def assert_restored(target: Path, bundle: Bundle) -> None:
    """The target holds session.json and one directory per worker whose files are
    the bundle's strings, byte for byte, and nothing else."""
    expected = {"session.json"} | {w.slug for w in bundle.workers}
    assert set(os.listdir(target)) == expected
    for worker in bundle.workers:
        worker_dir = target / worker.slug
        wanted = {name: getattr(worker, field) for field, name in WORKER_FILES.items()}
        for field, name in (("transcript", "transcript.log"), ("diff", "diff.patch"),
                            ("diffstat", "diffstat.txt")):  # fmt: skip
            if getattr(worker, field) is not None:
                wanted[name] = getattr(worker, field)
        assert sorted(os.listdir(worker_dir)) == sorted(wanted)
        for name, text in wanted.items():
            assert (worker_dir / name).read_bytes() == text.encode("utf-8"), (worker.slug, name)


# --- reference bundles and what we write -----------------------------------------------


@pytest.mark.parametrize("path", REFERENCE_BUNDLES, ids=fixture_ids())
def test_reference_bundle_imports_byte_identical(sandbox: Sandbox, path: Path) -> None:
    bundle = read_bundle(str(path))
    target = sandbox.root / "restored"
    result = import_cli(sandbox, path, "--target", str(target))
    assert result.code == 0, result
    assert result.stdout == (
        f"imported {bundle.session} ({len(bundle.workers)} workers) into {target}\n"
    )
    assert result.stderr == ""
    assert_restored(target, bundle)
    record = json.loads((target / "session.json").read_text(encoding="utf-8"))
    assert record["session"] == bundle.session
    assert record["mode"] == "imported"
    # Never a path that teardown would act on.
    assert record["repo_root"] == ""
    assert record["worktree_root"] == ""
    assert record["workers"] == []
    assert record["tmux_session"] is None
    assert record["bundle_meta"] == bundle.meta
    assert record["imported_from"]["bundle"] == str(path)
    # Only the target was created next to it.
    assert sorted(os.listdir(sandbox.root)) == ["repo", "restored"]


def test_optional_worker_fields_restore_as_files(sandbox: Sandbox, tmp_path: Path) -> None:
    bundle = full_bundle()
    bundle.meta["launcher"] = f"touch {tmp_path / 'pwned'}"
    path = write_bundle_file(sandbox, encode_bundle(bundle))
    target = sandbox.root / "restored"
    assert import_cli(sandbox, path, "--target", str(target)).code == 0
    assert_restored(target, bundle)
    assert not (tmp_path / "pwned").exists()  # importing runs nothing from the bundle


def test_default_target_is_under_the_coord_root_and_stays_out_of_git(sandbox: Sandbox) -> None:
    path = REFERENCE_BUNDLES[0]
    bundle = read_bundle(str(path))
    result = import_cli(sandbox, path)
    assert result.code == 0, result
    target = sandbox.coord_root / bundle.session
    assert result.stdout.endswith(f"into {target}\n")
    assert_restored(target, bundle)
    assert (sandbox.coord_root / ".gitignore").read_text() == "*\n"
    assert git(sandbox.repo, "status", "--porcelain", "--untracked-files=all") == ""


def test_coord_root_flag(sandbox: Sandbox, tmp_path: Path) -> None:
    path = REFERENCE_BUNDLES[1]
    bundle = read_bundle(str(path))
    root = tmp_path / "elsewhere" / "coord"
    result = sandbox.cli("session-import", str(path), "--coord-root", str(root), cwd=tmp_path)
    assert result.code == 0, result
    assert_restored(root / bundle.session, bundle)
    assert not (root / ".gitignore").exists()  # outside the repo: nothing to hide from git
    assert not sandbox.coord_root.exists()


def test_overwrite_replaces_the_whole_directory(sandbox: Sandbox) -> None:
    path = REFERENCE_BUNDLES[0]
    bundle = read_bundle(str(path))
    target = sandbox.root / "restored"
    (target / "stale-worker").mkdir(parents=True)
    (target / "stale-worker" / "task.md").write_text("old\n")
    (target / "notes.txt").write_text("old notes\n")
    result = import_cli(sandbox, path, "--target", str(target), "--overwrite")
    assert result.code == 0, result
    assert result.stdout.startswith(f"replaced {bundle.session} (")
    assert_restored(target, bundle)
    # No staging or old copy left beside it.
    assert sorted(os.listdir(sandbox.root)) == ["repo", "restored"]


def test_existing_target_without_overwrite_is_refused_untouched(sandbox: Sandbox) -> None:
    target = sandbox.root / "restored"
    target.mkdir()
    (target / "keep.md").write_text("mine\n")
    before = snapshot(sandbox.root)
    result = import_cli(sandbox, REFERENCE_BUNDLES[0], "--target", str(target))
    assert_one_line_error(result, 1, "already exists", "--overwrite")
    assert snapshot(sandbox.root) == before


def test_existing_file_target_is_refused_even_with_overwrite(sandbox: Sandbox) -> None:
    target = sandbox.root / "restored"
    target.write_text("a file\n")
    before = snapshot(sandbox.root)
    result = import_cli(sandbox, REFERENCE_BUNDLES[0], "--target", str(target), "--overwrite")
    assert_one_line_error(result, 1, "is not a directory")
    assert snapshot(sandbox.root) == before


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("kind", ["to-dir", "dangling"])
def test_symlink_target_is_refused_and_nothing_goes_through_it(
    sandbox: Sandbox, kind: str, overwrite: bool
) -> None:
    real = sandbox.root / "real"
    if kind == "to-dir":
        real.mkdir()
        (real / "precious.md").write_text("keep me\n")
    link = sandbox.root / "link"
    link.symlink_to(real, target_is_directory=True)
    before = snapshot(sandbox.root)
    flags = ["--target", str(link), *(["--overwrite"] if overwrite else [])]
    result = import_cli(sandbox, REFERENCE_BUNDLES[0], *flags)
    assert_one_line_error(result, 1, "is a symlink", "refusing")
    assert snapshot(sandbox.root) == before
    assert link.is_symlink()
    assert kind == "to-dir" or not real.exists()


# --- hostile bundles ------------------------------------------------------------------

GOOD = encode_doc(minimal_doc())


def _with_name(field: str, name: str) -> bytes:
    doc = minimal_doc()
    if field == "session":
        doc["session"] = name
    else:
        doc["workers"][1]["slug"] = name
    return encode_doc(doc)


def _bad_json_cases() -> list[Any]:
    return [
        pytest.param(
            b'{\n  "schema": nope\n}', ("not valid JSON", "line 2, column 13"), id="parse"
        ),
        pytest.param(GOOD[:80], ("not valid JSON", "line 4, column"), id="truncated"),
        pytest.param(b"", ("not valid JSON", "line 1, column 1"), id="empty-file"),
        pytest.param(GOOD.replace(b"do a", b"do \xff"), ("not UTF-8", "line 10"), id="not-utf8"),
        pytest.param(b"[1, 2]\n", ("Expected `object`, got `array`",), id="array"),
        pytest.param(b"null\n", ("Expected `object`, got `null`",), id="null"),
        pytest.param(b'"a string"\n', ("Expected `object`, got `str`",), id="string"),
    ]


def _mutation_cases() -> list[Any]:
    return [
        pytest.param(encode_doc(_mutated(change)), (needle,), id=change)
        for change, needle in MUTATIONS.items()
    ]


# Names that would leave the target, or hide in it; each with the paths it aims at
# (relative to the sandbox root: the repo is root/repo, the coord root repo/.orchestration).
UNSAFE = {
    "slash": ("a/b", ["repo/.orchestration/s1/a/b", "repo/.orchestration/a/b"]),
    "backslash": ("a\\b", ["repo/.orchestration/s1/a\\b", "repo/.orchestration/a\\b"]),
    "dotdot": ("..", ["repo/.orchestration/s1/task.md"]),
    "escape": ("../escape", ["repo/.orchestration/escape", "repo/escape"]),
    "escape-up": ("../../escape", ["repo/escape", "escape"]),
    "escape-far": ("../../../../escape", ["escape", "../escape", "../../escape"]),
    "leading-dot": (".hidden", ["repo/.orchestration/.hidden", "repo/.orchestration/s1/.hidden"]),
    "empty": ("", ["repo/.orchestration/s1/task.md"]),
}


def _unsafe_cases() -> list[Any]:
    cases = []
    for field in ("slug", "session"):
        for key, (name, aims) in UNSAFE.items():
            cases.append(
                pytest.param(
                    _with_name(field, name),
                    ("not one safe path component",),
                    aims,
                    id=f"{field}-{key}",
                )
            )
    return cases


# The refusals the issue names, through the real CLI into the default target (the
# coordination root in the repo, which does not exist yet). Every case, in process below.
CLI_CASES = {
    "parse", "truncated", "empty-file", "not-utf8", "array", "null", "wrong-schema",
    "no-session", "worker-no-handoff", "slug-int", "task-null", "empty-workers", "duplicate",
    "seed-paths-int", "reserved-slug", "slug-slash", "slug-backslash", "slug-dotdot",
    "slug-escape-up", "slug-leading-dot", "session-escape", "session-backslash",
    "session-leading-dot", "session-dotdot", "session-escape-far",
}  # fmt: skip


def _all_cases() -> list[Any]:
    cases = []
    for case in _bad_json_cases() + _mutation_cases():
        data, needles = case.values
        cases.append(pytest.param(data, needles, [], id=case.id))
    return cases + _unsafe_cases()


ALL_CASES = _all_cases()


@pytest.mark.parametrize(("data", "needles", "aims"), [c for c in ALL_CASES if c.id in CLI_CASES])
def test_hostile_bundle_leaves_the_disk_untouched(
    sandbox: Sandbox, data: bytes, needles: tuple[str, ...], aims: list[str]
) -> None:
    path = write_bundle_file(sandbox, data)
    before = snapshot(sandbox.root.parent)
    line = assert_one_line_error(import_cli(sandbox, path), 1, *needles)
    assert str(path) in line  # the message names the file
    assert snapshot(sandbox.root.parent) == before
    assert not sandbox.coord_root.exists()
    for aim in aims:
        assert not os.path.lexists(sandbox.root / aim), aim


def test_every_cli_case_is_a_known_case() -> None:
    assert {c.id for c in ALL_CASES} >= CLI_CASES


@pytest.mark.parametrize("mode", ["default-target", "existing-target"])
@pytest.mark.parametrize(("data", "needles", "aims"), ALL_CASES)
def test_hostile_bundle_in_process_leaves_the_disk_untouched(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    data: bytes,
    needles: tuple[str, ...],
    aims: list[str],
    mode: str,
) -> None:
    """``main()`` in process (no interpreter start per case): every hostile case, into
    a fresh coord root, or over an existing target with --overwrite."""
    from kodelyth_ecc.main import main

    work = tmp_path / "work"
    root = work / "repo" / ".orchestration"
    victim = work / "victim"
    victim.mkdir(parents=True)
    (victim / "mine.md").write_text("keep\n")
    path = tmp_path / "in.json"
    path.write_bytes(data)
    monkeypatch.chdir(work)
    before = snapshot(tmp_path)
    if mode == "default-target":
        code = main(["session-import", str(path), "--coord-root", str(root)])
    else:
        code = main(["session-import", str(path), "--target", str(victim), "--overwrite"])
    out, err = capsys.readouterr()
    assert_one_line_error(Result(code, out, err), 1, *needles)
    assert snapshot(tmp_path) == before
    for aim in aims:
        assert not os.path.lexists(work / aim), aim


@pytest.mark.parametrize("field", ["slug", "session"])
def test_absolute_path_names_are_refused(sandbox: Sandbox, tmp_path: Path, field: str) -> None:
    aim = tmp_path / "absolute-escape"
    path = write_bundle_file(sandbox, _with_name(field, str(aim)))
    result = import_cli(sandbox, path)
    line = assert_one_line_error(result, 1, "not one safe path component")
    assert str(aim) not in line, "a hostile name is echoed in the error"
    assert not aim.exists()
    assert not sandbox.coord_root.exists()


def test_missing_bundle_file_and_directory(sandbox: Sandbox) -> None:
    assert_one_line_error(import_cli(sandbox, sandbox.root / "nope.json"), 1, "does not exist")
    assert_one_line_error(import_cli(sandbox, sandbox.root), 1, "is a directory")
    assert not sandbox.coord_root.exists()


def test_size_cap_and_the_flag_raising_it(sandbox: Sandbox) -> None:
    path = REFERENCE_BUNDLES[0]
    size = path.stat().st_size
    assert 4096 < size < 64 * 1024
    before = snapshot(sandbox.root)
    result = import_cli(sandbox, path, "--max-bundle-size", "4K")
    assert_one_line_error(result, 1, f"is {size:,} bytes", "over the 4,096-byte limit",
                          "--max-bundle-size")  # fmt: skip
    assert snapshot(sandbox.root) == before
    result = import_cli(sandbox, path, "--max-bundle-size", str(size - 1))
    assert_one_line_error(result, 1, f"over the {size - 1:,}-byte limit")
    assert snapshot(sandbox.root) == before
    # Exactly at the cap, or raised above it, the bundle imports.
    result = import_cli(sandbox, path, "--max-bundle-size", str(size))
    assert result.code == 0, result
    result = import_cli(sandbox, path, "--max-bundle-size", "64K", "--target",
                        str(sandbox.root / "raised"))  # fmt: skip
    assert result.code == 0, result
    assert_one_line_error(import_cli(sandbox, path, "--max-bundle-size", "lots"), 2, "not a size")


# --- failures while writing -------------------------------------------------------------


def _two_worker_bundle(big: int) -> Bundle:
    doc = minimal_doc(session="fresh")
    doc["workers"][1]["handoff"] = "z" * big
    return decode_bundle(encode_doc(doc))


def _import_with_file_size_limit(sandbox: Sandbox, limit: int, *args: str) -> Result:
    return run_cli_with_file_size_limit(limit, "session-import", *args, cwd=sandbox.repo)


def test_a_write_failing_midway_leaves_the_old_target_and_no_temp_dir(sandbox: Sandbox) -> None:
    """The real CLI, with a file-size limit the second worker's handoff exceeds."""
    path = write_bundle_file(sandbox, encode_bundle(_two_worker_bundle(200_000)))
    target = sandbox.root / "restored"
    (target / "old").mkdir(parents=True)
    (target / "old" / "task.md").write_text("the old session\n")
    before = snapshot(sandbox.root)
    result = _import_with_file_size_limit(
        sandbox, 64 * 1024, str(path), "--target", str(target), "--overwrite"
    )
    assert_one_line_error(result, 1, f"cannot import into {target}", "File too large",
                          "nothing was changed")  # fmt: skip
    assert snapshot(sandbox.root) == before
    # Into the default coord root, which does not exist yet: it is not left behind either.
    result = _import_with_file_size_limit(sandbox, 64 * 1024, str(path))
    assert_one_line_error(result, 1, "File too large")
    assert not sandbox.coord_root.exists()
    assert snapshot(sandbox.root) == before


def _fail_on_call(n: int, exc: BaseException) -> Callable[..., None]:
    real = importer._write_new
    calls = {"n": 0}

    def write_new(path: str, pieces: Iterable[bytes]) -> None:
        calls["n"] += 1
        if calls["n"] == n:
            raise exc
        real(path, pieces)

    return write_new


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt()])
@pytest.mark.parametrize("nth", [1, 4, 6])
def test_interrupted_import_keeps_the_old_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nth: int, exc: BaseException
) -> None:
    bundle = _two_worker_bundle(10)
    parent = tmp_path / "coord"
    target = parent / "fresh"
    (target / "old").mkdir(parents=True)
    (target / "old" / "task.md").write_text("old\n")
    before = snapshot(tmp_path)
    monkeypatch.setattr(importer, "_write_new", _fail_on_call(nth, exc))
    with pytest.raises(type(exc)):
        import_bundle(bundle, str(target), overwrite=True)
    assert snapshot(tmp_path) == before


def test_failure_at_the_swap_puts_the_old_target_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = _two_worker_bundle(10)
    target = tmp_path / "coord" / "fresh"
    (target / "old").mkdir(parents=True)
    (target / "old" / "task.md").write_text("old\n")
    before = snapshot(tmp_path)
    real_rename = os.rename

    def rename(src: str, dst: str) -> None:
        if os.path.basename(src).startswith(".fresh.") and src.endswith(".import"):
            raise OSError(5, "Input/output error")
        real_rename(src, dst)

    def exchange(a: str, b: str) -> bool:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "rename", rename)
    for swap in (exchange, lambda a, b: False):  # the atomic exchange, then the fallback
        monkeypatch.setattr(importer, "_exchange", swap)
        with pytest.raises(OSError, match="Input/output error"):
            import_bundle(bundle, str(target), overwrite=True)
        assert snapshot(tmp_path) == before
    monkeypatch.setattr(os, "rename", real_rename)


def test_failure_into_missing_parents_removes_the_parents_it_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "a" / "b" / "c" / "fresh"
    monkeypatch.setattr(importer, "_write_new", _fail_on_call(2, OSError(28, "No space")))
    with pytest.raises(OSError):
        import_bundle(_two_worker_bundle(10), str(target))
    assert not (tmp_path / "a").exists()


def test_import_bundle_validates_before_writing(tmp_path: Path) -> None:
    """The library checks too: a Bundle built in Python is not trusted either."""
    bundle = _two_worker_bundle(10)
    bundle.workers[1].slug = "../escape"
    with pytest.raises(Exception, match="not one safe path component"):
        import_bundle(bundle, str(tmp_path / "coord" / "fresh"))
    assert sorted(os.listdir(tmp_path)) == ["home"]
