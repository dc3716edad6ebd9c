"""GEM's judge, fixed: parsing both key spellings and the answers judges really write, GEM's normalisation on
fixed judge outputs, and the whole path through the real HTTP test server with injected faults, the durable
response store (a judgement is never bought twice) and explained per-record failures."""
from __future__ import annotations

import json
import os
import subprocess

import polars as pl
import pytest

from conftest import REPO
from fake_openai_server import FakeOpenAI
from gem_model.evaluate import read_items
from gem_model.judge import (CRITERIA, JudgeParseError, eval_arithmetic, normalise, parse_judgement,
                             three_score_average)

CLI = str(REPO / ".venv" / "bin" / "ecg-grounding")


def _items(spelling: str = "prompt", **over) -> dict:
    """A judge answer: GEM's prompt spellings or its notebook's (table) spellings for the two renamed keys."""
    grounded, fidelity = (("GroundedECGUnderstanding", "RealisticDiagnosticProcess") if spelling == "prompt"
                          else ("ECGFeatureGrounding", "ClinicalDiagnosticFidelity"))
    doc = {"DiagnosisAccuracy": [{"Score": 2, "Explanation": "AF named and backed"},
                                 {"Score": 1, "Explanation": "LBBB named, thin support"},
                                 {"Score": 0, "Explanation": "LVH is wrong"}],
           "AnalysisCompleteness": [{"Score": s, "Explanation": ""} for s in (1, 1, 1, 0, 1)],
           "AnalysisRelevance": [{"Score": s, "Explanation": ""} for s in (2, 1, 0, 2)],
           "LeadAssessmentCoverage": [{"Score": 1, "Explanation": ""} for _ in range(9)],
           "LeadAssessmentAccuracy": [{"Score": s, "Explanation": ""} for s in (2, 2, 1, 0, 2, 2, 1)],
           grounded: [{"Score": 80, "Explanation": "values cited"}],
           "EvidenceBasedReasoning": [{"Score": 50, "Explanation": "partial"}],
           fidelity: [{"Score": 100, "Explanation": "systematic"}]}
    doc.update(over)
    return doc


# GEM's normalisation of _items(), by hand: DA 2 of 3 items > 0; LAC min(9, 12) / 12; LAA 10 / 24; the rest sums
EXPECTED = {"DiagnosisAccuracy": 200 / 3, "AnalysisCompleteness": 4.0, "AnalysisRelevance": 5.0,
            "LeadAssessmentCoverage": 75.0, "LeadAssessmentAccuracy": 1000 / 24, "ECGFeatureGrounding": 80.0,
            "EvidenceBasedReasoning": 50.0, "ClinicalDiagnosticFidelity": 100.0}


# ------------------------------------------------------------------------------------------- parse, normalise
@pytest.mark.parametrize("spelling", ["prompt", "table"])
def test_both_key_spellings_give_gem_table_columns(spelling):
    j = parse_judgement(json.dumps(_items(spelling)))
    assert list(j.scores) == list(CRITERIA) and not j.repairs and not j.unknown_keys
    assert normalise(j.scores) == pytest.approx(EXPECTED)
    written = {"prompt": "GroundedECGUnderstanding", "table": "ECGFeatureGrounding"}[spelling]
    assert j.spellings["ECGFeatureGrounding"] == written


def test_gem_normalisation_on_fixed_outputs():
    # the three items GEM's notebook treats specially, at their edges
    assert normalise({"DiagnosisAccuracy": []}) == {"DiagnosisAccuracy": 0.0}
    assert normalise({"DiagnosisAccuracy": [0, 0]})["DiagnosisAccuracy"] == 0.0
    assert normalise({"DiagnosisAccuracy": [1, 2, 2, 1]})["DiagnosisAccuracy"] == 100.0  # a 1 counts as > 0
    assert normalise({"LeadAssessmentCoverage": [1] * 15})["LeadAssessmentCoverage"] == 100.0  # capped at 12
    assert normalise({"LeadAssessmentAccuracy": [2] * 12})["LeadAssessmentAccuracy"] == 100.0
    assert normalise({"LeadAssessmentAccuracy": [2] * 15})["LeadAssessmentAccuracy"] == 125.0  # GEM does not cap it
    # a 0-100 criterion with several items is summed as GEM does (and can pass 100)
    assert normalise({"EvidenceBasedReasoning": [50, 80]}) == {"EvidenceBasedReasoning": 130.0}
    n = normalise(parse_judgement(json.dumps(_items())).scores)
    assert three_score_average(n) == pytest.approx((80 + 50 + 100) / 3)
    assert three_score_average({"ECGFeatureGrounding": 80.0}) is None


