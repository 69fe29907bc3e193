"""Token counts and `!fit` end to end: the CLI as a subprocess against a real llama-server started with a
512-token context, and the embedded model with the same context.

Every count is checked against the model's own: the prompt tokens llama-server
reports for the very request illume sends (usage.prompt_tokens, and
timings.prompt_n plus cache_n), and the embedded model's count in `!stats`.
"""

import json
import re

import httpx
import pytest

from conftest import SMALL_CONTEXT, embedded_model, run_illume

CONTEXT = SMALL_CONTEXT
SETTINGS = "!:temperature 0\n!:seed 42\n!:max_tokens 32\n"
QUESTION = "!user\nQuestion {i}: what is special about the number {i}?\n" \
           "!assistant\nThe number {i} is special in its own way.\n"
NOTE = re.compile(rb"!note left out messages 2-(\d+), ([\d,]+) tokens, to fit 512")


@pytest.fixture
def schema(tmp_path):
    """A file of some 700 tokens: more than the context holds."""
    path = tmp_path / "schema.sql"
    path.write_text("".join(f"CREATE TABLE t{i} (id INTEGER PRIMARY KEY, name TEXT NOT NULL);\n" for i in range(40)))
    return path


def conversation(turns: int, last: str = "And the number 100?") -> str:
    return "Be brief.\n" + "".join(QUESTION.format(i=i) for i in range(turns)) + f"!user\n{last}\n"


def sent_body(stdout: bytes) -> dict:
    """Return the JSON body of a `!debug` dry run's output."""
    return json.loads(next(part for part in stdout.split(b"\n\n") if part.startswith(b"{")))


def server_count(url: str, body: dict) -> int:
    """Return the prompt tokens llama-server evaluates for BODY, checked two ways."""
    body = dict(body, stream=False, max_tokens=1)
    path = "v1/chat/completions" if "messages" in body else "v1/completions"
    answer = httpx.post(url + path, json=body, timeout=300).json()
    timings = answer["timings"]
    assert answer["usage"]["prompt_tokens"] == timings["prompt_n"] + timings["cache_n"]
    return answer["usage"]["prompt_tokens"]


def total(stdout: bytes) -> int:
    found = re.search(rb"\n!note total: ([\d,]+) tokens", stdout)
    assert found, stdout
    return int(found.group(1).replace(b",", b""))


def parts(stdout: bytes) -> int:
    """Return the sum of the breakdown's parts: its messages and the chat template."""
    found = re.findall(rb"^!note (?:the system prompt|message \d+ \(\w+\)|the prompt|the chat template): "
                       rb"([\d,]+) tokens", stdout, re.M)
    return sum(int(n.replace(b",", b"")) for n in found)


@pytest.mark.server
def test_plain_debug_is_unchanged_and_debug_tokens_adds_notes(small_server):
    buffer = f"!api {small_server}v1\n{SETTINGS}{conversation(2)}"
    plain = run_illume(buffer + "!debug\n")
    counted = run_illume(buffer + "!debug tokens\n")
    assert plain.returncode == counted.returncode == 0
    assert b"!note" not in plain.stdout and plain.stdout.endswith(b"}\n\n")
    assert counted.stdout.startswith(plain.stdout)
    notes = counted.stdout[len(plain.stdout):].decode()
    assert re.fullmatch(r"(!note [^\n]*\n)+", notes), notes
    assert notes.startswith("!note the system prompt: 3 tokens\n!note message 2 (user): ")
    assert notes.endswith(" tokens of a context of 512, 32 kept for the reply (max_tokens): fits, "
                          f"{512 - 32 - total(counted.stdout)} to spare\n")


@pytest.mark.server
@pytest.mark.parametrize("shape", ["chat", "context", "completion", "long chat"])
def test_breakdown_total_is_the_servers_own_count(small_server, schema, tmp_path, shape):
    small = tmp_path / "small.py"
    small.write_text("def f(x):\n    return x * 2  # doubled\n")
    buffer = {
        "chat": conversation(1, "Héllo — 你好 👋"),
        "context": f"!user\n!context {small}\nWhat does f do?\n",
        "completion": f"!completion\n!context {small}\nOnce upon a time\n",
        "long chat": conversation(8),
    }[shape]
    result = run_illume(f"!api {small_server}v1\n{SETTINGS}{buffer}!debug tokens\n")
    assert result.returncode == 0, result.stdout
    assert total(result.stdout) == parts(result.stdout) == server_count(small_server, sent_body(result.stdout))
    if shape in ("context", "completion"):
        assert re.search(rf"tokens, of which {re.escape(str(small))} 1[0-9]\n".encode(), result.stdout)


