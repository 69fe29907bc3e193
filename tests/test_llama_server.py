"""End to end: the real CLI against a real llama-server serving the real SmolLM2 model."""

import re

import pytest

from conftest import run_illume

pytestmark = pytest.mark.server

SETTINGS = "!:temperature 0\n!:seed 42\n!:max_tokens 24\n"


def test_chat_turn_streams_an_assistant_section(llama_server):
    result = run_illume(f"!api {llama_server}\n{SETTINGS}!user\nName a colour.\n")
    assert result.returncode == 0, result.stdout
    assert result.stderr == b""
    assert result.stdout.startswith(b"\n\n!assistant\n\n")
    reply = result.stdout[len(b"\n\n!assistant\n\n"):].split(b"\n\n!note")[0]
    assert reply.strip(), "the model said nothing"


def test_chat_is_reproducible_with_a_seed(llama_server):
    buffer = f"!api {llama_server}\n{SETTINGS}!user\nWrite a word.\n"
    first, second = run_illume(buffer), run_illume(buffer)
    assert first.returncode == second.returncode == 0
    assert first.stdout == second.stdout


def test_completion_continues_the_text(llama_server):
    result = run_illume(f"!api {llama_server}\n{SETTINGS}!completion\nOnce upon a time")
    assert result.returncode == 0, result.stdout
    assert not result.stdout.startswith(b"\n\n!assistant")
    assert result.stdout.split(b"\n\n!note")[0].strip()


def test_template_fim_goes_through_completions(llama_server):
    buffer = f"!api {llama_server}\n!profile fim:qwen\n{SETTINGS}def norm(v):\n!infill\n    return r\n"
    debug = run_illume(buffer + "!debug\n")
    assert f"POST {llama_server}completions HTTP/1.1".encode() in debug.stdout
    assert b'"prompt":"<|fim_prefix|>def norm(v):\\n<|fim_suffix|>\\n    return r<|fim_middle|>"' in debug.stdout
    result = run_illume(buffer)
    assert result.returncode == 0, result.stdout
    assert result.stdout.split(b"\n\n!note")[0].strip()


def test_infill_endpoint_refusal_is_a_clear_error(llama_server):
    # SmolLM2 has no FIM tokens, so this llama-server refuses /infill with 501.
    result = run_illume(f"!api {llama_server}\n{SETTINGS}def f():\n!infill\n    return r\n")
    assert result.returncode == 1
    assert result.stdout.startswith(b"\n\n!error\n\nHTTP 501: ")
    assert b"nfill" in result.stdout and result.stdout.endswith(b"\n")
    assert b"Traceback" not in result.stdout + result.stderr


def test_stats_and_token_limit_notes(llama_server):
    # ignore_eos: the model may not end its turn before the limit, so the limit is sure to be reached.
    result = run_illume(f"!api {llama_server}\n!:max_tokens 5\n!:ignore_eos true\n!:temperature 0\n"
                        "!stats\n!user\nCount to twenty.\n")
    assert result.returncode == 0, result.stdout
    text = result.stdout.decode()
    assert "\n\n!note the reply stopped at the token limit" in text
    assert re.search(r"\n\n!note [0-9.e+]+ tok/s, \d+ toks, [0-9.]+(ns|µs|ms|s)$", text), text


def test_default_profile_points_at_llama_cpp(llama_server):
    # With no !api, the buffer goes to llama.cpp's default URL; here nothing listens there.
    result = run_illume("!debug\n!user\nhi\n")
    assert result.stdout.startswith(b"\n\nPOST http://localhost:8080/chat/completions HTTP/1.1\n")
