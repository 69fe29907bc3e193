"""Bad input: each case gives a clear `!error` naming the line, or works; none gives a traceback.

The real CLI runs as a subprocess in a temporary folder; `--debug` shows the
request where a case should work. A property-based test feeds the parser
arbitrary buffers: it must return a request or raise IllumeError, nothing else.
"""

import hashlib
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import builtin_profiles, illume, require_program
from illume import buffer as buf
from illume import documents, profiles
from illume import request as req
from illume.errors import DocumentError, IllumeError
from scripted import DONE, ScriptedServer, chat, head


def error(message: str) -> tuple[int, bytes]:
    return 1, f"\n\n!error\n\n{message}\n".encode()


def body_of(debug_output: bytes) -> dict:
    """Return the JSON body of a `!debug` dry run."""
    return json.loads(debug_output.split(b"\n\n")[-2])


@pytest.fixture
def here(tmp_path):
    return tmp_path


# --- text that is not what it should be -------------------------------------

def test_invalid_utf8_is_sent_as_replacement_characters(here):
    status, out = illume(b"!user\nhi \xff\xfe caf\xc3\xa9 \xe2\x82\n", "--debug", cwd=here)
    assert status == 0
    # One U+FFFD per invalid byte, as Go's encoding/json writes them.
    assert body_of(out)["messages"] == [{"role": "user", "content": "hi \ufffd\ufffd caf\u00e9 \ufffd\ufffd"}]


def test_invalid_utf8_on_the_wire_is_valid_json(server):
    server.script([head(), chat("ok"), DONE])
    status, out = illume(f"!api {server.url}\n!user\n".encode() + b"\xc0\x80 \xed\xa0\x80 ok\n")
    assert (status, out) == (0, b"\n\n!assistant\n\nok")
    sent = server.requests[0].body.decode("utf-8")  # strict: it must be valid UTF-8
    assert json.loads(sent)["messages"] == [{"role": "user", "content": "\ufffd\ufffd \ufffd\ufffd\ufffd ok"}]


def test_empty_input(here):
    status, out = illume(b"", "--debug", cwd=here)
    assert status == 0
    assert body_of(out)["messages"] == []


def test_empty_input_is_sent(here, server):
    server.script([head(), chat("Hello"), DONE])
    (here / "local.profile").write_text(f"!api {server.url}\n")
    assert illume(b"", cwd=here, env={"ILLUME_PROFILE": "local.profile"}) == (0, b"\n\n!assistant\n\nHello")
    assert server.requests[0].json()["messages"] == []


def test_only_directives(here):
    status, out = illume("!:temperature 0.5\n!>x-trace yes\n!note nothing to say\n", "--debug", cwd=here)
    assert status == 0
    body = body_of(out)
    assert body["messages"] == [] and body["temperature"] == 0.5
    assert b"\nx-trace: yes\n" in out


def test_infill_twice(here):
    assert illume("a\n!infill\nb\n!infill\nc\n", "--debug", cwd=here) == error(
        "<stdin>:4: !infill: the buffer is already split at line 2; use one !infill")


def test_infill_in_completion_mode(here):
    assert illume("!completion\na\n!infill\nb\n", "--debug", cwd=here) == error(
        "<stdin>:3: !infill: cannot fill in the middle in completion mode (remove !completion)")


def test_completion_after_infill(here):
    assert illume("a\n!infill\nb\n!completion\n", "--debug", cwd=here) == error(
        "<stdin>:4: !completion: the buffer is already split for infill at line 2")


# --- profiles ---------------------------------------------------------------

def test_unknown_profile(here):
    assert illume("!user\nhi\n!profile no-such-profile\n", cwd=here) == error(
        "<stdin>:3: open no-such-profile: no such file or directory")


def test_unknown_default_profile(here):
    assert illume("!user\nhi\n", cwd=here, env={"ILLUME_PROFILE": "nope"}) == error(
        "open nope: no such file or directory")


def test_profile_loop(here):
    (here / "a.profile").write_text("!:top_k 1\n!profile b.profile\n")
    (here / "b.profile").write_text("!profile a.profile\n")
    assert illume("!user\nhi\n!profile a.profile\n", cwd=here) == error(
        "<stdin>:3: a.profile:2: b.profile:1: profile loop: a.profile -> b.profile -> a.profile")


def test_profile_that_loads_itself(here):
    (here / "me.profile").write_text("!profile ./me.profile\n")
    status, out = illume("!profile me.profile\n", cwd=here)
    assert (status, out) == error("<stdin>:1: me.profile:1: profile loop: me.profile -> ./me.profile")


