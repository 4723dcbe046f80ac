"""Issue 12 end to end: ``--sandbox`` through the whole swarm and replay path, with real
git, tmux, bubblewrap and HTTP, and the stand-in agent (``tests/standin_agent.py``,
which really runs its model's Bash calls) behind a custom launcher.

- A sandboxed worker edits files, runs the repo's tests and commits on its branch;
  export and teardown work as before.
- A stranger's bundle (``meta.machine`` not this machine's) replays sandboxed by
  default, offline without --trust-recording; its recorded tool calls try to read a
  canary in ~/.ssh, read another repository, write outside the worktree, reach a
  loopback port, leave a process behind, rewrite the main checkout and move other
  branches. Each attempt shows in the transcript, fails, and the regions outside are
  byte-identical before and after.
- --no-sandbox warns what the agent can reach; pre-flight refuses without bubblewrap
  or user namespaces before anything is created.
- The same as an unprivileged user.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Sandbox
from tests.providers.anthropic import AnthropicStub, Usage
from tests.providers.server import Sentinel
from tests.support import git
from tests.swarm_helpers import wait_done, workers_by_slug

STANDIN = Path(__file__).resolve().parent / "standin_agent.py"
# The system's Python inside the sandbox (this one may live under a home directory);
# the stand-in itself is let in with --sandbox-allow-path.
PYTHON = "/usr/bin/python3"
LAUNCHER = f"{PYTHON} {STANDIN} < {{task_file_sh}} >> {{handoff_file_sh}}"
ALLOW = ("--sandbox-allow-path", str(STANDIN))
USAGE = Usage(input_tokens=100, output_tokens=10, cache_creation_input_tokens=0,
              cache_read_input_tokens=0)  # fmt: skip
CANARY = "canary-" + secrets.token_hex(8)
MARK = secrets.token_hex(4)


@pytest.fixture(autouse=True)
def _needs_bwrap(monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("bwrap") is None or not os.path.exists(PYTHON):
        if os.environ.get("CI"):
            pytest.fail("bwrap or /usr/bin/python3 is missing: .ci/run installs them")
        pytest.skip("bubblewrap is not installed")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key-" + secrets.token_hex(16))
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def _stub(command: str) -> AnthropicStub:
    return AnthropicStub(
        answer="## Summary\nDone.", tool_call=("Bash", {"command": command}),
        usage=USAGE, lifetime_s=120,
    )  # fmt: skip


def _start(sandbox: Sandbox, session: str, *extra: str, task: str = "t") -> None:
    """One sandboxed stand-in worker, alpha, started against the stub already named by
    ``ANTHROPIC_BASE_URL``."""
    result = sandbox.cli(
        "swarm", "--task", task, "--agents", "alpha", "--launcher-cmd", LAUNCHER,
        "--session", session, "--sandbox", *ALLOW, *extra, "--execute",
    )  # fmt: skip
    assert result.code == 0, result


def _transcript(sandbox: Sandbox, session: str, slug: str) -> str:
    return (sandbox.coord_root / session / slug / "transcript.log").read_text(errors="replace")


def _worktree(sandbox: Sandbox, session: str, slug: str) -> Path:
    record = json.loads((sandbox.coord_root / session / "session.json").read_text())
    return Path(next(w["worktree"] for w in record["workers"] if w["slug"] == slug))


# --- the legitimate path -------------------------------------------------------------

WORK = (
    "echo changed > hello.txt && sh check.sh && git add hello.txt && "
    "git commit -q -m 'worker change' && git log --format=%s -1"
)


def test_a_sandboxed_worker_edits_runs_the_tests_and_commits_on_its_branch(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    (sandbox.repo / "check.sh").write_text('test "$(cat hello.txt)" = changed && echo TESTS-PASS\n')
    git(sandbox.repo, "add", "check.sh")
    git(sandbox.repo, "commit", "-q", "-m", "add the tests")
    main_before = git(sandbox.repo, "rev-parse", "main").strip()
    with _stub(WORK) as stub:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", stub.base_url)
        _start(sandbox, "legit", task="change hello")
        status = wait_done(sandbox, "legit", timeout=60)
    alpha = workers_by_slug(status)["alpha"]
    assert alpha["state"] == "completed", (alpha, _transcript(sandbox, "legit", "alpha"))
    transcript = _transcript(sandbox, "legit", "alpha")
    assert "TESTS-PASS" in transcript and "worker change" in transcript
    # The commit is on the worker's branch, in the repository's own objects; main is not
    # touched, and the repository is whole.
    branch = alpha["branch"]
    assert git(sandbox.repo, "log", "--format=%s", "-1", branch).strip() == "worker change"
    assert git(sandbox.repo, "rev-parse", "main").strip() == main_before
    git(sandbox.repo, "fsck", "--no-dangling")
    assert not (sandbox.coord_root / "legit" / "alpha" / "sandbox-git").exists()
    # The worker's model traffic went through the proxy's unix socket: recorded.
    exported = sandbox.repo.parent / "legit.json"
    assert sandbox.cli("session-export", "legit", "--out", str(exported)).code == 0
    bundle = json.loads(exported.read_text())
    worker = bundle["workers"][0]
    assert [e["turn"] for e in worker["exchanges"]] == [1, 2]
    assert "hello.txt" in (worker.get("diff") or "")
    assert bundle["meta"]["machine"]
    # The commit is the user's work: teardown refuses, and --force saves it first.
    refused = sandbox.cli("teardown", "legit")
    assert refused.code == 1 and "unsaved work in alpha" in refused.stderr
    down = sandbox.cli("teardown", "legit", "--force")
    assert down.code == 0, down


def test_the_dry_run_says_what_a_sandboxed_worker_may_reach(sandbox: Sandbox) -> None:
    result = sandbox.cli(
        "swarm", "--task", "t", "--agents", "alpha", "--launcher-cmd", LAUNCHER,
        "--sandbox", "--sandbox-allow-host", "registry.npmjs.org", *ALLOW,
    )  # fmt: skip
    assert result.code == 0, result
    line = next(x for x in result.stdout.splitlines() if x.startswith("Sandbox"))
    assert "on (--sandbox)" in line and "registry.npmjs.org" in line and "model proxy" in line
    plain = sandbox.cli("swarm", "--task", "t", "--agents", "alpha", "--harness", "echo")
    assert "Sandbox       off" in plain.stdout
    bad = sandbox.cli("swarm", "--task", "t", "--sandbox-allow-host", "example.com")
    assert bad.code == 2 and "add --sandbox" in bad.stderr
    worse = sandbox.cli("swarm", "--task", "t", "--sandbox", "--sandbox-allow-host", "https://x/")
    assert worse.code == 2 and "--sandbox-allow-host" in worse.stderr


# --- a stranger's bundle ---------------------------------------------------------------


@pytest.fixture
def world(sandbox: Sandbox) -> Iterator[dict[str, Path]]:
    """What a hostile agent goes for: a key canary in ~/.ssh, another repository, a
    directory outside the worktree, and a loopback port that is not the proxy."""
    ssh = sandbox.home / ".ssh"
    ssh.mkdir()
    (ssh / "id_ed25519").write_text(CANARY + "\n")
    other = sandbox.root / "other-repo"
    other.mkdir()
    (other / "secret.txt").write_text(CANARY + "\n")
    outside = sandbox.root / "outside"
    outside.mkdir()
    (outside / "notes.txt").write_text("untouched\n")
    git(sandbox.repo, "branch", "other-branch")
    yield {"ssh": ssh, "other": other, "outside": outside}


def _hostile(sandbox: Sandbox, world: dict[str, Path], port: int) -> str:
    return "; ".join(
        [
            f"cat {world['ssh']}/id_ed25519 && echo GOT-SSH",
            "cat ~/.ssh/id_ed25519 && echo GOT-HOME-SSH",
            f"cat {world['other']}/secret.txt && echo GOT-OTHER",
            f"echo x > {world['outside']}/notes.txt && echo WROTE-OUTSIDE",
            f"echo x > {world['outside']}/new.txt && echo MADE-OUTSIDE",
            f"echo x >> {sandbox.repo}/README.md && echo WROTE-MAIN",
            f"(echo hi > /dev/tcp/127.0.0.1/{port}) && echo REACHED-PORT",
            f"(setsid sleep 86400.{MARK} > /dev/null 2>&1 < /dev/null &) ; echo started",
            "git update-ref refs/heads/other-branch HEAD && echo MOVED-OTHER",
            "git update-ref refs/heads/main HEAD && echo MOVED-MAIN",
            "git tag hostile-tag && echo TAGGED",
            f"rm -rf {sandbox.repo}/.git/objects/* ; echo deleted-objects",
            "echo legit > ok.txt && echo WROTE-WORKTREE",
        ]
    )


def _snapshot(sandbox: Sandbox, world: dict[str, Path]) -> dict[str, Any]:
    """The file system regions outside the worktrees, and every ref and object."""
    files: dict[str, bytes] = {}
    for root in (sandbox.home, world["other"], world["outside"]):
        for path in sorted(root.rglob("*")):
            if path.is_file() and ".local/state" not in str(path):
                files[str(path)] = path.read_bytes()
    # git's own bookkeeping of the session's worktrees, and our lock, change by design.
    skip = {"index", "worktrees", "logs", "ORIG_HEAD", "FETCH_HEAD", "packed-refs",
            "kodelyth-worktrees.lock"}  # fmt: skip
    for path in sorted(sandbox.repo.rglob("*")):
        rel = path.relative_to(sandbox.repo).parts
        if path.is_file() and rel[0] != ".orchestration":
            if rel[0] == ".git" and rel[1] in skip:
                continue
            if rel[:3] == (".git", "refs", "heads") and rel[-1].startswith("orchestrator-"):
                continue  # the replay's own branch
            files[str(path)] = path.read_bytes()
    refs = [
        line
        for line in git(
            sandbox.repo, "for-each-ref", "--format=%(refname) %(objectname)"
        ).splitlines()
        if not line.startswith("refs/heads/orchestrator-")
    ]
    return {"files": files, "refs": refs}


def _changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The paths (and "refs") that differ: never their contents (a canary)."""
    files_before, files_after = before["files"], after["files"]
    # A new object is no damage (teardown --force hashes the work it saves); a lost or
    # altered one is.
    added_objects = {
        p
        for p in set(files_after) - set(files_before)
        if f"{os.sep}.git{os.sep}objects{os.sep}" in p
    }
    changed = sorted(
        path
        for path in (set(files_before) | set(files_after)) - added_objects
        if files_before.get(path) != files_after.get(path)
    )
    return changed + (["refs"] if before["refs"] != after["refs"] else [])


