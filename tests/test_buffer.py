"""The buffer language (docs/buffer.md): one table per directive family, one row a case."""

import pytest

from illume import buffer, jsonwire
from illume.buffer import INVALID_URL, Sources
from illume.errors import IllumeError

# What the default profile, llama.cpp, adds to every body when the buffer loads no profile.
LLAMA = '"cache_prompt":true,"max_tokens":2000'
STOP = '"stop":["<|im_end|>"]'


def parse(text: str, env: dict | None = None, default_profile: str | None = None) -> buffer.Buffer:
    return buffer.parse(text, Sources(env or {}), default_profile)


def messages(parsed: buffer.Buffer) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in parsed.messages]


pytestmark = pytest.mark.usefixtures("in_tmp")  # conftest: each test in an empty folder of its own


MESSAGES = [
    # (name, buffer, messages)
    ("text before any role is system", "hello\n", [("system", "hello")]),
    ("roles", "s\n!user\nu\n!assistant\na\n", [("system", "s"), ("user", "u"), ("assistant", "a")]),
    ("role arguments are ignored", "!user Alice\nu\n!assistant Bob\na\n", [("user", "u"), ("assistant", "a")]),
    ("same role twice makes two messages", "!user\na\n!user\nb\n", [("user", "a"), ("user", "b")]),
    ("only CR and LF are trimmed", "!user\n\n  u \t\n\r\n", [("user", "  u \t")]),
    ("inner blank lines stay", "!user\na\n\n\nb\n", [("user", "a\n\n\nb")]),
    ("empty messages are dropped", "!user\n\n!assistant\n\r\n!user\nx", [("user", "x")]),
    ("no final newline", "!user\nhi", [("user", "hi")]),
    ("nothing", "", []),
    ("a CRLF directive is text, as in the original", "!user\r\nhi\r\n", [("system", "!user\r\nhi")]),
    ("!! escapes a directive", "!user\n!!user\n!!assistant x\n", [("user", "!user\n!assistant x")]),
    ("!! removes only one !", "!user\n!!!x\n!!\n", [("user", "!!x\n!")]),
    ("unknown !word is text", "!user\n!foo bar\n!\n!:\n!>\n!users\n", [("user", "!foo bar\n!\n!:\n!>\n!users")]),
    ("a directive must start the line", "!user\n x !assistant\n", [("user", " x !assistant")]),
    ("!note is not sent", "!user\na\n!note secret\n!note\nb\n", [("user", "a\nb")]),
    ("!begin discards the text so far", "old\n!user\nold2\n!begin\n!user\nnew\n", [("user", "new")]),
    ("text after !begin is system again", "!user\nold\n!begin\nnew\n", [("system", "new")]),
    ("!end stops reading", "!user\na\n!end\n!user\nb\n", [("user", "a")]),
    ("!end with an argument", "!user\na\n!end here\nb\n", [("user", "a")]),
    ("!exclude drops tagged blocks", "!exclude think\n!user\na\n<think>\nhidden\n</think>\nb\n",
     [("user", "a\nb")]),
    ("!exclude drops every block", "!exclude t\n!user\n<t>\n1\n</t>\na\n<t>\n2\n</t>\nb\n", [("user", "a\nb")]),
    ("!exclude tags must be whole lines", "!exclude t\n!user\n <t>\nx\n<t> \n<tt>\n", [("user", " <t>\nx\n<t> \n<tt>")]),
    ("!exclude skips directives too", "!exclude t\n!user\na\n<t>\n!assistant\n!end\n</t>\nb\n", [("user", "a\nb")]),
    ("an unclosed block runs to the end", "!exclude t\n!user\na\n<t>\nb\n", [("user", "a")]),
    ("tags before !exclude stay", "<t>\nx\n</t>\n!exclude t\n", [("system", "<t>\nx\n</t>")]),
    ("a stray closing tag is text", "!exclude t\n!user\n</t>\na\n", [("user", "</t>\na")]),
    ("!error sections are not sent", "!user\nq\n\n!assistant\n\n\n\n!error\n\nHTTP 500: boom\n\n!user\nq2\n",
     [("user", "q"), ("user", "q2")]),
    ("text before an !error section stays", "!user\nq\n\n!assistant\n\npartial\n\n!error\n\ncut off\n",
     [("user", "q"), ("assistant", "partial")]),
]


