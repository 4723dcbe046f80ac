"""``apply``, ``diff`` and teardown's "applied work is saved" under attack: revisions
passed off as branches, a nested repository, a merge commit's own changes, a Ctrl-C
at every step (to the CLI alone, or to its whole process group as a terminal sends
it), failing hooks, a target branch moved by someone else meanwhile, forged records
and hostile names. The user's branch, index and files are never left half done, and
teardown never deletes work that is not somewhere else."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Sandbox
from tests.support import Result, git
from tests.swarm_helpers import registered_worktrees, worktree_of
from tests.test_apply import LAUNCHER, _commit, checkout_state, finished, show
from tests.test_compare import _run_in_pty
from tests.test_teardown_applied import _forge, _refused, _snapshot_of

AGENT = "git -c user.name=agent -c user.email=agent@example.invalid"
REAL_GIT = shutil.which("git") or "git"


def _one_line_error(result: Result, *needles: str) -> str:
    assert result.code == 1, result
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("kodelyth-ecc: error: "), line
    for needle in needles:
        assert needle in line, line
    return line


def _git_first_on_path(
    monkeypatch: pytest.MonkeyPatch, bin_dir: Path, match: str, action: str
) -> None:
    """A ``git`` first on PATH that runs the shell ``action`` the first time it is called
    with ``match`` among its arguments, then (if the action lets it) the real git."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    marker = shlex.quote(str(bin_dir / ".fired"))
    script = f"""#!/bin/sh
case " $* " in
  *" {match} "*)
    if [ ! -e {marker} ]; then
      : > {marker}
      {action}
    fi
    ;;
esac
exec {shlex.quote(REAL_GIT)} "$@"
"""
    (bin_dir / "git").write_text(script)
    (bin_dir / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def _in_own_group(sandbox: Sandbox, *args: str) -> Result:
    """The CLI in a process group of its own, as a shell runs a foreground job: a
    signal to the group (``kill -INT 0``) reaches it and every git it runs."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "kodelyth_ecc", *args],
        cwd=sandbox.repo,
        env=os.environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    out, err = proc.communicate(timeout=60)
    return Result(proc.returncode, out, err)


def _no_record(sandbox: Sandbox, session: str) -> None:
    assert not (sandbox.coord_root / session / "alpha" / "applied.json").exists()
    assert git(sandbox.repo, "for-each-ref", "refs/kodelyth/") == ""


# --- --onto names a branch, never a revision ----------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["main~1", "main@{1}", "main^{commit}", "HEAD", "v1", "origin/main", "-x", "refs/heads/.."],
)
def test_onto_takes_a_branch_not_a_revision(sandbox: Sandbox, name: str) -> None:
    """A revision resolves to a commit no branch moves with: applying "to" it would
    commit the work nowhere (and say it was applied)."""
    _commit(sandbox.repo, "b.txt", "b\n", "second")
    git(sandbox.repo, "tag", "v1")
    git(sandbox.repo, "update-ref", "refs/remotes/origin/main", "HEAD")
    git(sandbox.repo, "update-ref", "refs/heads/-x", "HEAD")  # git branch refuses this name
    finished(sandbox, "on")
    before = checkout_state(sandbox.repo)
    result = sandbox.cli("apply", "on", "alpha", f"--onto={name}")
    _one_line_error(result, "branch")
    assert checkout_state(sandbox.repo) == before
    _no_record(sandbox, "on")


@pytest.mark.parametrize("target", ["main@{1}", "main@{u}", "main~0", "HEAD@{1}"])
def test_a_record_naming_a_revision_saves_nothing(sandbox: Sandbox, target: str) -> None:
    """After the user reset main, the applied commit is only in the reflog: a record
    whose target is ``main@{1}`` must not let teardown delete the worker's work."""
    finished(sandbox, "rl")
    assert sandbox.cli("apply", "rl", "alpha").code == 0
    git(sandbox.repo, "reset", "--quiet", "--hard", "HEAD~1")
    path = sandbox.coord_root / "rl" / "alpha" / "applied.json"
    data = json.loads(path.read_text())
    data["target"] = target
    path.write_text(json.dumps(data))
    _refused(sandbox, "rl", "alpha (2 uncommitted, 1 commits ahead)")


def test_a_branch_without_a_commit_is_one_line(sandbox: Sandbox) -> None:
    finished(sandbox, "orph")
    git(sandbox.repo, "checkout", "--quiet", "--orphan", "fresh")
    _one_line_error(sandbox.cli("apply", "orph", "alpha"), "fresh", "has no commit yet")
    _no_record(sandbox, "orph")


# --- what the work holds ---------------------------------------------------------------

NESTED = (
    f"git init -q sub && printf 'x\\n' > sub/f && (cd sub && git add f && {AGENT} commit -q "
    "-m nested) && printf 'e\\n' >> README.md"
)


def test_a_nested_repository_is_refused_and_never_counted_saved(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """git would carry only a gitlink (a commit id): the nested repository's files and
    commits live in the worker's worktree alone, which teardown would delete."""
    finished(sandbox, "gl", launcher=NESTED)
    before = checkout_state(sandbox.repo)
    _one_line_error(sandbox.cli("apply", "gl", "alpha"), "nested git repository (sub)")
    assert checkout_state(sandbox.repo) == before
    _no_record(sandbox, "gl")
    # The user brings the tree over by hand; a record claiming it was applied still
    # saves nothing, since the nested repository's commits are in the worktree only.
    worktree = worktree_of(sandbox, "gl", "alpha")
    snapshot = _snapshot_of(worktree, tmp_path)
    onto = git(sandbox.repo, "rev-parse", "main").strip()
    tree = git(sandbox.repo, "rev-parse", f"{snapshot}^{{tree}}").strip()
    by_hand = git(sandbox.repo, "commit-tree", tree, "-p", onto, "-m", "by hand").strip()
    git(sandbox.repo, "update-ref", "refs/heads/main", by_hand)
    _forge(sandbox, "gl", snapshot=snapshot, onto=onto, result=by_hand)
    _refused(sandbox, "gl", "alpha (")
    assert (worktree / "sub" / ".git").is_dir()


def test_a_nested_repository_without_a_commit_is_one_line(sandbox: Sandbox) -> None:
    finished(sandbox, "nn", launcher="git init -q sub && printf 'x\\n' > sub/f")
    for command in ("apply", "diff"):
        _one_line_error(
            sandbox.cli(command, "nn", "alpha"), "'sub/' does not have a commit checked out"
        )
    _refused(sandbox, "nn", "alpha (")


def test_a_merge_commits_own_change_does_not_overwrite_an_ignored_file(
    sandbox: Sandbox,
) -> None:
    """A file the worker added while committing a merge is in no commit's own diff:
    the user's ignored file at that path is still found in the way (git would
    overwrite an ignored file silently)."""
    _commit(sandbox.repo, ".gitignore", "*.local\n", "ignores")
    launcher = (
        f"git switch -q -c side && printf 's\\n' > s.txt && git add s.txt && {AGENT} commit "
        f"-q -m side && git switch -q - && {AGENT} merge -q --no-ff --no-commit side && "
        f"printf 'evil\\n' > cfg.local && git add -f cfg.local && {AGENT} commit -q -m merged"
    )
    finished(sandbox, "em", launcher=launcher)
    (sandbox.repo / "cfg.local").write_text("the user's ignored file\n")
    before = checkout_state(sandbox.repo)
    for mode in ("--squash", "--merge"):
        _one_line_error(sandbox.cli("apply", "em", "alpha", mode), "would be overwritten")
        assert checkout_state(sandbox.repo) == before


def test_a_worker_half_way_through_a_merge_is_refused(sandbox: Sandbox) -> None:
    """Its files hold conflict markers: that is not work to bring into a branch."""
    launcher = (
        f"git switch -q -c side && printf 'side\\n' >> README.md && {AGENT} commit -q -am "
        f"side && git switch -q - && printf 'mine\\n' >> README.md && {AGENT} commit -q -am "
        f"mine && {AGENT} merge -q side || true"
    )
    finished(sandbox, "mm", launcher=launcher)
    before = checkout_state(sandbox.repo)
    _one_line_error(
        sandbox.cli("apply", "mm", "alpha"), "has a merge in progress", "git merge --abort"
    )
    assert checkout_state(sandbox.repo) == before


def test_hostile_names_links_modes_and_bytes_arrive_exactly(sandbox: Sandbox) -> None:
    """CRLF, binary, a newline or a leading dash or non-UTF-8 bytes in a name, a
    mode change alone, an empty directory and a symlink pointing out of the repository
    (carried as the link, its target never read)."""
    secret = sandbox.root / "outside-secret"
    secret.write_text("never copied\n")
    launcher = (
        "printf 'a\\r\\nb\\r\\n' > crlf.txt && printf '\\000\\001\\377' > bin.dat && "
        "printf 'nl\\n' > \"$(printf 'new\\nline')\" && printf 'dash\\n' > ./-dash && "
        "printf 'latin\\n' > \"$(printf 'caf\\351')\" && "
        f"ln -s {shlex.quote(str(secret))} leak && chmod +x src/app.py && mkdir emptydir"
    )
    finished(sandbox, "wn", launcher=launcher)
    result = sandbox.cli("apply", "wn", "alpha")
    assert result.code == 0, result
    repo = sandbox.repo
    assert (repo / "crlf.txt").read_bytes() == b"a\r\nb\r\n"
    assert (repo / "bin.dat").read_bytes() == b"\x00\x01\xff"
    assert (repo / "new\nline").read_text() == "nl\n"
    assert (repo / "-dash").read_text() == "dash\n"
    assert (repo / os.fsdecode(b"caf\xe9")).read_text() == "latin\n"
    assert os.readlink(repo / "leak") == str(secret)
    assert "never copied" not in git(repo, "log", "-p", "-1", "main")
    assert os.access(repo / "src" / "app.py", os.X_OK)
    down = sandbox.cli("teardown", "wn")
    assert down.code == 0, down


def test_a_message_with_control_characters_is_never_printed_raw(sandbox: Sandbox) -> None:
    finished(sandbox, "msg")
    message = "fix\x1b]0;pwned\x07\x1b[2J\r"
    result = sandbox.cli("apply", "msg", "alpha", "-m", message)
    assert result.code == 0, result
    assert "\x1b" not in result.stdout + result.stderr
    assert git(sandbox.repo, "log", "-1", "--format=%B", "main").startswith("fix\x1b]0;pwned")


# --- the caller's environment, hooks, index flags -------------------------------------------


def test_git_variables_of_the_caller_are_scrubbed(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As inside a git hook: GIT_DIR and friends would point every git call elsewhere."""
    finished(sandbox, "env")
    other = tmp_path / "other"
    git(tmp_path, "init", "--quiet", str(other))
    for name, value in (
        ("GIT_DIR", other / ".git"),
        ("GIT_WORK_TREE", other),
        ("GIT_INDEX_FILE", tmp_path / "index"),
        ("GIT_OBJECT_DIRECTORY", tmp_path / "objects"),
    ):
        monkeypatch.setenv(name, str(value))
    result = sandbox.cli("apply", "env", "alpha")
    diff = sandbox.cli("diff", "env", "alpha")
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY"):
        monkeypatch.delenv(name)
    assert result.code == 0, result
    assert diff.code == 0 and "+brand new" in diff.stdout, diff
    assert show(sandbox.repo, "main", "new-alpha.txt") == "brand new\n"
    assert not (tmp_path / "index").exists() and not (tmp_path / "objects").exists()
    assert git(other, "for-each-ref") == ""


@pytest.mark.parametrize(
    ("hook", "mode"),
    [
        ("pre-merge-commit", "--merge"),
        ("commit-msg", "--merge"),
        ("prepare-commit-msg", "--merge"),
        ("prepare-commit-msg", "--squash"),
        ("prepare-commit-msg", "--cherry-pick"),
    ],
)
def test_a_failing_hook_leaves_everything_as_it_was_and_is_quoted(
    sandbox: Sandbox, hook: str, mode: str
) -> None:
    finished(sandbox, "hk")
    _commit(sandbox.repo, "user.txt", "u\n", "user")
    path = sandbox.repo / ".git" / "hooks" / hook
    path.write_text("#!/bin/sh\necho 'the hook says no' >&2\nexit 1\n")
    path.chmod(0o755)
    before = checkout_state(sandbox.repo)
    _one_line_error(
        sandbox.cli("apply", "hk", "alpha", mode), "the hook says no", "main was left as it was"
    )
    assert checkout_state(sandbox.repo) == before
    _no_record(sandbox, "hk")


@pytest.mark.parametrize("flag", ["--assume-unchanged", "--skip-worktree"])
def test_a_hidden_edit_of_the_user_is_not_overwritten(sandbox: Sandbox, flag: str) -> None:
    """``git status`` does not show an edit to a file flagged so; git's own merge
    still refuses to overwrite it, and the refusal is put back and reported."""
    finished(sandbox, "hid")
    git(sandbox.repo, "update-index", flag, "src/app.py")
    (sandbox.repo / "src" / "app.py").write_text("the user's hidden edit\n")
    _one_line_error(sandbox.cli("apply", "hid", "alpha"), "would be overwritten")
    assert (sandbox.repo / "src" / "app.py").read_text() == "the user's hidden edit\n"
    assert git(sandbox.repo, "rev-list", "--count", "main").strip() == "1"


def test_a_symlinked_worker_dir_is_refused_before_anything_changes(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    finished(sandbox, "sl")
    worker_dir = sandbox.coord_root / "sl" / "alpha"
    elsewhere = tmp_path / "elsewhere"
    worker_dir.rename(elsewhere)
    worker_dir.symlink_to(elsewhere)
    before = checkout_state(sandbox.repo)
    _one_line_error(sandbox.cli("apply", "sl", "alpha"), "is a symlink", "real directory")
    assert checkout_state(sandbox.repo) == before
    assert not (elsewhere / "applied.json").exists()


# --- after apply: what teardown counts saved ----------------------------------------------


def test_two_workers_applied_in_turn_are_both_saved(sandbox: Sandbox) -> None:
    finished(sandbox, "tw", agents="alpha,beta")
    for slug in ("alpha", "beta"):
        result = sandbox.cli("apply", "tw", slug)
        assert result.code == 0 and "teardown now counts" in result.stdout, result
    down = sandbox.cli("teardown", "tw", "--json")
    assert down.code == 0, down
    assert [a["worker"] for a in json.loads(down.stdout)["applied"]] == ["alpha", "beta"]
    assert show(sandbox.repo, "main", "new-beta.txt") == "brand new\n"


@pytest.mark.parametrize("rewrite", ["amend", "rebase", "delete"])
def test_a_rewritten_or_deleted_target_saves_nothing(sandbox: Sandbox, rewrite: str) -> None:
    git(sandbox.repo, "branch", "release")
    finished(sandbox, f"rw-{rewrite}")
    assert sandbox.cli("apply", f"rw-{rewrite}", "alpha", "--onto", "release").code == 0
    if rewrite == "amend":
        git(sandbox.repo, "switch", "--quiet", "release")
        git(sandbox.repo, "commit", "--quiet", "--amend", "--no-gpg-sign", "-m", "reworded")
    elif rewrite == "rebase":
        _commit(sandbox.repo, "user.txt", "u\n", "user")
        git(sandbox.repo, "rebase", "--quiet", "main", "release")
    else:
        git(sandbox.repo, "branch", "--quiet", "-D", "release")
    _refused(sandbox, f"rw-{rewrite}", "alpha (2 uncommitted, 1 commits ahead)")


# --- a branch moved by someone else while apply works -----------------------------------


@pytest.mark.parametrize("git_then", ["succeeds", "fails"])
def test_a_commit_put_on_the_target_meanwhile_is_never_taken_off(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, git_then: str
) -> None:
    """--onto a branch checked out nowhere: it moves only at the end, compare-and-swap
    from where it was; before, a failure "put it back" over the other commit."""
    git(sandbox.repo, "branch", "release")
    finished(sandbox, "mv")
    _commit(sandbox.repo, "user.txt", "u\n", "user")
    moved = git(sandbox.repo, "rev-parse", "main").strip()
    action = f"{shlex.quote(REAL_GIT)} -C {shlex.quote(str(sandbox.repo))} update-ref "
    action += f"refs/heads/release {moved}"
    if git_then == "fails":
        action += "; echo 'injected failure' >&2; exit 3"
    _git_first_on_path(monkeypatch, tmp_path / "bin", "cherry-pick", action)
    result = sandbox.cli("apply", "mv", "alpha", "--onto", "release")
    needle = "moved while" if git_then == "succeeds" else "injected failure"
    _one_line_error(result, needle, "left as it")
    assert git(sandbox.repo, "rev-parse", "release").strip() == moved
    _no_record(sandbox, "mv")


# --- Ctrl-C, SIGTERM: never half done ------------------------------------------------------

SIGNALS = {
    "ctrl-c": "kill -INT $PPID",  # the CLI alone (git runs on)
    "sigterm": "kill -TERM $PPID",
    "terminal": "kill -INT 0; sleep 5",  # the whole group, as a terminal's Ctrl-C: git stops
    # git stopped half way through writing the checkout (a file cut short, a new one).
    "half-written": (
        "printf 'half\\n' > README.md; printf 'ha' > new-alpha.txt; mkdir -p fresh; "
        "kill -INT 0; sleep 5"
    ),
}


def _interrupted_cleanly(result: Result, changed: bool, target: str) -> None:
    if not changed:
        assert result.code in (130, -15), result  # -15: SIGTERM before apply held it
        if result.code == 130:
            assert "interrupted" in result.stderr and result.stdout == "", result
        return
    assert result.code in (0, 130), result
    assert f"applied worker alpha to {target} as" in result.stdout, result
    if result.code == 130:
        assert "the apply was finished first" in result.stderr, result


@pytest.mark.parametrize(
    ("point", "how", "mode"),
    [
        ("cherry-pick", "ctrl-c", "--squash"),
        ("cherry-pick", "sigterm", "--squash"),
        ("cherry-pick", "terminal", "--squash"),
        ("cherry-pick", "half-written", "--squash"),
        ("merge", "half-written", "--merge"),
        ("cherry-pick", "half-written", "--cherry-pick"),
        ("update-ref", "ctrl-c", "--squash"),
        ("update-ref", "sigterm", "--squash"),
        ("update-ref", "terminal", "--squash"),
        ("rev-parse", "ctrl-c", "--squash"),
        ("rev-parse", "terminal", "--squash"),
    ],
)
def test_an_interrupt_in_the_checkout_leaves_it_done_or_as_it_was(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, point: str, how: str,
    mode: str,
) -> None:  # fmt: skip
    finished(sandbox, "cc")
    (sandbox.repo / "notes.txt").write_text("the user's untracked file\n")
    before = checkout_state(sandbox.repo)
    worktrees = registered_worktrees(sandbox.repo)
    _git_first_on_path(monkeypatch, tmp_path / "bin", point, SIGNALS[how])
    result = _in_own_group(sandbox, "apply", "cc", "alpha", mode)
    monkeypatch.setenv("PATH", os.environ["PATH"].split(os.pathsep, 1)[1])
    assert registered_worktrees(sandbox.repo) == worktrees
    after = checkout_state(sandbox.repo)
    changed = after != before
    _interrupted_cleanly(result, changed, "main")
    if not changed:
        _no_record(sandbox, "cc")
        return
    # Done: committed in full, nothing half way, and either recorded or said so.
    assert after["state"] == before["state"]
    assert git(sandbox.repo, "status", "--porcelain") == "?? notes.txt\n"
    recorded = (sandbox.coord_root / "cc" / "alpha" / "applied.json").exists()
    assert recorded or "note: not recorded for teardown" in result.stdout, result


def test_a_ctrl_c_from_a_hook_between_cherry_picked_commits(sandbox: Sandbox) -> None:
    """Stopped after the first of two commits, with git's sequencer state left: its
    own abort takes the branch back to where it was."""
    two_commits = LAUNCHER.replace(
        "&& printf 'edited",
        f"&& printf 'second\\n' > second.txt && git add second.txt && {AGENT} commit -q "
        "--no-gpg-sign -m 'agent: second' && printf 'edited",
    )
    finished(sandbox, "hs", launcher=two_commits)
    count = sandbox.root / "count"
    hook = sandbox.repo / ".git" / "hooks" / "prepare-commit-msg"
    hook.write_text(
        f"#!/bin/sh\necho x >> {count}\n[ $(wc -l < {count}) -eq 2 ] && kill -INT 0\nexit 0\n"
    )
    hook.chmod(0o755)
    before = checkout_state(sandbox.repo)
    result = _in_own_group(sandbox, "apply", "hs", "alpha", "--cherry-pick")
    assert count.read_text() == "x\nx\n"  # the second commit's hook stopped it
    assert (result.code, result.stdout) == (130, ""), result
    assert "nothing was applied" in result.stderr
    assert checkout_state(sandbox.repo) == before
    _no_record(sandbox, "hs")


@pytest.mark.parametrize(
    "point",
    ["worktree add", "reset", "cherry-pick", "update-ref", "worktree remove", "worktree prune"],
)
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm", "terminal"])
def test_an_interrupt_in_the_temporary_worktree_leaves_nothing_behind(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, point: str, how: str
) -> None:
    temp = tmp_path / "tmpdir"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    git(sandbox.repo, "branch", "release")
    finished(sandbox, "ce")
    release = git(sandbox.repo, "rev-parse", "release")
    before = checkout_state(sandbox.repo)
    worktrees = registered_worktrees(sandbox.repo)
    _git_first_on_path(monkeypatch, tmp_path / "bin", point, SIGNALS[how])
    result = _in_own_group(sandbox, "apply", "ce", "alpha", "--onto", "release")
    monkeypatch.setenv("PATH", os.environ["PATH"].split(os.pathsep, 1)[1])
    assert registered_worktrees(sandbox.repo) == worktrees
    assert list(temp.iterdir()) == []
    after = checkout_state(sandbox.repo)
    assert {k: v for k, v in after.items() if k != "branches"} == {
        k: v for k, v in before.items() if k != "branches"
    }
    changed = git(sandbox.repo, "rev-parse", "release") != release
    _interrupted_cleanly(result, changed, "release")
    if changed:
        assert show(sandbox.repo, "release", "new-alpha.txt") == "brand new\n"
    else:
        _no_record(sandbox, "ce")


# --- diff on a terminal ----------------------------------------------------------------


def test_diff_of_hostile_names_and_content_on_a_terminal(sandbox: Sandbox) -> None:
    launcher = (
        "printf 'x\\033]52;c;cHduZWQ=\\007\\033[2J\\r\\n' > \"$(printf 'a\\033[31mred')\" && "
        "printf '\\033]8;;http://x\\033\\\\link\\n' >> README.md"
    )
    finished(sandbox, "dt", launcher=launcher)
    for args in (["diff", "dt", "alpha"], ["diff", "dt", "alpha", "--stat"], ["diff", "dt"]):
        shown = _run_in_pty(args, sandbox.repo, dict(os.environ))
        assert "\x1b" not in shown and "\x07" not in shown, args
        assert "README.md" in shown, args
    piped = sandbox.cli("diff", "dt", "alpha")
    assert "\x1b]8;;http://x" in piped.stdout  # a pipe gets git's bytes


def test_a_recorded_diff_that_is_a_fifo_or_a_link_is_refused(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    finished(sandbox, "orig")
    bundle = tmp_path / "orig.bundle.json"
    assert sandbox.cli("session-export", "orig", "--out", str(bundle)).code == 0
    copy = sandbox.coord_root / "copy"
    assert sandbox.cli("session-import", str(bundle), "--target", str(copy)).code == 0
    patch = copy / "alpha" / "diff.patch"
    patch.unlink()
    os.mkfifo(patch)
    _one_line_error(sandbox.cli("diff", "copy", "alpha"), "FIFO")
    patch.unlink()
    secret = tmp_path / "secret"
    secret.write_text("not for the diff\n")
    patch.symlink_to(secret)
    line = _one_line_error(sandbox.cli("diff", "copy", "alpha"), "symlink")
    assert "not for the diff" not in line
