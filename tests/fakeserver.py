"""A scripted Server-Sent Events server for tests that need faults a real server won't produce on demand.

It runs in a thread on 127.0.0.1 on a free port and answers every POST with
the `Reply` scripted for its path (or the default one): a status, headers, and
either a list of SSE events sent one by one with a delay before each, or a
plain body for a failure. Every request is recorded, body decoded as JSON, so
a test can assert what was sent.

    from fakeserver import FakeServer, Reply, chat_events  # tests/ is on sys.path under pytest

    with FakeServer() as server:
        server.respond(Reply(chat_events(["Hel", "lo"]), delay=0.1))
        ...  # point the buffer at `!api {server.url}`
        assert server.requests[-1].path == "/chat/completions"

    server.respond(Reply(status=500, body="model exploded"))              # a failure
    server.respond(Reply(infill_events(["x = 1"])), path="/infill")       # per path
    server.respond(Reply(chat_events(["a", "b"], done=False), hold=600))
    # a reply that stalls after "a" and "b": the wait ends early when the
    # client goes away or the server is closed.

Events are strings, sent as `data: EVENT` lines each followed by a blank
line (WHATWG HTML, "Server-sent events", 9.2.6 Interpreting an event
stream); `bytes` items are sent exactly as given, for malformed streams.
"""

import json
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    """What the server answers: SSE `events` (with `delay` seconds before each), or `body` when `status` is not 200.

    `delay` is one number for every event or a list, one per event; `hold` keeps
    the connection open that many seconds after the last event, as a stalled
    server does, before closing it.
    """

    events: list = field(default_factory=list)
    delay: float | list[float] = 0.0
    hold: float = 0.0
    status: int = 200
    body: str = ""
    content_type: str = ""  # default: text/event-stream for 200, text/plain otherwise

    def delay_before(self, index: int) -> float:
        if isinstance(self.delay, list):
            return self.delay[index] if index < len(self.delay) else 0.0
        return self.delay


@dataclass
class Request:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def chat_events(pieces: list[str], done: bool = True) -> list[str]:
    """Return OpenAI chat-completion stream events carrying PIECES, then `[DONE]` unless DONE is false."""
    events = [json.dumps({"choices": [{"index": 0, "delta": {"content": piece}}]}) for piece in pieces]
    return events + ["[DONE]"] if done else events


def infill_events(pieces: list[str], done: bool = True) -> list[str]:
    """Return llama.cpp /infill stream events carrying PIECES; the last has `"stop": true` when DONE."""
    events = [json.dumps({"content": piece, "stop": False}) for piece in pieces]
    if done:
        events.append(json.dumps({"content": "", "stop": True}))
    return events


class FakeServer:
    """A threaded scripted SSE server on 127.0.0.1; `url` is its base URL with a trailing `/`."""

    def __init__(self):
        self.requests: list[Request] = []
        self._replies: dict[str | None, Reply] = {None: Reply(chat_events([]))}
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fakeserver", daemon=True)
        self._thread.start()

    def respond(self, reply: Reply, path: str | None = None) -> None:
        """Answer requests for PATH (every path without its own reply, when None) with REPLY from now on."""
        with self._lock:
            if path is None:
                self._replies = {None: reply}
            else:
                self._replies[path] = reply

    def reply_for(self, path: str) -> Reply:
        with self._lock:
            return self._replies.get(path, self._replies[None])

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def close(self) -> None:
        """Stop serving; replies still waiting between events end at once."""
        self._closed.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _handler(server: FakeServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # keep test output quiet
            pass

        def do_POST(self):
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            path = self.path
            server.record(Request("POST", path, {k.lower(): v for k, v in self.headers.items()}, body))
            reply = server.reply_for(path)
            if reply.status != 200:
                self._send_failure(reply)
            else:
                self._send_events(reply)

        do_GET = do_POST

        def _send_failure(self, reply: Reply) -> None:
            data = reply.body.encode("utf-8")
            self.send_response(reply.status)
            self.send_header("content-type", reply.content_type or "text/plain; charset=utf-8")
            self.send_header("content-length", str(len(data)))
            self.send_header("connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def _send_events(self, reply: Reply) -> None:
            self.send_response(200)
            self.send_header("content-type", reply.content_type or "text/event-stream")
            self.send_header("cache-control", "no-cache")
            self.send_header("connection", "close")  # the body ends when the connection does
            self.end_headers()
            self.wfile.flush()
            try:
                for index, event in enumerate(reply.events):
                    if not self._wait(reply.delay_before(index)):
                        return
                    self.wfile.write(event if isinstance(event, bytes) else f"data: {event}\n\n".encode("utf-8"))
                    self.wfile.flush()
                self._wait(reply.hold)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped listening: what a stopped reply looks like
            self.close_connection = True

        def _wait(self, seconds: float) -> bool:
            """Return whether SECONDS passed with the server open and the client still connected."""
            deadline = time.monotonic() + seconds
            while (left := deadline - time.monotonic()) > 0:
                if server._closed.is_set():
                    return False
                readable, _, _ = select.select([self.connection], [], [], min(left, 0.05))
                if readable and not self.connection.recv(1, socket.MSG_PEEK):
                    return False  # the client closed its end
            return not server._closed.is_set()

    return Handler
