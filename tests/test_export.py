"""``kodelyth-ecc session-export`` through the real CLI: every flag, meta from
session.json and the flags over it, coordination dirs of the earlier JavaScript
tool, exact file contents, atomic writes, reproducible bytes, and what a real
echo swarm's workers did (state, timings, diff, transcript), capped."""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
from pathlib import Path
from typing import Any

import pytest

from kodelyth_ecc import __version__
from kodelyth_ecc.bundle import decode_bundle, encode_bundle, read_bundle
from kodelyth_ecc.export import cap_text, strip_terminal_controls
from kodelyth_ecc.provenance import machine_id
from tests.conftest import Sandbox
from tests.support import Result, git, run_cli_with_file_size_limit
from tests.swarm_helpers import started, wait_done
from tests.test_bundle import FIXTURES, assert_one_line_error, old_reader
from tests.test_schema import schema_errors

ISO_SECONDS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
MIB = 1024 * 1024
EPOCH = "1700000000"
EPOCH_ISO = "2023-11-14T22:13:20Z"
JS_SESSION = "swarm-2026-11-20-3a"
RICH_META = FIXTURES / "reference-bundles" / "rich-meta.bundle.json"
NO_META = FIXTURES / "reference-bundles" / "no-meta.bundle.json"


def export(sandbox: Sandbox, session: str, *flags: str) -> Result:
    return sandbox.cli("session-export", session, *flags)


def export_doc(sandbox: Sandbox, session: str, *flags: str) -> dict[str, Any]:
    result = export(sandbox, session, *flags, "--out", "-")
    assert result.code == 0, result
    assert result.stderr == "", result
    doc: dict[str, Any] = json.loads(result.stdout)
    assert schema_errors(doc) == []
    old_reader(result.stdout.encode("utf-8"))
    return doc


def write_only(sandbox: Sandbox, session: str, agents: str = "alpha,beta") -> None:
    result = sandbox.cli(
        "swarm", "--task", "audit the auth module", "--agents", agents, "--harness", "echo",
        "--session", session, "--write-only",
    )  # fmt: skip
    assert result.code == 0, result


def make_worker(root: Path, session: str, slug: str, **files: str | bytes) -> Path:
    worker = root / session / slug
    worker.mkdir(parents=True)
    for name, content in files.items():
        path = worker / f"{name}.md"
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return worker


