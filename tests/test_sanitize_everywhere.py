"""``sanitize`` redacts a secret everywhere it appears (issue 9, items 8, 9 and 10):

- a secret found by its context (an assignment, a URL's password) is replaced in every
  other copy too: the same line, later lines, other workers, meta, meta keys;
- every string of the bundle is scanned (``exported_by``, ``exported_at``, a worker's
  ``state``, ``started_at``, ``finished_at``, the strings of earlier findings);
- a secret in a name (session, slug) is reported by ``--check`` and refused by write
  mode, with an error naming the field, never the value;
- ``--check`` and write mode report the same findings; no output shows a secret.

Secrets are generated at run time; assertion messages never include them."""

from __future__ import annotations

import json
import random
import string
from pathlib import Path
from typing import Any

import pytest

from kodelyth_ecc.bundle import read_bundle
from tests.conftest import Sandbox
from tests.replay_helpers import bundle_dict, write_json
from tests.support import Result
from tests.test_sanitize_rules import ALNUM, rand
from tests.test_schema import schema_errors

EXIT_FOUND = 4


def run(sandbox: Sandbox, secrets: list[str], *args: str) -> Result:
    """The CLI's result, once it is known to show none of ``secrets``."""
    __tracebackhide__ = True  # a failure must not print the arguments (the secrets)
    result = sandbox.cli(*args)
    leaked = [i for i, s in enumerate(secrets) if s in result.stdout or s in result.stderr]
    assert leaked == [], "secrets (by index) appear in the command's output"
    return result


def assert_absent(text: str, secrets: list[str]) -> None:
    __tracebackhide__ = True
    leaked = [i for i, s in enumerate(secrets) if s in text]
    assert leaked == [], "secrets (by index) survive in the bundle"


def password() -> str:
    """A random value the password rule accepts: letters, digits and a symbol."""
    return rand(ALNUM, 17) + "#" + rand(ALNUM, 3)


def copies_bundle(path: Path) -> tuple[Path, list[str]]:
    """A password caught by its assignment and a URL's password, each copied bare into
    the same line, later lines, another worker, meta values and a meta key."""
    pw, url_pw = password(), rand(ALNUM, 20)
    data = bundle_dict(
        {"alpha": "audit the flow\n", "beta": "plain task\n"},
        meta={
            "task": f"rotate {pw} today",
            "notes": {"seen": [f"was {url_pw}"], pw: "a key that is the secret"},
        },
    )
    alpha, beta = data["workers"]
    alpha["handoff"] = (
        f'# Handoff: alpha\n\nDB_PASSWORD="{pw}" and then echo {pw} again\n\n'
        f"later: the password was {pw}; also {url_pw}\n"
    )
    alpha["diff"] = f"+DATABASE_URL=postgres://app:{url_pw}@db.internal:5432/shop\n"
    beta["transcript"] = f"$ deploy\nusing {pw}\nconnecting with {url_pw}\n"
    beta["status"] = f"# Status: beta\n\nglued:x{pw}y\n"
    write_json(path, data)
    return path, [pw, url_pw]


