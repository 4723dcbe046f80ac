"""Warnings and pre-flight checks a user would want: a launcher program missing from
PATH, a checkout with changes the agents will not see, exporting a running session."""

from __future__ import annotations

import json
import secrets
import string

import pytest

from kodelyth_ecc.preflight import launch_programs
from tests.conftest import Sandbox
from tests.swarm_helpers import disk_state, started, wait_done, wait_until_states, worktree_of


@pytest.mark.parametrize(
    ("command", "programs"),
    [
        ("my-agent --task x", ["my-agent"]),
        ("FOO=1 exec my-agent < task.md | tee -a h", ["my-agent", "tee"]),
        ("cd sub && make test; ./local-script", ["make"]),
        ("if true; then agent-a; else agent-b; fi", ["agent-a", "agent-b"]),
        ("for x in one two; do run-it $x; done", ["run-it"]),
        ("[[ -f x ]] && foo 2>&1 | bar", ["foo", "bar"]),
        ("first\nsecond arg", ["first", "second"]),
        ("(echo x; exit 9) 2>&1 | tee -a h | cat", ["tee", "cat"]),
        ("> log 2>> err my-agent < in", ["my-agent"]),
        ("i=0; until [ $i -ge 4 ]; do i=$((i+1)); (( i++ )); done; go-on", ["go-on"]),
        # Not read (a false "missing" would refuse a working command): nothing checked.
        ("cat <<EOF\nnot-a-command\nEOF", []),
        ("f() { g; }; f", []),
        ("case $x in a) one ;; esac", []),
        ("$AGENT run", []),
        ("echo 'unbalanced", []),
    ],
)
def test_launch_programs(command: str, programs: list[str]) -> None:
    assert launch_programs(command) == programs


def test_missing_launcher_program_is_caught_before_anything_is_made(sandbox: Sandbox) -> None:
    before = disk_state(sandbox)
    launcher = "no-such-agent-program {task_file_sh} | tee -a {handoff_file_sh}"
    result = sandbox.cli(
        "swarm", "--task", "t", "--agents", "solo", "--launcher-cmd", launcher, "--execute"
    )
    assert result.code == 1, result
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "no-such-agent-program (in the launch command of solo) is not on PATH" in result.stderr
    assert disk_state(sandbox) == before
    dry = sandbox.cli("swarm", "--task", "t", "--agents", "solo", "--launcher-cmd", launcher)
    assert dry.code == 0
    assert "no-such-agent-program" in dry.stderr and "--execute will refuse" in dry.stderr


def test_dry_run_warns_of_uncommitted_changes(sandbox: Sandbox) -> None:
    clean = sandbox.cli("swarm", "--task", "t", "--agents", "a", "--harness", "echo")
    assert clean.code == 0 and "uncommitted" not in clean.stderr
    (sandbox.repo / "README.md").write_text("edited\n")
    (sandbox.repo / "new.txt").write_text("new\n")
    dirty = sandbox.cli("swarm", "--task", "t", "--agents", "a", "--harness", "echo")
    assert dirty.code == 0
    assert "warning: the checkout has 2 uncommitted changes the agents will not see" in dirty.stderr
    as_json = sandbox.cli("swarm", "--task", "t", "--agents", "a", "--harness", "echo", "--json")
    json.loads(as_json.stdout)  # the warning is on stderr only
    run = sandbox.cli(
        "swarm", "--task", "t", "--agents", "a", "--harness", "echo", "--session", "d",
        "--execute",
    )  # fmt: skip
    assert run.code == 0, run
    assert "warning: the checkout has 2 uncommitted changes" in run.stderr


def test_export_warns_of_running_workers(sandbox: Sandbox) -> None:
    waiting = "echo started; while [ ! -e release ]; do sleep 0.05; done"
    started(sandbox, "ex", launcher=waiting, agents="a,b")
    wait_until_states(sandbox, "ex", "running")
    result = sandbox.cli("session-export", "ex")
    assert result.code == 0, result
    assert "warning: a, b are still running" in result.stderr
    for slug in ("a", "b"):
        (worktree_of(sandbox, "ex", slug) / "release").touch()
    wait_done(sandbox, "ex")
    again = sandbox.cli("session-export", "ex")
    assert again.code == 0 and "still running" not in again.stderr


def test_export_hints_at_sanitize_when_a_secret_is_in_the_bundle(sandbox: Sandbox) -> None:
    # A key-shaped value the secret rules know (an AWS access key id), made at run time.
    key = "AKIA" + "".join(secrets.choice(string.ascii_uppercase + "234567") for _ in range(16))
    started(sandbox, "sec", launcher=f"echo {key}", agents="a")
    wait_done(sandbox, "sec")
    result = sandbox.cli("session-export", "sec")
    assert result.code == 0, result
    assert "kodelyth-ecc sanitize --check" in result.stderr
    assert key not in result.stderr + result.stdout
    started(sandbox, "clean", agents="a")
    wait_done(sandbox, "clean")
    quiet = sandbox.cli("session-export", "clean")
    assert quiet.code == 0 and "sanitize" not in quiet.stderr
    sanitized = sandbox.cli("session-export", "sec", "--sanitize", "--out", "s.json")
    assert sanitized.code == 0 and "sanitize --check" not in sanitized.stderr
