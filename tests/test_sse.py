"""The incremental SSE decoder (WHATWG HTML 9.2.6), by input/expected tables as httpx-sse tests its decoder."""

import pytest

from illume.sse import Decoder, Event


def decode(chunks: list[bytes]) -> list[Event]:
    decoder = Decoder()
    events = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    events.extend(decoder.close())
    return events


M = "message"

CASES = [
    # (name, chunks as they arrive, events)
    ("lf", [b"data: a\n\ndata: b\n\n"], [Event(M, "a"), Event(M, "b")]),
    ("crlf", [b"data: a\r\n\r\ndata: b\r\n\r\n"], [Event(M, "a"), Event(M, "b")]),
    ("cr", [b"data: a\r\rdata: b\r\r"], [Event(M, "a"), Event(M, "b")]),
    ("mixed line ends", [b"data: a\r\n\rdata: b\n\r\n"], [Event(M, "a"), Event(M, "b")]),
    ("crlf split across chunks", [b"data: a\r", b"\n\r", b"\n"], [Event(M, "a")]),
    # A read that ends between CR and LF: the LF finishes that line end; it
    # is no empty line of its own, which would end the event there.
    ("two-line event, crlf cut at the cr", [b"data: a\r", b"\ndata: b\r\n\r\n"], [Event(M, "a\nb")]),
    ("event type, crlf cut at the cr", [b"event: error\r", b"\ndata: x\r\n\r\n"], [Event("error", "x")]),
    ("typed two-line crlf event, one byte at a time",
     [bytes([c]) for c in b"event: error\r\ndata: a\r\ndata: b\r\n\r\n"], [Event("error", "a\nb")]),
    ("cr then a new line in the next chunk", [b"data: a\r", b"\rdata: b\r", b"\r"], [Event(M, "a"), Event(M, "b")]),
    ("one byte at a time", [bytes([c]) for c in b"data: hi\r\n\r\n"], [Event(M, "hi")]),
    ("line split across chunks", [b"da", b"ta: he", b"llo\n", b"\n"], [Event(M, "hello")]),
    ("utf-8 split across chunks", [b"data: caf\xc3", b"\xa9 \xe2\x82", b"\xac\n\n"], [Event(M, "café €")]),
    ("four-byte character split", [b"data: \xf0\x9f", b"\x98", b"\x80\n\n"], [Event(M, "😀")]),
    ("invalid utf-8 is replaced", [b"data: a\xffb\n\n"], [Event(M, "a\ufffdb")]),
    ("comment", [b": keep-alive\n\ndata: a\n\n"], [Event(M, "a")]),
    ("comment inside an event", [b"data: a\n: note\ndata: b\n\n"], [Event(M, "a\nb")]),
    ("multi-line data", [b"data: a\ndata: b\ndata: c\n\n"], [Event(M, "a\nb\nc")]),
    ("no space after colon", [b"data:a\n\n"], [Event(M, "a")]),
    ("only one space is removed", [b"data:  a \n\n"], [Event(M, " a ")]),
    ("only one space is removed from any field", [b"event:  e\ndata:x\n\n"], [Event(" e", "x")]),
    ("empty data", [b"data:\n\n"], [Event(M, "")]),
    ("empty data line in the middle", [b"data: a\ndata:\ndata: b\n\n"], [Event(M, "a\n\nb")]),
    ("event type", [b"event: content_block_delta\ndata: {}\n\n"], [Event("content_block_delta", "{}")]),
    ("event type without space", [b"event:error\ndata: x\n\n"], [Event("error", "x")]),
    ("event type resets after dispatch", [b"event: e\ndata: 1\n\ndata: 2\n\n"], [Event("e", "1"), Event(M, "2")]),
    ("event type without data is dropped", [b"event: ping\n\ndata: 2\n\n"], [Event(M, "2")]),
    ("id and retry are ignored", [b"id: 7\nretry: 100\ndata: a\n\n"], [Event(M, "a")]),
    ("unknown fields are ignored", [b"foo: bar\ndata: a\n\n"], [Event(M, "a")]),
    ("blank lines without data dispatch nothing", [b"\n\n\r\n\r\r"], []),
    ("final line without newline", [b"data: [DONE]"], [Event(M, "[DONE]")]),
    ("final event without blank line", [b"data: a\n"], [Event(M, "a")]),
    ("final crlf held back then closed", [b"data: a\r"], [Event(M, "a")]),
    ("nothing", [], []),
    ("llama.cpp chat stream", [
        b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n',
        b'data: {"choices":[{"delta":{"content":"!"}}]}\n\ndata: [DONE]\n\n',
    ], [
        Event(M, '{"choices":[{"delta":{"content":"Hi"}}]}'),
        Event(M, '{"choices":[{"delta":{"content":"!"}}]}'),
        Event(M, "[DONE]"),
    ]),
]


