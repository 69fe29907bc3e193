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
from collections.abc import Mapping, Sequence

from illume import buffer as buf
from illume.errors import IllumeError, StreamError

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def settings(job: str, names: Sequence[str], env: Mapping[str, str]) -> buf.Buffer:
    """Return the Buffer that profile JOB and then NAMES make: API, keys, headers, system prompt (as messages).

    The profiles load in that order, as `!profile` lines would: the first
    that sets `!api` chooses the API, and a later one's `!:KEY` wins. When
    none sets `!api`, the default profile ($ILLUME_PROFILE, else llama.cpp)
    is loaded after them.
    """
    sources = buf.Sources(env)
    lines = "".join(f"!profile {name}\n" for name in [job, *names])
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
    """Return the whole reply to REQUEST; ON_TEXT, when given, gets each piece as it comes.

    GPT_OSS: the reply's channel tokens are read as `!gpt-oss` reads them.
    Raises IllumeError when there is no whole reply: the server refused,
    the stream broke off, or the token limit cut the reply short (a cut
    rewrite would lose the end of the text).
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
    if reply.limit:
        raise StreamError(f"the reply stopped at {reply.limit}: raise max_tokens in a profile "
                          "(!:max_tokens N) or give a shorter text")
    return "".join(parts)