@pytest.mark.server
def test_too_long_names_the_biggest_parts(small_server, schema):
    buffer = f"!api {small_server}v1\n{SETTINGS}Be brief.\n!user\nHello\n!assistant\nHi.\n" \
             f"!user\n!context {schema}\nWhat is this?\n"
    counted = run_illume(buffer + "!debug tokens\n")
    n = total(counted.stdout)
    refused = httpx.post(small_server + "v1/chat/completions", json=sent_body(counted.stdout), timeout=300)
    assert refused.status_code == 400 and refused.json()["error"]["n_prompt_tokens"] == n
    files = re.search(rb"of which " + re.escape(str(schema).encode()) + rb" ([\d,]+)\n", counted.stdout).group(1)

    result = run_illume(buffer)
    assert result.returncode == 1
    assert re.fullmatch(rf"\n\n!error\n\nthe prompt is {n:,} tokens, the context 512: {re.escape(str(schema))} "
                        rf"{files.decode()} in message 4, "  # then the two next biggest, in an order the path's length sets
                        r"(the chat template 2\d, message 4 \(user\) less its files \d\d"
                        r"|message 4 \(user\) less its files \d\d, the chat template 2\d)"
                        r" \(add !fit to leave out the oldest messages\)\n".encode(), result.stdout), result.stdout


@pytest.mark.server
def test_fit_leaves_out_the_oldest_messages(small_server):
    buffer = f"!api {small_server}v1\n{SETTINGS}!fit\n{conversation(20)}"
    dry = run_illume(buffer + "!debug\n")
    assert dry.returncode == 0, dry.stdout
    body = sent_body(dry.stdout)
    kept = body["messages"]
    assert kept[0] == {"role": "system", "content": "Be brief."}
    assert kept[-1] == {"role": "user", "content": "And the number 100?"}
    assert kept[1]["role"] == "user" and len(kept) % 2 == 0  # the kept turns start with a question
    note = NOTE.search(dry.stdout)
    assert note and int(note.group(1)) == 1 + 42 - len(kept)  # of 42 messages, the first and the last ones kept
    # What is sent is what was counted, and fits with room for the reply.
    assert total(dry.stdout) == server_count(small_server, body) <= 512 - 32

    result = run_illume(buffer + "!stats usage\n")
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith(b"\n\n!assistant\n\n")
    reply, notes = result.stdout.split(b"\n\n!note left out", 1)
    # The same note as the dry run's, after the reply and before !stats'.
    assert re.fullmatch(re.escape(note.group(0)) + rb"\n\n!note [^\n]+ toks, [^\n]+\n\n!note used [^\n]+",
                        b"!note left out" + notes)


@pytest.mark.server
def test_fit_keeps_quiet_when_it_fits(small_server):
    buffer = f"!api {small_server}v1\n{SETTINGS}{conversation(2)}"
    plain, fitted = run_illume(buffer), run_illume("!fit\n" + buffer)
    assert plain.returncode == fitted.returncode == 0
    assert fitted.stdout == plain.stdout and b"left out" not in fitted.stdout


@pytest.mark.server
def test_fit_cannot_leave_out_the_last_question(small_server, schema):
    result = run_illume(f"!api {small_server}v1\n{SETTINGS}!fit\n{conversation(3)}!context {schema}\n")
    assert result.returncode == 1
    # Over the context itself: the room for the reply goes unsaid.
    assert re.fullmatch(rb"\n\n!error\n\nthe prompt is [\d,]+ tokens, the context 512: " + re.escape(str(schema).encode()) + rb" [\d,]+ in message 8, "
                        rb"[^\n]+\n", result.stdout), result.stdout


def test_another_api_gives_no_counts():
    from scripted import Reply, ScriptedServer, chat_events

    with ScriptedServer() as server:
        server.respond(Reply(chat_events(["Hi"])))
        server.respond(Reply(status=404, body='{"error":{"message":"Unknown request URL: GET /props"}}'), path="/props")
        buffer = f"!api {server.url}v1\n!user\nHello\n"
        counted = run_illume(buffer + "!debug tokens\n")
        assert counted.returncode == 0
        why = f"{server.url.split('//')[1].rstrip('/')} answered props with HTTP 404 (token counts need llama-server)"
        assert counted.stdout.endswith(f'"stream":true}}\n\n!note no token counts: {why}\n'.encode())
        assert [r.path for r in server.requests] == ["/props"]  # a dry run sends no request for a reply
        fitted = run_illume("!fit\n" + buffer)
        assert fitted.returncode == 0
        assert fitted.stdout == f"\n\n!assistant\n\nHi\n\n!note !fit left nothing out: {why}".encode()


EMBEDDED = f"!profile embedded\n!:n_ctx {CONTEXT}\n{SETTINGS}"


@pytest.mark.embedded
@pytest.mark.parametrize("shape", ["chat", "unicode", "completion"])
def test_embedded_counts_are_the_models_own(shape):
    """The count equals the prompt tokens the embedded model then evaluates (the backend's own figure)."""
    embedded_model()
    from illume import buffer as buf
    from illume import counting
    from illume import request as req
    from illume.backends import counter_for
    from illume.backends.embedded import EmbeddedBackend
    from illume.reply import Reply

    text = EMBEDDED + {"chat": conversation(4), "unicode": conversation(1, "Héllo — 你好 👋"),
                       "completion": "!completion\nOnce upon a time\n"}[shape]
    parsed = buf.parse(text, buf.Sources({}))
    request = req.build(parsed, {})
    count = counting.measure(counter_for(request, {}, 10), parsed, request)
    # What the backend hands llama-cpp-python to evaluate, caught before any evaluation.
    llama = counter_for(request, {}, 10).llama
    handed = []

    def create_completion(prompt, **options):
        handed.append(prompt)
        return iter(())

    llama.create_completion, saved = create_completion, llama.create_completion
    try:
        for _ in EmbeddedBackend({}).stream(request, Reply()):
            pass
    finally:
        llama.create_completion = saved
    evaluated = handed[0] if isinstance(handed[0], list) else llama.tokenize(handed[0].encode(), special=True)
    assert count.context == CONTEXT
    assert count.total == sum(m.tokens for m in count.messages) + count.template == len(evaluated)

    printed = run_illume(text + "!debug tokens\n")
    assert printed.returncode == 0, printed.stdout
    assert total(printed.stdout) == parts(printed.stdout) == count.total


