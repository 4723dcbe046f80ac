"""Workers get exactly the caller's environment, and no value of it is ever on a
command line or in an error (issue 9, items 11 and 19).

Secrets are built at run time and never printed: assertions say what leaked where,
not the value."""

from __future__ import annotations

import os
import secrets
import shlex
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kodelyth_ecc.execute import ENV_DIR_PREFIX, write_environment_files
from tests.conftest import Sandbox
from tests.support import make_failing_tool
from tests.swarm_helpers import assert_nothing_left, start_swarm, wait_done, worktree_of

SECRET_NAME = "KODELYTH_FAKE_API_KEY"


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the environment files may go (runtime dir and temp dir), to check that
    nothing stays there."""
    where = tmp_path / "private-tmp"
    where.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(where))
    monkeypatch.setenv("TMPDIR", str(where))
    return where


def _leftover_env_dirs(where: Path) -> list[str]:
    return sorted(p.name for p in where.iterdir() if p.name.startswith(ENV_DIR_PREFIX))


def _logging_tools(bin_dir: Path, log: Path) -> None:
    """``git`` and ``tmux`` that append their arguments to ``log``, then run the real one."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for tool in ("git", "tmux"):
        real = subprocess.run(["which", tool], capture_output=True, text=True, check=True)
        script = bin_dir / tool
        script.write_text(
            f'#!/bin/sh\nprintf "%s\\n" "{tool} $*" >> {shlex.quote(str(log))}\n'
            f'exec {shlex.quote(real.stdout.strip())} "$@"\n'
        )
        script.chmod(0o755)


def _all_cmdlines() -> list[bytes]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    found.append(fh.read())
            except OSError:
                continue
    return found


def test_a_secret_reaches_the_agent_and_never_any_command_line(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_tmp: Path
) -> None:
    secret = "kdl-" + secrets.token_hex(20)
    monkeypatch.setenv(SECRET_NAME, secret)
    log = tmp_path / "argv.log"
    _logging_tools(tmp_path / "bin", log)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    launcher = f'printf "%s" "${SECRET_NAME}" > secret.txt'
    args = ["swarm", "--task", "t", "--agents", "alpha,beta,gamma", "--harness", "echo"]
    args += ["--launcher-cmd", launcher, "--session", "sec", "--execute"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "kodelyth_ecc", *args],
        cwd=sandbox.repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    needle = secret.encode()
    leaked = 0
    polls = 0
    deadline = time.monotonic() + 60
    # Poll every process's command line while the swarm starts and its workers run.
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            leaked += sum(needle in line for line in _all_cmdlines())
            polls += 1
    finally:
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, "swarm --execute failed (output withheld: may hold the secret)"
    assert polls > 0
    assert needle not in out and needle not in err, "the secret leaked into the CLI's output"
    assert leaked == 0, "the secret was on a process's command line"
    wait_done(sandbox, "sec")
    for slug in ("alpha", "beta", "gamma"):
        got = (worktree_of(sandbox, "sec", slug) / "secret.txt").read_bytes()
        assert got == needle, f"{slug} did not get the caller's secret"
    assert "tmux " in log.read_text() and "git " in log.read_text()
    assert needle not in log.read_bytes(), "the secret was an argument of git or tmux"
    assert _leftover_env_dirs(private_tmp) == [], "environment files left on disk"


