"""The sandbox's egress proxy (``kodelyth_ecc.egress``) over its real unix socket.

The "hosts" are local servers on 127.0.0.1 (never the internet): an echo server for
tunnels and ``http.server`` for plain HTTP. Each records who connected, so a refused
request is shown to reach nothing: after the answer the test connects itself, and
once its own connection is recorded, any connection the proxy had made would have
been recorded before it."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kodelyth_ecc.egress import MAX_HEAD, EgressProxy, allowed, check_allow_host
from tests.support import retry_until

TIMEOUT = 10.0
HOST_TIMEOUT = 3 * TIMEOUT  # the hosts outwait the client: their giving up ends nothing early

Peer = tuple[str, int]


class Peers:
    """Who connected to a local host, in the order they were accepted."""

    def __init__(self) -> None:
        self.peers: list[Peer] = []
        self._cond = threading.Condition()

    def record(self, peer: Peer) -> None:
        with self._cond:
            self.peers.append(peer)
            self._cond.notify_all()

    def others(self, address: Peer) -> list[Peer]:
        """The connections before a probe of our own (made now, after the answer)."""
        with socket.create_connection(address, timeout=TIMEOUT) as probe:
            mine = probe.getsockname()
            with self._cond:
                assert self._cond.wait_for(lambda: mine in self.peers, TIMEOUT)
                return [p for p in self.peers if p != mine]


class EchoHost(Peers):
    """Echoes each connection; on the client's EOF sends ``<eof seen>`` and closes, so
    a half-close that arrives (and the way back still open) is visible."""

    def __init__(self) -> None:
        super().__init__()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.address: Peer = self._sock.getsockname()[:2]
        self.port = self.address[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, peer = self._sock.accept()
            except OSError:
                return
            self.record(peer[:2])
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(HOST_TIMEOUT)
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
                conn.sendall(b"<eof seen>")
            except OSError:
                pass

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept
        self._sock.close()


class _Reflect(BaseHTTPRequestHandler):
    """Answers with what arrived: the path, the headers and the body."""

    protocol_version = "HTTP/1.1"

    def _reflect(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        payload = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "headers": [[k.lower(), v] for k, v in self.headers.items()],
                "body": body.decode(),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _reflect
    do_POST = _reflect

    def log_message(self, format: str, *args: Any) -> None:
        pass


class HttpHost(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Reflect)
        self.seen = Peers()
        self.address: Peer = self.server_address[:2]  # type: ignore[assignment]
        self.port = self.address[1]
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, peer = super().get_request()
        self.seen.record(peer[:2])
        return conn, peer

    def others(self) -> list[Peer]:
        return self.seen.others(self.address)

    def close(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture
def echo() -> Iterator[EchoHost]:
    host = EchoHost()
    yield host
    host.close()


@pytest.fixture
def web() -> Iterator[HttpHost]:
    host = HttpHost()
    yield host
    host.close()


StartProxy = Callable[..., EgressProxy]


@pytest.fixture
def start_proxy(tmp_path: Path) -> Iterator[StartProxy]:
    proxies: list[EgressProxy] = []

    def start(allow: list[str], **options: Any) -> EgressProxy:
        proxy = EgressProxy(str(tmp_path / f"egress{len(proxies)}.sock"), allow, **options)
        proxy.start()
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        proxy.close()


# --- talking to the proxy ------------------------------------------------------------


def dial(proxy: EgressProxy) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    try:
        sock.connect(proxy.socket_path)
    except OSError:
        sock.close()
        raise
    return sock


def read_head(sock: socket.socket) -> tuple[int, bytes]:
    """The status of the answer and whatever came after its head."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        assert data, f"EOF before the end of the answer's head: {buf!r}"
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), rest


def read_exactly(sock: socket.socket, n: int, buf: bytes = b"") -> bytes:
    while len(buf) < n:
        data = sock.recv(65536)
        assert data, f"EOF after {buf!r}"
        buf += data
    return buf


def read_to_eof(sock: socket.socket, buf: bytes = b"") -> bytes:
    while data := sock.recv(65536):
        buf += data
    return buf


def exchange(proxy: EgressProxy, request: bytes) -> tuple[int, bytes]:
    """One request, and the whole answer: the proxy must close the connection."""
    with dial(proxy) as sock:
        sock.sendall(request)
        status, rest = read_head(sock)
        return status, read_to_eof(sock, rest)


