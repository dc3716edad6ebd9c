"""Values derived from the beats table: what the knowledge criteria, the prompts and the writer need beyond the
measured columns, computed in one place from the fiducials and amplitudes ``features/`` already writes.

Nothing here looks at the signal. A value that would need it (a notch inside the R wave, the terminal phase of a
biphasic P in V1, non-conducted P waves) is left None - unknown - never guessed.

Per lead (representative value over the lead's normal beats, like ``pipeline.context.lead_value``):

- ``r_peak_time_ms``: QRS onset -> peak of the lead's last R (R' when it is the lead's largest deflection). Only
  where that R is the lead's main deflection, because ``r_peak_ms`` marks the largest |deflection|, which is an S
  wave in leads such as V1;
- ``qrs_polarity``: positive | negative | equiphasic, from the tallest R (or R') against the deepest Q or S. A
  ratio within the lead, so it survives a per-lead gain and stays citable on records whose millivolts are not;
- ``qrs_net_mv``: the tallest R minus the deepest Q or S depth, mV;
- ``q_wave_present`` / ``r_prime_present`` / ``s_wave_present``: whether the lead's usual QRS pattern (the most
  common ``qrs_morphology`` of its normal beats) has that wave. The amplitude columns keep a value as soon as one
  beat has the wave; the pattern says whether the lead shows it.

Per record:

- ectopic beats (``ectopic_beats``): every premature beat with its ordinal, time, coupling interval, the RR after
  it, its QRS duration, whether a P wave precedes it, and its origin: *ventricular* (a wide QRS unlike the
  dominant one) or *supraventricular* (the dominant QRS), never both; counts ``n_ventricular_premature``,
  ``n_supraventricular_premature``;
- ``ectopic_pattern``: bigeminy | trigeminy | couplet | isolated | none, from the sequence of beat classes
  (a pattern, not a count: bigeminy needs 3 consecutive normal-premature pairs);
- ``n_long_pauses``: RR intervals of at least ``pause_rr_ratio`` times the basic cycle that no premature beat
  explains (where a dropped beat would show);
- ``pr_sd_ms``: beat-to-beat SD of the PR interval (AV dissociation makes it large);
- ``rr_range_ms``: longest minus shortest basic cycle (RR between two normal beats);
- ``p_morphology_count``: distinct P-wave forms in lead II, each seen in at least two beats;
- ``ptf_v1_depth_mv`` / ``ptf_v1_ms``: depth and duration of a wholly negative P in V1 (its terminal phase is
  the whole wave); None for a biphasic or positive P, whose terminal phase needs the signal.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import polars as pl

from pipeline.record import LEADS

# Derived columns, by scope. Criteria may name them like measurement columns (pipeline.knowledge).
DERIVED_LEAD_COLUMNS: dict[str, type] = {"r_peak_time_ms": float, "qrs_polarity": str, "qrs_net_mv": float,
                                         "q_wave_present": bool, "r_prime_present": bool, "s_wave_present": bool}
DERIVED_RECORD_COLUMNS: dict[str, type] = {
    "n_ventricular_premature": int, "n_supraventricular_premature": int, "ectopic_pattern": str,
    "n_long_pauses": int, "pr_sd_ms": float, "p_morphology_count": int, "ptf_v1_depth_mv": float,
    "ptf_v1_ms": float, "dominant_qrs_ms": float, "basic_rr_ms": float, "rr_range_ms": float,
}
# A polarity is 'equiphasic' when the net deflection is under this share of the peak-to-peak: a ratio that
# defines a word, not a clinical threshold.
_EQUIPHASIC_SHARE = 0.2
# Two QRS durations of one record belong to the same conduction when they differ by less than this (ms): about
# the beat-to-beat scatter of the QRS end (README: SD 11.8 ms against LUDB's experts).
_SAME_QRS_MS = 20.0


@dataclass(frozen=True)
class EctopicBeat:
    """One premature beat. Times in ms from record start; ``ordinal`` counts beats from 1."""

    beat: int
    ordinal: int
    time_ms: float | None          # QRS onset
    coupling_ms: float | None      # RR from the previous beat
    next_rr_ms: float | None       # RR to the next beat (the pause after it)
    qrs_ms: float | None
    p_before: bool                 # a P wave was measured before it
    origin: str                    # ventricular | supraventricular | unclassified
    compensatory: bool | None      # coupling + pause within 10 % of two basic cycles


@dataclass
class DerivedRecord:
    values: dict[str, object] = field(default_factory=dict)
    ectopic: list[EctopicBeat] = field(default_factory=list)
    beat_classes: list[str] = field(default_factory=list)   # consensus class per beat, in order
    lead_values: dict[str, dict[str, object]] = field(default_factory=dict)


def _upper_median(values: list[float]) -> float | None:
    vals = sorted(v for v in values if v is not None and v == v)
    return vals[len(vals) // 2] if vals else None


def _num(v) -> float | None:
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


def beat_polarity(r: float | None, r_prime: float | None, q: float | None, s: float | None) -> tuple[str, float] | None:
    """(polarity word, net mV) of one QRS from its named deflections; None when nothing is named."""
    pos = max(_num(r) or 0.0, _num(r_prime) or 0.0)
    neg = min(_num(q) or 0.0, _num(s) or 0.0)
    if pos == 0.0 and neg == 0.0:
        return None
    net = pos + neg
    span = pos - neg
    if abs(net) < _EQUIPHASIC_SHARE * span:
        return "equiphasic", net
    return ("positive" if net > 0 else "negative"), net


def beat_r_peak_time(row: dict) -> float | None:
    """QRS onset -> R peak (ms) of one beat in one lead, when the marked main deflection is that lead's last R."""
    on, peak = _num(row.get("qrs_on_ms")), _num(row.get("r_peak_ms"))
    r, rp = _num(row.get("r_amp_mv")), _num(row.get("r_prime_amp_mv"))
    q, s = _num(row.get("q_amp_mv")), _num(row.get("s_amp_mv"))
    if on is None or peak is None or r is None or peak < on:
        return None
    deepest = min(q or 0.0, s or 0.0)
    if rp is not None:
        # the peak is the R' only when the R' is the tallest deflection; an R taller than a later R' leaves the
        # conventional R-peak time (to the last R) unknown
        return peak - on if rp >= r and rp >= -deepest else None
    return peak - on if r >= -deepest else None


