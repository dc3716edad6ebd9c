"""Speed and memory of ``measure_record`` on 2,000 synthetic records generated in memory, one core.

    .venv/bin/python benchmarks/features.py [--n 2000] [--seed 0]

Prints records/s on one core (process time; POLARS_MAX_THREADS=1 and BLAS/OMP threads 1), ms per record
(median and p95), the peak Python heap while measuring (tracemalloc, one record at a time) and the
process's max RSS (resource.getrusage), plus how many records raised (RecordError) or gated leads.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path

for _v in ("POLARS_MAX_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features import measure_record  # noqa: E402
from features.measure import as_record  # noqa: E402
from pipeline.record import RecordError  # noqa: E402
from pipeline.synthetic import SynthParams, generate_record  # noqa: E402


def varied_params(rng: np.random.Generator) -> SynthParams:
    """Random plausible parameters (the generator's own ``random_params`` when it has one)."""
    import pipeline.synthetic as synth

    if hasattr(synth, "random_params"):
        return synth.random_params(rng)
    while True:
        hr = float(rng.uniform(45, 130))
        pr = float(rng.uniform(120, 220))
        bbb = str(rng.choice(["none", "none", "none", "right", "left"]))
        qrs = float(rng.uniform(120, 160) if bbb != "none" else rng.uniform(70, 110))
        qt = float(rng.uniform(0.9, 1.1) * min(420 * (60 / hr) ** 0.5, 0.95 * 60000 / hr - pr - 40))
        try:
            return SynthParams(hr_bpm=hr, pr_ms=pr, qrs_ms=qrs, qt_ms=qt, bundle_branch_block=bbb,
                               qrs_axis_deg=float(rng.uniform(-60, 150)), pvc_count=int(rng.integers(0, 2)),
                               emg_noise_mv=float(rng.uniform(0, 0.03)), baseline_wander_mv=float(rng.uniform(0, 0.3)),
                               rhythm=str(rng.choice(["sinus"] * 5 + ["atrial_fibrillation"])))
        except ValueError:
            continue


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    measure_record(as_record(generate_record(SynthParams(), 0).signal_mv))  # warm-up
    times, failed, gated, beats = [], 0, 0, 0
    for i in range(args.n):
        rec = as_record(generate_record(varied_params(rng), seed=args.seed + i).signal_mv, f"s{i}")
        t0 = time.process_time()
        try:
            m = measure_record(rec)
            gated += len(m.warnings)
            beats += m.record_row["n_beats"]
        except RecordError:
            failed += 1
        times.append(time.process_time() - t0)
    # memory on a second, shorter pass: tracemalloc slows every allocation, so it is kept out of the timing
    tracemalloc.start()
    for i in range(min(args.n, 100)):
        try:
            measure_record(as_record(generate_record(varied_params(rng), seed=10**6 + i).signal_mv, f"m{i}"))
        except RecordError:
            pass
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    t = np.asarray(times) * 1000.0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"records: {args.n} synthetic 12-lead 10 s @ 500 Hz, {beats} beats, {failed} RecordError, {gated} gated leads")
    print(f"speed: {1000.0 / t.mean():.1f} records/s on one core (process time); "
          f"ms/record mean {t.mean():.1f}, median {np.median(t):.1f}, p95 {np.percentile(t, 95):.1f}")
    print(f"memory: peak traced Python heap {peak / 2**20:.1f} MiB over 100 records (tracemalloc), "
          f"max RSS {rss_mb:.0f} MiB for the whole run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
