"""Rate limits at the session's model proxy (``kodelyth_ecc.proxy.RateLimits``): a 429
(or Anthropic's 529) from the provider is waited out and the same request sent again,
within bounds, over real HTTP on 127.0.0.1 against the scripted Anthropic stub; the
agent gets the answer that came through, and the recording holds only that."""

from __future__ import annotations

import http.client
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from kodelyth_ecc import exchanges as ex
from kodelyth_ecc.proxy import (
    ProxyConfig,
    RateLimits,
    Route,
    WorkerConfig,
    asked_wait,
    encode_config,
    serve,
)
from tests.providers.anthropic import AnthropicStub
from tests.providers.server import Request, Response, wait_for_requests
from tests.support import retry_until
from tests.test_proxy import _recorded

ANSWER = "Rate limits are waited out, not passed on. " * 3
KEY = "sk-ant-api03-backoff-test-0123456789abcdefXYZ"
# OpenAI's 429 for a spent balance.
QUOTA_ERROR = {"message": "You exceeded your current quota", "type": "insufficient_quota",
               "code": "insufficient_quota"}  # fmt: skip
QUOTA = json.dumps({"error": QUOTA_ERROR}).encode()


class Limited(AnthropicStub):
    """The Anthropic stub behind a rate limit: its n-th request is answered ``status``
    (the API's error body, or ``body``) with ``plan[n]``'s headers while ``plan[n]`` is
    a dict, and as the stub answers when it is None or past the plan's end. ``times``:
    when each request arrived."""

    def __init__(
        self,
        plan: Sequence[Mapping[str, str] | None],
        status: int = 429,
        body: bytes | None = None,
    ) -> None:
        super().__init__(answer=ANSWER, lifetime_s=60)
        self.plan = list(plan)
        self.limit_status = status
        self.limit_body = body
        self.times: list[float] = []

    def __enter__(self) -> Limited:
        self.start()
        return self

    def respond(self, request: Request) -> Response:
        with self._lock:
            self.times.append(time.monotonic())
            index = len(self.times) - 1
        headers = self.plan[index] if index < len(self.plan) else None
        if headers is None:
            return super().respond(request)
        if self.limit_body is None:
            answer = self.failure(self.limit_status)
        else:
            answer = Response(self.limit_status, {"content-type": "application/json"},
                              self.limit_body)  # fmt: skip
        answer.headers.update(headers)
        return answer


def _proxy(
    tmp_path: Path, upstream: str, limits: RateLimits | None = None
) -> tuple[int, threading.Event]:
    """A recording proxy for worker ``alpha`` in ``tmp_path`` (where ``_recorded`` reads)."""
    (tmp_path / "alpha").mkdir(exist_ok=True)
    config = ProxyConfig(
        coordination_dir=str(tmp_path),
        session="s",
        workers=(WorkerConfig("alpha", "record", "/w"),),
        routes=(Route(upstream),),
        rate_limits=limits or RateLimits(),
    )
    stop = threading.Event()
    return serve(config, stop)["alpha"], stop


def _request_body(stream: bool = True) -> bytes:
    """A main-conversation turn, not ASCII and over many TCP reads: re-sent byte-exact or
    not at all."""
    task = "Réparer le test instable: 日本語のテキスト " + "x" * 300_000
    body = {"model": "claude-x", "max_tokens": 64, "stream": stream, "tools": [{"name": "t"}],
            "messages": [{"role": "user", "content": task}]}  # fmt: skip
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def _post(
    port: int, body: bytes, *, chunked: bool = False, timeout: float = 20
) -> tuple[http.client.HTTPResponse, bytes, float]:
    """POST /v1/messages with a key; the answer, its body and how long it took."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01",
               "content-type": "application/json"}  # fmt: skip
    began = time.monotonic()
    if chunked:
        pieces = iter([body[i : i + 65_536] for i in range(0, len(body), 65_536)])
        conn.request("POST", "/v1/messages", body=pieces, headers=headers, encode_chunked=True)
    else:
        conn.request("POST", "/v1/messages", body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    elapsed = time.monotonic() - began
    conn.close()
    return response, data, elapsed


def _text_of(stream: bytes) -> str:
    """The text an Anthropic stream's deltas carry."""
    text = []
    for line in stream.decode().splitlines():
        if line.startswith("data: "):
            data = json.loads(line[6:])
            if data.get("type") == "content_block_delta":
                text.append(data["delta"].get("text", ""))
    return "".join(text)