def _beat_frame(ctx) -> pl.DataFrame:
    b = ctx.beats
    if b is None or b.height == 0:
        return b
    gated = ctx.gated_leads
    return b.filter(~pl.col("lead").is_in(list(gated))) if gated else b


def compute(ctx) -> DerivedRecord:
    """Every derived value of ``ctx`` (a ``GroundingContext``). Cached on the context per beats frame."""
    cached = ctx.__dict__.get("_derived_cache")
    if cached is not None and cached[0] is ctx.beats:
        return cached[1]
    out = _compute(ctx)
    ctx.__dict__["_derived_cache"] = (ctx.beats, out)
    return out


def _compute(ctx) -> DerivedRecord:
    from pipeline.cutoffs import cutoff

    out = DerivedRecord()
    b = _beat_frame(ctx)
    if b is None or b.height == 0:
        return out
    rows_by_beat: dict[int, list[dict]] = {}
    per_lead: dict[str, list[dict]] = {}
    for row in b.iter_rows(named=True):
        rows_by_beat.setdefault(row["beat"], []).append(row)
        per_lead.setdefault(row["lead"], []).append(row)
    beats = sorted(rows_by_beat)

    # --- per beat, over leads
    cls: dict[int, str] = {}
    qrs: dict[int, float | None] = {}
    rr: dict[int, float | None] = {}
    onset: dict[int, float | None] = {}
    p_before: dict[int, bool] = {}
    pr: dict[int, float | None] = {}
    for k in beats:
        rows = rows_by_beat[k]
        labels = [r["beat_class"] for r in rows if r.get("beat_class")]
        cls[k] = max(sorted(set(labels)), key=labels.count) if labels else "uncertain"
        qrs[k] = _upper_median([r["qrs_ms"] for r in rows])
        rr[k] = _upper_median([r["rr_ms"] for r in rows])
        onset[k] = _upper_median([r["qrs_on_ms"] for r in rows])
        with_p = [r for r in rows if r.get("p_on_ms") is not None]
        p_before[k] = len(with_p) * 2 > len(rows)
        pr[k] = _upper_median([r["pr_ms"] for r in with_p])
    out.beat_classes = [cls[k] for k in beats]

    normal = [k for k in beats if cls[k] == "normal"]
    dominant_qrs = _upper_median([qrs[k] for k in normal]) if normal else None
    # the basic cycle: RR of normal beats that follow a normal beat (no post-ectopic pause in it)
    basic = [rr[k] for i, k in enumerate(beats) if i and cls[k] == "normal" and cls[beats[i - 1]] == "normal"
             and rr[k] is not None]
    basic_rr = _upper_median(basic) or _upper_median([rr[k] for k in beats])
    wide = cutoff("qrs_wide_ms")

    for i, k in enumerate(beats):
        if cls[k] != "premature":
            continue
        q = qrs[k]
        if q is None or dominant_qrs is None:
            origin = "unclassified"
        elif q >= wide and (dominant_qrs < wide or q - dominant_qrs >= _SAME_QRS_MS):
            origin = "ventricular"   # wide and unlike the conducted beats
        elif abs(q - dominant_qrs) < _SAME_QRS_MS:
            origin = "supraventricular"  # conducted through the same pathway as the dominant beats
        else:
            origin = "unclassified"
        nxt = rr[beats[i + 1]] if i + 1 < len(beats) else None
        comp = None
        if rr[k] is not None and nxt is not None and basic_rr:
            comp = abs(rr[k] + nxt - 2.0 * basic_rr) <= 0.1 * 2.0 * basic_rr
        out.ectopic.append(EctopicBeat(beat=k, ordinal=i + 1, time_ms=onset[k], coupling_ms=rr[k], next_rr_ms=nxt,
                                       qrs_ms=q, p_before=p_before[k], origin=origin, compensatory=comp))

    v = out.values
    v["dominant_qrs_ms"] = dominant_qrs
    v["basic_rr_ms"] = basic_rr
    v["n_ventricular_premature"] = sum(e.origin == "ventricular" for e in out.ectopic)
    v["n_supraventricular_premature"] = sum(e.origin == "supraventricular" for e in out.ectopic)
    v["ectopic_pattern"] = ectopic_pattern(out.beat_classes)
    ratio = cutoff("pause_rr_ratio")
    after_ectopic = {beats[i + 1] for i, k in enumerate(beats) if cls[k] == "premature" and i + 1 < len(beats)}
    v["n_long_pauses"] = sum(1 for k in beats if k not in after_ectopic and cls[k] != "premature"
                             and rr[k] is not None and basic_rr and rr[k] >= ratio * basic_rr)
    v["rr_range_ms"] = (max(basic) - min(basic)) if len([x for x in basic if x is not None]) >= 3 else None
    prs = [pr[k] for k in beats if pr[k] is not None]
    v["pr_sd_ms"] = _sd(prs) if len(prs) >= 3 else None
    v["p_morphology_count"] = _p_morphologies(per_lead.get("II", []))
    depth, dur = _ptf_v1(per_lead.get("V1", []))
    v["ptf_v1_depth_mv"], v["ptf_v1_ms"] = depth, dur

    # --- per lead
    for lead, rows in per_lead.items():
        use = [r for r in rows if r.get("beat_class") in (None, "normal")] or rows
        times = [beat_r_peak_time(r) for r in use]
        pols = [beat_polarity(r.get("r_amp_mv"), r.get("r_prime_amp_mv"), r.get("q_amp_mv"), r.get("s_amp_mv"))
                for r in use]
        words = [p[0] for p in pols if p is not None]
        forms = [r.get("qrs_morphology") for r in use if r.get("qrs_morphology")]
        form = max(sorted(set(forms)), key=forms.count) if forms else None
        out.lead_values[lead] = {
            "r_peak_time_ms": _upper_median(times),
            "qrs_polarity": max(sorted(set(words)), key=words.count) if words else None,
            "qrs_net_mv": _upper_median([p[1] for p in pols if p is not None]),
            "q_wave_present": None if form is None else form[0] in "qQ",
            "r_prime_present": None if form is None else "'" in form,
            "s_wave_present": None if form is None else (form != "QS" and ("s" in form or "S" in form)),
        }
    return out


