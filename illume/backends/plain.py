"""Plain HTTP/1.1 over a socket: the common local case (llama-server on
http://127.0.0.1:8080/) without importing httpx and httpcore.

Importing them costs about 50 ms of every request, a third of the whole
run of a short reply. `usable` admits only what this client does exactly
as httpx does: an `http://` URL whose every part httpx would send as it is
(no credentials in it, no dot segments, no escapes, the host in lower
case), header names and values h11 accepts, and no proxy in the
environment. Everything else goes through httpx. The request carries the
same headers in the same order as httpx sends them; the reply is read the
same way (Content-Length, chunked, or up to the close; gzip and deflate
undone); failures have the same words.

The HTTP backend (`illume.backends.http`) keeps everything above the wire:
retries, redirects, error bodies, secrets.
"""

import re
import socket
from collections.abc import Iterator, Mapping

# What this client sends as httpx would, unchanged: the host in lower case
# and not an IP v6 literal, a port other than the default, a path and query
# of characters that need no escape, nothing before the host, no fragment.
_URL = re.compile(r"http://([a-z0-9][a-z0-9.-]*)(?::([0-9]{1,5}))?"
                  r"(/[A-Za-z0-9._~!$&'()*+,;=:/-]*)?(\?[A-Za-z0-9._~!$&'()*+,;=:/?-]*)?\Z")
# RFC 9110 tokens and field values as h11 checks them.
_NAME = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+\Z")
# httpx's own test for a host that must be a valid IP v4 address.
_IPV4_STYLE = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+\Z")
_VALUE = re.compile(rb"(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?\Z")

CHUNK = 65536


class ConnectError(Exception):
    """The connection could not be made; the message is the system's."""


class ConnectTimeout(Exception):
    pass


class ReadTimeout(Exception):
    pass


class WriteTimeout(Exception):
    pass


class CutOff(Exception):
    """The server broke the HTTP framing: closed the connection early, or sent what is not HTTP."""


class DecodingError(Exception):
    pass


class ReadError(Exception):
    """Reading failed (the connection was reset): the message is the system's."""


class WriteError(Exception):
    """Sending failed (the connection was reset): the message is the system's."""


def usable(url: str, headers: Mapping[str, bytes], environ: Mapping[str, str]) -> bool:
    """Return whether this client sends a request to URL with HEADERS exactly as httpx would, under ENVIRON."""
    match = _URL.match(url)
    if not match or ".." in match[1] or match[1].endswith("."):
        return False
    if _IPV4_STYLE.match(match[1]) and not _ipv4(match[1]):
        return False  # httpx refuses it as an invalid IP address
    if match[2] is not None and not 0 < int(match[2]) < 65536 or match[2] == "80" or match[2] and match[2][0] == "0":
        return False
    if match[3] and any(part in (".", "..") for part in match[3].split("/")):
        return False  # httpx would remove dot segments
    if any(name.lower().endswith("_proxy") and name.lower() != "no_proxy" and value
           for name, value in environ.items()):
        return False  # httpx reads proxies (and their exceptions) from the environment
    return all(_NAME.match(name.encode("latin-1", "replace")) and _VALUE.match(value)
               for name, value in headers.items())


def _ipv4(host: str) -> bool:
    """Return whether HOST is an IP v4 address as Python's ipaddress reads one (no leading zeros)."""
    parts = host.split(".")
    return len(parts) == 4 and all(part.isdigit() and str(int(part)) == part and int(part) < 256 for part in parts)


