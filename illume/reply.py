"""The reply: text out of streamed events, whatever the server's schema (docs/wire.md, "The reply").

Servers disagree on where the text is. In order, the original reads
`choices[0].delta.content` (chat), `choices[0].text` (completions),
Anthropic's `delta.thinking` and `delta.text`, and `content` (llama.cpp's
native /completion and /infill). `Reply` does the same, and also notices
how the stream ends: its end marker, an error inside it, a token limit.

Thinking that comes in a field of its own (`delta.reasoning_content` from
llama-server, vLLM and DeepSeek; `delta.reasoning` from vLLM, Ollama and
OpenRouter; Anthropic's `delta.thinking`; Gemini's parts marked `thought`)
is written between `<think>` and `</think>` lines, as it streams (docs/buffer.md,
"Thinking"). What the reply used, when the server says, goes to `usage`.
"""

import json

from illume.errors import StreamError
from illume.output import note_line
from illume.secrets import scrub
from illume.sse import DONE

# json.loads without its per-call checks: this runs once per streamed token.
_scan = json.scanner.make_scanner(json.JSONDecoder())

# What `!note the reply stopped at ...` names when the reply's length limit (max_tokens, n_predict) cut it.
TOKEN_LIMIT = "the token limit"
THINK_OPEN = "<think>\n"
THINK_CLOSE = "\n</think>\n\n"
THINK_END = "\n</think>"  # closes a block that no answer followed: the stream ended while thinking
# The fields of a chat delta that carry thinking, in the order they are looked for.
THINKING_FIELDS = ("reasoning_content", "reasoning")


