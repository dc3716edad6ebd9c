"""The chain as a Prefect flow on a real (test) Prefect server: Dask workers, artifacts, Cached on resume,
the failure threshold, pre-flight, the paid flow's required root. The CLI and SIGKILL tests against a
`prefect server` subprocess are in test_flow_server.py."""
from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.run_all import RunConfig, run_pipeline

CACHED_STAGES = ("synth", "ingest", "features", "render", "prompts", "generate")


async def _runs_and_artifacts(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                                           limit=200)
        arts = await client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return runs, arts


def task_runs_and_artifacts(state):
    return asyncio.run(_runs_and_artifacts(state.state_details.flow_run_id))


def test_flow_on_two_dask_workers_matches_the_cli_publishes_artifacts_and_resumes_cached(prefect_harness, tmp_path):
    from flows.grounding import grounding_flow

    out = tmp_path / "flow"
    state = grounding_flow(out=str(out), n=12, seed=3, chunk_size=5, workers=2, return_state=True)
    assert state.is_completed() and state.name == "Completed", state.message
    summary = state.result()
    assert summary["records_listed"] == 12 and summary["records_failed"] == 0
    assert summary["records"] == 12 and summary["acceptance_rate"] >= 0.9, summary
    assert summary["patients_in_both"] == 0
    report = json.loads((out / "run.json").read_text())
    # the chunks ran in two Dask worker processes, not in this one
    worker_pids = set(report["peak_rss_mb_by_process"])
    assert len(worker_pids) == 2 and str(os.getpid()) not in worker_pids, worker_pids
    items = [json.loads(p.read_text()) for p in sorted((out / "instructions").glob("*-0*.json"))]
    assert sum(len(i) for i in items) == summary["records_accepted"]
    assert len(list((out / "features" / "records").glob("part-*.parquet"))) == 3  # 12 ids in chunks of 5
    assert pl.read_parquet(out / "images" / "manifest.parquet").height == 12
    assert not (out / "run.lock").exists()

    runs, arts = task_runs_and_artifacts(state)
    by_name: dict[str, list] = {}
    for r in runs:
        by_name.setdefault(r.name.rsplit("-", 1)[0], []).append(r)
    for stage in ("ingest", "features", "render", "prompts", "generate", "validate"):
        assert len(by_name[stage]) == 3, (stage, sorted(by_name))  # one task run per chunk, never per record
    assert len(by_name["synth"]) == 3
    kinds = {a.key: a.type for a in arts}
    # (Prefect stores a link artifact as markdown: "[text](url)")
    assert kinds == {"ecg-grounding-flow-quality": "markdown", "ecg-grounding-flow-failures": "table",
                     "ecg-grounding-flow-diagnoses": "table", "ecg-grounding-flow-card": "markdown"}, kinds
    quality = next(a for a in arts if a.key.endswith("quality")).data
    assert f"{summary['records_accepted']} of 12 records" in quality
    diagnoses = json.loads(next(a for a in arts if a.key.endswith("diagnoses")).data)
    assert sum(d["records"] for d in diagnoses) >= 12 and all(0 <= d["acceptance_rate"] <= 1 for d in diagnoses)
    link = next(a for a in arts if a.key.endswith("card")).data
    assert link.startswith("[dataset card](file://") and link.endswith("/instructions/card.html)"), link
    assert str(out.resolve()) in link

    # the plain chain on the same inputs writes the same measurements and the same answers
    plain = tmp_path / "plain"
    run_pipeline(RunConfig(out=plain, n=12, seed=3, chunk_size=5))
    for rel in ("manifest.parquet", "features/records/part-00000.parquet", "images/manifest.parquet",
                "prompts/prompts.parquet", "instructions/provenance.parquet"):
        flow_t, plain_t = (pl.read_parquet(d / rel).drop("source_root", strict=False) for d in (out, plain))
        assert flow_t.equals(plain_t), rel
    flow_answers = pl.read_parquet(out / "generate" / "answers.parquet")
    plain_answers = pl.read_parquet(plain / "generate" / "answers.parquet")
    assert flow_answers["answer"].to_list() == plain_answers["answer"].to_list()
    for name in ("train-00000.json", "test-00000.json"):
        assert (out / "instructions" / name).read_text() == (plain / "instructions" / name).read_text()

    # a second run resumes: every chunk of the stages that keep their parts is Cached, validation runs again
    again = grounding_flow(out=str(out), n=12, seed=3, chunk_size=5, workers=2, return_state=True)
    assert again.is_completed() and again.result()["records_accepted"] == summary["records_accepted"]
    runs, _ = task_runs_and_artifacts(again)
    states = {}
    for r in runs:
        states.setdefault(r.name.rsplit("-", 1)[0], set()).add(r.state.name)
    for stage in CACHED_STAGES:
        assert states[stage] == {"Cached"}, (stage, states[stage])
    assert states["validate"] == {"Completed"}
    assert json.loads((out / "run.json").read_text())["chunks"]["features"]["computed"] == 0

    # a lost shard is redone (and what depends on it), the rest stays Cached
    (out / "features" / "records" / "part-00001.parquet").unlink()
    third = grounding_flow(out=str(out), n=12, seed=3, chunk_size=5, workers=2, return_state=True)
    assert third.is_completed()
    runs, _ = task_runs_and_artifacts(third)
    redone = sorted(r.name for r in runs if r.state.name == "Completed" and not r.name.startswith("validate")
                    and "finish" not in r.name)
    assert redone == ["features-00001", "generate-00001", "prompts-00001"], redone