def request_head(url: str, headers: Mapping[str, bytes], defaults: Mapping[str, str], as_written: bytes = b"") -> bytes:
    """Return the request line and headers of a POST to URL, in httpx's order.

    httpx sends Host first, then its client's DEFAULTS that the request
    does not set itself, then the request's HEADERS in their order.
    """
    match = _URL.match(url)
    host = match[1] if match[2] is None else f"{match[1]}:{match[2]}"
    # The path as the original's Go client writes it (illume.backends.wire), where given.
    target = as_written.decode("ascii") if as_written else (match[3] or "/") + (match[4] or "")
    given = {name.lower() for name in headers}
    lines = [f"POST {target} HTTP/1.1".encode(), b"Host: " + host.encode()]
    lines += [f"{name}: {value}".encode() for name, value in defaults.items() if name.lower() not in given]
    lines += [name.encode() + b": " + value for name, value in headers.items()]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def send(url: str, headers: Mapping[str, bytes], body, defaults: Mapping[str, str], timeout: float,
         connect_timeout: float, as_written: bytes = b"") -> "Response":
    """Return the Response to a POST of the pieces of BODY to URL (one that `usable` admits)."""
    match = _URL.match(url)
    address = (match[1], int(match[2] or 80))
    try:
        sock = socket.create_connection(address, timeout=connect_timeout)
    except TimeoutError:
        raise ConnectTimeout("timed out") from None
    except OSError as e:
        raise ConnectError(str(e)) from None
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as httpcore: a small request goes at once
        sock.settimeout(timeout)  # for each read and write, as httpx's read and write timeouts
        try:
            sock.sendall(request_head(url, headers, defaults, as_written))
            for piece in body:
                sock.sendall(piece)
        except TimeoutError:
            raise WriteTimeout("timed out") from None
        except OSError as e:
            raise WriteError(str(e)) from None
        response = Response(sock, url)
    except BaseException:
        sock.close()
        raise
    return response


class Headers:
    """A response's headers: names in any case; `get` joins repeated ones with ", " as httpx does."""

    def __init__(self, pairs: list[tuple[str, str]]):
        self._pairs = pairs

    def get(self, name: str, default=None):
        name = name.lower()
        values = [value for key, value in self._pairs if key == name]
        return ", ".join(values) if values else default

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value


