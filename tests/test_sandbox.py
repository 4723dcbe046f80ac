"""The worker sandbox (``kodelyth_ecc.sandbox``, issue 12's first part) with the real
bubblewrap from Debian: what an agent inside tries and must not manage (read a canary
in ~/.ssh, read another repository, write outside its worktree, reach a loopback port,
leave a process behind), each seen failing from inside, with the regions outside
snapshotted before and after; and the same as an unprivileged user."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kodelyth_ecc.sandbox import SandboxSpec, bwrap_argv, sandbox_problem
from tests.providers.server import Sentinel

CANARY = "canary-" + os.urandom(8).hex()


@pytest.fixture
def bwrap() -> str:
    program = shutil.which("bwrap")
    if program is None:
        if os.environ.get("CI"):
            pytest.fail("bwrap is missing: .ci/run must install Debian's bubblewrap")
        pytest.skip("bubblewrap is not installed")
    return program


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def world() -> Iterator[dict[str, Path]]:
    """A worktree, a HOME with a key canary, another repository, and an outside dir,
    in a directory any user can traverse, each canary readable by anyone: what keeps an
    unprivileged agent from them must be the sandbox, not the permissions."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="kodelyth-sbx-", dir="/tmp"))
    root.chmod(0o755)
    home = root / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text(CANARY + "\n")
    other = root / "other-repo"
    other.mkdir()
    (other / "secret.txt").write_text(CANARY + "\n")
    outside = root / "outside"
    outside.mkdir()
    (outside / "notes.txt").write_text("untouched\n")
    worktree = root / "worktree"
    worktree.mkdir()
    for directory in (home, home / ".ssh", other):
        directory.chmod(0o755)
    for directory in (outside, worktree):
        directory.chmod(0o777)  # writable by anyone: only the sandbox stops the write
    for file in (home / ".ssh" / "id_ed25519", other / "secret.txt", outside / "notes.txt"):
        file.chmod(0o666)
    try:
        yield {"home": home, "other": other, "outside": outside, "worktree": worktree}
    finally:
        shutil.rmtree(root, ignore_errors=True)


HOSTILE = """
cat "$CANARY_HOME/.ssh/id_ed25519" && echo READ-SSH
cat ~/.ssh/id_ed25519 && echo READ-HOME-SSH
cat "$OTHER/secret.txt" && echo READ-OTHER
echo x > "$OUTSIDE/notes.txt" && echo WROTE-OUTSIDE
echo x > "$OUTSIDE/new.txt" && echo MADE-OUTSIDE
echo x > /etc/kodelyth-sandbox-test && echo WROTE-ETC
(echo hi > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && echo REACHED-PORT
(sleep 86400.$MARK &) ; echo started-background
echo legit > ok.txt && echo WROTE-WORKTREE
"""