def test_a_profile_loaded_twice_is_no_loop(here):
    (here / "t.profile").write_text("!:top_k 3\n")
    status, out = illume("!profile t.profile\n!profile t.profile\n!api http://x/\n", "--debug", cwd=here)
    assert status == 0 and body_of(out)["top_k"] == 3


# --- !context and other documents -------------------------------------------

def test_context_missing_file(here):
    assert illume("!user\nread\n!context notes.md\n", cwd=here) == error(
        "<stdin>:3: open notes.md: no such file or directory")


def test_context_unreadable_file(here):
    secret = here / "secret.txt"
    secret.write_text("x")
    secret.chmod(0)
    # Root reads a chmod 000 file anyway, unless it runs without the capabilities that allow it.
    prefix = ()
    if os.geteuid() == 0:
        prefix = (require_program("setpriv", "apt-get install util-linux"),
                  "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-dac_override,-dac_read_search")
    assert illume("!context secret.txt\n", cwd=here, prefix=prefix) == error(
        "<stdin>:1: open secret.txt: permission denied")


def test_context_file_that_is_a_directory(here):
    (here / "src").mkdir()
    assert illume("!user\n!context src\n", cwd=here) == error("<stdin>:2: read src: is a directory")


def test_context_fifo_does_not_hang(here):
    os.mkfifo(here / "pipe")
    assert illume("!context pipe\n", cwd=here, timeout=20) == error("<stdin>:1: pipe: not a regular file")


def test_context_device_that_never_ends(here):
    assert illume("!context /dev/zero\n", cwd=here, timeout=20) == error(
        "<stdin>:1: /dev/zero: not a regular file")


def test_context_binary_file(here):
    (here / "a.out").write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00")
    assert illume("!user\nx\n!context a.out\n", cwd=here) == error("<stdin>:3: a.out: binary file (it holds NUL bytes)")


def test_context_huge_file(here):
    huge = here / "dump.log"
    with open(huge, "wb") as f:
        f.truncate(documents.MAX_FILE_BYTES + 1)  # sparse: no disk used
    assert illume("!context dump.log\n", cwd=here) == error(
        f"<stdin>:1: dump.log: file too large ({documents.MAX_FILE_BYTES + 1} bytes, "
        f"the limit is {documents.MAX_FILE_BYTES})")


def test_context_file_with_invalid_utf8(here):
    (here / "latin.txt").write_bytes(b"caf\xe9\n")
    status, out = illume("!user\n!context latin.txt\n", "--debug", cwd=here)
    assert status == 0
    assert body_of(out)["messages"][0]["content"] == "**`latin.txt`**\n```\ncaf\ufffd\n```"


def test_context_directory_without_a_match(here):
    (here / "proj").mkdir()
    (here / "proj" / "a.txt").write_text("x")
    assert illume("!user\n!context proj .py .go\n", cwd=here) == error(
        "<stdin>:2: !context: no file under proj ends with .py or .go")


def test_context_missing_directory(here):
    assert illume("!context nowhere .py\n", cwd=here) == error(
        "<stdin>:1: lstat nowhere: no such file or directory")


def test_context_without_argument(here):
    assert illume("!context\n", cwd=here) == error("<stdin>:1: !context: wrong number of fields")


@pytest.mark.parametrize("directive, content, message", [
    ("!reddit", "{not json", "failed to parse JSON: thread.json"),
    ("!reddit!", '{"kind": "Listing"}', "failed to parse JSON: thread.json (not a Reddit thread export)"),
    ("!reddit", "[]", "failed to parse JSON: thread.json (not a Reddit thread export)"),
    ("!github", "{not json", "failed to parse JSON: thread.json"),
    ("!github", "[1, 2]", "failed to parse JSON: thread.json (not a GitHub issue)"),
], ids=["reddit broken", "reddit not a list", "reddit empty", "github broken", "github not an issue"])
def test_malformed_documents(here, directive, content, message):
    (here / "thread.json").write_text(content)
    assert illume(f"!user\n{directive} thread.json\n", cwd=here) == error(f"<stdin>:2: {message}")


def test_malformed_github_comments(here):
    (here / "issue.json").write_text('{"title": "t", "user": {"login": "u"}, "body": "b"}')
    (here / "comments.json").write_text('{"not": "a list"}')
    assert illume("!github issue.json comments.json\n", cwd=here) == error(
        "<stdin>:1: failed to parse JSON: comments.json (not a list of GitHub comments)")


