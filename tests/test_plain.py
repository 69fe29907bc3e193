"""The plain-HTTP transport (illume/backends/plain.py) sends and reads exactly what httpx does.

It carries plain `http://` requests without a proxy, so that they need no
httpx; everything else goes through httpx. Each test runs the real CLI
twice on the same buffer: once as it runs (plain), once with httpx loaded
before illume starts (a `sitecustomize` on PYTHONPATH), which makes illume
use httpx. The bytes on the wire and on stdout must be the same.
"""

import gzip
import http.client
import io
import socket
import struct
import threading

import pytest

from conftest import run_illume
from illume.backends import plain


def httpx_first(tmp_path) -> dict:
    """Return the environment in which the CLI loads httpx first (so illume sends through it)."""
    (tmp_path / "sitecustomize.py").write_text("import httpx\n")
    return {"PYTHONPATH": str(tmp_path)}  # the checkout's illume still comes first: the CLI runs in it


RESET = b"RESET"  # as a piece: the server resets the connection


class Recorder:
    """Accepts connections on 127.0.0.1, records each request's raw bytes, answers with REPLY in PIECES."""

    def __init__(self, pieces: list[bytes]):
        self.pieces = pieces
        self.requests: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head = data.split(b"\r\n\r\n")[0]
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                while len(data) < len(head) + 4 + length:
                    data += conn.recv(65536)
                self.requests.append(data)
                for piece in self.pieces:
                    if piece is RESET:
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        break  # closing now sends a reset
                    conn.sendall(piece)

    def close(self):
        self.sock.close()


def both(buffer: str, pieces: list[bytes], tmp_path) -> tuple[list, list[bytes]]:
    """Return [(status, stdout)] and the raw requests, plain first, then through httpx."""
    server = Recorder(pieces)
    try:
        text = buffer.replace("PORT", str(server.port)).encode()
        results = [run_illume(text, env=httpx_first(tmp_path) if httpx else None, timeout=60)
                   for httpx in (False, True)]
    finally:
        server.close()
    for result in results:
        assert b"Traceback" not in result.stderr, result.stderr.decode()
    return [(r.returncode, r.stdout) for r in results], server.requests


