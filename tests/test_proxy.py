"""The session's model proxy (``kodelyth_ecc.proxy``) over real HTTP on 127.0.0.1:
streams pass through as they arrive, credentials reach the provider but never the
recording, an unreachable upstream is an answer in the provider's format, and the
offline replayer's lanes and policies."""

from __future__ import annotations

import contextlib
import http.client
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kodelyth_ecc import exchanges as ex
from kodelyth_ecc.proxy import ProxyConfig, Replayer, Route, WorkerConfig, serve
from tests.providers.server import Request, Response, ScriptedProvider
from tests.support import retry_until


class GatedStream(ScriptedProvider):
    """Streams two events; the second only once the test has read the first, so a
    proxy that buffered the stream would never deliver either."""

    def __init__(self) -> None:
        super().__init__(lifetime_s=30)
        self.first_read = threading.Event()

    def respond(self, request: Request) -> Response:
        def events() -> Iterator[tuple[str | None, Any]]:
            yield "message_start", {"type": "message_start", "message": {
                "model": "m", "usage": {"input_tokens": 3, "output_tokens": 1}}}  # fmt: skip
            self.first_read.wait(10)
            yield "message_delta", {"type": "message_delta", "usage": {"output_tokens": 2}}

        return Response.sse(events())


def _proxy(tmp_path: Path, upstream: str, mode: str = "record") -> tuple[int, threading.Event]:
    (tmp_path / "alpha").mkdir(exist_ok=True)
    config = ProxyConfig(
        coordination_dir=str(tmp_path),
        session="s",
        workers=(WorkerConfig("alpha", mode, "/w"),),
        routes=(Route(upstream),),
    )
    stop = threading.Event()
    ports = serve(config, stop)
    return ports["alpha"], stop


def _recorded(tmp_path: Path, count: int = 1) -> list[ex.Exchange]:
    """The worker's recording once it holds ``count`` exchanges (read at once after an
    answer ended; polled only for the error paths that answer first)."""
    path = tmp_path / "alpha" / "exchanges.jsonl"

    def read() -> list[ex.Exchange] | None:
        found = ex.parse_lines(path.read_bytes())
        return found if len(found) >= count else None

    return retry_until(read, timeout=10)


def test_a_stream_passes_through_as_it_arrives(tmp_path: Path) -> None:
    upstream = GatedStream()
    with upstream:
        port, stop = _proxy(tmp_path, upstream.base_url)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", "/v1/messages", body=b'{"stream": true}')
            response = conn.getresponse()
            first = response.read1(65536)
            assert b"message_start" in first and b"message_delta" not in first
            upstream.first_read.set()
            rest = response.read()
            assert b"message_delta" in rest
            # The answer has ended: the recording already holds it (a proxy killed now
            # loses nothing the agent was given).
            on_disk = (tmp_path / "alpha" / "exchanges.jsonl").read_bytes()
            assert len(ex.parse_lines(on_disk)) == 1
        finally:
            stop.set()
    (exchange,) = _recorded(tmp_path)
    assert [e.split("\n")[0] for e in exchange.events or []] == [
        "event: message_start",
        "event: message_delta",
    ]
    assert exchange.usage == {"model": "m", "input_tokens": 3, "output_tokens": 2}


class Echo(ScriptedProvider):
    """Answers with the headers it got (never a credential: the stub drops those) and
    the path without its query."""

    def respond(self, request: Request) -> Response:
        return Response.json({"headers": request.headers, "path": request.path.split("?")[0]})