def test_a_secret_found_by_context_is_redacted_in_every_copy(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    source, secrets = copies_bundle(tmp_path / "in.json")
    check = run(sandbox, secrets, "sanitize", str(source), "--check", "--json")
    assert check.code == EXIT_FOUND, check
    checked = json.loads(check.stdout)["findings"]
    out = tmp_path / "out.json"
    wrote = run(sandbox, secrets, "sanitize", str(source), "--out", str(out), "--json")
    assert wrote.code == 0, wrote
    text = out.read_text(encoding="utf-8")
    assert_absent(text, secrets)
    doc = json.loads(text)
    assert schema_errors(doc) == []
    read_bundle(str(out))
    # --check lists exactly what writing redacted and recorded.
    assert json.loads(wrote.stdout)["findings"] == checked
    # The record lists each (location, line, rule, fingerprint) once.
    distinct = list({tuple(f.values()): f for f in checked}.values())
    assert doc["meta"]["sanitized"]["findings"] == distinct
    where = [(f["location"], f["line"]) for f in checked]
    assert where.count(("workers[0].handoff", 3)) == 2  # the assignment and its copy
    for spot in [
        ("workers[0].handoff", 5),
        ("workers[0].diff", 1),
        ("workers[1].transcript", 2),
        ("workers[1].transcript", 3),
        ("workers[1].status", 3),
        ("meta.task", 1),
        ("meta.notes.seen[0]", 1),
        ("meta.notes.{1}", 1),
    ]:
        assert spot in where, f"no finding at {spot}"
    # One secret, one placeholder: every copy reads as the original's placeholder.
    by_line = {(f["location"], f["line"]): f for f in checked}
    first = by_line[("workers[0].handoff", 3)]
    placeholder = f"[REDACTED:{first['rule']}:{first['fingerprint']}]"
    assert doc["workers"][1]["transcript"].split("\n")[1] == f"using {placeholder}"
    assert doc["meta"]["task"] == f"rotate {placeholder} today"
    # The plain text listing names the same findings.
    listing = run(sandbox, secrets, "sanitize", str(source), "--check")
    assert listing.code == EXIT_FOUND
    lines = [ln for ln in listing.stdout.splitlines() if ln.startswith("  ")]
    assert lines == [
        f"  {f['location']}:{f['line']}  {f['rule']}  {f['fingerprint']}" for f in checked
    ]
    # Sanitizing the result again changes nothing, and --check finds it clean.
    twice = tmp_path / "twice.json"
    assert run(sandbox, secrets, "sanitize", str(out), "--out", str(twice)).code == 0
    same = twice.read_bytes() == out.read_bytes()
    assert same, "a second sanitize changed the bundle"
    assert run(sandbox, secrets, "sanitize", str(out), "--check").code == 0


def test_session_export_sanitize_redacts_the_copies(sandbox: Sandbox, tmp_path: Path) -> None:
    """The library call behind ``session-export --sanitize`` does the same."""
    from kodelyth_ecc.bundle import encode_bundle
    from kodelyth_ecc.bundle import read_bundle as load
    from kodelyth_ecc.sanitize import sanitize_bundle, scan_bundle

    source, secrets = copies_bundle(tmp_path / "in.json")
    bundle = load(str(source))
    cleaned, report = sanitize_bundle(bundle)
    assert_absent(encode_bundle(cleaned).decode("utf-8"), secrets)
    assert scan_bundle(bundle).findings == report.findings


def unscanned_bundle(path: Path) -> tuple[Path, str]:
    token = "ghp_" + rand(ALNUM, 36)
    data = bundle_dict({"alpha": "t\n"})
    data["exported_by"] = f"kodelyth-ecc@1.0 {token}"
    data["exported_at"] = token
    worker = data["workers"][0]
    worker.update(state=f"done {token}", started_at=token, finished_at=f"{token}Z")
    data["meta"]["sanitized"] = {
        "tool": "kodelyth-ecc@0.0.1",
        "findings": [
            {"location": f"meta.{token}", "line": 1, "rule": "github-pat",
             "fingerprint": "0123456789ab"},
            {"location": "workers[0].handoff", "line": 2, "rule": "github-pat",
             "fingerprint": "ba9876543210"},
        ],
    }  # fmt: skip
    write_json(path, data)
    return path, token


def test_every_string_is_scanned(sandbox: Sandbox, tmp_path: Path) -> None:
    source, token = unscanned_bundle(tmp_path / "in.json")
    check = run(sandbox, [token], "sanitize", str(source), "--check", "--json")
    assert check.code == EXIT_FOUND, check
    report = json.loads(check.stdout)
    locations = {f["location"] for f in report["findings"]}
    assert locations == {
        "exported_by",
        "exported_at",
        "workers[0].state",
        "workers[0].started_at",
        "workers[0].finished_at",
        "meta.sanitized.findings[0].location",
    }
    out = tmp_path / "out.json"
    wrote = run(sandbox, [token], "sanitize", str(source), "--out", str(out), "--json")
    assert wrote.code == 0, wrote
    assert json.loads(wrote.stdout)["findings"] == report["findings"]
    text = out.read_text(encoding="utf-8")
    assert_absent(text, [token])
    doc = json.loads(text)
    assert schema_errors(doc) == []
    read_bundle(str(out))
    recorded = doc["meta"]["sanitized"]["findings"]
    # The earlier finding holding the token is dropped, the well-formed one kept.
    assert recorded[0]["fingerprint"] == "ba9876543210"
    assert "0123456789ab" not in [f["fingerprint"] for f in recorded]
    assert doc["workers"][0]["state"].startswith("done [REDACTED:github-pat:")
    twice = tmp_path / "twice.json"
    assert run(sandbox, [token], "sanitize", str(out), "--out", str(twice)).code == 0
    same = twice.read_bytes() == out.read_bytes()
    assert same, "a second sanitize changed the bundle"


def name_bundle(path: Path, field: str) -> tuple[Path, list[str]]:
    token = "ghp_" + rand(ALNUM, 36)
    other = "glpat-" + rand(ALNUM, 20)
    session = token if field == "session" else "origin"
    slugs = {"alpha": "t\n", ("beta" if field == "session" else token): f"use {other}\n"}
    write_json(path, bundle_dict(slugs, session=session))
    return path, [token, other]


@pytest.mark.parametrize(
    ("field", "location"), [("session", "session"), ("slug", "workers[1].slug")]
)
def test_a_secret_in_a_name_is_reported_and_refused(
    sandbox: Sandbox, tmp_path: Path, field: str, location: str
) -> None:
    source, secrets = name_bundle(tmp_path / "in.json", field)
    check = run(sandbox, secrets, "sanitize", str(source), "--check")
    assert check.code == EXIT_FOUND, check
    assert f"  {location}:1  github-pat  " in check.stdout
    assert "(a name: rename it)" in check.stdout
    as_json = json.loads(run(sandbox, secrets, "sanitize", str(source), "--check", "--json").stdout)
    assert [f["location"] for f in as_json["unredactable"]] == [location]
    listing = sorted(p.name for p in tmp_path.iterdir())
    out = tmp_path / "out.json"
    refused = run(sandbox, secrets, "sanitize", str(source), "--out", str(out))
    assert refused.code == 1, refused
    message = refused.stderr.strip()
    assert "\n" not in message and location in message and "cannot be redacted" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == listing  # nothing written


def test_short_and_one_class_values_are_not_copied(sandbox: Sandbox, tmp_path: Path) -> None:
    """``redis-cli -a hunter2`` is redacted where it stands, but the word is not looked
    for elsewhere (under 8 characters), nor is a one-class value such as ``monitoring``."""
    data = bundle_dict({"alpha": "t\n"})
    data["workers"][0]["handoff"] = (
        "$ redis-cli -a hunter2 ping\n$ mysql -u root -pmonitoring shop\n"
        "the hunter2 chart and the monitoring dashboard\n"
    )
    source = write_json(tmp_path / "in.json", data)
    out = tmp_path / "out.json"
    assert sandbox.cli("sanitize", str(source), "--out", str(out)).code == 0
    handoff = json.loads(out.read_text())["workers"][0]["handoff"].split("\n")
    assert "hunter2" not in handoff[0] and "monitoring" not in handoff[1]
    assert handoff[2] == "the hunter2 chart and the monitoring dashboard"


def _random_values(rng: random.Random, count: int, lo: int, hi: int) -> list[bytes]:
    """Random values with a symbol inside (never first: ``%x`` reads as a variable)."""
    alphabet = string.ascii_letters + string.digits
    out = []
    for _ in range(count):
        n = rng.randint(lo, hi)
        body = "".join(rng.choice(alphabet) for _ in range(n - 1))
        out.append((body[:3] + rng.choice("#%!") + body[3:]).encode())
    return out


@pytest.mark.parametrize(("lo", "hi"), [(15, 60), (8, 14)])
def test_the_block_index_finds_copies_at_every_offset(lo: int, hi: int) -> None:
    """Past FIND_LIMIT values the search goes through the block index: every copy is
    found whatever its alignment, glued to other text or not, and nothing else."""
    from kodelyth_ecc.sanitize import _Copies

    rng = random.Random(9)
    values = _random_values(rng, 200, lo, hi)
    copies = _Copies(values)
    assert copies.groups[0][2] is not None, "the index is not in use"
    for shift in range(9):
        planted = values[shift::9]
        text = b"x" * shift + b" filler ".join(b"ab" + v + b"cd" for v in planted) + b"\n"
        found = sorted({value for _s, _e, value in copies.spans(text)})
        assert found == sorted(set(planted)), f"missed copies at shift {shift}"
    assert copies.spans(b"nothing of them here " * 100) == []


def test_many_secrets_check_and_write_agree(sandbox: Sandbox, tmp_path: Path) -> None:
    """More distinct secrets than FIND_LIMIT, each copied into another worker."""
    rng = random.Random(4)
    secrets = [s.decode() for s in _random_values(rng, 60, 16, 24)]
    data = bundle_dict({"alpha": "t\n", "beta": "t\n"})
    data["workers"][0]["handoff"] = "".join(f'API_SECRET="{s}"\n' for s in secrets)
    data["workers"][1]["transcript"] = "".join(f"echo {s} | wc\n" for s in reversed(secrets))
    source = write_json(tmp_path / "in.json", data)
    check = run(sandbox, secrets, "sanitize", str(source), "--check", "--json")
    assert check.code == EXIT_FOUND
    out = tmp_path / "out.json"
    wrote = run(sandbox, secrets, "sanitize", str(source), "--out", str(out), "--json")
    assert wrote.code == 0
    findings: list[dict[str, Any]] = json.loads(wrote.stdout)["findings"]
    assert findings == json.loads(check.stdout)["findings"]
    assert_absent(out.read_text(encoding="utf-8"), secrets)
    per_worker = [sum(f["location"].startswith(f"workers[{i}]") for f in findings) for i in (0, 1)]
    assert per_worker == [60, 60]
