"""``ecg-grounding evaluate``, judge-free: the scores rank right answers at the top and wrong ones at the bottom.

Everything is real: a synthetic run made by the whole chain (``run_pipeline``: measured records, the rules
writer's answers, the validator's instruction set), the shared PTB-XL / LUDB samples, the packaged knowledge
base and vocabulary, the CLI in a subprocess. Hand-made answers are written from the record's own context, so
each edit has a known effect on exactly one score.
"""
from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from conftest import REPO, shared_path
from gem_model.detection import label_spaces, score_detection
from gem_model.evaluate import evaluate, load_references, read_items, read_predictions
from gem_model.scores import (Reference, expert_intervals, lcs_length, rouge_l, score_diagnoses, score_record,
                              topics_covered)
from pipeline.knowledge import load_knowledge
from pipeline.validate import default_vocabulary

CLI = str(REPO / ".venv" / "bin" / "ecg-grounding")
N_RUN = 40
KB = load_knowledge()
VOCAB = default_vocabulary()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from pipeline.run_all import RunConfig, run_pipeline

    out = tmp_path_factory.mktemp("evalrun") / "run"
    run_pipeline(RunConfig(out=out, n=N_RUN, seed=11))
    return out


@pytest.fixture(scope="module")
def items(run):
    got = read_items(run)
    assert len(got) >= 0.9 * N_RUN  # the rules writer's answers pass the validator
    return got


def _jsonl(path: Path, pairs: list[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in pairs), encoding="utf-8")
    return path


def _answer(item: dict) -> str:
    return item["conversations"][1]["value"]


def _cli(*args: str, check: int | None = 0, env=None) -> subprocess.CompletedProcess:
    proc = subprocess.run([CLI, "evaluate", *args], capture_output=True, text=True, timeout=300, env=env)
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


# --------------------------------------------------------------------------------------------- top / bottom
def test_references_scored_against_themselves_come_out_at_the_top(run, items, tmp_path):
    pred = _jsonl(tmp_path / "self.jsonl", [(i, _answer(it)) for i, it in items.items()])
    proc = _cli("--predictions", str(pred), "--run", str(run), "--out", str(tmp_path / "eval"))
    m = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    s = m["scores"]
    assert m["n_scored"] == len(items) and not m["failures"]
    assert s["diagnosis_f1"]["value"] >= 0.95 and s["diagnosis_f1"]["n"] == len(items)
    assert s["diagnosis_micro"]["recall"] >= 0.95 and s["diagnosis_micro"]["precision"] >= 0.95
    assert s["grounding_precision"]["value"] == 1.0 and s["grounding_micro"]["claims"] >= 4 * len(items)
    assert s["hallucination_rate"]["value"] <= 0.05
    assert s["rouge_l"]["value"] == 1.0 and s["validator_acceptance"]["value"] == 1.0
    for name, d in m["detection"].items():
        assert d["macro_f1"] == 1.0 and d["hamming_loss"] == 0.0, name
    per = pl.read_parquet(tmp_path / "eval" / "per_record.parquet")
    assert per.height == len(items) and per["id"].n_unique() == len(items)
    assert set(per["split"].unique()) <= {"train", "test"}
    assert "diagnosis_f1" in proc.stdout and (tmp_path / "eval" / "report.html").is_file()