def tree(path: Path) -> dict[str, bytes | None]:
    """Every entry under ``path``: files with their bytes, directories as None."""
    return {
        str(p.relative_to(path)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(path.rglob("*"))
    }


# --- meta and flags ------------------------------------------------------------------


def test_default_out_and_meta_from_session_json(sandbox: Sandbox) -> None:
    write_only(sandbox, "s1")
    record = json.loads((sandbox.coord_root / "s1" / "session.json").read_text())
    result = export(sandbox, "s1")
    assert result.code == 0, result
    out = sandbox.coord_root / "s1.bundle.json"
    assert result.stdout == f"wrote {out} (2 workers)\n"
    assert result.stderr == ""
    data = out.read_bytes()
    doc = json.loads(data)
    assert schema_errors(doc) == []
    assert doc["schema"] == "kodelyth.session-bundle/v1"
    assert doc["session"] == "s1"
    assert ISO_SECONDS.fullmatch(doc["exported_at"])
    assert doc["exported_by"] == f"kodelyth-ecc@{__version__}"
    assert doc["meta"] == {
        "task": "audit the auth module",
        "agents": ["alpha", "beta"],
        "harness": "echo",
        "base_ref": "HEAD",
        "base_commit": git(sandbox.repo, "rev-parse", "HEAD").strip(),
        "launcher": record["launcher"],
        "created_at": record["created_at"],
        "tool": record["tool"],
        # Where it ran (a hash, never a host name): a replay elsewhere is sandboxed.
        "machine": machine_id(),
    }
    # The JS tool's keys first, in its order.
    assert list(doc["meta"])[:4] == ["task", "agents", "harness", "base_ref"]
    assert [w["slug"] for w in doc["workers"]] == ["alpha", "beta"]
    for worker in doc["workers"]:
        worker_dir = sandbox.coord_root / "s1" / worker["slug"]
        for field in ("task", "handoff", "status"):
            assert worker[field] == (worker_dir / f"{field}.md").read_text()
        assert worker["state"] == "pending"
        # Nothing ran: no timings, no diff (no worktree), no transcript.
        assert set(worker) == {"slug", "task", "handoff", "status", "state"}
    assert encode_bundle(decode_bundle(data)) == data


def test_flags_override_session_json(sandbox: Sandbox) -> None:
    write_only(sandbox, "s1")
    doc = export_doc(
        sandbox, "s1", "--task", "  a new task  ", "--agents", "Fix Bug,docs",
        "--harness", "codex", "--base-ref", "main",
    )  # fmt: skip
    meta = doc["meta"]
    assert meta["task"] == "a new task"
    assert meta["agents"] == ["Fix Bug", "docs"]
    assert meta["harness"] == "codex"
    assert meta["base_ref"] == "main"
    # What no flag names comes from session.json still.
    assert meta["base_commit"] == git(sandbox.repo, "rev-parse", "HEAD").strip()
    assert "launcher" in meta
    assert list(meta)[:5] == ["task", "agents", "harness", "base_ref", "base_commit"]


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (("--agents", "a,,b"), "empty agent name"),
        (("--agents", "a;rm"), "invalid agent name"),
        (("--harness", "nope"), "unknown harness 'nope'"),
        (("--task", "   "), "empty --task"),
        (("--out", ""), "empty --out"),
        (("--out", "."), "is a directory"),
        (("--out", "no/such/dir/x.json"), "does not exist"),
    ],
)
def test_bad_flags_are_usage_errors_and_write_nothing(
    sandbox: Sandbox, flags: tuple[str, ...], needle: str
) -> None:
    write_only(sandbox, "s1")
    before = tree(sandbox.coord_root)
    assert_one_line_error(export(sandbox, "s1", *flags), 2, needle)
    assert tree(sandbox.coord_root) == before
    assert not (sandbox.repo / "no").exists()


def test_out_dash_writes_the_bundle_to_stdout_only(sandbox: Sandbox) -> None:
    write_only(sandbox, "s1")
    before = tree(sandbox.coord_root)
    result = export(sandbox, "s1", "--out", "-")
    assert result.code == 0, result
    assert result.stdout.startswith('{\n  "schema": "kodelyth.session-bundle/v1"')
    assert result.stdout.endswith("}\n")
    assert tree(sandbox.coord_root) == before


