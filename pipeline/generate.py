"""``ecg-grounding generate``: prompts → answers, through the rules writer or an LLM, durably and within budget.

Every request goes through the same path: plan (the exact request of this attempt, stored) → request key →
stored answer reused, or intent recorded → sent with bounded, paced retries → raw response stored → read
(thinking set apart, JSON answers parsed) → validated. A rejected answer is regenerated with the
validator's reasons as feedback (a new request with its own stored response), up to ``max_attempts``.
A resumed run re-issues the stored plan of each attempt, never a rebuilt one. Output: ``OUT/responses/``
(the append-only store), ``OUT/answers.parquet`` (one row per attempt) and ``OUT/generate_summary.json``.

Exit codes: 0 when every prompt ended with an accepted answer (with ``--no-validate``: with an answer);
1 when any ended without one (refused, failed, rejected or skipped for the budget); 2 bad usage.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from pipeline import progress
from pipeline.llm.attempts import FollowUp, Rejection, Reply, follow_up_candidates, read_reply, rejection_for
from pipeline.llm.client import RetryPolicy
from pipeline.llm.pricing import PriceTable, usage_from_body
from pipeline.llm.providers import Backend, BackendSpec, LLMConfigError, make_backend
from pipeline.llm.session import GenerationRun as _Run
from pipeline.llm.session import PromptItem as _Item
from pipeline.llm.session import batch_round as _batch_round
from pipeline.llm.store import ResponseStore, StoredResponse

log = logging.getLogger(__name__)

ANSWERS_SCHEMA: dict[str, pl.DataType] = {
    "record_id": pl.Utf8, "variant": pl.Utf8, "attempt": pl.Int32, "answer": pl.Utf8,
    "reasoning_content": pl.Utf8, "backend": pl.Utf8, "model": pl.Utf8, "provider_model": pl.Utf8,
    "request_key": pl.Utf8, "prompt_tokens": pl.Int64, "completion_tokens": pl.Int64, "cached_tokens": pl.Int64,
    "reasoning_tokens": pl.Int64, "cost_usd": pl.Float64, "finish_reason": pl.Utf8, "status": pl.Utf8,
    "error_code": pl.Utf8, "error_message": pl.Utf8, "latency_s": pl.Float64,
    # beyond the brief's columns: provenance of reuse and the validator's verdict on this attempt
    "reused": pl.Boolean, "accepted": pl.Boolean, "validation_reasons": pl.Utf8,
    # the reply as received when ``answer`` is not all of it (thinking set apart, a JSON answer's object)
    "answer_raw": pl.Utf8,
}
STATUSES = ("ok", "failed", "skipped_budget", "refused_context")
DEFAULT_MAX_TOKENS = {"rules": 0, "openai": 2048, "deepseek": 8192, "openai-compatible": 2048}


@dataclass
class GenerateSummary:
    n_prompts: int = 0
    n_ok: int = 0                 # prompts with at least one answer
    n_accepted: int = 0           # ... of which the validator accepted one (when a validator ran)
    n_rejected: int = 0           # ... of which every answer was rejected
    n_failed: int = 0             # prompts with no answer: the last attempt failed (code + message in the row)
    n_no_answer: int = 0          # prompts whose every reply held no usable answer (only thinking, bad JSON)
    n_skipped_budget: int = 0     # prompts whose last (re)generation was not sent for --max-cost
    n_refused_context: int = 0    # prompts that do not fit the served window (refused by it, or before sending)
    n_not_accepted: int = 0       # prompts that ended without an accepted answer: the exit code is 1 then
    n_requests: int = 0           # distinct request keys this run needed
    n_reused: int = 0             # of those, answered from the store (nothing sent, nothing paid)
    n_http_sends: int = 0         # HTTP sends made now, retries included
    sends_by_code: dict[str, int] = field(default_factory=dict)   # those sends by outcome ('ok' or error code)
    failed_by_code: dict[str, int] = field(default_factory=dict)  # prompts without an answer, by last code
    cost_usd_new: float = 0.0     # spent by this run
    cost_usd_total: float = 0.0   # cost of every answer in answers.parquet (reused ones included)
    lost_intents_before: int = 0  # requests a previous, killed run sent without storing a response
    server: dict[str, Any] = field(default_factory=dict)  # kind, host, served model, context window (+ source)
    concurrency: dict[str, Any] = field(default_factory=dict)  # start, peak, final, cuts (adaptive)
    prefill_tokens_per_s: float | None = None   # measured on answers that were alone on the wire
    decode_tokens_per_s: float | None = None
    format_fallbacks: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)
    batch_ids: list[str] = field(default_factory=list)
    answers_path: str = ""
    wall_s: float = 0.0


def _write_parquet_atomic(df: pl.DataFrame, path: Path) -> Path:
    # pipeline.batch's, imported when called: at import time pipeline.batch -> features -> pipeline.batch is
    # circular when pipeline.batch is imported first
    from pipeline.batch import write_parquet_atomic

    return write_parquet_atomic(df, path)


def _image_part(path: Path) -> dict:
    import base64
    import mimetypes

    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    data = base64.b64encode(path.read_bytes()).decode()
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}", "detail": "high"}}


def _estimate_tokens(text: str) -> int:
    # Only when the prompts table has no exact count: ~2 chars/token over-counts ECG text (budget-safe).
    return len(text) // 2 + 8


def build_items(prompts: pl.DataFrame, backend: Backend, contexts: Mapping[str, Any] | None,
                image_root: Path | None) -> list[_Item]:
    """One request skeleton per prompt row: system + user (+ the image for multimodal rows)."""
    items = []
    for row in prompts.iter_rows(named=True):
        rid = row["record_id"]
        variant = row.get("variant")
        system, user = row.get("system") or "", row.get("user") or ""
        msgs: list[dict] = [{"role": "system", "content": system}] if system else []
        error = None
        img = row.get("image_path")
        if variant == "multimodal" and not img and backend.supports_images:
            # a vision model must never be asked to read an ECG it is not sent
            msgs.append({"role": "user", "content": user})
            error = ("missing_image", "the multimodal prompt names no image")
        elif variant == "multimodal" and img and backend.supports_images:
            p = Path(img)
            if not p.is_absolute() and image_root is not None:
                p = image_root / p
            if p.is_file():
                msgs.append({"role": "user", "content": [{"type": "text", "text": user}, _image_part(p)]})
            else:
                msgs.append({"role": "user", "content": user})
                error = ("missing_image", f"image {img} not found under {image_root}")
        else:
            msgs.append({"role": "user", "content": user})
        est = row.get("prompt_tokens")
        est = int(est) + int(row.get("image_tokens") or 0) if est is not None else _estimate_tokens(system + user)
        items.append(_Item(rid, variant, msgs, est, (contexts or {}).get(rid), error))
    return items


def _row(item: _Item, attempt: int, backend: Backend, spec_label: str, key: str | None, status: str, *,
         stored: StoredResponse | None = None, reply: Reply | None = None, reused: bool = False,
         cost: float | None = None, code: str | None = None, message: str | None = None) -> dict:
    row = {c: None for c in ANSWERS_SCHEMA}
    row.update(record_id=item.record_id, variant=item.variant, attempt=attempt, backend=spec_label,
               model=backend.model, request_key=key, status=status, error_code=code, error_message=message,
               reused=reused, cost_usd=cost)
    if stored is not None:
        body = stored.json()
        usage = usage_from_body(body)
        row.update(provider_model=(body or {}).get("model"), prompt_tokens=usage.prompt_tokens,
                   completion_tokens=usage.completion_tokens, cached_tokens=usage.cached_tokens,
                   reasoning_tokens=usage.reasoning_tokens, latency_s=stored.latency_s)
        if not stored.ok:
            row.update(error_code=stored.error_code, error_message=stored.error_message)
    if reply is not None:
        row.update(answer=reply.answer, reasoning_content=reply.reasoning, finish_reason=reply.finish_reason,
                   answer_raw=reply.raw)
    return row


def _validate(validator: Callable | None, answer: str, ctx: Any) -> tuple[bool | None, list[str], str]:
    if validator is None or ctx is None:
        return None, [], ""
    try:
        res = validator(answer, ctx)
    except Exception as exc:  # a validator bug must not lose the paid answer: record it, do not regenerate
        return None, [f"validator_error:{type(exc).__name__}: {exc}"], ""
    return bool(res.accepted), list(getattr(res, "reasons", []) or []), str(getattr(res, "feedback", "") or "")


def _default_schema() -> dict:
    """``prompts/answer_schema.json``: what the json variant's system prompt asks for."""
    from importlib.resources import files

    return json.loads(files("prompts").joinpath("answer_schema.json").read_text(encoding="utf-8"))


