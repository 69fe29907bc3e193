"""Token counts per part and `!fit`'s plan (illume.tokens), on tokenizers given as tables.

The end-to-end tests against a real llama-server and the embedded model are
in tests/test_fit.py.
"""

import pytest

from illume import tokens
from illume.tokens import Count, MessageCount


class Table:
    """A tokenizer that splits at spaces, keeping each space with the word after it; <s> and <t> are special."""

    def __init__(self, bos: bytes = b""):
        self.bos = bos

    def render(self, messages, body):
        return "".join(f"<t>{m['role']}\n{m['content']}<t>\n" for m in messages) + "<t>assistant\n"

    def pieces(self, text, special=True):
        import re

        found = [p.encode() for p in re.findall(r"<t>|\n| ?[^ \n<]+|<", text)]
        return ([self.bos] if special and self.bos else []) + found


@pytest.mark.parametrize("data, pieces, expected", [
    (b"ab cd", [b"ab", b" cd"], [0, 2]),
    (b"ab cd", [b"<s>", b"ab", b" cd"], [0, 0, 2]),  # BOS takes no text
    (b"ab", [b" ab"], [0]),  # a SentencePiece space prefix
    (b"ab cd", [b"ab", b" c"], None),  # the pieces stop short
    (b"ab cd", [b"ab", b"x", b" cd"], None),  # a piece out of place
    (b"ab", [b"ab", b"</s>"], [0, 2]),  # EOS takes no text
])
def test_align(data, pieces, expected):
    assert tokens.align(data, pieces) == expected


def test_count_lays_each_token_on_its_part():
    messages = [{"role": "system", "content": "be brief"},
                {"role": "user", "content": "read **`a.sql`**\nselect 1 from t\n"},
                {"role": "assistant", "content": "ok"}]
    files = [(), ({"filename": "a.sql", "text": "select 1 from t\n"},), ()]
    count = tokens.count(Table(bos=b"<s>"), messages, files, {"max_tokens": 10}, 100)
    system, user, assistant = count.messages
    assert (system.tokens, user.tokens, assistant.tokens) == (2, 8, 1)
    assert user.files == [("a.sql", 5)]  # "select", " 1", " from", " t", "\n"
    # BOS, then "<t>", "system", "\n" and closing "<t>", "\n" per message, and the assistant header: 1 + 3 * 5 + 3.
    assert count.template == 19
    assert count.total == len(Table(bos=b"<s>").pieces(Table().render(messages, {}))) == 30
    # A message's cost: its own tokens and the template's between the previous message's end and its own.
    assert [m.cost for m in count.messages] == [1 + 3 + 2, 2 + 3 + 8, 2 + 3 + 1]
    assert (count.budget, count.fits()) == (90, True)


def test_count_without_alignment_counts_each_part_alone():
    class Shifted(Table):
        def pieces(self, text, special=True):
            found = super().pieces(text, special)
            return found[:2] + [b"!"] + found[2:] if special else found  # a piece that is not in the text

    count = tokens.count(Shifted(), [{"role": "user", "content": "a b c"}], [()], {}, 50)
    assert [m.tokens for m in count.messages] == [3]
    assert count.total == 3 + 8 + 1  # the text, the template, the stray piece


@pytest.mark.parametrize("body, context, expected", [
    ({"max_tokens": 64}, 512, (64, "max_tokens")),
    ({"n_predict": 10}, 512, (10, "n_predict")),
    ({"max_tokens": -1}, 512, (128, "a reserve, max_tokens being unlimited")),
    ({}, 512, (128, "a reserve, max_tokens being unlimited")),
    ({}, None, (None, "a reserve")),
])
def test_reply_room(body, context, expected):
    assert tokens.reply_room(body, context) == expected


SYS, U, A = "system", "user", "assistant"


@pytest.mark.parametrize("costs, roles, total, budget, expected", [
    ([5, 10, 10, 10, 10], [SYS, U, A, U, A], 50, 100, range(1, 1)),  # it fits: nothing goes
    ([5, 10, 10, 10, 10, 7], [SYS, U, A, U, A, U], 57, 40, range(1, 3)),  # oldest first, the system prompt stays
    ([5, 10, 10, 10, 10, 7], [SYS, U, A, U, A, U], 57, 50, range(1, 3)),  # a question gone, its answer goes too
    ([10, 10, 10, 10, 7], [U, A, U, A, U], 47, 30, range(0, 2)),  # no system prompt: the first message may go
    ([5, 10, 10, 10, 10, 7], [SYS, U, A, U, A, U], 57, 17, range(1, 5)),  # only the system prompt and the last
    ([5, 10, 10, 7, 9], [SYS, U, A, U, A], 41, 21, range(1, 3)),  # an assistant after the last user stays
    ([5, 10, 20, 10, 7], [SYS, U, A, A, U], 52, 41, range(1, 4)),  # a kept conversation starts with the user
])
def test_plan(costs, roles, total, budget, expected):
    assert tokens.plan(costs, roles, total, budget) == expected


