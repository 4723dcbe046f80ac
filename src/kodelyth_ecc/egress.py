"""The sandbox's way out: an HTTP forward proxy on a unix socket, for allowed hosts only.

Workers run under bubblewrap with ``--unshare-net``: no network but their own
loopback. ``--sandbox-allow-host HOST`` lets them reach a few hosts (a package
registry, say). Outside the sandbox this proxy listens on a unix socket (0600, so
only the user's processes can use it); inside, a relay forwards a loopback port to
it and ``HTTPS_PROXY``/``HTTP_PROXY`` point there. A unix socket rather than a TCP
port because it crosses the network namespace as a file, and nothing else on the
machine can connect to it.

- ``CONNECT host:port``: a byte tunnel to an allowed host (TLS stays end to end).
- ``GET http://host/path`` (absolute form): forwarded once, ``Connection: close``.
- Anything else, or a host not allowed: an error answer and the connection closes.

Every request comes from an agent that may be hostile, so the head is capped, the
connections are capped, idle tunnels end, and the host connected to is the one that
was checked. Nothing is ever written to stdout or stderr (the session proxy runs in
a tmux pane), least of all what a request contained. Standard library only: it is
imported by the session proxy process.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import socketserver
import stat
import threading
import time
from collections.abc import Sequence

MAX_HEAD = 64 * 1024
MAX_TUNNELS = 256
IDLE_TIMEOUT_S = 300.0
CONNECT_TIMEOUT_S = 15.0
HEAD_TIMEOUT_S = 30.0
DEFAULT_PORTS = frozenset({80, 443})
FLAG = "--sandbox-allow-host"

_CHUNK = 64 * 1024
_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
_TOKEN_CHARS = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
# Hop-by-hop headers the proxy must not pass on (RFC 9110 7.6.1); it sets Connection.
_DROP = frozenset({b"connection", b"proxy-connection", b"proxy-authorization", b"keep-alive"})
_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


# --- the allowlist -------------------------------------------------------------------


def _norm_host(host: str) -> str | None:
    """The canonical form of a host to compare: lower case, no trailing dot, an IPv6
    literal in brackets and compressed; ``None`` if it is not a plausible host."""
    if host.startswith("[") and host.endswith("]"):
        inner = host[1:-1]
    elif ":" in host:
        inner = host
    else:
        inner = ""
    if inner:
        try:
            packed = socket.inet_pton(socket.AF_INET6, inner)
        except (OSError, ValueError):
            return None
        return "[" + socket.inet_ntop(socket.AF_INET6, packed) + "]"
    name = host.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name or len(name) > 253:
        return None
    for label in name.split("."):
        if not label or len(label) > 63 or not _LABEL_CHARS.issuperset(label):
            return None
    return name


def _is_ip(host: str) -> bool:
    """An address literal: wildcards are about names, ``*.0.0.1`` must not match one."""
    return host.startswith("[") or all(label.isdigit() for label in host.split("."))


def _split_port(text: str) -> tuple[str, str | None]:
    """``host[:port]`` split, brackets kept; the port text is ``None`` when absent."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return text, None
        rest = text[end + 1 :]
        if rest.startswith(":"):
            return text[: end + 1], rest[1:]
        return text, None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, port
    return text, None


def _parse_port(text: str) -> int | None:
    if not text or len(text) > 5 or not text.isascii() or not text.isdigit():
        return None
    port = int(text)
    return port if 0 < port < 65536 else None


