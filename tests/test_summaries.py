"""Summaries in the buffer (`!summary`, `!summarize`, `--summarize`): the exact request, through the CLI.

Each test runs the real CLI as a subprocess and reads the dry run (`--debug`)
or what a real llama-server on SmolLM2 made of the buffer; the expected
messages are written out whole.
"""

import json
import re

import pytest

from conftest import ask_llama_server, placed_by_filter, run_illume
from texts import outgrown_story

HEAD = "!api http://127.0.0.1:9/\n"


def sent(buffer: str, *args: str) -> tuple[list, bytes]:
    """Return the messages of BUFFER's dry run and what it printed after the request."""
    done = run_illume(HEAD + buffer, "--debug", *args)
    assert done.returncode == 0, done.stdout
    _, _, body, rest = done.stdout.decode().split("\n\n", 3)
    return json.loads(body)["messages"], rest.encode()


def roles(*pairs):
    return [{"role": role, "content": content} for role, content in pairs]


STORY = """You tell stories.
!user
Chapter one.
!assistant
Anna found a key in the snow.
!summary
Anna found a key.
!user
Chapter two.
!assistant
The key opened the old mill.
"""


def test_one_summary_stands_in_for_the_messages_above_it():
    messages, rest = sent(STORY + "!user\nChapter three.\n")
    assert messages == roles(("system", "You tell stories.\n\nAnna found a key."), ("user", "Chapter two."),
                             ("assistant", "The key opened the old mill."), ("user", "Chapter three."))
    assert rest == b""


def test_several_summaries_each_cover_back_to_the_previous_one():
    buffer = STORY + "!summary\nThe key opened the mill.\n!user\nChapter three.\n"
    messages, _ = sent(buffer)
    assert messages == roles(("system", "You tell stories.\n\nAnna found a key.\n\nThe key opened the mill."),
                             ("user", "Chapter three."))


def test_a_summary_of_summaries_covers_the_summaries_above_it():
    buffer = STORY + "!summary\nThe key opened the mill.\n!user\nChapter three.\n!assistant\nThe mill burned.\n" \
        "!summary all\nAnna's key opened a mill that burned.\n!user\nChapter four.\n"
    messages, _ = sent(buffer)
    assert messages == roles(("system", "You tell stories.\n\nAnna's key opened a mill that burned."),
                             ("user", "Chapter four."))


def test_without_a_system_prompt_the_summaries_make_one():
    messages, _ = sent("!profile embedded\n!api http://127.0.0.1:9/\n!user\nHi.\n!assistant\nHello.\n"
                       "!summary\nThey greeted.\n!user\nHow are you?\n")
    assert messages == roles(("system", "They greeted."), ("user", "How are you?"))


def test_the_default_profiles_system_prompt_stays_above_the_summaries():
    done = run_illume("!user\nHi.\n!assistant\nHello.\n!summary\nThey greeted.\n!user\nAnd?\n", "--debug",
                      env={"ILLUME_PROFILE": "qwen3"})
    body = json.loads(done.stdout.decode().split("\n\n", 3)[2])
    assert body["messages"] == roles(("system", "/no_think\n\nThey greeted."), ("user", "And?"))


def test_the_same_buffer_gives_the_same_request():
    first = run_illume(HEAD + STORY, "--debug").stdout
    assert run_illume(HEAD + STORY, "--debug").stdout == first


def test_excluded_lines_and_begin_work_with_summaries():
    buffer = "!exclude think\nOld.\n!user\nGone.\n!summary\nGone too.\n!begin\nSystem.\n!user\nOne.\n" \
             "!assistant\n<think>\nhidden\n</think>\nTwo.\n!summary\nOne, two.\n!user\nThree.\n"
    messages, _ = sent(buffer)
    assert messages == roles(("system", "System.\n\nOne, two."), ("user", "Three."))


def test_an_empty_summary_covers_nothing():
    messages, _ = sent("!user\nOne.\n!summary\n\n!user\nTwo.\n")
    assert [m["content"] for m in messages[-2:]] == ["One.", "Two."]


# The real server's settings: its prompt cache off, as a prompt evaluated partly from the cache may give
# llama-server other logits, so another reply at temperature 0, than the oracle's own request evaluated whole.
SETTINGS = "!:temperature 0\n!:seed 1\n!:cache_prompt false\n"


