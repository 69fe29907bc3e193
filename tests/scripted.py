"""A scripted HTTP server on 127.0.0.1, for what a real server won't do on demand.

It speaks raw HTTP over a socket, so it can send anything: a reply cut in
the middle of an event, a stall, a redirect, an HTML page, a bad TLS
handshake. Each accepted connection reads one request, records it (in
`requests`), plays one reply and closes the connection, so a reply without
its end marker looks exactly like a dropped connection. Whether and when a
client hung up mid-reply is in `hangups`.

A reply is a list of steps, played in order:

    bytes   sent as they are (status line, headers, events, half an event...)
    a function of the Request, returning bytes: a reply made from the request
            (a server that echoes a header back)
    float   seconds to wait; the wait ends early when the client goes away
            or the server is closed
    HOLD    wait until the client goes away (a stalled server), at most a minute

Which reply a request gets: the next one `script`ed, else the `Reply` that
`respond` set for its path, else the one `respond` set for every path, else
the `always` one (at first, an empty chat stream).

    from scripted import DONE, Reply, ScriptedServer, chat, chat_events, head

    with ScriptedServer() as server:
        server.script([head(), chat("Hi"), 0.2, DONE])            # steps, for the next request
        server.respond(Reply(chat_events(["Hel", "lo"]), delay=0.1))  # SSE events, from now on
        server.respond(Reply(status=500, body="model exploded"), path="/infill")
        ...  # `!api {server.url}`
        assert server.requests[-1].path == "/chat/completions"

`ScriptedServer(tls=(certfile, keyfile))` speaks HTTPS. Because a request's
target is recorded as sent, the server doubles as an HTTP proxy: a proxied
request arrives as `POST http://host/path HTTP/1.1`.
"""

import json
import select
import socket
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from realserver import free_port  # noqa: F401 (tests import it from here)

HOLD = "hold"
DONE = b"data: [DONE]\n\n"


class Request:
    """One request as it arrived: the request line's parts, headers (lower-case names), body, and its head as sent."""

    def __init__(self, method: str, target: str, headers: dict[str, str], body: bytes, head: bytes = b""):
        self.method = method
        self.target = target
        self.headers = headers  # values without the white space around them, as HTTP reads them
        self.body = body
        self.head = head  # the request line and header lines, byte for byte, up to the blank line

    @property
    def path(self) -> str:
        """Return the request target: the path, or the whole URL when the request came through as a proxy's."""
        return self.target

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"Request({self.method} {self.target} {self.headers})"


# --- raw steps ------------------------------------------------------------------

REASONS = {200: "OK", 307: "Temporary Redirect", 308: "Permanent Redirect", 400: "Bad Request",
           401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 407: "Proxy Authentication Required",
           429: "Too Many Requests", 500: "Internal Server Error", 501: "Not Implemented",
           502: "Bad Gateway", 503: "Service Unavailable"}


def head(status: int = 200, content_type: str = "text/event-stream", **headers: str) -> bytes:
    """Return a status line and headers (underscores in names become dashes), `connection: close` included."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Whatever')}", f"content-type: {content_type}",
             "connection: close"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def response(status: int, body: str | bytes, content_type: str = "application/json", **headers: str) -> list:
    """Return a whole reply with a body and its content-length."""
    data = body.encode() if isinstance(body, str) else body
    return [head(status, content_type, content_length=str(len(data)), **headers) + data]


def event(value, kind: str | None = None) -> bytes:
    """Return one SSE event whose data is VALUE as JSON (a str is sent as it is), with an `event:` line if KIND."""
    data = value if isinstance(value, str) else json.dumps(value)
    return (f"event: {kind}\n" if kind else "").encode() + f"data: {data}\n\n".encode()


def chat(text: str, finish_reason=None) -> bytes:
    """Return an OpenAI chat-completion chunk carrying TEXT."""
    return event({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish_reason}]})


# --- SSE replies by path ----------------------------------------------------------

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


@dataclass
class Reply:
    """SSE `events` (with `delay` seconds before each), or `body` when `status` is not 200.

    Events are strings, each sent as a `data: EVENT` line and a blank line;
    `bytes` items are sent exactly as given, for malformed streams. `delay`
    is one number for every event or a list, one per event; `hold` keeps the
    connection open that many seconds after the last event, as a stalled
    server does (it ends early when the client goes away).
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

    def steps(self) -> list:
        """Return the reply as raw steps."""
        if self.status != 200:
            return response(self.status, self.body, self.content_type or "text/plain; charset=utf-8")
        steps: list = [head(200, self.content_type or "text/event-stream", cache_control="no-cache")]
        for index, item in enumerate(self.events):
            if self.delay_before(index):
                steps.append(float(self.delay_before(index)))
            steps.append(item if isinstance(item, bytes) else f"data: {item}\n\n".encode())
        if self.hold:
            steps.append(float(self.hold))
        return steps


