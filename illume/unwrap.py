"""Unwrapping a rewrite: from the model's reply to the new text alone (docs/rewrite.md, "Unwrapping").

Models wrap a rewritten text in things that are not the text: a thinking
block, a preamble such as "Here is the corrected text:", a code fence, a
closing remark after the fence. They also drop the selection's
indentation and change how it ends. `Unwrapper` takes the reply piece by
piece (`feed`) and gives back the text to print as soon as it is decided,
so that an editor can show a rewrite as it streams; what it gives for a
reply fed whole is the same, byte for byte. The rules, in order:

1. A `<think>...</think>` block at the very start is dropped.
2. Blank lines at the start are dropped.
3. The first line is a preamble, and dropped, when it ends with `:` and
   is followed by a fence line, or by a blank line while the input's own
   first line does not end with `:`.
4. A fence line (three or more backticks or tildes, an info string
   allowed) at the start, when the input does not start with one, opens a
   fence: the text is what follows it, up to the last line that closes it
   (the same character, at least as many, nothing else on the line);
   that line and everything after it (a closing remark) are dropped. A
   fence never closed keeps the rest of the reply. A reply that does not
   open with a fence ends at its first fence line when the input holds
   none: the fence is the one illume put around the text in its request,
   and what follows it is the model talking about the text.
5. Indentation: when the first line of the text does not begin with the
   indentation that all of the input's lines share, that line's own
   indentation is taken off every line that begins with it, and the
   input's is put before every line that is not blank.
6. The ends: blank lines at the text's start and end are replaced by the
   input's own (its leading blank lines, its final line breaks), so the
   text ends with a line break exactly when the input does; where the
   input's lines end in CRLF, so do the text's.
7. A Vim modeline or Emacs file-variable mark (illume.modelines) on a
   line that is not, as it is, a line of the input is broken with a
   space, as in a chat reply: the model cannot set the editor's options.

Nothing else is changed. A reply with no text left is an error
(`NoText`): the caller gives the input back instead.
"""

import re

# A fence line: its marks, then an info string (CommonMark 4.5, "Fenced code blocks").
_FENCE = re.compile(r"[ \t]{0,3}(`{3,}|~{3,})([^`]*)")
_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"


class NoText(ValueError):
    """The reply held no text once unwrapped."""


def common_indent(lines: list[str]) -> str:
    """Return the leading white space that every non-blank line of LINES begins with."""
    indent = None
    for line in lines:
        if not line.strip():
            continue
        own = line[: len(line) - len(line.lstrip(" \t"))]
        if indent is None:
            indent = own
        else:
            n = 0
            while n < min(len(indent), len(own)) and indent[n] == own[n]:
                n += 1
            indent = indent[:n]
        if not indent:
            return ""
    return indent or ""


def _fence(line: str) -> tuple[str, str] | None:
    """Return (marks, info) when LINE is a fence line, else None."""
    match = _FENCE.fullmatch(line.rstrip())
    if not match:
        return None
    return match.group(1), match.group(2).strip()


def _closes(line: str, marks: str) -> bool:
    """Return whether LINE closes a fence opened with MARKS."""
    found = _fence(line)
    return found is not None and not found[1] and found[0][0] == marks[0] and len(found[0]) >= len(marks)


