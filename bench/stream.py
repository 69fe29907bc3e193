"""Streaming throughput and first-byte latency.

1. A local server streams EVENTS small chat events as fast as it can;
   whole-process time of illume consuming them, against `curl -N` reading
   the same stream to /dev/null (the physical limit).
2. First-byte latency: the server sends its headers, waits, then writes the
   first event; the time from that write until illume's stdout carries its
   text (both clocks are CLOCK_MONOTONIC).

Usage: python bench/stream.py [ROUNDS] [EVENTS]
"""

import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from localserver import LocalServer, sse_body  # noqa: E402

PY = sys.executable
REPO = Path(__file__).resolve().parent.parent


def throughput(rounds: int, events: int) -> None:
    server = LocalServer(sse_body(events))
    buffer = f"!api {server.url}\n!user\nhi\n".encode()
    illume, curl = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        result = subprocess.run([PY, "-m", "illume"], input=buffer, capture_output=True, cwd=REPO)
        illume.append(time.perf_counter() - start)
        assert result.returncode == 0 and result.stdout.count(b"x") == events, result.stdout[-200:]
        if shutil.which("curl"):
            start = time.perf_counter()
            subprocess.run(["curl", "-sN", "-o", "/dev/null", "-d", "{}", server.url], check=True)
            curl.append(time.perf_counter() - start)
    print(f"throughput: {events} events, median of {rounds}")
    print(f"  illume whole process  {statistics.median(illume):.3f} s  (goal <= 0.65 s)")
    if curl:
        print(f"  curl -N to /dev/null  {statistics.median(curl):.3f} s")
        print(f"  ratio illume / curl   {statistics.median(illume) / statistics.median(curl):.1f}")


def first_byte(rounds: int) -> None:
    latencies = []
    for _ in range(rounds):
        server = LocalServer(sse_body(1), delay_first=0.5)
        buffer = f"!api {server.url}\n!user\nhi\n".encode()
        process = subprocess.Popen([PY, "-m", "illume"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO)
        process.stdin.write(buffer)
        process.stdin.close()
        seen = []

        def read():
            data = b""
            while b"x" not in data:
                chunk = os.read(process.stdout.fileno(), 65536)
                if not chunk:
                    return
                data += chunk
            seen.append(time.perf_counter())

        reader = threading.Thread(target=read)
        reader.start()
        reader.join(30)
        process.wait(30)
        latencies.append(seen[0] - server.first_event_sent[0])
        server.close()
    print(f"first-byte latency, median of {rounds}: {statistics.median(latencies) * 1000:.2f} ms "
          f"(min {min(latencies) * 1000:.2f}, max {max(latencies) * 1000:.2f}; goal < 1 ms)")


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    events = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    throughput(rounds, events)
    first_byte(rounds)
