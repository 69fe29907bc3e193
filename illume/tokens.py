"""Token counts from the model's own tokenizer: what each part of a prompt costs, and `!fit`.

A counter (a backend's: illume.backends.counter_for) renders the prompt exactly as the model will
evaluate it and splits it into tokens, each with its piece of text. The
pieces are laid back over the prompt text, so every token lands in one
part: a message's own text, a `!context` file inside it, or the chat
template's own tokens (role markers, the assistant header). The parts then
add up to the total, and the total is the model's own count.

`count` measures; `breakdown` is the `!debug tokens` report; `too_long` the
error that names the biggest parts; `plan` is `!fit`'s choice of messages
to leave out, a pure function.
"""

import bisect
from collections.abc import Sequence

from illume.names import shown
from illume.output import note_line


class Uncountable(Exception):
    """The server or model cannot be asked for token counts; the message says why."""


class TooLong(Exception):
    """Even with every message that may go left out, the prompt does not fit."""


class MessageCount:
    """One message's tokens: its text (its files included), each `!context` file in it, its cost to keep."""

    def __init__(self, number: int, role: str, tokens: int, files: list[tuple[str, int]], cost: int):
        self.number = number  # 1-based, as the request's messages are numbered
        self.role = role
        self.tokens = tokens
        self.files = files  # (name, tokens) of each !context file in the message
        self.cost = cost  # what leaving the message out saves, its share of the template included


class Count:
    """A prompt measured: TOTAL tokens, as the model evaluates them, and what they are made of."""

    def __init__(self, total: int, messages: list[MessageCount], context: int | None, reply: int | None,
                 reply_key: str = "max_tokens"):
        self.total = total
        self.messages = messages
        self.context = context  # tokens per slot (llama-server) or the model's n_ctx; None when unknown
        self.reply = reply  # tokens kept for the reply: max_tokens, or RESERVE when unlimited
        self.reply_key = reply_key

    @property
    def template(self) -> int:
        """Return the tokens of the chat template's own: what no message holds."""
        return self.total - sum(m.tokens for m in self.messages)

    @property
    def budget(self) -> int | None:
        """Return the most prompt tokens that leave room for the reply, or None when the context is unknown."""
        if self.context is None:
            return None
        return self.context - (self.reply or 0)

    def fits(self) -> bool:
        budget = self.budget
        return budget is None or self.total <= budget


# Room for the reply when max_tokens is unlimited (absent or -1): a quarter
# of the context, so a `!fit` conversation still gets an answer of some length.
RESERVE_SHARE = 4


def reply_room(body: dict, context: int | None) -> tuple[int | None, str]:
    """Return the tokens to keep for the reply and the request key that says so."""
    for key in ("max_tokens", "n_predict", "max_completion_tokens"):
        value = body.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if value >= 0:
                return int(value), key
            break
    if context is None:
        return None, "a reserve"
    return context // RESERVE_SHARE, "a reserve, max_tokens being unlimited"


# --- measuring -----------------------------------------------------------

def count(counter, messages: Sequence, files: Sequence[Sequence[dict]], body: dict, context: int | None,
          prompt: str | None = None) -> Count:
    """Return the Count of MESSAGES (chat) or of PROMPT (completion), as COUNTER's model sees them.

    FILES holds, for each message, the `!context` files ({filename, text})
    inside it. Raises Uncountable.
    """
    if prompt is None:
        text = counter.render(messages, body)
        contents = [m["content"] for m in messages]
        roles = [m["role"] for m in messages]
    else:
        text, contents, roles = prompt, [prompt], ["prompt"]
    data = text.encode("utf-8", "surrogateescape")
    pieces = counter.pieces(text)
    starts = align(data, pieces)
    spans = _spans(data, contents, files)
    if starts is None or any(span is None for span, _ in spans):
        counts = _separately(counter, contents, files)
    else:
        counts = _laid_over(starts, spans, len(data))
    room, key = reply_room(body, context)
    measured = []
    for number, (role, (tokens, file_tokens, cost)) in enumerate(zip(roles, counts), 1):
        names = [f["filename"] for f in _files_of(files, number - 1)]
        measured.append(MessageCount(number, role, tokens, list(zip(names, file_tokens)), cost))
    return Count(len(pieces), measured, context, room, key)


def align(data: bytes, pieces: Sequence[bytes]) -> list[int] | None:
    """Return where in DATA each token's piece starts, or None when the pieces do not spell DATA.

    A token at either end whose piece is not in the text is one the
    tokenizer added (BOS, EOS): it takes no text. A first piece with a space
    the text lacks is a SentencePiece space prefix.
    """
    starts, at = [], 0
    for piece in pieces:
        starts.append(at)
        if piece and data.startswith(piece, at):
            at += len(piece)
        elif at == 0 and piece.startswith(b" ") and data.startswith(piece[1:], 0):
            at += len(piece) - 1
        elif 0 < at < len(data):
            return None
    return starts if at == len(data) else None


def _files_of(files: Sequence[Sequence[dict]], index: int) -> Sequence[dict]:
    """Return the `!context` files of message INDEX (none when the list stops short of it)."""
    return files[index] if files and index < len(files) else []


def _spans(data: bytes, contents: Sequence[str], files: Sequence[Sequence[dict]]) -> list:
    """Return for each content its (start, end) in DATA, or None, and its files' (start, end), in order."""
    spans, at = [], 0
    for index, content in enumerate(contents):
        encoded = content.encode("utf-8", "surrogateescape")
        start = data.find(encoded, at)
        if start < 0:
            spans.append((None, []))
            continue
        end = start + len(encoded)
        file_spans, inner = [], start
        for f in _files_of(files, index):
            piece = f["text"].encode("utf-8", "surrogateescape")
            found = data.find(piece, inner, end) if piece else -1
            file_spans.append((found, found + len(piece)) if found >= 0 else (inner, inner))
            inner = max(inner, found + len(piece)) if found >= 0 else inner
        spans.append(((start, end), file_spans))
        at = end
    return spans


