"""The synthetic source's tree on disk: a PTB-XL-like folder of WFDB records with the generator's truth.

``write_synthetic_tree`` writes ``n`` records drawn by ``pipeline.synthetic.random_params``; ``write_wfdb`` one
record as WFDB format 16. Re-exported by ``pipeline.synthetic`` (where callers import them from).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.synthetic import RECORDS_TRUTH_SCHEMA, beats_frame, generate_record, random_params

ADC_GAIN = 1000.0  # adu per mV, as PTB-XL
WFDB_LEAD_NAMES = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")


def write_wfdb(path_stem: Path, signal_mv: np.ndarray, fs_hz: int) -> tuple[Path, Path]:
    """Write a (12, n) mV signal as WFDB format 16 (1000 adu/mV, baseline 0) at ``path_stem``.{hea,dat}.

    Written directly (a header line per channel with initial value and checksum), which is ~20x faster
    than ``wfdb.wrsamp``; wfdb reads it back within half an adu (quantisation).
    """
    digital = np.round(signal_mv.astype(np.float64) * ADC_GAIN)
    # -32768 is WFDB's "no sample" value in format 16: stay one above it.
    digital = np.clip(digital, -32767, 32767).astype("<i2")
    n = digital.shape[1]
    name = path_stem.name
    dat = path_stem.with_suffix(".dat")
    hea = path_stem.with_suffix(".hea")
    dat.write_bytes(np.ascontiguousarray(digital.T).tobytes())
    sums = digital.astype(np.int64).sum(axis=1)
    lines = [f"{name} {digital.shape[0]} {fs_hz} {n}"]
    for ch, lead in enumerate(WFDB_LEAD_NAMES):
        checksum = int(((int(sums[ch]) + 32768) % 65536) - 32768)
        lines.append(f"{name}.dat 16 {ADC_GAIN:.1f}(0)/mV 16 0 {int(digital[ch, 0])} {checksum} 0 {lead}")
    lines.append("# synthetic ECG written by ecg-grounding pipeline.synthetic")
    hea.write_text("\n".join(lines) + "\n")
    return hea, dat


def record_id_for(index: int, n: int) -> str:
    """'syn00001' style ids (1-based), wide enough for ``n`` records."""
    return f"syn{index + 1:0{max(5, len(str(n)))}d}"


def write_synthetic_tree(out_dir: str | Path, n: int, seed: int) -> Path:
    """Write ``n`` random records as a PTB-XL-like tree under ``out_dir``; returns ``out_dir``.

    Layout: ``synthetic_database.csv`` (one row per record: ecg_id, record_id, patient_id, age, sex, report,
    scp_codes, heart_axis, filename_hr, seed, ...), ``records500/<record_id>.hea/.dat`` (WFDB format 16,
    1000 adu/mV) and ``truth/beats.parquet`` + ``truth/records.parquet``. Record ``i`` uses
    ``params = random_params(default_rng([seed_i, 1]))`` and ``generate_record(params, seed_i)`` with the
    csv's ``seed`` column as ``seed_i``, so any record can be regenerated alone. Same ``seed`` -> same bytes.
    """
    from pipeline.batch import write_parquet_atomic  # here: batch pulls the errors schema (cheap, but lazy)

    out = Path(out_dir)
    (out / "records500").mkdir(parents=True, exist_ok=True)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    seeds = np.random.SeedSequence(int(seed)).generate_state(max(n, 1), dtype=np.uint32)[:n]
    demo_rng = np.random.default_rng([int(seed), 2])
    rows: list[dict] = []
    truth_rows: list[dict] = []
    beat_frames: list[pl.DataFrame] = []
    from pipeline import progress

    for i in progress.iterate("synth", range(n)):
        rid = record_id_for(i, n)
        rseed = int(seeds[i])
        params = random_params(np.random.default_rng([rseed, 1]))
        rec = generate_record(params, rseed, record_id=rid)
        write_wfdb(out / "records500" / rid, rec.signal_mv, params.fs_hz)
        t = rec.truth
        age = int(demo_rng.integers(22, 90))
        sex = "male" if demo_rng.random() < 0.52 else "female"
        rows.append({
            "ecg_id": i + 1, "record_id": rid, "patient_id": f"synp{i + 1:0{max(5, len(str(n)))}d}",
            "age": age, "sex": sex, "report": rec.report,
            "scp_codes": "{" + ", ".join(f"'{c}': 100.0" for c in t.scp_codes) + "}",
            "heart_axis": t.heart_axis, "filename_hr": f"records500/{rid}", "fs_hz": params.fs_hz,
            "n_samples": int(rec.signal_mv.shape[1]), "seed": rseed,
        })
        truth_rows.append({
            "record_id": rid, "seed": rseed, "hr_bpm": t.hr_bpm, "rr_mean_ms": t.rr_mean_ms, "pr_ms": t.pr_ms,
            "qrs_ms": t.qrs_ms, "qt_ms": t.qt_ms, "qrs_axis_deg": t.qrs_axis_deg, "rhythm": t.rhythm,
            "heart_axis": t.heart_axis, "findings": ";".join(t.findings), "scp_codes": ";".join(t.scp_codes),
            "n_beats": t.n_beats, "n_premature": t.n_premature,
            "st_elevation_leads": ";".join(t.st_elevation_leads),
            "st_depression_leads": ";".join(t.st_depression_leads),
            "t_inversion_leads": ";".join(t.t_inversion_leads),
            "params_json": params.model_dump_json(),
        })
        beat_frames.append(rec.beat_columns)
    db = pl.DataFrame(rows, schema={
        "ecg_id": pl.Int64, "record_id": pl.String, "patient_id": pl.String, "age": pl.Int64, "sex": pl.String,
        "report": pl.String, "scp_codes": pl.String, "heart_axis": pl.String, "filename_hr": pl.String,
        "fs_hz": pl.Int64, "n_samples": pl.Int64, "seed": pl.Int64})
    tmp = out / f".synthetic_database.csv.{os.getpid()}.tmp"
    db.write_csv(tmp)
    os.replace(tmp, out / "synthetic_database.csv")
    records = pl.DataFrame(truth_rows, schema=RECORDS_TRUTH_SCHEMA)
    write_parquet_atomic(records, out / "truth" / "records.parquet")
    beats = beats_frame(beat_frames)
    write_parquet_atomic(beats, out / "truth" / "beats.parquet")
    return out
