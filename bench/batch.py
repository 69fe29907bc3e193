"""Batch runs against the plain filter, side by side in one run.

The same 16 chat buffers, on the same real llama-server (SmolLM2, started
here with `--parallel 4`), answered two ways:

- batch: one `illume --batch -j 4 -o DIR FILE...` process;
- one by one: `illume < FILE > DIR/FILE`, a process per buffer, each after
  the one before, as a shell loop over the plain filter does.

Every reply is exactly TOKENS tokens long (`!:ignore_eos true`), so both
ways generate the same work. The two are interleaved, ROUNDS times; the
figures are medians and their ratio (goal: batch / one by one <= 0.6).

Usage: python bench/batch.py [ROUNDS] [TOKENS]
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from conftest import start_llama_server, stop  # noqa: E402

PY = sys.executable
BUFFERS = 16
JOBS = 4
TOPICS = ["the sea", "a mountain", "bread", "a violin", "winter", "a lighthouse", "bees", "a library",
          "rain", "a bicycle", "the moon", "a garden", "trains", "a kettle", "owls", "a market"]


def buffers(folder: Path, url: str, tokens: int) -> list[Path]:
    paths = []
    for number, topic in enumerate(TOPICS[:BUFFERS]):
        path = folder / f"b{number:02}.txt"
        path.write_text(f"!api {url}\n!:temperature 0\n!:max_tokens {tokens}\n!:ignore_eos true\n"
                        f"!user\nWrite a short poem about {topic}.\n")
        paths.append(path)
    return paths


def env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("ILLUME_")}


def batch(paths: list[Path], out: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run([PY, "-m", "illume", "--batch", "-j", str(JOBS), "-o", str(out), *map(str, paths)],
                            capture_output=True, env=env(), cwd=REPO)
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stderr.decode()
    return elapsed


def one_by_one(paths: list[Path], out: Path) -> float:
    out.mkdir(exist_ok=True)
    start = time.perf_counter()
    for path in paths:
        with path.open("rb") as stdin, (out / path.name).open("wb") as stdout:
            status = subprocess.run([PY, "-m", "illume"], stdin=stdin, stdout=stdout, env=env(), cwd=REPO).returncode
        assert status == 0, (out / path.name).read_text()
    return time.perf_counter() - start


def check(out: Path, paths: list[Path], tokens: int) -> None:
    """Both ways wrote a whole reply for every buffer."""
    for path in paths:
        reply = (out / path.name).read_bytes()
        assert reply.startswith(b"\n\n!assistant\n\n") and b"!error" not in reply, reply[:200]


def main(rounds: int, tokens: int) -> None:
    process, url, _ = start_llama_server(parallel=JOBS)
    try:
        with tempfile.TemporaryDirectory() as folder:
            folder = Path(folder)
            paths = buffers(folder, url, tokens)
            one_by_one(paths, folder / "warm")  # the prompts into the slots' caches, the binaries into memory
            times = {"batch": [], "one by one": []}
            for round_ in range(rounds):
                times["batch"].append(batch(paths, folder / f"batch{round_}"))
                times["one by one"].append(one_by_one(paths, folder / f"plain{round_}"))
                check(folder / f"batch{round_}", paths, tokens)
                check(folder / f"plain{round_}", paths, tokens)
    finally:
        stop(process)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"{BUFFERS} chat buffers, {tokens} tokens each, llama-server --parallel {JOBS} -t 2 on SmolLM2-135M; "
          f"median of {rounds} interleaved rounds, Python {sys.version.split()[0]}")
    for name, values in times.items():
        spread = ", ".join(f"{value:.2f}" for value in values)
        label = f"illume --batch -j {JOBS}" if name == "batch" else "illume < FILE, one by one"
        print(f"  {label:30} {medians[name]:6.2f} s   ({spread})")
    ratio = medians["batch"] / medians["one by one"]
    print(f"ratio batch / one by one   {ratio:.2f}  (goal <= 0.6)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5, int(sys.argv[2]) if len(sys.argv) > 2 else 64)
