"""Nothing paid twice (issue 11, "Money"): real ``generate`` subprocesses, real SIGKILLs, the real
fault-injecting HTTP server on 127.0.0.1, a real run folder (synthetic ECGs → features → prompts) and the
real validator, whose rejections make follow-up attempts. Requests are counted at the server, by prompt and
attempt."""
from __future__ import annotations

import json
import random
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pytest

from fake_openai_server import FakeOpenAI
from llm_run import answers_by_prompt, make_run_folder
from pipeline.generate import generate_answers
from pipeline.llm import BackendSpec, ResponseStore, RetryPolicy, make_backend

REPO = Path(__file__).resolve().parents[1]
PY = str(REPO / ".venv/bin/python")


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    return make_run_folder(tmp_path_factory.mktemp("reliab"), 6, seed=21)


def _cmd(run: Path, out: Path, fake: FakeOpenAI) -> list[str]:
    return [PY, "-m", "pipeline.generate", "--prompts", str(run / "prompts"), "--out", str(out), "--llm",
            "openai-compatible:qwen2.5-7b-instruct", "--base-url", fake.base_url, "--max-attempts", "3",
            "--concurrency", "4", "--json"]


def _answered_at_server(fake: FakeOpenAI, ok_keys: set[str], upto: int) -> set[tuple[str, int]]:
    """(prompt, attempt) pairs whose stored answer came from one of the first ``upto`` chat requests."""
    short = {k[:64] for k in ok_keys}
    return {(e.prompt_id, e.attempt) for e in fake.chat_log()[:upto] if e.client_request_id in short}


def test_five_sigkills_then_a_plain_rerun_buys_no_stored_attempt(run_folder, tmp_path):
    rng = random.Random(19)
    fake = FakeOpenAI(latency_s=0.2, retry_after_s=0.1, attempt_answers=answers_by_prompt(run_folder)).start()
    # a flaky server: about one request in three fails in some transient way (every kind the client retries),
    # never more than two in a row (so the bounded retries always get through in the end)
    script, streak = [], 0
    for _ in range(400):
        bad = streak < 2 and rng.random() < 0.35
        streak = streak + 1 if bad else 0
        script.append(rng.choice(["429", "500", "503ra", "drop", "truncated", "empty"]) if bad else "ok")
    fake.script(*script)
    out = tmp_path / "gen"
    cmd = _cmd(run_folder, out, fake)
    try:
        for cycle in range(5):
            before = len(fake.chat_log())
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            target = before + rng.randint(2, 7)
            deadline = time.monotonic() + 120
            while len(fake.chat_log()) < target and proc.poll() is None:
                assert time.monotonic() < deadline, f"cycle {cycle}: no progress"
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.3))   # sometimes mid-request, sometimes between
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        with ResponseStore(out / "responses") as store:
            stored_ok = store.ok_keys()
        sent_before = len(fake.chat_log())
        answered = _answered_at_server(fake, stored_ok, sent_before)
        assert len(stored_ok) >= 5 and answered  # the kills left answers of several prompts and attempts

        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert done.returncode in (0, 1), done.stderr
        summary = json.loads(done.stdout)
        after = fake.chat_log()[sent_before:]
        # counted at the server: 0 requests for any (prompt, attempt) whose answer was stored, 0 resends of a key
        assert {(e.prompt_id, e.attempt) for e in after} & answered == set()
        assert {e.client_request_id for e in after} & {k[:64] for k in stored_ok} == set()
        assert summary["n_reused"] >= len(answered)
        df = pl.read_parquet(out / "answers.parquet")
        assert df["record_id"].n_unique() == 6 and (df.group_by("record_id").agg(pl.col("status").last())
                                                    ["status"] == "ok").all()
        # a follow-up was needed (the first answers invent numbers) and its request was re-issued, not rebuilt
        assert (df["attempt"] >= 2).any()

        # and a second plain re-run sends nothing at all
        sent = len(fake.chat_log())
        again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert len(fake.chat_log()) == sent and json.loads(again.stdout)["n_http_sends"] == 0
        assert again.returncode == done.returncode
    finally:
        fake.stop()


@dataclass
class _Verdict:
    accepted: bool
    reasons: list[str] = field(default_factory=list)
    feedback: str = ""


def _drifting_validator(answer: str, ctx: dict) -> _Verdict:
    """Rejects every first answer with a feedback text that differs on every call (the failure mode of a
    validator whose tie-breaking is not deterministic)."""
    if "[ok]" in answer:
        return _Verdict(True)
    return _Verdict(False, ["ungrounded_number"], f"closest measurement: {uuid.uuid4().hex}")


def test_a_resumed_run_reissues_stored_followups_even_when_feedback_drifts(tmp_path):
    fake = FakeOpenAI().start()
    try:
        n = 4
        prompts = pl.DataFrame({"record_id": [f"r{i}" for i in range(n)], "system": ["You read ECGs."] * n,
                                "user": [f"ECG {i}" for i in range(n)]})
        from fake_openai_server import prompt_identity

        ids = {prompt_identity({"messages": [{"role": "system", "content": "You read ECGs."},
                                             {"role": "user", "content": f"ECG {i}"}]})[0] for i in range(n)}
        fake.attempt_answers = {pid: ["first draft", "second draft", "third [ok]"] for pid in ids}

        def go():
            backend = make_backend(BackendSpec.parse("openai-compatible:m", fake.base_url), api_key=None)
            return generate_answers(prompts, backend, tmp_path / "responses", tmp_path, concurrency=2,
                                    max_attempts=3, validator=_drifting_validator,
                                    contexts={f"r{i}": {} for i in range(n)},
                                    retry=RetryPolicy(4, 0.01, 0.02))

        first = go()
        assert first.n_accepted == n and len(fake.chat_log()) == 3 * n
        assert set(fake.attempt_counts().values()) == {1}
        second = go()  # the feedback texts come out different now: the stored follow-ups are re-issued
        assert second.n_http_sends == 0 and second.n_reused == 3 * n and len(fake.chat_log()) == 3 * n
        df = pl.read_parquet(tmp_path / "answers.parquet")
        assert df.height == 3 * n and df.filter(pl.col("attempt") == 3)["accepted"].all()
    finally:
        fake.stop()
