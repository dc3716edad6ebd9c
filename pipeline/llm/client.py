"""Send one request durably: reuse a stored answer, else record the intent, send with bounded retries,
store every raw response the moment it arrives.

Each HTTP send takes a slot from the run's :class:`~pipeline.llm.pacing.Pacer` (adaptive concurrency) and is
bounded as a whole by the pacer's timeout for it. Between sends: a server's Retry-After (shared by every
sender, released with jitter), else full-jitter exponential backoff; after a local server's timeout, every
sender also waits while the abandoned request may still be computing.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.llm.pacing import Pacer
from pipeline.llm.pricing import usage_from_body
from pipeline.llm.providers import Backend, SendResult
from pipeline.llm.ratelimit import RateGate
from pipeline.llm.store import ResponseStore, StoredResponse

log = logging.getLogger(__name__)
OVERLOAD_CODES = {"timeout", "rate_limited"}


@dataclass
class Completion:
    """The final stored response for one request key and how we got it."""

    stored: StoredResponse
    reused: bool         # True: answered from the store, nothing sent
    http_attempts: int   # HTTP sends made now (0 when reused)
    sent: list[StoredResponse] = field(default_factory=list)  # every response stored now (billed ones too)


@dataclass
class Slot:
    """A pacer slot taken before the request was (re)planned; its first send uses it instead of waiting for
    another. ``held`` turns False once it is used or given back."""

    ahead: int
    held: bool = True


@dataclass
class RetryPolicy:
    """Bounded retries with full-jitter exponential backoff; a server's Retry-After overrides the backoff."""

    max_http_attempts: int = 6
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    wait_for_other_s: float = 0.25   # poll interval while another run sends the same request

    def backoff_s(self, n_failed: int, rng: random.Random | None = None) -> float:
        """Full jitter: uniform in [0, min(max, base * 2^n)] after the n-th failed send (n from 1)."""
        cap = min(self.backoff_max_s, self.backoff_base_s * 2 ** max(0, n_failed - 1))
        return (rng or random).uniform(0.0, cap)


async def complete(backend: Backend, store: ResponseStore, gate: RateGate, key: str, messages: list[dict],
                   params: dict[str, Any], record_id: str | None, attempt: int | None, context: Any = None,
                   policy: RetryPolicy | None = None, request_doc: dict | None = None,
                   need_tokens: int = 0, pacer: Pacer | None = None, prompt_tokens: int = 0,
                   plan: tuple[str, int, dict, dict] | None = None, slot: Slot | None = None,
                   on_response: Callable[[StoredResponse], None] | None = None,
                   give_up: Callable[[], bool] | None = None) -> Completion:
    """The stored ``ok`` response for ``key`` if there is one; otherwise send (retrying only transient
    faults: 429, 5xx, timeouts, dropped connections, broken bodies) and return the last stored response.

    ``prompt_tokens`` (our estimate for this request) sizes the timeout with the pacer's measured rates;
    ``plan`` (chain, attempt, params, extra) is stored with the intent, in one commit. ``slot``: a pacer
    slot the caller holds for the first send (released here, whatever happens). ``on_response`` sees each
    response before its pacer slot is given back: what it teaches (a context window) then holds for the
    next request that takes the slot. ``give_up()`` True stops the retries (the server cannot be reached)."""
    try:
        return await _complete(backend, store, gate, key, messages, params, record_id, attempt, context, policy,
                               request_doc, need_tokens, pacer, prompt_tokens, plan, slot, on_response, give_up)
    finally:
        if slot is not None and slot.held and pacer is not None:
            slot.held = False
            await pacer.release()


async def _complete(backend, store, gate, key, messages, params, record_id, attempt, context, policy, request_doc,
                    need_tokens, pacer, prompt_tokens, plan, slot, on_response, give_up) -> Completion:
    hit = store.get_ok(key)
    if hit is not None:
        return Completion(hit, True, 0)
    policy = policy or RetryPolicy()
    pacer = pacer or Pacer(1 << 16, local=False, timeout_s=getattr(backend, "timeout_s", None))
    while (holder := await store.aclaim(key, record_id, attempt, "sync", request_doc, plan=plan)) is not None:
        # another live run on this store is sending this very request: wait for its answer, don't buy it twice
        log.info("request %s is being sent by %s; waiting for its answer", key[:12], holder)
        await asyncio.sleep(policy.wait_for_other_s)
        hit = store.get_ok(key)
        if hit is not None:
            return Completion(hit, True, 0)
    try:
        # The claim also succeeds when the answer was stored between the first look and the claim (another
        # run finished it meanwhile): look again, or that answer would be bought a second time.
        hit = store.get_ok(key)
        if hit is not None:
            return Completion(hit, True, 0)
        return await _send_with_retries(backend, store, gate, key, messages, params, context, policy,
                                        need_tokens, pacer, prompt_tokens, slot, on_response, give_up)
    finally:
        await store.arelease(key)


async def _send_with_retries(backend: Backend, store: ResponseStore, gate: RateGate, key: str, messages: list[dict],
                             params: dict[str, Any], context: Any, policy: RetryPolicy, need_tokens: int,
                             pacer: Pacer, prompt_tokens: int, slot: Slot | None = None,
                             on_response: Callable[[StoredResponse], None] | None = None,
                             give_up: Callable[[], bool] | None = None) -> Completion:
    sent: list[StoredResponse] = []
    last: SendResult | None = None
    max_tokens = int(params.get("max_tokens") or 0)
    timeouts = 0
    for n in range(1, policy.max_http_attempts + 1):
        if n > 1 and give_up is not None and give_up():
            break   # decided while this request waited out its backoff
        await gate.wait(need_tokens)
        if slot is not None and slot.held:
            ahead, slot.held = slot.ahead, False   # the caller's slot, taken before it planned this request
        else:
            ahead = await pacer.acquire()
        sent_at = time.monotonic()
        try:
            limit = pacer.timeout_for(prompt_tokens, max_tokens, ahead, retry=timeouts)
            last = await backend.send(key, messages, params, context, timeout_s=limit)
            if on_response is not None:
                on_response(last.stored)
        finally:
            await pacer.release()
        # Store first: nothing (not even our own checks) touches a paid answer before it is durable.
        await store.aput(last.stored)
        sent.append(last.stored)
        st = last.stored
        gate.observe(st.headers)
        if st.ok:
            usage = usage_from_body(st.json())
            pacer.on_success(st.latency_s or 0.0, usage.prompt_tokens, usage.completion_tokens, ahead)
            break
        overloaded = st.error_code in OVERLOAD_CODES or st.http_status == 503
        if overloaded:
            pacer.on_overload(sent_at)
        if last.retry_after_s and (st.error_code == "rate_limited" or st.http_status == 503):
            gate.pause(last.retry_after_s)
        if st.error_code == "timeout":
            timeouts += 1
            busy = pacer.busy_after_timeout_s(prompt_tokens, max_tokens, st.latency_s or 0.0)
            if busy > 0:
                # the server may still be computing the abandoned request: sending again now would only
                # queue behind it (and time out again)
                log.info("request %s timed out after %.0f s; waiting %.0f s for the server to finish it",
                         key[:12], st.latency_s or 0.0, busy)
                gate.pause(busy)
        if not last.retryable or n == policy.max_http_attempts or (give_up is not None and give_up()):
            break
        log.info("request %s: %s, retrying", key[:12], st.error_code)
        if not (last.retry_after_s and overloaded):
            await asyncio.sleep(policy.backoff_s(n))
    assert last is not None
    return Completion(last.stored, False, len(sent), sent)