# --- checksums and stale summaries --------------------------------------

def written(covered_buffer: str) -> str:
    """Return the checksum illume writes for a summary at the end of COVERED_BUFFER (its own dry run)."""
    from illume.buffer import Message
    from illume.summary_blocks import checksum

    # The covered messages as the dry run of `!summarize` sends them: those after the system prompt, the last
    # one less the instruction (a preset's, one paragraph) that ends it or follows it.
    done = run_illume(HEAD + covered_buffer + "!summarize\n", "--debug")
    messages = json.loads(done.stdout.decode().split("\n\n", 3)[2])["messages"]
    covered = [Message(m["role"], m["content"]) for m in messages if m["role"] != "system"]
    text, joined, _ = covered[-1].content.rpartition("\n\n")
    covered[-1:] = [Message("user", text)] if joined else []
    return checksum(covered)


def test_a_summary_whose_covered_text_changed_gets_a_note():
    covered = "System.\n!user\nOne.\n!assistant\nTwo.\n"
    mark = written(covered)
    fresh = covered + f"!summary {mark}\nOne, two.\n!user\nThree.\n"
    messages, rest = sent(fresh)
    assert rest == b""  # fresh: no note
    assert messages[0]["content"] == "System.\n\nOne, two."
    _, rest = sent(fresh.replace("Two.", "Twenty."))
    assert rest == (f"!note the summary at line 7 is stale: the text it covers (lines 3-6) changed after it "
                    f"was written; write it again (!summarize), or edit it and delete its {mark}\n").encode()


def test_a_hand_written_summary_is_trusted_as_it_is():
    _, rest = sent("!user\nOne.\n!summary\nNot what it says.\n!user\nTwo.\n")
    assert b"!note" not in rest


def test_a_summary_of_summaries_goes_stale_when_a_summary_it_covers_changes():
    buffer = "!user\nOne.\n!summary\nS1.\n!user\nTwo.\n"
    from illume.buffer import Message
    from illume.summary_blocks import Summary, checksum

    mark = checksum([Summary("S1.", 4, False, None, []), Message("user", "Two.")])
    _, rest = sent(buffer + f"!summary all {mark}\nAll.\n!user\nThree.\n")
    assert b"!note" not in rest
    _, rest = sent(buffer.replace("S1.", "S1, edited.") + f"!summary all {mark}\nAll.\n!user\nThree.\n")
    assert b"!note the summary at line 8 is stale: the text it covers (lines 2-7)" in rest


@pytest.mark.parametrize("line, message", [
    ("!summary nonsense", "<stdin>:4: !summary: unexpected 'nonsense'"),
    ("!summary #xyz", "<stdin>:4: !summary: unexpected '#xyz'"),
])
def test_a_summary_line_with_other_words_is_an_error(line, message):
    done = run_illume(HEAD + f"!user\nOne.\n{line}\nS.\n", "--debug")
    assert done.returncode == 1
    assert message.encode() in done.stdout


def test_a_summary_in_completion_mode_is_an_error():
    done = run_illume(HEAD + "!completion\nOnce.\n!summary\nS.\n", "--debug")
    assert done.returncode == 1
    assert b"<stdin>:4: !summary: summaries stand in for messages of a chat" in done.stdout


# --- asking for a summary -----------------------------------------------

def instruction(kind: str, scope: str) -> str:
    """Return a preset's instruction, KIND "story" or "chat", for a summary of SCOPE, written out whole."""
    if kind == "chat":
        return (f"Pause the conversation here. Write a summary of the conversation{scope}, so that it can go on "
                "without its text: what was asked, the answers and decisions reached, the facts, names, numbers "
                "and code identifiers that matter, and what is still open. At most 200 words. Write nothing but "
                "the summary.")
    return (f"Pause the story here. Write a summary of the story{scope}, for the writer who will continue it without "
            "the text: what happens, in order; every named character, who they are and what they want; the places, "
            "objects and promises that matter later; and where it stops. Plain prose, past tense, at most 200 "
            "words. Write nothing but the summary.")


SINCE = " since the summaries in the system prompt (they cover what came before: do not repeat them)"


