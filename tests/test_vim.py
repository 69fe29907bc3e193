"""The Vim plugin (vim/) driven in real, headless Vim and Neovim.

Each test writes a buffer file and a Vim script, runs the editor on them
(`vim -es`, `nvim --headless`), lets the script wait inside the editor until
the reply is done, write the buffer and quit, and then compares the file
with the exact expected text. Replies come from a scripted SSE server
(tests/scripted.py) that streams them slowly, in pieces that cut lines in
the middle, or fails on demand; one test talks to the real llama-server.

Vim and Neovim come from test.sh (Debian packages `vim`, `neovim`); one
missing is a failure naming it when ILLUME_REQUIRE_ALL=1 (tests/conftest.py).
"""

import json
import re
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import ask_llama_server, missing, require_program, run_illume
from scripted import Reply, chat_events, infill_events

pytestmark = pytest.mark.editor

REPO = Path(__file__).resolve().parent.parent
PLUGIN = REPO / "vim"
ILLUME = [sys.executable, "-m", "illume"]
EDITOR_TIMEOUT = 240  # seconds for one editor session, however loaded the machine
WAIT = 120  # seconds the script inside the editor waits for a reply


@pytest.fixture(scope="session")
def neovim():
    """Return the path of nvim 0.7+."""
    path = require_program("nvim", "apt-get install neovim")
    version = subprocess.run([path, "--headless", "-u", "NONE", "--clean", "+echo has('nvim-0.7')", "+q"],
                             capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if "1" not in version.stdout + version.stderr:
        missing(f"Neovim 0.7 or later ({path} is older)", "apt-get install neovim")
    return path


def vim_path() -> str:
    path = require_program("vim", "apt-get install vim")
    features = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60).stdout
    if "+job" not in features or "+timers" not in features:
        missing(f"Vim with +job and +timers ({path} lacks them)", "apt-get install vim")
    return path


def vim_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def vim_list(items: list[str]) -> str:
    return "[" + ", ".join(vim_string(item) for item in items) + "]"


class Editor:
    """One kind of editor (vim or nvim) that runs scripts on buffer files in TMP."""

    def __init__(self, name: str, path: str, tmp: Path):
        self.name, self.path, self.tmp = name, path, tmp

    def run(self, buffer: str, commands: str, before: str = "", command: list[str] | None = None) -> str:
        """Run COMMANDS on a file holding BUFFER (BEFORE runs ahead of loading the plugin); return the file after."""
        file = self.tmp / "buffer.txt"
        file.write_text(buffer)
        errors, messages = self.tmp / "errors.txt", self.tmp / "messages.txt"
        script = self.tmp / "test.vim"
        script.write_text(SCRIPT.format(
            plugin=vim_string(str(PLUGIN)), command=vim_list(command or ILLUME), before=before,
            file=vim_string(str(file)), commands=commands, wait=WAIT,
            errors=vim_string(str(errors)), messages=vim_string(str(messages))))
        if self.name == "vim":
            argv = [self.path, "-Nu", "NONE", "-i", "NONE", "-n", "-es", "-S", str(script)]
        else:
            argv = [self.path, "--headless", "-u", "NONE", "-i", "NONE", "-n", "-S", str(script)]
        env = {**os.environ, "HOME": str(self.tmp), "XDG_CONFIG_HOME": str(self.tmp / "config"),
               "XDG_DATA_HOME": str(self.tmp / "data"), "XDG_STATE_HOME": str(self.tmp / "state"),
               "XDG_CACHE_HOME": str(self.tmp / "cache"), "NVIM_LOG_FILE": str(self.tmp / "nvim.log")}
        env.pop("ILLUME_PROFILE", None)
        result = subprocess.run(argv, cwd=self.tmp, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, timeout=EDITOR_TIMEOUT)
        log = messages.read_text() if messages.exists() else ""
        if errors.exists():
            pytest.fail(f"{self.name} script failed: {errors.read_text()}\nmessages:\n{log}\n"
                        f"stderr:\n{result.stderr[-2000:]}")
        assert messages.exists(), f"{self.name} did not finish the script: {result.stdout[-2000:]}{result.stderr[-2000:]}"
        return file.read_text()


