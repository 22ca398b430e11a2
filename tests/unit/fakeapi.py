"""A scripted fake Kubernetes API server on loopback, for the watch and leader-election tests.

A real ``ThreadingHTTPServer`` speaking HTTP/1.1; each request is answered by a function the
test provides, returning a :class:`Reply` (one JSON answer) or a :class:`Stream` (a watch: JSON
lines in chunked encoding, then an orderly end, a hold until the server closes, or a cut).
"""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Union
from urllib.parse import parse_qsl, urlsplit

import kubernetes.client

from framework.kube.client import KubeClient


@dataclasses.dataclass
class Request:
    method: str
    path: str
    query: Dict[str, str]
    body: Any

    @property
    def is_watch(self) -> bool:
        return self.query.get("watch") == "true"


@dataclasses.dataclass
class Reply:
    status: int = 200
    body: Any = None


@dataclasses.dataclass
class Stream:
    """A watch response. ``items`` are events (dicts), raw bytes, or callables run in between
    (a ``threading.Event().wait`` lets a test hold the stream at a point). ``end`` is ``"hold"``
    (stay open until the server closes), ``"close"`` (the server ends the watch normally) or
    ``"cut"`` (the connection drops without the final chunk)."""

    items: List[Union[dict, bytes, Callable[[], Any]]] = dataclasses.field(default_factory=list)
    end: str = "hold"


def status(code: int, reason: str, message: str = "") -> dict:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason,
            "message": message or reason}


class FakeApiServer:
    def __init__(self, respond: Callable[[Request], Union[Reply, Stream]]):
        self.respond = respond
        self.requests: List[Request] = []
        self.closing = threading.Event()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                req = Request(self.command, parts.path, dict(parse_qsl(parts.query, keep_blank_values=True)),
                              json.loads(raw) if raw else None)
                with fake._lock:
                    fake.requests.append(req)
                answer = fake.respond(req)
                if isinstance(answer, Stream):
                    self._stream(answer)
                else:
                    self._reply(answer)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def _reply(self, reply: Reply):
                data = json.dumps(reply.body).encode() if reply.body is not None else b""
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _chunk(self, data: bytes):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def _stream(self, stream: Stream):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.close_connection = True
                try:
                    for item in stream.items:
                        if callable(item):
                            item()
                        elif isinstance(item, bytes):
                            self._chunk(item)
                        else:
                            self._chunk(json.dumps(item).encode() + b"\n")
                    if stream.end == "cut":
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    if stream.end == "hold":
                        fake.closing.wait()
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def client(self) -> KubeClient:
        cfg = kubernetes.client.Configuration()
        cfg.host = self.url
        return KubeClient(cfg)

    def seen(self, predicate: Callable[[Request], bool] = lambda r: True) -> List[Request]:
        with self._lock:
            return [r for r in self.requests if predicate(r)]

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


def wait_for(condition: Callable[[], Any], timeout: float = 5.0, interval: float = 0.005) -> Any:
    """Poll until ``condition()`` is truthy; fail the test with a clear message when it never is."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def obj(name: str, rv: str, namespace: Optional[str] = "default", **fields) -> dict:
    meta = {"name": name, "resourceVersion": rv}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, **fields}


def page(items, rv: str = "", cont: str = "") -> Reply:
    meta = {"resourceVersion": rv}
    if cont:
        meta["continue"] = cont
    return Reply(200, {"kind": "PodList", "apiVersion": "v1", "metadata": meta, "items": list(items)})


def event(kind: str, o: dict) -> dict:
    return {"type": kind, "object": o}


def bookmark(rv: str) -> dict:
    return {"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": rv}}}
