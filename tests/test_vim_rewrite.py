"""The Vim plugin's rewrite and review (:IllumeRewrite, :IllumeReview) in real Vim and Neovim.

The editors run the real illume CLI (`illume --rewrite --stream`,
`illume --review`) with a scripted server behind it (tests/scripted.py),
which plays what a small model will not do on demand: a given rewrite, a
given list of findings, a failure. The editor harness is test_vim.py's.
"""

import json

import pytest

from scripted import Reply, chat_events
from vim_harness import vim_string

pytestmark = pytest.mark.editor

OLD = "Title\nhelo wrold.\nkeep me\nthis are fine.\nEnd\n"
NEW_LINES = "Hello world.\nkeep me\nThis is fine.\n"
# The model wraps its answer as models do; illume unwraps it.
PIECES = ["Here is the corrected text:\n\n```\nHel", "lo world.\nkeep", " me\nThis is\nfine.\n", "```\n"]


def profile(editor, url: str) -> str:
    """Return a `let` of g:illume_profile naming a profile file that points at URL."""
    path = editor.tmp / "model.profile"
    path.write_text(f"!api {url}\n")
    return f"let g:illume_profile = {vim_string(str(path))}"


def state(editor, name: str) -> str:
    """Return Vim script that writes the windows' count and diff flags to NAME (JSON) in the test folder."""
    return (f"call writefile([json_encode([winnr('$'), &diff])], {vim_string(str(editor.tmp / name))})")


def read(editor, name: str):
    return json.loads((editor.tmp / name).read_text())


def wait_for_rewrite():
    return "call WaitUntil('!illume#running(bufnr(\"illume-rewrite-\"))')"


def test_rewrite_take_whole_and_undo_in_one_step(editor, server):
    server.respond(Reply(chat_events(PIECES), delay=0.2))
    undone = editor.tmp / "undone.txt"
    after = editor.run(OLD, f"""
  {profile(editor, server.url)}
  2,4IllumeRewrite fix the "grammar" | not a command
  {state(editor, "during.json")}
  call WaitUntil('!illume#running(winbufnr(2))')
  call append(0, ['a line of mine'])
  call BreakUndo(bufnr('%'))
  IllumeTake
  {state(editor, "after.json")}
  write
  call BreakUndo(bufnr('%'))
  undo
  write {undone}
""")
    assert after == "a line of mine\nTitle\nHello world.\nkeep me\nThis is\nfine.\nEnd\n"
    assert undone.read_text() == "a line of mine\n" + OLD
    assert read(editor, "during.json") == [2, 1]  # the scratch buffer beside, in diff mode
    assert read(editor, "after.json") == [1, 0]  # gone, diff mode off
    messages = server.requests[-1].json()["messages"]
    user = messages[-1]["content"]
    assert 'fix the "grammar" | not a command' in user and "helo wrold.\nkeep me\nthis are fine.\n" in user
    assert "Title" not in user and "End" not in user  # only the lines chosen


def test_rewrite_take_hunk_by_hunk_then_drop(editor, server):
    server.respond(Reply(chat_events(["Hello world.\nkeep me\nThis is fine.\n"]), delay=0.1))
    after = editor.run(OLD, f"""
  {profile(editor, server.url)}
  2,4IllumeRewrite fix it
  call WaitUntil('!illume#running(winbufnr(2))')
  call cursor(4, 1)
  diffget
  IllumeDrop
  {state(editor, "after.json")}
  write
""")
    # Only the hunk taken changed: line 2 kept its typos.
    assert after == "Title\nhelo wrold.\nkeep me\nThis is fine.\nEnd\n"
    assert read(editor, "after.json") == [1, 0]


@pytest.mark.parametrize("hunk, expected", [
    ("", "a new first line\nTitle\n" + NEW_LINES + "End\n"),
    # A hunk taken and a line added above: where the old text was is no longer known, so nothing is taken.
    ("diffget", "a new first line\nTitle\nhelo wrold.\nkeep me\nThis is fine.\nEnd\n"),
], ids=["edit-above", "edit-above-and-hunk-taken"])
def test_rewrite_take_after_an_edit_above(editor, server, hunk, expected):
    server.respond(Reply(chat_events(["Hello world.\nkeep me\nThis is fine.\n"]), delay=0.1))
    after = editor.run(OLD, f"""
  {profile(editor, server.url)}
  2,4IllumeRewrite fix it
  call WaitUntil('!illume#running(winbufnr(2))')
  call cursor(4, 1)
  {hunk}
  call append(0, ['a new first line'])
  IllumeTake
  write
""")
    assert after == expected
    if hunk:
        assert "the text around the rewritten lines changed" in (editor.tmp / "messages.txt").read_text()