def _break_records(root: Path, n_bad: int) -> list[str]:
    """Cut the signal files of the first ``n_bad`` records to a few bytes (a truncated download)."""
    db = pl.read_csv(root / "synthetic_database.csv")
    bad = db["record_id"].to_list()[:n_bad]
    for rid in bad:
        dat = root / "records500" / f"{rid}.dat"
        dat.write_bytes(dat.read_bytes()[:10])
    return bad


@pytest.fixture(scope="module")
def half_broken_root(tmp_path_factory):
    from pipeline.synthetic import write_synthetic_tree

    root = tmp_path_factory.mktemp("half-broken") / "data"
    write_synthetic_tree(root, 4, seed=11)
    _break_records(root, 2)
    return root


def test_flow_fails_past_the_failure_threshold_or_warns_when_asked(prefect_harness, tmp_path, half_broken_root):
    """2 of 4 records fail ingest: the flow does not end Completed with acceptance 1.0 any more."""
    from flows.grounding import grounding_flow

    common = dict(source="synthetic", root=str(half_broken_root), chunk_size=2, task_runner="threads")
    state = grounding_flow(out=str(tmp_path / "fail"), return_state=True, **common)
    assert state.is_failed()
    assert "2 of 4 records failed (50.0% > 5.0%)" in state.message and "ingest/" in state.message, state.message
    report = json.loads((tmp_path / "fail" / "run.json").read_text())
    assert report["failures"]["records_failed"] == 2 and report["records_accepted"] == 2
    _, arts = task_runs_and_artifacts(state)
    failures = json.loads(next(a for a in arts if a.key.endswith("failures")).data)
    assert sum(r["records"] for r in failures if r["stage"] == "ingest") == 2, failures

    warned = grounding_flow(out=str(tmp_path / "warn"), on_failure_rate="warn", return_state=True, **common)
    assert warned.is_completed() and warned.name == "CompletedWithWarnings", warned
    assert warned.result()["records_failed"] == 2 and "2 of 4 records failed" in warned.message

    tolerant = grounding_flow(out=str(tmp_path / "tolerant"), max_failure_rate=0.5, return_state=True, **common)
    assert tolerant.is_completed() and tolerant.name == "Completed"


def test_cli_run_exits_1_and_names_the_failures(tmp_path, half_broken_root, capsys):
    from pipeline.cli import main

    assert main(["run", "--source", "synthetic", "--root", str(half_broken_root), "--out", str(tmp_path / "r"),
                 "--chunk-size", "2"]) == 1
    printed = capsys.readouterr().err  # the failures go to stderr (stdout may be --json)
    assert "2 records failed" in printed and "by reason code" in printed and "ingest" in printed, printed


