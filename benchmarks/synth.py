"""Benchmark: write a 500-record synthetic tree and read it back; prints records/s and ms per read."""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.sources import open_source  # noqa: E402
from pipeline.synthetic import generate_record, write_synthetic_tree  # noqa: E402
from pipeline.synthetic_params import SynthParams  # noqa: E402

N = 500


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_synthetic_tree(Path(tmp) / "tree", N, seed=0)
        dt = time.perf_counter() - t0
        print(f"synth write: {N} records in {dt:.2f} s = {N / dt:.1f} records/s (target >= 100)")

        src = open_source("synthetic", Path(tmp) / "tree")
        ids = src.ids()
        t0 = time.perf_counter()
        src.read(ids[0])
        first_ms = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        for rid in ids[1:201]:
            src.read(rid)
        per_ms = (time.perf_counter() - t0) * 1e3 / 200
        print(f"synthetic source: first read {first_ms:.1f} ms (loads csv-indexed truth), then {per_ms:.2f} ms/read")

    params = SynthParams(baseline_wander_mv=0.2, mains_hum_mv=0.03, emg_noise_mv=0.02, pvc_count=2)
    generate_record(params, 0)
    t0 = time.perf_counter()
    for seed in range(200):
        generate_record(params, seed)
    print(f"generate_record (all noise types, PVCs): {(time.perf_counter() - t0) * 1e3 / 200:.2f} ms/record")


if __name__ == "__main__":
    main()
