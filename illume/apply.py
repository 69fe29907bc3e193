"""`illume --apply [SUGGESTIONS] [FILE...]`: the suggestions a user kept, applied to their files (docs/rewrite.md).

Reads lines in the format `--review` prints (illume.review), from the
file SUGGESTIONS or standard input. Every line must parse (blank lines
and lines starting with `#` aside), else nothing is applied: a file the
user edited by hand and got wrong is not half applied.

Each file's suggestions are checked and applied together, or not at all:
each QUOTE must still be at its LINE:COL exactly (else the file changed
since the review), no two may overlap, and the file is then replaced
atomically (a temporary file in the same folder, renamed over it, its
permission bits kept), so that a reader sees the old file or the new one.
Exactly the quoted text changes; every other byte stays.

Which files may be changed: a suggestion file is text that may come from
anywhere, so its names are not trusted further than the current folder.
A FILE named on the command line after SUGGESTIONS may be changed
wherever it is, and then only those; with none named, a suggestion's file
may be changed only when its name is relative and it lies, links
resolved, inside the current folder. Others are refused.
"""

import json
import os
import re
import stat
from collections.abc import Sequence
from typing import BinaryIO

from illume import job
from illume.errors import Exit, Interrupted

_LINE = re.compile(r"(?P<file>.+?):(?P<line>[1-9][0-9]*):(?P<col>[1-9][0-9]*): (?P<rest>\".*)", re.DOTALL)


class Refused(Exception):
    """A file whose suggestions cannot be applied, with the reason."""


class Suggestion:
    """One parsed suggestion line: FILE, LINE and COL (1-based, columns in characters), QUOTE, REPLACEMENT."""

    def __init__(self, file: str, line: int, col: int, quote: str, replacement: str, number: int):
        self.file, self.line, self.col, self.quote, self.replacement = file, line, col, quote, replacement
        self.number = number  # its line in the suggestions


def parse_line(text: str, number: int) -> Suggestion:
    """Return the Suggestion that the line TEXT (line NUMBER) holds; raise ValueError when it holds none."""
    match = _LINE.fullmatch(text)
    if not match:
        raise ValueError("not FILE:LINE:COL: \"QUOTE\" -> \"REPLACEMENT\"")
    rest = match["rest"]
    decoder = json.JSONDecoder()
    quote, end = decoder.raw_decode(rest)
    if not rest.startswith(" -> ", end):
        raise ValueError("no ` -> ` after the quote")
    replacement, end = decoder.raw_decode(rest, end + 4)
    if not isinstance(quote, str) or not isinstance(replacement, str) or not quote:
        raise ValueError("the quote and the replacement are JSON strings, the quote not empty")
    if end < len(rest) and not rest.startswith(": ", end):
        raise ValueError("what follows the replacement is not `: MESSAGE`")
    return Suggestion(match["file"], int(match["line"]), int(match["col"]), quote, replacement, number)


def read_suggestions(data: str) -> list[Suggestion]:
    """Return the suggestions of DATA; raise Refused naming the first line that is not one."""
    found = []
    for number, text in enumerate(data.split("\n"), 1):
        text = text.removesuffix("\r")
        if not text.strip() or text.startswith("#"):
            continue
        try:
            found.append(parse_line(text, number))
        except ValueError as e:
            raise Refused(f"line {number} is not a suggestion ({e}); nothing was applied") from None
    return found


