"""`!branches N`: N alternative replies, numbered and in order, from a real llama-server, a scripted one, the embedded model.

Where a branch's reply is fixed (temperature 0, or its own request with its
own seed) it is compared with the model's own answer to that request, asked
directly and not streamed (conftest.ask_llama_server, ask_llama_cpp).
"""

import json
import re

import pytest

from conftest import ask_llama_cpp, ask_llama_server, closed_url, embedded_model, free_port, run_illume
from illume import buffer as buf
from illume.errors import DirectiveError
from scripted import Reply, ScriptedServer, chat_events

SETTINGS = "!:temperature 0.9\n!:seed 42\n!:max_tokens 16\n"
FIXED = "!:temperature 0\n!:max_tokens 16\n"
NOTE = re.compile(rb"\n\n!note branch (\d+) of (\d+)")


def expected(answers: list, header: str = "\n\n!assistant\n\n") -> bytes:
    """Return what illume prints for branches whose replies are ANSWERS (conftest.ServerAnswer), in order."""
    for answer in answers:
        assert answer.text.strip(), "the oracle is empty: comparing with it would prove little"
    return b"".join(f"\n\n!note branch {k} of {len(answers)}".encode() + answer.printed(header)
                    for k, answer in enumerate(answers, 1))


def sections(stdout: bytes) -> list[tuple[int, int, bytes]]:
    """Split STDOUT at the branch notes: (number, count, what follows the note) each, in order."""
    parts = NOTE.split(stdout)
    assert parts[0] == b"", f"text before the first note: {parts[0]!r}"
    return [(int(parts[i]), int(parts[i + 1]), parts[i + 2]) for i in range(1, len(parts), 3)]


def assert_branches(stdout: bytes, count: int, header: bytes) -> list[bytes]:
    """Assert COUNT numbered sections in order, each HEADER then text; return their texts."""
    found = sections(stdout)
    assert [(number, total) for number, total, _ in found] == [(k, count) for k in range(1, count + 1)], stdout
    texts = []
    for _, _, body in found:
        assert body.startswith(header), body
        text = body[len(header):].split(b"\n\n!note the reply stopped")[0]
        assert text.strip(), f"an empty branch in {stdout!r}"
        assert b"!error" not in body
        texts.append(text)
    return texts


# --- the directive ---

@pytest.mark.parametrize("line, expected", [
    ("!branches 3", 3),
    ("!branches 1", 1),
    ("!branches  32 ", 32),
])
def test_the_directive_sets_the_count(line, expected):
    parsed = buf.parse(f"{line}\n!user\nhi\n", buf.Sources({}), default_profile="llama.cpp")
    assert parsed.branches == expected


@pytest.mark.parametrize("line", ["!branches", "!branches 0", "!branches 33", "!branches three", "!branches -2",
                                  "!branches 2.5", "!branches ３"])
def test_a_wrong_count_is_an_error_naming_the_line(line):
    with pytest.raises(DirectiveError) as error:
        buf.parse(f"!user\n{line}\nhi\n", buf.Sources({}), default_profile="llama.cpp")
    assert str(error.value).startswith("<stdin>:2: !branches: expected a number of replies from 1 to 32")


def test_infill_takes_one_reply():
    result = run_illume(f"!api {closed_url()}\n!branches 2\ndef f():\n!infill\n    pass\n")
    assert result.returncode == 1
    assert result.stdout == b"\n\n!error\n\n!branches: fill in the middle takes one reply (remove !branches)\n"


def test_the_dry_run_shows_n():
    result = run_illume(f"!api {closed_url()}\n!branches 3\n!debug\n!user\nhi\n")
    assert result.returncode == 0
    assert b',"n":3,' in result.stdout


def test_the_embedded_dry_run_has_no_n():
    result = run_illume("!profile embedded\n!branches 3\n!debug\n!user\nhi\n")
    assert result.returncode == 0
    assert b'"n"' not in result.stdout


# --- a real llama-server ---

@pytest.mark.server
def test_chat_branches_come_numbered_and_in_order(llama_server):
    result = run_illume(f"!api {llama_server}\n{SETTINGS}!branches 3\n!user\nName a colour.\n")
    assert result.returncode == 0, result.stdout
    assert result.stderr == b""
    texts = assert_branches(result.stdout, 3, b"\n\n!assistant\n\n")
    assert len(set(texts)) > 1, "three identical branches: the choices were not sampled apart"


