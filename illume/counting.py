"""Asking the model's own tokenizer: llama-server's endpoints or the embedded model (docs/buffer.md, "!fit").

A counter renders a prompt as the model will evaluate it (`render`), splits
text into its tokens' pieces (`pieces`) and knows the context (`context`).
`ServerCounter` asks llama-server: `POST /apply-template` with the request's
own body (so tools and template arguments render as they will),
`POST /tokenize` with special tokens parsed and BOS added as for a prompt,
`GET /props` for the context per slot. `EmbeddedCounter` asks the embedded
model, through the embedded backend's own prompt rendering. An API with
neither gives no counts: `Uncountable` says why.

Counting costs requests of its own (bench/README.md, "Counting tokens"), so
it happens only when the buffer asks (`!fit`, `!debug tokens`) or the
server has refused a prompt as too long.
"""

from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

import illume.backends.wire as wire
from illume import buffer as buf
from illume import tokens
from illume.errors import RequestError
from illume.names import shown
from illume.output import note_line
from illume.request import Request
from illume.secrets import shown_url
from illume.tokens import Count, Uncountable

ENDPOINTS = ("chat/completions", "completions", "infill")


def server_root(url: str) -> str:
    """Return the root of the llama-server that URL's endpoint belongs to (its /v1 and endpoint cut off)."""
    parts = urlsplit(url)
    path = parts.path
    for endpoint in ENDPOINTS:
        if path.endswith("/" + endpoint):
            path = path[: -len(endpoint)]
            break
    path = path.rstrip("/")
    if path.endswith("/v1"):
        path = path[:-3]
    return urlunsplit((parts.scheme, parts.netloc, path + "/", "", ""))


class ServerCounter:
    """llama-server's tokenizer, template and context, asked over HTTP with the request's own headers."""

    def __init__(self, request, timeout: float):
        import httpx

        from illume.backends.http import _verify

        self.root = server_root(request.url)
        # The server as its notes name it: host and port, as http errors do, never the URL's user or password.
        self.where = shown(urlsplit(self.root).netloc.rpartition("@")[2] or self.root)
        headers = {name: value for name, value in wire.headers(request.headers.items(), None)[0].items()
                   if name.lower() not in ("accept", "content-type")}
        self.client = httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 30.0)), headers=headers,
                                   follow_redirects=False, verify=_verify(request.url))

    def close(self) -> None:
        self.client.close()

    def _ask(self, method: str, endpoint: str, body=None):
        import httpx

        try:
            response = self.client.request(method, self.root + endpoint, json=body)
        except httpx.HTTPError as e:
            raise Uncountable(f"{self.where} did not answer {endpoint}: {e or type(e).__name__}") from None
        if response.status_code != 200:
            raise Uncountable(f"{self.where} answered {endpoint} with HTTP {response.status_code} "
                              "(token counts need llama-server)")
        try:
            return response.json()
        except ValueError:
            raise Uncountable(f"{self.where} answered {endpoint} with no JSON (token counts need llama-server)") \
                from None

    def context(self) -> int:
        answer = self._ask("GET", "props")
        try:
            return int(answer["default_generation_settings"]["n_ctx"])
        except (KeyError, TypeError, ValueError):
            raise Uncountable(f"{self.where}'s /props gives no context size (token counts need llama-server)") \
                from None

    def render(self, messages: Sequence, body: Mapping) -> str:
        asked = {key: value for key, value in body.items() if key != "stream"}
        asked["messages"] = [dict(m) for m in messages]
        prompt = self._ask("POST", "apply-template", asked).get("prompt")
        if not isinstance(prompt, str):
            raise Uncountable(f"{self.where}'s /apply-template gave no prompt")
        return prompt

    def pieces(self, text: str, special: bool = True) -> list[bytes]:
        answer = self._ask("POST", "tokenize", {"content": text, "add_special": special, "parse_special": special,
                                                "with_pieces": True})
        found = answer.get("tokens") if isinstance(answer, dict) else None
        if not isinstance(found, list):
            raise Uncountable(f"{self.where}'s /tokenize gave no tokens")
        return [_piece_bytes(token) for token in found]


