"""`!fit summarize`: a turn that would not fit first summarises the oldest part that must go.

Each round counts the prompt (as `!fit` does); when it does not fit, the
oldest messages that must go are summarised and the `!summary` block goes
in where they end (`!summary all`, summarising the summaries too, when
even those are too long). With `--filter` the blocks go into the echoed
buffer, held back until then (illume.output.HeldEcho); for an editor, into
the file it named (`--summaries-file`), for it to insert; in a plain pipe,
where illume can only append, nothing is sent and the error says what to
run instead.
"""

import io
from collections.abc import Callable

from illume import tokens
from illume.backends import counter_for
from illume.counting import measure
from illume.errors import ContextTooLong, IllumeError
from illume.names import shown
from illume.output import HeldEcho, Output
from illume.summaries import covered_now, heading, instruction, stream, summary_request
from illume.summary_blocks import Summary

# A summary that `!fit summarize` asks for gets at most this share of the
# context (1/8): it must leave room for the story it stands beside.
SUMMARY_SHARE = 8
# Rounds of summarising before a turn gives up: each round summarises the
# oldest messages that must go (or the summaries, when they are what is
# too long), and a long story pasted in at once may take several.
MAX_ROUNDS = 16


def fit(question, out, text: str, again: Callable[[str], object]):
    """Return QUESTION, or the question of TEXT with `!summary` blocks inserted until its turn fits the context.

    Each round counts the prompt (as `!fit` does); when it does not fit, the
    oldest messages that must go are summarised and the block goes in
    where they end (`!summary all`, summarising the summaries too, when
    even those are too long). With `--filter` the blocks go into the
    echoed buffer; for an editor (`--summaries-file`), into that file, for
    the editor to insert; in a plain pipe, where illume can only append,
    nothing is sent and the error says what to run instead. Without counts
    (another API) QUESTION as it is: `!fit` then says why. AGAIN reads a
    buffer into its question (illume.answer.prepare, passed in: answering
    is above this module).
    """
    placed: list[tuple[int, str]] = []  # for the editor: (the line the block goes before, the block), in order
    try:
        for _ in range(MAX_ROUNDS):
            parsed, request = question.parsed, question.request
            try:
                counter = counter_for(request, question.env, question.options.timeout)
            except tokens.Uncountable:
                return question
            try:
                whole = measure(counter, parsed, request)
                if whole.fits():
                    return question
                covered, whole_cover = _must_go(parsed, whole)
            except tokens.Uncountable:
                return question
            finally:
                counter.close()
            line = _insertion_line(parsed, covered, text)
            echo = out.stream if isinstance(out.stream, HeldEcho) else None
            if echo is None and not question.options.summaries_file:
                first = covered[0].first_line() if isinstance(covered[0], Summary) else covered[0].line
                raise ContextTooLong(
                    f"the prompt is {whole.total:,} tokens, the context {whole.context:,} less {whole.reply:,} for "
                    f"the reply: !fit summarize must first summarise lines {first}-{line - 1}, and illume only "
                    f"appends here; run `illume --filter` on the buffer (it inserts the !summary block at line "
                    f"{line}), or use !fit alone to leave them out")
            block = _written(question, parsed, request, covered, whole_cover, whole.context)
            at = _offset(text, line)
            if echo is not None:
                echo.insert(len(text[:at].encode("utf-8", "surrogateescape")),
                            block.encode("utf-8", "surrogateescape"))
            else:
                placed.append((line, block))
            text = text[:at] + block + text[at:]
            question = again(text)
        raise ContextTooLong(f"!fit: the turn still does not fit after {MAX_ROUNDS} summaries")
    finally:
        if placed:  # also those written before a failure: they are in the reply's request, or would be
            _write_placed(question.options.summaries_file, placed)


