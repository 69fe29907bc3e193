"""An incremental Server-Sent Events decoder (the WHATWG HTML spec, section 9.2.6).

`Decoder.feed` takes bytes as they arrive, in pieces of any size, and
returns the events they complete. Lines end in LF, CR or CRLF, even when a
CRLF is split across two pieces; text is decoded only once a line is whole,
so a UTF-8 character split across pieces survives. Pure: no I/O.

One leniency: a `data:` line that follows a complete JSON value (or
`[DONE]`) without the blank line between starts a new event, as the
original reads every `data: ` line on its own (docs/wire.md) and some
servers and scripts never send the blank lines. It is checked only where
it is cheap (one held line, parsed once), so decoding stays linear in
time; a line or an event past MAX_LINE bytes is a StreamError.
"""

import json
from typing import NamedTuple

from illume.errors import StreamError

# The data of the last event of an OpenAI-style stream: the end marker.
DONE = "[DONE]"
_DONE = DONE.encode()

# No line, and no event, may grow past this: a server that never ends a line
# would otherwise fill the memory. llama-server's last event may quote the
# whole prompt, so the cap is well above any buffer illume sends.
MAX_LINE = 256 * 1024 * 1024


class Event(NamedTuple):
    type: str  # "message" unless an `event:` line said otherwise
    data: str


class Decoder:
    """Feeds on bytes, returns events; linear in what it is fed, however the lines are cut."""

    def __init__(self, max_line: int = MAX_LINE):
        self.max_line = max_line
        self._pieces: list[bytes] = []  # an incomplete line, as it came: joined once it ends
        self._size = 0  # of the incomplete line
        self._after_cr = False  # the last chunk ended in CR: a LF first in the next one is its CRLF
        self._data: list[bytes] = []
        self._data_size = 0
        self._checked = False  # whether the one data line held was found not to end its event
        self._type = b""

    def feed(self, chunk: bytes) -> list[Event]:
        """Return the events that CHUNK completes; raise StreamError for a line or event past the cap."""
        if self._after_cr and chunk:
            self._after_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if b"\r" in chunk:
            ends_in_cr = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            # A CR at the end ends a line now; if a LF follows it, that is the rest of a CRLF.
            self._after_cr = ends_in_cr
        end = chunk.find(b"\n")
        if end < 0:
            self._hold(chunk)
            return []
        if self._pieces:
            first = b"".join(self._pieces) + chunk[:end]
            self._pieces, self._size = [], 0
            lines = chunk[end + 1 :].split(b"\n")
            lines.insert(0, first)
        else:
            lines = chunk.split(b"\n")
        self._hold(lines.pop())
        events = []
        for line in lines:
            if line[:6] == b"data: ":
                if self._data:
                    self._add_data(line[6:], events)
                else:
                    # The common case, kept inline: it runs once per token.
                    self._data.append(line[6:])
                    self._data_size = len(line)
            elif line:
                self._field(line, events)
            elif self._data:
                events.append(self._dispatch())
            else:
                self._type = b""
        return events

    def close(self) -> list[Event]:
        """Return what the end of the stream completes: a last line without its newline."""
        events = self.feed(b"\n") if self._pieces else []
        # The spec drops an event that never saw its blank line; a reply
        # that ends that way is still text the user is owed.
        if self._data:
            events.append(self._dispatch())
        return events

    def _hold(self, piece: bytes) -> None:
        if piece:
            self._pieces.append(piece)
            self._size += len(piece)
            if self._size > self.max_line:
                raise StreamError(f"the server sent a line of more than {_size(self.max_line)} without ending it: "
                                  "this is not an event stream")

    def _add_data(self, value: bytes, events: list) -> None:
        if self._data and self._starts_event(value):
            events.append(self._dispatch())
        self._data.append(value)
        self._data_size += len(value) + 1
        if self._data_size > self.max_line:
            raise StreamError(f"the server sent an event of more than {_size(self.max_line)} without ending it "
                              "(no blank line): this is not an event stream")

    def _starts_event(self, value: bytes) -> bool:
        """Return whether the data line VALUE starts an event of its own after the data lines held.

        Only a single held line is checked, and only once: a JSON value
        spread over several data lines and then followed by another without
        a blank line is not split, but no line is parsed twice here.
        """
        if value.strip() == _DONE:
            return True
        if len(self._data) != 1 or self._checked:
            return False
        held = self._data[0]
        if held.strip() == _DONE:
            return True
        try:
            json.loads(held)
        except ValueError:
            self._checked = True
            return False
        return True

    def _field(self, line: bytes, events: list) -> None:
        if line[0] == 0x3A:  # ":" starts a comment
            return
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            self._add_data(value, events)
        elif name == b"event":
            self._type = value
        # id and retry mean nothing to a one-shot reader.

    def _dispatch(self) -> Event:
        data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
        kind = self._type.decode("utf-8", "replace") if self._type else "message"
        event = Event(kind, data.decode("utf-8", "replace"))
        self._data = []
        self._data_size = 0
        self._checked = False
        self._type = b""
        return event


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n >= 1024 * 1024 else f"{n} bytes"
