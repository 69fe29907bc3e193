"""`illume --rewrite [INSTRUCTION]`: the text on standard input, rewritten, alone on standard output.

The promise (docs/rewrite.md): whatever fails, the text is not lost. On
any error, standard output gets the input back byte for byte, the error
goes to standard error as `illume: MESSAGE` and the exit status is 1
(130 or 143 after SIGINT or SIGTERM). So `:'<,'>!illume --rewrite ...` in
Vim leaves the selection as it was when the model cannot be reached.
With `--stream` (for editors, which keep the old text themselves) the new
text is printed as it comes, and a failure prints nothing more.

A text too long for one request is split at paragraph boundaries (blank
lines) into parts, each rewritten with some of the text before and after
it as read-only context; a paragraph too long even alone is refused with
the token counts. The sizes come from the model's own tokenizer
(illume.counting); a model that cannot count (another API) gets the whole
text in one request, and its own refusal if it is too long.
"""

import math
import signal
from collections.abc import Mapping, Sequence
from typing import BinaryIO

from illume import job
from illume.errors import Exit, IllumeError, Interrupted

# The room a rewrite of N tokens is given: a quarter more (a translation
# may grow), and a few tokens for the reply's own ends.
GROWTH = 1.25
SLACK = 16
NEIGHBOURS = 8  # the text before and after a part: up to a NEIGHBOURS-th of the context each
WRAPPING = 64  # tokens for the words that tell a part from its neighbours

ONE_PART = "Rewrite this text:"
PART_NOTE = ("This is one part of a longer text. Rewrite only the part between the fences marked PART; "
             "the text before and after it is there for context only: do not rewrite it, do not repeat it.")


class Part:
    """A stretch of the text, START to END (characters), with the text BEFORE and AFTER it as context."""

    def __init__(self, start: int, end: int, before: str = "", after: str = ""):
        self.start, self.end, self.before, self.after = start, end, before, after


def main(raw: bytes, instruction: str, profile_names: Sequence[str], env: Mapping[str, str], timeout: float,
         debug: bool, stream: bool, stdout: BinaryIO, stderr: BinaryIO) -> int:
    """Rewrite the text RAW onto STDOUT (RAW itself on any failure, but with STREAM); return the exit status."""
    from illume.output import Output

    text = raw.decode("utf-8", "surrogateescape")
    secrets: list[str] = []
    out = Output(stdout)
    printed = False  # with STREAM: whether any new text went out
    try:
        if not text.strip():
            stdout.write(raw)  # nothing to rewrite
            return Exit.OK
        parsed = job.settings("rewrite", profile_names, env)
        if not instruction and not _job_text(profile_names, env):
            raise IllumeError("--rewrite needs an INSTRUCTION or a job profile (for example --profile proofread)")
        requests = [(part, job.request_for(parsed, message(instruction, text, part), env))
                    for part in plan(text, instruction, parsed, env, timeout)]
        from illume.headers import proxy_secrets

        secrets = [s for _, r in requests for s in r.secrets()] + proxy_secrets(env)
        if debug or parsed.debug:
            Output(stdout, secrets).write("".join(r.debug_text() for _, r in requests))
            return Exit.OK
        if stream:
            for part, request in requests:
                unwrapper = _unwrapper(text, part)

                def show(piece: str, unwrapper=unwrapper) -> None:
                    nonlocal printed
                    shown = unwrapper.feed(piece)
                    if shown:
                        out.write(shown)
                        printed = True

                job.ask(request, env, timeout, parsed.gpt_oss, show)
                out.write(_finish(unwrapper))
                printed = True
            return Exit.OK
        new = []
        for part, request in requests:
            unwrapper = _unwrapper(text, part)
            new.append(unwrapper.feed(job.ask(request, env, timeout, parsed.gpt_oss)))
            new.append(_finish(unwrapper))
        _write_whole(out, "".join(new))
        return Exit.OK
    except IllumeError as e:
        return _failed(raw, str(e), secrets, stream, stdout, stderr, Exit.ERROR)
    except Interrupted as e:
        return _failed(raw, "interrupted", secrets, stream, stdout, stderr, e.status)
    except KeyboardInterrupt:
        return _failed(raw, "interrupted", secrets, stream, stdout, stderr, Exit.SIGINT)
    except BrokenPipeError:
        return Exit.ERROR
    except Exception as e:  # a bug of ours: still the text back
        from illume.output import unexpected

        return _failed(raw, unexpected(e) + " (please report this)", secrets, stream, stdout, stderr, Exit.ERROR)