def test_credentials_reach_the_provider_and_never_the_recording(tmp_path: Path) -> None:
    secret = "sk-ant-test-0123456789abcdef"
    with Echo(lifetime_s=30) as upstream:
        port, stop = _proxy(tmp_path, upstream.base_url + "/gateway")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            headers = {"x-api-key": secret, "Authorization": f"Bearer {secret}",
                       "Cookie": f"session={secret}", "anthropic-version": "2023-06-01",
                       "Accept-Encoding": "gzip"}  # fmt: skip
            conn.request("POST", "/v1/messages?beta=true", body=b"{}", headers=headers)
            answer = json.loads(conn.getresponse().read())
            # Google's APIs also take the key in the query.
            conn.request("POST", f"/v1beta/models/g:generateContent?key={secret}&alt=sse",
                         body=b"{}")  # fmt: skip
            conn.getresponse().read()
        finally:
            stop.set()
        raw_headers = {k.lower() for k in upstream.requests[0].headers}
        sent_path = upstream.requests[1].path
    # The gateway's path prefix is kept, and the answer comes uncompressed.
    assert answer["path"] == "/gateway/v1/messages"
    assert answer["headers"]["accept-encoding"] == "identity"
    assert sent_path == f"/gateway/v1beta/models/g:generateContent?key={secret}&alt=sse"
    assert "anthropic-version" in raw_headers
    data = (tmp_path / "alpha" / "exchanges.jsonl").read_bytes()
    assert secret.encode() not in data
    exchange, queried = _recorded(tmp_path, 2)
    assert exchange.request_headers == {"anthropic-version": "2023-06-01"}
    assert queried.path == "/v1beta/models/g:generateContent?key=***&alt=sse"


