"""`illume --review [INSTRUCTION] [FILE...]`: grounded suggestions, one a line (docs/rewrite.md, "Review").

Each suggestion the model makes names the exact text it would change (its
quote) and the replacement. illume looks every quote up in the file
(`ground`): a quote that is not there, even with runs of white space taken
as equal, is dropped, and standard error says how many were. What is
printed points at text that is in the file, in the line format that
compilers use and every editor reads:

    FILE:LINE:COL: "QUOTE" -> "REPLACEMENT": MESSAGE

QUOTE and REPLACEMENT are JSON strings, QUOTE as the file has it. FILE is
the name given on the command line, never a name from the model: nothing
the model writes reaches the file system.
"""

import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import BinaryIO

from illume import job
from illume.errors import Exit, IllumeError, Interrupted
from illume.parts import Part, plan

STDIN = "<stdin>"

FORMAT = """\
Answer with one line for each finding and nothing else, each line a JSON object:
{"quote": "...", "replacement": "...", "message": "..."}
"quote" is the exact text that should change, copied from the document character for character: \
as short as it can be while still naming one place. "replacement" is the text to put in its place \
("" to delete it). "message" says why, in a few words. When you find nothing, answer with nothing."""

# What json.dumps(ensure_ascii=False) leaves as it is, but a terminal or an editor may act on:
# DEL and C1 controls, line and paragraph separators, bidirectional controls, the byte order mark.
# And lone surrogates: a file's bytes that are not UTF-8, written `\udcXX` so that the line is UTF-8.
_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]")


class Suggestion:
    """A grounded suggestion: the file's text from START to END (characters), to be REPLACEMENT."""

    def __init__(self, start: int, end: int, replacement: str, message: str):
        self.start, self.end, self.replacement, self.message = start, end, replacement, message


def main(args: Sequence[str], after_dash: int | None, profile_names: Sequence[str], env: Mapping[str, str],
         timeout: float, debug: bool, file_name: str | None, stdout: BinaryIO, stderr: BinaryIO) -> int:
    """Review the FILEs among ARGS (stdin when none) and print the suggestions; return the exit status."""
    try:
        instruction, files = split_arguments(args, after_dash)
        for name in files:
            if "\n" in name or "\r" in name:
                raise IllumeError(f"--review: a file name with a line break cannot be printed as a suggestion's "
                                  f"FILE: {name!r}")
        base = None if job.adds_text(profile_names, env) else "review"
        parsed = job.settings("review", base, profile_names, env)
    except IllumeError as e:
        job.report(stderr, str(e))
        return Exit.ERROR
    status = Exit.OK
    for name in files or [None]:
        shown = name if name is not None else (file_name or STDIN)
        secrets: list[str] = []
        try:
            text = _read(name)
            if not text.strip():
                continue
            requests = _requests(text, shown, instruction, parsed, env, timeout)
            secrets = _secrets(requests, env)
            if debug or parsed.debug:
                from illume.output import Output

                Output(stdout, secrets).write("".join(r.debug_text() for _, r in requests))
                continue
            lines = review(text, shown, requests, parsed.gpt_oss, env, timeout, stderr)
            stdout.write("".join(line + "\n" for line in lines).encode("utf-8", "surrogateescape"))
            stdout.flush()
        except IllumeError as e:
            job.report(stderr, f"{shown}: {e}", secrets)
            status = Exit.ERROR
        except (Interrupted, KeyboardInterrupt) as e:
            job.report(stderr, "interrupted")
            return e.status if isinstance(e, Interrupted) else Exit.SIGINT
        except BrokenPipeError:
            return Exit.ERROR
    return status