@pytest.mark.parametrize("reply", [Reply(status=500, body="model exploded"),
                                   Reply(chat_events(["Hello world.\nkeep"], done=False))],
                         ids=["http-500", "cut-off"])
def test_a_failed_rewrite_keeps_the_old_text(editor, server, reply):
    server.respond(reply)
    after = editor.run(OLD, f"""
  {profile(editor, server.url)}
  2,4IllumeRewrite fix it
  call WaitUntil('!illume#running(winbufnr(2))')
  IllumeTake
  {state(editor, "after.json")}
  write
""")
    assert after == OLD
    messages = (editor.tmp / "messages.txt").read_text()
    assert "the rewrite failed, your text is as it was" in messages
    if reply.status == 500:
        assert "model exploded" in messages
        assert read(editor, "after.json") == [1, 0]  # nothing arrived: the view is closed
    else:
        assert "the rewrite did not finish" in messages  # :IllumeTake refused the half
        assert read(editor, "after.json") == [2, 1]


def test_rewrite_without_a_range_takes_the_whole_buffer_and_closing_the_view_drops_it(editor, server):
    server.respond(Reply(chat_events(["TITLE\n", "HELO\n"]), delay=0.1))
    after = editor.run("Title\nhelo\n", f"""
  {profile(editor, server.url)}
  IllumeRewrite upper case
  call WaitUntil('!illume#running(winbufnr(2))')
  wincmd l
  quit
  {state(editor, "after.json")}
  write
""")
    assert after == "Title\nhelo\n"
    assert read(editor, "after.json") == [1, 0]
    assert server.requests[-1].json()["messages"][-1]["content"].count("helo") == 1


# --- :IllumeReview, :IllumeApply ---------------------------------------------------------

DOC = "Their is a problem here, a problem.\nWe was   going home.\nCafé au lait, s'il vous plait.\n"


def suggesting(*items: dict) -> Reply:
    """Return a reply that makes the suggestions ITEMS, one JSON object a line, in pieces."""
    text = "".join(json.dumps(item) + "\n" for item in items)
    return Reply(chat_events([text[i : i + 7] for i in range(0, len(text), 7)]))


SUGGESTIONS = [
    {"quote": "Their", "replacement": "There", "message": "wrong word"},
    {"quote": "a problem", "replacement": "an issue", "message": "plainer"},
    {"quote": "We was going", "replacement": "We were\ngoing", "message": "agreement"},  # white space differs
    {"quote": "plait", "replacement": "plaît", "message": "accent"},  # after a non-ASCII character
    {"quote": "an invented sentence", "replacement": "x", "message": "dropped by illume"},
    {"quote": "lait", "replacement": "|call writefile(['pwned'], 'pwned')", "message": "text, never a command"},
]


def test_review_fills_the_quickfix_list_and_apply_takes_one_at_a_time(editor, server):
    server.respond(suggesting(*SUGGESTIONS))
    found = editor.tmp / "qf.json"
    undone = editor.tmp / "undone.txt"
    after = editor.run(DOC, f"""
  {profile(editor, server.url)}
  IllumeReview be "plain" | no command
  call Wait()
  call writefile([json_encode(map(getqflist(), '[v:val.lnum, v:val.col, v:val.text]')),
        \\ json_encode([getqflist({{'title': 0}}).title, winnr('$')])], {vim_string(str(found))})
  cfirst
  IllumeApply
  IllumeApply
  call BreakUndo(bufnr('%'))
  cnext
  IllumeApply
  write {undone}
  undo
  write {editor.tmp / "one-undo.txt"}
  redo
  cnext
  IllumeApply
  cnext
  IllumeApply
  cnext
  IllumeApply
  write
""")
    listed = [json.loads(line) for line in found.read_text().splitlines()]
    # Vim's columns are bytes: "plait" is character 25 of its line, byte 26 (é takes two bytes).
    assert listed[0] == [
        [1, 1, '"Their" -> "There": wrong word'],
        [1, 10, '"a problem" -> "an issue": plainer'],
        [2, 1, '"We was   going" -> "We were\\ngoing": agreement'],  # the file's text, as illume found it
        [3, 10, '"lait" -> "|call writefile([\'pwned\'], \'pwned\')": text, never a command'],
        [3, 26, '"plait" -> "plaît": accent'],
    ]
    assert listed[1] == ['illume review: be "plain" | no command', 2]  # the quickfix window opened
    assert not (editor.tmp / "pwned").exists()
    messages = (editor.tmp / "messages.txt").read_text()
    assert "applied already" in messages  # the second :IllumeApply of the first entry
    assert undone.read_text() == DOC.replace("Their", "There").replace("a problem here", "an issue here", 1)
    assert (editor.tmp / "one-undo.txt").read_text() == DOC.replace("Their", "There")
    assert after == ("There is an issue here, a problem.\nWe were\ngoing home.\n"
                     "Café au |call writefile(['pwned'], 'pwned'), s'il vous plaît.\n")


