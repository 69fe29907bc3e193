"""SSE decoder: the quadratic one from before the rewrite (from git) against today's, on the streams that were quadratic.

    .venv/bin/python bench/sse.py [ROUNDS]

Streams, fed in 64 KiB pieces as httpx hands them over:
  data lines   N `data:` lines and no blank line (a server that never ends its event)
  long line    one line of M MB with no line break
  tokens       100,000 ordinary chat events (the common case: must not get slower)
Prints the median seconds of ROUNDS interleaved runs of each decoder, and the ratio.
"""

import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
BEFORE = "a9b8c1d"  # the last commit with the old decoder
PIECE = 64 * 1024


def old_decoder():
    source = subprocess.run(["git", "-C", REPO, "show", f"{BEFORE}:illume/sse.py"], capture_output=True,
                            check=True).stdout
    path = os.path.join(tempfile.mkdtemp(), "sse_before.py")
    with open(path, "wb") as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location("sse_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Decoder


def run(decoder_class, body: bytes) -> float:
    start = time.perf_counter()
    decoder = decoder_class()
    for i in range(0, len(body), PIECE):
        decoder.feed(body[i:i + PIECE])
    decoder.close()
    return time.perf_counter() - start


def main() -> None:
    from illume.sse import Decoder

    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    token = b'data: {"choices":[{"index":0,"delta":{"content":"word "},"finish_reason":null}]}\n\n'
    streams = {
        "data lines (20,000, no blank line)": b"".join(b"data: x%d\n" % i for i in range(20000)) + b"\n",
        "long line (10 MB, no line break)": b"data: " + b"x" * (10 * 2**20),
        "tokens (100,000 chat events)": token * 100000,
    }
    before = old_decoder()
    print(f"median of {rounds} interleaved rounds, Python {sys.version.split()[0]}")
    for name, body in streams.items():
        times = {"before": [], "now": []}
        for _ in range(rounds):
            times["before"].append(run(before, body))
            times["now"].append(run(Decoder, body))
        old, new = statistics.median(times["before"]), statistics.median(times["now"])
        spread = max(times["now"]) - min(times["now"])
        print(f"  {name:38s} before {old:8.3f} s   now {new:7.3f} s (spread {spread:.3f})   before/now {old / new:7.1f}")


if __name__ == "__main__":
    main()