@pytest.mark.embedded
def test_embedded_too_long_and_fit(schema):
    # The embedded backend that renders its own prompt refuses a long one before its reply, and loads safely
    # where the CPU advertises AMX; the one before it is killed there on its first prompt.
    embedded_model()
    too_long = run_illume(EMBEDDED + f"!user\n!context {schema}\nWhat is this?\n")
    assert too_long.returncode == 1
    assert re.fullmatch(rb"\n\n!error\n\nthe prompt is [\d,]+ tokens, the context 512: "
                        + re.escape(str(schema).encode()) + rb" [\d,]+ in message 1, [^\n]+ \(add !fit to leave "
                        rb"out the oldest messages\)\n", too_long.stdout), too_long.stdout
    fitted = run_illume(EMBEDDED + "!fit\n" + conversation(20))
    assert fitted.returncode == 0, fitted.stdout
    assert fitted.stdout.startswith(b"\n\n!assistant\n\n")
    assert re.search(rb"\n\n!note left out messages 2-\d+, [\d,]+ tokens, to fit 512$", fitted.stdout)


# --- the refusal is a type, ContextTooLong, with the counts, from either backend ---

@pytest.mark.server
def test_llama_server_refusal_is_context_too_long_with_its_counts(small_server, schema):
    from illume import buffer as buf
    from illume import request as req
    from illume.backends import for_request
    from illume.errors import ContextTooLong
    from illume.reply import Reply

    text = f"!api {small_server}v1\n{SETTINGS}!user\n!context {schema}\nWhat is this?\n"
    parsed = buf.parse(text, buf.Sources({}))
    request = req.build(parsed, {})
    refused = httpx.post(small_server + "v1/chat/completions", json=dict(request.body, stream=False), timeout=300)
    assert refused.status_code == 400, refused.text
    with pytest.raises(ContextTooLong) as caught:
        for _ in for_request(request, {}, 60).stream(request, Reply()):
            pass
    assert (caught.value.prompt, caught.value.context) == (refused.json()["error"]["n_prompt_tokens"], CONTEXT)
    assert str(caught.value) == (f"HTTP 400: the prompt is {caught.value.prompt} tokens but the context holds "
                                 f"{CONTEXT} (exceed_context_size_error)")


@pytest.mark.embedded
def test_embedded_refusal_is_context_too_long_with_its_counts(schema):
    embedded_model()
    from illume import buffer as buf
    from illume import counting
    from illume import request as req
    from illume.backends import counter_for, for_request
    from illume.errors import ContextTooLong
    from illume.reply import Reply

    parsed = buf.parse(EMBEDDED + f"!user\n!context {schema}\nWhat is this?\n", buf.Sources({}))
    request = req.build(parsed, {})
    count = counting.measure(counter_for(request, {}, 10), parsed, request)  # the model's own tokenizer
    assert count.total > CONTEXT
    with pytest.raises(ContextTooLong) as caught:
        for _ in for_request(request, {}, 10).stream(request, Reply()):
            pass
    assert (caught.value.prompt, caught.value.context) == (count.total, CONTEXT)


@pytest.mark.server
def test_branches_too_long_names_the_biggest_parts(small_server, schema):
    # One refusal explained as for one reply: not a raw HTTP 400, and not N more requests each refused.
    buffer = f"!api {small_server}v1\n{SETTINGS}!user\n!context {schema}\nWhat is this?\n"
    one = run_illume(buffer)
    assert one.returncode == 1 and one.stdout.startswith(b"\n\n!error\n\nthe prompt is "), one.stdout
    branched = run_illume(buffer.replace("!user", "!branches 2\n!user"))
    assert (branched.returncode, branched.stdout) == (1, one.stdout)


@pytest.mark.embedded
def test_embedded_branches_too_long_names_the_biggest_parts(schema):
    embedded_model()
    buffer = EMBEDDED + f"!user\n!context {schema}\nWhat is this?\n"
    one = run_illume(buffer)
    assert one.returncode == 1 and one.stdout.startswith(b"\n\n!error\n\nthe prompt is "), one.stdout
    assert b"(add !fit to leave out the oldest messages)" in one.stdout
    branched = run_illume(buffer.replace("!user", "!branches 2\n!user"))
    assert (branched.returncode, branched.stdout) == (1, one.stdout)
