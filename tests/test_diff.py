"""``diff``: each worker's changes against the session's base commit, exactly as
session-export records them; an imported session's recorded diff; never a control
character on a terminal."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import Sandbox
from tests.support import Result, git
from tests.swarm_helpers import branch_of, started, wait_done, worktree_of
from tests.test_compare import _run_in_pty

# alpha commits, edits and adds a file; beta changes nothing.
LAUNCHER = (
    "if [ {worker_slug_sh} = alpha ]; then "
    "printf 'committed\\n' >> README.md && git add README.md && "
    "git -c user.name=agent -c user.email=agent@example.invalid commit -q --no-gpg-sign "
    "-m agent-commit && printf 'edited\\n' >> src/app.py && printf 'brand new\\n' > new.txt; "
    "fi"
)


def _finished(sandbox: Sandbox, session: str) -> None:
    started(sandbox, session, launcher=LAUNCHER)
    wait_done(sandbox, session)


def _exported(sandbox: Sandbox, session: str) -> dict[str, dict[str, Any]]:
    result = sandbox.cli("session-export", session, "--out", "-")
    assert result.code == 0, result
    return {w["slug"]: w for w in json.loads(result.stdout)["workers"]}


def _diff(sandbox: Sandbox, *args: str) -> Result:
    return sandbox.cli("diff", *args)


def test_diff_shows_commits_edits_and_new_files_as_export_records_them(sandbox: Sandbox) -> None:
    _finished(sandbox, "d1")
    exported = _exported(sandbox, "d1")
    one = _diff(sandbox, "d1", "alpha")
    assert one.code == 0, one
    assert one.stdout == exported["alpha"]["diff"]
    for needle in ("+committed", "+edited", "diff --git a/new.txt b/new.txt", "+brand new"):
        assert needle in one.stdout, needle
    stat = _diff(sandbox, "d1", "alpha", "--stat")
    assert stat.code == 0, stat
    assert stat.stdout == exported["alpha"]["diffstat"]
    assert "3 files changed, 3 insertions(+)" in stat.stdout

    every = _diff(sandbox, "d1")
    assert every.code == 0, every
    header = f"==> worker alpha (branch {branch_of('d1', 'alpha')}) <==\n"
    empty = f"\n==> worker beta (branch {branch_of('d1', 'beta')}): no changes <==\n"
    assert every.stdout == header + exported["alpha"]["diff"] + empty
    stats = _diff(sandbox, "d1", "--stat")
    assert stats.stdout == header + exported["alpha"]["diffstat"] + empty

    quiet = _diff(sandbox, "d1", "beta")
    assert (quiet.code, quiet.stdout, quiet.stderr) == (0, "", "worker beta: no changes\n")


def test_diff_leaves_the_worktree_and_its_index_alone(sandbox: Sandbox) -> None:
    _finished(sandbox, "d2")
    worktree = worktree_of(sandbox, "d2", "alpha")
    where = git(worktree, "rev-parse", "--path-format=absolute", "--git-path", "index")
    entry = Path(where.strip())
    before = entry.read_bytes()
    assert _diff(sandbox, "d2", "alpha").code == 0
    assert entry.read_bytes() == before


def test_errors_are_one_line_with_the_fix(sandbox: Sandbox) -> None:
    _finished(sandbox, "d3")
    for args, needles in (
        (("nosuch",), ("no session 'nosuch'", "kodelyth-ecc status")),
        (("d3", "gamma"), ("no worker 'gamma'", "alpha, beta")),
    ):
        result = _diff(sandbox, *args)
        assert result.code == 1, result
        (line,) = result.stderr.splitlines()
        assert all(n in line for n in needles), line

    shutil.rmtree(worktree_of(sandbox, "d3", "alpha"))
    gone = _diff(sandbox, "d3", "alpha")
    assert gone.code == 1, gone
    (line,) = gone.stderr.splitlines()
    assert "is gone" in line and f"branch {branch_of('d3', 'alpha')}" in line, line

    down = sandbox.cli("teardown", "d3", "--force")
    assert down.code == 0, down
    after = _diff(sandbox, "d3")
    assert after.code == 1, after
    (line,) = after.stderr.splitlines()
    assert "was torn down at" in line and "d3.teardown" in line, line


def test_an_imported_session_shows_its_recorded_diff_safely(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    _finished(sandbox, "d4")
    bundle_file = tmp_path / "d4.bundle.json"
    assert sandbox.cli("session-export", "d4", "--out", str(bundle_file)).code == 0
    bundle = json.loads(bundle_file.read_text())
    hostile = "+\x1b]52;c;cHduZWQ=\x07clipboard\x1b[2J\r\n"
    bundle["workers"][0]["diff"] += hostile
    bundle_file.write_text(json.dumps(bundle))
    copy = sandbox.coord_root / "d4copy"
    imported = sandbox.cli("session-import", str(bundle_file), "--target", str(copy))
    assert imported.code == 0, imported

    piped = _diff(sandbox, "d4copy", "alpha")
    assert piped.code == 0, piped
    assert piped.stdout == bundle["workers"][0]["diff"].replace("\r\n", "\n")
    raw = subprocess.run(
        [sys.executable, "-m", "kodelyth_ecc", "diff", "d4copy", "alpha"],
        cwd=sandbox.repo,
        capture_output=True,
        check=True,
    ).stdout
    assert raw == bundle["workers"][0]["diff"].encode()  # a file gets the bytes exactly

    every = _diff(sandbox, "d4copy")
    assert every.stdout.startswith("==> worker alpha (recorded diff) <==\n")
    assert "==> worker beta (recorded diff): no changes <==" in every.stdout

    shown = _run_in_pty(["diff", "d4copy", "alpha"], sandbox.repo, dict(os.environ))
    assert "\x1b" not in shown and "\x07" not in shown
    assert "\\x1b]52;c;cHduZWQ=\\x07clipboard\\x1b[2J\\r" in shown
    assert "+committed" in shown