# --- the server -------------------------------------------------------------------

class ScriptedServer:
    """Plays scripted replies; `url` is its base URL with a trailing `/`."""

    def __init__(self, tls: tuple[str, str] | None = None):
        self.requests: list[Request] = []
        self.hangups: list[float] = []  # time.monotonic() when a client went away mid-reply
        self._script: deque = deque()
        self._replies: dict[str | None, Reply] = {}
        self._default: list = [head(), DONE]
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self._tls = None
        if tls:
            self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._tls.load_cert_chain(*tls)
        self.port = self._listener.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}/"
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, name="scripted-server", daemon=True)
        self._accepter.start()

    def script(self, *replies: list) -> None:
        """Answer the next requests with REPLIES (lists of steps), one each, in order."""
        with self._lock:
            self._script.extend(replies)

    def respond(self, reply: Reply, path: str | None = None) -> None:
        """Answer requests for PATH (every path without its own reply, when None) with REPLY from now on."""
        with self._lock:
            if path is None:
                self._replies = {None: reply}
            else:
                self._replies[path] = reply

    def always(self, reply: list) -> None:
        """Answer with REPLY (a list of steps) whenever nothing else is scripted."""
        with self._lock:
            self._replies = {}
            self._default = reply

    def close(self) -> None:
        """Stop serving; replies still waiting end at once."""
        self._closed.set()
        self._accepter.join(timeout=5)
        for thread in list(self._threads):
            thread.join(timeout=5)
        self._listener.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _reply_for(self, request: Request) -> list:
        if self._script:
            return self._script.popleft()
        reply = self._replies.get(request.target, self._replies.get(None))
        return reply.steps() if reply else self._default

    # --- serving ----------------------------------------------------------
    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                connection, _ = self._listener.accept()
            except (socket.timeout, OSError):
                continue
            thread = threading.Thread(target=self._serve, args=(connection,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, connection: socket.socket) -> None:
        try:
            if self._tls:
                connection.settimeout(5)
                try:
                    connection = self._tls.wrap_socket(connection, server_side=True)
                except (ssl.SSLError, OSError):
                    return  # the client refused our certificate: what a TLS test wants to see
            connection.settimeout(10)
            request = self._read_request(connection)
            if request is None:
                return
            with self._lock:
                self.requests.append(request)
                reply = self._reply_for(request)
            self._play(connection, reply, request)
        except OSError:
            pass
        finally:
            try:
                connection.close()
            except OSError:
                pass

    def _read_request(self, connection) -> Request | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(65536)
            if not chunk:
                return None
            data += chunk
            if data[:1] == b"\x16":  # a TLS handshake: answer as a plain HTTP server does
                connection.sendall(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n")
                return None
        header_block, _, body = data.partition(b"\r\n\r\n")
        lines = header_block.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = connection.recv(65536)
            if not chunk:
                break
            body += chunk
        return Request(method, target, headers, body, header_block)

    def _play(self, connection, reply: list, request: Request) -> None:
        for step in reply:
            if callable(step):
                step = step(request)
            if isinstance(step, bytes):
                try:
                    connection.sendall(step)
                except OSError:
                    self._hung_up()
                    return
            elif step == HOLD:
                if not self._wait(connection, 60.0):
                    return
            elif not self._wait(connection, float(step)):
                return

    def _wait(self, connection, seconds: float) -> bool:
        """Return whether SECONDS passed with the server open and the client still there."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._closed.is_set():
                return False
            readable, _, _ = select.select([connection], [], [], min(left, 0.02))
            if readable:
                try:
                    gone = not connection.recv(1, socket.MSG_PEEK) if not isinstance(connection, ssl.SSLSocket) \
                        else False
                except (ssl.SSLError, OSError):
                    gone = True
                if gone:
                    self._hung_up()
                    return False
        return not self._closed.is_set()

    def _hung_up(self) -> None:
        with self._lock:
            self.hangups.append(time.monotonic())
