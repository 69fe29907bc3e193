"""Batch runs: `illume --batch [-j N] [-o DIR] [--skip-done] FILE...`.

Each FILE is answered exactly as `illume < FILE` would answer it (through
`answer.answer`), N at a time on worker threads: the work is waiting on a
server, and a local llama-server serves as many requests at once as it
has slots (`--parallel`, 4 by default in this project's setups).

Where the reply goes:

- by default it is appended to FILE, as `illume < FILE >> FILE` would;
- with `-o DIR`, DIR/NAME holds what `illume < FILE > DIR/NAME` would
  print (the reply alone; with `--filter`, the buffer and then the reply).

Only a complete reply is written, and atomically: a temporary file in the
same folder, then a rename over the target, keeping the target's mode. A
buffer that fails, or is interrupted, leaves its file as it was, so a
later run picks it up again; its failure is reported on stderr with its
name. The threads only compute replies; the main thread owns every write,
so an interrupt never stops one halfway.

`--skip-done` skips a buffer that already ends with a reply (`answered`):
in chat mode, its last message is the assistant's and no `!error` line
follows the last `!assistant` line; with `-o DIR`, DIR/NAME exists. A
completion buffer appended to carries no mark of where its reply began, so
`--skip-done` without `-o` refuses it, as a failure, rather than guess.

The embedded backend holds one model and redirects file descriptor 2 while
it runs: buffers whose backend is not `concurrent` are answered one at a
time (a lock), whatever N is.
"""

import os
import queue
import re
import stat
import sys
import threading
import time
from collections.abc import Mapping
from contextlib import nullcontext

import click

from illume import buffer as buf
from illume.answer import Options, answer, prepare
from illume.errors import Exit, IllumeError, Interrupted, StreamError
from illume.names import shown as shown_name
from illume.output import HeldEcho, Output, unexpected
from illume.terminal import shown

DEFAULT_JOBS = 4
GRACE = 5.0  # seconds an interrupted batch waits for its requests to stop
PROGRESS_EVERY = 0.5  # seconds between redraws of the progress bar, for its clock
BAR = 24  # cells

ANSWERED, FAILED, SKIPPED = "answered", "failed", "skipped"


class Refused(Exception):
    """A file that --skip-done cannot judge, with the reason."""


def check(paths: list[str], output_dir: str | None, options: Options) -> str | None:
    """Return what is wrong with this batch's command line, or None."""
    if not paths:
        return "--batch needs at least one FILE"
    if "-" in paths:
        return "--batch answers files, not standard input (-)"
    if options.filter and output_dir is None:
        return "--filter would append each buffer to itself: use it with --output-dir"
    if options.summaries_file:
        return "--summaries-file is an editor's, for one buffer at a time; a batch places summaries with --filter -o DIR"
    seen: dict[str, str] = {}
    for path in paths:
        key = os.path.basename(path) if output_dir is not None else os.path.realpath(path)
        if key in seen:
            where = f"DIR/{key}" if output_dir is not None else "the same file"
            return f"{shown_name(seen[key])} and {shown_name(path)} would both be written to {shown_name(where)}"
        seen[key] = path
    return None


def answered(text: str, parsed) -> bool:
    """Return whether the buffer TEXT (PARSED) already ends with a reply; raise Refused when it cannot be told."""
    if parsed.mode != buf.CHAT:
        raise Refused(f"--skip-done cannot tell whether a {parsed.mode} buffer was answered "
                      "(the reply appended to it carries no mark); use --output-dir")
    if not parsed.messages or parsed.messages[-1].role != "assistant":
        return False
    last = None
    for line in text.split("\n"):
        command = line.partition(" ")[0].rstrip("\r")
        if command == "!end":
            break
        if command in ("!assistant", "!error"):
            last = command
    return last == "!assistant"


class Result:
    """One file's outcome, computed on a worker thread and written by the main thread."""

    def __init__(self, path: str, outcome: str, raw: bytes = b"", output: bytes = b"", message: str = "",
                 status: int = 0, usage=None, prices=None):
        self.path = path
        self.usage = usage  # what the reply used, when its buffer has `!stats` (illume.usage)
        self.prices = prices
        self.outcome = outcome
        self.raw = raw
        self.output = output
        self.message = message
        self.status = status


