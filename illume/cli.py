"""The command line: `illume [FILE]`, a unix filter.

`program` is the main program without error handling: it takes its input,
output and environment as arguments and raises IllumeError. `run` is the
edge where every error becomes the `!error` section and an exit status.
"""

import os
import re
import signal
import sys
from collections.abc import Mapping
from typing import BinaryIO

import click

from illume import __version__
from illume.errors import IllumeError, StreamError

EXIT_OK, EXIT_ERROR, EXIT_SIGINT, EXIT_SIGTERM = 0, 1, 130, 143
DEFAULT_TIMEOUT = 300.0


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; the status to exit with."""

    def __init__(self, status: int):
        self.status = status


class Options:
    """The command-line options that shape one run."""

    def __init__(self, profile: str | None = None, debug: bool = False, filter: bool = False,
                 timeout: float = DEFAULT_TIMEOUT, stop_rules: str | None = None, file_name: str | None = None):
        self.profile = profile
        self.debug = debug
        self.filter = filter
        self.timeout = timeout
        self.stop_rules = stop_rules  # infill stopping rules when the buffer sets none (!stop-rules wins)
        self.file_name = file_name  # the name the buffer is edited under: a hint for the language, never opened


class Output:
    """Standard output, flushed after every piece so an editor shows it live."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream
        self.secrets: list[str] = []  # values to mask in anything printed about a failure

    def write(self, text: str) -> None:
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            try:
                # Bytes of the user's own that were not UTF-8 go back out as they came.
                data = text.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                # A lone surrogate from a reply's JSON ("\ud800"): U+FFFD, as Go's decoder gives.
                data = _LONE_SURROGATE.sub("\ufffd", text).encode("utf-8")
        self.stream.write(data)
        self.stream.flush()


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def program(text: str, out: Output, env: Mapping[str, str], options: Options) -> int:
    """Answer the buffer TEXT on OUT; return the exit status. Raises IllumeError."""
    from illume import buffer as buf
    from illume import request as req

    parsed = buf.parse(text, buf.Sources(env), default_profile=options.profile)
    if options.debug:
        parsed.debug = True
    request = req.build(parsed, env)
    if parsed.branches > 1:
        from illume import branches

        request = branches.first_request(parsed, request)
    from illume.headers import proxy_secrets

    out.secrets = parsed.headers.secrets() + proxy_secrets(env)
    if parsed.debug:
        out.write(request.debug_text())
        return EXIT_OK
    if request.url.startswith(buf.INVALID_URL):
        raise IllumeError("no API URL: set one with !api URL or load a profile (for example !profile llama.cpp)")
    if parsed.branches > 1:
        return branches.answer(parsed, request, out, env, options.timeout)

    from illume.backends import for_request
    from illume.reply import GptOss, Reply

    backend = for_request(request, env, options.timeout)
    reply = Reply()
    translate = GptOss() if parsed.gpt_oss else None
    guard = _infill_guard(parsed, options) if request.mode == buf.INFILL else None
    stream = backend.stream(request, reply)
    try:
        next(stream)  # the request was accepted
        if request.mode == buf.CHAT:
            out.write("\n\n!assistant\n\n" + parsed.prepend)
        for text in stream:
            if translate:
                text = translate.feed(text)
            if guard:
                text = guard.feed(text)
            out.write(text)
            if guard and guard.stopped:
                break  # the middle left its hole; closing the stream stops the server
    finally:
        stream.close()  # on a stop or an interrupt: the server stops generating
        held = translate.finish() if translate else ""  # text held back for a token, even before an error
        if guard:
            held = guard.feed(held) + guard.finish()
        out.write(held)
    if not (guard and guard.stopped):
        _check_ending(reply)
    out.write(_after_reply(reply))
    if parsed.stats:
        from illume.stats import cache_note, note

        out.write(note(reply.events, backend.answered - backend.started, backend.ended - backend.answered)
                  + cache_note(reply))
    return EXIT_OK


