"""One real Prefect run of the whole chain: chunk tasks, the same outputs as `ecg-grounding run`, resumable."""
from __future__ import annotations

import json

import polars as pl

from pipeline.run_all import RunConfig, run_pipeline


def test_grounding_flow_runs_the_chain_in_chunks_and_resumes(prefect_harness, tmp_path):
    from flows.grounding import grounding_flow

    out = tmp_path / "flow"
    state = grounding_flow(out=str(out), n=12, seed=3, chunk_size=5, return_state=True)
    assert state.is_completed()
    summary = state.result()
    assert summary["records"] == 12 and summary["acceptance_rate"] >= 0.9, summary
    assert summary["patients_in_both"] == 0
    items = [json.loads(p.read_text()) for p in sorted((out / "instructions").glob("*-0*.json"))]
    assert sum(len(i) for i in items) == summary["records_accepted"]
    assert len(list((out / "features" / "records").glob("part-*.parquet"))) == 3  # 12 ids in chunks of 5
    assert pl.read_parquet(out / "images" / "manifest.parquet").height == 12

    # the plain chain on the same inputs writes the same measurements and the same answers
    plain = tmp_path / "plain"
    run_pipeline(RunConfig(out=plain, n=12, seed=3, chunk_size=5))
    for rel in ("manifest.parquet", "features/records/part-00000.parquet"):
        flow_t, plain_t = (pl.read_parquet(d / rel).drop("source_root", strict=False) for d in (out, plain))
        assert flow_t.equals(plain_t), rel
    flow_answers = pl.read_parquet(out / "generate" / "answers.parquet").sort("record_id", "attempt")
    plain_answers = pl.read_parquet(plain / "generate" / "answers.parquet").sort("record_id", "attempt")
    assert flow_answers["answer"].to_list() == plain_answers["answer"].to_list()

    # a second run resumes: every answer comes from the store, nothing is regenerated
    again = grounding_flow(out=str(out), n=12, seed=3, chunk_size=5, return_state=True)
    assert again.is_completed() and again.result()["records_accepted"] == summary["records_accepted"]
    reused = pl.read_parquet(out / "generate" / "answers.parquet")["reused"]
    assert reused.all()


def test_deployments_are_buildable():
    from flows.deployments import build_deployments

    deps = {d.name: d for d in build_deployments("/data/out")}
    assert set(deps) == {"nightly-synthetic", "ptbxl-gpt4o"}
    assert deps["nightly-synthetic"].parameters["llm"] == "rules"
    assert deps["ptbxl-gpt4o"].parameters["max_cost"] == 50.0
    assert deps["nightly-synthetic"].schedules and deps["ptbxl-gpt4o"].schedules in (None, [])
