"""The command line: `illume [FILE]`, a unix filter.

Reads the buffer, answers it (`illume.answer`) and is the edge where every
failure becomes the `!error` section and an exit status. `--batch` hands
its files to `illume.batch`.
"""

import os
import signal
import sys
from collections.abc import Mapping
from typing import BinaryIO

import click

from illume import __version__
from illume.answer import DEFAULT_TIMEOUT, Options, answer, prepare
from illume.errors import Exit, IllumeError, Interrupted
from illume.output import HeldEcho, Output, unexpected

# An editor starts this process on every request: `--batch`'s module and the
# stopping rules (with their language tables) are imported only when asked for.


def _raise_interrupted(signum, frame):
    # A second signal (Vim may send one after the other) must not break into
    # the handling of the first: the note and the exit status still follow.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Interrupted(Exit.SIGTERM if signum == signal.SIGTERM else Exit.SIGINT)


def run(raw: bytes, stdout: BinaryIO, env: Mapping[str, str], options: Options) -> int:
    """Answer the buffer RAW on STDOUT, every failure reported there too; return the exit status."""
    out = Output(stdout)  # no secrets known before the buffer is read
    try:
        echo = HeldEcho(stdout, raw) if options.filter else None  # `!fit summarize` may insert summaries into it
        if echo is not None:
            stdout = echo
            out = Output(stdout)

        def read(parsed) -> None:
            if echo is not None and not parsed.fit_summarize:
                echo.flush()  # the buffer as it came, once read: before a template renders or a request goes

        # Invalid UTF-8 is kept as surrogate escapes, to go out as Go sends it (jsonwire).
        text = raw.decode("utf-8", "surrogateescape")
        del raw  # a big buffer's bytes need not stay for the whole reply
        question = prepare(text, env, options, read)
        del text
        out = Output(stdout, question.secrets)
        status = answer(question, out)
        out.finish()
        return status
    except IllumeError as e:
        out.error(str(e))
        return Exit.ERROR
    except Interrupted as e:
        out.interrupted()
        return e.status
    except KeyboardInterrupt:
        out.interrupted()
        return Exit.SIGINT
    except BrokenPipeError:
        return Exit.ERROR
    except Exception as e:  # a bug of ours: still no traceback, still the user's text intact
        out.error(unexpected(e) + " (please report this)")
        return Exit.ERROR


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
# Not a click.Path: with --rewrite and --review the arguments are an instruction's words too (checked below).
@click.argument("files", nargs=-1, metavar="[FILE]...")
@click.option("-p", "--profile", "profiles", metavar="NAME", multiple=True,
              help="Profile to load when the buffer loads none (as $ILLUME_PROFILE); with --rewrite and --review, "
                   "one more profile for the job, and it may be given again.")
@click.option("--debug", is_flag=True, help="Dry run: print the request instead of sending it (as !debug).")
@click.option("--filter", "filter_", is_flag=True,
              help="Print the buffer itself before the reply, so `:%!illume --filter` never loses text.")
@click.option("--timeout", type=float, envvar="ILLUME_TIMEOUT", default=DEFAULT_TIMEOUT, show_default=True,
              metavar="SECONDS", help="Give up when the server sends nothing for this long ($ILLUME_TIMEOUT).")
@click.option("--stop-rules", metavar="RULES", callback=lambda ctx, param, value: _check_rules(value),
              help="Infill stopping rules when the buffer sets none (as !stop-rules: all, none, echo,scope,...).")
@click.option("--file-name", metavar="NAME",
              help="The name of the file the buffer is edited as: tells infill its language (never opened).")
@click.option("--summarize", is_flag=True,
              help="Write a !summary block of the buffer since its last summary instead of a reply (as !summarize).")
@click.option("--summaries-file", metavar="PATH",
              help="For editors: write the !summary blocks that !fit summarize would insert into the buffer to "
                   "PATH (their lines, then the blocks), and stream the reply as usual.")
@click.option("--batch", is_flag=True,
              help="Answer each FILE on its own, several at once, appending each reply to its file.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), metavar="N",
              help="With --batch: how many buffers to answer at once (default 4).")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False), metavar="DIR",
              help="With --batch: write each reply to DIR/NAME instead of appending it to NAME.")
@click.option("--skip-done", is_flag=True, help="With --batch: skip the buffers that already end with a reply.")
@click.option("--rewrite", is_flag=True,
              help="Rewrite standard input as INSTRUCTION (the arguments) says; print only the new text. "
                   "On any failure the input is printed back unchanged, the error goes to standard error "
                   "and the exit status is not 0.")
@click.option("--review", is_flag=True,
              help="Review FILEs (standard input when none) as INSTRUCTION says; print suggestions as "
                   "FILE:LINE:COL: \"QUOTE\" -> \"REPLACEMENT\": MESSAGE, each quote found in the file.")
@click.option("--apply", "apply_", is_flag=True,
              help="Apply the suggestions of --review that FILE (standard input when none) holds, "
                   "each file whole or not at all.")
@click.option("--stream", is_flag=True,
              help="With --rewrite: print the new text as it comes; on failure print nothing more (for editors).")
@click.version_option(__version__, "-V", "--version", prog_name="illume")
def command(files, profiles, debug, filter_, timeout, stop_rules, file_name, summarize, summaries_file, batch,
            jobs, output_dir, skip_done, rewrite, review, apply_, stream):
    """Send a buffer (FILE or standard input) to a language model and stream its reply to standard output.

    Lines such as !user, !assistant, !completion, !infill, !api URL, !:KEY JSON
    and !>HEADER VALUE in the buffer say who speaks and how to call the model.

    With --batch, answer every FILE as `illume < FILE >> FILE` would, several at once.

    \b
    Jobs on plain text (docs/rewrite.md), the arguments being the INSTRUCTION:
      illume --rewrite 'fix the grammar' < in.txt > out.txt
      illume --rewrite --profile translate 'into French' < mail.txt
      illume --review [INSTRUCTION] [--] FILE... > suggestions.txt
      illume --apply suggestions.txt
    A rewrite that fails prints its input back, byte for byte, so that
    `:'<,'>!illume --rewrite ...` never loses the selection.
    """
    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGINT, _raise_interrupted)
    if rewrite or review or apply_ or stream:
        from illume import jobs as text_jobs

        sys.exit(text_jobs.run(files, profiles, rewrite=rewrite, review=review, apply=apply_, stream=stream,
                               debug=debug, timeout=timeout, file_name=file_name,
                               others={"--filter": filter_, "--batch": batch, "--jobs": jobs,
                                       "--output-dir": output_dir, "--skip-done": skip_done,
                                       "--stop-rules": stop_rules, "--summarize": summarize,
                                       "--summaries-file": summaries_file}))
    context = click.get_current_context()
    param = next(p for p in context.command.params if p.name == "files")
    files = tuple(_PATH.convert(name, param, context) for name in files)
    profile = profiles[-1] if profiles else None  # given twice, the last one, as click takes a single value
    options = Options(profile=profile, debug=debug, filter=filter_, timeout=timeout,
                      stop_rules=stop_rules, file_name=file_name, summarize=summarize,
                      summaries_file=summaries_file)
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


_PATH = click.Path(dir_okay=False, allow_dash=True)


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
        sys.exit(Exit.SIGINT)
    except Interrupted as e:  # while reading the buffer: nothing to keep yet
        sys.exit(e.status)


def main() -> None:
    from illume.jobs import rewriting

    if rewriting(sys.argv[1:]):
        from illume.jobs import main_rewriting

        main_rewriting(command)
    command()
