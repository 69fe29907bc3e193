"""Summaries that live in the buffer: `!summary` blocks, `!summarize`, `!fit summarize` (docs/buffer.md, "Summaries").

A `!summary` block, with its text below it up to the next role line,
stands in, in the request, for what it covers: the messages above it back
to the previous summary (`!summary all`: everything above it, the earlier
summaries too). The system prompt stays; the summaries that no later one
covers go at its end, in order, so that they are a stable prefix of every
request that follows (a prompt cache keeps hitting after them). The
covered text stays in the buffer, untouched.

illume writes a summary on request (`!summarize`, `--summarize`) or when a
turn would not fit (`!fit summarize`), and puts on its `!summary` line a
short checksum of the text it covers (`!summary #1a2b3c4d`): when that text
is edited later, a `!note` says the summary is stale. A summary written by
hand, without a checksum, is trusted as it is.
"""

import hashlib
import re

from illume.errors import BufferError, IllumeError

CHECKSUM = re.compile(r"#[0-9a-f]{8}")

# What the model is asked, by `!summarize story`, `!summarize chat` or by
# default; any other argument of `!summarize` is the instruction itself.
INSTRUCTIONS = {
    "story": (
        "You summarize a story for the writer who will continue it without the text. "
        "Write a summary of the part of the story below: what happens, in order; every named character, "
        "who they are and what they want; the places, objects and promises that matter later; and where "
        "the part ends. Plain prose, past tense, at most 200 words. Write nothing but the summary."),
    "chat": (
        "You summarize a conversation so that it can go on without its text. "
        "Write a summary of the conversation below: what was asked, the answers and decisions reached, "
        "the facts, names, numbers and code identifiers that matter, and what is still open. "
        "At most 200 words. Write nothing but the summary."),
}
DEFAULT = "chat"


class Summary:
    """One `!summary` block: its text, where it is, what it covers, the checksum it was written with."""

    def __init__(self, text: str, line: int, whole: bool, checksum: str | None, covered: list):
        self.text = text
        self.line = line
        self.whole = whole  # `!summary all`: covers the earlier summaries too
        self.checksum = checksum  # "#1a2b3c4d", or None for a summary written by hand
        self.covered = covered  # the Messages and Summaries it stands in for, in order
        self.live = True  # no later summary covers it: it is sent

    @property
    def role(self) -> str:
        return "summary"

    @property
    def content(self) -> str:
        return self.text

    def stale(self) -> bool:
        """Return whether the text it covers changed after illume wrote it."""
        return self.checksum is not None and self.checksum != checksum(self.covered)

    def lines(self) -> str:
        """Return the buffer lines it covers, as `lines 3-40`."""
        first = self.first_line()
        return f"lines {first}-{self.line - 1}" if first is not None else "nothing"

    def first_line(self) -> int | None:
        """Return the first buffer line it stands in for, through the summaries it covers."""
        for part in self.covered:
            first = part.first_line() if isinstance(part, Summary) else part.line
            if first is not None:
                return first
        return None


def checksum(covered) -> str:
    """Return the checksum of COVERED (messages and summaries) that illume writes on a `!summary` line."""
    digest = hashlib.sha256()
    for part in covered:
        digest.update(f"{part.role}\n{part.content}\0".encode("utf-8", "surrogateescape"))
    return "#" + digest.hexdigest()[:8]


# --- parsing -------------------------------------------------------------

def directive(reader, command: str, args: str, depth: int) -> None:
    """Carry out a `!summary` or `!summarize` line for READER (illume.buffer's _Reader)."""
    out = reader.out
    if command == "!summarize":
        if args.strip():
            out.summarize_with = args.strip()
        out.summarize = depth == 0 or out.summarize
        return
    if depth > 0:
        raise BufferError("!summary: a summary belongs in the buffer, not in a profile")
    whole, found = _heading(args)
    reader.close_message("summary")
    reader.started = reader.line_number
    out.summarize = False
    if not hasattr(out, "headings"):
        out.headings = {}
    out.headings[reader.line_number] = (whole, found)