def test_plan_too_long_even_cut():
    with pytest.raises(tokens.TooLong):
        tokens.plan([5, 10, 10, 100], [SYS, U, A, U], 125, 100)


def _count():
    messages = [MessageCount(1, "system", 12, [], 15),
                MessageCount(2, "user", 900, [("schema.sql", 870)], 904),
                MessageCount(3, "assistant", 1300, [], 1304),
                MessageCount(4, "user", 16000, [("dump.txt", 12870), ("notes.md", 30)], 16004)]
    return Count(18230, messages, 4096, 2000)


def test_too_long_names_the_biggest_parts():
    assert tokens.too_long(_count()) == ("the prompt is 18,230 tokens, the context 4,096: dump.txt 12,870 in message 4, "
                                         "message 4 (user) less its files 3,100, message 3 (assistant) 1,300")


def test_too_long_with_the_reply_room():
    count = Count(3000, [MessageCount(1, "user", 2990, [], 2995)], 4096, 2000)
    assert tokens.too_long(count) == ("the prompt is 3,000 tokens, the context 4,096 less 2,000 for the reply "
                                      "(max_tokens): message 1 (user) 2,990, the chat template 10")


def test_too_long_when_the_reply_takes_the_whole_context():
    count = Count(30, [MessageCount(1, "user", 20, [], 25)], 512, 2000)
    assert tokens.too_long(count) == ("the prompt is 30 tokens, the context 512 less 2,000 for the reply "
                                      "(max_tokens): message 1 (user) 20, the chat template 10; max_tokens leaves "
                                      "the prompt no room (lower !:max_tokens)")


def test_breakdown():
    assert tokens.breakdown(_count()) == (
        "!note the system prompt: 12 tokens\n"
        "!note message 2 (user): 900 tokens, of which schema.sql 870\n"
        "!note message 3 (assistant): 1,300 tokens\n"
        "!note message 4 (user): 16,000 tokens, of which dump.txt 12,870, notes.md 30\n"
        "!note the chat template: 18 tokens\n"
        "!note total: 18,230 tokens of a context of 4,096, 2,000 kept for the reply (max_tokens): 16,134 too many\n")


def test_breakdown_that_fits_and_a_completion_prompt():
    count = Count(40, [MessageCount(1, "prompt", 40, [("a.py", 30)], 40)], 512, 64)
    assert tokens.breakdown(count) == (
        "!note the prompt: 40 tokens, of which a.py 30\n"
        "!note total: 40 tokens of a context of 512, 64 kept for the reply (max_tokens): fits, 408 to spare\n")


@pytest.mark.parametrize("dropped, expected", [
    (range(1, 7), "\n\n!note left out messages 2-7, 3,120 tokens, to fit 4,096"),
    (range(1, 2), "\n\n!note left out message 2, 3,120 tokens, to fit 4,096"),
])
def test_left_out_note(dropped, expected):
    assert tokens.left_out_note(dropped, 3120, 4096) == expected


def test_each_message_keeps_its_context_files(tmp_path):
    from illume import buffer as buf

    (tmp_path / "a.sql").write_text("select 1;\n")
    (tmp_path / "b.py").write_text("x = 1\n")
    text = (f"Be brief.\n!context {tmp_path / 'a.sql'}\n!user\nHi\n!assistant\nHello\n"
            f"!user\n!context {tmp_path / 'b.py'}\n!context {tmp_path / 'a.sql'}\nAnd these?\n!fit\n!debug tokens\n")
    parsed = buf.parse(text, buf.Sources({"HOME": str(tmp_path)}), default_profile="llama.cpp")
    assert [[f["filename"] for f in m.files] for m in parsed.messages] == [
        [str(tmp_path / "a.sql")], [], [], [str(tmp_path / "b.py"), str(tmp_path / "a.sql")]]
    assert parsed.messages[3].files[0]["text"] == "x = 1\n"
    assert (parsed.fit, parsed.debug, parsed.debug_tokens) == (True, True, True)


@pytest.mark.parametrize("line, tokens_asked", [("!debug", False), ("!debug tokens", True), ("!debug  tokens ", True),
                                               ("!debug other", False)])
def test_debug_tokens_is_asked_for_by_name(line, tokens_asked):
    from illume import buffer as buf

    parsed = buf.parse(f"{line}\n!user\nHi\n", buf.Sources({}), default_profile="llama.cpp")
    assert (parsed.debug, parsed.debug_tokens) == (True, tokens_asked)
