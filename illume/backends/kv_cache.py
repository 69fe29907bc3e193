"""A model loaded in the embedded backend, and reusing its evaluated prompt tokens: from its memory, else the cache.

`Loaded` is the one owner of what the model holds between replies (`clean`).
Its `prepare` leaves the model holding the longest reusable prefix of the
prompt (what the loaded model still holds from an earlier reply in this
process, or a saved state from `illume.prompt_cache`, whichever shares
more), evaluates the rest, and returns how many tokens it did not have to
evaluate, as the model's own memory reports them. llama-cpp-python's
`create_completion` then finds the whole prompt evaluated and samples.

Same state, same reply. Measured on SmolLM2 without flash attention, the
whole saved state is bit for bit the same however a prompt is split into
batches of two tokens or more. A token evaluated alone goes through
llama.cpp's matrix-vector code instead: read one token at a time
(`!:n_batch 1`), the tests' chat gets another reply. So every prompt
token is evaluated in a batch of at least `exact_batch` tokens, cold or
warm: the last ones are always evaluated again, and a shorter prompt is
neither saved nor kept. The reply's own tokens, evaluated one by one
while generating, are never reused: the next turn evaluates them again, with the new message. With
flash attention (`!:flash_attn true`) the state also depends on how many
tokens a batch holds beyond that (its CPU code takes a tiled path for 64
queries or more, and another below), so there the last 64 are evaluated
and the same reply is likely but not promised.
"""

import ctypes
import threading
from collections.abc import Sequence

from illume.prompt_cache import NotSaved, common_prefix

SEQUENCE = 0  # llama-cpp-python runs one sequence
EXACT_BATCH = 2  # the fewest tokens a batch holds for the exact state
FLASH_BATCH = 64  # the same with flash attention, as near as it gets


def exact_batch(flash_attention: bool) -> int:
    """Return the fewest tokens every prompt batch holds, with flash attention on or off."""
    return FLASH_BATCH if flash_attention else EXACT_BATCH


class Loaded:
    """A model loaded in this process (`llama`), with the key of its entries in the prompt cache (`key`)."""

    def __init__(self, llama, key: bytes, flash_attention: bool):
        self.llama = llama
        self.key = key
        self.exact_batch = exact_batch(flash_attention)  # the fewest tokens a prompt batch holds
        self.clean = 0  # leading tokens in its memory computed as a cold run would

    def prepare(self, prompt: Sequence[int], cache, caching: bool) -> int:
        """Evaluate PROMPT (it fits the context), reusing what can be; return the tokens reused."""
        llama = self.llama
        if caching:
            _reuse(self, prompt, cache)
        else:
            _truncate(llama, 0)
        held = held_tokens(llama)
        self.clean = 0  # until the whole prompt is in
        start = held
        for size in batches(len(prompt) - held, llama.n_batch, self.exact_batch):
            llama.eval(prompt[start:start + size])
            start += size
        exact = len(prompt) >= self.exact_batch and llama.n_batch >= self.exact_batch  # !:n_batch 1 is not
        self.clean = len(prompt) if exact else 0
        return held

    def save(self, cache) -> "Saving | None":
        """Start saving the prompt's state in CACHE, once `prepare` has evaluated it; None if there is nothing to."""
        import llama_cpp

        llama = self.llama
        count = self.clean
        if cache is None or count == 0 or held_tokens(llama) != count:
            return None  # nothing worth keeping, or memory and token list disagree: save nothing doubtful
        try:
            entry = cache.begin(llama.input_ids[:count].tolist(),
                                llama_cpp.llama_state_seq_get_size(llama.ctx, SEQUENCE))
        except NotSaved as e:
            return Saving(note=str(e))
        if entry is None:
            return None
        if state_into(llama, entry.state) != len(entry.state):
            entry.abandon()  # llama.cpp wrote less than it said it would: save nothing doubtful
            return None
        return Saving(entry)

    def finish(self) -> None:
        """Drop the reply's tokens from the model: the next buffer in this process starts from the prompt."""
        _truncate(self.llama, self.clean)

    def forget(self) -> None:
        """Start the model's memory over (for an infill prompt, which llama-cpp-python lays out itself)."""
        self.llama.reset()
        self.clean = 0


