"""`illume --batch`: many buffers at once against a real llama-server, each answered as the plain filter answers it.

At temperature 0 a reply is fixed: each reply appended is compared with
the model's own answer to the same request, asked directly and not
streamed (conftest.ask_llama_server, ask_llama_cpp), however many buffers
are answered beside it.
"""

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, ask_llama_cpp, ask_llama_server, closed_url, embedded_model, run_illume
from illume import batch
from illume import buffer as buf
from illume.cli import Options
from scripted import DONE, Reply, ScriptedServer, head
from scripted import chat as chat_event

SETTINGS = "!:temperature 0\n!:max_tokens 16\n"
SUMMARY = re.compile(rb"illume: (\d+) files? in [0-9.]+ s(, interrupted)?: (\d+) answered, (\d+) failed, (\d+) skipped"
                     rb"(?:, (\d+) not run)?\n$")


def chat(url: str, question: str) -> bytes:
    return f"!api {url}\n{SETTINGS}!user\n{question}\n".encode()


def write(folder, name: str, data: bytes):
    path = folder / name
    path.write_bytes(data)
    return path


def summary(stderr: bytes) -> tuple:
    match = SUMMARY.search(stderr)
    assert match, stderr
    files, interrupted, answered, failed, skipped, not_run = match.groups()
    return int(files), bool(interrupted), int(answered), int(failed), int(skipped), int(not_run or 0)


def oracle(data: bytes, ask=ask_llama_server) -> bytes:
    """Return what the plain filter prints for the chat buffer DATA: the model's own answer, asked directly."""
    answer = ask(data.decode())
    assert answer.text.strip(), "the oracle is empty: comparing with it would prove little"
    return answer.printed("\n\n!assistant\n\n")


def run_batch(*args, timeout: float = 300):
    return run_illume(b"", "--batch", *map(str, args), timeout=timeout)


# --- appended to each file ---

@pytest.mark.server
def test_each_reply_is_appended_and_a_failure_stays_alone(llama_server, tmp_path):
    good = [write(tmp_path, f"q{i}.txt", chat(llama_server, f"Name colour number {i}.")) for i in range(5)]
    unknown = write(tmp_path, "unknown.txt", b"!profile no-such-profile\n!user\nhi\n")
    unreachable_url = closed_url()
    unreachable = write(tmp_path, "unreachable.txt", chat(unreachable_url, "hi"))
    before = {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in (unknown, unreachable)}
    originals = {path: path.read_bytes() for path in good}
    expected = {path: oracle(data) for path, data in originals.items()}

    result = run_batch(*good, unknown, unreachable)

    assert result.returncode == 1
    assert result.stdout == b""
    assert summary(result.stderr) == (7, False, 5, 2, 0, 0)
    lines = result.stderr.decode().splitlines()
    assert f"illume: {unknown}: <stdin>:1: open no-such-profile: no such file or directory" in lines
    refused = f"illume: {unreachable}: cannot connect to {unreachable_url[len('http://'):-1]}: "
    assert any(line.startswith(refused) for line in lines), lines
    for path, (data, mtime) in before.items():  # failed: left exactly as they were
        assert (path.read_bytes(), path.stat().st_mtime_ns) == (data, mtime)
    for path in good:
        data = path.read_bytes()
        assert data == originals[path] + expected[path]  # the user's text, byte for byte, then the reply
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in (*good, unknown, unreachable))  # no temporaries


@pytest.mark.server
def test_the_appended_reply_is_the_plain_filters(llama_server, tmp_path):
    data = chat(llama_server, "Say hello.")
    path = write(tmp_path, "one.txt", data)
    result = run_batch("-j", "1", path)
    assert result.returncode == 0, result.stderr
    assert path.read_bytes() == data + run_illume(data).stdout


