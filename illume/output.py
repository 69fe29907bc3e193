"""Standard output: the reply as it streams, and the lines illume writes around it.

`Output` writes and flushes every piece, so an editor shows the reply live.
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

    def write(self, text: str) -> None:
        """Write TEXT and flush it."""
        if self.terminal:
            from illume.terminal import shown

            text = shown(text)
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

    def notes(self, text: str) -> None:
        """Write TEXT, `!note` lines (from `note_line`) and what joins them, with each secret masked.

        Every note illume writes comes this way: a note may quote a URL, a
        server's words or a header, and a secret in them must not land in
        the buffer (`!debug tokens`, `!fit`, a batch's file).
        """
        self.write(self.scrub(text))

    def scrub(self, message: str) -> str:
        """Return MESSAGE with each secret masked."""
        from illume.secrets import scrub

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
    (docs/buffer.md, "`!error`"). The first line is escaped only when it is
    a directive (the embedded backend's `!:grammar: ...` would set the key
    `grammar:`) or starts with `!!`: the original's own messages that start
    with `!` (`!infill: ...`) are no directive and print as it prints them.
    """
    first, *rest = message.split("\n")
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

    def note(self, events: int) -> str:
        """Return the `!stats` note for a reply of EVENTS events."""
        from illume.stats import note

        return note(events, self.answered - self.started, self.ended - self.answered)


def write_reply(pieces: Iterator[str], reply, out: Output, times: Times, header: str = "",
                translate=None, guard=None, lines: tuple[str, ...] | None = None) -> None:
    """Stream one reply on OUT: HEADER once the request is accepted, its text, then its notes.

    PIECES is a backend's stream: "" once the request is accepted, then the
    text. TRANSLATE (GptOss) and then GUARD (InfillGuard) pass the text on,
    then the escaper, so that no line of the reply can act as a directive on
    the next turn (illume.escape; LINES are what may stand before the reply
    on its first line, by default the end of HEADER). What they hold back is
    written however the stream ends, before an error or an interrupt too.
    PIECES is closed however it ends, so the server stops generating.
    Raises IllumeError when the reply fails; REPLY is what the backend
    filled. TIMES gets when the reply was accepted
    (`times.answered` stays None if it never was) and when it ended.
    """
    from illume.escape import Escaper, first_lines

    escaper = Escaper(first_lines(header) if lines is None else lines)
    try:
        next(pieces, None)  # the request was accepted
        times.answered = time.perf_counter()
        out.write(header)
        for text in pieces:
            if translate:
                text = translate.feed(text)
            if guard:
                text = guard.feed(text)
            text = escaper.feed(text)
            if text:
                out.write(text)
            if guard and guard.stopped:
                break  # the middle left its hole; closing the stream stops the server
    finally:
        pieces.close()
        times.ended = time.perf_counter()
        held = translate.finish() if translate else ""  # text held back for a token, even before an error
        if guard:
            held = guard.feed(held) + guard.finish()
        out.write(escaper.feed(held) + escaper.finish())
    if not (guard and guard.stopped):
        reply.check_ending()
    out.notes(reply.notes(out.secrets))