def _sd(xs: list[float]) -> float:
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def ectopic_pattern(classes: list[str]) -> str:
    """bigeminy | trigeminy | couplet | isolated | none from the beat classes in order.

    Bigeminy: at least 3 consecutive (normal, premature) pairs; trigeminy: at least 3 consecutive (normal, normal,
    premature) groups; couplet: two premature beats in a row; isolated: premature beats in none of these."""
    seq = "".join("E" if c == "premature" else "N" if c == "normal" else "?" for c in classes)
    if "E" not in seq:
        return "none"
    if "NENENE" in seq:
        return "bigeminy"
    if "NNENNENNE" in seq:
        return "trigeminy"
    if "EE" in seq:
        return "couplet"
    return "isolated"


def _p_morphologies(rows: list[dict]) -> int | None:
    """Distinct P forms (positive / negative / biphasic / flat) in lead II over beats with a P, each counted
    when at least two beats show it (one odd beat is more likely a measurement than a focus)."""
    forms = [r.get("p_form") for r in rows if r.get("p_form") not in (None, "absent")]
    if len(forms) < 3:
        return None
    return sum(1 for f in set(forms) if forms.count(f) >= 2)


def _ptf_v1(rows: list[dict]) -> tuple[float | None, float | None]:
    """(depth mV, duration ms) of the terminal negative P in V1 when V1's P is wholly negative in most beats."""
    use = [r for r in rows if r.get("beat_class") in (None, "normal") and r.get("p_form") not in (None, "absent")]
    neg = [r for r in use if r.get("p_form") == "negative"]
    if not use or len(neg) * 2 <= len(use):
        return None, None
    return _upper_median([r.get("p_amp_mv") for r in neg]), _upper_median([r.get("p_ms") for r in neg])


