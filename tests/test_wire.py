"""On the wire: for each directive and mode, the exact request sent and the exact bytes printed.

The server is faked with respx; `illume.cli.run` is driven with a BytesIO
stdout and an explicit environment, as the CLI's edge takes them.
"""

import io
import json
import re

import httpx
import pytest
import respx

from illume.cli import Options, run

LOCAL = "http://localhost:8080/"
CHAT = LOCAL + "chat/completions"


pytestmark = pytest.mark.usefixtures("in_tmp")  # conftest: each test in an empty folder of its own


def illume(buffer: str | bytes, env: dict | None = None, **options) -> tuple[int, bytes]:
    """Run illume on BUFFER; return its exit status and what it printed."""
    out = io.BytesIO()
    raw = buffer.encode() if isinstance(buffer, str) else buffer
    status = run(raw, out, env or {}, Options(**options))
    return status, out.getvalue()


def sse(*events, end: bool = True) -> httpx.Response:
    """Return a 200 event stream of EVENTS (JSON values), ended by [DONE] unless END is false."""
    data = b"".join(b"data: " + json.dumps(e, ensure_ascii=False).encode() + b"\n\n" for e in events)
    if end:
        data += b"data: [DONE]\n\n"
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=data)


def chat(*texts: str, end: bool = True) -> httpx.Response:
    return sse(*({"choices": [{"delta": {"content": t}, "finish_reason": None}]} for t in texts), end=end)


def completion(*texts: str) -> httpx.Response:
    return sse(*({"choices": [{"text": t}]} for t in texts))


def native(*texts: str) -> httpx.Response:
    """llama.cpp's /infill and /completion: `content`, then `"stop": true` and no [DONE]."""
    events = [{"content": t, "stop": False} for t in texts] + [{"content": "", "stop": True}]
    return sse(*events, end=False)


ANTHROPIC = httpx.Response(200, headers={"content-type": "text/event-stream"}, content=(
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1"}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"thinking","thinking":""}}\n\n'
    b'event: ping\ndata: {"type": "ping"}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"thinking_delta","thinking":"Two plus"}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"thinking_delta","thinking":" two."}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"signature_delta","signature":"EqQB"}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,'
    b'"delta":{"type":"text_delta","text":"Four"}}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
))

HARMONY = chat("<|channel|>analysis<|mes", "sage|>Think.<|end|><|start|>assistant<|channel|>final<|message|>",
               "Done.")

LLAMA_KEYS = b'"cache_prompt":true,"max_tokens":2000'
LLAMA_STOP = b'"stop":["<|im_end|>"]'


def llama_chat(messages: bytes) -> bytes:
    return b"{" + LLAMA_KEYS + b',"messages":' + messages + b"," + LLAMA_STOP + b',"stream":true}\n'