def check_allow_host(entry: str) -> str:
    """Validate one ``--sandbox-allow-host`` entry and return its normalised form
    (``example.com``, ``example.com:8080``, ``*.example.com``, ``[::1]:443``).

    Raises ``ValueError`` with a one-line message: a typo here would otherwise be an
    allowlist that silently lets nothing (or the wrong thing) through."""
    shown = ascii(entry)
    if not entry:
        raise ValueError(f"{FLAG}: empty host")
    if not entry.isprintable():
        raise ValueError(f"{FLAG} {shown}: control characters in host")
    if any(c.isspace() for c in entry):
        raise ValueError(f"{FLAG} {shown}: spaces in host")
    if not entry.isascii():
        raise ValueError(f"{FLAG} {shown}: not ASCII (give an international name as xn--...)")
    if "://" in entry:
        raise ValueError(f"{FLAG} {shown}: give a host[:port], not a URL (no scheme)")
    if "/" in entry or "?" in entry or "#" in entry:
        raise ValueError(f"{FLAG} {shown}: give a host[:port], not a URL (no path)")
    if "@" in entry:
        raise ValueError(f"{FLAG} {shown}: give a host[:port], no user name")
    host_text, port_text = _split_port(entry)
    if ":" in host_text and not host_text.startswith("["):
        raise ValueError(f"{FLAG} {shown}: put an IPv6 address in brackets, as [::1]:443")
    port = None
    if port_text is not None:
        port = _parse_port(port_text)
        if port is None:
            raise ValueError(f"{FLAG} {shown}: port must be a number from 1 to 65535")
    wildcard = host_text.startswith("*.")
    name = host_text[2:] if wildcard else host_text
    if "*" in name:
        raise ValueError(f"{FLAG} {shown}: a wildcard is only allowed as a leading '*.'")
    host = _norm_host(name)
    if host is None:
        raise ValueError(f"{FLAG} {shown}: not a valid host name or address")
    if wildcard and _is_ip(host):
        raise ValueError(f"{FLAG} {shown}: a wildcard needs a domain name, not an address")
    normal = ("*." if wildcard else "") + host
    return normal if port is None else f"{normal}:{port}"


def _entry_matches(entry: str, host: str, port: int) -> bool:
    """``entry`` normalised, ``host`` normalised."""
    entry_host, port_text = _split_port(entry)
    if port_text is None:
        if port not in DEFAULT_PORTS:
            return False
    elif int(port_text) != port:
        return False
    if entry_host.startswith("*."):
        return not _is_ip(host) and host.endswith(entry_host[1:])
    return entry_host == host


def allowed(host: str, port: int, allow_hosts: Sequence[str]) -> bool:
    """Whether ``host:port`` may be reached. An entry without a port allows 80 and
    443 (plain and TLS of the same host); ``*.example.com`` allows its subdomains
    but not ``example.com`` itself. Case and a trailing dot do not matter; an entry
    that is not valid allows nothing."""
    normal = _norm_host(host)
    if normal is None or not 0 < port < 65536:
        return False
    for entry in allow_hosts:
        try:
            checked = check_allow_host(entry)
        except ValueError:
            continue
        if _entry_matches(checked, normal, port):
            return True
    return False


# --- the proxy -----------------------------------------------------------------------


