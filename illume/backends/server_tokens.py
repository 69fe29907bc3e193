"""llama-server's tokenizer, chat template and context, asked over HTTP (docs/buffer.md, "!fit").

`ServerCounter` is the HTTP backend's token counter (illume.tokens reads
it): `POST /apply-template` with the request's own body (so tools and
template arguments render as they will), `POST /tokenize` with special
tokens parsed and BOS added as for a prompt, `GET /props` for the context
per slot, all with the httpx client the HTTP backend makes for it
(`HTTPBackend.counter`). A server without those endpoints gives no counts:
`Uncountable` says why.
"""

from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

import illume.backends.wire as wire
from illume.names import shown
from illume.tokens import Uncountable

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


def headers(request) -> dict:
    """Return the headers that go with REQUEST's counting requests: its own, less those about its body."""
    return {name: value for name, value in wire.headers(request.headers.items(), None)[0].items()
            if name.lower() not in ("accept", "content-type")}


class ServerCounter:
    """llama-server's tokenizer, template and context, asked over HTTP by CLIENT (an httpx.Client)."""

    def __init__(self, request, client):
        self.root = server_root(request.url)
        # The server as its notes name it: host and port, as http errors do, never the URL's user or password.
        self.where = shown(urlsplit(self.root).netloc.rpartition("@")[2] or self.root)
        self.client = client

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
