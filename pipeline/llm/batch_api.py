"""OpenAI Batch API mode (half price): JSONL upload, batch create, poll, map results back by custom_id.

Batch ids are stored the moment a batch is created, so a killed run resumes polling the same batches
instead of paying for them again; requests whose answer is stored (or that sit in a still-open batch) are
never resubmitted. Partial, failed and expired batches keep every line that finished.
"""
from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pipeline.llm.providers import OpenAIBackend, classify_status, judge_body
from pipeline.llm.store import ResponseStore, StoredResponse

log = logging.getLogger(__name__)

MAX_REQUESTS_PER_BATCH = 50_000
MAX_BYTES_PER_BATCH = 200 * 1024 * 1024
TERMINAL = {"completed", "failed", "expired", "cancelled"}
ENDPOINT = "/v1/chat/completions"


@dataclass
class BatchRequest:
    key: str
    body: dict[str, Any]                 # model + messages + params, exactly what a sync call would send
    record_id: str | None = None
    attempt: int | None = None


@dataclass
class BatchReport:
    submitted: list[str] = field(default_factory=list)      # batch ids created by this call
    resumed: list[str] = field(default_factory=list)        # batch ids found open in the store and polled
    unfinished: dict[str, str] = field(default_factory=dict)  # key -> batch status when no line came back


def jsonl_chunks(requests: list[BatchRequest], max_requests: int = MAX_REQUESTS_PER_BATCH,
                 max_bytes: int = MAX_BYTES_PER_BATCH) -> list[tuple[list[str], bytes]]:
    """Split requests into (keys, JSONL bytes) chunks within the Batch API's per-file limits."""
    out: list[tuple[list[str], bytes]] = []
    keys: list[str] = []
    buf = io.BytesIO()
    for r in requests:
        line = (json.dumps({"custom_id": r.key, "method": "POST", "url": ENDPOINT, "body": r.body},
                           separators=(",", ":")) + "\n").encode()
        if len(line) > max_bytes:
            raise ValueError(f"request {r.key[:12]} alone is {len(line)} bytes, over the batch file limit")
        if keys and (len(keys) >= max_requests or buf.tell() + len(line) > max_bytes):
            out.append((keys, buf.getvalue()))
            keys, buf = [], io.BytesIO()
        keys.append(r.key)
        buf.write(line)
    if keys:
        out.append((keys, buf.getvalue()))
    return out


def _store_line(store: ResponseStore, backend: OpenAIBackend, batch_id: str, line: dict[str, Any]) -> str | None:
    key = line.get("custom_id")
    if not key:
        return None
    resp = line.get("response") or {}
    status = resp.get("status_code")
    body = resp.get("body")
    text = json.dumps(body) if body is not None else None
    if status == 200 and text is not None:
        ok, code, msg = judge_body(text)
    else:
        err = line.get("error") or {}
        code = classify_status(int(status), text)[0] if status else str(err.get("code") or "batch_error")
        ok, msg = False, str(err.get("message") or (body or {}).get("error", {}).get("message") or code)
    headers = {"x-request-id": resp["request_id"]} if resp.get("request_id") else {}
    store.put(StoredResponse(key, ok, status, backend.redact(text), headers, None, backend.provider,
                             backend.model, batch_id=batch_id, error_code=code, error_message=backend.redact(msg)))
    return key


