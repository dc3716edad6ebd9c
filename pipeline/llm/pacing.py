"""Pacing: how many requests to keep on the wire, how long to wait for each, and when a timed-out request
may be sent again.

A local server (llama.cpp, llama-cpp-python, Ollama, one vLLM) often computes one request at a time; the
rest wait in its queue. Sixteen concurrent requests with a fixed 120 s timeout then time out in the queue
and are sent again while the server is still working on them: paid for (in time) twice. So:

- **Adaptive concurrency (AIMD).** ``openai-compatible`` starts at 1 in flight; after each answer the
  observed latency is compared with the service time predicted for that request alone. While it holds
  (ratio <= 1.3), or grows by less than half a service time per request that was ahead of it (a batching
  server: throughput still rises), the limit grows: +1 per answer until the first sign of queueing or
  pushback (slow start: doubling per round, so a 64-slot vLLM is reached in 6 rounds), then by 1/limit
  (about +1 per round). When each request ahead adds most of a service time (ratio >= 1 + 0.8 x ahead: the
  server computes one at a time) it shrinks by one; a timeout, a 429 or a 503 halves it, once per
  congestion event. Paid APIs start at ``--concurrency`` and are only cut by 429/503/timeouts.
- **Service-time model.** From answers that were alone on the wire: ``latency = prompt/prefill +
  completion/decode`` (least squares, non-negative), giving prefill and decode tokens/s.
- **Timeouts sized per request** (unless ``--timeout`` is given, which then bounds each whole request):
  3x the worst-case service time (prompt prefill + ``max_tokens`` decode), times the requests ahead of it
  on the wire, plus 15 s; before the rates are measured, 900 s for a local server and 180 s for a paid API.
- **No re-send into a busy server.** After a local server's timeout the abandoned request may still be
  computing: every sender waits for its remaining worst-case service time before anything is sent again.
"""
from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

LOCAL_FIRST_TIMEOUT_S = 900.0
PAID_TIMEOUT_S = 180.0
TIMEOUT_FLOOR_S = 30.0
TIMEOUT_SLACK_S = 15.0
TIMEOUT_FACTOR = 3.0
HOLD_RATIO = 1.3
SERIAL_SHARE = 0.8      # latency up by >= 0.8 service time per request ahead: the server serialises
PARALLEL_SHARE = 0.5    # up by <= 0.5 per request ahead: it computes them together, more in flight pays
MAX_BUSY_WAIT_S = 300.0


@dataclass
class _Sample:
    prompt_tokens: int
    completion_tokens: int
    latency_s: float


