"""OpenAI Batch API mode against the fake server: submit, poll, map back, partial / expired, resume after kill."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest

from fake_openai_server import FakeOpenAI
from pipeline.generate import generate_answers
from pipeline.llm import BackendSpec, BatchRequest, ResponseStore, make_backend, run_batches
from pipeline.llm.batch_api import jsonl_chunks

REPO = Path(__file__).resolve().parents[1]
SPEC = "openai:gpt-4o-2024-08-06"


@pytest.fixture
def fake():
    srv = FakeOpenAI(usage_tokens=(1000, 200)).start()
    yield srv
    srv.stop()


def _prompts(n: int) -> pl.DataFrame:
    return pl.DataFrame({"record_id": [f"rec{i:03d}" for i in range(n)], "system": ["You read ECGs."] * n,
                         "user": [f"ECG {i}: QRS {80 + i} ms" for i in range(n)]})


def _run(fake, tmp_path, n=6, **kw):
    backend = make_backend(BackendSpec.parse(SPEC, fake.base_url), api_key="sk-batch-test")
    summary = generate_answers(_prompts(n), backend, tmp_path / "responses", tmp_path, concurrency=4,
                               max_attempts=1, batch=True, batch_poll_s=0.02, **kw)
    return summary, pl.read_parquet(tmp_path / "answers.parquet")


def _paths(fake, prefix):
    return [e for e in fake.log if e.method == "POST" and e.path == prefix]


def test_batch_mode_answers_everything_at_half_price_and_never_resubmits(fake, tmp_path):
    summary, df = _run(fake, tmp_path)
    assert (df["status"] == "ok").all() and df.height == 6
    assert fake.chat_log() == []                                  # nothing went through the sync endpoint
    files, batches = _paths(fake, "/v1/files"), _paths(fake, "/v1/batches")
    assert len(files) == 1 and files[0].body == {"purpose": "batch", "lines": 6}
    assert batches[0].body["endpoint"] == "/v1/chat/completions" and batches[0].body["completion_window"] == "24h"
    # 1000 in x $2.50 + 200 out x $10 per M = $0.0045, halved
    assert df["cost_usd"].to_list() == pytest.approx([0.00225] * 6)
    assert summary.cost_usd_new == pytest.approx(0.0135) and summary.batch_ids == ["batch_0000"]
    with ResponseStore(tmp_path / "responses") as store:
        assert {r.batch_id for r in store.responses()} == {"batch_0000"}
        assert store.open_batches() == []
    summary2, df2 = _run(fake, tmp_path)
    assert len(_paths(fake, "/v1/batches")) == 1 and summary2.n_reused == 6 and summary2.cost_usd_new == 0
    assert df2["answer"].to_list() == df["answer"].to_list()


def test_jsonl_is_split_by_count_and_bytes(fake, tmp_path):
    reqs = [BatchRequest(f"k{i}", {"model": "m", "messages": [{"role": "user", "content": "x" * 100}]})
            for i in range(5)]
    assert [len(k) for k, _ in jsonl_chunks(reqs, max_requests=2)] == [2, 2, 1]
    one = len(jsonl_chunks(reqs[:1])[0][1])
    chunks = jsonl_chunks(reqs, max_bytes=one * 3)
    assert [len(k) for k, _ in chunks] == [3, 2] and all(len(b) <= one * 3 for _, b in chunks)
    assert [json.loads(x)["custom_id"] for x in chunks[1][1].decode().splitlines()] == ["k3", "k4"]
    import asyncio
    backend = make_backend(BackendSpec.parse(SPEC, fake.base_url), api_key="sk-x")
    with ResponseStore(tmp_path) as store:
        report = asyncio.run(run_batches(backend, store, reqs, poll_interval_s=0.01, max_requests=2))
        assert len(report.submitted) == 3 and store.ok_keys() == {f"k{i}" for i in range(5)}


@pytest.mark.parametrize("mode,done", [("partial", 4), ("expired", 3), ("failed", 0)])
def test_partial_expired_and_failed_batches_keep_what_finished(fake, tmp_path, mode, done):
    fake.batch_mode = mode
    summary, df = _run(fake, tmp_path)
    assert (df["status"] == "ok").sum() == done
    failed = df.filter(pl.col("status") == "failed")
    assert failed.height == 6 - done
    codes = set(failed["error_code"].to_list())
    assert codes == ({"server_error"} if mode == "partial" else {"batch_unfinished"} if done < 6 else set())
    fake.batch_mode = "complete"
    summary2, df2 = _run(fake, tmp_path)                          # a re-run submits only what is missing
    assert (df2["status"] == "ok").all() and summary2.n_reused == done
    assert _paths(fake, "/v1/files")[-1].body["lines"] == 6 - done


def test_killed_batch_run_resumes_polling_instead_of_resubmitting(fake, tmp_path):
    fake.batch_polls_until_done = 10**9                           # the batch never finishes while we watch
    pl_path = tmp_path / "prompts.parquet"
    _prompts(8).write_parquet(pl_path)
    out = tmp_path / "out"
    env = {**os.environ, "OPENAI_API_KEY": "sk-batch-kill-test"}
    cmd = [str(REPO / ".venv/bin/python"), "-m", "pipeline.generate", "--prompts", str(pl_path), "--out", str(out),
           "--llm", SPEC, "--base-url", fake.base_url, "--batch", "--batch-poll-s", "0.05", "--no-validate",
           "--no-context", "--max-attempts", "1", "--json"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not any(e.path.startswith("/v1/batches/") for e in fake.log):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    with ResponseStore(out / "responses") as store:
        assert [b for b, _ in store.open_batches()] == ["batch_0000"]
    fake.batch_polls_until_done = 0
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(_paths(fake, "/v1/batches")) == 1 and len(_paths(fake, "/v1/files")) == 1
    df = pl.read_parquet(out / "answers.parquet")
    assert df.height == 8 and (df["status"] == "ok").all()
    assert json.loads(done.stdout)["batch_ids"] == ["batch_0000"]


class _DiesAtBatchCreate(ResponseStore):
    """A real store whose process 'dies' right after the server created a batch, before its id is stored."""

    def add_batch(self, batch_id, input_file_id, request_keys):
        raise SystemExit("killed between batches.create and add_batch")


@pytest.mark.parametrize("created", [True, False])
def test_upload_left_without_a_recorded_batch_is_adopted_not_paid_twice(fake, tmp_path, created):
    import asyncio
    reqs = [BatchRequest(f"k{i}", {"model": "m", "messages": [{"role": "user", "content": f"ecg {i}"}]})
            for i in range(4)]
    backend = make_backend(BackendSpec.parse(SPEC, fake.base_url), api_key="sk-x")
    if created:
        with pytest.raises(SystemExit):
            asyncio.run(run_batches(backend, _DiesAtBatchCreate(tmp_path), reqs, poll_interval_s=0.01))
        assert len(_paths(fake, "/v1/batches")) == 1
    else:  # died after the upload, before the batch was created
        with ResponseStore(tmp_path) as store:
            store.add_upload("file-left-behind", [r.key for r in reqs])
        fake._files["file-left-behind"] = b"".join(
            (json.dumps({"custom_id": r.key, "method": "POST", "url": "/v1/chat/completions", "body": r.body})
             + "\n").encode() for r in reqs)
    backend = make_backend(BackendSpec.parse(SPEC, fake.base_url), api_key="sk-x")
    with ResponseStore(tmp_path) as store:
        report = asyncio.run(run_batches(backend, store, reqs, poll_interval_s=0.01))
        assert store.ok_keys() == {r.key for r in reqs} and store.orphan_uploads() == []
    assert len(_paths(fake, "/v1/batches")) == 1                 # one batch in all: nothing paid twice
    assert len(_paths(fake, "/v1/files")) == (1 if created else 0)
    assert (report.resumed if created else report.submitted) == ["batch_0000"]
