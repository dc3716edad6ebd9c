"""``ecg-grounding features`` end to end on a small WFDB tree: shards, errors table, idempotent re-run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import wfdb

from features.qrs_edges import synthetic_reading_intervals
from features.run import read_table, run_features
from features.schema import BEATS_SCHEMA, ERRORS_SCHEMA, RECORDS_SCHEMA
from pipeline.record import LEADS
from pipeline.synthetic import generate_record
from pipeline.synthetic_params import SynthParams

REPO = Path(__file__).resolve().parents[1]


def write_tree(root: Path) -> list[str]:
    """Three synthetic records and one whose every lead is flat, as WFDB files."""
    names = []
    for i, kw in enumerate([dict(), dict(hr_bpm=95, qt_ms=340), dict(qrs_ms=140, bundle_branch_block="right")]):
        sig = generate_record(SynthParams(**kw), seed=20 + i).signal_mv
        names.append(f"rec{i}")
        wfdb.wrsamp(f"rec{i}", fs=500, units=["mV"] * 12, sig_name=list(LEADS), p_signal=sig.T.astype(np.float64),
                    fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(root))
    flat = np.zeros((5000, 12))
    flat[:, 0] = 1e-4  # constant but not all-zero, so the header is valid
    wfdb.wrsamp("flat0", fs=500, units=["mV"] * 12, sig_name=list(LEADS), p_signal=flat, fmt=["16"] * 12,
                adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(root))
    return names + ["flat0"]


def test_cli_on_small_wfdb_tree(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    write_tree(data)
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "features", "--source", "wfdb", "--root", str(data),
                           "--out", str(out), "--chunk-size", "2", "--json"], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 1, proc.stderr  # a record failed: exit 1, its reason code on stderr
    assert "1 record failed" in proc.stderr and "flat_lead" in proc.stderr and "errors.parquet" in proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["failures"]["by_code"] == {"flat_lead": 1}
    assert summary["n_records"] == 4 and summary["n_shards"] == 2
    assert summary["n_measured"] == 3 and summary["n_failed"] == 1
    beats, recs = read_table(out, "beats"), read_table(out, "records")
    assert beats.schema == pl.Schema(BEATS_SCHEMA) and recs.schema == pl.Schema(RECORDS_SCHEMA)
    assert sorted(recs["record_id"]) == ["rec0", "rec1", "rec2"]
    assert beats.group_by("record_id").agg(pl.col("lead").n_unique())["lead"].to_list() == [12, 12, 12]
    errors = pl.read_parquet(out / "errors.parquet")
    assert errors.schema == pl.Schema(ERRORS_SCHEMA)
    bad = errors.filter(pl.col("severity") == "error")
    assert bad["record_id"].to_list() == ["flat0"] and bad["stage"].to_list() == ["features"]
    hr = dict(zip(recs["record_id"], recs["hr_bpm"]))
    assert abs(hr["rec1"] - 95) < 3 and abs(hr["rec0"] - 70) < 3
    # idempotent: a second run skips both finished shards and leaves the files alone
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("part-*.parquet")}
    again = run_features("wfdb", data, out, chunk_size=2)
    assert again.n_shards_skipped == 2 and again.n_measured == 3 and again.n_failed == 1
    assert {p: p.stat().st_mtime_ns for p in out.rglob("part-*.parquet")} == mtimes


def test_cli_on_synthetic_tree_agrees_with_truth(tmp_path):
    """The embedded generator's tree -> features: intervals close to the generator's truth."""
    from pipeline.cli import main

    data, out = tmp_path / "syn", tmp_path / "out"
    assert main(["synth", "--n", "8", "--out", str(data), "--seed", "5"]) == 0
    assert main(["features", "--source", "synthetic", "--root", str(data), "--out", str(out)]) == 0
    recs = read_table(out, "records")
    assert recs.height == 8 and (recs["ref_kind"] == "synthetic_truth").all()
    assert recs["diff_rr_ms"].abs().max() < 5
    # median agreement over the tree (single records with a bundle branch block may be further off), against the
    # truth as the reading convention publishes it (features.qrs_edges: the QRS edges a margin outside the
    # dipole's support, which the diff_* columns hold as they are against the generator's truth)
    pr, qrs, qt = synthetic_reading_intervals(0.0, 0.0, 0.0)
    assert (recs["diff_qrs_ms"] - qrs).abs().median() <= 12
    assert (recs["diff_qt_ms"] - qt).abs().median() <= 15
    assert recs["diff_qrs_axis_deg"].abs().median() <= 5
    assert (recs["diff_pr_ms"].drop_nulls() - pr).abs().median() <= 10


def test_a_bad_setting_stops_the_run_before_any_record(tmp_path):
    # a P-onset fit that does not exist is the run's error (exit 2, one clear line), not 4 record errors
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    write_tree(data)
    env = {**os.environ, "ECG_GROUNDING_P_ONSET_FIT": "twelve"}
    for cmd in (["features", "--source", "wfdb", "--root", str(data), "--out", str(out)],
                ["run", "--source", "wfdb", "--root", str(data), "--out", str(out)]):
        proc = subprocess.run([sys.executable, "-m", "pipeline.cli", *cmd], capture_output=True, text=True,
                              cwd=REPO, env=env)
        assert proc.returncode == 2, proc.stderr
        assert "unknown P-onset fit 'twelve'" in proc.stderr and "Traceback" not in proc.stderr
        assert not out.exists()
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--source", "ptbxl", "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and "--root is required for source 'ptbxl'" in proc.stderr


def test_a_shard_an_older_measurement_wrote_is_measured_again(tmp_path):
    """A finished shard is skipped on a re-run, unless an older measurement wrote it: a column added since (LUDB
    35's ``flutter_waves``, read as "no flutter waves found" when missing, left its QRS and QT uncitable in a run
    resumed across an upgrade) makes the shard be measured again, with the same values as a fresh run."""
    data = tmp_path / "wfdb"
    data.mkdir()
    write_tree(data)
    out = tmp_path / "out"
    first = run_features("wfdb", data, out, chunk_size=2)
    assert first.n_shards_skipped == 0
    assert run_features("wfdb", data, out, chunk_size=2).n_shards_skipped == first.n_shards  # finished: skipped
    fresh = read_table(out, "records").sort("record_id")
    old = out / "records" / "part-00000.parquet"
    pl.read_parquet(old).drop("flutter_waves").write_parquet(old)  # as an older measurement wrote it
    again = run_features("wfdb", data, out, chunk_size=2)
    assert again.n_shards_skipped == first.n_shards - 1
    assert read_table(out, "records").sort("record_id").equals(fresh)


def test_a_shard_another_measurement_wrote_is_measured_again(tmp_path, monkeypatch):
    """Each records shard names the measurement that wrote it (``measurement_digest``: the measuring code, its
    learned parts and the P-onset fit chosen, in its Parquet metadata). A shard of another measurement (a run
    resumed across an upgrade that changed a rule but added no column: its values are the old rules') or of none
    (written before the stamp) is measured again, and the chain's features stage does not count it as done."""
    from types import SimpleNamespace

    from features.run import MEASURED_BY_KEY, measurement_digest, shard_finished
    from pipeline.chain_steps import features_done

    data = tmp_path / "wfdb"
    data.mkdir()
    write_tree(data)
    out = tmp_path / "out"
    first = run_features("wfdb", data, out, chunk_size=2)
    shard = out / "records" / "part-00000.parquet"
    assert pl.read_parquet_metadata(shard)[MEASURED_BY_KEY] == measurement_digest()
    assert shard_finished(out, 0)
    fresh = read_table(out, "records").sort("record_id")
    pl.read_parquet(shard).write_parquet(shard, metadata={MEASURED_BY_KEY: "0" * 16})  # another measurement's
    assert not shard_finished(out, 0)
    again = run_features("wfdb", data, out, chunk_size=2)
    assert again.n_shards_skipped == first.n_shards - 1 and shard_finished(out, 0)
    assert read_table(out, "records").sort("record_id").equals(fresh)
    pl.read_parquet(shard).write_parquet(shard)  # no stamp at all
    assert run_features("wfdb", data, out, chunk_size=2).n_shards_skipped == first.n_shards - 1
    # another P-onset fit is another measurement
    monkeypatch.setenv("ECG_GROUNDING_P_ONSET_FIT", "none")
    assert not shard_finished(out, 0)
    monkeypatch.delenv("ECG_GROUNDING_P_ONSET_FIT")
    cfg = SimpleNamespace(out=tmp_path)
    (tmp_path / "features").symlink_to(out)
    assert features_done(cfg, SimpleNamespace(index=0))
    pl.read_parquet(shard).write_parquet(shard, metadata={MEASURED_BY_KEY: "0" * 16})
    assert not features_done(cfg, SimpleNamespace(index=0))
