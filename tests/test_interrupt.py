"""Interrupts and filter mode: SIGINT or SIGTERM while a reply streams.

Vim's job stop sends SIGTERM. The partial reply must stay on stdout, then
`!note interrupted`; the exit status is 130 (SIGINT) or 143 (SIGTERM); no
traceback; the connection is closed so the server stops generating. On the
real llama-server that last point is checked through GET /slots: the slot
that was busy before the signal is idle again right after it.
"""

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from conftest import REPO, closed_url, run_illume
from scripted import DONE, HOLD, chat, head, response

NOTE = b"\n\n!note interrupted\n"


class Illume:
    """The real CLI as a running subprocess whose stdout is collected as it streams."""

    def __init__(self, buffer: bytes, *args: str, env: dict | None = None):
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("ILLUME_")}
        full_env.update(env or {})
        self.process = subprocess.Popen([sys.executable, "-m", "illume", *args], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env, cwd=REPO)
        self.out = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.process.stdin.write(buffer)
        self.process.stdin.close()

    def _read(self) -> None:
        while chunk := self.process.stdout.read1(65536):
            self.out += chunk

    def wait_for(self, predicate, timeout: float = 60) -> bytes:
        """Return stdout once PREDICATE(stdout) holds."""
        deadline = time.monotonic() + timeout
        while not predicate(self.out):
            assert self.process.poll() is None, f"illume exited early with {self.process.returncode}: {self.out!r}"
            assert time.monotonic() < deadline, f"timed out; stdout so far: {self.out!r}"
            time.sleep(0.01)
        return self.out

    def finish(self, timeout: float = 15) -> tuple[int, bytes, bytes]:
        """Return (status, stdout, stderr) once illume has exited."""
        status = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return status, self.out, self.process.stderr.read()


def after(marker: bytes, count: int = 1):
    """Return a predicate: stdout holds MARKER and at least COUNT bytes after it."""
    return lambda out: marker in out and len(out) - out.index(marker) - len(marker) >= count


# --- the scripted server: exact bytes ------------------------------------------

SLOW_REPLY = [head()] + [step for i in range(200) for step in (chat(f"w{i} "), 0.05)] + [DONE]


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"])
def test_interrupt_keeps_the_partial_reply(server, signum, status):
    server.script(SLOW_REPLY)
    illume = Illume(f"!api {server.url}\n!user\nhi\n".encode())
    seen = illume.wait_for(after(b"w2 "))
    illume.process.send_signal(signum)
    signalled = time.monotonic()
    code, out, err = illume.finish()
    assert (code, err) == (status, b"")
    assert out.startswith(seen) and out.startswith(b"\n\n!assistant\n\nw0 w1 w2 ")
    assert out.endswith(NOTE)
    reply = out[len(b"\n\n!assistant\n\n"):-len(NOTE)]
    assert reply == b"".join(f"w{i} ".encode() for i in range(reply.count(b"w")))  # whole events, in order
    time.sleep(0.2)
    assert server.hangups and server.hangups[0] - signalled < 2  # the connection was closed


def test_interrupt_in_filter_mode(server):
    server.script(SLOW_REPLY)
    buffer = f"!api {server.url}\n!user\nhi \xff there\n".encode("utf-8", "surrogateescape")
    illume = Illume(buffer, "--filter")
    illume.wait_for(after(b"w1 "))
    illume.process.send_signal(signal.SIGTERM)
    code, out, err = illume.finish()
    assert (code, err) == (143, b"")
    assert out.startswith(buffer + b"\n\n!assistant\n\nw0 w1 ")
    assert out.endswith(NOTE)


def test_interrupt_while_waiting_for_headers(server):
    server.script([HOLD])
    illume = Illume(f"!api {server.url}\n!user\nhi\n".encode(), "--filter")
    deadline = time.monotonic() + 30
    while not server.requests:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    illume.process.send_signal(signal.SIGINT)
    code, out, err = illume.finish()
    assert (code, out, err) == (130, f"!api {server.url}\n!user\nhi\n".encode() + NOTE, b"")


def test_interrupt_during_a_retry_wait(server):
    server.script(response(429, '{"error":"busy"}', retry_after="15"), [head(), chat("late"), DONE])
    illume = Illume(f"!api {server.url}\n!user\nhi\n".encode())
    deadline = time.monotonic() + 30
    while not server.requests:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.3)
    illume.process.send_signal(signal.SIGTERM)
    code, out, err = illume.finish(timeout=5)
    assert (code, out, err) == (143, NOTE, b"")
    assert len(server.requests) == 1


