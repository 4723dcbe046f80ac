"""Issue 10: each worker's model, tokens and cost: ``status.md`` bullets, the bundle's
optional ``usage`` field, ``status`` columns, and an import/export round trip."""

from __future__ import annotations

import json
from pathlib import Path

from kodelyth_ecc.statusfile import StatusRecord, parse_status, render_status
from tests.conftest import Sandbox
from tests.test_bundle import assert_one_line_error, encode_doc, minimal_doc
from tests.test_export import make_worker

USAGE = {
    "model": "claude-test-1",
    "input_tokens": 1234,
    "output_tokens": 56,
    "cache_read_tokens": 7,
    "cache_write_tokens": None,
    "cost_usd": 0.0123,
    "turns": 2,
    "agent_session_id": "0b6e-session",
    "cli": "claude 2.1.197",
}


def test_usage_bullets_round_trip() -> None:
    record = StatusRecord(name="a", state="completed", exit_code=0, usage=USAGE, reason=None)
    text = render_status(record)
    assert "- Model: claude-test-1\n" in text
    assert "- Cost USD: 0.0123\n" in text
    assert "Cache write tokens" not in text  # unknown: not written
    assert parse_status(text).usage == USAGE


def test_hostile_usage_bullets_are_bounded() -> None:
    parsed = parse_status("- State: completed\n- Input tokens: " + "9" * 5000 + "\n")
    assert parsed.usage is None
    parsed = parse_status("- Model: \x1b]52;c;x\x07\n- Output tokens: 3\n")
    assert parsed.usage is not None
    assert parsed.usage["model"] is None
    assert parsed.usage["output_tokens"] == 3


def test_export_carries_usage_and_status_shows_it(sandbox: Sandbox) -> None:
    status = render_status(StatusRecord(name="w", state="completed", exit_code=0, usage=USAGE))
    make_worker(sandbox.coord_root, "s1", "w", task="t", handoff="h", status=status)
    result = sandbox.cli("session-export", "s1", "--out", "-")
    assert result.code == 0, result
    worker = json.loads(result.stdout)["workers"][0]
    assert worker["usage"] == USAGE
    table = sandbox.cli("status", "s1")
    assert table.code == 0, table
    header, row = table.stdout.splitlines()[:2]
    assert "MODEL" in header and "COST" in header
    assert "claude-test-1" in row and "1,234/56" in row and "$0.0123" in row


def test_usage_survives_import_and_export(sandbox: Sandbox, tmp_path: Path) -> None:
    doc = minimal_doc(session="u1")
    doc["workers"][0]["usage"] = USAGE
    path = tmp_path / "b.json"
    path.write_bytes(encode_doc(doc))
    assert sandbox.cli("session-import", str(path)).code == 0
    out = sandbox.cli("session-export", "u1", "--out", "-")
    assert out.code == 0, out
    assert json.loads(out.stdout)["workers"][0]["usage"] == USAGE


def test_deep_usage_is_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    doc = minimal_doc()
    nested: object = "x"
    for _ in range(40):
        nested = {"k": nested}
    doc["workers"][0]["usage"] = nested
    path = tmp_path / "b.json"
    path.write_bytes(encode_doc(doc))
    result = sandbox.cli("session-import", str(path))
    assert_one_line_error(result, 1, "workers[0].usage nests deeper than 32 levels")


def _usage_bundle(tmp_path: Path, name: str, model: str, tokens: int) -> Path:
    doc = minimal_doc(session=name)
    for worker in doc["workers"]:
        worker["usage"] = {**USAGE, "model": model, "input_tokens": tokens}
    path = tmp_path / f"{name}.bundle.json"
    path.write_bytes(encode_doc(doc))
    return path


def test_compare_shows_usage_side_by_side_and_the_model_as_a_variation(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    a = _usage_bundle(tmp_path, "runa", "model-a", 1000)
    b = _usage_bundle(tmp_path, "runb", "model-b", 2500)
    text = sandbox.cli("compare", str(a), str(b))
    assert text.code == 0, text
    varied = text.stdout.split("What varied", 1)[1].split("Workers:", 1)[0]
    assert "model" in varied and "model-a" in varied and "model-b" in varied
    assert "1,000 in / 56 out, $0.0123 | 2,500 in / 56 out, $0.0123" in text.stdout
    data = json.loads(sandbox.cli("compare", str(a), str(b), "--json").stdout)
    worker = data["workers"][0]
    assert (worker["a"]["input_tokens"], worker["b"]["input_tokens"]) == (1000, 2500)
    assert (worker["a"]["model"], worker["b"]["model"]) == ("model-a", "model-b")
    markdown = sandbox.cli("compare", str(a), str(b), "--markdown").stdout
    assert "1,000 in / 56 out, $0.0123" in markdown
    html = tmp_path / "r.html"
    assert sandbox.cli("compare", str(a), str(b), "--html", str(html)).code == 0
    assert "2,500 in / 56 out" in html.read_text()
    # --blind: the model would tell the runs apart.
    blind = sandbox.cli("compare", str(a), str(b), "--blind", "--blind-key", str(tmp_path / "k"))
    assert "model-a" not in blind.stdout and "model-b" not in blind.stdout
    blind_json = sandbox.cli(
        "compare", str(a), str(b), "--blind", "--json", "--blind-key", str(tmp_path / "k2")
    )
    assert "model-a" not in blind_json.stdout and "model-b" not in blind_json.stdout
