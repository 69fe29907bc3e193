"""Writing summaries: `!summarize`, `--summarize`, and what `!debug` says of summaries (docs/buffer.md, "Summaries").

The `!summary` blocks themselves, and what each stands in for, are the
parser's (illume.summary_blocks); `!fit summarize` is illume.summary_fit's.
The model is asked with the buffer's API, headers and keys, under an
instruction from the profile or the buffer (`!summarize story`), and its
summary is written as a reply is: escaped, it never acts as a directive.
"""

from illume import buffer as buf
from illume import jsonwire, usage
from illume.backends import counter_for, for_request
from illume.errors import Exit, IllumeError
from illume.escape import first_lines
from illume.output import Times, note_line, write_reply
from illume.reply import Reply
from illume.request import Request
from illume.stats import reply_notes
from illume.summary_blocks import Summary, checksum
from illume.tokens import Uncountable

# What the model is asked, by `!summarize story`, `!summarize chat` or by
# default, as the last user message of the chat it summarises; {scope}
# says which part. Any other argument of `!summarize` is the instruction
# itself, sent as it is.
INSTRUCTIONS = {
    "story": (
        "Pause the story here. Write a summary of the story{scope}, for the writer who will continue it "
        "without the text: what happens, in order; every named character, who they are and what they want; "
        "the places, objects and promises that matter later; and where it stops. Plain prose, past tense, "
        "at most 200 words. Write nothing but the summary."),
    "chat": (
        "Pause the conversation here. Write a summary of the conversation{scope}, so that it can go on "
        "without its text: what was asked, the answers and decisions reached, the facts, names, numbers and "
        "code identifiers that matter, and what is still open. At most 200 words. Write nothing but the summary."),
}
DEFAULT = "chat"
# {scope}: all of it, since the summaries already in the system prompt, or all of it with them.
SCOPES = {"all": " so far", "since": " since the summaries in the system prompt (they cover what came before: "
          "do not repeat them)", "with": " so far, the summaries in the system prompt included"}


def instruction(given: str) -> tuple[bool, str, str]:
    """Return from a `!summarize` argument: whether it asks for `all`, the preset's name (or ""), the instruction.

    A preset's instruction still holds its {scope}.
    """
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


def summary_request(parsed, request, covered, whole: bool, given: str) -> Request:
    """Return the request that asks for a summary of COVERED, under the buffer's API, headers and keys.

    It is the chat itself up to the end of what is covered (the system
    prompt, with the summaries at its end, then the covered messages, as
    the turn before sent them), then the instruction as a user message: a
    prompt cache that holds the turn before evaluates little more than
    the instruction. After a user message the instruction joins it, as
    chat templates that want the roles to alternate (Gemma's) require.
    """
    _, preset, asked = instruction(given)
    if preset:
        earlier = any(s.live for s in parsed.summaries)
        asked = asked.format(scope=SCOPES["with" if whole and earlier else "since" if earlier else "all"])
    chat = request.body["messages"]
    system = 1 if chat and chat[0]["role"] == "system" else 0
    messages = list(chat[: system + sum(1 for part in covered if not isinstance(part, Summary))])
    if messages and messages[-1]["role"] == "user":
        messages[-1] = jsonwire.Ordered(role="user", content=f"{messages[-1]['content']}\n\n{asked}")
    else:
        messages.append(jsonwire.Ordered(role="user", content=asked))
    body = {key: value for key, value in request.body.items() if key not in ("messages", "stream")}
    body["messages"] = messages
    body["stream"] = True
    return Request(url=request.url, body=body, headers=request.headers, mode=request.mode)


def heading(covered, whole: bool) -> str:
    """Return the `!summary` line illume writes for a summary of COVERED."""
    return f"!summary {'all ' if whole else ''}{checksum(covered)}"


def answer(question, out) -> Exit:
    """Write on OUT the `!summary` block for what QUESTION's buffer holds since its last summary; return the status."""
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
        raise IllumeError(buf.NO_API_URL)
    reply, times = stream(asked, out, question, "\n\n" + heading(covered, whole) + "\n\n")
    out.notes(stale_notes(parsed))
    if parsed.stats:
        for note in reply_notes(parsed, times, reply):
            out.notes(note)
        question.usage = usage.of_reply(reply)  # a batch run adds them up
    return Exit.OK


def stream(asked, out, question, header: str) -> tuple[Reply, Times]:
    """Stream the reply to ASKED onto OUT after HEADER, as a reply is written (escaped: it never acts as a directive).

    Return the reply and its times, for `!stats`.
    """
    backend = for_request(asked, question.env, question.options.timeout)
    reply, times = Reply(), Times()
    lines = first_lines(header) if question.ending is None else \
        first_lines(header, question.ending, question.options.filter)
    write_reply(backend.stream(asked, reply), reply, out, times, header, lines=lines)
    return reply, times


def stale_notes(parsed, dry: bool = False) -> str:
    """Return the `!note` lines about PARSED's stale summaries ("" when none is): after a reply, or DRY after `!debug`."""
    notes = [note_line(f"the summary at line {s.line} is stale: the text it covers ({s.lines()}) changed after "
                       f"it was written; write it again (!summarize), or edit it and delete its {s.checksum}")
             for s in parsed.summaries if s.stale()]
    if not notes:
        return ""
    return "\n".join(notes) + "\n" if dry else "\n\n" + "\n".join(notes)


def token_notes(parsed, request, env, timeout: float) -> str:
    """Return the `!note` lines of `!debug tokens` on each summary: what it covers, its tokens, the tokens it saves.

    Counted with the model's own tokenizer, each text on its own (the chat
    template's tokens around a covered message are not in its figure).
    "" without counts: the breakdown above already says why.
    """
    try:
        counter = counter_for(request, env, timeout)
    except Uncountable:
        return ""
    try:
        notes = []
        for summary in parsed.summaries:
            own = len(counter.pieces(summary.text, special=False))
            covered = sum(len(counter.pieces(part.content, special=False)) for part in summary.covered)
            state = "sent" if summary.live else "within a later summary"
            notes.append(note_line(f"the summary at line {summary.line} ({state}) covers {summary.lines()}: "
                                   f"{covered:,} tokens as written, {own:,} as summarised, {covered - own:,} saved"))
    except Uncountable:
        return ""
    finally:
        counter.close()
    return "".join(note + "\n" for note in notes)
