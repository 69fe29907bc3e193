"""End to end: the real CLI against a real llama-server serving the real SmolLM2 model.

At temperature 0 with a seed the reply is fixed, so each test compares
illume's output with the exact text llama-server itself returns for the same
request asked directly and not streamed (conftest.ask_llama_server), token
limit note included, and `!stats` with the server's own `timings`.
"""

import re

import pytest

from conftest import ask_llama_server, run_illume

pytestmark = pytest.mark.server

SETTINGS = "!:temperature 0\n!:seed 42\n!:max_tokens 24\n"


def test_chat_turn_streams_an_assistant_section(llama_server):
    buffer = f"!api {llama_server}\n{SETTINGS}!user\nName a colour.\n"
    answer = ask_llama_server(buffer)
    assert answer.text.strip(), "the oracle is empty: the comparison below would prove little"
    result = run_illume(buffer)
    assert (result.returncode, result.stderr) == (0, b""), result.stdout
    assert result.stdout == answer.printed("\n\n!assistant\n\n")


def test_chat_reply_cut_at_the_token_limit_says_so(llama_server):
    buffer = f"!api {llama_server}\n{SETTINGS.replace('24', '6')}!user\nTell me a long story about a cat.\n"
    answer = ask_llama_server(buffer)
    assert answer.limit, answer.whole  # six tokens cannot hold the story
    result = run_illume(buffer)
    assert (result.returncode, result.stdout) == (0, answer.printed("\n\n!assistant\n\n"))


def test_chat_is_reproducible_with_a_seed(llama_server):
    buffer = f"!api {llama_server}\n{SETTINGS}!user\nWrite a word.\n"
    first, second = run_illume(buffer), run_illume(buffer)
    assert first.returncode == second.returncode == 0
    assert first.stdout == second.stdout


def test_completion_continues_the_text(llama_server):
    buffer = f"!api {llama_server}\n{SETTINGS}!completion\nOnce upon a time"
    answer = ask_llama_server(buffer)
    assert answer.text.strip() and answer.limit, answer.whole
    result = run_illume(buffer)
    assert (result.returncode, result.stdout) == (0, answer.printed())


def test_template_fim_goes_through_completions(llama_server):
    buffer = f"!api {llama_server}\n!profile fim:qwen\n{SETTINGS}def norm(v):\n!infill\n    return r\n"
    debug = run_illume(buffer + "!debug\n")
    assert f"POST {llama_server}completions HTTP/1.1".encode() in debug.stdout
    assert b'"prompt":"<|fim_prefix|>def norm(v):\\n<|fim_suffix|>\\n    return r<|fim_middle|>"' in debug.stdout
    answer = ask_llama_server(buffer)
    assert answer.text.strip(), answer.whole
    result = run_illume(buffer)
    assert (result.returncode, result.stdout) == (0, answer.printed())


def test_infill_endpoint_refusal_is_a_clear_error(llama_server):
    # SmolLM2 has no FIM tokens, so this llama-server refuses /infill with 501.
    result = run_illume(f"!api {llama_server}\n{SETTINGS}def f():\n!infill\n    return r\n")
    assert result.returncode == 1
    assert result.stdout.startswith(b"\n\n!error\n\nHTTP 501: ")
    assert b"nfill" in result.stdout and result.stdout.endswith(b"\n")
    assert b"Traceback" not in result.stdout + result.stderr


# The original's line, then illume's note of what the reply used (by the server's `timings`: test_thinking_server.py).
STATS = re.compile(r"\n\n!note ([0-9.e+]+) tok/s, (\d+) toks, [0-9.]+(ns|µs|ms|s)\n\n!note used [^\n]+$")


def test_stats_and_token_limit_notes(llama_server):
    # ignore_eos: the model may not end its turn before the limit, so the limit is sure to be reached.
    buffer = (f"!api {llama_server}\n!:max_tokens 5\n!:ignore_eos true\n!:temperature 0\n!:seed 42\n"
              "!user\nCount to twenty.\n")
    answer = ask_llama_server(buffer)
    assert answer.limit, answer.whole
    result = run_illume("!stats usage\n" + buffer)
    assert result.returncode == 0, result.stdout
    stats = STATS.search(result.stdout.decode())
    assert stats, result.stdout
    assert result.stdout[:-len(stats[0].encode())] == answer.printed("\n\n!assistant\n\n")


def test_stats_agree_with_the_servers_timings(llama_server):
    # The native completion endpoint streams one event per token and a last one with `"stop": true`.
    buffer = f"!api {llama_server}\n!:max_tokens 48\n!:ignore_eos true\n!:temperature 0\n!:seed 1\n!completion\nOnce"
    answer = ask_llama_server(buffer)
    timings = answer.whole["timings"]
    assert timings["predicted_n"] == 48, timings
    result = run_illume("!stats usage\n" + buffer)
    assert result.returncode == 0, result.stdout
    stats = STATS.search(result.stdout.decode())
    assert stats, result.stdout
    rate, tokens = float(stats[1]), int(stats[2])
    assert tokens == timings["predicted_n"] + 1
    # illume times the stream from the response headers to its end: the server's generation
    # time and a little more, though in another run than the oracle's. The bounds are loose (a
    # busy machine) yet four orders of magnitude from a rate turned upside down (seconds per token).
    server_rate = (timings["predicted_n"] + 1) / (timings["predicted_ms"] / 1000)
    assert server_rate / 100 <= rate <= server_rate * 10, (rate, timings)


def test_default_profile_points_at_llama_cpp(llama_server):
    # With no !api, the buffer goes to llama.cpp's default URL; here nothing listens there.
    result = run_illume("!debug\n!user\nhi\n")
    assert result.stdout.startswith(b"\n\nPOST http://localhost:8080/chat/completions HTTP/1.1\n")
