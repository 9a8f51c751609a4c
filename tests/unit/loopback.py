"""A loopback HTTP file server with fault injection, for download tests (127.0.0.1 only, port 0)."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Served:
    files: dict[str, bytes] = field(default_factory=dict)
    # path -> faults consumed one per request: "drop" (send half, then close), "503", "403" (permanent if last)
    faults: dict[str, list[str]] = field(default_factory=dict)
    ignore_range: bool = False
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)

    def next_fault(self, path: str) -> str | None:
        queue = self.faults.get(path, [])
        if not queue:
            return None
        return queue[0] if len(queue) == 1 and queue[0] == "403" else queue.pop(0)


def _handler(served: Served):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def do_GET(self):
            served.requests.append((self.path, self.headers.get("Range")))
            fault = served.next_fault(self.path)
            if fault in ("503", "403"):
                self.send_error(int(fault))
                return
            if self.path not in served.files:
                self.send_error(404)
                return
            body = served.files[self.path]
            start = 0
            range_header = self.headers.get("Range")
            if range_header and not served.ignore_range:
                start = int(range_header.removeprefix("bytes=").split("-")[0])
                if start >= len(body):
                    self.send_error(416)
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            chunk = body[start:]
            if fault == "drop":
                self.wfile.write(chunk[: len(chunk) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(chunk)

    return Handler


class LoopbackServer:
    def __init__(self, served: Served):
        self.served = served
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(served))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self) -> "LoopbackServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