async def agenerate_answers(prompts: pl.DataFrame, backend: Backend, store: ResponseStore | str | Path,
                            out_dir: str | Path, concurrency: int = 16, max_attempts: int = 3,
                            validator: Callable | None = None, contexts: Mapping[str, Any] | None = None,
                            max_cost: float | None = None, batch: bool = False, *,
                            price_table: PriceTable | None = None, max_tokens: int | None = None,
                            temperature: float | None = None, json_schema: dict | None = None,
                            image_root: str | Path | None = None, retry: RetryPolicy | None = None,
                            seed: int = 0, spec_label: str | None = None, batch_poll_s: float = 30.0,
                            batch_max_wait_s: float = 26 * 3600.0) -> GenerateSummary:
    """Async core of :func:`generate_answers` (same arguments)."""
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    own_store = not isinstance(store, ResponseStore)
    store = ResponseStore(store) if own_store else store
    prices = price_table or PriceTable()
    provider, model = backend.provider, backend.model
    label = spec_label or (provider if provider == "rules" else f"{provider}:{model}")
    if max_cost is not None and prices.price(provider, model) is None:
        raise LLMConfigError(f"--max-cost needs a price for {provider}:{model}: add it with --price-table")
    if batch and not backend.supports_batch:
        raise LLMConfigError(f"--batch needs the OpenAI Batch API; {provider} has none")
    max_tokens = int(max_tokens if max_tokens is not None else DEFAULT_MAX_TOKENS.get(provider, 2048))
    if json_schema is None and "variant" in prompts.columns and "json" in prompts["variant"].to_list():
        json_schema = _default_schema()
    summary = GenerateSummary(n_prompts=prompts.height, lost_intents_before=len(store.lost_intents()))
    if summary.lost_intents_before:
        log.warning("%d request(s) were sent by an earlier run that died before storing the response",
                    summary.lost_intents_before)
    run = _Run(backend, store, summary, prices, max_tokens, temperature, json_schema, seed, concurrency,
               max_cost, batch, retry)
    await run.start()
    summary.concurrency = {"start": run.pacer.limit, "max": run.pacer.max_limit}
    items = build_items(prompts, backend, contexts, Path(image_root) if image_root else None)
    for it in items:
        it.chain = run.chain_of(it)
    follow_ups: dict[int, FollowUp] = {i: FollowUp() for i in range(len(items))}
    rejections: dict[int, Rejection] = {}
    rows: list[dict] = []
    earlier: dict[int, list[dict]] = {}      # superseded (rejected) attempts per prompt
    final: dict[int, dict] = {}
    active = list(range(len(items)))

    for attempt in range(1, max_attempts + 1):
        todo = []
        for i in active:
            it = items[i]
            if it.error is not None:
                final[i] = _row(it, attempt, backend, label, None, "failed", code=it.error[0], message=it.error[1])
                continue
            todo.append(i)
        cands = {i: [FollowUp()] if attempt == 1 else follow_up_candidates(follow_ups[i], rejections[i])
                 for i in todo}
        progress.add_total(len(todo))
        if batch:
            outcomes = await _batch_round(run, items, todo, attempt, cands, batch_poll_s, batch_max_wait_s)
            progress.tick(len(todo))
        else:
            async def tracked(i: int):
                try:
                    return await run.attempt(items[i], attempt, cands[i])
                finally:
                    progress.tick()
            got = await asyncio.gather(*(tracked(i) for i in todo))
            outcomes = dict(zip(todo, got))

        next_active = []
        for i in todo:
            it, oc = items[i], outcomes[i]
            key = oc.plan.key if oc.plan else None
            if oc.plan is not None:
                summary.n_requests += 1
                summary.n_reused += int(oc.reused and oc.stored is not None)
            st = oc.stored
            if st is None:
                final[i] = _row(it, attempt, backend, label, key, oc.status or "failed", code=oc.code,
                                message=oc.message)
                continue
            cost = prices.cost_usd(provider, model, usage_from_body(st.json()), st.batch_id is not None)
            if not st.ok:
                final[i] = _row(it, attempt, backend, label, key, oc.status or "failed", stored=st,
                                reused=oc.reused, cost=cost)
                continue
            reply = read_reply(st, it.variant, json_schema)
            r = _row(it, attempt, backend, label, key, "ok", stored=st, reply=reply, reused=oc.reused, cost=cost)
            final[i] = r
            usage = usage_from_body(st.json())
            if usage.prompt_tokens and oc.plan is not None:
                run.window.observe(oc.plan.est_tokens, usage.prompt_tokens)
            if reply.problem is not None:
                accepted, reasons, feedback = False, [reply.problem[0]], reply.problem[1]
                r["error_message"] = reply.problem[1]   # why the reply holds no usable answer
            else:
                accepted, reasons, feedback = _validate(validator, reply.answer, it.context)
            r.update(accepted=accepted, validation_reasons=json.dumps(reasons) if reasons or accepted is not None
                     else None)
            if accepted is False and attempt < max_attempts:
                rows.append(r)
                earlier.setdefault(i, []).append(r)
                rejections[i] = rejection_for(reply, reasons, feedback)
                follow_ups[i] = oc.plan.follow_up if oc.plan is not None else FollowUp()
                next_active.append(i)
        active = next_active
        if not active:
            break

    rows.extend(final[i] for i in sorted(final))
    frame = pl.DataFrame(rows, schema=ANSWERS_SCHEMA).sort(["record_id", "variant", "attempt"], nulls_last=True)
    answers_path = _write_parquet_atomic(frame, out_dir / "answers.parquet")
    _tally(summary, final, earlier, validator is not None)
    summary.sends_by_code = dict(run.sends.most_common())
    summary.cost_usd_new = round(run.cost.spent, 6)
    summary.cost_usd_total = round(float(frame["cost_usd"].fill_null(0).sum()), 6)
    summary.concurrency.update(peak=round(run.pacer.peak_limit, 2), final=round(run.pacer.limit, 2),
                               cuts=run.pacer.cuts)
    if run.pacer.rates:
        summary.prefill_tokens_per_s, summary.decode_tokens_per_s = (round(x, 1) for x in run.pacer.rates)
    summary.hints = _hints(summary, backend)
    summary.answers_path = str(answers_path)
    summary.wall_s = round(time.perf_counter() - t_start, 3)
    (out_dir / "generate_summary.json").write_text(json.dumps(asdict(summary), indent=2))
    if own_store:
        store.close()
    return summary


