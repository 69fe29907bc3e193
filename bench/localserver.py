"""A local HTTP server for the benchmarks: answers every POST with a prepared
SSE body as fast as it can, and records when each request arrived.

Runs in a thread of the benchmark process; nothing leaves 127.0.0.1.
"""

import socket
import threading
import time


def sse_body(events: int, text: str = "x") -> bytes:
    """Return a chat-completions stream of EVENTS events carrying TEXT each, and [DONE]."""
    event = ('data: {"choices":[{"index":0,"delta":{"content":"%s"}}]}\n\n' % text).encode()
    return event * events + b"data: [DONE]\n\n"


class LocalServer:
    """Serves BODY to each request; `arrivals` holds time.perf_counter() at each request's first byte."""

    def __init__(self, body: bytes, chunk: int = 1 << 16, delay_first: float = 0.0):
        self.body = body
        self.chunk = chunk
        self.delay_first = delay_first
        self.arrivals: list[float] = []
        self.first_event_sent: list[float] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        with conn:
            data = conn.recv(65536)
            self.arrivals.append(time.perf_counter())
            while b"\r\n\r\n" not in data:
                more = conn.recv(65536)
                if not more:
                    return
                data += more
            head, _, rest = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            while len(rest) < length:
                rest += conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                         b"connection: close\r\n\r\n")
            if self.delay_first:
                time.sleep(self.delay_first)
            body = self.body
            self.first_event_sent.append(time.perf_counter())
            for start in range(0, len(body), self.chunk):
                conn.sendall(body[start : start + self.chunk])
            conn.shutdown(socket.SHUT_WR)

    def close(self):
        self.sock.close()
