"""One real Prefect run of the ingest flow: same tables as the plain stage, one task run per chunk."""
from __future__ import annotations

import asyncio

import polars as pl
from bad_inputs import build_bad_corpus
from conftest import shared_path

from pipeline.ingest import ingest


async def _task_runs(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    async with get_client() as client:
        return await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            limit=200, sort=TaskRunSort.EXPECTED_START_TIME_ASC,
        )


def test_ingest_flow_matches_the_cli_stage(prefect_harness, tmp_path):
    from flows.ingest import ingest_flow

    root = tmp_path / "bad"
    expect = build_bad_corpus(root, shared_path("data", "ptbxl"))
    state = ingest_flow(source="wfdb", root=str(root), out=str(tmp_path / "flow"), chunk_size=5, return_state=True)
    assert state.is_completed()
    summary = state.result()
    n_shards = -(-len(expect) // 5)
    assert summary.n_records == len(expect) and summary.n_shards == n_shards
    assert summary.n_failed == sum(e.outcome == "error" for e in expect.values())

    plain = ingest("wfdb", root, tmp_path / "plain", chunk_size=5)
    assert (summary.n_ok, summary.failed_by_code, summary.warnings_by_code) == (plain.n_ok, plain.failed_by_code, plain.warnings_by_code)
    for rel in ("manifest.parquet", "errors/ingest.parquet"):
        assert pl.read_parquet(tmp_path / "flow" / rel).equals(pl.read_parquet(tmp_path / "plain" / rel)), rel

    # One task run per chunk of ids, never one per record.
    runs = asyncio.run(_task_runs(state.state_details.flow_run_id))
    assert len(runs) == n_shards and all(r.name.startswith("ingest-chunk") for r in runs)
    assert all(r.state.is_completed() for r in runs)