def _run(bwrap: str, world: dict[str, Path], port: int, mark: str, as_user: list[str]) -> str:
    spec = SandboxSpec(worktree=str(world["worktree"]))
    env = {
        "PATH": "/usr/bin:/bin",
        "CANARY_HOME": str(world["home"]),
        "OTHER": str(world["other"]),
        "OUTSIDE": str(world["outside"]),
        "PORT": str(port),
        "MARK": mark,
        "HOME": str(world["home"]),
    }
    argv = [*as_user, *bwrap_argv(spec, ["/bin/bash", "-c", HOSTILE], bwrap)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    return done.stdout + done.stderr


def _leftovers(mark: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if mark.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def _check(bwrap: str, world: dict[str, Path], tmp_path: Path, as_user: list[str]) -> None:
    listener = Sentinel()  # a loopback port outside that counts who reaches it
    mark = str(os.getpid()) + str(time.monotonic_ns() % 10_000)
    before = {name: _tree(world[name]) for name in ("home", "other", "outside")}
    try:
        out = _run(bwrap, world, listener.port, mark, as_user)
    finally:
        listener.close()
    # Each attempt failed inside, visibly; the legitimate write worked.
    for flag in ("READ-SSH", "READ-HOME-SSH", "READ-OTHER", "WROTE-OUTSIDE", "MADE-OUTSIDE",
                 "WROTE-ETC", "REACHED-PORT"):  # fmt: skip
        assert flag not in out, (flag, out)
    assert CANARY not in out
    assert "WROTE-WORKTREE" in out and "started-background" in out, out
    assert (world["worktree"] / "ok.txt").read_text() == "legit\n"
    # Nothing outside changed; nobody reached the port; nothing outlived the worker.
    assert {name: _tree(world[name]) for name in before} == before
    assert not Path("/etc/kodelyth-sandbox-test").exists()
    assert listener.connections == 0
    deadline = time.monotonic() + 5
    while _leftovers(mark) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _leftovers(mark) == []


def test_a_hostile_agent_is_contained(bwrap: str, world: dict[str, Path], tmp_path: Path) -> None:
    _check(bwrap, world, tmp_path, [])


def test_a_hostile_agent_is_contained_as_an_unprivileged_user(
    bwrap: str, world: dict[str, Path], tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        _check(bwrap, world, tmp_path, [])  # already unprivileged
        return
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        if os.environ.get("CI"):
            pytest.fail("setpriv (util-linux) is missing")
        pytest.skip("setpriv is missing")
    _check(bwrap, world, tmp_path, [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"])


def test_the_sandbox_satisfies_claudes_root_check_and_hides_home(
    bwrap: str, world: dict[str, Path]
) -> None:
    settings = world["home"] / "settings.json"
    settings.write_text('{"theme": "dark"}\n')
    spec = SandboxSpec(worktree=str(world["worktree"]), home="/home/agent",
                       home_files=((str(settings), "settings.json"),))  # fmt: skip
    script = 'echo "$IS_SANDBOX $HOME"; ls -A "$HOME"; cat "$HOME/settings.json"; pwd'
    done = subprocess.run(
        bwrap_argv(spec, ["/bin/sh", "-c", script], bwrap),
        env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines == ["1 /home/agent", "settings.json", '{"theme": "dark"}', str(world["worktree"])]


def test_preflight_names_the_fix(bwrap: str, tmp_path: Path) -> None:
    assert sandbox_problem(bwrap) is None
    missing = sandbox_problem(str(tmp_path / "no-bwrap"))
    assert missing is not None and "apt-get install bubblewrap" in missing
    refusing = tmp_path / "bwrap"
    refusing.write_text(
        "#!/bin/sh\necho 'bwrap: Creating new namespace failed: (ENOSPC)' >&2\nexit 1\n"
    )
    refusing.chmod(0o755)
    said = sandbox_problem(str(refusing))
    assert said is not None and "ENOSPC" in said and "user namespaces" in said


# --- git inside the sandbox: prepare and bring_back ------------------------------------


def _repo_with_worktree(tmp_path: Path) -> tuple[Path, Path, Path]:
    from tests.support import git

    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "-c", "init.defaultBranch=main", "init", "-q")
    (repo / "README").write_text("hi\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "init")
    git(repo, "branch", "other")
    worktree = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "-b", "worker", str(worktree))
    coord = tmp_path / "coord"
    coord.mkdir()
    (coord / "task.md").write_text("task\n")
    (coord / "handoff.md").write_text("")
    return repo, worktree, coord


def _in_sandbox(tmp_path: Path, script: str) -> tuple[Path, Path, str | None, str]:
    from kodelyth_ecc.sandbox import WorkerSandbox, bring_back, prepare

    repo, worktree, coord = _repo_with_worktree(tmp_path)
    ws = WorkerSandbox(
        worktree=str(worktree), branch="worker", state_dir=str(coord / "sandbox-git"),
        task_file=str(coord / "task.md"), handoff_file=str(coord / "handoff.md"),
        python="/usr/bin/python3",
    )  # fmt: skip
    prepared = prepare(ws, ["bash", "-c", script])
    done = subprocess.run(
        list(prepared.argv), capture_output=True, text=True, timeout=60, check=False
    )
    return repo, worktree, bring_back(ws, prepared), done.stdout + done.stderr


def test_the_worker_commits_and_only_its_branch_comes_back(bwrap: str, tmp_path: Path) -> None:
    from tests.support import git

    script = (
        "echo new > new.txt && git add new.txt && git commit -q -m work && echo COMMITTED; "
        "echo staged > staged.txt && git add staged.txt; "
        "git update-ref refs/heads/other HEAD; git tag evil; git update-ref refs/heads/main HEAD; "
        "echo 'gitdir: /tmp/elsewhere' > .git || echo DOTGIT-REFUSED; "
        "echo x > $(git rev-parse --git-dir)/commondir || echo COMMONDIR-REFUSED; "
        "printf '[core]\\n\\tfsmonitor = touch /tmp/pwned\\n' > "
        "$(git rev-parse --git-dir)/config.worktree || echo CONFIG-REFUSED"
    )
    repo, worktree, note, said = _in_sandbox(tmp_path, script)
    assert note is None, said
    assert "COMMITTED" in said
    for refused in ("DOTGIT-REFUSED", "COMMONDIR-REFUSED", "CONFIG-REFUSED"):
        assert refused in said, said
    init = git(repo, "rev-parse", "other").strip()
    assert git(repo, "rev-parse", "main").strip() == init
    assert git(repo, "log", "--format=%s", "-1", "worker").strip() == "work"
    assert git(repo, "tag").strip() == ""
    # The staged file's blob came back too: the host can diff the worktree's index.
    assert "staged.txt" in git(worktree, "diff", "--cached", "--stat")
    git(repo, "fsck", "--no-dangling")


def test_a_planted_symlink_or_a_corrupt_object_is_not_imported(bwrap: str, tmp_path: Path) -> None:
    from tests.support import git

    canary = tmp_path / "canary.txt"
    canary.write_text(CANARY)
    objects = "$(git rev-parse --git-path objects)"
    script = (
        f"mkdir -p {objects}/ab && ln -s {canary} {objects}/ab/{'c' * 38}; "
        f"mkdir -p {objects}/cd && echo garbage > {objects}/cd/{'e' * 38}; "
        "git commit -q --allow-empty -m work"
    )
    repo, _, note, said = _in_sandbox(tmp_path, script)
    # The garbage object fails the check: nothing moves, the state is kept for the user.
    assert note is not None and "not brought back" in note, said
    assert git(repo, "rev-parse", "worker").strip() == git(repo, "rev-parse", "main").strip()
    assert (tmp_path / "coord" / "sandbox-git").is_dir()
    found = subprocess.run(
        ["grep", "-rl", CANARY, str(repo / ".git")], capture_output=True, check=False
    )
    assert found.stdout == b""
    # The repository is whole; only the worktree's own reflog names the commit left out.
    git(repo, "fsck", "--no-dangling", "--no-reflogs")


def test_a_workers_home_gets_the_clis_settings_and_never_its_logins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kodelyth_ecc.plan import build_orchestration_plan, build_swarm_plan
    from kodelyth_ecc.sandbox import SandboxPolicy

    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    (home / ".claude" / "settings.json").write_text("{}")
    (home / ".claude" / ".credentials.json").write_text('{"token": "login"}')
    gemini_home = tmp_path / "gemini-home"
    (gemini_home / ".gemini").mkdir(parents=True)
    (gemini_home / ".gemini" / "settings.json").write_text("{}")
    (gemini_home / ".gemini" / "oauth_creds.json").write_text("{}")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GEMINI_CLI_HOME", str(gemini_home))
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(home / ".claude"))
    seen = {}
    for harness in ("claude", "gemini"):
        config = build_swarm_plan(
            "t", repo_root=str(tmp_path / "repo"), agents=["alpha"], harness=harness
        )._replace(sandbox=SandboxPolicy())
        plan = build_orchestration_plan(config)
        seen[harness] = plan.worker_sandbox(plan.workers[0])
    claude, gemini = seen["claude"], seen["gemini"]
    assert [inside for _, inside in claude.home_files] == [".claude/settings.json"]
    assert ("CLAUDE_CONFIG_DIR", "/home/agent/.claude") in claude.env
    assert claude.home_dirs == (".claude",)
    assert gemini.home_files == (
        (str(gemini_home / ".gemini" / "settings.json"), ".gemini/settings.json"),
    )
    assert ("GEMINI_CLI_HOME", "/home/agent") in gemini.env
    for ws in (claude, gemini):
        assert "credentials" not in ws.to_argument() and "oauth" not in ws.to_argument()


# --- what an adversarial review found (each fixed) ---------------------------------------


def test_the_agent_has_no_capabilities_and_cannot_remount_even_as_root(
    bwrap: str, tmp_path: Path
) -> None:
    script = (
        "grep CapEff /proc/self/status; "
        "mount -o remount,rw,bind $(git rev-parse --git-common-dir) && echo REMOUNTED; "
        "(echo core > /proc/sys/kernel/core_pattern) 2>/dev/null && echo CORE-PATTERN; "
        "test -s /etc/shadow && echo SHADOW; echo done"
    )
    _repo, _, note, said = _in_sandbox(tmp_path, script)
    assert "CapEff:\t0000000000000000" in said, said
    for escape in ("REMOUNTED", "CORE-PATTERN", "SHADOW"):
        assert f"\n{escape}" not in said, said
    assert "done" in said and note is None


def test_a_fifo_for_a_ref_does_not_hang_bring_back(bwrap: str, tmp_path: Path) -> None:
    import threading

    script = (
        "git commit -q --allow-empty -m work; R=$(git rev-parse --git-path refs/heads/worker); "
        "rm -f $R && mkfifo $R; O=$(git rev-parse --git-path objects); "
        "mkdir -p $O/ab && mkfifo $O/ab/$(printf 'c%.0s' $(seq 38)); cd $O && /usr/bin/python3 "
        "-c \"import os\nfor i in range(3000): os.mkdir('d'); os.chdir('d')\" && echo NESTED"
    )
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(_in_sandbox(tmp_path, script))
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "bring_back hung on a FIFO"
    result = outcome[0]
    assert isinstance(result, tuple), result
    note: str | None = result[2]
    said: str = result[3]
    assert "NESTED" in said, said
    assert note is not None and "branch was deleted or damaged" in note
    # Its private state went, however deep it nested (pytest could not remove it).
    assert not (tmp_path / "coord" / "sandbox-git").exists()


def test_a_nested_repository_and_a_steered_head_are_defused(bwrap: str, tmp_path: Path) -> None:
    from tests.support import git

    pwned = tmp_path / "PWNED"
    script = (
        "mkdir sub && git -C sub init -q && "
        "git -C sub -c user.name=x -c user.email=x@x commit -q --allow-empty -m s && "
        f"git -C sub config core.fsmonitor 'touch {pwned}; echo' && "
        "git update-index --add --cacheinfo 160000,$(git -C sub rev-parse HEAD),sub; "
        "G=$(git rev-parse --git-dir); echo 'ref: refs/heads/main' > $G/HEAD; "
        "echo 3333333333333333333333333333333333333333 > $G/MERGE_HEAD"
    )
    _repo, worktree, note, said = _in_sandbox(tmp_path, script)
    assert note is not None and "nested repositories disabled (sub" in note, (note, said)
    assert "HEAD" in note and "MERGE_HEAD" in note
    # The host's own git commands in the worktree run nothing of the worker's.
    git(worktree, "status", "--porcelain")
    git(worktree, "diff", "HEAD")
    assert not pwned.exists()
    assert git(worktree, "symbolic-ref", "HEAD").strip() == "refs/heads/worker"
    assert not (worktree / "sub" / ".git").exists()
    assert (worktree / "sub" / ".git.kodelyth-disabled").is_dir()


def test_an_install_root_is_never_the_home_or_a_dir_straight_under_it(tmp_path: Path) -> None:
    from kodelyth_ecc.sandbox import install_root

    home = tmp_path / "home"
    for place in (".local/bin", "bin", ".nvm/versions/node/v20/bin"):
        (home / place).mkdir(parents=True)
        (home / place / "tool").write_text("#!/bin/sh\n")
    (home / "tool").write_text("#!/bin/sh\n")
    assert install_root(str(home / ".local/bin/tool"), str(home)) == str(home / ".local/bin")
    assert install_root(str(home / "bin/tool"), str(home)) == str(home / "bin/tool")
    assert install_root(str(home / "tool"), str(home)) == str(home / "tool")
    nvm = install_root(str(home / ".nvm/versions/node/v20/bin/tool"), str(home))
    assert nvm == str(home / ".nvm/versions/node/v20")


def test_only_the_agents_own_variables_enter_the_sandbox() -> None:
    from kodelyth_ecc.sandbox import sandbox_environment

    caller = {
        "PATH": "/usr/bin", "ANTHROPIC_API_KEY": "a", "GITHUB_TOKEN": "g",
        "AWS_SECRET_ACCESS_KEY": "s", "SSH_AUTH_SOCK": "/run/ssh", "LC_ALL": "C",
        "MY_PROVIDER_KEY": "k", "ANTHROPIC_BASE_URL": "http://127.0.0.1:1",
    }  # fmt: skip
    options = {"proxy-env": '[["ANTHROPIC_BASE_URL", [], ""]]', "offline-key": "MY_PROVIDER_KEY"}
    inside = sandbox_environment(caller, options)
    assert set(inside) == {"PATH", "ANTHROPIC_API_KEY", "LC_ALL", "MY_PROVIDER_KEY",
                           "ANTHROPIC_BASE_URL"}  # fmt: skip
