"""Thinking in a field of its own streams as a `<think>` block that the next turn leaves out; `!stats` usage.

Scripted servers play each API's shapes as their documentation gives them
(OpenAI-compatible servers' `reasoning_content` and `reasoning`, Anthropic's
thinking deltas, Gemini's `thought` parts; each one's usage): a real server
does not send them on demand. The real llama-server's own are in
test_thinking_server.py.
"""

import json
import re

import pytest

from conftest import LIMIT_NOTE, run_illume
from illume.reply import Reply as ReplyReader
from illume.thinking import Thinking
from illume.usage import Usage, read
from scripted import Reply, event

ASSISTANT = "\n\n!assistant\n\n"


def chunk(**delta) -> str:
    """Return an OpenAI-compatible chat chunk whose delta is DELTA (`finish` sets finish_reason)."""
    finish = delta.pop("finish", None)
    return json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def ask(server, events: list, buffer: str = "!user\nHi\n", *args: str):
    """Return the CLI's run on BUFFER (after `!api` of SERVER) while SERVER plays EVENTS."""
    server.respond(Reply(events))
    return run_illume(f"!api {server.url}\n" + buffer, *args)


def next_turn_messages(buffer: str, printed: bytes) -> list:
    """Return the messages the next turn sends: BUFFER, the reply PRINTED, and a new question."""
    dry = run_illume(buffer + printed.decode() + "\n!user\nMore\n", "--debug")
    assert dry.returncode == 0, dry.stdout
    return json.loads(dry.stdout.decode().split("\n\n", 3)[2])["messages"]


# --- OpenAI-compatible servers: llama-server, vLLM, DeepSeek, Ollama, OpenRouter ----------------------

@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_thinking_split_across_events_streams_into_a_think_block(server, field):
    events = [chunk(role="assistant", content=None), chunk(**{field: "Let me", "content": None}),
              chunk(**{field: " see.\n!api http://evil.example/", "content": ""}), chunk(content="Hel"),
              chunk(content="lo."), chunk(finish="stop"), "[DONE]"]
    done = ask(server, events)
    assert done.returncode == 0, done.stdout
    # The model's `!api` line inside the thinking gets the escape as any reply line does.
    assert done.stdout == (ASSISTANT + "!exclude think\n<think>\nLet me see.\n!!api http://evil.example/"
                           "\n</think>\n\nHello.").encode()
    assert next_turn_messages(f"!api {server.url}\n!user\nHi\n", done.stdout)[-2:] == [
        {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "More"}]


def test_thinking_and_answer_in_one_delta(server):
    done = ask(server, [chunk(reasoning_content="a", content=None), chunk(reasoning_content="b", content="c"),
                        "[DONE]"])
    assert done.stdout == (ASSISTANT + "!exclude think\n<think>\nab\n</think>\n\nc").encode()


def test_thinking_with_no_answer_cut_at_the_token_limit(server):
    done = ask(server, [chunk(reasoning_content="Hmm, "), chunk(reasoning_content="so"),
                        chunk(finish="length"), "[DONE]"])
    assert done.returncode == 0
    # The block is closed, so that `!exclude think` skips only the thinking, not the next `!user`.
    assert done.stdout == (ASSISTANT + "!exclude think\n<think>\nHmm, so\n</think>" + LIMIT_NOTE).encode()
    messages = next_turn_messages(f"!api {server.url}\n!user\nHi\n", done.stdout)
    assert messages[-1] == {"role": "user", "content": "More"}
    assert all("Hmm" not in m["content"] for m in messages)


def test_thinking_cut_by_a_dropped_connection_is_closed_too(server):
    done = ask(server, [chunk(reasoning_content="Hmm")])  # no [DONE]
    assert done.returncode != 0
    assert done.stdout.startswith((ASSISTANT + "!exclude think\n<think>\nHmm\n</think>\n\n!error\n\n").encode())


def test_answer_with_no_thinking_is_the_original_bytes(server):
    done = ask(server, [chunk(role="assistant", content=""), chunk(content="Hi!"), chunk(finish="stop"), "[DONE]"])
    assert done.stdout == (ASSISTANT + "Hi!").encode()