def test_summarize_asks_the_chat_itself_then_the_instruction():
    # The turn before's own messages come first, so that a prompt cache holding that turn keeps hitting.
    messages, rest = sent(STORY + "!summarize\n")
    assert messages == roles(("system", "You tell stories.\n\nAnna found a key."), ("user", "Chapter two."),
                             ("assistant", "The key opened the old mill."), ("user", instruction("chat", SINCE)))
    assert messages[:-1] == sent(STORY)[0]
    assert rest == b""
    assert sent(STORY, "--summarize") == (messages, rest)


def test_after_a_user_message_the_instruction_joins_it():
    # Two user messages in a row: chat templates that want the roles to alternate (Gemma's) refuse them.
    messages, _ = sent("!user\nChapter one.\n!summarize story\n")
    assert messages == roles(("user", "Chapter one.\n\n" + instruction("story", " so far")))


def test_summarize_all_takes_in_the_summaries():
    messages, _ = sent(STORY + "!summarize all story\n")
    assert messages[:-1] == sent(STORY)[0]
    assert messages[-1] == {"role": "user",
                            "content": instruction("story", " so far, the summaries in the system prompt included")}


def test_the_instruction_comes_from_the_last_summarize_line_a_profile_included(tmp_path):
    profile = tmp_path / "mine.profile"
    profile.write_text("!api http://127.0.0.1:9/\n!summarize Say it in one line.\n")
    messages, _ = sent(f"!profile {profile}\n!user\nHi.\n!assistant\nHello.\n!summarize\n")
    assert messages == roles(("user", "Hi."), ("assistant", "Hello."), ("user", "Say it in one line."))


def test_summarize_is_a_request_only_as_the_last_directive():
    messages, _ = sent("!user\nHi.\n!summarize\n!user\nAnd?\n")
    assert messages[-1] == {"role": "user", "content": "And?"}


def test_nothing_to_summarize_is_an_error():
    done = run_illume(HEAD + STORY + "!summary\nS.\n!summarize\n", "--debug")
    assert done.returncode == 1
    assert b"!summarize: nothing to summarise since the last summary" in done.stdout


def test_a_summary_is_written_in_a_pipe_as_the_model_wrote_it(llama_server):
    buffer = f"!api {llama_server}\n{SETTINGS}!:max_tokens 40\n" + STORY
    expected = ask_llama_server(buffer + "!summarize\n")
    mark = written(STORY)
    done = run_illume(buffer + "!summarize\n")
    assert done.returncode == 0, done.stdout
    assert done.stdout == f"\n\n!summary {mark}\n\n".encode() + expected.printed()
    # The block, appended, stands in for chapter two, and is fresh.
    after = buffer + "!summarize\n" + done.stdout.decode() + "\n!user\nChapter three.\n"
    dry = run_illume(after, "--debug")
    body = json.loads(dry.stdout.decode().split("\n\n", 3)[2])
    assert body["messages"][0]["content"].startswith("You tell stories.\n\nAnna found a key.\n\n")
    assert body["messages"][1:] == roles(("user", "Chapter three."))
    assert b"!note" not in dry.stdout.split(b"\n\n", 3)[3]


def test_a_summary_is_written_after_the_buffer_in_filter_mode(llama_server):
    buffer = f"!api {llama_server}\n{SETTINGS}!:max_tokens 40\n" + STORY
    expected = ask_llama_server(buffer + "!summarize\n")
    done = run_illume(buffer, "--filter", "--summarize")
    assert done.returncode == 0, done.stdout
    assert done.stdout == buffer.encode() + f"\n\n!summary {written(STORY)}\n\n".encode() + expected.printed()


@pytest.mark.embedded
def test_debug_tokens_shows_what_each_summary_covers_and_saves():
    from conftest import embedded_model

    buffer = (f"!profile embedded\n!:model {embedded_model()}\n!:n_ctx 1024\nSys.\n!user\nTell me about the fox.\n"
              "!assistant\nThe fox ran far across the field, and the hound followed it all day long.\n"
              "!summary\nFox chased.\n!user\nMore.\n!assistant\nIt hid.\n!summary all\nAll of it.\n!user\nAnd?\n")
    done = run_illume(buffer + "!debug tokens\n")
    assert done.returncode == 0, done.stdout
    import llama_cpp

    model = llama_cpp.Llama(model_path=str(embedded_model()), vocab_only=True, verbose=False)

    def tokens(text):
        return len(model.tokenize(text.encode(), add_bos=False, special=False))

    first = tokens("Tell me about the fox.") + tokens("The fox ran far across the field, and the hound followed it "
                                                       "all day long.")
    second = tokens("Fox chased.") + tokens("More.") + tokens("It hid.")
    notes = [line for line in done.stdout.decode().split("\n") if line.startswith("!note the summary")]
    assert notes == [
        f"!note the summary at line 9 (within a later summary) covers lines 5-8: {first} tokens as written, "
        f"{tokens('Fox chased.')} as summarised, {first - tokens('Fox chased.')} saved",
        f"!note the summary at line 15 (sent) covers lines 5-14: {second} tokens as written, "
        f"{tokens('All of it.')} as summarised, {second - tokens('All of it.')} saved",
    ]