WIRE = [
    # (name, buffer, env, URL posted to, body bytes, response, stdout bytes)
    ("chat", "!user\nHello\n", {}, CHAT,
     llama_chat(b'[{"role":"user","content":"Hello"}]'), chat("Hi", " there"), b"\n\n!assistant\n\nHi there"),
    ("roles and trimming", "Be brief.\n!user\n\n  Hi \t\n\n!assistant\nHello.\n!user\nBye\n", {}, CHAT,
     llama_chat(b'[{"role":"system","content":"Be brief."},{"role":"user","content":"  Hi \\t"},'
                b'{"role":"assistant","content":"Hello."},{"role":"user","content":"Bye"}]'),
     chat("ok"), b"\n\n!assistant\n\nok"),
    ("no messages: an empty list", "", {}, CHAT, llama_chat(b"[]"), chat("?"), b"\n\n!assistant\n\n?"),
    ("escapes and unknown words", "!user\n!!user\n!unknown x\n", {}, CHAT,
     llama_chat(b'[{"role":"user","content":"!user\\n!unknown x"}]'), chat("a"), b"\n\n!assistant\n\na"),
    ("!note, !begin, !end, !exclude", "!user\nold\n!begin\n!exclude t\n!user\na\n!note n\n<t>\nb\n</t>\nc\n"
     "!end\nd\n", {}, CHAT, llama_chat(b'[{"role":"user","content":"a\\nc"}]'), chat("x"), b"\n\n!assistant\n\nx"),
    ("!error sections are not sent", "!user\nq\n\n!assistant\n\n\n\n!error\n\nHTTP 500: x\n\n!user\nq\n", {}, CHAT,
     llama_chat(b'[{"role":"user","content":"q"},{"role":"user","content":"q"}]'), chat("a"),
     b"\n\n!assistant\n\na"),
    ("JSON the Go way", "!user\n<b>&\u2028\x01\"\\\n", {}, CHAT,
     llama_chat(b'[{"role":"user","content":"<b>&\\u2028\\u0001\\"\\\\"}]'), chat("a"), b"\n\n!assistant\n\na"),
    ("invalid UTF-8 in the buffer", b"!user\ncaf\xe9\n", {}, CHAT,
     llama_chat(b'[{"role":"user","content":"caf\\ufffd"}]'), chat("a"), b"\n\n!assistant\n\na"),
    ("!completion", "!completion\nOnce upon\n", {}, LOCAL + "completions",
     b"{" + LLAMA_KEYS + b',"prompt":"Once upon",' + LLAMA_STOP + b',"stream":true}\n',
     completion(" a", " time"), b" a time"),
    # The reply starts a line of its own: the Vim and Emacs plugins put it at the end of the buffer's last
    # line, here the directive `!completion` (docs/buffer.md, "The reply in the buffer").
    ("!completion takes the first message", "Once\n!user\nupon\n!completion\n", {}, LOCAL + "completions",
     b"{" + LLAMA_KEYS + b',"prompt":"Once",' + LLAMA_STOP + b',"stream":true}\n', completion("x"), b"\nx"),
    ("!infill", "def f():\n!infill\n    return 1\n", {}, LOCAL + "infill",
     b'{"cache_prompt":true,"input_prefix":"def f():\\n","input_suffix":"\\n    return 1","max_tokens":2000,'
     b'"prompt":"",' + LLAMA_STOP + b',"stream":true}\n', native("    x = 1"), b"    x = 1"),
    ("!infill with nothing after", "def f():\n!infill\n", {}, LOCAL + "infill",
     b'{"cache_prompt":true,"input_prefix":"def f():\\n","input_suffix":"","max_tokens":2000,'
     b'"prompt":"",' + LLAMA_STOP + b',"stream":true}\n', native("x"), b"x"),
    ("!infill with a template", "!profile fim:qwen\n!api http://localhost:8080/\npre\n!infill\nsuf\n", {},
     LOCAL + "completions",
     b'{"max_tokens":2000,"prompt":"<|fim_prefix|>pre\\n<|fim_suffix|>\\nsuf<|fim_middle|>","stream":true}\n',
     completion("mid"), b"mid"),
    ("!infill with a one-line template", "!infill  <PRE> {prefix} <SUF>{suffix} <MID>\npre\n!infill\nsuf\n", {},
     LOCAL + "completions",
     b"{" + LLAMA_KEYS + b',"prompt":" <PRE> pre\\n <SUF>\\nsuf <MID>",' + LLAMA_STOP + b',"stream":true}\n',
     completion("mid"), b"mid"),
    ("codellama", "!profile fim:codellama\n!api http://localhost:8080\npre\n!infill\n", {}, LOCAL + "completions",
     b'{"max_tokens":2000,"prompt":" <PRE> pre\\n <SUF> <MID>","stop":["<EOT>"],"stream":true}\n',
     completion("x"), b"x"),
    ("!api", "!api http://h:1/v1\n!user\nhi\n", {}, "http://h:1/v1/chat/completions",
     llama_chat(b'[{"role":"user","content":"hi"}]'), chat("a"), b"\n\n!assistant\n\na"),
    ("!api with a key", "!api http://h/{model}/{n}/\n!:model org/m\n!:n 2\n!completion\np\n", {},
     "http://h/org/m/2/completions",
     b"{" + LLAMA_KEYS + b',"model":"org/m","n":2,"prompt":"p",' + LLAMA_STOP + b',"stream":true}\n',
     completion("x"), b"x"),
    ("!api quoted: used literally", '!api "http://h/exact"\n!user\nhi\n', {}, "http://h/exact",
     llama_chat(b'[{"role":"user","content":"hi"}]'), chat("a"), b"\n\n!assistant\n\na"),
    ("!:KEY", "!:temperature 0.7\n!:n 1e3\n!:seed 12345678901234567890\n!:model llama 3\n!:max_tokens\n"
     '!:stop ["x"]\n!:obj {"b": [1.50, null], "a": "\\u00e9"}\n!:stream false\n!user\nhi\n', {}, CHAT,
     b'{"cache_prompt":true,"messages":[{"role":"user","content":"hi"}],"model":"llama 3","n":1000,'
     b'"obj":{"a":"\xc3\xa9","b":[1.5,null]},"seed":12345678901234567000,"stop":["x"],"stream":true,'
     b'"temperature":0.7}\n', chat("a"), b"\n\n!assistant\n\na"),
    ("huggingface.co", "!profile huggingface.co\n!user\nhi\n", {"HF_TOKEN": "hf_tok"},
     "https://api-inference.huggingface.co/models/meta-llama/Llama-3.3-70B-Instruct/v1/chat/completions",
     b'{"max_tokens":2000,"messages":[{"role":"user","content":"hi"}],'
     b'"model":"meta-llama/Llama-3.3-70B-Instruct","stream":true}\n', chat("a"), b"\n\n!assistant\n\na"),
    ("claude, thinking wrapped", "!profile claude\n!user\n2+2?\n", {"ANTHROPIC_API_KEY": "k"},
     "https://api.anthropic.com/v1/messages",
     b'{"max_tokens":10000,"messages":[{"role":"user","content":"2+2?"}],"model":"claude-sonnet-4-5",'
     b'"stream":true}\n', ANTHROPIC,
     # Not the original's bytes: illume's `!exclude think` keeps the thinking out of the next turn (docs/buffer.md).
     b"\n\n!assistant\n\n!exclude think\n<think>\nTwo plus two.\n</think>\n\nFour"),
    ("!prepend", '!prepend "<think>\\n"\n!user\nhi\n', {}, CHAT,
     llama_chat(b'[{"role":"user","content":"hi"}]'), chat("a"), b"\n\n!assistant\n\n<think>\na"),
    ("!prepend is for chat only", "!prepend PRE\n!completion\nx\n", {}, LOCAL + "completions",
     b"{" + LLAMA_KEYS + b',"prompt":"x",' + LLAMA_STOP + b',"stream":true}\n', completion("y"), b"y"),
    ("!gpt-oss", "!gpt-oss\n!user\nhi\n", {}, CHAT,
     llama_chat(b'[{"role":"user","content":"hi"}]'), HARMONY, b"\n\n!assistant\n\n<think>\nThink.\n</think>\n\nDone."),
    ("without !gpt-oss the tokens pass", "!user\nhi\n", {}, CHAT,
     llama_chat(b'[{"role":"user","content":"hi"}]'), HARMONY,
     b"\n\n!assistant\n\n<|channel|>analysis<|message|>Think.<|end|><|start|>assistant<|channel|>final"
     b"<|message|>Done."),
    ("the default profile's text on top", "!user\nhi\n", {"ILLUME_PROFILE": "terse.profile"}, "http://t/chat/completions",
     b'{"max_tokens":2000,"messages":[{"role":"system","content":"Be terse."},{"role":"user","content":"hi"}],'
     b'"stream":true}\n', chat("a"), b"\n\n!assistant\n\na"),
    ("!context", "!user\nRead:\n!context notes.md\n", {}, CHAT,
     llama_chat(b'[{"role":"user","content":"Read:\\n**`notes.md`**\\n````\\n```\\nx\\n````"}]'), chat("a"),
     b"\n\n!assistant\n\na"),
    ("!reddit! and !github", "!user\n!reddit! thread.json\n!github issue.json\n", {}, CHAT,
     llama_chat(b'[{"role":"user","content":"# Reddit Post\\n\\nT\\nby u/op in r/s\\n---\\nself\\n---\\n'
                b'---\\nhttps://github.com/o/r/issues/1\\nBug\\nby @al\\n\\n\\"quoted\\"\\n---"}]'),
     chat("a"), b"\n\n!assistant\n\na"),
    ("a reply in pieces of UTF-8", "!user\nhi\n", {}, CHAT, llama_chat(b'[{"role":"user","content":"hi"}]'),
     chat("caf\u00e9 ", "\U0001f600"), "\n\n!assistant\n\ncaf\u00e9 \U0001f600".encode()),
    ("a whole JSON reply", "!user\nhi\n", {}, CHAT, llama_chat(b'[{"role":"user","content":"hi"}]'),
     httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": "whole"}}]}),
     b"\n\n!assistant\n\nwhole"),
]