@pytest.mark.server
def test_identical_buffers_get_identical_replies(llama_server, tmp_path):
    # Answered side by side in the server's slots, each as if it were alone.
    data = chat(llama_server, "Name a fruit.")
    other = chat(llama_server, "Name a colour.")
    expected = {data: oracle(data), other: oracle(other)}
    paths = [write(tmp_path, f"same{i}.txt", data) for i in range(3)] + [write(tmp_path, "other.txt", other)]
    result = run_batch("-j", "4", *paths)
    assert result.returncode == 0, result.stderr
    for path, asked in zip(paths, (data, data, data, other)):
        assert path.read_bytes() == asked + expected[asked]


@pytest.mark.server
def test_mode_and_symbolic_links_are_kept(llama_server, tmp_path):
    real = write(tmp_path, "real.txt", chat(llama_server, "hi"))
    real.chmod(0o640)
    link = tmp_path / "link.txt"
    link.symlink_to(real.name)
    result = run_batch(link)
    assert result.returncode == 0, result.stderr
    assert link.is_symlink()
    assert real.stat().st_mode & 0o777 == 0o640
    data = chat(llama_server, "hi")
    assert real.read_bytes() == data + oracle(data)


# --- written to an output folder ---

@pytest.mark.server
def test_output_folder_holds_what_the_plain_filter_prints(llama_server, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    chat_path = write(inputs, "chat.txt", chat(llama_server, "Name a fruit."))
    completion = f"!api {llama_server}\n{SETTINGS}!completion\nOnce upon a time".encode()
    completion_path = write(inputs, "story.txt", completion)
    out = tmp_path / "out" / "deeper"  # created when missing

    result = run_batch("-o", out, chat_path, completion_path)

    assert result.returncode == 0, result.stderr
    assert summary(result.stderr) == (2, False, 2, 0, 0, 0)
    assert chat_path.read_bytes() == chat(llama_server, "Name a fruit.")  # inputs untouched
    assert completion_path.read_bytes() == completion
    assert sorted(os.listdir(out)) == ["chat.txt", "story.txt"]
    assert (out / "chat.txt").read_bytes() == oracle(chat(llama_server, "Name a fruit."))
    story = ask_llama_server(completion.decode())
    assert story.text.strip(), story.whole
    assert (out / "story.txt").read_bytes() == story.printed()
    assert (out / "chat.txt").stat().st_mode & 0o777 == 0o666 & ~_umask()


@pytest.mark.server
def test_output_folder_with_filter_holds_buffer_and_reply(llama_server, tmp_path):
    data = chat(llama_server, "hi")
    path = write(tmp_path, "a.txt", data)
    result = run_illume(b"", "--batch", "--filter", "-o", str(tmp_path / "out"), str(path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "a.txt").read_bytes() == data + oracle(data)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- resuming ---

@pytest.mark.server
def test_skip_done_leaves_answered_files_alone(llama_server, tmp_path):
    paths = [write(tmp_path, f"q{i}.txt", chat(llama_server, f"Name animal number {i}.")) for i in range(3)]
    assert run_batch(*paths).returncode == 0
    answered = {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in paths}
    fresh = write(tmp_path, "fresh.txt", chat(llama_server, "Name a tree."))

    result = run_batch("--skip-done", *paths, fresh)

    assert result.returncode == 0, result.stderr
    assert summary(result.stderr) == (4, False, 1, 0, 3, 0)
    for path, (data, mtime) in answered.items():
        assert (path.read_bytes(), path.stat().st_mtime_ns) == (data, mtime)
    assert fresh.read_bytes() == chat(llama_server, "Name a tree.") + oracle(chat(llama_server, "Name a tree."))


@pytest.mark.server
def test_skip_done_in_an_output_folder_goes_by_the_output_file(llama_server, tmp_path):
    completion = f"!api {llama_server}\n{SETTINGS}!completion\nOnce upon a time".encode()
    path = write(tmp_path, "story.txt", completion)
    out = tmp_path / "out"
    assert run_batch("--skip-done", "-o", out, path).returncode == 0
    mtime = (out / "story.txt").stat().st_mtime_ns
    result = run_batch("--skip-done", "-o", out, path)
    assert result.returncode == 0
    assert summary(result.stderr) == (1, False, 0, 0, 1, 0)
    assert (out / "story.txt").stat().st_mtime_ns == mtime


def test_skip_done_refuses_to_guess_about_an_appended_completion(tmp_path):
    data = f"!api {closed_url()}\n!completion\nOnce upon a time, there was".encode()
    path = write(tmp_path, "story.txt", data)
    result = run_batch("--skip-done", path)
    assert result.returncode == 1
    assert (f"illume: {path}: --skip-done cannot tell whether a completion buffer was answered "
            "(the reply appended to it carries no mark); use --output-dir\n").encode() in result.stderr
    assert path.read_bytes() == data


ASSISTANT_LAST = "!user\nhi\n\n!assistant\n\nHello.\n"


@pytest.mark.parametrize("text, expected", [
    ("!user\nhi\n", False),
    (ASSISTANT_LAST, True),
    (ASSISTANT_LAST + "\n!note the reply stopped at the token limit (raise !:max_tokens for more)", True),
    (ASSISTANT_LAST + "\n!user\n\nAnd then?\n", False),
    ("!user\nhi\n\n!assistant\n\n", False),  # a header with no reply under it
    (ASSISTANT_LAST + "\n!error\n\ncannot connect to localhost:8080\n", False),
    ("!user\nhi\n\n!assistant\n\npart\n\n!error\n\nthe reply was cut off\n", False),
    (ASSISTANT_LAST + "!end\n!user\nignored\n", True),
    ("!user\nhi\n!!assistant\nnot a directive\n", False),
])
def test_what_counts_as_answered(text, expected):
    parsed = buf.parse(text, buf.Sources({}), default_profile="llama.cpp")
    assert batch.answered(text, parsed) is expected


def test_skip_done_reports_a_buffer_that_does_not_read(tmp_path):
    data = b"!profile no-such-profile\n!user\nhi\n\n!assistant\n\nHello.\n"
    path = write(tmp_path, "broken.txt", data)
    result = run_batch("--skip-done", path)
    assert result.returncode == 1
    assert f"illume: {path}: <stdin>:1: open no-such-profile: no such file or directory\n".encode() in result.stderr
    assert summary(result.stderr) == (1, False, 0, 1, 0, 0)
    assert path.read_bytes() == data


def test_a_failure_is_reported_without_the_buffers_secrets(tmp_path):
    key = "sk-proj-0123456789abcdefWXYZ"
    with ScriptedServer() as server:
        server.respond(Reply(status=401, body=f"invalid key {key}"))  # a careless server echoes it
        path = write(tmp_path, "a.txt", f"!api {server.url}\n!>authorization Bearer {key}\n!user\nhi\n".encode())
        result = run_batch(path)
    assert result.returncode == 1
    assert f"illume: {path}: HTTP 401: invalid key ***WXYZ\n".encode() in result.stderr
    assert key.encode() not in result.stderr


# --- the progress bar, on a terminal ---

_TERMINAL_CODE = re.compile(r"\x1b\[(\??[0-9;]*[A-Za-z])|[\r\n]|[^\x1b\r\n]+")


def terminal(data: bytes) -> tuple[list[str], list[str], bool]:
    """Return what a terminal shows after DATA: its lines, each line as it was before a carriage return, and
    whether the cursor is visible. Knows CR, LF, erase to the line's end and showing or hiding the cursor."""
    lines, frames, row, column, visible = [""], [], 0, 0, True
    for match in _TERMINAL_CODE.finditer(data.decode()):
        text, code = match.group(), match.group(1)
        if text == "\r":
            frames.append(lines[row])
            column = 0
        elif text == "\n":
            row += 1
            lines += [""] * (row + 1 - len(lines))
        elif code == "K":
            lines[row] = lines[row][:column]
        elif code in ("?25l", "?25h"):
            visible = code == "?25h"
        else:
            assert code is None, f"the terminal here does not know ESC [{code}"
            line = lines[row].ljust(column)
            lines[row] = line[:column] + text + line[column + len(text):]
            column += len(text)
    return lines, frames, visible


def test_a_terminal_shows_the_progress_bar_then_the_report(tmp_path, server):
    server.script([head(), chat_event("Hi"), DONE])
    refused = closed_url()
    files = [write(tmp_path, "a.md", chat(server.url, "hi")), write(tmp_path, "b.md", chat(refused, "hi"))]
    controller, screen = pty.openpty()
    try:
        result = run_illume(b"", "--batch", "-j", "1", *map(str, files), stderr=screen, timeout=60)
        os.close(screen)
        shown = b""
        while select.select([controller], [], [], 10)[0]:
            try:
                piece = os.read(controller, 65536)
            except OSError:  # the terminal closed
                break
            if not piece:
                break
            shown += piece
    finally:
        os.close(controller)
    assert result.returncode == 1, shown
    lines, frames, visible = terminal(shown)
    host = refused.removeprefix("http://").rstrip("/")
    # The bar stays, full, above the report; the cursor is shown again.
    assert re.fullmatch(r"illume: \[#{24}\] 2/2, 1 failed, \d+\.\d s", lines[0]), lines
    assert lines[1:] == [f"illume: {files[1]}: cannot connect to {host}: connection refused (is the server running?)",
                         lines[2], ""], lines
    assert re.fullmatch(r"illume: 2 files in \d+\.\d s: 1 answered, 1 failed, 0 skipped", lines[2]), lines
    assert visible
    # It was drawn empty, then half full, before the end.
    bars = [re.sub(r", \d+\.\d s$", "", frame) for frame in frames if frame.startswith("illume: [")]
    assert bars[:1] == ["illume: [........................] 0/2"], frames
    assert "illume: [############............] 1/2" in bars, frames
    # Without a terminal, no bar: stderr holds the report alone.
    server.script([head(), chat_event("Hi"), DONE])
    files[0].write_bytes(chat(server.url, "hi"))
    piped = run_illume(b"", "--batch", "-j", "1", *map(str, files), timeout=60)
    assert piped.stderr.startswith(f"illume: {files[1]}: cannot connect".encode()), piped.stderr
    assert summary(piped.stderr) == (2, False, 1, 1, 0, 0)


# --- usage ---

@pytest.mark.parametrize("args, message", [
    (["--batch"], b"--batch needs at least one FILE"),
    (["--batch", "-"], b"--batch answers files, not standard input (-)"),
    (["--batch", "--filter", "a.txt"], b"--filter would append each buffer to itself: use it with --output-dir"),
    (["--batch", "-o", "out", "x/a.txt", "y/a.txt"], b"x/a.txt and y/a.txt would both be written to DIR/a.txt"),
    (["--batch", "a.txt", "./a.txt"], b"a.txt and ./a.txt would both be written to the same file"),
    (["-j", "2", "a.txt"], b"--jobs goes with --batch"),
    (["--skip-done", "a.txt"], b"--skip-done goes with --batch"),
    (["a.txt", "b.txt"], b"several FILEs: answer them one by one with --batch"),
    (["--batch", "-j", "0", "a.txt"], b"0 is not in the range x>=1"),
])
def test_usage_errors(args, message):
    result = run_illume(b"", *args)
    assert result.returncode == 2
    assert message in result.stderr, result.stderr


# --- written whole: to a temporary file, then renamed over the target ---

@pytest.mark.parametrize("into_folder", [False, True], ids=["appended", "output folder"])
def test_a_reader_never_sees_a_half_written_file(tmp_path, into_folder, server):
    # A reader that opened the file before the reply sees the old text whole;
    # an in-place write would truncate what it reads. The new file is another inode.
    server.script([head(), chat_event("Hello"), DONE])
    data = f"!api {server.url}\n!user\nhi\n".encode()
    path = write(tmp_path, "a.txt", data)
    folder = tmp_path / "out"
    options = ["-o", folder] if into_folder else []
    if into_folder:
        folder.mkdir()
        old_text, target = b"an older reply\n", write(folder, "a.txt", b"an older reply\n")
    else:
        old_text, target = data, path
    old_inode = target.stat().st_ino
    with open(target, "rb") as reader:
        result = run_batch(*options, path)
        assert reader.read() == old_text
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == (b"" if into_folder else data) + b"\n\n!assistant\n\nHello"
    assert target.stat().st_ino != old_inode
    assert os.listdir(target.parent) == ["a.txt"]  # no temporary left behind


def test_a_failed_write_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    # The disk fills up (or the machine stops) in the middle of the write: the user's file is untouched.
    path = write(tmp_path, "a.txt", b"!user\nhi\n")

    def full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError):
        batch.write_atomically(str(path), b"!user\nhi\n\n!assistant\n\nHello", 0o644)
    assert path.read_bytes() == b"!user\nhi\n"
    assert os.listdir(tmp_path) == ["a.txt"]  # no temporary left behind


def test_a_file_that_changed_meanwhile_is_not_overwritten(tmp_path):
    path = write(tmp_path, "a.txt", b"!user\nhi\n")
    run = batch.Batch([str(path)], {}, Options(), 1, None, False, stderr=open(os.devnull, "w"))
    path.write_bytes(b"!user\nhi, edited\n")
    run.commit(batch.Result(str(path), batch.ANSWERED, b"!user\nhi\n", b"\n\n!assistant\n\nHello"))
    assert path.read_bytes() == b"!user\nhi, edited\n"
    assert run.failures == [(str(path), "it changed while illume was answering it; the reply was not written")]


# --- interrupted ---

@pytest.mark.server
def test_an_interrupted_batch_leaves_every_file_whole(llama_server, tmp_path):
    # The first buffer wants a word, the others stories that would take minutes:
    # the interrupt comes as soon as the word is written, while the stories stream.
    originals = {}
    for i in range(8):
        if i == 0:
            settings = "!:temperature 0\n!:max_tokens 2\n"
        else:
            settings = "!:temperature 0.8\n!:max_tokens 1500\n!:ignore_eos true\n"
        data = f"!api {llama_server}\n{settings}!user\nWrite a long story about island {i}.\n".encode()
        originals[write(tmp_path, f"s{i}.txt", data)] = data
    first = next(iter(originals))
    word = ask_llama_server(originals[first].decode())
    assert word.text.strip(), word.whole
    env = {k: v for k, v in os.environ.items() if not k.startswith("ILLUME_")}
    process = subprocess.Popen([sys.executable, "-m", "illume", "--batch", "-j", "4", *map(str, originals)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, env=env)
    deadline = time.monotonic() + 120
    # Interrupt once the first reply has been written, while others are streaming.
    while time.monotonic() < deadline and all(p.read_bytes() == d for p, d in originals.items()):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 130, stderr
    files, interrupted, answered, failed, skipped, not_run = summary(stderr)
    assert (files, interrupted, failed, skipped) == (8, True, 0, 0)
    assert (answered, not_run) == (1, 7)  # the word; no story can be done yet
    for path, data in originals.items():
        assert path.read_bytes() == (data + word.printed("\n\n!assistant\n\n") if path == first else data)
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in originals)  # no temporaries left


# --- the embedded backend: one buffer at a time ---

@pytest.mark.embedded
def test_embedded_buffers_are_answered_one_at_a_time(tmp_path):
    # Three identical buffers: the second and third start from the model's
    # memory of the first (its prompt cache) and must still answer alike.
    embedded_model()
    data = b"!profile embedded\n!:temperature 0\n!:max_tokens 8\n!user\nName a colour.\n"
    other = b"!profile embedded\n!:temperature 0\n!:max_tokens 8\n!user\nName a fruit.\n"
    paths = [write(tmp_path, f"e{i}.txt", data) for i in range(3)] + [write(tmp_path, "f.txt", other)]
    expected = {data: oracle(data, ask_llama_cpp), other: oracle(other, ask_llama_cpp)}
    result = run_batch("-j", "3", *paths)
    assert result.returncode == 0, result.stderr
    assert summary(result.stderr) == (4, False, 4, 0, 0, 0)
    for path, asked in zip(paths, (data, data, data, other)):
        assert path.read_bytes() == asked + expected[asked]