def _tally(summary: GenerateSummary, final: dict[int, dict], earlier: dict[int, list[dict]],
           validated: bool) -> None:
    failed_codes: Counter = Counter()
    for i, last in final.items():
        tried = earlier.get(i, []) + [last]
        any_answer = any(r["status"] == "ok" and r["answer"] is not None for r in tried)
        any_ok = any(r["status"] == "ok" for r in tried)
        accepted = any(r["accepted"] is True for r in tried)
        summary.n_ok += any_answer
        summary.n_accepted += accepted
        summary.n_rejected += any_answer and not accepted and any(r["accepted"] is False for r in tried)
        summary.n_no_answer += any_ok and not any_answer
        # a prompt with an answer counts as answered even if a later regeneration was skipped or failed
        if not any_ok:
            summary.n_failed += last["status"] == "failed"
            summary.n_refused_context += last["status"] == "refused_context"
            failed_codes[last["error_code"] or last["status"]] += 1
        summary.n_skipped_budget += last["status"] == "skipped_budget"
        done = accepted if validated else any_answer
        summary.n_not_accepted += not done
    summary.failed_by_code = dict(failed_codes.most_common())


def _hints(summary: GenerateSummary, backend: Backend) -> list[str]:
    hints = []
    sends = summary.n_http_sends
    timeouts = summary.sends_by_code.get("timeout", 0)
    if sends and timeouts >= max(2, 0.3 * sends):
        hints.append(f"{timeouts} of {sends} sends timed out: the server answers slower than the time allowed. "
                     "Leave --timeout unset (it is then sized from the measured speed) or raise it, and lower "
                     "--concurrency for a server that computes one request at a time.")
    conn = summary.sends_by_code.get("connection_error", 0)
    if sends and conn >= max(1, 0.5 * sends):
        url = getattr(getattr(backend, "spec", None), "base_url", None)
        hints.append(f"{conn} of {sends} sends could not connect: is the server at {url} running?")
    if summary.n_refused_context:
        hints.append(f"{summary.n_refused_context} prompts do not fit the served context window "
                     f"({summary.server.get('context_window')} tokens): serve a larger context (e.g. llama.cpp "
                     "--n_ctx / -c, vLLM --max-model-len) or build shorter prompts (prompts --budget).")
    return hints