@pytest.mark.parametrize("text, env, url, body, response, stdout", [w[1:] for w in WIRE], ids=[w[0] for w in WIRE])
def test_wire(in_tmp, text, env, url, body, response, stdout):
    (in_tmp / "terse.profile").write_text("!api http://t/\nBe terse.\n")
    (in_tmp / "notes.md").write_text("```\nx")
    (in_tmp / "thread.json").write_text(json.dumps([{"data": {"children": [{"data": {
        "title": "T", "author": "op", "subreddit": "s", "selftext": "self"}}]}}, {"data": {"children": [
            {"data": {"author": "c", "body": "comment"}}]}}]))
    (in_tmp / "issue.json").write_text(json.dumps({"html_url": "https://github.com/o/r/issues/1", "title": "Bug",
                                                   "user": {"login": "al"}, "body": '"quoted"'}))
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(url).mock(return_value=response)
        status, out = illume(text, env)
    assert (status, out) == (0, stdout)
    assert route.call_count == 1
    assert route.calls.last.request.content == body


def test_profile_option_beats_the_environment(in_tmp):
    (in_tmp / "terse.profile").write_text("!api http://t/\nBe terse.\n")
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post("http://t/chat/completions").mock(return_value=chat("a"))
        assert illume("!user\nhi\n", {"ILLUME_PROFILE": "openai"}, profile="terse.profile") == (
            0, b"\n\n!assistant\n\na")
    assert route.calls.last.request.content == (
        b'{"max_tokens":2000,"messages":[{"role":"system","content":"Be terse."},{"role":"user","content":"hi"}],'
        b'"stream":true}\n')