def _heading(args: str) -> tuple[bool, str | None]:
    """Return what a `!summary` line says: whether it covers all above, and its checksum (or None)."""
    whole, found = False, None
    for word in args.split():
        if word == "all" and not whole:
            whole = True
        elif CHECKSUM.fullmatch(word) and found is None:
            found = word
        else:
            raise BufferError(f"!summary: unexpected {word!r} (the line takes `all` and a checksum such as "
                              "#1a2b3c4d, both optional)")
    return whole, found


def stand_in(out) -> None:
    """Replace OUT's messages by what is sent: the system prompt, the live summaries at its end, the rest."""
    from illume.buffer import CHAT, Message

    messages, headings = out.messages, getattr(out, "headings", {})
    system = messages[0] if messages and messages[0].role == "system" else None
    pending, summaries = [], []
    for message in messages[1 if system else 0 :]:
        if message.role != "summary":
            pending.append(message)
            continue
        whole, found = headings[message.line]
        if out.mode != CHAT:
            raise BufferError("!summary: summaries stand in for messages of a chat; "
                              "a completion or an infill sends its text whole", "<stdin>", message.line)
        live = [s for s in summaries if s.live]
        covered = (live + pending) if whole else pending
        if whole:
            for earlier in live:
                earlier.live = False
        summaries.append(Summary(message.content, message.line, whole, found, covered))
        pending = []
    live = [s.text for s in summaries if s.live]
    if system is None:
        head = Message("system", "\n\n".join(live))
    else:
        head = Message("system", "\n\n".join([system.content, *live]), system.files, system.line)
    out.messages = [head, *pending]
    out.summaries = summaries


def stale_notes(parsed, dry: bool = False) -> str:
    """Return the `!note` lines about PARSED's stale summaries ("" when none is): after a reply, or DRY after `!debug`."""
    from illume.output import note_line

    notes = [note_line(f"the summary at line {s.line} is stale: the text it covers ({s.lines()}) changed after "
                       f"it was written; write it again (!summarize), or edit it and delete its {s.checksum}")
             for s in parsed.summaries if s.stale()]
    if not notes:
        return ""
    return "\n".join(notes) + "\n" if dry else "\n\n" + "\n".join(notes)


# --- writing a summary ---------------------------------------------------

def instruction(given: str) -> tuple[bool, str, str]:
    """Return from a `!summarize` argument: whether it asks for `all`, the preset's name (or ""), the instruction."""
    whole = given == "all" or given.startswith("all ")
    rest = given[3:].strip() if whole else given
    name = rest or DEFAULT
    if name in INSTRUCTIONS:
        return whole, name, INSTRUCTIONS[name]
    return whole, "", rest


def covered_now(parsed, whole: bool) -> list:
    """Return what a summary written at the buffer's end covers: the messages since the last summary (WHOLE: all)."""
    live = [s for s in parsed.summaries if s.live]
    # With summaries, the first message is always the system one: it holds them.
    system = parsed.summaries or parsed.messages and parsed.messages[0].role == "system"
    pending = parsed.messages[1:] if system else parsed.messages
    return (live + pending) if whole else pending


def material(covered, preset: str) -> str:
    """Return the text the model summarises: COVERED, a chat's messages each under its speaker's name."""
    if preset == "story":
        return "\n\n".join(part.content for part in covered)
    names = {"user": "User", "assistant": "Assistant", "summary": "Summary of what came before"}
    return "\n\n".join(f"{names.get(part.role, part.role)}: {part.content}" for part in covered)


def summary_request(parsed, request, covered, whole: bool, given: str):
    """Return the request that asks for a summary of COVERED, under the buffer's API, headers and keys."""
    from illume import jsonwire
    from illume.request import Request

    _, preset, asked = instruction(given)
    if not whole:
        earlier = [s for s in parsed.summaries if s.live]
        if earlier:
            asked += ("\n\nFor reference only, a summary of what came before the part to summarize:\n\n"
                      + "\n\n".join(s.text for s in earlier))
    body = {key: value for key, value in request.body.items() if key not in ("messages", "stream")}
    body["messages"] = [jsonwire.Ordered(role="system", content=asked),
                        jsonwire.Ordered(role="user", content=material(covered, preset or "chat"))]
    body["stream"] = True
    return Request(url=request.url, body=body, headers=request.headers, mode=request.mode)