# Off unless the buffer asks (`!stop-rules all`, `!stop-rules echo,scope`):
# the original prints every byte of the middle, and buffers and scripts that
# rely on that keep getting it.
DEFAULT_STOP_RULES = frozenset()


def _infill_guard(parsed, options):
    """Return the guard that ends an infill middle once it leaves its hole, or None when turned off."""
    from illume.stopping import InfillGuard, parse_rules

    chosen = parsed.stop_rules if parsed.stop_rules is not None else options.stop_rules
    rules = DEFAULT_STOP_RULES if chosen is None else parse_rules(chosen)
    if not rules:
        return None
    prefix, suffix = parsed.hole()
    # The buffer's own word first, then the file the editor has open, then a !context file before the hole.
    hint = parsed.language or options.file_name or (
        parsed.infill_files[-1]["filename"] if parsed.infill_files else None)
    return InfillGuard(prefix, suffix, rules=rules, language=hint)


def _check_ending(reply) -> None:
    """Raise StreamError when the reply ended before its end marker."""
    if not reply.finished:
        raise StreamError("the reply was cut off: the stream ended before its end marker")


def _after_reply(reply) -> str:
    """Return the notes that follow a whole reply: skipped malformed events, a stop at the token limit."""
    notes = ""
    if reply.malformed:
        # The original skips them without a word; a note keeps them from passing unseen.
        notes += f"\n\n!note skipped {len(reply.malformed)} malformed event(s) from the server, " \
                 f"first: {reply.malformed[0]}"
    if reply.limit:
        notes += f"\n\n!note the reply stopped at {reply.limit} (raise !:max_tokens for more)"
    notes += "".join(f"\n\n!note {note}" for note in reply.notes)
    return notes


def _scrub(message: str, secrets: list[str]) -> str:
    from illume.headers import mask

    for secret in secrets:
        message = message.replace(secret, mask(secret))
    return message


def _error_section(message: str) -> str:
    """Return the `!error` section for MESSAGE, its later lines unable to act as directives.

    The section goes back to illume with the buffer on the next turn; a line
    of a server's error body such as `!api URL` must stay text there, so it
    gets the `!!` escape (SPEC A2), and text inside `!error` is never sent.
    """
    first, *rest = message.split("\n")
    rest = ["!" + line if line.startswith("!") else line for line in rest]
    return "\n\n!error\n\n" + "\n".join([first, *rest]) + "\n"


def _raise_interrupted(signum, frame):
    # A second signal (Vim may send one after the other) must not break into
    # the handling of the first: the note and the exit status still follow.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Interrupted(EXIT_SIGTERM if signum == signal.SIGTERM else EXIT_SIGINT)


