"""Any server that speaks HTTP and streams Server-Sent Events: llama-server,
Hugging Face, OpenAI-compatible APIs, Anthropic.

The wire: POST the JSON body, read `text/event-stream` (llama-server README,
"POST /v1/chat/completions" and "POST /infill"; OpenAI's streaming API), and
hand each event to `Reply`. A plain `http://` request without a proxy goes
over `illume.backends.plain` (the standard library's http.client), which
spares the import of httpx and httpcore (about 50 ms); anything else over
httpx, imported here when such a request is made, not when illume starts.
"""

import json
import os
import sys
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import illume.backends.plain as plain
import illume.backends.wire as wire
from illume import __version__, sse
from illume.errors import ContextTooLong, HTTPStatusError, IllumeError, RequestError, StreamError
from illume.reply import DONE, Reply, error_message
from illume.secrets import cut, scrub, shown_url

# A 429 or 503 before any reply text is retried this many times, waiting
# what the server asks. A Retry-After over MAX_WAIT seconds is reported at
# once rather than retried early; Hugging Face's estimated_time is only an
# estimate, so its wait is cut to MAX_WAIT.
RETRIES = 3
MAX_WAIT = 20.0
MAX_REDIRECTS = 5
ERROR_BODY_LIMIT = 2000
# Of an error body, only this much is read: enough for any JSON error shape
# and for the ERROR_BODY_LIMIT characters shown (a server may send hundreds of MB).
ERROR_READ_LIMIT = 64 * 1024
# A reply sent as one JSON document (the server ignored "stream") past this size is refused.
MAX_WHOLE_REPLY = 256 * 1024 * 1024
# Connecting may take this long at most (or the whole timeout, when shorter): a host that is down fails soon.
CONNECT_TIMEOUT = 30.0
# The type of llama-server's error for a prompt longer than the context (with n_prompt_tokens and n_ctx).
EXCEED_CONTEXT = "exceed_context_size_error"


_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")


def _verify(url: str):
    """Return httpx's `verify` for URL: certificates are only loaded when TLS can be involved.

    Loading the CA bundle costs about 20 ms of every start; a plain-HTTP
    request to a local server needs none. A proxy may speak TLS, and
    `_open` refuses a redirect from http to https, so neither slips through
    unverified.
    """
    if url.startswith("http://") and not any(os.environ.get(v) or os.environ.get(v.upper()) for v in _PROXY_VARIABLES):
        return False
    return True


def httpx_client(url: str, timeout: float, headers: dict):
    """Return an httpx.Client for URL's server: TIMEOUT, connecting within CONNECT_TIMEOUT, no redirects."""
    import httpx

    return httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT)), headers=headers,
                        follow_redirects=False, verify=_verify(url))


def _origin(url) -> tuple:
    return (url.scheme, url.host, url.port)


# The headers every request starts with, on either transport, in httpx's
# order (a request's own headers replace them). httpx's own defaults would
# name httpx, which the plain transport does not use.
DEFAULT_HEADERS = {"Accept": "*/*", "Accept-Encoding": "gzip, deflate", "Connection": "keep-alive",
                   "User-Agent": f"illume/{__version__}"}


def _plain(url: str, headers: dict[str, bytes]) -> bool:
    """Return whether a request to URL with HEADERS goes over the plain transport (`illume.backends.plain`).

    Not when httpx is loaded already (a test harness that mocks it, a
    program using illume): sparing its import is the plain transport's
    only purpose.
    """
    return "httpx" not in sys.modules and plain.usable(url, headers, os.environ)


def _plain_request(request) -> bool:
    """Return whether REQUEST will go over the plain transport (a URL Go refuses: no, httpx words the error)."""
    try:
        where = wire.target(request.url)
    except RequestError:
        return False
    sent, no_user_agent = wire.headers(request.headers.items(), where.basic)
    return not no_user_agent and _plain(where.url, sent)


class _Transport:
    """Sends a POST and returns its streamed response: plain HTTP where `_plain` allows, else httpx."""

    def __init__(self, url: str, timeout: float):
        self.timeout = timeout
        self.url = url
        self._client = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._client is not None:
            self._client.close()

    def send(self, url: str, headers: dict[str, bytes], body, target: bytes = b"", no_user_agent: bool = False):
        """Return the response to a POST of BODY to URL; TARGET, when given, is the path as Go writes it."""
        if not no_user_agent and _plain(url, headers):
            return plain.send(url, headers, body, DEFAULT_HEADERS, self.timeout, min(self.timeout, CONNECT_TIMEOUT),
                              target)
        import httpx

        if self._client is None:
            self._client = httpx_client(self.url, self.timeout, DEFAULT_HEADERS)
        client = self._client
        built = client.build_request("POST", url, content=body, headers=headers,
                                     extensions=_as_written(client, httpx.URL(url), target))
        if no_user_agent:
            del built.headers["user-agent"]
        return client.send(built, stream=True)


