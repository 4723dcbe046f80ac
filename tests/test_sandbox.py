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
