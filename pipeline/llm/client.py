"""Send one request durably: reuse a stored answer, else record the intent, send with bounded retries,
store every raw response the moment it arrives."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_random_exponential

from pipeline.llm.providers import Backend, SendResult
from pipeline.llm.ratelimit import RateGate
from pipeline.llm.store import ResponseStore, StoredResponse

log = logging.getLogger(__name__)


@dataclass
class Completion:
    """The final stored response for one request key and how we got it."""

    stored: StoredResponse
    reused: bool         # True: answered from the store, nothing sent
    http_attempts: int   # HTTP sends made now (0 when reused)
    sent: list[StoredResponse] = field(default_factory=list)  # every response stored now (billed ones too)


class _Transient(Exception):
    def __init__(self, result: SendResult):
        super().__init__(result.stored.error_code)
        self.result = result


@dataclass
class RetryPolicy:
    """Bounded retries with full-jitter exponential backoff; a server's Retry-After overrides the backoff."""

    max_http_attempts: int = 6
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    wait_for_other_s: float = 0.25   # poll interval while another run sends the same request

    def _wait(self, state: RetryCallState) -> float:
        jitter = wait_random_exponential(multiplier=self.backoff_base_s, max=self.backoff_max_s)(state)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Transient) and exc.result.retry_after_s is not None:
            return exc.result.retry_after_s
        return jitter


async def complete(backend: Backend, store: ResponseStore, gate: RateGate, key: str, messages: list[dict],
                   params: dict[str, Any], record_id: str | None, attempt: int | None, context: Any = None,
                   policy: RetryPolicy | None = None, request_doc: dict | None = None,
                   need_tokens: int = 0) -> Completion:
    """The stored ``ok`` response for ``key`` if there is one; otherwise send (retrying only transient
    faults: 429, 5xx, timeouts, dropped connections, broken bodies) and return the last stored response."""
    hit = store.get_ok(key)
    if hit is not None:
        return Completion(hit, True, 0)
    policy = policy or RetryPolicy()
    while (holder := await store.aclaim(key, record_id, attempt, "sync", request_doc)) is not None:
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
        return await _send_with_retries(backend, store, gate, key, messages, params, context, policy, need_tokens)
    finally:
        await store.arelease(key)


async def _send_with_retries(backend: Backend, store: ResponseStore, gate: RateGate, key: str, messages: list[dict],
                             params: dict[str, Any], context: Any, policy: RetryPolicy,
                             need_tokens: int) -> Completion:
    sends = 0
    sent: list[StoredResponse] = []
    last: SendResult | None = None
    try:
        async for try_ in AsyncRetrying(stop=stop_after_attempt(policy.max_http_attempts), wait=policy._wait,
                                        retry=retry_if_exception_type(_Transient), reraise=True,
                                        sleep=asyncio.sleep):
            with try_:
                await gate.wait(need_tokens)
                sends += 1
                last = await backend.send(key, messages, params, context)
                # Store first: nothing (not even our own checks) touches a paid answer before it is durable.
                await store.aput(last.stored)
                sent.append(last.stored)
                gate.observe(last.stored.headers)
                if last.stored.error_code == "rate_limited" and last.retry_after_s:
                    gate.pause(last.retry_after_s)
                if last.retryable:
                    log.info("request %s: %s, retrying", key[:12], last.stored.error_code)
                    raise _Transient(last)
    except _Transient as exc:
        last = exc.result  # retries exhausted: the last stored failure explains it
    assert last is not None
    return Completion(last.stored, False, sends, sent)
