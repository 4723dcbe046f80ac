"""``compare`` on hostile or odd handoffs: pathological whitespace, terminal escapes,
CRLF line endings, unusual line breaks, and megabyte lines in every output.

The bundles come from anywhere: nothing in them may stall the comparison, drive
the reader's terminal, or blow up a report.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kodelyth_ecc.compare import DiffBudget, Run, compare_runs, load_run, text_lines, unified_diff
from kodelyth_ecc.compare_render import MAX_BLOCK_CHARS, render_markdown, render_terminal
from kodelyth_ecc.handoff_sections import is_placeholder, parse_handoff
from tests.support import run_cli
from tests.test_compare import decoded, full_handoff, pair, worker

# What a terminal would act on: CSI, OSC, other escapes, bell, carriage return, C1 CSI.
TERMINAL_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
EVIL = "\x1b]0;PWNED-TITLE\x07\x1b[2J\x1b[31mRED\x9b31m\rOVER"
HUGE = 200_000


# --------------------------------------------------------------------------- linear time


@pytest.mark.parametrize(
    "text",
    [
        " " * HUGE + "x",
        "\t" * HUGE + "x",
        "- Pending" + " " * HUGE + "x",
        "hello\n" + " \t" * HUGE + "x\n",
        "- TODO " + "\t " * HUGE,
    ],
)
def test_is_placeholder_is_linear_on_long_blank_runs(text: str) -> None:
    # A backtracking regex takes minutes on these (~80 s at 40,000 blanks, quadratic).
    assert is_placeholder(text) is text.startswith("- TODO")
    assert is_placeholder(text + "\n- Pending\n") is text.startswith("- TODO")


@pytest.mark.parametrize(
    ("text", "titles"),
    [
        ("## a" + " " * HUGE + "b\n", ["a b"]),
        ("## a" + " #" * HUGE + "b\n", ["a " + " ".join(["#"] * (HUGE - 1)) + " #b"]),
        ("##" + " \t" * HUGE + "b\n", ["b"]),
        ("## Summary" + " " * HUGE + "##\n" + "x\n", ["Summary"]),
        ("## Summary\n" + " " * HUGE + "x\n", ["Summary"]),
        ("```" + " " * HUGE + "`x\n## Fenced?\n", ["Fenced?"]),
    ],
)
def test_headings_are_parsed_in_linear_time(text: str, titles: list[str]) -> None:
    parsed = parse_handoff(text)
    assert [s.title for s in parsed.sections] == titles


def test_closing_hashes_and_blanks_are_taken_off_titles() -> None:
    text = "## Files Changed ##\nA\n## C# notes\nB\n## ###\nC\n##\t Validation\t#\t\r\nD\n"
    titles = [s.title for s in parse_handoff(text).sections]
    assert titles == ["Files Changed", "C# notes", "(untitled)", "Validation"]


def test_a_long_blank_run_through_the_cli_does_not_stall(tmp_path: Path) -> None:
    # run_cli's 120 s timeout fails this if parsing goes quadratic again.
    hostile = "# Handoff: w\n\n## Summary\n" + " " * HUGE + "x\n## Validation" + " " * HUGE + "y\n"
    a, b = pair(tmp_path, [worker("w")], [worker("w", session="run-b", handoff_text=hostile)])
    for extra in ([], ["--baseline"], ["--full", "--json"]):
        result = run_cli("compare", str(a), str(b), *extra, cwd=tmp_path)
        assert result.code in (0, 3), result
    data = json.loads(result.stdout)
    sections = {s["key"]: s["status"] for s in data["workers"][0]["sections"]}
    assert sections["summary"] == "changed"


# --------------------------------------------------------------------------- terminal controls


def _evil_pair(tmp_path: Path) -> tuple[Path, Path]:
    meta_a = {"task": "audit", "harness": "claude" + EVIL}
    meta_b = {"task": "audit", "harness": "codex", "base_ref": "main" + EVIL}
    text = full_handoff("e") + f"\n## Notes {EVIL}\nbody {EVIL}\n"
    patch = "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b" + EVIL + "\n"
    return pair(
        tmp_path,
        [worker("e")],
        [worker("e", session="run-b", handoff_text=text, state="failed" + EVIL, diff=patch)],
        a_meta=meta_a,
        b_meta=meta_b,
    )


@pytest.mark.parametrize(
    "extra", [[], ["--full", "--patch"], ["--markdown", "--full", "--patch"], ["--baseline"]]
)
def test_control_characters_from_bundles_never_reach_the_terminal(
    tmp_path: Path, extra: list[str]
) -> None:
    a, b = _evil_pair(tmp_path)
    result = run_cli("compare", str(a), str(b), *extra, cwd=tmp_path)
    assert result.code in (0, 3), result
    for stream in (result.stdout, result.stderr):
        assert not TERMINAL_CONTROLS.search(stream), TERMINAL_CONTROLS.search(stream)
    # Shown, written out, so the reviewer sees something odd was there (markdown
    # escapes its brackets in table cells).
    if "--markdown" not in extra:
        assert "claude\\x1b]0;PWNED-TITLE\\x07\\x1b[2J" in result.stdout
    assert "PWNED-TITLE" in result.stdout
    assert "\\x9b31m\\rOVER" in result.stdout
    if extra == ["--baseline"]:
        assert result.code == 3
        assert "completed in the baseline, failed\\x1b]0;PWNED" in result.stderr
    if "--full" in extra:
        assert "Notes \\x1b]0;PWNED-TITLE" in result.stdout
        assert "+b\\x1b]0;PWNED-TITLE" in result.stdout  # the patch


def test_colour_codes_are_still_ours_alone(tmp_path: Path) -> None:
    a, b = _evil_pair(tmp_path)
    comparison = compare_runs(load_run(str(a)), load_run(str(b)), full=True, patches=True)
    out = render_terminal(comparison, colour=True, diffs=True, patches=True)
    escapes = set(re.findall(r"\x1b[^m]*m", out))
    assert escapes <= {"\x1b[0m", "\x1b[1m", "\x1b[2m", "\x1b[33m", "\x1b[35m", "\x1b[36m"}
    assert "\x07" not in out and "\x1b]" not in out
    # The JSON keeps the text exactly (escaped by JSON itself).
    assert comparison.workers[0].b is not None
    assert comparison.workers[0].b.state == "failed" + EVIL


def test_bidi_and_zero_width_characters_are_made_visible() -> None:
    hidden = "ok\u202eevil\u200b\u2066x\u2028y\ufeff"
    a = Run(decoded(_bundle_with("run-a", full_handoff("x"))), "a", "bundle")
    b = Run(decoded(_bundle_with("run-b", full_handoff("x", Summary=hidden))), "b", "bundle")
    comparison = compare_runs(a, b, full=True)
    for out in (render_terminal(comparison, diffs=True), render_markdown(comparison, diffs=True)):
        assert "ok\\u202eevil\\u200b\\u2066x\\u2028y\\ufeff" in out


def _bundle_with(session: str, text: str) -> dict[str, object]:
    from tests.test_compare import bundle

    return bundle(session, [worker("x", session=session, handoff_text=text)])


# --------------------------------------------------------------------------- line endings


def test_crlf_only_differences_are_a_note_with_nothing_highlighted(tmp_path: Path) -> None:
    lf = full_handoff("x", Summary="- one\n- two\n- three")
    crlf = lf.replace("\n", "\r\n")
    a, b = pair(tmp_path, [worker("x", handoff_text=lf)], [worker("x", handoff_text=crlf)])
    data = json.loads(run_cli("compare", str(a), str(b), "--full", "--json", cwd=tmp_path).stdout)
    (w,) = data["workers"]
    assert w["changed"] is True and w["changes"]["handoff"] == "changed"
    summary = next(s for s in w["sections"] if s["key"] == "summary")
    assert summary["status"] == "changed"
    assert summary["note"] == "line endings only"
    assert (summary["a_changed"], summary["b_changed"]) == ([], [])
    assert w["handoff_diff"] == {
        "status": "ok",
        "unified": None,
        "note": "the texts differ only in line endings (CRLF/LF)",
    }
    terminal = run_cli("compare", str(a), str(b), "--full", cwd=tmp_path).stdout
    assert "Summary *: changed (line endings only)" in terminal
    assert "handoff diff: the texts differ only in line endings (CRLF/LF)" in terminal
    markdown = run_cli("compare", str(a), str(b), "--markdown", cwd=tmp_path).stdout
    assert "Summary (required): **changed** (line endings only)" in markdown
    html_path = tmp_path / "r.html"
    assert run_cli("compare", str(a), str(b), "--html", str(html_path), cwd=tmp_path).code == 0
    html = html_path.read_text(encoding="utf-8")
    assert '<p class="note section-note">line endings only</p>' in html
    assert 'class="side-a"' not in html and 'class="side-b"' not in html


def test_crlf_with_a_real_change_highlights_only_the_change() -> None:
    lf = full_handoff("x", Summary="- one\n- two\n- three")
    crlf = full_handoff("x", Summary="- one\n- TWO\n- three").replace("\n", "\r\n")
    a = Run(decoded(_bundle_with("run-a", lf)), "a", "bundle")
    b = Run(decoded(_bundle_with("run-b", crlf)), "b", "bundle")
    (w,) = compare_runs(a, b, full=True).workers
    summary = next(s for s in w.sections if s.key == "summary")
    assert (summary.status, summary.note) == ("changed", None)
    assert (summary.a_changed, summary.b_changed) == ([1], [1])
    assert w.handoff_diff is not None and w.handoff_diff.unified is not None
    assert "-- two\n+- TWO\n" in w.handoff_diff.unified
    assert "\r" not in w.handoff_diff.unified
    assert w.handoff_diff.note == "the line endings differ too (CRLF/LF): this diff ignores them"
    terminal = render_terminal(compare_runs(a, b, full=True), diffs=True)
    assert "handoff diff (the line endings differ too (CRLF/LF): this diff ignores them):" in (
        terminal
    )


def test_one_way_of_splitting_lines_everywhere() -> None:
    # Form feed, file separators, NEL, U+2028 and a lone CR are no line breaks here:
    # str.splitlines() would count them, and highlights would land on the wrong lines.
    odd = "p\x0cq\n\x1cr\x85s\u2028t\n\ru\n"
    assert text_lines(odd) == ["p\x0cq", "\x1cr\x85s\u2028t", "\ru"]
    a = Run(decoded(_bundle_with("run-a", full_handoff("x", Summary=odd + "old"))), "a", "bundle")
    b = Run(decoded(_bundle_with("run-b", full_handoff("x", Summary=odd + "new"))), "b", "bundle")
    comparison = compare_runs(a, b, full=True)
    summary = next(s for s in comparison.workers[0].sections if s.key == "summary")
    assert (summary.a_changed, summary.b_changed) == ([3], [3])
    from kodelyth_ecc.compare_html import render_html

    html = render_html(comparison)
    assert '<span class="side-a">old</span>' in html
    assert '<span class="side-b">new</span>' in html
    diff = unified_diff(odd + "old\n", odd + "new\n", "A", "B", DiffBudget())
    assert diff.unified == (
        "--- A\n+++ B\n@@ -1,4 +1,4 @@\n p\x0cq\n \x1cr\x85s\u2028t\n \ru\n-old\n+new\n"
    )


# --------------------------------------------------------------------------- megabyte lines


def _one_line_pair(tmp_path: Path, size: int) -> tuple[Path, Path]:
    line_a = "a" * size
    line_b = "b" * size
    return pair(
        tmp_path,
        [worker("x", handoff_text=full_handoff("x", Summary=line_a), diff=f"+{line_a}\n")],
        [worker("x", handoff_text=full_handoff("x", Summary=line_b), diff=f"+{line_b}\n")],
    )


@pytest.mark.parametrize("form", ["--markdown", None])
def test_terminal_and_markdown_cut_a_megabyte_line_with_a_note(
    tmp_path: Path, form: str | None
) -> None:
    a, b = _one_line_pair(tmp_path, 1 << 20)
    args = ["compare", str(a), str(b), "--full", "--patch"] + ([form] if form else [])
    result = run_cli(*args, cwd=tmp_path)
    assert result.code == 0, result
    # Two lines of 1 MiB in the diff, and a patch on each side: cut to 64 KiB a block.
    assert len(result.stdout) < 4 * MAX_BLOCK_CHARS + 20_000
    notes = re.findall(r"\d[\d,]* more characters[^\n]*not shown here: see --json", result.stdout)
    assert len(notes) == 3  # the handoff diff and both patches
    assert "more line" not in notes[1]  # a patch of one line, cut inside it


def test_a_cut_inside_one_line_counts_characters_not_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kodelyth_ecc import compare_html

    monkeypatch.setattr(compare_html, "MAX_SHOWN_CHARS", 2000)
    a, b = _one_line_pair(tmp_path, 5000)
    html = compare_html.render_html(compare_runs(load_run(str(a)), load_run(str(b)), full=True))
    assert "… 3,000 more characters not shown here (see --json)" in html
    assert "0 more lines" not in html
    # A cut falls back to the end of the last whole line within reach.
    text = "x\n" + "y" * 5000 + "\nz"
    monkeypatch.setattr(compare_html, "MAX_SHOWN_CHARS", 1000)
    shown, note = compare_html._Room().take(text)
    assert shown == "x\n"
    assert note == "… 5,002 more characters (2 more lines) not shown here (see --json)"


def test_the_html_budget_covers_diffs_patches_and_meta(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kodelyth_ecc import compare_html

    monkeypatch.setattr(compare_html, "MAX_SHOWN_CHARS", 3000)
    monkeypatch.setattr(compare_html, "MAX_REPORT_CHARS", 20_000)
    filler = "\n".join("Q" * 50 for _ in range(400))  # 20,400 characters
    workers_a = [
        worker(f"w{n}", handoff_text=full_handoff(f"w{n}", Summary=filler), diff=f"+{filler}\n")
        for n in range(6)
    ]
    workers_b = [
        worker(f"w{n}", handoff_text=full_handoff(f"w{n}", Summary="Q"), diff="+Q\n+Q\n")
        for n in range(6)
    ]
    a, b = pair(tmp_path, workers_a, workers_b, a_meta={"task": filler}, b_meta={"task": "t"})
    comparison = compare_runs(load_run(str(a)), load_run(str(b)), full=True, patches=True)
    html = compare_html.render_html(comparison)
    # Section texts, unified diffs, patches and meta values all draw on one budget.
    assert html.count("Q") <= 20_000 + 200
    assert "not shown: this report already holds" in html
    diffs = re.findall(r'<pre class="diff">(.*?)</pre>', html, re.S)
    assert diffs and all(len(d) < 3000 + 5000 for d in diffs)
    assert any("not shown here (see --json)" in d for d in diffs)