def test_an_unreachable_upstream_is_an_error_in_the_providers_format(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    port, stop = _proxy(tmp_path, dead)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/v1/messages", body=b"{}")
        response = conn.getresponse()
        body = json.loads(response.read())
    finally:
        stop.set()
    assert response.status == 502
    assert body["type"] == "error" and "cannot reach the upstream" in body["error"]["message"]
    (exchange,) = _recorded(tmp_path)
    assert exchange.status == 502 and (exchange.error or "").startswith("upstream unreachable")


def _turn(turn: int, conversation: list[str], answer: str, tools: bool = True) -> ex.Exchange:
    messages = [{"role": "user", "content": text} for text in conversation]
    body = {"model": "m", "messages": messages, **({"tools": [{}]} if tools else {})}
    return ex.Exchange(
        turn=turn, method="POST", path="/v1/messages", format="anthropic-messages",
        request=json.dumps(body), status=200, body=answer, source="upstream",
    )  # fmt: skip


def _ask(replayer: Replayer, conversation: list[str], tools: bool = True) -> tuple[str, str | None]:
    request = _turn(0, conversation, "", tools).request
    action, item = replayer.answer("POST", "/v1/messages", request)
    return action, item.body if item is not None else None


RECORDING = [
    _turn(1, ["task"], "call a tool"),
    _turn(2, ["title please"], "Title", tools=False),  # a side request, in its own lane
    _turn(3, ["task", "tool said 1"], "done"),
]
CONTEXT = ex.Context(worktree="/w", session="s")


@pytest.mark.parametrize("policy", ["stop", "continue", "live"])
def test_the_replayer_answers_in_order_and_diverges_by_policy(policy: str) -> None:
    replayer = Replayer(RECORDING, CONTEXT, CONTEXT, policy)
    # Side requests may come in any order beside the main conversation.
    assert _ask(replayer, ["title please"], tools=False) == ("serve", "Title")
    assert _ask(replayer, ["task"]) == ("serve", "call a tool")
    assert replayer.divergence is None
    outcome = _ask(replayer, ["task", "tool said 2"])
    assert replayer.divergence is not None
    turn, reason = replayer.divergence
    assert turn == 3 and "a user message (part 2" in reason
    expected = {"stop": ("stop", None), "continue": ("serve", "done"), "live": ("live", None)}
    assert outcome == expected[policy]
    # Past the divergence: stop refuses everything, live forwards everything, continue
    # has nothing left to answer with.
    after = _ask(replayer, ["task"])
    assert after[0] == {"stop": "stop", "continue": "stop", "live": "live"}[policy]


def test_more_requests_than_recorded_diverge_after_the_last_turn() -> None:
    replayer = Replayer(RECORDING[:1], CONTEXT, CONTEXT, "stop")
    assert _ask(replayer, ["task"])[0] == "serve"
    assert _ask(replayer, ["task"])[0] == "stop"
    assert replayer.divergence is not None and replayer.divergence[0] == 2
    assert "does not hold" in replayer.divergence[1]


def test_a_hostile_replay_source_stops_the_proxy_before_it_listens(tmp_path: Path) -> None:
    (tmp_path / "alpha").mkdir()
    bad = {"exchanges": [ex.Exchange(turn=2, method="POST", path="/x", format="other",
                                     source="upstream"),
                         ex.Exchange(turn=1, method="POST", path="/x", format="other",
                                     source="upstream")]}  # fmt: skip
    import msgspec

    (tmp_path / "alpha" / "replay-source.json").write_bytes(msgspec.json.encode(bad))
    with pytest.raises(ex.RecordingError, match="turns must increase"):
        _proxy(tmp_path, "http://127.0.0.1:9", mode="offline")


def test_a_negative_chunk_size_is_refused_not_read_to_the_end(tmp_path: Path) -> None:
    import socket

    with Echo(lifetime_s=30) as upstream:
        port, stop = _proxy(tmp_path, upstream.base_url)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                head = b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                # The proxy may close as soon as it reads the bad size: the rest of the
                # write, or the shutdown, then fails, as it should.
                with contextlib.suppress(OSError):
                    sock.sendall(head + b"\r\n-1\r\n" + b"x" * 100_000)
                    sock.shutdown(socket.SHUT_WR)
                sock.settimeout(10)
                try:
                    answered = sock.recv(65536)
                except ConnectionResetError:
                    answered = b""
                assert answered == b""  # closed, nothing answered
        finally:
            stop.set()
        assert upstream.requests == []  # nothing forwarded


def _offline_proxy(
    tmp_path: Path, upstream: str, routes: tuple[Route, ...] = ()
) -> tuple[int, threading.Event]:
    """An offline worker with an empty recording under the live policy: every request
    diverges and is handed to ``upstream``."""
    import msgspec

    (tmp_path / "alpha").mkdir(exist_ok=True)
    (tmp_path / "alpha" / "replay-source.json").write_bytes(msgspec.json.encode({"exchanges": []}))
    config = ProxyConfig(
        coordination_dir=str(tmp_path),
        session="s",
        workers=(WorkerConfig("alpha", "offline", "/w"),),
        routes=routes or (Route(upstream),),
        on_divergence="live",
    )
    stop = threading.Event()
    return serve(config, stop)["alpha"], stop


def test_live_without_a_key_sends_nothing_off_the_machine(tmp_path: Path) -> None:
    from kodelyth_ecc.runner import OFFLINE_KEY

    with Echo(lifetime_s=30) as upstream:
        port, stop = _offline_proxy(tmp_path, upstream.base_url)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            for headers in ({}, {"x-api-key": OFFLINE_KEY}, {"Authorization": "Bearer "}):
                conn.request("POST", "/v1/messages", body=b'{"messages": []}', headers=headers)
                response = conn.getresponse()
                assert response.status == 401 and b"needs your API key" in response.read()
            assert upstream.requests == []
            conn.request("POST", "/v1/messages", body=b"{}", headers={"x-api-key": "real"})
            assert conn.getresponse().status == 200
            assert len(upstream.requests) == 1
        finally:
            stop.set()
    assert json.loads((tmp_path / "alpha" / "divergence.json").read_text())["policy"] == "live"


def test_a_custom_launchers_keys_reach_only_their_own_provider(tmp_path: Path) -> None:
    from kodelyth_ecc.harnesses import CUSTOM_ADAPTER

    with Echo(lifetime_s=30) as anthropic, Echo(lifetime_s=30) as openai, \
            Echo(lifetime_s=30) as gemini:  # fmt: skip
        bases = {"ANTHROPIC_BASE_URL": anthropic.base_url, "OPENAI_BASE_URL":
                 openai.base_url + "/v1", "GOOGLE_GEMINI_BASE_URL": gemini.base_url}  # fmt: skip
        routes = tuple(Route.of(u, bases) for u in CUSTOM_ADAPTER.upstreams)
        (tmp_path / "alpha").mkdir()
        config = ProxyConfig(
            coordination_dir=str(tmp_path),
            session="s",
            workers=(WorkerConfig("alpha", "record", "/w"),),
            routes=routes,
        )
        stop = threading.Event()
        port = serve(config, stop)["alpha"]
        both = {"x-api-key": "sk-ant-k", "Authorization": "Bearer sk-openai-k",
                "x-goog-api-key": "goog-k"}  # fmt: skip
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            for path, extra in (
                ("/v1/models", {"anthropic-version": "2023-06-01"}),
                ("/v1/chat/completions", {}),
                ("/v1/models/g:generateContent", {}),
                ("/v1beta/models/g:streamGenerateContent?alt=sse", {}),
            ):
                conn.request("POST", path, body=b"{}", headers={**both, **extra})
                conn.getresponse().read()
        finally:
            stop.set()
    assert anthropic.credential_names == [{"x-api-key", "authorization"}]
    assert openai.credential_names == [{"authorization"}]
    assert gemini.credential_names == [{"x-goog-api-key", "authorization"}] * 2
    assert [r.path for r in anthropic.requests] == ["/v1/models"]
    assert [r.path for r in openai.requests] == ["/v1/chat/completions"]
    assert [r.path for r in gemini.requests] == [
        "/v1/models/g:generateContent",
        "/v1beta/models/g:streamGenerateContent?alt=sse",
    ]


def test_what_is_recorded_fits_the_formats_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ex, "MAX_BODY_CHARS", 10)
    monkeypatch.setattr(ex, "MAX_EVENT_CHARS", 4)
    big = ex.Exchange(turn=1, method="POST", path="/v1/messages", format="other",
                      source="upstream", request="x" * 40, events=["abcdefgh", "ab"])  # fmt: skip
    ex.fit(big)
    ex.validate_exchanges([big], "w")
    assert big.request == "x" * 10 and big.events == ["abcd", "ab"]
    assert big.error == "request and answer over the recording's limits: kept its start"


