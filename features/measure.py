"""``measure_record``: one canonical record -> per-beat per-lead measurements + one record row.

Units: times in ms from record start, amplitudes in mV against each beat's isoelectric PR level (the mean
of the 20..4 ms before QRS onset in that lead), axes in degrees (-180, 180]. Null = absent / not measurable.
A gated lead keeps its rows (so beat k exists in every lead) but every measurement in them is null.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from features.delineate import GlobalFiducials, delineate, detect_beats, gate_by_template, ms, \
    template_correlation
from features.schema import BEATS_SCHEMA, RECORDS_SCHEMA
from features.signal import clean_leads
from pipeline.batch import ErrorRow
from pipeline.record import LEADS, ECGRecord, RecordError

P_FLAT_MV = 0.03     # a P deflection smaller than this in a lead is "flat" there
T_FLAT_MV = 0.05     # same for T
LOBE_MIN_MV = 0.04   # a QRS deflection smaller than this is not named a wave (no invented q / s)
BIPHASIC_RATIO = 0.3  # the smaller phase is at least this share of the larger
PREMATURE_RR_RATIO = 0.85
GATE_CODES = {"flat": "flat_lead", "saturated": "saturated_lead", "non_finite": "non_finite",
              "noise": "noisy_lead"}


@dataclass
class Measurement:
    """What ``measure_record`` returns: beats (BEATS_SCHEMA), the record row (RECORDS_SCHEMA keys) and
    warnings (one ``ErrorRow`` per gated lead)."""

    beats: pl.DataFrame
    record_row: dict
    warnings: list[ErrorRow] = field(default_factory=list)

    def __iter__(self):  # allows ``beats, row = measure_record(rec)`` as DEVELOPERS.md writes it
        yield self.beats
        yield self.record_row


def qtc_bazett_ms(qt_ms: float, rr_ms: float) -> float:
    """Bazett: QT / sqrt(RR in s). ms in, ms out."""
    return qt_ms / math.sqrt(rr_ms / 1000.0)


def qtc_fridericia_ms(qt_ms: float, rr_ms: float) -> float:
    """Fridericia: QT / cbrt(RR in s). ms in, ms out."""
    return qt_ms / (rr_ms / 1000.0) ** (1.0 / 3.0)


def qtc_framingham_ms(qt_ms: float, rr_ms: float) -> float:
    """Framingham (Sagie 1992): QT + 154 ms * (1 - RR in s)."""
    return qt_ms + 154.0 * (1.0 - rr_ms / 1000.0)


def qtc_hodges_ms(qt_ms: float, rr_ms: float) -> float:
    """Hodges: QT + 1.75 ms/bpm * (HR - 60), HR = 60000 / RR."""
    return qt_ms + 1.75 * (60000.0 / rr_ms - 60.0)


def frontal_axis_deg(lead_i: float, lead_avf: float) -> float | None:
    """Frontal-plane axis (degrees, (-180, 180]) from the net amplitude/area in lead I and aVF.

    In the hexaxial system I = E cos(theta) and aVF = (sqrt(3)/2) E sin(theta), so
    theta = atan2(2 aVF / sqrt(3), I) (not atan2(aVF, I), which is off by up to ~11 degrees).
    """
    if lead_i is None or lead_avf is None or not (np.isfinite(lead_i) and np.isfinite(lead_avf)):
        return None
    if lead_i == 0 and lead_avf == 0:
        return None
    deg = math.degrees(math.atan2(2.0 * lead_avf / math.sqrt(3.0), lead_i))
    return 180.0 if deg == -180.0 else deg


def _wave_form(seg: np.ndarray, flat_mv: float) -> tuple[str, float | None]:
    """(form, signed dominant amplitude mV) of a P or T segment already referred to the baseline."""
    if seg.size == 0:
        return "absent", None
    pos, neg = float(seg.max()), float(seg.min())
    big = max(pos, -neg)
    if big < flat_mv:
        return "flat", (pos if pos >= -neg else neg)
    small = min(pos, -neg)
    amp = pos if pos >= -neg else neg
    if small >= flat_mv and small >= BIPHASIC_RATIO * big:
        return "biphasic", amp
    return ("positive" if amp > 0 else "negative"), amp


def _qrs_lobes(seg: np.ndarray, fs_hz: float) -> dict:
    """Name the QRS deflections of one lead (seg referred to baseline, mV).

    Returns amplitudes (mV) and durations (ms) of q, r, r', s plus the morphology label. Deflections
    smaller than LOBE_MIN_MV (or 10% of the largest) are not named, so a missing Q or S stays missing.
    """
    out = {"q_amp_mv": None, "r_amp_mv": None, "r_prime_amp_mv": None, "s_amp_mv": None,
           "q_ms": None, "r_ms": None, "s_ms": None, "qrs_morphology": None}
    if seg.size < 2:
        return out
    sign = np.sign(seg)
    sign[sign == 0] = 1
    change = np.flatnonzero(np.diff(sign) != 0) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [seg.size]))
    big = float(np.max(np.abs(seg)))
    thr = max(LOBE_MIN_MV, 0.1 * big)
    lobes = []  # (sign, amp, dur_ms)
    for a, b in zip(starts, ends):
        part = seg[a:b]
        amp = float(part.max()) if sign[a] > 0 else float(part.min())
        if abs(amp) >= thr:
            if lobes and lobes[-1][0] == sign[a]:  # same-sign lobes split by an unnamed notch: merge
                s0, a0, d0 = lobes[-1]
                lobes[-1] = (s0, a0 if abs(a0) >= abs(amp) else amp, d0 + (b - a) * 1000.0 / fs_hz)
            else:
                lobes.append((int(sign[a]), amp, (b - a) * 1000.0 / fs_hz))
    if not lobes:
        return out

    def letter(ch: str, amp: float) -> str:
        return ch.upper() if abs(amp) >= 0.5 * big else ch.lower()

    pos = [i for i, lb in enumerate(lobes) if lb[0] > 0]
    if not pos:
        neg = min(lobes, key=lambda lb: lb[1])
        out.update(q_amp_mv=neg[1], q_ms=sum(lb[2] for lb in lobes), qrs_morphology="QS")
        return out
    i_r = pos[0]
    label = ""
    if i_r > 0:
        q = lobes[i_r - 1]
        out.update(q_amp_mv=q[1], q_ms=q[2])
        label += letter("q", q[1])
    r = lobes[i_r]
    out.update(r_amp_mv=r[1], r_ms=r[2])
    label += letter("r", r[1])
    if i_r + 1 < len(lobes):
        s = lobes[i_r + 1]
        out.update(s_amp_mv=s[1], s_ms=s[2])
        label += letter("s", s[1])
        if i_r + 2 < len(lobes):
            rp = lobes[i_r + 2]
            out.update(r_prime_amp_mv=rp[1])
            label += letter("r", rp[1]) + "'"
    out["qrs_morphology"] = label
    return out


def _classify_beats(r: np.ndarray, fid: GlobalFiducials, corr: np.ndarray, good: np.ndarray,
                    fs_hz: float) -> list[str]:
    """normal | premature (RR < 85% of the local RR, or early with a different shape) | paced | uncertain."""
    nb = r.size
    rr = np.full(nb, np.nan)
    rr[1:] = np.diff(r) * 1000.0 / fs_hz
    shape = np.median(corr[good], axis=0) if good.any() and corr.size else np.ones(nb)
    out = []
    for k in range(nb):
        if fid.paced[k]:
            out.append("paced")
            continue
        if not (np.isfinite(fid.qrs_on[k]) and np.isfinite(fid.qrs_off[k])):
            out.append("uncertain")
            continue
        neigh = [rr[j] for j in range(max(1, k - 3), min(nb, k + 4)) if j != k and np.isfinite(rr[j])]
        local = float(np.median(neigh)) if neigh else np.nan
        if np.isfinite(rr[k]) and np.isfinite(local) and (
                rr[k] < PREMATURE_RR_RATIO * local or (rr[k] < 0.92 * local and shape[k] < 0.8)):
            out.append("premature")
        elif nb >= 4 and shape[k] < 0.8:
            out.append("uncertain")
        else:
            out.append("normal")
    return out


def _median(values) -> float | None:
    a = np.asarray([v for v in values if v is not None], dtype=float)
    a = a[np.isfinite(a)]
    return float(np.median(a)) if a.size else None


def measure_record(record: ECGRecord) -> Measurement:
    """Measure every beat in every lead of ``record``; raise ``RecordError`` only when no beat is found.

    Gated leads (flat, saturated, non-finite, noise) keep their rows with null measurements and
    ``lead_quality = 'gated:<reason>'``; each gets a warning row.
    """
    fs = float(record.meta.fs_hz)
    rid = record.record_id
    cl = clean_leads(record.signal_mv, fs)
    gate = cl.gate
    good = np.array([g is None for g in gate])
    if not good.any():
        raise RecordError("delineation_failed", "no usable lead: " + ", ".join(
            f"{LEADS[i]}:{g}" for i, g in enumerate(gate)), rid)
    r = detect_beats(cl.clean, good, fs)
    gate = gate_by_template(cl.clean, r, gate, fs)
    good = np.array([g is None for g in gate])
    if not good.any():
        raise RecordError("delineation_failed", "every lead gated after beat matching", rid)
    r = detect_beats(cl.clean, good, fs)
    if r.size == 0:
        raise RecordError("delineation_failed", "no beat found", rid)
    raw_filled = np.where(cl.nan_mask, 0.0, np.nan_to_num(np.asarray(record.signal_mv, dtype=np.float64)))
    fid = delineate(cl.clean, raw_filled, good, r, fs)
    corr = template_correlation(cl.clean, r, fs)
    classes = _classify_beats(r, fid, corr, good, fs)
    to_ms = 1000.0 / fs
    n = cl.clean.shape[1]
    nb = r.size
    rr_ms = np.full(nb, np.nan)
    rr_ms[1:] = np.diff(r) * to_ms

    def t(v: float) -> float | None:
        return float(v) * to_ms if np.isfinite(v) else None

    rows = []
    per_lead_qt: dict[str, list[float]] = {}
    lead_stats: dict[str, dict[str, list]] = {}
    for li, lead in enumerate(LEADS):
        quality = "ok" if gate[li] is None else f"gated:{gate[li]}"
        x = cl.light[li]
        stats = lead_stats.setdefault(lead, {"qrs_area": [], "p_area": [], "t_area": [], "r": [], "s": [],
                                             "ptp": []})
        for k in range(nb):
            row = {c: None for c in BEATS_SCHEMA}
            row.update(record_id=rid, lead=lead, beat=k, beat_class=classes[k], lead_quality=quality)
            if gate[li] is not None:
                rows.append(row)
                continue
            q_on, q_off = fid.qrs_on[k], fid.qrs_off[k]
            rr = rr_ms[k]
            row["rr_ms"] = t(np.diff(r)[k - 1]) if k > 0 else None
            if not (np.isfinite(q_on) and np.isfinite(q_off)):
                rows.append(row)
                continue
            a, b = int(q_on), int(q_off)
            # a beat touching interpolated (non-finite) samples in this lead is not measured there
            if cl.nan_mask[li, max(0, a - ms(fs, 300)):min(n, b + ms(fs, 500))].any():
                rows.append(row)
                continue
            lev = float(x[max(0, a - ms(fs, 20)):max(1, a - ms(fs, 4))].mean())
            seg = x[a:b + 1] - lev
            row["qrs_on_ms"], row["qrs_off_ms"] = t(q_on), t(q_off)
            row["r_peak_ms"] = (a + int(np.argmax(np.abs(seg)))) * to_ms
            row["qrs_ms"] = (q_off - q_on) * to_ms
            row.update(_qrs_lobes(seg, fs))
            row["st_j_mv"] = float(x[b] - lev)
            j60 = b + ms(fs, 60)
            row["st_j60_mv"] = float(x[j60] - lev) if j60 < n else None
            stats["qrs_area"].append(float(seg.sum()) * to_ms)
            stats["ptp"].append(float(seg.max() - seg.min()))
            stats["r"].append(row["r_amp_mv"] if row["r_amp_mv"] is not None else 0.0)
            stats["s"].append(row["s_amp_mv"] if row["s_amp_mv"] is not None else 0.0)
            if np.isfinite(fid.p_on[k]) and np.isfinite(fid.p_off[k]):
                pa, pb = int(fid.p_on[k]), int(fid.p_off[k])
                pseg = x[pa:pb + 1] - lev
                form, amp = _wave_form(pseg, P_FLAT_MV)
                row.update(p_on_ms=t(fid.p_on[k]), p_off_ms=t(fid.p_off[k]), p_form=form, p_amp_mv=amp,
                           p_ms=(pb - pa) * to_ms, pr_ms=(q_on - fid.p_on[k]) * to_ms,
                           p_peak_ms=(pa + int(np.argmax(np.abs(pseg)))) * to_ms)
                stats["p_area"].append(float(pseg.sum()) * to_ms)
            else:
                row["p_form"] = "absent"
            if np.isfinite(fid.t_on[k]) and np.isfinite(fid.t_off[k]):
                ta, tb = int(fid.t_on[k]), int(fid.t_off[k])
                tseg = x[ta:tb + 1] - lev
                form, amp = _wave_form(tseg, T_FLAT_MV)
                qt = (fid.t_off[k] - q_on) * to_ms
                row.update(t_on_ms=t(fid.t_on[k]), t_off_ms=t(fid.t_off[k]), t_form=form, t_amp_mv=amp,
                           t_ms=(tb - ta) * to_ms, qt_ms=qt,
                           t_peak_ms=(ta + int(np.argmax(np.abs(tseg)))) * to_ms)
                if np.isfinite(rr):
                    row["qtc_bazett_ms"] = qtc_bazett_ms(qt, rr)
                    row["qtc_fridericia_ms"] = qtc_fridericia_ms(qt, rr)
                if classes[k] == "normal":
                    per_lead_qt.setdefault(lead, []).append(qt)
                stats["t_area"].append(float(tseg.sum()) * to_ms)
            else:
                row["t_form"] = "absent"
            rows.append(row)
    beats = pl.DataFrame(rows, schema=BEATS_SCHEMA, orient="row") if rows else pl.DataFrame(schema=BEATS_SCHEMA)
    record_row = _record_row(record, fid, classes, rr_ms, gate, lead_stats, per_lead_qt, fs)
    warnings = [ErrorRow(rid, "features", "warning", GATE_CODES.get(g, "delineation_failed"), LEADS[i],
                         f"lead {LEADS[i]} gated: {g}") for i, g in enumerate(gate) if g is not None]
    return Measurement(beats=beats, record_row=record_row, warnings=warnings)


def _record_row(record: ECGRecord, fid: GlobalFiducials, classes: list[str], rr_ms: np.ndarray,
                gate: list[str | None], lead_stats: dict, per_lead_qt: dict, fs: float) -> dict:
    to_ms = 1000.0 / fs
    row = {c: None for c in RECORDS_SCHEMA}
    normal = np.array([c == "normal" for c in classes])
    use = normal if normal.any() else np.ones(len(classes), dtype=bool)
    rr = rr_ms[np.isfinite(rr_ms)]
    row.update(record_id=record.record_id, source=record.meta.source, n_beats=len(classes))
    if rr.size:
        rr_mean = float(rr.mean())
        row.update(rr_mean_ms=rr_mean, rr_sd_ms=float(rr.std(ddof=1)) if rr.size > 1 else 0.0,
                   hr_bpm=60000.0 / rr_mean,
                   rhythm_regular=bool(rr.size >= 2 and float(rr.std()) / rr_mean < 0.1))
    row["p_waves_present"] = bool(fid.p_present)

    def med(a: np.ndarray) -> float | None:
        a = a[use]
        a = a[np.isfinite(a)]
        return float(np.median(a)) * to_ms if a.size else None

    row["pr_ms"] = med(fid.qrs_on - fid.p_on)
    row["qrs_ms"] = med(fid.qrs_off - fid.qrs_on)
    row["qt_ms"] = med(fid.t_off - fid.qrs_on)
    if row["qt_ms"] is not None and row["rr_mean_ms"]:
        qt, rrm = row["qt_ms"], row["rr_mean_ms"]
        row.update(qtc_bazett_ms=qtc_bazett_ms(qt, rrm), qtc_fridericia_ms=qtc_fridericia_ms(qt, rrm),
                   qtc_framingham_ms=qtc_framingham_ms(qt, rrm), qtc_hodges_ms=qtc_hodges_ms(qt, rrm))
    for wave, key in (("p", "p_area"), ("qrs", "qrs_area"), ("t", "t_area")):
        a_i, a_f = _median(lead_stats["I"][key]), _median(lead_stats["aVF"][key])
        if wave == "p" and not fid.p_present:
            continue
        row[f"{wave}_axis_deg"] = frontal_axis_deg(a_i, a_f) if a_i is not None and a_f is not None else None

    def amp(lead: str, key: str) -> float | None:
        return _median(lead_stats[lead][key])

    s_v1, r_v5, r_v6 = amp("V1", "s"), amp("V5", "r"), amp("V6", "r")
    if s_v1 is not None and (r_v5 is not None or r_v6 is not None):
        row["sokolow_lyon_mv"] = abs(s_v1) + max(v for v in (r_v5, r_v6) if v is not None)
    r_avl, s_v3 = amp("aVL", "r"), amp("V3", "s")
    if r_avl is not None and s_v3 is not None:
        row["cornell_mv"] = r_avl + abs(s_v3)
    limb = [amp(ld, "ptp") for ld in LEADS[:6]]
    prec = [amp(ld, "ptp") for ld in LEADS[6:]]
    limb = [v for v in limb if v is not None]
    prec = [v for v in prec if v is not None]
    row["low_voltage_limb"] = bool(max(limb) < 0.5) if limb else None
    row["low_voltage_precordial"] = bool(max(prec) < 1.0) if prec else None
    qts = [float(np.median(v)) for v in per_lead_qt.values() if v]
    row["qt_dispersion_ms"] = (max(qts) - min(qts)) if len(qts) >= 2 else None
    row["n_premature"] = sum(c == "premature" for c in classes)
    row["n_paced"] = sum(c == "paced" for c in classes)
    row["leads_ok"] = sum(g is None for g in gate)
    row["leads_gated"] = ";".join(f"{LEADS[i]}:{g}" for i, g in enumerate(gate) if g is not None)
    ref = record.meta.reference
    if ref is not None:
        row["ref_kind"] = ref.kind

        def diff(ours, theirs):
            return (ours - theirs) if ours is not None and theirs is not None else None

        row["diff_pr_ms"] = diff(row["pr_ms"], ref.pr_ms)
        row["diff_qrs_ms"] = diff(row["qrs_ms"], ref.qrs_ms)
        row["diff_qt_ms"] = diff(row["qt_ms"], ref.qt_ms)
        row["diff_rr_ms"] = diff(row["rr_mean_ms"], ref.rr_ms)
        d = diff(row["qrs_axis_deg"], ref.qrs_axis_deg)
        row["diff_qrs_axis_deg"] = ((d + 180.0) % 360.0) - 180.0 if d is not None else None
    return row