# The script around each test's commands. Wait() polls inside the editor,
# so job callbacks run while it sleeps.
SCRIPT = """\
set nocompatible
if !has('nvim')
  set encoding=utf-8
endif
set hidden noswapfile nomore
let &runtimepath = {plugin} . ',' . &runtimepath
let g:illume_command = {command}
{before}
runtime plugin/illume.vim

function! WaitUntil(condition) abort
  let l:start = reltime()
  while !eval(a:condition)
    if reltimefloat(reltime(l:start)) > {wait}
      throw 'timed out waiting until ' . a:condition . ': ' . string(getline(1, '$'))
    endif
    sleep 20m
  endwhile
endfunction

function! Wait(...) abort
  call WaitUntil('!illume#running(' . (a:0 ? a:1 : bufnr('%')) . ')')
endfunction

" Waits for the reply in buffer BUF while ending the undo block there again
" and again (:help undo-break), as a user's commands between pieces do.
function! WaitBreakingUndo(buf) abort
  call WaitUntil('BreakUndo(' . a:buf . ') && !illume#running(' . a:buf . ')')
endfunction

function! BreakUndo(buf) abort
  if bufwinid(a:buf) != -1
    call win_execute(bufwinid(a:buf), 'let &undolevels = &undolevels')
  endif
  return 1
endfunction

try
  execute 'edit' fnameescape({file})
{commands}
catch
  call writefile([v:exception, v:throwpoint], {errors})
endtry
call writefile(split(execute('messages'), "\\n"), {messages})
qall!
"""


@pytest.fixture(params=["vim", "nvim"])
def editor(request):
    path = vim_path() if request.param == "vim" else request.getfixturevalue("neovim")
    # Not tmp_path: a concurrent pytest run prunes old pytest-of-USER folders under a running test.
    with tempfile.TemporaryDirectory(prefix="illume-vim-") as tmp:
        yield Editor(request.param, path, Path(tmp))


def chat_buffer(url: str, text: str = "Say hello.") -> str:
    return f"!api {url}\n!user\n{text}\n"


# Pieces that cut lines and words anywhere, as a real stream does.
PIECES = ["Hel", "lo, wor", "ld!\nSecond li", "ne.\n", "\nThird", " line. é", "\n"]
REPLY = "".join(PIECES)


def test_chat_streams_the_reply_at_the_end_as_one_undo_step(editor, server):
    server.respond(Reply(chat_events(PIECES), delay=0.2))
    buffer = chat_buffer(server.url)
    undone = editor.tmp / "undone.txt"
    after = editor.run(buffer, f"""
  Illume
  call WaitBreakingUndo(bufnr('%'))
  write
  undo
  write {undone}
""")
    assert after == buffer[:-1] + "\n\n!assistant\n\n" + REPLY + "\n"
    assert undone.read_text() == buffer
    request = server.requests[-1]
    assert request.path == "/chat/completions"
    assert request.json()["messages"] == [{"role": "user", "content": "Say hello."}]


@pytest.mark.parametrize("away", ["enew", "new"], ids=["hidden", "other-window"])
def test_reply_lands_when_the_buffer_is_not_current(editor, server, away):
    server.respond(Reply(chat_events(PIECES), delay=0.2))
    buffer = chat_buffer(server.url)
    undone = editor.tmp / "undone.txt"
    after = editor.run(buffer, f"""
  let g:buffer = bufnr('%')
  Illume
  {away}
  call setline(1, 'another buffer')
  call WaitBreakingUndo(g:buffer)
  execute 'buffer' g:buffer
  write
  undo
  write {undone}
""")
    assert after == buffer[:-1] + "\n\n!assistant\n\n" + REPLY + "\n"
    assert undone.read_text() == buffer


def test_edits_above_the_reply_while_it_streams_stay(editor, server):
    server.respond(Reply(chat_events(PIECES), delay=0.3))
    buffer = chat_buffer(server.url)
    after = editor.run(buffer, """
  Illume
  call WaitUntil('getline("$") =~# "Hello"')
  call append(1, ['!note added while streaming'])
  call Wait()
  write
""")
    lines = buffer.splitlines()
    expected = "\n".join([lines[0], "!note added while streaming", *lines[1:]]) + "\n"
    assert after == expected[:-1] + "\n\n!assistant\n\n" + REPLY + "\n"