def _excerpt(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Of a malformed event, this much is kept: enough to scrub a key out of it before it is cut to 80.
MALFORMED_KEPT = 4096


def malformed_excerpt(data: str, secrets=()) -> str:
    """Return the excerpt of a malformed event's DATA that a `!note` shows: SECRETS masked, then cut."""
    return _excerpt(scrub(data, secrets), 80)


def error_message(error) -> str:
    """Return the readable message of an `error` value in any of the known shapes."""
    if isinstance(error, str):
        return error
    if isinstance(error, dict):
        message = error.get("message") or error.get("msg") or error.get("detail")
        if isinstance(message, str):
            kind = error.get("type") or error.get("code")
            return f"{message} ({kind})" if isinstance(kind, str) and kind not in message else message
    return _excerpt(json.dumps(error, ensure_ascii=False))


class Reply:
    """Reads events one by one and returns their text.

    After the stream: `finished` says whether its end marker came,
    `events` counts the data events (the original's token count for
    `!stats`), `limit` names a token-limit stop, `timings` holds
    llama-server's own figures when it sent them, `usage` what the server
    said the reply used (illume.usage). `thought` says whether thinking
    came in a field of its own, which the reply writes as a `<think>` block.
    The embedded backend also sets `prompt_tokens`, `cached_tokens` (how
    many of them it did not evaluate) and `reply_tokens`, for `!stats`, and adds
    `backend_notes` (said after the reply, such as a full disk).
    """

    def __init__(self):
        self.events = 0
        self.finished = False
        self.limit: str | None = None
        self.timings: dict | None = None
        self.malformed: list[str] = []
        self.prompt_tokens: int | None = None
        self.cached_tokens: int | None = None
        self.reply_tokens: int | None = None  # the embedded backend's count of the tokens it wrote
        self.backend_notes: list[str] = []
        self.usage = None  # illume.usage.Usage, once an event reports it
        self.thought = False
        self._thinking = False

    def _malformed(self, data: str) -> None:
        # Only the first is shown; the others are counted.
        self.malformed.append("" if self.malformed else data[:MALFORMED_KEPT])

    def text(self, data: str, event_type: str = "message") -> str:
        """Return the text carried by one event's DATA; raise StreamError for an error event."""
        if data == DONE:
            self.finished = True
            return ""
        self.events += 1
        try:
            event, end = _scan(data, 0)
            if end != len(data) and data[end:].strip():
                raise ValueError("extra data")
        except (ValueError, StopIteration):
            try:
                event = json.loads(data)  # the slow way: it allows whitespace around the value
            except ValueError:
                self._malformed(data)
                return ""
        if not isinstance(event, dict):
            self._malformed(data)
            return ""
        try:
            # The common case first: an OpenAI-style chat delta.
            choice = event["choices"][0]
            content = choice["delta"]["content"]
            if content and content.__class__ is str and choice.get("finish_reason") is None \
                    and "error" not in event and event_type == "message" and not self._thinking \
                    and not event.get("usage"):
                return content
        except (KeyError, IndexError, TypeError):
            pass
        if event.get("error") or event_type == "error":
            raise StreamError(f"the server reported an error: {error_message(event.get('error', event))}")
        if "usage" in event or "timings" in event or "usageMetadata" in event or event.get("type") == "message_start":
            self.note_usage(event)

        choices = event.get("choices")
        if isinstance(choices, list) and choices:
            choice = choices[0] if isinstance(choices[0], dict) else {}
            self.note_finish(choice.get("finish_reason"))
            delta = choice.get("delta")
            if isinstance(delta, dict):
                shown = self.message_text(delta)
                if shown:
                    return shown
            text = choice.get("text")
            return text if isinstance(text, str) else ""

        delta = event.get("delta")
        if isinstance(delta, dict):  # Anthropic
            self.note_finish(delta.get("stop_reason"))
            thinking = delta.get("thinking")
            if isinstance(thinking, str) and thinking:
                return self._thinking_text(thinking)
            text = delta.get("text")
            if isinstance(text, str) and text:
                return self._answer_text(text)
        if event.get("type") == "message_stop":
            self.finished = True
        candidates = event.get("candidates")
        if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict):
            return self._gemini_text(candidates[0])

        # llama.cpp's native endpoints end with `"stop": true` and no [DONE].
        if event.get("stop") is True:
            self.finished = True
            if event.get("stop_type") == "limit" or event.get("truncated") is True:
                self.limit = TOKEN_LIMIT
        if isinstance(event.get("timings"), dict):
            self.timings = event["timings"]
        content = event.get("content")
        return content if isinstance(content, str) else ""

    def note_finish(self, reason) -> None:
        """Remember a finish reason that means the token limit cut the reply."""
        if reason in ("length", "max_tokens", "MAX_TOKENS"):
            self.limit = TOKEN_LIMIT

    def message_text(self, message: dict) -> str:
        """Return the text of a chat MESSAGE (a streamed delta, or a whole reply's message): thinking, then answer."""
        thinking = next((message[name] for name in THINKING_FIELDS
                         if isinstance(message.get(name), str) and message[name]), "")
        content = message.get("content")
        return self._thinking_text(thinking) + self._answer_text(content if isinstance(content, str) else "")

    def _thinking_text(self, thinking: str) -> str:
        """Return THINKING as the reply shows it: after a `<think>` line, if it opens the block."""
        if not thinking:
            return ""
        opening = "" if self._thinking else THINK_OPEN
        self._thinking = self.thought = True
        return opening + thinking

    def _answer_text(self, text: str) -> str:
        """Return the answer TEXT as the reply shows it: after a `</think>` line, if thinking came before."""
        if not text:
            return ""
        closing = THINK_CLOSE if self._thinking else ""
        self._thinking = False
        return closing + text

    def _gemini_text(self, candidate: dict) -> str:
        """Return the text of a Gemini candidate's parts, its thoughts as thinking."""
        content = candidate.get("content")
        parts = content.get("parts") if isinstance(content, dict) else None
        out = []
        for part in parts if isinstance(parts, list) else ():
            text = part.get("text") if isinstance(part, dict) else None
            if isinstance(text, str):
                out.append(self._thinking_text(text) if part.get("thought") is True else self._answer_text(text))
        reason = candidate.get("finishReason")
        if isinstance(reason, str) and reason:
            self.note_finish(reason)
            self.finished = True  # Gemini's stream has no end marker: the last candidate has its reason
        return "".join(out)

    def note_usage(self, event: dict) -> None:
        """Keep what EVENT says the reply used, if anything (illume.usage)."""
        from illume.usage import read

        usage = read(event)
        if usage is None:
            return
        if self.usage is None:
            self.usage = usage
        else:
            self.usage.update(usage)

    def finish(self) -> str:
        """Return what ends the reply's text once the stream is over: the `</think>` line of a block left open."""
        if not self._thinking:
            return ""
        self._thinking = False
        return THINK_END

    def check_ending(self) -> None:
        """Raise StreamError when the stream ended before its end marker."""
        if not self.finished:
            raise StreamError("the reply was cut off: the stream ended before its end marker")

    def notes(self, secrets=()) -> str:
        """Return the notes that follow a whole reply: skipped malformed events, a stop at the token limit.

        SECRETS are masked in the malformed event shown, before it is cut short.
        """
        notes = []
        if self.malformed:
            # The original skips them without a word; a note keeps them from passing unseen.
            notes.append(f"skipped {len(self.malformed)} malformed event(s) from the server, "
                         f"first: {malformed_excerpt(self.malformed[0], secrets)}")
        if self.limit:
            notes.append(f"the reply stopped at {self.limit} (raise !:max_tokens for more)")
        notes += self.backend_notes
        return "".join("\n\n" + note_line(text) for text in notes)


