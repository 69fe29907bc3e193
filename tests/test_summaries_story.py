"""A text several times the context goes on turn after turn with `!fit summarize` (`--filter`), on the real
llama-server (SmolLM2, a 512-token slot) and on the embedded model.

The text nobody here wrote: Newton's Opticks (1730, public domain, from
Project Gutenberg; tests/data/opticks.txt); each proposition is a
chapter, cut to some 200 tokens so that the suite stays short. Each turn
pastes the next chapter as a user message and runs `illume --filter`: the
buffer comes back with the summaries illume inserted, then the reply.
Every turn checks that nothing of the buffer was lost, that the request
(the dry run of the buffer as it came back, which `!fit` then sends
unchanged) fits the context with room for the reply, counted by the
model's own tokenizer, holds every summary and the current chapter whole,
and that the reply is the model's own answer to it.
"""

import json
import re

import pytest

from conftest import SMALL_CONTEXT, ask_llama_cpp, ask_llama_server, run_illume
from texts import opticks

CONTEXT = SMALL_CONTEXT
TURNS = 6
SETTINGS = "!:temperature 0\n!:seed 1\n!:max_tokens 16\n!fit summarize\n!summarize story\n" \
           "You continue a treatise on light.\n"
ROLE = re.compile(r"^!(user|assistant|summary)\b.*$", re.MULTILINE)


def without_summaries(text: str) -> str:
    """Return TEXT less its `!summary` blocks (each from its line to the next role line)."""
    kept, skipping = [], False
    for line in text.split("\n"):
        if ROLE.match(line):
            skipping = line.startswith("!summary")
        if not skipping:
            kept.append(line)
    return "\n".join(kept)


def summaries_of(text: str) -> list[tuple[str, str]]:
    """Return the (line, text) of each `!summary` block in TEXT."""
    found = []
    for match in re.finditer(r"^(!summary[^\n]*)\n(.*?)(?=^!(?:user|assistant|summary)\b)", text + "\n!user",
                             re.MULTILINE | re.DOTALL):
        body = "\n".join(line for line in match.group(2).split("\n") if not line.startswith("!note"))
        found.append((match.group(1), body.strip("\n")))
    return found


def continue_story(head: str, count, ask) -> str:
    """Run the turns on the buffer that starts with HEAD; COUNT(body, dry output) is the prompt's tokens."""
    buffer = head + SETTINGS
    for number, chapter in enumerate(opticks(TURNS, 800), 1):
        buffer += f"!user\n{chapter}\n"
        done = run_illume(buffer, "--filter", timeout=600)
        assert done.returncode == 0, done.stdout[-2000:]
        out = done.stdout.decode()
        sent, _, reply = out.rpartition("\n\n!assistant\n\n")
        # Not a word lost: the buffer came back whole, summaries inserted.
        assert without_summaries(sent).rstrip("\n") == without_summaries(buffer).rstrip("\n"), number
        assert "!note the summary" not in out and "left out" not in reply
        dry = run_illume(sent + "\n!debug tokens\n")
        assert dry.returncode == 0, dry.stdout
        body = json.loads(dry.stdout.decode().split("\n\n", 3)[2])
        assert count(body, dry.stdout) + body["max_tokens"] <= CONTEXT, number
        messages = body["messages"]
        assert messages[-1] == {"role": "user", "content": chapter}
        system = messages[0]["content"]
        blocks = summaries_of(sent)
        alls = [i for i, (line, _) in enumerate(blocks) if line.startswith("!summary all")]
        live = [text for _, text in blocks[alls[-1] if alls else 0 :]]  # an `all` one covers those before it
        assert system.endswith("\n\n".join(live)) and (not live or "!summary" not in system), number
        assert ask(sent).printed() == reply.encode(), number
        buffer = out + "\n"
    written = summaries_of(buffer)
    assert len(written) >= 2
    assert all(re.fullmatch(r"!summary (all )?#[0-9a-f]{8}", line) for line, _ in written)
    return buffer


def total_of(stdout: bytes) -> int:
    return int(re.search(rb"!note total: ([\d,]+) tokens", stdout).group(1).replace(b",", b""))


@pytest.mark.server
def test_a_long_text_goes_on_with_summaries_on_llama_server(small_server):
    import httpx

    def count(body, dry):
        # The server's own count of the very request (as test_fit checks it), and `!debug tokens` agrees.
        answer = httpx.post(small_server + "v1/chat/completions", json=dict(body, stream=False, max_tokens=1),
                            timeout=300).json()
        assert answer["usage"]["prompt_tokens"] == total_of(dry)
        return answer["usage"]["prompt_tokens"]

    buffer = continue_story(f"!api {small_server}\n", count, ask_llama_server)
    whole = httpx.post(small_server + "tokenize", json={"content": without_summaries(buffer)}).json()["tokens"]
    assert len(whole) > 2 * CONTEXT  # the text is several times the context


@pytest.mark.embedded
def test_a_long_text_goes_on_with_summaries_on_the_embedded_model():
    continue_story(f"!profile embedded\n!:n_ctx {CONTEXT}\n", lambda body, dry: total_of(dry), ask_llama_cpp)


@pytest.mark.server
def test_in_a_plain_pipe_the_error_says_what_to_run(small_server):
    buffer = f"!api {small_server}\n" + SETTINGS \
        + "".join(f"!user\n{c}\n!assistant\nYes.\n" for c in opticks(TURNS, 800)) \
        + "!user\nGo on.\n"
    done = run_illume(buffer)
    assert done.returncode == 1
    assert re.fullmatch(rb"\n\n!error\n\nthe prompt is [\d,]+ tokens, the context 512 less 16 for the reply: "
                        rb"!fit summarize must first summarise lines 8-\d+, and illume only appends here; run "
                        rb"`illume --filter` on the buffer \(it inserts the !summary block at line \d+\), or use "
                        rb"!fit alone to leave them out\n", done.stdout), done.stdout