def run(raw: bytes, stdout: BinaryIO, env: Mapping[str, str], options: Options) -> int:
    """Run the program on RAW with every failure reported on STDOUT; return the exit status."""
    out = Output(stdout)
    try:
        if options.filter:
            stdout.write(raw)
            stdout.flush()
        # Invalid UTF-8 is kept as surrogate escapes, to go out as Go sends it (jsonwire).
        text = raw.decode("utf-8", "surrogateescape")
        del raw  # a big buffer's bytes need not stay for the whole reply
        return program(text, out, env, options)
    except IllumeError as e:
        out.write(_error_section(_scrub(str(e), out.secrets)))
        return EXIT_ERROR
    except Interrupted as e:
        out.write("\n\n!note interrupted\n")
        return e.status
    except KeyboardInterrupt:
        out.write("\n\n!note interrupted\n")
        return EXIT_SIGINT
    except BrokenPipeError:
        return EXIT_ERROR
    except Exception as e:  # a bug of ours: still no traceback, still the user's text intact
        out.write(_error_section(f"illume failed unexpectedly: {type(e).__name__}: {_scrub(str(e), out.secrets)}"
                                 " (please report this)"))
        return EXIT_ERROR


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("files", nargs=-1, metavar="[FILE]...", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("-p", "--profile", metavar="NAME", help="Profile to load when the buffer loads none (as $ILLUME_PROFILE).")
@click.option("--debug", is_flag=True, help="Dry run: print the request instead of sending it (as !debug).")
@click.option("--filter", "filter_", is_flag=True,
              help="Print the buffer itself before the reply, so `:%!illume --filter` never loses text.")
@click.option("--timeout", type=float, envvar="ILLUME_TIMEOUT", default=DEFAULT_TIMEOUT, show_default=True,
              metavar="SECONDS", help="Give up when the server sends nothing for this long ($ILLUME_TIMEOUT).")
@click.option("--stop-rules", metavar="RULES", callback=lambda ctx, param, value: _check_rules(value),
              help="Infill stopping rules when the buffer sets none (as !stop-rules: all, none, echo,scope,...).")
@click.option("--file-name", metavar="NAME",
              help="The name of the file the buffer is edited as: tells infill its language (never opened).")
@click.option("--batch", is_flag=True,
              help="Answer each FILE on its own, several at once, appending each reply to its file.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), metavar="N",
              help="With --batch: how many buffers to answer at once (default 4).")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False), metavar="DIR",
              help="With --batch: write each reply to DIR/NAME instead of appending it to NAME.")
@click.option("--skip-done", is_flag=True, help="With --batch: skip the buffers that already end with a reply.")
@click.version_option(__version__, "-V", "--version", prog_name="illume")
def command(files, profile, debug, filter_, timeout, stop_rules, file_name, batch, jobs, output_dir, skip_done):
    """Send a buffer (FILE or standard input) to a language model and stream its reply to standard output.

    Lines such as !user, !assistant, !completion, !infill, !api URL, !:KEY JSON
    and !>HEADER VALUE in the buffer say who speaks and how to call the model.

    With --batch, answer every FILE as `illume < FILE >> FILE` would, several at once.
    """
    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGINT, _raise_interrupted)
    options = Options(profile=profile, debug=debug, filter=filter_, timeout=timeout,
                      stop_rules=stop_rules, file_name=file_name)
    if batch:
        from illume import batch as batches

        problem = batches.check(list(files), output_dir, options)
        if problem:
            raise click.UsageError(problem)
        sys.exit(batches.main(list(files), os.environ, options, jobs, output_dir, skip_done))
    for given, name in ((jobs, "--jobs"), (output_dir, "--output-dir"), (skip_done, "--skip-done")):
        if given:
            raise click.UsageError(f"{name} goes with --batch")
    if len(files) > 1:
        raise click.UsageError("several FILEs: answer them one by one with --batch")
    try:
        # Passed on, not kept in a variable here: `run` lets go of the bytes once decoded.
        status = run(_read_buffer(files), sys.stdout.buffer, os.environ, options)
    except Interrupted as e:  # one that came while an error was being printed
        status = e.status
    sys.exit(status)


def _check_rules(value: str | None) -> str | None:
    """Return the --stop-rules VALUE as given ('' meaning none); raise click.BadParameter when unknown."""
    if value is None:
        return None
    if not value.strip():
        return "none"  # an editor passes '' to mean "no rules"
    from illume.stopping import parse_rules

    try:
        parse_rules(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    return value


def _read_buffer(files) -> bytes:
    """Return the buffer: the FILE given, else standard input."""
    try:
        if files and files[0] != "-":
            with open(files[0], "rb") as f:
                return f.read()
        return sys.stdin.buffer.read()
    except OSError as e:
        name = files[0] if files else "<stdin>"
        raise click.BadParameter(f"{name!r}: {e.strerror}", param_hint="'[FILE]...'") from None
    except KeyboardInterrupt:
        sys.exit(EXIT_SIGINT)
    except Interrupted as e:  # while reading the buffer: nothing to keep yet
        sys.exit(e.status)


def main() -> None:
    command()
