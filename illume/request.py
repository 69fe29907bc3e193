"""From a parsed buffer to the HTTP request: URL, JSON body, headers (docs/wire.md)."""

from collections.abc import Iterator, Mapping

from illume import buffer as buf
from illume import jsonwire, templates
from illume.errors import DirectiveError, SetupError, TemplateError
from illume.headers import Headers
from illume.secrets import body_secrets, scrub, shown_url, url_secrets

ENDPOINTS = {buf.CHAT: "chat/completions", buf.COMPLETION: "completions", buf.INFILL: "infill"}


class Request:
    """One request, ready to send."""

    def __init__(self, url: str, body: dict, headers: Headers, mode: str, template: bool = False):
        self.url = url
        self.body = body
        self.headers = headers
        self.mode = mode  # chat, completion or infill
        self.template = template  # infill through a FIM template and /completions

    def body_pieces(self) -> Iterator[bytes]:
        """Yield the body as the original sends it, Go's JSON and a trailing newline, in pieces.

        Pieces of jsonwire.PIECE characters or so, so that sending a big
        buffer needs no whole copy of it; a small body is one piece.
        """
        return jsonwire.encode_utf8(self.body, end="\n")

    def secrets(self) -> list[str]:
        """Return the credentials this request carries: in its headers, its URL, its body's `*_key` values."""
        found = self.headers.secrets() + url_secrets(self.url) + body_secrets(self.body)
        return [s for s in found if len(s) >= 4]  # shorter ones would mask ordinary words (URLs are masked whole)

    def debug_text(self) -> str:
        """Return the `!debug` dry run: request line, headers, body, with every secret masked."""
        secrets = self.secrets()
        # A key given with `!:api_key` (for a `{api_key}` in the URL) shows in the URL and the body.
        lines = [f"\n\nPOST {scrub(shown_url(self.url), secrets)} HTTP/1.1\n"]
        lines.extend(f"{name}: {value}\n" for name, value in self.headers.shown())
        lines.append(f"\n{scrub(jsonwire.encode(self.body), secrets)}\n\n")
        return "".join(lines)


def hole_indent(prefix: str, suffix: str) -> int:
    """Return the hole's indentation: that of the suffix's first non-blank line, else the prefix's last.

    llama-server's `n_indent` (README, "POST /infill") keeps the middle at
    least this far in, so it cannot wander out of the block it fills.
    """
    lines = [line for line in suffix.split("\n") if line.strip()]
    if not lines:
        lines = [line for line in reversed(prefix.split("\n")) if line.strip()]
    if not lines:
        return 0
    return len(lines[0]) - len(lines[0].lstrip(" \t"))


def build(buffer: buf.Buffer, env: Mapping[str, str]) -> Request:
    """Return the request for BUFFER."""
    body = dict(buffer.body)
    try:
        url = templates.interpolate(buffer.api, body)
    except TemplateError as e:
        raise SetupError(f"interpolating URL: {e}") from None

    literal = len(url) > 2 and url[0] == '"' and url[-1] == '"'
    if literal:
        url = url[1:-1]
    elif not url.endswith("/"):
        url += "/"

    template = buffer.mode == buf.INFILL and buffer.fim_template is not None
    if not literal:
        url += ENDPOINTS[buf.COMPLETION if template else buffer.mode]

    if buffer.mode == buf.CHAT:
        body["messages"] = [jsonwire.Ordered(role=m.role, content=m.content) for m in buffer.messages]
    elif buffer.mode == buf.COMPLETION:
        if not buffer.messages:
            raise DirectiveError("!completion: there is no text to complete")
        body["prompt"] = buffer.messages[0].content
    else:
        prefix, suffix = buffer.hole()
        if body.get("input_extra") == "auto":
            # The !context files above the hole travel on their own, not in the prefix.
            prefix = buffer.infill_prefix_without_files + "\n"
            body["input_extra"] = [jsonwire.Ordered(filename=f["filename"], text=f["text"])
                                   for f in buffer.infill_files]
            if template:
                del body["input_extra"]  # a template places the files itself (`files`)
        if body.get("n_indent") == "auto":
            body["n_indent"] = hole_indent(buffer.infill_prefix, buffer.infill_suffix or "")
        if template:
            try:
                body["prompt"] = templates.render(buffer.fim_template, prefix, suffix, env, buffer.infill_files)
            except TemplateError as e:
                message = str(e)  # an inline template's errors already start with "!infill"
                raise SetupError(message if message.startswith("!infill") else f"!infill: {message}") from None
        else:
            body["prompt"] = ""  # llama.cpp requires the key
            body["input_prefix"] = prefix
            body["input_suffix"] = suffix
    body.pop("stream", None)
    body["stream"] = True
    return Request(url=url, body=body, headers=buffer.headers, mode=buffer.mode, template=template)
