"""`illume --rewrite [INSTRUCTION]`: the text on standard input, rewritten, alone on standard output.

The promise (docs/rewrite.md): whatever fails, the text is not lost. On
any error, standard output gets the input back byte for byte, the error
goes to standard error as `illume: MESSAGE` and the exit status is 1
(130 or 143 after SIGINT or SIGTERM). So `:'<,'>!illume --rewrite ...` in
Vim leaves the selection as it was when the model cannot be reached.
With `--stream` (for editors, which keep the old text themselves) the new
text is printed as it comes, and a failure prints nothing more.

A text too long for one request is split at paragraph boundaries (blank
lines) into parts, each rewritten with some of the text before and after
it as read-only context; a paragraph too long even alone is refused with
the token counts. The sizes come from the model's own tokenizer
(illume.counting); a model that cannot count (another API) gets the whole
text in one request, and its own refusal if it is too long.
"""

import signal
from collections.abc import Mapping, Sequence
from typing import BinaryIO

from illume import job
from illume.errors import Exit, IllumeError, Interrupted
from illume.parts import Part, plan

ONE_PART = "Rewrite this text:"
PART_NOTE = ("This is one part of a longer text. Rewrite only the part between the fences marked PART; "
             "the text before and after it is there for context only: do not rewrite it, do not repeat it.")


def main(raw: bytes, instruction: str, profile_names: Sequence[str], env: Mapping[str, str], timeout: float,
         debug: bool, stream: bool, stdout: BinaryIO, stderr: BinaryIO) -> int:
    """Rewrite the text RAW onto STDOUT (RAW itself on any failure, but with STREAM); return the exit status."""
    from illume.output import Output

    text = raw.decode("utf-8", "surrogateescape")
    secrets: list[str] = []
    out = Output(stdout)
    printed = False  # with STREAM: whether any new text went out
    try:
        if not text.strip():
            stdout.write(raw)  # nothing to rewrite
            return Exit.OK
        parsed = job.settings("rewrite", "rewrite", profile_names, env)
        if not instruction and not job.adds_text(profile_names, env):
            raise IllumeError("--rewrite needs an INSTRUCTION or a job profile (for example --profile proofread)")
        requests = [(part, job.request_for(parsed, message(instruction, text, part), env))
                    for part in plan(text, lambda part: message(instruction, text, part), parsed, env, timeout)]
        from illume.headers import proxy_secrets

        secrets = [s for _, r in requests for s in r.secrets()] + proxy_secrets(env)
        if debug or parsed.debug:
            Output(stdout, secrets).write("".join(r.debug_text() for _, r in requests))
            return Exit.OK
        if stream:
            for part, request in requests:
                unwrapper = _unwrapper(text, part)

                def show(piece: str, unwrapper=unwrapper) -> None:
                    nonlocal printed
                    shown = unwrapper.feed(piece)
                    if shown:
                        out.write(shown)
                        printed = True

                job.ask(request, env, timeout, parsed.gpt_oss, show)
                out.write(_finish(unwrapper))
                printed = True
            return Exit.OK
        new = []
        for part, request in requests:
            unwrapper = _unwrapper(text, part)
            new.append(unwrapper.feed(job.ask(request, env, timeout, parsed.gpt_oss)))
            new.append(_finish(unwrapper))
        _write_whole(out, "".join(new))
        return Exit.OK
    except IllumeError as e:
        return _failed(raw, str(e), secrets, stream, stdout, stderr, Exit.ERROR)
    except Interrupted as e:
        return _failed(raw, "interrupted", secrets, stream, stdout, stderr, e.status)
    except KeyboardInterrupt:
        return _failed(raw, "interrupted", secrets, stream, stdout, stderr, Exit.SIGINT)
    except BrokenPipeError:
        return Exit.ERROR
    except Exception as e:  # a bug of ours: still the text back
        from illume.output import unexpected

        return _failed(raw, unexpected(e) + " (please report this)", secrets, stream, stdout, stderr, Exit.ERROR)


def _unwrapper(text: str, part: Part):
    from illume.unwrap import Unwrapper

    return Unwrapper(text[part.start : part.end])


def _finish(unwrapper) -> str:
    """Return the end of an unwrapped reply; raise IllumeError when it held no text."""
    from illume.unwrap import NoText

    try:
        return unwrapper.finish()
    except NoText as e:
        raise IllumeError(str(e)) from None


def _write_whole(out, text: str) -> None:
    """Write TEXT with SIGINT and SIGTERM held off: the new text goes out whole, or the old one does."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        out.write(text)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _failed(raw: bytes, message: str, secrets, stream: bool, stdout: BinaryIO, stderr: BinaryIO, status: int) -> int:
    """Give the text back (unless streaming), say MESSAGE on STDERR; return STATUS."""
    try:
        if not stream:
            stdout.write(raw)
            stdout.flush()
    except BrokenPipeError:
        pass
    job.report(stderr, message, secrets)
    return status


def message(instruction: str, text: str, part: Part) -> str:
    """Return the user message that asks for PART of TEXT to be rewritten as INSTRUCTION says."""
    head = f"{instruction}\n\n" if instruction else ""
    own = text[part.start : part.end]
    if part.whole(text):
        return f"{head}{ONE_PART}\n\n{job.fenced(own)}"
    pieces = [f"{head}{PART_NOTE}"]
    if part.before:
        pieces.append(f"Before the part (context only):\n\n{job.fenced(part.before)}")
    marks = job.fence(own)
    pieces.append(f"PART:\n\n{marks}\n{own.strip(chr(10))}\n{marks}")
    if part.after:
        pieces.append(f"After the part (context only):\n\n{job.fenced(part.after)}")
    return "\n\n".join(pieces)
