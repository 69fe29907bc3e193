"""The reply: text out of each response schema docs/wire.md reads, end markers, errors, GPT-OSS channels."""

import json

import pytest

from illume.errors import StreamError
from illume.reply import GptOss, Reply, error_message


def read(events: list) -> tuple[str, Reply]:
    """Return the text of EVENTS (JSON values, or raw strings) and the Reply that read them."""
    reply = Reply()
    text = "".join(reply.text(e if isinstance(e, str) else json.dumps(e)) for e in events)
    return text, reply


SCHEMAS = [
    # (name, events, text, stream finished)
    ("chat delta", [
        {"choices": [{"delta": {"role": "assistant"}}]},
        {"choices": [{"delta": {"content": "Hel"}}]},
        {"choices": [{"delta": {"content": "lo"}}]},
        {"choices": [{"delta": {}, "finish_reason": "stop"}]},
        "[DONE]",
    ], "Hello", True),
    ("completions text", [
        {"choices": [{"text": "one"}]},
        {"choices": [{"text": " two", "finish_reason": None}]},
        "[DONE]",
    ], "one two", True),
    ("chat content wins over text", [{"choices": [{"delta": {"content": "a"}, "text": "b"}]}, "[DONE]"], "a", True),
    ("empty chat content falls back to text", [{"choices": [{"delta": {"content": ""}, "text": "b"}]}, "[DONE]"],
     "b", True),
    ("only the first choice counts", [{"choices": [{"text": "a"}, {"text": "b"}]}, "[DONE]"], "a", True),
    ("llama.cpp native content", [
        {"content": "x", "stop": False},
        {"content": "y", "stop": False},
        {"content": "", "stop": True, "timings": {"predicted_n": 2}},
    ], "xy", True),
    ("llama.cpp without its stop", [{"content": "x", "stop": False}], "x", False),
    ("anthropic text", [
        {"type": "message_start", "message": {"id": "m"}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " there"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}},
        {"type": "message_stop"},
    ], "Hi there", True),
    ("anthropic thinking then text", [
        {"type": "content_block_delta", "delta": {"type": "thinking_delta", "thinking": "Let me"}},
        {"type": "content_block_delta", "delta": {"type": "thinking_delta", "thinking": " think."}},
        {"type": "content_block_delta", "delta": {"type": "signature_delta", "signature": "abc"}},
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Answer"}},
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "."}},
        {"type": "message_stop"},
    ], "<think>\nLet me think.\n</think>\n\nAnswer.", True),
    ("anthropic thinking twice", [
        {"delta": {"thinking": "a"}},
        {"delta": {"text": "b"}},
        {"delta": {"thinking": "c"}},
        {"delta": {"text": "d"}},
        {"type": "message_stop"},
    ], "<think>\na\n</think>\n\nb<think>\nc\n</think>\n\nd", True),
    ("anthropic without message_stop", [{"delta": {"text": "b"}}], "b", False),
    ("nothing after [DONE] is needed", ["[DONE]"], "", True),
    ("no events", [], "", False),
]


@pytest.mark.parametrize("events, text, finished", [s[1:] for s in SCHEMAS], ids=[s[0] for s in SCHEMAS])
def test_schemas(events, text, finished):
    got, reply = read(events)
    assert (got, reply.finished) == (text, finished)


def test_events_are_counted_without_done():
    _, reply = read([{"choices": [{"text": "a"}]}, {"choices": [{"text": "b"}]}, {"choices": []}, "[DONE]"])
    assert reply.events == 3


LIMITS = [
    ([{"choices": [{"delta": {"content": "a"}, "finish_reason": "length"}]}, "[DONE]"], "the token limit"),
    ([{"choices": [{"text": "a", "finish_reason": "stop"}]}, "[DONE]"], None),
    ([{"delta": {"stop_reason": "max_tokens"}}, {"type": "message_stop"}], "the token limit"),
    ([{"content": "", "stop": True, "stop_type": "limit"}], "the token limit"),
    ([{"content": "", "stop": True, "truncated": True}], "the token limit"),
    ([{"content": "", "stop": True, "stop_type": "eos"}], None),
]


