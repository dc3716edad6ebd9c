"""Fit the per-lead P-onset model (``features.lead_edges.POnsetFit``) on expert P onsets (LUDB).

    python -m features.fit_p_onset --root ../shared/data/ludb [--out features/p_onset_fit.json]

For every record and good lead: the model's inputs, measured on the median beat exactly as the delineator
measures them (``GlobalFiducials.lead_p_on_features``: the rule's onset and the lead's 25% / 50% rise
times, ms from the global P onset), and the target: the median over the record's beats of the expert's
P onset in that lead minus the beat's global P onset (ms), each expert P paired with the beat whose global
P peak lies within MATCH_MS of the expert's P peak. Weighted least squares (weight sqrt(min(n, 12)) for a
record-lead with n paired beats: more beats, a surer target, but no long record dominates) gives the
"all" fit (shipped) and, for the cross-validated benchmark, one fit per fold without that fold's records
("fold0" ... "fold4"; the source's ids, in its order, dealt into CV_FOLDS folds: ``cv_folds``). Prints
each fit and how far its onsets lie from the experts' on the records it was not fitted on.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from features.lead_edges import P_ONSET_FIT_FEATURES, P_ONSET_FIT_PATH, POnsetFit
from features.measure import delineate_record
from pipeline.record import LEADS, RecordError
from pipeline.sources import open_source

MATCH_MS = 60.0     # an expert P and a beat's global P are the same P when their peaks are this close
MAX_WEIGHT_BEATS = 12
CV_FOLDS = 5        # 2 folds would fit on half of LUDB's 27 records with P waves: too few for a stable fit


def cv_folds(ids: list[str]) -> dict[str, int]:
    """Cross-validation fold of each record id: its position in ``ids`` (the source's order) mod CV_FOLDS."""
    return {rid: i % CV_FOLDS for i, rid in enumerate(ids)}


def fold_splits(rows: list[dict], ids: list[str]):
    """("all", every row, none held out), then ("fold<k>", the rows outside fold k, the rows of fold k): the
    shipped fit and the cross-validated ones, over rows keyed by ``record``."""
    fold = cv_folds(ids)
    for name, k in {"all": None, **{f"fold{k}": k for k in range(CV_FOLDS)}}.items():
        yield name, [r for r in rows if fold[r["record"]] != k], [r for r in rows if fold[r["record"]] == k]


def record_lead_targets(source: str, root: Path) -> tuple[list[dict], list[str]]:
    """Per record and good lead with paired expert P onsets: id, lead, inputs (ms), target (ms), n; and
    every id of the source (the folds are dealt over all of them)."""
    src = open_source(source, root)
    rows = []
    ids = list(src.ids())
    for rid in ids:
        rec = src.read(rid)
        ref = rec.meta.reference
        if ref is None or not ref.waves:
            continue
        try:  # the inputs do not depend on a fit: none is applied (none need exist yet)
            d = delineate_record(rec, p_onset_fit_name="none")
        except RecordError as exc:
            print(f"  {rid}: skipped ({exc})", file=sys.stderr)
            continue
        fid, to_ms = d.fid, 1000.0 / d.fs_hz
        if fid.lead_p_on_features is None:
            continue  # no median-beat P (AF, flutter, too few beats): nothing the model would change
        has_p = np.isfinite(fid.p_on) & np.isfinite(fid.p_peak)
        p_on_ms, p_peak_ms = fid.p_on[has_p] * to_ms, fid.p_peak[has_p] * to_ms
        for li, lead in enumerate(LEADS):
            x = fid.lead_p_on_features[li]
            if not (d.good[li] and np.isfinite(x).all()) or not p_on_ms.size:
                continue
            diffs = []
            for w in ref.waves:
                if w.lead != lead or w.wave != "P" or w.on_ms is None or w.peak_ms is None:
                    continue
                k = int(np.argmin(np.abs(p_peak_ms - w.peak_ms)))
                if abs(p_peak_ms[k] - w.peak_ms) <= MATCH_MS:
                    diffs.append(w.on_ms - p_on_ms[k])
            if diffs:
                rows.append({"record": rid, "lead": lead, "x": [float(v) for v in x],
                             "target_ms": float(np.median(diffs)), "n": len(diffs)})
    return rows, ids


def _arrays(rows: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs (ms), targets (ms) and weights (sqrt(min(n, MAX_WEIGHT_BEATS))) of ``rows``."""
    x = np.array([r["x"] for r in rows])
    y = np.array([r["target_ms"] for r in rows])
    return x, y, np.sqrt(np.minimum([r["n"] for r in rows], MAX_WEIGHT_BEATS))


def fit(rows: list[dict]) -> tuple[list[float], float]:
    """Weighted least squares: (coefficients, intercept_ms)."""
    x, y, w = _arrays(rows)
    a = np.column_stack([x, np.ones(len(rows))]) * w[:, None]
    beta = np.linalg.lstsq(a, y * w, rcond=None)[0]
    return [round(float(b), 4) for b in beta[:-1]], round(float(beta[-1]), 3)


def weighted_rms(rows: list[dict], coef: list[float] | None, intercept: float = 0.0) -> float:
    """RMS (ms, same weights as the fit) of target - prediction; ``coef`` None: the rule's onset alone."""
    x, y, w = _arrays(rows)
    pred = x[:, 0] if coef is None else POnsetFit(tuple(coef), intercept).onset_ms(x)
    return float(np.sqrt(np.sum(w ** 2 * (y - pred) ** 2) / np.sum(w ** 2)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", default="ludb")
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "ludb"))
    ap.add_argument("--out", default=str(P_ONSET_FIT_PATH))
    args = ap.parse_args(argv)
    rows, ids = record_lead_targets(args.source, Path(args.root))
    if not rows:
        raise SystemExit(f"no record with expert P onsets under {args.root}")
    fits = {}
    for name, part, held_out in fold_splits(rows, ids):
        coef, b = fit(part)
        fits[name] = {"coef": coef, "intercept_ms": b, "records": sorted({r["record"] for r in part}, key=ids.index),
                      "record_leads": len(part)}
        terms = " ".join(f"{c:+.3f}*{f}" for c, f in zip(coef, P_ONSET_FIT_FEATURES))
        line = (f"{name:5s}: onset_ms = {b:+.2f} {terms}  ({len(part)} record-leads; weighted RMS to the experts"
                f" {weighted_rms(part, coef, b):.1f} ms")
        if held_out:
            line += (f"; on the {len(held_out)} held-out record-leads {weighted_rms(held_out, coef, b):.1f} ms,"
                     f" rule alone {weighted_rms(held_out, None):.1f}")
        print(line + ")")
    doc = {"model": "lead P onset - global P onset (ms) = intercept_ms + sum(coef * features); "
                    "see features.lead_edges.POnsetFit",
           "features": list(P_ONSET_FIT_FEATURES),
           "fitted_by": f"python -m features.fit_p_onset --source {args.source} --root <{args.source} root>",
           "targets": "median per record-lead of expert P onset - global P onset (ms)",
           "fits": fits}
    text = json.dumps(doc, indent=1)  # lists of numbers / ids on one line each
    text = re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    Path(args.out).write_text(text + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
