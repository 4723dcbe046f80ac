"""``--verify CMD``: after each worker's agent exits, the runner runs the check in its
worktree (sandboxed when the worker is, bounded by ``--verify-timeout``) and keeps the
outcome in verify.json beside status.md, the Verify bullet, ``status --json``, the
status table's VERIFY column and the bundle; through the real CLI, real git and tmux,
and (for the sandboxed worker) the real bubblewrap.

The worker's state stays the agent's; a stopped worker runs no check, and a pane closed
while its check runs stops the check; a check that times out is stopped whole (a process
it left in the background too); a bundle's check is never run by a replay of it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from kodelyth_ecc.sandbox import sandbox_problem
from tests.conftest import Sandbox
from tests.replay_helpers import REFERENCE
from tests.support import Result, git, retry_until, run_cli, tmux
from tests.swarm_helpers import (
    assert_nothing_left,
    disk_state,
    process_alive,
    session_record,
    started,
    status_json,
    wait_done,
    wait_until_states,
    workers_by_slug,
    worktree_of,
)
from tests.test_schema import schema_errors

VERIFY_KEYS = {
    "command",
    "exit_code",
    "passed",
    "timed_out",
    "duration_s",
    "output_tail",
    "sandboxed",
    "at",
}
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def _worker_dir(sandbox: Sandbox, session: str, slug: str) -> Path:
    return sandbox.coord_root / session / slug


def _verify_json(sandbox: Sandbox, session: str, slug: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (_worker_dir(sandbox, session, slug) / "verify.json").read_text(encoding="utf-8")
    )
    assert set(data) == VERIFY_KEYS, data
    assert isinstance(data["command"], str)
    assert data["exit_code"] is None or type(data["exit_code"]) is int
    assert type(data["passed"]) is bool and type(data["timed_out"]) is bool
    assert type(data["sandboxed"]) is bool
    assert isinstance(data["duration_s"], (int, float)) and data["duration_s"] >= 0
    assert isinstance(data["output_tail"], str)
    assert ISO_UTC.fullmatch(data["at"]), data["at"]
    return data


def _verify_bullet(sandbox: Sandbox, session: str, slug: str) -> str | None:
    text = (_worker_dir(sandbox, session, slug) / "status.md").read_text(encoding="utf-8")
    found = [
        line[len("- Verify: ") :] for line in text.splitlines() if line.startswith("- Verify:")
    ]
    assert len(found) <= 1, text
    return found[0] if found else None


def _table(stdout: str) -> tuple[list[str], dict[str, str]]:
    """The status table (below the session's header lines): its header cells, and
    each worker's row as its raw line."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("WORKER "))
    head = lines[start].split()
    return head, {line.split()[0]: line for line in lines[start + 1 :] if line.strip()}


# --- a check that passes for one worker and fails for the other -----------------------


def test_the_check_passes_for_one_worker_fails_for_the_other_and_travels_in_the_bundle(
    sandbox: Sandbox,
) -> None:
    runs = sandbox.home / "runs"
    # Passes in alpha's worktree only; every run of it leaves a line in ``runs``.
    check = (
        'echo ran >> "$HOME/runs"; case $PWD in *-alpha) echo alpha-ok;; '
        "*) echo not-alpha >&2; exit 3;; esac"
    )
    started(sandbox, "vs", "--verify", check, "--verify-timeout", "30")
    waited = sandbox.cli("status", "vs", "--wait", "--timeout", "30")
    # The states are the agents': both echo agents exited 0, so --wait is 0.
    assert waited.code == 0, waited
    status = status_json(sandbox, "vs")
    workers = workers_by_slug(status)
    assert {s: w["state"] for s, w in workers.items()} == {
        "alpha": "completed",
        "beta": "completed",
    }
    assert {s: w["exit_code"] for s, w in workers.items()} == {"alpha": 0, "beta": 0}
    assert runs.read_text() == "ran\nran\n"

    alpha, beta = _verify_json(sandbox, "vs", "alpha"), _verify_json(sandbox, "vs", "beta")
    assert alpha["command"] == check and beta["command"] == check
    assert (alpha["exit_code"], alpha["passed"], alpha["timed_out"]) == (0, True, False)
    assert (beta["exit_code"], beta["passed"], beta["timed_out"]) == (3, False, False)
    assert alpha["sandboxed"] is False and beta["sandboxed"] is False
    assert alpha["output_tail"] == "alpha-ok"
    assert beta["output_tail"] == "not-alpha"  # stderr is in the tail too
    assert alpha["duration_s"] < 30 and beta["duration_s"] < 30

    # status.md: the bullet, with the outcome, exit code, duration and command.
    bullets = {slug: _verify_bullet(sandbox, "vs", slug) for slug in ("alpha", "beta")}
    assert re.fullmatch(r"passed \(exit 0, \d+\.\ds\): " + re.escape(check), bullets["alpha"] or "")
    assert re.fullmatch(r"failed \(exit 3, \d+\.\ds\): " + re.escape(check), bullets["beta"] or "")
    # status --json says the same, per worker.
    assert workers["alpha"]["verify"] == bullets["alpha"]
    assert workers["beta"]["verify"] == bullets["beta"]
    # The table has a VERIFY column with the outcome (the command is in status.md).
    head, rows = _table(waited.stdout)
    assert head[:7] == ["WORKER", "STATE", "EXIT", "DURATION", "PANE", "HANDOFF", "VERIFY"]
    column = next(x for x in waited.stdout.splitlines() if x.startswith("WORKER ")).index("VERIFY")
    assert rows["alpha"][column:].startswith("passed (exit 0, ")
    assert rows["beta"][column:].startswith("failed (exit 3, ")
    assert "alpha-ok" not in waited.stdout and "esac" not in waited.stdout

    # The bundle: each worker's verify object as verify.json holds it, meta.verify.
    out = sandbox.root / "vs.bundle.json"
    exported = sandbox.cli("session-export", "vs", "--out", str(out))
    assert exported.code == 0, exported
    bundle = json.loads(out.read_text(encoding="utf-8"))
    assert schema_errors(bundle) == []
    by_slug = {w["slug"]: w for w in bundle["workers"]}
    assert by_slug["alpha"]["verify"] == alpha and by_slug["beta"]["verify"] == beta
    assert bundle["meta"]["verify"] == {"command": check, "timeout_s": 30}

    # session-import restores verify.json, byte for byte.
    target = sandbox.root / "restored"
    imported = sandbox.cli("session-import", str(out), "--target", str(target))
    assert imported.code == 0, imported
    for slug in ("alpha", "beta"):
        original = (_worker_dir(sandbox, "vs", slug) / "verify.json").read_bytes()
        assert (target / slug / "verify.json").read_bytes() == original, slug

    # A replay of the bundle never runs the origin's check: not in the dry-run ...
    dry = sandbox.cli("replay", str(out))
    assert dry.code == 0, dry
    verify_lines = [line for line in dry.stdout.splitlines() if line.startswith("Verify")]
    assert verify_lines == ["Verify        none (add --verify CMD to check each worker's result)"]
    assert "esac" not in dry.stdout and "$HOME/runs" not in dry.stdout
    # ... nor when it runs.
    replay = sandbox.cli(
        "replay", str(out), "--session", "vs-copy", "--execute", "--wait", "--timeout", "30"
    )
    assert replay.code == 0, replay
    for slug in ("alpha", "beta"):
        assert (_worker_dir(sandbox, "vs-copy", slug) / "handoff.md").read_text()
        assert not (_worker_dir(sandbox, "vs-copy", slug) / "verify.json").exists()
        assert _verify_bullet(sandbox, "vs-copy", slug) is None
    assert runs.read_text() == "ran\nran\n"
    # The origin's session keeps its check; the replay's has none, nor a variation of it.
    assert session_record(sandbox, "vs")["verify"] == {"command": check, "timeout_s": 30}
    copy = session_record(sandbox, "vs-copy")
    assert "verify" not in copy and "verify" not in copy["variation"], copy


def test_a_replay_shows_the_check_it_was_given(sandbox: Sandbox, tmp_path: Path) -> None:
    bundle = tmp_path / "b.bundle.json"
    bundle.write_bytes((REFERENCE / "objective-only.bundle.json").read_bytes())
    dry = sandbox.cli("replay", str(bundle), "--verify", "make check", "--verify-timeout", "2m")
    assert dry.code == 0, dry
    assert (
        "Verify        make check (in each worktree after its agent exits; at most 120s)"
        in dry.stdout.splitlines()
    )


# --- the output's tail ------------------------------------------------------------------


def test_the_tail_is_the_last_40_lines_at_most_4_KiB_without_control_sequences(
    sandbox: Sandbox,
) -> None:
    # 100 lines each, with colours, a title (OSC), a hyperlink ended by ST, a bell and a
    # carriage return in the middle: short lines for "short" (the 40-line cap), lines of
    # 127 bytes for "long" (the 4 KiB cap).
    check = (
        "case $PWD in *-short) pad=1;; *) pad=100;; esac; i=1; while [ $i -le 100 ]; do "
        "printf '\\033[1;31mline-%03d\\033[0m \\033]0;title\\007"
        "\\033]8;;https://example.invalid\\033\\\\link\\033]8;;\\033\\\\ "
        "over\\rwritten %0*d\\a\\r\\n' $i $pad 0; i=$((i+1)); done"
    )
    started(sandbox, "tail", "--verify", check, agents="short,long")
    wait_done(sandbox, "tail")
    for slug, pad in (("short", 1), ("long", 100)):
        found = _verify_json(sandbox, "tail", slug)
        assert found["passed"] is True, found
        tail = found["output_tail"]
        raw = tail.encode("utf-8")
        assert len(raw) <= 4096, slug
        for byte in (b"\x1b", b"\r", b"\x07"):
            assert byte not in raw, (slug, byte)
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", tail), slug
        lines = tail.split("\n")
        # The end of the output: whole lines, stripped of their sequences.
        expected = [f"line-{i:03d} link overwritten " + "0" * pad for i in range(61, 101)]
        if slug == "short":
            assert lines == expected
        else:
            # At 127 bytes a line, 4 KiB holds the last 32 lines whole (and a part).
            assert 32 <= len(lines) < 40, len(lines)
            assert lines[-32:] == expected[-32:]
            assert expected[-33].endswith(lines[0])


# --- the timeout -----------------------------------------------------------------------


def test_a_check_past_its_timeout_is_stopped_with_what_it_left_behind(sandbox: Sandbox) -> None:
    pidfile = sandbox.home / "bg.pid"
    check = 'sleep 60 & echo $! > "$HOME/bg.pid"; sleep 60'
    begun = time.monotonic()
    started(sandbox, "slow", "--verify", check, "--verify-timeout", "1", agents="alpha")
    status = wait_done(sandbox, "slow", timeout=30)
    took = time.monotonic() - begun
    alpha = workers_by_slug(status)["alpha"]
    # The agent's state: it exited 0, whatever the check did.
    assert alpha["state"] == "completed" and alpha["exit_code"] == 0
    found = _verify_json(sandbox, "slow", "alpha")
    assert found["timed_out"] is True and found["exit_code"] is None
    assert found["passed"] is False
    assert 1 <= found["duration_s"] < 10, found
    bullet = _verify_bullet(sandbox, "slow", "alpha") or ""
    assert re.fullmatch(r"timed out after \d+\.\ds: " + re.escape(check), bullet), bullet
    assert alpha["verify"] == bullet
    assert took < 20, took  # not the check's 60 s
    # The whole process group went: the background sleep the check started too.
    pid = int(pidfile.read_text())
    retry_until(lambda: not process_alive(pid), timeout=10, message=f"sleep {pid} to be stopped")


# --- usage errors ----------------------------------------------------------------------


def _refused(result: Result, *words: str) -> None:
    assert result.code == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result
    for word in words:
        assert word in lines[0], result
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (("--verify-timeout", "5"), ("--verify-timeout", "--verify")),
        (("--verify", ""), ("verify", "empty")),
        (("--verify", "   "), ("verify", "empty")),
        (("--verify", "pytest -q\nrm -rf ~"), ("verify", "one line")),
        (("--verify", "true\r"), ("verify", "one line")),
    ],
    ids=["timeout-alone", "empty", "blank", "newline", "carriage-return"],
)
def test_a_bad_verify_is_a_usage_error_before_anything_is_created(
    sandbox: Sandbox, tmp_path: Path, flags: tuple[str, ...], words: tuple[str, ...]
) -> None:
    swarm = sandbox.cli(
        "swarm", "--task", "t", "--agents", "alpha", "--harness", "echo", "--session", "bad",
        *flags, "--execute",
    )  # fmt: skip
    _refused(swarm, *words)
    assert_nothing_left(sandbox, "bad", ["alpha"])
    # The same for a dry-run, and for a replay.
    _refused(sandbox.cli("swarm", "--task", "t", "--harness", "echo", *flags), *words)
    bundle = tmp_path / "b.bundle.json"
    bundle.write_bytes((REFERENCE / "objective-only.bundle.json").read_bytes())
    before = disk_state(sandbox)
    replay = sandbox.cli("replay", str(bundle), "--session", "bad", *flags, "--execute")
    _refused(replay, *words)
    _refused(sandbox.cli("replay", str(bundle), *flags), *words)
    assert disk_state(sandbox) == before