HEADERS = [
    # (name, buffer, env, headers that must be sent, headers that must not)
    ("the default", "hi\n", {}, {"content-type": "application/json"}, []),
    ("!>", "!>x-custom v\n", {}, {"x-custom": "v", "content-type": "application/json"}, []),
    ("$VAR and ${VAR}", "!>authorization Bearer $TOKEN\n!>x-two ${TOKEN}-$NOPE.\n", {"TOKEN": "t0k"},
     {"authorization": "Bearer t0k", "x-two": "t0k-."}, []),
    ("case-insensitive names", "!>X-Custom 1\n!>x-custom 2\n", {}, {"x-custom": "2"}, []),
    ("delete", "!>x-custom 1\n!>X-CUSTOM\n!>content-type\n", {}, {}, ["x-custom", "content-type"]),
    ("huggingface.co", "!profile huggingface.co\n!api http://localhost:8080/\n", {"HF_TOKEN": "hf_x"},
     {"authorization": "Bearer hf_x", "x-use-cache": "false"}, []),
    ("claude", '!profile claude\n!api "http://localhost:8080/chat/completions"\n', {"ANTHROPIC_API_KEY": "sk-ant"},
     {"x-api-key": "sk-ant", "anthropic-version": "2023-06-01"}, ["authorization"]),
]


