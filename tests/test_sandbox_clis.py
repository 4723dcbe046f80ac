"""Issue 12 with the real agent CLIs (pinned, from npm) against the scripted provider
stubs on 127.0.0.1: in ``--sandbox`` each CLI starts from its empty private HOME (its
settings copied in by its adapter), reaches its model only through the session's proxy
(unix socket, relayed to a loopback port inside), edits a file, runs the repo's tests
and commits on its branch; export, compare and teardown work as before. Then the
bundle, made "on another machine", replays offline sandboxed by default (no
--trust-recording), reproduces the commit, and compare finds it identical."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Sandbox
from tests.providers.server import Sentinel
from tests.support import git
from tests.swarm_helpers import wait_done
from tests.test_harness_e2e import _point_at, _use_cli
from tests.test_replay_exact import _stub

COMMAND = (
    "cp version.txt hello.txt && sh check.sh && git add hello.txt && "
    "git commit -q -m 'agent commit' && git log --format=%s -1"
)
HARNESSES = ["claude", "gemini", "opencode", "codex"]


@pytest.fixture(autouse=True)
def _needs_bwrap() -> None:
    if shutil.which("bwrap") is None:
        if os.environ.get("CI"):
            pytest.fail("bwrap is missing: .ci/run installs Debian's bubblewrap")
        pytest.skip("bubblewrap is not installed")


def _check(sandbox: Sandbox, session: str, status: dict[str, Any]) -> Path:
    worker = status["workers"][0]
    transcript = sandbox.coord_root / session / worker["slug"] / "transcript.log"
    log = transcript.read_text(errors="replace")
    assert worker["state"] == "completed", log[-3000:]
    assert "TESTS-PASS" in log, log[-3000:]
    subject = git(sandbox.repo, "log", "--format=%s", "-1", worker["branch"]).strip()
    assert subject == "agent commit", log[-3000:]
    worktree = Path(worker["worktree"])
    assert (worktree / "hello.txt").read_text() == "version 1\n"
    assert git(worktree, "status", "--porcelain").strip() == ""
    return worktree


@pytest.mark.parametrize("harness", HARNESSES)
def test_a_real_cli_works_in_the_sandbox_and_a_strangers_replay_of_it_too(
    sandbox: Sandbox, stub_env: pytest.MonkeyPatch, tmp_path: Path, harness: str
) -> None:
    env = stub_env
    _use_cli(env, harness)
    (sandbox.repo / "version.txt").write_text("version 1\n")
    (sandbox.repo / "check.sh").write_text("cmp -s version.txt hello.txt && echo TESTS-PASS\n")
    git(sandbox.repo, "add", "version.txt", "check.sh")
    git(sandbox.repo, "commit", "-q", "-m", "version 1")
    main_before = git(sandbox.repo, "rev-parse", "main").strip()
    if harness == "claude":
        # Inside the sandbox claude's root check is satisfied by the sandbox itself.
        env.delenv("IS_SANDBOX", raising=False)
    with _stub(harness, command=COMMAND) as stub:
        model = _point_at(harness, stub.base_url, sandbox, env, tmp_path)
        if harness == "claude":
            env.delenv("IS_SANDBOX", raising=False)
        result = sandbox.cli(
            "swarm", "--task", "Copy version.txt to hello.txt, test, commit.", "--agents",
            "alpha", "--harness", harness, "--model", model, "--session", "origin",
            "--worker-timeout", "150", "--sandbox", "--execute",
        )  # fmt: skip
        assert result.code == 0, result
        status = wait_done(sandbox, "origin", timeout=180)
    _check(sandbox, "origin", status)
    assert git(sandbox.repo, "rev-parse", "main").strip() == main_before
    out = tmp_path / "origin.json"
    assert sandbox.cli("session-export", "origin", "--out", str(out)).code == 0
    bundle = json.loads(out.read_text())
    assert bundle["workers"][0]["exchanges"], "the traffic went through the proxy"
    bundle["meta"]["machine"] = "f" * 32  # made on another machine
    out.write_text(json.dumps(bundle))
    assert sandbox.cli("teardown", "origin", "--force", "--purge").code == 0

    sentinel = Sentinel()
    try:
        replayed = tmp_path / "copy.json"
        result = sandbox.cli(
            "replay", str(out), "--offline", "--session", "copy", "--execute", "--wait",
            "--timeout", "180", "--export", str(replayed),
        )  # fmt: skip
        assert result.code == 0, result
        assert sentinel.connections == 0
    finally:
        sentinel.close()
    status = json.loads(sandbox.cli("status", "copy", "--json").stdout)["session"]
    _check(sandbox, "copy", status)
    compared = sandbox.cli("compare", str(out), str(replayed))
    assert compared.code == 0, compared
    assert "identical to the recording" in compared.stdout
    assert sandbox.cli("teardown", "copy", "--force").code == 0