@pytest.mark.parametrize("cursor, buffer, expected", [
    # A blank cursor line is the hole: the middle replaces it.
    (3, "def add(a, b):\n    \nprint(add(1, 2))\n",
     "def add(a, b):\n    return a + b\nprint(add(1, 2))\n"),
    # Any other line ends the prefix: the middle goes below it.
    (2, "def add(a, b):\nprint(add(1, 2))\n",
     "def add(a, b):\n    return a + b\nprint(add(1, 2))\n"),
], ids=["blank-line", "below-line"])
def test_infill_streams_the_middle_at_the_cursor_line(editor, server, cursor, buffer, expected):
    server.respond(Reply(infill_events(["    re", "turn a", " + b\n"]), delay=0.2), path="/infill")
    head = f"!api {server.url}\n"
    after = editor.run(head + buffer, f"""
  call cursor({cursor}, 1)
  IllumeInfill
  call Wait()
  write
""")
    assert after == head + expected
    request = server.requests[-1]
    assert request.path == "/infill"
    assert (request.json()["input_prefix"], request.json()["input_suffix"]) == ("def add(a, b):\n", "\nprint(add(1, 2))")


def test_stop_keeps_what_arrived(editor, server):
    server.respond(Reply(chat_events(["Once upon", " a ti", "me"], done=False), delay=0.1, hold=600))
    buffer = chat_buffer(server.url)
    after = editor.run(buffer, """
  Illume
  call WaitUntil('getline("$") =~# "a time"')
  IllumeStop
  call Wait()
  write
""")
    assert after == buffer[:-1] + "\n\n!assistant\n\nOnce upon a time\n\n!note interrupted\n" + "\n"


def test_a_second_request_stops_the_first(editor, server):
    server.respond(Reply(chat_events(["Once upon", " a time"], done=False), hold=600), path="/slow/chat/completions")
    server.respond(Reply(chat_events(["The end."]), delay=0.1), path="/fast/chat/completions")
    buffer = f"!api {server.url}slow/\n!user\nTell a story.\n"
    after = editor.run(buffer, """
  Illume
  call WaitUntil('getline("$") =~# "a time"')
  1s/slow/fast/
  Illume
  call Wait()
  write
""")
    first = f"!api {server.url}fast/\n!user\nTell a story.\n\n!assistant\n\nOnce upon a time\n\n!note interrupted\n"
    assert after == first + "\n\n!assistant\n\nThe end." + "\n"
    assert server.requests[-1].path == "/fast/chat/completions"
    assert server.requests[-1].json()["messages"][-1] == {"role": "assistant", "content": "Once upon a time"}


def test_http_failure_lands_as_an_error_section(editor, server):
    server.respond(Reply(status=500, body="model exploded"))
    buffer = chat_buffer(server.url)
    after = editor.run(buffer, """
  Illume
  call Wait()
  write
""")
    assert after == buffer[:-1] + "\n\n!error\n\nHTTP 500: model exploded\n" + "\n"


def test_a_command_that_dies_silently_still_leaves_an_error_section(editor):
    crash = [sys.executable, "-c", "import sys; sys.stdin.read(); sys.stderr.write('boom\\n'); sys.exit(3)"]
    buffer = "!user\nHi\n"
    after = editor.run(buffer, """
  Illume
  call Wait()
  write
""", command=crash)
    assert after == buffer[:-1] + "\n\n!error\n\nillume exited with status 3: boom\n" + "\n"


def test_options_build_the_command_line(editor):
    echo = [sys.executable, "-c",
            "import json, sys; sys.stdin.read(); print('\\n\\n!assistant\\n\\n' + json.dumps(sys.argv[1:]), end='')"]
    buffer = "!user\nHi\n"
    after = editor.run(buffer, """
  let g:illume_profile = 'fim:qwen'
  let g:illume_args = ['--timeout', '5']
  Illume
  call Wait()
  write
""", command=echo)
    assert after == buffer[:-1] + '\n\n!assistant\n\n["--profile", "fim:qwen", "--timeout", "5"]\n'


def test_a_large_buffer_goes_whole_through_stdin(editor):
    count = [sys.executable, "-c",
             "import sys; data = sys.stdin.buffer.read();"
             " print('\\n\\n!assistant\\n\\n%d %d' % (len(data), data.count(b'\\n')), end='')"]
    buffer = "!user\n" + "".join(f"line {n:06} of a long buffer, long enough to fill pipes\n" for n in range(40000))
    after = editor.run(buffer, """
  Illume
  call Wait()
  write
""", command=count)
    assert after == buffer[:-1] + f"\n\n!assistant\n\n{len(buffer.encode())} {buffer.count(chr(10))}\n"


