"""The Emacs package (emacs/illume.el) driven in real Emacs (`emacs -batch`) by its ERT tests.

tests/illume-tests.el holds the ERT tests; each runs here in an Emacs of its
own, against the real illume CLI and a scripted SSE server
(tests/scripted.py) whose replies are scripted below by path, and one
against the real llama-server. The package itself is checked as its users'
tools check it: byte-compiled with warnings as errors, checkdoc, and
package-lint (Debian's elpa-package-lint) when installed.

./test.sh installs Emacs (Debian package `emacs-nox`) and package-lint.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import ask_llama_server, embedded_model, missing, placed_by_filter, require_program, run_illume
from scripted import Reply, ScriptedServer, chat_events, infill_events
from texts import outgrown_story

pytestmark = pytest.mark.editor

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "emacs" / "illume.el"
TESTS = REPO / "tests" / "illume-tests.el"
EMACS_TIMEOUT = 240  # seconds for one Emacs, however loaded the machine
PACKAGE_LINT = Path("/usr/share/emacs/site-lisp/elpa")  # where elpa-package-lint puts it

PIECES = ["Hel", "lo, wor", "ld!\nSecond li", "ne.\n", "\nThird", " line. é", "\n"]  # as in illume-tests.el
SCRIPT = {  # path -> the reply scripted for it; the ERT tests name the first folder
    "/chat/chat/completions": Reply(chat_events(PIECES), delay=0.2),
    "/slow-chat/chat/completions": Reply(chat_events(PIECES), delay=0.3),
    "/stalls/chat/completions": Reply(chat_events(["Once upon", " a ti", "me"], done=False), delay=0.1, hold=600),
    "/second/slow/chat/completions": Reply(chat_events(["Once upon", " a time"], done=False), hold=600),
    "/second/fast/chat/completions": Reply(chat_events(["The end."]), delay=0.1),
    "/fails/chat/completions": Reply(status=500, body="model exploded"),
    "/summarize/chat/completions": Reply(chat_events(["They talked", " about the sea.\n"]), delay=0.1),
    "/infill/infill": Reply(infill_events(["    re", "turn a", " + b\n"]), delay=0.2),
    "/runs-on/infill": Reply(infill_events(["    return a", " + b\nprint(add", "(1, 2))\nprint('more')\n"]), delay=0.1),
    # illume-rewrite, illume-review: the replies the model gives to the real CLI's requests.
    "/rewrite/chat/completions": Reply(chat_events(["Sure:\n\n```\nHello world.\nkeep", " me\nThis is fine.\n```\n"]),
                                       delay=0.1),
    "/rewrite-markers/chat/completions": Reply(chat_events(["A\n=======\n>>>>>>> x\nB\n"])),
    "/rewrite-fails/chat/completions": Reply(status=500, body="model exploded"),
    "/rewrite-cut/chat/completions": Reply(chat_events(["Hello world.\nkeep"], done=False)),
    "/rewrite-stalls/chat/completions": Reply(chat_events(["Hello world.\nkeep me\n"], done=False), hold=600),
    "/review/chat/completions": Reply(chat_events([json.dumps(item) + "\n" for item in [
        {"quote": "Their", "replacement": "There", "message": "wrong word"},
        {"quote": "a problem", "replacement": "an issue", "message": "plainer"},
        {"quote": "We was going", "replacement": "We were\ngoing", "message": "agreement"},
        {"quote": "plait", "replacement": "plaît", "message": "accent"},
        {"quote": "an invented sentence", "replacement": "x", "message": "dropped by illume"},
        {"quote": "lait", "replacement": '|(shell-command "touch pwned")', "message": "text, never a command"},
    ]])),
}


def ert_tests() -> list[str]:
    return re.findall(r"^\(ert-deftest (illume-test-[\w-]+)", TESTS.read_text(), re.M)


@pytest.fixture(scope="session")
def emacs():
    return require_program("emacs", "apt-get install emacs-nox")


@pytest.fixture(scope="session")
def server():
    with ScriptedServer() as fake:
        for path, reply in SCRIPT.items():
            fake.respond(reply, path=path)
        yield fake


def run_emacs(emacs: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    # Not tmp_path: a concurrent pytest run prunes old pytest-of-USER folders under a running test.
    with tempfile.TemporaryDirectory(prefix="illume-emacs-") as home:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("ILLUME_")}
        full_env.update({"HOME": home, "TMPDIR": home}, **(env or {}))
        return subprocess.run([emacs, "-batch", "-Q", *args], cwd=home, env=full_env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=EMACS_TIMEOUT)


def run_ert(emacs: str, name: str, env: dict) -> None:
    result = run_emacs(emacs, "-L", str(PACKAGE.parent), "-L", str(TESTS.parent), "-l", "illume-tests",
                       "--eval", f"(ert-run-tests-batch-and-exit (quote {name}))",
                       env={"ILLUME_TEST_PYTHON": sys.executable, **env})
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Ran 1 tests, 1 results as expected, 0 unexpected" in output \
        and "skipped" not in output, output[-4000:]


REAL = ("illume-test-chat-with-the-real-llama-server", "illume-test-rewrite-with-the-real-llama-server",
        "illume-test-fit-summarize-places-the-summaries-above")


@pytest.mark.parametrize("name", [n for n in ert_tests() if n not in REAL])
def test_ert(emacs, server, name):
    server.requests.clear()
    run_ert(emacs, name, {"ILLUME_TEST_URL": server.url})
    # What reached the server, where the ERT test cannot see it.
    if name == "illume-test-chat-streams-at-the-end-as-one-undo-step":
        (request,) = server.requests
        assert request.path == "/chat/chat/completions"
        assert request.json()["messages"] == [{"role": "user", "content": "Say hello."}]
    elif name == "illume-test-a-second-request-stops-the-first":
        assert [r.path for r in server.requests] == ["/second/slow/chat/completions", "/second/fast/chat/completions"]
        assert server.requests[-1].json()["messages"][-1] == {"role": "assistant", "content": "Once upon a time"}
    elif name == "illume-test-summarize-streams-a-summary-block-at-the-end":
        (request,) = server.requests
        assert request.path == "/summarize/chat/completions"
        *chat, asked = request.json()["messages"]
        assert chat == [{"role": "user", "content": "Tell me about the sea."},
                        {"role": "assistant", "content": "The sea is wide and salty."}]
        assert asked["role"] == "user" and asked["content"].startswith("Pause the conversation here. Write a summary")
    elif name.startswith("illume-test-infill-at") or name.startswith("illume-test-infill-below"):
        (request,) = server.requests
        assert request.path == "/infill/infill"
        assert (request.json()["input_prefix"], request.json()["input_suffix"]) == \
            ("def add(a, b):\n", "\nprint(add(1, 2))")


def test_ert_with_the_real_llama_server(emacs, llama_server):
    # The reply lands in the buffer exactly as llama-server itself answers the request, token-limit note included.
    buffer = f"!api {llama_server}\n!:max_tokens 24\n!:temperature 0\n!:seed 42\n!user\nTell me about the sea.\n"
    answer = ask_llama_server(buffer)
    assert answer.text.strip() and answer.limit, answer.whole
    run_ert(emacs, "illume-test-chat-with-the-real-llama-server",
            {"ILLUME_TEST_BUFFER": buffer, "ILLUME_TEST_REPLY": answer.printed("\n\n!assistant\n\n").decode()})


def test_ert_rewrite_with_the_real_llama_server(emacs, llama_server, tmp_path):
    # The buffer gets, byte for byte, what `illume --rewrite` prints for the same lines without --stream
    # (the lines themselves when that fails: the small model may run into the token limit).
    profile = tmp_path / "model.profile"
    profile.write_text(f"!api {llama_server}\n!:temperature 0\n!:seed 42\n!:max_tokens 64\n!:cache_prompt false\n")
    lines = "helo world, this are a test.\n"
    printed = run_illume(lines, "--rewrite", "-p", str(profile), "--", "fix the grammar")
    assert printed.returncode == 0 or printed.stdout.decode() == lines, printed.stderr
    run_ert(emacs, "illume-test-rewrite-with-the-real-llama-server",
            {"ILLUME_TEST_PROFILE": str(profile), "ILLUME_TEST_EXPECTED": printed.stdout.decode()})


@pytest.mark.embedded
def test_ert_fit_summarize_with_the_embedded_model(emacs):
    # The buffer ends as `illume --filter` leaves it: the summary inserted before the chapter, the reply appended.
    buffer, _ = outgrown_story(embedded_model())
    sent, reply = placed_by_filter(buffer)
    run_ert(emacs, "illume-test-fit-summarize-places-the-summaries-above",
            {"ILLUME_TEST_BUFFER": buffer, "ILLUME_TEST_EXPECTED": sent[:-1] + reply + "\n"})


def test_every_ert_test_runs_here():
    assert len(ert_tests()) >= 20, ert_tests()  # the regex finds them all


def test_byte_compiles_without_warnings(emacs):
    with tempfile.TemporaryDirectory(prefix="illume-elc-") as out:
        result = run_emacs(emacs, "--eval", "(setq byte-compile-error-on-warn t)",
                           "--eval", f'(setq byte-compile-dest-file-function (lambda (_) "{out}/illume.elc"))',
                           "-f", "batch-byte-compile", str(PACKAGE))
        assert result.returncode == 0 and os.path.exists(f"{out}/illume.elc"), result.stderr


def test_checkdoc_is_clean(emacs):
    result = run_emacs(emacs, "--eval", f'(progn (require \'checkdoc) (checkdoc-file "{PACKAGE}"))')
    assert result.returncode == 0 and "Warning" not in result.stderr, result.stderr


def test_package_lint_is_clean(emacs):
    folders = sorted(PACKAGE_LINT.glob("package-lint-[0-9]*")) + sorted(PACKAGE_LINT.glob("let-alist-*"))
    if not any(f.name.startswith("package-lint-") for f in folders):
        missing("package-lint", "apt-get install elpa-package-lint")
    load = " ".join(f'(add-to-list \'load-path "{f}")' for f in folders)
    result = run_emacs(emacs, "--eval", f"(progn {load} (require 'package-lint))",
                       "-f", "package-lint-batch-and-exit", str(PACKAGE))
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if re.match(r"illume\.el:\d+:\d+: ", line)]
    # The project has no public home page yet to put in a URL header.
    assert problems == ["illume.el:1:0: error: Package should have a Homepage or URL header."], problems


def test_autoloads_cover_the_commands(emacs):
    # What package.el would generate: every command and the mode are autoloaded.
    text = PACKAGE.read_text()
    autoloaded = re.findall(r"^;;;###autoload\n\((?:defun|define-minor-mode) ([\w-]+)", text, re.M)
    assert autoloaded == ["illume", "illume-summarize", "illume-infill", "illume-stop", "illume-user", "illume-mode",
                          "illume-rewrite", "illume-review"]
    assert text.startswith(";;; illume.el --- ") and "-*- lexical-binding: t; -*-" in text.splitlines()[0]
