"""Generation speed on the real SmolLM2 model, side by side in one run.

1. End to end: tokens per second seen through illume (timing each chunk on
   its stdout) against llama-server's own `timings.predicted_per_second`
   for the same request.
2. The embedded backend against llama-server: the same prompt, settings and
   thread count, each timed the same way through illume; and the embedded
   model's load time.

Usage: python bench/rates.py [ROUNDS] [TOKENS]
"""

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from conftest import start_llama_server, stop  # noqa: E402

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


def server_rate(url: str, body: dict) -> float:
    import httpx

    response = httpx.post(url + "completion", json={**body, "stream": False}, timeout=300)
    return response.json()["timings"]["predicted_per_second"]


def main(rounds: int, tokens: int) -> None:
    settings = f"!:temperature 0\n!:seed 1\n!:max_tokens {tokens}\n!:n_predict {tokens}\n!:ignore_eos true\n"
    prompt = "!completion\nThe history of the printing press"
    process, url, _ = start_llama_server(context=1024, parallel=1)
    try:
        through, own, embedded = [], [], []
        for _ in range(rounds):
            through.append(stream_rate(f"!api {url}\n{settings}{prompt}")[0])
            own.append(server_rate(url, {"prompt": "The history of the printing press", "n_predict": tokens,
                                         "temperature": 0, "seed": 1, "ignore_eos": True}))
            embedded.append(stream_rate(f"!profile embedded\n!:n_threads {THREADS}\n!:n_ctx 1024\n"
                                        f"{settings.replace('!:ignore_eos true', '')}{prompt}")[0])
    finally:
        stop(process)
    start = time.perf_counter()
    subprocess.run([PY, "-c", "from illume.backends.embedded import _load, default_model; "
                    f"_load(default_model(), {{'n_threads': {THREADS}, 'n_ctx': 1024}})"], check=True, cwd=REPO)
    load = time.perf_counter() - start
    m = statistics.median
    print(f"SmolLM2-135M Q4_1, {tokens} tokens, {THREADS} threads, median of {rounds}")
    print(f"  llama-server's own rate          {m(own):7.1f} tok/s")
    print(f"  seen through illume (server)     {m(through):7.1f} tok/s  = {m(through) / m(own):.3f} of the server's own"
          " (goal >= 0.98)")
    print(f"  embedded backend through illume  {m(embedded):7.1f} tok/s  = {m(embedded) / m(through):.2f} of llama-server"
          " through illume (goal >= 0.9)")
    print(f"  embedded model load (process incl. imports)  {load:.2f} s")
    print(json.dumps({"own": own, "through": through, "embedded": embedded}))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5, int(sys.argv[2]) if len(sys.argv) > 2 else 200)
