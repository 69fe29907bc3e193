"""The embedded backend: the real SmolLM2 model in the illume process, through the real CLI.

At temperature 0 the reply is fixed: tests compare illume's output with what
llama-cpp-python itself returns for the same request, asked directly and not
streamed (conftest.ask_llama_cpp), the token-limit note included.
"""

import re
import subprocess
import sys

import pytest

from conftest import REPO, ask_llama_cpp, embedded_model, run_illume

pytestmark = pytest.mark.embedded


@pytest.fixture(scope="module", autouse=True)
def needs_model():
    embedded_model()


SETTINGS = "!profile embedded\n!:temperature 0\n!:seed 7\n!:max_tokens 16\n"


def reply_text(stdout: bytes) -> str:
    return stdout.decode().split("\n\n!note")[0]


def test_chat_turn_uses_the_models_chat_template():
    buffer = SETTINGS + "!user\nName a fruit.\n"
    answer = ask_llama_cpp(buffer)
    assert answer.text.strip(), answer.whole
    result = run_illume(buffer)
    assert result.returncode == 0, result.stdout
    assert result.stderr == b"", "llama.cpp logging leaked to stderr"
    assert result.stdout == answer.printed("\n\n!assistant\n\n")
    # The chat template ends the turn; raw template tokens never reach the reply.
    assert b"<|im_start|>" not in result.stdout and b"<|im_end|>" not in result.stdout


def test_a_reply_cut_at_the_token_limit_says_so():
    buffer = SETTINGS.replace("16", "5") + "!user\nTell me a long story about a cat.\n"
    answer = ask_llama_cpp(buffer)
    assert answer.limit, answer.whole  # five tokens cannot hold the story
    result = run_illume(buffer)
    assert (result.returncode, result.stdout) == (0, answer.printed("\n\n!assistant\n\n"))


def test_completion_continues_raw_text():
    buffer = SETTINGS + "!completion\nThe quick brown fox"
    answer = ask_llama_cpp(buffer)
    assert answer.text.strip() and answer.limit, answer.whole
    result = run_illume(buffer)
    assert (result.returncode, result.stderr) == (0, b""), result.stdout
    assert result.stdout == answer.printed()


def test_same_seed_same_text():
    buffer = "!profile embedded\n!:temperature 1.5\n!:seed 123\n!:max_tokens 20\n!completion\nIn the year 3000,"
    first, second = run_illume(buffer), run_illume(buffer)
    assert first.returncode == second.returncode == 0
    assert first.stdout == second.stdout
    other = run_illume(buffer.replace("!:seed 123", "!:seed 124"))
    assert other.stdout != first.stdout


def test_template_fim_renders_the_same_prompt_as_for_a_server():
    buffer = SETTINGS + "!profile fim:qwen\ndef norm(v):\n!infill\n    return r\n"
    debug = run_illume(buffer + "!debug\n")
    assert b'"prompt":"<|fim_prefix|>def norm(v):\\n<|fim_suffix|>\\n    return r<|fim_middle|>"' in debug.stdout
    answer = ask_llama_cpp(buffer)
    assert answer.text.strip(), answer.whole
    result = run_illume(buffer)
    assert (result.returncode, result.stdout) == (0, answer.printed())


def test_stop_ends_the_reply_before_the_stop_string():
    free = run_illume(SETTINGS.replace("16", "40") + "!completion\n1, 2, 3, 4, 5,")
    assert free.returncode == 0
    assert " 7" in reply_text(free.stdout), "the model should count on without a stop"
    stopped = run_illume(SETTINGS.replace("16", "40") + '!:stop [" 7"]\n!completion\n1, 2, 3, 4, 5,')
    assert stopped.returncode == 0
    text = reply_text(stopped.stdout)
    assert " 7" not in text
    assert text == reply_text(free.stdout).split(" 7")[0]


def test_stats_reports_real_token_counts():
    buffer = SETTINGS + "!completion\nOne, two,"
    answer = ask_llama_cpp(buffer)
    assert answer.limit, answer.whole
    result = run_illume("!stats\n" + buffer)
    assert result.returncode == 0
    match = re.search(r"\n\n!note ([0-9.e+]+) tok/s, (\d+) toks, [0-9.]+(ns|µs|ms|s)$", result.stdout.decode())
    assert match, result.stdout
    assert result.stdout[:-len(match[0].encode())] == answer.printed()
    # One event per token, and llama-cpp-python's last one, which carries the finish reason.
    assert int(match[2]) == answer.whole["usage"]["completion_tokens"] + 1
    assert float(match[1]) > 0


def test_unknown_key_is_an_error_naming_it():
    result = run_illume(SETTINGS + "!:frobnicate 3\n!user\nhi\n")
    assert result.returncode == 1
    assert result.stdout == b"\n\n!error\n\n!:frobnicate: the embedded backend does not know this key\n"


def test_server_only_keys_are_ignored():
    result = run_illume(SETTINGS + "!:cache_prompt true\n!:n_predict 4\n!completion\nHello")
    assert result.returncode == 0, result.stdout


def test_missing_model_file():
    result = run_illume(SETTINGS + "!:model /nonexistent/model.gguf\n!user\nhi\n")
    assert result.returncode == 1
    assert result.stdout == b"\n\n!error\n\nmodel file not found: /nonexistent/model.gguf\n"


def test_model_from_environment(tmp_path):
    result = run_illume(SETTINGS + "!user\nhi\n", env={"ILLUME_MODEL": str(tmp_path / "none.gguf")})
    assert result.returncode == 1
    assert b"model file not found: " in result.stdout


def test_a_file_that_is_not_gguf(tmp_path):
    fake = tmp_path / "notes.gguf"
    fake.write_text("just some notes\n")
    result = run_illume(SETTINGS + f"!:model {fake}\n!user\nhi\n")
    assert result.returncode == 1
    assert result.stdout == f"\n\n!error\n\nnot a GGUF model file: {fake}\n".encode()
    assert b"Traceback" not in result.stderr


def test_infill_without_fim_tokens_says_what_to_do():
    result = run_illume(SETTINGS + "def f():\n!infill\n    return 1\n")
    assert result.returncode == 1
    assert b"no FIM tokens" in result.stdout and b"fim:qwen" in result.stdout


def test_without_llama_cpp_python_it_says_how_to_install():
    code = "import sys; sys.modules['llama_cpp'] = None; sys.argv = ['illume']; from illume.cli import main; main()"
    result = subprocess.run([sys.executable, "-c", code], input=b"!profile embedded\n!user\nhi\n",
                            capture_output=True, cwd=REPO, timeout=60)
    assert result.returncode == 1
    assert b"pip install 'illume[embedded]'" in result.stdout


def test_same_buffer_same_reply_within_one_process():
    # Batch runs and branches answer many buffers in one process: no cached prefix may change a reply.
    import io

    from illume.cli import Options, run

    replies = []
    for _ in range(3):
        out = io.BytesIO()
        assert run(b"!profile embedded\n!:temperature 0\n!:max_tokens 12\n!user\nSay hi.\n", out, {}, Options()) == 0
        replies.append(out.getvalue())
    assert replies[0] == replies[1] == replies[2]


def test_flash_attention_can_be_turned_off_and_wants_a_boolean():
    off = run_illume(SETTINGS + "!:flash_attn false\n!completion\nHello")
    assert off.returncode == 0, off.stdout
    wrong = run_illume(SETTINGS + "!:flash_attn 1\n!completion\nHello")
    assert wrong.returncode == 1
    assert wrong.stdout == b"\n\n!error\n\n!:flash_attn: expected true or false, got 1.0\n"
