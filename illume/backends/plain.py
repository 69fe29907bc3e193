"""Plain HTTP/1.1 through the standard library's http.client: the common
local case (llama-server on http://127.0.0.1:8080/) without importing httpx
and httpcore.

Importing them costs about 50 ms of every request, a third of the whole
run of a short reply; http.client (with its email parser and ssl) costs
15-20 ms (bench/README.md, "Start-up"), and is imported when a request is
sent, not when illume starts.
`usable` admits only what this client sends exactly as httpx does: an
`http://` URL whose every part httpx would send as it is (no credentials
in it, no dot segments, no escapes, the host in lower case), header names
and values h11 accepts, and no proxy in the environment. Everything else
goes through httpx. The request carries the same headers in the same order
as httpx sends them (http.client adds none of its own: no Host or
Accept-Encoding of its choosing); the reply is framed by http.client
(Content-Length, chunked, or up to the close), checked where h11 is
stricter (the status line, header lines, Content-Length), and its gzip or
deflate undone here; failures have httpx's words.

Each chunk of a chunked body is passed on by itself, as httpx passes it.
Differences from httpx that remain: http.client is laxer than h11 about a
malformed chunk size line (`0x7` is read as 7; a body broken that way
reads as cut off, or as the server's own garbled bytes), and skips only a
`100 Continue` before the response: another informational one (103 Early
Hints) would be taken for the response.

The HTTP backend (`illume.backends.http`) keeps everything above the wire:
retries, redirects, error bodies, secrets.
"""

import http.client
import re
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


def request_head(url: str, headers: Mapping[str, bytes], defaults: Mapping[str, str],
                 as_written: bytes = b"") -> tuple[str, list[tuple[str, str | bytes]]]:
    """Return the request target and the header fields of a POST to URL, in httpx's order.

    httpx sends Host first, then its client's DEFAULTS that the request
    does not set itself, then the request's HEADERS in their order.
    """
    match = _URL.match(url)
    host = match[1] if match[2] is None else f"{match[1]}:{match[2]}"
    # The path as the original's Go client writes it (illume.backends.wire), where given.
    target = as_written.decode("ascii") if as_written else (match[3] or "/") + (match[4] or "")
    given = {name.lower() for name in headers}
    fields: list[tuple[str, str | bytes]] = [("Host", host)]
    fields += [(name, value) for name, value in defaults.items() if name.lower() not in given]
    fields += headers.items()
    return target, fields


def send(url: str, headers: Mapping[str, bytes], body, defaults: Mapping[str, str], timeout: float,
         connect_timeout: float, as_written: bytes = b"") -> "Response":
    """Return the Response to a POST of the pieces of BODY to URL (one that `usable` admits)."""
    match = _URL.match(url)
    # http.client sets TCP_NODELAY, as httpcore does: a small request goes at once.
    connection = http.client.HTTPConnection(match[1], int(match[2] or 80), timeout=connect_timeout)
    try:
        connection.connect()
    except TimeoutError:
        raise ConnectTimeout("timed out") from None
    except OSError as e:
        raise ConnectError(str(e)) from None
    try:
        connection.sock.settimeout(timeout)  # for each read and write, as httpx's read and write timeouts
        target, fields = request_head(url, headers, defaults, as_written)
        try:
            # Host and Accept-Encoding are among FIELDS, where httpx puts them.
            connection.putrequest("POST", target, skip_host=True, skip_accept_encoding=True)
            for name, value in fields:
                connection.putheader(name, value)
            connection.endheaders(body)  # the head, then each piece of BODY as it is
        except TimeoutError:
            raise WriteTimeout("timed out") from None
        except OSError as e:
            raise WriteError(str(e)) from None
        return Response(connection, url)
    except BaseException:
        connection.close()
        raise


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


# An obsolete folded header line (RFC 9112, 5.2): h11 reads it as one space.
_FOLD = re.compile(r"\r?\n[ \t]+")
_DIGITS = re.compile(r"[0-9]+\Z")