@pytest.mark.server
def test_chat_branches_at_temperature_0_are_each_the_models_answer(llama_server):
    # The choices of one request with n=3, decoded side by side in the server's slots.
    buffer = f"!api {llama_server}\n{FIXED}!user\nName a colour.\n"
    answer = ask_llama_server(buffer)
    result = run_illume(buffer.replace("!user", "!branches 3\n!user"))
    assert (result.returncode, result.stderr) == (0, b""), result.stdout
    assert result.stdout == expected([answer] * 3)


@pytest.mark.server
def test_chat_branches_are_reproducible_with_a_seed(llama_server):
    buffer = f"!api {llama_server}\n{SETTINGS}!branches 2\n!user\nWrite a word.\n"
    assert run_illume(buffer).stdout == run_illume(buffer).stdout


@pytest.mark.server
def test_completion_branches_are_separated_by_the_notes_alone(llama_server):
    buffer = f"!api {llama_server}\n{FIXED}!completion\nOnce upon a time"
    answer = ask_llama_server(buffer)
    result = run_illume(buffer.replace("!completion", "!branches 3\n!completion"))
    assert result.returncode == 0, result.stdout
    assert result.stdout == expected([answer] * 3, "\n\n")
    assert b"!assistant" not in result.stdout


@pytest.mark.server
def test_more_branches_than_slots_fall_back_to_one_request_each(llama_server):
    # The fixture's server has 4 slots and refuses n=6 with HTTP 400: each
    # branch is then a request of its own, branch K with seed 42 + K - 1.
    buffer = f"!api {llama_server}\n{SETTINGS}!user\nName a fruit.\n"
    answers = [ask_llama_server(buffer.replace("!:seed 42", f"!:seed {42 + k}")) for k in range(6)]
    result = run_illume(buffer.replace("!user", "!branches 6\n!user"))
    assert result.returncode == 0, result.stdout
    assert result.stdout == expected(answers)
    assert len({answer.text for answer in answers}) > 1, "six seeds, one reply: the seeds prove nothing here"


@pytest.mark.server
def test_one_branch_is_the_plain_reply(llama_server):
    buffer = f"!api {llama_server}\n!:temperature 0\n!:max_tokens 8\n!user\nName a colour.\n"
    answer = ask_llama_server(buffer)
    assert answer.text.strip(), answer.whole
    assert run_illume(buffer.replace("!user", "!branches 1\n!user")).stdout == answer.printed("\n\n!assistant\n\n")


@pytest.mark.server
def test_stats_come_once_after_the_branches(llama_server):
    result = run_illume(f"!api {llama_server}\n{SETTINGS}!stats\n!branches 2\n!user\nhi\n")
    assert result.returncode == 0, result.stdout
    assert re.search(rb"\n\n!note [0-9.e+]+ tok/s, \d+ toks, [0-9.]+(ns|\xc2\xb5s|ms|s)$", result.stdout)
    assert result.stdout.count(b"tok/s") == 1


def test_an_unreachable_server_is_one_plain_error():
    port = free_port()
    result = run_illume(f"!api http://127.0.0.1:{port}/\n!branches 3\n!user\nhi\n")
    assert result.returncode == 1
    assert result.stdout.startswith(f"\n\n!error\n\ncannot connect to 127.0.0.1:{port}: ".encode())
    assert b"!note branch" not in result.stdout


# --- servers that do not take n (scripted: a real llama-server takes it) ---

def test_a_server_that_ignores_n_gets_one_request_per_missing_branch(server):
    server.respond(Reply(chat_events(["Hel", "lo"])))
    result = run_illume(f"!api {server.url}\n!:seed 5\n!branches 3\n!user\nhi\n")
    bodies = [request.json() for request in server.requests]
    assert result.returncode == 0, result.stdout
    assert result.stdout == b"".join(f"\n\n!note branch {k} of 3\n\n!assistant\n\nHello".encode() for k in (1, 2, 3))
    assert bodies[0]["n"] == 3 and bodies[0]["seed"] == 5
    assert sorted((body.get("n"), body["seed"]) for body in bodies[1:]) == [(None, 6), (None, 7)]


def test_choices_in_one_event_go_to_their_branches():
    events = [json.dumps({"choices": [{"index": 1, "delta": {"content": "B"}},
                                      {"index": 0, "delta": {"content": "A"}}]}),
              json.dumps({"choices": [{"index": 0, "delta": {"content": "a"}}]}),
              json.dumps({"choices": [{"index": 1, "delta": {"content": "b"}}]}),
              "[DONE]"]
    with ScriptedServer() as server:
        server.respond(Reply(events))
        result = run_illume(f"!api {server.url}\n!branches 2\n!user\nhi\n")
        assert len(server.requests) == 1
    assert result.returncode == 0, result.stdout
    assert result.stdout == (b"\n\n!note branch 1 of 2\n\n!assistant\n\nAa"
                             b"\n\n!note branch 2 of 2\n\n!assistant\n\nBb")