def generate_answers(prompts: pl.DataFrame, backend: Backend, store: ResponseStore | str | Path,
                     out_dir: str | Path, concurrency: int = 16, max_attempts: int = 3,
                     validator: Callable | None = None, contexts: Mapping[str, Any] | None = None,
                     max_cost: float | None = None, batch: bool = False, **options: Any) -> GenerateSummary:
    """Answer every prompt row; write ``out_dir/answers.parquet`` (one row per attempt) and return a summary.

    ``store`` is a :class:`ResponseStore` or its directory. ``validator(answer, ctx)`` returns an object with
    ``.accepted``, ``.reasons``, ``.feedback``; rejected answers are regenerated with the feedback, up to
    ``max_attempts`` answers per prompt. ``max_cost`` is in USD; requests whose worst case would exceed it are
    recorded as ``skipped_budget``. ``batch=True`` uses the OpenAI Batch API (half price). ``concurrency`` is
    the most requests on the wire (local servers start at 1 and adapt). Options: ``price_table``,
    ``max_tokens``, ``temperature``, ``json_schema``, ``image_root``, ``retry``, ``seed``, ``batch_poll_s``,
    ``batch_max_wait_s``.
    """
    async def run() -> GenerateSummary:
        try:
            with progress.track("generate", 0, unit="requests"):  # each attempt round adds its requests
                return await agenerate_answers(prompts, backend, store, out_dir, concurrency, max_attempts,
                                               validator, contexts, max_cost, batch, **options)
        finally:
            await backend.aclose()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run())
    # Called from async code (e.g. an async Prefect flow): run on a fresh loop in a worker thread.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, run()).result()