def heading(covered, whole: bool) -> str:
    """Return the `!summary` line illume writes for a summary of COVERED."""
    return f"!summary {'all ' if whole else ''}{checksum(covered)}"


def answer(question, out) -> int:
    """Write on OUT the `!summary` block for what QUESTION's buffer holds since its last summary; return the status."""
    from illume import buffer as buf
    from illume.errors import Exit

    parsed, request = question.parsed, question.request
    if request.mode != buf.CHAT:
        raise IllumeError("!summarize: summaries are for chats; a completion or an infill sends its text whole")
    whole, _, _ = instruction(parsed.summarize_with)
    covered = covered_now(parsed, whole)
    if not [part for part in covered if part.role != "summary"] and not (whole and len(covered) > 1):
        raise IllumeError("!summarize: nothing to summarise since the last summary")
    asked = summary_request(parsed, request, covered, whole, parsed.summarize_with)
    if parsed.debug:
        out.write(asked.debug_text())
        out.notes(stale_notes(parsed, dry=True))
        return Exit.OK
    if request.url.startswith(buf.INVALID_URL):
        raise IllumeError("no API URL: set one with !api URL or load a profile (for example !profile llama.cpp)")
    stream(asked, out, question, "\n\n" + heading(covered, whole) + "\n\n")
    out.notes(stale_notes(parsed))
    return Exit.OK


def stream(asked, out, question, header: str) -> None:
    """Stream the reply to ASKED onto OUT after HEADER, as a reply is written (escaped: it never acts as a directive)."""
    from illume.backends import for_request
    from illume.escape import first_lines
    from illume.output import Times, write_reply
    from illume.reply import Reply

    backend = for_request(asked, question.env, question.options.timeout)
    reply = Reply()
    lines = first_lines(header) if question.ending is None else \
        first_lines(header, question.ending, question.options.filter)
    write_reply(backend.stream(asked, reply), reply, out, Times(), header, lines=lines)


# --- `!fit summarize` ----------------------------------------------------

# A summary that `!fit summarize` asks for gets at most this share of the
# context (1/8): it must leave room for the story it stands beside.
SUMMARY_SHARE = 8
# Rounds of summarising before a turn gives up: each round summarises the
# oldest messages that must go (or the summaries, when they are what is
# too long), and a long story pasted in at once may take several.
MAX_ROUNDS = 16


class HeldEcho:
    """Standard output in `--filter` mode while `!fit summarize` may still insert a block into the echoed buffer.

    The buffer's bytes go out, with what was inserted, at the first write
    or flush: before a reply, a note or an error alike, so no word is lost.
    """

    def __init__(self, stream, raw: bytes):
        self.stream = stream
        self.held: bytes | None = raw

    def insert(self, at: int, data: bytes) -> None:
        self.held = self.held[:at] + data + self.held[at:]

    def release(self) -> None:
        if self.held is not None:
            held, self.held = self.held, None
            self.stream.write(held)

    def write(self, data: bytes) -> int:
        self.release()
        return self.stream.write(data)

    def flush(self) -> None:
        self.release()
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()


def echo(stdout, raw: bytes):
    """Return where `--filter` writes after echoing RAW: STDOUT, or a HeldEcho when the buffer may get a summary."""
    if b"!fit summarize" in raw:
        return HeldEcho(stdout, raw)
    stdout.write(raw)
    stdout.flush()
    return stdout