def split_arguments(args: Sequence[str], after_dash: int | None) -> tuple[str, list[str]]:
    """Return (INSTRUCTION, FILEs) of the command line's ARGS; AFTER_DASH of them came after `--`.

    With a `--`, the arguments before it are the instruction's words and
    those after it FILEs. Without one, an argument that names
    an existing file is a FILE, and the others are the words of the
    instruction, except one that looks like a file's name (no white space,
    and a `/` or an extension) but names none: an error, not a review of
    standard input with that name as the instruction.
    """
    if after_dash is not None:
        return _checked(" ".join(args[: len(args) - after_dash]), list(args[len(args) - after_dash :]))
    named, words = [], []
    for arg in args:
        if os.path.isfile(arg):
            named.append(arg)
        elif not any(c.isspace() for c in arg) and ("/" in arg or re.search(r"\w\.[A-Za-z0-9]{1,8}$", arg)):
            raise IllumeError(f"--review: no such file: {arg} (an instruction of that one word goes before `--`)")
        else:
            words.append(arg)
    return _checked(" ".join(words), named)


def _checked(instruction: str, named: list[str]) -> tuple[str, list[str]]:
    """Return (INSTRUCTION, NAMED); raise IllumeError when one of NAMED is no file."""
    for name in named:
        if not os.path.isfile(name):
            raise IllumeError(f"--review: no such file: {name}")
    return instruction, named


def _read(name: str | None) -> str:
    try:
        return job.read_text(name)
    except OSError as e:
        raise IllumeError(f"cannot read it: {e.strerror}") from None


def message(instruction: str, name: str, text: str, part: Part) -> str:
    """Return the user message that asks for PART of TEXT (the file NAME) to be reviewed."""
    head = f"{instruction}\n\n" if instruction else ""
    own = text[part.start : part.end]
    name = os.path.basename(name)  # the model needs no more of where the file is
    if part.whole(text):
        return f"{head}Review this document, {name}:\n\n{job.fenced(own)}"
    first = text.count("\n", 0, part.start) + 1
    last = first + own.rstrip("\n").count("\n")
    return f"{head}Review this part of the document {name}, its lines {first} to {last}:\n\n{job.fenced(own)}"


def _requests(text: str, name: str, instruction: str, parsed, env, timeout: float) -> list:
    """Return (part, request) for each part of TEXT."""
    import copy

    with_format = copy.copy(parsed)
    from illume import buffer as buf

    system = "\n\n".join(m.content for m in parsed.messages if m.role == "system")
    with_format.messages = [buf.Message("system", f"{system}\n\n{FORMAT}" if system else FORMAT)]
    with_format.messages += [m for m in parsed.messages if m.role != "system"]

    def asking(part: Part) -> str:
        return message(instruction, name, text, part)

    return [(part, job.request_for(with_format, asking(part), env))
            for part in plan(text, asking, with_format, env, timeout, neighbours=False, job_name="review")]


def _secrets(requests, env) -> list[str]:
    from illume.headers import proxy_secrets

    return [s for _, r in requests for s in r.secrets()] + proxy_secrets(env)


def review(text: str, name: str, requests, gpt_oss: bool, env, timeout: float, stderr: BinaryIO) -> list[str]:
    """Return the suggestion lines for TEXT (the file NAME) from the replies to REQUESTS, by part.

    Says on STDERR how many suggestions were dropped.
    """
    found: list[Suggestion] = []
    seen: set[tuple[int, int, str]] = set()
    offered = dropped = unchanged = repeated = 0
    for part, request in requests:
        reply, limit = job.ask_reply(request, env, timeout, gpt_oss)
        if limit:
            # The whole suggestions before the cut are good; the one it cut does not parse.
            job.report(stderr, f"{name}: the reply stopped at {limit}: there may be more to find "
                               "(raise !:max_tokens in a profile)")
        used: set[int] = set()
        for quote, replacement, why in suggestions(reply):
            offered += 1
            span = ground(text, quote, part.start, part.end, used)
            if span is None:
                dropped += 1
                continue
            if text[span[0] : span[1]] == replacement:
                unchanged += 1
                continue
            if (*span, replacement) in seen:
                repeated += 1
                continue
            seen.add((*span, replacement))
            used.add(span[0])
            found.append(Suggestion(span[0], span[1], replacement, why))
    if dropped:
        job.report(stderr, f"dropped {dropped} of {offered} suggestions: their text is not in {name}")
    if unchanged:
        job.report(stderr, f"dropped {unchanged} of {offered} suggestions for {name}: they change nothing")
    if repeated:
        job.report(stderr, f"dropped {repeated} of {offered} suggestions for {name}: they repeat another")
    found.sort(key=lambda s: (s.start, s.end))
    return [line(name, text, s) for s in found]