# --- CLI ---------------------------------------------------------------------------------------------------

def _read_prompts(path: Path) -> tuple[pl.DataFrame, Path]:
    """The prompts table and the run folder image paths are relative to."""
    if path.is_dir():
        cand = [path / "prompts.parquet", path / "prompts" / "prompts.parquet"]
        path = next((c for c in cand if c.is_file()), cand[0])
    from pipeline.inputs import read_parquet_checked

    if not path.is_file():
        raise FileNotFoundError(f"no prompts table at {path}")
    run_dir = path.parent.parent if path.parent.name == "prompts" else path.parent
    return read_parquet_checked(path, "prompts table", ("record_id",)), run_dir


def _default_variant(provider: str) -> str:
    # GPT-4o reads the image; DeepSeek-R1, local text models and the rules writer take the text prompt.
    return "multimodal" if provider == "openai" else "text"


def run_generate(prompts_path: str | Path, out: str | Path, llm: str = "rules", base_url: str | None = None,
                 variant: str | None = None, concurrency: int = 16, max_attempts: int = 3,
                 max_cost: float | None = None, batch: bool = False, price_table: str | Path | None = None,
                 max_tokens: int | None = None, temperature: float | None = None, timeout_s: float | None = None,
                 context_window: int | None = None, json_schema: dict | None = None,
                 api_key_secret: str | None = None, seed: int = 0, limit: int | None = None,
                 batch_poll_s: float = 30.0, validate: bool = True, with_context: bool = True,
                 extra_body: dict | None = None, features: str | Path | None = None,
                 manifest: str | Path | None = None, images: str | Path | None = None,
                 run_dir: str | Path | None = None, store_dir: str | Path | None = None) -> GenerateSummary:
    """The ``generate`` stage as a plain function: answer the prompts table at ``prompts_path`` (a file or the
    folder holding it) with backend ``llm``; write ``out/responses/`` and ``out/answers.parquet``.

    ``timeout_s`` bounds each whole request; None sizes it per request from the server's measured speed.
    Grounding contexts come from the run folder the prompts live in (``pipeline.context.load_contexts``), or
    from ``features`` / ``manifest`` / ``images`` when given, and rejected answers are regenerated with the
    validator's feedback (``pipeline.validate.validate_answer``). When contexts are needed (the rules writer,
    or validation) and cannot be found, ``ConfigError`` says what is missing before anything is sent.
    The chain answers one chunk's prompts file at a time: ``run_dir`` then names the run folder (contexts,
    images) and ``store_dir`` the run's one response store (default ``out/responses``).
    """
    from pipeline.context import load_contexts
    from pipeline.llm.providers import resolve_api_key
    from pipeline.validate import validate_answer

    spec = BackendSpec.parse(llm, base_url)
    prompts, found_run_dir = _read_prompts(Path(prompts_path))
    run_dir = Path(run_dir) if run_dir is not None else found_run_dir
    variant = variant or _default_variant(spec.provider)
    if "variant" in prompts.columns and variant != "all":
        prompts = prompts.filter(pl.col("variant") == variant)
    if limit:
        prompts = prompts.head(limit)
    contexts = None
    if with_context:
        from pipeline.inputs import check_context_inputs

        need = spec.provider == "rules" or validate
        paths = check_context_inputs(run_dir, Path(prompts_path), features, manifest, images, llm, need)
        if paths is not None:
            contexts = load_contexts(run_dir, prompts["record_id"].to_list(), **paths)
            if need:
                from pipeline.inputs import check_prompts_match
                check_prompts_match(prompts["record_id"].to_list(), contexts, paths)
    api_key = None if spec.provider == "rules" else resolve_api_key(spec.provider, api_key_secret)
    backend = make_backend(spec, api_key=api_key, timeout_s=timeout_s, context_window=context_window,
                           extra_body=extra_body)
    out = Path(out)
    return generate_answers(
        prompts, backend, Path(store_dir) if store_dir else out / "responses", out, concurrency=concurrency,
        max_attempts=max_attempts,
        validator=validate_answer if validate else None, contexts=contexts, max_cost=max_cost, batch=batch,
        price_table=PriceTable.load(price_table), max_tokens=max_tokens, temperature=temperature,
        json_schema=json_schema, image_root=run_dir, seed=seed, spec_label=llm, batch_poll_s=batch_poll_s)


