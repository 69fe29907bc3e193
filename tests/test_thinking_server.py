"""The real llama-server streams SmolLM2's thinking in `reasoning_content`: illume's buffer, exact against its own answer.

SmolLM2 is no thinking model, and its chat template opens no `<think>`
block. A template of the same ChatML whose assistant turn opens one, as
Qwen3's and DeepSeek-R1's thinking templates do, given with
`--chat-template-file`, has llama-server (by its default
`--reasoning-format`) read the template's thinking markers and stream the
reply up to `</think>` as `reasoning_content`. A grammar makes the model
close the block and answer, so both parts are there; without one it thinks
until the token limit. With `--reasoning-format none` the server leaves the
model's own `<think>` lines in the content, as the original expects.

Each test compares illume's buffer with the server's own answer to the
same request, not streamed (`message.reasoning_content`, `message.content`).
"""

import json
import re

import pytest

from conftest import LIMIT_NOTE, ask_llama_cpp, ask_llama_server, run_illume, start_llama_server, stop

ASSISTANT = "\n\n!assistant\n\n"

# ChatML, as SmolLM2's own template; the assistant turn opens a <think> block (`enable_thinking`, as Qwen3's).
OPENING_TEMPLATE = """\
{%- for message in messages -%}
{%- if message.role == 'assistant' -%}
{{- '<|im_start|>assistant\\n' -}}
{%- if message.reasoning_content is defined and message.reasoning_content -%}
{{- '<think>\\n' + message.reasoning_content + '\\n</think>\\n\\n' -}}
{%- endif -%}
{{- message.content + '<|im_end|>\\n' -}}
{%- else -%}
{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|im_start|>assistant\\n' -}}
{%- if enable_thinking is defined and enable_thinking is false -%}
{{- '<think>\\n\\n</think>\\n\\n' -}}
{%- else -%}
{{- '<think>\\n' -}}
{%- endif -%}
{%- endif -%}
"""

# The same whose assistant turn opens no block (Qwen3's own when thinking): the model writes the whole block.
PLAIN_TEMPLATE = OPENING_TEMPLATE.replace("{%- else -%}\n{{- '<think>\\n' -}}\n", "")
assert PLAIN_TEMPLATE != OPENING_TEMPLATE

# Thoughts, the end of the block, an answer: what a thinking model writes once its template opened the block.
THINK_THEN_ANSWER = 'root ::= [a-z ]{8,40} "\\n</think>\\n\\n" [a-z ]{8,40}'
# The whole block written by the model itself, as Qwen3 does when its template opens none.
WHOLE_BLOCK = 'root ::= "<think>\\n" [a-z ]{8,40} "\\n</think>\\n\\n" [a-z ]{8,40}'

THINKING_PROFILES = ["qwen3-think", "deepseek-r1", "qwq", "gpt-oss"]


def serve(tmp_path_factory, text: str, *flags: str):
    template = tmp_path_factory.mktemp("template") / "thinking.jinja"
    template.write_text(text)
    return start_llama_server("--jinja", "--chat-template-file", str(template), *flags, parallel=1)


@pytest.fixture(scope="module")
def parsing_server(tmp_path_factory):
    """llama-server with its default reasoning format: thinking comes in `reasoning_content`."""
    process, url, _ = serve(tmp_path_factory, OPENING_TEMPLATE)
    try:
        yield url
    finally:
        stop(process)


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory):
    """llama-server with `--reasoning-format none`: the model's `<think>` lines stay in the content."""
    process, url, _ = serve(tmp_path_factory, PLAIN_TEMPLATE, "--reasoning-format", "none")
    try:
        yield url
    finally:
        stop(process)


def buffer(url: str, grammar: str | None = None, lines: str = "", max_tokens: int = 48) -> str:
    keys = f"!:temperature 0\n!:seed 1\n!:max_tokens {max_tokens}\n"
    if grammar:
        keys += f"!:grammar {json.dumps(grammar)}\n"
    return f"{lines}!api {url}\n{keys}!user\nSay hi.\n"


def message(text: str) -> dict:
    """Return the server's own answer (`message`, `finish_reason`, `usage`) to BUFFER's request, not streamed."""
    whole = ask_llama_server(text).whole
    choice = whole["choices"][0]
    return {**choice["message"], "finish_reason": choice["finish_reason"], "usage": whole["usage"]}


def sent_messages(text: str) -> list:
    """Return the messages the buffer TEXT sends (its dry run), the system prompt left out."""
    dry = run_illume(text, "--debug")
    assert dry.returncode == 0, dry.stdout
    return [m for m in json.loads(dry.stdout.decode().split("\n\n", 3)[2])["messages"] if m["role"] != "system"]