def tunnel(proxy: EgressProxy, target: str, early: bytes = b"") -> tuple[socket.socket, int, bytes]:
    sock = dial(proxy)
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode() + early)
    status, rest = read_head(sock)
    return sock, status, rest


# --- CONNECT -------------------------------------------------------------------------


def test_connect_tunnels_both_ways_and_passes_on_a_half_close(
    start_proxy: StartProxy, echo: EchoHost
) -> None:
    proxy = start_proxy([f"127.0.0.1:{echo.port}"])
    sock, status, rest = tunnel(proxy, f"127.0.0.1:{echo.port}")
    with sock:
        assert status == 200
        sock.sendall(b"ping")
        assert read_exactly(sock, 4, rest) == b"ping"
        sock.sendall(b"pong" * 40_000)  # more than one read's worth
        assert read_exactly(sock, 160_000) == b"pong" * 40_000
        sock.shutdown(socket.SHUT_WR)
        # The host saw our EOF, and its answer to it still came back.
        assert read_to_eof(sock) == b"<eof seen>"
    assert len(echo.others(echo.address)) == 1


def test_connect_passes_on_bytes_sent_with_the_request(
    start_proxy: StartProxy, echo: EchoHost
) -> None:
    proxy = start_proxy([f"127.0.0.1:{echo.port}"])
    sock, status, rest = tunnel(proxy, f"127.0.0.1:{echo.port}", early=b"hello")
    with sock:
        assert status == 200
        assert read_exactly(sock, 5, rest) == b"hello"


@pytest.mark.parametrize(
    ("allow", "target"),
    [
        (["127.0.0.1"], "127.0.0.1:{port}"),  # no port: 80 and 443 only
        (["127.0.0.1:{other}"], "127.0.0.1:{port}"),
        (["127.0.0.1:{port}"], "localhost:{port}"),  # the same address, another name
        (["*.localhost:{port}"], "localhost:{port}"),  # a wildcard is not the bare name
    ],
)
def test_connect_not_allowed_is_403_and_reaches_nothing(
    start_proxy: StartProxy, echo: EchoHost, allow: list[str], target: str
) -> None:
    fill = {"port": echo.port, "other": echo.port + 1 if echo.port < 65535 else 1}
    proxy = start_proxy([entry.format(**fill) for entry in allow])
    status, body = exchange(proxy, f"CONNECT {target.format(**fill)} HTTP/1.1\r\n\r\n".encode())
    assert status == 403
    text = body.decode()
    host = target.partition(":")[0]
    assert text.count("\n") == 1 and text.endswith("\n")
    assert f"{host}:{echo.port}" in text
    assert "allowed hosts" in text and "--sandbox-allow-host" in text
    assert echo.others(echo.address) == []


