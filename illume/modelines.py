"""Editor settings in a model's reply (Vim modelines, Emacs file variables), broken as the reply streams.

Vim, Neovim and Emacs read settings out of a file's own text when they
open it. A reply saved in a chat file must not be able to set them: the
model's words are untrusted, and some settings change what the editor
sends back to illume on the next turn. Emacs's `coding:` decides how the
file is decoded, and `coding: utf-7` turns a line `+ACE-api http://x/`,
which no escape catches, into `!api http://x/`. The marks, and where each
acts (which is why some are broken everywhere and one only near the top):

    Vim modeline       `vi:`, `vim:`, `Vim:`, `vim600:`, `vim<800:` at a line's
                       start or after white space, `ex:` after white space
                       (Vim's chk_modeline); read in a file's first and last
                       'modelines' lines, and a reply's last lines are the
                       file's until the user writes more: broken everywhere
    Emacs block        `Local Variables:`, in any case (Emacs folds it); read in
                       a file's last 3000 characters: broken everywhere
    Emacs -*- line     `-*- coding: X; mode: Y; eval: Z -*-`; read on a file's
                       first line (after a `#!` line, its second; the mode on
                       the first line that is not blank): broken on the first
                       two lines that are not blank of a reply that may begin
                       a file (an `OPENING` one: a completion or an infill
                       middle printed alone, as `--batch -o DIR` writes it or
                       an editor puts a middle at the top of a file)
    byte order mark    U+FEFF as a file's first character: Vim and Emacs read
                       it as a BOM and drop it, so `<BOM>!api x`, no directive
                       to illume, is one in the editor: an opening reply's
                       first U+FEFF is printed as U+FFFD

A server's words that illume prints get the same treatment: an `!error`
message, a malformed event that a `!note` quotes (illume.output).

The break is one space, in the mark, where it shows: `vim : set ts=2 :`,
`Local Variables :`, `-* - coding: utf-8 -* -`. It is plain to see, always
the same, and changes nothing else of the line; neither editor reads the
mark with the space in it (both match the mark's exact text). A reply
about modelines or Python's `# -*- coding: utf-8 -*-` header shows the
space too: the price of a rule that does not guess which text is an
attack.

Encoding declarations that Emacs reads only at the very start of an XML or
HTML file (`<?xml ... encoding=`, `<meta charset=`) are code the user asked
for and are left as they are; the editor packages refuse a buffer that
was decoded with a coding system in which other bytes read as `!`, however
the file said so (vim/autoload/illume.vim, emacs/illume.el).
"""

import re

# What Vim counts as white space before a modeline's mark (vim_isspace): a line break ends the line instead.
_WHITE = " \t\v\f\r"
# The word before a `:` that makes a modeline's mark, wherever the word starts; `ex:` needs white space before it.
_MODELINE_WORD = re.compile("vi|[vV]im[<=>]?[0-9]*")
_LOCAL_VARIABLES = "local variables"  # compared with the line's end in lower case
_EMACS_LINE = "-*"  # the first two characters of `-*-`; the space goes before its last
_BOM = "\ufeff"
_HEAD_LINES = 2  # lines that are not blank, at a file's top, where Emacs reads the -*- line
# Each mark ends with one of these: the only characters before which a space may be needed.
_MARK_ENDS = re.compile("[:-]")


class _Line:
    """What stands before the next character on one possible line: its last word and its end."""

    def __init__(self, before: str):
        self.word = ""  # the text since the last white space or the line's start
        self.after_white = False  # the word follows white space, not the line's start
        self.tail = ""  # the line's last characters, as many as `local variables` has
        self.advance(before)

    def advance(self, text: str) -> None:
        """Move past TEXT, none of which is a line break."""
        self.tail = (self.tail + text)[-len(_LOCAL_VARIABLES) :]
        white = max(text.rfind(c) for c in _WHITE)
        if white >= 0:
            self.word, self.after_white = text[white + 1 :], True
        else:
            self.word += text  # as long as a model makes it: `vim>000...0:` is a modeline too

    def ends_mark(self) -> bool:
        """Return whether a `:` here would end a modeline's or a local variables block's mark."""
        return (bool(_MODELINE_WORD.fullmatch(self.word)) or (self.word == "ex" and self.after_white)
                or self.tail.lower() == _LOCAL_VARIABLES)


class Modelines:
    """Breaks the marks of one reply piece by piece: `feed` returns the text to print now.

    LINES are the texts that may stand before the reply on its first line
    (as for `illume.escape.Escaper`); the start of a line is always one of
    them, since the escaper may start the reply on a line of its own.
    OPENING: the reply may begin a file. Nothing is held back: every mark
    ends with a `:` or a `-`, and the space goes right before that
    character, so all before it can be printed as it comes.
    """

    def __init__(self, lines: tuple[str, ...] = ("",), opening: bool = False):
        self._lines = [_Line(line) for line in dict.fromkeys(("", *lines))]
        self._start = opening  # at the first character of an opening reply, where a BOM would act
        self._head = _HEAD_LINES if opening else 0  # lines not blank still to come in a file's top
        self._blank = True  # the current line is blank so far
        self._emacs_tail = ""  # the last two characters printed on this line, for `-*-`

    def feed(self, text: str) -> str:
        """Return TEXT with a space in each mark that it completes."""
        if not text:
            return text
        if self._start:
            self._start = False
            if text.startswith(_BOM):
                text = "\ufffd" + text[1:]
        if self._head == 0 and ":" not in text:
            self._advance(text)  # the common case: no mark can end in TEXT
            return text
        out = []
        start = 0
        for match in _MARK_ENDS.finditer(text):
            end = match.start()
            self._advance(text[start:end])
            out.append(text[start:end])
            mark_end = match.group()
            if self._needs_space(mark_end):
                out.append(" ")
                self._advance(" ")
            out.append(mark_end)
            self._advance(mark_end)
            start = end + 1
        self._advance(text[start:])
        out.append(text[start:])
        return "".join(out)

    def _needs_space(self, mark_end: str) -> bool:
        if mark_end == "-":
            return self._head > 0 and self._emacs_tail == _EMACS_LINE
        return any(line.ends_mark() for line in self._lines)

    def _advance(self, text: str) -> None:
        """Move every possible line past TEXT, printed as it is."""
        if not text:
            return
        *ended, current = text.split("\n")
        for line in ended:
            self._end_line(line)
        if current:
            for possible in self._lines:
                possible.advance(current)
            self._blank = self._blank and not current.strip(" \t")
            self._emacs_tail = (self._emacs_tail + current)[-2:]

    def _end_line(self, rest: str) -> None:
        """End the current line, whose last text is REST."""
        if self._head and not (self._blank and not rest.strip(" \t")):
            self._head -= 1
        self._blank, self._emacs_tail = True, ""
        self._lines = [_Line("")]  # past the first line, every line starts a line