class GptOss:
    """Translates GPT-OSS channel tokens in streamed text into `<think>`…`</think>`.

    The harmony format reads `<|channel|>analysis<|message|>THOUGHTS<|end|>
    <|start|>assistant<|channel|>final<|message|>ANSWER`. Tokens may be split
    across chunks, so a possible token start is held back until it is whole.
    """

    _LONGEST_TOKEN = 32

    def __init__(self):
        self._pending = ""
        self._thinking = False
        self._capture: str | None = None  # "channel" or "role": text being read, not shown
        self._captured = ""

    def feed(self, text: str) -> str:
        self._pending += text
        out = []
        while self._pending:
            start = self._pending.find("<|")
            if start < 0:
                # A "<" at the very end may be the first half of a token.
                held = "<" if self._pending.endswith("<") else ""
                self._emit(out, self._pending[: len(self._pending) - len(held)])
                self._pending = held
                break
            self._emit(out, self._pending[:start])
            end = self._pending.find("|>", start + 2)
            if end < 0:
                if len(self._pending) - start > self._LONGEST_TOKEN:
                    self._emit(out, self._pending[start : start + 2])
                    self._pending = self._pending[start + 2 :]
                    continue
                self._pending = self._pending[start:]
                break
            token = self._pending[start + 2 : end]
            self._pending = self._pending[end + 2 :]
            self._token(out, token)
        return "".join(out)

    def finish(self) -> str:
        out = []
        self._emit(out, self._pending)
        self._pending = ""
        return "".join(out)

    def _emit(self, out: list, text: str) -> None:
        if self._capture:
            self._captured += text
        elif text:
            out.append(text)

    def _token(self, out: list, token: str) -> None:
        if token == "channel":
            self._capture, self._captured = "channel", ""
        elif token == "message":
            if self._capture == "channel":
                channel = self._captured.strip()
                if channel.startswith("analysis") and not self._thinking:
                    out.append(THINK_OPEN)
                    self._thinking = True
                elif not channel.startswith("analysis") and self._thinking:
                    out.append(THINK_CLOSE)
                    self._thinking = False
            self._capture = None
        elif token == "start":
            self._capture, self._captured = "role", ""
        elif token in ("end", "return", "call"):
            if self._thinking:
                out.append(THINK_CLOSE)
                self._thinking = False
            self._capture = None
        # Other special tokens (<|constrain|>, ...) are dropped.