@pytest.mark.parametrize("status", [429, 529])
def test_a_rate_limited_stream_is_sent_again_and_arrives_whole(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], status: int
) -> None:
    body = _request_body()
    with Limited([{"retry-after-ms": "50"}] * 2, status=status) as upstream:
        # A backoff of its own far shorter than asked: the waits are the header's.
        port, stop = _proxy(tmp_path, upstream.base_url, RateLimits(first_wait_s=0.001))
        try:
            response, data, _ = _post(port, body, chunked=True)
            # The answer has ended: the recording holds it, and only it.
            on_disk = ex.parse_lines((tmp_path / "alpha" / "exchanges.jsonl").read_bytes())
        finally:
            stop.set()
        sent = upstream.requests
        credentials = upstream.credential_names
        gaps = [b - a for a, b in itertools.pairwise(upstream.times)]
    assert response.status == 200
    assert response.getheader("content-type") == "text/event-stream"
    assert _text_of(data) == ANSWER
    assert len(gaps) == 2 and min(gaps) >= 0.05, gaps  # never sooner than asked
    # Three times the same request, byte for byte (it came chunked; it left whole).
    assert len(sent) == 3
    assert [r.body for r in sent] == [body] * 3
    assert len({json.dumps(r.headers, sort_keys=True) for r in sent}) == 1
    assert credentials == [{"x-api-key"}] * 3
    assert len(on_disk) == 1
    (exchange,) = on_disk
    assert exchange.status == 200 and exchange.error is None
    assert "".join(e + "\n\n" for e in exchange.events or []) == data.decode()
    assert exchange.usage is not None and exchange.usage["output_tokens"] == 80
    said = capfd.readouterr().err
    for attempt in (2, 3):
        line = (rf"alpha: rate limited by 127\.0\.0\.1 \({status}\): "
                rf"retrying in \d+\.\ds \(attempt {attempt} of 7\)")  # fmt: skip
        assert re.search(line, said), said
    assert KEY not in said


def test_retry_after_in_seconds_is_honoured(tmp_path: Path) -> None:
    with Limited([{"retry-after": "1"}]) as upstream:
        port, stop = _proxy(tmp_path, upstream.base_url, RateLimits(first_wait_s=0.001))
        try:
            response, data, elapsed = _post(port, _request_body(stream=False))
        finally:
            stop.set()
        gap = upstream.times[1] - upstream.times[0]
    assert response.status == 200 and json.loads(data)["content"][0]["text"] == ANSWER
    assert gap >= 1.0 and elapsed >= 1.0
    assert elapsed < 10


@pytest.mark.parametrize("mode", ["forward", "offline-live"])
def test_every_forwarding_mode_waits_out_a_rate_limit(tmp_path: Path, mode: str) -> None:
    """``--no-record`` and a replay handed to the live provider (``--on-divergence live``)
    forward through the same path as a recording."""
    from tests.test_proxy import _offline_proxy
    from tests.test_proxy import _proxy as plain_proxy

    with Limited([{"retry-after-ms": "20"}]) as upstream:
        if mode == "forward":
            port, stop = plain_proxy(tmp_path, upstream.base_url, mode="forward")
        else:
            port, stop = _offline_proxy(tmp_path, upstream.base_url)
        try:
            response, data, _ = _post(port, _request_body())
        finally:
            stop.set()
        sent = len(upstream.requests)
    assert response.status == 200 and _text_of(data) == ANSWER
    assert sent == 2


def test_without_a_wait_asked_for_the_backoff_doubles(tmp_path: Path) -> None:
    limits = RateLimits(first_wait_s=0.05)
    with Limited([{}] * 3) as upstream:
        port, stop = _proxy(tmp_path, upstream.base_url, limits)
        try:
            response, _, _ = _post(port, _request_body(stream=False))
        finally:
            stop.set()
        times = upstream.times
    assert response.status == 200 and len(times) == 4
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # 50, 100, 200 ms, each at least 75 % of it (the jitter is +-25 %).
    for index, gap in enumerate(gaps):
        assert gap >= 0.75 * 0.05 * 2**index, gaps