def report_lines(s: GenerateSummary) -> list[str]:
    """What a person reads on the screen after a generate run (the JSON summary goes to stdout)."""
    lines = [f"generate: {s.n_accepted if s.n_accepted or s.n_rejected else s.n_ok}/{s.n_prompts} prompts "
             f"{'accepted' if s.n_accepted or s.n_rejected else 'answered'}; "
             f"{s.n_http_sends} HTTP sends, {s.n_reused} requests answered from the store"]
    ended = {"rejected": s.n_rejected, "no usable answer": s.n_no_answer, "failed": s.n_failed,
             "refused (context)": s.n_refused_context, "skipped (budget)": s.n_skipped_budget}
    bad = ", ".join(f"{k} {v}" for k, v in ended.items() if v)
    if bad:
        lines.append(f"  without an accepted answer: {s.n_not_accepted} ({bad})")
    if s.failed_by_code:
        lines.append("  prompts without an answer, by error: " +
                     ", ".join(f"{c} {n}" for c, n in s.failed_by_code.items()))
    errs = {c: n for c, n in s.sends_by_code.items() if c != "ok"}
    if errs:
        lines.append("  sends by error code: " + ", ".join(f"{c} {n}" for c, n in errs.items()) +
                     f" (ok {s.sends_by_code.get('ok', 0)})")
    lines += [f"  {m}" for m in s.format_fallbacks]
    lines += [f"  hint: {h}" for h in s.hints]
    return lines


def run_cli(args: argparse.Namespace) -> int:
    """Exit codes: 0 every prompt accepted, 1 some prompt ended without an accepted answer, 2 bad usage."""
    try:
        return _run_cli(args)
    except (LLMConfigError, FileNotFoundError) as exc:
        print(f"generate: {exc}", file=sys.stderr)
        return 2


