"""The prompt cache's store (illume/prompt_cache.py): entries, damage, concurrency, eviction, a full disk."""

import multiprocessing
import os
import subprocess
import time
from pathlib import Path

import pytest

from illume import prompt_cache as pc
from illume.errors import SetupError

KEY = bytes(range(16))


CONTEXT_TOKENS = 4096


def cache(tmp_path: Path, limit: int = 10**9, key: bytes = KEY) -> pc.PromptCache:
    return pc.PromptCache(tmp_path, key, limit, CONTEXT_TOKENS)


def entries(c: pc.PromptCache) -> list[str]:
    return sorted(p.name for p in c.dir.iterdir()) if c.dir.exists() else []


def entry_name(tokens) -> str:
    """Return the file name of the entry for TOKENS: a hash of their bytes."""
    return pc.hashlib.sha256(pc._token_bytes(tokens)).hexdigest()[:32] + pc.SUFFIX


def save(c: pc.PromptCache, tokens: list[int], state: bytes) -> str | None:
    """Save STATE for TOKENS in C as the embedded backend does (begin, fill, commit); return its note, if any."""
    try:
        entry = c.begin(tokens, len(state))
    except pc.NotSaved as e:
        return str(e)
    if entry is None:
        return None
    entry.state[:] = state
    return entry.commit()


def test_the_longest_shared_prefix_wins_and_its_state_comes_back(tmp_path):
    c = cache(tmp_path)
    assert save(c, [1, 2, 3], b"state-a") is None
    assert save(c, [1, 2, 9, 9], b"state-b") is None
    found = c.best([1, 2, 9, 9, 5])
    assert (found.tokens, found.common) == ([1, 2, 9, 9], 4)
    assert bytes(c.load(found)) == b"state-b"
    found = c.best([1, 2, 3, 4])
    assert (found.tokens, found.common) == ([1, 2, 3], 3)
    assert bytes(c.load(found)) == b"state-a"
    assert c.best([7, 1, 2]) is None


def test_a_partial_match_still_finds_the_entry(tmp_path):
    # An edited middle message: only the part before the edit is shared.
    c = cache(tmp_path)
    save(c, [1, 2, 3, 4, 5, 6], b"s")
    found = c.best([1, 2, 3, 8, 8])
    assert found.common == 3 and found.tokens == [1, 2, 3, 4, 5, 6]


def test_an_entry_that_begins_a_new_one_is_removed_as_covered(tmp_path):
    c = cache(tmp_path)
    save(c, [1, 2, 3], b"turn one")
    save(c, [5, 6], b"another conversation")
    save(c, [1, 2, 3, 4, 5], b"turn two")
    assert len(entries(c)) == 2
    assert c.best([1, 2, 3]).tokens == [1, 2, 3, 4, 5]
    assert c.best([5, 6, 7]).tokens == [5, 6]


def test_models_do_not_see_each_others_entries(tmp_path):
    save(cache(tmp_path), [1, 2, 3], b"s")
    assert cache(tmp_path, key=b"x" * 16).best([1, 2, 3, 4]) is None


@pytest.mark.parametrize("damage", ["truncated", "flipped state byte", "flipped token", "foreign format",
                                    "foreign magic", "moved from another model", "empty", "header only"])
def test_a_damaged_entry_is_a_miss_and_is_removed(tmp_path, damage):
    c = cache(tmp_path)
    save(c, [1, 2, 3], b"0123456789" * 10)
    path = c.dir / entries(c)[0]
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[:-7]
    elif damage == "flipped state byte":
        data[-5] ^= 0x10
    elif damage == "flipped token":
        data[pc.HEADER.size + 4] ^= 0x01
    elif damage == "foreign format":
        data[8:12] = (pc.FORMAT + 1).to_bytes(4, "little")
    elif damage == "foreign magic":
        data[:8] = b"GGUF\0\0\0\0"
    elif damage == "moved from another model":
        data[12:28] = b"y" * 16
    elif damage == "empty":
        data = b""
    else:
        data = data[:pc.HEADER.size]
    path.write_bytes(bytes(data))
    found = c.best([1, 2, 3, 4])
    if found is not None:  # the header looked whole: the CRC catches it when the state is read
        assert c.load(found) is None
    assert not path.exists()
    assert c.best([1, 2, 3, 4]) is None


def test_the_least_recently_used_go_first_at_the_size_limit(tmp_path):
    state = b"x" * 1000
    entry = pc.HEADER.size + 4 * 2 + len(state)
    c = cache(tmp_path, limit=3 * entry)
    for i in range(3):
        save(c, [i, i], state)
        os.utime(c.dir / c.best([i, i]).name, (1000 + i, 1000 + i))  # distinct ages, oldest first
    os.utime(c.dir / c.best([0, 0]).name, (2000, 2000))  # [0, 0] was used last: [1, 1] is now the oldest
    save(c, [3, 3], state)
    left = sorted(tuple(c.best([i, i, 9]).tokens) for i in range(4) if c.best([i, i, 9]))
    assert left == [(0, 0), (2, 2), (3, 3)]
    assert sum(p.stat().st_size for p in c.dir.iterdir()) <= 3 * entry


