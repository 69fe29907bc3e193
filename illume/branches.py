"""Alternative replies: `!branches N` asks for N replies to one buffer.

They are printed one after another in a fixed order, each introduced by a
note that numbers it. In chat mode:

    \\n\\n!note branch 1 of 3\\n\\n!assistant\\n\\n<reply 1>
    \\n\\n!note branch 2 of 3\\n\\n!assistant\\n\\n<reply 2>
    \\n\\n!note branch 3 of 3\\n\\n!assistant\\n\\n<reply 3>

In completion mode the same notes separate the continuations, without
`!assistant`. Fill in the middle has one hole and takes one reply.

How the N replies are asked for:

- An HTTP server gets one request with the API's own `n` (OpenAI's chat and
  completions APIs; llama-server takes 1 to its number of slots and streams
  each choice's events with their `index`: `choices[0].index` on the
  OpenAI-style endpoints, a top-level `index` on its native `/completion`).
  A server that refuses `n` (HTTP 400 or 422 before any text: llama-server
  asked for more choices than it has slots, Anthropic, which has no `n`)
  gets N requests in parallel instead; one that ignores it (only one choice
  comes back) gets the missing ones as parallel requests afterwards.
- The embedded backend answers them one after another in this thread: one
  model, not thread-safe.

Branch 1 streams live; a later branch's text is held until the branches
before it have ended, then printed at once and streamed live from there.
When a branch has its own request and the body sets `seed`, branch K uses
seed + K - 1, so the branches differ and stay reproducible (llama-server
seeds the choices of `n` apart by itself).

A branch that fails does not stop the others: its note stays in place and
the failure is reported in the `!error` section at the end.
"""

import copy
import json
import queue
import threading
import time

from illume import buffer as buf
from illume.backends import concurrent, for_request
from illume.errors import DirectiveError, HTTPStatusError, IllumeError
from illume.output import ASSISTANT, Times, note_line, write_reply
from illume.reply import DONE, GptOss, Reply
from illume.stats import stats_note
from illume.thinking import for_reply

# Statuses with which an OpenAI-style server refuses a key or its value:
# llama-server says "Field 'n': Value must be between 1 <= value <= 4".
REFUSED = (400, 422)

_END = object()  # a branch's last item: its reply ended


def note(number: int, count: int) -> str:
    """Return the note that introduces branch NUMBER of COUNT."""
    return "\n\n" + note_line(f"branch {number} of {count}")


def first_request(parsed: buf.Buffer, request):
    """Return the request to send first for PARSED's branches; raise DirectiveError in infill mode."""
    if request.mode == buf.INFILL:
        raise DirectiveError("!branches: fill in the middle takes one reply (remove !branches)")
    if not concurrent(request.url):
        return request  # answered one request after another
    return _with_body(request, n=parsed.branches)


def answer(parsed: buf.Buffer, request, out, env, timeout: float) -> None:
    """Print PARSED's branches on OUT in order. Raises IllumeError when any failed."""
    cancel = threading.Event()
    times = Times()
    try:
        if concurrent(request.url):
            branches = _over_http(request, parsed.branches, env, timeout, cancel)
        else:
            branches = [_Inline(for_request(request, env, timeout), _own_request(request, k))
                        for k in range(parsed.branches)]
        failures = _print(branches, parsed, request.mode, out, times)
    finally:
        cancel.set()  # on an interrupt too: every request still streaming stops at its next piece
    if parsed.stats:
        times.ended = time.perf_counter()
        out.notes(stats_note(times, [branch.reply for branch in branches]))
    if failures:
        raise IllumeError("; ".join(failures))


def _with_body(request, drop=(), **keys):
    """Return a copy of REQUEST whose body lacks DROP and sets KEYS, still ending with "stream"."""
    body = {key: value for key, value in request.body.items() if key not in drop and key != "stream"}
    body.update(keys)
    body["stream"] = True
    copied = copy.copy(request)
    copied.body = body
    return copied


def _own_request(request, index: int):
    """Return the request for branch INDEX (from 0) asked for on its own: no `n`, its own seed."""
    seed = request.body.get("seed")  # a float, as Go decodes JSON numbers; -1 asks for a random one
    if index and isinstance(seed, (int, float)) and not isinstance(seed, bool) and seed >= 0:
        return _with_body(request, drop=("n",), seed=seed + index)
    return _with_body(request, drop=("n",))


# --- the branches: each yields "" once its request is accepted, then its text ---

class _Queued:
    """A branch whose pieces arrive from another thread."""

    def __init__(self):
        self.reply = Reply()
        self.queue = queue.SimpleQueue()

    def pieces(self):
        while True:
            item = self.queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


class _Inline:
    """A branch streamed by the printing thread itself (the embedded backend)."""

    def __init__(self, backend, request):
        self.backend = backend
        self.request = request
        self.reply = Reply()

    def pieces(self):
        stream = self.backend.stream(self.request, self.reply)
        try:
            yield from stream
        finally:
            stream.close()


