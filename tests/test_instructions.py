"""The GEM instruction set: a real synthetic run (ingest -> features -> answers) through `validate`.

Answers are the offline writer's, plus hand-made bad attempts, so acceptance, rejects, provenance, patient
split and sharding are all exercised on real Parquet files.
"""
from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from pipeline.generate import ANSWERS_SCHEMA
from pipeline.instructions import (QUESTIONS, ShardWriter, assign_split, build_contexts, build_instruction_set,
                                   check_gem_item, pick_question, read_instruction_set)
from pipeline.knowledge import load_knowledge
from pipeline.validate import validate_answer
from pipeline.writer import write_answer

N = 24


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder with manifest.parquet (3 records per patient), features/ and answers.parquet."""
    from features import run_features
    from pipeline.context import read_features
    from pipeline.ingest import ingest
    from pipeline.synthetic import write_synthetic_tree

    tmp = tmp_path_factory.mktemp("gem")
    root = write_synthetic_tree(tmp / "data", N, 77)
    out = tmp / "run"
    ingest("synthetic", root, out)
    run_features("synthetic", root, out / "features")
    manifest = pl.read_parquet(out / "manifest.parquet").sort("record_id")
    # several records per patient, so the split has to keep them together
    manifest = manifest.with_columns(pl.Series("patient_id", [f"pat{i // 3}" for i in range(manifest.height)]))
    manifest.write_parquet(out / "manifest.parquet")
    kb = load_knowledge()
    records, beats = read_features(out / "features")
    ids = manifest["record_id"].to_list()
    ctxs = build_contexts(ids, manifest, records, beats, kb)
    rows, expected, leaked, v7 = [], {}, [], []
    base = {c: None for c in ANSWERS_SCHEMA}
    writer_rejected = set()
    for i, rid in enumerate(sorted(ctxs)):
        good = write_answer(ctxs[rid], seed=0, kb=kb)
        if not validate_answer(good, ctxs[rid], kb=kb).accepted:
            writer_rejected.add(rid)  # the writer's answer itself fails (see test_validate): stays out
        common = dict(base, record_id=rid, backend="rules", model="rules-v1", status="ok", prompt_tokens=6000,
                      completion_tokens=250, cost_usd=0.001, request_key=f"key-{rid}")
        if i % 4 == 0:  # first attempt invents a lead, second is good
            rows.append(dict(common, attempt=1, answer=good + " Lead V7 shows nothing more."))
            v7.append(rid)
            rows.append(dict(common, attempt=2, answer=good))
            if rid not in writer_rejected:
                expected[rid] = good
        elif i % 8 == 1:  # only a leaking answer: the record stays out
            rows.append(dict(common, attempt=1, answer="As the report says, " + good))
            leaked.append(rid)
        elif i % 8 == 3:  # a failed request, then a good answer
            rows.append(dict(common, attempt=1, answer=None, status="failed", error_code="rate_limited"))
            rows.append(dict(common, attempt=2, answer=good))
            if rid not in writer_rejected:
                expected[rid] = good
        else:
            rows.append(dict(common, attempt=1, answer=good))
            if rid not in writer_rejected:
                expected[rid] = good
    pl.DataFrame(rows, schema=ANSWERS_SCHEMA).write_parquet(out / "answers.parquet")
    assert len(writer_rejected) <= 2
    return {"out": out, "manifest": manifest, "expected": expected, "ctxs": ctxs, "leaked": leaked, "v7": v7,
            "root": root}


@pytest.fixture(scope="module")
def built(run):
    dest = run["out"] / "instructions"
    summary = build_instruction_set(answers=run["out"] / "answers.parquet", features=run["out"] / "features",
                                    manifest=run["out"] / "manifest.parquet", out=dest, shard_size=5,
                                    test_fraction=0.3, seed=3)
    return dest, summary


def test_items_are_gem_format_and_round_trip(run, built):
    dest, summary = built
    items = list(read_instruction_set(dest))
    assert len(items) == summary["records_accepted"] == len(run["expected"])
    assert len({it["id"] for it in items}) == len(items)
    paths = dict(zip(run["manifest"]["record_id"], run["manifest"]["path"]))
    for it in items:
        assert check_gem_item(it) == [], it
        assert it["conversations"][1]["value"] == run["expected"][it["id"]].strip()
        question = it["conversations"][0]["value"].removeprefix("<image>\n")
        assert question in QUESTIONS and question == pick_question(it["id"], 3)
        assert it["ecg"] == paths[it["id"]] and it["image"] == f"images/{it['id']}.png"
        assert it["report"] == run["ctxs"][it["id"]].report
        mm = it["machine_measurements"]
        rec = run["ctxs"][it["id"]].record
        assert mm["rr_interval"] == pytest.approx(rec["rr_mean_ms"], abs=0.1)
        assert mm["qrs_onset"] < mm["qrs_end"] < mm["t_end"]
        assert json.loads(json.dumps(it)) == it
    # an item that breaks the format is caught
    broken = dict(items[0], conversations=[{"from": "gpt", "value": "x"}])
    assert check_gem_item(broken)


def test_rejects_provenance_and_summary(run, built):
    dest, summary = built
    rejects = pl.read_parquet(dest / "rejects.parquet")
    reasons = {r for rs in rejects["reasons"].to_list() for r in rs}
    assert {"lead_not_measured", "leak_hidden_input"} <= reasons
    left_out = [rid for rid in run["ctxs"] if rid not in run["expected"]]
    assert left_out and set(left_out) <= set(rejects["record_id"])
    prov = pl.read_parquet(dest / "provenance.parquet")
    in_set = prov.filter(pl.col("in_set"))
    assert in_set.height == len(run["expected"]) and in_set["accepted"].all()
    assert set(in_set["attempt"].to_list()) == {1, 2}
    assert in_set["shard"].null_count() == 0 and in_set["request_key"].null_count() == 0
    disk = json.loads((dest / "summary.json").read_text())
    assert disk["records"] == len(run["ctxs"]) and disk["records_accepted"] == len(run["expected"])
    assert disk["acceptance_rate"] == pytest.approx(len(run["expected"]) / len(run["ctxs"]), abs=1e-4)
    assert disk["rejection_reasons"]["leak_hidden_input"] == len(run["leaked"])
    assert disk["rejection_reasons"]["lead_not_measured"] == len(run["v7"])
    assert disk["grounding_precision"] > 0.9 and disk["diagnosis_recall"] > 0.9
    assert disk["tokens"]["prompt_tokens"] == 6000 * len(pl.read_parquet(run["out"] / "answers.parquet"))
    assert summary == disk


def test_patient_split_and_shards(run, built):
    dest, summary = built
    patient = dict(zip(run["manifest"]["record_id"], run["manifest"]["patient_id"]))
    seen = {s: {patient[it["id"]] for it in read_instruction_set(dest, s)} for s in ("train", "test")}
    assert seen["train"] and seen["test"] and not seen["train"] & seen["test"]
    assert summary["patients_in_both"] == 0
    for f in dest.glob("*-*.json"):
        assert 1 <= len(json.loads(f.read_text())) <= 5
    assert sorted(p.name for p in dest.glob("train-*.json"))[0] == "train-00000.json"
    assert sum(summary["splits"].values()) == summary["records_accepted"]


def test_cli_writes_the_same_set(run, built):
    from pipeline.cli import main

    dest, _ = built
    again = run["out"] / "instructions-cli"
    code = main(["validate", "--answers", str(run["out"] / "answers.parquet"), "--features",
                 str(run["out"] / "features"), "--manifest", str(run["out"] / "manifest.parquet"), "--out", str(again),
                 "--shard-size", "5", "--test-fraction", "0.3", "--seed", "3"])
    assert code == 0
    names = sorted(p.name for p in dest.glob("*-*.json"))
    assert names == sorted(p.name for p in again.glob("*-*.json"))
    for n in names:
        assert (dest / n).read_text() == (again / n).read_text()


def test_shard_writer_streams(tmp_path: Path):
    w = ShardWriter(tmp_path, "train", 5)
    for i in range(12):
        w.write({"id": str(i)})
    paths = w.close()
    assert [len(json.loads(p.read_text())) for p in paths] == [5, 5, 2]
    assert [it["id"] for it in read_instruction_set(tmp_path)] == [str(i) for i in range(12)]


def test_assign_split_is_deterministic_by_patient():
    patients = [f"p{i}" for i in range(5000)]
    splits = [assign_split(p, f"r{i}", 0.1) for i, p in enumerate(patients)]
    assert 0.08 < splits.count("test") / len(splits) < 0.12
    # the record id does not matter when the patient is known
    assert all(assign_split(p, "other", 0.1) == s for p, s in zip(patients[:200], splits))
    assert assign_split(None, "r1", 0.0) == "train" and assign_split(None, "r1", 1.0) == "test"


def test_images_folder_keeps_records_without_a_png_out(run, tmp_path):
    """With --images, only records that have a rendered PNG enter the set; the others go to the rejects."""
    from pipeline.render import render_record
    from pipeline.sources import open_source

    src = open_source("synthetic", run["root"])
    images = run["out"] / "images"
    images.mkdir(exist_ok=True)
    drawn = sorted(run["expected"])[:2]
    for rid in drawn:
        (images / f"{rid}.png").write_bytes(render_record(src.read(rid), dpi=50))
    summary = build_instruction_set(answers=run["out"] / "answers.parquet", features=run["out"] / "features",
                                    manifest=run["out"] / "manifest.parquet", out=tmp_path / "set", images=images,
                                    shard_size=5, test_fraction=0.3, seed=3)
    items = list(read_instruction_set(tmp_path / "set"))
    assert sorted(it["id"] for it in items) == drawn
    assert all(it["image"] == f"images/{it['id']}.png" and check_gem_item(it) == [] for it in items)
    assert summary["no_image"] == len(run["expected"]) - 2
    rejects = pl.read_parquet(tmp_path / "set" / "rejects.parquet")
    assert rejects.filter(pl.col("reasons").list.contains("no_image")).height == summary["no_image"]


def test_report_conflicts_are_recorded_and_the_policy_decides(run, tmp_path):
    """A report statement its measurements contradict stays in the answer (the report is trusted); each such case
    is in the provenance (statement, criterion, measured value) and in summary.json per statement. --conflicts
    drop keeps those records out of the set; keep (the default) writes them, flagged."""
    from pipeline.cli import main
    from pipeline.criteria import record_conflicts
    from pipeline.record import RecordMeta, Statement

    kb = load_knowledge()
    # one accepted record gets a statement its measurements cannot meet: incomplete RBBB with a normal QRS
    target = next(rid for rid in sorted(run["expected"]) if run["ctxs"][rid].record["qrs_ms"] < 105)
    man = run["manifest"]
    metas = []
    for rid, mj in man.select("record_id", "meta_json").iter_rows():
        meta = RecordMeta.model_validate_json(mj)
        if rid == target:
            meta.statements.append(Statement(text="incomplete right bundle branch block", code="IRBBB",
                                             system="scp"))
        metas.append(meta.model_dump_json())
    folder = tmp_path / "run"
    folder.mkdir()
    man.with_columns(pl.Series("meta_json", metas)).write_parquet(folder / "manifest.parquet")
    ctxs = build_contexts(man["record_id"].to_list(), pl.read_parquet(folder / "manifest.parquet"),
                          *_features(run), kb)
    expected_conflicts = {rid: record_conflicts(c, kb) for rid, c in ctxs.items()}
    assert any(c.statement == "IRBBB" for c in expected_conflicts[target])
    answers = pl.read_parquet(run["out"] / "answers.parquet")
    good = write_answer(ctxs[target], seed=0, kb=kb)  # the writer names IRBBB without the QRS as its support
    assert validate_answer(good, ctxs[target], kb=kb).accepted
    answers = answers.with_columns(pl.when((pl.col("record_id") == target) & pl.col("answer").is_not_null())
                                   .then(pl.lit(good)).otherwise(pl.col("answer")).alias("answer"))
    answers.write_parquet(folder / "answers.parquet")
    args = ["validate", "--answers", str(folder / "answers.parquet"), "--features", str(run["out"] / "features"),
            "--manifest", str(folder / "manifest.parquet"), "--shard-size", "5", "--test-fraction", "0.3"]
    assert main([*args, "--out", str(folder / "keep")]) == 0
    assert main([*args, "--out", str(folder / "drop"), "--conflicts", "drop"]) == 0

    keep = json.loads((folder / "keep" / "summary.json").read_text())
    prov = pl.read_parquet(folder / "keep" / "provenance.parquet")
    row = prov.filter((pl.col("record_id") == target) & pl.col("in_set")).row(0, named=True)
    assert {c["statement"] for c in row["conflicts"]} == {c.statement for c in expected_conflicts[target]}
    irbbb = next(c for c in row["conflicts"] if c["statement"] == "IRBBB" and "110-119" in c["criterion"])
    assert f"qrs_ms {ctxs[target].record['qrs_ms']:.0f} ms" in irbbb["measured"]
    with_conflicts = {rid for rid, cs in expected_conflicts.items() if cs}
    assert keep["conflicts"]["policy"] == "keep" and keep["conflicts"]["dropped"] == 0
    assert keep["conflicts"]["records_with_conflicts"] == len(with_conflicts)
    by = keep["conflicts"]["by_statement"]["IRBBB"]
    assert by == {"records": 1, "conflicts": 1, "rate": 1.0}
    assert target in {it["id"] for it in read_instruction_set(folder / "keep")}

    drop = json.loads((folder / "drop" / "summary.json").read_text())
    kept = {it["id"] for it in read_instruction_set(folder / "drop")}
    assert target not in kept and not kept & with_conflicts
    assert drop["conflicts"]["policy"] == "drop" and drop["conflicts"]["dropped"] >= 1
    assert drop["final_rejection_reasons"].get("report_conflict") == drop["conflicts"]["dropped"]


def _features(run):
    from pipeline.context import read_features

    return read_features(run["out"] / "features")


def test_summary_splits_numeric_claims_by_kind(built):
    """summary.json reads grounding precision per kind of number (QRS durations, heart rates, ST levels ...)."""
    _, summary = built
    by_kind = summary["claims_by_kind"]
    assert sum(v["claims"] for v in by_kind.values()) == summary["numeric_claims"]
    assert sum(v["grounded"] for v in by_kind.values()) == summary["numeric_grounded"]
    assert {"qrs_duration", "heart_rate", "qtc_bazett"} <= set(by_kind)
    assert all(0.0 <= v["grounding_precision"] <= 1.0 for v in by_kind.values())


def test_validate_writes_the_same_bytes_in_fresh_processes(run, tmp_path):
    """Nothing hash- or group-order dependent reaches the instruction set, rejects or summary (issue 11)."""
    import os
    import subprocess
    import sys

    outs = []
    for seed in ("0", "7"):
        dest = tmp_path / f"out{seed}"
        cmd = [sys.executable, "-m", "pipeline.cli", "validate", "--answers", str(run["out"] / "answers.parquet"),
               "--features", str(run["out"] / "features"), "--manifest", str(run["out"] / "manifest.parquet"),
               "--out", str(dest), "--shard-size", "5"]
        proc = subprocess.run(cmd, env=dict(os.environ, PYTHONHASHSEED=seed), capture_output=True, text=True,
                              timeout=600, cwd=Path(__file__).resolve().parents[1])
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs.append(dest)
    a, b = outs
    names = sorted(p.name for p in a.glob("*.json"))
    assert names == sorted(p.name for p in b.glob("*.json")) and "summary.json" in names
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n
    for table in ("rejects.parquet", "provenance.parquet"):
        assert pl.read_parquet(a / table).equals(pl.read_parquet(b / table)), table