def test_a_hit_marks_the_entry_as_used(tmp_path):
    c = cache(tmp_path)
    save(c, [1, 2], b"s")
    path = c.dir / entries(c)[0]
    os.utime(path, (1000, 1000))
    c.load(c.best([1, 2, 3]))
    assert path.stat().st_mtime > time.time() - 60


def test_an_entry_is_listed_only_once_committed_and_an_abandoned_one_leaves_nothing(tmp_path):
    c = cache(tmp_path)
    entry = c.begin([1, 2, 3], 5)
    entry.state[:] = b"state"
    assert c.best([1, 2, 3]) is None  # still a temporary file: no reader sees it
    assert entry.commit() is None
    assert bytes(c.load(c.best([1, 2, 3]))) == b"state"
    assert c.begin([1, 2, 3], 5) is None  # saved before: nothing to write
    other = c.begin([7, 8], 5)
    other.abandon()
    assert entries(c) == [entry_name([1, 2, 3])]


def test_without_posix_fallocate_the_space_is_reserved_by_writing_zeros(tmp_path, monkeypatch):
    # As on macOS, whose Python has no os.posix_fallocate.
    monkeypatch.delattr(pc.os, "posix_fallocate")
    c = cache(tmp_path)
    state = bytes(range(256)) * 5000  # over the 1 MiB of zeros written at a time
    assert save(c, [1, 2], state) is None
    assert bytes(c.load(c.best([1, 2, 3]))) == state


def test_an_entry_larger_than_the_whole_cache_is_not_saved(tmp_path):
    c = cache(tmp_path, limit=100)
    assert save(c, [1, 2], b"x" * 200) is None
    assert entries(c) == []


def test_a_stale_temporary_file_is_cleaned_away(tmp_path):
    c = cache(tmp_path)
    stale = c.dir / f"{pc.TEMPORARY}12345-abc.kv.part"
    stale.write_bytes(b"half an entry")
    os.utime(stale, (1000, 1000))
    fresh = c.dir / f"{pc.TEMPORARY}12346-abc.kv.part"
    fresh.write_bytes(b"being written right now")
    save(c, [1], b"s")
    assert not stale.exists() and fresh.exists()


def _save_many(root: str, state: bytes, rounds: int) -> None:
    c = pc.PromptCache(Path(root), KEY, 10**9, CONTEXT_TOKENS)
    for _ in range(rounds):
        assert save(c, list(range(50)), state) is None


def test_two_processes_saving_the_same_entry_leave_one_whole_copy(tmp_path):
    # Two real processes race on the same file name, over and over; a reader never sees half an entry.
    root = tmp_path
    states = [bytes([i]) * 3_000_000 for i in (1, 2)]
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_save_many, args=(str(root), s, 15)) for s in states]
    for w in writers:
        w.start()
    reader = pc.PromptCache(root, KEY, 10**9, CONTEXT_TOKENS)
    seen = 0
    while any(w.is_alive() for w in writers):
        found = reader.best(list(range(60)))
        if found is not None:
            state = reader.load(found)
            if state is not None:
                assert bytes(state) in states
                seen += 1
    for w in writers:
        w.join()
        assert w.exitcode == 0
    assert entries(reader) == [entry_name(range(50))]
    assert bytes(reader.load(reader.best(list(range(60))))) in states