def test_odd_but_valid_github_json_works(here):
    (here / "issue.json").write_text('{"title": 5, "user": null, "body": ["x"]}')
    (here / "comments.json").write_text('[1, {"user": "x", "body": null}]')
    status, out = illume("!user\n!github issue.json comments.json\n", "--debug", cwd=here)
    assert status == 0
    assert body_of(out)["messages"][0]["content"] == "---\n\n\nby @\n\n\n\n@:\n---"


# --- templates, URLs, headers ------------------------------------------------

def test_jinja_template_syntax_error(here):
    assert illume("!infill {{ prefix }\na\n!infill\nb\n", cwd=here) == error(
        "<stdin>:1: !infill: template syntax error: unexpected '}'")


def test_jinja_template_undefined_name(here):
    assert illume("!infill {{ prefix }}{{ middle }}{{ suffix }}\na\n!infill\nb\n", cwd=here) == error(
        "<stdin>:1: !infill: the template names middle, but only prefix, suffix and files are defined")


def test_jinja_template_with_loops_and_globals_works(here):
    template = "{% for f in files %}{{ loop.index }}{{ f.filename }}{% endfor %}{{ range(2)|list }}{{ prefix }}"
    status, out = illume(f"!infill {template}\na\n!infill\nb\n", "--debug", cwd=here)
    assert status == 0
    assert body_of(out)["prompt"] == "[0, 1]a\n"


def test_jinja_template_file_with_errors(here):
    (here / "bad.jinja").write_text("{{ prefix }}{% if %}")
    status, out = illume("!infill ./bad.jinja\na\n!infill\nb\n", cwd=here)
    assert (status, out) == error("!infill: ./bad.jinja:1: template syntax error: Expected an expression, got 'end of "
                                  "statement block'")
    (here / "undefined.jinja").write_text("{{ prefix }}{{ nope }}")
    assert illume("!infill ./undefined.jinja\na\n!infill\nb\n", cwd=here) == error(
        "!infill: ./undefined.jinja: 'nope' is undefined")


def test_url_with_a_missing_key(here):
    assert illume("!api http://x/{model}/v1\n!user\nhi\n", cwd=here) == error(
        "interpolating URL: missing key: model")


def test_url_with_an_unclosed_brace(here):
    assert illume("!api http://x/{model\n!user\nhi\n", cwd=here) == error("interpolating URL: unmatched '}'")


@pytest.mark.parametrize("url, message", [
    ("ftp://example.com/", "unsupported URL: ftp://example.com/chat/completions (it must start with http:// or https://)"),
    ("localhost:8080", "unsupported URL: localhost:8080/chat/completions (it must start with http:// or https://)"),
    ("http://:8080/", "invalid URL http://:8080/chat/completions: it names no host"),
    ("http://[bad/", "cannot connect to http://[bad/chat/completions: unknown host"),
])
def test_url_with_a_bad_scheme_or_host(here, url, message):
    assert illume(f"!api {url}\n!user\nhi\n", cwd=here) == error(message)


def test_header_value_with_a_newline_from_the_environment(here):
    env = {"EVIL": "x\r\nx-injected: yes"}
    assert illume("!user\nhi\n!>x-token $EVIL\n", cwd=here, env=env) == error(
        "<stdin>:3: !>x-token: a header value cannot hold a line break")


def test_header_value_with_a_control_character(here):
    assert illume("!>x-token a${CTRL}b\n", cwd=here, env={"CTRL": "\x1b"}) == error(
        "<stdin>:1: !>x-token: a header value cannot hold a control character")


def test_header_with_a_bad_name(here):
    assert illume("!>x:y z\n", cwd=here) == error(
        "<stdin>:1: !>x:y: not a valid header name (RFC 9110 allows letters, digits and !#$%&'*+-.^_`|~)")


def test_header_value_with_non_ascii_text_is_sent_as_utf8(server):
    server.script([head(), chat("ok"), DONE])
    assert illume(f"!api {server.url}\n!>x-name Zoë\n!user\nhi\n") == (0, b"\n\n!assistant\n\nok")
    assert server.requests[0].headers["x-name"].encode("latin-1") == "Zoë".encode("utf-8")


# --- a very large buffer -----------------------------------------------------

FIFTY_MB = 50 * 1024 * 1024


