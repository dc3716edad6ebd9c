"""What reading a source's index table row by row costs: ``pipeline.sources.tables.read_source_table`` (one
csv-module pass that finds bad rows, duplicates and bytes that are not UTF-8, plus the polars frame) against a
bare ``pl.read_csv`` (which pads short rows with nulls and lets the last duplicate win), on MIMIC-shaped tables.

    python benchmarks/tables.py [--rows 200000]

Prints seconds and peak memory (RSS growth) per table; MIMIC-IV-ECG's tables have ~800k rows.
"""
from __future__ import annotations

import argparse
import csv
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import polars as pl  # noqa: E402

from pipeline.sources.tables import read_source_table  # noqa: E402


def _write(path: Path, rows: int, machine: bool) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        if machine:
            cols = ["subject_id", "study_id", "cart_id", "ecg_time"] + [f"report_{i}" for i in range(18)] + \
                ["bandwidth", "filtering", "rr_interval", "p_onset", "p_end", "qrs_onset", "qrs_end", "t_end",
                 "p_axis", "qrs_axis", "t_axis"]
            w.writerow(cols)
            for i in range(rows):
                w.writerow([10000000 + i // 3, 40000000 + i, 6848296, "2180-07-10 08:15:00", "Sinus rhythm",
                            "Borderline ECG, nonspecific T wave changes"] + [""] * 16 +
                           ["0.005-150 Hz", "60 Hz  notch Baseline filter", 857, 40, 128, 170, 262, 548, 51, 42, 37])
        else:
            w.writerow(["subject_id", "study_id", "file_name", "ecg_time", "path"])
            for i in range(rows):
                sid = 40000000 + i
                w.writerow([10000000 + i // 3, sid, sid, "2180-07-10 08:15:00",
                            f"files/p1000/p{10000000 + i // 3}/s{sid}/{sid}"])


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=200_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name, machine in (("record_list.csv", False), ("machine_measurements.csv", True)):
            path = Path(tmp) / name
            _write(path, args.rows, machine)
            mb = path.stat().st_size / 1e6
            t0 = time.perf_counter()
            pl.read_csv(path, infer_schema=False)
            bare = time.perf_counter() - t0
            before = _rss_mb()
            t0 = time.perf_counter()
            table = read_source_table(path, "study_id", normalise_id=str.strip)
            ours = time.perf_counter() - t0
            assert len(table.ids()) == args.rows and not table.problems
            print(f"{name:<26} {args.rows:>8} rows {mb:7.1f} MB   pl.read_csv {bare:6.2f} s   "
                  f"read_source_table {ours:6.2f} s ({ours / bare:4.1f}x)   peak RSS +{_rss_mb() - before:6.0f} MB")


if __name__ == "__main__":
    main()
