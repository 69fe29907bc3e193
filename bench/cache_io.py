"""The prompt cache's disk work, piece by piece: copying a state out of llama.cpp, checksumming it, writing it, reading it back.

Usage: .venv/bin/python bench/cache_io.py [TOKENS] [TRIES]

Evaluates TOKENS (default 2400) of illume's own source on the default
model, then times each way of saving and restoring that state TRIES times
(default 4) in this process, with the CPU time of the thread beside the
wall time: what a cold turn pays for its entry, and what a warm turn pays
to read one. The files go to a temporary folder beside the repository, on the
disk a cache on this machine would use.
"""

import hashlib
import mmap
import shutil
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def timed(label: str, work, tries: int) -> None:
    """Run WORK TRIES times; print the median wall and CPU milliseconds with their ranges."""
    walls, cpus = [], []
    for _ in range(tries):
        wall, cpu = time.perf_counter(), time.thread_time()
        work()
        walls.append((time.perf_counter() - wall) * 1000)
        cpus.append((time.thread_time() - cpu) * 1000)
    print(f"  {label:<52} {statistics.median(walls):6.1f} ms ({min(walls):.1f}-{max(walls):.1f}),"
          f" CPU {statistics.median(cpus):6.1f} ms")


def main() -> None:
    import llama_cpp

    from illume.backends.embedded import default_model, open_model
    from illume.backends.kv_cache import SEQUENCE, _set_state, state_into
    from illume.prompt_cache import PromptCache

    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2400
    tries = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    source = "".join((REPO / "illume" / name).read_text() for name in ("buffer.py", "request.py", "answer.py"))
    llama = open_model(default_model(), {})
    tokens = llama.tokenize(source.encode())[:count]
    for start in range(0, len(tokens), llama.n_batch):
        llama.eval(tokens[start:start + llama.n_batch])
    size = llama_cpp.llama_state_seq_get_size(llama.ctx, SEQUENCE)
    print(f"{len(tokens)} tokens of state: {size / 1e6:.1f} MB; median of {tries} (min-max)")
    disk = Path(tempfile.mkdtemp(prefix="illume-cache-io-", dir=REPO.parent))

    def into_buffer():
        buffer = memoryview(bytearray(size))
        state_into(llama, buffer)
        return buffer

    cache = PromptCache(disk, bytes(16), 10**12, len(tokens) + 1)
    begun = []  # entries begun and filled, abandoned at the end (their unlinking is not what a turn waits for)

    def into_new_entry():
        entry = cache.begin([len(begun)], size)
        state_into(llama, entry.state)
        begun.append(entry)

    written = []  # the files write() made: the rewrite and the reads use the first

    def write_new():
        written.append(disk / f"entry-{len(written)}")
        with open(written[-1], "wb") as f:
            f.write(state)

    def rewrite():
        with open(written[0], "r+b") as f:
            f.write(state)

    def restore(view):
        assert _set_state(llama, view)

    def read_then_restore():
        with open(written[0], "rb") as f:
            buffer = bytearray(size)
            f.readinto(buffer)
        restore(buffer)

    def map_then_restore():
        with open(written[0], "rb") as f:
            mapping = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY)
        with memoryview(mapping) as view:
            restore(view)
        mapping.close()

    try:
        print("saving (a cold turn's entry)")
        timed("llama.cpp copies the state into a fresh buffer", into_buffer, tries)
        state = into_buffer()
        timed("... into a new entry (space reserved, mapped)", into_new_entry, tries)
        timed("write() the buffer to a new file", write_new, tries)
        timed("write() the buffer over an existing file", rewrite, tries)
        timed("CRC-32 of the state", lambda: zlib.crc32(state), tries)
        timed("Adler-32 of the state", lambda: zlib.adler32(state), tries)
        timed("BLAKE2b of the state", lambda: hashlib.blake2b(state).digest(), tries)
        print("restoring (a warm turn's entry)")
        timed("readinto a fresh buffer, then restore", read_then_restore, tries)
        timed("map the file copy-on-write, then restore", map_then_restore, tries)
    finally:
        for entry in begun:
            entry.abandon()
        cache.close()
        shutil.rmtree(disk)
        llama.close()


if __name__ == "__main__":
    main()
