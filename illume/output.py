"""Standard output: the reply as it streams, and the lines illume writes around it.

`Output` writes and flushes every piece, so an editor shows the reply live.
It is the one place every printed text passes (all but `--filter`'s echo of
the buffer, which goes out byte for byte): there NUL and ESC are written in
caret notation, `^@` and `^[`, as Vim and Emacs show them. Printed as they
are, Vim and Neovim would turn a NUL into a line break (through the job's
channel, and `getline()` when the plugin sends the buffer), so that
`ok\\0!api http://x/` became the directive `!api http://x/`; and an ESC
sequence such as `ESC ( B` makes Emacs (and Vim with `iso-2022-jp` in
'fileencodings') decode the saved file as ISO-2022, which drops the
sequence: `!ESC(Bapi x`, no directive to illume, reads `!api x` there.
The lines of illume's own are made here: `!assistant` before a chat reply,
the notes after it, `!note interrupted`, and the `!error` section, scrubbed
of the buffer's secrets. Every note, whichever module has something to
say, is a line made by `note_line` (one line, whatever its message holds) and
written by `Output.notes` (its secrets masked). `write_reply` is the one
loop that streams a reply, for the single reply and for each `!branches`
branch alike; it also takes the times that `!stats` reports.
"""

import re
import time
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from illume.buffer import directive
from illume.secrets import scrub

# The `!debug` dry run (bench/startup.py times it) prints through here too:
# what only a streamed reply, a terminal or `!stats` needs is imported where it is used.

ASSISTANT = "\n\n!assistant\n\n"


def note_line(message: str) -> str:
    """Return the `!note` line for MESSAGE, without a line break at its end: one line, whatever MESSAGE holds.

    The note goes back to illume with the buffer on the next turn, so a line
    break in MESSAGE (a server's words; a name is shown quoted already,
    illume.names) is written `\\n`: a line of its own would be message text
    there, or a directive.
    """
    return "!note " + message.replace("\r", "\\r").replace("\n", "\\n")


INTERRUPTED = "\n\n" + note_line("interrupted") + "\n"


class Output:
    """Standard output, flushed after every piece; SECRETS are masked in whatever it says about a failure."""

    def __init__(self, stream: BinaryIO, secrets: Iterable[str] = ()):
        self.stream = stream
        self.secrets = tuple(secrets)
        self.terminal = _is_terminal(stream)  # then control sequences are written out (illume.terminal)
        self._carriage_return = False  # a terminal's: a `\r` that ended the last piece, held for the next

    def write(self, text: str) -> None:
        """Write TEXT and flush it, NUL and ESC in caret notation (on a terminal, every control character)."""
        if "\x00" in text or "\x1b" in text:
            text = text.replace("\x00", "^@").replace("\x1b", "^[")
        if self.terminal:
            from illume.terminal import shown

            # A `\r` at the end of a piece may be half of a CRLF, or a lone one that would let the next
            # piece overwrite the line: the next piece tells.
            if self._carriage_return:
                text, self._carriage_return = "\r" + text, False
            if text.endswith("\r"):
                text, self._carriage_return = text[:-1], True
            text = shown(text)
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            try:
                # Bytes of the user's own that were not UTF-8 go back out as they came.
                data = text.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                # A lone surrogate from a JSON string of the buffer's own (`!prepend "\ud800"`; a reply's
                # are U+FFFD already, see write_reply): U+FFFD, as Go's decoder gives.
                data = _LONE_SURROGATE.sub("\ufffd", text).encode("utf-8")
        self.stream.write(data)
        self.stream.flush()

    def notes(self, text: str) -> None:
        """Write TEXT, `!note` lines (from `note_line`) and what joins them, with each secret masked.

        Every note illume writes comes this way: a note may quote a URL, a
        server's words or a header, and a secret in them must not land in
        the buffer (`!debug tokens`, `!fit`, a batch's file).
        """
        self.write(self.scrub(text))

    def finish(self) -> None:
        """Write what is held back: a terminal's last `\\r`, which no `\\n` followed, shown as `^M`."""
        if self._carriage_return:
            self._carriage_return = False
            self.stream.write(b"^M")
            self.stream.flush()

    def scrub(self, message: str) -> str:
        """Return MESSAGE with each secret masked."""
        return scrub(message, self.secrets)

    def error(self, message: str) -> None:
        """Write the `!error` section for MESSAGE, scrubbed."""
        self.write(error_section(self.scrub(message)))

    def interrupted(self) -> None:
        """Write the note that ends an interrupted run."""
        self.notes(INTERRUPTED)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def error_section(message: str) -> str:
    """Return the `!error` section for MESSAGE, none of its lines able to act as a directive.

    The section goes back to illume with the buffer on the next turn; a line
    of a server's error body such as `!api URL` must stay text there, so it
    gets the `!!` escape, and text inside `!error` is never sent
    (docs/buffer.md, "`!error`"). Nor may the body set an editor's options
    or coding (`Local Variables:` and `coding: utf-7` would make `+ACE-api`
    a directive line): its marks are broken as a reply's are
    (illume.modelines). The first line is escaped only when it is a
    directive (the embedded backend's `!:grammar: ...` would set the key
    `grammar:`) or starts with `!!`: the original's own messages that start
    with `!` (`!infill: ...`) are no directive and print as it prints them.
    """
    from illume.modelines import Modelines

    first, *rest = Modelines().feed(message).split("\n")
    if first.startswith("!!") or directive(first):
        first = "!" + first
    rest = ["!" + line if line.startswith("!") else line for line in rest]
    return "\n\n!error\n\n" + "\n".join([first, *rest]) + "\n"


