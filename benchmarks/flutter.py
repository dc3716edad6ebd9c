"""Atrial flutter on a synthetic grid: how often it is found, how often it is found where there is none, and above
all whether any value an answer may cite (QRS, QT, ST level, T form) is off the generator's truth.

    .venv/bin/python benchmarks/flutter.py [--seeds 1] [--negatives 20] [--csv out.csv]

Positives: flutter cycle 170-280 ms x F waves 0.05-0.5 mV x block variable / fixed 2:1 / 3:1 / 4:1 x QRS narrow /
wide (bundle branch block) x without / with electrode noise (EMG 0.03 mV, wander 0.3 mV); the rate follows from
the cycle and the block (fixed) or is drawn within what the block allows, 60-160 bpm (variable; "wandering": the
same with the F cycle drifting slowly by WANDER_MS, as a real circuit's does). Negatives: sinus
rhythm with PACs / PVCs, atrial fibrillation with coarse f waves (0.1-0.2 mV), sinus tachycardia 100-150, paced,
noisy sinus, U waves, notched T.

Citable: as ``pipeline.context.GroundingContext.citable`` says with the record's report (its rhythm named, as the
chain builds the context). Off: a citable QRS / QT more than 20 / 30 ms from the truth (as the reading convention publishes it); a citable ST
level (J point) more than ``ST_OFF_MV`` from the truth in its lead; a citable T form whose polarity contradicts the
T wave the generator drew in that lead (measured without the F waves and noise: the same record regenerated with
them off), or 'flat' where the T is at least ``T_FLAT_OFF_MV``. Then the detection statistics of
``features.flutter`` on either side of their thresholds (the margins).
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

for _v in ("POLARS_MAX_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import features.measure as fm  # noqa: E402
from features.confidence import TOLERANCE_MS  # noqa: E402
from features.qrs_edges import synthetic_reading_intervals  # noqa: E402
from pipeline.context import GroundingContext, report_flutter, report_p_waves  # noqa: E402
from pipeline.knowledge import load_knowledge  # noqa: E402
from pipeline.record import LEADS, RecordError  # noqa: E402
from pipeline.synthetic import generate_record  # noqa: E402
from pipeline.synthetic_params import SynthParams  # noqa: E402

CYCLES_MS = (170.0, 200.0, 230.0, 260.0, 280.0)
F_WAVES_MV = (0.05, 0.1, 0.2, 0.3, 0.5)
BLOCKS = ("variable", "wandering", "2:1", "3:1", "4:1")  # wandering: variable block, the F cycle drifting
WANDER_MS = 8.0  # the wandering cycle's slow drift (amplitude; real circuits drift by a few per cent)
ST_OFF_MV = 0.1         # a cited ST level this far from the drawn one is wrong (ST deviation criteria: 0.1 mV)
T_POLARITY_MV = 0.05    # a T drawn at least this large in a lead has a polarity a 'positive' / 'negative' must match
T_FLAT_OFF_MV = 0.15    # ... and one this large is not 'flat'
KB = load_knowledge()
NEGATIVE_CLASSES = ("sinus_ectopy", "af_coarse", "sinus_tachy", "paced", "noisy", "u_waves", "notched_t")


def _qt_for(rr_ms: float, qrs_ms: float) -> float:
    """A QT that fits the shortest RR a flutter block draws (RR - 90 ms) and stays physiological (Bazett ~400)."""
    return float(min(max(400.0 * np.sqrt(rr_ms / 1000.0), qrs_ms + 110.0, 200.0), rr_ms - 90.0))


def flutter_params(rng: np.random.Generator, cycle_ms: float, f_mv: float, block: str, wide: bool,
                   noisy: bool) -> SynthParams:
    """One positive of the grid."""
    wander = WANDER_MS if block == "wandering" else 0.0
    block = "variable" if block == "wandering" else block
    if block == "variable":
        lo, hi = max(60.0, 60000.0 / (4 * cycle_ms)), min(160.0, 60000.0 / (2 * cycle_ms))
        hr = float(rng.uniform(lo, hi))
        shortest_rr = 60000.0 / hr  # the generator keeps every RR above QT + 80 ms
    else:
        k = int(block.split(":")[0])
        hr = 60000.0 / (k * cycle_ms)
        shortest_rr = k * cycle_ms
    bbb = str(rng.choice(["right", "left"])) if wide else "none"
    qrs = float(rng.uniform(125.0, 150.0) if wide else rng.uniform(80.0, 100.0))
    return SynthParams(
        hr_bpm=hr, qrs_ms=qrs, qt_ms=_qt_for(shortest_rr, qrs), bundle_branch_block=bbb, rhythm="atrial_flutter",
        flutter_cycle_ms=cycle_ms, flutter_wave_mv=f_mv, flutter_block=block, flutter_cycle_wander_ms=wander,
        qrs_axis_deg=float(rng.uniform(-20.0, 90.0)), t_scale=float(rng.uniform(0.4, 1.2)),
        emg_noise_mv=0.03 if noisy else 0.0, baseline_wander_mv=0.3 if noisy else 0.0)


def negative_params(rng: np.random.Generator, kind: str) -> SynthParams:
    """One negative of ``kind`` (NEGATIVE_CLASSES); drawn again until the parameters are consistent."""
    while True:
        try:
            if kind == "sinus_ectopy":
                return SynthParams(hr_bpm=float(rng.uniform(50, 100)), pac_count=int(rng.integers(1, 4)),
                                   pvc_count=int(rng.integers(0, 3)), emg_noise_mv=float(rng.uniform(0, 0.02)))
            if kind == "af_coarse":
                return SynthParams(hr_bpm=float(rng.uniform(60, 130)), rhythm="atrial_fibrillation",
                                   f_wave_mv=float(rng.uniform(0.1, 0.2)), af_rr_cv=float(rng.uniform(0.08, 0.3)),
                                   qt_ms=float(rng.uniform(300, 380)), emg_noise_mv=float(rng.uniform(0, 0.02)))
            if kind == "sinus_tachy":
                hr = float(rng.uniform(100.5, 150))
                rr = 60000.0 / hr
                pr = float(rng.uniform(120, 150))
                return SynthParams(hr_bpm=hr, rhythm="sinus_tachycardia", pr_ms=pr,
                                   qt_ms=float(min(0.9 * (rr - pr - 20.0), 400.0 * np.sqrt(rr / 1000.0))),
                                   emg_noise_mv=float(rng.uniform(0, 0.02)))
            if kind == "paced":
                return SynthParams(hr_bpm=float(rng.uniform(60, 90)), pacing="ventricular", qrs_ms=float(rng.uniform(140, 170)),
                                   qt_ms=float(rng.uniform(400, 460)), emg_noise_mv=float(rng.uniform(0, 0.02)))
            if kind == "noisy":
                return SynthParams(hr_bpm=float(rng.uniform(55, 100)), emg_noise_mv=float(rng.uniform(0.05, 0.08)),
                                   baseline_wander_mv=float(rng.uniform(0.3, 0.6)), mains_hum_mv=float(rng.uniform(0, 0.05)))
            if kind == "u_waves":
                return SynthParams(hr_bpm=float(rng.uniform(50, 80)), u_wave_mv=float(rng.uniform(0.1, 0.3)),
                                   u_offset_ms=float(rng.uniform(-40, 40)), qt_ms=float(rng.uniform(360, 420)))
            if kind == "notched_t":
                return SynthParams(hr_bpm=float(rng.uniform(55, 95)), t_notch=True, qt_ms=float(rng.uniform(360, 420)))
        except ValueError:
            continue
        raise ValueError(kind)


def _t_truth_mv(syn) -> np.ndarray:
    """Per lead: the T wave the generator drew (signed extreme in each beat's T window, median over beats; mV),
    from the same record regenerated without F / f waves and electrode noise (the same beats)."""
    p = syn.params.model_copy(update={"flutter_wave_mv": 0.0, "f_wave_mv": 0.0, "emg_noise_mv": 0.0,
                                      "baseline_wander_mv": 0.0, "mains_hum_mv": 0.0})
    clean = generate_record(p, syn.seed, syn.record_id)
    fs = syn.params.fs_hz
    beats = clean.beats
    out = np.full(12, np.nan)
    for i, lead in enumerate(LEADS):
        rows = beats.filter((beats["lead"] == lead) & (beats["beat_class"] == "normal"))
        vals = []
        for on, off in zip(rows["t_on_ms"].to_list(), rows["t_off_ms"].to_list()):
            if on is None or off is None:
                continue
            seg = clean.signal_mv[i, int(on * fs / 1000):int(off * fs / 1000) + 1]
            if seg.size:
                vals.append(float(seg[np.argmax(np.abs(seg))]))
        if vals:
            out[i] = float(np.median(vals))
    return out


def _t_form_off(form: str | None, truth_mv: float) -> bool:
    if form is None or not np.isfinite(truth_mv):
        return False
    if form == "positive":
        return truth_mv <= -T_POLARITY_MV
    if form == "negative":
        return truth_mv >= T_POLARITY_MV
    if form == "flat":
        return abs(truth_mv) >= T_FLAT_OFF_MV
    return False


def evaluate(syn) -> dict:
    """One record's detection statistics and its citable values off the truth."""
    rec = fm.as_record(syn.signal_mv, syn.record_id)
    t0 = time.process_time()
    try:
        m = fm.measure_record(rec)
    except RecordError as e:  # no record row: nothing citable (counted apart)
        zero = {k: 0 for k in ("qrs_cited", "qrs_off", "qt_cited", "qt_off", "st_cited", "st_off", "t_cited", "t_off")}
        print(f"  {syn.record_id}: {e.code}", file=sys.stderr)
        return {"id": syn.record_id, "present": False, "s": time.process_time() - t0, "failed": 1, **zero,
                **{f"bare_{k}": v for k, v in zero.items()}}
    dt = time.process_time() - t0
    ev = m.flutter
    row = m.record_row
    t = syn.truth
    _, qrs_t, qt_t = synthetic_reading_intervals(t.pr_ms, t.qrs_ms, t.qt_ms, paced=syn.params.pacing != "none")
    out = {"id": syn.record_id, "present": bool(ev is not None and ev.present), "s": dt, "failed": 0}
    for k in ("autocorr", "autocorr_2x", "cycle_ms", "raw_cycle_ms", "predicted", "slope_ratio",
              "slope_ratio_cancelled", "cancelled", "locked_ratio", "locked_periodicity"):
        out[k] = getattr(ev, k) if ev is not None else None
    # the context as the chain builds it: the record's report (its rhythm named) normalised through the knowledge
    norm = KB.normalise(list(syn.statements), syn.report)
    ctx = GroundingContext(record_id=syn.record_id, source="synthetic", ecg_path=syn.record_id, report=syn.report,
                           statement_ids=list(norm.statement_ids), unmapped_statements=list(norm.unmapped),
                           record=row, beats=m.beats, report_p_waves=report_p_waves(KB, norm.statement_ids),
                           report_flutter=report_flutter(KB, norm.statement_ids))
    t_truth = _t_truth_mv(syn)
    out.update(_offs(ctx, row, syn, qrs_t, qt_t, t_truth))
    # the same without the report (features alone: a source whose report names no rhythm)
    bare = GroundingContext(record_id=syn.record_id, source="synthetic", ecg_path=syn.record_id, report="",
                            statement_ids=[], unmapped_statements=[], record=row, beats=m.beats)
    out.update({f"bare_{k}": v for k, v in _offs(bare, row, syn, qrs_t, qt_t, t_truth).items()})
    return out


def _offs(ctx: GroundingContext, row: dict, syn, qrs_t: float, qt_t: float, t_truth: np.ndarray) -> dict:
    """Citable QRS / QT / ST / T-form values and those off the truth, as ``ctx`` lets them be cited."""
    out: dict = {}
    for key, truth in (("qrs", qrs_t), ("qt", qt_t)):
        v = row[f"{key}_ms"]
        cited = v is not None and ctx.citable(f"{key}_ms")
        out[f"{key}_cited"] = int(cited)
        out[f"{key}_err"] = (v - truth) if v is not None else None
        out[f"{key}_off"] = int(cited and abs(v - truth) > TOLERANCE_MS[key])
    st_truth = syn.beats.group_by("lead").agg(pl.col("st_j60_mv").median())
    st_by_lead = dict(zip(st_truth["lead"].to_list(), st_truth["st_j60_mv"].to_list()))
    st_cited = st_off = t_cited = t_off = 0
    for i, lead in enumerate(LEADS):
        if ctx.citable("st_j_mv", lead):
            v = ctx.lead_value(lead, "st_j_mv")
            if v is not None:
                st_cited += 1
                st_off += int(abs(v - (st_by_lead.get(lead) or 0.0)) > ST_OFF_MV)
        if ctx.citable("t_form", lead):
            f = ctx.lead_value(lead, "t_form")
            if f is not None:
                t_cited += 1
                t_off += int(_t_form_off(f, t_truth[i]))
    out.update(st_cited=st_cited, st_off=st_off, t_cited=t_cited, t_off=t_off)
    return out


def grid(seeds: int, negatives: int):
    """(group, label, SynthRecord) for every record of the grid."""
    i = 0
    for s in range(seeds):
        for cycle in CYCLES_MS:
            for f_mv in F_WAVES_MV:
                for block in BLOCKS:
                    for wide in (False, True):
                        for noisy in (False, True):
                            rng = np.random.default_rng(10_000 + i)
                            p = flutter_params(rng, cycle, f_mv, block, wide, noisy)
                            rid = f"fl_{block.replace(':', 'to')}_{cycle:.0f}_{f_mv}_{'w' if wide else 'n'}{'N' if noisy else ''}_{s}"
                            yield ("flutter", block, f_mv, generate_record(p, 10_000 + i, rid))
                            i += 1
    for kind in NEGATIVE_CLASSES:
        for s in range(negatives):
            rng = np.random.default_rng(20_000 + i)
            yield ("negative", kind, None, generate_record(negative_params(rng, kind), 20_000 + i, f"{kind}_{s}"))
            i += 1


def _pct(a: int, b: int) -> str:
    return f"{100.0 * a / b:5.1f}" if b else "    -"


def print_table(rows: list[dict]) -> None:
    def line(label: str, rs: list[dict]) -> None:
        n = len(rs)
        found = sum(r["present"] for r in rs)
        s = {k: sum(r[k] for r in rs) for k in ("qrs_cited", "qrs_off", "qt_cited", "qt_off", "st_cited", "st_off",
                                              "t_cited", "t_off")}
        failed = sum(r.get("failed", 0) for r in rs)
        label = f"{label} ({failed} failed)" if failed else label
        print(f"{label:<22} {n:4d} {found:5d} {_pct(found, n)}%  QRS {s['qrs_off']:2d}/{s['qrs_cited']:<4d} "
              f"({_pct(s['qrs_cited'], n)}%)  QT {s['qt_off']:2d}/{s['qt_cited']:<4d} ({_pct(s['qt_cited'], n)}%)  "
              f"ST {s['st_off']:3d}/{s['st_cited']:<5d} T-form {s['t_off']:3d}/{s['t_cited']:<5d}")

    print(f"{'group':<22} {'n':>4} {'found':>5} {'rate':>6}   citable values off / cited (coverage)")
    pos = [r for r in rows if r["group"] == "flutter"]
    for block in BLOCKS:
        line(f"flutter {block}", [r for r in pos if r["label"] == block])
        for f_mv in F_WAVES_MV:
            line(f"  F {f_mv} mV", [r for r in pos if r["label"] == block and r["f_mv"] == f_mv])
    line("flutter, all", pos)
    neg = [r for r in rows if r["group"] == "negative"]
    for kind in NEGATIVE_CLASSES:
        line(f"no flutter: {kind}", [r for r in neg if r["label"] == kind])
    line("no flutter, all", neg)
    print("\nwithout the report (features alone): citable values off / cited")
    for label, rs in [(f"flutter {b}", [r for r in pos if r["label"] == b]) for b in BLOCKS] + [("no flutter", neg)]:
        s = {k: sum(r[f"bare_{k}"] for r in rs) for k in ("qrs_cited", "qrs_off", "qt_cited", "qt_off", "st_cited",
                                                         "st_off", "t_cited", "t_off")}
        print(f"{label:<22} QRS {s['qrs_off']:2d}/{s['qrs_cited']:<4d} QT {s['qt_off']:2d}/{s['qt_cited']:<4d} "
              f"ST {s['st_off']:3d}/{s['st_cited']:<5d} T-form {s['t_off']:3d}/{s['t_cited']:<5d}")


def print_margins(rows: list[dict]) -> None:
    """Each detection statistic's range on found flutter, missed flutter and negatives, beside its threshold."""
    from features import flutter as ff  # noqa: PLC0415

    def q(vals: list[float]) -> str:
        v = np.array([x for x in vals if x is not None and np.isfinite(x)])
        if not v.size:
            return "-"
        return f"min {v.min():.3f} p5 {np.percentile(v, 5):.3f} p95 {np.percentile(v, 95):.3f} max {v.max():.3f}"

    groups = {"flutter variable": [r for r in rows if r["group"] == "flutter" and r["label"] == "variable"],
              "flutter wandering": [r for r in rows if r["group"] == "flutter" and r["label"] == "wandering"],
              "flutter fixed": [r for r in rows if r["group"] == "flutter" and ":" in r["label"]],
              "negatives": [r for r in rows if r["group"] == "negative"]}
    stats = (("autocorr", f">= {ff.FLUTTER_AUTOCORR_MIN} (clear {ff.CLEAR_AUTOCORR})"),
             ("autocorr_2x", f">= {ff.FLUTTER_AUTOCORR_2X_MIN} (clear {ff.CLEAR_AUTOCORR_2X})"),
             ("cycle_gap_ms", f"<= {ff.CYCLE_AGREE_MS}"),
             ("predicted", f">= {ff.F_TRAIN_PREDICTED_MIN} (cancel)"),
             ("locked_periodicity", f">= {ff.LOCKED_PERIODICITY_MIN} (fixed block)"))
    for r in rows:
        c, rc = r.get("cycle_ms"), r.get("raw_cycle_ms")
        r["cycle_gap_ms"] = abs(c - rc) if c is not None and rc is not None else None
    for key, thr in stats:
        print(f"{key} {thr}")
        for g, rs in groups.items():
            print(f"  {g:<17} {q([r.get(key) for r in rs])}")


LOCKED_MARGIN = 0.1  # the locked-flutter threshold: the largest negative's periodicity in the fit half plus this


def print_locked_cv(rows: list[dict]) -> None:
    """``features.flutter.LOCKED_PERIODICITY_MIN`` derived by halves (even / odd records of the grid): in each
    half, the largest periodicity a negative reaches plus LOCKED_MARGIN; scored on the other half (fixed-block
    flutter found, negatives found)."""
    from features import flutter as ff  # noqa: PLC0415

    def per(r: dict) -> float | None:
        v = r.get("locked_periodicity")
        return None if v is None or not np.isfinite(v) else float(v)

    print(f"locked periodicity >= {ff.LOCKED_PERIODICITY_MIN} (fixed block), cross-validated by halves:")
    for fit in (0, 1):
        half = [r for i, r in enumerate(rows) if i % 2 == fit]
        test = [r for i, r in enumerate(rows) if i % 2 != fit]
        neg = [per(r) for r in half if r["group"] == "negative" and per(r) is not None]
        thr = (max(neg) if neg else 0.0) + LOCKED_MARGIN
        pos_t = [r for r in test if r["group"] == "flutter" and ":" in r["label"]]
        neg_t = [r for r in test if r["group"] == "negative"]
        found = sum(1 for r in pos_t if per(r) is not None and per(r) >= thr)
        false = sum(1 for r in neg_t if per(r) is not None and per(r) >= thr)
        print(f"  fit on half {fit}: negatives' max {max(neg) if neg else float('nan'):.3f} -> threshold {thr:.3f}; "
              f"other half: fixed-block flutter {found}/{len(pos_t)} reach it, negatives {false}/{len(neg_t)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=1, help="seeds per point of the flutter grid (500 points)")
    ap.add_argument("--negatives", type=int, default=20, help="records per negative class")
    ap.add_argument("--csv", type=Path, default=None, help="write every record's row here")
    args = ap.parse_args()
    rows = []
    for group, label, f_mv, syn in grid(args.seeds, args.negatives):
        r = evaluate(syn)
        r.update(group=group, label=label, f_mv=f_mv)
        rows.append(r)
    print_table(rows)
    print()
    print_margins(rows)
    print_locked_cv(rows)
    print(f"\nmeasure_record: {len(rows) / sum(r['s'] for r in rows):.1f} records/s (process time)")
    if args.csv:
        with args.csv.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
            w.writeheader()
            w.writerows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
