"""The `!stats` note, worded and formatted as the original prints it (Go's %.3g and time.Duration).

`stats_note` is the one place it is built, for one reply or a buffer's
branches: the original's line (rate, events, time to the headers), then
what illume adds to it (the prompt tokens the embedded model's cache spared).
"""

import math

from illume import usage


def go_duration(seconds: float) -> str:
    """Return SECONDS as Go's time.Duration prints it: 350.2µs, 1.5ms, 2.25s, 1m3s."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        if ns < 1000:
            return f"{sign}{ns}ns"
        unit, digits = ("µs", 3) if ns < 1_000_000 else ("ms", 6)
        return sign + _fixed(ns, digits) + unit
    whole, fraction = divmod(ns, 1_000_000_000)
    text = _fixed(whole % 60 * 1_000_000_000 + fraction, 9) + "s"
    minutes = whole // 60
    if minutes:
        text = f"{minutes % 60}m{text}"
        if minutes >= 60:
            text = f"{minutes // 60}h{text}"
    return sign + text


def _fixed(value: int, digits: int) -> str:
    whole, fraction = divmod(value, 10**digits)
    if not fraction:
        return str(whole)
    return f"{whole}." + f"{fraction:0{digits}d}".rstrip("0")


def go_general(number: float) -> str:
    """Return NUMBER as Go's %.3g prints it."""
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    return "%.3g" % number


def note(events: int, seconds_to_headers: float, seconds_streaming: float) -> str:
    """Return the `!stats` line: stream rate, streamed events, time to the response headers."""
    if seconds_streaming:
        rate = events / seconds_streaming
    else:  # as Go divides a float64 by zero
        rate = math.inf if events else math.nan
    return f"\n\n!note {go_general(rate)} tok/s, {events} toks, {go_duration(seconds_to_headers)}"


def stats_note(times, replies) -> str:
    """Return the `!stats` note for REPLIES (one, or a buffer's branches), asked, answered and ended at TIMES.

    TIMES is an output.Times; the figures of several replies are added up.
    """
    events = sum(reply.events for reply in replies)
    return note(events, times.answered - times.started, times.ended - times.answered) + cache_note(replies)


def cache_note(replies) -> str:
    """Return what `!stats` adds for the embedded backend: the prompt tokens its cache spared; else ""."""
    counted = [reply for reply in replies if reply.cached_tokens is not None]
    if not counted:
        return ""  # the HTTP backends' line stays the original's, byte for byte
    cached = sum(reply.cached_tokens for reply in counted)
    prompt = sum(reply.prompt_tokens for reply in counted)
    return f", {cached} of {prompt} prompt tokens from the cache"


def reply_notes(parsed, times, reply) -> list[str]:
    """Return the notes a buffer with `!stats` gets after REPLY: the original's line, then what it used if asked."""
    notes = [stats_note(times, [reply])]
    if parsed.stats_usage or parsed.prices:  # a plain `!stats` prints only what the original prints
        notes.append(usage.note(reply, parsed.prices))
    return notes
