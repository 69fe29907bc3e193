"""Reusing evaluated prompt tokens in the embedded backend: from the loaded model, else from the prompt cache.

`prepare` leaves the model holding the longest reusable prefix of the
prompt (what the loaded model still holds from an earlier reply in this
process, or a saved state from `illume.prompt_cache`, whichever shares
more), evaluates the rest, and returns how many tokens it did not have to
evaluate, as the model's own memory reports them. llama-cpp-python's
`create_completion` then finds the whole prompt evaluated and samples.

Same state, same reply. llama.cpp's CPU code computes a token's keys and
values differently depending on how many tokens are evaluated with it:
flash attention takes a tiled path for 64 queries or more (GGML_FA_TILE_Q)
and another below, and a single token also goes through other matrix
code. Measured on SmolLM2 with a restored prefix, the logits of the next
token moved by up to 0.98 when the rest came in a batch of 63 tokens
instead of the cold run's 237, and not at all (bit for bit) with 64 or
more. So every prompt token is evaluated in a batch of at least
EXACT_BATCH tokens, cold or warm: the last EXACT_BATCH prompt tokens are
always evaluated, and a prompt shorter than that is neither saved nor kept.
The reply's own tokens, evaluated one by one while generating, are never
reused: the next turn evaluates them again, with the new message.
"""

import ctypes
from collections.abc import Sequence

SEQUENCE = 0  # llama-cpp-python runs one sequence
EXACT_BATCH = 64


def prepare(loaded, prompt: Sequence[int], cache, caching: bool) -> int:
    """Evaluate PROMPT, reusing what can be; return the tokens reused (from the model's memory)."""
    llama = loaded.llama
    if len(prompt) >= llama.n_ctx():
        # llama-cpp-python's own words for it, which it would say a moment later.
        raise ValueError(f"Requested tokens ({len(prompt)}) exceed context window of {llama.n_ctx()}")
    if caching:
        _reuse(loaded, prompt, cache)
    else:
        _truncate(llama, 0)
    held = held_tokens(llama)
    loaded.clean = 0  # until the whole prompt is in
    start = held
    for size in batches(len(prompt) - held, llama.n_batch):
        llama.eval(prompt[start:start + size])
        start += size
    loaded.clean = len(prompt) if len(prompt) >= EXACT_BATCH else 0
    return held


def batches(count: int, limit: int) -> list[int]:
    """Return sizes that split COUNT tokens into batches of at most LIMIT, none under EXACT_BATCH if it can be."""
    sizes = []
    while count > limit:
        size = limit if count - limit >= EXACT_BATCH else count - EXACT_BATCH
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
    from illume.prompt_cache import common_prefix

    llama = loaded.llama
    usable = max(0, len(prompt) - EXACT_BATCH)
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


def _set_state(llama, state: bytearray) -> bool:
    """Load STATE into the model's sequence; return whether llama.cpp took all of it."""
    import llama_cpp

    data = (ctypes.c_uint8 * len(state)).from_buffer(state)
    return llama_cpp.llama_state_seq_set_data(llama.ctx, data, len(state), SEQUENCE) == len(state)


def finish(loaded, cache) -> str | None:
    """Drop the reply's tokens from the model, save the prompt's state in CACHE; return a note if it failed."""
    import llama_cpp

    llama = loaded.llama
    _truncate(llama, loaded.clean)
    count = loaded.clean
    if cache is None or count == 0 or held_tokens(llama) != count:
        return None  # nothing worth keeping, or memory and token list disagree: save nothing doubtful
    size = llama_cpp.llama_state_seq_get_size(llama.ctx, SEQUENCE)
    data = (ctypes.c_uint8 * size)()
    written = llama_cpp.llama_state_seq_get_data(llama.ctx, data, size, SEQUENCE)
    if not 0 < written <= size:
        return None
    return cache.save(llama.input_ids[:count].tolist(), memoryview(data)[:written])
