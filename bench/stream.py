"""Streaming throughput, side by side with the original, and first-byte latency.

1. A local server streams EVENTS small chat events as fast as it can; the
   whole process of illume consuming them (start to exit), and with
   --original PATH the original Go program on the same stream, in turn,
   round by round; `curl -N` reading it to /dev/null is the physical limit.
2. First-byte latency: the server sends its headers, waits, then writes the
   first event; the time from that write until illume's stdout carries its
   text (both clocks are CLOCK_MONOTONIC).

illume's modules are compiled to .pyc first, as `pip install` does.

Usage: python bench/stream.py [--original PATH] [ROUNDS] [EVENTS]
"""

import argparse
import compileall
import os
import resource
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


def spread(values: list[float], scale: float = 1.0, digits: int = 3) -> str:
    """Return 'median (min-max)' of VALUES, scaled."""
    return (f"{statistics.median(values) * scale:.{digits}f} "
            f"({min(values) * scale:.{digits}f}-{max(values) * scale:.{digits}f})")


def run(command, buffer: bytes, events: int) -> tuple[float, float]:
    """Return the wall time and the CPU time (user + system) of one whole run of COMMAND."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, input=buffer, capture_output=True, cwd=REPO)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert result.returncode == 0 and result.stdout.count(b"x") == events, (command, result.stdout[-200:])
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def throughput(rounds: int, events: int, original: str | None) -> None:
    server = LocalServer(sse_body(events))
    buffer = f"!api {server.url}\n!user\nhi\n".encode()
    commands = {"illume": [PY, "-m", "illume"]}
    if original:
        commands["original"] = [original]
    times: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    curl = []
    for _ in range(rounds):
        for name, command in commands.items():
            wall, used = run(command, buffer, events)
            times[name].append(wall)
            cpu[name].append(used)
        if shutil.which("curl"):
            start = time.perf_counter()
            subprocess.run(["curl", "-sN", "-o", "/dev/null", "-d", "{}", server.url], check=True)
            curl.append(time.perf_counter() - start)
    load = os.getloadavg()
    print(f"throughput: {events} events, {rounds} interleaved rounds, "
          f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores")
    print("  whole process, s: median (min-max), wall time and CPU time (user + system)")
    for name, values in times.items():
        print(f"    {name:<22}wall {spread(values):<22} cpu {spread(cpu[name])}")
    if curl:
        print(f"    {'curl -N to /dev/null':<22}wall {spread(curl)}")
    if original:
        ratios = [o / i for i, o in zip(times["illume"], times["original"])]
        cpu_ratios = [o / i for i, o in zip(cpu["illume"], cpu["original"])]
        print(f"  illume's speed / the original's (original's time / illume's), round by round: "
              f"wall {spread(ratios, 1, 2)} (goal >= 1), cpu {spread(cpu_ratios, 1, 2)}")


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
    print(f"first-byte latency, ms, median (min-max) of {rounds}: {spread(latencies, 1000, 2)}  (goal < 1 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("rounds", nargs="?", type=int, default=7)
    parser.add_argument("events", nargs="?", type=int, default=100_000)
    parser.add_argument("--original", metavar="PATH", help="the original Go program, to run side by side")
    args = parser.parse_args()
    compileall.compile_dir(REPO / "illume", quiet=1)
    throughput(args.rounds, args.events, args.original)
    first_byte(args.rounds)


if __name__ == "__main__":
    main()
