"""A job on a text rather than a buffer: `--rewrite` and `--review` (docs/rewrite.md).

The text a job works on is never parsed as a buffer: a line of it such as
`!api http://x/` stays text. Only profiles are read as buffers, to learn
the model and the API (`settings`); the job then builds its own messages:
a system prompt (the job's built-in profile, then the texts of the
profiles named) and one user message holding the instruction and the
text, fenced (`fenced`). The request is built and sent as a buffer's
would be (illume.request, illume.backends), and the reply is gathered
whole (`ask`): a job needs all of it before it can print anything safely.
"""

import re
import sys
from collections.abc import Mapping, Sequence
from typing import BinaryIO

from illume import buffer as buf
from illume.errors import IllumeError, StreamError

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def settings(job: str, base: str | None, names: Sequence[str], env: Mapping[str, str]) -> buf.Buffer:
    """Return the Buffer that profile BASE and then NAMES make: API, keys, headers, system prompt (as messages).

    JOB names the job in errors. The profiles load in that order, as `!profile` lines would: the first
    that sets `!api` chooses the API, and a later one's `!:KEY` wins. When
    none sets `!api`, the default profile ($ILLUME_PROFILE, else llama.cpp)
    is loaded after them.
    """
    sources = buf.Sources(env)
    lines = "".join(f"!profile {name}\n" for name in [*([base] if base else []), *names])
    parsed = _parse(lines, sources)
    if parsed.api == buf.INVALID_URL:
        default = env.get("ILLUME_PROFILE") or "llama.cpp"
        parsed = _parse(lines + f"!profile {default}\n", sources)
    if parsed.mode != buf.CHAT:
        raise IllumeError(f"--{job}: the profiles ask for {parsed.mode} mode, and a {job} is a chat")
    return parsed


def _parse(lines: str, sources) -> buf.Buffer:
    """Return the Buffer of LINES, `!profile` lines that the user never sees: an error names the profile alone."""
    try:
        return buf.parse(lines, sources)
    except IllumeError as e:
        message = str(e)
        if message.startswith("<stdin>:"):  # the line of LINES, which is no file of the user's
            message = message.split(": ", 1)[-1]
        raise IllumeError(f"--profile: {message}") from None


def fence(text: str) -> str:
    """Return a backtick fence longer than any run of backticks in TEXT (at least three)."""
    longest, run = 0, 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


def fenced(text: str) -> str:
    """Return TEXT in a fence that nothing in it can close."""
    marks = fence(text)
    return f"{marks}\n{text.rstrip(chr(10))}\n{marks}"


def request_for(parsed: buf.Buffer, user: str, env: Mapping[str, str]):
    """Return the request that sends PARSED's settings and system prompt with the user message USER."""
    from illume import request as req

    messages = [m for m in parsed.messages]
    messages.append(buf.Message("user", user))
    job = buf.Buffer()
    job.api, job.body, job.headers, job.messages = parsed.api, dict(parsed.body), parsed.headers, messages
    return req.build(job, env)


def ask(request, env: Mapping[str, str], timeout: float, gpt_oss: bool = False, on_text=None) -> str:
    """Return the whole reply to REQUEST (see `ask_reply`); a reply cut at the token limit raises StreamError."""
    text, limit = ask_reply(request, env, timeout, gpt_oss, on_text)
    if limit:
        raise StreamError(f"the reply stopped at {limit}: raise max_tokens in a profile "
                          "(!:max_tokens N) or give a shorter text")
    return text


def ask_reply(request, env: Mapping[str, str], timeout: float, gpt_oss: bool = False,
              on_text=None) -> tuple[str, str | None]:
    """Return the reply to REQUEST and what cut it short (the token limit), or None; ON_TEXT gets each piece.

    GPT_OSS: the reply's channel tokens are read as `!gpt-oss` reads them.
    Raises IllumeError when there is no reply to its end: the server
    refused, or the stream broke off.
    """
    from illume.backends import for_request
    from illume.reply import GptOss, Reply

    if request.url.startswith(buf.INVALID_URL):
        raise IllumeError("no API URL: give a profile that sets one (for example --profile llama.cpp)")
    backend = for_request(request, env, timeout)
    reply = Reply()
    pieces = backend.stream(request, reply)
    translate = GptOss() if gpt_oss else None
    parts = []
    try:
        for text in pieces:
            if _LONE_SURROGATE.search(text):
                text = _LONE_SURROGATE.sub("\ufffd", text)  # a JSON escape such as \udcff, as illume.output
            if translate:
                text = translate.feed(text)
            if text:
                parts.append(text)
                if on_text:
                    on_text(text)
    finally:
        pieces.close()
    if translate:
        parts.append(translate.finish())
    reply.check_ending()
    return "".join(parts), reply.limit


def report(stderr: BinaryIO, message: str, secrets=()) -> None:
    """Write `illume: MESSAGE` on STDERR: one line, SECRETS masked, control characters shown."""
    from illume.secrets import scrub
    from illume.terminal import shown

    line = shown(" ".join(scrub(message, secrets).split("\n")))
    try:
        stderr.write(f"illume: {line}\n".encode("utf-8", "replace"))
        stderr.flush()
    except (BrokenPipeError, ValueError):
        pass


def adds_text(names: Sequence[str], env: Mapping[str, str]) -> bool:
    """Return whether the profiles NAMES add words to the system prompt (a job profile, a house style)."""
    if not names:
        return False
    parsed = buf.parse("".join(f"!profile {name}\n" for name in names), buf.Sources(env))
    return any(m.content.strip() for m in parsed.messages)


def read_text(name: str | None) -> str:
    """Return the text of the file NAME (standard input for None), bytes that are not UTF-8 kept. Raises OSError."""
    if name is None:
        data = sys.stdin.buffer.read()
    else:
        with open(name, "rb") as f:
            data = f.read()
    return data.decode("utf-8", "surrogateescape")