class Pacer:
    """Adaptive concurrency and per-request timeouts for one run against one server."""

    def __init__(self, max_concurrency: int, local: bool, timeout_s: float | None = None):
        self.max_limit = max(1, int(max_concurrency))
        self.local = local
        self.fixed_timeout_s = timeout_s
        self.limit = 1.0 if local else float(self.max_limit)
        self.in_flight = 0
        self._cond: asyncio.Condition | None = None
        self._samples: deque[_Sample] = deque(maxlen=64)
        self._rates: tuple[float, float] | None = None   # (prefill tokens/s, decode tokens/s)
        self.cuts = 0
        self.peak_limit = self.limit
        self.limit_trace: list[float] = [self.limit]
        self._cooldown = 0
        self.slow_start = True   # double per round until latency first grows or the server pushes back
        self._last_cut_at = -math.inf

    # --- the slot --------------------------------------------------------------------------------------
    async def acquire(self) -> int:
        """Wait for a slot; returns how many requests were already on the wire (queue position)."""
        if self._cond is None:
            self._cond = asyncio.Condition()
        async with self._cond:
            while self.in_flight >= max(1, math.floor(self.limit)):
                await self._cond.wait()
            ahead = self.in_flight
            self.in_flight += 1
            return ahead

    async def release(self) -> None:
        self.in_flight -= 1
        if self._cond is not None:
            async with self._cond:
                self._cond.notify_all()

    # --- what the answers tell us ---------------------------------------------------------------------
    def predicted_s(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        if self._rates is None:
            return None
        prefill, decode = self._rates
        return prompt_tokens / prefill + completion_tokens / decode

    def on_success(self, latency_s: float, prompt_tokens: int, completion_tokens: int, ahead: int) -> None:
        """An answer arrived after ``latency_s``; ``ahead`` requests were on the wire when it was sent."""
        if ahead == 0 and latency_s > 0 and (prompt_tokens or completion_tokens):
            self._samples.append(_Sample(prompt_tokens, completion_tokens, latency_s))
            self._fit()
        pred = self.predicted_s(prompt_tokens, completion_tokens)
        if pred is None or pred <= 0:
            return
        ratio = latency_s / pred
        # A server computing one request at a time adds a whole service time per request ahead (ratio ~
        # 1 + ahead); a batching server (vLLM, llama.cpp with slots) adds far less while its throughput still
        # rises. Shrink on the first, grow while latency holds or rises by less than half a service time per
        # request ahead.
        if ahead > 0 and ratio >= 1.0 + SERIAL_SHARE * ahead:
            self._set(max(1.0, self.limit - 1.0))   # it waited behind the others: more in flight buys nothing
            self._cooldown = 8
            self.slow_start = False
        elif (ratio <= HOLD_RATIO or ratio - 1.0 <= PARALLEL_SHARE * ahead) and ahead + 1 >= self.limit / 2:
            # (only answers sent while at least half the limit was in use say anything about the limit)
            if self._cooldown > 0:
                self._cooldown -= 1
            else:
                step = 1.0 if self.slow_start else 1.0 / self.limit
                self._set(min(float(self.max_limit), self.limit + step))

    def on_overload(self, sent_at: float | None = None) -> None:
        """A timeout, 429 or 503 for a request sent at ``sent_at`` (monotonic): halve the limit, once per
        congestion event (requests already on the wire at the last cut tell of the same congestion)."""
        if sent_at is not None and sent_at < self._last_cut_at:
            return
        self._last_cut_at = time.monotonic()
        self.cuts += 1
        self._cooldown = 8
        self.slow_start = False
        self._set(max(1.0, self.limit / 2.0))

    def _set(self, limit: float) -> None:
        self.limit = limit
        self.peak_limit = max(self.peak_limit, limit)
        if abs(self.limit_trace[-1] - limit) >= 0.5:
            self.limit_trace.append(round(limit, 2))

    def _fit(self) -> None:
        s = list(self._samples)
        y = np.array([x.latency_s for x in s])
        p = np.array([x.prompt_tokens for x in s], float)
        c = np.array([x.completion_tokens for x in s], float)
        per_tok: tuple[float, float] | None = None
        if len(s) >= 3 and np.ptp(p / np.maximum(c, 1)) > 0.2:
            a, b = _nnls2(np.column_stack([p, c]), y)
            if a > 0 and b > 0:
                per_tok = (a, b)
        if per_tok is None:
            # Too few or too alike to separate: assume prefill 20x faster than decode (CPU llama.cpp is 10-50x)
            # and scale one rate to the samples.
            b = float(y.sum() / max((p / 20.0 + c).sum(), 1.0))
            per_tok = (b / 20.0, b)
        self._rates = (1.0 / per_tok[0], 1.0 / per_tok[1])

    @property
    def rates(self) -> tuple[float, float] | None:
        """(prefill, decode) tokens/s measured so far."""
        return self._rates

    # --- time limits ----------------------------------------------------------------------------------
    def worst_case_s(self, prompt_tokens: int, max_tokens: int) -> float | None:
        return self.predicted_s(prompt_tokens, max_tokens)

    def timeout_for(self, prompt_tokens: int, max_tokens: int, ahead: int, retry: int = 0) -> float:
        """Seconds the whole request may take (``retry``: how many times it already timed out)."""
        if self.fixed_timeout_s is not None:
            return self.fixed_timeout_s
        worst = self.worst_case_s(prompt_tokens, max_tokens)
        if worst is None:
            base = LOCAL_FIRST_TIMEOUT_S if self.local else PAID_TIMEOUT_S
        else:
            base = max(TIMEOUT_FLOOR_S, TIMEOUT_FACTOR * worst * (ahead + 1) + TIMEOUT_SLACK_S)
            if not self.local:
                base = max(base, PAID_TIMEOUT_S)
        return base * (2 ** retry)

    def busy_after_timeout_s(self, prompt_tokens: int, max_tokens: int, waited_s: float) -> float:
        """How long a local server may still compute a request abandoned after ``waited_s``."""
        if not self.local:
            return 0.0
        worst = self.worst_case_s(prompt_tokens, max_tokens)
        if worst is None:
            return min(MAX_BUSY_WAIT_S, waited_s)  # no rates yet: assume it needs as long again
        return min(MAX_BUSY_WAIT_S, worst)


def _nnls2(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Non-negative least squares for two columns (enumerate the active sets: 2 unknowns)."""
    best, best_err = (0.0, 0.0), math.inf
    cands = []
    try:
        sol, *_ = np.linalg.lstsq(x, y, rcond=None)
        cands.append((float(sol[0]), float(sol[1])))
    except np.linalg.LinAlgError:
        pass
    for j in (0, 1):
        col = x[:, j]
        denom = float(col @ col)
        if denom > 0:
            v = float(col @ y) / denom
            cands.append((v, 0.0) if j == 0 else (0.0, v))
    for a, b in cands:
        if a < 0 or b < 0:
            continue
        err = float(((x @ np.array([a, b])) - y) @ ((x @ np.array([a, b])) - y))
        if err < best_err:
            best, best_err = (a, b), err
    return best
