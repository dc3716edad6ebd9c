"""Prefect flow for the ``ingest`` stage: one task per chunk of ids (hundreds of records), never per record.

The task wraps the plain function ``pipeline.ingest.ingest_shard``; the flow lists ids, maps the task over
the chunks and merges the shards with ``pipeline.ingest.merge_shards`` - the same outputs as
``ecg-grounding ingest`` (``OUT/manifest.parquet``, ``OUT/errors/ingest.parquet``). Finished shards are
skipped, so a re-run after a crash redoes only the missing chunks.
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path

from prefect import flow, task, unmapped

from pipeline.ingest import DEFAULT_CHUNK_SIZE, IngestSummary, ShardResult, ingest_shard, list_ids, merge_shards
from pipeline.batch import chunks  # after pipeline.ingest: it imports features.schema first


@task(name="ingest-chunk", retries=0)
def ingest_chunk_task(source: str, root: str, ids: list[str], out: str, index: int, options: dict,
                      cache_token: str = "") -> ShardResult:
    """Ingest one chunk of record ids into its shard (see ``pipeline.ingest.ingest_shard``)."""
    return ingest_shard(source, root, ids, out, index, options, cache_token=cache_token)


@flow(name="ingest")
def ingest_flow(source: str, root: str, out: str, chunk_size: int = DEFAULT_CHUNK_SIZE,
                options: dict | None = None) -> IngestSummary:
    """Ingest every record of ``source`` at ``root`` into ``out`` in chunks of ``chunk_size`` ids."""
    started = time.perf_counter()
    options = dict(options or {})
    root, out = str(Path(root)), str(Path(out))
    ids = list_ids(source, root, **options)
    id_chunks = [list(c) for c in chunks(ids, chunk_size)]
    futures = ingest_chunk_task.map(
        source=unmapped(source), root=unmapped(root), ids=id_chunks, out=unmapped(out),
        index=list(range(len(id_chunks))), options=unmapped(options), cache_token=unmapped(uuid.uuid4().hex),
    )
    shards = [f.result() for f in futures]
    return merge_shards(source, root, out, shards, len(ids), started)