@pytest.mark.parametrize("text, env, sent, absent", [h[1:] for h in HEADERS], ids=[h[0] for h in HEADERS])
def test_headers_sent(text, env, sent, absent):
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(CHAT).mock(return_value=chat("a"))
        assert illume(text, env) == (0, b"\n\n!assistant\n\na")
    headers = route.calls.last.request.headers
    assert {name: headers.get(name) for name in sent} == sent
    assert [name for name in absent if name in headers] == []


DEBUG = [
    # (name, buffer, env, stdout)
    ("chat", "!debug\n!user\nhi\n", {},
     b"\n\nPOST http://localhost:8080/chat/completions HTTP/1.1\ncontent-type: application/json\n\n"
     + llama_chat(b'[{"role":"user","content":"hi"}]') + b"\n"),
    ("headers in first-set order", "!>x-b 2\n!>X-A 1\n!>Content-Type text/plain\n!>x-b 3\n!debug\n", {},
     b"\n\nPOST http://localhost:8080/chat/completions HTTP/1.1\nContent-Type: text/plain\nx-b: 3\nX-A: 1\n\n"
     + llama_chat(b"[]") + b"\n"),
    ("secrets masked", "!profile openai\n!debug\n!>x-other $OTHER\n", {
        "OPENAI_API_KEY": "sk-proj-abcdefghijklmnop1234", "OTHER": "0123456789abcdefXYZW"},
     b"\n\nPOST https://api.openai.com/v1/chat/completions HTTP/1.1\ncontent-type: application/json\n"
     b"authorization: Bearer ***1234\nx-other: ***XYZW\n\n"
     b'{"max_completion_tokens":10000,"messages":[],"model":"gpt-5-mini","stream":true}\n\n'),
    ("claude", "!profile claude\n!debug\n!user\nhi\n", {"ANTHROPIC_API_KEY": "sk-ant-api03-0123456789"},
     b'\n\nPOST https://api.anthropic.com/v1/messages HTTP/1.1\ncontent-type: application/json\n'
     b"anthropic-version: 2023-06-01\nx-api-key: ***6789\n\n"
     b'{"max_tokens":10000,"messages":[{"role":"user","content":"hi"}],"model":"claude-sonnet-4-5",'
     b'"stream":true}\n\n'),
    ("infill", "!debug\npre\n!infill\nsuf\n", {},
     b"\n\nPOST http://localhost:8080/infill HTTP/1.1\ncontent-type: application/json\n\n"
     b'{"cache_prompt":true,"input_prefix":"pre\\n","input_suffix":"\\nsuf","max_tokens":2000,"prompt":"",'
     + LLAMA_STOP + b',"stream":true}\n\n'),
    ("no !api anywhere", "!profile gemma-3\n!debug\n", {},
     b"\n\nPOST http://invalid./chat/completions HTTP/1.1\ncontent-type: application/json\n\n"
     b'{"max_tokens":2000,"messages":[],"min_p":0.01,"repeat_penalty":1,"stream":true,"temperature":1,'
     b'"top_k":64,"top_p":0.95}\n\n'),
]


@pytest.mark.parametrize("text, env, stdout", [d[1:] for d in DEBUG], ids=[d[0] for d in DEBUG])
def test_debug_sends_nothing(text, env, stdout):
    with respx.mock(assert_all_mocked=True) as mock:
        assert illume(text, env) == (0, stdout)
        assert mock.calls.call_count == 0


def test_debug_option_is_the_directive():
    with respx.mock(assert_all_mocked=True) as mock:
        assert illume("!user\nhi\n", debug=True) == illume("!debug\n!user\nhi\n")
        assert mock.calls.call_count == 0


STATS = re.compile(rb"\n\n!assistant\n\nHi there\n\n!note ([0-9.e+-]+|\+Inf) tok/s, 2 toks, "
                   rb"[0-9]+(\.[0-9]+)?(ns|\xc2\xb5s|ms|s)")


