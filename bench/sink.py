"""A loopback Langfuse "server" for the benchmarks: takes every POST, answers 200, counts.

Runs in its own process (``Sink()`` starts ``python bench/sink.py``), so its Python work
never holds the benchmarked process's GIL: like a real Langfuse server, it is somewhere
else. It keeps the request bodies and only decodes them when asked for its counts
(``GET /_stats``): requests per path and the spans in the OTLP trace exports (gzip or
plain protobuf ``ExportTraceServiceRequest``), so a benchmark can check that every traced
call really reached it.

    python bench/sink.py     # prints the port it listens on, then serves until killed
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OTLP_TRACES = "/api/public/otel/v1/traces"


class _Store:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.bodies: list[tuple[str, bytes]] = []  # (content-encoding, body) of OTLP posts
        self.decoded = 0  # bodies already counted into spans
        self.spans = 0
        self.span_names: Counter[str] = Counter()

    def stats(self) -> dict:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        with self.lock:
            pending = self.bodies[self.decoded :]
            self.decoded = len(self.bodies)
        for encoding, body in pending:
            message = ExportTraceServiceRequest()
            message.ParseFromString(gzip.decompress(body) if encoding == "gzip" else body)
            for resource in message.resource_spans:
                for scope in resource.scope_spans:
                    self.spans += len(scope.spans)
                    self.span_names.update(span.name for span in scope.spans)
        with self.lock:
            return {
                "requests": dict(self.requests),
                "spans": self.spans,
                "span_names": dict(self.span_names),
            }


STORE = _Store()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real server

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?")[0]
        with STORE.lock:
            STORE.requests[path] += 1
            if path == OTLP_TRACES:
                STORE.bodies.append((self.headers.get("Content-Encoding", ""), body))
        if path == OTLP_TRACES:  # an empty ExportTraceServiceResponse: full success
            self._answer(b"", "application/x-protobuf")
        else:
            self._answer(b"{}", "application/json")

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/_stats":
            self._answer(json.dumps(STORE.stats()).encode(), "application/json")
            return
        with STORE.lock:
            STORE.requests["GET " + self.path.split("?")[0]] += 1
        self._answer(b"{}", "application/json")

    def _answer(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        pass


class Sink:
    """The sink in a child process; ``url`` is its base URL, ``stats()`` its counts."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__)], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict:
        with urllib.request.urlopen(self.url + "/_stats", timeout=30) as response:
            return json.load(response)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