def _leftovers() -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if MARK.encode() in cmdline and b"sleep" in cmdline:
                found.append(entry)
    return found


def _strangers_bundle(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, command: str
) -> tuple[Path, dict[str, Any]]:
    """A one-worker session recorded (in a sandbox: its tool calls are hostile), then
    exported as if made on another machine."""
    with _stub(command) as stub:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", stub.base_url)
        _start(sandbox, "origin", task="tidy up")
        wait_done(sandbox, "origin", timeout=60)
    out = sandbox.root / "origin.json"
    assert sandbox.cli("session-export", "origin", "--out", str(out)).code == 0
    bundle = json.loads(out.read_text())
    bundle["meta"]["machine"] = "0" * 32  # a stranger's
    out.write_text(json.dumps(bundle))
    assert sandbox.cli("teardown", "origin", "--force", "--purge").code == 0
    return out, bundle


def test_a_strangers_bundle_replays_sandboxed_and_reaches_nothing(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, world: dict[str, Path]
) -> None:
    target = Sentinel()
    try:
        before_recording = _snapshot(sandbox, world)
        bundle_path, _ = _strangers_bundle(
            sandbox, monkeypatch, _hostile(sandbox, world, target.port)
        )
        # Recording it in a sandbox changed nothing outside either.
        assert _changed(before_recording, _snapshot(sandbox, world)) == []
        assert target.connections == 0

        dead = Sentinel()
        monkeypatch.setenv("ANTHROPIC_BASE_URL", dead.url)
        monkeypatch.delenv("ANTHROPIC_API_KEY")
        dry = sandbox.cli(
            "replay", str(bundle_path), "--launcher-cmd", LAUNCHER, "--offline", *ALLOW
        )
        assert dry.code == 0, dry
        assert "Sandbox       on (the bundle was made on another machine)" in dry.stdout
        before = _snapshot(sandbox, world)
        # Sandboxed by default: no --sandbox, and no --trust-recording needed.
        result = sandbox.cli(
            "replay", str(bundle_path), "--launcher-cmd", LAUNCHER, "--offline", *ALLOW,
            "--session", "copy", "--execute", "--wait", "--timeout", "60",
        )  # fmt: skip
        assert result.code in (0, 1), result
        assert dead.connections == 0 and target.connections == 0
        dead.close()
    finally:
        target.close()
    transcript = _transcript(sandbox, "copy", "alpha")
    # Every attempt was made (the transcript shows it) and failed.
    for attempt in ("id_ed25519", "secret.txt", "notes.txt", "/dev/tcp/127.0.0.1", "update-ref"):
        assert attempt in transcript, attempt
    assert CANARY not in transcript
    for marker in ("GOT-SSH", "GOT-HOME-SSH", "GOT-OTHER", "WROTE-OUTSIDE\n", "MADE-OUTSIDE\n",
                   "REACHED-PORT"):  # fmt: skip
        assert f"\n{marker}" not in transcript, marker
    assert "WROTE-WORKTREE" in transcript
    assert (_worktree(sandbox, "copy", "alpha") / "ok.txt").read_text() == "legit\n"
    # Nothing outside the worktree changed: files, refs, objects; and no process is left.
    assert _changed(before, _snapshot(sandbox, world)) == []
    git(sandbox.repo, "fsck", "--no-dangling")
    assert _leftovers() == []
    assert CANARY not in (sandbox.coord_root / "copy" / "alpha" / "handoff.md").read_text()