def test_a_shuffled_pairing_comes_out_near_the_bottom(run, items, tmp_path):
    ids = sorted(items)
    rng = random.Random(5)
    perm = ids[:]
    while any(a == b for a, b in zip(ids, perm)):  # a derangement: no text stays with its own record
        rng.shuffle(perm)
    pred = _jsonl(tmp_path / "shuf.jsonl", [(i, _answer(items[j])) for i, j in zip(ids, perm)])
    evaluate(pred, run, tmp_path / "eval")
    s = json.loads((tmp_path / "eval" / "metrics.json").read_text())["scores"]
    assert s["diagnosis_f1"]["value"] < 0.45
    # another record's numbers: near-zero ST levels still match (an isoelectric ST is within 0.025 mV of most
    # records'), the numbers that tell records apart do not
    assert s["grounding_precision"]["value"] < 0.5
    kinds = s["grounding_micro"]["by_kind"]
    for kind in ("heart_rate", "qt_interval", "qrs_axis"):
        assert kinds[kind]["claims"] >= 0.5 * len(ids) and kinds[kind]["value"] < 0.3, (kind, kinds[kind])
    assert s["hallucination_rate"]["value"] > 0.6
    assert s["validator_acceptance"]["value"] <= 0.05
    assert s["rouge_l"]["value"] < 0.75  # same writer, same sentence frames: ROUGE-L stays well above 0
    d = json.loads((tmp_path / "eval" / "metrics.json").read_text())["detection"]["cpsc2018"]
    assert d["macro_f1"] < 0.5 and 0.3 < d["macro_auc"] < 0.7  # chance level on binary predictions


# ------------------------------------------------------------------------------------------ hand-made answers
@pytest.fixture(scope="module")
def refs(run, items):
    got, fails = load_references(run, list(items), items)
    assert not fails
    return got


def _pick(refs, want: set[str]) -> Reference:
    for ref in refs.values():
        if want <= set(ref.ctx.statement_ids) and ref.ctx.record.get("qrs_ms") and ref.ctx.record.get("qt_ms"):
            return ref
    pytest.skip(f"no record with {want} in this synthetic draw")