def test_a_failed_review_keeps_the_quickfix_list(editor, server):
    server.respond(Reply(status=500, body="model exploded"))
    found = editor.tmp / "qf.json"
    after = editor.run(DOC, f"""
  {profile(editor, server.url)}
  call setqflist([{{'filename': 'mine.txt', 'lnum': 1, 'text': 'my own entry'}}])
  IllumeReview
  call Wait()
  call writefile([json_encode(map(getqflist(), 'v:val.text'))], {vim_string(str(found))})
""")
    assert after == DOC
    assert json.loads(found.read_text()) == ["my own entry"]
    assert "buffer.txt: HTTP 500: model exploded" in (editor.tmp / "messages.txt").read_text()


def test_apply_refuses_a_quote_that_changed_and_follows_lines_added_above(editor, server):
    server.respond(suggesting(*SUGGESTIONS[:3]))
    after = editor.run(DOC, f"""
  {profile(editor, server.url)}
  IllumeReview
  call Wait()
  call append(0, ['a line added above'])
  call setline(2, substitute(getline(2), 'Their', 'Thier', ''))
  cfirst
  IllumeApply
  cnext
  IllumeApply
  write
""")
    assert after == "a line added above\n" + DOC.replace("Their", "Thier").replace("a problem", "an issue", 1)
    assert 'the text changed: line 2 no longer holds "Their"' in (editor.tmp / "messages.txt").read_text()


def test_stop_a_rewrite_and_take_what_arrived_with_a_bang(editor, server):
    # (Only the chat stalls: illume first asks /props for the context's size.)
    server.respond(Reply(chat_events(["Hello world.\nkeep me\n"], done=False), hold=600), path="/chat/completions")
    after = editor.run(OLD, f"""
  {profile(editor, server.url)}
  2,4IllumeRewrite fix it
  call WaitUntil('getbufline(winbufnr(2), 2) ==# ["Hello world."]')
  call win_execute(win_getid(2), 'IllumeStop')
  call WaitUntil('!illume#running(winbufnr(2))')
  IllumeTake
  let g:refused = getline(1, '$')
  IllumeTake!
  write
""")
    assert after == "Title\nHello world.\nkeep me\nEnd\n"
    assert "the rewrite did not finish (stopped)" in (editor.tmp / "messages.txt").read_text()


def test_rewrite_with_the_real_llama_server_takes_what_the_cli_prints(editor, llama_server):
    # The buffer gets, byte for byte, what `illume --rewrite` prints for the same lines without --stream;
    # when that fails (the small model ran into the token limit), the buffer keeps its text.
    from conftest import run_illume

    path = editor.tmp / "model.profile"
    path.write_text(f"!api {llama_server}\n!:temperature 0\n!:seed 42\n!:max_tokens 64\n!:cache_prompt false\n")
    lines = "helo world, this are a test.\n"
    printed = run_illume(lines, "--rewrite", "-p", str(path), "--", "fix the grammar")
    assert printed.returncode == 0 or printed.stdout.decode() == lines, printed.stderr
    after = editor.run("Title\n" + lines + "End\n", f"""
  let g:illume_profile = {vim_string(str(path))}
  2IllumeRewrite fix the grammar
  call WaitUntil('!illume#running(winbufnr(2))')
  IllumeTake
  write
""")
    assert after == "Title\n" + printed.stdout.decode() + "End\n"
    if printed.returncode:
        assert "the rewrite failed, your text is as it was" in (editor.tmp / "messages.txt").read_text()