def _piece_bytes(token) -> bytes:
    """Return a /tokenize token's piece as bytes: text, or a list of byte values when not UTF-8 alone."""
    piece = token.get("piece", "") if isinstance(token, dict) else ""
    if isinstance(piece, list):
        return bytes(piece)
    return str(piece).encode("utf-8", "surrogateescape")


class EmbeddedCounter:
    """The embedded model's tokenizer, chat template and n_ctx: the same ones its replies use."""

    def __init__(self, request, env: Mapping[str, str]):
        from illume.backends import embedded

        self.request = request
        load_options, _ = embedded.split_keys(request.body)
        loaded = embedded._load(embedded.model_path(request.body, env), load_options)
        self.llama = loaded.llama

    def close(self) -> None:
        pass

    def context(self) -> int:
        return self.llama.n_ctx()

    def render(self, messages: Sequence, body: Mapping) -> str:
        from illume.backends import chat_prompt, embedded

        return chat_prompt.render(self.llama, messages, embedded._text(body, "chat_template"))

    def pieces(self, text: str, special: bool = True) -> list[bytes]:
        # As the backend tokenizes a prompt (chat_prompt.tokens): special tokens parsed, BOS if the model wants it.
        ids = self.llama.tokenize(text.encode("utf-8", "surrogateescape"), add_bos=special, special=special)
        return [self._piece(token) for token in ids]

    def _piece(self, token: int) -> bytes:
        import ctypes

        import llama_cpp

        model = self.llama._model
        size = 64
        while True:
            buffer = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(model.vocab, token, buffer, size, 0, True)
            if n >= 0:
                return buffer.raw[:n]
            size = -n


def counter_for(request, env: Mapping[str, str], timeout: float):
    """Return the counter for REQUEST's model; raise Uncountable when it has none."""
    if request.mode == buf.INFILL and not request.template:
        raise Uncountable("no token counts for /infill requests: the server lays out the prefix, suffix and files")
    if request.url.startswith("embedded:"):
        return EmbeddedCounter(request, env)
    if not request.url.lower().startswith(("http://", "https://")):
        raise Uncountable(f"no token counts for {shown(shown_url(request.url))}")
    return ServerCounter(request, timeout)


def measure(counter, parsed, request) -> Count:
    """Return the Count of REQUEST's prompt. Raises Uncountable."""
    context = counter.context()
    body = request.body
    if request.mode == buf.CHAT:
        files = [m.files for m in parsed.messages] if len(parsed.messages) == len(body["messages"]) else []
        return tokens.count(counter, body["messages"], files, body, context)
    files = [parsed.messages[0].files] if parsed.messages and request.mode == buf.COMPLETION else []
    return tokens.count(counter, [], files, body, context, prompt=body["prompt"])


def _measured(parsed, request, env: Mapping[str, str], timeout: float):
    """Return the token counts of REQUEST's parts, asked of its own server or model; raise Uncountable."""
    counter = counter_for(request, env, timeout)
    try:
        return measure(counter, parsed, request)
    finally:
        counter.close()


def debug_notes(parsed, request, env: Mapping[str, str], timeout: float, fitted=None) -> str:
    """Return the `!note` lines that end `!debug tokens`: the breakdown, or one line saying why there is none."""
    try:
        count = _measured(parsed, request, env, timeout)
    except Uncountable as e:
        return note_line(f"no token counts: {e}") + "\n"
    notes = tokens.breakdown(count)
    if fitted is not None and fitted.note:
        notes += fitted.note.lstrip("\n") + "\n"
    return notes


class Fitted:
    """A request cut to fit the context, the buffer's messages it keeps, and the note on what was left out."""

    def __init__(self, parsed, request, note: str = ""):
        self.parsed = parsed  # has the kept messages (`messages`), for counting their files again
        self.request = request
        self.note = note  # "" when nothing was left out


