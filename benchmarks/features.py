"""Speed and memory of ``measure_record`` on 2,000 synthetic records generated in memory, one core.

    .venv/bin/python benchmarks/features.py [--n 2000] [--seed 0]

Prints records/s on one core (process time; POLARS_MAX_THREADS=1 and BLAS/OMP threads 1), ms per record
(median and p95), the peak Python heap while measuring (tracemalloc, one record at a time) and the
process's max RSS (resource.getrusage), plus how many records raised (RecordError) or gated leads, and the
record-level accuracy against the generator's truth: mean / SD / max |error| of QRS, PR, QT (ms) and the
QRS axis (degrees), with the number of records off by more than 15 ms (20 degrees), by QRS type, for the
record's intervals (median over leads) and the global ones, with how many are citable; then the same on
``--classes`` records of each failure class of issue 14 (``pipeline.synthetic_cases``).
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
from pipeline.synthetic import generate_record  # noqa: E402
from pipeline.synthetic_params import SynthParams  # noqa: E402


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
    ap.add_argument("--classes", type=int, default=8, help="records per failure class (0: none)")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    measure_record(as_record(generate_record(SynthParams(), 0).signal_mv))  # warm-up
    times, failed, gated, beats = [], 0, 0, 0
    errors: list[dict] = []
    for i in range(args.n):
        synth = generate_record(varied_params(rng), seed=args.seed + i)
        rec = as_record(synth.signal_mv, f"s{i}")
        t0 = time.process_time()
        try:
            m = measure_record(rec)
            gated += len(m.warnings)
            beats += m.record_row["n_beats"]
        except RecordError:
            failed += 1
            m = None
        times.append(time.process_time() - t0)
        if m is not None:
            errors.append(record_errors(m.record_row, synth))
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
    print_accuracy(errors)
    if args.classes:
        failure_classes(args.classes)
    return 0


def record_errors(row: dict, synth) -> dict:
    """Record-level measured - true (ms; axis in degrees wrapped to [-180, 180)); None where either is. The
    record's intervals (median over leads) and the global ones (``*_global_ms``) both, and whether each record
    value is citable (its confidence at least CONFIDENCE_MIN)."""
    from features.qrs_edges import synthetic_reading_intervals
    from features.schema import CONFIDENCE_MIN

    t = synth.truth
    # the truth as the QRS reading convention publishes it (features.qrs_edges: the edges a margin outside the
    # dipole's mathematical support, as LUDB's experts mark them)
    read = dict(zip(("pr", "qrs", "qt"), synthetic_reading_intervals(t.pr_ms, t.qrs_ms, t.qt_ms,
                                                                      paced=synth.params.pacing != "none")))

    def diff(ours, theirs):
        return None if ours is None or theirs is None else float(ours - theirs)

    d_axis = diff(row["qrs_axis_deg"], t.qrs_axis_deg)
    out = {"kind": synth.params.bundle_branch_block, "pvc": t.n_premature > 0,
           "axis": None if d_axis is None else (d_axis + 180.0) % 360.0 - 180.0}
    for k in ("qrs", "pr", "qt"):
        out[k] = diff(row[f"{k}_ms"], read[k])
        out[f"{k}_bare"] = diff(row[f"{k}_ms"], getattr(t, f"{k}_ms"))  # against the generator's own edges
        out[f"{k}_global"] = diff(row.get(f"{k}_global_ms"), read[k])
        conf = row.get(f"{k}_conf")
        out[f"{k}_citable"] = None if out[k] is None else bool(conf is None or conf >= CONFIDENCE_MIN)
    # a PR cited where the heart has none (fibrillation, flutter, complete AV block: no P conducts): false whatever
    # its value
    out["pr_phantom"] = t.pr_ms is None and row["pr_ms"] is not None and \
        (row.get("pr_conf") is None or row["pr_conf"] >= CONFIDENCE_MIN)
    out["hr"] = diff(row["hr_bpm"], t.hr_bpm)
    out["hr_citable"] = None if out["hr"] is None else bool(row.get("hr_conf") is None or
                                                             row["hr_conf"] >= CONFIDENCE_MIN)
    return out


def print_accuracy(errors: list[dict], title: str = "accuracy vs synthetic truth") -> None:
    """Accuracy table against the synthetic truth (as the QRS reading convention publishes it), overall and by QRS
    type (none / RBBB / LBBB / PVCs): the record's intervals (median over leads), then the global ones; how many
    record values are citable; the heart rate and its confidence."""
    groups = {"all": errors, "narrow QRS": [e for e in errors if e["kind"] == "none"],
              "RBBB": [e for e in errors if e["kind"] == "right"], "LBBB": [e for e in errors if e["kind"] == "left"],
              "with PVCs": [e for e in errors if e["pvc"]]}
    for suffix, label in (("", "record intervals: median over leads"), ("_global", "global intervals")):
        print(f"{title} ({label}; measured - true): mean / SD / max|err|, n off by > 15 ms (axis > 20 deg)")
        for name, rows in groups.items():
            if not rows:
                continue
            parts = []
            keys = [(k + suffix, 15.0) for k in ("qrs", "pr", "qt")] + ([("axis", 20.0)] if not suffix else [])
            for key, lim in keys:
                a = np.array([r[key] for r in rows if r[key] is not None])
                if a.size == 0:
                    parts.append(f"{key} -")
                    continue
                parts.append(f"{key} {a.mean():+.1f}/{a.std():.1f}/{np.abs(a).max():.0f} ({int((np.abs(a) > lim).sum())})")
            print(f"  {name} (n={len(rows)}): " + ", ".join(parts))
    cit = [(k, r) for r in errors for k in ("qrs", "pr", "qt") if r.get(f"{k}_citable") is not None]
    ok = sum(r[f"{k}_citable"] for k, r in cit)
    tol = {"pr": 20.0, "qrs": 20.0, "qt": 30.0}
    bad = sum(1 for k, r in cit if r[f"{k}_citable"] and abs(r[k]) > tol[k])
    bare = [abs(r[f"{k}_bare"]) - tol[k] for k, r in cit if r[f"{k}_citable"] and r.get(f"{k}_bare") is not None]
    print(f"  citable record intervals: {ok} of {len(cit)} ({100.0 * ok / max(len(cit), 1):.1f}%); "
          f"citable ones off the truth by more than 20 / 20 / 30 ms: {bad}; off the generator's own (kinked) "
          f"edges: {sum(b > 0 for b in bare)} (closest to the tolerance: {max(bare, default=float('nan')):+.0f} ms)")
    hr = [r for r in errors if r.get("hr") is not None]
    hr_ok = sum(bool(r["hr_citable"]) for r in hr)
    hr_bad = sum(1 for r in hr if r["hr_citable"] and abs(r["hr"]) > 5.0)
    a = np.array([r["hr"] for r in hr])
    print(f"  heart rate (bpm): {a.mean():+.2f}/{a.std():.2f}/{np.abs(a).max():.1f}; citable {hr_ok} of {len(hr)}, "
          f"citable ones off the truth by more than 5 bpm: {hr_bad}; citable PR where the truth has none: "
          f"{sum(bool(r.get('pr_phantom')) for r in errors)}")


def failure_classes(n: int) -> None:
    """Record-level accuracy on ``n`` records of each failure class of issue 14 (pipeline/synthetic_cases.py)."""
    from pipeline.synthetic_cases import FAILURE_CLASSES, failure_record

    print(f"\nfailure classes of issue 14, {n} records each (pipeline/synthetic_cases.py):")
    all_errors = []
    for name in FAILURE_CLASSES:
        errs = []
        for seed in range(n):
            synth = failure_record(name, seed)
            m = measure_record(as_record(synth.signal_mv, synth.record_id))
            errs.append(record_errors(m.record_row, synth))
        all_errors += errs
        parts = []
        for k in ("pr", "qrs", "qt"):
            a = np.array([e[k] for e in errs if e[k] is not None])
            c = sum(bool(e[f"{k}_citable"]) for e in errs if e[k] is not None)
            parts.append(f"{k} {a.mean():+.1f}/{a.std():.1f}/{np.abs(a).max():.0f} ({c}/{a.size} citable)"
                         if a.size else f"{k} -")
        print(f"  {name:14s} " + ", ".join(parts))
    cit = [(k, r) for r in all_errors for k in ("qrs", "pr", "qt") if r.get(f"{k}_citable")]
    tol = {"pr": 20.0, "qrs": 20.0, "qt": 30.0}
    bad = [(k, r[k]) for k, r in cit if abs(r[k]) > tol[k]]
    print(f"  citable values off the truth by more than 20 / 20 / 30 ms: {len(bad)} of {len(cit)}")
    phantom = sum(bool(e["pr_phantom"]) for e in all_errors)
    hr_bad = sum(1 for e in all_errors if e["hr"] is not None and e["hr_citable"] and abs(e["hr"]) > 5.0)
    print(f"  citable PR where the truth has none (AF, flutter, complete AV block): {phantom}; "
          f"citable heart rates off the truth by more than 5 bpm: {hr_bad}")


if __name__ == "__main__":
    sys.exit(main())