async def _collect(backend: OpenAIBackend, store: ResponseStore, batch_id: str, keys: list[str],
                   poll_interval_s: float, max_wait_s: float, report: BatchReport) -> bool:
    """Poll one batch to a terminal state and store its lines; False if we gave up waiting (still open)."""
    client = backend.client
    deadline = time.monotonic() + max_wait_s
    failures = 0
    while True:
        try:
            batch = await client.batches.retrieve(batch_id)
            failures = 0
        except Exception as exc:  # a poll that fails is retried: the batch itself is safe server-side
            failures += 1
            if failures > 20:
                raise
            log.warning("polling batch %s failed (%s); retrying", batch_id, type(exc).__name__)
            await asyncio.sleep(poll_interval_s)
            continue
        if batch.status in TERMINAL:
            break
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(poll_interval_s)
    done: set[str] = set()
    for file_id in (batch.output_file_id, batch.error_file_id):
        if not file_id:
            continue
        content = await client.files.content(file_id)
        for raw in content.text.splitlines():
            try:
                line = json.loads(raw)
            except json.JSONDecodeError:
                continue  # a torn line: its request simply stays unanswered and is resubmitted later
            if (k := _store_line(store, backend, batch_id, line)) is not None:
                done.add(k)
    for k in keys:
        if k not in done:
            report.unfinished[k] = batch.status
    counts = batch.request_counts.model_dump() if batch.request_counts is not None else None
    store.close_batch(batch_id, batch.status, {"request_counts": counts})
    return True


async def _adopt_orphans(backend: OpenAIBackend, store: ResponseStore, report: BatchReport) -> None:
    """Uploads with no recorded batch: find the batch the server made from them, or create it from the file
    already uploaded. Either way the requests are not uploaded nor paid for a second time."""
    orphans = store.orphan_uploads()
    if not orphans:
        return
    by_file: dict[str, Any] = {}
    async for b in backend.client.batches.list(limit=100):
        by_file.setdefault(b.input_file_id, b)
    for file_id, keys in orphans:
        batch = by_file.get(file_id)
        if batch is None:
            batch = await backend.client.batches.create(input_file_id=file_id, endpoint=ENDPOINT,
                                                        completion_window="24h", metadata={"source": "ecg-grounding"})
            report.submitted.append(batch.id)
        log.warning("adopting batch %s for upload %s left by a killed run", batch.id, file_id)
        store.add_batch(batch.id, file_id, keys)


async def run_batches(backend: OpenAIBackend, store: ResponseStore, requests: list[BatchRequest],
                      poll_interval_s: float = 30.0, max_wait_s: float = 26 * 3600.0,
                      max_requests: int = MAX_REQUESTS_PER_BATCH, max_bytes: int = MAX_BYTES_PER_BATCH
                      ) -> BatchReport:
    """Resume open batches, submit the requests not yet answered, poll everything to the end, store lines."""
    report = BatchReport()
    await _adopt_orphans(backend, store, report)
    open_batches = store.open_batches()
    for batch_id, keys in open_batches:
        if batch_id not in report.submitted:
            report.resumed.append(batch_id)
    todo_batches = list(open_batches)
    resumed_keys = {k for _, keys in open_batches for k in keys}
    pending = [r for r in requests if r.key not in resumed_keys and store.get_ok(r.key) is None]
    seen: set[str] = set()
    pending = [r for r in pending if not (r.key in seen or seen.add(r.key))]
    for keys, data in jsonl_chunks(pending, max_requests, max_bytes):
        by_key = {r.key: r for r in pending}
        for k in keys:
            store.record_intent(k, by_key[k].record_id, by_key[k].attempt, "batch")
        f = await backend.client.files.create(file=("requests.jsonl", data, "application/jsonl"), purpose="batch")
        store.add_upload(f.id, keys)
        batch = await backend.client.batches.create(input_file_id=f.id, endpoint=ENDPOINT, completion_window="24h",
                                                    metadata={"source": "ecg-grounding"})
        store.add_batch(batch.id, f.id, keys)  # persisted before polling: a kill now resumes, never resubmits
        report.submitted.append(batch.id)
        todo_batches.append((batch.id, keys))
    for batch_id, keys in todo_batches:
        finished = await _collect(backend, store, batch_id, keys, poll_interval_s, max_wait_s, report)
        if not finished:
            for k in keys:
                if store.get_ok(k) is None:
                    report.unfinished[k] = "still_open"
    return report
