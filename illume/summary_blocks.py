"""`!summary` blocks in the buffer language: what each stands in for (docs/buffer.md, "Summaries").

A `!summary` block, with its text below it up to the next role line,
stands in, in the request, for what it covers: the messages above it back
to the previous summary (`!summary all`: everything above it, the earlier
summaries too). The system prompt stays; the summaries that no later one
covers go at its end, in order, so that they are a stable prefix of every
request that follows (a prompt cache keeps hitting after them). The
covered text stays in the buffer, untouched.

illume puts on the `!summary` lines it writes a short checksum of the text
covered (`!summary #1a2b3c4d`): when that text is edited later, the
summary is stale (illume.summaries says so). A summary written by hand,
without a checksum, is trusted as it is. This module is the parser's half;
writing summaries is illume.summaries'.
"""

import hashlib
import re

from illume.errors import DirectiveError

CHECKSUM = re.compile(r"#[0-9a-f]{8}")


class Summary:
    """One `!summary` block: its text, where it is, what it covers, the checksum it was written with."""

    def __init__(self, text: str, line: int, whole: bool, checksum: str | None, covered: list):
        self.text = text
        self.line = line
        self.whole = whole  # `!summary all`: covers the earlier summaries too
        self.checksum = checksum  # "#1a2b3c4d", or None for a summary written by hand
        self.covered = covered  # the Messages and Summaries it stands in for, in order
        self.live = True  # no later summary covers it: it is sent

    @property
    def role(self) -> str:
        return "summary"

    @property
    def content(self) -> str:
        return self.text

    def stale(self) -> bool:
        """Return whether the text it covers changed after illume wrote it."""
        return self.checksum is not None and self.checksum != checksum(self.covered)

    def lines(self) -> str:
        """Return the buffer lines it covers, as `lines 3-40`."""
        first = self.first_line()
        return f"lines {first}-{self.line - 1}" if first is not None else "nothing"

    def first_line(self) -> int | None:
        """Return the first buffer line it stands in for, through the summaries it covers."""
        for part in self.covered:
            first = part.first_line() if isinstance(part, Summary) else part.line
            if first is not None:
                return first
        return None


def checksum(covered) -> str:
    """Return the checksum of COVERED (messages and summaries) that illume writes on a `!summary` line."""
    digest = hashlib.sha256()
    for part in covered:
        digest.update(f"{part.role}\n{part.content}\0".encode("utf-8", "surrogateescape"))
    return "#" + digest.hexdigest()[:8]


def heading(args: str) -> tuple[bool, str | None]:
    """Return what a `!summary` line's ARGS say: whether it covers all above, and its checksum (or None)."""
    whole, found = False, None
    for word in args.split():
        if word == "all" and not whole:
            whole = True
        elif CHECKSUM.fullmatch(word) and found is None:
            found = word
        else:
            raise DirectiveError(f"!summary: unexpected {word!r} (the line takes `all` and a checksum such as "
                                 "#1a2b3c4d, both optional)")
    return whole, found


def stand_in(messages: list, headings: dict[int, tuple[bool, str | None]]) -> tuple[list[Summary], list]:
    """Return the summaries among MESSAGES (the system prompt's excepted) and the messages after the last one.

    HEADINGS holds what each `!summary` line said, by its line number.
    """
    pending: list = []
    summaries: list[Summary] = []
    for message in messages:
        if message.role != "summary":
            pending.append(message)
            continue
        whole, found = headings[message.line]
        live = [s for s in summaries if s.live]
        covered = (live + pending) if whole else pending
        if whole:
            for earlier in live:
                earlier.live = False
        summaries.append(Summary(message.content, message.line, whole, found, covered))
        pending = []
    return summaries, pending