@pytest.mark.parametrize("buffer, expected", [
    ("!user\nHi\n\n!assistant\n\nHello.\n", "!user\nHi\n\n!assistant\n\nHello.\n\n!user\n\n"),
    ("!user\nHi\n\n", "!user\nHi\n\n!user\n\n"),
    ("", "!user\n\n"),
], ids=["after-text", "after-blank", "empty"])
def test_user_appends_a_user_section_and_moves_there(editor, buffer, expected):
    after = editor.run(buffer, """
  IllumeUser
  if line('.') != line('$')
    throw 'the cursor is on line ' . line('.') . ' of ' . line('$')
  endif
  write
""")
    assert after == expected


def test_default_mappings_only_where_unmapped(editor):
    found = editor.tmp / "maps.json"
    editor.run("", f"""
  call writefile([json_encode([maparg(',a', 'n'), maparg(',f', 'n'), maparg(',s', 'n'), maparg(',u', 'n'),
        \\ maparg('<Plug>(illume-stop)', 'n') =~# 'IllumeStop', exists(':IllumeInfill')])], {vim_string(str(found))})
""", before="let mapleader = ','\nnnoremap ,s :echo 'mine'<CR>")
    assert json.loads(found.read_text()) == [
        "<Plug>(illume)", "<Plug>(illume-infill)", ":echo 'mine'<CR>", "<Plug>(illume-user)", 1, 2]


def test_chat_with_the_real_llama_server(editor, llama_server):
    # The reply lands in the buffer exactly as llama-server itself answers the request, token-limit note included.
    buffer = f"!api {llama_server}\n!:max_tokens 24\n!:temperature 0\n!:seed 42\n!user\nTell me about the sea.\n"
    answer = ask_llama_server(buffer)
    assert answer.text.strip() and answer.limit, answer.whole
    after = editor.run(buffer, """
  Illume
  call Wait()
  write
""")
    assert after == buffer[:-1] + answer.printed("\n\n!assistant\n\n").decode() + "\n"


def test_user_section_below_a_streaming_reply(editor, server):
    server.respond(Reply(chat_events(PIECES), delay=0.3))
    buffer = chat_buffer(server.url)
    after = editor.run(buffer, """
  Illume
  call WaitUntil('getline("$") =~# "Hello"')
  IllumeUser
  call setline('.', 'And now?')
  call Wait()
  write
""")
    assert after == buffer[:-1] + "\n\n!assistant\n\n" + REPLY + "\n\n!user\nAnd now?\n"


ECHO_ARGV = [sys.executable, "-c",
             "import json, sys; sys.stdin.read(); print('\\n\\n!assistant\\n\\n' + json.dumps(sys.argv[1:]), end='')"]


@pytest.mark.parametrize("before, expected", [
    ("", ["--stop-rules", "all", "--file-name", "{file}", "--timeout", "5"]),
    ("let g:illume_stop_rules = 'echo,scope'", ["--stop-rules", "echo,scope", "--file-name", "{file}", "--timeout", "5"]),
    ("let g:illume_stop_rules = ''", ["--file-name", "{file}", "--timeout", "5"]),
    ("enew", ["--stop-rules", "all", "--timeout", "5"]),  # a buffer without a name sends none
    ("set filetype=python", ["--stop-rules", "all", "--file-name", "python", "--timeout", "5"]),  # the user's word
], ids=["default", "chosen", "none", "unnamed", "filetype"])
def test_infill_passes_the_stop_rules_and_the_file_name(editor, before, expected):
    file = str(editor.tmp / "buffer.txt")
    out = editor.tmp / "out.txt"
    editor.run("x = 1\n", f"""
  {before}
  call setline(1, 'x = 1')
  let g:illume_args = ['--timeout', '5']
  IllumeInfill
  call Wait()
  call writefile(getline(1, '$'), {vim_string(str(out))})
""", command=ECHO_ARGV)
    argv = [file if item == "{file}" else item for item in expected]
    assert out.read_text() == "x = 1\n\n\n!assistant\n\n" + json.dumps(argv) + "\n"


@pytest.mark.parametrize("before, expected", [
    ("", "def add(a, b):\n    return a + b\nprint(add(1, 2))\n"),
    ("let g:illume_stop_rules = ''", "def add(a, b):\n    return a + b\nprint(add(1, 2))\nprint('more')\nprint(add(1, 2))\n"),
], ids=["stops-by-default", "rules-off"])
def test_infill_stops_at_the_end_of_the_hole(editor, server, before, expected):
    # The model fills the hole, then repeats the line after it and goes on.
    server.respond(Reply(infill_events(["    return a", " + b\nprint(add", "(1, 2))\nprint('more')\n"]), delay=0.1),
                   path="/infill")
    head = f"!api {server.url}\n"
    after = editor.run(head + "def add(a, b):\n\nprint(add(1, 2))\n", f"""
  {before}
  set filetype=python
  call cursor(3, 1)
  IllumeInfill
  call Wait()
  write
""")
    assert after == head + expected


