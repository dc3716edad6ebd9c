"""The synthetic source's tree on disk: a PTB-XL-like folder of WFDB records with the generator's truth.

``write_synthetic_tree`` writes ``n`` records drawn by ``pipeline.synthetic.random_params``; ``write_wfdb`` one
record as WFDB format 16. Re-exported by ``pipeline.synthetic`` (where callers import them from).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.synthetic import generate_record, random_params
from pipeline.synthetic_truth import RECORDS_TRUTH_SCHEMA, beats_frame

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

    The same tree is written by ``write_synthetic_part`` over index ranges (in any order, in any process: the
    chain maps it over chunks) followed by ``finish_synthetic_tree``; this is that composition in one call.
    """
    from pipeline import progress

    with progress.track("synth", n):
        return finish_synthetic_tree(out_dir, n, seed, [write_synthetic_part(out_dir, n, seed, 0, 0, n)])


_PART_DIR = ".synth_parts"


def _seeds(n: int, seed: int) -> np.ndarray:
    return np.random.SeedSequence(int(seed)).generate_state(max(n, 1), dtype=np.uint32)[:n]


def write_synthetic_part(out_dir: str | Path, n: int, seed: int, index: int, start: int, stop: int) -> Path:
    """Records ``start..stop-1`` of the ``n``-record tree of ``seed``: their WFDB files, and one part file
    (``.synth_parts/part-<index>.parquet``: the csv columns drawn from the record and its truth row; and
    ``part-<index>.beats.parquet``: its truth beats) that ``finish_synthetic_tree`` assembles. Skipped when
    the part exists (written last); returns its path."""
    from pipeline.batch import write_parquet_atomic

    out = Path(out_dir)
    part = out / _PART_DIR / f"part-{index:05d}.parquet"
    if part.is_file():
        return part
    (out / "records500").mkdir(parents=True, exist_ok=True)
    seeds = _seeds(n, seed)
    rows: list[dict] = []
    beat_columns: list[dict] = []
    from pipeline import progress

    for i in range(start, stop):
        progress.tick()  # inside the synth stage's bar (a no-op without one)
        rid = record_id_for(i, n)
        rseed = int(seeds[i])
        params = random_params(np.random.default_rng([rseed, 1]))
        rec = generate_record(params, rseed, record_id=rid)
        write_wfdb(out / "records500" / rid, rec.signal_mv, params.fs_hz)
        t = rec.truth
        rows.append({
            "i": i, "record_id": rid, "report": rec.report,
            "scp_codes": "{" + ", ".join(f"'{c}': 100.0" for c in t.scp_codes) + "}",
            "heart_axis": t.heart_axis, "fs_hz": params.fs_hz, "n_samples": int(rec.signal_mv.shape[1]),
            "seed": rseed, "truth_json": json.dumps({
                "record_id": rid, "seed": rseed, "hr_bpm": t.hr_bpm, "rr_mean_ms": t.rr_mean_ms,
                "pr_ms": t.pr_ms, "qrs_ms": t.qrs_ms, "qt_ms": t.qt_ms, "qrs_axis_deg": t.qrs_axis_deg,
                "rhythm": t.rhythm, "heart_axis": t.heart_axis, "findings": ";".join(t.findings),
                "scp_codes": ";".join(t.scp_codes), "n_beats": t.n_beats, "n_premature": t.n_premature,
                "st_elevation_leads": ";".join(t.st_elevation_leads),
                "st_depression_leads": ";".join(t.st_depression_leads),
                "t_inversion_leads": ";".join(t.t_inversion_leads),
                "params_json": params.model_dump_json()}),
        })
        beat_columns.append(rec.beat_columns)
    write_parquet_atomic(beats_frame(beat_columns), part.with_name(f"part-{index:05d}.beats.parquet"))
    write_parquet_atomic(pl.DataFrame(rows, schema={
        "i": pl.Int64, "record_id": pl.String, "report": pl.String, "scp_codes": pl.String,
        "heart_axis": pl.String, "fs_hz": pl.Int64, "n_samples": pl.Int64, "seed": pl.Int64,
        "truth_json": pl.String}), part)
    return part


DATABASE_SCHEMA: dict[str, pl.DataType] = {
    "ecg_id": pl.Int64, "record_id": pl.String, "patient_id": pl.String, "age": pl.Int64, "sex": pl.String,
    "report": pl.String, "scp_codes": pl.String, "heart_axis": pl.String, "filename_hr": pl.String,
    "fs_hz": pl.Int64, "n_samples": pl.Int64, "seed": pl.Int64}


def finish_synthetic_tree(out_dir: str | Path, n: int, seed: int, parts: list[str | Path]) -> Path:
    """Assemble ``synthetic_database.csv`` and ``truth/`` from the parts of ``write_synthetic_part`` (in index
    order) and remove them. Demographics are drawn here, in record order, from one generator of ``seed``.

    Part by part: the csv is appended and the truth tables are streamed (one Parquet row group per part, in
    record-id order, which lets the synthetic source read one block of records' truth at a time), so the
    memory of this step is one part's, whatever ``n``."""
    import shutil

    from pipeline.batch import ParquetStream  # here: batch pulls the errors schema (cheap, but lazy)

    out = Path(out_dir)
    (out / "records500").mkdir(parents=True, exist_ok=True)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    demo_rng = np.random.default_rng([int(seed), 2])
    tmp = out / f".synthetic_database.csv.{os.getpid()}.tmp"
    records_out = ParquetStream(out / "truth" / "records.parquet", RECORDS_TRUTH_SCHEMA)
    beats_out = ParquetStream(out / "truth" / "beats.parquet", dict(beats_frame([]).schema))
    n_rows = 0
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as csv_fh:
            for k, part in enumerate(sorted(parts, key=lambda p: Path(p).name)):
                part = Path(part)
                beats_out.write(pl.read_parquet(part.with_name(part.name.replace(".parquet", ".beats.parquet"))))
                rows: list[dict] = []
                truth_rows: list[dict] = []
                for r in pl.read_parquet(part).sort("i").iter_rows(named=True):
                    i = r["i"]
                    age = int(demo_rng.integers(22, 90))
                    sex = "male" if demo_rng.random() < 0.52 else "female"
                    rows.append({
                        "ecg_id": i + 1, "record_id": r["record_id"],
                        "patient_id": f"synp{i + 1:0{max(5, len(str(n)))}d}", "age": age, "sex": sex,
                        "report": r["report"], "scp_codes": r["scp_codes"], "heart_axis": r["heart_axis"],
                        "filename_hr": f"records500/{r['record_id']}", "fs_hz": r["fs_hz"],
                        "n_samples": r["n_samples"], "seed": r["seed"],
                    })
                    truth_rows.append(json.loads(r["truth_json"]))
                pl.DataFrame(rows, schema=DATABASE_SCHEMA).write_csv(csv_fh, include_header=k == 0)
                records_out.write(pl.DataFrame(truth_rows, schema=RECORDS_TRUTH_SCHEMA))
                n_rows += len(rows)
            if not n_rows:
                pl.DataFrame(schema=DATABASE_SCHEMA).write_csv(csv_fh)
        if n_rows != n:
            raise ValueError(f"synthetic parts hold {n_rows} records, expected {n}")
        records_out.close()
        beats_out.close()
    except BaseException:
        for stream in (records_out, beats_out):
            stream.abort()
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out / "synthetic_database.csv")  # last: its presence marks the tree finished
    shutil.rmtree(out / _PART_DIR, ignore_errors=True)
    return out
