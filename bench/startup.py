"""Start-up: illume's whole process, side by side with the floor of its stack and with the original.

Each round runs every command once, in turn (so the machine's noise hits
all alike); the figures are medians over the rounds, each with its spread
(min-max), and each ratio is taken round by round, the median and spread
of those printed:
- a `!debug` dry run against `python -c "import click, json"`;
- a real chat request to a local server, whole process (start to exit,
  reply read), against `python -c "import httpx, click"`;
- with --original PATH, the original Go program on the same two buffers;
- with --plain-from REV, the same chat request through illume with its
  plain-HTTP transport (illume/backends/plain.py) as it was at git
  revision REV: a copy of illume in a temporary folder, that one file
  replaced (`git show`), compiled alike; for comparing transports.

illume's modules are compiled to .pyc first, as `pip install` does, so an
environment that sets PYTHONDONTWRITEBYTECODE does not time the compiler.

Usage: python bench/startup.py [--original PATH] [--plain-from REV] [ROUNDS]
"""

import argparse
import compileall
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from localserver import LocalServer, sse_body  # noqa: E402

PY = sys.executable
REPO = Path(__file__).resolve().parent.parent


def timed(command, stdin=b"", cwd=REPO) -> tuple[float, float]:
    """Return the wall time and the CPU time (user + system) of one whole run of COMMAND in CWD."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, input=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd=cwd)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def spread(values: list[float], scale: float = 1000.0, digits: int = 1) -> str:
    """Return 'median (min-max)' of VALUES, scaled."""
    return (f"{statistics.median(values) * scale:.{digits}f} "
            f"({min(values) * scale:.{digits}f}-{max(values) * scale:.{digits}f})")


def with_plain_of(rev: str, folder: Path) -> Path:
    """Return FOLDER holding a compiled copy of illume whose backends/plain.py is REV's.

    `python -m illume` run in FOLDER imports that copy: the current
    folder comes before the editable install on the import path.
    """
    shutil.copytree(REPO / "illume", folder / "illume", ignore=shutil.ignore_patterns("__pycache__"))
    for beside in ("profiles", "fim_templates"):
        (folder / beside).symlink_to(REPO / beside)
    old = subprocess.run(["git", "show", f"{rev}:illume/backends/plain.py"], cwd=REPO, capture_output=True,
                         check=True).stdout
    (folder / "illume" / "backends" / "plain.py").write_bytes(old)
    compileall.compile_dir(folder / "illume", quiet=1)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("rounds", nargs="?", type=int, default=15)
    parser.add_argument("--original", metavar="PATH", help="the original Go program, to run side by side")
    parser.add_argument("--plain-from", metavar="REV",
                        help="also a chat request with illume/backends/plain.py as it was at git revision REV")
    args = parser.parse_args()
    compileall.compile_dir(REPO / "illume", quiet=1)
    with tempfile.TemporaryDirectory() as folder:
        run(args, with_plain_of(args.plain_from, Path(folder)) if args.plain_from else None)


def run(args, old_plain: Path | None) -> None:
    """Time the commands ARGS asks for, in turn, and print the figures; OLD_PLAIN holds illume with another plain.py."""
    server = LocalServer(sse_body(3))
    chat = f"!api {server.url}\n!user\nhi\n".encode()
    debug = b"!debug\n!user\nhi\n"
    commands = {
        "python -c 'import click, json'": ([PY, "-c", "import click, json"], b""),
        "illume !debug dry run": ([PY, "-m", "illume"], debug),
        "python -c 'import httpx, click'": ([PY, "-c", "import httpx, click"], b""),
        "illume chat request (whole process)": ([PY, "-m", "illume"], chat),
    }
    old_chat = f"illume chat request, plain.py of {args.plain_from}"
    if old_plain:
        commands[old_chat] = ([PY, "-m", "illume"], chat, old_plain)
    if args.original:
        commands["original !debug dry run"] = ([args.original], debug)
        commands["original chat request (whole process)"] = ([args.original], chat)
    times: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.rounds):
        for name, (command, stdin, *cwd) in commands.items():
            wall, used = timed(command, stdin, *cwd)
            times[name].append(wall)
            cpu[name].append(used)

    load = os.getloadavg()
    print(f"{args.rounds} interleaved rounds, Python {sys.version.split()[0]}, "
          f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores")
    print("whole process, ms: median (min-max), wall time and CPU time (user + system)")
    width = max(map(len, times))
    for name, values in times.items():
        print(f"  {name:<{width}}  wall {spread(values):<22} cpu {spread(cpu[name])}")

    print("ratios, round by round: median (min-max)")
    pairs = [("illume !debug dry run", "python -c 'import click, json'", "goal <= 1.2"),
             ("illume chat request (whole process)", "python -c 'import httpx, click'", "goal <= 1.2")]
    if old_plain:
        pairs += [(old_chat, "python -c 'import httpx, click'", "goal <= 1.2"),
                  ("illume chat request (whole process)", old_chat, "")]
    if args.original:
        pairs += [("illume !debug dry run", "original !debug dry run", ""),
                  ("illume chat request (whole process)", "original chat request (whole process)", "")]
    for a, b, goal in pairs:
        ratios = [x / y for x, y in zip(times[a], times[b])]
        cpu_ratios = [x / y for x, y in zip(cpu[a], cpu[b])]
        print(f"  {a} / {b}: wall {spread(ratios, 1, 2)}, cpu {spread(cpu_ratios, 1, 2)}  {goal}")


if __name__ == "__main__":
    main()
