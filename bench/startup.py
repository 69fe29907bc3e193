"""Start-up: how long illume takes to start, against the floor of its stack.

Runs each command ROUNDS times, interleaved (so machine noise hits all
alike), and prints medians and ratios:
- `python -c pass` (the bare interpreter) and `python -c "import click"`;
- `python -c "import httpx, click"` (the floor of a real request);
- `illume --version` and a `!debug` dry run;
- a real chat request: time from process start until the request reaches
  a local server (and the whole process, reply included).

Usage: python bench/startup.py [ROUNDS]
"""

import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from localserver import LocalServer, sse_body  # noqa: E402

PY = sys.executable
REPO = Path(__file__).resolve().parent.parent


def timed(command, stdin=b"") -> float:
    start = time.perf_counter()
    subprocess.run(command, input=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd=REPO)
    return time.perf_counter() - start


def main(rounds: int) -> None:
    server = LocalServer(sse_body(3))
    chat = f"!api {server.url}\n!user\nhi\n".encode()
    results: dict[str, list[float]] = {}
    commands = {
        "python -c pass": ([PY, "-c", "pass"], b""),
        "python -c 'import click'": ([PY, "-c", "import click"], b""),
        "python -c 'import httpx, click'": ([PY, "-c", "import httpx, click"], b""),
        "python -c 'import httpx, click, httpcore'": ([PY, "-c", "import httpx, click, httpcore"], b""),
        "illume --version": ([PY, "-m", "illume", "--version"], b""),
        "illume !debug dry run": ([PY, "-m", "illume"], b"!debug\n!user\nhi\n"),
        "illume chat request (whole process)": ([PY, "-m", "illume"], chat),
    }
    for _ in range(rounds):
        for name, (command, stdin) in commands.items():
            results.setdefault(name, []).append(timed(command, stdin))
        # Time to the request reaching the server.
        before = len(server.arrivals)
        start = time.perf_counter()
        subprocess.run([PY, "-m", "illume"], input=chat, stdout=subprocess.DEVNULL, check=True, cwd=REPO)
        results.setdefault("illume chat: start to request at server", []).append(server.arrivals[before] - start)

    median = {name: statistics.median(times) for name, times in results.items()}
    width = max(map(len, median))
    print(f"median of {rounds} interleaved runs, {sys.version.split()[0]}")
    for name, value in median.items():
        print(f"  {name:<{width}}  {value * 1000:7.1f} ms")
    bare, click_only, floor = median["python -c pass"], median["python -c 'import click'"], median["python -c 'import httpx, click'"]
    request = median["illume chat: start to request at server"]
    print("ratios")
    print(f"  request reaching the server / floor (import httpx, click)   {request / floor:.2f}  (goal <= 1.2)")
    full = median["python -c 'import httpx, click, httpcore'"]
    print(f"  request reaching the server / (import httpx, click, httpcore) {request / full:.2f}"
          "  (httpx imports httpcore only when it sends)")
    print(f"  --version / bare interpreter                                 {median['illume --version'] / bare:.2f}")
    print(f"  --version / (import click)                                   {median['illume --version'] / click_only:.2f}  (goal <= 2)")
    print(f"  !debug / (import click)                                      {median['illume !debug dry run'] / click_only:.2f}  (goal <= 2)")
    print(f"  floor / bare interpreter                                     {floor / bare:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
