"""One generate run against one backend: what the server is, and each prompt's attempts planned, paced and sent.

``GenerationRun`` holds what a run learns as it goes (the served window, the tokenizer margin, a refused
response format, the pace the server takes) and turns one attempt of one prompt into an outcome: its
stored plan re-issued (a resumed run), or a new plan fitted to the window; a stored answer reused, or the
request sent through :func:`pipeline.llm.client.complete`; a context-length refusal or a refused format
answered by planning again. ``pipeline.generate`` drives the rounds of attempts and reads the outcomes.
"""
from __future__ import annotations

import asyncio
import logging
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any

from pipeline.llm.attempts import FollowUp
from pipeline.llm.batch_api import BatchRequest, run_batches
from pipeline.llm.budget import CostBudget
from pipeline.llm.client import RetryPolicy, Slot, complete
from pipeline.llm.hashing import canonical_messages, chain_id, request_key
from pipeline.llm.pacing import Pacer
from pipeline.llm.pricing import PriceTable, usage_from_body
from pipeline.llm.providers import Backend, context_refusal
from pipeline.llm.ratelimit import RateGate
from pipeline.llm.servers import served_token_count
from pipeline.llm.store import ResponseStore, StoredResponse
from pipeline.llm.window import MIN_COMPLETION_TOKENS, ContextBudget

log = logging.getLogger("pipeline.generate")
NOT_RESENT = ("context_length_exceeded", "format_unsupported")  # a stored refusal of these is final as such
UNREACHABLE_AFTER = 12   # connection failures in a row, with no answer ever, before the rest is not sent


@dataclass
class PromptItem:
    record_id: str
    variant: str | None
    messages: list[dict]
    est_prompt_tokens: int
    context: Any
    error: tuple[str, str] | None = None     # (code, message) when the request could not even be built
    chain: str = ""


@dataclass
class Plan:
    key: str
    params: dict
    messages: list[dict]
    est_tokens: int              # our o200k count of the whole request
    follow_up: FollowUp
    from_store: bool = False
    chain: str = ""
    attempt: int = 0
    window_version: int = 0

    def record(self) -> tuple[str, int, dict, dict] | None:
        """What the store keeps of this plan (with its intent); None for a plan read from the store."""
        if self.from_store:
            return None
        return (self.chain, self.attempt, self.params, {**self.follow_up.to_json(), "est": self.est_tokens})


@dataclass
class Outcome:
    plan: Plan | None
    stored: StoredResponse | None
    reused: bool = False
    status: str | None = None    # set for outcomes without a usable stored response
    code: str | None = None
    message: str | None = None


def _count_tokens(text: str) -> int:
    """Exact o200k tokens (what the prompts stage counts with), offline."""
    if not text:
        return 0
    from pipeline.tokens import count_tokens

    return count_tokens(text)