def test_branches_cut_off_keep_their_text_and_are_reported(server):
    server.respond(Reply(chat_events(["par", "tial"], done=False)))
    result = run_illume(f"!api {server.url}\n!branches 2\n!user\nhi\n")
    assert result.returncode == 1
    cut = "the reply was cut off: the stream ended before its end marker"
    assert result.stdout.decode() == (
        "\n\n!note branch 1 of 2\n\n!assistant\n\npartial"
        "\n\n!note branch 2 of 2\n\n!assistant\n\npartial"
        f"\n\n!error\n\nbranch 1 of 2: {cut}; branch 2 of 2: {cut}\n")


FAILING = chat_events(["par", "tial <"], done=False) + [json.dumps({"error": {"message": "out of memory"}})]


def test_a_failing_branch_keeps_the_text_held_back_for_a_token(server):
    # `<` may begin a GPT-OSS token, so !gpt-oss holds it back for the next piece; an error comes instead.
    server.respond(Reply(FAILING))
    result = run_illume(f"!api {server.url}\n!gpt-oss\n!branches 2\n!user\nhi\n")
    assert result.returncode == 1
    error = "the server reported an error: out of memory"
    assert result.stdout.decode() == (
        "\n\n!note branch 1 of 2\n\n!assistant\n\npartial <"
        "\n\n!note branch 2 of 2\n\n!assistant\n\npartial <"
        f"\n\n!error\n\nbranch 1 of 2: {error}; branch 2 of 2: {error}\n")


def test_a_failing_reply_keeps_the_text_held_back_for_a_token(server):
    # The same without branches: the single reply and the branches share one reply loop.
    server.respond(Reply(FAILING))
    result = run_illume(f"!api {server.url}\n!gpt-oss\n!user\nhi\n")
    assert result.returncode == 1
    assert result.stdout == b"\n\n!assistant\n\npartial <\n\n!error\n\nthe server reported an error: out of memory\n"


# --- the embedded model, one branch after another ---

@pytest.mark.embedded
def test_embedded_branches_at_temperature_0_are_each_the_models_answer():
    # The second branch starts from the model's memory of the first: it must not show.
    embedded_model()
    buffer = "!profile embedded\n!:temperature 0\n!:max_tokens 8\n!user\nName a colour.\n"
    answer = ask_llama_cpp(buffer)
    result = run_illume(buffer.replace("!user", "!branches 2\n!user"), timeout=300)
    assert (result.returncode, result.stderr) == (0, b""), result.stdout
    assert result.stdout == expected([answer] * 2)


@pytest.mark.embedded
def test_embedded_branches_each_have_their_own_seed():
    embedded_model()
    buffer = "!profile embedded\n!:temperature 0.9\n!:seed 3\n!:max_tokens 8\n!user\nName a colour.\n"
    answers = [ask_llama_cpp(buffer.replace("!:seed 3", f"!:seed {3 + k}")) for k in range(2)]
    result = run_illume(buffer.replace("!user", "!branches 2\n!user"), timeout=300)
    assert (result.returncode, result.stderr) == (0, b""), result.stdout
    assert result.stdout == expected(answers)
    assert answers[0].text != answers[1].text, "two seeds, one reply: the seeds prove nothing here"


@pytest.mark.embedded
def test_embedded_branches_stats_keep_the_cache_figure():
    # One `!stats` line for all the branches, with what the embedded backend adds: the prompt tokens its cache
    # spared, added up over the branches. The second branch finds all but the last two in the model's memory.
    embedded_model()
    buffer = "!profile embedded\n!:temperature 0\n!:max_tokens 4\n!stats\n!user\nName a colour.\n"
    figure = re.compile(rb"\n\n!note [0-9.e+]+ tok/s, \d+ toks, [0-9.]+(?:ns|\xc2\xb5s|ms|s)"
                        rb", (\d+) of (\d+) prompt tokens from the cache$")
    one = figure.search(run_illume(buffer, timeout=300).stdout)
    assert one, "a single reply's !stats has the cache figure"
    prompt = int(one[2])
    result = run_illume(buffer.replace("!user", "!branches 2\n!user"), timeout=300)
    assert (result.returncode, result.stderr) == (0, b""), result.stdout
    both = figure.search(result.stdout)
    assert both, result.stdout
    assert result.stdout.count(b"tok/s") == 1
    assert int(both[2]) == 2 * prompt
    assert prompt - 2 <= int(both[1]) <= 2 * (prompt - 2)