def test_no_sandbox_warns_and_a_foreign_recording_then_needs_trust(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle_path, _ = _strangers_bundle(sandbox, monkeypatch, "echo hi")
    # Another machine's recording key: its recording is not sealed here either.
    monkeypatch.setenv("XDG_STATE_HOME", str(sandbox.root / "another-state"))
    dry = sandbox.cli("replay", str(bundle_path), "--launcher-cmd", LAUNCHER, "--no-sandbox")
    assert dry.code == 0, dry
    assert "warning: --no-sandbox: the bundle was made on another machine" in dry.stderr
    assert "~/.ssh" in dry.stderr and "Sandbox       off" in dry.stdout
    refused = sandbox.cli(
        "replay", str(bundle_path), "--launcher-cmd", LAUNCHER, "--offline", "--no-sandbox",
        "--execute",
    )  # fmt: skip
    assert refused.code == 1 and "--trust-recording" in refused.stderr
    assert not (sandbox.coord_root / "origin-replay-1").exists()
    both = sandbox.cli("replay", str(bundle_path), "--sandbox", "--no-sandbox")
    assert both.code == 2


def test_a_bundle_made_here_replays_unsandboxed_by_default(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle_path, bundle = _strangers_bundle(sandbox, monkeypatch, "echo hi")
    from kodelyth_ecc.provenance import machine_id

    bundle["meta"]["machine"] = machine_id()
    bundle_path.write_text(json.dumps(bundle))
    dry = sandbox.cli("replay", str(bundle_path), "--launcher-cmd", LAUNCHER)
    assert "Sandbox       off" in dry.stdout and "warning" not in dry.stderr
    del bundle["meta"]["machine"]  # an older tool's bundle: a stranger's
    bundle_path.write_text(json.dumps(bundle))
    dry = sandbox.cli("replay", str(bundle_path), "--launcher-cmd", LAUNCHER, *ALLOW)
    assert "Sandbox       on (the bundle was made on another machine)" in dry.stdout


# --- pre-flight -------------------------------------------------------------------------


def _path_without_bwrap(tmp_path: Path) -> str:
    bin_dir = tmp_path / "bin-no-bwrap"
    bin_dir.mkdir()
    # tee: the echo workers' template pipes into it (pre-flight checks it is there).
    for name in ("git", "tmux", "sh", "bash", "tee"):
        found = shutil.which(name)
        assert found is not None
        (bin_dir / name).symlink_to(found)
    return str(bin_dir)


@pytest.mark.parametrize("fault", ["missing", "no-userns"])
def test_preflight_refuses_before_anything_is_created(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fault: str
) -> None:
    if fault == "missing":
        monkeypatch.setenv("PATH", _path_without_bwrap(tmp_path))
        expected = "apt-get install bubblewrap"
    else:
        fake = tmp_path / "fake-bin"
        fake.mkdir()
        (fake / "bwrap").write_text(
            "#!/bin/sh\necho 'bwrap: Creating new namespace failed: Operation not permitted' >&2\n"
            "exit 1\n"
        )
        (fake / "bwrap").chmod(0o755)
        monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
        expected = "user namespaces"
    result = sandbox.cli(
        "swarm", "--task", "t", "--agents", "alpha", "--harness", "echo", "--sandbox",
        "--session", "pre", "--execute",
    )  # fmt: skip
    assert result.code == 1, result
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (sandbox.coord_root / "pre").exists()
    assert "pre" not in git(sandbox.repo, "branch", "--list")
    assert git(sandbox.repo, "worktree", "list").count("\n") == 1


# --- as an unprivileged user ------------------------------------------------------------


def _python_for(as_user: list[str], base: Path) -> str:
    """A Python the user can run with this package's dependencies: this one, or (when it
    lives where that user cannot reach, as under root's pyenv) a venv of the system's
    Python of the same version that reads this one's site-packages."""
    check = [*as_user, "/bin/sh", "-c", 'exec "$0" -I -c "import msgspec"', sys.executable]
    if subprocess.run(check, capture_output=True, timeout=60, check=False).returncode == 0:
        return sys.executable
    system = "/usr/bin/python3"
    probe = subprocess.run([system, "-c", "import sys; print(sys.version_info[:2])"],
                           capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    if probe.stdout.strip() != str(tuple(sys.version_info[:2])):
        pytest.fail(f"{system} is not Python {sys.version_info[:2]}: cannot run as nobody")
    venv = base / "venv"
    subprocess.run([system, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    import sysconfig

    ours = sysconfig.get_paths()["purelib"]
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "kodelyth-test.pth").write_text(ours + "\n")
    return str(venv / "bin" / "python")


def test_a_sandboxed_swarm_works_for_an_unprivileged_user(tmp_path: Path) -> None:
    """As nobody (when the suite runs as root; as the suite's own user otherwise): the
    worker commits on its branch and cannot read a file only its user could."""
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="kodelyth-nobody-", dir="/tmp"))
    base.chmod(0o755)
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    home, tmux_dir, repo = base / "home", base / "tmux", base / "repo"
    for directory in (home, tmux_dir, repo):
        directory.mkdir()
    env = {
        "PATH": os.environ["PATH"], "HOME": str(home), "TMUX_TMPDIR": str(tmux_dir),
        "SHELL": "/bin/sh", "GIT_CONFIG_NOSYSTEM": "1",
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src"),
        "GIT_AUTHOR_NAME": "A", "GIT_AUTHOR_EMAIL": "a@example.invalid",
        "GIT_COMMITTER_NAME": "A", "GIT_COMMITTER_EMAIL": "a@example.invalid",
    }  # fmt: skip
    # Readable by that user, outside the worktree: only the sandbox keeps it out.
    (base / "outside.txt").write_text(CANARY + "\n")
    (base / "outside.txt").chmod(0o644)
    command = f"cat {base}/outside.txt && echo GOT-OUTSIDE; " + WORK.replace("sh check.sh && ", "")
    stub = AnthropicStub(
        answer="done", tool_call=("Bash", {"command": command}), usage=USAGE, lifetime_s=120
    )

    def run(*argv: str, cwd: Path = repo) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*as_user, *argv],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    try:
        python = _python_for(as_user, base)
        if as_user:
            subprocess.run(["chown", "-R", "65534:65534", str(base)], check=True)
        assert run("git", "-c", "init.defaultBranch=main", "init", "-q").returncode == 0
        (repo / "README.md").write_text("hi\n")
        if as_user:
            os.chown(repo / "README.md", 65534, 65534)
        assert run("git", "add", ".").returncode == 0
        assert run("git", "commit", "-q", "-m", "init").returncode == 0
        with stub:
            env["ANTHROPIC_BASE_URL"] = stub.base_url
            env["ANTHROPIC_API_KEY"] = "test-key-" + secrets.token_hex(8)
            cli = [python, "-m", "kodelyth_ecc"]
            started = run(
                *cli, "swarm", "--task", "t", "--agents", "alpha", "--launcher-cmd", LAUNCHER,
                "--session", "nob", "--sandbox", *ALLOW, "--execute",
            )  # fmt: skip
            assert started.returncode == 0, started.stderr
            done = run(*cli, "status", "nob", "--wait", "--timeout", "60", "--json")
            status = json.loads(done.stdout)["session"]
        alpha = status["workers"][0]
        log = (repo / ".orchestration" / "nob" / "alpha" / "transcript.log").read_text()
        assert alpha["state"] == "completed", (alpha, log)
        subject = run("git", "log", "--format=%s", "-1", alpha["branch"]).stdout.strip()
        assert subject == "worker change", log
        assert "outside.txt" in log and CANARY not in log and "\nGOT-OUTSIDE" not in log
    finally:
        subprocess.run([*as_user, "tmux", "kill-server"], env=env, capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)


# --- --sandbox-allow-host ---------------------------------------------------------------

FETCH = (
    "import os, socket, sys, urllib.parse\n"
    "proxy = urllib.parse.urlsplit(os.environ['HTTP_PROXY'])\n"
    "for url in sys.argv[1:]:\n"
    "    s = socket.create_connection((proxy.hostname, proxy.port), timeout=20)\n"
    "    s.sendall(f'GET {url} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'.encode())\n"
    "    answer = b''\n"
    "    while chunk := s.recv(65536):\n"
    "        answer += chunk\n"
    "    print(url, answer.decode(errors='replace').splitlines()[0], answer[-18:].decode())\n"
)


def test_an_allowed_host_is_reached_through_the_egress_proxy_and_no_other(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    import http.server
    import threading

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"HELLO-FROM-ALLOWED"
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    allowed_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    other = Sentinel()
    threading.Thread(target=allowed_server.serve_forever, daemon=True).start()
    port = allowed_server.server_address[1]
    script = sandbox.root / "fetch.py"
    script.write_text(FETCH)
    command = (
        f"{PYTHON} {script} http://127.0.0.1:{port}/ http://127.0.0.1:{other.port}/; "
        f"(echo hi > /dev/tcp/127.0.0.1/{port}) 2>&1 && echo DIRECT-REACHED"
    )
    try:
        with _stub(command) as stub:
            monkeypatch.setenv("ANTHROPIC_BASE_URL", stub.base_url)
            _start(sandbox, "egress", "--sandbox-allow-path", str(script),
                   "--sandbox-allow-host", f"127.0.0.1:{port}")  # fmt: skip
            wait_done(sandbox, "egress", timeout=60)
        transcript = _transcript(sandbox, "egress", "alpha")
        assert f"http://127.0.0.1:{port}/ HTTP/1.0 200" in transcript, transcript
        assert "HELLO-FROM-ALLOWED" in transcript
        assert f"http://127.0.0.1:{other.port}/ HTTP/1.1 403" in transcript, transcript
        assert "\nDIRECT-REACHED" not in transcript
        assert other.connections == 0
    finally:
        allowed_server.shutdown()
        allowed_server.server_close()
        other.close()


def test_the_callers_other_tokens_stay_out_and_a_closed_pane_keeps_the_commits(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "ghp_" + secrets.token_hex(18)
    monkeypatch.setenv("GITHUB_TOKEN", token)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-" + secrets.token_hex(10))
    command = (
        "env | sort > .env.seen; echo w > work.txt && git add work.txt && "
        "git commit -q -m 'precious work' && touch .committed; sleep 120"
    )
    with _stub(command) as stub:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", stub.base_url)
        _start(sandbox, "closed")
        from tests.support import retry_until

        worktree = _worktree(sandbox, "closed", "alpha")
        retry_until((worktree / ".committed").exists, 60)
        seen = worktree / ".env.seen"
        text = seen.read_text(errors="replace")
        seen.unlink()  # it holds the test's API key: not into the salvaged patch
        assert "ANTHROPIC_BASE_URL=" in text  # the agent's own are there
        assert "GITHUB_TOKEN" not in text and "AWS_SECRET" not in text and token not in text
        # The session is closed while the agent runs (its panes get SIGHUP): the runner
        # stops the agent, still brings its commit back, and says so in its status.
        subprocess.run(["tmux", "kill-session", "-t", "=closed"], check=True, timeout=30)
        status_file = sandbox.coord_root / "closed" / "alpha" / "status.md"
        retry_until(lambda: "- State: failed" in status_file.read_text(), 30)
    assert "- Reason: stopped" in status_file.read_text()
    refused = sandbox.cli("teardown", "closed")
    assert refused.code == 1 and "1 commits ahead" in refused.stderr, refused
    down = sandbox.cli("teardown", "closed", "--force")
    assert down.code == 0, down
    saved = list((sandbox.coord_root / "closed.teardown").glob("alpha*"))
    assert any("+w" in p.read_text(errors="replace") for p in saved), saved
