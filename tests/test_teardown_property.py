"""Property: what ``teardown --force`` saves restores the worktree byte for byte.

For random worktrees (CRLF, lone CR, Latin-1 and NUL bytes, executable bits,
symlinks, committed, uncommitted and deleted files, untracked and git-ignored
files, a non-UTF-8 file name), applying the saved patch with plain ``git apply``
on the base commit and copying back the saved ignored files gives the same tree
as the worktree had: every path, its bytes, its exec bit, its link target."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kodelyth_ecc.coordination import SessionRecord, WorkerRecord, write_session_record
from kodelyth_ecc.teardown import teardown
from tests.conftest import Sandbox, make_repo
from tests.support import git

SESSION = "prop"
SLUG = "alpha"

# Pieces that text conversions, decoders and diff tools like to mangle.
PIECES = [b"\r\n", b"\r", b"\n", b"\xe9", b"\xff\xfe", b"\x00", b"text", b" ", b"\t", b"\\"]
content = st.one_of(
    st.lists(st.sampled_from(PIECES), max_size=12).map(b"".join),
    st.binary(max_size=48),
)
# Leaf names never used as directories, so any write can happen in any order.
TRACKED = ["README.md", "src/app.py", "docs/crlf.txt", "data/blob.bin", "keep.log"]
UNTRACKED = ["new.txt", "src/new.py", "deep/er/file.dat", os.fsdecode(b"caf\xe9.txt")]
IGNORED = [".env", "build/out.bin", "build/sub/x.o", "trace.log", "docs/notes.log"]
PATHS = TRACKED + UNTRACKED + IGNORED

action = st.one_of(
    st.tuples(st.just("write"), st.sampled_from(PATHS), content, st.booleans()),
    st.tuples(st.just("delete"), st.sampled_from(PATHS)),
    st.tuples(st.just("chmod"), st.sampled_from(PATHS), st.booleans()),
    st.tuples(
        st.just("link"),
        st.sampled_from(["link-in", "build/link-out"]),
        st.sampled_from(["README.md", "../../outside", "src"]),
    ),
    st.tuples(st.just("ignore-more"), st.sampled_from(["*.txt", "deep/", "*.py"])),
    st.tuples(st.just("commit")),
)
base_content = st.fixed_dictionaries({rel: content for rel in TRACKED})


def _listing(root: Path) -> dict[str, tuple[str, bytes, bool]]:
    """Every path under ``root`` but .git: (kind, bytes or link target, exec bit)."""
    found: dict[str, tuple[str, bytes, bool]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not (dirpath == str(root) and d == ".git")]
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if rel == ".git":
                continue
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                found[rel] = ("link", os.fsencode(os.readlink(path)), False)
            else:
                found[rel] = ("file", Path(path).read_bytes(), bool(info.st_mode & 0o100))
    return found


def _apply(actions: list[tuple[object, ...]], worktree: Path) -> None:
    for act in actions:
        kind = act[0]
        path = worktree / str(act[1]) if len(act) > 1 else worktree
        if kind == "write":
            assert isinstance(act[2], bytes)
            if path.is_symlink():
                path.unlink()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(act[2])
            path.chmod(0o755 if act[3] else 0o644)
        elif kind == "delete" and (path.is_file() or path.is_symlink()):
            path.unlink()
        elif kind == "chmod" and path.is_file() and not path.is_symlink():
            path.chmod(0o755 if act[2] else 0o644)
        elif kind == "link" and not path.exists() and not path.is_symlink():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.symlink_to(str(act[2]))
        elif kind == "ignore-more":
            with open(worktree / ".gitignore", "a", encoding="utf-8") as fh:
                fh.write(f"{act[1]}\n")
        elif kind == "commit":
            git(worktree, "add", "--all")
            git(worktree, "commit", "--quiet", "--no-gpg-sign", "--allow-empty", "-m", "step")


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(base=base_content, actions=st.lists(action, min_size=1, max_size=14))
def test_force_teardown_saves_everything_byte_for_byte(
    sandbox: Sandbox, base: dict[str, bytes], actions: list[tuple[object, ...]]
) -> None:
    work = Path(tempfile.mkdtemp(prefix="prop-", dir=sandbox.root.parent))
    try:
        repo = make_repo(work / "repo")
        for rel, data in base.items():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            (repo / rel).write_bytes(data)
        (repo / ".gitignore").write_text(".env\nbuild/\n*.log\n")
        git(repo, "add", "--all")
        git(repo, "add", "--force", "keep.log")  # tracked although ignored
        git(repo, "commit", "--quiet", "--no-gpg-sign", "-m", "base")
        base_commit = git(repo, "rev-parse", "HEAD").strip()
        branch = f"orchestrator-{SESSION}-{SLUG}"
        worktree = work / f"repo-{SESSION}-{SLUG}"
        git(repo, "worktree", "add", "--quiet", "-b", branch, str(worktree), base_commit)
        coord_root = repo / ".orchestration"
        (coord_root / SESSION / SLUG).mkdir(parents=True)
        write_session_record(
            str(coord_root / SESSION),
            SessionRecord(
                session=SESSION,
                repo_root=str(repo),
                worktree_root=str(work),
                coordination_root=str(coord_root),
                task="t",
                agents=[SLUG],
                harness="echo",
                launcher="",
                base_ref="HEAD",
                seed_paths=[],
                workers=[WorkerRecord(SLUG, SLUG, branch, str(worktree), "")],
                base_commit=base_commit,
            ),
        )
        _apply(actions, worktree)
        expected = _listing(worktree)

        result = teardown(SESSION, str(coord_root), force=True)
        assert not worktree.exists()
        assert result.deleted_branches == [branch]

        verify = work / "verify"
        git(repo, "worktree", "add", "--quiet", "--detach", str(verify), base_commit)
        for patch in result.saved_patches:
            subprocess.run(
                ["git", "apply", "--binary", patch], cwd=verify, check=True, capture_output=True
            )
        for copies in result.saved_ignored:
            shutil.copytree(copies, verify, symlinks=True, dirs_exist_ok=True)
        assert _listing(verify) == expected
    finally:
        shutil.rmtree(work, ignore_errors=True)
