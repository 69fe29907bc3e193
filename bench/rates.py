"""Generation speed on the real SmolLM2 model, side by side in one run.

1. End to end: tokens per second seen through illume (timing each write to
   its stdout) against llama-server's own `timings.predicted_per_second`
   for that very request (read from the stream's last event, in process).
2. The embedded backend against llama-server: the same prompt, settings and
   thread count, each timed the same way through illume; and the embedded
   model's load time.

Usage: python bench/rates.py [ROUNDS] [TOKENS]
"""

import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from realserver import start_llama_server, stop  # noqa: E402

PY = sys.executable
THREADS = 2


def stream_rate(buffer: str) -> tuple[float, int]:
    """Return (tokens per second between the first and the last chunk, chunks) of illume on BUFFER."""
    process = subprocess.Popen([PY, "-m", "illume"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO)
    process.stdin.write(buffer.encode())
    process.stdin.close()
    stamps = []
    while True:
        chunk = os.read(process.stdout.fileno(), 65536)
        if not chunk:
            break
        stamps.append(time.perf_counter())
    process.wait()
    if process.returncode != 0 or len(stamps) < 3:
        raise RuntimeError(f"illume failed: {process.returncode}")
    # The first read is the !assistant header or the first token; rate over the rest.
    return (len(stamps) - 2) / (stamps[-1] - stamps[1]), len(stamps)


class _Stamps(io.RawIOBase):
    """An stdout that notes when each piece of the reply was written."""

    def __init__(self):
        self.stamps: list[float] = []

    def write(self, data) -> int:
        self.stamps.append(time.perf_counter())
        return len(data)


def rate_and_servers_own(buffer: str) -> tuple[float, float]:
    """Return (tokens per second seen on illume's stdout, llama-server's own rate) for one request."""
    import illume.reply
    from illume.cli import Options, run

    replies = []

    class Kept(illume.reply.Reply):  # keeps the Reply, for the server's timings of this request
        def __init__(self):
            super().__init__()
            replies.append(self)

    original, illume.reply.Reply = illume.reply.Reply, Kept
    try:
        out = _Stamps()
        if run(buffer.encode(), out, {}, Options()) != 0:
            raise RuntimeError("illume failed")
    finally:
        illume.reply.Reply = original
    stamps = out.stamps
    return (len(stamps) - 2) / (stamps[-1] - stamps[1]), replies[-1].timings["predicted_per_second"]


def main(rounds: int, tokens: int) -> None:
    settings = f"!:temperature 0\n!:seed 1\n!:max_tokens {tokens}\n!:n_predict {tokens}\n!:ignore_eos true\n"
    prompt = "!completion\nThe history of the printing press"
    process, url, _ = start_llama_server(context=1024, parallel=1)
    try:
        through, own, embedded, through_process = [], [], [], []
        for _ in range(rounds):
            seen, servers = rate_and_servers_own(f"!api {url}\n{settings}{prompt}")
            through.append(seen)
            own.append(servers)
            through_process.append(stream_rate(f"!api {url}\n{settings}{prompt}")[0])
            embedded.append(stream_rate(f"!profile embedded\n!:n_threads {THREADS}\n!:n_ctx 1024\n"
                                        f"{settings.replace('!:ignore_eos true', '')}{prompt}")[0])
    finally:
        stop(process)
    start = time.perf_counter()
    subprocess.run([PY, "-c", "from illume.backends.embedded import load, default_model; "
                    f"load(default_model(), {{'n_threads': {THREADS}, 'n_ctx': 1024}})"], check=True, cwd=REPO)
    load = time.perf_counter() - start
    m = statistics.median
    print(f"SmolLM2-135M Q4_1, {tokens} tokens, {THREADS} threads, median of {rounds}")
    ratios = [seen / servers for seen, servers in zip(through, own)]
    print(f"  llama-server's own rate          {m(own):7.1f} tok/s")
    print(f"  seen through illume (server)     {m(through):7.1f} tok/s  = {m(ratios):.3f} of the server's own "
          "for the same request (goal >= 0.98)")
    print(f"  llama-server through illume CLI  {m(through_process):7.1f} tok/s  (a subprocess, as a user runs it)")
    print(f"  embedded backend through illume  {m(embedded):7.1f} tok/s  = {m(embedded) / m(through_process):.2f} "
          "of llama-server through the illume CLI (goal >= 0.9)")
    print(f"  embedded model load (process incl. imports)  {load:.2f} s")
    print(json.dumps({"own": own, "through": through, "ratios": ratios, "through_process": through_process,
                      "embedded": embedded}))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5, int(sys.argv[2]) if len(sys.argv) > 2 else 200)