def test_stats():
    with respx.mock(assert_all_called=True) as mock:
        mock.post(CHAT).mock(return_value=chat("Hi", " there"))
        status, out = illume("!stats\n!user\nhi\n")
    assert status == 0
    assert STATS.fullmatch(out), out


FAILURES = [
    # (name, buffer, env, response, stdout)
    ("HTTP 500 with a plain body", "!user\nhi\n", {}, httpx.Response(500, text="boom"),
     b"\n\n!error\n\nHTTP 500: boom\n"),
    ("HTTP 500 with an OpenAI error", "!user\nhi\n", {},
     httpx.Response(500, json={"error": {"code": 500, "message": "Model crashed", "type": "server_error"}}),
     b"\n\n!error\n\nHTTP 500: Model crashed (server_error)\n"),
    ("HTTP 400: the context is too small", "!user\nhi\n", {},
     httpx.Response(400, json={"error": {"code": 400, "message": "the request exceeds the available context size",
                                         "type": "exceed_context_size_error", "n_prompt_tokens": 5000,
                                         "n_ctx": 4096}}),
     b"\n\n!error\n\nHTTP 400: the prompt is 5000 tokens but the context holds 4096 (exceed_context_size_error)\n"),
    ("HTTP 400: the context is too small, no counts given", "!user\nhi\n", {},
     httpx.Response(400, json={"error": {"code": 400, "message": "the request exceeds the available context size",
                                         "type": "exceed_context_size_error"}}),
     b"\n\n!error\n\nHTTP 400: the request exceeds the available context size (exceed_context_size_error)\n"),
    ("HTTP 404 in completion mode", "!completion\nx\n", {}, httpx.Response(404, text="Not Found\n"),
     b"\n\n!error\n\nHTTP 404: Not Found\n\n"),  # the body as it came, its newline included
    ("a key echoed in an error is masked", "!>authorization Bearer $KEY\n!user\nhi\n",
     {"KEY": "sk-abcdefghijklmnop1234"}, httpx.Response(401, text="invalid key sk-abcdefghijklmnop1234"),
     b"\n\n!error\n\nHTTP 401: invalid key ***1234\n"),
    ("a stream without its end marker", "!user\nhi\n", {}, chat("Hi", " the", end=False),
     b"\n\n!assistant\n\nHi the\n\n!error\n\nthe reply was cut off: the stream ended before its end marker\n"),
    ("an infill stream without stop: true", "pre\n!infill\n", {},
     sse({"content": "x", "stop": False}, end=False),
     b"x\n\n!error\n\nthe reply was cut off: the stream ended before its end marker\n"),
    ("an error event mid-stream", "!user\nhi\n", {},
     sse({"choices": [{"delta": {"content": "Hi"}}]}, {"error": {"message": "out of memory", "type": "oom"}}),
     b"\n\n!assistant\n\nHi\n\n!error\n\nthe server reported an error: out of memory (oom)\n"),
]


@pytest.mark.parametrize("text, env, response, stdout", [f[1:] for f in FAILURES], ids=[f[0] for f in FAILURES])
def test_failures(text, env, response, stdout):
    with respx.mock(assert_all_called=False) as mock:
        sent = mock.post(url__startswith=LOCAL).mock(return_value=response)
        # Not llama-server: the token counts asked for after a refusal as too long are not there (illume.counting).
        mock.get(url__startswith=LOCAL).mock(return_value=httpx.Response(404))
        assert illume(text, env) == (1, stdout)
        assert sent.called


@pytest.mark.parametrize("error, counts", [
    ({"type": "exceed_context_size_error", "message": "too long", "n_prompt_tokens": 5000, "n_ctx": 4096},
     (5000, 4096)),
    ({"type": "exceed_context_size_error", "message": "too long"}, (None, None)),  # an older server
])
def test_llama_servers_refusal_is_context_too_long(error, counts):
    # A type, not a phrase: what `!fit`'s explanation and `!branches` go by (tests/test_fit.py: a real server).
    from illume import buffer as buf
    from illume import request as req
    from illume.backends import for_request
    from illume.errors import ContextTooLong
    from illume.reply import Reply

    parsed = buf.parse("!user\nhi\n", buf.Sources({}), default_profile="llama.cpp")
    request = req.build(parsed, {})
    with respx.mock(assert_all_called=True) as mock:
        mock.post(CHAT).mock(return_value=httpx.Response(400, json={"error": {"code": 400, **error}}))
        with pytest.raises(ContextTooLong) as caught:
            for _ in for_request(request, {}, 10).stream(request, Reply()):
                pass
    assert (caught.value.prompt, caught.value.context) == counts