def main(args: Sequence[str], stderr: BinaryIO) -> int:
    """Apply the suggestions that ARGS name (the suggestions file, then the files allowed); return the exit status."""
    source, allowed = (args[0], list(args[1:])) if args else ("-", [])
    try:
        try:
            text = job.read_text(None if source == "-" else source)
        except OSError as e:
            raise Refused(f"cannot read {source}: {e.strerror}") from None
        suggestions = read_suggestions(text)
    except Refused as e:
        job.report(stderr, str(e))
        return Exit.ERROR
    by_file: dict[str, list[Suggestion]] = {}
    for suggestion in suggestions:
        by_file.setdefault(suggestion.file, []).append(suggestion)
    status = Exit.OK
    try:
        for name, kept in by_file.items():
            try:
                path = permitted(name, allowed)
                count = apply_to(path, kept)
                job.report(stderr, f"{name}: applied {count} suggestion{'s' if count != 1 else ''}")
            except Refused as e:
                job.report(stderr, f"{name}: {e}; the file was left as it was")
                status = Exit.ERROR
    except (Interrupted, KeyboardInterrupt) as e:
        job.report(stderr, "interrupted: the files not reported above were left as they were")
        return e.status if isinstance(e, Interrupted) else Exit.SIGINT
    return status


def permitted(name: str, allowed: Sequence[str]) -> str:
    """Return the path to write for the suggestions' file NAME; raise Refused when it may not be changed."""
    if name == "<stdin>":
        raise Refused("these suggestions were made on standard input, which names no file "
                      "(review the file itself, or use --file-name with --review)")
    if allowed:
        if not any(os.path.realpath(name) == os.path.realpath(a) for a in allowed):
            raise Refused("not among the files named after the suggestions on the command line")
        return os.path.realpath(name)
    here = os.path.realpath(os.curdir)
    real = os.path.realpath(name)
    if os.path.isabs(name) or ".." in name.replace("\\", "/").split("/") \
            or os.path.commonpath([here, real]) != here:
        raise Refused("it is outside the current folder: name it after the suggestions file to allow it "
                      "(illume --apply SUGGESTIONS FILE)")
    return real


def offset_of(text: str, line: int, col: int) -> int | None:
    """Return the character offset of LINE:COL in TEXT, or None when the file has no such place."""
    start = 0
    for _ in range(line - 1):
        start = text.find("\n", start) + 1
        if start == 0:
            return None
    end = text.find("\n", start)
    length = (len(text) if end < 0 else end) - start
    return start + col - 1 if col - 1 <= length else None


def apply_to(path: str, suggestions: list[Suggestion]) -> int:
    """Apply SUGGESTIONS to the file PATH, all or none; return how many changes were made. Raises Refused."""
    from illume.batch import write_atomically

    try:
        info = os.stat(path)
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise Refused(f"cannot read it: {e.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise Refused("it is not a regular file")
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        raise Refused(f"it belongs to another user (uid {info.st_uid})")
    text = data.decode("utf-8", "surrogateescape")
    spans: dict[tuple[int, int], Suggestion] = {}
    for s in suggestions:
        start = offset_of(text, s.line, s.col)
        if start is None or text[start : start + len(s.quote)] != s.quote:
            raise Refused(f"it changed since the review: {s.line}:{s.col} no longer holds {_quoted(s.quote)}")
        span = (start, start + len(s.quote))
        if span in spans and spans[span].replacement == s.replacement:
            continue  # the same change twice
        spans[span] = s
    ordered = sorted(spans)
    for before, after in zip(ordered, ordered[1:]):
        if after[0] < before[1]:
            first, second = spans[before], spans[after]
            raise Refused(f"the suggestions at {first.line}:{first.col} and {second.line}:{second.col} overlap")
    pieces, at = [], 0
    for start, end in ordered:
        pieces += [text[at:start], spans[(start, end)].replacement]
        at = end
    pieces.append(text[at:])
    try:
        new = "".join(pieces).encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise Refused("a replacement holds a lone surrogate (\\ud800-\\udbff), which is no text") from None
    with open(path, "rb") as f:
        if f.read() != data:
            raise Refused("it changed while the suggestions were applied")
    try:
        write_atomically(path, new, stat.S_IMODE(info.st_mode))
    except OSError as e:
        raise Refused(f"cannot write it: {e.strerror}") from None
    return len(spans)


def _quoted(quote: str) -> str:
    from illume.review import json_string

    shown = json_string(quote)
    return shown if len(shown) <= 60 else shown[:57] + '..."'
