"""The ingest stage and its CLI on real records: manifest, errors table, exit codes, resumable chunks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from bad_inputs import add_hostile_mimic_rows, build_bad_corpus
from conftest import REPO, shared_path
from mimic_tree import build_mimic_tree

from features.schema import ERRORS_SCHEMA
from pipeline.cli import main as cli_main
from pipeline.ingest import MANIFEST_SCHEMA, ingest, ingest_records, ingest_shard
from pipeline.record import RecordMeta, ReferenceMeasurements
from pipeline.sources import open_source


@pytest.fixture(scope="module")
def bad_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus") / "bad"
    return root, build_bad_corpus(root, shared_path("data", "ptbxl"))


def test_ingest_bad_corpus_good_records_pass_bad_ones_get_their_codes(bad_root, tmp_path):
    root, expect = bad_root
    summary = ingest("wfdb", root, tmp_path / "out", chunk_size=6)
    assert summary.n_records == len(expect) and summary.n_shards == -(-len(expect) // 6)
    ok_ids = sorted(r for r, e in expect.items() if e.outcome != "error")
    failed = {r: e for r, e in expect.items() if e.outcome == "error"}
    assert summary.n_ok == len(ok_ids) and summary.n_failed == len(failed)

    man = pl.read_parquet(tmp_path / "out" / "manifest.parquet")
    assert man.schema == pl.Schema(MANIFEST_SCHEMA)
    assert sorted(man["record_id"].to_list()) == ok_ids
    errs = pl.read_parquet(tmp_path / "out" / "errors" / "ingest.parquet")
    assert errs.schema == pl.Schema(ERRORS_SCHEMA)
    got = {r["record_id"]: r for r in errs.filter(pl.col("severity") == "error").iter_rows(named=True)}
    assert {r: g["code"] for r, g in got.items()} == {r: e.code for r, e in failed.items()}
    assert set(errs["stage"].to_list()) == {"ingest"}
    warned = {(r["record_id"], r["code"], r["lead"]) for r in errs.filter(pl.col("severity") == "warning").iter_rows(named=True)}
    assert warned == {(r, e.code, e.lead) for r, e in expect.items() if e.outcome == "warning"}
    n_mismatch = sum(e.outcome == "error" and e.code == "header_mismatch" for e in expect.values())
    assert n_mismatch >= 2 and summary.failed_by_code["header_mismatch"] == n_mismatch
    assert summary.warnings_by_code["flat_lead"] == 1
    assert not (tmp_path / "out" / ".ingest_shards").exists()  # shards merged and removed

    row = man.filter(pl.col("record_id") == "limb_derived").row(0, named=True)
    assert row["derived_leads"] == ["III", "aVR", "aVL", "aVF"] and row["n_samples"] == 5000 and row["fs_hz"] == 500
    assert row["files"] == ["limb_derived.hea", "limb_derived.dat"] and len(row["sha256"]) == 64
    flat = man.filter(pl.col("record_id") == "flat_one").row(0, named=True)
    assert flat["warnings"] == ["flat_lead:V3"]
    meta = RecordMeta.model_validate_json(flat["meta_json"])
    assert meta.record_id == "flat_one" and meta.provenance.warnings == ["flat_lead:V3"]


def test_ingest_resumes_finished_chunks_and_is_idempotent(tmp_path):
    root = shared_path("data", "ptbxl")
    src = open_source("ptbxl", root)
    first = ingest_shard("ptbxl", root, src.ids()[:4], tmp_path / "out", 0)
    assert first.n_ok == 4 and not first.reused
    summary = ingest("ptbxl", root, tmp_path / "out", chunk_size=4)
    assert summary.n_shards == 3 and summary.n_shards_reused == 1 and summary.n_ok == 10
    a = pl.read_parquet(tmp_path / "out" / "manifest.parquet")
    again = ingest("ptbxl", root, tmp_path / "out", chunk_size=4)
    assert again.n_shards_reused == 0
    b = pl.read_parquet(tmp_path / "out" / "manifest.parquet")
    assert a.equals(b)
    assert a["record_id"].to_list() == src.ids()
    row = a.row(2, named=True)
    assert row["statement_codes"] == ["NORM", "IRBBB", "SBRAD"]
    assert row["statements"][1] == {"text": "incomplete right bundle branch block", "code": "IRBBB", "system": "scp", "likelihood": 100.0}
    assert row["sex"] == "male" and row["age_years"] == 29 and row["patient_id"] == "7588"
    assert row["source_root"] == str(root.resolve()) and row["path"] == "records500/06000/06002_hr"


def test_ingest_mimic_reference_and_hostile_rows(tmp_path):
    tree = build_mimic_tree(tmp_path / "mimic", shared_path("data", "ptbxl"), ["06000", "06001", "06002"])
    hostile = add_hostile_mimic_rows(tree.root)
    summary = ingest("mimic", tree.root, tmp_path / "out")
    assert summary.n_ok == 3 and summary.failed_by_code == {"missing_file": 1, "unsafe_record_id": 3}
    man = pl.read_parquet(tmp_path / "out" / "manifest.parquet")
    row = man.row(0, named=True)
    assert row["ref_kind"] == "mimic_machine" and row["report_dropped"] == ["--- Warning: Data quality may affect interpretation ---"]
    ref = ReferenceMeasurements.model_validate_json(row["reference"])
    assert ref.rr_ms == 857 and ref.qrs_ms == 92
    errs = pl.read_parquet(tmp_path / "out" / "errors" / "ingest.parquet")
    assert set(errs["record_id"].to_list()) == set(hostile)


def test_cli_exit_codes_and_summary(bad_root, tmp_path, capsys):
    root, expect = bad_root
    assert cli_main(["ingest", "--source", "wfdb", "--root", str(root), "--out", str(tmp_path / "bad")]) == 1
    out = capsys.readouterr().out
    n_ok = sum(e.outcome != "error" for e in expect.values())
    assert f"{n_ok} of {len(expect)} records ok" in out
    assert "failed  truncated_signal" in out and "warning saturated_lead" in out
    assert str(tmp_path / "bad" / "manifest.parquet") in out

    assert cli_main(["ingest", "--source", "ludb", "--root", str(shared_path("data", "ludb")),
                     "--out", str(tmp_path / "ludb"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_ok"] == 35 and summary["n_failed"] == 0
    man = pl.read_parquet(tmp_path / "ludb" / "manifest.parquet")
    assert man["ref_kind"].to_list() == ["ludb_expert"] * 35

    assert cli_main(["ingest", "--source", "ptbxl", "--root", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
    assert cli_main(["ingest", "--source", "ptbxl", "--root", str(tmp_path), "--out", str(tmp_path / "x")]) == 2  # no CSV
    with pytest.raises(SystemExit) as exc:
        cli_main(["ingest", "--source", "nosuch", "--root", str(tmp_path), "--out", str(tmp_path / "x")])
    assert exc.value.code == 2


def test_cli_entry_point_subprocess_and_help(tmp_path):
    exe = Path(sys.executable).with_name("ecg-grounding")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([str(exe), "ingest", "--source", "wfdb", "--root", str(shared_path("data", "ptbdb")),
                           "--out", str(tmp_path / "o"), "--window-start-s", "20"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "1 of 1 records ok" in done.stdout and "warning non_ecg_channel" in done.stdout
    man = pl.read_parquet(tmp_path / "o" / "manifest.parquet")
    assert man["window_start_s"].to_list() == [20.0] and man["original_fs_hz"].to_list() == [1000.0]
    helped = subprocess.run([str(exe), "ingest", "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert "1 some records failed" in " ".join(helped.stdout.split())


def test_ingest_records_never_raises_on_internal_errors(tmp_path):
    class Broken:
        name, root = "broken", tmp_path

        def read(self, rid):
            raise ZeroDivisionError("boom")

    rows, errors = ingest_records(Broken(), ["a"])
    assert rows == [] and errors[0].code == "internal_error" and "ZeroDivisionError" in errors[0].message


def test_synthetic_source_through_open_source_and_cli(tmp_path, capsys):
    from pipeline.synthetic import write_synthetic_tree

    root = write_synthetic_tree(tmp_path / "synth", n=3, seed=11)
    src = open_source("synthetic", root)
    rows, errors = ingest_records(src, src.ids())
    assert len(rows) == 3 and not [e for e in errors if e.severity == "error"]
    assert {r["source"] for r in rows} == {"synthetic"} and {r["ref_kind"] for r in rows} == {"synthetic_truth"}
    assert cli_main(["ingest", "--source", "synthetic", "--root", str(root), "--out", str(tmp_path / "out")]) == 0
    assert "3 of 3 records ok" in capsys.readouterr().out
    man = pl.read_parquet(tmp_path / "out" / "manifest.parquet")
    assert man["record_id"].to_list() == src.ids()
    # No tree there: a usage error, not a traceback.
    assert cli_main(["ingest", "--source", "synthetic", "--root", str(tmp_path), "--out", str(tmp_path / "o2")]) == 2