class Response:
    """A response read off SOCK: status and headers at once, the body as it comes (`iter_bytes`)."""

    def __init__(self, sock: socket.socket, url: str):
        self._sock = sock
        self.url = url
        self._buffer = b""
        head = self._read_head()
        status_line, *lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not (parts[1].isdigit() and len(parts[1]) == 3):
            raise CutOff(f"illegal status line: {status_line[:100]!r}")
        self.status_code = int(parts[1])
        pairs = []
        for line in lines:
            if line[:1] in (" ", "\t") and pairs:  # an obsolete folded line continues the header before it
                pairs[-1] = (pairs[-1][0], pairs[-1][1] + " " + line.strip(" \t"))
                continue
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                raise CutOff(f"illegal header line: {line[:100]!r}")
            pairs.append((name.lower(), value.strip(" \t")))
        self.headers = Headers(pairs)
        self._chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        length = self.headers.get("content-length")
        if self.status_code in (204, 304):
            self._left = 0  # no body, whatever the headers say
        elif self._chunked or length is None:
            self._left = None
        else:
            values = {value.strip() for value in length.split(",")}  # repeated, it must say the same
            if len(values) != 1 or not values.pop().isdigit():
                raise CutOff(f"bad Content-Length: {length[:100]!r}")
            self._left = int(length.split(",")[0])
        self._received = 0
        self._decoders = [_decoder(kind.strip().lower())
                          for kind in self.headers.get("content-encoding", "").split(",") if kind.strip()]
        self._decoders = [d for d in self._decoders if d]

    def _recv(self) -> bytes:
        try:
            return self._sock.recv(CHUNK)
        except TimeoutError:
            raise ReadTimeout("timed out") from None
        except OSError as e:
            raise ReadError(str(e)) from None

    def _read_head(self) -> bytes:
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end >= 0:
                head, self._buffer = self._buffer[:end], self._buffer[end + 4 :]
                if head.startswith(b"HTTP/1.1 1") and not head.startswith(b"HTTP/1.1 101"):
                    continue  # an informational response (100 Continue): the real one follows
                return head
            if len(self._buffer) > 65536:
                raise CutOff("the response's headers are too long")
            data = self._recv()
            if not data:
                raise CutOff("Server disconnected without sending a response.")
            self._buffer += data

    def _raw(self) -> Iterator[bytes]:
        """Yield the body's bytes as they arrive, framing removed."""
        if self._chunked:
            yield from self._raw_chunked()
            return
        data, self._buffer = self._buffer, b""
        while True:
            if self._left is not None:
                data = data[: self._left]
                self._left -= len(data)
            self._received += len(data)
            if data:
                yield data
            if self._left == 0:
                return
            data = self._recv()
            if not data:
                if self._left is not None:
                    raise CutOff("peer closed connection without sending complete message body "
                                 f"(received {self._received} bytes, expected {self._received + self._left})")
                return

    def _raw_chunked(self) -> Iterator[bytes]:
        """Yield the data of the chunks as they arrive, all that one read brought at once.

        llama-server sends each token as a chunk of its own; those that came
        together go on together, and nothing waits for more to come.
        """
        buffer, self._buffer = self._buffer, b""
        pos = 0
        data_left = 0  # of the chunk being read
        crlf_left = 0  # of the line break after a chunk's data
        pieces = []
        while True:
            while pos < len(buffer):
                if data_left:
                    piece = buffer[pos : pos + data_left]
                    pos += len(piece)
                    data_left -= len(piece)
                    pieces.append(piece)
                    if not data_left:
                        crlf_left = 2
                elif crlf_left:
                    step = min(crlf_left, len(buffer) - pos)
                    pos += step
                    crlf_left -= step
                else:  # a size line
                    end = buffer.find(b"\r\n", pos)
                    if end < 0:
                        if len(buffer) - pos > 4096:
                            raise CutOff("illegal chunk header")
                        break
                    size_text = buffer[pos:end].split(b";", 1)[0].strip(b" \t")
                    if not size_text or size_text.strip(b"0123456789abcdefABCDEF"):
                        raise CutOff(f"illegal chunk header: {buffer[pos:end][:100]!r}")
                    data_left = int(size_text, 16)
                    pos = end + 2
                    if data_left == 0:
                        if pieces:
                            yield b"".join(pieces)
                        return  # trailers, if any, are of no use
            if pieces:
                yield pieces[0] if len(pieces) == 1 else b"".join(pieces)
                pieces = []
            buffer = buffer[pos:] + self._more()
            pos = 0

    def _more(self) -> bytes:
        data = self._recv()
        if not data:
            raise CutOff("peer closed connection without sending complete message body (incomplete chunked read)")
        return data

    def iter_bytes(self) -> Iterator[bytes]:
        """Yield the body as it arrives, its content encoding undone."""
        for data in self._raw():
            for decoder in reversed(self._decoders):
                data = decoder(data)
            if data:
                yield data
        for i, decoder in enumerate(reversed(self._decoders)):
            data = decoder(None)
            for later in list(reversed(self._decoders))[i + 1 :]:
                data = later(data)
            if data:
                yield data

    def read(self) -> bytes:
        """Return the whole body."""
        return b"".join(self.iter_bytes())

    def close(self) -> None:
        self._sock.close()


def _decoder(kind: str):
    """Return a function that undoes the content encoding KIND (None: flush), or None to pass it as is (httpx)."""
    import zlib

    if kind == "gzip":
        state = zlib.decompressobj(zlib.MAX_WBITS | 16)
    elif kind == "deflate":
        state = zlib.decompressobj()
    else:
        return None
    first = [True]

    def decode(data):
        nonlocal state
        try:
            if data is None:
                return state.flush()
            if first[0] and kind == "deflate":
                first[0] = False
                try:
                    return state.decompress(data)
                except zlib.error:
                    # Raw deflate without the zlib header, as httpx also accepts.
                    state = zlib.decompressobj(-zlib.MAX_WBITS)
            return state.decompress(data)
        except zlib.error as e:
            raise DecodingError(str(e)) from None

    return decode