def fit(question, out, text: str):
    """Return QUESTION, or the question of TEXT with `!summary` blocks inserted until its turn fits the context.

    Each round counts the prompt (as `!fit` does); when it does not fit, the
    oldest messages that must go are summarised and the block goes in
    where they end (`!summary all`, summarising the summaries too, when
    even those are too long). With `--filter` the blocks go into the
    echoed buffer; in a plain pipe, where illume can only append, nothing
    is sent and the error says what to run instead. Without counts
    (another API) QUESTION as it is: `!fit` then says why.
    """
    from illume import counting, tokens
    from illume.answer import prepare

    for _ in range(MAX_ROUNDS):
        parsed, request = question.parsed, question.request
        try:
            counter = counting.counter_for(request, question.env, question.options.timeout)
        except tokens.Uncountable:
            return question
        try:
            whole = counting.measure(counter, parsed, request)
            if whole.fits():
                return question
            covered, whole_cover = _must_go(parsed, whole)
        except tokens.Uncountable:
            return question
        finally:
            counter.close()
        line = _insertion_line(parsed, covered, text)
        if not isinstance(out.stream, HeldEcho):
            first = covered[0].first_line() if isinstance(covered[0], Summary) else covered[0].line
            raise counting.ContextTooLong(
                f"the prompt is {whole.total:,} tokens, the context {whole.context:,} less {whole.reply:,} for the "
                f"reply: !fit summarize must first summarise lines {first}-{line - 1}, and illume only appends "
                f"here; run `illume --filter` on the buffer (it inserts the !summary block at line {line}), "
                "or use !fit alone to leave them out")
        block = _written(question, parsed, request, covered, whole_cover, whole.context)
        at = _offset(text, line)
        text = text[:at] + block + text[at:]
        out.stream.insert(len(text[:at].encode("utf-8", "surrogateescape")), block.encode("utf-8", "surrogateescape"))
        question = prepare(text, question.env, question.options)
    raise counting.ContextTooLong(f"!fit summarize: the turn still does not fit after {MAX_ROUNDS} summaries")


def _must_go(parsed, whole) -> tuple[list, bool]:
    """Return what the next summary covers (the oldest messages that must go, or all), and whether it is `all`."""
    from illume import counting, tokens

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
        raise counting.ContextTooLong(tokens.too_long(whole))
    return live + pending[: max(last - offset, 0)], True


def _insertion_line(parsed, covered, text: str) -> int:
    """Return the buffer line before which the summary of COVERED goes: the role line of the message after it."""
    pending = covered_now(parsed, False)
    messages = [part for part in covered if not isinstance(part, Summary)]
    after = pending[len(messages)] if len(messages) < len(pending) else None
    if after is None or after.line is None:
        raise IllumeError("!fit summarize: found no place for the summary (the last message must stay)")
    return after.line


def _offset(text: str, line: int) -> int:
    """Return where LINE (1-based) begins in TEXT."""
    at = 0
    for _ in range(line - 1):
        at = text.index("\n", at) + 1
    return at


def _written(question, parsed, request, covered, whole: bool, context: int) -> str:
    """Return the `!summary` block the model writes for COVERED, as it goes into the buffer (escaped)."""
    import io

    from illume.output import Output

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
    stream(asked, Output(written, question.secrets), _Placed(question), header)
    return written.getvalue().decode("utf-8", "surrogateescape") + "\n\n"


class _Placed:
    """QUESTION as `stream` sees it for a block of its own lines: nothing before it on its first line."""

    def __init__(self, question):
        self.env, self.options, self.ending = question.env, question.options, None


def token_notes(parsed, request, env, timeout: float) -> str:
    """Return the `!note` lines of `!debug tokens` on each summary: what it covers, its tokens, the tokens it saves.

    Counted with the model's own tokenizer, each text on its own (the chat
    template's tokens around a covered message are not in its figure).
    "" without counts: the breakdown above already says why.
    """
    from illume import counting, tokens
    from illume.output import note_line

    try:
        counter = counting.counter_for(request, env, timeout)
    except tokens.Uncountable:
        return ""
    try:
        notes = []
        for summary in parsed.summaries:
            own = len(counter.pieces(summary.text, special=False))
            covered = sum(len(counter.pieces(part.content, special=False)) for part in summary.covered)
            state = "sent" if summary.live else "within a later summary"
            notes.append(note_line(f"the summary at line {summary.line} ({state}) covers {summary.lines()}: "
                                   f"{covered:,} tokens as written, {own:,} as summarised, {covered - own:,} saved"))
    except tokens.Uncountable:
        return ""
    finally:
        counter.close()
    return "".join(note + "\n" for note in notes)
