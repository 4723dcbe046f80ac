"""Each test gets its own HOME, its own tmux server (TMUX_TMPDIR in a short temp
dir, killed and removed afterwards) and its own throwaway git repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import Result, git, run_cli


@dataclass
class Sandbox:
    home: Path
    tmux_tmpdir: Path
    repo: Path
    root: Path

    def cli(self, *args: str, cwd: str | os.PathLike[str] | None = None) -> Result:
        return run_cli(*args, cwd=cwd or self.repo, env=os.environ)

    @property
    def coord_root(self) -> Path:
        return self.repo / ".orchestration"


# Looked up once, before any test can take tmux off PATH, so cleanup always works.
TMUX = shutil.which("tmux") or "tmux"


def _kill_tmux_server(tmpdir: Path) -> None:
    env = {**os.environ, "TMUX_TMPDIR": str(tmpdir)}
    env.pop("TMUX", None)
    subprocess.run([TMUX, "kill-server"], env=env, capture_output=True, check=False)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private HOME and tmux server; never the user's."""
    home = tmp_path / "home"
    home.mkdir()
    # Unix socket paths are short (108 bytes): keep the tmux dir near the root.
    tmux_tmpdir = Path(tempfile.mkdtemp(prefix="kt-", dir="/tmp"))
    # XDG_STATE_HOME holds the recording key (exchanges.machine_key): the test HOME's.
    for name in ("TMUX", "TMUX_PANE", "BASH_ENV", "ENV", "XDG_STATE_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith("GIT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TMUX_TMPDIR", str(tmux_tmpdir))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Test Author")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "author@example.invalid")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Test Committer")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "committer@example.invalid")
    monkeypatch.setenv("SHELL", "/bin/sh")
    src = str(Path(__file__).resolve().parent.parent / "src")
    monkeypatch.setenv("PYTHONPATH", src + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        yield home
    finally:
        _kill_tmux_server(tmux_tmpdir)
        shutil.rmtree(tmux_tmpdir, ignore_errors=True)


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    git(path, "-c", "init.defaultBranch=main", "init", "--quiet")
    (path / "README.md").write_text("# test repo\n")
    (path / "src").mkdir()
    (path / "src" / "app.py").write_text("print('hello')\n")
    git(path, "add", "--all")
    git(path, "commit", "--quiet", "--no-gpg-sign", "-m", "initial")
    return path


@pytest.fixture
def sandbox(tmp_path: Path, isolated_env: Path) -> Sandbox:
    root = tmp_path / "work"
    repo = make_repo(root / "repo")
    return Sandbox(
        home=isolated_env,
        tmux_tmpdir=Path(os.environ["TMUX_TMPDIR"]),
        repo=repo,
        root=root,
    )


@pytest.fixture
def stub_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No update checks, no proxies, nothing but loopback."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("npm_config_offline", "true")
    yield monkeypatch
