"""Tiny HTTP servers on 127.0.0.1 for tests: real sockets, no network, no mocks inside clients.

A :class:`FakeServer` routes ``"METHOD /path"`` to a handler that gets a :class:`RecordedRequest`
and returns a :class:`Reply` (JSON, text, bytes, or a list of chunks written one by one, which is
how server-sent events are faked). Every request is recorded for assertions. The server is
bounded: at most ``max_concurrent`` handler threads, at most ``max_requests`` requests (then 503),
and it stops itself after ``lifetime_s`` so a forgotten server cannot hang the test run. Sleeps
inside replies wake up as soon as the server stops.

Usage::

    with FakeServer({"GET /search": lambda req: Reply(json={"ok": True})}) as server:
        requests.get(server.url + "/search")
        assert server.requests[0].query["q"] == [...]
"""

from __future__ import annotations

import json as jsonlib
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return jsonlib.loads(self.body.decode("utf-8"))

    @property
    def raw(self) -> str:
        """Path, query, headers and body as one string (to assert a secret is or is not sent)."""
        head = "\n".join(f"{k}: {v}" for k, v in self.headers.items())
        return f"{self.method} {self.path}?{self.query}\n{head}\n\n{self.body.decode('utf-8', 'replace')}"


@dataclass
class Reply:
    """What a handler answers. Exactly one of ``json``, ``text``, ``body`` or ``chunks`` is used.

    ``delay_s`` sleeps before the status line; ``chunk_delay_s`` sleeps before each chunk (to
    fake a slow or stalled stream). Chunks are sent with chunked transfer encoding (or, with
    ``chunked=False``, close-delimited) and the connection closes after the last one.
    """

    status: int = 200
    json: Any = None
    text: str | None = None
    body: bytes | None = None
    chunks: Iterable[bytes | str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    #: send ``chunks`` with Transfer-Encoding: chunked (as uvicorn/vLLM do) or close-delimited
    chunked: bool = True


Handler = Callable[[RecordedRequest], Reply]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dead_url() -> str:
    """An http URL where the connection is refused."""
    return f"http://127.0.0.1:{free_port()}"


class FakeServer:
    """A threaded HTTP server on a free 127.0.0.1 port; see the module docstring."""

    def __init__(
        self,
        routes: Mapping[str, Handler],
        *,
        max_requests: int = 50,
        max_concurrent: int = 8,
        lifetime_s: float = 30.0,
    ) -> None:
        self.routes = dict(routes)
        self.max_requests = max_requests
        self.lifetime_s = lifetime_s
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._stopped = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), _make_handler(self))
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> FakeServer:
        """Serve in a daemon thread; stop automatically after ``lifetime_s``."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self._timer = threading.Timer(self.lifetime_s, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake sleeping handlers and close the socket (idempotent)."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self._timer is not None:
            self._timer.cancel()
        self._httpd.shutdown()
        self._httpd.server_close()

    def sleep(self, seconds: float) -> bool:
        """Sleep unless the server stops first; True when it stopped."""
        return self._stopped.wait(seconds) if seconds > 0 else self._stopped.is_set()

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _record(self, request: RecordedRequest) -> int:
        with self._lock:
            self.requests.append(request)
            return len(self.requests)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Do not wait for a handler stuck in a deliberate stall when closing.
    block_on_close = False
    allow_reuse_address = True


def _make_handler(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr
            return

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            request = RecordedRequest(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query, keep_blank_values=True),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
            count = server._record(request)
            if count > server.max_requests:
                self._send_simple(503, b"fake server request limit reached")
                return
            handler = server.routes.get(f"{self.command} {parts.path}")
            if handler is None:
                self._send_simple(404, f"no route for {self.command} {parts.path}".encode())
                return
            if not server._slots.acquire(timeout=5):
                self._send_simple(503, b"fake server busy")
                return
            try:
                self._send_reply(handler(request))
            finally:
                server._slots.release()

        do_GET = _handle
        do_POST = _handle

        def _send_simple(self, status: int, payload: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)
            self.close_connection = True

        def _send_reply(self, reply: Reply) -> None:
            if server.sleep(reply.delay_s):
                return
            headers = dict(reply.headers)
            if reply.chunks is not None:
                headers.setdefault("Content-Type", "text/event-stream")
                self.send_response(reply.status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if reply.chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                try:
                    for chunk in reply.chunks:
                        if server.sleep(reply.chunk_delay_s):
                            return
                        data = chunk.encode("utf-8") if isinstance(chunk, str) else chunk
                        if reply.chunked:
                            data = b"%x\r\n%s\r\n" % (len(data), data) if data else b""
                        self.wfile.write(data)
                        self.wfile.flush()
                    if reply.chunked:
                        self.wfile.write(b"0\r\n\r\n")
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return
                return
            if reply.json is not None:
                payload = jsonlib.dumps(reply.json).encode("utf-8")
                headers.setdefault("Content-Type", "application/json")
            elif reply.text is not None:
                payload = reply.text.encode("utf-8")
                headers.setdefault("Content-Type", "text/plain; charset=utf-8")
            else:
                payload = reply.body or b""
                headers.setdefault("Content-Type", "application/octet-stream")
            self.send_response(reply.status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            try:
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                return

    return _Handler


def sse(*events: Any, done: bool = True) -> list[str]:
    """Server-sent-event chunks: each event dict becomes ``data: <json>\\n\\n``; ``[DONE]`` last."""
    chunks = [
        event if isinstance(event, str) else f"data: {jsonlib.dumps(event, ensure_ascii=False)}\n\n" for event in events
    ]
    if done:
        chunks.append("data: [DONE]\n\n")
    return chunks


def chat_chunk(content: str | None = None, finish_reason: str | None = None) -> dict[str, Any]:
    """One OpenAI chat.completion.chunk object (the fields the real API sends)."""
    delta: dict[str, Any] = {} if content is None else {"content": content}
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "fake",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
