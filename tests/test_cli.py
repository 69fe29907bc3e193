"""The command line itself, as a real subprocess: options, FILE, `python -m illume`."""

import subprocess
import sys

from conftest import REPO, run_illume

from illume import __version__


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


def test_console_script_and_module_agree():
    script = subprocess.run([sys.executable, "-c", "from illume.cli import main; main()", "--version"],
                            capture_output=True, cwd=REPO)
    assert script.stdout == run_illume(b"", "--version").stdout


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