# A batch holds each reply in memory until it is written: one past this size fails, as its own error.
MAX_REPLY_BYTES = 256 * 1024 * 1024


class _Collector:
    """A reply's output, kept in memory; once the batch is cancelled, the next write stops the run."""

    def __init__(self, cancel: threading.Event, status: list):
        self.parts: list[bytes] = []
        self.size = 0
        self.cancel = cancel
        self.status = status  # [exit status of the interrupt], shared
        self.stopped = False
        self.full = False

    def write(self, data: bytes) -> int:
        if self.cancel.is_set() and not self.stopped:
            self.stopped = True
            raise Interrupted(self.status[0])  # the reply loop closes the request on its way out
        self.size += len(data)
        if self.size > MAX_REPLY_BYTES and not self.full:
            self.full = True  # what follows (text held back for a token) is still taken
            raise StreamError(f"the reply grew past {MAX_REPLY_BYTES} bytes, more than a batch holds "
                              "in memory; the reply was not written")
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def getvalue(self) -> bytes:
        return b"".join(self.parts)


class Batch:
    """One batch run: the files, the workers, the writes, the report."""

    def __init__(self, paths: list[str], env: Mapping[str, str], options: Options, jobs: int,
                 output_dir: str | None, skip_done: bool, stderr=None):
        self.paths = paths
        self.env = env
        self.options = options
        self.jobs = jobs
        self.output_dir = output_dir
        self.skip_done = skip_done
        self.stderr = stderr or sys.stderr
        self.progress = self.stderr.isatty()
        self.todo: queue.SimpleQueue = queue.SimpleQueue()
        self.results: queue.SimpleQueue = queue.SimpleQueue()
        self.cancel = threading.Event()
        self.interrupt_status = [Exit.SIGINT]
        self.one_at_a_time = threading.Lock()  # held while a backend that is not concurrent answers
        self.counts = {ANSWERED: 0, FAILED: 0, SKIPPED: 0}
        self.failures: list[tuple[str, str]] = []
        self.totals = None  # illume.usage.Totals, once a reply with `!stats` said what it used
        self.started = time.monotonic()
        umask = os.umask(0)
        os.umask(umask)
        self.new_mode = 0o666 & ~umask

    # --- workers ------------------------------------------------------
    def work(self) -> None:
        while not self.cancel.is_set():
            try:
                path = self.todo.get_nowait()
            except queue.Empty:
                return
            try:
                result = self.answer(path)
            except Exception as e:  # a bug of ours: reported for this file, the others go on
                result = Result(path, FAILED, message=unexpected(e))
            self.results.put(result)

    def answer(self, path: str) -> Result:
        """Return PATH's outcome: its reply, or why there is none."""
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            return Result(path, FAILED, message=f"cannot read it: {e.strerror or e}")
        if self.skip_done and self.output_dir is not None and os.path.exists(self.target(path)):
            return Result(path, SKIPPED)
        text = raw.decode("utf-8", "surrogateescape")
        try:
            question = prepare(text, self.env, self.options)
        except IllumeError as e:
            return Result(path, FAILED, raw, message=str(e).strip(), status=Exit.ERROR)
        if self.skip_done and self.output_dir is None:
            try:
                if answered(text, question.parsed):
                    return Result(path, SKIPPED)
            except Refused as e:
                return Result(path, FAILED, message=str(e))
        del text
        output = _Collector(self.cancel, self.interrupt_status)
        # With --filter, `!fit summarize` inserts its summaries into the echo, held back until the reply begins.
        stream = HeldEcho(output, raw) if self.options.filter else output
        out = Output(stream, question.secrets)
        try:
            if not question.parsed.fit_summarize:
                stream.flush()
            with nullcontext() if question.concurrent else self.one_at_a_time:
                answer(question, out)
            stream.flush()
        except IllumeError as e:
            return Result(path, FAILED, raw, message=out.scrub(str(e)).strip(), status=Exit.ERROR)
        except Interrupted as e:
            return Result(path, FAILED, raw, message="interrupted", status=e.status)
        except Exception as e:  # a bug of ours, scrubbed of the buffer's secrets: the others go on
            return Result(path, FAILED, raw, message=out.scrub(unexpected(e)), status=Exit.ERROR)
        return Result(path, ANSWERED, raw, output.getvalue(), usage=question.usage, prices=question.parsed.prices)

    # --- the main thread ----------------------------------------------
    def run(self) -> int:
        """Answer every file; return the exit status."""
        if self.output_dir is not None:
            os.makedirs(self.output_dir, exist_ok=True)
        for path in self.paths:
            self.todo.put(path)
        workers = [threading.Thread(target=self.work, daemon=True) for _ in range(min(self.jobs, len(self.paths)))]
        for worker in workers:
            worker.start()
        finished = 0
        interrupted = None
        with self.progress_bar() as bar:
            try:
                while finished < len(self.paths):
                    try:
                        result = self.results.get(timeout=PROGRESS_EVERY)
                    except queue.Empty:
                        bar.update(0)  # drawn again: its clock goes on
                        continue
                    finished += 1
                    self.commit(result)
                    bar.update(1)
            except (KeyboardInterrupt, Interrupted) as e:
                interrupted = e.status if isinstance(e, Interrupted) else Exit.SIGINT
                self.interrupt_status[0] = interrupted
                self.cancel.set()
                self.stop(workers, finished)
        self.report(interrupted is not None)
        if interrupted is not None:
            return interrupted
        return Exit.ERROR if self.counts[FAILED] else Exit.OK

    def stop(self, workers: list, finished: int) -> None:
        """Let the running requests stop (each at its next piece); write the replies that were complete."""
        deadline = time.monotonic() + GRACE
        while any(worker.is_alive() for worker in workers) and time.monotonic() < deadline:
            try:
                result = self.results.get(timeout=0.1)
            except queue.Empty:
                continue
            self.commit(result)
        while True:
            try:
                self.commit(self.results.get_nowait())
            except queue.Empty:
                break

    def target(self, path: str) -> str:
        if self.output_dir is None:
            return os.path.realpath(path)  # through a symbolic link, not over it
        return os.path.join(self.output_dir, os.path.basename(path))

    def commit(self, result: Result) -> None:
        if result.outcome == ANSWERED:
            try:
                self.write(result)
            except OSError as e:
                result.outcome, result.message = FAILED, f"cannot write the reply: {e.strerror or e}"
            except _Changed as e:
                result.outcome, result.message = FAILED, str(e)
        if result.outcome == FAILED and result.status in (Exit.SIGINT, Exit.SIGTERM) and self.cancel.is_set():
            return  # stopped by this interrupt: counted as not run
        self.counts[result.outcome] += 1
        if result.outcome == ANSWERED and result.usage:
            from illume.usage import Totals

            self.totals = self.totals or Totals()
            self.totals.add(result.usage, result.prices)
        if result.outcome == FAILED:
            self.failures.append((result.path, result.message))

    def write(self, result: Result) -> None:
        target = self.target(result.path)
        if self.output_dir is None:
            with open(target, "rb") as f:
                if f.read() != result.raw:
                    raise _Changed("it changed while illume was answering it; the reply was not written")
            mode = _mode_to_keep(target)
            data = result.raw + result.output
        else:
            mode = _mode_to_keep(target, self.new_mode)
            data = result.output
        write_atomically(target, data, mode)

    # --- stderr -------------------------------------------------------
    def progress_bar(self):
        """Return the progress bar that stderr shows while the batch runs; on a pipe or a file, one that draws nothing.

        On a terminal it is click's: `illume: [####....] 3/8, 1 failed, 2.5 s`,
        left full (or where an interrupt stopped it) above the report. Elsewhere
        click's would print its label alone, and stderr holds the report alone.
        """
        if not self.progress:
            return _NoBar()

        def status(_) -> str:
            failed = self.counts[FAILED]
            return f"{failed} failed, {self.elapsed()}" if failed else self.elapsed()

        # update_min_steps=0: update(0) draws it again, for its clock.
        return click.progressbar(length=len(self.paths), label="illume:", bar_template="%(label)s [%(bar)s] %(info)s",
                                 width=BAR, fill_char="#", empty_char=".", show_pos=True, show_percent=False,
                                 show_eta=False, info_sep=", ", item_show_func=status, file=self.stderr,
                                 update_min_steps=0)

    def elapsed(self) -> str:
        return f"{time.monotonic() - self.started:.1f} s"

    def report(self, interrupted: bool = False) -> None:
        for path, message in self.failures:
            if self.progress:  # a terminal: a server's words must not carry control sequences to it
                message = shown(message)
            self.stderr.write(f"illume: {shown_name(path)}: {message}\n")
        total = len(self.paths)
        parts = [f"{self.counts[ANSWERED]} answered", f"{self.counts[FAILED]} failed", f"{self.counts[SKIPPED]} skipped"]
        not_run = total - sum(self.counts.values())
        if not_run:
            parts.append(f"{not_run} not run")
        ending = ", interrupted" if interrupted else ""
        files = "file" if total == 1 else "files"
        self.stderr.write(f"illume: {total} {files} in {self.elapsed()}{ending}: {', '.join(parts)}\n")
        if self.totals:
            self.stderr.write(f"illume: {self.totals.words()}\n")  # the files with `!stats` only
        self.stderr.flush()


