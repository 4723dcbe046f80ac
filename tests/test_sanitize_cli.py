"""``kodelyth-ecc sanitize`` and ``session-export --sanitize`` through the real CLI:
the written bundle, meta.sanitized, idempotence, --check exit codes, allow lists,
--redact-paths (the bundle still imports and replays), and no secret in any output.

Assertion messages name what failed, never a secret."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kodelyth_ecc.bundle import read_bundle
from tests.conftest import Sandbox
from tests.replay_helpers import bundle_dict, swarm_task_md, write_json
from tests.support import Result
from tests.test_sanitize_rules import ALNUM, corpus, rand
from tests.test_schema import schema_errors

EXIT_FOUND = 4
SECRETS = [r["secret"] for r in corpus() if r["secret"]]
CORPUS_TEXT = "\n".join(r["text"] for r in corpus())


def assert_no_secret(*texts: str) -> None:
    leaked = [i for i, s in enumerate(SECRETS) if any(s in t for t in texts)]
    assert leaked == [], "corpus secrets (by index) appear in the output"


def assert_clean_result(result: Result) -> None:
    assert_no_secret(result.stdout, result.stderr)


def dirty_bundle(path: Path, **meta: Any) -> Path:
    data = bundle_dict(
        {"alpha": swarm_task_md("alpha", "audit the auth flow"), "beta": "plain task\n"},
        meta={"task": "audit the auth flow", "agents": ["alpha", "beta"], **meta},
    )
    data["workers"][0]["handoff"] = "# Handoff: alpha\n\n" + CORPUS_TEXT + "\n"
    data["workers"][1]["transcript"] = "$ make deploy\n" + CORPUS_TEXT
    data["workers"][1]["diff"] = "+DB_PASSWORD=" + rand(ALNUM, 18) + "%\n"
    write_json(path, data)
    return path


def run(sandbox: Sandbox, *args: str, cwd: Path | None = None) -> Result:
    result = sandbox.cli(*args, cwd=cwd)
    assert_clean_result(result)
    return result


def test_writes_a_redacted_copy_by_default(sandbox: Sandbox, tmp_path: Path) -> None:
    source = dirty_bundle(tmp_path / "in.bundle.json")
    before = source.read_bytes()
    result = run(sandbox, "sanitize", str(source))
    assert result.code == 0, result
    out = tmp_path / "in.bundle.sanitized.json"
    assert result.stdout.startswith(f"wrote {out}: ")
    assert source.read_bytes() == before
    text = out.read_text(encoding="utf-8")
    assert_no_secret(text)
    doc = json.loads(text)
    assert schema_errors(doc) == []
    read_bundle(str(out))  # a valid bundle
    record = doc["meta"]["sanitized"]
    assert record["tool"].startswith("kodelyth-ecc@") and record["rules_version"]
    findings = record["findings"]
    assert {tuple(f) for f in findings} == {("location", "line", "rule", "fingerprint")}
    locations = {f["location"] for f in findings}
    assert locations == {"workers[0].handoff", "workers[1].transcript", "workers[1].diff"}
    for f in findings:
        assert f"[REDACTED:{f['rule']}:{f['fingerprint']}]" in text
    # The same secret is the same placeholder in every field.
    by_field: dict[str, set[str]] = {}
    for f in findings:
        by_field.setdefault(f["location"], set()).add(f["fingerprint"])
    assert by_field["workers[0].handoff"] == by_field["workers[1].transcript"]
    # Line numbers point at the placeholder (multi-line keys keep their line count).
    handoff = doc["workers"][0]["handoff"].split("\n")
    for f in findings:
        if f["location"] == "workers[0].handoff":
            assert f"[REDACTED:{f['rule']}:{f['fingerprint']}]" in handoff[f["line"] - 1]
    # Nothing else changed.
    original = json.loads(before)
    assert doc["workers"][0]["task"] == original["workers"][0]["task"]
    assert {k: v for k, v in doc["meta"].items() if k != "sanitized"} == original["meta"]


def test_sanitizing_twice_changes_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    source = dirty_bundle(tmp_path / "in.json")
    once, twice = tmp_path / "once.json", tmp_path / "twice.json"
    assert run(sandbox, "sanitize", str(source), "--out", str(once)).code == 0
    result = run(sandbox, "sanitize", str(once), "--out", str(twice))
    assert result.code == 0, result
    assert "0 secret(s) redacted" in result.stdout
    same = once.read_bytes() == twice.read_bytes()
    assert same, "a second sanitize changed the bundle"
    check = run(sandbox, "sanitize", str(once), "--check")
    assert check.code == 0, check


def test_earlier_findings_are_merged_and_malformed_ones_dropped(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    kept = {"location": "workers[0].handoff", "line": 3, "rule": "github-pat",
            "fingerprint": "0123456789ab"}  # fmt: skip
    token = "ghp_" + rand(ALNUM, 36)
    source = dirty_bundle(
        tmp_path / "in.json",
        sanitized={
            "tool": "kodelyth-ecc@0.0.1",
            "findings": [
                kept,
                kept,
                {"location": token, "line": 1, "rule": "x", "fingerprint": "1"},
            ],
            "note": token,
        },
    )
    out = tmp_path / "out.json"
    assert run(sandbox, "sanitize", str(source), "--out", str(out)).code == 0
    text = out.read_text()
    leaked = token in text
    assert not leaked, "meta.sanitized passed unscanned text through"
    record = json.loads(text)["meta"]["sanitized"]
    assert record["findings"][0] == kept
    assert record["findings"].count(kept) == 1 and len(record["findings"]) > 1
    assert set(record) == {"tool", "rules_version", "findings"}


def test_meta_values_are_scanned_nested_and_keys_too(sandbox: Sandbox, tmp_path: Path) -> None:
    token = "glpat-" + rand(ALNUM, 20)
    key_token = "npm_" + rand(ALNUM, 36)
    source = tmp_path / "in.json"
    variation = {"notes": ["ok", f"token {token}"], key_token: 1}
    data = bundle_dict({"alpha": "t\n"}, meta={"task": f"use {token}", "variation": variation})
    write_json(source, data)
    out = tmp_path / "out.json"
    assert run(sandbox, "sanitize", str(source), "--out", str(out)).code == 0
    text = out.read_text()
    leaked = token in text or key_token in text
    assert not leaked, "a meta secret survives"
    locations = [f["location"] for f in json.loads(text)["meta"]["sanitized"]["findings"]]
    assert locations == ["meta.task", "meta.variation.notes[1]", "meta.variation.{1}"]


def test_check_exit_codes_and_listing(sandbox: Sandbox, tmp_path: Path) -> None:
    source = dirty_bundle(tmp_path / "in.json")
    listing = sorted(os.listdir(tmp_path))
    result = run(sandbox, "sanitize", str(source), "--check")
    assert result.code == EXIT_FOUND, result
    assert "secret(s) found" in result.stdout
    assert "workers[0].handoff:" in result.stdout and "github-pat" in result.stdout
    assert sorted(os.listdir(tmp_path)) == listing  # nothing written
    as_json = run(sandbox, "sanitize", str(source), "--check", "--json")
    assert as_json.code == EXIT_FOUND
    report = json.loads(as_json.stdout)
    assert report["clean"] is False and report["findings"] and report["allowed"] == []
    assert set(report["findings"][0]) == {"location", "line", "rule", "fingerprint"}
    clean = tmp_path / "clean.json"
    write_json(clean, bundle_dict({"alpha": "nothing to see\n"}))
    ok = run(sandbox, "sanitize", str(clean), "--check")
    assert ok.code == 0, ok
    assert "no secrets found" in ok.stdout
    assert json.loads(run(sandbox, "sanitize", str(clean), "--check", "--json").stdout)["clean"]


def _one_secret_bundle(path: Path) -> tuple[Path, str]:
    token = "sk_live_" + rand(ALNUM, 24)
    write_json(path, bundle_dict({"alpha": f"charge with {token}\n"}))
    return path, token


def _fingerprint_of(sandbox: Sandbox, bundle: Path) -> str:
    report = json.loads(run(sandbox, "sanitize", str(bundle), "--check", "--json").stdout)
    (finding,) = report["findings"]
    fp: str = finding["fingerprint"]
    return fp


def test_allow_by_fingerprint(sandbox: Sandbox, tmp_path: Path) -> None:
    bundle, token = _one_secret_bundle(tmp_path / "in.json")
    fp = _fingerprint_of(sandbox, bundle)
    result = run(sandbox, "sanitize", str(bundle), "--check", "--json", "--allow", fp.upper())
    assert result.code == 0, result
    report = json.loads(result.stdout)
    assert report["findings"] == [] and [a["fingerprint"] for a in report["allowed"]] == [fp]
    out = tmp_path / "out.json"
    assert run(sandbox, "sanitize", str(bundle), "--out", str(out), "--allow", fp).code == 0
    kept = token in out.read_text()
    assert kept, "the allowed secret was redacted"
    bad = run(sandbox, "sanitize", str(bundle), "--check", "--allow", "nothex")
    assert bad.code == 2 and "not a fingerprint" in bad.stderr


def test_allow_file_in_the_repo_and_explicit(sandbox: Sandbox, tmp_path: Path) -> None:
    bundle, token = _one_secret_bundle(tmp_path / "in.json")
    fp = _fingerprint_of(sandbox, bundle)
    assert run(sandbox, "sanitize", str(bundle), "--check").code == EXIT_FOUND
    (sandbox.repo / ".kodelyth-allow").write_text(f"# test fixture, not a secret\n\n{fp}  # ok\n")
    assert run(sandbox, "sanitize", str(bundle), "--check").code == 0
    # Outside the repository the file is not read; --allow-file names one.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert run(sandbox, "sanitize", str(bundle), "--check", cwd=elsewhere).code == EXIT_FOUND
    allow = tmp_path / "allow.txt"
    allow.write_text(fp + "\n")
    checked = run(
        sandbox, "sanitize", str(bundle), "--check", "--allow-file", str(allow), cwd=elsewhere
    )
    assert checked.code == 0, checked
    # The secret pasted instead of its fingerprint: refused, and not echoed.
    allow.write_text(token + "\n")
    broken = run(sandbox, "sanitize", str(bundle), "--check", "--allow-file", str(allow))
    assert broken.code == 1 and f"{allow}:1: not a fingerprint" in broken.stderr
    echoed = token in broken.stderr
    assert not echoed, "the allow file's line was echoed"


def test_in_place_and_refusals(sandbox: Sandbox, tmp_path: Path) -> None:
    folder = tmp_path / "bundles"
    source = dirty_bundle(folder / "in.json")
    before = source.read_bytes()
    for flags in (
        ("--out", str(source)),
        ("--out", os.path.relpath(source, sandbox.repo)),
        ("--check", "--out", str(tmp_path / "x.json")),
        ("--check", "--in-place"),
        ("--in-place", "--out", str(tmp_path / "x.json")),
        ("--json", "--out", "-"),
        ("--out", str(tmp_path / "missing" / "x.json")),
    ):
        result = run(sandbox, "sanitize", str(source), *flags)
        assert result.code == 2, (flags, result)
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert source.read_bytes() == before
    result = run(sandbox, "sanitize", str(source), "--in-place")
    assert result.code == 0, result
    assert_no_secret(source.read_text())
    assert os.listdir(folder) == ["in.json"]


def test_stdout_output_and_json_report(sandbox: Sandbox, tmp_path: Path) -> None:
    source = dirty_bundle(tmp_path / "in.json")
    piped = run(sandbox, "sanitize", str(source), "--out", "-")
    assert piped.code == 0, piped
    assert "secret(s) redacted" in piped.stderr
    assert "sanitized" in json.loads(piped.stdout)["meta"]
    out = tmp_path / "o.json"
    reported = run(sandbox, "sanitize", str(source), "--out", str(out), "--json")
    report = json.loads(reported.stdout)
    assert report["out"] == str(out) and report["findings"] and len(report["bundle_sha256"]) == 64


def test_hostile_input_is_refused_on_one_line(sandbox: Sandbox, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "kodelyth.session-bundle/v1", "session": "../x"')
    result = run(sandbox, "sanitize", str(bad))
    assert result.code == 1 and result.stderr.count("\n") == 1, result
    traversal = tmp_path / "t.json"
    write_json(traversal, {**bundle_dict({"alpha": "t"}), "session": "../escape"})
    result = run(sandbox, "sanitize", str(traversal), "--check")
    assert result.code == 1 and "not a valid session bundle" in result.stderr
    big = dirty_bundle(tmp_path / "big.json")
    result = run(sandbox, "sanitize", str(big), "--max-bundle-size", "1k")
    assert result.code == 1 and "--max-bundle-size" in result.stderr


def test_no_secret_in_any_output(sandbox: Sandbox, tmp_path: Path) -> None:
    """Every mode, human and JSON, on the whole corpus: stdout and stderr hold no secret."""
    source = dirty_bundle(tmp_path / "in.json")
    results = [
        sandbox.cli("sanitize", str(source), "--check"),
        sandbox.cli("sanitize", str(source), "--check", "--json"),
        sandbox.cli("sanitize", str(source), "--check", "--redact-paths"),
        sandbox.cli("sanitize", str(source), "--out", str(tmp_path / "a.json")),
        sandbox.cli("sanitize", str(source), "--out", str(tmp_path / "b.json"), "--json"),
        sandbox.cli("sanitize", str(source), "--out", "-"),
    ]
    assert [r.code for r in results] == [EXIT_FOUND, EXIT_FOUND, EXIT_FOUND, 0, 0, 0]
    for result in results:
        assert_clean_result(result)


# --- paths and replay ----------------------------------------------------------------


def _swarm(sandbox: Sandbox, session: str, secret: str) -> Path:
    result = sandbox.cli(
        "swarm", "--task", "audit the auth module", "--agents", "alpha,beta", "--harness", "echo",
        "--session", session, "--write-only",
    )  # fmt: skip
    assert result.code == 0, result
    handoff = sandbox.coord_root / session / "alpha" / "handoff.md"
    handoff.write_text(
        f"# Handoff: alpha\n\nFound `{secret}` in {sandbox.repo}/config/deploy.env; "
        f"my home is {sandbox.home} and I ran in {sandbox.repo}.\n"
    )
    return handoff


def test_redact_paths_keeps_the_bundle_importable_and_replayable(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    secret = "ghp_" + rand(ALNUM, 36)
    _swarm(sandbox, "s1", secret)
    exported = tmp_path / "s1.json"
    assert run(sandbox, "session-export", "s1", "--out", str(exported)).code == 0
    text = exported.read_text()
    assert str(sandbox.repo) in text  # task.md names it
    clean = tmp_path / "s1.clean.json"
    result = run(sandbox, "sanitize", str(exported), "--out", str(clean), "--redact-paths")
    assert result.code == 0, result
    assert "path(s) replaced" in result.stdout
    cleaned = clean.read_text()
    leaked = secret in cleaned
    assert not leaked, "secret survives"
    for path in (str(sandbox.repo), str(sandbox.root), str(sandbox.home)):
        assert path not in cleaned, path
    doc = json.loads(cleaned)
    task = doc["workers"][0]["task"]
    assert "- Repo root: `<repo>`" in task and "- Worktree: `<worktrees>/" in task
    assert "<home>" in doc["workers"][0]["handoff"]
    paths = doc["meta"]["sanitized"]["paths"]
    assert set(paths) == {"<repo>", "<worktrees>", "<home>", "<user>"} and paths["<repo>"] > 0
    assert schema_errors(doc) == []
    # Idempotent with paths too.
    again = tmp_path / "again.json"
    assert run(sandbox, "sanitize", str(clean), "--out", str(again), "--redact-paths").code == 0
    same = again.read_bytes() == clean.read_bytes()
    assert same, "a second --redact-paths changed the bundle"
    # It imports and replays.
    target = tmp_path / "restored"
    imported = run(sandbox, "session-import", str(clean), "--target", str(target))
    assert imported.code == 0, imported
    assert (target / "alpha" / "handoff.md").read_text() == doc["workers"][0]["handoff"]
    replayed = run(sandbox, "replay", str(clean), "--write-only")
    assert replayed.code == 0, replayed
    replay_task = (sandbox.coord_root / "s1-replay-1" / "alpha" / "task.md").read_text()
    assert "audit the auth module" in replay_task


def test_session_export_sanitize(sandbox: Sandbox, tmp_path: Path) -> None:
    secret = "xoxb-" + rand("0123456789", 11) + "-" + rand("0123456789", 12) + "-" + rand(ALNUM, 24)
    _swarm(sandbox, "s2", secret)
    out = tmp_path / "s2.json"
    result = run(sandbox, "session-export", "s2", "--out", str(out), "--sanitize")
    assert result.code == 0, result
    assert "1 secret(s) redacted" in result.stdout
    text = out.read_text()
    leaked = secret in text
    assert not leaked, "secret survives session-export --sanitize"
    doc = json.loads(text)
    assert [f["rule"] for f in doc["meta"]["sanitized"]["findings"]] == ["slack-token"]
    assert schema_errors(doc) == [] and str(sandbox.repo) in text
    # The same as exporting, then sanitizing.
    plain = tmp_path / "plain.json"
    assert run(sandbox, "session-export", "s2", "--out", str(plain)).code == 0
    later = tmp_path / "later.json"
    assert run(sandbox, "sanitize", str(plain), "--out", str(later)).code == 0
    strip = {"exported_at"}
    a, b = json.loads(later.read_text()), doc
    assert {k: v for k, v in a.items() if k not in strip} == {
        k: v for k, v in b.items() if k not in strip
    }
    with_paths = run(sandbox, "session-export", "s2", "--out", "-", "--sanitize", "--redact-paths")
    assert with_paths.code == 0, with_paths
    assert str(sandbox.repo) not in with_paths.stdout and "<repo>" in with_paths.stdout
    assert "secret(s) redacted" in with_paths.stderr
    refused = run(sandbox, "session-export", "s2", "--out", str(out), "--redact-paths")
    assert refused.code == 2 and "--sanitize" in refused.stderr