@pytest.mark.parametrize("tail", ["!user\nHi.\n", "!user\nHi.\n!summary bad\nS.\n"], ids=["unreachable", "bad-line"])
def test_fit_summarize_in_filter_mode_never_loses_the_buffer(tail):
    # The echo waits for a summary that may go into it; an error (no server there, a bad line) still follows it.
    buffer = "!api http://127.0.0.1:9/\n!fit summarize\n" + tail
    done = run_illume(buffer, "--filter")
    assert done.returncode == 1
    assert done.stdout.startswith(buffer.encode() + b"\n\n!error\n\n"), done.stdout


# --- with branches and batch runs ---

SERVER_STORY = SETTINGS + "!:max_tokens 24\n" + STORY


@pytest.mark.server
def test_every_branch_is_asked_with_the_summaries(llama_server):
    buffer = f"!api {llama_server}\n" + SERVER_STORY + "!user\nChapter three.\n"
    answer = ask_llama_server(buffer)
    assert answer.text.strip(), answer.whole
    branched = buffer.replace("!user\nChapter three.", "!branches 2\n!user\nChapter three.")
    dry = run_illume(branched, "--debug")
    body = json.loads(dry.stdout.decode().split("\n\n", 3)[2])
    assert body["n"] == 2
    assert body["messages"][0]["content"] == "You tell stories.\n\nAnna found a key."
    assert body["messages"][1:] == roles(("user", "Chapter two."), ("assistant", "The key opened the old mill."),
                                         ("user", "Chapter three."))
    done = run_illume(branched)
    assert done.returncode == 0, done.stdout
    assert done.stdout == b"".join(f"\n\n!note branch {k} of 2".encode() + answer.printed("\n\n!assistant\n\n")
                                   for k in (1, 2))


@pytest.mark.server
def test_a_batch_run_answers_and_summarises_summarised_stories(llama_server, tmp_path):
    # Each file gets what the plain filter would append: the model's own answer to its summarised request.
    stories = {f"story{i}.txt": f"!api {llama_server}\n" + SERVER_STORY.replace("Chapter two.", f"Chapter {i}.")
               for i in (2, 3)}
    for name, text in stories.items():
        (tmp_path / name).write_text(text + "!user\nGo on.\n")
    done = run_illume(b"", "--batch", *(str(tmp_path / name) for name in stories), timeout=300)
    assert done.returncode == 0, done.stderr
    for name, text in stories.items():
        answer = ask_llama_server(text + "!user\nGo on.\n")
        assert answer.text.strip(), answer.whole
        assert (tmp_path / name).read_bytes() == (text + "!user\nGo on.\n").encode() \
            + answer.printed("\n\n!assistant\n\n")
    # `--batch --summarize`: a !summary block appended to each, of the chapter since its summary.
    for name, text in stories.items():
        (tmp_path / name).write_text(text)
    done = run_illume(b"", "--batch", "--summarize", *(str(tmp_path / name) for name in stories), timeout=300)
    assert done.returncode == 0, done.stderr
    for name, text in stories.items():
        answer = ask_llama_server(text + "!summarize\n")
        assert answer.text.strip(), answer.whole
        assert (tmp_path / name).read_bytes() == text.encode() \
            + f"\n\n!summary {written(text)}\n\n".encode() + answer.printed()


@pytest.mark.embedded
@pytest.mark.parametrize("setting", ["!fit summarize\n!summarize story\nYou tell stories.\n", "!profile story\n"],
                         ids=["buffer", "story-profile"])
