"""Self-consistency of the citable record intervals across windows of the same real recording, where no expert
has annotated anything (PTB-XL, CinC 2021 Georgia and Ningbo, PTB), with LUDB beside them as a reference.

    .venv/bin/python benchmarks/consistency.py [--shared ../shared] [--window-s 6] [--step-s 1] [--ptb-window-s 10]

A recording's PR, QRS and QT do not change within ten seconds by more than a few milliseconds (the QT follows
the rate, ~1-2 ms per 10 ms of RR): two windows of the same recording that both let a value be cited yet read
it more than its tolerance apart (PR 20, QRS 20, QT 30 ms, the tolerances of ``benchmarks/cited_truth.py``)
mean at least one of them cites a wrong number. This is a lower bound on the misses on records nobody
annotated: a value wrong the same way in every window is not seen here (LUDB's experts see those).

Each window is read by the source itself (``window_start_s`` / ``window_s``) and measured with
``features.measure.measure_record``; a value is citable where its confidence is at least
``features.schema.CONFIDENCE_MIN``. Prints, per source, the record intervals citable in at least two
windows, how many of them spread beyond the tolerance, and each such record with its windows' readings.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _v in ("POLARS_MAX_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from features.measure import measure_record  # noqa: E402
from features.schema import CONFIDENCE_MIN  # noqa: E402
from pipeline.sources import open_source  # noqa: E402

TOLERANCE_MS = {"pr_ms": 20.0, "qrs_ms": 20.0, "qt_ms": 30.0}
CONF = {"pr_ms": "pr_conf", "qrs_ms": "qrs_conf", "qt_ms": "qt_conf"}


def sources(shared: Path) -> list[tuple[str, str, Path, float]]:
    """(label, source name, root, recording length s) of the shared recordings."""
    data = shared / "data"
    return [("LUDB (experts' reference)", "ludb", data / "ludb", 10.0),
            ("PTB-XL", "ptbxl", data / "ptbxl", 10.0),
            ("CinC 2021 (Georgia, Ningbo)", "wfdb", data / "cinc2021", 10.0),
            ("PTB (38 s, 1000 Hz)", "wfdb", data / "ptbdb", 38.4)]


def window_starts(length_s: float, window_s: float, step_s: float) -> list[float]:
    n = int(np.floor((length_s - window_s) / step_s + 1e-9)) + 1
    return [round(i * step_s, 3) for i in range(max(n, 1))]


def readings(name: str, root: Path, starts: list[float], window_s: float) -> dict[str, list[dict]]:
    """record id -> one dict per window: start s and each interval's value (None where not citable)."""
    out: dict[str, list[dict]] = {}
    for start in starts:
        src = open_source(name, root, window_s=window_s, window_start_s=start)
        for rid in src.ids():
            try:
                row = measure_record(src.read(rid)).record_row
            except Exception as exc:  # noqa: BLE001 - a record that fails is reported, the rest go on
                print(f"  {rid} @ {start:g} s: {type(exc).__name__}: {exc}")
                continue
            w = {"start_s": start}
            for col, conf in CONF.items():
                v, c = row.get(col), row.get(conf)
                w[col] = v if v is not None and c is not None and c >= CONFIDENCE_MIN else None
            out.setdefault(rid, []).append(w)
    return out


def spreads(per_record: dict[str, list[dict]]) -> tuple[dict, list[tuple[str, str, list]]]:
    """Per interval: (record intervals citable in >= 2 windows, those spread beyond the tolerance), and the
    offending (record, interval, readings)."""
    counts = {c: [0, 0] for c in TOLERANCE_MS}
    bad = []
    for rid, ws in sorted(per_record.items()):
        for col, tol in TOLERANCE_MS.items():
            vals = [(w["start_s"], w[col]) for w in ws if w[col] is not None]
            if len(vals) < 2:
                continue
            counts[col][0] += 1
            x = np.array([v for _, v in vals])
            if x.max() - x.min() > tol:
                counts[col][1] += 1
                bad.append((rid, col, [(s, round(v)) for s, v in [(w["start_s"], w[col]) for w in ws]
                                       if v is not None] + [(w["start_s"], None) for w in ws if w[col] is None]))
    return counts, bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    ap.add_argument("--window-s", type=float, default=6.0, help="window length for the 10 s recordings")
    ap.add_argument("--step-s", type=float, default=1.0)
    ap.add_argument("--ptb-window-s", type=float, default=10.0, help="window length for the 38 s PTB recording")
    args = ap.parse_args()
    total = {c: [0, 0] for c in TOLERANCE_MS}
    print("| source | windows | PR citable in >= 2 / spread > 20 | QRS ... / > 20 | QT ... / > 30 | s |")
    print("|---|---:|---:|---:|---:|---:|")
    offending = []
    for label, name, root, length_s in sources(args.shared):
        wlen = args.ptb_window_s if length_s > 20 else args.window_s
        step = 4.0 if length_s > 20 else args.step_s
        starts = window_starts(length_s, wlen, step)
        t0 = time.perf_counter()
        counts, bad = spreads(readings(name, root, starts, wlen))
        dt = time.perf_counter() - t0
        cells = " | ".join(f"{n} / {k}" for n, k in counts.values())
        print(f"| {label} | {len(starts)} × {wlen:g} s | {cells} | {dt:.0f} |")
        offending += [(label, *b) for b in bad]
        if name != "ludb":
            for c in TOLERANCE_MS:
                total[c][0] += counts[c][0]
                total[c][1] += counts[c][1]
    n = sum(v[0] for v in total.values())
    k = sum(v[1] for v in total.values())
    print(f"\nrecordings without experts: {k} of {n} citable record intervals spread beyond tolerance across windows")
    if offending:
        print("\n| source | record | interval | citable readings (window start s: ms; None = not citable) |")
        print("|---|---|---|---|")
        for label, rid, col, vals in offending:
            shown = ", ".join(f"{s:g}: {v}" for s, v in sorted(vals, key=lambda t: t[0]))
            print(f"| {label} | {rid} | {col} | {shown} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