def _failure(error: Exception, url: str, timeout: float) -> IllumeError | None:
    """Return the IllumeError that tells the user about ERROR from either transport, or None for a bug of ours."""
    httpx = sys.modules.get("httpx")
    if isinstance(error, (plain.ConnectTimeout, plain.ReadTimeout, plain.WriteTimeout)) or (
            httpx and isinstance(error, httpx.TimeoutException)):
        connecting = isinstance(error, plain.ConnectTimeout) or (httpx and isinstance(error, httpx.ConnectTimeout))
        what = "connecting" if connecting else "waiting for the reply"
        return StreamError(f"timed out after {timeout:g} s {what} ({_where(url)}); "
                           "set ILLUME_TIMEOUT or --timeout to wait longer")
    if isinstance(error, plain.CutOff) or (httpx and isinstance(error, httpx.RemoteProtocolError)):
        return StreamError(f"the reply was cut off: {_reason(error)} ({_where(url)})")
    if isinstance(error, plain.ConnectError) or (httpx and isinstance(error, httpx.ConnectError)):
        return RequestError(f"cannot connect to {_where(url)}: {_reason(error)}")
    if isinstance(error, (plain.DecodingError, plain.ReadError, plain.WriteError)):
        # httpx's words for these: the error's name, where, and why.
        return RequestError(f"{type(error).__name__} from {_where(url)}: {_reason(error)}")
    if httpx is None:
        return None
    if isinstance(error, httpx.UnsupportedProtocol):
        if url.lower().startswith(("http://", "https://")):
            # httpx says "missing an 'http://' or 'https://' protocol" when the host is what is missing.
            return RequestError(f"invalid URL {shown_url(url)}: it names no host")
        return RequestError(f"unsupported URL: {shown_url(url)} (it must start with http:// or https://)")
    if isinstance(error, httpx.InvalidURL):
        return RequestError(f"invalid URL {shown_url(url)}: {error}")
    if isinstance(error, httpx.HTTPError):
        return RequestError(f"{type(error).__name__} from {_where(url)}: {_reason(error)}")
    return None