@pytest.mark.parametrize("before, line", [("", "$"), ("let g:illume_follow = 0", "3")], ids=["follows", "off"])
def test_the_cursor_on_the_last_line_follows_the_reply(editor, server, before, line):
    server.respond(Reply(chat_events(PIECES), delay=0.1))
    buffer = chat_buffer(server.url)
    found = editor.tmp / "cursor.json"
    editor.run(buffer, f"""
  {before}
  call cursor(3, 1)
  split
  call cursor(1, 1)
  wincmd w
  Illume
  call Wait()
  call writefile([json_encode([line('.'), line('$'), line('.', win_getid(1))])], {vim_string(str(found))})
""")
    last = (buffer[:-1] + "\n\n!assistant\n\n" + REPLY).count("\n") + 1
    # The window whose cursor sat elsewhere (line 1) keeps it there.
    assert json.loads(found.read_text()) == [last if line == "$" else 3, last, 1]


def test_illume_done_fires_with_the_result(editor, server):
    server.respond(Reply(chat_events(["Hi."])), path="/ok/chat/completions")
    server.respond(Reply(status=500, body="model exploded"), path="/bad/chat/completions")
    server.respond(Reply(chat_events(["Once upon", " a time"], done=False), hold=600), path="/stalls/chat/completions")
    found = editor.tmp / "done.json"
    editor.run("", f"""
  let g:seen = []
  autocmd User IllumeDone call add(g:seen, [g:illume_done.buffer == bufnr('%'), g:illume_done.result,
        \\ g:illume_done.exit_status, illume#running()])
  for g:path in ['ok', 'bad', 'stalls']
    %delete
    call setline(1, ['!api {server.url}' . g:path . '/', '!user', 'Hi'])
    Illume
    if g:path ==# 'stalls'
      call WaitUntil('getline("$") =~# "a time"')
      IllumeStop
    endif
    call Wait()
  endfor
  call writefile([json_encode(g:seen)], {vim_string(str(found))})
""")
    assert json.loads(found.read_text()) == [[1, "ok", 0, 0], [1, "error", 1, 0], [1, "stopped", 143, 0]]


def test_help_has_a_tag_for_every_command_mapping_and_option(editor):
    plugin = (PLUGIN / "plugin" / "illume.vim").read_text()
    autoload = (PLUGIN / "autoload" / "illume.vim").read_text()
    wanted = {f":{name}" for name in re.findall(r"^command! .*?(Illume\w*) ", plugin, re.M)}
    wanted |= set(re.findall(r"^nnoremap <silent> (<Plug>\(illume[\w-]*\))", plugin, re.M))
    wanted |= {f"{scope}:{name}" for scope, name in re.findall(r"get\(([gb]):, '(illume_\w+)'", plugin + autoload)}
    wanted |= {f"illume-<Leader>{key}" for key in "afsu"} | {"illume#running()", "IllumeDone", "g:illume_done"}
    wanted |= {"b:illume_follow"}  # read with getbufvar()
    assert len(wanted) >= 4 + 4 + 4 + (6 + 4) + 3, sorted(wanted)  # the regexes found them all
    doc = editor.tmp / "doc"
    shutil.copytree(PLUGIN / "doc", doc)
    editor.run("", f"  execute 'helptags' fnameescape({vim_string(str(doc))})")
    tags = {line.split("\t")[0] for line in (doc / "tags").read_text().splitlines()}
    assert wanted <= tags, sorted(wanted - tags)


def test_summarize_streams_a_summary_block_at_the_end(editor, llama_server):
    # The block is what `illume --summarize` prints for the buffer (tests/test_summaries.py checks that against
    # llama-server's own answer), landed at the end as a reply does.
    buffer = f"!api {llama_server}\n!:max_tokens 24\n!:temperature 0\n!:seed 42\n!user\nTell me about the sea.\n" \
             "!assistant\nThe sea is wide and salty.\n"
    piped = run_illume(buffer, "--summarize")
    assert piped.returncode == 0 and re.match(rb"\n\n!summary #[0-9a-f]{8}\n\n\S", piped.stdout), piped.stdout
    after = editor.run(buffer, """
  IllumeSummarize
  call Wait()
  write
""")
    assert after == buffer[:-1] + piped.stdout.decode() + "\n"