# --- access ----------------------------------------------------------------------------------------------

def record_value(ctx, column: str):
    """A record-level value: the records row's column, else a derived record value (None when unknown)."""
    if column in DERIVED_RECORD_COLUMNS:
        return compute(ctx).values.get(column)
    v = (ctx.record or {}).get(column)
    return None if isinstance(v, float) and not math.isfinite(v) else v


# A wave's own columns count for a lead only when the lead's usual QRS pattern has that wave: one beat with a q
# (a PVC, a noisy beat) must not give a lead a Q wave.
_WAVE_OF = {"q_ms": "q_wave_present", "q_amp_mv": "q_wave_present", "s_ms": "s_wave_present",
            "s_amp_mv": "s_wave_present", "r_prime_amp_mv": "r_prime_present"}


def lead_value(ctx, lead: str, column: str):
    """A lead's representative value: the beats column (``GroundingContext.lead_value``) or a derived lead
    value; None for a gated lead or an unknown value, and for a Q, S or R' column when the lead's usual QRS
    pattern has no such wave."""
    if column in DERIVED_LEAD_COLUMNS:
        if lead in ctx.gated_leads:
            return None
        return compute(ctx).lead_values.get(lead, {}).get(column)
    wave = _WAVE_OF.get(column)
    if wave is not None and compute(ctx).lead_values.get(lead, {}).get(wave) is False:
        return None
    return ctx.lead_value(lead, column)


def is_lead_column(column: str) -> bool:
    from features.schema import BEATS_SCHEMA

    return column in DERIVED_LEAD_COLUMNS or (column in BEATS_SCHEMA and column not in ("record_id", "lead", "beat"))


def ectopic_beats(ctx) -> list[EctopicBeat]:
    return list(compute(ctx).ectopic)


def measured_leads(ctx) -> list[str]:
    return [lead for lead in LEADS if lead in set(ctx.measured_leads)]
