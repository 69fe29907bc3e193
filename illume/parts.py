"""A long text in parts that fit the model's context, cut at paragraph boundaries (docs/rewrite.md, "Long texts").

The sizes come from the model's own tokenizer (illume.counting): the
prompt of the whole text as the model will see it, and where each token of
the text starts, so that each paragraph's tokens are known from one
request. A reply is given room for the part's own tokens and a quarter
more (`output_room`: a translation may grow), within `max_tokens`. A text
that fits is one part; one that does not is cut at blank lines into parts
as big as fit, each with up to a NEIGHBOURS-th of the context of the text
before and after it for context; a paragraph that does not fit even alone
is refused (TooLong) with the counts. A model that cannot count (another
API) gets the whole text in one part, and its own refusal if it is too long.
"""

import bisect
import math
from collections.abc import Callable, Mapping

from illume import job
from illume.errors import IllumeError

# The room a reply on N tokens of text is given: a quarter more, and a few tokens for its own ends.
GROWTH = 1.25
SLACK = 16
NEIGHBOURS = 8  # the text before and after a part: up to a NEIGHBOURS-th of the context each
WRAPPING = 64  # tokens for the words that tell a part from its neighbours


class Part:
    """A stretch of the text, START to END (characters), with the text BEFORE and AFTER it as context."""

    def __init__(self, start: int, end: int, before: str = "", after: str = ""):
        self.start, self.end, self.before, self.after = start, end, before, after

    def whole(self, text: str) -> bool:
        """Return whether this part is all of TEXT, with no context around it."""
        return self.start == 0 and self.end == len(text) and not self.before and not self.after


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


def plan(text: str, message: Callable[[Part], str], parsed, env: Mapping[str, str], timeout: float,
         neighbours: bool = True, job_name: str = "rewrite") -> list[Part]:
    """Return the parts TEXT is sent in: one, unless the model's counts say it does not fit.

    MESSAGE makes the user message for a part; NEIGHBOURS: each part gets the text around it as context.

    Raises TooLong with the token counts when even one paragraph does not fit.
    """
    whole = [Part(0, len(text))]
    counts = _measure(text, message, parsed, env, timeout)
    if counts is None:
        return whole
    context, prompt, starts, reply_limit = counts
    total = len(starts)
    if prompt + output_room(total) <= context and (reply_limit is None or output_room(total) <= reply_limit):
        return whole
    overhead = prompt - total  # system prompt, instruction, template
    around = context // NEIGHBOURS if neighbours else 0
    most = math.floor((context - overhead - 2 * around - WRAPPING - SLACK) / (1 + GROWTH))
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
                f"the text is too long to {job_name}: {total} tokens; split at paragraphs, the one at line {line} "
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
        if around:
            part.before = _before(text, starts, token_at(part.start), around, offsets, part.start)
            part.after = _after(text, starts, token_at(part.end), around, offsets, part.end)
    return parts


def _measure(text: str, message, parsed, env, timeout):
    """Return (context, prompt tokens, token starts in TEXT's bytes, reply limit), or None when the model cannot count."""
    from illume import counting, tokens

    request = job.request_for(parsed, message(Part(0, len(text))), env)
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
    return bisect.bisect_left(offsets, byte)