class HTTPBackend:
    concurrent = True  # a server answers requests side by side (llama-server: one per slot)

    def __init__(self, timeout: float, sleep=time.sleep, request=None):
        # httpx is imported here rather than in `stream`, so that the time
        # `!stats` counts from the request to its response headers leaves it
        # out (httpx's client imports httpcore when it is made): the original
        # counts from the send. Not at all for a REQUEST the plain transport sends.
        if request is None or not _plain_request(request):
            import httpcore  # noqa: F401
            import httpx  # noqa: F401

        self.timeout = timeout
        self.sleep = sleep
        self.secrets: list[str] = []

    @staticmethod
    def counter(request, env, timeout: float):
        """Return the counter of REQUEST's tokens: its llama-server's own; raise Uncountable for another URL."""
        if not request.url.lower().startswith(("http://", "https://")):
            from illume.names import shown
            from illume.tokens import Uncountable

            raise Uncountable(f"no token counts for {shown(shown_url(request.url))}")
        import illume.backends.server_tokens as server_tokens

        return server_tokens.ServerCounter(request, httpx_client(request.url, timeout, server_tokens.headers(request)))

    def stream(self, request, reply: Reply) -> Iterator[str]:
        """Yield the reply's text as it streams in; "" first, once the server said 200."""
        self.secrets = request.secrets()  # masked in what is shown of a server's words, before they are cut
        try:
            with _Transport(request.url, self.timeout) as transport:
                response = self._open(transport, request)
                try:
                    _check_kind(response, self.secrets)  # before "", so an HTML page gets no `!assistant` line
                    yield ""
                    yield from self._read(response, reply)
                finally:
                    response.close()
        except IllumeError:
            raise
        except Exception as e:
            failure = _failure(e, request.url, self.timeout)
            if failure is None:
                raise
            raise failure from None

    def _open(self, transport, request):
        """Return the open response to REQUEST, after retries and same-purpose redirects."""
        where = wire.target(request.url)
        url = where.url
        body = _Body(request)
        sent, no_user_agent = wire.headers(request.headers.items(), where.basic)
        headers = _with_length(sent, body.length)
        target = where.target
        for attempt in range(RETRIES + 1 + MAX_REDIRECTS):
            response = transport.send(url, headers, body, target, no_user_agent)
            status = response.status_code
            if status == 200:
                return response
            if status in (307, 308) and "location" in response.headers:
                import httpx  # the URL joined as httpx joins it, on either transport

                here = httpx.URL(url)
                target_url = here.join(response.headers["location"])
                response.close()
                if target_url.scheme != here.scheme:
                    raise RequestError(f"the server redirected {shown_url(str(here))} to {shown_url(str(target_url))}: "
                                       "put that URL in !api")
                if _origin(target_url) != _origin(here):
                    # Credentials stay with the host they were meant for.
                    headers = _with_length(wire.headers(request.headers.public_items(), None)[0], body.length)
                url = str(target_url)
                target = b""  # the redirect's own path, as httpx joins it
                continue
            text = _error_text(response)
            too_long = _too_long(status, text, self.secrets)
            if too_long is not None:
                raise too_long
            summary = _error_summary(text, self.secrets)
            wait = _retry_wait(response, text) if status in (429, 503) else None
            if wait is not None and wait > MAX_WAIT:
                # Retrying sooner than asked would not honour Retry-After; waiting longer would hang an editor.
                raise HTTPStatusError(status, f"{summary} (the server asks to retry after {wait:g} s)")
            if wait is None or attempt >= RETRIES:
                raise HTTPStatusError(status, summary)
            self.sleep(wait)
        raise RequestError(f"too many redirects from {_where(request.url)}")

    def _read(self, response, reply: Reply) -> Iterator[str]:
        if _kind(response) == "application/json":
            # A server that ignored "stream": the whole reply at once.
            data, more = _read_some(response, MAX_WHOLE_REPLY)
            if more:
                raise StreamError(f"the server sent a reply of more than {MAX_WHOLE_REPLY // 2**20} MiB "
                                  "as one JSON document")
            yield _whole_reply(data.decode("utf-8", "replace"), reply, self.secrets)
            return
        decoder = sse.Decoder()
        # httpx's read timeout restarts with every byte; a server that sends
        # bytes but never a whole event must still time out.
        last_event = time.monotonic()
        for chunk in response.iter_bytes():  # undoes gzip/deflate, as Go's client does
            events = decoder.feed(chunk)
            if events:
                last_event = time.monotonic()
            elif time.monotonic() - last_event > self.timeout:
                raise StreamError(f"timed out after {self.timeout:g} s waiting for the reply "
                                  f"({_where(str(response.url))}): bytes kept coming but no event was complete; "
                                  "set ILLUME_TIMEOUT or --timeout to wait longer")
            text, done, error = _pass_on(events, reply)
            if text:
                yield text
            if error:
                raise error
            if done:
                return
        text, _, error = _pass_on(decoder.close(), reply)
        if text:
            yield text
        if error:
            raise error


def _as_written(client, url, target: bytes) -> dict:
    """Return httpx request extensions that send TARGET, the path as Go sends it, where httpx would change it.

    httpx resolves dot segments (`/a/../v1/`) and escapes some characters
    differently; httpcore's "target" extension sends the path as given. Not
    through a proxy, which needs the absolute form httpx writes itself.
    """
    if not target or target == url.raw_path:
        return {}
    choose = getattr(client, "_transport_for_url", None)
    if choose is None or choose(url) is not getattr(client, "_transport", None):
        return {}
    return {"target": target}


def _kind(response) -> str:
    return response.headers.get("content-type", "").split(";")[0].strip().lower()


def _check_kind(response, secrets=()) -> None:
    """Raise StreamError unless RESPONSE may hold a reply: an event stream, JSON, plain text or untyped."""
    kind = _kind(response)
    if kind and kind not in ("text/event-stream", "application/json") and not kind.startswith("text/plain"):
        data, _ = _read_some(response, ERROR_READ_LIMIT)  # an HTML page may be huge; 300 characters are shown
        text = " ".join(data.decode("utf-8", "replace").split())
        excerpt = scrub(text, secrets)[:300]
        raise StreamError(f"expected an event stream but got {kind}: {excerpt}")


def _read_some(response, limit: int) -> tuple[bytes, bool]:
    """Return the first LIMIT bytes of RESPONSE's body, and whether there was more (left unread)."""
    data = bytearray()
    for chunk in response.iter_bytes():
        data += chunk
        if len(data) > limit:
            return bytes(data[:limit]), True
    return bytes(data), False


class _Body:
    """REQUEST's body for httpx: its pieces, encoded anew each time it is sent (a retry, a redirect).

    httpx sends an iterable piece by piece, so a big buffer never has to
    exist as one bytes object, nor h11 join one into another; bytes would
    cost two whole copies of the buffer. The length, found by one encoding
    pass up front, goes in Content-Length, without which httpx would send
    the body chunked (Go sends Content-Length).
    """

    def __init__(self, request):
        self.request = request
        self.length = sum(len(piece) for piece in request.body_pieces())

    def __iter__(self) -> Iterator[bytes]:
        return self.request.body_pieces()