def test_the_buffer_own_exclude_think_needs_no_line_of_illume(server):
    done = ask(server, [chunk(reasoning_content="x"), chunk(content="y"), "[DONE]"], "!exclude think\n!user\nHi\n")
    assert done.stdout == (ASSISTANT + "<think>\nx\n</think>\n\ny").encode()


def test_a_reply_that_goes_on_a_prepend_line_gets_no_directive(server):
    done = ask(server, [chunk(reasoning_content="x"), chunk(content="y"), "[DONE]"],
               '!prepend "Sure: "\n!user\nHi\n')
    assert done.stdout == (ASSISTANT + "Sure: <think>\nx\n</think>\n\ny").encode()


def test_thinking_after_the_answer_began_gets_no_directive(server):
    done = ask(server, [chunk(content="a"), chunk(reasoning_content="x"), chunk(content="b"), "[DONE]"])
    assert done.stdout == (ASSISTANT + "a<think>\nx\n</think>\n\nb").encode()


@pytest.mark.parametrize("events", [
    [chunk(reasoning_content="secret plan"), chunk(content="Hi!"), "[DONE]"],
    [chunk(content="<think>\nsecret"), chunk(content=" plan\n</thi"), chunk(content="nk>\n\nHi!"), "[DONE]"],
    [chunk(content="<|channel|>analysis<|message|>secret plan<|end|><|start|>assistant<|channel|>final"
                   "<|message|>Hi!"), "[DONE]"],
], ids=["field", "the model's own lines", "gpt-oss channels"])
def test_thinking_hide_shows_only_the_answer(server, events):
    done = ask(server, events, "!gpt-oss\n!thinking hide\n!user\nHi\n")
    assert done.returncode == 0
    assert done.stdout == (ASSISTANT + "Hi!").encode()


def test_thinking_hide_keeps_a_reply_that_only_looks_like_thinking(server):
    done = ask(server, [chunk(content="<thin"), chunk(content="g>\n"), "[DONE]"], "!thinking hide\n!user\nHi\n")
    assert done.stdout == (ASSISTANT + "<thing>\n").encode()


def test_thinking_show_is_the_default(server):
    done = ask(server, [chunk(reasoning="x"), chunk(content="y"), "[DONE]"], "!thinking hide\n!thinking show\n!user\nHi\n")
    assert done.stdout == (ASSISTANT + "!exclude think\n<think>\nx\n</think>\n\ny").encode()


@pytest.mark.parametrize("line, message", [
    ("!thinking", "!thinking takes hide or show, not ''"),
    ("!thinking off", "!thinking takes hide or show, not 'off'"),
    ("!prices 1 2", "!prices: expected three prices"),
    ("!prices 1 x 2", "!prices: expected three prices"),
    ("!prices 1 -1 2", "!prices: expected three prices"),
    ("!prices 1 nan 2", "!prices: expected three prices"),
])
def test_bad_thinking_and_prices_lines_are_errors(server, line, message):
    done = ask(server, [chunk(content="x"), "[DONE]"], f"{line}\n!user\nHi\n")
    assert done.returncode != 0
    assert b"!error\n\n<stdin>:2: " + message.encode() in done.stdout
    assert server.requests == []


def test_the_next_turn_leaves_out_every_thinking_block_of_illume(server):
    buffer = f"!api {server.url}\n!user\nHi\n"
    first = ask(server, [chunk(reasoning_content="one"), chunk(content="A"), "[DONE]"])
    buffer += first.stdout.decode() + "\n\n!user\nAgain\n"
    second = ask(server, [chunk(reasoning_content="two"), chunk(content="B"), "[DONE]"], buffer.split("\n", 1)[1])
    # The first line holds for the rest of the buffer: no second `!exclude think`.
    assert second.stdout == (ASSISTANT + "<think>\ntwo\n</think>\n\nB").encode()
    messages = next_turn_messages(buffer, second.stdout)
    assert [m["content"] for m in messages if m["role"] != "system"] == ["Hi", "A", "Again", "B", "More"]


# --- Anthropic ----------------------------------------------------------------------------------