def test_the_request_is_byte_for_byte_httpx_s(tmp_path):
    outputs, requests = both("!api http://localhost:PORT/v1/\n!>x-a  b\n!>User-Agent me\n!user\nhi\n",
                             [b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\ndata: [DONE]\n\n"],
                             tmp_path)
    assert outputs == [(0, b"\n\n!assistant\n\n")] * 2
    assert len(requests) == 2 and requests[0] == requests[1]
    port = requests[0].split(b"Host: localhost:")[1].split(b"\r\n")[0]
    assert requests[0].startswith(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost:" + port + b"\r\nAccept: */*\r\n"
        b"Accept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\ncontent-type: application/json\r\n"
        b"x-a: b\r\nUser-Agent: me\r\nContent-Length: 120\r\n\r\n{"), requests[0]


GZIPPED = gzip.compress(b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\ndata: {"choices":[{"delta":'
                        b'{"content":" there"}}]}\n\ndata: [DONE]\n\n')


@pytest.mark.parametrize("pieces, expected", [
    # Chunked, a chunk cut across network writes and its size line split.
    ([b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n1",
      b"0\r\ndata: {\"choi", b"ces\"\r\n2e\r\n:[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n\n\r\n0\r\n\r\n"],
     (0, b"\n\n!assistant\n\nHi")),
    # gzip over Content-Length.
    ([b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: gzip\r\n"
      b"content-length: %d\r\n\r\n" % len(GZIPPED) + GZIPPED[:20], GZIPPED[20:]],
     (0, b"\n\n!assistant\n\nHi there")),
    # An interim 100 Continue before the real response, and a body up to the close.
    ([b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\ndata: {\"content\":\"x\",\"stop\":true}\n\n"],
     (0, b"\n\n!assistant\n\nx")),
    # An error status with its body.
    ([b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 36\r\n\r\n"
      b'{"error":{"message":"no such page"}}'], (1, b"\n\n!error\n\nHTTP 404: no such page\n")),
    # The connection reset halfway through the reply.
    ([b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n", RESET], "reset"),
    # Not HTTP at all.
    ([b"SSH-2.0-OpenSSH_9.6\r\n\r\n"], None),
], ids=["chunked", "gzip", "100-continue", "error-status", "reset", "not-http"])
def test_the_reply_is_read_as_httpx_reads_it(tmp_path, pieces, expected):
    outputs, _ = both("!api http://127.0.0.1:PORT/\n!user\nhi\n", pieces, tmp_path)
    if expected == "reset":  # the same words, whichever way it came
        assert outputs[0] == outputs[1], outputs
        assert outputs[0][0] == 1 and b"Connection reset by peer" in outputs[0][1], outputs
    elif expected is None:  # the words are each parser's own; the outcome is the same
        assert [status for status, _ in outputs] == [1, 1]
        assert all(out.startswith(b"\n\n!error\n\nthe reply was cut off: ") for _, out in outputs), outputs
    else:
        assert outputs == [expected] * 2


@pytest.mark.parametrize("url, usable", [
    ("http://127.0.0.1:8080/v1/chat/completions", True),
    ("http://localhost:8080/completion?x=1", True),
    ("http://example.com/v1/chat/completions", True),
    ("https://api.openai.com/v1/chat/completions", False),  # TLS
    ("http://user:pass@127.0.0.1:8080/v1", False),  # httpx turns credentials into Basic auth
    ("http://Example.com/v1", False),  # httpx writes the host in lower case
    ("http://127.0.0.1:80/v1", False),  # httpx leaves the default port out of Host
    ("http://127.0.0.1:8080/a/../v1", False),  # httpx removes dot segments
    ("http://127.0.0.1:8080/a%20b", False),  # escapes
    ("http://127.0.0.1:8080/a b", False),
    ("http://[::1]:8080/v1", False),
    ("http://127.0.0.01:8080/v1", False),  # httpx: "Invalid IPv4 address"
    ("http://999.0.0.1:8080/v1", False),
    ("http://1-2-3-4:8080/v1", True),  # a host name
    ("http://10.0.0.255:8080/v1", True),
    ("http://127.0.0.1:8080/v1#part", False),
    ("http://127.0.0.1:99999/v1", False),
    ("embedded:", False),
])
def test_which_urls_go_plain(url, usable):
    assert plain.usable(url, {"content-type": b"application/json"}, {}) is usable


@pytest.mark.parametrize("headers, environ, usable", [
    ({"x-key": b"a b"}, {}, True),
    ({"x-key": "caf\u00e9".encode()}, {}, True),  # h11 sends bytes past ASCII as they are
    ({"x-key": b" padded"}, {}, False),  # h11 refuses: httpx's error, not ours
    ({"x-key": b"a\r\nx-evil: 1"}, {}, False),
    ({"x key": b"v"}, {}, False),
    ({}, {"HTTP_PROXY": "http://proxy:3128"}, False),
    ({}, {"all_proxy": "socks5://proxy"}, False),
    ({}, {"NO_PROXY": "localhost"}, True),
    ({}, {"HTTP_PROXY": ""}, True),
])
def test_which_headers_and_environments_go_plain(headers, environ, usable):
    assert plain.usable("http://127.0.0.1:8080/v1", headers, environ) is usable


class Script:
    """A connection whose response arrives as PIECES, one network read each, then the end of the stream."""

    def __init__(self, pieces: list[bytes]):
        self.pieces = list(pieces)

    def makefile(self, mode: str):
        return io.BufferedReader(Reads(self.pieces))  # what http.client reads a response from

    def getresponse(self):
        response = http.client.HTTPResponse(self, method="POST")
        response.begin()
        return response

    def close(self):
        pass


class Reads(io.RawIOBase):
    """A raw stream whose reads return PIECES one by one (at most what the reader asks for), then b""."""

    def __init__(self, pieces: list[bytes]):
        self.pieces = pieces

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self.pieces:
            return 0
        piece = self.pieces.pop(0)
        size = min(len(buffer), len(piece))
        buffer[:size] = piece[:size]
        if size < len(piece):
            self.pieces.insert(0, piece[size:])
        return size


CHUNKED = (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
           b"7\r\ndata: {\r\n5;ext=1\r\n}\n\nda\r\nA\r\nta: [DONE]\r\n0\r\n\r\n")


def test_a_chunk_goes_on_as_soon_as_it_came():
    # llama-server sends each token as a chunk: none may wait for the next to be shown.
    head_and_first, rest = CHUNKED.split(b"5;ext=1")
    script = Script([head_and_first, b"5;ext=1" + rest])
    body = plain.Response(script, "http://h/").iter_bytes()
    assert next(body) == b"data: {"
    assert script.pieces == [b"5;ext=1" + rest]  # not read yet
    assert b"".join(body) == b"}\n\ndata: [DONE]"


def test_a_chunked_body_cut_anywhere_reads_the_same():
    for cut in range(len(CHUNKED) + 1):
        for second in range(cut, len(CHUNKED) + 1):
            pieces = [CHUNKED[:cut], CHUNKED[cut:second], CHUNKED[second:]]
            response = plain.Response(Script([p for p in pieces if p]), "http://h/")
            assert b"".join(response.iter_bytes()) == b"data: {}\n\ndata: [DONE]", pieces


# http.client reads a size line laxly (int(line, 16): "-7" and "0x7" pass); such a body still ends cut off.
@pytest.mark.parametrize("body", [b"7\r\ndata: {\r\n", b"zz\r\ndata: {\r\n", b"-7\r\ndata: {\r\n",
                                  b"0x7\r\ndata: {\r\n"], ids=["short", "not-a-size", "negative", "0x"])
def test_a_broken_chunked_body_is_cut_off(body):
    response = plain.Response(Script([CHUNKED.split(b"\r\n\r\n")[0] + b"\r\n\r\n" + body]), "http://h/")
    with pytest.raises(plain.CutOff) as caught:
        b"".join(response.iter_bytes())
    assert str(caught.value) == ("peer closed connection without sending complete message body "
                                 "(incomplete chunked read)")


def test_a_body_short_of_its_content_length_is_cut_off():
    response = plain.Response(Script([b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", b"de"]), "http://h/")
    with pytest.raises(plain.CutOff) as caught:
        b"".join(response.iter_bytes())
    assert str(caught.value) == "peer closed connection without sending complete message body " \
                                "(received 5 bytes, expected 10)"


def test_headers_as_h11_reads_them():
    response = plain.Response(Script([b"HTTP/1.1 200 OK\r\nX-A: one\r\n  two\r\ncontent-length: 3, 3\r\n"
                                      b"x-a: three\r\n\r\nabcdef"]), "http://h/")
    assert response.headers.get("X-a") == "one two, three"
    assert response.read() == b"abc"
    with pytest.raises(plain.CutOff):
        plain.Response(Script([b"HTTP/1.1 200 OK\r\ncontent-length: 3, 4\r\n\r\nabcd"]), "http://h/")


@pytest.mark.parametrize("head, reason", [
    (b"HTTP/1.1 200 OK\r\nX A: v\r\n", "illegal header line: 'X A: v'"),
    (b"HTTP/1.1 200 OK\r\nX-A : v\r\n", "illegal header line: 'X-A : v'"),
    (b"HTTP/1.1 200 OK\r\nx-a: v\r\nnot a header\r\n", "illegal header line: 'not a header'"),
    (b"HTTP/1.1 200 OK\r\n: v\r\n", "illegal header line"),
    (b"HTTP/1.1 200 OK\r\n  folded\r\n", "illegal header line"),
    (b"HTTP/1.1 200 OK\r\nFrom x\r\n", "illegal header line: 'From x'"),
    (b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n", "Only Transfer-Encoding: chunked is supported"),
    (b"HTTP/1.1 200 OK\r\ncontent-length: +3\r\n", "bad Content-Length: '+3'"),
    (b"HTTP/2 200 OK\r\n", "unsupported HTTP version: 'HTTP/2'"),
    (b"HTTP/1.1 2000 OK\r\n", "illegal status line: 'HTTP/1.1 2000 OK'"),
    (b"", "Server disconnected without sending a response."),
], ids=["space-in-name", "space-before-colon", "no-colon", "no-name", "first-line-folded", "from-line",
        "transfer-coding", "content-length-sign", "http-2", "status-code", "nothing"])
def test_what_h11_refuses_in_a_head_is_cut_off(head, reason):
    with pytest.raises(plain.CutOff) as caught:
        plain.Response(Script([head + b"\r\n" if head else b""]), "http://h/")
    assert str(caught.value) == reason