class _NoBar:
    """The progress bar where there is no terminal to draw it on."""

    def __enter__(self) -> "_NoBar":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def update(self, steps: int) -> None:
        pass


class _Changed(Exception):
    """The file changed on disk while its reply was being computed, or is not the runner's to replace."""


def _mode_to_keep(target: str, new_mode: int | None = None) -> int:
    """Return the permission bits the rewritten TARGET keeps; raise _Changed for a file the runner does not own.

    The file is re-created, so it belongs to whoever runs the batch: a
    setuid or setgid bit would then be the runner's (root's, over a shared
    folder), so only the permission bits 0o777 are kept. A file of
    another user is left alone rather than taken over. TARGET itself is
    looked at (lstat), never what a symbolic link placed there points to:
    the link is replaced by a new file with NEW_MODE.
    """
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        if new_mode is None:
            raise
        return new_mode
    if not _owned(info):
        raise _Changed(f"it belongs to another user (uid {info.st_uid}); illume replaces only its own files, "
                       "the reply was not written")
    if not stat.S_ISREG(info.st_mode):
        if new_mode is None:
            raise _Changed("it is not a regular file; the reply was not written")
        return new_mode
    return stat.S_IMODE(info.st_mode) & 0o777


TEMPORARY = ".{name}.illume-{pid}.tmp"
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
_STALE = re.compile(r"\.(.+)\.illume-(\d+)\.tmp")
_swept: set[str] = set()  # folders already cleared of stale temporary files by this process