def _unwrapper(text: str, part: Part):
    from illume.unwrap import Unwrapper

    return Unwrapper(text[part.start : part.end])


def _finish(unwrapper) -> str:
    """Return the end of an unwrapped reply; raise IllumeError when it held no text."""
    from illume.unwrap import NoText

    try:
        return unwrapper.finish()
    except NoText as e:
        raise IllumeError(str(e)) from None


def _write_whole(out, text: str) -> None:
    """Write TEXT with SIGINT and SIGTERM held off: the new text goes out whole, or the old one does."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        out.write(text)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _failed(raw: bytes, message: str, secrets, stream: bool, stdout: BinaryIO, stderr: BinaryIO, status: int) -> int:
    """Give the text back (unless streaming), say MESSAGE on STDERR; return STATUS."""
    try:
        if not stream:
            stdout.write(raw)
            stdout.flush()
    except BrokenPipeError:
        pass
    report(stderr, message, secrets)
    return status


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


def _job_text(names: Sequence[str], env: Mapping[str, str]) -> bool:
    """Return whether the profiles NAMES add words to the system prompt (a job profile, a house style)."""
    from illume import buffer as buf

    if not names:
        return False
    parsed = buf.parse("".join(f"!profile {name}\n" for name in names), buf.Sources(env))
    return any(m.content.strip() for m in parsed.messages)


def message(instruction: str, text: str, part: Part) -> str:
    """Return the user message that asks for PART of TEXT to be rewritten as INSTRUCTION says."""
    head = f"{instruction}\n\n" if instruction else ""
    own = text[part.start : part.end]
    if not part.before and not part.after and part.start == 0 and part.end == len(text):
        return f"{head}{ONE_PART}\n\n{job.fenced(own)}"
    pieces = [f"{head}{PART_NOTE}"]
    if part.before:
        pieces.append(f"Before the part (context only):\n\n{job.fenced(part.before)}")
    marks = job.fence(own)
    pieces.append(f"PART:\n\n{marks}\n{own.strip(chr(10))}\n{marks}")
    if part.after:
        pieces.append(f"After the part (context only):\n\n{job.fenced(part.after)}")
    return "\n\n".join(pieces)


# --- parts -------------------------------------------------------------------------

def paragraphs(text: str) -> list[tuple[int, int]]:
    """Return the (start, end) of each paragraph of TEXT: its lines and the blank lines after them."""
    spans, start, at = [], 0, 0
    had_text = blank_after = False  # in the current paragraph: text, and blank lines after it
    for line in text.splitlines(keepends=True):
        if line.strip():
            if blank_after:
                spans.append((start, at))
                start, blank_after = at, False
            had_text = True
        elif had_text:
            blank_after = True
        at += len(line)
    if at > start:
        spans.append((start, at))
    return spans


def output_room(tokens: int) -> int:
    """Return the reply tokens kept for rewriting TOKENS tokens of text."""
    return math.ceil(tokens * GROWTH) + SLACK


class TooLong(IllumeError):
    """The text cannot be rewritten in parts that fit the context."""


def plan(text: str, instruction: str, parsed, env: Mapping[str, str], timeout: float) -> list[Part]:
    """Return the parts TEXT is rewritten in: one, unless the model's counts say it does not fit.

    Raises TooLong with the token counts when even one paragraph does not fit.
    """
    whole = [Part(0, len(text))]
    counts = _measure(text, instruction, parsed, env, timeout)
    if counts is None:
        return whole
    context, prompt, starts, reply_limit = counts
    total = len(starts)
    if prompt + output_room(total) <= context and (reply_limit is None or output_room(total) <= reply_limit):
        return whole
    overhead = prompt - total  # system prompt, instruction, template
    neighbours = context // NEIGHBOURS
    most = math.floor((context - overhead - 2 * neighbours - WRAPPING - SLACK) / (1 + GROWTH))
    if reply_limit is not None:
        most = min(most, math.floor((reply_limit - SLACK) / GROWTH))
    offsets = _char_offsets(text)
    token_at = _token_index(starts, offsets)
    parts: list[Part] = []
    start = end = 0
    for p_start, p_end in paragraphs(text):
        size = token_at(p_end) - token_at(p_start)
        if size > most:
            line = text.count("\n", 0, p_start) + 1
            raise TooLong(
                f"the text is too long to rewrite: {total} tokens; split at paragraphs, the one at line {line} "
                f"still has {size} tokens, and a part can have at most {max(most, 0)} (the model's context is "
                f"{context} tokens, {overhead} of them for the instructions"
                + (f", max_tokens {reply_limit}" if reply_limit is not None else "")
                + "); shorten that paragraph or give the model more context")
        if end > start and token_at(p_end) - token_at(start) > most:
            parts.append(Part(start, end))
            start = end
        end = p_end
    parts.append(Part(start, end))
    for part in parts:
        part.before = _before(text, starts, token_at(part.start), neighbours, offsets, part.start)
        part.after = _after(text, starts, token_at(part.end), neighbours, offsets, part.end)
    return parts


def _measure(text: str, instruction: str, parsed, env, timeout):
    """Return (context, prompt tokens, token starts in TEXT's bytes, reply limit), or None when the model cannot count."""
    from illume import counting, tokens

    request = job.request_for(parsed, message(instruction, text, Part(0, len(text))), env)
    try:
        counter = counting.counter_for(request, env, timeout)
    except tokens.Uncountable:
        return None
    try:
        context = counter.context()
        prompt = len(counter.pieces(counter.render(request.body["messages"], request.body)))
        data = text.encode("utf-8", "surrogateescape")
        pieces = counter.pieces(text, special=False)
    except tokens.Uncountable:
        return None
    finally:
        counter.close()
    starts = tokens.align(data, pieces)
    if starts is None:
        # The pieces do not spell the text (a tokenizer that normalises it): spread them evenly by bytes.
        starts = [len(data) * i // max(len(pieces), 1) for i in range(len(pieces))]
    limit, _ = tokens.reply_room(request.body, None)
    return context, prompt, starts, limit


def _char_offsets(text: str) -> list[int]:
    """Return the byte offset of each character of TEXT, and of its end, in UTF-8 (surrogate escapes one byte)."""
    offsets, at = [], 0
    for char in text:
        offsets.append(at)
        code = ord(char)
        at += 1 if code < 0x80 or 0xDC80 <= code <= 0xDCFF else 2 if code < 0x800 else 3 if code < 0x10000 else 4
    offsets.append(at)
    return offsets


def _token_index(starts: list[int], offsets: list[int]):
    """Return a function of a character offset: how many tokens start before it."""
    import bisect

    return lambda char: bisect.bisect_left(starts, offsets[char])


def _before(text: str, starts, first: int, limit: int, offsets, at: int) -> str:
    """Return up to LIMIT tokens of TEXT before character AT (token FIRST), from a line's start."""
    if at == 0:
        return ""
    begin = starts[max(first - limit, 0)]
    char = _char_at(offsets, begin)
    if char > 0 and text[char - 1] != "\n":
        newline = text.find("\n", char, at)
        char = newline + 1 if newline >= 0 else char
    return text[char:at]


def _after(text: str, starts, last: int, limit: int, offsets, at: int) -> str:
    """Return up to LIMIT tokens of TEXT after character AT (token LAST), up to a line's end."""
    if at >= len(text):
        return ""
    stop = last + limit
    char = len(text) if stop >= len(starts) else _char_at(offsets, starts[stop])
    newline = text.rfind("\n", at, char)
    if char < len(text) and newline > at:
        char = newline + 1
    return text[at:char]


def _char_at(offsets: list[int], byte: int) -> int:
    """Return the character at (or right after) BYTE."""
    import bisect

    return bisect.bisect_left(offsets, byte)
