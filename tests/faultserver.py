"""A scripted fault server: raw HTTP over a socket on 127.0.0.1, for the faults a real server won't make on demand.

Each accepted connection reads one request, records it, and plays the next
scripted reply (or the default one). A reply is a list of steps, played in
order on the raw socket:

    bytes   sent as they are (status line, headers, events, half an event...)
    a function of the Request, returning bytes: a reply made from the request
            (a server that echoes a header back)
    float   seconds to wait; the wait ends early when the client goes away
    HOLD    wait until the client goes away (a stalled server), at most a minute

and the connection is closed after the last step, so a reply without its
end marker looks exactly like a dropped connection. Whether and when the
client hung up is recorded in `hangups`, so a test can see that an
interrupted illume closed its connection.

    from faultserver import FaultServer, head, event, DONE, response

    with FaultServer() as server:
        server.script([head(), event({"choices": [{"delta": {"content": "Hi"}}]}), 0.2, DONE])
        ...  # `!api {server.url}`
        assert server.requests[0].headers["authorization"] == "Bearer k"

`FaultServer(tls=(certfile, keyfile))` speaks HTTPS instead. Because a
request's target is recorded as sent, the server doubles as a fake HTTP
proxy: a proxied request arrives as `POST http://host/path HTTP/1.1`.
"""

import json
import select
import socket
import ssl
import threading
import time
from collections import deque

HOLD = "hold"
DONE = b"data: [DONE]\n\n"


class Request:
    """One request as it arrived: the request line's parts, headers (lower-case names), body."""

    def __init__(self, method: str, target: str, headers: dict[str, str], body: bytes):
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"Request({self.method} {self.target} {self.headers})"


def head(status: int = 200, content_type: str = "text/event-stream", **headers: str) -> bytes:
    """Return a status line and headers (underscores in names become dashes), `connection: close` included."""
    reason = {200: "OK", 307: "Temporary Redirect", 308: "Permanent Redirect", 400: "Bad Request",
              401: "Unauthorized", 429: "Too Many Requests", 500: "Internal Server Error",
              502: "Bad Gateway", 503: "Service Unavailable"}.get(status, "Whatever")
    lines = [f"HTTP/1.1 {status} {reason}", f"content-type: {content_type}", "connection: close"]
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


class FaultServer:
    """Plays scripted replies; `url` is its base URL with a trailing `/`."""

    def __init__(self, tls: tuple[str, str] | None = None):
        self.requests: list[Request] = []
        self.hangups: list[float] = []  # time.monotonic() when a client went away mid-reply
        self._script: deque = deque()
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
        self._accepter = threading.Thread(target=self._accept, name="faultserver", daemon=True)
        self._accepter.start()

    def script(self, *replies: list) -> None:
        """Answer the next requests with REPLIES, one each, in order."""
        with self._lock:
            self._script.extend(replies)

    def always(self, reply: list) -> None:
        """Answer with REPLY whenever the script has run out."""
        with self._lock:
            self._default = reply

    def close(self) -> None:
        self._closed.set()
        self._accepter.join(timeout=5)
        for thread in list(self._threads):
            thread.join(timeout=5)
        self._listener.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

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
                reply = self._script.popleft() if self._script else self._default
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
        return Request(method, target, headers, body)

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
        """Return whether SECONDS passed with the client still there."""
        deadline = time.monotonic() + seconds
        raw = connection
        while (left := deadline - time.monotonic()) > 0:
            if self._closed.is_set():
                return False
            readable, _, _ = select.select([raw], [], [], min(left, 0.02))
            if readable:
                try:
                    gone = not raw.recv(1, socket.MSG_PEEK) if not isinstance(raw, ssl.SSLSocket) else False
                except (ssl.SSLError, OSError):
                    gone = True
                if gone:
                    self._hung_up()
                    return False
        return True

    def _hung_up(self) -> None:
        with self._lock:
            self.hangups.append(time.monotonic())


def free_port() -> int:
    """Return a port on 127.0.0.1 that nothing listens on (for "connection refused")."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
