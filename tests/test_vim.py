"""The Vim plugin (vim/) driven in real, headless Vim and Neovim.

Each test runs the editor on a buffer file through the harness
(tests/vim_harness.py), lets the script wait inside the editor until the
reply is done, write the buffer and quit, and then compares the file with
the exact expected text. Replies come from a scripted SSE server
(tests/scripted.py) that streams them slowly, in pieces that cut lines in
the middle, or fails on demand; one test talks to the real llama-server.

Vim and Neovim come from test.sh (Debian packages `vim`, `neovim`); one
missing is a failure naming it when ILLUME_REQUIRE_ALL=1 (tests/conftest.py).
"""

import json
import re
import shutil
import sys

import pytest

from conftest import ask_llama_server, embedded_model, placed_by_filter, run_illume
from scripted import Reply, chat_events, infill_events
from texts import outgrown_story
from vim_harness import PLUGIN, vim_string

pytestmark = pytest.mark.editor


def chat_buffer(url: str, text: str = "Say hello.") -> str:
    return f"!api {url}\n!user\n{text}\n"


# Pieces that cut lines and words anywhere, as a real stream does.
PIECES = ["Hel", "lo, wor", "ld!\nSecond li", "ne.\n", "\nThird", " line. é", "\n"]
REPLY = "".join(PIECES)


def reply_then_undo(editor, buffer: str) -> tuple[str, str]:
    """Return BUFFER after :Illume's reply, and after one undo from there."""
    undone = editor.tmp / "undone.txt"
    after = editor.run(buffer, f"""
  Illume
  call WaitBreakingUndo(bufnr('%'))
  write
  undo
  write {undone}
""")
    return after, undone.read_text()


def test_chat_streams_the_reply_at_the_end_as_one_undo_step(editor, server):
    server.respond(Reply(chat_events(PIECES), delay=0.2))
    buffer = chat_buffer(server.url)
    after, undone = reply_then_undo(editor, buffer)
    assert after == buffer[:-1] + "\n\n!assistant\n\n" + REPLY + "\n"
    assert undone == buffer
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
    # --summaries-file: where `!fit summarize` puts blocks for the plugin to insert (a temporary file of Vim's).
    assert re.fullmatch(re.escape(buffer[:-1] + '\n\n!assistant\n\n["--profile", "fim:qwen", "--summaries-file", "')
                        + r'[^"]+' + re.escape('", "--timeout", "5"]\n'), after), after


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
    autoload = "".join(path.read_text() for path in sorted((PLUGIN / "autoload").rglob("*.vim")))
    wanted = {f":{name}" for name in re.findall(r"^command! .*?(Illume\w*) ", plugin, re.M)}
    wanted |= set(re.findall(r"^nnoremap <silent> (<Plug>\(illume[\w-]*\))", plugin, re.M))
    wanted |= {f"{scope}:{name}" for scope, name in re.findall(r"get\(([gb]):, '(illume_\w+)'", plugin + autoload)}
    wanted |= {f"illume-<Leader>{key}" for key in "afsu"} | {"illume#running()", "IllumeDone", "g:illume_done"}
    wanted |= {"b:illume_follow"}  # read with getbufvar()
    assert len(wanted) >= 9 + 4 + 4 + (8 + 6) + 3, sorted(wanted)  # the regexes found them all
    doc = editor.tmp / "doc"
    shutil.copytree(PLUGIN / "doc", doc)
    editor.run("", f"  execute 'helptags' fnameescape({vim_string(str(doc))})")
    tags = {line.split("\t")[0] for line in (doc / "tags").read_text().splitlines()}
    assert wanted <= tags, sorted(wanted - tags)


@pytest.mark.embedded
def test_fit_summarize_places_summaries_above_and_the_reply_at_the_end(editor):
    # The buffer ends as `illume --filter` prints it (the block inserted before the chapter, the reply appended),
    # the summary and the reply one undo step.
    buffer, _ = outgrown_story(embedded_model())
    sent, reply = placed_by_filter(buffer)
    after, undone = reply_then_undo(editor, buffer)
    assert after == sent[:-1] + reply + "\n"
    assert undone == buffer


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
