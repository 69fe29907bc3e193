"""A reply's thinking: the `!exclude think` line that keeps it out of the next turn, or none of it shown.

Thinking that the server sends in a field of its own comes out of
illume.reply as a `<think>` block at the reply's start. So that it does
not go back to the model on the next turn (the APIs and the model cards
say to drop it), illume writes `!exclude think` on the line before the
block, unless the buffer has that in effect already: a directive of
illume's own, like its `!note` lines, visible and removable. A buffer
that gets no such thinking gets no such line, so its bytes stay the
original's (docs/buffer.md, "Thinking").

`!thinking hide` drops the block instead, whatever made it: a thinking
field, `!gpt-oss`'s analysis channel, or the model's own `<think>` lines at
the start of its reply.
"""

from illume.reply import THINK_OPEN

EXCLUDE_LINE = "!exclude think\n"
_CLOSE = "</think>"


class Thinking:
    """Watches a reply's text for its thinking: says when to write `!exclude think`, and hides the block.

    EXCLUDED: the buffer has `!exclude think` in effect where the reply
    goes; AT_LINE_START: the reply starts a line (no `!prepend` text before
    it on its line); HIDE: `!thinking hide`.
    """

    def __init__(self, excluded: bool, at_line_start: bool, hide: bool = False):
        self.hide = hide
        self._may_write = not excluded and at_line_start and not hide
        self._started = False
        self._state = "start" if hide else "through"
        self._held = ""

    def directive(self, reply, text: str) -> str:
        """Return the line to write before TEXT, the reply's next piece as REPLY gave it: `!exclude think` or ""."""
        if self._started or not text:
            return ""
        self._started = True
        # Only where thinking from a field opens the reply: a `<think>` the model wrote is the original's text.
        if self._may_write and reply.thought and text.startswith(THINK_OPEN):
            return EXCLUDE_LINE
        return ""

    def feed(self, text: str) -> str:
        """Return TEXT less the thinking block, when hidden; what may still be part of it is held back."""
        if self._state == "through":
            return text
        self._held += text
        if self._state == "start":
            if len(self._held) < len(THINK_OPEN) and THINK_OPEN.startswith(self._held):
                return ""
            if not self._held.startswith(THINK_OPEN):
                return self._let_through()
            # The opening line's own line break stays: an empty block's `</think>` follows it.
            self._state, self._held = "inside", self._held[len(THINK_OPEN) - 1 :]
        if self._state == "inside":
            end = self._held.find("\n" + _CLOSE)
            if end < 0:
                self._held = self._held[-len(_CLOSE) :]  # the start of a closing line, maybe
                return ""
            self._state, self._held = "after", self._held[end + 1 + len(_CLOSE) :]
        # After the block: the line breaks that part it from the answer go with it.
        rest = self._held.lstrip("\r\n")
        if not rest:
            self._held = ""
            return ""
        return self._let_through(rest)

    def finish(self) -> str:
        """Return what is held back once the reply is over: text that turned out to be no thinking."""
        if self._state == "start":
            return self._let_through()
        self._held = ""
        return ""

    def _let_through(self, text: str | None = None) -> str:
        text = self._held if text is None else text
        self._state, self._held = "through", ""
        return text


def for_reply(parsed, header: str) -> Thinking:
    """Return the Thinking of a reply to the buffer PARSED, printed after HEADER (`!assistant` and `!prepend`)."""
    return Thinking(excluded=parsed.exclude == "think", at_line_start=header.endswith("\n"),
                    hide=parsed.hide_thinking)