def fit(parsed, request, env: Mapping[str, str], timeout: float) -> Fitted:
    """Return REQUEST without its oldest messages as far as needed to fit the context (`!fit`).

    The plan comes from each message's cost; the cut prompt is then counted
    again, and one more message goes while it still does not fit (a
    template may join messages unevenly). Raises ContextTooLong, naming the
    biggest parts, when even the system prompt and the last user message do
    not fit. Without counts (another API), REQUEST unchanged with a note
    saying why.
    """
    if request.mode != buf.CHAT:
        return Fitted(parsed, request, "\n\n" + note_line("!fit leaves out messages of a chat only"))
    try:
        counter = counter_for(request, env, timeout)
    except Uncountable as e:
        return Fitted(parsed, request, "\n\n" + note_line(f"!fit left nothing out: {e}"))
    try:
        whole = measure(counter, parsed, request)
        if whole.fits():
            return Fitted(parsed, request)
        costs = [m.cost for m in whole.messages]
        roles = [m.role for m in whole.messages]
        try:
            dropped = tokens.plan(costs, roles, whole.total, whole.budget)
        except tokens.TooLong:
            raise ContextTooLong(tokens.too_long(whole)) from None
        last = tokens.last_user(roles)
        while True:
            cut = _without(parsed, request, dropped)
            count = measure(counter, *cut)
            if count.fits():
                saved = whole.total - count.total
                return Fitted(*cut, tokens.left_out_note(dropped, saved, whole.context))
            if dropped.stop >= last:
                raise ContextTooLong(tokens.too_long(count))
            # One more than planned: the plan adds up the parts' costs, the template may join them unevenly.
            stop = dropped.stop + 1
            while stop < last and roles[stop] == "assistant":
                stop += 1
            dropped = range(dropped.start, stop)
    except Uncountable as e:
        return Fitted(parsed, request, "\n\n" + note_line(f"!fit left nothing out: {e}"))
    finally:
        counter.close()


class _Kept:
    """The messages of a buffer that `!fit` keeps."""

    def __init__(self, messages):
        self.messages = messages


def _without(parsed, request, dropped: range):
    """Return (the kept messages, the request) without the messages DROPPED; the buffer itself is untouched."""
    body = dict(request.body)
    body["messages"] = [m for i, m in enumerate(request.body["messages"]) if i not in dropped]
    kept = _Kept([m for i, m in enumerate(parsed.messages) if i not in dropped])
    return kept, Request(url=request.url, body=body, headers=request.headers, mode=request.mode,
                         template=request.template)


def refused_as_too_long(error: Exception) -> bool:
    """Return whether ERROR is llama-server's (or the embedded model's) refusal of a prompt longer than the context."""
    text = str(error)
    # llama-server's error type and message; llama-cpp-python's ValueError, as the embedded backend passes it on.
    return any(words in text for words in ("exceed_context_size_error", "exceeds the available context size",
                                           "exceed context window"))


def explained(error: Exception, parsed, request, env: Mapping[str, str], timeout: float) -> Exception:
    """Return the error to report for ERROR: for a prompt refused as too long, one naming its biggest parts."""
    if not refused_as_too_long(error):
        return error
    message = explain(parsed, request, env, timeout)
    if message is None:
        return error
    if request.mode == buf.CHAT and not parsed.fit:
        message += " (add !fit to leave out the oldest messages)"
    return ContextTooLong(message)


def explain(parsed, request, env: Mapping[str, str], timeout: float) -> str | None:
    """Return the error for a prompt the model refused as too long, naming its biggest parts; None without counts."""
    try:
        count = _measured(parsed, request, env, timeout)
    except Uncountable:
        return None
    count.reply = None  # the refusal was the prompt alone
    return tokens.too_long(count)


class ContextTooLong(RequestError):
    """The prompt does not fit the model's context, even cut as `!fit` may."""
