"""``compare``: facts the issue promises that the main tests do not pin down: handoff
sizes, ``lost`` workers of a live session, the origin's digest check, what
``--blind`` hides, the diff budget's note, markdown cells, JSON purity with the
gate and HTML together, and wording for odd numbers.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

from kodelyth_ecc.compare import DIFF_BUDGET_LINES, EXIT_REGRESSION
from kodelyth_ecc.humanize import human_duration
from tests.conftest import Sandbox
from tests.support import run_cli, tmux
from tests.swarm_helpers import started, status_json, wait_until_states
from tests.test_compare import bundle, full_handoff, handoff, pair, typical_pair, worker, write

# --------------------------------------------------------------------------- handoff size


def test_handoff_size_is_the_utf8_byte_count_side_by_side(tmp_path: Path) -> None:
    text_a = full_handoff("x", Summary="é" * 600)  # two bytes a character
    text_b = full_handoff("x", Summary="- short")
    a, b = pair(tmp_path, [worker("x", handoff_text=text_a)], [worker("x", handoff_text=text_b)])
    data = json.loads(run_cli("compare", str(a), str(b), "--json", cwd=tmp_path).stdout)
    facts_a, facts_b = data["workers"][0]["a"], data["workers"][0]["b"]
    assert facts_a["handoff_bytes"] == len(text_a.encode("utf-8")) > 1200
    assert facts_b["handoff_bytes"] == len(text_b.encode("utf-8"))
    assert facts_a["handoff_lines"] == text_a.count("\n")
    size_a = f"{len(text_a.encode('utf-8')) / 1024:.1f} KiB"
    size_b = f"{len(text_b.encode('utf-8'))} B"
    terminal = run_cli("compare", str(a), str(b), cwd=tmp_path).stdout
    assert "handoff size" in terminal
    assert f"{size_a} / {size_b}" in terminal
    markdown = run_cli("compare", str(a), str(b), "--markdown", cwd=tmp_path).stdout
    assert f"| {size_a} / {size_b} |" in markdown


# --------------------------------------------------------------------------- live sessions


def test_a_live_worker_whose_pane_died_is_lost(sandbox: Sandbox, tmp_path: Path) -> None:
    started(sandbox, "live", launcher="sleep 60")
    wait_until_states(sandbox, "live", "running")
    exported = tmp_path / "live.bundle.json"
    result = sandbox.cli("session-export", "live", "--out", str(exported))
    assert result.code == 0, result
    alpha = next(w for w in status_json(sandbox, "live")["workers"] if w["slug"] == "alpha")
    tmux("kill-pane", "-t", alpha["pane_id"])
    wait_until_states(sandbox, "live", {"alpha": "lost", "beta": "running"})
    result = sandbox.cli("compare", str(exported), "live", "--json")
    assert result.code == 0, result
    data = json.loads(result.stdout)
    assert data["b"]["kind"] == "session"
    states = {w["slug"]: (w["a"]["state"], w["b"]["state"]) for w in data["workers"]}
    # The bundle was exported while both ran; in the live session alpha's pane is gone.
    assert states == {"alpha": ("running", "lost"), "beta": ("running", "running")}
    terminal = sandbox.cli("compare", str(exported), "live")
    assert re.search(r"alpha\s+both\s+running / lost", terminal.stdout), terminal.stdout


# --------------------------------------------------------------------------- origin digest


def _replay_with_recorded_digest(tmp_path: Path, recorded: str) -> tuple[Path, Path]:
    origin = write(tmp_path, "swarm-o.bundle.json", bundle("swarm-o", [worker("x")]))
    meta = {"replay_of": {"session": "swarm-o", "bundle_sha256": recorded}}
    replay = write(tmp_path, "swarm-o-replay-1.bundle.json", bundle("r1", [worker("x")], meta))
    return origin, replay


def test_an_origin_that_changed_since_the_replay_is_noted(tmp_path: Path) -> None:
    origin, replay = _replay_with_recorded_digest(tmp_path, "0" * 64)
    actual = hashlib.sha256(origin.read_bytes()).hexdigest()
    result = run_cli("compare", str(replay), "--json", cwd=tmp_path)
    assert result.code == 0, result
    (note,) = json.loads(result.stdout)["notes"]
    assert f"sha256 {actual} vs recorded {'0' * 64}" in note
    assert "exported again or changed since" in note
    assert f"note: {note}" in run_cli("compare", str(replay), cwd=tmp_path).stdout
    # The digest it was made from: nothing to say.
    _replay_with_recorded_digest(tmp_path, actual)
    assert json.loads(run_cli("compare", str(replay), "--json", cwd=tmp_path).stdout)["notes"] == []


# --------------------------------------------------------------------------- blind


def _blind_outputs(tmp_path: Path, a: Path, b: Path, *extra: str) -> list[str]:
    html = tmp_path / "blind.html"
    shown = []
    for args in ([], ["--json"], ["--markdown", "--full", "--patch"], ["--html", str(html)]):
        key = tmp_path / "key.json"
        result = run_cli(
            "compare", str(a), str(b), *extra, "--blind", "--blind-key", str(key), *args,
            cwd=tmp_path,
        )  # fmt: skip
        assert result.code == 0, result
        shown += [result.stdout, result.stderr]
        if args[:1] == ["--html"]:
            shown.append(html.read_text(encoding="utf-8"))
    return shown


def test_blind_hides_export_facts_base_ref_and_short_names(tmp_path: Path) -> None:
    text_b = full_handoff("x", Summary="logs under gpt/x; see opa and gpt-5; rapid api")
    data_a = bundle("opa", [worker("x", session="opa")], {"task": "t", "base_ref": "ref-opus"})
    data_b = bundle(
        "gpt",
        [worker("x", session="gpt", handoff_text=text_b)],
        {"task": "t", "base_ref": "ref-gpt5"},
    )
    data_a.update(exported_at="2026-01-01T01:01:01Z", exported_by="kodelyth-ecc@1.1-opus")
    data_b.update(exported_at="2027-02-02T02:02:02Z", exported_by="kodelyth-ecc@2.2-gpt")
    a = write(tmp_path, "one.bundle.json", data_a)
    b = write(tmp_path, "two.bundle.json", data_b)
    shown = _blind_outputs(tmp_path, a, b)
    for text in shown:
        for secret in ("2026-01-01T01:01:01", "2027-02-02T02:02:02", "1.1-opus", "2.2-gpt"):
            assert secret not in text, secret
        for secret in ("ref-opus", "ref-gpt5", "gpt/x", "see opa"):
            assert secret not in text, secret
    # Short session names go as whole words only; longer names holding them stay.
    markdown = shown[4]
    assert "logs under [redacted]/x; see [redacted] and gpt-5; rapid api" in markdown
    data = json.loads(shown[2])
    base_ref = next(r for r in data["variation"] if r["field"] == "base_ref")
    assert base_ref == {"field": "base_ref", "a": None, "b": None, "same": False, "hidden": True}
    exported_by = next(r for r in data["variation"] if r["field"] == "exported_by")
    assert exported_by["hidden"] is True and exported_by["a"] is None
    assert data["a"]["exported_at"] is None and data["b"]["exported_at"] is None


def test_blind_hides_the_origin_digests_in_notes(tmp_path: Path) -> None:
    origin, replay = _replay_with_recorded_digest(tmp_path, "f" * 64)
    actual = hashlib.sha256(origin.read_bytes()).hexdigest()
    key = tmp_path / "k.json"
    result = run_cli(
        "compare", str(replay), "--blind", "--blind-key", str(key), "--json", cwd=tmp_path
    )
    assert result.code == 0, result
    assert actual not in result.stdout and "f" * 64 not in result.stdout
    (note,) = json.loads(result.stdout)["notes"]
    assert "sha256 [redacted] vs recorded [redacted]" in note
    # The key still says which is which.
    assert actual in key.read_text()


def test_html_colours_name_no_side_right_or_wrong(tmp_path: Path) -> None:
    a, b = typical_pair(tmp_path)
    html_path = tmp_path / "r.html"
    result = run_cli("compare", str(a), str(b), "--html", str(html_path), "--blind", cwd=tmp_path)
    assert result.code == 0, result
    html = html_path.read_text(encoding="utf-8")
    # Changed lines of each side and diff lines: the sides' neutral colours, no red/green.
    assert 'class="side-a"' in html and 'class="side-b"' in html
    assert 'class="del"' not in html and 'class="add"' not in html
    css = html.split("<style>", 1)[1].split("</style>", 1)[0]
    assert "var(--bad)" in css.split(".findings td", 1)[1].split("}", 1)[0]
    assert css.count("var(--bad)") == 1  # the gate's findings only


# --------------------------------------------------------------------------- budget


def test_the_cli_says_when_the_diff_budget_ran_out(tmp_path: Path) -> None:
    lines = 1000
    count = DIFF_BUDGET_LINES // (4 * lines) + 3  # each worker spends ~4 x lines

    def text(side: str, n: int) -> str:
        return handoff(f"w{n}", Summary="\n".join(f"- {side} {n} {i}" for i in range(lines)))

    a, b = pair(
        tmp_path,
        [worker(f"w{n:02d}", handoff_text=text("a", n)) for n in range(count)],
        [worker(f"w{n:02d}", handoff_text=text("b", n)) for n in range(count)],
    )
    result = run_cli("compare", str(a), str(b), "--full", cwd=tmp_path)
    assert result.code == 0, result
    assert (
        f"note: some line diffs were skipped: one comparison diffs at most "
        f"{DIFF_BUDGET_LINES:,} lines; narrow it with --worker SLUG"
    ) in result.stdout
    assert "handoff diff: diff skipped: this comparison's budget" in result.stdout
    # Narrowed to one worker, the budget is enough.
    one = run_cli("compare", str(a), str(b), "--full", "--worker", "w00", cwd=tmp_path)
    assert "skipped" not in one.stdout
    assert "-- a 0 0" in one.stdout


# --------------------------------------------------------------------------- markdown cells


def test_markdown_cells_escape_backticks_and_pipes(tmp_path: Path) -> None:
    text = full_handoff("x") + "\n## `Risky | Part` *now*\nbody\n"
    a, b = pair(
        tmp_path,
        [worker("x", state="done`|`x")],
        [worker("x", handoff_text=text)],
        a_meta={"task": "run `rm -rf` | wc", "harness": "h"},
        b_meta={"task": "t", "harness": "h"},
    )
    out = run_cli("compare", str(a), str(b), "--markdown", cwd=tmp_path).stdout
    assert "\\`Risky \\| Part\\` \\*now\\*: **added**" in out
    assert "| task | run \\`rm -rf\\` \\| wc | t | differs |" in out
    assert "| done\\`\\|\\`x |" in out
    # Every table row still has its columns: nothing broke out of a cell.
    for line in out.splitlines():
        if line.startswith("| worker |") or line.startswith("| x |"):
            assert len(re.findall(r"(?<!\\)\|", line)) == 13, line


# --------------------------------------------------------------------------- output purity


def test_json_stays_pure_with_the_gate_and_html(tmp_path: Path) -> None:
    a, b = typical_pair(tmp_path)
    html = tmp_path / "gate.html"
    result = run_cli(
        "compare", "--baseline", str(a), str(b), "--html", str(html), "--json", cwd=tmp_path
    )
    assert result.code == EXIT_REGRESSION, result
    data = json.loads(result.stdout)  # nothing else on stdout
    assert data["gate"]["exit_code"] == EXIT_REGRESSION
    assert [f["rule"] for f in data["gate"]["findings"]] == ["missing-worker"]
    assert f"wrote {html} (4 workers)" in result.stderr
    assert "regression gate: 1 finding in B against baseline A" in result.stderr
    assert "tdd-guide" in result.stderr
    assert 'id="gate"' in html.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- wording


def test_one_worker_is_not_workers(tmp_path: Path) -> None:
    a, b = pair(tmp_path, [worker("x")], [worker("x", duration=-5.0)])
    terminal = run_cli("compare", str(a), str(b), cwd=tmp_path)
    assert terminal.code == 0, terminal
    assert "1 workers" not in terminal.stdout
    assert "run-a, 1 worker, exported" in terminal.stdout
    assert "12.5s / -5.0s" in terminal.stdout  # shown as recorded
    html = tmp_path / "one.html"
    written = run_cli("compare", str(a), str(b), "--html", str(html), "--markdown", cwd=tmp_path)
    assert f"wrote {html} (1 worker)" in written.stderr
    assert "1 worker: 1 in both" in written.stdout
    assert '<p id="summary">1 worker: 1 in both' in html.read_text(encoding="utf-8")


def test_odd_numbers_from_a_bundle_do_not_crash_any_output(tmp_path: Path) -> None:
    # JSON has no infinity (the bundle reader rejects 1e999): huge and negative it has.
    a = write(tmp_path, "a.bundle.json", bundle("run-a", [worker("x", duration=1e12)]))
    b = write(
        tmp_path, "b.bundle.json", bundle("run-b", [worker("x", exit_code=-(2**62), duration=-1)])
    )
    for extra in ([], ["--markdown"], ["--html", str(tmp_path / "o.html")], ["--json"]):
        result = run_cli("compare", str(a), str(b), *extra, cwd=tmp_path)
        assert result.code == 0, result
    terminal = run_cli("compare", str(a), str(b), cwd=tmp_path).stdout
    assert "16666666666m40s / -1.0s" in terminal
    assert f"0 / {-(2**62)}" in terminal
    assert human_duration(float("inf")) == "infs"
    assert human_duration(float("nan")) == "nans"


# --------------------------------------------------------------------------- layering


def test_the_report_modules_do_not_import_commands() -> None:
    code = (
        "import sys, kodelyth_ecc.compare_html, kodelyth_ecc.compare_render; "
        "print([m for m in sys.modules if m.startswith('kodelyth_ecc.commands')])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
    from kodelyth_ecc import humanize
    from kodelyth_ecc.commands import _common

    # Other commands keep importing them from commands._common.
    assert _common.human_bytes is humanize.human_bytes
    assert _common.human_duration is humanize.human_duration
