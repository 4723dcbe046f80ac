"""``kodelyth-ecc compare``: two runs side by side, the outputs, blind mode, colour.

The regression gate is in ``test_compare_gate.py``, the HTML report (in a real
browser) in ``test_compare_html.py``; both build their bundles with the helpers here.
"""

from __future__ import annotations

import difflib
import json
import os
import pty
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kodelyth_ecc.bundle import decode_bundle
from kodelyth_ecc.compare import (
    MAX_DIFF_LINES,
    DiffBudget,
    Run,
    blind_order,
    changed_lines,
    compare_bundles,
    compare_runs,
    diff_numbers,
    unified_diff,
)
from kodelyth_ecc.handoff_sections import parse_handoff, split_sections
from kodelyth_ecc.prompts import initial_handoff_md
from tests.conftest import Sandbox
from tests.replay_helpers import REFERENCE, bundle_dict, swarm_task_md, write_json
from tests.support import run_cli

SECTIONS = ("Summary", "Files Changed", "Validation", "Remaining Risks")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
PATCH = (
    "diff --git a/app/auth.py b/app/auth.py\n"
    "index 1111111..2222222 100644\n"
    "--- a/app/auth.py\n"
    "+++ b/app/auth.py\n"
    "@@ -1,2 +1,3 @@\n"
    " def login(user, password):\n"
    '-    return user == "admin"\n'
    "+    check(password)\n"
    "+    return user == 'admin'\n"
)


# --------------------------------------------------------------------------- builders


def handoff(slug: str, **sections: str) -> str:
    """A handoff with the given ``## `` sections (keyword: Files_Changed -> Files Changed)."""
    body = "".join(f"\n## {title.replace('_', ' ')}\n{text}\n" for title, text in sections.items())
    return f"# Handoff: {slug}\n{body}"


def full_handoff(slug: str, **overrides: str) -> str:
    texts = {
        "Summary": f"- {slug} looked at the auth flow.",
        "Files_Changed": "- `app/auth.py`",
        "Validation": "- `pytest -q` passed.",
        "Remaining_Risks": "- Token rotation untested.",
    }
    texts.update(overrides)
    return handoff(slug, **texts)


def status_md(slug: str, state: str, exit_code: int | None, started: str) -> str:
    lines = [f"# Status: {slug}", "", f"- State: {state}", f"- Started: {started}"]
    if exit_code is not None:
        lines.append(f"- Exit code: {exit_code}")
    return "\n".join(lines) + "\n"


def worker(
    slug: str,
    *,
    session: str = "run-a",
    task: str = "audit the oauth flow",
    handoff_text: str | None = None,
    state: str = "completed",
    exit_code: int | None = 0,
    duration: float | None = 12.5,
    diff: str | None = None,
    started: str = "2026-11-26T10:00:00Z",
    verify: dict[str, Any] | None = None,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "slug": slug,
        "task": swarm_task_md(slug, task, session),
        "handoff": full_handoff(slug) if handoff_text is None else handoff_text,
        "status": status_md(slug, state, exit_code, started),
        "state": state,
        "exit_code": exit_code,
        "duration_s": duration,
        "verify": verify,
        "usage": usage,
    }
    if diff is not None:
        data["diff"] = diff
        data["diffstat"] = " app/auth.py | 3 ++-\n 1 file changed, 2 insertions(+), 1 deletion(-)\n"
    return {k: v for k, v in data.items() if v is not None}


def bundle(
    session: str, workers: list[dict[str, Any]], meta: dict[str, Any] | None = None
) -> dict[str, Any]:
    data = bundle_dict({}, session=session, meta=meta)
    data["workers"] = sorted(workers, key=lambda w: str(w["slug"]))
    return data


def write(directory: Path, name: str, data: dict[str, Any]) -> Path:
    return write_json(directory / name, data)