def test_the_answers_judges_really_write_are_read():
    doc = json.dumps(_items(), indent=1)
    fenced = "```json\n" + doc.replace('"Score": 50', '"Score": 25+25').replace("]\n}", "],\n}") + "\n```"
    j = parse_judgement(fenced)
    assert normalise(j.scores) == pytest.approx(EXPECTED)
    assert {"code_fence", "arithmetic_score", "trailing_comma"} <= set(j.repairs)
    # DeepSeek-R1 style: reasoning first, prose around the object
    j = parse_judgement("<think>the candidate misses V1</think>Here is my grading:\n" + doc + "\nThanks.")
    assert {"think_block", "text_around_json"} <= set(j.repairs) and len(j.scores) == 8
    # GEM's own prompt shows Python-style quotes; judges copy them
    py = str(_items("table"))
    j = parse_judgement(py)
    assert j.repairs == ["python_literal"] and normalise(j.scores) == pytest.approx(EXPECTED)
    # a criterion given as one object, scores as strings and percentages, spaced key names
    j = parse_judgement(json.dumps({"Diagnosis Accuracy": {"Score": "2"},
                                    "Evidence-Based Reasoning": [{"score": "80%"}],
                                    "Realistic Diagnostic Process": 50, "Confidence": 3}))
    assert j.scores == {"DiagnosisAccuracy": [2.0], "EvidenceBasedReasoning": [80.0],
                        "ClinicalDiagnosticFidelity": [50.0]}
    assert j.unknown_keys == ["Confidence"]
    assert eval_arithmetic("1+1+0") == 2 and eval_arithmetic("(2*3)-1") == 5


def test_prompt_asks_for_every_criterion_with_both_texts():
    from gem_model.judge import judge_messages

    msgs = judge_messages("Sinus rhythm {not a field} at 70 bpm.", "Sinus rhythm at 72 bpm.")
    user = msgs[1]["content"]
    assert [m["role"] for m in msgs] == ["system", "user"] and "JSON" in msgs[0]["content"]
    assert all(c in user for c in CRITERIA) and "{not a field}" in user and "at 72 bpm" in user
    assert user.index("CANDIDATE:\nSinus rhythm {not a field}") < user.index("REFERENCE:\nSinus rhythm at 72")


@pytest.mark.parametrize("answer, why", [
    ("", "empty"),
    ("I am sorry, I cannot grade this interpretation.", "no JSON object"),
    ('{"Overall": [{"Score": 3}]}', "none of the eight criteria"),
    ('{"DiagnosisAccuracy": [{"Score": "high"}]}', "not a number"),
    ('{"DiagnosisAccuracy": [{"Explanation": "no score"}]}', "has no Score"),
    ('{"GroundedECGUnderstanding": [{"Score": 80}], "ECGFeatureGrounding": [{"Score": 50}]}', "given twice"),
    ('{"DiagnosisAccuracy": [{"Score": 2, "Explanation": "cut off', "never closed"),
    ('{"DiagnosisAccuracy": [{"Score": __import__("os").getpid()}]}', "not valid JSON"),
])
def test_unreadable_answers_are_explained(answer, why):
    with pytest.raises(JudgeParseError, match=why):
        parse_judgement(answer)


# ------------------------------------------------------------------------------------------ through the server
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from pipeline.run_all import RunConfig, run_pipeline

    out = tmp_path_factory.mktemp("judgerun") / "run"
    run_pipeline(RunConfig(out=out, n=10, seed=23))
    return out


def _predictions(run, path, n=6):
    """n predictions: each reference answer with a marker, so the fake server knows which record it judges."""
    items = read_items(run)
    ids = sorted(items)[:n]
    path.write_text("".join(json.dumps({"id": i, "text": items[i]["conversations"][1]["value"] + f" [J{k}]"}) + "\n"
                            for k, i in enumerate(ids)))
    return ids