def test_hand_made_answers_move_each_score_the_right_way(refs):
    ref = next(r for r in refs.values() if len(set(r.ctx.statement_ids)) >= 2 and r.ctx.record.get("pr_ms"))
    rec, names = ref.ctx.record, [KB.entries[i].name for i in dict.fromkeys(ref.ctx.statement_ids)]
    numbers = (f"The heart rate is {rec['hr_bpm']:.0f} bpm, the PR interval {rec['pr_ms']:.0f} ms, the QRS duration "
               f"{rec['qrs_ms']:.0f} ms and the QT interval {rec['qt_ms']:.0f} ms.")
    base_text = f"{numbers} The findings are {' and '.join(names)}."
    base = score_record(base_text, ref, KB, VOCAB)
    assert base.diagnosis_recall == 1.0 and base.diagnosis_precision == 1.0 and base.grounding_precision == 1.0

    # one statement left out: recall falls by one statement, precision stays
    fewer = score_record(f"{numbers} The findings are {' and '.join(names[1:])}.", ref, KB, VOCAB)
    n = len(names)
    assert fewer.diagnosis_recall == pytest.approx((n - 1) / n) and fewer.diagnosis_precision == 1.0
    assert fewer.diagnosis_f1 < base.diagnosis_f1 and fewer.missing == [list(dict.fromkeys(ref.ctx.statement_ids))[0]]

    # a diagnosis the report does not make: precision and hallucination move, recall stays
    extra_id = next(i for i in ("WPW", "RVH", "3AVB", "AFLT") if i not in KB.permitted(ref.ctx.statement_ids))
    extra = score_record(f"{base_text} There is also {KB.entries[extra_id].name}.", ref, KB, VOCAB)
    assert extra.hallucinated == [extra_id] and extra.diagnosis_recall == 1.0
    assert extra.diagnosis_precision == pytest.approx(n / (n + 1))
    # ... denied, it claims nothing (negation-aware)
    denied = score_record(f"{base_text} There is no {KB.entries[extra_id].name}.", ref, KB, VOCAB)
    assert denied.hallucinated == [] and denied.diagnosis_precision == 1.0
    # ... a diagnosis outside the knowledge base (the validator's vocabulary) counts too
    brugada = score_record(f"{base_text} A Brugada pattern is present.", ref, KB, VOCAB)
    assert brugada.hallucinated == ["BRUGADA"] and brugada.diagnosis_precision < 1.0

    # a wrong number: grounding precision falls by exactly one claim
    wrong_qrs = base_text.replace(f"{rec['qrs_ms']:.0f} ms", f"{rec['qrs_ms'] + 60:.0f} ms", 1)
    wrong = score_record(wrong_qrs, ref, KB, VOCAB)
    assert wrong.numeric_claims == base.numeric_claims and wrong.numeric_grounded == base.numeric_grounded - 1
    assert wrong.ungrounded and "qrs" in wrong.ungrounded[0].lower()

    # leads named: coverage counts distinct leads, explicit names and ranges
    leads = score_record(f"{base_text} The QRS complexes are upright in leads I, II and V4-V6.", ref, KB, VOCAB)
    assert leads.leads_named == ["I", "II", "V4", "V5", "V6"] and leads.lead_coverage == pytest.approx(5 / 12)
    assert base.lead_coverage == 0.0

    # components: dropping the QT leaves QT uncovered; naming the axis covers it
    no_qt = score_record(base_text.replace(f" and the QT interval {rec['qt_ms']:.0f} ms", ""), ref, KB, VOCAB)
    assert "QT" in base.topics and "QT" not in no_qt.topics and no_qt.completeness < base.completeness
    adds = {"axis": f"The frontal QRS axis is {rec['qrs_axis_deg']:.0f} degrees.",
            "ST": "The ST segments are isoelectric.", "T": "The T waves are upright.", "P": "P waves are upright."}
    topic = next(t for t in adds if t not in base.topics)
    more = score_record(f"{base_text} {adds[topic]}", ref, KB, VOCAB)
    assert set(more.topics) == set(base.topics) | {topic}
    assert more.completeness == pytest.approx(base.completeness + 1 / 9)

    # words and ROUGE-L: the reference itself scores 1, half of it less, an unrelated text near 0
    own = score_record(ref.answer, ref, KB, VOCAB)
    half = score_record(" ".join(ref.answer.split()[: len(ref.answer.split()) // 2]), ref, KB, VOCAB)
    other = score_record("Lorem ipsum dolor sit amet.", ref, KB, VOCAB)
    assert own.rouge_l == 1.0 and 0.4 < half.rouge_l < 0.8 and other.rouge_l < 0.1
    assert half.words == len(ref.answer.split()) // 2


def test_measurement_words_are_not_diagnoses(refs):
    """'QTc within normal limits' is not the diagnosis 'normal ECG'; a true descriptive finding is no
    hallucination (the measured axis supports 'normal axis')."""
    ref = next(r for r in refs.values() if "NORM" not in KB.closure(r.ctx.statement_ids)
               and r.ctx.record.get("qrs_axis_deg") is not None and -20 < r.ctx.record["qrs_axis_deg"] < 80)
    text = "The QTc is within normal limits. The electrical axis is normal."
    dx = score_diagnoses(text, ref.ctx, KB, VOCAB)
    assert "NORM" not in dx.named and dx.hallucinated == []


def test_ecg_bench_labels_follow_the_knowledge_base(refs):
    ref = _pick(refs, {"CLBBB"})
    s = score_record("Sinus rhythm with complete left bundle branch block; no atrial fibrillation.", ref, KB, VOCAB)
    cpsc, ptb = label_spaces()["cpsc2018"], label_spaces()["ptbxl_super"]
    assert cpsc.labels(set(s.pred_ids)) == ["LBBB"]           # AF denied, LBBB through CLBBB -> LBBB
    assert "CD" in ptb.labels(set(s.pred_ids)) and "CD" in ptb.labels(set(s.truth_ids))


# -------------------------------------------------------------------------------------------------- units
def test_lcs_equals_the_dynamic_programme():
    rng = random.Random(0)
    for _ in range(300):
        a = [rng.choice("abcde") for _ in range(rng.randint(0, 40))]
        b = [rng.choice("abcde") for _ in range(rng.randint(0, 90))]
        dp = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i in range(len(a)):
            for j in range(len(b)):
                dp[i + 1][j + 1] = dp[i][j] + 1 if a[i] == b[j] else max(dp[i][j + 1], dp[i + 1][j])
        assert lcs_length(a, b) == dp[-1][-1]


def test_rouge_l_known_values():
    # LCS("the cat sat on the mat", "the cat is on the mat") = 5 of 6 / 6 tokens -> F1 5/6
    assert rouge_l("The cat sat on the mat.", "the cat is on the mat") == pytest.approx(5 / 6)
    assert rouge_l("QRS 120 ms", "qrs 120 MS") == 1.0 and rouge_l("", "text") == 0.0


def test_topics_read_denials_and_rhythm_names():
    assert topics_covered("No P waves are seen; atrial fibrillation at 110 bpm.", KB) == ["rhythm", "rate", "P"]
    assert set(topics_covered("Normal sinus rhythm, PR 160 ms, QRS 90 ms, QTc 420 ms, axis 30 degrees, "
                              "no ST deviation and upright T waves.", KB)) == {
        "rhythm", "axis", "PR", "QRS", "QT", "ST", "T"}


def test_detection_matches_hand_counts():
    space = label_spaces()["ptbxl_super"]
    truths = [["NORM"], ["MI", "CD"], ["CD"], ["NORM"]]
    preds = [["NORM"], ["MI"], ["CD", "HYP"], ["CD"]]
    d = score_detection(space, truths, preds)
    assert d.scored_classes == ["NORM", "MI", "CD"]          # HYP is in no reference: out of GEM's classes
    by = {c.label: c for c in d.per_class}
    assert by["NORM"].f1 == pytest.approx(2 / 3) and by["MI"].f1 == 1.0 and by["CD"].f1 == pytest.approx(0.5)
    assert by["NORM"].auc == pytest.approx(0.5 * (1 / 2 + 2 / 2)) and by["MI"].auc == 1.0
    assert by["CD"].auc == pytest.approx(0.5 * (1 / 2 + 1 / 2)) and by["HYP"].auc is None
    assert d.macro_f1 == pytest.approx((2 / 3 + 1 + 0.5) / 3)
    assert d.hamming_loss == pytest.approx(3 / 12)               # NORM fn, CD fn + fp over 4 x 3 cells
    assert d.hamming_loss_all_classes == pytest.approx(4 / 20)   # + the HYP false positive


def test_every_class_member_is_a_knowledge_id():
    for space in label_spaces().values():
        for label, ids in space.classes.items():
            assert ids and all(i in KB.entries for i in ids), (space.name, label)
    # the 44 diagnostic SCP statements of PTB-XL each sit in exactly one superclass
    ptb = label_spaces()["ptbxl_super"]
    scp = [i for ids in ptb.classes.values() for i in ids if KB.entries[i].codes.get("scp")]
    assert len(scp) == len(set(scp)) == 44


# ------------------------------------------------------------------------------------------- real data
def test_expert_intervals_equal_the_shared_tool_on_every_ludb_record():
    root = shared_path("data", "ludb")
    sys.path.insert(0, str(shared_path("tools")))
    import cited_truth
    from pipeline.sources import open_source

    src = open_source("ludb", root)
    for rid in src.ids():
        mine = expert_intervals(src.read(rid).meta.reference)
        tool = cited_truth.expert(root, rid)
        for k in ("PR", "QRS", "QT", "HR"):
            assert (mine[k] is None) == (tool[k] is None), (rid, k)
            if tool[k] is not None:
                assert mine[k] == pytest.approx(tool[k], abs=1e-6), (rid, k, mine[k], tool[k])


def test_cited_intervals_against_ludb_experts():
    from pipeline.context import measure_context
    from pipeline.sources import open_source

    src = open_source("ludb", shared_path("data", "ludb"))
    rec = src.read(src.ids()[0])
    ctx = measure_context(rec, kb=KB)
    ex = expert_intervals(rec.meta.reference)
    ref = Reference("x", rec.record_id, ctx, None, None, ex)
    near = score_record(f"The QRS duration is {ex['QRS'] + 15:.0f} ms and the QT interval {ex['QT'] - 25:.0f} ms.",
                        ref, KB, VOCAB)
    far = score_record(f"The QRS duration is {ex['QRS'] + 25:.0f} ms and the QT interval {ex['QT'] - 35:.0f} ms.",
                       ref, KB, VOCAB)
    bound = score_record("The QRS duration is below 120 ms.", ref, KB, VOCAB)  # a bound is not a cited value
    assert (near.expert_cited, near.expert_within, near.expert_truth) == (2, 2, 1.0)
    assert (far.expert_cited, far.expert_within, far.expert_truth) == (2, 0, 0.0) and len(far.expert_misses) == 2
    assert bound.expert_cited == 0 and bound.expert_truth is None
    assert score_record("Nothing measured.", Reference("y", "1", ctx), KB, VOCAB).expert_truth is None


def test_shared_ptbxl_run_scores_its_own_answers_at_the_top(tmp_path):
    """The generate stage's answers (a prediction file as it is): the accepted ones score at the top, and an
    answer the validator rejected (if any) is scored as what it is, an answer that states what it may not."""
    from pipeline.run_all import RunConfig, run_pipeline

    run = tmp_path / "ptbxl"
    run_pipeline(RunConfig(source="ptbxl", root=shared_path("data", "ptbxl"), out=run))
    answers = run / "generate" / "answers.parquet"
    summary = evaluate(answers, run, tmp_path / "eval")      # a generate answers.parquet is a prediction file
    m = json.loads(Path(summary.metrics_path).read_text())
    assert summary.n_scored == 10 and m["records_by_source"] == {"ptbxl": 10}
    per = pl.read_parquet(tmp_path / "eval" / "per_record.parquet")
    accepted = per.filter(pl.col("has_reference_answer"))
    assert accepted.height >= 8 and accepted["diagnosis_f1"].min() >= 0.95
    assert accepted["grounding_precision"].drop_nulls().min() == 1.0 and accepted["rouge_l"].min() == 1.0
    rejected = set(pl.read_parquet(run / "instructions" / "rejects.parquet")["record_id"])
    for row in per.filter(~pl.col("has_reference_answer")).iter_rows(named=True):
        assert row["id"] in rejected and not row["validator_accepted"] and row["rouge_l"] is None
        assert row["grounding_precision"] < 1.0 or row["diagnosis_f1"] < 1.0 or row["validator_reasons"]
    assert m["scores"]["diagnosis_f1"]["value"] >= 0.95
    ptb = m["detection"]["ptbxl_super"]
    assert len(ptb["scored_classes"]) >= 2 and ptb["macro_f1"] == 1.0
    # a record whose every attempt failed is the generator's failure, not a silent gap
    df = pl.read_parquet(answers)
    lost = sorted(df["record_id"].unique())[0]
    df = df.with_columns(pl.when(pl.col("record_id") == lost).then(None).otherwise(pl.col("answer")).alias("answer"),
                         pl.when(pl.col("record_id") == lost).then(pl.lit("server_error")).otherwise(
                             pl.col("error_code")).alias("error_code"))
    df.write_parquet(tmp_path / "answers_lost.parquet")
    summary = evaluate(tmp_path / "answers_lost.parquet", run, tmp_path / "eval_lost")
    assert summary.n_scored == 9 and summary.n_predictions == 10
    assert [(f["id"], f["reason"]) for f in summary.failures] == [(lost, "no_answer")]
    assert "server_error" in summary.failures[0]["detail"]


# ------------------------------------------------------------------------------------------------------ CLI
def test_gem_format_bad_lines_unknown_ids_and_exit_codes(run, items, tmp_path):
    ids = sorted(items)[:3]
    gem = tmp_path / "gem.jsonl"
    gem.write_text("".join(json.dumps({"question_id": i, "prompt": "q", "text": _answer(items[i]), "answer_id": "a",
                                       "model_id": "gem7b", "metadata": {}}) + "\n" for i in ids))
    _cli("--predictions", str(gem), "--run", str(run), "--out", str(tmp_path / "g"), "--predictions-format", "gem")
    assert json.loads((tmp_path / "g" / "metrics.json").read_text())["n_scored"] == 3
    # GEM's process_gem_outputs.ipynb writes one JSON list with "Model_generated": read with the same flag
    nb = tmp_path / "gem7b_results.json"
    nb.write_text(json.dumps([{"id": i, "ecg": items[i]["ecg"], "Model_generated": _answer(items[i]),
                               "GPT4o_generated": _answer(items[i]), "model_id": "gem7b"} for i in ids]))
    preds, fails = read_predictions(nb, "gem")
    assert [p.id for p in preds] == ids and not fails and preds[0].text == _answer(items[ids[0]])
    # our format on GEM's file: every line fails, and the message says which flag reads it
    p = _cli("--predictions", str(gem), "--run", str(run), "--out", str(tmp_path / "g2"), check=2)
    assert "--predictions-format gem" in p.stderr and p.stderr.count("\n") == 1

    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(json.dumps({"id": ids[0], "text": _answer(items[ids[0]])}) + "\n" + "{not json\n" +
                     json.dumps({"id": "no-such-record", "text": "Sinus rhythm."}) + "\n" +
                     json.dumps({"id": ids[0], "text": "again"}) + "\n")
    p = _cli("--predictions", str(mixed), "--run", str(run), "--out", str(tmp_path / "m"), "--split", "test", check=1)
    m = json.loads((tmp_path / "m" / "metrics.json").read_text())
    reasons = sorted({f["reason"] for f in m["failures"]})
    assert reasons == ["bad_prediction_line", "duplicate_id", "missing_prediction", "unknown_id"]
    assert m["n_scored"] == 1 and "records failed, by reason code" in p.stderr and "unknown_id" in p.stderr
    assert "## Failures" in (tmp_path / "m" / "report.md").read_text()

    for args, msg in ((["--predictions", str(tmp_path / "nope.jsonl"), "--run", str(run)], "is not a file"),
                      (["--predictions", str(gem), "--run", str(tmp_path)], "not a run folder"),
                      (["--predictions", str(mixed), "--run", str(run), "--judge", "gpt4"], "bad --llm"),
                      (["--predictions", str(mixed), "--run", str(run), "--judge", "rules"], "cannot judge")):
        p = _cli(*args, "--out", str(tmp_path / "x"), check=2)
        assert msg in p.stderr and "Traceback" not in p.stderr, (args, p.stderr)


def test_json_and_quiet_follow_the_cli_convention(run, items, tmp_path):
    ids = sorted(items)[:2]
    pred = _jsonl(tmp_path / "p.jsonl", [(i, _answer(items[i])) for i in ids] + [("nope", "Sinus rhythm.")])
    p = _cli("--predictions", str(pred), "--run", str(run), "--out", str(tmp_path / "j"), "--json", check=1)
    doc = json.loads(p.stdout)   # the whole of stdout is one JSON document
    assert doc["n_scored"] == 2 and doc["diagnosis_f1"] == doc["scores"]["diagnosis_f1"]["value"]
    assert doc["failures"]["by_code"] == {"unknown_id": 1} and doc["paths"]["report"].endswith("report.md")
    q = _cli("-q", "--predictions", str(pred), "--run", str(run), "--out", str(tmp_path / "q"), check=1)
    assert q.stdout == "" and "unknown_id" in q.stderr and "Traceback" not in q.stderr
    assert (tmp_path / "q" / "metrics.json").is_file()


def test_evaluation_imports_no_torch():
    code = ("import sys, gem_model.evaluate, gem_model.judge, gem_model.scores, gem_model.detection, "
            "gem_model.eval_report; from pipeline.cli import build_parser; build_parser(); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)
