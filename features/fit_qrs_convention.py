"""Fit the QRS reading convention (``features.qrs_edges.ReadingConvention``) on expert QRS edges (LUDB).

    python -m features.fit_qrs_convention --root ../shared/data/ludb [--out features/qrs_convention.json]

Every record is measured with the detector's own edges (``measure_record(reading_convention=False)``: the global
onset, each lead's own onset in a wide QRS, each lead's own end); each expert QRS in a lead is paired with our
beat in that lead whose main deflection lies within MATCH_MS of the expert's peak mark. The targets are the
expert's onset minus ours (unpaced beats only: a paced QRS starts after its stimulus, where the experts mark it
no earlier than we do) and the expert's end minus ours, ms. A margin is the median over the record-leads of each
record-lead's median difference (every record-lead counts once, whatever its number of beats; the median, as the
experts' marks scatter with long tails), rounded to the sample grid (2 ms at 500 Hz): "all" (shipped) and, for
the cross-validated benchmark, one per fold without that fold's records (``features.fit_p_onset.cv_folds``, the
same folds as the P-onset fit). Prints each fit and, on the records it was not fitted on, the median difference
left over.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from features.fit_p_onset import fold_splits
from features.measure import measure_record
from features.qrs_edges import QRS_CONVENTION_PATH
from pipeline.record import LEADS, RecordError
from pipeline.sources import open_source

MATCH_MS = 60.0  # an expert QRS and one of our beats are the same QRS when their peak marks are this close
GRID_MS = 2.0    # margins are whole samples at the canonical 500 Hz


def record_lead_targets(source: str, root: Path) -> tuple[list[dict], list[str]]:
    """Per record and lead with paired expert QRS: id, lead, median onset / end difference (expert - ours, ms;
    None where none paired), and every id of the source (the folds are dealt over all of them)."""
    src = open_source(source, root)
    ids = list(src.ids())
    rows = []
    for rid in ids:
        rec = src.read(rid)
        ref = rec.meta.reference
        if ref is None or not ref.waves:
            continue
        try:
            m = measure_record(rec, reading_convention=False)
        except RecordError as exc:
            print(f"  {rid}: skipped ({exc})", file=sys.stderr)
            continue
        b = m.beats
        for lead in LEADS:
            lb = b.filter(b["lead"] == lead)
            peak, on, off = (lb[c].to_numpy().astype(float) for c in ("r_peak_ms", "qrs_on_ms", "qrs_off_ms"))
            paced = (lb["beat_class"] == "paced").to_numpy()
            ok = np.isfinite(peak)
            if not ok.any():
                continue
            d_on, d_off = [], []
            for w in ref.waves:
                if w.lead != lead or w.wave != "QRS" or w.peak_ms is None:
                    continue
                k = int(np.argmin(np.where(ok, np.abs(peak - w.peak_ms), np.inf)))
                if abs(peak[k] - w.peak_ms) > MATCH_MS:
                    continue
                if w.on_ms is not None and np.isfinite(on[k]) and not paced[k]:
                    d_on.append(w.on_ms - on[k])
                if w.off_ms is not None and np.isfinite(off[k]):
                    d_off.append(w.off_ms - off[k])
            if d_on or d_off:
                rows.append({"record": rid, "lead": lead,
                             "on_ms": float(np.median(d_on)) if d_on else None,
                             "off_ms": float(np.median(d_off)) if d_off else None})
    return rows, ids


def margins(rows: list[dict]) -> tuple[float, float]:
    """(onset margin, end margin) in ms on the sample grid: how far the experts' onset lies before ours (the
    median of the record-leads' medians, sign flipped) and their end after ours."""
    on = [r["on_ms"] for r in rows if r["on_ms"] is not None]
    off = [r["off_ms"] for r in rows if r["off_ms"] is not None]

    def grid(v: float) -> float:
        return float(GRID_MS * round(v / GRID_MS))

    return grid(-float(np.median(on))), grid(float(np.median(off)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", default="ludb")
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "ludb"))
    ap.add_argument("--out", default=str(QRS_CONVENTION_PATH))
    args = ap.parse_args(argv)
    rows, ids = record_lead_targets(args.source, Path(args.root))
    if not rows:
        raise SystemExit(f"no record with expert QRS edges under {args.root}")
    fits = {}
    for name, part, held_out in fold_splits(rows, ids):
        m_on, m_off = margins(part)
        fits[name] = {"onset_margin_ms": m_on, "end_margin_ms": m_off,
                      "records": sorted({r["record"] for r in part}, key=ids.index), "record_leads": len(part)}
        line = f"{name:5s}: onset {m_on:+.0f} ms earlier, end {m_off:+.0f} ms later ({len(part)} record-leads"
        if held_out:
            on = [r["on_ms"] + m_on for r in held_out if r["on_ms"] is not None]
            off = [r["off_ms"] - m_off for r in held_out if r["off_ms"] is not None]
            line += (f"; held-out {len(held_out)}: experts - published, median onset {np.median(on):+.1f} ms, "
                     f"end {np.median(off):+.1f} ms")
        print(line + ")")
    doc = {"model": "published QRS onset = detected onset - onset_margin_ms (unpaced beats); published end = "
                    "detected end + end_margin_ms; see features.qrs_edges",
           "fitted_by": f"python -m features.fit_qrs_convention --source {args.source} --root <{args.source} root>",
           "targets": "median over record-leads of the record-lead's median expert - detected QRS onset / end (ms)",
           "fits": fits}
    text = json.dumps(doc, indent=1)
    text = re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    Path(args.out).write_text(text + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