@pytest.mark.parametrize("chunks, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decode(chunks, expected):
    assert decode(chunks) == expected


def test_events_come_out_as_soon_as_their_blank_line_arrives():
    decoder = Decoder()
    assert decoder.feed(b"data: a\n") == []
    assert decoder.feed(b"\n") == [Event(M, "a")]
    assert decoder.feed(b"data: b\r") == []
    assert decoder.feed(b"\n\r") == [Event(M, "b")]  # a CR ends its line at once
    assert decoder.feed(b"\n") == []  # the rest of that CRLF, not a line of its own
    assert decoder.close() == []


# Servers and scripts that leave out the blank line between events: the
# original reads each `data: ` line on its own, so a complete JSON value or
# [DONE] ends the event before the next data line.
LENIENT = [
    ("two JSON events, no blank line", [b'data: {"a":1}\ndata: {"b":2}\n\n'],
     [Event("message", '{"a":1}'), Event("message", '{"b":2}')]),
    ("[DONE] right after an event", [b'data: {"a":1}\ndata: [DONE]\n'],
     [Event("message", '{"a":1}'), Event("message", "[DONE]")]),
    ("[DONE] after text that is not JSON", [b"data: x\ndata: [DONE]\n"],
     [Event("message", "x"), Event("message", "[DONE]")]),
    ("a JSON value split over data lines still joins", [b'data: {"a":\ndata: 1}\n\n'],
     [Event("message", '{"a":\n1}')]),
    ("no blank line, split across chunks", [b'data: {"a":1}\nda', b'ta: {"b":2}\n'],
     [Event("message", '{"a":1}'), Event("message", '{"b":2}')]),
    ("no space after the colon, no blank lines", [b'data:{"a":1}\ndata:{"b":2}\ndata:{"c":3}\ndata:[DONE]\n'],
     [Event("message", '{"a":1}'), Event("message", '{"b":2}'), Event("message", '{"c":3}'),
      Event("message", "[DONE]")]),
    ("no space, no blank lines, one byte at a time", [bytes([c]) for c in b'data:{"a":1}\ndata:{"b":2}\n'],
     [Event("message", '{"a":1}'), Event("message", '{"b":2}')]),
    ("spaces mixed, no blank lines", [b'data:{"a":1}\ndata: {"b":2}\ndata:{"c":3}\n\n'],
     [Event("message", '{"a":1}'), Event("message", '{"b":2}'), Event("message", '{"c":3}')]),
]


@pytest.mark.parametrize("chunks, expected", [c[1:] for c in LENIENT], ids=[c[0] for c in LENIENT])
def test_data_lines_without_blank_lines(chunks, expected):
    assert decode(chunks) == expected


# --- bounds -------------------------------------------------------------------------

def test_many_data_lines_without_a_blank_line_are_parsed_once_each(monkeypatch):
    # The leniency above once re-parsed all the data held at every new line:
    # 80,000 such lines took 38 s. Each byte is now looked at a bounded number of times.
    from illume import sse

    seen = []
    real = sse.json.loads
    monkeypatch.setattr(sse.json, "loads", lambda text: seen.append(len(text)) or real(text))
    body = b"".join(b"data: x%d\n" % i for i in range(20000)) + b"\n"
    decoder = Decoder()
    events = [e for i in range(0, len(body), 1000) for e in decoder.feed(body[i:i + 1000])] + decoder.close()
    assert len(events) == 1 and events[0].data.count("\n") == 19999
    assert sum(seen) <= len(body)


def test_a_long_line_is_joined_once_at_its_end():
    # A 10 MB line in 64 KiB pieces, as httpx hands them over: joining the
    # line so far to each new piece was quadratic in its length (0.36 s for
    # these 10 MB). The pieces are kept as they came and joined once.
    decoder = Decoder()
    piece = b"x" * 65536
    assert decoder.feed(b"data: ") == []
    for _ in range(160):
        assert decoder.feed(piece) == []
    assert len(decoder._pieces) == 161
    assert decoder.feed(b"\n\n") == [Event(M, "x" * (65536 * 160))]


def test_an_endless_line_is_an_error_at_the_cap():
    from illume.errors import StreamError

    decoder = Decoder(max_line=1000)
    assert decoder.feed(b"data: " + b"x" * 990) == []
    with pytest.raises(StreamError, match="^the server sent a line of more than 1000 bytes without ending it: "
                                          "this is not an event stream$"):
        decoder.feed(b"x" * 10)


def test_an_event_without_its_blank_line_is_an_error_at_the_cap():
    from illume.errors import StreamError

    decoder = Decoder(max_line=1000)
    with pytest.raises(StreamError, match="^the server sent an event of more than 1000 bytes without ending it"):
        for _ in range(1000):
            decoder.feed(b"data: line\n")
