"""Numeric grounding: each typed claim (``pipeline.claims``) against the measurements of its own kind and lead.

``MeasurementIndex.of(ctx)`` indexes one record's measurements once (cached on the context): the record row;
per measured lead, each beats column's representative value (``pipeline.context.lead_value``: the upper median
of the normal beats, the value the writer cites) and its median over all beats; the values of premature and
paced beats; per beat, its class, its QRS span in time and its RR.

``ground_claim`` matches one claim:

- only columns of the claim's quantity (``columns_for``): "QRS duration" is ``qrs_ms`` (the record's, or a
  named lead's), never an R-wave duration; QTc is the named formula (Bazett when unnamed); a heart rate is the
  record's ventricular rate, never one beat's; amplitudes belong to the lead named;
- signed where the sign means something (ST, T, P: "depression of 0.1 mV" is -0.1), magnitudes for Q, R, S;
- within tolerance (``ValidationConfig``), and then not across a cut-off that decides one of the record's
  statements (``crosses_cutoff``: PR 194 -> "204 ms" crosses 200), unless the claim is the measured value
  rounded as written;
- never for a value the context says may not be stated (``GroundingContext.citable``: ``uncitable_value``).

Bounds ("QRS below 120 ms", "ST depression exceeding 0.1 mV in V5") are checked against the measured value;
quoted norms ("normal < 120 ms") are not claims. Counts, ordinals and beat times are matched against the beats.
Every iteration runs in a fixed order (leads in ``LEADS`` order, columns as listed), so the nearest measurement
named in the feedback is the same on every run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from pipeline.claims import NumericClaim
from pipeline.context import GroundingContext, lead_value_table
from pipeline.record import LEADS

# --------------------------------------------------------------------------------------- column families
# Signed columns keep their sign; magnitude columns are compared as positive sizes (depths are written so).
SIGNED = frozenset({"p_amp_mv", "t_amp_mv", "st_j_mv", "st_j60_mv"})
MAGNITUDE = frozenset({"q_amp_mv", "r_amp_mv", "r_prime_amp_mv", "s_amp_mv", "_qrs_pp_mv", "sokolow_lyon_mv",
                       "cornell_mv"})
_QTC_REC = {"bazett": "qtc_bazett_ms", "fridericia": "qtc_fridericia_ms", "framingham": "qtc_framingham_ms",
            "hodges": "qtc_hodges_ms"}
_QTC_BEAT = {"bazett": "qtc_bazett_ms", "fridericia": "qtc_fridericia_ms"}
_REC = {  # (keyword, dimension) -> record columns
    ("pr", "ms"): ["pr_ms"], ("qrs", "ms"): ["qrs_ms"], ("qt", "ms"): ["qt_ms"],
    ("qt_dispersion", "ms"): ["qt_dispersion_ms"], ("rr", "ms"): ["rr_mean_ms"], ("rr_sd", "ms"): ["rr_sd_ms"],
    ("rate", "bpm"): ["hr_bpm"], ("axis", "deg"): ["qrs_axis_deg"], ("p_axis", "deg"): ["p_axis_deg"],
    ("t_axis", "deg"): ["t_axis_deg"], ("sokolow", "mv"): ["sokolow_lyon_mv"], ("cornell", "mv"): ["cornell_mv"],
    ("duration", "ms"): ["_duration_ms"],
}
_BEAT = {  # (keyword, dimension) -> beats columns (per lead)
    ("pr", "ms"): ["pr_ms"], ("qrs", "ms"): ["qrs_ms"], ("qt", "ms"): ["qt_ms"], ("rr", "ms"): ["rr_ms"],
    ("p_wave", "ms"): ["p_ms"], ("t_wave", "ms"): ["t_ms"], ("q_wave", "ms"): ["q_ms"], ("r_wave", "ms"): ["r_ms"],
    ("s_wave", "ms"): ["s_ms"], ("r_peak_time", "ms"): ["_r_peak_time_ms"], ("pr_segment", "ms"): ["_pr_segment_ms"],
    ("p_wave", "mv"): ["p_amp_mv"], ("t_wave", "mv"): ["t_amp_mv"], ("q_wave", "mv"): ["q_amp_mv"],
    ("r_wave", "mv"): ["r_amp_mv", "r_prime_amp_mv"], ("r_prime", "mv"): ["r_prime_amp_mv"],
    ("s_wave", "mv"): ["s_amp_mv"], ("st", "mv"): ["st_j_mv", "st_j60_mv"], ("st_j", "mv"): ["st_j_mv"],
    ("st_j60", "mv"): ["st_j60_mv"], ("qrs", "mv"): ["_qrs_pp_mv", "r_amp_mv", "s_amp_mv"],
    ("voltage", "mv"): ["_qrs_pp_mv", "r_amp_mv", "s_amp_mv", "q_amp_mv", "t_amp_mv", "p_amp_mv", "st_j_mv",
                        "st_j60_mv", "r_prime_amp_mv"],
}
# Quantities that are one number per record: a lead named next to them does not change what they are.
RECORD_ONLY = frozenset({"rate", "rr_sd", "qt_dispersion", "axis", "p_axis", "t_axis", "sokolow", "cornell",
                         "duration"})
_ANY_MS_REC = ["pr_ms", "qrs_ms", "qt_ms", "qtc_bazett_ms", "rr_mean_ms"]
_ANY_MS_BEAT = ["pr_ms", "qrs_ms", "qt_ms", "p_ms", "t_ms", "q_ms", "r_ms", "s_ms", "rr_ms"]
_ANY_MV_BEAT = ["p_amp_mv", "q_amp_mv", "r_amp_mv", "r_prime_amp_mv", "s_amp_mv", "t_amp_mv", "st_j_mv", "st_j60_mv",
                "_qrs_pp_mv"]
_NUMERIC_BEAT_COLS = sorted({c for cs in _BEAT.values() for c in cs} | set(_ANY_MS_BEAT) | set(_ANY_MV_BEAT)
                            | {"qtc_bazett_ms", "qtc_fridericia_ms"})

# Words for the feedback: what a column is called.
LABELS = {
    "pr_ms": "PR interval", "qrs_ms": "QRS duration", "qt_ms": "QT interval", "qtc_bazett_ms": "QTc (Bazett)",
    "qtc_fridericia_ms": "QTc (Fridericia)", "qtc_framingham_ms": "QTc (Framingham)", "qtc_hodges_ms": "QTc (Hodges)",
    "qt_dispersion_ms": "QT dispersion", "rr_mean_ms": "mean RR interval", "rr_sd_ms": "RR standard deviation",
    "rr_ms": "RR interval", "hr_bpm": "heart rate", "qrs_axis_deg": "QRS axis", "p_axis_deg": "P axis",
    "t_axis_deg": "T axis", "sokolow_lyon_mv": "Sokolow-Lyon voltage", "cornell_mv": "Cornell voltage",
    "_duration_ms": "recording length", "p_ms": "P duration", "t_ms": "T duration", "q_ms": "Q duration",
    "r_ms": "R duration", "s_ms": "S duration", "_r_peak_time_ms": "R-peak time", "_pr_segment_ms": "PR segment",
    "p_amp_mv": "P amplitude", "t_amp_mv": "T amplitude", "q_amp_mv": "Q depth", "r_amp_mv": "R amplitude",
    "r_prime_amp_mv": "R' amplitude", "s_amp_mv": "S depth", "st_j_mv": "ST level at J", "st_j60_mv": "ST level at J+60",
    "_qrs_pp_mv": "QRS peak-to-peak amplitude",
}


def _finite(v) -> float | None:
    if v is None or isinstance(v, (str, bool)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


@dataclass
class MeasurementIndex:
    """One record's measurements, indexed for matching (see the module docstring)."""

    record: dict
    measured: list[str]
    rep: dict[str, dict[str, float]] = field(default_factory=dict)        # lead -> column -> representative
    med: dict[str, dict[str, float]] = field(default_factory=dict)        # lead -> column -> median of all beats
    cls_values: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)  # class->lead->col->vals
    text_rep: dict[str, dict[str, str | None]] = field(default_factory=dict)  # lead -> t_form/p_form/morphology
    text_all: dict[str, dict[str, list[str]]] = field(default_factory=dict)   # lead -> column -> every beat's
    beat_class: list[str] = field(default_factory=list)                 # per beat (0-based), time order
    beat_span: list[tuple[float, float]] = field(default_factory=list)  # per beat: QRS onset, QRS end (ms)
    beat_p_on: list[float | None] = field(default_factory=list)         # per beat: its P onset (ms), if any
    beat_global: dict[str, list[float | None]] = field(default_factory=dict)  # per beat: median over leads
    q_frac: dict[str, float] = field(default_factory=dict)              # lead -> share of normal beats with a q

    @classmethod
    def of(cls, ctx: GroundingContext) -> "MeasurementIndex":
        """The index of ``ctx`` (built once per beats frame and cached on the context)."""
        cache = ctx.__dict__.get("_measurement_index")
        if cache is not None and cache[0] is ctx.beats and cache[1] is ctx.record:
            return cache[2]
        idx = cls._build(ctx)
        ctx.__dict__["_measurement_index"] = (ctx.beats, ctx.record, idx)
        return idx

    @classmethod
    def _build(cls, ctx: GroundingContext) -> "MeasurementIndex":
        rec = dict(ctx.record or {})
        rec["_duration_ms"] = float(ctx.extra.get("duration_ms", 10000.0))
        measured = list(ctx.measured_leads)
        idx = cls(rec, measured)
        beats = ctx.beats
        if beats is None or beats.height == 0:
            return idx
        gated = ctx.gated_leads
        cols = beats.columns
        data = beats.select([c for c in cols if c in set(_NUMERIC_BEAT_COLS) | {
            "lead", "beat", "beat_class", "t_form", "p_form", "qrs_morphology", "qrs_on_ms", "qrs_off_ms", "r_peak_ms",
            "p_off_ms", "p_on_ms"}]).to_dict(as_series=False)
        n = beats.height
        # derived per-row values
        r_amp, s_amp, q_amp = (data.get(c, [None] * n) for c in ("r_amp_mv", "s_amp_mv", "q_amp_mv"))
        data["_qrs_pp_mv"] = [None if r is None and s is None and q is None else
                              (r or 0.0) - min(s or 0.0, q or 0.0) for r, s, q in zip(r_amp, s_amp, q_amp)]
        on, pk, poff = data.get("qrs_on_ms", [None] * n), data.get("r_peak_ms", [None] * n), data.get("p_off_ms", [None] * n)
        data["_r_peak_time_ms"] = [None if a is None or b is None or r is None or r <= 0 else b - a
                                   for a, b, r in zip(on, pk, r_amp)]
        data["_pr_segment_ms"] = [None if a is None or p is None else a - p for a, p in zip(on, poff)]
        num_cols = [c for c in _NUMERIC_BEAT_COLS if c in data]
        rows_by_lead: dict[str, list[int]] = {}
        for i, lead in enumerate(data["lead"]):
            rows_by_lead.setdefault(lead, []).append(i)
        classes_by_beat: dict[int, str] = {}
        span_by_beat: dict[int, list[tuple[float, float]]] = {}
        p_on_by_beat: dict[int, list[float]] = {}
        for i in range(n):
            b = data["beat"][i]
            if b is None:
                continue
            classes_by_beat.setdefault(b, data["beat_class"][i] if "beat_class" in data else "normal")
            if data["lead"][i] in gated:
                continue
            a, z = data.get("qrs_on_ms", [None] * n)[i], data.get("qrs_off_ms", [None] * n)[i]
            if a is not None and z is not None:
                span_by_beat.setdefault(b, []).append((a, z))
            p_on = data.get("p_on_ms", [None] * n)[i] if "p_on_ms" in data else None
            if p_on is not None and a is not None and p_on < a:
                p_on_by_beat.setdefault(b, []).append(p_on)
        table = lead_value_table(beats)  # the writer's representative values (upper median of normal beats)
        for lead in LEADS:
            if lead not in rows_by_lead or lead in gated:
                continue
            rows = rows_by_lead[lead]
            idx.rep[lead], idx.med[lead] = {}, {}
            idx.text_rep[lead] = {c: table.get(lead, {}).get(c) for c in ("t_form", "p_form", "qrs_morphology")}
            idx.text_all[lead] = {c: [data[c][i] for i in rows if data.get(c) and data[c][i]]
                                  for c in ("t_form", "p_form", "qrs_morphology") if c in data}
            if "q_amp_mv" in data:
                normal_rows = [i for i in rows if "beat_class" not in data or data["beat_class"][i] in (None, "normal")]
                normal_rows = normal_rows or rows
                idx.q_frac[lead] = sum(_finite(data["q_amp_mv"][i]) is not None for i in normal_rows) / len(normal_rows)
            for c in num_cols:
                vals = [(data[c][i], data["beat_class"][i] if "beat_class" in data else "normal") for i in rows]
                fin = [(v, k) for v, k in vals if _finite(v) is not None]
                if not fin:
                    continue
                normal = [v for v, k in fin if k in (None, "normal")]
                use = sorted(normal or [v for v, _ in fin])
                idx.rep[lead][c] = float(use[len(use) // 2])
                allv = sorted(v for v, _ in fin)
                m = len(allv)
                idx.med[lead][c] = float(allv[m // 2] if m % 2 else (allv[m // 2 - 1] + allv[m // 2]) / 2.0)
                for v, k in fin:
                    if k in ("premature", "paced"):
                        idx.cls_values.setdefault(k, {}).setdefault(lead, {}).setdefault(c, []).append(float(v))
        nb = (max(classes_by_beat) + 1) if classes_by_beat else 0
        idx.beat_class = [classes_by_beat.get(b) or "normal" for b in range(nb)]
        for b in range(nb):
            spans = span_by_beat.get(b, [])
            idx.beat_span.append((min(s for s, _ in spans), max(e for _, e in spans)) if spans else
                                 (float("nan"), float("nan")))
            ps = p_on_by_beat.get(b)
            idx.beat_p_on.append(min(ps) if ps else None)
        # per beat, the median over measured leads of the interval columns (a premature beat's QRS duration)
        for c in ("qrs_ms", "pr_ms", "qt_ms", "rr_ms"):
            if c not in data:
                continue
            per: dict[int, list[float]] = {}
            for i in range(n):
                if data["lead"][i] in gated or _finite(data[c][i]) is None:
                    continue
                per.setdefault(data["beat"][i], []).append(float(data[c][i]))
            idx.beat_global[c] = [(sorted(per[b])[len(per[b]) // 2] if b in per else None) for b in range(nb)]
        return idx

    # ----------------------------------------------------------------------------------------- queries
    def lead_values(self, lead: str, column: str, beat_class: str | None = None) -> list[float]:
        """Candidate values of ``column`` in ``lead``: representative and median (+ one class's beats)."""
        out = []
        for src in (self.rep, self.med):
            v = src.get(lead, {}).get(column)
            if v is not None and v not in out:
                out.append(v)
        if beat_class in self.cls_values:
            out.extend(self.cls_values[beat_class].get(lead, {}).get(column, []))
        return out


# ------------------------------------------------------------------------------------------- candidates
@dataclass(frozen=True)
class Candidate:
    column: str
    lead: str | None        # None: the record-level value
    value: float            # in the claim's comparison frame (signed, or a magnitude)
    label: str              # for the feedback


def claim_columns(claim: NumericClaim) -> tuple[list[str], list[str]]:
    """(record columns, beats columns) a claim may be matched to, by its quantity and dimension."""
    kind, kw = claim.kind, claim.keyword
    if kw == "qtc":
        f = claim.formula or "bazett"
        return [_QTC_REC[f]], ([_QTC_BEAT[f]] if f in _QTC_BEAT else [])
    rec = list(_REC.get((kw, kind), []))
    beat = list(_BEAT.get((kw, kind), []))
    if kw is None or (not rec and not beat):
        if kind == "ms":
            return list(_ANY_MS_REC), list(_ANY_MS_BEAT)
        if kind == "mv":
            return ["sokolow_lyon_mv", "cornell_mv"], list(_ANY_MV_BEAT)
        if kind == "deg":
            return ["qrs_axis_deg", "p_axis_deg", "t_axis_deg"], []
        if kind == "bpm":
            return ["hr_bpm"], []
    if kw == "voltage" and not claim.leads:
        rec = ["sokolow_lyon_mv", "cornell_mv"]
    return rec, beat


def _frame(column: str, value: float) -> float:
    """A measured value in the frame claims are compared in: magnitudes for Q/R/S (stored negative for Q, S)."""
    return abs(value) if column in MAGNITUDE else value


def claim_value(claim: NumericClaim, column: str, x: float) -> float:
    """The claimed number ``x`` in the comparison frame of ``column``: magnitudes for Q/R/S; for signed columns
    the sign written, else the polarity words ("depression of 0.1" = -0.1), else positive."""
    if column in MAGNITUDE:
        return abs(x)
    if column in SIGNED:
        if claim.explicit_sign and x < 0:
            return x
        if claim.direction in ("negative", "depression"):
            return -abs(x)
        return abs(x) if claim.direction in ("positive", "elevation") or not claim.explicit_sign else x
    return x


def candidates(claim: NumericClaim, idx: MeasurementIndex, ctx: GroundingContext) -> tuple[list[Candidate], bool]:
    """(citable candidates of ``claim``, whether any candidate was dropped because it is not citable)."""
    rec_cols, beat_cols = claim_columns(claim)
    out: list[Candidate] = []
    dropped = False
    kw = claim.keyword
    named = [lead for lead in claim.leads if lead in idx.rep]
    record_level = kw in RECORD_ONLY or not beat_cols
    use_record = record_level or not claim.leads or claim.kind in ("ms",)
    if claim.kind == "mv" and claim.leads and kw not in ("sokolow", "cornell"):
        use_record = kw == "voltage" and not beat_cols  # amplitudes belong to the lead named
    if use_record:
        for c in rec_cols:
            v = _finite(idx.record.get(c))
            if v is None:
                continue
            if not ctx.citable(c):
                dropped = True
                continue
            out.append(Candidate(c, None, _frame(c, v), LABELS.get(c, c)))
        if kw == "sokolow" and ctx.citable("sokolow_lyon_mv"):
            # the index is S(V1) + the larger of R(V5), R(V6); a reader may add either R
            s1 = idx.rep.get("V1", {}).get("s_amp_mv")
            index = _finite(idx.record.get("sokolow_lyon_mv"))
            for lead in ("V5", "V6"):
                r = idx.rep.get(lead, {}).get("r_amp_mv")
                # only the smaller sum is another reading; the larger one is the index itself
                if s1 is not None and r is not None and index is not None and abs(s1) + abs(r) < index - 0.02:
                    out.append(Candidate("sokolow_lyon_mv", None, abs(s1) + abs(r), f"S(V1) + R({lead})"))
        if kw in ("qrs", "pr", "qt") and claim.kind == "ms" and claim.beat_class in idx.cls_values:
            gcol = {"qrs": "qrs_ms", "pr": "pr_ms", "qt": "qt_ms"}[kw]
            for b, k in enumerate(idx.beat_class):
                v = idx.beat_global.get(gcol, [None] * len(idx.beat_class))[b]
                if k == claim.beat_class and v is not None:
                    out.append(Candidate(gcol, None, v, f"{LABELS[gcol]} of {k} beat {b + 1}"))
    # with no lead named, a quantity that has a record-level value is that value ("QRS duration 80 ms" is the
    # record's QRS, not one lead's); wave amplitudes and durations have none, so any lead's may be meant
    if not record_level and not (not claim.leads and rec_cols and claim.kind != "mv"):
        leads = named if claim.leads else list(idx.rep)
        for lead in leads:
            for c in beat_cols:
                vals = idx.lead_values(lead, c, claim.beat_class)
                if not vals:
                    continue
                if not ctx.citable(c, lead):
                    dropped = True
                    continue
                if c == "r_prime_amp_mv" and kw == "r_wave" and not _has_r_prime(idx, lead):
                    continue  # "the R wave" is the secondary R only where the typical beat has one (rSR')
                for v in vals:
                    out.append(Candidate(c, lead, _frame(c, v), f"{LABELS.get(c, c)} in {lead}"))
    if kw == "rr" and claim.kind == "ms":
        # one RR interval of the record: any beat's (the rate of an irregular rhythm is the mean's, see "rate")
        for b, v in enumerate(idx.beat_global.get("rr_ms", [])):
            if v is not None:
                out.append(Candidate("rr_ms", None, v, f"RR interval before beat {b + 1}"))
    return out, dropped


def _has_r_prime(idx: MeasurementIndex, lead: str) -> bool:
    morph = idx.text_rep.get(lead, {}).get("qrs_morphology") or ""
    return "'" in morph or "\u2019" in morph or "\u2032" in morph


def tolerance(kind: str, value: float, config) -> float:
    if kind == "ms":
        return max(config.interval_tol_ms, config.interval_tol_frac * abs(value))
    if kind == "bpm":
        return max(config.rate_tol_bpm, config.rate_tol_frac * abs(value))
    if kind == "deg":
        return config.axis_tol_deg
    return max(config.amp_tol_mv, config.amp_tol_frac * abs(value))


def _diff(kind: str, a: float, b: float) -> float:
    if kind == "deg":
        return abs((a - b + 180.0) % 360.0 - 180.0)
    return abs(a - b)


# ------------------------------------------------------------------------------------------- cut-offs
def boundaries(column: str, lead: str | None, ctx: GroundingContext, kb=None) -> list[tuple[str, object]]:
    """(name, classifier) pairs of the cut-offs that decide statements about ``column`` (in ``lead``): the
    standard ones of the cut-off table for that quantity, and the thresholds of this record's own statements.
    A classifier maps a value to the side of the cut-off it lies on."""
    from pipeline.cutoffs import cutoffs

    table = cutoffs()
    sex = _sex(ctx)
    names: list[str] = []
    base = column.replace("qtc_fridericia", "qtc").replace("qtc_framingham", "qtc").replace("qtc_hodges", "qtc") \
        .replace("qtc_bazett", "qtc")
    names += {
        "hr_bpm": ["bradycardia_bpm", "tachycardia_bpm"],
        "pr_ms": ["pr_short_ms", "pr_prolonged_ms"],
        "qrs_ms": ["qrs_wide_ms"],
        "qtc_ms": ["qtc_prolonged_ms", "qtc_short_ms"],
        "qrs_axis_deg": ["axis_normal_deg", "axis_extreme_deg"],
        "sokolow_lyon_mv": ["sokolow_lyon_mv"],
        "cornell_mv": ["cornell_mv"],
        "t_amp_mv": ["t_inversion_mv"],
        "p_ms": ["lae_p_duration_ms"],
        "q_amp_mv": ["mi_q_depth_mv"],
    }.get(base, [])
    if column in ("st_j_mv", "st_j60_mv"):
        names += ["st_elevation_v2v3_mv" if lead in ("V2", "V3") else "st_elevation_mv", "st_depression_mv"]
    if column == "q_ms":
        names.append("mi_q_duration_v2v3_ms" if lead in ("V2", "V3") else "mi_q_duration_ms")
    if column == "r_amp_mv" and lead == "aVL":
        names.append("r_avl_lvh_mv")
    if column == "r_amp_mv" and lead == "V1":
        names.append("rvh_r_v1_mv")
    if column == "p_amp_mv" and lead in ("II", "III", "aVF"):
        names.append("rae_p_amplitude_mv")
    out: list[tuple[str, object]] = []
    for name in names:
        c = table.get(name)
        if c is None:
            continue
        if column in ("q_amp_mv", "s_amp_mv"):
            out.append((name, lambda x, c=c: c.abnormal(-abs(x), sex)))
        else:
            out.append((name, lambda x, c=c: c.abnormal(x, sex)))
    # the thresholds of this record's statements' own criteria on this column (IRBBB's 110 ms, LAFB's -45)
    if kb is not None:
        for sid in ctx.statement_ids:
            entry = kb.entries.get(sid)
            for crit in getattr(entry, "criteria", None) or []:
                if crit.feature != (column if column != "qtc_ms" else "qtc_bazett_ms") or crit.threshold is None:
                    continue
                if isinstance(crit.threshold, bool) or isinstance(crit.threshold, str):
                    continue
                if crit.leads and lead not in crit.leads:
                    continue
                out.append((f"{sid} criterion", lambda x, crit=crit: crit.test(x)))
    return out


def _sex(ctx: GroundingContext):
    s = (ctx.extra or {}).get("sex")
    s = str(s).lower() if s is not None else ""
    return s if s in ("male", "female") else None


def _step(claim: NumericClaim) -> float:
    """The precision a claim is written to, in its base unit (0.12 s: 10 ms; 0.3 mV: 0.1 mV; 3 mm: 0.1 mV)."""
    return (10.0 ** -claim.decimals) * abs(claim.extra.get("unit_factor", 1.0) or 1.0)


def _rounds_to(measured: float, claimed: float, claim: NumericClaim) -> bool:
    """Whether ``claimed`` is ``measured`` rounded to the digits written (a true value at the precision it
    states, whatever side of a cut-off it lands on: 116 ms written "0.12 s" is 0.12 s to the hundredth)."""
    steps = [_step(claim)]
    hedge = _HEDGE_STEP.get(claim.kind)
    if claim.extra.get("hedged") and hedge and abs(claimed / hedge - round(claimed / hedge)) < 1e-9:
        steps.append(hedge)  # "roughly 460 ms", "about 100 bpm": rounded to 10 ms / 5 bpm on purpose
    return any(step > 0 and abs(round(measured / step) * step - claimed) <= 1e-6 * max(1.0, abs(claimed))
               for step in steps)


# The step a hedged round number is rounded to ("about 460 ms", "about 95 bpm", "about -30 degrees").
_HEDGE_STEP = {"ms": 10.0, "bpm": 5.0, "deg": 10.0}


def precision_tolerance(claim: NumericClaim) -> float:
    """How far an amplitude written to one decimal of a mV (or whole mm) may be from the measurement: half its
    last digit, at most 0.05 mV (half a small square of the paper grid at 10 mm/mV, the resolution a reader
    states). 0.27 mV written "0.3 mV" is that value; 0.27 written "0.4 mV" is not. Zero for other kinds."""
    if claim.kind != "mv":
        return 0.0
    return min(0.5 * _step(claim), 0.05)


def crosses(claim: NumericClaim, cand: Candidate, x: float, ctx: GroundingContext, kb=None) -> str | None:
    """The cut-off the claimed ``x`` lies across from the measured candidate, or None."""
    if _rounds_to(cand.value, x, claim):
        return None
    for name, side in boundaries(cand.column, cand.lead, ctx, kb):
        a, b = side(x), side(cand.value)
        if a is not None and b is not None and bool(a) != bool(b):
            return name
    return None


# ------------------------------------------------------------------------------------------- matching
def ground_claim(claim: NumericClaim, idx: MeasurementIndex, ctx: GroundingContext, config, kb=None,
                 reference_values: dict[str, list[float]] | None = None) -> None:
    """Set ``claim.grounded`` / ``reference`` / ``problem`` / ``matched`` / ``evidence`` (see module doc)."""
    if claim.kind in ("count", "ordinal", "time"):
        from pipeline.beat_claims import ground_count, ground_ordinal, ground_time

        if claim.kind == "count":
            return ground_count(claim, idx)
        return ground_ordinal(claim, idx) if claim.kind == "ordinal" else ground_time(claim, idx, config)
    refs = (reference_values or {}).get(claim.kind, [])
    is_ref_value = all(any(abs(x - r) < 1e-6 for r in refs) for x in claim.values)
    if claim.reference_ctx:
        claim.reference = True  # a quoted norm or cut-off ("normal < 120 ms", "upper limit of normal 440 ms")
        return
    cands, dropped = candidates(claim, idx, ctx)
    if not cands and dropped:
        claim.problem = "uncitable_value"
        claim.evidence = _uncitable_why(claim, ctx)
        return
    if claim.comparator is not None:
        return _ground_bound(claim, cands, is_ref_value)
    vals = claim.values
    if len(vals) == 2:
        return _ground_range(claim, cands, config)
    best: tuple[float, Candidate] | None = None
    same_side_hit: Candidate | None = None
    crossing: tuple[Candidate, str] | None = None
    hedge = 0.0
    if claim.extra.get("hedged") and claim.kind == "bpm" and float(vals[0]).is_integer() and vals[0] % 5 == 0:
        hedge = config.rate_hedge_bpm  # "about 80 bpm": a rate rounded to 5 or 10 on purpose
    for cand in cands:
        x = claim_value(claim, cand.column, vals[0])
        d = _diff(claim.kind, x, cand.value)
        if best is None or d < best[0]:
            best = (d, cand)
        if d <= max(tolerance(claim.kind, cand.value, config), hedge, precision_tolerance(claim)) + 1e-9:
            cut = crosses(claim, cand, x, ctx, kb)
            if cut is None:
                same_side_hit = same_side_hit or cand
            elif crossing is None:
                crossing = (cand, cut)
    if same_side_hit is not None:
        claim.grounded = True
        claim.matched = f"{same_side_hit.label} = {_fmt(claim.kind, same_side_hit.value)}"
    elif crossing is not None:
        cand, cut = crossing
        claim.problem = "crosses_cutoff"
        claim.evidence = f"measured {cand.label} = {_fmt(claim.kind, cand.value)}, on the other side of {cut}"
    else:
        claim.problem = "ungrounded_number"
        claim.evidence = (f"closest: {best[1].label} = {_fmt(claim.kind, best[1].value)}" if best is not None
                          else "nothing of this kind was measured")


def _ground_range(claim: NumericClaim, cands: list[Candidate], config) -> None:
    lo, hi = claim.values
    if claim.kind != "deg":
        lo, hi = sorted((lo, hi))
    hits = []
    for cand in cands:
        a, b = claim_value(claim, cand.column, lo), claim_value(claim, cand.column, hi)
        a, b = (a, b) if claim.kind == "deg" else tuple(sorted((a, b)))
        tol = tolerance(claim.kind, cand.value, config)
        if claim.kind == "deg":
            inside = ((cand.value - a) % 360.0) <= ((b - a) % 360.0) + tol
        else:
            inside = a - tol <= cand.value <= b + tol
        if inside:
            hits.append(cand)
    if hits:
        claim.grounded, claim.matched = True, f"{hits[0].label} = {_fmt(claim.kind, hits[0].value)} within range"
    else:
        claim.problem = "ungrounded_number"
        best = min(cands, key=lambda c: min(_diff(claim.kind, c.value, lo), _diff(claim.kind, c.value, hi)),
                   default=None)
        claim.evidence = (f"closest: {best.label} = {_fmt(claim.kind, best.value)}" if best is not None
                          else "nothing of this kind was measured")


def _ground_bound(claim: NumericClaim, cands: list[Candidate], is_ref_value: bool) -> None:
    """'QRS below 120 ms': the measured value must satisfy the bound (in every lead named)."""
    x = claim.values[0]
    if not cands or claim.keyword is None:
        claim.reference = True  # a bound on nothing measurable here: not a measurement claim
        return
    # one value per (column, lead): the representative
    seen: dict[tuple[str, str | None], Candidate] = {}
    for cand in cands:
        seen.setdefault((cand.column, cand.lead), cand)
    primary = [c for c in seen.values() if c.column == next(iter(seen.values())).column]
    op = claim.comparator
    failed = []
    for cand in primary:
        bound = claim_value(claim, cand.column, x)
        v = cand.value
        ok = {"<": v < bound, "<=": v <= bound, ">": v > bound, ">=": v >= bound}[op]
        if cand.column in SIGNED and claim.direction in ("negative", "depression") and op in (">", ">="):
            ok = v <= bound if op == ">=" else v < bound  # "depression exceeding 0.1 mV": v <= -0.1
        if not ok:
            failed.append(cand)
    claim.reference = is_ref_value and not failed
    if failed:
        claim.problem = "bound"
        f = failed[0]
        claim.evidence = f"measured {f.label} = {_fmt(claim.kind, f.value)}"
    else:
        claim.grounded = not claim.reference
        claim.matched = f"bound holds ({primary[0].label} = {_fmt(claim.kind, primary[0].value)})"


def _uncitable_why(claim: NumericClaim, ctx: GroundingContext) -> str:
    rec_cols, beat_cols = claim_columns(claim)
    for c in [*rec_cols, *beat_cols]:
        leads = claim.leads or [None]
        for lead in leads:
            why = ctx.uncitable_reason(c, lead)
            if why:
                return f"{LABELS.get(c, c)}{' in ' + lead if lead else ''} may not be stated ({why})"
    return "no citable value of this kind"


def _fmt(kind: str, v: float) -> str:
    if kind == "mv":
        return f"{v:.2f} mV"
    if kind == "bpm":
        return f"{v:.0f} bpm"
    if kind == "deg":
        return f"{v:.0f} degrees"
    return f"{v:.0f} ms"