@pytest.mark.parametrize("text, expected", [m[1:] for m in MESSAGES], ids=[m[0] for m in MESSAGES])
def test_messages(text, expected):
    assert messages(parse(text)) == expected


MODES = [
    # (name, buffer, mode, infill prefix, infill suffix, FIM template)
    ("chat by default", "hi\n", "chat", "", None, None),
    ("!completion anywhere", "a\n!completion\nb\n", "completion", "", None, None),
    ("bare !infill", "pre\n!infill\nsuf\n", "infill", "pre", "suf", None),
    ("!infill with a trailing space is bare", "pre\n!infill \nsuf\n", "infill", "pre", "suf", None),
    ("nothing after the hole", "pre\n!infill\n", "infill", "pre", None, None),
    ("only blank lines after the hole", "pre\n!infill\n\n\r\n", "infill", "pre", None, None),
    ("the hole at the top", "!infill\nsuf\n", "infill", "", "suf", None),
    ("prefix and suffix are trimmed of CR and LF", "\n pre \n\n!infill\n\r\n suf\n\n", "infill", " pre ", " suf", None),
    ("prefix is the message before the hole", "!user\nA\n!user\nB\n!infill\nC\n!user\nD\n", "infill", "B", "C", None),
    ("!infill TEMPLATE only stores it", "!infill <A>{prefix}<B>{suffix}\nhi\n", "chat", "", None,
     "<A>{prefix}<B>{suffix}"),
    ("the template keeps its leading spaces", "!infill  <PRE> {prefix} <SUF>{suffix} <MID>\n", "chat", "", None,
     " <PRE> {prefix} <SUF>{suffix} <MID>"),
    ("a template before the hole is used", "!infill T{prefix}|{suffix}\npre\n!infill\nsuf\n", "infill", "pre", "suf",
     "T{prefix}|{suffix}"),
    ("the last template wins", "!infill A{prefix}\n!infill B{prefix}\npre\n!infill\n", "infill", "pre", None,
     "B{prefix}"),
    # The original picks /infill at the hole when no template is stored yet.
    ("a template stored after the hole is not used", "pre\n!infill\nsuf\n!infill T{prefix}\n", "infill", "pre",
     "suf", None),
    ("a FIM profile below the hole is not used", "pre\n!infill\nsuf\n!profile fim:qwen\n", "infill", "pre", "suf",
     None),
    ("a FIM profile above the hole is", "!profile fim:qwen\npre\n!infill\nsuf\n", "infill", "pre", "suf",
     "qwen.jinja"),
]


@pytest.mark.parametrize("text, mode, prefix, suffix, template", [m[1:] for m in MODES], ids=[m[0] for m in MODES])
def test_modes(text, mode, prefix, suffix, template):
    parsed = parse(text)
    assert (parsed.mode, parsed.infill_prefix, parsed.infill_suffix, parsed.fim_template) == (
        mode, prefix, suffix, template)


def test_completion_keeps_the_whole_text_as_one_message():
    assert messages(parse("a\n!completion\n\nb\n")) == [("system", "a\n\nb")]


APIS = [
    # (name, buffer, env, API URL as stored)
    ("the default profile's", "hi\n", {}, "http://localhost:8080/"),
    ("!api", "!api http://h:1/v1\n", {}, "http://h:1/v1"),
    ("!api is trimmed", "!api   http://h/  \n", {}, "http://h/"),
    ("the last !api wins", "!api http://a/\n!api http://b/\n", {}, "http://b/"),
    ("a quoted URL is kept quoted", '!api "http://h/x"\n', {}, '"http://h/x"'),
    ("placeholders are kept until the request", "!api http://h/{model}/v1\n", {}, "http://h/{model}/v1"),
    ("a profile does not replace the buffer's", "!api http://mine/\n!profile llama.cpp\n", {}, "http://mine/"),
    ("the buffer replaces a profile's", "!profile llama.cpp\n!api http://mine/\n", {}, "http://mine/"),
    ("a profile does not replace an earlier profile's", "!profile openai\n!profile llama.cpp\n", {},
     "https://api.openai.com/v1"),
    ("a profile without !api leaves none", "!profile gemma-3\n", {}, INVALID_URL),
    ("$ILLUME_PROFILE", "hi\n", {"ILLUME_PROFILE": "openai"}, "https://api.openai.com/v1"),
    ("the claude profile's literal URL", "!profile claude\n", {}, '"https://api.anthropic.com/v1/messages"'),
]