class Unwrapper:
    """Unwraps one reply, given the INPUT it rewrites: `feed` pieces, then `finish`; each returns text to print."""

    def __init__(self, input_text: str):
        lines = input_text.split("\n")
        self.crlf = len(lines) > 1 and all(line.endswith("\r") for line in lines[:-1])
        plain = input_text.replace("\r\n", "\n") if self.crlf else input_text
        stripped = plain.strip("\n")
        # The input's own ends, given back whatever the reply's are: its leading blank lines and final line breaks.
        self.head = plain[: len(plain) - len(plain.lstrip("\n"))] if stripped.strip() else ""
        self.tail = plain[len(plain.rstrip("\n")) :] if stripped.strip() else ""
        body = stripped.split("\n")
        self.indent = common_indent(body)
        self.input_lines = set(body)
        first = next((line for line in body if line.strip()), "")
        self.input_colon = first.rstrip().endswith(":")
        self.input_fenced = _fence(first) is not None
        self.input_fences = any(_fence(line) for line in body)
        self._pending = ""  # the current line, not yet whole
        self._state = "think?"  # think?, thinking, start, preamble?, text
        self._preamble: list[str] = []  # the first line and any blank ones after it, while undecided
        self._marks: str | None = None  # the fence's marks, inside a fence
        self._held: list[str] = []  # lines that may be a closing fence and its remark, or blank ones at the end
        self._blanks: list[str] = []  # blank lines after the last text line
        self._reindent: bool | None = None  # whether the input's indentation is put back, once decided
        self._cut = ""  # the reply's own indentation, taken off where the input's is put back
        self._wrote = False  # whether any text line was given out
        self._ended = False  # a fence line ended the text (rule 4, last sentence): the rest is dropped

    # --- feeding ----------------------------------------------------------------
    def feed(self, text: str) -> str:
        """Return the text that the reply so far decides, from whole lines of it."""
        self._pending += text
        if self._state == "think?":
            probe = self._pending.lstrip()
            if len(probe) < len(_THINK_OPEN) and _THINK_OPEN.startswith(probe):
                return ""
            self._state = "thinking" if probe.startswith(_THINK_OPEN) else "start"
        if self._state == "thinking":
            end = self._pending.find(_THINK_CLOSE)
            if end < 0:
                return ""
            self._pending = self._pending[end + len(_THINK_CLOSE) :]
            self._state = "start"
        out = []
        while "\n" in self._pending:
            line, _, self._pending = self._pending.partition("\n")
            out.append(self._line(line.removesuffix("\r")))
        return "".join(out)

    def finish(self) -> str:
        """Return the rest of the text, its ends made the input's; raise NoText when there was none."""
        out = []
        if self._state in ("think?", "thinking"):
            # A thinking block never closed holds no answer; a bare "<thi" is text.
            if self._state == "thinking":
                self._pending = ""
            self._state = "start"
        if self._pending:
            out.append(self._line(self._pending.removesuffix("\r")))
            self._pending = ""
        if self._state == "preamble?":
            # A lone line ending in ':' and nothing after it: that was the text.
            lines, self._preamble = self._preamble, []
            self._state = "text"
            out.extend(self._text(line) for line in lines)
        if self._marks is not None:
            # The last closing fence ends the text; without one, the held lines are text.
            closing = next((i for i in range(len(self._held) - 1, -1, -1) if _closes(self._held[i], self._marks)), None)
            if closing is not None:
                self._held = self._held[:closing]
            held, self._held = self._held, []
            out.extend(self._out(line) for line in held)
        if not self._wrote:
            raise NoText("the model's reply held no text")
        return "".join(out) + self._newline(self.tail)

    # --- one line ---------------------------------------------------------------
    def _line(self, line: str) -> str:
        """Return what LINE, a whole line of the reply, lets out."""
        if self._state == "start":
            if not line.strip():
                return ""
            self._state = "text"
            if not self.input_fenced and _fence(line):
                self._marks = _fence(line)[0]
                return ""
            if line.rstrip().endswith(":"):
                self._state = "preamble?"
                self._preamble = [line]
                return ""
            return self._text(line)
        if self._state == "preamble?":
            if not line.strip():
                self._preamble.append(line)
                return ""
            self._state = "text"
            found = _fence(line)
            if found and not self.input_fenced:
                self._preamble = []
                self._marks = found[0]
                return ""
            if len(self._preamble) > 1 and not self.input_colon:
                self._preamble = []  # "Here is the corrected text:", a blank line, the text
                return self._text(line)
            lines, self._preamble = self._preamble + [line], []
            return "".join(self._text(kept) for kept in lines)
        return self._text(line)

    def _text(self, line: str) -> str:
        """Return what LINE, a line of the text, lets out: held lines it releases, and itself unless held."""
        if self._ended:
            return ""
        if self._marks is None and not self.input_fences and _fence(line):
            self._ended = True
            return ""
        if self._marks is not None:
            if _closes(line, self._marks):
                # Perhaps the closing fence: hold it and what follows until another one, or the end.
                released, self._held = self._held, [line]
                return "".join(self._out(kept) for kept in released)
            if self._held:
                self._held.append(line)
                return ""
            return self._out(line)
        return self._out(line)

    def _out(self, line: str) -> str:
        """Return LINE as the text has it, blank lines held back until more text follows them."""
        if not line.strip():
            if self._wrote:
                self._blanks.append(line)
            return ""
        if self._reindent is None:
            # Decided once, by the first line, so that a streamed rewrite is the same as a whole one.
            self._reindent = not line.startswith(self.indent)
            self._cut = line[: len(line) - len(line.lstrip(" \t"))]
        if self._reindent:
            line = self.indent + line.removeprefix(self._cut)
        if line not in self.input_lines:
            from illume.modelines import Modelines

            line = Modelines(opening=True).feed(line)
        if not self._wrote:
            self._wrote = True
            return self._newline(self.head) + line
        blanks, self._blanks = self._blanks, []
        return self._newline("".join("\n" + blank for blank in blanks) + "\n") + line

    def _newline(self, text: str) -> str:
        """Return TEXT with its line breaks the input's: CRLF where the input's lines end in CRLF."""
        return text.replace("\n", "\r\n") if self.crlf else text