@pytest.mark.parametrize("events, limit", LIMITS)
def test_token_limit(events, limit):
    _, reply = read(events)
    assert reply.limit == limit


def test_llama_cpp_timings_are_kept():
    _, reply = read([{"content": "", "stop": True, "timings": {"predicted_per_second": 9.5}}])
    assert reply.timings == {"predicted_per_second": 9.5}


ERRORS = [
    # (event data, event type, message)
    ('{"error":{"code":500,"message":"boom","type":"server_error"}}', "message",
     "the server reported an error: boom (server_error)"),
    ('{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}', "error",
     "the server reported an error: Overloaded (overloaded_error)"),
    ('{"error":"plain words"}', "message", "the server reported an error: plain words"),
    ('{"message":"no error key"}', "error", "the server reported an error: no error key"),
]


@pytest.mark.parametrize("data, event_type, message", ERRORS)
def test_error_events(data, event_type, message):
    with pytest.raises(StreamError) as caught:
        Reply().text(data, event_type)
    assert str(caught.value) == message


@pytest.mark.parametrize("data", ["not json", "[1,2]", '"a string"', "{truncated"])
def test_malformed_events_are_noted_not_shown(data):
    reply = Reply()
    assert reply.text(data) == ""
    assert reply.malformed == [data]


ERROR_SHAPES = [
    ("text", "text"),
    ({"message": "m"}, "m"),
    ({"message": "m", "type": "t"}, "m (t)"),
    ({"message": "bad t here", "type": "t"}, "bad t here"),
    ({"msg": "m", "code": "c"}, "m (c)"),
    ({"detail": "d"}, "d"),
    ({"message": "m", "code": 400}, "m"),
    ({"other": 1}, '{"other": 1}'),
    (["a", "b"], '["a", "b"]'),
]


@pytest.mark.parametrize("error, message", ERROR_SHAPES)
def test_error_message(error, message):
    assert error_message(error) == message


HARMONY = ("<|channel|>analysis<|message|>Think hard.<|end|>"
           "<|start|>assistant<|channel|>final<|message|>The answer.<|return|>")
HARMONY_OUT = "<think>\nThink hard.\n</think>\n\nThe answer."

GPT_OSS = [
    # (name, chunks, text)
    ("whole", [HARMONY], HARMONY_OUT),
    ("one character at a time", list(HARMONY), HARMONY_OUT),
    ("tokens split", ["<|chan", "nel|>analysis<|mes", "sage|>Think", " hard.<", "|end|><|start|>assist",
                      "ant<|channel|>final<|message|>The answer.<|return|>"], HARMONY_OUT),
    ("split after <", ["a<", "|channel|>analysis<|message|>b<|end|>"], "a<think>\nb\n</think>\n\n"),
    ("final channel only", ["<|channel|>final<|message|>Hi"], "Hi"),
    ("plain text", ["no tokens < here |> at all"], "no tokens < here |> at all"),
    ("a lone < at the end", ["a <"], "a <"),
    ("an unfinished token at the end", ["a <|chan"], "a <|chan"),
    ("unknown tokens are dropped", ["<|channel|>final <|constrain|>json<|message|>{}"], "{}"),
    ("end closes the thinking", ["<|channel|>analysis<|message|>x<|end|>"], "<think>\nx\n</think>\n\n"),
    ("thinking left open", ["<|channel|>analysis<|message|>x"], "<think>\nx"),
    ("long <| run is not a token", ["<|" + "x" * 40 + " and more"], "<|" + "x" * 40 + " and more"),
]


@pytest.mark.parametrize("chunks, text", [g[1:] for g in GPT_OSS], ids=[g[0] for g in GPT_OSS])
def test_gpt_oss(chunks, text):
    translate = GptOss()
    assert "".join(translate.feed(c) for c in chunks) + translate.finish() == text