@pytest.mark.parametrize("text, env, api", [a[1:] for a in APIS], ids=[a[0] for a in APIS])
def test_api(text, env, api):
    assert parse(text, env).api == api


def test_default_profile_argument_beats_the_environment():
    assert parse("hi\n", {"ILLUME_PROFILE": "openai"}, "claude").api == '"https://api.anthropic.com/v1/messages"'


KEYS = [
    # (name, buffer, body as Go encodes it, before "stream" and the mode's keys)
    ("the defaults", "hi\n", "{" + LLAMA + "," + STOP + "}"),
    ("JSON number", "!:temperature 0.5\n", "{" + LLAMA + "," + STOP + ',"temperature":0.5}'),
    ("numbers are float64", "!:n 1e3\n!:seed 12345678901234567890\n",
     "{" + LLAMA + ',"n":1000,"seed":12345678901234567000,' + STOP + "}"),
    ("JSON string", '!:model "x y"\n', "{" + LLAMA + ',"model":"x y",' + STOP + "}"),
    ("not JSON: the text itself", "!:model llama 3\n", "{" + LLAMA + ',"model":"llama 3",' + STOP + "}"),
    ("not JSON: out of float64 range", "!:x 1e400\n", "{" + LLAMA + "," + STOP + ',"x":"1e400"}'),
    ("value is trimmed", "!:model    spaced value \t \n", "{" + LLAMA + ',"model":"spaced value",' + STOP + "}"),
    ("JSON object, keys sorted", '!:thinking {"type": "enabled", "budget_tokens": 10}\n',
     "{" + LLAMA + "," + STOP + ',"thinking":{"budget_tokens":10,"type":"enabled"}}'),
    ("JSON list", '!:stop ["a", "b"]\n', "{" + LLAMA + ',"stop":["a","b"]}'),
    ("true, false, null", "!:a true\n!:b false\n!:c null\n", '{"a":true,"b":false,"c":null,' + LLAMA + "," + STOP + "}"),
    ("no value deletes", "!:max_tokens\n", '{"cache_prompt":true,' + STOP + "}"),
    ("spaces only delete", "!:max_tokens   \n", '{"cache_prompt":true,' + STOP + "}"),
    ("deleting a missing key", "!:nothing\n", "{" + LLAMA + "," + STOP + "}"),
    ("the last value wins", "!:a 1\n!:a 2\n", '{"a":2,' + LLAMA + "," + STOP + "}"),
    ("keys are case-sensitive", "!:Model a\n!:model b\n", '{"Model":"a",' + LLAMA + ',"model":"b",' + STOP + "}"),
    ("a profile does not override the buffer", '!:stop ["x"]\n!profile llama.cpp\n', "{" + LLAMA + ',"stop":["x"]}'),
    ("nor a deletion in the buffer", "!:cache_prompt\n!profile llama.cpp\n", '{"max_tokens":2000,' + STOP + "}"),
    ("the buffer overrides a profile above it", "!profile llama.cpp\n!:cache_prompt false\n",
     '{"cache_prompt":false,"max_tokens":2000,' + STOP + "}"),
    ("the buffer deletes a profile's key", "!profile llama.cpp\n!:stop\n", "{" + LLAMA + "}"),
    ("a later profile overrides an earlier one", "!profile qwen3\n!profile gemma-3\n",
     '{"max_tokens":2000,"min_p":0.01,"repeat_penalty":1,"temperature":1,"top_k":64,"top_p":0.95}'),
    ("a loaded profile replaces the default", "!profile gemma-3\n",
     '{"max_tokens":2000,"min_p":0.01,"repeat_penalty":1,"temperature":1,"top_k":64,"top_p":0.95}'),
    ("openai deletes max_tokens", "!profile openai\n",
     '{"max_completion_tokens":10000,"model":"gpt-5-mini"}'),
]


@pytest.mark.parametrize("text, body", [k[1:] for k in KEYS], ids=[k[0] for k in KEYS])
def test_keys(text, body):
    assert jsonwire.encode(parse(text).body) == body