class GenerationRun:
    """The state of one generate call: server facts, pacing, budgets, plans and counters."""

    def __init__(self, backend: Backend, store: ResponseStore, summary: Any, prices: PriceTable,
                 max_tokens: int, temperature: float | None, json_schema: dict | None, seed: int,
                 concurrency: int, max_cost: float | None, batch: bool, retry: RetryPolicy | None):
        self.backend, self.store, self.summary, self.prices = backend, store, summary, prices
        self.max_tokens, self.temperature, self.schema, self.seed = max_tokens, temperature, json_schema, seed
        self.provider, self.model = backend.provider, backend.model
        self.retry = retry
        self.cost = CostBudget(max_cost, prices, self.provider, self.model, batch)
        self.gate = RateGate()
        self.pacer = Pacer(concurrency, local=backend.local, timeout_s=getattr(backend, "timeout_s", None))
        self.sem = asyncio.Semaphore(max(1, concurrency))
        self.sends = Counter()
        self.window = ContextBudget()
        self.format_level = 0
        self.fact_prefix = ""
        self.inflight: dict[str, asyncio.Future] = {}
        self.reached_server = False
        self.connection_errors_in_a_row = 0

    async def start(self) -> None:
        info = await self.backend.prepare()
        if info is None:
            return
        self.fact_prefix = f"{info.host}|{info.model_id or self.model}|"
        learned = self.store.facts(self.fact_prefix)
        self.window = ContextBudget(n_ctx=info.n_ctx, source=info.n_ctx_source,
                                    served_tokenizer=info.tokenizer is not None)
        if info.n_ctx is None and learned.get(self.fact_prefix + "n_ctx"):
            # learned from a refusal by an earlier run on this store: don't pay to learn it again
            self.window.learn_window(int(learned[self.fact_prefix + "n_ctx"]), "refusal (stored)")
        if learned.get(self.fact_prefix + "margin"):
            self.window.margin = max(self.window.margin, float(learned[self.fact_prefix + "margin"]))
        self.format_level = int(learned.get(self.fact_prefix + "format_level") or 0)
        self.summary.server = {"kind": info.kind, "host": info.host, "served_model": info.model_id,
                               "context_window": self.window.n_ctx, "context_window_source": self.window.source,
                               "tokenizer": info.tokenizer}
        if info.notes:
            log.warning("server %s: %s", info.host, "; ".join(info.notes))

    # --- planning ------------------------------------------------------------------------------------
    def base_params(self, variant: str | None, seed: int, format_level: int = 0, max_tokens: int | None = None):
        return self.backend.params(variant, self.max_tokens if max_tokens is None else max_tokens,
                                   self.temperature, self.schema if variant == "json" else None, seed, format_level)

    def chain_of(self, it: PromptItem) -> str:
        return chain_id(self.provider, self.model, self.base_params(it.variant, self.seed), it.messages,
                        self.backend.identity(), it.variant)

    async def plan(self, it: PromptItem, attempt: int, candidates: list[FollowUp],
                   fresh: bool = False) -> Plan | tuple[str, str]:
        """The request for ``attempt`` of ``it``: its stored plan (a resumed run), or the first candidate
        that fits the window, recorded before it is sent; else (code, message) of a refusal."""
        if not fresh:
            got = self.store.latest_plan(it.chain, attempt)
            if got is not None:
                key, params, extra = got
                fu = FollowUp.from_json(extra)
                return Plan(key, params, fu.apply(it.messages), int(extra.get("est") or it.est_prompt_tokens), fu,
                             True, it.chain, attempt, self.window.version)
        need = 0
        for fu in candidates:
            messages = fu.apply(it.messages)
            est = it.est_prompt_tokens + _count_tokens(fu.added_text()) + 4 * len(fu.history)
            need = self.window.prompt_need(est)
            if not self.window.fits(need, self.max_tokens) and self.window.served_tokenizer:
                texts = [m["content"] if isinstance(m["content"], str) else
                         "".join(p.get("text", "") for p in m["content"] if p.get("type") == "text")
                         for m in messages]
                counts = await served_token_count(self.backend.spec.base_url, self.backend.server, self.model,
                                                  ["".join(texts)], getattr(self.backend, "api_key", None))
                if counts:
                    need = self.window.prompt_need(est, counts[0], len(messages))
            mt = self.window.rebudget(need, self.max_tokens)
            if mt is None:
                continue
            params = self.base_params(it.variant, self.seed + attempt - 1, self.format_level, mt)
            key = request_key(self.provider, self.model, params, messages, self.backend.identity())
            # recorded with its intent when it is sent (one durable commit; see complete())
            return Plan(key, params, messages, est, fu, False, it.chain, attempt, self.window.version)
        return ("context_too_small",
                f"the request needs ~{need} tokens on the server plus at least "
                f"{min(MIN_COMPLETION_TOKENS, self.max_tokens)} answer tokens; the served context window is "
                f"{self.window.n_ctx} tokens ({self.window.source})")

    # --- learning from refusals ---------------------------------------------------------------------
    def learn_refusal(self, stored: StoredResponse, plan: Plan) -> int | None:
        n_ctx, served_prompt = context_refusal(stored)
        if n_ctx and self.window.learn_window(n_ctx, "refusal"):
            log.warning("the server's context window is %d tokens (learned from its refusal); requests that "
                        "do not fit are re-budgeted or refused without sending", n_ctx)
            self.store.record_fact(self.fact_prefix + "n_ctx", n_ctx)
            self.summary.server.update(context_window=n_ctx, context_window_source="refusal")
        if served_prompt:
            self.window.observe(plan.est_tokens, served_prompt)
            self.store.record_fact(self.fact_prefix + "margin", self.window.margin)
        return served_prompt

    def fall_back_format(self, stored: StoredResponse, level: int) -> bool:
        if level >= 2 or self.provider == "rules":
            return False
        if self.format_level <= level:
            self.format_level = level + 1
            what = {1: "plain JSON mode (json_object)", 2: "no response_format (the prompt asks for JSON)"}
            msg = (f"the server refused the structured-output format ({(stored.error_message or '')[:160]}); "
                   f"falling back to {what[self.format_level]}")
            log.warning(msg)
            print(f"generate: {msg}", file=sys.stderr)
            self.summary.format_fallbacks.append(msg)
            self.store.record_fact(self.fact_prefix + "format_level", self.format_level)
        return True

    # --- one prompt, one attempt ----------------------------------------------------------------------
    async def attempt(self, it: PromptItem, attempt: int, candidates: list[FollowUp]) -> Outcome:
        """Plan and send ``attempt`` of ``it``. A context-length refusal teaches the window: the attempt is
        planned again (fewer answer tokens, a shorter follow-up) or refused; a refused response format falls
        back one step and is sent again. Each plan is stored with its intent, before it is sent."""
        async with self.sem:
            fresh, refused_keys, outcome = False, set(), None
            for _revision in range(4):
                outcome = await self._plan_and_send(it, attempt, candidates, fresh, refused_keys, outcome)
                st = outcome.stored
                if outcome.status == "refused_context" or st is None or st.ok:
                    return outcome
                if st.error_code == "context_length_exceeded":
                    self.learn_refusal(st, outcome.plan)
                    refused_keys.add(outcome.plan.key)
                    fresh = True
                    continue
                if st.error_code == "format_unsupported" and it.variant == "json" and \
                        self.fall_back_format(st, self._level_of(outcome.plan)):
                    fresh = True
                    continue
                return outcome
            if outcome.stored is not None and outcome.stored.error_code == "context_length_exceeded":
                outcome.status = "refused_context"
            return outcome

    async def _plan_and_send(self, it: PromptItem, attempt: int, candidates: list[FollowUp], fresh: bool,
                             refused_keys: set[str], previous: Outcome | None) -> Outcome:
        plan = await self.plan(it, attempt, candidates, fresh)
        if isinstance(plan, tuple):
            return Outcome(None, None, status="refused_context", code=plan[0], message=plan[1])
        done = self._answered(plan, refused_keys, previous)
        if done is not None:
            return done
        if self.server_unreachable:
            return self._unreachable(plan)
        mt = int(plan.params.get("max_tokens") or 0)
        ok_to_send, worst = await self.cost.reserve_when_possible(plan.est_tokens, mt)
        if not ok_to_send:
            return Outcome(plan, None, status="skipped_budget", code="budget_exhausted",
                            message=f"worst case ${worst:.4f} would exceed --max-cost (spent ${self.cost.spent:.4f})")
        # The window may have been learned while this task waited (another request's refusal): plan again
        # holding the slot the first send will use, so no request is sent on a stale window.
        slot = Slot(await self.pacer.acquire())
        sent = False
        try:
            if self.window.version != plan.window_version:
                plan = await self.plan(it, attempt, candidates, fresh)
                if isinstance(plan, tuple):
                    return Outcome(None, None, status="refused_context", code=plan[0], message=plan[1])
                done = self._answered(plan, refused_keys, previous)
                if done is not None:
                    return done
            if self.server_unreachable:  # learned while this task waited for its slot
                return self._unreachable(plan)
            if plan.key in self.inflight:  # the same request twice in one run: send it once
                await self.pacer.release()
                slot.held = False
                stored = await self.inflight[plan.key]
                return Outcome(plan, stored, True) if stored is not None else \
                    Outcome(plan, None, status="skipped_budget", code="budget_exhausted",
                             message="worst case would exceed --max-cost")
            fut = self.inflight[plan.key] = asyncio.get_running_loop().create_future()
            comp = None
            try:
                comp = await complete(self.backend, self.store, self.gate, plan.key, plan.messages, plan.params,
                                      it.record_id, attempt, it.context, self.retry,
                                      {"provider": self.provider, "model": self.model, "params": plan.params,
                                       "messages": canonical_messages(plan.messages)},
                                      need_tokens=plan.est_tokens + mt, pacer=self.pacer,
                                      prompt_tokens=plan.est_tokens, plan=plan.record(), slot=slot,
                                      on_response=lambda st: self._learn_early(st, plan),
                                      give_up=lambda: self.server_unreachable)
            finally:
                fut.set_result(comp.stored if comp is not None else None)
            sent = True
        finally:
            if slot.held:
                await self.pacer.release()
            if not sent:
                await self.cost.asettle(worst, 0.0)  # release the reservation so no waiter hangs
        self.summary.n_http_sends += comp.http_attempts
        self.sends.update(r.error_code or "ok" for r in comp.sent)
        # every billed attempt counts (a 200 with an empty answer still used tokens)
        usages = [usage_from_body(r.json()) for r in comp.sent]
        await self.cost.asettle(worst, sum(self.prices.cost_usd(self.provider, self.model, u) or 0.0 for u in usages),
                                plan.est_tokens, max([u.prompt_tokens for u in usages], default=0))
        return Outcome(plan, comp.stored, comp.reused)

    def _learn_early(self, stored: StoredResponse, plan: Plan) -> None:
        if stored.error_code == "context_length_exceeded":
            self.learn_refusal(stored, plan)
        if stored.error_code == "connection_error":
            self.connection_errors_in_a_row += 1
        else:
            self.connection_errors_in_a_row = 0
            self.reached_server = True

    def _unreachable(self, plan: Plan) -> Outcome:
        return Outcome(plan, None, status="failed", code="connection_error",
                       message=f"not sent: {self.connection_errors_in_a_row} sends in a row could not connect to "
                               "the server and none ever did")

    @property
    def server_unreachable(self) -> bool:
        """Nothing ever answered in this run and the last sends could not even connect: a wrong --base-url
        or a server that is down. The rest is not sent (each prompt would retry into the void)."""
        return not self.reached_server and self.connection_errors_in_a_row >= UNREACHABLE_AFTER

    def _answered(self, plan: Plan, refused_keys: set[str], previous: Outcome | None) -> Outcome | None:
        """The outcome of ``plan`` without sending, when there is one: its stored answer, or (for a plan of an
        earlier run) the refusal the server gave it, which it would give again."""
        if plan.key in refused_keys and previous is not None:
            previous.status = "refused_context"   # nothing left to change: the refusal stands
            return previous
        hit = self.store.get_ok(plan.key)
        if hit is not None:
            return Outcome(plan, hit, True)
        if plan.from_store:
            tried = self.store.responses(plan.key)
            if tried and tried[-1].error_code in NOT_RESENT:
                return Outcome(plan, tried[-1], True)
        return None

    def _level_of(self, plan: Plan) -> int:
        """Which step of the structured-output fallback ``plan`` asked for."""
        fmt = plan.params.get("response_format")
        if fmt is None:
            return 2
        return 0 if (fmt.get("type") == "json_schema" or "schema" in fmt) and self.provider != "deepseek" else 1