def _evaluate(pred, run, out, fake, *extra, env=None, check=None):
    proc = subprocess.run([CLI, "evaluate", "--predictions", str(pred), "--run", str(run), "--out", str(out),
                           "--judge", "openai-compatible:judge-7b", "--base-url", fake.base_url, *extra],
                          capture_output=True, text=True, timeout=300, env=env)
    if check is not None:
        assert proc.returncode == check, (proc.stdout[-3000:], proc.stderr[-3000:])
    return proc


def test_judge_through_the_server_with_faults_never_paid_twice(run, tmp_path):
    pred = tmp_path / "pred.jsonl"
    ids = _predictions(run, pred)
    fake = FakeOpenAI().start()
    try:
        answers = [json.dumps(_items("prompt")),
                   "```json\n" + json.dumps(_items("table"), indent=2).replace('"Score": 80', '"Score": 40+40')
                   + "\n```",
                   "I cannot grade this interpretation.",
                   str(_items("table")),
                   json.dumps({"DiagnosisAccuracy": [{"Score": 2, "Explanation": "right"}]}),
                   json.dumps(_items("prompt", EvidenceBasedReasoning=[{"Score": 50}, {"Score": 80}]))]
        for k, a in enumerate(answers):
            fake.answers_for(f"[J{k}]", a)
        fake.script("500", "429", "drop", "invalid_json")   # the first sends fail; bounded retries recover
        out = tmp_path / "eval"
        proc = _evaluate(pred, run, out, fake, "--judge-concurrency", "2", check=1)   # one unparsable answer
        chat = fake.chat_log()
        assert len(chat) == 6 + 4
        assert all(e.body["temperature"] == 0.0 and e.body["response_format"] == {"type": "json_object"}
                   for e in chat)
        m = json.loads((out / "metrics.json").read_text())
        j = m["judge"]
        assert j["judged"] == 6 and j["unparsable"] == 1 and j["request_failed"] == 0
        assert j["requests"]["http_sends"] == 10 and j["over_100"] == 1
        assert j["key_spellings"]["ECGFeatureGrounding"] == {"GroundedECGUnderstanding": 2, "ECGFeatureGrounding": 2}
        assert [f["reason"] for f in m["failures"]] == ["judge_unparsable"] and m["failures"][0]["id"] == ids[2]
        assert "no JSON object" in m["failures"][0]["detail"]
        per = {r["id"]: r for r in pl.read_parquet(out / "per_record.parquet").iter_rows(named=True)}
        for k in (0, 1, 3):
            got = {c: per[ids[k]][f"judge_{c}"] for c in CRITERIA}
            assert got == pytest.approx(EXPECTED), k
        assert per[ids[2]]["judge_DiagnosisAccuracy"] is None and "judge_unparsable" in per[ids[2]]["judge_error"]
        assert per[ids[4]]["judge_DiagnosisAccuracy"] == 100.0 and per[ids[4]]["judge_AnalysisCompleteness"] is None
        assert per[ids[5]]["judge_EvidenceBasedReasoning"] == 130.0
        # the table: a mean over the records that have the criterion (GEM's pandas mean skips the missing)
        assert j["scores"]["DiagnosisAccuracy"]["n"] == 5 and j["scores"]["AnalysisCompleteness"]["n"] == 4
        da = [EXPECTED["DiagnosisAccuracy"]] * 4 + [100.0]
        assert j["scores"]["DiagnosisAccuracy"]["value"] == pytest.approx(sum(da) / 5)
        lines = [json.loads(x) for x in (out / "judgements.jsonl").read_text().splitlines()]
        by_id = {x["id"]: x for x in lines}
        assert len(lines) == 6 and {"code_fence", "arithmetic_score"} <= set(by_id[ids[1]]["repairs"])
        report = (out / "report.md").read_text()
        assert "this evaluation" in report and "GEM-PULSE PTB-XL" in report and "| 87.24 |" in report
        assert "judge_unparsable" in report

        # the same evaluation again, and into another folder: every judgement comes from the store
        _evaluate(pred, run, out, fake, check=1)
        again = _evaluate(pred, run, tmp_path / "eval2", fake, check=1)
        assert len(fake.chat_log()) == 10
        m2 = json.loads((tmp_path / "eval2" / "metrics.json").read_text())
        assert m2["judge"]["requests"]["reused"] == 6 and m2["judge"]["scores"] == j["scores"]
        assert "6 records to judge, 6 from the store, 0 HTTP sends, $0.0000 new" in again.stdout
        assert "0 from the store, 10 HTTP sends" in proc.stdout
    finally:
        fake.stop()