HEADERS = [
    # (name, buffer, env, headers in first-set order)
    ("the default", "hi\n", {}, [("content-type", "application/json")]),
    ("set", "!>x-a 1\n", {}, [("content-type", "application/json"), ("x-a", "1")]),
    ("value is trimmed", "!>x-a   v w  \n", {}, [("content-type", "application/json"), ("x-a", "v w")]),
    ("$VAR", "!>authorization Bearer $TOKEN\n", {"TOKEN": "abc"},
     [("content-type", "application/json"), ("authorization", "Bearer abc")]),
    ("${VAR}", "!>x-a ${TOKEN}x\n", {"TOKEN": "abc"}, [("content-type", "application/json"), ("x-a", "abcx")]),
    ("unset is empty", "!>x-a a$NOPE b\n", {}, [("content-type", "application/json"), ("x-a", "a b")]),
    ("no value deletes", "!>content-type\n", {}, []),
    ("names are case-insensitive", "!>X-A 1\n!>x-a 2\n", {}, [("content-type", "application/json"), ("x-a", "2")]),
    ("deleting ignores case", "!>x-a 1\n!>X-A\n", {}, [("content-type", "application/json")]),
    ("replacing content-type", "!>Content-Type text/plain\n", {}, [("Content-Type", "text/plain")]),
    ("a profile's headers", "!profile huggingface.co\n", {"HF_TOKEN": "tok"},
     [("content-type", "application/json"), ("authorization", "Bearer tok"), ("x-use-cache", "false")]),
    ("a profile sets headers over the buffer's", "!>x-use-cache true\n!profile huggingface.co\n", {},
     [("content-type", "application/json"), ("x-use-cache", "false"), ("authorization", "Bearer ")]),
    ("claude's headers", "!profile claude\n", {"ANTHROPIC_API_KEY": "k"},
     [("content-type", "application/json"), ("anthropic-version", "2023-06-01"), ("x-api-key", "k")]),
]


@pytest.mark.parametrize("text, env, headers", [h[1:] for h in HEADERS], ids=[h[0] for h in HEADERS])
def test_headers(text, env, headers):
    assert parse(text, env).headers.items() == headers


PREPENDS = [
    # (buffer line, the string printed before the reply)
    ("!prepend <think>", "<think>"),
    ('!prepend "<think>\\n"', "<think>\n"),
    ('!prepend "\\u00e9\\t"', "é\t"),
    ('!prepend ""', ""),
    ("!prepend  two spaces ", " two spaces "),  # as written, not trimmed
    ('!prepend "unterminated', '"unterminated'),
    ('!prepend "a" "b"', '"a" "b"'),
    ("!prepend 1", "1"),
    ('!prepend "', '"'),
    ("!prepend", ""),
]


@pytest.mark.parametrize("line, prepend", PREPENDS)
def test_prepend(line, prepend):
    assert parse(line + "\n").prepend == prepend


FLAGS = [
    # (buffer, debug, stats, gpt_oss)
    ("hi\n", False, False, False),
    ("!debug\n", True, False, False),
    ("!stats\n", False, True, False),
    ("!gpt-oss\n", False, False, True),
    ("!debug x\n!stats y\n!gpt-oss z\n", True, True, True),
    ("!profile gpt-oss\n", False, False, True),
    ("!!debug\n", False, False, False),
]


@pytest.mark.parametrize("text, debug, stats, gpt_oss", FLAGS)
def test_flags(text, debug, stats, gpt_oss):
    parsed = parse(text)
    assert (parsed.debug, parsed.stats, parsed.gpt_oss) == (debug, stats, gpt_oss)


def write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_profile_text_goes_where_it_is_loaded(in_tmp):
    assert messages(parse("!profile qwen3\n!user\nhi\n")) == [("system", "/no_think"), ("user", "hi")]
    assert messages(parse("!user\nhi\n!profile qwen3\n")) == [("user", "hi\n/no_think")]


DEFAULT_TEXT = [
    # (buffer, messages) with a default profile that holds a system prompt
    ("!user\nhi\n", [("system", "Be terse."), ("user", "hi")]),
    ("sys\n!user\nhi\n", [("system", "Be terse.\n\nsys"), ("user", "hi")]),
    ("", [("system", "Be terse.")]),
    ("!user\nhi\n!assistant\n", [("system", "Be terse."), ("user", "hi")]),
]


