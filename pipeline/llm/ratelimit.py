"""Rate-limit awareness: Retry-After on 429/503 and the ``x-ratelimit-*`` headers pause every sender."""
from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Mapping

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
MAX_PAUSE_S = 120.0  # a server asking for longer than this is treated as 2 minutes; retries bound the rest
# When a shared pause ends, each waiting sender resumes at a random point of a window this long (a share of
# the pause, within bounds): released all at once, 64 senders hit the server in one burst and are refused
# together again.
JITTER_SHARE = 0.5
JITTER_MIN_S = 0.05
JITTER_MAX_S = 10.0


def parse_duration_s(text: str | None) -> float | None:
    """Seconds in an OpenAI reset header (``'1s'``, ``'6m0s'``, ``'20ms'``, ``'0.5'``); None if unreadable."""
    if not text:
        return None
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asks us to wait (``retry-after-ms`` wins over ``retry-after``), capped."""
    h = {k.lower(): v for k, v in headers.items()}
    if "retry-after-ms" in h:
        try:
            return min(float(h["retry-after-ms"]) / 1000.0, MAX_PAUSE_S)
        except ValueError:
            pass
    if "retry-after" in h:
        try:
            return min(float(h["retry-after"]), MAX_PAUSE_S)
        except ValueError:
            return None  # an HTTP date: rare for these APIs; fall back to backoff
    return None


class RateGate:
    """One shared pause for all concurrent senders of a run (a 429 for one means a 429 for all)."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.resume_at = 0.0
        self.pauses = 0
        self.spread_s = 0.0                      # the release window of the pause in force
        self._rng = rng or random.Random()
        self.tokens_left: int | None = None      # x-ratelimit-remaining-tokens at the last response
        self.tokens_reset_at = 0.0

    def pause(self, seconds: float) -> None:
        seconds = min(max(seconds, 0.0), MAX_PAUSE_S)
        until = time.monotonic() + seconds
        if until > self.resume_at:
            self.resume_at = until
            self.pauses += 1
            self.spread_s = min(JITTER_MAX_S, max(JITTER_MIN_S, JITTER_SHARE * seconds))

    async def wait(self, need_tokens: int = 0) -> None:
        """Return when sending is allowed: no pause in force and, as far as the server told us, enough tokens
        left in the window for a request of ``need_tokens``."""
        while True:
            now = time.monotonic()
            if self.resume_at > now:
                # each sender wakes at its own point of the release window, not all at resume_at
                await asyncio.sleep(self.resume_at - now + self._rng.uniform(0.0, self.spread_s))
                continue
            if (need_tokens and self.tokens_left is not None and self.tokens_left < need_tokens
                    and self.tokens_reset_at > now):
                await asyncio.sleep(self.tokens_reset_at - now)
                continue
            if need_tokens and self.tokens_left is not None:
                self.tokens_left -= need_tokens  # other senders see what this one is about to use
            return

    def observe(self, headers: Mapping[str, str]) -> None:
        """Pause until the window resets when the server says no request (or token) is left in it."""
        h = {k.lower(): v for k, v in headers.items()}
        try:
            if "x-ratelimit-remaining-tokens" in h:
                self.tokens_left = int(float(h["x-ratelimit-remaining-tokens"]))
                reset = parse_duration_s(h.get("x-ratelimit-reset-tokens")) or 0.0
                self.tokens_reset_at = time.monotonic() + min(reset, MAX_PAUSE_S)
        except ValueError:
            pass
        for kind in ("requests", "tokens"):
            remaining = h.get(f"x-ratelimit-remaining-{kind}")
            if remaining is not None and remaining.strip() in {"0", "0.0"}:
                reset = parse_duration_s(h.get(f"x-ratelimit-reset-{kind}"))
                if reset:
                    self.pause(reset)
