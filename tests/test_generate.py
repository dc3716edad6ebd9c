"""The generate stage end to end: rules backend through the store, validator feedback loop, the CLI against
the fake server (no key leaks), and a SIGKILL mid-run that must neither lose nor re-buy an answer."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from fake_openai_server import FakeOpenAI
from pipeline.generate import ANSWERS_SCHEMA, generate_answers
from pipeline.llm import ResponseStore, RulesBackend

REPO = Path(__file__).resolve().parents[1]
CLI = str(REPO / ".venv/bin/ecg-grounding")
KEY = "sk-compat-SECRET-never-in-outputs-42"


@dataclass
class Verdict:
    accepted: bool
    reasons: list[str] = field(default_factory=list)
    feedback: str = ""


def _prompts(n: int) -> pl.DataFrame:
    return pl.DataFrame({"record_id": [f"rec{i:03d}" for i in range(n)], "system": ["You read ECGs."] * n,
                         "user": [f"ECG {i}: QRS {80 + i} ms, PR 160 ms" for i in range(n)]})


def _writer(ctx: dict, seed: int) -> str:
    return f"QRS duration {ctx['qrs_ms']} ms (draft {seed})."


def test_rules_backend_goes_through_the_store_with_honest_provenance(tmp_path):
    contexts = {f"rec{i:03d}": {"qrs_ms": 80 + i} for i in range(3)}
    summary = generate_answers(_prompts(3), RulesBackend(_writer, version="t-1"), tmp_path / "responses", tmp_path,
                               contexts=contexts, max_attempts=1)
    df = pl.read_parquet(tmp_path / "answers.parquet")
    assert df.schema == pl.Schema(ANSWERS_SCHEMA)
    assert df["answer"].to_list() == ["QRS duration 80 ms (draft 0).", "QRS duration 81 ms (draft 0).",
                                      "QRS duration 82 ms (draft 0)."]
    assert set(df["model"]) == {"rules/t-1"} and set(df["provider_model"]) == {"rules/t-1"}
    assert set(df["backend"]) == {"rules"} and df["cost_usd"].to_list() == [0.0] * 3
    assert summary.n_ok == 3 and summary.cost_usd_new == 0
    with ResponseStore(tmp_path / "responses") as store:
        assert store.ok_keys() == set(df["request_key"])
    # no context -> explained failure, not a crash
    generate_answers(_prompts(4), RulesBackend(_writer, version="t-1"), tmp_path / "responses", tmp_path,
                     contexts=contexts, max_attempts=1)
    last = pl.read_parquet(tmp_path / "answers.parquet").filter(pl.col("record_id") == "rec003")
    assert last["status"].to_list() == ["failed"] and last["error_code"].to_list() == ["no_context"]


def test_rejected_answers_are_regenerated_with_feedback_up_to_max_attempts(tmp_path):
    contexts = {"rec000": {"qrs_ms": 80}, "rec001": {"qrs_ms": 81}, "rec002": {"qrs_ms": 82}}
    seen: list[tuple[str, str]] = []

    def validator(answer: str, ctx: dict) -> Verdict:
        seen.append((answer, json.dumps(ctx)))
        if ctx["qrs_ms"] == 82:
            return Verdict(False, ["numeric_mismatch"], "QRS is wrong")          # never good enough
        return Verdict("draft 0" not in answer or ctx["qrs_ms"] == 80, ["too_vague"], "be specific")

    summary = generate_answers(_prompts(3), RulesBackend(_writer, version="t-1"), tmp_path / "responses", tmp_path,
                               contexts=contexts, max_attempts=3, validator=validator)
    df = pl.read_parquet(tmp_path / "answers.parquet")
    attempts = df.group_by("record_id").agg(pl.col("attempt").max()).sort("record_id")["attempt"].to_list()
    assert attempts == [1, 2, 3]
    r1 = df.filter(pl.col("record_id") == "rec001").sort("attempt")
    assert r1["accepted"].to_list() == [False, True] and r1["answer"][1] == "QRS duration 81 ms (draft 1)."
    assert json.loads(r1["validation_reasons"][0]) == ["too_vague"]
    assert df["request_key"].n_unique() == df.height                       # every attempt is its own request
    assert summary.n_accepted == 2 and summary.n_rejected == 1 and summary.n_requests == 6
    # a rerun re-validates but sends nothing new: every attempt is answered from the store
    summary2 = generate_answers(_prompts(3), RulesBackend(_writer, version="t-1"), tmp_path / "responses", tmp_path,
                                contexts=contexts, max_attempts=3, validator=validator)
    assert summary2.n_reused == 6


def _write_prompts(tmp_path: Path, n: int) -> Path:
    p = tmp_path / "prompts" / "prompts.parquet"
    p.parent.mkdir(parents=True)
    _prompts(n).write_parquet(p)
    return p


def _cmd(prompts: Path, out: Path, fake: FakeOpenAI, *extra: str, cli: bool = False) -> list[str]:
    # the real console script once; elsewhere the same parser without importing every other stage
    head = [CLI, "generate"] if cli else [str(REPO / ".venv/bin/python"), "-m", "pipeline.generate"]
    return [*head, "--prompts", str(prompts.parent), "--out", str(out), "--llm",
            "openai-compatible:qwen2.5-7b-instruct", "--base-url", fake.base_url, "--no-validate", "--no-context",
            "--max-attempts", "1", "--json", *extra]


def test_cli_against_fake_server_never_writes_or_logs_the_key(tmp_path):
    fake = FakeOpenAI(served_model="Qwen/Qwen2.5-7B-Instruct").start()
    fake.script("429", "500", "401")
    try:
        prompts = _write_prompts(tmp_path, 5)
        out = tmp_path / "out"
        env = {**os.environ, "ECG_LLM_API_KEY": KEY}
        proc = subprocess.run(_cmd(prompts, out, fake, "--concurrency", "1", "-v", "--timeout", "5", cli=True), env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1  # one record failed (401): explained, and the exit code says so
        assert all(e.authorization == f"Bearer {KEY}" for e in fake.chat_log())
        assert KEY not in proc.stdout and KEY not in proc.stderr
        files = [f for f in out.rglob("*") if f.is_file()]
        assert {f.name for f in files} >= {"answers.parquet", "responses.sqlite", "generate_summary.json"}
        for f in files:
            assert KEY.encode() not in f.read_bytes(), f
        df = pl.read_parquet(out / "answers.parquet")
        assert sorted(df["status"].to_list()) == ["failed", "ok", "ok", "ok", "ok"]
        bad = df.filter(pl.col("status") == "failed")
        assert bad["error_code"].to_list() == ["auth_error"] and "***" in bad["error_message"][0]
        assert set(df.filter(pl.col("status") == "ok")["provider_model"]) == {"Qwen/Qwen2.5-7B-Instruct"}
        summary = json.loads(proc.stdout)
        assert summary["n_ok"] == 4 and summary["cost_usd_new"] == 0.0 and summary["n_http_sends"] == 7
    finally:
        fake.stop()


def test_sigkill_mid_run_loses_nothing_and_pays_nothing_twice(tmp_path):
    fake = FakeOpenAI(latency_s=1.0).start()
    try:
        n = 24
        prompts = _write_prompts(tmp_path, n)
        out = tmp_path / "out"
        cmd = _cmd(prompts, out, fake, "--concurrency", "4")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        # kill once some answers are stored and others are on the wire
        while len(fake.chat_log()) < 9:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        with ResponseStore(out / "responses") as store:
            stored_before = store.ok_keys()
            lost = set(store.lost_intents())
        sent_before = len(fake.chat_log())
        assert 4 <= len(stored_before) < n and lost  # killed mid-run, with requests in flight
        assert not (out / "answers.parquet").exists()

        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        resent = [e.client_request_id for e in fake.chat_log()[sent_before:]]
        # nothing whose answer was stored was sent again; only the in-flight ones were re-sent
        assert not {k for k in resent if k} & {k[:64] for k in stored_before}
        counts = fake.counts()
        assert {k for k, c in counts.items() if c > 1} <= {k[:64] for k in lost}
        with ResponseStore(out / "responses") as store:
            oks = [r.request_key for r in store.responses() if r.ok]
        assert len(oks) == len(set(oks)) == n                     # exactly one stored success per request
        df = pl.read_parquet(out / "answers.parquet")
        assert df.height == n and (df["status"] == "ok").all()
        assert json.loads(done.stdout)["lost_intents_before"] == len(lost)
        assert json.loads(done.stdout)["n_reused"] == len(stored_before)
    finally:
        fake.stop()


def test_generate_answers_can_be_called_from_async_code(tmp_path):
    import asyncio

    async def flow_body():
        return generate_answers(_prompts(2), RulesBackend(_writer, version="t-1"), tmp_path / "responses", tmp_path,
                                contexts={"rec000": {"qrs_ms": 80}, "rec001": {"qrs_ms": 81}}, max_attempts=1)

    assert asyncio.run(flow_body()).n_ok == 2


def test_api_key_from_a_prefect_secret_block(prefect_harness, tmp_path):
    from prefect.blocks.system import Secret

    from pipeline.llm.providers import resolve_api_key

    Secret(value=KEY).save("ecg-llm-test-key", overwrite=True)
    assert resolve_api_key("openai-compatible", "ecg-llm-test-key") == KEY
    fake = FakeOpenAI().start()
    try:
        prompts = _write_prompts(tmp_path, 1)
        from prefect.settings import PREFECT_API_URL

        env = {k: v for k, v in os.environ.items() if k != "ECG_LLM_API_KEY"}
        env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())  # the harness's temporary server
        proc = subprocess.run(_cmd(prompts, tmp_path / "out", fake, "--api-key-secret", "ecg-llm-test-key"),
                              env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert [e.authorization for e in fake.chat_log()] == [f"Bearer {KEY}"]
    finally:
        fake.stop()


def test_real_validator_feedback_loop_on_real_contexts(tmp_path):
    """Synthetic ECGs -> real measurements -> GroundingContext; the LLM's first answer invents numbers, the
    real validator rejects it, its feedback goes into the second request, the grounded rewrite is accepted."""
    from features import measure_record
    from pipeline.context import build_context
    from pipeline.sources import open_source
    from pipeline.synthetic import write_synthetic_tree
    from pipeline.validate import validate_answer
    from pipeline.writer import write_answer

    root = write_synthetic_tree(tmp_path / "syn", 2, 0)
    src = open_source("synthetic", root)
    contexts = {}
    for rid in src.ids():
        rec = src.read(rid)
        beats, row = measure_record(rec)
        contexts[rid] = build_context(rec.meta, row, beats)
    invented = "Sinus rhythm at 140 bpm. The QRS duration is 190 ms in lead II, PR interval 300 ms, QTc 520 ms."
    fake = FakeOpenAI(served_model="Qwen/Qwen2.5-72B-Instruct").start()
    try:
        for rid, ctx in contexts.items():
            fake.answers_for(f"[record {rid}]", invented, write_answer(ctx, 0))
        prompts = pl.DataFrame({"record_id": list(contexts), "variant": ["text"] * 2,
                                "system": [f"You read ECGs. [record {rid}]" for rid in contexts],
                                "user": ["Interpret this ECG."] * 2})
        from pipeline.llm import BackendSpec, make_backend
        backend = make_backend(BackendSpec.parse("openai-compatible:qwen", fake.base_url), api_key=None)
        summary = generate_answers(prompts, backend, tmp_path / "responses", tmp_path, max_attempts=3,
                                   validator=validate_answer, contexts=contexts)
        df = pl.read_parquet(tmp_path / "answers.parquet").sort("record_id", "attempt")
        assert df["attempt"].to_list() == [1, 2, 1, 2] and df["accepted"].to_list() == [False, True, False, True]
        assert all("ungrounded_number" in json.loads(r) for r in df.filter(pl.col("attempt") == 1)["validation_reasons"])
        second = [e.body["messages"] for e in fake.chat_log() if len(e.body["messages"]) == 4]
        assert len(second) == 2
        assert all(m[2] == {"role": "assistant", "content": invented} for m in second)
        assert all("190 ms" in m[3]["content"] and "ungrounded_number" in m[3]["content"] for m in second)
        assert summary.n_accepted == 2 and summary.n_rejected == 0 and len(fake.chat_log()) == 4
    finally:
        fake.stop()


def test_two_runs_on_one_store_buy_each_answer_once(tmp_path):
    """A second run started while the first is sending waits for the first one's answers (claims in the
    store) instead of buying the same requests again."""
    fake = FakeOpenAI(latency_s=1.0).start()
    try:
        n = 16
        prompts = _write_prompts(tmp_path, n)
        out = tmp_path / "out"
        cmd = _cmd(prompts, out, fake, "--concurrency", "4")
        first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not fake.chat_log():
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        second = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        outs = [p.communicate(timeout=120) for p in (first, second)]
        assert [first.returncode, second.returncode] == [0, 0], outs
        # the second run joined while answers were still on the wire (4 s of work, it started after 1 request)
        assert len(fake.chat_log()) == n and set(fake.counts().values()) == {1}
        summaries = [json.loads(o) for o, _ in outs]
        assert sum(s["n_http_sends"] for s in summaries) == n and all(s["n_ok"] == n for s in summaries)
        with ResponseStore(out / "responses") as store:
            oks = [r.request_key for r in store.responses() if r.ok]
        assert len(oks) == len(set(oks)) == n
    finally:
        fake.stop()


def test_cli_configuration_errors_are_clear(tmp_path):
    prompts = _write_prompts(tmp_path, 1)
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    py = [str(REPO / ".venv/bin/python"), "-m", "pipeline.generate", "--prompts", str(prompts), "--out", str(tmp_path)]
    for extra, msg in ((["--llm", "openai:gpt-4o-2024-08-06"], "OPENAI_API_KEY is not set"),
                       (["--llm", "openai-compatible:qwen"], "needs --base-url"),
                       (["--llm", "claude:opus"], "bad --llm"),
                       (["--llm", "deepseek:deepseek-chat", "--batch"], "Batch API")):
        e = {**env, "DEEPSEEK_API_KEY": "sk-ds"} if "deepseek" in extra[1] else env
        proc = subprocess.run(py + extra, env=e, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and msg in proc.stderr, (extra, proc.stdout, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
