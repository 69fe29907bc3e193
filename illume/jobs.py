"""The command line of the jobs on plain text: `--rewrite`, `--review`, `--apply` (docs/rewrite.md).

`illume.cli` hands these flags here: this module checks what goes with
what and calls the job. A rewrite keeps its promise even for a command
line that is wrong: `:'<,'>!illume --rewrite --bad-option` in Vim must not
replace the selection with nothing, so when `--rewrite` is on the command
line a usage error prints standard input back too (`main_rewriting`).
"""

import os
import sys
from collections.abc import Mapping, Sequence

import click

from illume.errors import Exit, Interrupted


def rewriting(argv: Sequence[str]) -> bool:
    """Return whether the command line ARGV (without the program) asks for a rewrite."""
    options = argv[: list(argv).index("--")] if "--" in argv else argv
    return "--rewrite" in options


def main_rewriting(command) -> None:
    """Run COMMAND as `illume --rewrite ...`: a usage error prints standard input back before it is said."""
    try:
        status = command.main(standalone_mode=False)
    except click.ClickException as e:
        _give_back_stdin()
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        sys.exit(Exit.SIGINT)
    sys.exit(status or 0)


def _give_back_stdin() -> None:
    try:
        data = sys.stdin.buffer.read()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except (OSError, ValueError, KeyboardInterrupt, Interrupted):
        pass


def run(args: Sequence[str], profiles: Sequence[str], rewrite: bool, review: bool, apply: bool, stream: bool,
        debug: bool, timeout: float, file_name: str | None, others: Mapping[str, object]) -> int:
    """Run the job the flags ask for; return the exit status. Raises click.UsageError for a wrong command line."""
    chosen = [name for name, on in (("--rewrite", rewrite), ("--review", review), ("--apply", apply)) if on]
    if len(chosen) > 1:
        raise click.UsageError(f"{chosen[0]} and {chosen[1]} go one at a time")
    if not chosen:
        raise click.UsageError("--stream goes with --rewrite")
    job = chosen[0]
    if stream and job != "--rewrite":
        raise click.UsageError(f"--stream goes with --rewrite, not {job}")
    for name, value in others.items():
        if value:
            raise click.UsageError(f"{name} does not go with {job}")
    stdout, stderr = sys.stdout.buffer, sys.stderr.buffer
    if job == "--rewrite":
        from illume import rewrite as rewriter

        raw = _read_stdin()
        return rewriter.main(raw, " ".join(args), profiles, os.environ, timeout, debug, stream, stdout, stderr)
    if job == "--review":
        from illume import review as reviewer

        return reviewer.main(list(args), _after_double_dash(args), profiles, os.environ, timeout, debug,
                             file_name, stdout, stderr)
    from illume import apply as applier

    if profiles or debug:
        raise click.UsageError("--apply sends nothing to a model: no --profile or --debug")
    return applier.main(list(args), stderr)


def _read_stdin() -> bytes:
    try:
        return sys.stdin.buffer.read()
    except KeyboardInterrupt:
        sys.exit(Exit.SIGINT)
    except Interrupted as e:  # nothing read yet that could be given back
        sys.exit(e.status)


def _after_double_dash(args: Sequence[str]) -> int | None:
    """Return how many of ARGS came after a `--` on the command line, or None when there was none."""
    argv = sys.argv[1:]
    if "--" not in argv:
        return None
    return min(len(argv) - argv.index("--") - 1, len(args))
