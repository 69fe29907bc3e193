"""Answering one buffer: read it, build its request, stream the reply onto an Output.

`prepare` reads the buffer and builds the request; `answer` sends it and
writes the reply. Neither reports a failure: they raise IllumeError (or
Interrupted), and the caller says so in its own way: the command line with
an `!error` section (`illume.cli`), a batch run on stderr (`illume.batch`).
The two steps are apart because the Output is made between them: it needs
the buffer's secrets, to keep them out of whatever it prints.
"""

from collections.abc import Callable, Mapping

from illume import buffer as buf
from illume import request as req
from illume.errors import ContextTooLong, Exit, IllumeError
from illume.headers import proxy_secrets
from illume.output import ASSISTANT, Output, Times, write_reply

# Every run comes here, the `!debug` dry run too (bench/startup.py times it):
# what only a request sent, an infill, `!fit`, `!stats` or `!branches` needs
# is imported where it is needed.

DEFAULT_TIMEOUT = 300.0

# Off unless the buffer asks (`!stop-rules all`, `!stop-rules echo,scope`):
# the original prints every byte of the middle, and buffers and scripts that
# rely on that keep getting it.
DEFAULT_STOP_RULES = frozenset()


class Options:
    """The command-line options that shape one run."""

    def __init__(self, profile: str | None = None, debug: bool = False, filter: bool = False,
                 timeout: float = DEFAULT_TIMEOUT, stop_rules: str | None = None, file_name: str | None = None,
                 summarize: bool = False, summaries_file: str | None = None):
        self.profile = profile
        self.debug = debug
        self.filter = filter
        self.timeout = timeout
        self.stop_rules = stop_rules  # infill stopping rules when the buffer sets none (!stop-rules wins)
        self.file_name = file_name  # the name the buffer is edited under: a hint for the language, never opened
        self.summarize = summarize  # --summarize: as a `!summarize` at the buffer's end
        self.summaries_file = summaries_file  # --summaries-file: where `!fit summarize` puts blocks for an editor


class Question:
    """A buffer read and the request built from it, with what answering it needs."""

    def __init__(self, parsed, request, env: Mapping[str, str], options: Options, secrets: list[str],
                 ending: str = ""):
        self.parsed = parsed
        self.request = request
        self.env = env
        self.options = options
        self.secrets = secrets  # values to mask in anything printed about a failure
        self.ending = ending  # the buffer's last two lines: where a completion goes on (illume.escape)
        self.usage = None  # what the reply used, once answered with `!stats` (illume.usage)
        self.text: str | None = None  # the buffer, kept where `!fit summarize` may insert summaries

    @property
    def concurrent(self) -> bool:
        """Return whether this request may run beside others (false for the embedded model)."""
        from illume.backends import concurrent

        return concurrent(self.request.url)


def prepare(text: str, env: Mapping[str, str], options: Options,
            read: Callable[[buf.Buffer], None] | None = None) -> Question:
    """Return the Question that the buffer TEXT asks. Raises IllumeError.

    READ, when given, is called with the buffer as soon as it is read,
    before its request is built (templates rendered, keys read).
    """
    parsed = buf.parse(text, buf.Sources(env), default_profile=options.profile)
    if read is not None:
        read(parsed)
    if options.debug:
        parsed.debug = True
    parsed.summarize = parsed.summarize or options.summarize
    request = req.build(parsed, env)
    if parsed.branches > 1:
        from illume import branches

        request = branches.first_request(parsed, request)
    ending = text[text.rfind("\n", 0, len(text) - 1) + 1 :]
    question = Question(parsed, request, env, options, request.secrets() + proxy_secrets(env), ending)
    question.text = text if parsed.fit_summarize else None  # where `!fit summarize` inserts summaries
    return question