def _owned(info: os.stat_result) -> bool:
    """Return whether the file INFO describes is this user's own (always, where there are no user ids)."""
    return not hasattr(os, "geteuid") or info.st_uid == os.geteuid()


def _sweep(folder: str) -> None:
    """Remove the temporary files that an illume killed in the middle of a write left in FOLDER.

    Each is named after the process that wrote it; one whose process is
    gone is removed, if it is the runner's own regular file. Once per
    folder and process.
    """
    if folder in _swept:
        return
    _swept.add(folder)
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        match = _STALE.fullmatch(name)
        if not match or _alive(int(match.group(2))):
            continue
        path = os.path.join(folder, name)
        try:
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode) and _owned(info):
                os.unlink(path)
        except OSError:
            pass


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a file of an earlier process that had this number
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # another user's process, or not a process number: leave its file alone
    return True


def write_atomically(path: str, data: bytes, mode: int) -> None:
    """Replace PATH by DATA with permission bits MODE, so that a reader sees the old file or the new one."""
    folder = os.path.dirname(os.path.abspath(path))
    _sweep(folder)
    temporary = os.path.join(folder, TEMPORARY.format(name=os.path.basename(path), pid=os.getpid()))
    try:
        fd = os.open(temporary, _CREATE, 0o600)
    except FileExistsError:
        os.unlink(temporary)  # left by this process, or an earlier one with this number, that was stopped
        fd = os.open(temporary, _CREATE, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, mode & 0o777)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def main(paths: list[str], env: Mapping[str, str], options: Options, jobs: int | None,
         output_dir: str | None, skip_done: bool) -> int:
    """Run the batch the command line asks for; return the exit status (usage errors are the caller's)."""
    batch = Batch(paths, env, options, jobs or DEFAULT_JOBS, output_dir, skip_done)
    return batch.run()