def _json_arg(value: str | None, what: str) -> dict | None:
    if value is None:
        return None
    try:
        text = Path(value).read_text() if not value.lstrip().startswith("{") else value
        doc = json.loads(text)
    except (OSError, json.JSONDecodeError) as exc:
        raise LLMConfigError(f"{what}: not a JSON object or a file holding one ({exc})") from None
    if not isinstance(doc, dict):
        raise LLMConfigError(f"{what}: must be a JSON object")
    return doc


def failed_answer_rows(answers_path: str | Path) -> pl.DataFrame:
    """(record_id, code, stage) of every prompt that ended without an answer: its last attempt's error code."""
    ans = pl.read_parquet(answers_path).sort(["record_id", "variant", "attempt"], nulls_last=True)
    last = ans.group_by(["record_id", "variant"], maintain_order=True).agg(
        pl.col("status").eq("ok").any().alias("answered"), pl.col("error_code").last(), pl.col("status").last())
    return last.filter(~pl.col("answered")).select(
        "record_id", pl.coalesce("error_code", "status").alias("code"), pl.lit("generate").alias("stage"))


def answer_failures(answers_path: str | Path):
    """Prompts that ended without an answer, by error code (``pipeline.batch.Failures``)."""
    from pipeline.batch import collect_failures

    path = Path(answers_path)
    return collect_failures([(str(path), failed_answer_rows(path))] if path.is_file() else [])


def format_generate_summary(s: GenerateSummary) -> str:
    return (f"generate: {s.n_ok} of {s.n_prompts} prompts answered ({s.n_accepted} accepted, {s.n_rejected} "
            f"rejected by the validator), {s.n_failed} failed, {s.n_skipped_budget} skipped for --max-cost, "
            f"{s.n_refused_context} refused (context window); {s.n_requests} requests ({s.n_reused} from the "
            f"store), {s.n_http_sends} HTTP sends, ${s.cost_usd_new:.4f} spent now (${s.cost_usd_total:.4f} in "
            f"all) in {s.wall_s:.1f} s -> {s.answers_path}")


def _run_cli(args: argparse.Namespace) -> int:
    from pipeline.preflight import check_llm, check_out

    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    check_llm(args.llm, args.base_url, args.api_key_secret, batch=args.batch, max_cost=args.max_cost,
              price_table=args.price_table, variant=args.variant)
    if args.llm == "rules" and args.no_context:
        raise LLMConfigError("--llm rules writes from each record's measurements: drop --no-context")
    check_out(args.out)
    summary = run_generate(
        args.prompts, args.out, llm=args.llm, base_url=args.base_url, variant=args.variant,
        concurrency=args.concurrency, max_attempts=args.max_attempts, max_cost=args.max_cost, batch=args.batch,
        price_table=args.price_table, max_tokens=args.max_tokens, temperature=args.temperature,
        timeout_s=args.timeout, context_window=args.context_window,
        json_schema=_json_arg(args.json_schema, "--json-schema"), api_key_secret=args.api_key_secret,
        seed=args.seed, limit=args.limit, batch_poll_s=args.batch_poll_s, validate=not args.no_validate,
        with_context=not args.no_context, extra_body=_json_arg(args.extra_body, "--extra-body"),
        features=args.features, manifest=args.manifest, images=args.images)
    from pipeline.cli import finish, verbosity

    rc = finish(args, asdict(summary), format_generate_summary(summary), answer_failures(summary.answers_path))
    if verbosity() >= 0:
        for line in report_lines(summary)[1:]:  # by error code (prompts and sends), fallbacks, hints
            print(line, file=sys.stderr)
    # 0 only when every prompt ended with an accepted answer (with --no-validate: with an answer)
    return rc or (1 if summary.n_not_accepted else 0)