def big_buffer() -> bytes:
    """Return a 50 MB chat buffer whose lines are numbered, so that no two pieces of it are alike."""
    line = "{:08d} The quick brown fox jumps over the lazy dog, again and again.\n"
    return b"!user\n" + "".join(line.format(i) for i in range(FIFTY_MB // len(line.format(0)))).encode()


def assert_sent_whole(body: bytes, buffer: bytes) -> None:
    """Assert BODY carries the message of the big BUFFER exactly: a character lost where a piece ends fails it."""
    sent = json.loads(body)["messages"][-1]
    wanted = buffer[len(b"!user\n"):].rstrip(b"\n")
    assert sent["role"] == "user"
    assert hashlib.sha256(sent["content"].encode()).hexdigest() == hashlib.sha256(wanted).hexdigest()


def test_fifty_megabytes_with_debug_finishes(here):
    data = big_buffer()
    status, out = illume(data, "--debug", cwd=here, timeout=120)
    assert status == 0
    assert_sent_whole(out.split(b"\n\n")[-2], data)


def test_fifty_megabytes_are_sent(here):
    data = big_buffer()
    with ScriptedServer() as server:
        server.script([head(), chat("That is a lot."), DONE])
        assert illume(data, "--filter", f"--profile={here / 'big.profile'}", cwd=here, timeout=120,
                      env={}) == (1, data + b"\n\n!error\n\nopen " + str(here / "big.profile").encode()
                                  + b": no such file or directory\n")
        (here / "big.profile").write_text(f"!api {server.url}\n")
        status, out = illume(data, "--filter", "--profile", str(here / "big.profile"), cwd=here, timeout=120)
    assert (status, out) == (0, data + b"\n\n!assistant\n\nThat is a lot.")
    assert_sent_whole(server.requests[0].body, data)


# --- property: the parser returns a request or raises IllumeError ------------

class Sandboxed(buf.Sources):
    """The parser's hooks, kept off the real file system: a few profiles and documents in memory."""

    PROFILES = {
        "loop-a": "!profile loop-b\n",
        "loop-b": "!profile loop-a\n",
        "keys": "!:temperature 0.1\n!>x-a $HOME\n!api http://x/{model}\nsystem text\n",
        "infill": "!infill {{ prefix }}{{ nope }}\n",
    }

    def profile(self, name):
        if name in self.PROFILES:
            return name, self.PROFILES[name]
        if name in builtin_profiles():
            return profiles.resolve(name, {})
        raise DocumentError(f"open {name}: no such file or directory")

    def context(self, arguments):
        if arguments == ["doc.txt"]:
            return documents.fenced_parts("doc.txt", "```\nbody\n"), [{"filename": "doc.txt", "text": "body"}]
        raise DocumentError("!context: not here")

    def reddit(self, path, with_comments):
        raise DocumentError(f"failed to parse JSON: {path}")

    def github(self, paths):
        raise DocumentError("!github requires at least one argument")


DIRECTIVES = ["!user", "!assistant", "!completion", "!infill", "!infill {prefix}<X>{suffix}", "!infill {{ prefix }",
              "!infill {{ prefix }}{{ x }}", "!infill x.jinja", "!api", "!api http://h/", "!api http://h/{model}",
              '!api "http://h/x"', "!api {", "!:model", "!:model m", "!:max_tokens 5", "!:stop [", "!:stream false",
              "!>authorization Bearer $TOKEN", "!>x-a", "!>a:b c", "!>x $NL", "!profile", "!profile loop-a",
              "!profile keys", "!profile infill", "!profile llama.cpp", "!profile fim:qwen", "!profile nope",
              "!context", "!context doc.txt", "!context doc.txt .py", "!reddit x", "!github", "!note x", "!begin",
              "!end", "!exclude", "!exclude t", "<t>", "</t>", "!prepend", '!prepend "\\u12', '!prepend "<think>\\n"',
              "!stats", "!debug", "!gpt-oss", "!error", "!!user", "!branches", "!branches 0", "!branches 2",
              "!stop-rules", "!stop-rules x", "!language", "!language python", ""]

lines = st.one_of(st.sampled_from(DIRECTIVES), st.text(max_size=30),
                  st.builds(lambda d, t: d + t, st.sampled_from(DIRECTIVES), st.text(max_size=10)))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(lines, max_size=25), st.booleans(), st.sampled_from(["\n", "\r\n"]))
def test_parser_returns_a_request_or_raises_illume_error(buffer_lines, newline_at_end, newline):
    text = newline.join(buffer_lines) + (newline if newline_at_end else "")
    env = {"TOKEN": "sk-0123456789abcdef", "NL": "a\nb", "HOME": "/root"}
    try:
        parsed = buf.parse(text, Sandboxed(env))
        request = req.build(parsed, env)
    except IllumeError:
        return
    assert request.url
    b"".join(request.body_pieces())
    request.debug_text()
    assert "sk-0123456789abcdef" not in request.debug_text()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_parser_survives_arbitrary_bytes(data):
    text = data.decode("utf-8", "surrogateescape")
    try:
        b"".join(req.build(buf.parse(text, Sandboxed({})), {}).body_pieces())
    except IllumeError:
        pass