def test_thinking_then_answer_exact_against_the_server(parsing_server):
    text = buffer(parsing_server, THINK_THEN_ANSWER)
    answer = message(text)
    assert answer["reasoning_content"].strip() and answer["content"].strip(), answer  # both parts, or no test
    done = run_illume(text)
    assert done.returncode == 0, done.stdout
    assert done.stdout.decode() == (ASSISTANT + "!exclude think\n<think>\n" + answer["reasoning_content"]
                                    + "\n</think>\n\n" + answer["content"])
    # The next turn sends the answer and leaves the thinking out.
    assert sent_messages(text + done.stdout.decode() + "\n!user\nAnd?\n")[-2:] == [
        {"role": "assistant", "content": answer["content"].strip("\r\n")}, {"role": "user", "content": "And?"}]


def test_thinking_cut_at_the_token_limit_exact_against_the_server(parsing_server):
    text = buffer(parsing_server, max_tokens=12)
    answer = message(text)
    assert answer["finish_reason"] == "length" and answer["reasoning_content"] and not answer["content"], answer
    done = run_illume(text)
    assert done.returncode == 0, done.stdout
    assert done.stdout.decode() == (ASSISTANT + "!exclude think\n<think>\n" + answer["reasoning_content"]
                                    + "\n</think>" + LIMIT_NOTE)
    assert sent_messages(text + done.stdout.decode() + "\n!user\nAnd?\n")[-2:] == [
        {"role": "user", "content": "Say hi."}, {"role": "user", "content": "And?"}]


def test_stats_reports_the_server_own_counts(parsing_server):
    text = buffer(parsing_server, THINK_THEN_ANSWER, lines="!stats usage\n")
    answer = message(text)
    done = run_illume(text)
    assert done.returncode == 0, done.stdout
    last = done.stdout.decode().rsplit("\n\n", 1)[1]
    prompt, cached, reply = (int(n) for n in re.fullmatch(
        r"!note used (\d+) prompt tokens \((\d+) cached\), (\d+) reply tokens", last).groups())
    # The same prompt and the same reply as the server's own answer; how much came from its cache varies.
    assert (prompt, reply) == (answer["usage"]["prompt_tokens"], answer["usage"]["completion_tokens"])
    assert 0 <= cached < prompt


@pytest.mark.parametrize("profile", THINKING_PROFILES)
def test_thinking_profiles_on_the_default_reasoning_format(parsing_server, profile):
    text = buffer(parsing_server, THINK_THEN_ANSWER, lines=f"!profile {profile}\n")
    answer = message(text)
    done = run_illume(text)
    assert done.returncode == 0, done.stdout
    # The profile's own `!exclude think` holds: illume writes none.
    assert done.stdout.decode() == (ASSISTANT + "<think>\n" + answer["reasoning_content"] + "\n</think>\n\n"
                                    + answer["content"])
    assert sent_messages(text + done.stdout.decode() + "\n!user\nAnd?\n")[-2]["content"] == answer["content"].strip("\r\n")


@pytest.mark.parametrize("profile", THINKING_PROFILES)
def test_thinking_profiles_with_reasoning_format_none(plain_server, profile):
    text = buffer(plain_server, WHOLE_BLOCK, lines=f"!profile {profile}\n", max_tokens=120)
    answer = message(text)
    assert "reasoning_content" not in answer and answer["content"].startswith("<think>\n"), answer
    assert answer["finish_reason"] == "stop", answer
    done = run_illume(text)
    assert done.returncode == 0, done.stdout
    assert done.stdout.decode() == ASSISTANT + answer["content"]
    thought, _, reply = answer["content"].partition("\n</think>\n")
    assert sent_messages(text + done.stdout.decode() + "\n!user\nAnd?\n")[-2]["content"] == reply.strip("\r\n")


def test_enable_thinking_false_turns_it_off(parsing_server):
    # docs/wire.md's key for llama-server: the template closes the block itself, and the model only answers.
    text = buffer(parsing_server, lines='!:chat_template_kwargs {"enable_thinking": false}\n', max_tokens=12)
    answer = message(text)
    assert not answer.get("reasoning_content") and answer["content"], answer
    done = run_illume(text)
    assert done.returncode == 0, done.stdout
    assert done.stdout.decode() == ASSISTANT + answer["content"] + (LIMIT_NOTE if answer["finish_reason"] == "length"
                                                                     else "")


@pytest.mark.parametrize("max_tokens, question", [(8, "Say hi."), (200, "Say just the word yes.")],
                         ids=["at the token limit", "at the end of text"])
def test_stats_reports_the_embedded_backend_own_counts(max_tokens, question):
    text = f"!profile embedded\n!:temperature 0\n!:seed 1\n!:max_tokens {max_tokens}\n!stats usage\n!user\n{question}\n"
    answer = ask_llama_cpp(text)
    assert answer.limit == (max_tokens == 8), answer.whole  # both endings, or the test misses one
    done = run_illume(text)
    assert done.returncode == 0, done.stdout
    last = done.stdout.decode().rsplit("\n\n", 1)[1]
    usage = answer.whole["usage"]
    assert re.fullmatch(rf"!note used {usage['prompt_tokens']} prompt tokens \(\d+ cached\), "
                        rf"{usage['completion_tokens']} reply tokens", last), (last, usage)
