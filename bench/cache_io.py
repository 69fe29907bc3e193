"""The prompt cache's disk work, piece by piece: copying a state out of llama.cpp, checksumming it, writing it, reading it back.

Usage: .venv/bin/python bench/cache_io.py [TOKENS] [TRIES]

Evaluates TOKENS (default 2400) of illume's own source on the default
model, then times each way of saving and restoring that state TRIES times
(default 4) in this process, with the CPU time of the thread beside the
wall time: what a cold turn pays for its entry, and what a warm turn pays
to read one. The files go to a temporary folder beside the repository, on the
disk a cache on this machine would use.
"""

import ctypes
import hashlib
import mmap
import os
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
    from illume.backends.prefix import SEQUENCE, state_into

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
    names = iter(range(10**6))

    def new_file() -> Path:
        return disk / f"entry-{next(names)}"

    def into_buffer():
        buffer = memoryview(bytearray(size))
        state_into(llama, buffer)
        return buffer

    def into_mapped_file():
        fd = os.open(new_file(), os.O_RDWR | os.O_CREAT, 0o600)
        os.posix_fallocate(fd, 0, size)
        mapping = mmap.mmap(fd, size)
        os.close(fd)
        with memoryview(mapping) as view:
            state_into(llama, view)
        mapping.close()

    def write_new():
        with open(new_file(), "wb") as f:
            f.write(state)

    def rewrite():
        with open(disk / "entry-0", "r+b") as f:
            f.write(state)

    def restore(view):
        data = (ctypes.c_uint8 * size).from_buffer(view)
        assert llama_cpp.llama_state_seq_set_data(llama.ctx, data, size, SEQUENCE) == size

    def read_then_restore():
        with open(disk / "entry-0", "rb") as f:
            buffer = bytearray(size)
            f.readinto(buffer)
        restore(buffer)

    def map_then_restore():
        with open(disk / "entry-0", "rb") as f:
            mapping = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY)
        with memoryview(mapping) as view:
            restore(view)
        mapping.close()

    try:
        print("saving (a cold turn's entry)")
        timed("llama.cpp copies the state into a fresh buffer", into_buffer, tries)
        state = into_buffer()
        timed("... into a new file's mapped pages (space reserved)", into_mapped_file, tries)
        timed("write() the buffer to a new file", write_new, tries)
        timed("write() the buffer over an existing file", rewrite, tries)
        timed("CRC-32 of the state", lambda: zlib.crc32(state), tries)
        timed("Adler-32 of the state", lambda: zlib.adler32(state), tries)
        timed("BLAKE2b of the state", lambda: hashlib.blake2b(state).digest(), tries)
        print("restoring (a warm turn's entry)")
        timed("readinto a fresh buffer, then restore", read_then_restore, tries)
        timed("map the file copy-on-write, then restore", map_then_restore, tries)
    finally:
        for path in disk.iterdir():
            path.unlink()
        disk.rmdir()
        llama.close()


if __name__ == "__main__":
    main()