def anthropic(blocks: list, stop_reason: str = "end_turn", output_tokens: int = 15, usage: bool = True) -> list:
    """Return Anthropic's stream for BLOCKS ((kind, [deltas]) each), as its Messages streaming docs give it."""
    start = {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                                                  "content": [], "model": "claude-sonnet-4-5", "stop_reason": None}}
    if usage:
        start["message"]["usage"] = {"input_tokens": 472, "cache_creation_input_tokens": 0,
                                     "cache_read_input_tokens": 2048, "output_tokens": 1}
    events = [event(start, "message_start")]
    for index, (kind, deltas) in enumerate(blocks):
        events.append(event({"type": "content_block_start", "index": index,
                             "content_block": {"type": kind, kind: ""}}, "content_block_start"))
        for piece in deltas:
            delta = {"type": f"{kind}_delta", kind: piece}
            events.append(event({"type": "content_block_delta", "index": index, "delta": delta}, "content_block_delta"))
        if kind == "thinking":
            events.append(event({"type": "content_block_delta", "index": index,
                                 "delta": {"type": "signature_delta", "signature": "EqQB"}}, "content_block_delta"))
        events.append(event({"type": "content_block_stop", "index": index}, "content_block_stop"))
    last = {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None}}
    if usage:
        last["usage"] = {"output_tokens": output_tokens}
    events += [event(last, "message_delta"), event({"type": "message_stop"}, "message_stop")]
    return events


def test_anthropic_thinking_split_across_events_with_usage(server):
    events = anthropic([("thinking", ["Let me ", "think."]), ("text", ["Hel", "lo"])])
    done = ask(server, events, "!stats usage\n!user\nHi\n")
    assert done.returncode == 0, done.stdout
    text = done.stdout.decode()
    assert text.startswith(ASSISTANT + "!exclude think\n<think>\nLet me think.\n</think>\n\nHello\n\n!note ")
    assert text.endswith("\n\n!note used 2,520 prompt tokens (2,048 cached), 15 reply tokens")


def test_anthropic_thinking_cut_at_max_tokens(server):
    done = ask(server, anthropic([("thinking", ["Hmm"])], stop_reason="max_tokens"))
    assert done.stdout == (ASSISTANT + "!exclude think\n<think>\nHmm\n</think>" + LIMIT_NOTE).encode()


def test_anthropic_answer_with_no_thinking_and_no_usage(server):
    done = ask(server, anthropic([("text", ["Hi"])], usage=False), "!stats usage\n!user\nHi\n")
    assert re.fullmatch(rb"\n\n!assistant\n\nHi\n\n!note [^\n]+ tok/s, \d+ toks, [^\n]+", done.stdout), done.stdout


def test_claude_extended_profile_sets_exclude_think(server):
    done = ask(server, anthropic([("thinking", ["x"]), ("text", ["y"])]),
               f"!profile claude-extended\n!api {server.url}\n!user\nHi\n")
    assert done.stdout == (ASSISTANT + "<think>\nx\n</think>\n\ny").encode()


# --- Gemini's own API (streamGenerateContent?alt=sse) -------------------------------------------