@pytest.mark.parametrize("text, expected", DEFAULT_TEXT)
def test_default_profile_text_is_a_system_prompt_on_top(in_tmp, text, expected):
    write(in_tmp / "terse.profile", "!api http://h/\nBe terse.\n!:temperature 0\n")
    parsed = parse(text, {"ILLUME_PROFILE": "terse.profile"})
    assert (messages(parsed), parsed.api, parsed.body["temperature"]) == (expected, "http://h/", 0)


def test_default_profile_text_is_not_a_prompt_in_completion_mode(in_tmp):
    write(in_tmp / "terse.profile", "Be terse.\n")
    assert messages(parse("!completion\nonce upon\n", {"ILLUME_PROFILE": "terse.profile"})) == [
        ("system", "once upon")]


def test_default_profile_text_is_not_code_after_the_hole(in_tmp):
    # The original appends it to the last text, here the suffix.
    write(in_tmp / "terse.profile", "Be terse.\n")
    parsed = parse("abc\n!infill\ndef\n", {"ILLUME_PROFILE": "terse.profile"})
    assert (parsed.infill_prefix, parsed.infill_suffix) == ("abc", "def")


def test_default_profile_ignores_the_buffers_exclude_and_error_state(in_tmp):
    write(in_tmp / "p.profile", "<t>\nkept\n</t>\n")
    parsed = parse("!exclude t\n!user\nq\n!assistant\n!error\n\nboom\n<t>\n", {"ILLUME_PROFILE": "p.profile"})
    assert messages(parsed) == [("system", "<t>\nkept\n</t>"), ("user", "q")]


def test_builtin_beats_a_file_of_the_same_name(in_tmp):
    write(in_tmp / "llama.cpp", "!api http://file/\n")
    assert parse("!profile llama.cpp\n").api == "http://localhost:8080/"


def test_the_user_folder_beats_a_file_in_the_current_directory(in_tmp):
    # A deliberate difference (the profile lookup): a cloned repository's file `mine` must not stand in for the
    # user's own mine.profile. The original read ./mine first.
    write(in_tmp / "mine", "!api http://path/\n")
    write(in_tmp / "cfg/illume/profiles/mine.profile", "!api http://user/\n")
    env = {"XDG_CONFIG_HOME": str(in_tmp / "cfg")}
    assert parse("!profile mine\n", env).api == "http://user/"
    assert parse("!profile ./mine\n", env).api == "http://path/"  # a path says where to look


def test_a_bare_name_is_still_a_file_when_the_user_folder_lacks_it(in_tmp):
    write(in_tmp / "mine", "!api http://path/\n")
    assert parse("!profile mine\n", {"XDG_CONFIG_HOME": str(in_tmp / "cfg")}).api == "http://path/"


PROFILE_PATHS = [
    # (name in !profile, file written under the test folder, env: XDG_CONFIG_HOME/HOME below it)
    ("mine", "cfg/illume/profiles/mine.profile", {"XDG_CONFIG_HOME": "cfg"}),
    ("mine", "home/.config/illume/profiles/mine.profile", {"HOME": "home"}),
    ("mine.profile", "mine.profile", {}),
    ("./mine.profile", "mine.profile", {}),
    ("sub/mine.profile", "sub/mine.profile", {}),
    ("  mine  ", "cfg/illume/profiles/mine.profile", {"XDG_CONFIG_HOME": "cfg"}),
]


@pytest.mark.parametrize("name, path, env", PROFILE_PATHS)
def test_profile_resolution(in_tmp, name, path, env):
    write(in_tmp / path, "!api http://found/\n")
    env = {k: str(in_tmp / v) for k, v in env.items()}
    assert parse(f"!profile {name}\n", env).api == "http://found/"


def test_user_profile_loaded_by_default(in_tmp):
    write(in_tmp / "cfg/illume/profiles/mine.profile", "!api http://user/\n")
    assert parse("hi\n", {"XDG_CONFIG_HOME": str(in_tmp / "cfg"), "ILLUME_PROFILE": "mine"}).api == "http://user/"


def test_same_profile_twice_is_not_a_loop(in_tmp):
    assert jsonwire.encode(parse("!profile gemma-3\n!profile gemma-3\n").body) == (
        '{"max_tokens":2000,"min_p":0.01,"repeat_penalty":1,"temperature":1,"top_k":64,"top_p":0.95}')