def test_out_file_and_coord_root_outside_any_repo(sandbox: Sandbox, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    root = elsewhere / "coord"
    make_worker(root, "mine", "w1", task="t\n", handoff="h\n", status="- State: completed\n")
    out = elsewhere / "out" / "mine.json"
    out.parent.mkdir()
    # From a directory that is no git repo: --coord-root is all it needs.
    result = sandbox.cli("session-export", "mine", "--coord-root", str(root), "--out", str(out),
                         cwd=elsewhere)  # fmt: skip
    assert result.code == 0, result
    assert result.stdout == f"wrote {out} (1 workers)\n"
    bundle = read_bundle(str(out))
    assert bundle.meta == {}
    assert bundle.workers[0].state == "completed"
    # The default --out is under the --coord-root.
    result = sandbox.cli("session-export", "mine", "--coord-root", str(root), cwd=elsewhere)
    assert result.code == 0, result
    assert (root / "mine.bundle.json").read_bytes().startswith(b"{\n")
    # Relative --coord-root and --out resolve against the working directory.
    result = sandbox.cli("session-export", "mine", "--coord-root", "coord", "--out", "rel.json",
                         cwd=elsewhere)  # fmt: skip
    assert result.code == 0, result
    assert read_bundle(str(elsewhere / "rel.json")).session == "mine"


# --- coordination dirs of the JavaScript tool -----------------------------------------


def copy_js_session(sandbox: Sandbox) -> Path:
    target = sandbox.coord_root / JS_SESSION
    shutil.copytree(FIXTURES / "js-coordination" / JS_SESSION, target)
    return target


def _as_fixture(doc: dict[str, Any], fixture: Path) -> bytes:
    """Our export in the fixture's clothes: its export stamp, without our added state."""
    reference = json.loads(fixture.read_bytes())
    doc = {**doc, "exported_at": reference["exported_at"], "exported_by": reference["exported_by"]}
    for worker in doc["workers"]:
        assert worker.pop("state") == "completed"  # the JS `state: completed` line, understood
    return encode_bundle(decode_bundle(json.dumps(doc).encode("utf-8")))


def test_js_coordination_dir_exports_like_the_js_tool(sandbox: Sandbox) -> None:
    copy_js_session(sandbox)
    assert not (sandbox.coord_root / JS_SESSION / "session.json").exists()
    plain = export_doc(sandbox, JS_SESSION)
    assert plain["meta"] == {}
    for worker in plain["workers"]:
        assert set(worker) == {"slug", "task", "handoff", "status", "state"}
        assert worker["status"].endswith("state: completed\n")
    assert _as_fixture(plain, NO_META) == NO_META.read_bytes()

    rich = export_doc(
        sandbox, JS_SESSION, "--task", "audit oauth flow for security regressions",
        "--agents", "security-reviewer,code-reviewer,pair-programmer",
        "--harness", "echo", "--base-ref", "HEAD",
    )  # fmt: skip
    assert _as_fixture(rich, RICH_META) == RICH_META.read_bytes()


# --- which entries become workers, and their contents ------------------------------


def test_only_directories_become_workers(sandbox: Sandbox, tmp_path: Path) -> None:
    write_only(sandbox, "s1", agents="alpha")
    session = sandbox.coord_root / "s1"
    (session / "notes.txt").write_text("not a worker\n")
    (session / ".DS_Store").write_bytes(b"\0\1")
    (session / ".hidden").mkdir()
    (session / ".hidden" / "task.md").write_text("hidden\n")
    outside = tmp_path / "outside-worker"
    outside.mkdir()
    (outside / "task.md").write_text("secret\n")
    (session / "linked").symlink_to(outside, target_is_directory=True)
    (session / "dangling").symlink_to(tmp_path / "nowhere")
    doc = export_doc(sandbox, "s1")
    assert [w["slug"] for w in doc["workers"]] == ["alpha"]
    assert "secret" not in json.dumps(doc)


def test_file_contents_are_kept_exactly(sandbox: Sandbox) -> None:
    texts = {
        "crlf": "line one\r\nline two\r\n",
        "no-final-newline": "no newline at the end",
        "empty": "",
        "unicode": "caf\u00e9 \u2014 \U0001f600 \u4e2d\u6587 \u2028 tab\there\n",
        "control": "nul\x00 bell\x07 lone-cr\r end\n",
    }
    root = sandbox.coord_root
    for slug, text in texts.items():
        make_worker(root, "exact", slug, task=text, handoff=text[::-1], status=text)
    make_worker(root, "exact", "missing-files")
    make_worker(root, "exact", "bad-utf8", task=b"ok \xff\xfe end\n")
    doc = export_doc(sandbox, "exact")
    by_slug = {w["slug"]: w for w in doc["workers"]}
    for slug, text in texts.items():
        assert by_slug[slug]["task"] == text
        assert by_slug[slug]["handoff"] == text[::-1]
        assert by_slug[slug]["status"] == text
    assert {k: by_slug["missing-files"][k] for k in ("task", "handoff", "status")} == dict.fromkeys(
        ("task", "handoff", "status"), ""
    )
    # Empty or missing status.md says nothing about the state.
    assert "state" not in by_slug["missing-files"]
    assert "state" not in by_slug["empty"]
    # Bytes that are not UTF-8 cannot be JSON strings: each becomes U+FFFD.
    assert by_slug["bad-utf8"]["task"] == "ok \ufffd\ufffd end\n"


def test_workers_are_sorted_by_slug(sandbox: Sandbox) -> None:
    slugs = ["beta", "Zed", "a_1", "a-1", "a.1", "alpha", "0-first", "B"]
    for slug in slugs:
        make_worker(sandbox.coord_root, "order", slug, task=slug)
    doc = export_doc(sandbox, "order")
    assert [w["slug"] for w in doc["workers"]] == sorted(slugs)
    assert [w["task"] for w in doc["workers"]] == sorted(slugs)


# --- errors ------------------------------------------------------------------------------


def test_missing_or_empty_session_is_a_clear_error_and_writes_nothing(sandbox: Sandbox) -> None:
    root = sandbox.coord_root
    root.mkdir()
    assert_one_line_error(export(sandbox, "nosuch"), 1, "no session 'nosuch'", "--coord-root")
    (root / "empty").mkdir()
    assert_one_line_error(export(sandbox, "empty"), 1, "no worker directories", "at least one")
    (root / "files-only").mkdir()
    (root / "files-only" / "session.json").write_text("{}\n")
    (root / "files-only" / "notes.md").write_text("x\n")
    out = sandbox.root / "out.json"
    result = export(sandbox, "files-only", "--out", str(out))
    assert_one_line_error(result, 1, "no worker directories")
    assert sorted(os.listdir(root)) == ["empty", "files-only"]
    assert not out.exists()
    assert sorted(os.listdir(sandbox.root)) == ["repo"]


@pytest.mark.parametrize("name", ["../repo", "a/b", ".hidden", "..", "/etc"])
def test_a_session_name_that_leaves_the_root_is_refused(sandbox: Sandbox, name: str) -> None:
    make_worker(sandbox.coord_root, "ok", "w", task="t")
    assert_one_line_error(export(sandbox, name), 2, "invalid session name")


def test_a_session_name_with_a_dot_is_refused_like_everywhere_else(sandbox: Sandbox) -> None:
    """One rule for session names (issue 9, item 15): tmux rewrites '.', so a dotted
    name that import refuses is refused by export too, in the same words."""
    make_worker(sandbox.coord_root, "v1.2", "w", task="t")
    result = sandbox.cli("session-export", "v1.2", "--out", "-")
    line = assert_one_line_error(result, 2, "invalid session name 'v1.2'")
    assert "letters, digits, '_' or '-'" in line


def _export_with_file_size_limit(sandbox: Sandbox, limit: int, *args: str) -> Result:
    return run_cli_with_file_size_limit(limit, "session-export", *args, cwd=sandbox.repo)


@pytest.mark.parametrize("default_out", [True, False])
def test_write_is_atomic_no_partial_or_temp_file(sandbox: Sandbox, default_out: bool) -> None:
    make_worker(sandbox.coord_root, "big", "w", task="t", handoff="x" * 200_000)
    out_dir = sandbox.coord_root if default_out else sandbox.root / "out"
    out_dir.mkdir(exist_ok=True)
    out = out_dir / "big.bundle.json"
    out.write_bytes(b"the previous bundle\n")
    before = sorted(os.listdir(out_dir))
    args = ["big"] if default_out else ["big", "--out", str(out)]
    result = _export_with_file_size_limit(sandbox, 64 * 1024, *args)
    assert_one_line_error(result, 1, f"cannot write {out}", "File too large", "nothing was written")
    assert out.read_bytes() == b"the previous bundle\n"
    assert sorted(os.listdir(out_dir)) == before
    # The same export without the limit works: the failure was the write.
    result = _export_with_file_size_limit(sandbox, resource.RLIM_INFINITY, *args)
    assert result.code == 0, result
    assert read_bundle(str(out)).workers[0].handoff == "x" * 200_000
    assert sorted(os.listdir(out_dir)) == before


# --- reproducible bytes ------------------------------------------------------------------


def _without_exported_at(data: bytes) -> bytes:
    return re.sub(rb'\n  "exported_at": "[^"]*",', b"", data)


def test_exporting_twice_differs_only_in_exported_at(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_only(sandbox, "s1")
    (sandbox.coord_root / "s1" / "alpha" / "handoff.md").write_text("done\r\n\U0001f600")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1")
    first = export(sandbox, "s1", "--out", "-").stdout.encode()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "2")
    second = export(sandbox, "s1", "--out", "-").stdout.encode()
    assert first != second
    assert b'"exported_at": "1970-01-01T00:00:01Z"' in first
    assert _without_exported_at(first) == _without_exported_at(second)
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    third = export(sandbox, "s1", "--out", "-").stdout.encode()
    assert _without_exported_at(third) == _without_exported_at(first)


def test_source_date_epoch_makes_exports_byte_identical(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_only(sandbox, "s1")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    assert export(sandbox, "s1").code == 0
    first = (sandbox.coord_root / "s1.bundle.json").read_bytes()
    assert export(sandbox, "s1").code == 0
    second = (sandbox.coord_root / "s1.bundle.json").read_bytes()
    assert first == second
    assert json.loads(first)["exported_at"] == EPOCH_ISO
    assert export(sandbox, "s1", "--out", "-").stdout.encode() == first


# --- what a real swarm's workers did -------------------------------------------------

# Colours, a title, a cursor move and CRLF line ends on the pane; a commit, an edit
# and a new file in the worktree; beta fails with exit 3.
LAUNCHER = (
    "printf '\\033]0;agent-title\\007\\033[31mred\\033[0m plain\\033[2K\\r\\n'; "
    "printf 'committed\\n' >> README.md && git add README.md && "
    "git -c user.name=agent -c user.email=agent@example.invalid commit -q --no-gpg-sign "
    "-m agent-commit && "
    "printf 'edited\\n' >> src/app.py && printf 'brand new\\n' > new-{worker_slug}.txt && "
    "echo finished-{worker_slug}; "
    "if [ {worker_slug_sh} = beta ]; then exit 3; fi"
)


def test_echo_swarm_export_records_what_each_worker_did(sandbox: Sandbox) -> None:
    base = git(sandbox.repo, "rev-parse", "HEAD").strip()
    started(sandbox, "did", launcher=LAUNCHER)
    wait_done(sandbox, "did")
    doc = export_doc(sandbox, "did")
    assert doc["meta"]["base_commit"] == base
    assert doc["meta"]["launcher"] == LAUNCHER
    alpha, beta = doc["workers"]
    assert (alpha["state"], alpha["exit_code"]) == ("completed", 0)
    assert (beta["state"], beta["exit_code"]) == ("failed", 3)
    for worker in (alpha, beta):
        slug = worker["slug"]
        assert ISO_SECONDS.fullmatch(worker["started_at"])
        assert ISO_SECONDS.fullmatch(worker["finished_at"])
        assert worker["started_at"] <= worker["finished_at"]
        assert isinstance(worker["duration_s"], float)
        assert 0 <= worker["duration_s"] < 60
        # The transcript is what the pane showed, as plain text.
        transcript = worker["transcript"]
        assert "red plain\n" in transcript
        assert f"finished-{slug}" in transcript
        assert "\x1b" not in transcript
        assert "\r" not in transcript
        assert "agent-title" not in transcript
        # transcript.log itself is written without the escapes (issue 10); the export
        # strips them all the same for transcripts written by others.
        raw = (sandbox.coord_root / "did" / slug / "transcript.log").read_bytes()
        assert b"\x1b" not in raw and b"red plain\n" in raw
        # The diff holds the commit, the uncommitted edit and the untracked file.
        diff = worker["diff"]
        assert "diff --git a/README.md b/README.md" in diff
        assert "+committed" in diff
        assert "diff --git a/src/app.py b/src/app.py" in diff
        assert "+edited" in diff
        assert f"diff --git a/new-{slug}.txt b/new-{slug}.txt" in diff
        assert "new file mode" in diff
        assert "+brand new" in diff
        assert "truncated" not in diff
        stat = worker["diffstat"]
        for path in ("README.md", "src/app.py", f"new-{slug}.txt"):
            assert path in stat
        assert "3 files changed, 3 insertions(+)" in stat
        # Against the base commit: the worktree's own commit is part of the diff.
        worktree = Path(sandbox.root / f"{sandbox.repo.name}-did-{slug}")
        assert git(worktree, "rev-list", "--count", f"{base}..HEAD").strip() == "1"
    # The worktrees' own index is left alone by the export.
    assert "new-alpha.txt" in git(Path(sandbox.root / f"{sandbox.repo.name}-did-alpha"),
                                  "status", "--porcelain")  # fmt: skip


BIG_LAUNCHER = (
    "printf 'small\\n' > aa-small.txt && "
    "yes 'a line of a big generated file, long enough to count' | head -c 1600000 > zz-big.txt"
    " && echo wrote-big"
)


def test_diff_and_transcript_are_capped_with_a_visible_marker(sandbox: Sandbox) -> None:
    started(sandbox, "big", launcher=BIG_LAUNCHER, agents="alpha")
    wait_done(sandbox, "big")
    transcript_log = sandbox.coord_root / "big" / "alpha" / "transcript.log"
    with transcript_log.open("ab") as fh:
        fh.write(b"HEAD-OF-LONG-OUTPUT\r\n" + b"\x1b[32mgreen\x1b[0m output line\r\n" * 60_000)
        fh.write(b"TAIL-OF-LONG-OUTPUT\r\n")
    doc = export_doc(sandbox, "big")
    (worker,) = doc["workers"]
    diff = worker["diff"]
    assert len(diff.encode("utf-8")) <= MIB
    assert diff.startswith("diff --git a/aa-small.txt b/aa-small.txt")
    assert re.search(r"\n\[kodelyth-ecc: truncated, [\d,]+ of [\d,]+ bytes omitted\]\n\Z", diff)
    assert "zz-big.txt" in worker["diffstat"]  # the stat is whole
    transcript = worker["transcript"]
    assert len(transcript.encode("utf-8")) <= MIB
    assert re.match(r"\n\[kodelyth-ecc: truncated, [\d,]+ of [\d,]+ bytes omitted\]\n", transcript)
    assert transcript.endswith("green output line\nTAIL-OF-LONG-OUTPUT\n")
    assert "HEAD-OF-LONG-OUTPUT" not in transcript
    assert "wrote-big" not in transcript


# --- the helpers behind the transcript and the caps ------------------------------------


@pytest.mark.parametrize(
    ("raw", "plain"),
    [
        ("\x1b[1;31mred\x1b[0m", "red"),
        ("\x1b]0;title\x07after", "after"),
        ("\x1b]2;title\x1b\\after", "after"),
        ("\x1b]8;;https://x.invalid\x1b\\link\x1b]8;;\x1b\\", "link"),
        ("\x1b(Bcharset \x1b=keypad \x1b7saved", "charset keypad saved"),
        ("\x1bP1$r0m\x1b\\dcs", "dcs"),
        ("\x9b2Jc1-csi", "c1-csi"),
        ("a\r\nb\rc\x08\x00d\te\n", "a\nbcd\te\n"),
        ("\x1b[?25l\x1b[2K\x1b[1Gprogress 100%\x1b[?25h\n", "progress 100%\n"),
    ],
)
def test_strip_terminal_controls(raw: str, plain: str) -> None:
    assert strip_terminal_controls(raw) == plain
    assert strip_terminal_controls(plain) == plain


@pytest.mark.parametrize("keep", ["head", "tail"])
def test_cap_text_is_bounded_marked_and_idempotent(keep: str) -> None:
    text = "\U0001f600" * 1000 + "middle" + "\u00e9" * 1000  # multi-byte all through
    capped = cap_text(text, 1000, keep=keep)
    assert len(capped.encode("utf-8")) <= 1000
    assert "[kodelyth-ecc: truncated, " in capped
    assert cap_text(capped, 1000, keep=keep) == capped  # an imported bundle re-exports as is
    if keep == "head":
        assert capped.startswith("\U0001f600")
        assert capped.endswith(" bytes omitted]\n")
    else:
        assert capped.endswith("\u00e9")
        assert capped.startswith("\n[kodelyth-ecc: truncated, ")
    match = re.search(r"truncated, ([\d,]+) of ([\d,]+) bytes omitted", capped)
    assert match
    omitted, total = (int(n.replace(",", "")) for n in match.groups())
    assert total == len(text.encode("utf-8"))
    marker = capped[capped.index("\n[") : capped.index("]\n") + 2]
    assert omitted == total - (len(capped.encode("utf-8")) - len(marker.encode("utf-8")))
    assert cap_text("short", 1000, keep=keep) == "short"