class Response:
    """The response on CONNECTION: status and headers at once, the body as it comes (`iter_bytes`)."""

    def __init__(self, connection, url: str):
        self._connection = connection
        self.url = url
        try:
            self._response = connection.getresponse()
        except Exception as e:
            raise _reading_failure(e) from None
        try:
            self._read_head(self._response)
        except BaseException:
            self._response.close()
            raise

    def _read_head(self, response) -> None:
        """Take the status and headers of RESPONSE; raise CutOff where h11 would refuse them."""
        self.status_code = response.status
        message = response.msg
        # Where h11 refuses a header line, the email parser notes a defect and reads the rest as a body.
        bad = message.get_unixfrom() or (message.get_payload() or "").split("\n")[0].rstrip("\r")
        if message.defects or bad:
            raise CutOff(f"illegal header line: {bad[:100]!r}" if bad else "illegal header line")
        self.headers = Headers([(name.lower(), _FOLD.sub(" ", value).strip(" \t"))
                                for name, value in response.getheaders()])
        coding = response.getheader("transfer-encoding")
        if coding is not None and coding.lower() != "chunked":
            raise CutOff("Only Transfer-Encoding: chunked is supported")  # h11's words; http.client reads it raw
        length = self.headers.get("content-length")
        if self.status_code in (204, 304) or self.status_code < 200:
            self._left = 0  # no body, whatever the headers say
        elif coding is not None or length is None:
            self._left = None
        else:
            # Repeated, it must say the same (h11); http.client would read such a body up to the close.
            values = {value.strip() for value in length.split(",")}
            if len(values) != 1 or not _DIGITS.match(value := values.pop()):
                raise CutOff(f"bad Content-Length: {length[:100]!r}")
            self._left = int(value)
        self._received = 0
        self._decoders = [_decoder(kind.strip().lower())
                          for kind in self.headers.get("content-encoding", "").split(",") if kind.strip()]
        self._decoders = [d for d in self._decoders if d]

    def _raw(self) -> Iterator[bytes]:
        """Yield the body's bytes as they arrive, framing removed: what each read brings, one chunk at most."""
        while self._left != 0:
            try:
                data = self._response.read1(CHUNK if self._left is None else min(CHUNK, self._left))
            except Exception as e:
                raise _reading_failure(e) from None
            if not data:
                if self._left is not None:
                    raise CutOff("peer closed connection without sending complete message body "
                                 f"(received {self._received} bytes, expected {self._received + self._left})")
                return
            self._received += len(data)
            if self._left is not None:
                self._left -= len(data)
            yield data

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
        self._response.close()
        self._connection.close()


def _reading_failure(error: Exception) -> Exception:
    """Return this module's exception, in httpx's words, for ERROR that http.client raised reading a response."""
    if isinstance(error, TimeoutError):
        return ReadTimeout("timed out")
    if isinstance(error, http.client.RemoteDisconnected):  # also a ConnectionResetError: before OSError
        return CutOff("Server disconnected without sending a response.")
    if isinstance(error, http.client.IncompleteRead):
        return CutOff("peer closed connection without sending complete message body (incomplete chunked read)")
    if isinstance(error, http.client.BadStatusLine):
        line = error.args[0].rstrip("\r\n")
        return CutOff(f"illegal status line: {line[:100]!r}")
    if isinstance(error, http.client.UnknownProtocol):
        return CutOff(f"unsupported HTTP version: {error.args[0][:100]!r}")
    if isinstance(error, http.client.HTTPException):  # a line too long, too many headers: http.client's words
        return CutOff(str(error) or type(error).__name__)
    if isinstance(error, OSError):
        return ReadError(str(error))
    return error


def _decoder(kind: str):
    """Return a function that undoes the content encoding KIND (None: flush), or None to pass it as is (httpx)."""
    import zlib  # only a compressed body needs it

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
