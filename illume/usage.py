"""What a reply used, in tokens and money, from the server's own numbers (docs/wire.md, "Usage").

Each API counts in its own shape, in its own events: OpenAI's `usage`
(sent only when the request asks, `stream_options.include_usage`),
Anthropic's `message_start` and `message_delta` usage, Gemini's
`usageMetadata`, llama-server's `timings`. `read` turns any of them into
one `Usage`; `!stats` shows it (`note`), with its cost where `!prices` set
prices, and a batch run adds them up (`Usage.add`).
"""


class Usage:
    """Token counts of one reply or of many; None where the server did not say."""

    __slots__ = ("prompt", "cached", "reply", "thinking", "replies")

    def __init__(self, prompt=None, cached=None, reply=None, thinking=None):
        self.prompt = prompt  # prompt tokens, the cached ones included
        self.cached = cached  # of them, read from the server's cache rather than evaluated
        self.reply = reply  # reply tokens, the thinking ones included
        self.thinking = thinking  # of them, spent thinking
        self.replies = 1

    def update(self, other: "Usage") -> None:
        """Take OTHER's counts where it has them: a later event of the same reply says more."""
        for name in ("prompt", "cached", "reply", "thinking"):
            value = getattr(other, name)
            if value is not None:
                setattr(self, name, value)

    def add(self, other: "Usage") -> None:
        """Add OTHER, another reply's usage, to these totals."""
        for name in ("prompt", "cached", "reply", "thinking"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if theirs is not None:
                setattr(self, name, theirs if mine is None else mine + theirs)
        self.replies += other.replies

    def __bool__(self) -> bool:
        return any(getattr(self, name) is not None for name in ("prompt", "cached", "reply", "thinking"))

    def __repr__(self) -> str:
        return f"Usage({self.prompt}, {self.cached}, {self.reply}, {self.thinking})"


def _count(value):
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _get(mapping, *path):
    for key in path:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return _count(mapping)


def _sum(*values):
    known = [value for value in values if value is not None]
    return sum(known) if known else None


def read(event: dict) -> Usage | None:
    """Return the usage that one streamed EVENT reports, in whichever API's shape, or None."""
    usage = event.get("usage")
    if not isinstance(usage, dict) and event.get("type") == "message_start":
        usage = _message_usage(event)
    if isinstance(usage, dict) and usage:
        if "input_tokens" in usage or "output_tokens" in usage:  # Anthropic
            reads = _get(usage, "cache_read_input_tokens")
            prompt = _sum(_get(usage, "input_tokens"), reads, _get(usage, "cache_creation_input_tokens"))
            return Usage(prompt, reads, _get(usage, "output_tokens"))
        cached = _get(usage, "prompt_tokens_details", "cached_tokens")
        if cached is None:
            cached = _get(usage, "prompt_cache_hit_tokens")  # DeepSeek's name
        return Usage(_get(usage, "prompt_tokens"), cached,
                     _get(usage, "completion_tokens"),
                     _get(usage, "completion_tokens_details", "reasoning_tokens"))
    metadata = event.get("usageMetadata")
    if isinstance(metadata, dict):  # Gemini: the thoughts are not among the candidates' tokens
        thinking = _get(metadata, "thoughtsTokenCount")
        return Usage(_get(metadata, "promptTokenCount"), _get(metadata, "cachedContentTokenCount"),
                     _sum(_get(metadata, "candidatesTokenCount"), thinking), thinking)
    timings = event.get("timings")
    if isinstance(timings, dict):  # llama-server: prompt_n counts only the tokens it evaluated
        cached = _get(timings, "cache_n")
        return Usage(_sum(_get(timings, "prompt_n"), cached), cached, _get(timings, "predicted_n"))
    return None


def _message_usage(event: dict):
    message = event.get("message")
    return message.get("usage") if isinstance(message, dict) else None


def of_reply(reply) -> Usage | None:
    """Return what REPLY used: the server's numbers, else the embedded backend's own; None if unknown."""
    if reply.usage:
        return reply.usage
    if reply.prompt_tokens is not None:  # the embedded backend
        return Usage(reply.prompt_tokens, reply.cached_tokens, reply.reply_tokens)
    return None


def cost(usage: Usage, prices: tuple[float, float, float]) -> float | None:
    """Return what USAGE cost at PRICES (per million input, cached and output tokens), or None if unknown."""
    if usage.prompt is None or usage.reply is None:
        return None
    cached = usage.cached or 0
    input_price, cached_price, output_price = prices
    return ((usage.prompt - cached) * input_price + cached * cached_price + usage.reply * output_price) / 1e6


def _number(n: int) -> str:
    return f"{n:,}"


def _money(amount: float) -> str:
    """Return AMOUNT with six decimals at most and no trailing zeros: 0.00005, 1.25, 0."""
    return f"{amount:.6f}".rstrip("0").rstrip(".")


def words(usage: Usage, prices: tuple[float, float, float] | None = None) -> str:
    """Return USAGE in words: `12 prompt tokens (8 cached), 40 reply tokens (30 thinking), cost 0.00012`."""
    parts = []
    if usage.prompt is not None:
        cached = f" ({_number(usage.cached)} cached)" if usage.cached is not None else ""
        parts.append(f"{_number(usage.prompt)} prompt tokens{cached}")
    if usage.reply is not None:
        thinking = f" ({_number(usage.thinking)} thinking)" if usage.thinking is not None else ""
        parts.append(f"{_number(usage.reply)} reply tokens{thinking}")
    spent = cost(usage, prices) if prices else None
    if spent is not None:
        parts.append(f"cost {_money(spent)}")
    return ", ".join(parts)


def note(reply, prices=None) -> str:
    """Return the `!stats` line of what REPLY used (after the original's line), or "" when unknown."""
    from illume.output import note_line

    usage = of_reply(reply)
    if not usage:
        return ""
    return "\n\n" + note_line("used " + words(usage, prices))


class Totals:
    """What the replies of a batch run used, added up, with the cost of those whose buffer set `!prices`."""

    def __init__(self):
        self.usage = Usage()
        self.usage.replies = 0
        self.cost: float | None = None

    def add(self, usage: Usage, prices) -> None:
        """Add one reply's USAGE, priced at PRICES (None where its buffer set none)."""
        self.usage.add(usage)
        spent = cost(usage, prices) if prices else None
        if spent is not None:
            self.cost = spent if self.cost is None else self.cost + spent

    def words(self) -> str:
        """Return the totals in words, for the batch's last line: `3 replies used ..., cost 0.0012`."""
        count = self.usage.replies
        text = f"{count} {'reply' if count == 1 else 'replies'} used {words(self.usage)}"
        return text + (f", cost {_money(self.cost)}" if self.cost is not None else "")
