"""Issue 9: the session on disk has one owner (``sessiondir``), and the defects hostile
input found in import, export, status and the name rules stay fixed.

Real git, real tmux, the real CLI; a kill between two renames is injected with strace
on the real process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from kodelyth_ecc import bundle as bundle_module
from kodelyth_ecc import rawbundle, sessiondir
from kodelyth_ecc.bundleformat import WORKER_FIELDS as WRITER_FIELDS
from tests.conftest import Sandbox
from tests.swarm_helpers import started, wait_done
from tests.test_bundle import assert_one_line_error, encode_doc, minimal_doc
from tests.test_export import make_worker

STRACE = shutil.which("strace")


def write_bundle(path: Path, doc: dict[str, Any]) -> Path:
    path.write_bytes(encode_doc(doc))
    return path


def tree(path: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(path)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(path.rglob("*"))
    }


# --- one table of worker fields ------------------------------------------------------


def test_every_worker_view_derives_from_the_one_table() -> None:
    names = tuple(f.name for f in sessiondir.WORKER_FIELDS)
    assert bundle_module.BundleWorker.__struct_fields__ == names
    assert rawbundle.RawWorker.__struct_fields__ == names
    assert names == WRITER_FIELDS
    required = {f.name for f in sessiondir.WORKER_FIELDS if f.required}
    assert set(bundle_module.BundleWorker.__struct_fields__) - required == {
        f.name for f in sessiondir.WORKER_FIELDS if not f.required
    }
    # Each text field with a file is restored as that file.
    assert dict(sessiondir.FILE_FIELDS)["handoff"] == "handoff.md"
    fields = {*sessiondir.TEXT_FIELDS, *sessiondir.OBJECT_FIELDS, *sessiondir.EXCHANGE_FIELDS}
    assert fields >= {name for name, _ in sessiondir.FILE_FIELDS}


def test_a_field_added_to_the_table_reaches_the_struct(monkeypatch: pytest.MonkeyPatch) -> None:
    """Adding a field is one edit: the struct built from the table takes it."""
    extra = (*sessiondir.WORKER_FIELDS, sessiondir.WorkerField("usage_note", "str"))
    monkeypatch.setattr(bundle_module, "WORKER_FIELDS", extra)
    struct = msgspec.defstruct("W", bundle_module.worker_struct_fields(), omit_defaults=True)
    worker = msgspec.json.decode(
        b'{"slug":"a","task":"","handoff":"","status":"","usage_note":"n"}', type=struct
    )
    assert msgspec.structs.asdict(worker)["usage_note"] == "n"


# --- one rule for names (item 15) ----------------------------------------------------


def test_a_dotted_session_name_is_refused_at_import_like_everywhere(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    path = write_bundle(tmp_path / "b.json", minimal_doc(session="my.session"))
    result = sandbox.cli("session-import", str(path))
    assert_one_line_error(result, 1, "session is not one safe path component")
    assert not sandbox.coord_root.exists()
    for args in (["status", "my.session"], ["teardown", "my.session"], ["replay", "my.session"]):
        line = assert_one_line_error(sandbox.cli(*args), 2, "invalid session name 'my.session'")
        assert "letters, digits, '_' or '-'" in line


@pytest.mark.parametrize("length", [65, 128])
def test_long_slugs_are_refused_at_import_as_agent_names_are(
    sandbox: Sandbox, tmp_path: Path, length: int
) -> None:
    doc = minimal_doc()
    doc["workers"][0]["slug"] = "a" * length
    path = write_bundle(tmp_path / "b.json", doc)
    assert_one_line_error(sandbox.cli("session-import", str(path)), 1, "at most 64")
    too_long = sandbox.cli("swarm", "--task", "t", "--agents", "a" * length)
    assert_one_line_error(too_long, 2, "at most 64 characters")


def test_a_64_character_slug_works_everywhere(sandbox: Sandbox, tmp_path: Path) -> None:
    slug = "a" * 64
    doc = minimal_doc(session="s64")
    doc["workers"] = [doc["workers"][0]]
    doc["workers"][0]["slug"] = slug
    path = write_bundle(tmp_path / "b.json", doc)
    assert sandbox.cli("session-import", str(path)).code == 0
    status = sandbox.cli("status", "s64", "--json")
    assert status.code == 0, status
    assert json.loads(status.stdout)["session"]["workers"][0]["slug"] == slug
    dry = sandbox.cli("replay", str(path), "--harness", "echo")
    assert dry.code == 0, dry


# --- import: reserved names, live sessions, atomic replacement (items 4, 5) ----------


def test_import_refuses_the_teardown_dir_as_a_target(sandbox: Sandbox, tmp_path: Path) -> None:
    saved = sandbox.coord_root / "s1.teardown"
    saved.mkdir(parents=True)
    (saved / "w-20260101T000000Z.patch").write_bytes(b"saved work\n")
    before = tree(saved)
    path = write_bundle(tmp_path / "b.json", minimal_doc())
    result = sandbox.cli("session-import", str(path), "--target", str(saved), "--overwrite")
    assert_one_line_error(result, 1, "reserved by kodelyth-ecc", "saved teardown work")
    assert tree(saved) == before


def test_import_overwrite_refuses_a_live_session(sandbox: Sandbox, tmp_path: Path) -> None:
    started(sandbox, "live", launcher="sleep 30")
    live_dir = sandbox.coord_root / "live"
    before = tree(live_dir)
    doc = minimal_doc(session="live")
    path = write_bundle(tmp_path / "b.json", doc)
    result = sandbox.cli("session-import", str(path), "--overwrite")
    line = assert_one_line_error(result, 1, "holds a live session", "kodelyth-ecc teardown live")
    assert "tmux session" in line
    assert tree(live_dir) == before


def test_import_overwrite_refuses_while_worktrees_are_registered(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    started(sandbox, "done1")
    wait_done(sandbox, "done1")
    subprocess.run(
        ["tmux", "kill-session", "-t", "=done1"], check=True, capture_output=True, text=True
    )
    path = write_bundle(tmp_path / "b.json", minimal_doc(session="done1"))
    result = sandbox.cli("session-import", str(path), "--overwrite")
    assert_one_line_error(result, 1, "worktrees are still registered")
    # Torn down, the name is free for the import.
    assert sandbox.cli("teardown", "done1", "--purge").code == 0
    assert sandbox.cli("session-import", str(path), "--overwrite").code == 0


def _import_under_strace(
    sandbox: Sandbox, bundle_path: Path, target: Path, nth: int
) -> subprocess.CompletedProcess[str]:
    """The real CLI, SIGKILLed by strace at its ``nth`` rename-family call."""
    assert STRACE is not None
    return subprocess.run(
        [
            STRACE, "-qq", "-o", "/dev/null",
            "-e", "trace=rename,renameat,renameat2",
            "-e", f"inject=rename,renameat,renameat2:signal=KILL:when={nth}",
            sys.executable, "-m", "kodelyth_ecc", "session-import", str(bundle_path),
            "--target", str(target), "--overwrite",
        ],
        cwd=sandbox.repo, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.skipif(STRACE is None and not os.environ.get("CI"), reason="needs strace")
@pytest.mark.parametrize("nth", [1, 2, 3])
def test_a_kill_during_overwrite_leaves_the_old_or_the_new_tree(
    sandbox: Sandbox, tmp_path: Path, nth: int
) -> None:
    old_doc = minimal_doc(session="s1")
    new_doc = minimal_doc(session="s1")
    for worker in new_doc["workers"]:
        worker["handoff"] = "the new handoff\n"
    target = tmp_path / "coord" / "s1"
    first = sandbox.cli(
        "session-import", str(write_bundle(tmp_path / "old.json", old_doc)), "--target", str(target)
    )
    assert first.code == 0, first
    old_handoffs = {p.parent.name: p.read_bytes() for p in target.glob("*/handoff.md")}
    new_path = write_bundle(tmp_path / "new.json", new_doc)
    killed = _import_under_strace(sandbox, new_path, target, nth)
    handoffs = {p.parent.name: p.read_bytes() for p in target.glob("*/handoff.md")}
    assert target.is_dir(), f"no target after a kill at rename {nth} (exit {killed.returncode})"
    assert (target / "session.json").is_file()
    assert handoffs in (old_handoffs, dict.fromkeys(old_handoffs, b"the new handoff\n"))
    # The next run cleans up what the killed one left, and succeeds.
    again = sandbox.cli("session-import", str(new_path), "--target", str(target), "--overwrite")
    assert again.code == 0, again
    assert sorted(p.name for p in target.parent.iterdir()) == ["s1"]
    assert (target / "alpha" / "handoff.md").read_bytes() == b"the new handoff\n"


def test_a_killed_export_leaves_a_temp_file_the_next_export_removes(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    make_worker(sandbox.coord_root, "s1", "w", task="t", handoff="h", status="- State: done\n")
    out = tmp_path / "out.bundle.json"
    # What a SIGKILLed export leaves: a temp sibling named with its (now dead) pid.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    leftover = tmp_path / f".out.bundle.json.{dead}.deadbeef.tmp"
    leftover.write_bytes(b'{"partial')
    # A live process's temp file is its work in progress: it stays.
    live = tmp_path / f".out.bundle.json.{os.getpid()}.cafecafe.tmp"
    live.write_bytes(b"in progress")
    result = sandbox.cli("session-export", "s1", "--out", str(out))
    assert result.code == 0, result
    assert not leftover.exists()
    assert live.exists()
    assert json.loads(out.read_bytes())["session"] == "s1"


# --- export reads nothing through links or special files (item 12) -------------------


def test_export_refuses_a_handoff_linked_to_a_private_key(sandbox: Sandbox) -> None:
    key = sandbox.home / ".ssh" / "id_ed25519"
    key.parent.mkdir()
    marker = "PRIVATE-KEY-" + os.urandom(8).hex()
    key.write_text(marker + "\n")
    worker = make_worker(sandbox.coord_root, "s1", "w", task="t", status="- State: completed\n")
    (worker / "handoff.md").symlink_to(key)
    result = sandbox.cli("session-export", "s1", "--out", "-")
    assert marker not in result.stdout + result.stderr, "the linked key reached the output"
    assert_one_line_error(result, 1, f"{worker / 'handoff.md'} is a symlink")
    assert not (sandbox.coord_root / "s1.bundle.json").exists()


@pytest.mark.parametrize("name", ["transcript.log", "handoff.md", "status.md"])
def test_a_fifo_in_a_session_is_refused_not_waited_on(sandbox: Sandbox, name: str) -> None:
    worker = make_worker(sandbox.coord_root, "s1", "w", task="t")
    os.mkfifo(worker / name)
    for args in (["session-export", "s1", "--out", "-"], ["compare", "s1", "s1"]):
        result = sandbox.cli(*args)  # run_cli's timeout fails the test if it hangs
        assert_one_line_error(result, 1, f"{worker / name} is a FIFO, not a regular file")


def test_a_transcript_linked_to_dev_zero_is_refused(sandbox: Sandbox) -> None:
    worker = make_worker(sandbox.coord_root, "s1", "w", task="t", handoff="h")
    (worker / "transcript.log").symlink_to("/dev/zero")
    result = sandbox.cli("session-export", "s1", "--out", "-")
    assert_one_line_error(result, 1, "transcript.log is a symlink")


def test_a_symlinked_worker_dir_is_not_a_worker(sandbox: Sandbox, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "handoff.md").write_text("not this session's\n")
    make_worker(sandbox.coord_root, "s1", "w", task="t", handoff="h")
    (sandbox.coord_root / "s1" / "linked").symlink_to(elsewhere)
    result = sandbox.cli("session-export", "s1", "--out", "-")
    assert result.code == 0, result
    assert [w["slug"] for w in json.loads(result.stdout)["workers"]] == ["w"]


def test_sessiondir_reads_are_capped_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * 5000)
    with pytest.raises(sessiondir.UnsafeFile, match="over the 1,000-byte limit"):
        sessiondir.read_file(str(big), 1000)
    assert sessiondir.read_file(str(big), 1000, truncate=True) == b"x" * 1000
    big.write_bytes(b"a" * 4000 + b"tail")
    assert sessiondir.read_file(str(big), 4, tail=True) == b"tail"
    assert sessiondir.read_file(str(tmp_path / "missing"), 10) is None


# --- numbers and depth are validation rules (item 14) --------------------------------


def test_a_huge_exit_code_in_one_status_file_breaks_nothing(sandbox: Sandbox) -> None:
    make_worker(sandbox.coord_root, "bad", "w", task="t",
                status="- State: failed\n- Exit code: " + "9" * 5000 + "\n")  # fmt: skip
    make_worker(sandbox.coord_root, "good", "w", task="t", status="- State: completed\n")
    listing = sandbox.cli("status")
    assert listing.code == 0, listing
    assert "bad" in listing.stdout
    assert "good" in listing.stdout
    table = sandbox.cli("status", "bad", "--json")
    assert table.code == 0, table
    assert json.loads(table.stdout)["session"]["workers"][0]["exit_code"] is None
    export = sandbox.cli("session-export", "bad", "--out", "-")
    assert export.code == 0, export
    assert "exit_code" not in json.loads(export.stdout)["workers"][0]
    replay = sandbox.cli("replay", "bad", "--harness", "echo")
    assert replay.code == 0, replay


def _deep(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"k": value}
    return value


@pytest.mark.parametrize("depth", [40, 600, 1000])
def test_deep_meta_is_a_one_line_error_everywhere(
    sandbox: Sandbox, tmp_path: Path, depth: int
) -> None:
    doc = minimal_doc(meta={"task": "t"})
    path = tmp_path / "deep.bundle.json"
    # Built as text: json.dumps itself would hit the recursion limit.
    body = encode_doc(doc).decode()
    nested = '{"k":' * depth + '"leaf"' + "}" * depth
    path.write_text(body.replace('"meta": {', f'"meta": {{"deep": {nested},', 1))
    for args in (
        ["session-import", str(path)],
        ["compare", str(path), str(path)],
        ["sanitize", str(path), "--check"],
        ["replay", str(path), "--harness", "echo"],
    ):
        assert_one_line_error(sandbox.cli(*args), 1, "nests deeper than 32 levels")


def test_an_absurd_max_bundle_size_is_a_usage_error(sandbox: Sandbox, tmp_path: Path) -> None:
    path = write_bundle(tmp_path / "b.json", minimal_doc())
    for size in ("8589934592G", "9" * 5000):
        result = sandbox.cli("session-import", str(path), "--max-bundle-size", size)
        assert result.code == 2, result
        assert "Traceback" not in result.stderr
        assert "internal error" not in result.stderr
        assert "--max-bundle-size" in result.stderr
    assert sandbox.cli("session-import", str(path), "--max-bundle-size", "1T").code == 0


# --- status (items 13, 19) -----------------------------------------------------------


def test_status_never_sends_a_status_files_escapes_to_the_terminal(sandbox: Sandbox) -> None:
    hostile = "\x1b]52;c;cHduZWQ=\x07\x1b[2J\u202erunning"
    make_worker(sandbox.coord_root, "s1", "w", task="t", status=f"- State: {hostile}\n")
    for args in (["status"], ["status", "s1"]):
        result = sandbox.cli(*args)
        assert result.code == 0, result
        for raw in ("\x1b", "\x07", "\u202e"):
            assert raw not in result.stdout + result.stderr, f"{raw!r} reached the terminal"
        assert "\\x1b]52" in result.stdout


def test_a_symlinked_status_file_is_reported_not_followed(sandbox: Sandbox) -> None:
    worker = make_worker(sandbox.coord_root, "s1", "w", task="t")
    (worker / "status.md").symlink_to("/etc/passwd")
    result = sandbox.cli("status", "s1")
    assert result.code == 0, result
    assert "root:" not in result.stdout
    assert "unreadable" in result.stdout
    assert "is a symlink" in result.stdout


def test_waiting_on_an_imported_session_says_it_was_imported(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    path = write_bundle(tmp_path / "b.json", minimal_doc(session="imp1"))
    assert sandbox.cli("session-import", str(path)).code == 0
    # One worker still "running" in the bundle, so there would be something to wait for.
    status = sandbox.coord_root / "imp1" / "alpha" / "status.md"
    status.write_text("- State: running\n")
    result = sandbox.cli("status", "imp1", "--wait", "--timeout", "5")
    line = assert_one_line_error(result, 1, "was imported from a bundle and never ran here")
    assert "--write-only" not in line
    assert "kodelyth-ecc replay imp1 --execute" in line


def test_status_lists_sessions_with_any_valid_name(sandbox: Sandbox) -> None:
    make_worker(sandbox.coord_root, "with_underscore-1", "w", task="t")
    result = sandbox.cli("status")
    assert result.code == 0, result
    assert "with_underscore-1" in result.stdout


# --- found by the adversarial pass ---------------------------------------------------


def test_overwrite_refuses_a_live_session_whose_record_is_damaged(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    started(sandbox, "live2", launcher="sleep 30")
    live_dir = sandbox.coord_root / "live2"
    (live_dir / "session.json").write_text("{broken")
    before = tree(live_dir)
    path = write_bundle(tmp_path / "b.json", minimal_doc(session="live2"))
    result = sandbox.cli("session-import", str(path), "--overwrite")
    assert_one_line_error(result, 1, "holds a live session", "tmux session 'live2' is running")
    assert tree(live_dir) == before


def test_overwrite_refuses_a_coordination_root_and_a_git_repository(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    started(sandbox, "cr1")
    wait_done(sandbox, "cr1")
    path = write_bundle(tmp_path / "b.json", minimal_doc())
    result = sandbox.cli("session-import", str(path), "--target", str(sandbox.coord_root),
                         "--overwrite")  # fmt: skip
    assert_one_line_error(result, 1, "is a directory of sessions")
    assert (sandbox.coord_root / "cr1" / "session.json").is_file()
    result = sandbox.cli("session-import", str(path), "--target", str(sandbox.repo), "--overwrite")
    assert_one_line_error(result, 1, "is a git repository")
    assert (sandbox.repo / ".git").is_dir()
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "README.md").write_text("mine\n")
    result = sandbox.cli("session-import", str(path), "--target", str(project), "--overwrite")
    assert_one_line_error(result, 1, "is not a session directory")
    assert (project / "README.md").read_text() == "mine\n"


def test_a_hostile_schema_is_not_echoed(sandbox: Sandbox, tmp_path: Path) -> None:
    token = "ghp_" + os.urandom(18).hex()
    path = write_bundle(tmp_path / "b.json", minimal_doc(schema=token))
    for args in (
        ["session-import", str(path)],
        ["replay", str(path)],
        ["compare", str(path), str(path)],
        ["sanitize", str(path), "--check"],
    ):
        result = sandbox.cli(*args)
        assert token not in result.stdout + result.stderr, f"{args[0]} echoed the schema"
        assert_one_line_error(result, 1, "schema is something else")


def test_the_tmux_server_a_swarm_starts_holds_no_secret(sandbox: Sandbox) -> None:
    secret = "sk-test-" + os.urandom(16).hex()
    env = {**os.environ, "FAKE_API_KEY": secret}
    result = subprocess.run(
        [sys.executable, "-m", "kodelyth_ecc", "swarm", "--task", "t", "--agents", "alpha",
         "--harness", "echo", "--session", "envs", "--execute"],
        cwd=sandbox.repo, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, "swarm failed"
    shown = subprocess.run(
        ["tmux", "show-environment", "-g"], capture_output=True, text=True, check=True
    ).stdout
    assert secret not in shown, "the key is in the tmux server's global environment"
    pid = subprocess.run(
        ["tmux", "display-message", "-p", "#{pid}"], capture_output=True, text=True, check=True
    ).stdout.strip()
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert secret.encode() not in environ, "the key is in the tmux server's environment"
    wait_done(sandbox, "envs")


def test_invisible_and_bidi_marks_are_escaped_too(sandbox: Sandbox) -> None:
    hostile = "\u061c\U000e0041\u00ad\u2066done"
    make_worker(sandbox.coord_root, "s1", "w", task="t", status=f"- State: {hostile}\n")
    for args in (["status"], ["status", "s1"], ["status", "s1", "--json"]):
        result = sandbox.cli(*args)
        assert result.code == 0, result
        for raw in ("\u061c", "\U000e0041", "\u00ad", "\u2066"):
            assert raw not in result.stdout + result.stderr, f"{raw!r} reached the terminal"
    data = json.loads(sandbox.cli("status", "s1", "--json").stdout)
    assert data["session"]["workers"][0]["state"] == hostile.lower()


def test_a_bundle_with_a_100_character_session_name_replays(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    name = "s" * 100
    path = write_bundle(tmp_path / "b.json", minimal_doc(session=name))
    result = sandbox.cli("replay", str(path), "--harness", "echo", "--json")
    assert result.code == 0, result
    replay_name = json.loads(result.stdout)["plan"]["sessionName"]
    assert replay_name.endswith("-replay-1")
    assert len(replay_name) <= 100