def suggestions(reply: str) -> list[tuple[str, str, str]]:
    """Return (quote, replacement, message) of each suggestion object in REPLY, in order.

    The objects may stand one a line, in a JSON array or object (as a JSON
    schema asks, `{"suggestions": [...]}`), in a code fence or among other
    words: each `{` or `[` where a JSON value parses starts one. An object
    without a string "quote" is no suggestion.
    """
    decoder = json.JSONDecoder()
    found = []
    at = 0
    while True:
        match = re.compile(r"[\[{]").search(reply, at)
        if not match:
            return found
        try:
            value, end = decoder.raw_decode(reply, match.start())
        except ValueError:
            at = match.start() + 1
            continue
        at = end
        _collect(value, found)


def _collect(value, found: list) -> None:
    """Append the suggestions in VALUE, a JSON value, to FOUND: itself, or those in its lists and objects."""
    if isinstance(value, dict) and isinstance(value.get("quote"), str):
        if value["quote"].strip():
            replacement, why = value.get("replacement", ""), value.get("message", "")
            found.append((value["quote"], replacement if isinstance(replacement, str) else json.dumps(replacement),
                          why if isinstance(why, str) else json.dumps(why)))
        return
    for item in value.values() if isinstance(value, dict) else value if isinstance(value, list) else ():
        _collect(item, found)


def ground(text: str, quote: str, start: int, end: int, used: set[int]) -> tuple[int, int] | None:
    """Return where QUOTE is in TEXT[START:END] (characters, whole-text offsets), or None when it is not there.

    Exact first; else with each run of white space matching any run of
    white space. Found more than once: the first place that no earlier
    suggestion of the same reply took (USED holds their starts), else the first.
    """
    places = []
    at = text.find(quote, start, end)
    while at >= 0 and len(places) < 1000:
        places.append((at, at + len(quote)))
        at = text.find(quote, at + 1, end)
    if not places:
        words = quote.split()
        if not words:
            return None
        pattern = re.compile(r"\s+".join(map(re.escape, words)))
        places = [(m.start(), m.end()) for m in pattern.finditer(text, start, end)][:1000]
    if not places:
        return None
    return next((p for p in places if p[0] not in used), places[0])


def position(text: str, offset: int) -> tuple[int, int]:
    """Return the 1-based line and column (in characters) of OFFSET in TEXT."""
    line_start = text.rfind("\n", 0, offset) + 1
    return text.count("\n", 0, offset) + 1, offset - line_start + 1


def json_string(value: str) -> str:
    """Return VALUE as a JSON string on one line, non-ASCII as it is but for what may act on a reader."""
    shown = json.dumps(value, ensure_ascii=False)
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", shown)


def line(name: str, text: str, suggestion: Suggestion) -> str:
    """Return the printed line of SUGGESTION in TEXT, the file NAME."""
    number, column = position(text, suggestion.start)
    why = " ".join(suggestion.message.split())
    why = _UNSAFE.sub("", re.sub("[\x00-\x1f]", "", why))
    quote = json_string(text[suggestion.start : suggestion.end])
    tail = f": {why}" if why else ""
    return f"{name}:{number}:{column}: {quote} -> {json_string(suggestion.replacement)}{tail}"