def gemini(parts: list, finish: str | None = None, usage: dict | None = None) -> str:
    """Return one Gemini stream event of PARTS ((text, thought) each)."""
    candidate = {"content": {"parts": [{"text": text, **({"thought": True} if thought else {})}
                                       for text, thought in parts], "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    value = {"candidates": [candidate], "modelVersion": "gemini-2.5-flash"}
    if usage:
        value["usageMetadata"] = usage
    return json.dumps(value)


GEMINI_USAGE = {"promptTokenCount": 12, "candidatesTokenCount": 7, "thoughtsTokenCount": 30, "totalTokenCount": 49}


def test_gemini_thought_parts_stream_into_a_think_block_with_usage(server):
    events = [gemini([("I should ", True)]), gemini([("greet.", True)]),
              gemini([("Hello", False)]), gemini([(" there", False)], "STOP", GEMINI_USAGE)]
    done = ask(server, events, "!stats\n!prices 0.3 0.03 2.5\n!user\nHi\n")
    assert done.returncode == 0, done.stdout
    text = done.stdout.decode()
    assert text.startswith(ASSISTANT + "!exclude think\n<think>\nI should greet.\n</think>\n\nHello there\n\n")
    # 12 x 0.3 + 37 x 2.5, per million
    assert text.endswith("\n\n!note used 12 prompt tokens, 37 reply tokens (30 thinking), cost 0.000096")


def test_gemini_thinking_with_no_answer_at_max_tokens(server):
    done = ask(server, [gemini([("Hmm", True)]), gemini([], "MAX_TOKENS")])
    assert done.stdout == (ASSISTANT + "!exclude think\n<think>\nHmm\n</think>" + LIMIT_NOTE).encode()


# --- usage ------------------------------------------------------------------------------------------

def test_openai_usage_in_the_last_event_with_its_cost(server):
    usage = {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500,
             "prompt_tokens_details": {"cached_tokens": 1000}, "completion_tokens_details": {"reasoning_tokens": 256}}
    events = [json.dumps({"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}], "usage": None}),
              json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": None}),
              json.dumps({"choices": [], "usage": usage}), "[DONE]"]
    done = ask(server, events, '!stats\n!prices 1.25 0.125 10\n!:stream_options {"include_usage": true}\n!user\nHi\n')
    assert done.returncode == 0
    # 200 x 1.25 + 1000 x 0.125 + 300 x 10, per million
    assert done.stdout.decode().endswith(
        "\n\n!note used 1,200 prompt tokens (1,000 cached), 300 reply tokens (256 thinking), cost 0.003375")
    assert b'"stream_options":{"include_usage":true}' in server.requests[-1].body


def test_deepseek_usage_names_its_cache_hits(server):
    usage = {"prompt_tokens": 50, "completion_tokens": 9, "prompt_cache_hit_tokens": 40, "prompt_cache_miss_tokens": 10,
             "completion_tokens_details": {"reasoning_tokens": 4}}
    done = ask(server, [chunk(reasoning_content="x"), chunk(content="y"),
                        json.dumps({"choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "stop"}],
                                    "usage": usage}), "[DONE]"], "!stats usage\n!user\nHi\n")
    assert done.stdout.decode().endswith("\n\n!note used 50 prompt tokens (40 cached), 9 reply tokens (4 thinking)")


def test_llama_server_timings_give_the_usage(server):
    last = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "timings": {"cache_n": 13, "prompt_n": 4, "predicted_n": 22, "predicted_ms": 165.1}}
    done = ask(server, [chunk(content="x"), json.dumps(last), "[DONE]"], "!stats usage\n!user\nHi\n")
    assert done.stdout.decode().endswith("\n\n!note used 17 prompt tokens (13 cached), 22 reply tokens")


def test_plain_stats_prints_only_the_original_line_whatever_the_server_counts(server):
    # `!stats` without `usage` is the original's directive: one line, even where llama-server sends timings.
    last = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "timings": {"cache_n": 13, "prompt_n": 4, "predicted_n": 22, "predicted_ms": 165.1}}
    done = ask(server, [chunk(content="x"), json.dumps(last), "[DONE]"], "!stats\n!user\nHi\n")
    assert re.fullmatch(rb"\n\n!assistant\n\nx\n\n!note [^\n]+ tok/s, 2 toks, [^\n]+", done.stdout), done.stdout


def test_usage_missing_adds_nothing_and_stats_asks_for_nothing(server):
    done = ask(server, [chunk(content="Hi"), chunk(finish="stop"), "[DONE]"], "!stats usage\n!user\nHi\n")
    assert re.fullmatch(rb"\n\n!assistant\n\nHi\n\n!note [^\n]+ tok/s, 2 toks, [^\n]+", done.stdout), done.stdout
    # `!stats` asks the server for nothing more: usage is asked for only by the buffer's own key.
    with_stats = server.requests[-1].body
    ask(server, [chunk(content="Hi"), "[DONE]"])
    assert with_stats == server.requests[-1].body and b"stream_options" not in with_stats


def test_usage_without_stats_is_not_shown(server):
    done = ask(server, [chunk(content="Hi"), json.dumps({"choices": [], "usage": {"prompt_tokens": 3}}), "[DONE]"])
    assert done.stdout == (ASSISTANT + "Hi").encode()


@pytest.mark.parametrize("value, expected", [
    ({"usage": {"prompt_tokens": 5, "completion_tokens": 2}}, Usage(5, None, 2, None)),
    ({"usage": {"prompt_tokens": True, "completion_tokens": -1}}, Usage()),
    ({"usage": {"input_tokens": 5, "cache_creation_input_tokens": 2, "output_tokens": 1}}, Usage(7, None, 1)),
    ({"type": "message_start", "message": {"usage": {"input_tokens": 5, "output_tokens": 1}}}, Usage(5, None, 1)),
    ({"usageMetadata": {"promptTokenCount": 9, "cachedContentTokenCount": 4, "candidatesTokenCount": 3}},
     Usage(9, 4, 3)),
    ({"timings": {"prompt_n": 1, "cache_n": 0, "predicted_n": 3}}, Usage(1, 0, 3)),
    ({"usage": "lots"}, None),
])
def test_read_usage(value, expected):
    found = read(value)
    assert repr(found) == repr(expected)


def test_later_usage_events_add_to_the_first():
    reply = ReplyReader()
    reply.text(json.dumps({"type": "message_start", "message": {"usage": {"input_tokens": 5, "output_tokens": 1}}}))
    reply.text(json.dumps({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}}))
    assert repr(reply.usage) == repr(Usage(5, None, 9))


# --- the hiding filter, fed in every cut ------------------------------------------------------------

@pytest.mark.parametrize("text, shown", [
    ("<think>\nplan\n</think>\n\nHi!", "Hi!"),
    ("<think>\n</think>\n\nHi!", "Hi!"),
    ("<think>\n\n</think>\n\nHi!", "Hi!"),
    ("<think>\nplan", ""),
    ("<think>", "<think>"),
    ("Hi <think>\nx\n</think>\n", "Hi <think>\nx\n</think>\n"),
    ("<think>\na </think> b\n</think>\nok", "ok"),
])
def test_hiding_in_every_cut(text, shown):
    for cut in range(len(text) + 1):
        for second in range(cut, len(text) + 1):
            hider = Thinking(excluded=False, at_line_start=True, hide=True)
            out = "".join(hider.feed(piece) for piece in (text[:cut], text[cut:second], text[second:]))
            assert out + hider.finish() == shown, (cut, second)


# --- a batch run ------------------------------------------------------------------------------------

def test_a_batch_run_ends_with_the_totals(server, tmp_path):
    usage = {"prompt_tokens": 100, "completion_tokens": 20, "prompt_tokens_details": {"cached_tokens": 60}}
    server.respond(Reply([chunk(reasoning_content="x"), chunk(content="y", finish="stop"),
                          json.dumps({"choices": [], "usage": usage}), "[DONE]"]))
    files = []
    for name, lines in [("a", "!stats\n!prices 1 0.5 2\n"), ("b", "!stats usage\n"), ("c", "")]:
        files.append(tmp_path / f"{name}.txt")
        files[-1].write_text(f"!api {server.url}\n{lines}!user\nHi\n")
    done = run_illume(b"", "--batch", *map(str, files))
    assert done.returncode == 0, done.stderr
    # c has no !stats: not counted; only a set prices, so the cost is a's: (40 + 60 x 0.5 + 20 x 2) / 1e6.
    assert done.stderr.decode().endswith(
        "\nillume: 2 replies used 200 prompt tokens (120 cached), 40 reply tokens, cost 0.00011\n")
    assert files[2].read_text().endswith("!exclude think\n<think>\nx\n</think>\n\ny")


def test_a_whole_json_reply_with_thinking_and_usage(server):
    from scripted import response

    whole = {"choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "reasoning_content": "Easy.", "content": "Four"}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 5}}
    server.script(response(200, json.dumps(whole)))
    done = run_illume(f"!api {server.url}\n!stats usage\n!user\n2+2?\n")
    assert done.returncode == 0, done.stdout
    text = done.stdout.decode()
    assert text.startswith(ASSISTANT + "!exclude think\n<think>\nEasy.\n</think>\n\nFour\n\n!note ")
    assert text.endswith("\n\n!note used 9 prompt tokens, 5 reply tokens")
