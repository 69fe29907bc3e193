"""The command line: `illume [FILE]`, a unix filter.

`program` is the main program without error handling: it takes its input,
output and environment as arguments and raises IllumeError. `run` is the
edge where every error becomes the `!error` section and an exit status.
"""

import os
import signal
import sys
from collections.abc import Mapping
from typing import BinaryIO

import click

from illume import __version__
from illume.errors import IllumeError

EXIT_OK, EXIT_ERROR, EXIT_SIGINT, EXIT_SIGTERM = 0, 1, 130, 143
DEFAULT_TIMEOUT = 300.0


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; the status to exit with."""

    def __init__(self, status: int):
        self.status = status


class Options:
    """The command-line options that shape one run."""

    def __init__(self, profile: str | None = None, debug: bool = False, filter: bool = False,
                 timeout: float = DEFAULT_TIMEOUT):
        self.profile = profile
        self.debug = debug
        self.filter = filter
        self.timeout = timeout


class Output:
    """Standard output, flushed after every piece so an editor shows it live."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream

    def write(self, text: str) -> None:
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            data = text.encode("utf-8", "surrogateescape") if _escaped_only(text) else text.encode("utf-8", "replace")
        self.stream.write(data)
        self.stream.flush()


def _escaped_only(text: str) -> bool:
    try:
        text.encode("utf-8", "surrogateescape")
        return True
    except UnicodeEncodeError:
        return False


def program(raw: bytes, out: Output, env: Mapping[str, str], options: Options) -> int:
    """Answer the buffer RAW on OUT; return the exit status. Raises IllumeError."""
    from illume import buffer as buf
    from illume import request as req

    text = raw.decode("utf-8", "surrogateescape")
    parsed = buf.parse(text, buf.Sources(env), default_profile=options.profile)
    if options.debug:
        parsed.debug = True
    request = req.build(parsed, env)
    out.secrets = parsed.headers.secrets()
    if parsed.debug:
        out.write(request.debug_text())
        return EXIT_OK
    if request.url.startswith(buf.INVALID_URL):
        raise IllumeError("no API URL: set one with !api URL or load a profile (for example !profile llama.cpp)")

    from illume.backends import for_request
    from illume.reply import GptOss, Reply

    backend = for_request(request, env, options.timeout)
    reply = Reply()
    translate = GptOss() if parsed.gpt_oss else None
    stream = backend.stream(request, reply)
    try:
        next(stream)  # the request was accepted
        if request.mode == buf.CHAT:
            out.write("\n\n!assistant\n\n" + parsed.prepend)
        for text in stream:
            out.write(translate.feed(text) if translate else text)
    finally:
        stream.close()  # on a stop or an interrupt: the server stops generating
        if translate:
            out.write(translate.finish())  # text held back for a token, even before an error
    _check_ending(reply)
    if reply.limit:
        out.write(f"\n\n!note the reply stopped at {reply.limit} (raise !:max_tokens for more)")
    if parsed.stats:
        from illume.stats import note

        out.write(note(reply.events, backend.answered - backend.started, backend.ended - backend.answered))
    return EXIT_OK


def _check_ending(reply) -> None:
    from illume.errors import StreamError

    if reply.malformed:
        raise StreamError(f"the server sent {len(reply.malformed)} malformed event(s), first: {reply.malformed[0]}")
    if not reply.finished:
        raise StreamError("the reply was cut off: the stream ended before its end marker")


def _scrub(message: str, secrets: list[str]) -> str:
    from illume.headers import mask

    for secret in secrets:
        message = message.replace(secret, mask(secret))
    return message


def _raise_interrupted(signum, frame):
    raise Interrupted(EXIT_SIGTERM if signum == signal.SIGTERM else EXIT_SIGINT)


def run(raw: bytes, stdout: BinaryIO, env: Mapping[str, str], options: Options) -> int:
    """Run the program on RAW with every failure reported on STDOUT; return the exit status."""
    out = Output(stdout)
    out.secrets = []
    if options.filter:
        stdout.write(raw)
        stdout.flush()
    try:
        return program(raw, out, env, options)
    except IllumeError as e:
        out.write(f"\n\n!error\n\n{_scrub(str(e), out.secrets)}\n")
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
        out.write(f"\n\n!error\n\nillume failed unexpectedly: {type(e).__name__}: {_scrub(str(e), out.secrets)}"
                  " (please report this)\n")
        return EXIT_ERROR


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("file", required=False, type=click.File("rb"))
@click.option("-p", "--profile", metavar="NAME", help="Profile to load when the buffer loads none (as $ILLUME_PROFILE).")
@click.option("--debug", is_flag=True, help="Dry run: print the request instead of sending it (as !debug).")
@click.option("--filter", "filter_", is_flag=True,
              help="Print the buffer itself before the reply, so `:%!illume --filter` never loses text.")
@click.option("--timeout", type=float, envvar="ILLUME_TIMEOUT", default=DEFAULT_TIMEOUT, show_default=True,
              metavar="SECONDS", help="Give up when the server sends nothing for this long ($ILLUME_TIMEOUT).")
@click.version_option(__version__, "-V", "--version", prog_name="illume")
def command(file, profile, debug, filter_, timeout):
    """Send a buffer (FILE or standard input) to a language model and stream its reply to standard output.

    Lines such as !user, !assistant, !completion, !infill, !api URL, !:KEY JSON
    and !>HEADER VALUE in the buffer say who speaks and how to call the model.
    """
    signal.signal(signal.SIGTERM, _raise_interrupted)
    stdin = file or sys.stdin.buffer
    try:
        raw = stdin.read()
    except KeyboardInterrupt:
        sys.exit(EXIT_SIGINT)
    options = Options(profile=profile, debug=debug, filter=filter_, timeout=timeout)
    status = run(raw, sys.stdout.buffer, os.environ, options)
    sys.exit(status)


def main() -> None:
    command()