def _write_placed(path: str, placed: list[tuple[int, str]]) -> None:
    """Write PLACED for the editor that gave PATH: the lines, then the blocks to insert before them, in order.

    The first line holds the line numbers, separated by spaces; then come
    the blocks, each beginning with its `!summary` line (a line the model's
    text cannot hold: it is escaped). Each number counts the lines of the
    buffer with the blocks before it already in (docs/buffer.md, "For
    editors"). Written before the reply begins, so an editor may read it
    at the reply's first output.
    """
    data = " ".join(str(line) for line, _ in placed) + "\n" + "".join(block for _, block in placed)
    try:
        with open(path, "wb") as f:
            f.write(data.encode("utf-8", "surrogateescape"))
    except OSError as e:
        raise IllumeError(f"--summaries-file: cannot write {shown(path)}: {e.strerror or e}") from None


def _must_go(parsed, whole) -> tuple[list, bool]:
    """Return what the next summary covers (the oldest messages that must go, or all), and whether it is `all`."""
    costs = [m.cost for m in whole.messages]
    roles = [m.role for m in whole.messages]
    pending = covered_now(parsed, False)
    offset = len(parsed.messages) - len(pending)  # the system message, when there is one
    # Room for the summary request: the context less the summary's share, the system prompt and the summaries.
    room = (whole.context - whole.context // SUMMARY_SHARE) * 3 // 4 - (costs[0] if offset else 0)
    try:
        dropped = tokens.plan(costs, roles, whole.total, whole.budget)
    except tokens.TooLong:
        dropped = None
    if dropped is not None and dropped.stop > offset:
        stop, spent = offset, 0
        while stop < dropped.stop and (stop == offset or spent + costs[stop] <= room):
            spent += costs[stop]
            stop += 1
        while stop < len(roles) - 1 and roles[stop] == "assistant" and spent + costs[stop] <= room:
            spent += costs[stop]  # the kept part starts with the user, as chat templates require
            stop += 1
        return pending[: stop - offset], False
    # The summaries themselves are too long: one summary of them all, and of what must go with them.
    live = [s for s in parsed.summaries if s.live]
    last = tokens.last_user(roles)
    if len(live) + last - offset < 2:
        raise ContextTooLong(tokens.too_long(whole))
    return live + pending[: max(last - offset, 0)], True


def _insertion_line(parsed, covered, text: str) -> int:
    """Return the buffer line before which the summary of COVERED goes: the role line of the message after it."""
    pending = covered_now(parsed, False)
    messages = [part for part in covered if not isinstance(part, Summary)]
    after = pending[len(messages)] if len(messages) < len(pending) else None
    if after is None or after.line is None:
        raise IllumeError("!fit: found no place for the summary (the last message must stay)")
    return after.line


def _offset(text: str, line: int) -> int:
    """Return where LINE (1-based) begins in TEXT."""
    at = 0
    for _ in range(line - 1):
        at = text.index("\n", at) + 1
    return at


def _written(question, parsed, request, covered, whole: bool, context: int) -> str:
    """Return the `!summary` block the model writes for COVERED, as it goes into the buffer (escaped)."""
    given = parsed.summarize_with
    if whole and not instruction(given)[0]:
        given = ("all " + given).strip()
    asked = summary_request(parsed, request, covered, whole, given)
    limit = max(context // SUMMARY_SHARE, 16)
    current = asked.body.get("max_tokens")
    if not isinstance(current, (int, float)) or isinstance(current, bool) or current < 0 or current > limit:
        asked.body.pop("stream")
        asked.body["max_tokens"] = limit
        asked.body["stream"] = True
    written = io.BytesIO()
    header = heading(covered, whole) + "\n\n"
    try:
        stream(asked, Output(written, question.secrets), _Placed(question), header)
    except ContextTooLong as e:
        # Said of the summary's request, which the user never wrote: the summaries it holds are what to shorten.
        raise ContextTooLong(f"!fit: the request for the summary does not fit either ({e}); shorten the "
                             "summaries above by hand, or use !fit alone to leave out the oldest messages",
                             e.prompt, e.context) from None
    return written.getvalue().decode("utf-8", "surrogateescape") + "\n\n"


class _Placed:
    """QUESTION as `stream` sees it for a block of its own lines: nothing before it on its first line."""

    def __init__(self, question):
        self.env, self.options, self.ending = question.env, question.options, None
