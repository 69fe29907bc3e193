"""The request as the original's Go client puts it on the wire: request target, URL credentials, headers.

The original hands its URL and headers to Go's net/http, which
- sends the path as written, dot segments included (`/a/../v1/`), and
  refuses a URL with a control character or a bad `%` escape;
- turns `user:password@` in the URL into `Authorization: Basic ...` only
  when the request has no Authorization header of its own;
- writes Host, Content-Length, Transfer-Encoding and Trailer itself,
  ignoring any value the buffer set (`!>content-length 5`);
- trims spaces and tabs around every header value, and sends no
  User-Agent at all when the buffer set an empty one (`!>user-agent $UNSET`).
httpx does otherwise on each point, so `HTTPBackend` sends what this module
works out (net/url's Parse and RequestURI, net/http's Request.write).
"""

import base64
import re
from urllib.parse import unquote

from illume.errors import RequestError

# Written by Go's client itself; a buffer's value for them is never sent (net/http, reqWriteExcludeHeader).
OWNED = frozenset({"host", "content-length", "transfer-encoding", "trailer"})

_HEX = "0123456789abcdefABCDEF"
_UNRESERVED = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")
# Characters a path may hold unescaped and still be sent as written (net/url, validEncoded).
_PATH_AS_WRITTEN = _UNRESERVED | frozenset("!$&'()*+,;=:@[]%/")
# Characters net/url's escape leaves alone in a path (shouldEscape, encodePath).
_PATH_UNESCAPED = _UNRESERVED | frozenset("$&+,/:;=@")
_USERINFO = _UNRESERVED | frozenset("!$&'()*+,;=%@:")
_HOST = _UNRESERVED | frozenset("!$&'()*+,;=:[]<>\"%")


class Target:
    """Where a request goes: the URL for httpx (no credentials), the request target, Basic credentials."""

    def __init__(self, url: str, target: bytes, basic: str | None):
        self.url = url
        self.target = target
        self.basic = basic  # "Basic ..." from the URL's user:password, or None


def target(url: str) -> Target:
    """Return where URL sends a request as Go's client reads it; raise RequestError where Go refuses it."""
    rest, hash_, fragment = url.partition("#")
    # Go checks for control characters before the fragment only; the fragment is never sent.
    if any(c < " " or c == "\x7f" for c in rest):
        raise _invalid(url, "a URL cannot hold a control character")
    _unescape(url, fragment)
    scheme, colon, after = rest.partition(":")
    if not colon or "/" in scheme:
        return Target(url, b"", None)  # no scheme: httpx's own error says so
    if after.endswith("?") and after.count("?") == 1:
        after, query = after[:-1], "?"
    else:
        after, mark, query = after.partition("?")
        query = mark + query
    basic = None
    if after.startswith("//"):
        authority, slash, path = after[2:].partition("/")
        path = slash + path
        userinfo, at, host = authority.rpartition("@")
        if at:
            if not set(userinfo) <= _USERINFO:
                raise _invalid(url, "invalid userinfo")
            user, _, password = userinfo.partition(":")
            for part in (user, password):
                _unescape(url, part)
            credentials = f"{unquote(user, errors='surrogateescape')}:{unquote(password, errors='surrogateescape')}"
            basic = "Basic " + base64.b64encode(credentials.encode("utf-8", "surrogateescape")).decode()
        _check_host(url, host)
        plain = f"{scheme}://{host}{path}{query}"
    else:
        path = after
        plain = rest
    # httpx needs only the scheme, host and port of it; bytes that were not UTF-8 must be escaped for it.
    plain = _BYTE_NOT_UTF8.sub(lambda m: f"%{ord(m.group()) - 0xDC00:02X}", plain)
    return Target(plain, _request_uri(url, path, query), basic)


_BYTE_NOT_UTF8 = re.compile("[\udc80-\udcff]")
# What HTTP allows in a request line's target (RFC 9112, 3.2; h11 refuses the rest).
_TARGET_CHARS = frozenset(range(0x21, 0x7F))


def _request_uri(url: str, path: str, query: str) -> bytes:
    """Return the request target Go sends for PATH and QUERY (net/url's EscapedPath and RequestURI)."""
    decoded = _unescape(url, path)
    if not set(path) <= _PATH_AS_WRITTEN:
        # Written with characters that must be escaped: Go escapes the decoded path anew.
        path = "".join(c if c in _PATH_UNESCAPED else _escaped(c) for c in decoded)
    target = ((path or "/") + query).encode("utf-8", "surrogateescape")
    # Go sends a query as written, spaces and all; HTTP does not allow that, so those bytes go escaped.
    if not set(target) <= _TARGET_CHARS:
        target = b"".join(bytes([b]) if b in _TARGET_CHARS else b"%%%02X" % b for b in target)
    return target


def _escaped(char: str) -> str:
    return "".join(f"%{b:02X}" for b in char.encode("utf-8", "surrogateescape"))


def _unescape(url: str, text: str) -> str:
    """Return TEXT with its %XX escapes decoded; raise RequestError for a bad one, as Go does."""
    at = text.find("%")
    while at >= 0:
        code = text[at + 1 : at + 3]
        if len(code) < 2 or code[0] not in _HEX or code[1] not in _HEX:
            raise _invalid(url, f'invalid URL escape "{text[at : at + 3]}"')
        at = text.find("%", at + 3)
    return unquote(text, errors="surrogateescape")


def _check_host(url: str, host: str) -> None:
    if host.startswith("["):
        return  # an IPv6 literal: left to httpx
    name, colon, port = host.rpartition(":")
    if colon and not port.isdigit() and port != "":
        raise _invalid(url, f'invalid port ":{port}" after host')
    for c in host:
        if c.isascii() and c not in _HOST:
            raise _invalid(url, f'invalid character "{c}" in host name')


def _invalid(url: str, reason: str) -> RequestError:
    # A password in the URL is not repeated in the message.
    shown = re.sub(r"(//[^/@]*?:)[^/@]*@", r"\1***@", url, count=1)
    return RequestError(f"invalid URL {shown}: {reason}")


def headers(items, basic: str | None) -> tuple[dict[str, bytes], bool]:
    """Return the headers to send for the buffer's ITEMS (name, value), and whether to send no User-Agent.

    BASIC ("Basic ..." from the URL's credentials) becomes the
    Authorization header unless the buffer set a non-empty one.
    """
    sent: dict[str, bytes] = {}
    no_user_agent = False
    authorization = False
    for name, value in items:
        key = name.lower()
        if key in OWNED:
            continue
        if key == "authorization" and value:
            authorization = True
        if key == "user-agent" and not value:
            no_user_agent = True
            continue
        # textproto.TrimString: Go trims spaces and tabs around a value (line breaks never get this far).
        sent[name] = value.strip(" \t").encode("utf-8", "surrogateescape")
    if basic and not authorization:
        for name in [name for name in sent if name.lower() == "authorization"]:
            del sent[name]
        sent["Authorization"] = basic.encode()
    return sent, no_user_agent