def test_a_failed_request_is_explained_and_retried_on_the_next_run(run, tmp_path):
    pred = tmp_path / "pred.jsonl"
    ids = _predictions(run, pred, n=3)
    fake = FakeOpenAI().start()
    try:
        for k in range(3):
            fake.answers_for(f"[J{k}]", json.dumps(_items()))
        fake.script_for("[J1]", "quota")   # insufficient_quota: not retried, nothing stored as answered
        out = tmp_path / "eval"
        _evaluate(pred, run, out, fake, "--judge-store", str(tmp_path / "store"), check=1)
        m = json.loads((out / "metrics.json").read_text())
        assert m["judge"]["request_failed"] == 1
        fail = m["failures"][0]
        assert fail["id"] == ids[1] and fail["reason"] == "judge_request_failed"
        assert "insufficient_quota" in fail["detail"]
        assert len(fake.chat_log()) == 3
        # next run: the two answered are reused, only the failed one is sent again
        _evaluate(pred, run, out, fake, "--judge-store", str(tmp_path / "store"), check=0)
        assert len(fake.chat_log()) == 4
        assert json.loads((out / "metrics.json").read_text())["judge"]["scores"]["DiagnosisAccuracy"]["n"] == 3
    finally:
        fake.stop()


def test_a_broken_endpoint_stops_after_five_failures_in_a_row(run, tmp_path):
    pred = tmp_path / "pred.jsonl"
    _predictions(run, pred, n=8)
    fake = FakeOpenAI().start()
    try:
        fake.script(*["401"] * 20)   # a wrong key: every request is refused, none is worth retrying
        out = tmp_path / "eval"
        proc = _evaluate(pred, run, out, fake, "--judge-concurrency", "1", "--judge-store", str(tmp_path / "store"),
                         check=1)
        assert len(fake.chat_log()) == 5
        m = json.loads((out / "metrics.json").read_text())
        assert m["judge"]["request_failed"] == 5 and m["judge"]["not_sent"] == 3
        not_sent = [f for f in m["failures"] if f["reason"] == "judge_not_sent"]
        assert "fix --judge / --base-url / the key" in not_sent[0]["detail"]
        assert "3 not sent" in proc.stdout
        # judge-free scores are there all the same
        assert m["diagnosis_f1"] >= 0.95 and m["n_scored"] == 8
    finally:
        fake.stop()


def test_cost_cap_and_missing_key(run, tmp_path):
    pred = tmp_path / "pred.jsonl"
    _predictions(run, pred, n=2)
    fake = FakeOpenAI().start()
    try:
        env = {**os.environ, "DEEPSEEK_API_KEY": "sk-test-not-a-key"}
        proc = subprocess.run([CLI, "evaluate", "--predictions", str(pred), "--run", str(run), "--out",
                               str(tmp_path / "e"), "--judge", "deepseek:deepseek-chat", "--base-url", fake.base_url,
                               "--judge-max-cost", "0.0001"], capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 1 and len(fake.chat_log()) == 0   # the worst case of each exceeds the cap
        m = json.loads((tmp_path / "e" / "metrics.json").read_text())
        assert m["judge"]["budget_skipped"] == 2 and {f["reason"] for f in m["failures"]} == {"judge_budget"}
        assert "sk-test-not-a-key" not in proc.stdout + proc.stderr + (tmp_path / "e" / "metrics.json").read_text()

        env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
        proc = subprocess.run([CLI, "evaluate", "--predictions", str(pred), "--run", str(run), "--out",
                               str(tmp_path / "f"), "--judge", "openai:gpt-4o-2024-08-06"],
                              capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 2 and "OPENAI_API_KEY is not set" in proc.stderr
        assert not (tmp_path / "f").exists()   # stopped before scoring or sending anything
    finally:
        fake.stop()