def test_connect_to_an_unreachable_host_is_502(start_proxy: StartProxy) -> None:
    with socket.socket() as reserved:  # bound, never listening: connecting is refused
        reserved.bind(("127.0.0.1", 0))
        port = reserved.getsockname()[1]
        proxy = start_proxy([f"127.0.0.1:{port}"])
        status, body = exchange(proxy, f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n".encode())
    assert status == 502
    assert body.decode().count("\n") == 1
    assert f"127.0.0.1:{port}" in body.decode()


def test_an_idle_tunnel_is_closed(start_proxy: StartProxy, echo: EchoHost) -> None:
    proxy = start_proxy([f"127.0.0.1:{echo.port}"], idle_timeout_s=0.3)
    sock, status, rest = tunnel(proxy, f"127.0.0.1:{echo.port}")
    with sock:
        assert status == 200
        sock.sendall(b"x")
        assert read_exactly(sock, 1, rest) == b"x"
        # Nothing more either way: the proxy ends it (the recv would time out otherwise).
        assert read_to_eof(sock) == b""


def test_tunnels_beyond_the_cap_get_503(start_proxy: StartProxy, echo: EchoHost) -> None:
    proxy = start_proxy([f"127.0.0.1:{echo.port}"], max_tunnels=1)
    target = f"127.0.0.1:{echo.port}"
    first, status, _ = tunnel(proxy, target)
    with first:
        assert status == 200
        status, body = exchange(proxy, f"CONNECT {target} HTTP/1.1\r\n\r\n".encode())
        assert status == 503
        assert b"too many" in body
    assert len(echo.others(echo.address)) == 1

    def another() -> bool:
        sock, status, _ = tunnel(proxy, target)
        sock.close()
        return status == 200

    retry_until(another, timeout=TIMEOUT, message="the freed slot")


def test_close_ends_open_tunnels(start_proxy: StartProxy, echo: EchoHost) -> None:
    proxy = start_proxy([f"127.0.0.1:{echo.port}"])
    sock, status, _ = tunnel(proxy, f"127.0.0.1:{echo.port}")
    with sock:
        assert status == 200
        proxy.close()
        assert read_to_eof(sock) == b""


# --- plain HTTP ----------------------------------------------------------------------


def _headers(answer: dict[str, Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in answer["headers"]:
        found.setdefault(name, []).append(value)
    return found


def test_absolute_form_get_is_forwarded_in_origin_form(
    start_proxy: StartProxy, web: HttpHost
) -> None:
    proxy = start_proxy([f"127.0.0.1:{web.port}"])
    status, body = exchange(
        proxy,
        f"GET http://127.0.0.1:{web.port}/some/path?q=1 HTTP/1.1\r\n"
        "Host: elsewhere.example\r\n"
        "Proxy-Authorization: Basic c2VjcmV0\r\n"
        "Proxy-Connection: keep-alive\r\n"
        "Connection: keep-alive\r\n"
        "X-Kept: yes\r\n\r\n".encode(),
    )
    assert status == 200
    answer = json.loads(body)
    assert answer["method"] == "GET"
    assert answer["path"] == "/some/path?q=1"
    headers = _headers(answer)
    # The host is the one that was checked, not what the Host header claimed.
    assert headers["host"] == [f"127.0.0.1:{web.port}"]
    assert headers["connection"] == ["close"]
    assert "proxy-authorization" not in headers
    assert "proxy-connection" not in headers
    assert headers["x-kept"] == ["yes"]


def test_absolute_form_post_body_is_forwarded(start_proxy: StartProxy, web: HttpHost) -> None:
    proxy = start_proxy([f"127.0.0.1:{web.port}"])
    with dial(proxy) as sock:
        sock.sendall(
            f"POST http://127.0.0.1:{web.port} HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello".encode()
        )
        sock.sendall(b" world")
        status, rest = read_head(sock)
        body = read_to_eof(sock, rest)
    assert status == 200
    answer = json.loads(body)
    assert (answer["method"], answer["path"], answer["body"]) == ("POST", "/", "hello world")


def test_the_end_of_an_answer_ends_the_connection(start_proxy: StartProxy, web: HttpHost) -> None:
    """A client that keeps its side open (as a keep-alive pool does) does not keep the
    connection through the proxy once the origin has closed it."""
    proxy = start_proxy([f"127.0.0.1:{web.port}"], max_tunnels=1)
    request = f"GET http://127.0.0.1:{web.port}/ HTTP/1.1\r\n\r\n".encode()
    with dial(proxy) as kept:
        kept.sendall(request)
        status, rest = read_head(kept)
        read_to_eof(kept, rest)
        assert status == 200
        retry_until(lambda: exchange(proxy, request)[0] == 200, timeout=TIMEOUT)


def test_absolute_form_get_not_allowed_is_403(start_proxy: StartProxy, web: HttpHost) -> None:
    proxy = start_proxy(["127.0.0.1"])  # ports 80 and 443, not the server's
    status, body = exchange(proxy, f"GET http://127.0.0.1:{web.port}/ HTTP/1.1\r\n\r\n".encode())
    assert status == 403
    assert f"127.0.0.1:{web.port}" in body.decode()
    assert "--sandbox-allow-host" in body.decode()
    assert web.others() == []


@pytest.mark.parametrize(
    "request_line",
    [
        "GET / HTTP/1.1",  # origin form: no host to go to
        "GET https://127.0.0.1:{port}/ HTTP/1.1",
        "GET ftp://127.0.0.1:{port}/ HTTP/1.1",
        "GET http://user@127.0.0.1:{port}/ HTTP/1.1",
        "CONNECT 127.0.0.1 HTTP/1.1",
        "GET http://127.0.0.1:{port}/ HTTP/2",
        "GET  http://127.0.0.1:{port}/ HTTP/1.1",
        "hello",
    ],
)
def test_requests_that_are_not_proxy_requests_are_400(
    start_proxy: StartProxy, web: HttpHost, request_line: str
) -> None:
    proxy = start_proxy([f"127.0.0.1:{web.port}", "127.0.0.1"])
    line = request_line.format(port=web.port)
    status, body = exchange(proxy, f"{line}\r\nHost: 127.0.0.1:{web.port}\r\n\r\n".encode())
    assert status == 400
    assert body.decode().count("\n") == 1
    assert web.others() == []


def test_a_header_smuggling_a_line_break_is_400(start_proxy: StartProxy, web: HttpHost) -> None:
    proxy = start_proxy([f"127.0.0.1:{web.port}"])
    status, _ = exchange(
        proxy,
        f"GET http://127.0.0.1:{web.port}/ HTTP/1.1\r\nX-A: 1\rX-B: 2\r\n\r\n".encode(),
    )
    assert status == 400
    assert web.others() == []


@pytest.mark.parametrize("complete", [False, True])
def test_an_oversized_request_head_is_refused(
    start_proxy: StartProxy, web: HttpHost, complete: bool
) -> None:
    proxy = start_proxy([f"127.0.0.1:{web.port}"])
    head = f"GET http://127.0.0.1:{web.port}/ HTTP/1.1\r\nX-Pad: {'a' * MAX_HEAD}\r\n"
    status, body = exchange(proxy, (head + ("\r\n" if complete else "")).encode())
    assert status == 431
    assert b"larger than" in body
    assert web.others() == []


def test_a_head_just_under_the_cap_is_served(start_proxy: StartProxy, web: HttpHost) -> None:
    proxy = start_proxy([f"127.0.0.1:{web.port}"])
    head = f"GET http://127.0.0.1:{web.port}/ HTTP/1.1\r\nX-Pad: "
    pad = "a" * (MAX_HEAD - len(head) - 4)
    status, _ = exchange(proxy, f"{head}{pad}\r\n\r\n".encode())
    assert status == 200


def test_nothing_is_printed(
    start_proxy: StartProxy, web: HttpHost, capfd: pytest.CaptureFixture[str]
) -> None:
    proxy = start_proxy([f"127.0.0.1:{web.port}"])
    exchange(proxy, f"GET http://127.0.0.1:{web.port}/ HTTP/1.1\r\n\r\n".encode())
    exchange(proxy, b"GET http://elsewhere.example/ HTTP/1.1\r\n\r\n")
    exchange(proxy, b"\x00\xff garbage\r\n\r\n")
    with dial(proxy) as sock:
        sock.sendall(b"GET http://127.0.0.1")  # and goes away mid-head
    proxy.close()
    assert capfd.readouterr() == ("", "")


# --- the socket file -----------------------------------------------------------------


def test_the_socket_is_0600_even_with_an_open_umask(tmp_path: Path) -> None:
    proxy = EgressProxy(str(tmp_path / "e.sock"), [])
    old = os.umask(0)
    try:
        proxy.start()
    finally:
        os.umask(old)
    try:
        mode = os.stat(proxy.socket_path).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600
    finally:
        proxy.close()


def test_close_removes_the_socket(tmp_path: Path) -> None:
    path = tmp_path / "e.sock"
    proxy = EgressProxy(str(path), [])
    proxy.start()
    assert path.exists()
    proxy.close()
    assert not os.path.lexists(path)
    with pytest.raises(OSError):
        dial(proxy)
    proxy.close()  # again: nothing to do


def test_an_existing_path_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "e.sock"
    path.write_text("someone else's")
    proxy = EgressProxy(str(path), [])
    with pytest.raises(FileExistsError):
        proxy.start()
    proxy.close()
    assert path.read_text() == "someone else's"


def test_a_stale_socket_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "e.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(str(path))
    proxy = EgressProxy(str(path), [])
    with pytest.raises(FileExistsError):
        proxy.start()
    assert stat.S_ISSOCK(os.lstat(path).st_mode)


def test_close_leaves_a_file_that_replaced_the_socket(tmp_path: Path) -> None:
    path = tmp_path / "e.sock"
    proxy = EgressProxy(str(path), [])
    proxy.start()
    path.unlink()
    path.write_text("not ours")
    proxy.close()
    assert path.read_text() == "not ours"


def test_invalid_allow_hosts_are_refused_before_listening(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="scheme"):
        EgressProxy(str(tmp_path / "e.sock"), ["example.com", "https://example.org"])
    assert not os.path.lexists(tmp_path / "e.sock")


# --- the allowlist -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port", "entries", "expected"),
    [
        ("example.com", 443, ["example.com"], True),
        ("example.com", 80, ["example.com"], True),
        ("example.com", 8080, ["example.com"], False),
        ("example.com", 22, ["example.com"], False),
        ("example.com", 8080, ["example.com:8080"], True),
        ("example.com", 443, ["example.com:8080"], False),
        ("example.org", 443, ["example.com"], False),
        ("www.example.com", 443, ["example.com"], False),
        ("evilexample.com", 443, ["example.com"], False),
        ("example.com.evil", 443, ["example.com"], False),
        ("a.example.com", 443, ["*.example.com"], True),
        ("a.b.example.com", 80, ["*.example.com"], True),
        ("example.com", 443, ["*.example.com"], False),
        ("badexample.com", 443, ["*.example.com"], False),
        ("a.example.com", 8080, ["*.example.com"], False),
        ("a.example.com", 8443, ["*.example.com:8443"], True),
        ("a.example.com", 443, ["*.example.com:8443"], False),
        ("EXAMPLE.com", 443, ["Example.COM"], True),
        ("A.Example.Com", 443, ["*.EXAMPLE.com"], True),
        ("example.com.", 443, ["example.com"], True),
        ("example.com", 443, ["example.com."], True),
        ("a.example.com.", 443, ["*.example.com"], True),
        ("[::1]", 443, ["[::1]:443"], True),
        ("::1", 443, ["[::1]:443"], True),
        ("[0:0:0::1]", 443, ["[::1]"], True),
        ("[::1]", 80, ["[::1]:443"], False),
        ("[::2]", 443, ["[::1]"], False),
        ("127.0.0.1", 8080, ["127.0.0.1:8080"], True),
        ("127.0.0.1", 8081, ["127.0.0.1:8080"], False),
        ("example.com", 443, ["other.org", "example.com:8080", "example.com"], True),
        ("example.com", 443, [], False),
        # Entries that are not valid allow nothing.
        ("example.com", 443, ["https://example.com"], False),
        ("example.com", 443, ["example.com/"], False),
        ("127.0.0.1", 443, ["*.0.0.1"], False),
        # Hosts that are not hosts match nothing.
        ("", 443, ["example.com"], False),
        ("example.com\x00", 443, ["example.com"], False),
        ("example.com/x", 443, ["example.com"], False),
        ("exam ple.com", 443, ["exam ple.com"], False),
        ("example.com", 0, ["example.com:0"], False),
        ("example.com", 70000, ["example.com"], False),
        ("*.example.com", 443, ["*.example.com"], False),
    ],
)
def test_allowed(host: str, port: int, entries: list[str], expected: bool) -> None:
    assert allowed(host, port, entries) is expected


@pytest.mark.parametrize(
    ("entry", "normal"),
    [
        ("example.com", "example.com"),
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("example.com:8080", "example.com:8080"),
        ("*.Example.com", "*.example.com"),
        ("*.example.com.:8443", "*.example.com:8443"),
        ("[::1]:443", "[::1]:443"),
        ("[0:0:0::1]", "[::1]"),
        ("[2001:DB8::1]", "[2001:db8::1]"),
        ("127.0.0.1:8080", "127.0.0.1:8080"),
        ("xn--bcher-kva.de", "xn--bcher-kva.de"),
        ("registry.npmjs.org", "registry.npmjs.org"),
    ],
)
def test_check_allow_host_normalises(entry: str, normal: str) -> None:
    assert check_allow_host(entry) == normal
    assert check_allow_host(normal) == normal


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("", "empty"),
        ("exa mple.com", "spaces"),
        (" example.com", "spaces"),
        ("example.com\n", "control"),
        ("\x1b[31mexample.com", "control"),
        ("https://example.com", "scheme"),
        ("http://example.com:8080", "scheme"),
        ("example.com/simple", "path"),
        ("example.com?x", "path"),
        ("example.com:0", "port"),
        ("example.com:65536", "port"),
        ("example.com:", "port"),
        ("example.com:http", "port"),
        ("example.com:-1", "port"),
        ("[::1]:99999", "port"),
        ("::1", "brackets"),
        ("[::1", "not a valid"),
        ("[not-ipv6]", "not a valid"),
        ("exa..mple.com", "not a valid"),
        ("exa!mple.com", "not a valid"),
        ("*.", "not a valid"),
        ("*", "wildcard"),
        ("*example.com", "wildcard"),
        ("a.*.example.com", "wildcard"),
        ("*.127.0.0.1", "wildcard"),
        ("bücher.de", "ASCII"),
        ("user@example.com", "user"),
        ("a" * 64 + ".com", "not a valid"),
    ],
)
def test_check_allow_host_refuses(entry: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as caught:
        check_allow_host(entry)
    message = str(caught.value)
    assert "\n" not in message and "\x1b" not in message
    assert "--sandbox-allow-host" in message