def batches(count: int, limit: int, least: int) -> list[int]:
    """Return sizes that split COUNT tokens into batches of at most LIMIT, none under LEAST if it can be."""
    if limit < least:
        return [limit] * (count // limit) + ([count % limit] if count % limit else [])
    sizes = []
    while count > limit:
        size = limit if count - limit >= least else count - least
        sizes.append(size)
        count -= size
    return sizes + [count] if count else sizes


def held_tokens(llama) -> int:
    """Return how many positions of the sequence the model's memory holds (0 when empty)."""
    import llama_cpp

    memory = llama_cpp.llama_get_memory(llama.ctx)
    return 0 if memory is None else llama_cpp.llama_memory_seq_pos_max(memory, SEQUENCE) + 1


def _reuse(loaded, prompt: Sequence[int], cache) -> None:
    """Leave in the model the longest reusable prefix of PROMPT that it holds or the cache has."""
    llama = loaded.llama
    usable = max(0, len(prompt) - loaded.exact_batch)
    kept = min(common_prefix(llama.input_ids[: loaded.clean].tolist(), prompt), usable)
    found = cache.best(prompt) if cache is not None else None
    if found is not None and min(found.common, usable) > kept:
        state = cache.load(found)
        if state is not None:
            if _set_state(llama, state):
                llama.input_ids[: len(found.tokens)] = found.tokens
                llama.n_tokens = len(found.tokens)
                kept = min(found.common, usable)
            else:
                cache.remove(found)  # llama.cpp refused it: another build's layout, damage the CRC missed
                kept = 0
    _truncate(llama, kept)


def _truncate(llama, keep: int) -> None:
    """Make the model hold exactly the first KEEP tokens of what it holds; start over where it cannot."""
    if held_tokens(llama) > keep and not llama._ctx.kv_cache_seq_rm(SEQUENCE, keep, -1):
        keep = 0  # a recurrent model cannot drop its last tokens, only start over
    if keep == 0:
        llama.reset()  # for recurrent and hybrid models, this also clears their state
        llama._ctx.kv_cache_seq_rm(SEQUENCE, -1, -1)
    llama.n_tokens = keep


def _set_state(llama, state: memoryview) -> bool:
    """Load STATE (writable bytes) into the model's sequence; return whether llama.cpp took all of it."""
    import llama_cpp

    data = (ctypes.c_uint8 * len(state)).from_buffer(state)
    return llama_cpp.llama_state_seq_set_data(llama.ctx, data, len(state), SEQUENCE) == len(state)


class Saving:
    """The prompt's state on its way into the prompt cache, sealed while the reply is generated.

    The state is copied out of llama.cpp at once, into the new entry's own
    pages, before the reply's tokens join it; its CRC and the rename into
    place (a few hundredths of a second for 56 MB) then overlap the reply
    instead of following it. NOTE is why nothing could be saved, if so.
    """

    def __init__(self, entry=None, note: str | None = None):
        self._note, self._error, self._thread = note, None, None
        if entry is not None:
            self._thread = threading.Thread(target=self._commit, args=(entry,), daemon=True)
            self._thread.start()

    def _commit(self, entry) -> None:
        try:
            self._note = entry.commit()
        except BaseException as e:  # raised again by wait(), in the thread that answers for it
            self._error = e
            entry.abandon()

    def wait(self) -> str | None:
        """Wait until the entry is in place; return a note if it could not be saved."""
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error
        return self._note


def state_into(llama, buffer: memoryview) -> int:
    """Copy the model's state for its sequence into BUFFER (writable); return the bytes written, 0 on failure."""
    import llama_cpp

    data = (ctypes.c_uint8 * len(buffer)).from_buffer(buffer)
    return llama_cpp.llama_state_seq_get_data(llama.ctx, data, len(buffer), SEQUENCE)