def test_variables_unset_since_the_tmux_server_started_do_not_reach_workers(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A server started (by an earlier swarm, say) while these were set.
    server_env = {**os.environ, "KODELYTH_GONE": "stale", "KODELYTH_CHANGED": "old"}
    subprocess.run(["tmux", "new-session", "-d", "-s", "older"], env=server_env, check=True)
    monkeypatch.delenv("KODELYTH_GONE", raising=False)
    monkeypatch.setenv("KODELYTH_CHANGED", "new value; with spaces")
    launcher = (
        'printf "gone=%s changed=%s\\n" "${KODELYTH_GONE-unset}" "$KODELYTH_CHANGED" '
        ">> {handoff_file_sh}"
    )
    result = start_swarm(sandbox, "envs", agents="alpha", launcher=launcher)
    assert result.code == 0, result
    wait_done(sandbox, "envs")
    handoff = (sandbox.coord_root / "envs" / "alpha" / "handoff.md").read_text()
    assert "gone=unset changed=new value; with spaces\n" in handoff, handoff


def test_an_environment_variable_over_16_kb_does_not_stop_execute(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, private_tmp: Path
) -> None:
    monkeypatch.setenv("KODELYTH_BIG", "b" * 20_000)
    launcher = 'printf "big=%s\\n" "${#KODELYTH_BIG}" >> {handoff_file_sh}'
    result = start_swarm(sandbox, "big", agents="alpha,beta", launcher=launcher)
    assert result.code == 0, result
    status = wait_done(sandbox, "big")
    assert [w["state"] for w in status["workers"]] == ["completed", "completed"]
    for slug in ("alpha", "beta"):
        assert "big=20000\n" in (sandbox.coord_root / "big" / slug / "handoff.md").read_text()
    assert _leftover_env_dirs(private_tmp) == []


def test_a_failing_tmux_batch_prints_no_environment_value(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, private_tmp: Path
) -> None:
    secret = "kdl-" + secrets.token_hex(20)
    # Sorted first and just under one tmux message: a command batch would start with
    # the secret's own command.
    monkeypatch.setenv("AAAA_FILLER", "f" * 15_950)
    monkeypatch.setenv("AAAB_" + SECRET_NAME, secret)
    make_failing_tool(tmp_path / "bin", "tmux", ["split-window"])
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    result = start_swarm(sandbox, "short", agents="alpha,beta")
    assert result.code == 1, "expected the injected tmux failure"
    assert secret not in result.stderr and secret not in result.stdout, "secret in the error"
    assert "f" * 100 not in result.stderr, "an environment value is in the error"
    assert "injected failure" in result.stderr
    assert_nothing_left(sandbox, "short", ["alpha", "beta"])
    assert _leftover_env_dirs(private_tmp) == [], "environment files left after rollback"


def test_a_rollback_after_the_panes_exist_leaves_no_environment_file(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, private_tmp: Path
) -> None:
    make_failing_tool(tmp_path / "bin", "git", ["worktree", "add"], nth=2)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    result = start_swarm(sandbox, "rb", agents="alpha,beta")
    assert result.code == 1, result
    assert "everything this run created was removed" in result.stderr
    assert_nothing_left(sandbox, "rb", ["alpha", "beta"])
    assert _leftover_env_dirs(private_tmp) == []


def test_environment_files_are_private(monkeypatch: pytest.MonkeyPatch, private_tmp: Path) -> None:
    monkeypatch.setenv("KODELYTH_MULTI", "line one\nline two = three")
    directory, files = write_environment_files(["alpha", "beta"])
    try:
        assert Path(directory).parent == private_tmp
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
        assert sorted(files) == ["alpha", "beta"]
        for path in files.values():
            info = os.lstat(path)
            assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
            entries = Path(path).read_bytes().split(b"\0")
            assert b"KODELYTH_MULTI=line one\nline two = three" in entries
        from kodelyth_ecc.runner import read_environment

        env = read_environment(files["alpha"])
        assert env["KODELYTH_MULTI"] == "line one\nline two = three"
        assert env["HOME"] == os.environ["HOME"]
        assert not os.path.lexists(files["alpha"]), "the runner must delete the file it read"
    finally:
        import shutil

        shutil.rmtree(directory)


def test_the_runner_refuses_an_environment_file_behind_a_symlink(tmp_path: Path) -> None:
    from kodelyth_ecc.runner import read_environment

    (tmp_path / "real").write_bytes(b"A=1\0")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(OSError):
        read_environment(str(tmp_path / "link"))
    assert (tmp_path / "real").read_bytes() == b"A=1\0"