def _laid_over(starts: list[int], spans: list, size: int) -> list[tuple[int, list[int], int]]:
    """Return (tokens, tokens of each file, cost) per message, each token counted where its piece starts.

    A message's cost runs from the end of the message before to its own
    end: its role marker and the previous message's closing tokens, which
    go when it goes.
    """
    def between(a: int, b: int) -> int:
        return bisect.bisect_left(starts, b) - bisect.bisect_left(starts, a)

    counts, previous_end = [], 0
    for (start, end), file_spans in spans:
        tokens = between(start, end)
        file_tokens = [between(a, b) for a, b in file_spans]
        counts.append((tokens, file_tokens, between(previous_end, end)))
        previous_end = end
    return counts


def _separately(counter, contents, files) -> list[tuple[int, list[int], int]]:
    """Return per-message counts, each text tokenized alone: when the pieces cannot be laid over the prompt."""
    counts = []
    for index, content in enumerate(contents):
        tokens = len(counter.pieces(content, special=False))
        file_tokens = [len(counter.pieces(f["text"], special=False))
                       for f in _files_of(files, index)]
        counts.append((tokens, file_tokens, tokens))
    return counts


# --- `!fit` ----------------------------------------------------------------

def last_user(roles: Sequence[str]) -> int:
    """Return the index of the last user message (the last message if none is the user's): `!fit` keeps it."""
    users = [i for i, role in enumerate(roles) if role == "user"]
    return users[-1] if users else len(roles) - 1


def plan(costs: Sequence[int], roles: Sequence[str], total: int, budget: int) -> range:
    """Return the messages to leave out (indexes, oldest first) so that TOTAL tokens fit BUDGET.

    Whole messages go, oldest first, never the system prompt (a first
    message of role system) nor the last user message or what follows it.
    A kept conversation then starting with an assistant message loses that
    too: many chat templates require the user to speak first. Raises
    TooLong when even all the others leaving is not enough.
    """
    first = 1 if roles and roles[0] == "system" else 0
    last = last_user(roles)
    stop = first
    while total > budget and stop < last:
        total -= costs[stop]
        stop += 1
    while stop < last and roles[stop] == "assistant" and stop > first:
        total -= costs[stop]
        stop += 1
    if total > budget:
        raise TooLong(f"{total:,}")
    return range(first, stop)


def left_out_note(dropped: range, saved: int, context: int) -> str:
    """Return the note that follows a `!fit` reply: which messages were left out."""
    numbers = f"message {dropped.start + 1}" if len(dropped) == 1 else \
        f"messages {dropped.start + 1}-{dropped.stop}"
    return "\n\n" + note_line(f"left out {numbers}, {saved:,} tokens, to fit {context:,}")


# --- reports ---------------------------------------------------------------

def _name(m: MessageCount) -> str:
    if m.role == "prompt":
        return "the prompt"
    if m.number == 1 and m.role == "system":
        return "the system prompt"
    return f"message {m.number} ({m.role})"


def biggest(count: Count, n: int = 3) -> list[str]:
    """Return the N biggest parts of COUNT, named with their counts: files on their own, then messages less them."""
    parts = []
    for m in count.messages:
        for name, tokens in m.files:
            where = "" if m.role == "prompt" else f" in message {m.number}"
            parts.append((tokens, f"{shown(name)} {tokens:,}{where}"))
        rest = m.tokens - sum(tokens for _, tokens in m.files)
        label = _name(m) + (" less its files" if m.files else "")
        parts.append((rest, f"{label} {rest:,}"))
    if count.template:
        parts.append((count.template, f"the chat template {count.template:,}"))
    parts.sort(key=lambda p: -p[0])
    return [text for tokens, text in parts[:n] if tokens > 0]


def too_long(count: Count) -> str:
    """Return the error for a prompt that does not fit: the total, the context, the biggest parts."""
    reply = hint = ""
    if count.reply and count.total < count.context:
        reply = f" less {count.reply:,} for the reply ({count.reply_key})"
        if count.reply >= count.context:
            hint = f"; {count.reply_key} leaves the prompt no room (lower !:{count.reply_key})"
    return (f"the prompt is {count.total:,} tokens, the context {count.context:,}{reply}: "
            + ", ".join(biggest(count)) + hint)


def breakdown(count: Count) -> str:
    """Return the `!note` lines of `!debug tokens`: each part's tokens, then the total against the context."""
    lines = []
    for m in count.messages:
        files = ", ".join(f"{shown(name)} {tokens:,}" for name, tokens in m.files)
        of_which = f", of which {files}" if files else ""
        lines.append(note_line(f"{_name(m)}: {m.tokens:,} tokens{of_which}"))
    if count.messages and count.messages[0].role != "prompt" or count.template:
        lines.append(note_line(f"the chat template: {count.template:,} tokens"))
    lines.append(note_line(summary(count)))
    return "".join(line + "\n" for line in lines)


def summary(count: Count) -> str:
    """Return one line: the total against the context and the room for the reply."""
    text = f"total: {count.total:,} tokens"
    if count.context is None:
        return text + ", the context size unknown"
    text += f" of a context of {count.context:,}"
    if count.reply is not None:
        text += f", {count.reply:,} kept for the reply ({count.reply_key})"
    budget = count.budget
    if count.total <= budget:
        return text + f": fits, {budget - count.total:,} to spare"
    return text + f": {count.total - budget:,} too many"