def _with_length(headers: dict[str, bytes], length: int) -> dict[str, bytes]:
    """Return HEADERS with the Content-Length that httpx itself would add for a bytes body (last).

    A buffer's own Content-Length never gets here (wire.OWNED): Go sends the body's.
    """
    headers["Content-Length"] = str(length).encode()
    return headers


def _pass_on(events, reply: Reply) -> tuple[str, bool, StreamError | None]:
    """Return the text of EVENTS as one piece, whether the end marker came, and an error event.

    All the events of one network read go out in one write: still flushed as
    they arrive, without a system call per token. Text that came before an
    error event is returned with the error, so it is shown before it.
    """
    texts = []
    text, add = reply.text, texts.append  # looked up once: this runs for every token
    try:
        for kind, data in events:
            add(text(data, kind))
            if data == DONE:
                return "".join(texts), True, None
    except StreamError as error:
        return "".join(texts), False, error
    return "".join(texts), False, None


def _whole_reply(data: str, reply: Reply, secrets=()) -> str:
    try:
        event = json.loads(data)
    except ValueError:
        raise StreamError(f"the server sent JSON that does not parse: {scrub(data, secrets)[:200]}") from None
    if isinstance(event, dict) and isinstance(event.get("choices"), list) and event["choices"]:
        choice = event["choices"][0]
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            reply.note_finish(choice.get("finish_reason"))
            reply.finished = True
            reply.events += 1
            reply.note_usage(event)
            return reply.message_text(message)
    text = reply.text(data)
    reply.finished = True
    return text


def _where(url: str) -> str:
    """Return the host (and port) of URL, without the user name and password it may hold."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:  # "http://[bad/": the message still names what was asked for
        return shown_url(url)
    return netloc.rpartition("@")[2] if netloc else shown_url(url)


def _reason(error: Exception) -> str:
    text = str(error) or type(error).__name__
    lowered = text.lower()
    if "connection refused" in lowered:
        return "connection refused (is the server running?)"
    if "name or service not known" in lowered or "nodename nor servname" in lowered or "name resolution" in lowered:
        return "unknown host"
    if "certificate" in lowered or "ssl" in lowered or "tls" in lowered:
        return f"TLS failure: {text}"
    return text


def _error_text(response) -> str:
    data, _ = _read_some(response, ERROR_READ_LIMIT)
    response.close()
    return data.decode("utf-8", "surrogateescape")  # bytes that are not UTF-8 are printed as they came


def _too_long(status: int, text: str, secrets=()) -> ContextTooLong | None:
    """Return llama-server's refusal of a prompt longer than the context (error body TEXT), else None."""
    import json

    try:
        error = json.loads(text).get("error")
    except (ValueError, AttributeError):
        return None
    if not isinstance(error, dict) or error.get("type") != EXCEED_CONTEXT:
        return None
    prompt, context = error.get("n_prompt_tokens"), error.get("n_ctx")
    if isinstance(prompt, int) and isinstance(context, int):
        return ContextTooLong(f"HTTP {status}: the prompt is {prompt} tokens but the context holds {context} "
                              f"({EXCEED_CONTEXT})", prompt, context)
    return ContextTooLong(f"HTTP {status}: {_error_summary(text, secrets)}")  # an older server: no counts


def _error_summary(text: str, secrets=()) -> str:
    """Return the server's own message from a known error shape, else the body cut to a sane length."""
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("error"):
        message = error_message(parsed["error"])
        if isinstance(parsed.get("estimated_time"), (int, float)):
            message += f" (estimated time {parsed['estimated_time']:g} s)"
        return message
    # Anything else as the original prints it, byte for byte (docs/wire.md), only cut short.
    # Masked first, then cut: a key cut in two would not be recognised.
    return cut(text, ERROR_BODY_LIMIT, secrets)


def _retry_wait(response, text: str) -> float | None:
    after = response.headers.get("retry-after", "").strip()
    if after:
        # Seconds or an HTTP date (RFC 9110, 10.2.3).
        try:
            return max(float(after), 0.0)
        except ValueError:
            pass
        try:
            return max(parsedate_to_datetime(after).timestamp() - time.time(), 0.0)
        except (TypeError, ValueError, IndexError):
            return None
    try:
        estimated = json.loads(text).get("estimated_time")
    except (ValueError, AttributeError):
        estimated = None
    if isinstance(estimated, (int, float)):
        return min(max(float(estimated), 0.0), MAX_WAIT)
    return 1.0