def test_two_signals_in_a_row(server):
    server.script(SLOW_REPLY)
    illume = Illume(f"!api {server.url}\n!user\nhi\n".encode())
    illume.wait_for(after(b"w1 "))
    illume.process.send_signal(signal.SIGTERM)
    illume.process.send_signal(signal.SIGINT)
    illume.process.send_signal(signal.SIGTERM)
    code, out, err = illume.finish()
    assert code in (130, 143) and err == b""  # pending signals are handled lowest number first
    assert out.endswith(NOTE) and out.count(b"!note") == 1


def test_interrupt_while_reading_the_buffer():
    process = subprocess.Popen([sys.executable, "-m", "illume"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, cwd=REPO)
    process.stdin.write(b"!user\nhalf a buff")
    process.stdin.flush()
    time.sleep(1.5)  # past start-up: the handlers are installed, illume waits for the rest of stdin
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=10)
    assert (process.returncode, out, err) == (143, b"", b"")


def test_filter_mode_echoes_input_byte_for_byte(server):
    server.script([head(), chat("Hi"), DONE])
    buffer = f"!api {server.url}\n".encode() + b"!user\n\xff\xfe caf\xc3\xa9 \xe2\x82 \r\n\x00tail"
    result = run_illume(buffer, "--filter")
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == buffer + b"\n\n!assistant\n\nHi"


def test_filter_mode_on_failure(server):
    server.script(response(500, '{"error":{"message":"no","type":"server_error"}}'))
    buffer = f"!api {server.url}\n!user\n\xe9t\xe9\n".encode("latin-1")
    result = run_illume(buffer, "--filter")
    assert (result.returncode, result.stderr) == (1, b"")
    assert result.stdout == buffer + b"\n\n!error\n\nHTTP 500: no (server_error)\n"


def test_filter_mode_on_a_buffer_error():
    buffer = b"!user\nhi\n!context /no/such/file\n"
    result = run_illume(buffer, "--filter")
    assert (result.returncode, result.stderr) == (1, b"")
    assert result.stdout == buffer + b"\n\n!error\n\n<stdin>:3: open /no/such/file: no such file or directory\n"


def test_interrupt_while_a_template_renders():
    # Ten billion turns of a sandboxed loop: rendering never ends by itself. Jinja runs inside an
    # `except Exception` (to report a template's own failure); the interrupt must get through it.
    loops = "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}"
    buffer = f"!api {closed_url()}\n!debug\n!infill {loops}{{{{ prefix }}}}<FIM>{{{{ suffix }}}}\n" \
             "def f():\n!infill\n    pass\n"
    illume = Illume(buffer.encode(), "--filter")
    illume.wait_for(lambda out: out == buffer.encode())  # the buffer is read
    time.sleep(1.0)  # past parsing it: rendering the template
    illume.process.send_signal(signal.SIGTERM)
    code, out, err = illume.finish()
    assert (code, out, err) == (143, buffer.encode() + NOTE, b"")


# --- the real llama-server: the slot is free again ------------------------------

def busy_slots(url: str) -> list[int]:
    return [slot["id"] for slot in httpx.get(url + "slots", timeout=10).json() if slot["is_processing"]]


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"])
def test_interrupt_frees_the_llama_server_slot(llama_server, signum, status):
    assert busy_slots(llama_server) == []
    buffer = (f"!api {llama_server}\n!:max_tokens 1800\n!:ignore_eos true\n!:temperature 1\n"
              "!user\nWrite a very long story about a lighthouse.\n").encode()
    illume = Illume(buffer)
    seen = illume.wait_for(after(b"!assistant\n\n", 20))
    assert busy_slots(llama_server) != []  # generating: the check below can fail
    illume.process.send_signal(signum)
    code, out, err = illume.finish()
    assert (code, err) == (status, b"")
    assert out.startswith(seen) and out.endswith(NOTE)
    assert b"!error" not in out

    deadline = time.monotonic() + 5
    while busy_slots(llama_server):
        assert time.monotonic() < deadline, "the slot is still generating after the interrupt"
        time.sleep(0.05)
    # And the server answers at once.
    started = time.monotonic()
    result = run_illume(f"!api {llama_server}\n!:max_tokens 4\n!user\nhi\n", timeout=60)
    assert result.returncode == 0, result.stdout
    assert time.monotonic() - started < 20