def test_fit_summarize_summarises_the_summaries_when_they_are_what_is_too_long(setting):
    from conftest import embedded_model

    # Nothing but the summaries can go, so the block is a `!summary all` of them, placed before the chapter, and
    # the reply's request then fits. `!fit summarize` from a profile holds the echo back as the buffer's own does.
    buffer, chapter = outgrown_story(embedded_model(), setting)
    head = buffer[: buffer.index("!user\nChapter four.")]
    done = run_illume(buffer, "--filter")
    assert done.returncode == 0, done.stdout
    sent, _, reply = done.stdout.decode().rpartition("\n\n!assistant\n\n")
    before, block, after = re.split(r"\n(!summary all #[0-9a-f]{8})\n", sent)
    assert before + "\n" == head
    written, _, rest = after.rpartition("\n\n!user\n")
    assert written.strip() and rest == chapter + "\n", after
    dry = run_illume(sent + "\n!debug tokens\n")
    body = json.loads(dry.stdout.decode().split("\n\n", 3)[2])
    assert body["messages"][-1] == {"role": "user", "content": chapter}
    assert "the miller sold" not in body["messages"][0]["content"]
    total = int(re.search(rb"!note total: ([\d,]+) tokens", dry.stdout).group(1).replace(b",", b""))
    assert total + 16 <= 512, dry.stdout
    assert reply.strip()


@pytest.mark.embedded
def test_fit_summarize_says_so_when_even_the_summarys_request_is_too_long():
    from conftest import embedded_model

    long = " ".join(f"In year {i} the miller sold {i * 7} sacks of flour to the town of Avel." for i in range(12))
    buffer = (f"!profile embedded\n!:model {embedded_model()}\n!:n_ctx 512\n!:max_tokens 16\n!fit summarize\n"
              + "".join(f"!user\nPart {k}.\n!assistant\nIt went on.\n!summary\n{long}\n" for k in range(3))
              + "!user\nChapter four.\n")
    done = run_illume(buffer, "--filter")
    assert done.returncode == 1
    assert re.fullmatch(rb"\n\n!error\n\n!fit: the request for the summary does not fit either \(the "
                        rb"prompt is \d+ tokens but the context holds 512\); shorten the summaries above by hand, "
                        rb"or use !fit alone to leave out the oldest messages\n", done.stdout[len(buffer):]), \
        done.stdout[-600:]
    assert done.stdout.startswith(buffer.encode())


@pytest.mark.embedded
def test_for_an_editor_the_blocks_go_to_the_summaries_file_and_the_reply_to_stdout(tmp_path):
    from conftest import embedded_model

    # What `--filter` inserts, an editor gets in the file it names: the line each block goes before, then the
    # blocks; standard output carries the reply alone, as for any turn the editor appends.
    buffer, _ = outgrown_story(embedded_model())
    sent, reply = placed_by_filter(buffer)
    path = tmp_path / "placed"
    done = run_illume(buffer, "--summaries-file", str(path))
    assert done.returncode == 0, done.stdout
    assert done.stdout.decode() == reply
    first, blocks = path.read_text().split("\n", 1)
    (line,) = map(int, first.split())
    assert buffer[: buffer.index("!user\nChapter four.")].count("\n") + 1 == line  # the chapter's !user line
    lines = buffer.split("\n")
    assert "\n".join(lines[: line - 1]) + "\n" + blocks + "\n".join(lines[line - 1 :]) == sent
    assert blocks.startswith("!summary all #")
    # A turn that fits writes no file.
    assert run_illume(buffer.replace("!:n_ctx 512", "!:n_ctx 2048"), "--summaries-file",
                      str(tmp_path / "none")).returncode == 0
    assert not (tmp_path / "none").exists()


@pytest.mark.embedded
def test_a_batch_with_filter_places_the_summaries_as_the_plain_filter_does(tmp_path):
    from conftest import embedded_model

    buffer, _ = outgrown_story(embedded_model())
    sent, reply = placed_by_filter(buffer)
    story = tmp_path / "story.txt"
    story.write_text(buffer)
    done = run_illume(b"", "--batch", "--filter", "-o", str(tmp_path / "out"), str(story), timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "story.txt").read_text() == sent + reply
    assert story.read_text() == buffer
    # An editor's file is for one buffer at a time.
    refused = run_illume(b"", "--batch", "--summaries-file", str(tmp_path / "f"), str(story))
    assert refused.returncode == 2 and b"--summaries-file is an editor's, for one buffer at a time" in refused.stderr