def pair(
    directory: Path,
    a_workers: list[dict[str, Any]],
    b_workers: list[dict[str, Any]],
    *,
    a_meta: dict[str, Any] | None = None,
    b_meta: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Two bundle files: run-a (harness claude) and run-b (harness codex) by default."""
    meta_a = {"task": "audit the oauth flow", "agents": ["code-reviewer"], "harness": "claude"}
    meta_b = {**meta_a, "harness": "codex"}
    a = write(directory, "run-a.bundle.json", bundle("run-a", a_workers, a_meta or meta_a))
    b = write(directory, "run-b.bundle.json", bundle("run-b", b_workers, b_meta or meta_b))
    return a, b


def decoded(data: dict[str, Any]) -> Any:
    return decode_bundle(json.dumps(data).encode("utf-8"), "test bundle")


def typical_pair(directory: Path) -> tuple[Path, Path]:
    """Three workers: one identical, one with a changed Validation section and another
    diff, one only in A; and one only in B."""
    a_workers = [
        worker("code-reviewer", diff=PATCH),
        worker("security-reviewer"),
        worker("tdd-guide"),
    ]
    b_workers = [
        worker("code-reviewer", session="run-b", diff=PATCH.replace("check(", "verify(")),
        worker(
            "security-reviewer",
            session="run-b",
            handoff_text=full_handoff("security-reviewer", Validation="- `pytest` 3 failed."),
            started="2026-11-26T12:00:00Z",
            duration=40.0,
        ),
        worker("doc-updater", session="run-b"),
    ]
    return pair(directory, a_workers, b_workers)


# --------------------------------------------------------------------------- sections


def test_sections_split_on_level_two_headings_outside_code_fences() -> None:
    text = (
        "# Handoff: x\nintro line\n"
        "## Summary\nsaid\n"
        "```markdown\n## Not a heading\n```\n"
        "~~~~\n## Nor this\n```\n## still fenced\n~~~~\n"
        "### Sub heading stays inside\n"
        "##NoSpace is text\n"
        "## Files   Changed ##\n- a.py\n"
        "## Summary\nagain\n"
    )
    preamble, sections = split_sections(text)
    assert preamble == "# Handoff: x\nintro line\n"
    assert [s.title for s in sections] == ["Summary", "Files Changed", "Summary"]
    assert [s.key for s in sections] == ["summary", "files changed", "summary (2)"]
    assert "## Not a heading" in sections[0].body
    assert "## still fenced" in sections[0].body
    assert "##NoSpace is text" in sections[0].body
    assert sections[1].body == "- a.py"


def test_placeholder_and_empty_handoffs_are_recognised() -> None:
    assert parse_handoff("").kind == "empty"
    assert parse_handoff("  \n\n").kind == "empty"
    # Exactly what the swarm writes before an agent runs.
    assert parse_handoff(initial_handoff_md("security-reviewer")).kind == "placeholder"
    assert parse_handoff("# Handoff: x\n\n## Summary\n\n## Validation\n- TODO\n").kind == (
        "placeholder"
    )
    assert parse_handoff("# Handoff: x\n").kind == "placeholder"
    assert parse_handoff(full_handoff("x")).kind == "written"
    assert parse_handoff(initial_handoff_md("x") + "demo worker x\n").kind == "written"


def test_the_template_an_agent_appended_to_is_set_aside() -> None:
    # Harnesses append (tee -a) to the template: the agent's own sections count.
    text = initial_handoff_md("x") + "Here is my work.\n\n" + full_handoff("x")
    parsed = parse_handoff(text)
    assert parsed.template_chars == len(initial_handoff_md("x"))
    assert [s.key for s in parsed.sections] == [
        "summary",
        "files changed",
        "validation",
        "remaining risks",
    ]
    assert all(not s.placeholder for s in parsed.sections)
    # A written handoff starting with a heading is not mistaken for a template.
    assert parse_handoff(full_handoff("x")).template_chars == 0


# --------------------------------------------------------------------------- library


def test_workers_line_up_by_slug_with_facts_side_by_side(tmp_path: Path) -> None:
    a, b = typical_pair(tmp_path)
    result = compare_runs(
        *(Run(decoded(json.loads(p.read_text())), str(p), "bundle") for p in (a, b))
    )
    by_slug = {w.slug: w for w in result.workers}
    assert list(by_slug) == ["code-reviewer", "doc-updater", "security-reviewer", "tdd-guide"]
    assert by_slug["doc-updater"].presence == "only-b"
    assert by_slug["doc-updater"].a is None
    assert by_slug["tdd-guide"].presence == "only-a"
    assert by_slug["tdd-guide"].b is None
    assert (result.summary.in_both, result.summary.only_a, result.summary.only_b) == (2, 1, 1)

    security = by_slug["security-reviewer"]
    assert security.presence == "both"
    assert security.a is not None and security.b is not None
    assert (security.a.state, security.a.exit_code, security.a.duration_s) == ("completed", 0, 12.5)
    assert security.b.duration_s == 40.0
    # task.md holds other paths and session names in each run: the task itself is the same.
    assert security.changes.task == "identical"
    # status.md differs in its start time only: state and exit code are the same.
    assert security.changes.status == "identical"
    assert security.changes.handoff == "changed"
    assert security.changes.diff == "absent"
    statuses = {s.title: s.status for s in security.sections}
    assert statuses == {
        "Summary": "identical",
        "Files Changed": "identical",
        "Validation": "changed",
        "Remaining Risks": "identical",
    }
    assert security.changed

    code = by_slug["code-reviewer"]
    assert code.changes.handoff == "identical"
    assert code.changes.diff == "changed"
    assert code.a is not None and (code.a.files_changed, code.a.insertions, code.a.deletions) == (
        1,
        2,
        1,
    )


def test_the_four_required_sections_are_always_listed() -> None:
    a = decoded(bundle("a", [worker("x", handoff_text=handoff("x", Notes="n"))]))
    b = decoded(bundle("b", [worker("x", handoff_text=handoff("x", Notes="n", Summary="s"))]))
    (compared,) = compare_bundles(a, b).workers
    sections = {s.title: (s.status, s.required) for s in compared.sections}
    assert sections == {
        "Notes": ("identical", False),
        "Summary": ("added", True),
        "Files Changed": ("absent", True),
        "Validation": ("absent", True),
        "Remaining Risks": ("absent", True),
    }


def test_a_changed_task_and_state_are_reported() -> None:
    a = decoded(bundle("a", [worker("x")]))
    b = decoded(
        bundle(
            "b",
            [worker("x", session="b", task="audit the billing flow", state="failed", exit_code=2)],
        )
    )
    (compared,) = compare_bundles(a, b).workers
    assert compared.changes.task == "changed"
    assert compared.changes.status == "changed"
    assert compared.b is not None and (compared.b.state, compared.b.exit_code) == ("failed", 2)


def test_javascript_bundles_get_their_state_from_status_md() -> None:
    origin = decode_bundle((REFERENCE / "rich-meta.bundle.json").read_bytes(), "rich")
    replay = decode_bundle((REFERENCE / "replay-1.bundle.json").read_bytes(), "replay")
    result = compare_bundles(origin, replay)
    assert {w.a.state for w in result.workers if w.a} == {"completed"}
    changed = [w.slug for w in result.workers if w.changed]
    assert changed == ["security-reviewer"]


def test_diff_numbers_count_hunk_lines_not_headers() -> None:
    patch = PATCH + (
        "diff --git a/q.sql b/q.sql\n--- a/q.sql\n+++ b/q.sql\n@@ -1 +1 @@\n--- comment\n+++ x\n"
    )
    assert diff_numbers(patch) == (2, 3, 2)


def _apply(a: list[str], unified: str) -> list[str]:
    """Apply a unified diff to ``a``, checking every context line, removed line and
    hunk header against it."""
    lines = unified.splitlines()
    assert lines[:2] == ["--- A", "+++ B"]
    out: list[str] = []
    position = 0
    index = 2
    while index < len(lines):
        header = re.fullmatch(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@", lines[index])
        assert header, lines[index]
        start, length = int(header.group(1)), int(header.group(2) or 1)
        new_length = int(header.group(4) or 1)
        begin = start - 1 if length else start
        assert begin >= position
        out += a[position:begin]
        position = begin
        index += 1
        old_seen = new_seen = 0
        while index < len(lines) and not lines[index].startswith("@@"):
            tag, text = lines[index][0], lines[index][1:]
            if tag in " -":
                assert a[position] == text
                position += 1
                old_seen += 1
            if tag in " +":
                out.append(text)
                new_seen += 1
            index += 1
        assert (old_seen, new_seen) == (length, new_length)
    return out + a[position:]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "b", "c", "", "d e"]), max_size=40),
    st.lists(st.sampled_from(["a", "b", "c", "", "x"]), max_size=40),
)
def test_unified_diff_turns_one_text_into_the_other(a: list[str], b: list[str]) -> None:
    text_a, text_b = "\n".join(a), "\n".join(b)
    ours = unified_diff(text_a, text_b, "A", "B", DiffBudget())
    if text_a == text_b:
        assert ours.status == "identical"
        return
    assert ours.status == "ok"
    if text_a.splitlines() == text_b.splitlines():
        assert ours.note is not None and "final newline" in ours.note
        return
    assert ours.unified is not None
    assert _apply(text_a.splitlines(), ours.unified) == text_b.splitlines()
    # Under the cap, exactly difflib's diff.
    expected = difflib.unified_diff(text_a.splitlines(), text_b.splitlines(), "A", "B", lineterm="")
    assert ours.unified.splitlines() == list(expected)


def test_huge_differing_handoffs_fall_back_to_a_summary() -> None:
    rng = random.Random(7)
    a = "\n".join(f"line {rng.random()}" for _ in range(MAX_DIFF_LINES + 10))
    b = "\n".join(f"line {rng.random()}" for _ in range(MAX_DIFF_LINES + 20))
    result = unified_diff(a, b, "A", "B", DiffBudget())
    assert result.status == "too-large"
    assert result.unified is None
    assert result.note is not None
    assert f"{MAX_DIFF_LINES + 10:,} lines vs {MAX_DIFF_LINES + 20:,} lines" in result.note
    assert "sha256 differs" in result.note
    # A long shared head and tail cost nothing: only the middle is diffed.
    shared = "\n".join(f"same {i}" for i in range(MAX_DIFF_LINES * 3))
    small = unified_diff(
        shared + "\nold\n" + shared, shared + "\nnew\n" + shared, "A", "B", DiffBudget()
    )
    assert small.status == "ok"
    assert small.unified is not None and "-old\n+new\n" in small.unified
    assert _apply((shared + "\nold\n" + shared).splitlines(), small.unified) == (
        (shared + "\nnew\n" + shared).splitlines()
    )


def test_the_cli_says_when_a_diff_was_too_large(tmp_path: Path) -> None:
    rng = random.Random(3)
    big_a = "\n".join(f"- finding {rng.random()}" for _ in range(MAX_DIFF_LINES + 500))
    big_b = "\n".join(f"- finding {rng.random()}" for _ in range(MAX_DIFF_LINES + 700))
    a, b = pair(
        tmp_path,
        [worker("x", handoff_text=handoff("x", Summary=big_a))],
        [worker("x", handoff_text=handoff("x", Summary=big_b))],
    )
    result = run_cli("compare", str(a), str(b), "--full", cwd=tmp_path)
    assert result.code == 0, result
    assert "handoff diff: diff too large: " in result.stdout
    assert "sha256 differs" in result.stdout
    assert "note: 1 handoff diff too large to show" in result.stdout
    html = tmp_path / "big.html"
    assert run_cli("compare", str(a), str(b), "--html", str(html), cwd=tmp_path).code == 0
    text = html.read_text(encoding="utf-8")
    assert "diff too large" in text
    assert "too large to align line by line" in text


def test_the_diff_budget_is_shared_and_said_to_be_used_up() -> None:
    budget = DiffBudget(lines=100)
    first = unified_diff("a\n" * 10, "b\n" * 10, "A", "B", budget)
    assert first.status == "ok"
    second = unified_diff("c\n" * 60, "d\n" * 60, "A", "B", budget)
    assert second.status == "skipped"
    assert second.note is not None and "--worker" in second.note
    # Highlighting falls back to matching lines by content (linear), and says so.
    changed_a, changed_b, aligned = changed_lines(["x", "y", "z"], ["y", "q"], DiffBudget(2))
    assert (changed_a, changed_b, aligned) == ([0, 2], [1], False)


def test_blind_order_is_random_and_its_key_names_both_runs() -> None:
    a = Run(decoded(bundle("run-a", [worker("x")])), "a.json", "bundle")
    b = Run(decoded(bundle("run-b", [worker("x")])), "b.json", "bundle")
    orders = set()
    for seed in range(20):
        first, second, key = blind_order(a, b, random.Random(seed))
        orders.add(first.source)
        runs = key["runs"]
        assert isinstance(runs, dict)
        assert runs["Run 1"]["source"] == first.source
        assert runs["Run 2"]["source"] == second.source
        assert {runs["Run 1"]["as_given"], runs["Run 2"]["as_given"]} == {"A", "B"}
    assert orders == {"a.json", "b.json"}


# --------------------------------------------------------------------------- CLI


def test_terminal_output_shows_what_varied_first_then_workers(tmp_path: Path) -> None:
    a, b = typical_pair(tmp_path)
    result = run_cli("compare", str(a), str(b), cwd=tmp_path)
    assert result.code == 0, result
    out = result.stdout
    assert out.index("What varied") < out.index("Workers:")
    varied = out.split("What varied", 1)[1].split("Same in both", 1)[0]
    assert "harness" in varied and "claude" in varied and "codex" in varied
    assert "task" in out.split("Same in both", 1)[1].split("Workers:", 1)[0]
    assert "Validation *: changed" in out
    assert "Summary *: identical" in out
    assert "only A" in out and "only B" in out
    assert "1 file +2 -1" in out
    assert not ANSI.search(out), "no colour when stdout is not a terminal"
    assert result.stderr == ""


def test_json_is_one_versioned_object_and_the_only_thing_on_stdout(tmp_path: Path) -> None:
    a, b = typical_pair(tmp_path)
    result = run_cli("compare", str(a), str(b), "--json", cwd=tmp_path)
    assert result.code == 0, result
    data = json.loads(result.stdout)
    assert data["schema"] == "kodelyth.compare/v1"
    assert data["a"]["source"] == str(a) and data["b"]["session"] == "run-b"
    assert data["gate"] is None
    harness = next(r for r in data["variation"] if r["field"] == "harness")
    assert (harness["a"], harness["b"], harness["same"]) == ("claude", "codex", False)
    security = next(w for w in data["workers"] if w["slug"] == "security-reviewer")
    assert security["changes"] == {
        "task": "identical",
        "handoff": "changed",
        "status": "identical",
        "diff": "absent",
    }
    assert {s["title"]: s["status"] for s in security["sections"]}["Validation"] == "changed"
    # Texts only on request.
    assert security["sections"][0]["a_text"] is None
    assert security["handoff_diff"] is None
    assert security["a"]["patch"] is None


def test_full_adds_handoff_diffs_and_patch_adds_patches(tmp_path: Path) -> None:
    a, b = typical_pair(tmp_path)
    full = run_cli("compare", str(a), str(b), "--full", "--patch", cwd=tmp_path)
    assert full.code == 0, full
    assert "-- `pytest -q` passed." in full.stdout
    assert "+- `pytest` 3 failed." in full.stdout
    assert "+    verify(password)" in full.stdout
    data = json.loads(run_cli("compare", str(a), str(b), "--json", "--full", cwd=tmp_path).stdout)
    security = next(w for w in data["workers"] if w["slug"] == "security-reviewer")
    assert security["handoff_diff"]["status"] == "ok"
    validation = next(s for s in security["sections"] if s["title"] == "Validation")
    assert validation["a_text"] == "- `pytest -q` passed."
    assert validation["a_changed"] == [0] and validation["b_changed"] == [0]
    plain = run_cli("compare", str(a), str(b), cwd=tmp_path)
    assert "verify(password)" not in plain.stdout
    assert "3 failed" not in plain.stdout


def test_worker_narrows_to_one_slug(tmp_path: Path) -> None:
    a, b = typical_pair(tmp_path)
    result = run_cli("compare", str(a), str(b), "--worker", "code-reviewer", "--json", cwd=tmp_path)
    assert result.code == 0, result
    assert [w["slug"] for w in json.loads(result.stdout)["workers"]] == ["code-reviewer"]
    missing = run_cli("compare", str(a), str(b), "--worker", "nobody", cwd=tmp_path)
    assert missing.code == 2
    assert "no worker 'nobody'" in missing.stderr and "code-reviewer" in missing.stderr


def test_markdown_is_ready_to_paste_and_escapes_table_cells(tmp_path: Path) -> None:
    meta_a = {"task": "fix | the <b>pipes</b>", "harness": "claude"}
    meta_b = {**meta_a, "harness": "codex"}
    a, b = pair(
        tmp_path, [worker("x")], [worker("x", session="run-b")], a_meta=meta_a, b_meta=meta_b
    )
    result = run_cli("compare", str(a), str(b), "--markdown", cwd=tmp_path)
    assert result.code == 0, result
    out = result.stdout
    assert out.startswith("## kodelyth-ecc compare\n")
    assert "| harness | claude | codex | differs |" in out
    assert "fix \\| the &lt;b&gt;pipes&lt;/b&gt;" in out
    assert "<b>" not in out
    assert "| worker | in | state A | state B |" in out


def test_markdown_fences_cannot_be_closed_by_the_text(tmp_path: Path) -> None:
    tricky = full_handoff("x", Summary="```\n</details>\n# injected")
    a, b = pair(tmp_path, [worker("x")], [worker("x", session="run-b", handoff_text=tricky)])
    out = run_cli("compare", str(a), str(b), "--markdown", "--full", cwd=tmp_path).stdout
    assert "````diff\n" in out


def test_one_run_that_is_a_replay_is_compared_with_its_origin(tmp_path: Path) -> None:
    origin = write(tmp_path, "swarm-x.bundle.json", bundle("swarm-x", [worker("x")]))
    replay_meta = {"replay_of": {"session": "swarm-x"}, "variation": {"harness": "codex"}}
    replay = write(
        tmp_path / "elsewhere",
        "r.bundle.json",
        bundle("swarm-x-replay-1", [worker("x", session="swarm-x-replay-1")], replay_meta),
    )
    # Found in the coordination root.
    result = run_cli("compare", str(replay), "--coord-root", str(tmp_path), "--json", cwd=tmp_path)
    assert result.code == 0, result
    data = json.loads(result.stdout)
    assert (data["a"]["session"], data["b"]["session"]) == ("swarm-x", "swarm-x-replay-1")
    assert data["a"]["source"] == str(origin)
    # Found beside the replay's bundle, without any coordination root (no repo here).
    beside = write(tmp_path / "elsewhere", "swarm-x.bundle.json", bundle("swarm-x", [worker("x")]))
    result = run_cli("compare", str(replay), "--json", cwd=tmp_path)
    assert result.code == 0, result
    assert json.loads(result.stdout)["a"]["source"] == str(beside)
    # --origin names it explicitly.
    result = run_cli("compare", str(replay), "--origin", str(origin), "--json", cwd=tmp_path)
    assert json.loads(result.stdout)["a"]["source"] == str(origin)


def test_the_origin_may_be_a_live_session_and_a_side_may_be_a_session(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    origin = write(tmp_path, "o.bundle.json", bundle("swarm-o", [worker("x")]))
    imported = sandbox.cli("session-import", str(origin))
    assert imported.code == 0, imported
    replay = write(
        tmp_path,
        "r.bundle.json",
        bundle("swarm-o-replay-1", [worker("x")], {"replay_of": {"session": "swarm-o"}}),
    )
    result = sandbox.cli("compare", str(replay), "--json")
    assert result.code == 0, result
    data = json.loads(result.stdout)
    assert (data["a"]["kind"], data["a"]["session"]) == ("session", "swarm-o")
    assert data["workers"][0]["changes"]["handoff"] == "identical"
    both = sandbox.cli("compare", "swarm-o", str(origin), "--json")
    assert both.code == 0, both
    assert json.loads(both.stdout)["summary"]["changed"] == 0


def test_a_run_that_is_no_replay_or_whose_origin_is_gone_is_explained(tmp_path: Path) -> None:
    plain = write(tmp_path, "p.bundle.json", bundle("swarm-p", [worker("x")]))
    result = run_cli("compare", str(plain), cwd=tmp_path)
    assert result.code == 2
    assert "is not a replay" in result.stderr and "--origin" in result.stderr
    orphan = write(
        tmp_path,
        "o.bundle.json",
        bundle("o-replay-1", [worker("x")], {"replay_of": {"session": "gone"}}),
    )
    result = run_cli("compare", str(orphan), "--coord-root", str(tmp_path / "root"), cwd=tmp_path)
    assert result.code == 1
    assert "the origin 'gone'" in result.stderr and "--origin PATH" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "is not valid JSON"),
        (b'{"schema": "other/v9"}', "is not a valid session bundle"),
        (None, "does not exist"),
    ],
)
def test_bad_bundles_get_the_same_errors_as_import(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    bad = tmp_path / "bad.bundle.json"
    if content is not None:
        bad.write_bytes(content)
    good = write(tmp_path, "good.bundle.json", bundle("good", [worker("x")]))
    compared = run_cli("compare", str(good), str(bad), cwd=tmp_path)
    imported = run_cli("session-import", str(bad), "--target", str(tmp_path / "t"), cwd=tmp_path)
    assert compared.code == imported.code == 1
    assert message in compared.stderr
    assert compared.stderr == imported.stderr
    assert compared.stdout == ""


def test_bundle_size_limit_applies(tmp_path: Path) -> None:
    a, b = typical_pair(tmp_path)
    result = run_cli("compare", str(a), str(b), "--max-bundle-size", "1k", cwd=tmp_path)
    assert result.code == 1
    assert "--max-bundle-size" in result.stderr


def test_usage_errors(tmp_path: Path) -> None:
    a, b = typical_pair(tmp_path)
    for args, text in (
        (["--blind-key", "k.json"], "--blind-key only applies with --blind"),
        (["--html", str(tmp_path)], "is a directory"),
        (["--html", str(tmp_path / "no" / "r.html")], "does not exist"),
        (["--json", "--markdown"], "not allowed with"),
    ):
        result = run_cli("compare", str(a), str(b), *args, cwd=tmp_path)
        assert result.code == 2, (args, result)
        assert text in result.stderr
    result = run_cli("compare", str(a), str(b), "--origin", str(a), cwd=tmp_path)
    assert result.code == 2 and "one-run form" in result.stderr


# --------------------------------------------------------------------------- never a winner

VERDICT_WORDS = re.compile(
    r"\b(better|worse|best|worst|winner|wins?|won|score[sd]?|scoring|rank(ed|ing|s)?|"
    r"improve[sd]?|improvement|superior|inferior|preferred|recommend(ed)?)\b",
    re.IGNORECASE,
)


def test_no_output_ranks_the_runs(tmp_path: Path) -> None:
    a, b = typical_pair(tmp_path)
    html = tmp_path / "report.html"
    outputs = []
    for extra in ([], ["--json"], ["--markdown"], ["--full", "--patch"], ["--html", str(html)]):
        for gate in ([], ["--baseline"]):
            result = run_cli("compare", str(a), str(b), *extra, *gate, cwd=tmp_path)
            assert result.code in (0, 3), result
            outputs += [result.stdout, result.stderr]
    outputs.append(html.read_text(encoding="utf-8"))
    help_text = run_cli("compare", "--help", cwd=tmp_path).stdout
    outputs.append(help_text)
    for text in outputs:
        assert not VERDICT_WORDS.search(text), VERDICT_WORDS.search(text)


# --------------------------------------------------------------------------- blind


def test_blind_output_names_neither_run_and_the_key_goes_to_a_file(tmp_path: Path) -> None:
    runs = tmp_path / "secret-runs-dir"
    a_workers = [worker("x", session="claude-run-7f3a"), worker("y", session="claude-run-7f3a")]
    b_workers = [
        worker(
            "x",
            session="codex-run-9b1c",
            handoff_text=full_handoff("x", Summary="see codex-run-9b1c/x for the log"),
        ),
        worker("y", session="codex-run-9b1c"),
    ]
    meta_a = {"task": "audit", "harness": "claude", "launcher": "claude --print {task_file_sh}"}
    meta_b = {
        "task": "audit",
        "harness": "codex",
        "replay_of": {"session": "claude-run-7f3a"},
        "variation": {"harness": "codex"},
    }
    a = write(runs, "claude-run-7f3a.bundle.json", bundle("claude-run-7f3a", a_workers, meta_a))
    b = write(runs, "codex-run-9b1c.bundle.json", bundle("codex-run-9b1c", b_workers, meta_b))
    html = tmp_path / "out" / "review.html"
    html.parent.mkdir()
    secrets = ["claude-run-7f3a", "codex-run-9b1c", "claude", "codex", str(runs), "secret-runs-dir"]
    seen_orders = set()
    for extra in ([], ["--json"], ["--markdown", "--full", "--patch"], ["--html", str(html)]):
        result = run_cli("compare", str(a), str(b), "--blind", *extra, cwd=tmp_path)
        assert result.code == 0, result
        shown = [result.stdout]
        if extra[:1] == ["--html"]:
            shown.append(html.read_text(encoding="utf-8"))
            key_path = html.with_name("review.blind-key.json")
        else:
            (key_path,) = [Path(p) for p in re.findall(r"written to (\S+)", result.stderr)]
            assert key_path.parent == tmp_path
        for text in shown:
            assert "Run 1" in text and "Run 2" in text
            for secret in secrets:
                assert secret not in text, (secret, extra)
        assert str(key_path) not in result.stdout
        key = json.loads(key_path.read_text())
        assert key["schema"] == "kodelyth.compare-blind-key/v1"
        assert {key["runs"]["Run 1"]["source"], key["runs"]["Run 2"]["source"]} == {str(a), str(b)}
        seen_orders.add(key["runs"]["Run 1"]["session"])
        key_path.unlink()
    # The key names the runs; the stdout of --json says only that the harness differs.
    data = json.loads(
        run_cli(
            "compare", str(a), str(b), "--blind", "--json", "--blind-key", "k.json", cwd=tmp_path
        ).stdout
    )
    harness = next(r for r in data["variation"] if r["field"] == "harness")
    assert harness == {"field": "harness", "a": None, "b": None, "same": False, "hidden": True}
    assert (tmp_path / "k.json").is_file()
    assert (data["a"]["label"], data["b"]["label"]) == ("Run 1", "Run 2")


def test_blind_and_baseline_do_not_mix(tmp_path: Path) -> None:
    a, b = typical_pair(tmp_path)
    result = run_cli("compare", str(a), str(b), "--blind", "--baseline", cwd=tmp_path)
    assert result.code == 2
    assert "--blind and --baseline" in result.stderr


# --------------------------------------------------------------------------- colour


def _run_in_pty(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    """The CLI with its stdout on a pseudo-terminal, as in an interactive shell."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kodelyth_ecc", *args],
        cwd=cwd,
        env=env,
        stdout=slave,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=60) == 0
    return b"".join(chunks).decode("utf-8", errors="replace")


@pytest.mark.parametrize(
    ("env_change", "coloured"),
    [({}, True), ({"NO_COLOR": "1"}, False), ({"TERM": "dumb"}, False)],
)
def test_colour_only_on_a_terminal_that_wants_it(
    tmp_path: Path, env_change: dict[str, str], coloured: bool
) -> None:
    a, b = typical_pair(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")}
    env["TERM"] = "xterm-256color"
    env.update(env_change)
    out = _run_in_pty(["compare", str(a), str(b)], tmp_path, env)
    assert bool(ANSI.search(out)) is coloured
    assert "Workers:" in out
