"""Cases where illume once differed from the original Go program, run side by side on the same
buffers and streams. Each expectation is the original's output, byte for byte."""

import json

from conftest import run_illume
from scripted import Reply, ScriptedServer

LLAMA = b'"cache_prompt":true,'
STOP = b'"stop":["<|im_end|>"],'


def test_deleting_a_header_on_a_crlf_line_is_no_error(tmp_path):
    (tmp_path / "crlf.profile").write_bytes(b"!api http://p/\r\n!:temperature 0.2\r\n!>x-use-cache\r\nsys\r\n")
    result = run_illume(f"!debug\n!profile {tmp_path / 'crlf.profile'}\n!user\nhi")
    assert (result.returncode, result.stdout) == (0, (
        b'\n\nPOST http://p/chat/completions HTTP/1.1\ncontent-type: application/json\n\n'
        b'{"max_tokens":2000,"messages":[{"role":"system","content":"sys"},{"role":"user","content":"hi"}],'
        b'"stream":true,"temperature":0.2}\n\n'))


def test_begin_after_the_hole_keeps_the_first_two_messages():
    result = run_illume(b"!debug\np\n!infill\ns\n!begin\nA\n!assistant\nB")
    assert result.stdout.endswith(b'{' + LLAMA + b'"input_prefix":"A\\n","input_suffix":"\\nB","max_tokens":2000,'
                                  b'"prompt":"",' + STOP + b'"stream":true}\n\n')


def test_unclosed_brace_in_the_url_has_the_originals_words():
    result = run_illume(b"!debug\n!api http://h/{model\n!user\nhi")
    assert (result.returncode, result.stdout) == (1, b"\n\n!error\n\ninterpolating URL: unmatched '}'\n")


def test_an_empty_context_file_gets_no_blank_line(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    result = run_illume(f"!debug\n!context {tmp_path / 'empty.txt'}\n!user\nhi")
    name = str(tmp_path / "empty.txt").encode()
    assert b'"content":"**`' + name + b'`**\\n```\\n```"' in result.stdout


def test_bytes_that_are_not_utf8_in_a_reddit_export_go_out_as_u_fffd(tmp_path):
    thread = [{"data": {"children": [{"data": {"title": "t", "author": "a", "subreddit": "s",
                                               "selftext": "SELF"}}]}}]
    (tmp_path / "t.json").write_bytes(json.dumps(thread).encode().replace(b"SELF", b"\xff\xfe"))
    result = run_illume(f"!debug\n!reddit! {tmp_path / 't.json'}")
    assert "---\\n\ufffd\ufffd\\n---".encode() in result.stdout


def chat(text: str) -> bytes:
    return f'data: {json.dumps({"choices": [{"delta": {"content": text}}]})}\n'.encode()


def served(events: list, buffer: str = "!user\nhi\n", **reply):
    with ScriptedServer() as server:
        server.respond(Reply(events, **reply))
        return run_illume(f"!api {server.url}\n{buffer}")


def test_data_lines_without_blank_lines_between():
    result = served([chat("A") + chat("B") + b"\ndata: [DONE]\n\n"])
    assert (result.returncode, result.stdout) == (0, b"\n\n!assistant\n\nAB")


def test_done_right_after_a_data_line():
    result = served([chat("A") + b"data: [DONE]\n"])
    assert (result.returncode, result.stdout) == (0, b"\n\n!assistant\n\nA")


def test_two_spaces_after_data():
    result = served([b'data:  {"choices":[{"delta":{"content":"A"}}]}\n\ndata: [DONE]\n\n'])
    assert (result.returncode, result.stdout) == (0, b"\n\n!assistant\n\nA")


def test_a_lone_surrogate_in_the_reply_is_u_fffd():
    result = served([b'data: {"choices":[{"delta":{"content":"\\ud83d\\ude00 \\ud800 x"}}]}\n\ndata: [DONE]\n\n'])
    assert result.stdout == b"\n\n!assistant\n\n\xf0\x9f\x98\x80 \xef\xbf\xbd x"


def test_a_plain_error_body_is_printed_as_it_came():
    result = served([], status=503, body="Loading model\n")
    assert (result.returncode, result.stdout) == (1, b"\n\n!error\n\nHTTP 503: Loading model\n\n")
