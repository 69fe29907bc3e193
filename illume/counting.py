"""Token counts of a request, asked of its own model: `!fit`, `!debug tokens`, and why a prompt was refused.

The counter is the backend's (`illume.backends.counter_for`): llama-server's
/tokenize, /apply-template and /props, or the embedded model's own
tokenizer; an API with neither gives no counts, and `Uncountable` says why.
Counting costs requests of its own (bench/README.md, "Counting tokens"), so
it happens only when the buffer asks (`!fit`, `!debug tokens`) or the
model has refused a prompt as too long (ContextTooLong).
"""

from collections.abc import Mapping

from illume import buffer as buf
from illume import tokens
from illume.backends import counter_for
from illume.errors import ContextTooLong
from illume.output import note_line
from illume.request import Request
from illume.tokens import Count, Uncountable


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
            raise _too_long(whole) from None
        last = tokens.last_user(roles)
        while True:
            cut = _without(parsed, request, dropped)
            count = measure(counter, *cut)
            if count.fits():
                saved = whole.total - count.total
                return Fitted(*cut, tokens.left_out_note(dropped, saved, whole.context))
            if dropped.stop >= last:
                raise _too_long(count)
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


def _too_long(count: Count, hint: str = "") -> ContextTooLong:
    """Return the error for COUNT, a prompt that does not fit: its biggest parts named, then HINT."""
    return ContextTooLong(tokens.too_long(count) + hint, count.total, count.context)


def explained(error: ContextTooLong, parsed, request, env: Mapping[str, str], timeout: float) -> ContextTooLong:
    """Return the error to report for ERROR, a backend's refusal: one naming the prompt's biggest parts, if counted."""
    from illume import buffer as buf

    try:
        count = _measured(parsed, request, env, timeout)
    except Uncountable:
        return error
    count.reply = None  # the refusal was the prompt alone
    hint = " (add !fit to leave out the oldest messages)" if request.mode == buf.CHAT and not parsed.fit else ""
    return _too_long(count, hint)
