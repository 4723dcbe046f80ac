"""Issue 9, replay: a stranger's bundle inspected and replayed through the real CLI.

- Bundle text never drives the terminal: escape sequences (OSC 52, OSC 8, CSI) and bidi
  marks are written out on every line dry-run and --execute print, warnings included;
  ``--json`` stays JSON with them escaped (item 13).
- Errors name the field, never a bundle value beyond a short, escaped excerpt without
  URL credentials (item 10).
- A base missing here: dry-run warns, --execute refuses in one line with what to fetch
  (item 18); a repository without commits likewise.
- --export is checked before anything is created; only a full object id is the
  origin's commit; bad seeds (``.git`` included) are skipped with a warning (item 19).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import pytest

from kodelyth_ecc.bundle import decode_bundle
from kodelyth_ecc.replay import choose_base
from tests.conftest import Sandbox
from tests.replay_helpers import bundle_dict, swarm_task_md, write_json
from tests.support import Result, git, run_cli
from tests.swarm_helpers import disk_state, wait_done, worktree_of

OSC52 = "\x1b]52;c;ZWNobyBwd25lZA==\x07"  # writes the clipboard
CLEAR = "\x1b[2J"  # clears the screen
OSC8 = "\x1b]8;;http://x\x07"  # starts a link
RLO = "\u202e"  # right-to-left override
C1_CSI = "\x9b2J"  # CSI as one C1 character
HOSTILE = f"{OSC52}{CLEAR}{OSC8}{RLO}{C1_CSI}"
# What must never reach a terminal raw.
RAW = ("\x1b", "\x07", "\u202e", "\x9b")


def _no_raw(result: Result) -> None:
    for char in RAW:
        assert char not in result.stdout, f"raw {char!r} reached stdout"
        assert char not in result.stderr, f"raw {char!r} reached stderr"


def _bundle(tmp_path: Path, data: dict[str, Any], name: str = "b.bundle.json") -> Path:
    return write_json(tmp_path / "bundles" / name, data)


def _head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def _hostile_meta() -> dict[str, Any]:
    return {
        "task": f"fix the login {HOSTILE} flow",
        "harness": f"echo{HOSTILE}",
        "agents": [f"alpha{HOSTILE}"],
        "base_ref": f"main{HOSTILE}",
        "base_commit": f"{HOSTILE}abc",
        "seed_paths": [f".env{HOSTILE}", f"{RLO}notes"],
        "launcher": f"echo {HOSTILE}",
    }


def _hostile_workers() -> dict[str, str]:
    return {"alpha": swarm_task_md("alpha", f"audit {HOSTILE} the module")}


# -- 13: nothing from the bundle drives the terminal -----------------------------------


def test_dry_run_escapes_every_bundle_value(sandbox: Sandbox, tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, bundle_dict(_hostile_workers(), meta=_hostile_meta()))
    before = disk_state(sandbox)
    # --harness and --agents get past the refusals, so meta.harness and meta.agents
    # are shown as what the origin had ("Differs from the origin").
    result = sandbox.cli("replay", str(bundle), "--harness", "echo", "--agents", "alpha")
    assert result.code == 0, result
    _no_raw(result)
    out = result.stdout
    # The values are shown, written out.
    task_line = next(line for line in out.splitlines() if line.startswith("Task "))
    assert "fix the login \\x1b]52;c;" in task_line
    assert "\\u202e" in task_line
    assert "\\x9b2J" in task_line
    assert "  harness  echo\\x1b]52;c;" in out
    assert "  agents   alpha\\x1b]52;c;" in out
    assert "Base          main\\x1b]52;c;" in out
    # Warnings on stderr: the base commit, the base ref, both seeds.
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert any("meta.base_commit is not a full commit id" in w for w in warnings), result
    assert any("base ref 'main\\x1b]52;c;" in w for w in warnings), result
    assert sum("meta.seed_paths[" in w for w in warnings) == 2, result
    assert disk_state(sandbox) == before


def test_dry_run_escapes_worker_texts_and_a_trusted_launcher(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    meta = {"harness": "echo", "launcher": f"echo {HOSTILE}"}
    bundle = _bundle(tmp_path, bundle_dict(_hostile_workers(), meta=meta))
    for extra in ((), ("--trust-launcher",)):
        result = sandbox.cli("replay", str(bundle), *extra)
        assert result.code == 0, result
        _no_raw(result)
        task_line = next(line for line in result.stdout.splitlines() if line.startswith("Task "))
        assert "audit \\x1b]52;c;" in task_line
    assert "  alpha: echo \\x1b]52;c;" in result.stdout


def test_json_escapes_them_and_stays_the_same_json(sandbox: Sandbox, tmp_path: Path) -> None:
    meta = _hostile_meta()
    bundle = _bundle(tmp_path, bundle_dict(_hostile_workers(), meta=meta))
    result = sandbox.cli("replay", str(bundle), "--harness", "echo", "--agents", "alpha", "--json")
    assert result.code == 0, result
    _no_raw(result)
    data = json.loads(result.stdout)
    assert data["planConfig"]["_meta"]["task"] == meta["task"]
    assert data["planConfig"]["baseRef"] == meta["base_ref"]
    assert "\\u202e" in result.stdout and "\\u009b" in result.stdout


def test_execute_summary_and_warnings_escape_bundle_text(sandbox: Sandbox, tmp_path: Path) -> None:
    git(sandbox.repo, "branch", f"feature{RLO}x")  # a ref name may hold bidi marks
    meta = {
        "harness": "echo",
        "base_ref": f"feature{RLO}x",
        "seed_paths": [f"gone{HOSTILE}"],
        "task": f"do {HOSTILE}",
    }
    bundle = _bundle(tmp_path, bundle_dict(_hostile_workers(), meta=meta))
    result = sandbox.cli("replay", str(bundle), "--execute")
    assert result.code == 0, result
    _no_raw(result)
    assert "workers from feature\\u202ex (" in result.stdout
    assert "meta.seed_paths[0] 'gone\\x1b]52;c;" in result.stderr
    wait_done(sandbox, "origin-replay-1")


# -- 10: errors name the field, never the value ----------------------------------------


def test_an_unknown_harness_error_names_the_field_not_the_value(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    token = secrets.token_hex(12)
    meta = {"harness": f"https://user:{token}@evil.example/{HOSTILE}"}
    bundle = _bundle(tmp_path, bundle_dict(_hostile_workers(), meta=meta))
    for mode in ((), ("--json",), ("--execute",)):
        result = sandbox.cli("replay", str(bundle), *mode)
        assert result.code == 2, result
        assert token not in result.stderr + result.stdout, "the bundle's token leaked"
        _no_raw(result)
        assert "the bundle's meta.harness is not a harness known here: pass --harness (" in (
            result.stderr
        )
        assert "evil.example" not in result.stderr


def test_a_bad_agent_error_names_the_index_not_the_value(sandbox: Sandbox, tmp_path: Path) -> None:
    token = secrets.token_hex(12)
    meta = {"harness": "echo", "agents": ["alpha", f"{token}{HOSTILE}"]}
    bundle = _bundle(tmp_path, bundle_dict(_hostile_workers(), meta=meta))
    result = sandbox.cli("replay", str(bundle))
    assert result.code == 2, result
    assert token not in result.stderr + result.stdout, "the bundle's token leaked"
    _no_raw(result)
    assert "meta.agents[1]" in result.stderr
    assert "--agents" in result.stderr


def test_a_base_ref_with_credentials_is_never_printed(sandbox: Sandbox, tmp_path: Path) -> None:
    token = secrets.token_hex(12)
    meta = {"harness": "echo", "base_ref": f"https://user:{token}@git.example/repo.git"}
    bundle = _bundle(tmp_path, bundle_dict(_hostile_workers(), meta=meta))
    for mode in ((), ("--json",), ("--execute",), ("--write-only",)):
        result = sandbox.cli("replay", str(bundle), *mode)
        streams = result.stderr + (result.stdout if mode != ("--json",) else "")
        assert token not in streams, "the bundle's token leaked"
        assert result.code == (1 if mode in (("--execute",), ("--write-only",)) else 0), result
    dry = sandbox.cli("replay", str(bundle))
    assert "Base          https://***@git.example/repo.git (not in this repository)" in dry.stdout


# -- 18: a base missing here -----------------------------------------------------------


def test_missing_base_commit_and_ref_warn_in_dry_run_and_refuse_execute(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    missing = "c0ffee" + "a" * 34
    meta = {"harness": "echo", "base_ref": "feature/gone", "base_commit": missing}
    bundle = _bundle(tmp_path, bundle_dict(_hostile_workers(), meta=meta))
    before = disk_state(sandbox)

    dry = sandbox.cli("replay", str(bundle))
    assert dry.code == 0, dry
    assert "--base-ref" not in dry.stdout
    assert "Base          feature/gone (not in this repository): the origin's base ref" in (
        dry.stdout
    )
    assert f"the origin's base commit {missing[:12]} is not in this repository" in dry.stderr
    assert "--execute will refuse" in dry.stderr
    assert sandbox.cli("replay", str(bundle), "--json").code == 0

    for mode in ("--execute", "--write-only"):
        refused = sandbox.cli("replay", str(bundle), mode)
        assert refused.code == 1, refused
        assert refused.stdout == ""
        (line,) = refused.stderr.splitlines()
        assert "'feature/gone' is not in this repository" in line
        assert f"nor is the origin's commit {missing[:12]}" in line
        assert f"git fetch <remote> {missing}" in line
        assert "--base-ref" in line
    assert disk_state(sandbox) == before


def test_missing_base_ref_alone_says_to_fetch_it(sandbox: Sandbox, tmp_path: Path) -> None:
    meta = {"harness": "echo", "base_ref": "feature/gone"}
    bundle = _bundle(tmp_path, bundle_dict(_hostile_workers(), meta=meta))
    refused = sandbox.cli("replay", str(bundle), "--execute")
    assert refused.code == 1, refused
    (line,) = refused.stderr.splitlines()
    assert "the bundle's base ref 'feature/gone' is not in this repository: fetch it" in line


def test_a_base_ref_flag_that_does_not_resolve_is_still_an_error(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    meta = {"harness": "echo", "base_ref": "feature/gone"}
    bundle = _bundle(tmp_path, bundle_dict(_hostile_workers(), meta=meta))
    result = sandbox.cli("replay", str(bundle), "--base-ref", "nope")
    assert result.code == 1, result
    assert "base ref 'nope' does not resolve" in result.stderr


def test_dry_run_in_a_repository_without_commits_warns(sandbox: Sandbox, tmp_path: Path) -> None:
    empty = sandbox.root / "empty"
    empty.mkdir()
    git(empty, "init", "--quiet")
    bundle = _bundle(tmp_path, bundle_dict(_hostile_workers(), meta={"harness": "echo"}))
    dry = run_cli("replay", str(bundle), cwd=empty, env=os.environ)
    assert dry.code == 0, dry
    assert "has no commits yet" in dry.stderr and "--execute will refuse" in dry.stderr
    assert "Base          HEAD (not in this repository)" in dry.stdout
    refused = run_cli("replay", str(bundle), "--execute", cwd=empty, env=os.environ)
    assert refused.code == 1, refused
    (line,) = refused.stderr.splitlines()
    assert "has no commits yet" in line and "commit something first" in line
    assert not (empty / ".orchestration").exists()


# -- 19: --export checked up front -----------------------------------------------------


def test_export_to_a_missing_directory_fails_before_anything_is_created(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    bundle = _bundle(tmp_path, bundle_dict(_hostile_workers(), meta={"harness": "echo"}))
    before = disk_state(sandbox)
    for target, message in (
        (tmp_path / "missing" / "x.json", "does not exist"),
        (tmp_path, "is a directory"),
        (bundle, "is the input"),
    ):
        result = sandbox.cli("replay", str(bundle), "--execute", "--export", str(target))
        assert result.code == 2, result
        (line,) = result.stderr.splitlines()
        assert "--export" in line and message in line, result
        assert disk_state(sandbox) == before
    assert json.loads(bundle.read_text(encoding="utf-8"))["session"] == "origin"


# -- 19: only a full object id is the origin's commit ----------------------------------


def _decoded(meta: dict[str, Any]) -> Any:
    data = bundle_dict({"alpha": "x"}, meta=meta)
    return decode_bundle(json.dumps(data).encode("utf-8"), "test bundle")


def test_an_abbreviated_or_hex_named_base_commit_is_not_the_origins_commit(
    sandbox: Sandbox,
) -> None:
    repo = sandbox.repo
    head = _head(repo)
    git(repo, "branch", "abcd")
    sha256_like = "e" * 64  # a full SHA-256 id, here (a SHA-1 repo) only a branch name
    git(repo, "branch", sha256_like)
    for fake in ("abcd", head[:4], head[:12], sha256_like):
        choice = choose_base(_decoded({"base_commit": fake}), str(repo), None)
        assert choice.ref == "HEAD", fake
        assert choice.reason.startswith("default"), fake
        assert len(choice.warnings) == 1, fake
    exact = choose_base(_decoded({"base_commit": head}), str(repo), None)
    assert (exact.ref, exact.warnings) == (head, ())
    upper = choose_base(_decoded({"base_commit": head.upper()}), str(repo), None)
    assert upper.reason.startswith("the origin's base commit")


def test_a_full_sha256_id_is_the_origins_commit_in_a_sha256_repository(
    sandbox: Sandbox,
) -> None:
    repo = sandbox.root / "sha256"
    repo.mkdir()
    git(repo, "init", "--quiet", "--object-format=sha256")
    git(repo, "commit", "--quiet", "--allow-empty", "--no-gpg-sign", "-m", "init")
    head = _head(repo)
    assert len(head) == 64
    choice = choose_base(_decoded({"base_commit": head}), str(repo), None)
    assert (choice.ref, choice.warnings) == (head, ())
    short = choose_base(_decoded({"base_commit": head[:40]}), str(repo), None)
    assert short.ref == "HEAD" and len(short.warnings) == 1


def test_a_hex_named_branch_is_not_shown_as_the_origins_commit(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    git(sandbox.repo, "branch", "abcd")
    meta = {"harness": "echo", "base_commit": "abcd"}
    bundle = _bundle(tmp_path, bundle_dict(_hostile_workers(), meta=meta))
    result = sandbox.cli("replay", str(bundle))
    assert result.code == 0, result
    assert "the origin's base commit (same code" not in result.stdout
    assert "meta.base_commit is not a full commit id" in result.stderr


# -- 19: bad seeds are skipped with a warning each, never blocking ---------------------


BAD_SEEDS = [".git/config", ".git", "../outside.txt", "missing.txt", "/etc/hostname", ""]


@pytest.mark.parametrize("mode", ["dry-run", "--json", "--write-only"])
def test_bad_seeds_are_skipped_with_one_warning_each(
    sandbox: Sandbox, tmp_path: Path, mode: str
) -> None:
    (sandbox.repo / ".env").write_text("KEY=1\n")
    (sandbox.root / "outside.txt").write_text("no\n")
    meta = {"harness": "echo", "seed_paths": [*BAD_SEEDS, ".env"]}
    bundle = _bundle(tmp_path, bundle_dict(_hostile_workers(), meta=meta))
    result = sandbox.cli("replay", str(bundle), *(() if mode == "dry-run" else (mode,)))
    assert result.code == 0, result
    warnings = [line for line in result.stderr.splitlines() if "meta.seed_paths[" in line]
    assert len(warnings) == len(BAD_SEEDS), result
    assert "meta.seed_paths[0] '.git/config' is skipped: it is inside git's own data" in (
        result.stderr
    )
    if mode == "--json":
        assert json.loads(result.stdout)["planConfig"]["seedPaths"] == [".env"]


def test_execute_with_a_git_seed_skips_it_and_copies_the_rest(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    (sandbox.repo / ".env").write_text("KEY=1\n")
    meta = {"harness": "echo", "seed_paths": [".git/config", ".env"]}
    bundle = _bundle(tmp_path, bundle_dict(_hostile_workers(), meta=meta))
    result = sandbox.cli("replay", str(bundle), "--execute")
    assert result.code == 0, result
    assert "meta.seed_paths[0] '.git/config' is skipped" in result.stderr
    wait_done(sandbox, "origin-replay-1")
    worktree = worktree_of(sandbox, "origin-replay-1", "alpha")
    assert (worktree / ".env").read_text() == "KEY=1\n"
    # The worktree's .git is git's own file, never the origin's config copied over it.
    assert (worktree / ".git").is_file()
