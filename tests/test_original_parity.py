"""Cases where illume once differed from the original Go program, run side by side on the same
buffers and streams. Each expectation is the original's output, byte for byte."""

import json

import pytest

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


# --- What a differential fuzz against the original found. Each expectation was
# checked against the original built from its source (bench/FUZZ.md).

HI_BODY = b'{' + LLAMA + b'"max_tokens":2000,"messages":[{"role":"user","content":"hi"}],' + STOP + b'"stream":true}\n'


def sent(buffer: str, env: dict | None = None):
    """Return the run and the one request it made, for BUFFER with `!api` set to a scripted server."""
    with ScriptedServer() as server:
        result = run_illume(buffer.replace("URL", server.url[:-1]), env=env)
        assert len(server.requests) == 1, result.stdout
        request = server.requests[0]
        request.port = server.port
        return result, request


@pytest.mark.parametrize("line, wire", [
    ("!>authorization Bearer $KEY", b"authorization: Bearer"),
    ("!>x-note a\t${KEY}", b"x-note: a"),
    ("!>x-note $PADDED", b"x-note: padded"),
    ("!>user-agent x $KEY", b"user-agent: x"),  # as later Go trims it (the original's Go 1.19 did not)
])
def test_a_header_value_is_sent_without_the_white_space_around_it(line, wire):
    # $KEY unset: `Bearer ` after expansion, `Bearer` on the wire, as Go's client trims it
    # (textproto.TrimString). The raw bytes: a server's parser would trim it too.
    result, request = sent(f"!api URL/\n{line}\n!user\nhi", env={"PADDED": " \tpadded\t "})
    assert result.returncode == 0
    name = wire.partition(b":")[0]
    assert [raw for raw in request.head.split(b"\r\n") if raw.lower().startswith(name + b":")] == [wire]


def test_the_dry_run_shows_the_header_value_as_expanded():
    # `${}` is bad syntax, which Go's ExpandEnv drops: "a " (a $VAR would be masked as a secret).
    result = run_illume("!debug\n!api http://h/\n!>x-note a ${}\n!user\nhi")
    assert result.stdout.startswith(b"\n\nPOST http://h/chat/completions HTTP/1.1\n"
                                    b"content-type: application/json\nx-note: a \n\n")


def test_headers_the_http_client_writes_itself_are_not_taken_from_the_buffer():
    result, request = sent("!api URL/\n!>content-length 5\n!>host example.com\n!>transfer-encoding chunked\n"
                           "!>trailer x\n!user\nhi")
    assert result.returncode == 0
    assert request.body == HI_BODY
    assert request.headers["content-length"] == str(len(HI_BODY))
    assert request.headers["host"] == f"127.0.0.1:{request.port}"
    assert "transfer-encoding" not in request.headers and "trailer" not in request.headers


def test_connection_is_the_buffers_to_set():
    _, request = sent("!api URL/\n!>connection close\n!user\nhi")
    assert request.headers["connection"] == "close"


def test_an_empty_user_agent_sends_none():
    _, request = sent("!api URL/\n!>user-agent $UNSET\n!user\nhi")
    assert "user-agent" not in request.headers


def test_a_user_agent_of_the_buffers_own():
    _, request = sent("!api URL/\n!>user-agent illume-test/1\n!user\nhi")
    assert request.headers["user-agent"] == "illume-test/1"


def test_url_credentials_do_not_replace_the_buffers_authorization(server):
    url = server.url.replace("http://", "http://user:secret@")
    run_illume(f"!api {url}\n!>authorization Bearer x\n!user\nhi")
    run_illume(f"!api {url}\n!user\nhi")
    assert [r.headers["authorization"] for r in server.requests] == ["Bearer x", "Basic dXNlcjpzZWNyZXQ="]


def test_dot_segments_in_the_url_are_sent_as_written(server):
    run_illume(f"!api {server.url}a/../v1/\n!user\nhi")
    run_illume(f"!api {server.url}./x/\n!user\nhi")
    run_illume(f"!api {server.url}a b/%41/\n!user\nhi")  # to be escaped: Go escapes the decoded path anew
    assert [r.path for r in server.requests] == ["/a/../v1/chat/completions", "/./x/chat/completions",
                                                "/a%20b/A/chat/completions"]


def test_a_control_character_in_the_url_is_refused(server):
    result = run_illume(f"!api {server.url}\x1c\n!user\nhi")
    assert server.requests == []
    assert (result.returncode, result.stdout) == (1, (
        f"\n\n!error\n\ninvalid URL {server.url}\x1c/chat/completions: a URL cannot hold a control character\n"
    ).encode())


def test_a_bad_escape_in_the_url_is_refused_without_its_password():
    result = run_illume("!api http://u:pw@127.0.0.1:9/%zz/\n!user\nhi")
    assert (result.returncode, result.stdout) == (
        1, b'\n\n!error\n\ninvalid URL http://u:***@127.0.0.1:9/%zz/chat/completions: invalid URL escape "%zz"\n')