def test_a_full_disk_is_a_note_and_leaves_nothing_behind(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        missing("a small tmpfs (mount needs root)", "run the tests as root, as .ci/run does")
    try:
        with pc.PromptCache(mount, KEY, 10**9, CONTEXT_TOKENS) as c:  # closed: its open folders keep the mount busy
            note = save(c, [1, 2, 3], b"x" * 200_000)
            assert note == ("the prompt cache could not save this reply's state (the disk is full); "
                            "the next call evaluates it again")
            assert entries(c) == []
            assert save(c, [1, 2, 3], b"x" * 1000) is None  # room enough: it works again
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_the_folder_follows_xdg_cache_home():
    assert pc.folder({"XDG_CACHE_HOME": "/x/cache"}) == Path("/x/cache/illume/prompts")
    assert pc.folder({}) == Path(os.path.expanduser("~")) / ".cache" / "illume" / "prompts"


@pytest.mark.parametrize("text,expected", [("", pc.DEFAULT_LIMIT), ("0", 0), ("1000", 1000), ("500M", 500 * 2**20),
                                           ("2G", 2 * 2**30), ("2GiB", 2 * 2**30), ("1.5g", 3 * 2**29),
                                           ("64k", 65536)])
def test_the_size_limit_setting(text, expected):
    assert pc.size_limit({"ILLUME_CACHE_SIZE": text}) == expected


@pytest.mark.parametrize("text", ["big", "-1", "2X", "nan", "inf", "1e999G"])
def test_a_bad_size_limit_says_what_it_wants(text):
    with pytest.raises(SetupError, match="ILLUME_CACHE_SIZE: expected a size such as 2G, 500M or 0"):
        pc.size_limit({"ILLUME_CACHE_SIZE": text})


def test_the_model_key_changes_with_the_file_and_the_options(tmp_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF one")
    key = pc.model_key(model, {"n_ctx": 4096}, "v1")
    assert key == pc.model_key(model, {"n_ctx": 4096}, "v1")
    assert key != pc.model_key(model, {"n_ctx": 2048}, "v1")
    assert key != pc.model_key(model, {"n_ctx": 4096}, "v2")
    model.write_bytes(b"GGUF two")  # rewritten in place, same size
    assert key != pc.model_key(model, {"n_ctx": 4096}, "v1")


# The real model through the real CLI: the cache as users meet it.

import re  # noqa: E402

from conftest import embedded_model, missing, run_illume, smollm2_path  # noqa: E402
from illume.backends.kv_cache import EXACT_BATCH  # noqa: E402

CONTEXT = "".join(f"Line {i}: the {['red', 'green', 'blue'][i % 3]} box holds {i * 7 % 13} marbles.\n"
                  for i in range(60))
CHAT = ("!profile embedded\n!:temperature 0\n!:seed 5\n!:max_tokens 12\n!stats\n"
        f"Answer briefly. Facts:\n{CONTEXT}\n!user\nHow many marbles are in the box on line 4?\n")
# The `!stats` notes: the original's line (with the embedded backend's cache), then what the reply used.
STATS = re.compile(r"\n\n!note [0-9.e+]+ tok/s, \d+ toks, [^,\n]*, (\d+) of (\d+) prompt tokens from the cache"
                   r"(?:\n\n!note used [^\n]*)?")


@pytest.fixture
def model():
    embedded_model()


def ask(buffer: str, home: Path, **env: str):
    """Run the CLI on BUFFER with its cache in HOME; return (reply and notes without !stats, cached, prompt)."""
    result = run_illume(buffer, env={"XDG_CACHE_HOME": str(home), **env})
    assert result.returncode == 0, result.stdout
    assert result.stderr == b""
    text = result.stdout.decode()
    match = STATS.search(text)
    assert match, text
    return STATS.sub("", text), int(match.group(1)), int(match.group(2))


def next_turn(buffer: str, out: str, question: str) -> str:
    return buffer + out + f"\n\n!user\n{question}\n"


def cache_files(home: Path) -> list[Path]:
    return sorted((home / "illume" / "prompts").rglob("*" + pc.SUFFIX))


@pytest.mark.embedded
def test_the_next_turn_restores_the_conversation_and_replies_the_same(model, tmp_path):
    first, cached, total = ask(CHAT, tmp_path)
    assert cached == 0 and total > 500
    assert len(cache_files(tmp_path)) == 1
    second = next_turn(CHAT, first, "And on line 5?")
    warm, cached2, total2 = ask(second, tmp_path)
    # The model's own memory held the first prompt before it evaluated anything; the last EXACT_BATCH tokens
    # are always evaluated (backends/kv_cache.py says why), and the reply's with them.
    assert cached2 == min(total, total2 - EXACT_BATCH)
    cold, none, _ = ask(second.replace("!stats\n", "!stats\n!:cache_prompt false\n"), tmp_path / "unused")
    assert none == 0
    assert warm == cold
    assert not (tmp_path / "unused" / "illume").exists(), "!:cache_prompt false writes nothing"
    assert len(cache_files(tmp_path)) == 1, "the first turn's entry is covered by the second's"


@pytest.mark.embedded
@pytest.mark.parametrize("sampling", ["!:temperature 0\n", "!:temperature 1.2\n!:seed 42\n!:max_tokens 24\n"])
def test_same_seed_same_reply_from_a_restored_state(model, tmp_path, sampling):
    buffer = CHAT.replace("!stats\n", "!stats\n" + sampling)
    first, _, _ = ask(buffer, tmp_path)
    second = next_turn(buffer, first, "Which line has the most marbles?")
    replies = {ask(second, tmp_path)[0] for _ in range(2)}  # restored from the cache, twice
    replies.add(ask(second.replace("!stats\n", "!stats\n!:cache_prompt false\n"), tmp_path)[0])
    assert len(replies) == 1, replies


@pytest.mark.embedded
def test_with_flash_attention_the_last_64_prompt_tokens_are_evaluated_again(model, tmp_path):
    from illume.backends.kv_cache import FLASH_BATCH

    flash = CHAT.replace("!stats\n", "!stats\n!:flash_attn true\n")
    first, _, total = ask(flash, tmp_path)
    _, cached, total2 = ask(next_turn(flash, first, "And on line 5?"), tmp_path)
    assert cached == min(total, total2 - FLASH_BATCH)
    _, cached, _ = ask(CHAT, tmp_path)
    assert cached == 0, "an entry made with flash attention is not one without it"


@pytest.mark.parametrize("count, limit, least, expected", [
    (300, 128, 2, [128, 128, 44]), (257, 128, 2, [128, 127, 2]), (150, 128, 64, [86, 64]),
    (64, 128, 64, [64]), (0, 128, 2, []),
    (5, 1, 2, [1, 1, 1, 1, 1]), (100, 32, 64, [32, 32, 32, 4]),  # batches too small to be exact: still all read
])
def test_a_prompt_is_split_into_batches_none_too_small(count, limit, least, expected):
    from illume.backends.kv_cache import batches

    assert batches(count, limit, least) == expected


def _state_after(tokens: list[int], sizes: list[int]) -> bytes:
    """Return the saved state of a freshly loaded model after evaluating TOKENS in batches of SIZES."""
    import llama_cpp

    from illume.backends.embedded import open_model
    from illume.backends.kv_cache import SEQUENCE, state_into

    llama = open_model(smollm2_path(), {})
    try:
        start = 0
        for size in sizes:
            llama.eval(tokens[start:start + size])
            start += size
        state = bytearray(llama_cpp.llama_state_seq_get_size(llama.ctx, SEQUENCE))
        return bytes(state[:state_into(llama, memoryview(state))])
    finally:
        llama.close()


@pytest.mark.embedded
def test_the_state_is_the_same_however_the_prompt_is_split(model):
    # The rule the cache's exactness stands on (backends/kv_cache.py): a llama.cpp that breaks it fails here.
    tokens = _prompt_tokens(CHAT)[:400]
    whole = _state_after(tokens, [128, 128, 128, 16])
    assert _state_after(tokens, [100, 2, 128, 50, 120]) == whole
    assert _state_after(tokens, [390, 3, 7]) == whole
    assert _state_after(tokens, [64, 64, 64, 64, 64, 64, 16]) == whole


def _prompt_tokens(buffer: str) -> list[int]:
    """Return the tokens the embedded backend evaluates for BUFFER, rendered and tokenized in this process."""
    from illume import buffer as buf
    from illume import request as req
    from illume.backends.embedded import EmbeddedBackend, load

    request = req.build(buf.parse(buffer, buf.Sources({})), {})
    return EmbeddedBackend({})._prompt(load(smollm2_path(), {}).llama, request, None)


@pytest.mark.embedded
def test_an_edited_middle_message_reuses_only_what_comes_before_it(model, tmp_path):
    shelves = "".join(f"Shelf {i} holds {i * 3} jars.\n" for i in range(20))
    turns = CHAT
    for question in [f"More facts:\n{shelves}Which shelf holds 9 jars?", "Thanks."]:
        out, _, _ = ask(turns, tmp_path)
        turns = next_turn(turns, out, question)
    ask(turns, tmp_path)
    edited = turns.replace("Shelf 3 holds 9 jars.", "Shelf 3 holds 10 jars.")
    expected = pc.common_prefix(_prompt_tokens(turns), _prompt_tokens(edited))
    assert 500 < expected < len(_prompt_tokens(edited)) - 2 * EXACT_BATCH
    _, cached, total = ask(edited, tmp_path)
    assert cached == expected  # everything up to the edited line, nothing after it


@pytest.mark.embedded
@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "foreign format", "garbage state"])
def test_a_damaged_entry_is_ignored_removed_and_the_reply_unchanged(model, tmp_path, damage):
    first, _, _ = ask(CHAT, tmp_path)
    second = next_turn(CHAT, first, "And on line 5?")
    cold, _, _ = ask(second.replace("!stats\n", "!stats\n!:cache_prompt false\n"), tmp_path)
    [entry] = cache_files(tmp_path)
    data = bytearray(entry.read_bytes())
    if damage == "truncated":
        entry.write_bytes(data[: len(data) // 2])
    elif damage == "flipped byte":
        data[len(data) - 1000] ^= 0x40
        entry.write_bytes(bytes(data))
    elif damage == "foreign format":
        data[8:12] = (pc.FORMAT + 1).to_bytes(4, "little")
        entry.write_bytes(bytes(data))
    else:  # whole and CRC-correct, but not a state llama.cpp can read
        magic, fmt, key, n_tokens, state_bytes, crc = pc.HEADER.unpack(data[: pc.HEADER.size])
        tokens = list(pc.struct.unpack(f"<{n_tokens}i", data[pc.HEADER.size: pc.HEADER.size + 4 * n_tokens]))
        entry.unlink()
        save(pc.PromptCache(entry.parents[3], key, 10**9, CONTEXT_TOKENS), tokens, os.urandom(state_bytes))
    warm, cached, _ = ask(second, tmp_path)
    assert cached == 0
    assert warm == cold
    [fresh] = cache_files(tmp_path)  # the damaged entry is gone; this turn's own took its place
    assert fresh.read_bytes()[:8] == pc.MAGIC
    assert ask(next_turn(second, warm, "Thanks."), tmp_path)[1] > 500


@pytest.mark.embedded
def test_two_processes_saving_the_same_entry_at_once(model, tmp_path):
    import sys

    from conftest import REPO

    env = {k: v for k, v in os.environ.items() if not k.startswith("ILLUME_")}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    both = [subprocess.Popen([sys.executable, "-m", "illume"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env, cwd=REPO) for _ in range(2)]
    outputs = [p.communicate(CHAT.encode(), timeout=300) for p in both]
    assert [p.returncode for p in both] == [0, 0]
    replies = {STATS.sub("", out.decode()) for out, _ in outputs}
    assert len(replies) == 1
    assert all(err == b"" for _, err in outputs)
    [entry] = cache_files(tmp_path)
    assert not [p for p in entry.parent.iterdir() if p.name.startswith(pc.TEMPORARY)]
    again, cached, total = ask(CHAT, tmp_path)
    assert cached == total - EXACT_BATCH
    assert again == replies.pop()


@pytest.mark.embedded
def test_batches_too_small_for_the_exact_state_are_read_and_never_saved(model, tmp_path):
    # Read one token at a time, this prompt gets another reply here ("contains" for "has"): such a
    # state would make a restored reply differ from a cold one, so it is never kept.
    out, cached, total = ask(CHAT.replace("!stats\n", "!stats\n!:n_batch 1\n"), tmp_path)
    assert cached == 0 and total > 500
    assert "marbles" in out
    assert not cache_files(tmp_path)
    assert ask(CHAT.replace("!stats\n", "!stats\n!:n_batch 1\n"), tmp_path)[1] == 0


@pytest.mark.embedded
def test_a_reply_stopped_by_the_editor_still_leaves_the_prompt_saved(model, tmp_path):
    # The state is written while the reply is generated; SIGTERM (Vim's job stop) waits for a whole entry.
    import signal

    from test_interrupt import NOTE, Illume, after

    env = {"XDG_CACHE_HOME": str(tmp_path)}
    illume = Illume(CHAT.replace("!:max_tokens 12", "!:max_tokens 400").encode(), env=env)
    illume.wait_for(after(b"!assistant\n\n", 2), timeout=120)
    illume.process.send_signal(signal.SIGTERM)
    status, out, err = illume.finish()
    assert (status, err) == (143, b"")
    assert out.endswith(NOTE)
    [entry] = cache_files(tmp_path)
    assert not [p for p in entry.parent.iterdir() if p.name.startswith(pc.TEMPORARY)]
    _, cached, total = ask(CHAT, tmp_path)
    assert cached == total - EXACT_BATCH


@pytest.mark.embedded
def test_eviction_at_the_size_limit(model, tmp_path):
    ask(CHAT, tmp_path)
    [entry] = cache_files(tmp_path)
    limit = str(int(entry.stat().st_size * 1.5))
    other = CHAT.replace("Answer briefly.", "Answer in one word.")
    ask(other, tmp_path, ILLUME_CACHE_SIZE=limit)
    [kept] = cache_files(tmp_path)  # the older conversation went to make room
    assert kept != entry
    _, cached, _ = ask(CHAT, tmp_path, ILLUME_CACHE_SIZE=limit)
    assert 0 < cached < 10, "only the shared start of the template could come from the other conversation"
    _, cached, total = ask(other, tmp_path, ILLUME_CACHE_SIZE="0")
    assert cached == 0


@pytest.mark.embedded
def test_a_full_disk_is_a_note_not_a_failure(model, tmp_path):
    home = tmp_path / "small"
    home.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(home)],
                      capture_output=True).returncode != 0:
        missing("a small tmpfs (mount needs root)", "run the tests as root, as .ci/run does")
    try:
        out, cached, _ = ask(CHAT, home)
        cold, _, _ = ask(CHAT.replace("!stats\n", "!stats\n!:cache_prompt false\n"), home)
        assert out == cold + ("\n\n!note the prompt cache could not save this reply's state (the disk is full); "
                              "the next call evaluates it again")
    finally:
        subprocess.run(["umount", str(home)], check=True)


@pytest.mark.embedded
def test_buffers_in_one_process_share_a_prefix_without_the_disk(model, tmp_path):
    # A batch run or branches: the loaded model keeps what it evaluated, and the next buffer starts from it.
    import io

    import llama_cpp

    from illume.backends.embedded import load
    from illume.cli import Options, run

    env = {"XDG_CACHE_HOME": str(tmp_path), "ILLUME_CACHE_SIZE": "0"}
    llama = load(smollm2_path(), {}).llama
    outputs, evaluated = [], []
    for question in ["line 4?", "line 9?"]:
        out = io.BytesIO()
        llama_cpp.llama_perf_context_reset(llama.ctx)
        assert run(CHAT.replace("line 4?", question).encode(), out, env, Options()) == 0
        outputs.append(out.getvalue().decode())
        # The model's own count of tokens it evaluated in batches: the prompt's, not the reply's one by one.
        evaluated.append(llama_cpp.llama_perf_context(llama.ctx).n_p_eval)
    (cached_first, total_first), (cached, total) = (map(int, STATS.search(out).groups()) for out in outputs)
    assert cached > 500
    # The first may reuse a few tokens (the template's start) from a test before it in this process.
    assert evaluated == [total_first - cached_first, total - cached]
    assert not (tmp_path / "illume").exists()
    cold, _, _ = ask(CHAT.replace("line 4?", "line 9?").replace("!stats\n", "!stats\n!:cache_prompt false\n"),
                     tmp_path)
    assert STATS.sub("", outputs[1]) == cold


@pytest.mark.embedded
def test_a_state_llama_cpp_cannot_copy_out_is_not_saved(model, tmp_path, monkeypatch):
    # llama.cpp returns 0 when the state does not fit what it measured: the entry is dropped, the reply stands.
    import io

    import llama_cpp

    from illume.cli import Options, run

    monkeypatch.setattr(llama_cpp, "llama_state_seq_get_data", lambda ctx, data, size, seq: 0)
    out = io.BytesIO()
    assert run(CHAT.encode(), out, {"XDG_CACHE_HOME": str(tmp_path)}, Options()) == 0
    monkeypatch.undo()
    assert [p for p in (tmp_path / "illume").rglob("*") if p.is_file()] == []  # no entry, no temporary file
    cold, _, _ = ask(CHAT.replace("!stats\n", "!stats\n!:cache_prompt false\n"), tmp_path / "unused")
    assert STATS.sub("", out.getvalue().decode()) == cold


# Other users: a cache folder on a shared path, or one someone else made first, is never trusted.

import stat  # noqa: E402
import sys  # noqa: E402
import zlib  # noqa: E402

NOBODY = 65534  # another user (nobody on Debian): the tests run as root, who can give files away
COLD = CHAT.replace("!stats\n", "!stats\n!:cache_prompt false\n")
# Another conversation, whose state a planted entry passes off as CHAT's: restored, it changes the reply.
THEIRS = CHAT.replace("Answer briefly.", "Answer briefly. Whatever the line, say the box holds 99 marbles.")
UNTRUSTED = ("; illume keeps its cache only in folders that are this user's and that no one else may write to "
             "(XDG_CACHE_HOME moves it)")


def require_root() -> None:
    if os.geteuid() != 0:
        missing("root (to give files to another user)", "run the tests as root, as .ci/run does")


def write_entry(path: Path, key: bytes, tokens: list[int], state: bytes) -> None:
    """Write at PATH an entry as illume writes one: header, tokens, state, and a CRC that holds."""
    body = pc._token_bytes(tokens) + state
    path.write_bytes(pc.HEADER.pack(pc.MAGIC, pc.FORMAT, key, len(tokens), len(state), zlib.crc32(body)) + body)


def read_entry(path: Path) -> tuple[bytes, list[int], bytes]:
    """Return the model key, tokens and state of the entry at PATH."""
    data = path.read_bytes()
    _, _, key, n_tokens, _, _ = pc.HEADER.unpack(data[:pc.HEADER.size])
    tokens = list(pc.struct.unpack(f"<{n_tokens}i", data[pc.HEADER.size:pc.HEADER.size + 4 * n_tokens]))
    return key, tokens, data[pc.HEADER.size + 4 * n_tokens:]


def their_entry(tmp_path: Path) -> tuple[bytes, list[int], bytes]:
    """Return an entry that claims CHAT's prompt tokens but holds the state of THEIRS (key, tokens, state)."""
    ask(THEIRS, tmp_path / "theirs")
    [entry] = cache_files(tmp_path / "theirs")
    key, tokens, state = read_entry(entry)
    prompt = _prompt_tokens(CHAT)
    claimed = prompt[:min(len(tokens), len(prompt) - EXACT_BATCH)]
    return key, claimed, state


def give_away(path: Path) -> None:
    """Give PATH, and all it holds, to another user, links themselves included."""
    for p in [path, *path.rglob("*")]:
        os.chown(p, NOBODY, NOBODY, follow_symlinks=False)


def snapshot(path: Path) -> dict:
    """Return what lies under PATH: each name's owner, mode, and contents or link target."""
    def seen(p: Path):
        s = p.lstat()
        what = os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else None
        return s.st_uid, s.st_mode, what
    return {str(p.relative_to(path)): seen(p) for p in [path, *path.rglob("*")]}


def untrusted_note(path: Path, problem: str) -> str:
    return f"\n\n!note the prompt cache is off: {str(path)!r} {problem}{UNTRUSTED}"


@pytest.mark.embedded
def test_a_cache_folder_another_user_made_first_is_never_used(model, tmp_path):
    # XDG_CACHE_HOME on a shared path (here like /tmp), where another user made illume/ first and left in
    # it an entry for this model (another conversation's state under this prompt's tokens), a .lock link to
    # a file root does not have, and a link where this process will write its temporary file.
    require_root()
    key, tokens, state = their_entry(tmp_path)
    shared = tmp_path / "shared"
    model_folder = shared / "illume" / "prompts" / key.hex()
    model_folder.mkdir(parents=True)
    shared.chmod(0o1777)
    write_entry(model_folder / entry_name(tokens), key, tokens, state)
    (shared / "illume" / "prompts" / ".lock").symlink_to(tmp_path / "made-by-illume")
    roots_file = tmp_path / "roots-file"
    roots_file.write_bytes(b"root's own file\n")
    give_away(shared / "illume")
    cold, _, _ = ask(COLD, tmp_path / "cold")

    from conftest import REPO

    env = {k: v for k, v in os.environ.items() if not k.startswith("ILLUME_")}
    env["XDG_CACHE_HOME"] = str(shared)
    saved = entry_name(_prompt_tokens(CHAT))
    process = subprocess.Popen([sys.executable, "-m", "illume"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env, cwd=REPO)
    # Its temporary file's name as earlier versions made it (the pid is known now), planted while the model loads.
    partial = model_folder / f"{pc.TEMPORARY}{process.pid}-{saved}.part"
    partial.symlink_to(roots_file)
    os.chown(partial, NOBODY, NOBODY, follow_symlinks=False)
    before = snapshot(shared / "illume")
    out, err = process.communicate(CHAT.encode(), timeout=300)

    assert (process.returncode, err) == (0, b"")
    assert STATS.sub("", out.decode()) == cold + untrusted_note(shared / "illume", "belongs to another user")
    assert snapshot(shared / "illume") == before, "nothing read, made or removed in their folder"
    assert roots_file.read_bytes() == b"root's own file\n"
    assert not (tmp_path / "made-by-illume").exists()


@pytest.mark.embedded
@pytest.mark.parametrize("bad", ["prompts/ may be written by others", "the model's folder is a link"])
def test_a_cache_folder_others_could_write_to_is_not_used(model, tmp_path, bad):
    require_root()
    key, tokens, state = their_entry(tmp_path)
    home = tmp_path / "cache"
    prompts = home / "illume" / "prompts"
    prompts.mkdir(parents=True)
    theirs = tmp_path / "their-folder"
    theirs.mkdir()
    write_entry(theirs / entry_name(tokens), key, tokens, state)
    give_away(theirs)
    if bad == "prompts/ may be written by others":
        theirs.rename(prompts / key.hex())
        prompts.chmod(0o777)
        bad_path, problem = prompts, "may be written by other users"
    else:
        (prompts / key.hex()).symlink_to(theirs)
        bad_path, problem = prompts / key.hex(), "is a symbolic link"
    cold, _, _ = ask(COLD, tmp_path / "cold")
    out, cached, _ = ask(CHAT, home)
    assert cached == 0
    assert out == cold + untrusted_note(bad_path, problem)
    assert [p.name for p in (prompts / key.hex()).iterdir()] == [entry_name(tokens)]


@pytest.mark.embedded
@pytest.mark.parametrize("planted", ["another user's file", "a link to an entry elsewhere"])
def test_an_entry_this_user_did_not_write_is_not_restored_and_is_removed(model, tmp_path, planted):
    require_root()
    key, tokens, state = their_entry(tmp_path)
    home = tmp_path / "cache"
    ask(CHAT, home)
    [mine] = cache_files(home)
    mine.unlink()
    entry = mine.parent / entry_name(tokens)
    if planted == "another user's file":
        write_entry(entry, key, tokens, state)
        os.chown(entry, NOBODY, NOBODY)
        target = None
    else:
        target = tmp_path / "elsewhere.kv"
        write_entry(target, key, tokens, state)
        entry.symlink_to(target)
    cold, _, _ = ask(COLD, tmp_path / "cold")
    out, cached, _ = ask(CHAT, home)
    assert (out, cached) == (cold, 0)
    assert not entry.is_symlink() and not entry.exists()
    assert cache_files(home) == [mine], "this run's own entry took its place"
    if target is not None:
        assert read_entry(target) == (key, tokens, state), "a link is removed, never what it points to"


@pytest.mark.embedded
def test_an_entry_longer_than_the_context_is_a_miss_and_is_removed(model, tmp_path):
    # Whole and CRC-correct, its state one llama.cpp takes, but claiming more tokens than the model's context
    # (4096) holds: once, it made every later run fail until removed by hand.
    ask(CHAT, tmp_path)
    [entry] = cache_files(tmp_path)
    key, tokens, state = read_entry(entry)
    write_entry(entry, key, tokens + [tokens[-1]] * (4200 - len(tokens)), state)
    cold, _, _ = ask(COLD, tmp_path / "cold")
    out, cached, _ = ask(CHAT, tmp_path)
    assert (out, cached) == (cold, 0)
    [fresh] = cache_files(tmp_path)
    assert read_entry(fresh)[1] == tokens, "the long entry is gone, this run's own in its place"
    assert ask(CHAT, tmp_path)[1] > 500


@pytest.mark.embedded
def test_the_folders_illume_makes_are_private_even_under_a_shared_folder(model, tmp_path):
    # $XDG_CACHE_HOME may itself be shared (sticky and world-writable, like /tmp) or missing.
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    missing_home = tmp_path / "new" / "cache"
    for home in [shared, missing_home]:
        _, cached, _ = ask(CHAT, home)
        assert cached == 0
        _, cached, total = ask(CHAT, home)
        assert cached == total - EXACT_BATCH, "the cache works there"
        [entry] = cache_files(home)
        made = [entry.parent, entry.parent.parent, entry.parent.parent.parent]
        if home == missing_home:
            made += [missing_home, missing_home.parent]
        assert {str(p): stat.S_IMODE(p.stat().st_mode) for p in made} == {str(p): 0o700 for p in made}
        assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777, "a folder illume did not make is left as it is"


@pytest.mark.embedded
def test_the_note_on_an_untrusted_folder_comes_once_a_run(model, tmp_path):
    # A batch run says it after its first reply, not after every one; each run says it again.
    require_root()
    home = tmp_path / "cache"
    (home / "illume").mkdir(parents=True)
    give_away(home / "illume")
    buffers = tmp_path / "buffers"
    buffers.mkdir()
    for name, question in [("a", "line 4?"), ("b", "line 5?")]:
        (buffers / name).write_text(CHAT.replace("line 4?", question))
    result = run_illume("", "--batch", "-o", str(tmp_path / "out"), str(buffers / "a"), str(buffers / "b"),
                        env={"XDG_CACHE_HOME": str(home)}, timeout=300)
    assert result.returncode == 0, result.stderr
    note = untrusted_note(home / "illume", "belongs to another user")
    outputs = [(tmp_path / "out" / name).read_text() for name in "ab"]
    assert sorted(out.count(note) for out in outputs) == [0, 1]
    assert ask(CHAT, home)[0].endswith(note)


@pytest.mark.embedded
def test_summaries_are_a_prefix_the_cache_keeps_hitting(model, tmp_path):
    # The live summaries end the system prompt: the turn after a reply reuses the whole last prompt, and a new
    # summary reuses everything up to where it goes (the system prompt and the summaries before it).
    story = ("!profile embedded\n!:temperature 0\n!:seed 5\n!:max_tokens 12\n!stats\n"
             f"You tell stories. Facts:\n{CONTEXT}\n!user\nChapter one.\n!assistant\nAnna found a key in the snow.\n"
             "!summary\nAnna found a key.\n!user\nChapter two.\n")
    first, _, total = ask(story, tmp_path)
    second = next_turn(story, first, "Chapter three.")
    out, cached, total2 = ask(second, tmp_path)
    assert cached == min(total, total2 - EXACT_BATCH)
    third = next_turn(second, out, "Chapter four.").replace("!user\nChapter four.",
                                                          "!summary\nThe key opened a mill.\n!user\nChapter four.")
    expected = pc.common_prefix(_prompt_tokens(second), _prompt_tokens(third))
    # The system prompt with the first summary at its end, as a buffer without summaries sends it.
    header = pc.common_prefix(_prompt_tokens(story.split("!user")[0] + "\nAnna found a key.\n!user\nX\n"),
                              _prompt_tokens(third))
    assert expected >= header > 500, (expected, header)
    _, cached3, _ = ask(third, tmp_path)
    assert cached3 == expected, (cached3, expected, cached, total, total2)


@pytest.mark.embedded
def test_a_summary_after_a_turn_takes_the_turn_from_the_cache(model, tmp_path):
    # The summary's request is the chat itself then the instruction: the turn before, reply and all, is reused.
    story = ("!profile embedded\n!:temperature 0\n!:seed 5\n!:max_tokens 12\n!stats\nYou tell stories.\n"
             f"!user\nChapter one. Facts:\n{CONTEXT}\n")
    first, _, total = ask(story, tmp_path)
    result = run_illume(story + first + "\n", "--summarize", env={"XDG_CACHE_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stdout
    assert re.match(rb"\n\n!summary #[0-9a-f]{8}\n\n", result.stdout), result.stdout
    match = STATS.search(result.stdout.decode())
    assert match, result.stdout
    cached, prompt = int(match.group(1)), int(match.group(2))
    assert total > 500 and cached >= total and prompt - cached < 120, (cached, prompt, total)  # the whole turn