async def batch_round(run: GenerationRun, items: list[PromptItem], todo: list[int], attempt: int,
                       cands: dict[int, list[FollowUp]], poll_s: float, max_wait_s: float) -> dict[int, Outcome]:
    """One attempt of every prompt through the OpenAI Batch API (plans stored like synchronous ones)."""
    out: dict[int, Outcome] = {}
    reqs: list[BatchRequest] = []
    reserved: dict[int, float | None] = {}
    keys_seen: set[str] = set()
    plans: dict[int, Plan] = {}
    for i in todo:
        plan = await run.plan(items[i], attempt, cands[i])
        if isinstance(plan, tuple):
            out[i] = Outcome(None, None, status="refused_context", code=plan[0], message=plan[1])
            continue
        plans[i] = plan
        if run.store.get_ok(plan.key) is None and plan.key not in keys_seen:
            worst = run.cost.worst(plan.est_tokens, int(plan.params.get("max_tokens") or 0))
            if not run.cost.try_reserve(worst):
                out[i] = Outcome(plan, None, status="skipped_budget", code="budget_exhausted",
                                  message=f"worst case ${worst:.4f} would exceed --max-cost")
                continue
            reserved[i] = worst
            if plan.record() is not None:
                chain, att, params, extra = plan.record()
                await run.store.arecord_plan(chain, att, plan.key, params, extra)
            reqs.append(BatchRequest(plan.key, {"model": run.model, "messages": plan.messages, **plan.params},
                                     items[i].record_id, attempt))
        keys_seen.add(plan.key)
    report = await run_batches(run.backend, run.store, reqs, poll_interval_s=poll_s, max_wait_s=max_wait_s)
    run.summary.batch_ids += report.submitted + report.resumed
    run.summary.n_http_sends += len(reqs)
    sent_keys = {r.key for r in reqs}
    for i, plan in plans.items():
        if i in out:
            continue
        got = run.store.get_ok(plan.key)
        if got is None:
            tried = run.store.responses(plan.key)
            got = tried[-1] if tried else StoredResponse(
                plan.key, False, None, None, {}, None, run.provider, run.model, error_code="batch_unfinished",
                error_message=f"no result line (batch {report.unfinished.get(plan.key, 'unknown')}); "
                              "a re-run resubmits it")
        run.sends[got.error_code or "ok"] += plan.key in sent_keys
        if i in reserved:
            usage = usage_from_body(got.json())
            run.cost.settle(reserved[i], run.prices.cost_usd(run.provider, run.model, usage, True), plan.est_tokens,
                            usage.prompt_tokens)
        out[i] = Outcome(plan, got, plan.key not in sent_keys)
    return out