def test_u001c_to_u001f_are_not_white_space():
    # Go's TrimSpace keeps them: the value is the string "1\x1f", and the !exclude tag holds \x1c.
    result = run_illume("!debug\n!api http://x/\n!:k 1\x1f\n!exclude t\x1c\n<t\x1c>\nhidden\n</t\x1c>\n<t>\nshown\n</t>")
    assert result.stdout == (
        b'\n\nPOST http://x/chat/completions HTTP/1.1\ncontent-type: application/json\n\n'
        b'{' + LLAMA + b'"k":"1\\u001f","max_tokens":2000,"messages":[{"role":"system","content":"<t>\\nshown\\n</t>"}],'
        + STOP + b'"stream":true}\n\n')


def test_u001c_does_not_split_context_arguments():
    result = run_illume("!debug\n!context a.md\x1cb\n")
    assert (result.returncode, result.stdout) == (1, b"\n\n!error\n\n<stdin>:2: open a.md\x1cb: no such file or directory\n")


def test_deeply_nested_json_is_sent_as_go_sends_it():
    result = run_illume("!debug\n!api http://x/\n!:k " + "[" * 700 + "]" * 700)
    assert result.returncode == 0
    assert b'"k":' + b"[" * 700 + b"]" * 700 + b',"max_tokens"' in result.stdout


def test_json_deeper_than_go_reads_is_a_string():
    deep = "[" * 10001 + "]" * 10001
    result = run_illume(f"!debug\n!api http://x/\n!:k {deep}")
    assert result.returncode == 0
    assert f'"k":"{deep}","max_tokens"'.encode() in result.stdout


def test_keys_sort_by_their_bytes():
    # The invalid byte \xff sorts after the emoji's lead byte \xf0; it goes out as U+FFFD.
    result = run_illume(b"!debug\n!api http://x/\n!:\xff 1\n!:\xf0\x9f\x98\x80 2\n")
    assert result.stdout.endswith(b'"stream":true,"\xf0\x9f\x98\x80":2,"\\ufffd":1}\n\n')


def test_a_nul_in_a_profile_name_is_an_error():
    # The original's message, its NUL written as `^@` as in everything illume prints (README: a reply never
    # acts through an editor; Vim would turn the NUL into a line break).
    result = run_illume("!debug\n!profile \x00x")
    assert (result.returncode, result.stdout) == (1, b"\n\n!error\n\n<stdin>:2: open ^@x: invalid argument\n")


def test_a_context_file_that_holds_a_nul_byte_is_refused(tmp_path):
    # Deliberate (README): the original would send it as \u0000.
    (tmp_path / "nul.md").write_bytes(b"a\x00b\n")
    result = run_illume(f"!debug\n!context {tmp_path / 'nul.md'}")
    assert (result.returncode, result.stdout) == (
        1, f"\n\n!error\n\n<stdin>:2: {tmp_path / 'nul.md'}: binary file (it holds NUL bytes)\n".encode())


def test_context_names_under_a_directory_not_in_clean_form(tmp_path):
    # Deliberate (README): the original names these `x/sub/d.md` and `ub/d.md`.
    (tmp_path / "ctx" / "sub").mkdir(parents=True)
    (tmp_path / "ctx" / "sub" / "d.md").write_text("D\n")
    result = run_illume(b"!debug\n!context ./ctx .md\n!context ctx// .md", cwd=tmp_path)
    assert b'"content":"**`ctx/sub/d.md`**\\n```\\nD\\n```\\n\\n**`sub/d.md`**\\n```\\nD\\n```"' in result.stdout


def test_the_gpt_oss_profile_is_the_originals():
    result = run_illume("!debug\n!api http://x/\n!profile gpt-oss\n!user\nhi")
    assert result.stdout == (b'\n\nPOST http://x/chat/completions HTTP/1.1\ncontent-type: application/json\n\n'
                             b'{"max_tokens":16384,"messages":[{"role":"user","content":"hi"}],"stream":true,'
                             b'"temperature":0.6,"top_k":0,"top_p":1}\n\n')


def test_a_url_byte_that_is_not_utf8_is_sent_escaped_as_go_sends_it(server):
    result = run_illume(f"!api {server.url}".encode() + b"\xff/\n!user\nhi")
    assert result.returncode == 0
    assert [r.path for r in server.requests] == ["/%FF/chat/completions"]


def test_a_control_character_in_the_fragment_is_no_error(server):
    # Go checks the URL before its fragment only, and never sends the fragment.
    result = run_illume(f"!api {server.url}#frag\x7f\n!user\nhi")
    assert result.returncode == 0
    assert [r.path for r in server.requests] == ["/"]