# --- the dry-run -----------------------------------------------------------------------


def test_the_dry_run_shows_the_check_and_runs_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    check = f"touch {marker} && pytest -q"
    before = disk_state(sandbox)
    result = sandbox.cli("swarm", "--task", "t", "--agents", "alpha", "--harness", "echo",
                         "--verify", check, "--verify-timeout", "90s")  # fmt: skip
    assert result.code == 0, result
    assert (
        f"Verify        {check} (in each worktree after its agent exits; at most 90s)"
        in result.stdout.splitlines()
    )
    default = sandbox.cli("swarm", "--task", "t", "--harness", "echo", "--verify", "make test")
    assert (
        "Verify        make test (in each worktree after its agent exits; at most 10m)"
        in default.stdout.splitlines()
    )
    none = sandbox.cli("swarm", "--task", "t", "--harness", "echo")
    assert (
        "Verify        none (add --verify CMD to check each worker's result)"
        in none.stdout.splitlines()
    )
    assert not marker.exists()
    assert disk_state(sandbox) == before


# --- sandboxed -------------------------------------------------------------------------


@pytest.fixture
def needs_bwrap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skips where bubblewrap is missing or cannot make namespaces (the product's own
    pre-flight says which), never under CI."""
    problem = sandbox_problem()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"cannot sandbox here: {problem} (.ci/run installs bubblewrap)")
        pytest.skip(f"cannot sandbox here: {problem}")
    # A custom launcher's model traffic would go through the session's proxy (this one
    # makes none): keep the caller's proxies out of it.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def test_a_sandboxed_workers_check_runs_in_its_sandbox_before_its_commits_come_back(
    sandbox: Sandbox, needs_bwrap: None
) -> None:
    canary = "canary-" + secrets.token_hex(8)
    secret = sandbox.home / "secret.txt"
    secret.write_text(canary + "\n")
    launcher = "git commit --allow-empty -q -m agent-commit && echo committed >> {handoff_file_sh}"
    # Passes only where the agent's commit is HEAD and the caller's HOME is out of reach.
    check = (
        'test "$(git log -1 --format=%s)" = agent-commit || exit 4; '
        f"if cat {secret}; then exit 5; fi; echo verified-ok"
    )
    started(sandbox, "sbx", "--sandbox", "--launcher-cmd", launcher, "--verify", check,
            agents="alpha")  # fmt: skip
    status = wait_done(sandbox, "sbx", timeout=60)
    alpha = workers_by_slug(status)["alpha"]
    transcript = (_worker_dir(sandbox, "sbx", "alpha") / "transcript.log").read_text()
    assert alpha["state"] == "completed", (alpha, transcript)
    found = _verify_json(sandbox, "sbx", "alpha")
    assert found["sandboxed"] is True
    assert (found["passed"], found["exit_code"]) == (True, 0), found
    assert "verified-ok" in found["output_tail"] and "secret.txt" in found["output_tail"]
    assert canary not in found["output_tail"]
    assert (_verify_bullet(sandbox, "sbx", "alpha") or "").startswith("passed (exit 0, ")
    # The commit came back to the worker's branch afterwards.
    assert git(sandbox.repo, "log", "-1", "--format=%s", alpha["branch"]).strip() == "agent-commit"
    # Outside the sandbox the same check fails on the secret: the sandbox kept it out.
    worktree = worktree_of(sandbox, "sbx", "alpha")
    plain = subprocess.run(["/bin/sh", "-c", check], cwd=worktree, capture_output=True,
                           text=True, timeout=30, check=False)  # fmt: skip
    assert plain.returncode == 5 and canary in plain.stdout, plain


# --- a stopped worker ------------------------------------------------------------------


def test_a_worker_stopped_by_closing_its_pane_runs_no_check(sandbox: Sandbox) -> None:
    """Unsandboxed, a closed pane takes the runner with it: the worker is lost, no check."""
    check = "touch verify-ran"
    started(sandbox, "cut", "--no-record", "--launcher-cmd", "sleep 30", "--verify", check,
            agents="alpha")  # fmt: skip
    status = wait_until_states(sandbox, "cut", {"alpha": "running"})
    pane = workers_by_slug(status)["alpha"]["pane_id"]
    tmux("kill-pane", "-t", pane)
    wait_until_states(sandbox, "cut", {"alpha": "lost"})
    worktree = worktree_of(sandbox, "cut", "alpha")
    assert not (_worker_dir(sandbox, "cut", "alpha") / "verify.json").exists()
    assert not (worktree / "verify-ran").exists()


def test_a_sandboxed_worker_stopped_by_closing_its_session_runs_no_check(
    sandbox: Sandbox, needs_bwrap: None
) -> None:
    """Sandboxed, the runner outlives the closed pane (to bring the commits back): it
    records the worker as stopped, and runs no check."""
    check = "touch verify-ran"
    started(sandbox, "cut", "--sandbox", "--launcher-cmd", "touch started; sleep 30",
            "--verify", check, agents="alpha")  # fmt: skip
    worktree = worktree_of(sandbox, "cut", "alpha")
    retry_until((worktree / "started").exists, timeout=30, message="the agent to start")
    subprocess.run(["tmux", "kill-session", "-t", "=cut"], check=True, timeout=30)
    status_file = _worker_dir(sandbox, "cut", "alpha") / "status.md"
    retry_until(lambda: "- State: failed" in status_file.read_text(), timeout=30)
    text = status_file.read_text()
    assert "- Reason: stopped" in text, text
    assert "- Verify:" not in text, text
    assert not (_worker_dir(sandbox, "cut", "alpha") / "verify.json").exists()
    assert not (worktree / "verify-ran").exists()


def test_closing_the_pane_while_the_check_runs_stops_the_check(sandbox: Sandbox) -> None:
    """The check runs in a session of its own (so its process group can be stopped):
    the pane's hangup does not reach it, the runner stops it (a closed pane would
    otherwise leave it running with no timeout, in a worktree teardown removes)."""
    pidfile = sandbox.home / "check.pid"
    check = 'echo $$ > "$HOME/check.pid"; sleep 60'
    started(sandbox, "hup", "--verify", check, agents="alpha")
    retry_until(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=20,
                message="the check to start")  # fmt: skip
    pid = int(pidfile.read_text())
    assert process_alive(pid)
    pane = workers_by_slug(status_json(sandbox, "hup"))["alpha"]["pane_id"]
    tmux("kill-pane", "-t", pane)
    retry_until(lambda: not process_alive(pid), timeout=15, message=f"check {pid} to be stopped")
    status_file = _worker_dir(sandbox, "hup", "alpha") / "status.md"
    retry_until(lambda: "- Reason: stopped" in status_file.read_text(), timeout=15)
    assert "- Verify:" not in status_file.read_text()
    assert not (_worker_dir(sandbox, "hup", "alpha") / "verify.json").exists()


def test_a_secret_in_the_checks_output_is_found_and_redacted(tmp_path: Path) -> None:
    """The tail is whatever the check printed (a test that dumps its environment):
    `sanitize` scans it like every other string of the bundle."""
    from tests.replay_helpers import bundle_dict, write_json

    token = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    data = bundle_dict({"alpha": "# Task\n"})
    data["workers"][0]["verify"] = {
        "command": "pytest -q", "exit_code": 1, "passed": False, "timed_out": False,
        "duration_s": 1.0, "output_tail": f"E   assert token == {token!r}", "sandboxed": False,
    }  # fmt: skip
    path = write_json(tmp_path / "b.json", data)
    check = run_cli("sanitize", str(path), "--check", cwd=tmp_path)
    assert check.code == 4 and "workers[0].verify.output_tail" in check.stdout, check
    assert token not in check.stdout + check.stderr
    clean = run_cli("sanitize", str(path), "--out", str(tmp_path / "c.json"), cwd=tmp_path)
    assert clean.code == 0, clean
    tail = json.loads((tmp_path / "c.json").read_text())["workers"][0]["verify"]["output_tail"]
    assert token not in tail and "[REDACTED:github-pat:" in tail