def test_the_upstream_is_reached_over_https_with_the_systems_trust(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A provider's default URL is https: the proxy verifies its certificate against the
    trust store (here one holding only a certificate made for this test)."""
    import os
    import shutil
    import ssl
    import subprocess
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    if shutil.which("openssl") is None:
        if os.environ.get("CI"):
            pytest.fail("openssl is not installed: .ci/run must install it")
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            body = b'{"usage": {"input_tokens": 1, "output_tokens": 2}}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    port, stop = _proxy(tmp_path, f"https://127.0.0.1:{server.server_address[1]}")
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/v1/messages", body=b"{}")
        response = conn.getresponse()
        assert response.status == 200 and b"input_tokens" in response.read()
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "none.pem"))  # untrusted now
        conn.request("POST", "/v1/messages", body=b"{}")
        refused = conn.getresponse()
        assert refused.status == 502 and b"cannot reach the upstream" in refused.read()
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
    first, second = _recorded(tmp_path, 2)
    assert first.usage == {"input_tokens": 1, "output_tokens": 2}
    assert second.status == 502 and "upstream unreachable" in (second.error or "")


def test_the_runner_points_each_cli_without_losing_the_users_settings(tmp_path: Path) -> None:
    """The runner sets the adapter's variables to the worker's port, merges opencode's
    overlay into the user's own OPENCODE_CONFIG_CONTENT, exempts loopback from any HTTP
    proxy, and fills a placeholder key only where none is set."""
    from kodelyth_ecc.harnesses import proxy_point
    from kodelyth_ecc.runner import OFFLINE_KEY, _point_at_proxy

    (tmp_path / "alpha").mkdir()
    (tmp_path / "proxy.json").write_text(json.dumps({"ports": {"alpha": 4242}}))
    point = proxy_point("opencode", "anthropic/claude-x", {})
    assert not isinstance(point, str)
    spec = json.dumps([[n, list(p), s] for n, p, s in point.env])
    options = {"status-file": str(tmp_path / "alpha" / "status.md"),
               "proxy": str(tmp_path / "proxy.json"), "proxy-env": spec}  # fmt: skip
    user = {"provider": {"anthropic": {"options": {"apiKey": "{env:K}"}}}, "theme": "dark"}
    env = {"OPENCODE_CONFIG_CONTENT": json.dumps(user), "NO_PROXY": "corp.example"}
    _point_at_proxy(options, env)
    merged = json.loads(env["OPENCODE_CONFIG_CONTENT"])
    assert merged["theme"] == "dark"
    assert merged["provider"]["anthropic"]["options"] == {
        "apiKey": "{env:K}", "baseURL": "http://127.0.0.1:4242/v1"
    }  # fmt: skip
    assert env["KODELYTH_PROXY_URL"] == "http://127.0.0.1:4242"
    assert env["NO_PROXY"] == "corp.example,127.0.0.1,localhost"
    claude = proxy_point("claude", None, {})
    assert not isinstance(claude, str)
    offline = {**options, "proxy-env": json.dumps([["ANTHROPIC_BASE_URL", [], ""]]),
               "offline-key": ",".join(claude.key_env)}  # fmt: skip
    bare: dict[str, str] = {}
    _point_at_proxy(offline, bare)
    assert bare["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:4242"
    assert bare["ANTHROPIC_API_KEY"] == OFFLINE_KEY
    keyed = {"ANTHROPIC_AUTH_TOKEN": "the user's"}
    _point_at_proxy(offline, keyed)
    assert "ANTHROPIC_API_KEY" not in keyed  # the user's own credential is used as it is


@pytest.mark.skipif(sys.version_info < (3, 11), reason="reading config.toml needs tomllib")
def test_codex_is_pointed_at_its_own_selected_provider(tmp_path: Path) -> None:
    from kodelyth_ecc.harnesses import proxy_point

    home = tmp_path / "codex"
    home.mkdir()
    (home / "config.toml").write_text(
        'model_provider = "corp.gw"\n[model_providers."corp.gw"]\n'
        'base_url = "https://gw.corp.example/openai/v1"\nenv_key = "CORP_KEY"\n'
    )
    point = proxy_point("codex", None, {"CODEX_HOME": str(home)})
    assert not isinstance(point, str)
    assert 'model_providers={{\\"corp.gw\\"={{base_url=' in point.flags
    assert point.upstreams[0].base({}) == "https://gw.corp.example/openai/v1"
    assert point.key_env == ("CORP_KEY",)
    (home / "config.toml").write_text('openai_base_url = "https://eu.api.openai.example/v1"\n')
    builtin = proxy_point("codex", None, {"CODEX_HOME": str(home)})
    assert not isinstance(builtin, str)
    assert "openai_base_url=" in builtin.flags
    assert builtin.upstreams[0].base({}) == "https://eu.api.openai.example/v1"
    (home / "config.toml").write_text('model_provider = "x"\n')  # no base_url to forward to
    assert isinstance(proxy_point("codex", None, {"CODEX_HOME": str(home)}), str)
    assert isinstance(proxy_point("opencode", None, {}), str)  # no provider without --model


class Bare(ScriptedProvider):
    """Answers HEAD and 204 as servers do: headers only."""

    def respond(self, request: Request) -> Response:
        if request.path == "/empty":
            return Response(204, {})
        return Response.json({"ok": True})


def test_head_204_and_websocket_upgrades_keep_the_connection_in_step(tmp_path: Path) -> None:
    from kodelyth_ecc.harnesses import OFFLINE_KEY
    from kodelyth_ecc.runner import OFFLINE_KEY as RUNNERS

    assert RUNNERS == OFFLINE_KEY  # the runner spells it without importing harnesses
    with Bare(lifetime_s=30) as upstream:
        port, stop = _proxy(tmp_path, upstream.base_url)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("HEAD", "/")
            head = conn.getresponse()
            assert head.read() == b"" and head.getheader("transfer-encoding") is None
            conn.request("POST", "/empty", body=b"{}")
            empty = conn.getresponse()
            assert empty.status == 204 and empty.read() == b""
            conn.request("GET", "/v1/responses", headers={"Upgrade": "websocket",
                                                        "Connection": "Upgrade"})  # fmt: skip
            upgrade = conn.getresponse()
            assert upgrade.status == 426
            upgrade.read()
            # Still in step: the next answer on the same connection is the next answer.
            conn.request("POST", "/v1/messages", body=b"{}")
            after = conn.getresponse()
            assert after.status == 200 and json.loads(after.read()) == {"ok": True}
            dates = [k for k, _ in after.getheaders() if k.lower() == "date"]
            assert len(dates) == 1
        finally:
            stop.set()
    # (The stub answers HEAD 501 itself, unrecorded.) The upgrade never reached it.
    assert [r.method for r in upstream.requests] == ["POST", "POST"]


def test_the_native_binary_behind_an_npm_launcher(tmp_path: Path) -> None:
    import platform

    from kodelyth_ecc.harnesses import native_binary

    elf = tmp_path / "tool"
    elf.write_bytes(b"\x7fELF" + b"\0" * 60)
    elf.chmod(0o755)
    assert native_binary(str(elf)) == str(elf)
    machine = {"x86_64": ("codex-linux-x64", "x86_64-unknown-linux-musl"),
               "aarch64": ("codex-linux-arm64", "aarch64-unknown-linux-musl")}  # fmt: skip
    if platform.machine() not in machine:
        pytest.skip("no codex platform package for this machine")
    package, triple = machine[platform.machine()]
    launcher = tmp_path / "node_modules" / "@openai" / "codex" / "bin" / "codex.js"
    launcher.parent.mkdir(parents=True)
    launcher.write_text("#!/usr/bin/env node\n")
    binary = tmp_path / "node_modules" / "@openai" / package / "vendor" / triple / "bin" / "codex"
    binary.parent.mkdir(parents=True)
    binary.write_bytes(b"\x7fELF")
    binary.chmod(0o755)
    link = tmp_path / "codex"
    link.symlink_to(launcher)  # as node_modules/.bin/codex is
    assert native_binary(str(link)) == str(binary)
    binary.chmod(0o644)  # not executable: not it
    assert native_binary(str(link)) is None


def test_a_bad_upstream_port_is_an_answer_not_a_hang(tmp_path: Path) -> None:
    port, stop = _proxy(tmp_path, "http://127.0.0.1:99999")  # no such port
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/v1/messages", body=b"{}")
        response = conn.getresponse()
        assert response.status == 502 and b"cannot reach the upstream" in response.read()
    finally:
        stop.set()


def test_an_upstream_nobody_configured_is_refused_before_the_proxy_starts() -> None:
    from types import SimpleNamespace

    from kodelyth_ecc.errors import KodelythError
    from kodelyth_ecc.harnesses import ProxyPoint, Upstream
    from kodelyth_ecc.proxy import build_config

    nowhere = Upstream("", "", discover="opencode:corp")  # no baseURL, no default
    plan = SimpleNamespace(proxy_point=ProxyPoint((), (nowhere,)), repo_root="/nonexistent",
                           offline=False, coordination_dir="/x", session_name="s",
                           workers=(), on_divergence="stop", coordination_root="/x")  # fmt: skip
    with pytest.raises(KodelythError, match="no endpoint is configured for opencode:corp"):
        build_config(plan, {"PATH": ""})  # no opencode to ask either