class _Refusal(Exception):
    """An answer to give instead of serving the request."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _answer(status: int, message: str) -> bytes:
    body = (message + "\n").encode("ascii", "backslashreplace")
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def _find_end(buf: bytearray, start: int) -> tuple[int, int] | None:
    """Where the head ends (before the blank line) and the body starts, if it has;
    only from ``start`` on, so a head dripped a byte at a time is not rescanned."""
    ends = [
        (i + 1, i + len(sep)) for sep in (b"\n\r\n", b"\n\n") if (i := buf.find(sep, start)) >= 0
    ]
    return min(ends) if ends else None


def _read_head(conn: socket.socket, timeout_s: float) -> tuple[bytes, bytes]:
    """The request head (without the blank line) and whatever came after it, within
    ``timeout_s`` in all (a client dripping a byte at a time holds a thread)."""
    deadline = time.monotonic() + timeout_s
    buf = bytearray()
    scanned = 0
    while True:
        found = _find_end(buf, scanned)
        if found is not None:
            end, start = found
            if end > MAX_HEAD:
                break
            return bytes(buf[:end]), bytes(buf[start:])
        if len(buf) > MAX_HEAD:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("request head too slow")
        conn.settimeout(remaining)
        data = conn.recv(_CHUNK)
        if not data:
            raise _Refusal(400, "incomplete request")
        scanned = max(0, len(buf) - 2)
        buf += data
    raise _Refusal(431, f"request head larger than {MAX_HEAD} bytes")


def _parse_head(head: bytes) -> tuple[bytes, bytes, bytes, list[tuple[bytes, bytes]]]:
    """Method, target, version and header lines; strict, since they are passed on."""
    lines = [line[:-1] if line.endswith(b"\r") else line for line in head.split(b"\n")]
    if lines and lines[-1] == b"":
        lines.pop()
    if not lines or any(b"\r" in line or b"\0" in line for line in lines):
        raise _Refusal(400, "malformed request")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise _Refusal(400, "malformed request line")
    method, target, version = parts
    if not method or not _TOKEN_CHARS.issuperset(method) or not target.isascii():
        raise _Refusal(400, "malformed request line")
    if any(b <= 32 or b == 127 for b in target):
        raise _Refusal(400, "malformed request line")
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or not _TOKEN_CHARS.issuperset(name):
            raise _Refusal(400, "malformed header line")
        headers.append((name, value.strip(b" \t")))
    return method, target, version, headers


def _authority(text: str, default_port: int | None) -> tuple[str, int]:
    """``host[:port]`` of a request: the normalised host and the port."""
    host_text, port_text = _split_port(text)
    if port_text is None:
        if default_port is None:
            raise _Refusal(400, "CONNECT needs host:port")
        port: int | None = default_port
    else:
        port = _parse_port(port_text)
    host = _norm_host(host_text)
    if host is None or port is None:
        raise _Refusal(400, "malformed host in request")
    return host, port


def _relay(a: socket.socket, b: socket.socket, idle_s: float, end_with_b: bool) -> None:
    """Copy bytes both ways until both sides have closed (one side's EOF is passed on
    as a half-close, so request-then-wait protocols work), or nothing moves for
    ``idle_s``. With ``end_with_b`` the end of ``b``'s stream ends it all: a
    forwarded HTTP answer is complete when the origin closes."""
    a.settimeout(idle_s)  # bounds a send to a peer that never reads
    b.settimeout(idle_s)
    peers = {a.fileno(): (a, b), b.fileno(): (b, a)}
    poller = select.poll()
    for fd in peers:
        poller.register(fd, select.POLLIN)
    while peers:
        events = poller.poll(int(idle_s * 1000))
        if not events:
            return
        for fd, _ in events:
            if fd not in peers:
                continue
            src, dst = peers[fd]
            data = src.recv(_CHUNK)
            if data:
                dst.sendall(data)
                continue
            if end_with_b and src is b:
                return
            poller.unregister(fd)
            del peers[fd]
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    block_on_close = False
    proxy: EgressProxy

    def handle_error(self, request: object, client_address: object) -> None:
        """The default prints a traceback to stderr, into the tmux pane."""


class _Handler(socketserver.BaseRequestHandler):
    request: socket.socket
    server: _Server

    def handle(self) -> None:
        self.server.proxy._serve(self.request)


class EgressProxy:
    """The forward proxy for one session's sandboxed workers.

    ``start`` binds ``socket_path`` (which must not exist: someone else's file is
    never replaced) and serves on daemon threads; ``close`` ends serving, the open
    tunnels and the socket file. Invalid ``allow_hosts`` entries raise ``ValueError``
    here, before anything listens."""

    def __init__(
        self,
        socket_path: str,
        allow_hosts: Sequence[str],
        *,
        max_tunnels: int = MAX_TUNNELS,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        self.socket_path = socket_path
        self.allow_hosts = tuple(check_allow_host(entry) for entry in allow_hosts)
        self.max_tunnels = max_tunnels
        self.idle_timeout_s = idle_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._lock = threading.Lock()
        self._active: set[socket.socket] = set()  # to end them all on close
        self._clients = 0
        self._closed = False
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._identity: tuple[int, int] | None = None

    def start(self) -> None:
        """Bind (0600 before anyone can connect: chmod comes before listen) and serve."""
        if self._server is not None or self._closed:
            raise RuntimeError("EgressProxy.start: already started")
        if os.path.lexists(self.socket_path):
            raise FileExistsError(f"egress socket path already exists: {self.socket_path}")
        server = _Server(self.socket_path, _Handler, bind_and_activate=False)
        server.proxy = self
        try:
            server.server_bind()  # fails if the path appeared meanwhile: nothing unlinked
        except BaseException:
            server.server_close()
            raise
        try:
            st = os.lstat(self.socket_path)
            if not stat.S_ISSOCK(st.st_mode):
                raise OSError(f"egress socket path replaced while binding: {self.socket_path}")
            self._identity = (st.st_dev, st.st_ino)
            os.chmod(self.socket_path, 0o600)
            server.server_activate()
        except BaseException:
            server.server_close()
            self._unlink_own()
            raise
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving, end the open connections, remove the socket file (if it is
        still ours). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            active = list(self._active)
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        for sock in active:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._unlink_own()

    def __enter__(self) -> EgressProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _unlink_own(self) -> None:
        identity, self._identity = self._identity, None
        if identity is None:
            return
        with contextlib.suppress(OSError):
            st = os.lstat(self.socket_path)
            if (st.st_dev, st.st_ino) == identity:
                os.unlink(self.socket_path)

    def _track(self, sock: socket.socket) -> bool:
        with self._lock:
            if self._closed:
                return False
            self._active.add(sock)
            return True

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._active.discard(sock)

    def _serve(self, conn: socket.socket) -> None:
        """One client connection: one tunnel or one forwarded request, then close.
        The cap counts connections from the moment they are accepted, so a flood of
        clients that never send a request cannot hold more than ``max_tunnels``."""
        with self._lock:
            if self._closed:
                return
            full = self._clients >= self.max_tunnels
            if not full:
                self._clients += 1
                self._active.add(conn)
        if full:
            _refuse(conn, 503, f"too many connections to the egress proxy (max {self.max_tunnels})")
            return
        try:
            self._handle(conn)
        except _Refusal as refusal:
            _refuse(conn, refusal.status, refusal.message)
        except (OSError, ValueError):
            pass  # the client or the host went away, or a timeout: nothing to tell
        finally:
            with self._lock:
                self._clients -= 1
                self._active.discard(conn)

    def _handle(self, conn: socket.socket) -> None:
        head, rest = _read_head(conn, HEAD_TIMEOUT_S)
        method, target, version, headers = _parse_head(head)
        text = target.decode("ascii")
        if method == b"CONNECT":
            host, port = _authority(text, None)
            upstream = self._open(host, port)
            try:
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                if rest:
                    upstream.sendall(rest)
                _relay(conn, upstream, self.idle_timeout_s, end_with_b=False)
            finally:
                self._close_upstream(upstream)
            return
        lower = text[:8].lower()
        if lower.startswith("https://"):
            raise _Refusal(400, "use CONNECT for https:// through this proxy")
        if not lower.startswith("http://"):
            raise _Refusal(
                400, "this is a proxy: send CONNECT host:port or an absolute http:// URL"
            )
        after = text[7:]
        cut = min((i for i in (after.find("/"), after.find("?")) if i >= 0), default=len(after))
        authority, path = after[:cut], after[cut:]
        if "@" in authority or "#" in authority:
            raise _Refusal(400, "malformed host in request")
        if not path.startswith("/"):
            path = "/" + path
        host, port = _authority(authority, 80)
        out = [method + b" " + path.encode("ascii") + b" " + version]
        out.append(b"Host: " + (host if port == 80 else f"{host}:{port}").encode("ascii"))
        for name, value in headers:
            if name.lower() not in _DROP and name.lower() != b"host":
                out.append(name + b": " + value)
        out.append(b"Connection: close")
        upstream = self._open(host, port)
        try:
            upstream.sendall(b"\r\n".join(out) + b"\r\n\r\n" + rest)
            _relay(conn, upstream, self.idle_timeout_s, end_with_b=True)
        finally:
            self._close_upstream(upstream)

    def _open(self, host: str, port: int) -> socket.socket:
        """A TCP connection to the host that was checked (the normalised one)."""
        if not allowed(host, port, self.allow_hosts):
            raise _Refusal(
                403, f"egress to {host}:{port} refused: not in the sandbox's allowed hosts ({FLAG})"
            )
        try:
            upstream = socket.create_connection(
                (host.strip("[]"), port), timeout=self.connect_timeout_s
            )
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise _Refusal(502, f"cannot reach {host}:{port}: {reason}") from None
        if not self._track(upstream):
            upstream.close()
            raise OSError("egress proxy closed")
        return upstream

    def _close_upstream(self, upstream: socket.socket) -> None:
        self._untrack(upstream)
        upstream.close()


def _refuse(conn: socket.socket, status: int, message: str) -> None:
    """Answer and close, reading what the client still sends for a moment first: a
    close with unread data can reset the connection before the answer is read."""
    with contextlib.suppress(OSError):
        conn.settimeout(2.0)
        conn.sendall(_answer(status, message))
        conn.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 2.0
        drained = 0
        while drained < 4 * MAX_HEAD:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            conn.settimeout(remaining)
            data = conn.recv(_CHUNK)
            if not data:
                break
            drained += len(data)
