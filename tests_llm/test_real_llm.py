"""``generate`` and ``run`` through real small models served by llama-cpp-python on 127.0.0.1.

What is shown, each counted at the server (its access log): answers are stored; a re-run sends nothing;
garbage answers are rejected with the validator's reasons and regenerated with feedback; a think-wrapped
answer is validated without its thinking; the context window is learned from the server's first refusal and
the rest is refused without sending; Gemma's JSON answers (llama-cpp-python's ``json_object`` + schema)
are parsed and only their interpretation is kept. Budgets are small (a 135M / 270M model on a shared
2-core machine prefills ~20-150 tokens/s): short prompts and short answers except where the real prompts
are the point.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import polars as pl
import pytest

from llm_run import make_run_folder
from pipeline.llm import ResponseStore

REPO = Path(__file__).resolve().parents[1]
PY = str(REPO / ".venv/bin/python")
CLI = str(REPO / ".venv/bin/ecg-grounding")
SHORT_SYSTEM = ("You are a cardiologist. Write one paragraph interpreting the ECG, citing leads and measured "
                "values with units.")


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """Two synthetic records measured for real; full text/json prompts (budget 2,600: a json prompt is ~200 tokens
    longer than its text one, and both records need both; still far above the 1,024-token window test) and short
    ones."""
    run = make_run_folder(tmp_path_factory.mktemp("real"), 2, seed=3, variants=("text", "json"), budget=2600)
    full = pl.read_parquet(run / "prompts" / "prompts.parquet")
    assert full.height == 4, full.select("record_id", "variant", "prompt_tokens")  # every prompt fits the budget
    short = full.with_columns(system=pl.lit(SHORT_SYSTEM),
                              user=pl.concat_str(pl.lit("12-lead ECG "), pl.col("record_id"),
                                                 pl.lit(": sinus rhythm, heart rate 72 bpm, QRS 96 ms in lead II, "
                                                        "PR 160 ms. Interpret it.")),
                              prompt_tokens=pl.lit(64, pl.Int64))
    short.write_parquet(run / "prompts" / "short.parquet")   # under prompts/: contexts come from the run folder
    return run


def _generate(run: Path, served, out: Path, *extra: str, prompts: str = "short.parquet",
              model: str = "smollm2") -> tuple[int, dict, str]:
    proc = subprocess.run([PY, "-m", "pipeline.generate", "--prompts", str(run / "prompts" / prompts),
                           "--out", str(out), "--llm", f"openai-compatible:{model}", "--base-url", served.base_url,
                           "--temperature", "0", "--json", *extra], capture_output=True, text=True, timeout=1500)
    assert proc.stdout.strip(), proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def test_answers_are_stored_verdicts_given_and_a_rerun_sends_nothing(run_folder, smollm2, tmp_path):
    before = len(smollm2.chat_statuses())
    rc, s, err = _generate(run_folder, smollm2, tmp_path / "g", "--variant", "text", "--max-attempts", "1",
                           "--max-tokens", "160")
    sent = smollm2.chat_statuses()[before:]
    df = pl.read_parquet(tmp_path / "g" / "answers.parquet")
    assert df.height == 2 and (df["status"] == "ok").all()
    with ResponseStore(tmp_path / "g" / "responses") as store:
        assert store.ok_keys() == set(df["request_key"])                  # every answer stored
    assert s["server"]["kind"] == "llama-cpp-python" and s["server"]["served_model"] == "smollm2"
    assert df["accepted"].is_not_null().all()                              # each one judged
    # one send per stored answer (no timeouts at the adaptive pace); exit 1 when a prompt was not accepted
    assert len(sent) == s["n_http_sends"] == df.height and set(sent) == {200}
    assert rc == (0 if s["n_not_accepted"] == 0 else 1)
    assert s["decode_tokens_per_s"] and s["prefill_tokens_per_s"]

    rc2, s2, _ = _generate(run_folder, smollm2, tmp_path / "g", "--variant", "text", "--max-attempts", "1",
                           "--max-tokens", "160")
    assert len(smollm2.chat_statuses()) == before + len(sent)             # the server saw nothing new
    assert s2["n_http_sends"] == 0 and s2["n_reused"] == df.height and rc2 == rc


# The model, constrained to a claim about a lead that does not exist: garbage the real validator must refuse.
GARBAGE = r'''root ::= "Sinus rhythm. The QRS duration is " [1-9] [0-9] [0-9] " ms in lead V7."'''


def test_garbage_answers_are_rejected_with_reasons_and_regenerated_with_feedback(run_folder, smollm2, tmp_path):
    before = len(smollm2.chat_statuses())
    rc, s, err = _generate(run_folder, smollm2, tmp_path / "x", "--variant", "text", "--max-attempts", "2",
                           "--max-tokens", "40", "--extra-body", json.dumps({"grammar": GARBAGE}))
    df = pl.read_parquet(tmp_path / "x" / "answers.parquet")
    assert df.height == 4 and df["answer"].str.contains("lead V7").all()
    assert (df["accepted"] == False).all()  # noqa: E712
    assert all("lead_not_measured" in json.loads(r) for r in df["validation_reasons"])
    # the second attempt carried the validator's feedback (stored with its plan before it was sent)
    with ResponseStore(tmp_path / "x" / "responses") as store:
        chains = [c for (c,) in store._db.execute("SELECT DISTINCT chain FROM plans WHERE attempt=2")]
        feedback = [json.dumps(store.latest_plan(c, 2)[2]) for c in chains]
    assert len(chains) == 2 and all("lead_not_measured" in f and "V7" in f for f in feedback)
    assert rc == 1 and s["n_rejected"] == 2 and "without an accepted answer: 2" in err
    assert len(smollm2.chat_statuses()) - before == s["n_http_sends"] == 4


GRAMMAR = r'''root ::= "<think>" [a-z ]{4,40} "</think>" " " [A-Za-z0-9 ,]{8,60} "."'''


def test_a_think_wrapped_answer_is_validated_without_its_thinking(run_folder, smollm2, tmp_path):
    before = len(smollm2.chat_statuses())
    rc, s, _ = _generate(run_folder, smollm2, tmp_path / "t", "--variant", "text", "--max-attempts", "2",
                         "--max-tokens", "80", "--limit", "1", "--extra-body", json.dumps({"grammar": GRAMMAR}))
    df = pl.read_parquet(tmp_path / "t" / "answers.parquet").sort("attempt")
    first = df.row(0, named=True)
    assert first["answer_raw"].startswith("<think>") and first["reasoning_content"]
    assert "<think>" not in (first["answer"] or "") and "</think>" not in (first["answer"] or "")
    assert len(smollm2.chat_statuses()) - before == s["n_http_sends"] == df.height
    if df.height == 2:  # the follow-up carried the answer, never the thinking
        with ResponseStore(tmp_path / "t" / "responses") as store:
            plan = store.latest_plan(store._db.execute("SELECT chain FROM plans WHERE attempt=2").fetchone()[0], 2)
        turns = json.dumps(plan[2]["history"])
        assert first["reasoning_content"] not in turns


def test_the_context_window_is_learned_from_the_first_refusal(run_folder, smollm2_small, tmp_path):
    # the real prompts (~1,750-1,900 o200k tokens, ~2,100+ for SmolLM2's tokenizer) against a 1,024-token window
    rc, s, err = _generate(run_folder, smollm2_small, tmp_path / "c", "--variant", "text",
                           prompts="prompts.parquet")
    statuses = smollm2_small.chat_statuses()
    assert statuses == [400]                          # one refusal taught n_ctx; the other prompt was not sent
    assert s["server"]["context_window"] == 1024 and s["server"]["context_window_source"] == "refusal"
    assert s["n_refused_context"] == 2 and s["n_not_accepted"] == 2 and rc == 1
    assert "context window" in err and "hint" in err
    df = pl.read_parquet(tmp_path / "c" / "answers.parquet")
    assert set(df["status"]) == {"refused_context"}
    # a re-run neither sends nor re-learns
    rc2, s2, _ = _generate(run_folder, smollm2_small, tmp_path / "c", "--variant", "text",
                           prompts="prompts.parquet")
    assert smollm2_small.chat_statuses() == [400] and s2["n_http_sends"] == 0 and rc2 == 1


SMALL_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["interpretation", "diagnoses", "cited_leads"],
    "properties": {
        "interpretation": {"type": "string", "minLength": 20, "maxLength": 160},
        "diagnoses": {"type": "array", "maxItems": 2, "items": {"type": "string", "maxLength": 24}},
        "cited_leads": {"type": "array", "maxItems": 3, "items": {"type": "string", "enum": [
            "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]}}}}


def test_gemma_json_answers_use_the_servers_own_format_and_only_the_interpretation_is_kept(run_folder, gemma3,
                                                                                          tmp_path):
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SMALL_SCHEMA))
    rc, s, err = _generate(run_folder, gemma3, tmp_path / "j", "--variant", "json", "--max-attempts", "1",
                           "--max-tokens", "200", "--json-schema", str(schema), model="gemma3-270m")
    assert gemma3.chat_statuses() == [200, 200]       # json_object + schema: no 500, no fallback
    assert s["format_fallbacks"] == [] and s["server"]["kind"] == "llama-cpp-python"
    df = pl.read_parquet(tmp_path / "j" / "answers.parquet")
    for r in df.iter_rows(named=True):
        doc = json.loads(r["answer_raw"])
        assert r["answer"] == doc["interpretation"].strip() and not r["answer"].startswith("{")


def test_run_through_the_served_model_and_a_rerun_sends_nothing(smollm2, tmp_path):
    out = tmp_path / "run"
    cmd = [CLI, "run", "--source", "synthetic", "--n", "2", "--seed", "4", "--out", str(out), "--budget", "2200",
           "--llm", "openai-compatible:smollm2", "--base-url", smollm2.base_url, "--max-attempts", "1",
           "--max-tokens", "32", "--concurrency", "4"]
    before = len(smollm2.chat_statuses())
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=2400)
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    sent = smollm2.chat_statuses()[before:]
    df = pl.read_parquet(out / "generate" / "answers.parquet")
    assert df.height == 2 and (df["status"] == "ok").all() and sent == [200, 200]
    assert json.loads((out / "instructions" / "summary.json").read_text())["records"] == 2
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert again.returncode == proc.returncode
    assert len(smollm2.chat_statuses()) == before + 2              # the re-run sent nothing