def test_preflight_refuses_before_any_stage(prefect_harness, tmp_path, monkeypatch):
    from prefect.blocks.system import Secret

    from flows.grounding import grounding_flow, llm_flow
    from pipeline.record import ConfigError
    from pipeline.run_all import preflight

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cases = [
        (dict(llm="openai:gpt-4o"), "OPENAI_API_KEY"),
        (dict(llm="opnai:gpt-4o"), "bad --llm"),
        (dict(llm="openai:gpt-4o", api_key_secret="no-such-block"), "Secret block 'no-such-block'"),
        (dict(source="ptbxl"), "--root is required"),
        (dict(source="ptbxl", root=str(tmp_path / "nowhere")), "does not exist"),
        (dict(chunk_size=0), "--chunk-size"),
        (dict(on_failure_rate="ignore"), "on_failure_rate"),
        (dict(task_runner="ray"), "task runner 'ray'"),
    ]
    for i, (kwargs, words) in enumerate(cases):
        out = tmp_path / f"out{i}"
        state = grounding_flow(out=str(out), task_runner=kwargs.pop("task_runner", "threads"), return_state=True,
                               **kwargs)
        assert state.is_failed() and state.message.startswith("pre-flight") and words in state.message, \
            (kwargs, state.message)
        assert not out.exists(), kwargs  # nothing ran, nothing was written

    # the paid flow has no default root: an empty one (an unset {{ $PTBXL_ROOT }}) is refused
    state = llm_flow(root="", out=str(tmp_path / "paid"), llm="openai:gpt-4o", return_state=True)
    assert state.is_failed() and "root is required" in state.message and not (tmp_path / "paid").exists()

    # a Secret block holding the key satisfies the check (its value is never printed or written)
    Secret(value="sk-test-not-a-key").save("test-openai-key", overwrite=True)
    preflight(RunConfig(llm="openai:gpt-4o", api_key_secret="test-openai-key", out=tmp_path / "ok"))
    with pytest.raises(ConfigError):
        preflight(RunConfig(llm="openai:gpt-4o", out=tmp_path / "ok"))


def test_nightly_deployment_writes_a_dated_folder_with_a_fresh_seed(prefect_harness, tmp_path):
    """``{date}`` and ``seed=None`` resolve from the scheduled day; the deployments come from prefect.yaml."""
    from datetime import datetime, timezone

    from flows.deployments import build_deployments, deployment_specs
    from flows.grounding import resolve_out

    assert resolve_out("/o/nightly/{date}", datetime(2026, 3, 9, 2, tzinfo=timezone.utc)) == "/o/nightly/2026-03-09"
    specs = {d["name"]: d for d in deployment_specs(env={"ECG_GROUNDING_OUT": "/data/out"})}
    assert set(specs) == {"nightly-synthetic", "ptbxl-gpt4o", "nightly-synthetic-docker", "ptbxl-gpt4o-docker"}
    nightly = specs["nightly-synthetic"]
    assert nightly["parameters"]["out"] == "/data/out/nightly-synthetic/{date}"
    assert nightly["parameters"]["seed"] is None and nightly["schedules"][0]["cron"] == "0 2 * * *"
    assert specs["ptbxl-gpt4o"]["entrypoint"] == "flows.grounding:llm_flow"
    assert "root" not in specs["ptbxl-gpt4o"]["parameters"]  # no guessed (relative) default: each run names it
    assert {d["work_pool"]["name"] for d in specs.values()} == {"ecg-process", "ecg-docker"}
    assert "git_clone" in json.dumps(yaml_pull_steps())

    deps = {d.name: d for d in build_deployments("/data/out")}
    assert set(deps) == {"nightly-synthetic", "ptbxl-gpt4o"}
    assert deps["nightly-synthetic"].schedules and not deps["ptbxl-gpt4o"].schedules
    assert "root" not in deps["ptbxl-gpt4o"].parameters
    assert "root" in deps["ptbxl-gpt4o"]._parameter_openapi_schema.required  # a run must name its root

    # a run of the nightly flow on its scheduled day: dated folder, the day as the seed
    from flows.grounding import grounding_flow

    state = grounding_flow(out=str(tmp_path / "nightly" / "{date}"), n=3, seed=None, task_runner="threads",
                           return_state=True)
    assert state.is_completed()
    folder = Path(state.result()["run_folder"])
    day = datetime.now(timezone.utc)
    assert folder.name in {day.strftime("%Y-%m-%d")} and folder.parent == tmp_path / "nightly"
    cfg = json.loads((folder / "run.json").read_text())["config"]
    assert cfg["seed"] == int(folder.name.replace("-", ""))


def yaml_pull_steps() -> list:
    import yaml

    return yaml.safe_load((Path(__file__).resolve().parents[1] / "prefect.yaml").read_text())["pull"]


def test_transient_errors_are_retried_and_bugs_are_not():
    import sqlite3

    import httpx

    from flows.grounding import is_transient
    from pipeline.record import ConfigError, RecordError

    assert is_transient(OSError(5, "Input/output error"))
    assert is_transient(ConnectionResetError())
    assert is_transient(TimeoutError())
    assert is_transient(sqlite3.OperationalError("database is locked"))
    assert is_transient(httpx.ConnectError("refused"))
    for bug in (ValueError("x"), KeyError("k"), TypeError("t"), ConfigError("bad"), FileNotFoundError("f"),
                PermissionError("p"), sqlite3.OperationalError("no such table: x"), RecordError("bad_header", "m"),
                ZeroDivisionError(), np.linalg.LinAlgError()):
        assert not is_transient(bug), bug
