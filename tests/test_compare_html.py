"""``compare --html FILE``: one self-contained file, checked as text and in a real
headless Chromium (Debian's), driven over the DevTools protocol on a pipe.

The browser is driven with the standard library only: ``--remote-debugging-pipe``
speaks the same JSON protocol as the WebSocket endpoint, NUL-separated over file
descriptors 3 and 4, so the tests need neither Selenium nor chromedriver.
Without a browser these tests skip on a developer's machine and fail in CI
(``CI`` set), where ``.ci/run`` installs Chromium.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import retry_until, run_cli
from tests.test_compare import PATCH, full_handoff, pair, typical_pair, worker

HOSTILE = (
    '<script>window.__pwned = 1</script><img src="x" onerror="window.__pwned = 2">'
    '</pre></details><b id="injected">bold</b> <a href="https://example.invalid/x">link</a>'
)
BROWSER_TIMEOUT = 30.0


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class DevTools:
    """A headless Chromium and one page, driven over the DevTools pipe."""

    def __init__(self, binary: str) -> None:
        self.profile = tempfile.mkdtemp(prefix="kodelyth-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        args = [
            binary,
            "--headless",
            "--remote-debugging-pipe",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-dev-shm-usage",
            f"--user-data-dir={self.profile}",
            "about:blank",
        ]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to sandbox as root
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the browser
        # The browser reads commands on fd 3 and writes replies on fd 4: a small Python
        # puts the pipe ends there and becomes the browser (no preexec_fn in a threaded
        # test process; sh cannot name descriptors above 9).
        move = (
            "import fcntl, os, sys; "
            f"r = fcntl.fcntl({to_browser_r}, fcntl.F_DUPFD, 10); "
            f"w = fcntl.fcntl({from_browser_w}, fcntl.F_DUPFD, 10); "
            "os.dup2(r, 3); os.dup2(w, 4); "
            "os.execv(sys.argv[1], sys.argv[1:])"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", move, *args],
            pass_fds=(to_browser_r, from_browser_w),
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=self.log,
            start_new_session=True,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        self.session = attached["sessionId"]
        self.call("Network.enable", session=self.session)
        self.call("Page.enable", session=self.session)
        self.call("Runtime.enable", session=self.session)

    def _message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"Chromium did not answer in time: {self.browser_log()}")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 16)
                if not chunk:
                    raise AssertionError(f"Chromium closed the pipe: {self.browser_log()}")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        self._next_id += 1
        request: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            request["sessionId"] = session
        os.write(self._to_browser, json.dumps(request).encode() + b"\0")
        deadline = time.monotonic() + BROWSER_TIMEOUT
        while True:
            message = self._message(deadline)
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise AssertionError(f"{method} failed: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self.events.append(message)

    def evaluate(self, expression: str) -> Any:
        reply = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            self.session,
        )
        if "exceptionDetails" in reply:
            raise AssertionError(f"{expression!r} threw: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def open(self, path: Path) -> None:
        self.events.clear()
        self.call("Page.navigate", {"url": path.resolve().as_uri()}, self.session)
        retry_until(
            lambda: self.evaluate(
                "document.readyState === 'complete' && location.protocol === 'file:'"
            ),
            timeout=BROWSER_TIMEOUT,
            message="the report to load",
        )

    def requested_urls(self) -> list[str]:
        return [
            e["params"]["request"]["url"]
            for e in self.events
            if e.get("method") == "Network.requestWillBeSent"
        ]

    def browser_log(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-2000:]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call("Browser.close")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        for fd in (self._to_browser, self._from_browser):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[DevTools]:
    binary = _chromium()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run must install Debian's chromium")
        pytest.skip("chromium is not installed (apt-get install chromium); CI runs this")
    devtools = DevTools(binary)
    try:
        yield devtools
    finally:
        devtools.close()


# Visible: laid out with a size, not display:none (itself or an ancestor).
VISIBLE_JS = """
function visible(el) {
  if (!el) return false;
  const box = el.getBoundingClientRect();
  return el.getClientRects().length > 0 && box.width > 0 && box.height > 0;
}
"""


def _report(tmp_path: Path, *args: str) -> Path:
    a, b = typical_pair(tmp_path)
    html = tmp_path / "report.html"
    result = run_cli("compare", str(a), str(b), "--html", str(html), *args, cwd=tmp_path)
    assert result.code == 0, result
    assert f"wrote {html}" in result.stderr
    return html


# --------------------------------------------------------------------------- as text


def test_the_report_is_one_self_contained_file(tmp_path: Path) -> None:
    text = _report(tmp_path).read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    lowered = text.lower()
    for forbidden in ("http://", "https://", "<link", "@import", "url(", "@font-face", "src="):
        assert forbidden not in lowered, forbidden
    # Links only to anchors inside the page.
    assert all(part.startswith('"#') for part in text.split("href=")[1:])
    assert "Content-Security-Policy" in text and "default-src &#x27;none&#x27;" in text


def test_bundle_text_is_escaped(tmp_path: Path) -> None:
    hostile = full_handoff("x", Summary=HOSTILE)
    a, b = pair(tmp_path, [worker("x")], [worker("x", handoff_text=hostile, diff=HOSTILE)])
    html = tmp_path / "r.html"
    result = run_cli("compare", str(a), str(b), "--html", str(html), cwd=tmp_path)
    assert result.code == 0, result
    text = html.read_text(encoding="utf-8")
    assert "<script>window.__pwned" not in text
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in text
    assert 'id="injected"' not in text
    assert text.count("<script>") == 1  # ours


def test_long_texts_are_cut_with_a_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kodelyth_ecc import compare_html
    from kodelyth_ecc.compare import compare_runs, load_run

    monkeypatch.setattr(compare_html, "MAX_SHOWN_CHARS", 2000)
    monkeypatch.setattr(compare_html, "MAX_REPORT_CHARS", 5000)
    long = "\n".join(f"- line {n}" for n in range(1000))
    workers = [f"w{n}" for n in range(4)]
    a, b = pair(
        tmp_path,
        [worker(s, handoff_text=full_handoff(s, Summary=long)) for s in workers],
        [worker(s, handoff_text=full_handoff(s, Summary=long + "\n- new")) for s in workers],
    )
    html = compare_html.render_html(
        compare_runs(load_run(str(a)), load_run(str(b)), full=True, patches=True)
    )
    assert "more lines) not shown here (see --json)" in html
    assert "not shown: this report already holds" in html
    assert "- line 10\n" in html and "- line 900" not in html


# --------------------------------------------------------------------------- in Chromium


def test_table_sections_and_filter_work_in_chromium(browser: DevTools, tmp_path: Path) -> None:
    browser.open(_report(tmp_path))
    # The per-worker table renders, one visible non-empty row per worker.
    rows = browser.evaluate(
        VISIBLE_JS
        + """
        Array.from(document.querySelectorAll('#worker-table tbody tr')).map(
          r => [r.cells[0].innerText.trim(), visible(r), r.dataset.changed])
        """
    )
    assert rows == [
        ["code-reviewer", True, "1"],
        ["doc-updater", True, "1"],
        ["security-reviewer", True, "1"],
        ["tdd-guide", True, "1"],
    ]
    assert browser.evaluate(
        VISIBLE_JS + "visible(document.querySelector('#variation')) && "
        "document.querySelector('#variation').innerText.includes('codex')"
    )
    # Side-by-side sections: the changed Validation section shows both runs' text,
    # the changed lines highlighted.
    sbs = browser.evaluate(
        VISIBLE_JS
        + """
        const block = document.getElementById('w-security-reviewer');
        const section = Array.from(block.querySelectorAll('.section'))
          .find(s => (s.querySelector('h3') || {innerText: ''}).innerText.startsWith('Validation'));
        const cols = Array.from(section.querySelectorAll('.sbs .col pre'));
        [block.open, cols.map(c => [visible(c), c.innerText.trim()]),
         Array.from(section.querySelectorAll('.side-a, .side-b')).map(
           e => [e.className, getComputedStyle(e).backgroundColor])]
        """
    )
    # Neutral colours (amber for the first run, blue for the second), not red and green:
    # no side is shown as the right one.
    assert sbs == [
        True,
        [[True, "- `pytest -q` passed."], [True, "- `pytest` 3 failed."]],
        [["side-a", "rgb(251, 227, 196)"], ["side-b", "rgb(214, 230, 251)"]],
    ]
    # A patch is there, folded.
    assert browser.evaluate(
        "document.querySelector('#w-code-reviewer details.patch pre.diff').textContent"
        ".includes('check(password)')"
    )
    assert browser.requested_urls() == [browser.evaluate("location.href")]


def test_changed_only_hides_unchanged_workers_in_chromium(
    browser: DevTools, tmp_path: Path
) -> None:
    a, b = pair(
        tmp_path,
        [worker("same-one"), worker("same-two"), worker("moved")],
        [
            worker("same-one", session="run-b"),
            worker("same-two", session="run-b"),
            worker("moved", handoff_text=full_handoff("moved", Summary="- another summary")),
        ],
    )
    html = tmp_path / "filter.html"
    assert run_cli("compare", str(a), str(b), "--html", str(html), cwd=tmp_path).code == 0
    browser.open(html)
    shown = (
        VISIBLE_JS
        + """
        [Array.from(document.querySelectorAll('#worker-table tbody tr'))
           .filter(visible).map(r => r.cells[0].innerText.trim()),
         Array.from(document.querySelectorAll('details.worker'))
           .filter(visible).map(d => d.id),
         Array.from(document.querySelectorAll('#w-moved .section'))
           .filter(visible).length]
        """
    )
    every = ["moved", "same-one", "same-two"]
    assert browser.evaluate(shown) == [every, [f"w-{s}" for s in every], 4]
    browser.evaluate("document.getElementById('changed-only').click()")
    # Unchanged workers, and the identical sections of a changed one, are hidden.
    assert browser.evaluate(shown) == [["moved"], ["w-moved"], 1]
    browser.evaluate("document.getElementById('changed-only').click()")
    assert browser.evaluate(shown) == [every, [f"w-{s}" for s in every], 4]


def test_hostile_handoffs_neither_run_nor_fetch_in_chromium(
    browser: DevTools, tmp_path: Path
) -> None:
    hostile = full_handoff("x", Summary=HOSTILE)
    a, b = pair(tmp_path, [worker("x")], [worker("x", handoff_text=hostile, diff=PATCH + HOSTILE)])
    html = tmp_path / "hostile.html"
    assert run_cli("compare", str(a), str(b), "--html", str(html), cwd=tmp_path).code == 0
    browser.open(html)
    assert browser.evaluate("typeof window.__pwned") == "undefined"
    assert browser.evaluate("document.getElementById('injected')") is None
    # Shown as the text it is.
    assert browser.evaluate(
        "document.getElementById('w-x').innerText.includes('<script>window.__pwned = 1</script>')"
    )
    # Our own script ran (the CSP lets exactly it through): the filter toggles.
    browser.evaluate("document.getElementById('changed-only').click()")
    assert browser.evaluate("document.body.classList.contains('changed-only')")
    assert browser.requested_urls() == [browser.evaluate("location.href")]


def test_sixty_four_workers_stay_readable_in_chromium(browser: DevTools, tmp_path: Path) -> None:
    slugs = [f"worker-{n:02d}" for n in range(64)]
    a_workers = [worker(s) for s in slugs]
    b_workers = [
        worker(s, handoff_text=full_handoff(s, Validation=f"- run {n}") if n % 4 == 0 else None)
        for n, s in enumerate(slugs)
    ]
    a, b = pair(tmp_path, a_workers, b_workers)
    html = tmp_path / "many.html"
    assert run_cli("compare", str(a), str(b), "--html", str(html), cwd=tmp_path).code == 0
    browser.open(html)
    counts = (
        VISIBLE_JS
        + """
        [Array.from(document.querySelectorAll('#worker-table tbody tr')).filter(visible).length,
         Array.from(document.querySelectorAll('details.worker')).filter(d => d.open).length,
         Array.from(document.querySelectorAll('details.worker')).filter(visible).length]
        """
    )
    # Every worker in the table; the blocks start folded so the page stays short.
    assert browser.evaluate(counts) == [64, 0, 64]
    browser.evaluate("document.getElementById('changed-only').click()")
    assert browser.evaluate(counts) == [16, 0, 16]
    # Following a worker's link from the table unfolds its block.
    browser.evaluate("document.querySelector('a[href=\"#w-worker-04\"]').click()")
    retry_until(
        lambda: browser.evaluate("document.getElementById('w-worker-04').open"),
        timeout=5,
        message="the linked block to open",
    )


# --------------------------------------------------------------------------- many runs

CSP_WATCH = """
window.__violations = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.__violations.push(e.violatedDirective + ' ' + e.blockedURI);
});
"""


def _watched_open(browser: DevTools, path: Path) -> list[dict[str, Any]]:
    """Open ``path`` with CSP violations recorded; returns the console errors, exceptions
    and log entries the page caused."""
    browser.call("Log.enable", session=browser.session)
    browser.call("Page.addScriptToEvaluateOnNewDocument", {"source": CSP_WATCH}, browser.session)
    browser.open(path)
    browser.evaluate("1")  # collect the events sent while loading
    return [
        e
        for e in browser.events
        if e.get("method") in ("Runtime.exceptionThrown", "Log.entryAdded")
        or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")
    ]


def test_the_violation_watch_sees_a_violation(browser: DevTools, tmp_path: Path) -> None:
    # The check below would pass on a page that breaks the CSP if it could not see one.
    from kodelyth_ecc.compare_html import page_head

    page = tmp_path / "bad.html"
    page.write_text(
        "\n".join(page_head("t", script=None))
        + "<script>document.title = 'ran'</script></body></html>"
    )
    problems = _watched_open(browser, page)
    assert browser.evaluate("window.__violations.length") >= 1
    assert browser.evaluate("document.title") == "t"
    assert problems  # Chromium logs the refused script too


def _many_report(tmp_path: Path) -> tuple[Path, Any]:
    from tests.test_compare_many import make_experiment, outcome

    costs = [0.01 * (n + 1) for n in range(6)]
    arm_b = [[outcome("w", f"b{n}", passed=n < 2, cost=c, duration=10.0 + n)]
             for n, c in enumerate(costs)]  # fmt: skip
    exp = make_experiment(
        tmp_path / "exp",
        {
            'arm <b id="injected">A</b>\x1b[31m': [
                [outcome("w", f"a{n}", passed=n < 5, cost=None, duration=20.0 + n)]
                for n in range(6)
            ],
            "harness=codex": arm_b,
            "nothing finished": [None],
        },
    )
    html = tmp_path / "many.html"
    result = run_cli("compare", str(exp), "--html", str(html), "--json", cwd=tmp_path)
    assert result.code == 0, result
    assert f"wrote {html} (3 arms)" in result.stderr
    return html, json.loads(result.stdout)


def test_many_run_report_is_self_contained(tmp_path: Path) -> None:
    html, _ = _many_report(tmp_path)
    text = html.read_text(encoding="utf-8")
    lowered = text.lower()
    for forbidden in ("http://", "https://", "<link", "@import", "url(", "<script", "src="):
        assert forbidden not in lowered, forbidden
    assert "script-src &#x27;none&#x27;" in text
    assert 'id="injected"' not in text and "&lt;b id=&quot;injected&quot;&gt;" in text
    assert "\x1b" not in text
    assert '="nan' not in lowered and '="inf' not in lowered  # every coordinate finite


def test_many_run_plots_render_in_chromium(browser: DevTools, tmp_path: Path) -> None:
    from kodelyth_ecc.compare.html_many import PLOT_LEFT, PLOT_WIDTH

    html, data = _many_report(tmp_path)
    problems = _watched_open(browser, html)
    assert problems == []
    assert browser.evaluate("window.__violations") == []
    assert browser.requested_urls() == [browser.evaluate("location.href")]
    assert browser.evaluate("document.getElementById('injected')") is None
    # The all-workers plots are drawn with a size: two rate plots, two spread plots.
    sizes = browser.evaluate(
        """Array.from(document.querySelectorAll('#g-all svg.plot')).map(s => {
             const box = s.getBoundingClientRect(); return [box.width > 0, box.height > 0]; })"""
    )
    assert sizes == [[True, True]] * 4
    # The verify whiskers sit where the intervals say: x = left + rate * width.
    whiskers = browser.evaluate(
        """Array.from(document.querySelectorAll('#g-all svg.plot')[0]
             .querySelectorAll('line.whisker')).map(l => [Number(l.dataset.arm),
             l.x1.baseVal.value, l.x2.baseVal.value,
             l.getBoundingClientRect().width > 0])"""
    )
    expected = []
    for index, arm in enumerate(data["arms"]):
        rate = arm["all_workers"]["verify"]
        if rate["n"]:
            expected.append((index, rate["low"], rate["high"]))
    assert [w[0] for w in whiskers] == [e[0] for e in expected] == [0, 1]
    for (_, x1, x2, drawn), (_, low, high) in zip(whiskers, expected, strict=True):
        assert x1 == pytest.approx(PLOT_LEFT + low * PLOT_WIDTH, abs=0.01)
        assert x2 == pytest.approx(PLOT_LEFT + high * PLOT_WIDTH, abs=0.01)
        assert drawn
    dots = browser.evaluate(
        """Array.from(document.querySelectorAll('#g-all svg.plot')[0]
             .querySelectorAll('circle.estimate')).map(c => c.cx.baseVal.value)"""
    )
    assert dots == pytest.approx(
        [PLOT_LEFT + 5 / 6 * PLOT_WIDTH, PLOT_LEFT + 2 / 6 * PLOT_WIDTH], abs=0.01
    )
    # The arm with no finished run says so; the duration plot has a dot a run.
    assert browser.evaluate(
        "Array.from(document.querySelectorAll('#g-all svg.plot')[0]"
        ".querySelectorAll('text.empty')).map(t => [t.dataset.arm, t.textContent])"
    ) == [["2", "no run"]]
    assert (
        browser.evaluate(
            "document.querySelectorAll('#g-all svg.plot')[2]"
            ".querySelectorAll('circle.value').length"
        )
        == 12
    )
    # Arm 1 has no cost: its row says so, arm 2's six costs are dots.
    cost = browser.evaluate(
        """const s = document.querySelectorAll('#g-all svg.plot')[3];
           [s.querySelectorAll('circle.value').length,
            Array.from(s.querySelectorAll('text.empty')).map(t => t.dataset.arm)]"""
    )
    assert cost == [6, ["0", "2"]]
    # Hostile labels are text.
    assert browser.evaluate(
        "document.querySelector('#arms').innerText.includes('arm <b id=\"injected\">A</b>')"
    )