def test_exhausted_retries_give_the_agent_the_last_429_as_it_came(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with Limited([{"retry-after-ms": "20", "request-id": "req_limited"}] * 10) as upstream:
        port, stop = _proxy(tmp_path, upstream.base_url)  # the default: 6 retries
        try:
            response, data, _ = _post(port, _request_body())
        finally:
            stop.set()
        sent = len(upstream.requests)
    assert sent == 7
    assert response.status == 429
    error = {"type": "rate_limit_error", "message": "stub error 429"}
    assert json.loads(data) == {"type": "error", "error": error}
    assert response.getheader("retry-after-ms") == "20"
    assert response.getheader("request-id") == "req_limited"
    (exchange,) = _recorded(tmp_path)
    assert exchange.status == 429 and exchange.body == data.decode()
    assert exchange.response_headers["request-id"] == "req_limited"
    said = capfd.readouterr().err
    assert "passed on to the agent: still limited after 6 retries" in said
    assert said.count("retrying in") == 6


@pytest.mark.parametrize(
    ("status", "headers", "body"),
    [
        # A wait over the cap is a spent quota, not a burst: nothing to wait out here.
        (429, {"retry-after": "3600"}, None),
        (429, {}, QUOTA),  # a spent balance
        (500, {"retry-after": "0"}, None),  # not a rate limit
    ],
)
def test_what_no_wait_lifts_goes_to_the_agent_at_once(
    tmp_path: Path, status: int, headers: dict[str, str], body: bytes | None
) -> None:
    with Limited([headers] * 3, status=status, body=body) as upstream:
        port, stop = _proxy(tmp_path, upstream.base_url)
        try:
            response, data, elapsed = _post(port, _request_body(stream=False))
        finally:
            stop.set()
        sent = len(upstream.requests)
    assert sent == 1
    assert response.status == status and elapsed < 5
    if body is not None:
        assert data == body


def test_a_stopping_proxy_ends_a_long_wait_at_once(tmp_path: Path) -> None:
    with Limited([{"retry-after": "30"}] * 3) as upstream:
        port, stop = _proxy(tmp_path, upstream.base_url)
        answers: list[tuple[int, bytes, float]] = []

        def ask() -> None:
            response, data, _ = _post(port, _request_body(stream=False), timeout=20)
            answers.append((response.status, data, time.monotonic()))

        client = threading.Thread(target=ask, daemon=True)
        client.start()
        try:
            assert wait_for_requests(upstream, 1, timeout=10)
        finally:
            stopped = time.monotonic()
            stop.set()
        client.join(timeout=15)
        sent = len(upstream.requests)
    assert answers, "no answer: the proxy sat out the 30 s wait"
    status, data, at = answers[0]
    assert at - stopped < 3
    assert status == 429 and json.loads(data)["error"]["type"] == "rate_limit_error"
    assert sent == 1


def test_no_key_in_anything_the_proxy_process_writes(tmp_path: Path) -> None:
    """The real process (as ``execute`` starts it): its output says what it waits for,
    never a credential, and SIGTERM (teardown) ends it in the middle of a wait."""
    coordination = tmp_path / "coord"
    (coordination / "alpha").mkdir(parents=True)
    wait = {"retry-after-ms": "50"}
    with Limited([wait, wait, None, {"retry-after": "30"}]) as upstream:
        config = ProxyConfig(
            coordination_dir=str(coordination),
            session="s",
            workers=(WorkerConfig("alpha", "record", "/w"),),
            routes=(Route(upstream.base_url + "/gw"),),
        )
        config_file = tmp_path / "proxy-config.json"
        fd = os.open(config_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(encode_config(config))
        proc = subprocess.Popen(
            [sys.executable, "-I", "-m", "kodelyth_ecc.proxy", str(config_file)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            state = retry_until(lambda: _read_json(coordination / "proxy.json"), timeout=20)
            port = state["ports"]["alpha"]
            response, data, _ = _post(port, _request_body())
            assert response.status == 200 and _text_of(data) == ANSWER
            answers: list[int] = []
            client = threading.Thread(
                target=lambda: answers.append(_post(port, _request_body())[0].status),
                daemon=True,
            )
            client.start()
            assert wait_for_requests(upstream, 4, timeout=10)
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=15)
            client.join(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert time.monotonic() - signalled < 12
    assert answers == [429]
    assert KEY not in out and KEY not in err
    assert re.search(r"rate limited by 127\.0\.0\.1 \(429\): retrying in 0\.\ds \(attempt 2", err)
    assert "passed on to the agent: the proxy is stopping" in err
    for path in coordination.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --- the policy's arithmetic -----------------------------------------------------------


def _headers(found: Mapping[str, str]) -> Callable[[str], str | None]:
    return {k.lower(): v for k, v in found.items()}.get


def test_the_wait_asked_for_is_read_from_each_header_and_format() -> None:
    assert asked_wait(_headers({"retry-after-ms": "1500", "Retry-After": "9"}), {}) == 1.5
    assert asked_wait(_headers({"Retry-After": "7"}), {}) == 7
    soon = format_datetime(_utc_in(30), usegmt=True)
    found = asked_wait(_headers({"Retry-After": soon}), {})
    assert found is not None and 28 <= found <= 30.5
    past = format_datetime(_utc_in(-30), usegmt=True)
    assert asked_wait(_headers({"Retry-After": past}), {}) == 0
    gemini = {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure"},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12s"}]}  # fmt: skip
    assert asked_wait(_headers({}), gemini) == 12
    for nonsense in ("soon", "nan", "inf", "-1", ""):
        assert (
            asked_wait(_headers({"Retry-After": nonsense, "retry-after-ms": nonsense}), {}) is None
        )


def _utc_in(seconds: float) -> Any:
    from datetime import datetime, timedelta, timezone

    return datetime.now(timezone.utc) + timedelta(seconds=seconds)


def test_the_policy_is_bounded_per_wait_in_retries_and_in_total() -> None:
    policy = RateLimits()
    assert (policy.statuses, policy.retries, policy.max_wait_s, policy.max_total_s) == (
        (429, 529), 6, 60.0, 120.0)  # fmt: skip
    none = _headers({})
    for retries in range(6):
        delay, _ = policy.wait(none, b"", retries, 0.0)
        expected = 2.0**retries
        assert delay is not None and 0.75 * expected <= delay <= min(1.25 * expected, 60)
    delay, why = policy.wait(none, b"", 6, 63.0)
    assert delay is None and "after 6 retries" in why
    asked = _headers({"retry-after": "20"})
    delay, _ = policy.wait(asked, b"", 0, 0.0)
    assert delay is not None and 20 <= delay <= 22
    delay, why = policy.wait(asked, b"", 3, 110.0)
    assert delay is None and "120s budget" in why
    delay, why = policy.wait(_headers({"retry-after": "61"}), b"", 0, 0.0)
    assert delay is None and "over the 60s cap" in why


def test_the_policy_travels_in_the_config_and_old_configs_get_the_default() -> None:
    custom = RateLimits(retries=2, first_wait_s=0.5)
    config = ProxyConfig(coordination_dir="/c", session="s", workers=(), rate_limits=custom)
    decoded = msgspec.json.decode(encode_config(config), type=ProxyConfig)
    assert decoded.rate_limits == custom
    old = b'{"coordination_dir": "/c", "session": "s", "workers": []}'
    assert msgspec.json.decode(old, type=ProxyConfig).rate_limits == RateLimits()


def test_an_error_body_nested_past_the_parser_is_no_error_object() -> None:
    """A 429 whose body nests deeper than json can parse: no wait is read from it, and
    the proxy goes on (no traceback, the agent is answered)."""
    from kodelyth_ecc.proxy import _error_of

    assert _error_of(b"[" * 30_000) == {}
    assert _error_of(b'{"error": {"type": "rate_limit_error"}}') == {"type": "rate_limit_error"}