def test_token_limit_is_noted():
    response = sse({"choices": [{"delta": {"content": "Hi"}, "finish_reason": None}]},
                   {"choices": [{"delta": {}, "finish_reason": "length"}]})
    with respx.mock(assert_all_called=True) as mock:
        mock.post(CHAT).mock(return_value=response)
        assert illume("!user\nhi\n") == (0, b"\n\n!assistant\n\nHi\n\n!note the reply stopped at the token limit"
                                            b" (raise !:max_tokens for more)")


LOCAL_ERRORS = [
    # (name, buffer, env, stdout): errors found before anything is sent
    ("a missing file", "!user\nhi\n!context notes.md\n", {},
     b"\n\n!error\n\n<stdin>:3: open notes.md: no such file or directory\n"),
    ("a missing profile", "!profile nope\n", {}, b"\n\n!error\n\n<stdin>:1: open nope: no such file or directory\n"),
    ("a missing default profile", "hi\n", {"ILLUME_PROFILE": "nope"},
     b"\n\n!error\n\nopen nope: no such file or directory\n"),
    ("a missing key in !api", "!profile huggingface.co\n!:model\n", {},
     b"\n\n!error\n\ninterpolating URL: missing key: model\n"),
    ("a missing key in a template", "!infill {prefix}{middle}\n!api http://h/\np\n!infill\n", {},
     b"\n\n!error\n\n!infill: missing key: middle\n"),
    ("!completion without text", "!completion\n", {}, b"\n\n!error\n\n!completion: there is no text to complete\n"),
    ("no !api", "!profile gemma-3\n!user\nhi\n", {},
     b"\n\n!error\n\nno API URL: set one with !api URL or load a profile (for example !profile llama.cpp)\n"),
]


@pytest.mark.parametrize("text, env, stdout", [e[1:] for e in LOCAL_ERRORS], ids=[e[0] for e in LOCAL_ERRORS])
def test_errors_before_sending(text, env, stdout):
    with respx.mock(assert_all_mocked=True) as mock:
        assert illume(text, env) == (1, stdout)
        assert mock.calls.call_count == 0


def test_connection_refused():
    with respx.mock(assert_all_called=True) as mock:
        mock.post(CHAT).mock(side_effect=httpx.ConnectError("[Errno 111] Connection refused"))
        assert illume("!user\nhi\n") == (
            1, b"\n\n!error\n\ncannot connect to localhost:8080: connection refused (is the server running?)\n")


def test_text_is_flushed_as_it_arrives():
    class Recorder(io.BytesIO):
        def __init__(self):
            super().__init__()
            self.flushed = []

        def flush(self):
            self.flushed.append(self.getvalue())

    out = Recorder()
    with respx.mock(assert_all_called=True) as mock:
        mock.post(CHAT).mock(return_value=chat("Hi"))
        assert run(b"!user\nhi\n", out, {}, Options()) == 0
    assert out.flushed[0] == b"\n\n!assistant\n\n"  # before the first word, as the original
    assert out.flushed[-1] == b"\n\n!assistant\n\nHi"


def test_gzip_encoded_stream():
    import gzip

    compressed = gzip.compress(b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\ndata: [DONE]\n\n')
    response = httpx.Response(200, headers={"content-type": "text/event-stream", "content-encoding": "gzip"},
                              content=compressed)
    with respx.mock(assert_all_called=True) as mock:
        mock.post(CHAT).mock(return_value=response)
        assert illume("!user\nhi\n") == (0, b"\n\n!assistant\n\nHi")