def test_nested_profiles(in_tmp):
    # claude-extended loads claude, then overrides its max_tokens.
    parsed = parse("!profile claude-extended\n!user\nhi\n")
    assert (parsed.api, jsonwire.encode(parsed.body)) == (
        '"https://api.anthropic.com/v1/messages"',
        '{"max_tokens":20000,"model":"claude-sonnet-4-5","thinking":{"budget_tokens":10000,"type":"enabled"}}')


ERRORS = [
    # (name, files to write, buffer, env, message)
    ("missing context file", {}, "!user\nhi\n!context notes.md\n", {},
     "<stdin>:3: open notes.md: no such file or directory"),
    ("context without argument", {}, "!context\n", {}, "<stdin>:1: !context: wrong number of fields"),
    ("context of a directory without a match", {"proj/a.py": "x"}, "\n!context proj .zz\n", {},
     "<stdin>:2: !context: no file under proj ends with .zz"),
    ("missing reddit file", {}, "!reddit r.json\n", {}, "<stdin>:1: open r.json: no such file or directory"),
    ("missing reddit! file", {}, "!reddit! r.json\n", {}, "<stdin>:1: open r.json: no such file or directory"),
    ("github without argument", {}, "!github\n", {}, "<stdin>:1: !github requires at least one argument"),
    ("missing github comments", {"i.json": "{}"}, "!github i.json c.json\n", {},
     "<stdin>:1: open c.json: no such file or directory"),
    ("unknown profile", {}, "a\nb\n!profile nope\n", {}, "<stdin>:3: open nope: no such file or directory"),
    ("a path is not searched in the user folder", {"cfg/illume/profiles/sub/x.profile": ""}, "!profile sub/x\n",
     {"XDG_CONFIG_HOME": "cfg"}, "<stdin>:1: open sub/x: no such file or directory"),
    ("unknown default profile", {}, "hi\n", {"ILLUME_PROFILE": "nope"}, "open nope: no such file or directory"),
    ("an error inside a profile", {"p.profile": "!api http://h/\n!context gone.txt\n"}, "x\n!profile p.profile\n",
     {}, "<stdin>:2: p.profile:2: open gone.txt: no such file or directory"),
    ("an error inside the default profile", {"p.profile": "\n!context gone.txt\n"}, "x\n",
     {"ILLUME_PROFILE": "p.profile"}, "p.profile:2: open gone.txt: no such file or directory"),
    ("a profile loading itself", {"cfg/illume/profiles/a.profile": "!profile a\n"}, "!profile a\n",
     {"XDG_CONFIG_HOME": "cfg"}, "<stdin>:1: a:1: profile loop: a -> a"),
    ("a profile loop", {"cfg/illume/profiles/a.profile": "!profile b\n", "cfg/illume/profiles/b.profile":
                        "x\n!profile a\n"}, "!profile a\n", {"XDG_CONFIG_HOME": "cfg"},
     "<stdin>:1: a:1: b:2: profile loop: a -> b -> a"),
    ("!infill twice", {}, "a\n!infill\nb\n!infill\n", {},
     "<stdin>:4: !infill: the buffer is already split at line 2; use one !infill"),
    ("!completion after !infill", {}, "a\n!infill\nb\n!completion\n", {},
     "<stdin>:4: !completion: the buffer is already split for infill at line 2"),
    ("!infill after !completion", {}, "!completion\na\n!infill\n", {},
     "<stdin>:3: !infill: cannot fill in the middle in completion mode (remove !completion)"),
    ("a header value with a line break", {}, "\n!>x-a $NL\n", {"NL": "a\nb"},
     "<stdin>:2: !>x-a: a header value cannot hold a line break"),
]


@pytest.mark.parametrize("files, text, env, message", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors(in_tmp, files, text, env, message):
    for path, content in files.items():
        write(in_tmp / path, content)
    env = {k: (str(in_tmp / v) if k == "XDG_CONFIG_HOME" else v) for k, v in env.items()}
    with pytest.raises(IllumeError) as caught:
        parse(text, env)
    assert str(caught.value) == message


def test_lines_after_end_are_not_checked():
    assert messages(parse("!user\nhi\n!end\n!context missing\n!profile nope\n")) == [("user", "hi")]


def test_excluded_directives_are_not_carried_out():
    parsed = parse("!exclude x\n<x>\n!context missing\n!api http://no/\n</x>\nhi\n")
    assert (parsed.api, messages(parsed)) == ("http://localhost:8080/", [("system", "hi")])
