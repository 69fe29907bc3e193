"""The command line itself, as a real subprocess: options, FILE, `python -m illume`, the installed `illume`."""

import os
import subprocess
import sys
from pathlib import Path

from conftest import missing, run_illume
from illume import __version__
from scripted import DONE, ScriptedServer, chat, head


def test_help_names_the_options():
    result = run_illume(b"", "--help")
    assert result.returncode == 0
    text = result.stdout.decode()
    for option in ("--profile", "--debug", "--filter", "--timeout", "--version"):
        assert option in text


def test_version():
    result = run_illume(b"", "--version")
    assert result.returncode == 0
    assert result.stdout == f"illume, version {__version__}\n".encode()


def console_script() -> str:
    """Return the `illume` command that pip installed beside this Python ([project.scripts] in pyproject.toml)."""
    path = Path(sys.executable).parent / "illume"
    if not path.is_file():
        missing(f"the illume console script ({path})", "pip install -e .")
    return str(path)


def test_the_illume_command_itself(tmp_path):
    # The entry point as a user runs it: by name on PATH, from another folder, on a FILE and on stdin.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ILLUME_")}
    env["PATH"] = f"{Path(console_script()).parent}{os.pathsep}{env.get('PATH', '')}"
    with ScriptedServer() as server:
        server.script([head(), chat("Hello"), chat(" there."), DONE])
        buffer = f"!api {server.url}\n!user\nhi\n"
        (tmp_path / "chat.md").write_text(buffer)
        answered = subprocess.run(["illume", "chat.md"], capture_output=True, cwd=tmp_path, env=env, timeout=60)
        assert (answered.returncode, answered.stdout, answered.stderr) == (0, b"\n\n!assistant\n\nHello there.", b"")
        assert server.requests[0].json()["messages"] == [{"role": "user", "content": "hi"}]
    version = subprocess.run(["illume", "--version"], capture_output=True, cwd=tmp_path, env=env, timeout=60)
    assert version.stdout == f"illume, version {__version__}\n".encode()
    failed = subprocess.run(["illume"], input=b"!profile nowhere\n", capture_output=True, cwd=tmp_path, env=env,
                            timeout=60)
    assert (failed.returncode, failed.stdout, failed.stderr) == (
        1, b"\n\n!error\n\n<stdin>:1: open nowhere: no such file or directory\n", b"")


def test_debug_option_is_the_debug_directive():
    with_option = run_illume(b"!user\nhi\n", "--debug")
    with_directive = run_illume(b"!debug\n!user\nhi\n")
    assert with_option.returncode == with_directive.returncode == 0
    assert with_option.stdout == with_directive.stdout
    assert with_option.stdout.startswith(b"\n\nPOST http://localhost:8080/chat/completions HTTP/1.1\n")


def test_profile_option_is_the_environment_variable():
    with_option = run_illume(b"!debug\n!user\nhi\n", "--profile", "openai")
    with_env = run_illume(b"!debug\n!user\nhi\n", env={"ILLUME_PROFILE": "openai"})
    assert with_option.stdout == with_env.stdout
    assert b"POST https://api.openai.com/v1/chat/completions HTTP/1.1\n" in with_option.stdout
    assert b'"max_completion_tokens":10000' in with_option.stdout


def test_buffer_from_a_file(tmp_path):
    path = tmp_path / "chat.txt"
    path.write_bytes(b"!debug\n!user\nfrom a file\n")
    result = run_illume(b"!debug\n!user\nfrom stdin\n", str(path))
    assert b'"content":"from a file"' in result.stdout
    assert b"from stdin" not in result.stdout


def test_a_missing_file_is_a_usage_error_not_a_traceback(tmp_path):
    result = run_illume(b"", str(tmp_path / "nope.txt"))
    assert result.returncode != 0
    assert b"Traceback" not in result.stderr
    assert b"nope.txt" in result.stderr


def test_timeout_from_the_environment_is_used(tmp_path):
    import socket

    # A server that accepts and never answers: the timeout, not the test, ends the wait.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        result = run_illume(f"!api http://127.0.0.1:{port}/\n!user\nhi\n".encode(), env={"ILLUME_TIMEOUT": "1"},
                            timeout=30)
    assert result.returncode == 1
    assert result.stdout.startswith(b"\n\n!error\n\ntimed out after 1 s")