def answer(question: Question, out: Output) -> Exit:
    """Answer QUESTION on OUT (the reply, or the request for `!debug`); return the exit status.

    Raises IllumeError when there is no reply, or only part of one.
    """
    parsed, request, options = question.parsed, question.request, question.options
    if parsed.summarize:
        from illume import summaries

        return summaries.answer(question, out)
    fitted = None
    if parsed.fit and not request.url.startswith(buf.INVALID_URL):
        from illume import counting

        if parsed.fit_summarize and not parsed.debug:
            from illume import summary_fit

            env, options = question.env, question.options
            question = summary_fit.fit(question, out, question.text, lambda text: prepare(text, env, options))
            parsed, request = question.parsed, question.request

        fitted = counting.fit(parsed, request, question.env, options.timeout)
        request = fitted.request
    if parsed.debug:
        out.write(request.debug_text())
        if parsed.debug_tokens or fitted:
            from illume import counting

            # After the request, so that what the original prints comes first, byte for byte.
            out.notes(counting.debug_notes(fitted.parsed if fitted else parsed, request, question.env,
                                           options.timeout, fitted))
        if parsed.summaries:
            from illume import summaries

            if parsed.debug_tokens:
                out.notes(summaries.token_notes(parsed, request, question.env, options.timeout))
            out.notes(summaries.stale_notes(parsed, dry=True))
        return Exit.OK
    if request.url.startswith(buf.INVALID_URL):
        raise IllumeError(buf.NO_API_URL)
    if parsed.branches > 1:
        from illume import branches

        try:
            branches.answer(parsed, request, out, question.env, options.timeout)
        except ContextTooLong as e:
            raise _explained(e, question, request, fitted) from None
        if fitted:
            out.notes(fitted.note)
        return Exit.OK

    from illume.backends import for_request
    from illume.escape import first_lines
    from illume.reply import GptOss, Reply
    from illume.thinking import for_reply

    backend = for_request(request, question.env, options.timeout)
    header = ASSISTANT + parsed.prepend if request.mode == buf.CHAT else ""
    translate = GptOss() if parsed.gpt_oss else None
    guard = infill_guard(parsed, options) if request.mode == buf.INFILL else None
    reply = Reply()
    times = Times()  # after the guard is made: its parser is no part of the time to the headers
    # A completion goes on from the buffer's end; an infill middle goes into its hole, a line of its own.
    ending = None if request.mode == buf.INFILL and not options.filter else question.ending
    lines = first_lines(header, ending, options.filter)
    # Printed first, a completion or a middle may begin a file (`--batch -o DIR`, a hole on line 1).
    opening = request.mode != buf.CHAT and not options.filter
    try:
        write_reply(backend.stream(request, reply), reply, out, times, header, translate, guard, lines, opening,
                    for_reply(parsed, header))
    except ContextTooLong as e:
        raise _explained(e, question, request, fitted) from None
    if fitted:
        out.notes(fitted.note)
    if parsed.summaries:
        from illume import summaries

        out.notes(summaries.stale_notes(parsed))
    if parsed.stats:
        from illume import usage
        from illume.stats import reply_notes

        for note in reply_notes(parsed, times, reply):
            out.notes(note)
        question.usage = usage.of_reply(reply)  # a batch run adds them up
    return Exit.OK


def _explained(error: ContextTooLong, question: Question, request, fitted) -> ContextTooLong:
    """Return the error for REQUEST refused as too long: its biggest parts named, where the model counts them."""
    from illume import counting

    # Counted only now that the model refused: a prompt that fits costs no extra request.
    parsed = fitted.parsed if fitted else question.parsed
    return counting.explained(error, parsed, request, question.env, question.options.timeout)


def infill_guard(parsed, options: Options):
    """Return the guard that ends an infill middle once it leaves its hole, or None when turned off."""
    from illume.stopping import InfillGuard, parse_rules

    chosen = parsed.stop_rules if parsed.stop_rules is not None else options.stop_rules
    rules = DEFAULT_STOP_RULES if chosen is None else parse_rules(chosen)
    if not rules:
        return None
    prefix, suffix = parsed.hole()
    # Strongest first: the buffer's own word, the file the editor has open, a
    # !context file before the hole. One that names no language falls through.
    hints = [parsed.language, options.file_name, parsed.infill_files[-1]["filename"] if parsed.infill_files else None]
    return InfillGuard(prefix, suffix, rules=rules, language=hints)
