"""Benchmark for the session's recording proxy (issue 11, "Tests and benchmarks").

Run with ``.venv/bin/python benchmarks/bench_proxy.py [--quick]``. It prints a table;
it is not a test.

(a) Added latency per request: a small JSON answer (an Anthropic Messages reply) from
    a local upstream on 127.0.0.1, asked N times over one keep-alive connection, once
    directly and once through the proxy in record mode (its own process, as a session
    runs it, appending and fsyncing every exchange to a recording in a temp dir). The
    figure is the median of the per-request difference; target: p50 under 2 ms.
(b) Time to first streamed byte: the upstream sends a stream's first event at once
    and the rest 50 ms later; the time until the client has the first byte, directly
    and through the proxy. Target: unchanged within 5 ms (p50 difference).

Both servers are separate processes (``--serve-upstream`` runs this file as the
upstream), so the client, the proxy and the upstream do not share a GIL.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchtable import Report, Row

REPO = Path(__file__).resolve().parent.parent
ANSWER = json.dumps(
    {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [{"type": "text", "text": "ok " * 50}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }
).encode()
REQUEST = json.dumps(
    {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "x" * 4000}]}
).encode()


def serve_upstream(port_file: str) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def setup(self) -> None:
            super().setup()
            # As a real API server does: no Nagle delay between headers and body.
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            if self.path.startswith("/stream"):
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                first = b'event: message_start\ndata: {"type": "message_start"}\n\n'
                self.wfile.write(b"%x\r\n%s\r\n" % (len(first), first))
                self.wfile.flush()
                time.sleep(0.05)
                rest = b'event: message_stop\ndata: {"type": "message_stop"}\n\n'
                self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(rest), rest))
                self.wfile.flush()
                return
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(ANSWER)))
            self.end_headers()
            self.wfile.write(ANSWER)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Path(port_file).write_text(str(server.server_address[1]))
    server.serve_forever()


def _wait_for(path: Path, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text()
        time.sleep(0.01)
    raise SystemExit(f"bench_proxy: {path} never appeared")


def _start_proxy(tmp: Path, upstream: int) -> tuple[subprocess.Popen[bytes], int]:
    sys.path.insert(0, str(REPO / "src"))
    from kodelyth_ecc.proxy import ProxyConfig, Route, WorkerConfig, encode_config

    coordination = tmp / "coord"
    (coordination / "alpha").mkdir(parents=True)
    config = ProxyConfig(
        coordination_dir=str(coordination),
        session="bench",
        workers=(WorkerConfig("alpha", "record", str(tmp / "wt")),),
        routes=(Route(f"http://127.0.0.1:{upstream}"),),
    )
    config_file = tmp / "proxy-config.json"
    fd = os.open(config_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(encode_config(config))
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), XDG_STATE_HOME=str(tmp / "state"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "kodelyth_ecc.proxy", str(config_file)],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    state = json.loads(_wait_for(coordination / "proxy.json"))
    return proc, int(state["ports"]["alpha"])


def _latencies(port: int, path: str, count: int, first_byte: bool) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    found = []
    for _ in range(count):
        start = time.perf_counter()
        conn.request("POST", path, body=REQUEST, headers={"content-type": "application/json"})
        response = conn.getresponse()
        if first_byte:
            response.read1(1)
            found.append(time.perf_counter() - start)
            response.read()
        else:
            response.read()
            found.append(time.perf_counter() - start)
    conn.close()
    return found


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 requests instead of 1,000")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--serve-upstream", metavar="PORT_FILE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_upstream:
        serve_upstream(args.serve_upstream)
        return 0
    count = 100 if args.quick else 1000
    tmp = Path(tempfile.mkdtemp(prefix="kodelyth-bench-proxy-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        port_file = tmp / "upstream.port"
        procs.append(subprocess.Popen([sys.executable, __file__, "--serve-upstream",
                                       str(port_file)]))  # fmt: skip
        upstream = int(_wait_for(port_file))
        proxy, port = _start_proxy(tmp, upstream)
        procs.append(proxy)
        # Warm both paths (connections, imports, the recording's first write).
        _latencies(upstream, "/v1/messages", 20, False)
        _latencies(port, "/v1/messages", 20, False)
        print(f"bench_proxy: {count} requests each way", file=sys.stderr)
        direct, proxied = [], []
        for _ in range(5):  # interleaved rounds: a busy moment hits both
            direct += _latencies(upstream, "/v1/messages", count // 5, False)
            proxied += _latencies(port, "/v1/messages", count // 5, False)
        streams = max(20, count // 20)
        ttfb_direct = _latencies(upstream, "/stream", streams, True)
        ttfb_proxied = _latencies(port, "/stream", streams, True)
        recorded = (tmp / "coord" / "alpha" / "exchanges.jsonl").read_bytes().count(b"\n")
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)

    added = statistics.median(proxied) - statistics.median(direct)
    ttfb_added = statistics.median(ttfb_proxied) - statistics.median(ttfb_direct)
    report = Report()
    report.add(Row("(a) request, direct (p50)", statistics.median(direct),
                   f"p95 {_p(direct, 0.95) * 1000:.2f} ms"))  # fmt: skip
    report.add(
        Row(
            "    request, through the proxy (p50)",
            statistics.median(proxied),
            f"p95 {_p(proxied, 0.95) * 1000:.2f} ms; {recorded} exchanges recorded",
        )
    )
    report.add(Row("    added latency (p50 difference)", added, "target under 2 ms",
                   ratio=added * 1000 / 2.0, target=1.0))  # fmt: skip
    report.add(Row("(b) first streamed byte, direct (p50)", statistics.median(ttfb_direct)))
    report.add(Row("    first streamed byte, through the proxy", statistics.median(ttfb_proxied)))
    report.add(
        Row(
            "    added to the first byte (p50 difference)",
            ttfb_added,
            "target within 5 ms",
            ratio=ttfb_added * 1000 / 5.0,
            target=1.0,
        )
    )
    report.notes.append("ratio: the added time as a fraction of its target (PASS at <= 1.0)")
    print(report.render())
    missed = [row for row in report.rows if row.passed is False]
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
