"""An incremental Server-Sent Events decoder (the WHATWG HTML spec, section 9.2.6).

`Decoder.feed` takes bytes as they arrive, in pieces of any size, and
returns the events they complete. Lines end in LF, CR or CRLF, even when a
CRLF is split across two pieces; text is decoded only once a line is whole,
so a UTF-8 character split across pieces survives. Pure: no I/O.

One leniency: a `data:` line that follows a complete JSON value (or
`[DONE]`) without the blank line between starts a new event, as the
original reads every `data: ` line on its own (docs/wire.md) and some servers
and scripts never send the blank lines.
"""

import json
from typing import NamedTuple


class Event(NamedTuple):
    type: str  # "message" unless an `event:` line said otherwise
    data: str


class Decoder:
    def __init__(self):
        self._tail = b""  # an incomplete line
        self._data: list[bytes] = []
        self._type = b""

    def feed(self, chunk: bytes) -> list[Event]:
        """Return the events that CHUNK completes."""
        if self._tail:
            chunk = self._tail + chunk
        held_cr = False
        if b"\r" in chunk:
            if chunk.endswith(b"\r"):
                # It may be the first half of a CRLF: decide with the next chunk.
                chunk = chunk[:-1]
                held_cr = True
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = chunk.split(b"\n")
        self._tail = lines.pop() + (b"\r" if held_cr else b"")
        events = []
        data = self._data
        for line in lines:
            if line[:6] == b"data: ":
                # The common case, kept inline: it runs once per token.
                if data and _starts_event(data, line[6:]):
                    events.append(self._dispatch())
                    data = self._data
                data.append(line[6:])
            elif line:
                self._field(line, events)
                data = self._data
            elif data:
                events.append(self._dispatch())
                data = self._data
            else:
                self._type = b""
        return events

    def close(self) -> list[Event]:
        """Return what the end of the stream completes: a last line without its newline."""
        events = self.feed(b"\n") if self._tail else []
        # The spec drops an event that never saw its blank line; a reply
        # that ends that way is still text the user is owed.
        if self._data:
            events.append(self._dispatch())
        return events

    def _field(self, line: bytes, events: list) -> None:
        if line[0] == 0x3A:  # ":" starts a comment
            return
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            if self._data and _starts_event(self._data, value):
                events.append(self._dispatch())
            self._data.append(value)
        elif name == b"event":
            self._type = value
        # id and retry mean nothing to a one-shot reader.

    def _dispatch(self) -> Event:
        data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
        kind = self._type.decode("utf-8", "replace") if self._type else "message"
        event = Event(kind, data.decode("utf-8", "replace"))
        self._data = []
        self._type = b""
        return event


def _starts_event(data: list[bytes], value: bytes) -> bool:
    """Return whether the data line VALUE starts an event of its own after DATA, the data lines so far."""
    if value.strip() == b"[DONE]":
        return True
    text = data[0] if len(data) == 1 else b"\n".join(data)
    if text.strip() == b"[DONE]":
        return True
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