def register(subparsers) -> None:
    from pipeline.preflight import nonneg_float, nonneg_int, positive_float, positive_int

    p = subparsers.add_parser(
        "generate", help="answers from the rules writer or an LLM (durable response store)",
        description="Answer every prompt with the offline rules writer (default) or an LLM: rules, "
                    "openai:MODEL, deepseek:MODEL, or openai-compatible:MODEL with --base-url (vLLM, Ollama, "
                    "llama.cpp, SGLang). Every raw response is stored before it is used and never bought twice; "
                    "a rejected answer is regenerated with the validator's reasons, up to --max-attempts. "
                    "Writes OUT/responses/ (the store), OUT/answers.parquet (one row per attempt) and "
                    "OUT/generate_summary.json. Each record's measurements and metadata come from the run folder "
                    "the prompts live in, or from --features, --manifest and --images.\n\n"
                    "example:\n  ecg-grounding generate --prompts outputs/ptbxl/prompts --out outputs/ptbxl/generate \\\n"
                    "      --llm openai-compatible:qwen2.5-7b-instruct --base-url http://127.0.0.1:8000/v1",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", required=True, help="prompts.parquet or the folder holding it")
    p.add_argument("--out", required=True, help="output folder: responses/, answers.parquet")
    p.add_argument("--features", default=None,
                   help="features folder (default: RUN/features, RUN being the prompts' run folder)")
    p.add_argument("--manifest", default=None, help="ingest manifest.parquet (default: RUN/manifest.parquet)")
    p.add_argument("--images", default=None, help="rendered images folder (default: RUN/images)")
    p.add_argument("--llm", default="rules", help="rules | openai:MODEL | deepseek:MODEL | openai-compatible:MODEL")
    p.add_argument("--base-url", default=None, help="API base URL (required for openai-compatible)")
    p.add_argument("--concurrency", type=positive_int, default=16,
                   help="most requests in flight (openai-compatible starts at 1 and adapts up to this)")
    p.add_argument("--max-cost", type=nonneg_float, default=None, help="USD budget for this run")
    p.add_argument("--batch", action="store_true", help="OpenAI Batch API (half price, up to 24 h)")
    p.add_argument("--max-attempts", type=positive_int, default=3,
                   help="answers per prompt when the validator rejects")
    p.add_argument("--price-table", default=None, help="YAML/JSON overriding the default price table")
    p.add_argument("--variant", default=None, choices=["multimodal", "text", "json", "all"],
                   help="prompt variant to answer (default: multimodal for openai, text otherwise)")
    p.add_argument("--max-tokens", type=positive_int, default=None)
    p.add_argument("--temperature", type=nonneg_float, default=None)
    p.add_argument("--timeout", type=positive_float, default=None,
                   help="seconds one whole request may take (default: sized per request from the server's "
                        "measured speed; 180 s for paid APIs)")
    p.add_argument("--context-window", type=positive_int, default=None,
                   help="served context (tokens) if not detectable")
    p.add_argument("--json-schema", default=None,
                   help="JSON schema (file or inline) for the json variant (default: prompts/answer_schema.json)")
    p.add_argument("--extra-body", default=None,
                   help="JSON object (file or inline) of server-specific request fields, e.g. "
                        "'{\"top_k\": 40}' or a llama.cpp 'grammar'; part of every request key")
    p.add_argument("--api-key-secret", default=None, help="Prefect Secret block holding the API key")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--limit", type=positive_int, default=None, help="only the first N prompts")
    p.add_argument("--batch-poll-s", type=positive_float, default=30.0)
    p.add_argument("--no-validate", action="store_true", help="do not validate answers while generating")
    p.add_argument("--no-context", action="store_true",
                   help="do not load the records' measurements (LLM backends only; implies no validation)")
    p.set_defaults(func=run_cli)


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline.generate ARGS`` = ``ecg-grounding generate ARGS`` without importing the other
    stages (whose scientific imports cost seconds per start)."""

    from pipeline.cli import Parser, add_common_flags, set_verbosity

    parser = Parser(prog="python -m pipeline.generate")
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    register(sub)
    add_common_flags(sub.choices["generate"])
    args = parser.parse_args(["generate", *(sys.argv[1:] if argv is None else argv)])
    level = set_verbosity(1 if getattr(args, "verbose", 0) else -1 if getattr(args, "quiet", 0) else 0)
    args.verbose, args.quiet, args.json = level > 0, level < 0, getattr(args, "json", False)
    from pipeline.record import ConfigError

    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"generate: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