def _drain(stream, branch: _Queued, cancel: threading.Event) -> None:
    """Move STREAM's pieces to BRANCH until it ends, fails or the printing thread gives up."""
    try:
        for text in stream:
            branch.queue.put(text)
            if cancel.is_set():
                break
    except Exception as e:  # IllumeError, or a bug of ours: either way the printing thread reports it
        branch.queue.put(e)
    else:
        branch.queue.put(_END)
    finally:
        stream.close()


def _start_own(request, index: int, branch: _Queued, env, timeout: float, cancel: threading.Event) -> None:
    """Ask for branch INDEX with a request of its own, streamed by a thread of its own."""
    own = _own_request(request, index)
    stream = for_request(own, env, timeout).stream(own, branch.reply)
    threading.Thread(target=_drain, args=(stream, branch, cancel), daemon=True).start()


def _over_http(request, count: int, env, timeout: float, cancel: threading.Event) -> list:
    """Return COUNT branches asked of an HTTP server: one request with `n`, else one request each."""
    branches = [_Queued() for _ in range(count)]
    choices = _Choices(branches)
    stream = for_request(request, env, timeout).stream(request, choices)
    try:
        next(stream)  # accepted: the server took `n`
    except HTTPStatusError as e:
        stream.close()
        if e.status not in REFUSED:
            raise
        for index, branch in enumerate(branches):
            _start_own(request, index, branch, env, timeout, cancel)
        return branches
    except BaseException:
        stream.close()
        raise
    branches[0].queue.put("")

    def read_all():
        _drain(stream, _Sink(branches[0], choices), cancel)
        # Choices that never came: the server ignored `n`.
        for index, branch in enumerate(branches):
            if index not in choices.seen and not cancel.is_set():
                _start_own(request, index, branch, env, timeout, cancel)

    threading.Thread(target=read_all, daemon=True).start()
    return branches


class _Sink:
    """Where the one `n` stream's pieces go: text to the first choice, the end or a failure to all seen."""

    def __init__(self, first: _Queued, choices: "_Choices"):
        self.first = first
        self.choices = choices
        self.queue = self

    def put(self, item) -> None:
        if item is _END or isinstance(item, BaseException):
            for index in sorted(self.choices.seen):
                self.choices.branches[index].queue.put(item)
        else:
            self.first.queue.put(item)


class _Choices:
    """The `reply` of one request with `n`: hands each event to the branch its `index` names.

    The backend yields what branch 0 says (as for any reply); the other
    branches' text goes straight to their queues, "" first when a choice
    shows up.
    """

    def __init__(self, branches: list):
        self.branches = branches
        self.seen = {0}
        self.events = 0  # set by a backend that got the whole reply at once

    @property
    def finished(self) -> bool:
        return self.branches[0].reply.finished

    @finished.setter
    def finished(self, value: bool) -> None:
        self.branches[0].reply.finished = value

    def text(self, data: str, event_type: str = "message") -> str:
        if data == DONE:
            for index in self.seen:
                self.branches[index].reply.text(data)
            return ""
        try:
            event = json.loads(data)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            return self.branches[0].reply.text(data, event_type)
        choices = event.get("choices")
        if isinstance(choices, list) and len(choices) > 1:
            # Several choices in one event: one event each.
            return "".join(self._route(choice.get("index") if isinstance(choice, dict) else 0,
                                       json.dumps({**event, "choices": [choice]}), event_type)
                           for choice in choices)
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            index = choices[0].get("index")
        else:
            index = event.get("index")  # llama-server's native endpoints
        return self._route(index, data, event_type)

    def _route(self, index, data: str, event_type: str) -> str:
        if not isinstance(index, int) or not 0 <= index < len(self.branches):
            index = 0
        branch = self.branches[index]
        text = branch.reply.text(data, event_type)
        if index == 0:
            return text
        if index not in self.seen:
            self.seen.add(index)
            branch.queue.put("")
        if text:
            branch.queue.put(text)
        return ""


# --- printing ---

def _print(branches: list, parsed: buf.Buffer, mode: str, out, times: Times) -> list[str]:
    """Print BRANCHES in order; return the failures. TIMES gets when the first branch was accepted."""
    count = len(branches)
    failures = []
    for number, branch in enumerate(branches, 1):
        header = note(number, count) + (ASSISTANT + parsed.prepend if mode == buf.CHAT else "\n\n")
        own = Times()
        try:
            write_reply(branch.pieces(), branch.reply, out, own, header,
                        translate=GptOss() if parsed.gpt_oss else None, thinking=for_reply(parsed, header))
        except IllumeError as e:
            if number == 1 and own.answered is None:
                raise  # the request itself failed: reported as the plain filter reports it
            if own.answered is None:
                out.notes(note(number, count))
            failures.append(f"branch {number} of {count}: {e}")
        if number == 1 and own.answered is not None:
            times.answered = own.answered
    return failures