def unexpected(error: Exception) -> str:
    """Return the message for ERROR, a bug of illume's own rather than a failure it knows."""
    return f"illume failed unexpectedly: {type(error).__name__}: {error}"


class Times:
    """When a reply was asked for, accepted (its headers came) and ended, for `!stats`.

    `started` is set when the value is made, just before the request is
    sent; `write_reply` sets the other two, `ended` however the stream ends
    (its end marker, a stop by the infill guard, a failure).
    """

    def __init__(self):
        self.started = time.perf_counter()
        self.answered: float | None = None
        self.ended: float | None = None


def write_reply(pieces: Iterator[str], reply, out: Output, times: Times, header: str = "",
                translate=None, guard=None, lines: tuple[str, ...] | None = None, opening: bool = False,
                thinking=None) -> None:
    """Stream one reply on OUT: HEADER once the request is accepted, its text, then its notes.

    PIECES is a backend's stream: "" once the request is accepted, then the
    text, in which a lone surrogate (a JSON escape such as `\\udcff`) is
    U+FFFD, as Go's decoder makes it, rather than a byte that is not UTF-8
    (`\\udcff\\udcfe` would write FF FE, the byte order mark that has Vim and
    Emacs read a file as UTF-16). TRANSLATE (GptOss), THINKING
    (illume.thinking: it writes `!exclude think` before a thinking block,
    or hides the block) and then GUARD (InfillGuard) pass the text on, then
    the editor marks are broken
    (illume.modelines; OPENING: the reply may begin a file), then the
    escaper, so that no line of the reply can act as a directive on the next
    turn (illume.escape; LINES are what may stand before the reply on its
    first line, by default the end of HEADER). What they hold back is
    written however the stream ends, before an error or an interrupt too.
    PIECES is closed however it ends, so the server stops generating.
    Raises IllumeError when the reply fails; REPLY is what the backend
    filled. TIMES gets when the reply was accepted
    (`times.answered` stays None if it never was) and when it ended.
    """
    from illume.escape import Escaper, first_lines
    from illume.modelines import Modelines

    lines = first_lines(header) if lines is None else lines
    marks, escaper = Modelines(lines, opening), Escaper(lines)
    try:
        next(pieces, None)  # the request was accepted
        times.answered = time.perf_counter()
        out.write(header)
        for text in pieces:
            if _LONE_SURROGATE.search(text):
                text = _LONE_SURROGATE.sub("\ufffd", text)
            line = thinking.directive(reply, text) if thinking else ""
            if line:
                out.write(line)  # illume's own line: not escaped
            if translate:
                text = translate.feed(text)
            if thinking:
                text = thinking.feed(text)
            if guard:
                text = guard.feed(text)
            text = escaper.feed(marks.feed(text))
            if text:
                out.write(text)
            if guard and guard.stopped:
                break  # the middle left its hole; closing the stream stops the server
    finally:
        pieces.close()
        times.ended = time.perf_counter()
        held = reply.finish()  # the `</think>` of a block left open
        held = translate.feed(held) + translate.finish() if translate else held  # held back for a token
        if thinking:
            held = thinking.feed(held) + thinking.finish()
        if guard:
            held = guard.feed(held) + guard.finish()
        out.write(escaper.feed(marks.feed(held)) + escaper.finish())
    if not (guard and guard.stopped):
        reply.check_ending()
    out.notes(Modelines().feed(reply.notes(out.secrets)))  # a note may quote a server's malformed event


class HeldEcho:
    """Standard output in `--filter` mode, the buffer's echo held back while summaries may go into it.

    `!fit summarize` (the buffer's or a profile's, known once the buffer is
    read) inserts its `!summary` blocks into the echo (illume.summary_fit).
    The buffer's bytes go out, with what was inserted, at `release` or the
    first write or flush: before a reply, a note or an error alike, so no
    word is lost.
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
