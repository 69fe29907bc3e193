"""In real Vim, Neovim and Emacs: a reply's thinking streams into a `<think>` block, and the next turn leaves it out.

The scripted server streams the thinking in `reasoning_content` (as
llama-server does), then holds the answer back: the editor must show the
block while the reply is still running. The real llama-server's thinking
is tested in test_thinking_server.py.
"""

import json

import pytest

from scripted import Reply
from test_emacs import PACKAGE, emacs, run_emacs  # noqa: F401 (fixtures)
from test_vim import chat_buffer

pytestmark = pytest.mark.editor

THINKING = [json.dumps({"choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]}),
            json.dumps({"choices": [{"index": 0, "delta": {"reasoning_content": "Let me"}}]}),
            json.dumps({"choices": [{"index": 0, "delta": {"reasoning_content": " think."}}]}),
            json.dumps({"choices": [{"index": 0, "delta": {"content": "Hello!"}}]}),
            json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}), "[DONE]"]
# The answer waits: long enough that the editor sees the thinking alone, however loaded the machine.
DELAYS = [0, 0.1, 0.1, 3.0, 0, 0]
REPLY = "\n\n!assistant\n\n!exclude think\n<think>\nLet me think.\n</think>\n\nHello!"
NEXT_TURN = [{"role": "user", "content": "Say hello."}, {"role": "assistant", "content": "Hello!"},
             {"role": "user", "content": "More"}]


def test_vim_and_neovim(editor, server):
    server.respond(Reply(THINKING, delay=DELAYS))
    buffer = chat_buffer(server.url)
    seen = editor.tmp / "seen.txt"
    after = editor.run(buffer, f"""
  Illume
  call WaitUntil('index(getline(1, "$"), "Let me think.") >= 0')
  call writefile([illume#running(bufnr('%')) ? 'running' : 'done'] + getline(1, '$'), '{seen}')
  call Wait()
  call append('$', ['!user', 'More'])
  Illume
  call Wait()
  write
""")
    running, *lines = seen.read_text().splitlines()
    assert running == "running" and "<think>" in lines and "Hello!" not in lines, (running, lines)
    assert after.startswith(buffer[:-1] + REPLY + "\n!user\nMore\n\n!assistant\n\n")
    assert server.requests[-1].json()["messages"] == NEXT_TURN


def test_emacs(emacs, server):  # noqa: F811
    server.respond(Reply(THINKING, delay=DELAYS))
    tests = PACKAGE.parent.parent / "tests"
    result = run_emacs(emacs, "-L", str(PACKAGE.parent), "-L", str(tests), "-l", "illume-thinking-tests",
                       "--eval", "(ert-run-tests-batch-and-exit \"^illume-thinking-test-\")",
                       env={"ILLUME_TEST_PYTHON": __import__("sys").executable, "ILLUME_TEST_URL": server.url})
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Ran 1 tests, 1 results as expected, 0 unexpected" in output, output[-4000:]
    assert [r.path for r in server.requests] == ["/thinking/chat/completions"] * 2
    assert server.requests[-1].json()["messages"] == NEXT_TURN
