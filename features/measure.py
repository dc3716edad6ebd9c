"""``measure_record``: one canonical record -> per-beat per-lead measurements + one record row.

Units: times in ms from record start, amplitudes in mV against each beat's isoelectric PR level (the mean
of the 20..4 ms before QRS onset in that lead), axes in degrees (-180, 180]. Null = absent / not measurable.
A gated lead keeps its rows (so beat k exists in every lead) but every measurement in them is null.
QRS onsets are global (multi-lead, the same in every lead); P on/offsets are each lead's own where the
median beat shows that lead's P (every beat with a P); QRS ends likewise where the median beat shows that
lead's own end clearly apart from the global one (beats that took its fiducials); T ends are each lead's own
(from the median beat for beats at the typical RR, else from the beat itself), global where a lead's T is
flat; a lead's PR runs from its own P onset. The record row's PR / QRS / QT are the global values of the
normal beats; ``qt_dispersion_ms`` is max - min of the leads' own T ends (median beat).
Each lead's P / T wave forms and QRS deflections (q, r, s, r', the morphology label): ``features.lead_forms``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from features.confidence import Confidences, record_confidences
from features.beats import detect_beats, gate_by_template, template_correlation
from features.delineate import delineate, delineate_with_template, spatial_slope
from features.fiducials import GlobalFiducials, ms
from features.av_dissociation import detect_av_dissociation, forget_p_waves
from features.flutter import F_TRAIN_PREDICTED_MIN, FlutterEvidence, detect_flutter, f_wave_train
from features.lead_edges import beat_lead_qrs_ends, beat_lead_t_ends
from features.lead_forms import P_FLAT_MV, T_FLAT_MV, qrs_deflections, wave_forms
from features.qrs_edges import apply_reading_convention
from features.rate import atrial_events, atrial_sized, rate_confidence
from features.schema import BEATS_SCHEMA, RECORDS_SCHEMA
from features.signal import CleanLeads, clean_leads
from pipeline.batch import ErrorRow
from pipeline.record import LEADS, ECGRecord, RecordError

PREMATURE_RR_RATIO = 0.85
PER_LEAD_P_END = True  # per-lead P ends (median beat) in the beats table
PER_LEAD_P_ON = True   # per-lead P onsets (median beat) in the beats table
PER_LEAD_QRS_END = True  # per-lead QRS ends (median beat, or the beat itself if it keeps its own QRS) in beats
PER_LEAD_T_END = True  # per-lead T ends (median beat) in the beats table and for QT dispersion
QTD_MIN_LEADS = 6      # QT dispersion needs the T end visible in at least this many good leads
GATE_CODES = {"flat": "flat_lead", "saturated": "saturated_lead", "non_finite": "non_finite",
              "noise": "noisy_lead"}


@dataclass
class Measurement:
    """What ``measure_record`` returns: beats (BEATS_SCHEMA), the record row (RECORDS_SCHEMA keys) and
    warnings (one ``ErrorRow`` per gated lead)."""

    beats: pl.DataFrame
    record_row: dict
    warnings: list[ErrorRow] = field(default_factory=list)
    confidences: Confidences | None = None  # the checks behind the record's confidences (benchmarks, tests)
    flutter: FlutterEvidence | None = None  # what the flutter detection found (benchmarks/flutter.py, tests)

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


def as_record(signal_mv: np.ndarray, record_id: str = "array", source: str = "synthetic",
              fs_hz: int = 500) -> ECGRecord:
    """Wrap a (12, n) mV array (LEADS order, 500 Hz) in a canonical record (tests, benchmarks)."""
    from pipeline.record import Provenance, RecordMeta

    n = int(signal_mv.shape[1])
    meta = RecordMeta(record_id=record_id, source=source, fs_hz=fs_hz, n_samples=n,
                      provenance=Provenance(path=record_id, files=[], sha256="", original_fs_hz=fs_hz,
                                            original_lead_names=list(LEADS), original_units=["mV"] * 12,
                                            original_n_samples=n))
    return ECGRecord(meta=meta, signal_mv=np.asarray(signal_mv, dtype=np.float32))


def _lead_stats(num: dict, txt: dict, classes: list[str], fid: GlobalFiducials) -> dict:
    """Per lead, over normal beats: net areas (mV*ms) of P/QRS/T, R and S amplitudes, QRS peak-to-peak."""
    normal = np.array([c == "normal" for c in classes])
    use = normal if normal.any() else np.ones(len(classes), dtype=bool)
    out = {}
    for li, lead in enumerate(LEADS):
        def vals(key, fill=None):
            v = num[key][li][use]
            ok = np.isfinite(num["qrs_ms"][li][use])
            if fill is not None:
                v = np.where(np.isfinite(v), v, fill)
            return list(v[ok & np.isfinite(v)])
        out[lead] = {"qrs_area": vals("_qrs_area"), "p_area": vals("_p_area"), "t_area": vals("_t_area"),
                     "r": vals("r_amp_mv", 0.0), "s": vals("s_amp_mv", 0.0), "ptp": vals("_ptp")}
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


def _own(global_pos: float, delta: np.ndarray | None, n_leads: int) -> np.ndarray:
    """Each of ``n_leads`` leads' own fiducial (samples): ``global_pos`` shifted by the lead's ``delta`` where
    it has one (NaN: the lead shows no own on/offset and keeps the global one; None: no lead has one)."""
    base = np.full(n_leads, float(global_pos))
    return base if delta is None else np.where(np.isfinite(delta), base + delta, base)


def _median(values) -> float | None:
    a = np.asarray([v for v in values if v is not None], dtype=float)
    a = a[np.isfinite(a)]
    return float(np.median(a)) if a.size else None


@dataclass
class Delineation:
    """What ``delineate_record`` finds in a record (sample indices at ``fs_hz``; see features.delineate)."""

    clean: CleanLeads
    gate: list[str | None]   # per lead: None (good) or the reason it is gated
    good: np.ndarray         # bool per lead
    r: np.ndarray            # beat anchors
    fid: GlobalFiducials
    qrs_corr: np.ndarray     # (n_leads, n_beats) each beat's QRS vs the lead's median QRS
    fs_hz: float


def delineate_record(record: ECGRecord, p_onset_fit_name: str | None = None,
                     reading_convention: bool = True) -> Delineation:
    """Clean, gate, find the beats once for all leads and delineate them (global fiducials, median beat, the QRS
    edges as clinicians read them); raise ``RecordError`` when no lead is usable or no beat is found.
    ``p_onset_fit_name``: which LUDB fit (``features.lead_edges.p_onset_fit``, ``features.qrs_edges``; None:
    $ECG_GROUNDING_P_ONSET_FIT or "all"); ``reading_convention``: move the QRS edges to the clinicians' reading
    (``features.qrs_edges.apply_reading_convention``; False: the detector's edges, for the fit of it)."""
    fs = float(record.meta.fs_hz)
    rid = record.record_id
    cl = clean_leads(record.signal_mv, fs)
    gate = cl.gate
    good = np.array([g is None for g in gate])
    if not good.any():
        raise RecordError("delineation_failed", "no usable lead: " + ", ".join(
            f"{LEADS[i]}:{g}" for i, g in enumerate(gate)), rid)
    # complexes the size and steepness of a P wave among the QRS complexes (complete AV block: the P waves marching
    # between a slow escape rhythm's beats) are atrial waves, no heartbeats (features.rate: atrial_sized); dropped
    # before the leads are matched against their median beat, which P waves taken for beats make look like noise
    r = detect_beats(cl.clean, good, fs, cl.spikes)
    r = r[~atrial_sized(cl.clean, good, r, fs)]
    new_gate = gate_by_template(cl.clean, r, gate, fs)
    if new_gate != gate:  # a noise lead voted in the first pass: find the beats again without it
        gate = new_gate
        good = np.array([g is None for g in gate])
        if not good.any():
            raise RecordError("delineation_failed", "every lead gated after beat matching", rid)
        r = detect_beats(cl.clean, good, fs, cl.spikes)
        r = r[~atrial_sized(cl.clean, good, r, fs)]
    if r.size == 0:
        raise RecordError("delineation_failed", "no beat found", rid)
    fid = delineate(cl.clean, cl.spikes, good, r, fs)
    # complexes cut by the record's edges (or filter transients there): not heartbeats we can measure; complexes an
    # AV delay before a paced ventricular beat: atrial stimuli and P waves, no heartbeats (features.rate)
    atrial = atrial_events(fid, cl.spikes, fs)
    atrial_at = r[atrial]
    drop = ~(np.isfinite(fid.qrs_on) & np.isfinite(fid.qrs_off)) | atrial
    if drop.any() and (~drop).any():
        r = r[~drop]
        fid = None  # delineated again without them (the P / T windows depend on the neighbours)
    # QRS shape (-80..+100 ms) for premature / aberrant beats; P and T shapes vary with RR and are no clue
    corr = template_correlation(cl.clean, r, fs, 80.0, 100.0)
    fid = delineate_with_template(cl.clean, cl.spikes, good, r, fs, corr, fid, p_onset_fit_name)
    fid.atrial_events = atrial_at
    flutter = detect_flutter(cl.clean, good, fid, fs)
    # F waves locked to the QRS (a fixed block) leave no residual to fold a train from
    unlocked = flutter is not None and flutter.locked_ratio is None
    train = f_wave_train(cl.clean, good, fid, flutter, fs) if unlocked else None
    if train is not None and flutter.predicted is not None and flutter.predicted >= F_TRAIN_PREDICTED_MIN:
        # flutter waves run through the QRS end and the T wave at another phase in every beat: the waves are read
        # with the F-wave train cancelled (features.flutter), the same beats; only where the train is a faithful
        # model of the F waves under the QRST, which it can only be where it predicts the F waves of an atrial
        # stretch from the others (synthetic flutter: 27-87% of their band; LUDB 103 over 10 s, whose cycle wanders:
        # none, and cancelled anyway its T end read 40 ms late; LUDB 35: none)
        fid = delineate(cl.clean - train, cl.spikes, good, r, fs)
        corr = template_correlation(cl.clean - train, r, fs, 80.0, 100.0)
        fid = delineate_with_template(cl.clean - train, cl.spikes, good, r, fs, corr, fid, p_onset_fit_name)
        fid.atrial_events = atrial_at
        flutter.cancelled = True
    fid.flutter = flutter
    # P waves marching through at their own rate (complete AV block): a P before a QRS is not that QRS's P, and the
    # median beat's P (several beats happening to have one at a similar distance) no conducted one: no beat keeps a
    # P, no PR is measured (features.av_dissociation)
    # the residual detect_flutter computed is this median beat's unless the F-wave train was cancelled (then flutter
    # is present and there is no dissociation to look for); it is not kept beyond this (~0.5 MB a record)
    same_fid = flutter is not None and not flutter.cancelled
    fid.av_dissociation = detect_av_dissociation(cl.clean, good, fid, fs, flutter.residual if same_fid else None)
    if flutter is not None:
        flutter.residual = None
    if fid.av_dissociation is not None and fid.av_dissociation.present:
        forget_p_waves(fid)
    if reading_convention:
        apply_reading_convention(fid, fs, p_onset_fit_name, cl.clean.shape[1])
    return Delineation(clean=cl, gate=gate, good=good, r=r, fid=fid, qrs_corr=corr, fs_hz=fs)


def measure_record(record: ECGRecord, reading_convention: bool = True) -> Measurement:
    """Measure every beat in every lead of ``record``; raise ``RecordError`` only when no beat is found.

    Gated leads (flat, saturated, non-finite, noise) keep their rows with null measurements and
    ``lead_quality = 'gated:<reason>'``; each gets a warning row. ``reading_convention``: see
    ``delineate_record`` (False only to fit the convention: ``features.fit_qrs_convention``).
    """
    d = delineate_record(record, reading_convention=reading_convention)
    fs, rid = d.fs_hz, record.record_id
    cl, gate, good, r, fid, corr = d.clean, d.gate, d.good, d.r, d.fid, d.qrs_corr
    if PER_LEAD_T_END:
        fid.beat_lead_t_off_delta = beat_lead_t_ends(cl.clean, good, fid, fs)
    beat_qrs_delta = beat_lead_qrs_ends(cl.clean, good, fid, fs) if PER_LEAD_QRS_END else None
    classes = _classify_beats(r, fid, corr, good, fs)
    to_ms = 1000.0 / fs
    n = cl.clean.shape[1]
    nb = r.size
    rr_ms = np.full(nb, np.nan)
    rr_ms[1:] = np.diff(r) * to_ms
    nl = len(LEADS)
    ok = np.array([g is None for g in gate])
    # column arrays indexed [lead, beat]; NaN / None = null
    num = {c: np.full((nl, nb), np.nan) for c, t in BEATS_SCHEMA.items() if t == pl.Float64}
    for extra in ("_qrs_area", "_p_area", "_t_area", "_ptp"):  # for the record row, not in BEATS_SCHEMA
        num[extra] = np.full((nl, nb), np.nan)
    txt = {c: np.full((nl, nb), None, dtype=object) for c in ("p_form", "t_form", "qrs_morphology")}
    num["rr_ms"][ok] = rr_ms
    x_all = cl.light
    lead_idx = np.arange(nl)
    for k in range(nb):
        q_on, q_off = fid.qrs_on[k], fid.qrs_off[k]
        if not (np.isfinite(q_on) and np.isfinite(q_off)):
            continue
        a, b = int(q_on), int(q_off)
        # a beat touching interpolated (non-finite) samples in a lead is not measured in that lead
        use = ok & ~cl.nan_mask[:, max(0, a - ms(fs, 300)):min(n, b + ms(fs, 500))].any(axis=1)
        if not use.any():
            continue
        li = lead_idx[use]
        x = x_all[li]
        # the isoelectric level before the detected onset (the reading convention moves timing, not amplitudes)
        a_lev = int(fid.level_on[k]) if fid.level_on is not None and np.isfinite(fid.level_on[k]) else a
        lev = x[:, max(0, a_lev - ms(fs, 20)):max(1, a_lev - ms(fs, 4))].mean(axis=1)
        seg = x[:, a:b + 1] - lev[:, None]
        # each lead's own QRS end where the median beat shows it clearly apart from the global one (beats
        # that took the median beat's QRS); the window of the lead's QRS waves and its J point stay global
        delta = None
        if PER_LEAD_QRS_END and fid.lead_qrs_off_delta is not None and fid.qrs_from_template[k]:
            delta = fid.lead_qrs_off_delta[li]
        elif beat_qrs_delta is not None:  # a beat that kept its own QRS: the leads' own ends on the beat itself
            delta = beat_qrs_delta[li, k]
        q_end = _own(q_off, delta, len(li))
        num["qrs_on_ms"][li, k] = q_on * to_ms
        num["qrs_off_ms"][li, k] = q_end * to_ms
        num["qrs_ms"][li, k] = (q_end - q_on) * to_ms
        # the lead's main deflection (largest |amplitude|), as the generator's and LUDB's peak marks
        num["r_peak_ms"][li, k] = (a + np.argmax(np.abs(seg), axis=1)) * to_ms
        j = int(fid.j_point[k]) if fid.j_point is not None and np.isfinite(fid.j_point[k]) else b
        num["st_j_mv"][li, k] = x[:, j] - lev
        num["_qrs_area"][li, k] = seg.sum(axis=1) * to_ms
        num["_ptp"][li, k] = seg.max(axis=1) - seg.min(axis=1)
        j60 = j + ms(fs, 60)
        if j60 < n:
            num["st_j60_mv"][li, k] = x[:, j60] - lev
        for row_i, lead_i in enumerate(li):
            lobes = qrs_deflections(seg[row_i], fs)
            for key in ("q_amp_mv", "r_amp_mv", "r_prime_amp_mv", "s_amp_mv", "q_ms", "r_ms", "s_ms"):
                if lobes[key] is not None:
                    num[key][lead_i, k] = lobes[key]
            txt["qrs_morphology"][lead_i, k] = lobes["qrs_morphology"]
        p_ok = np.isfinite(fid.p_on[k]) and np.isfinite(fid.p_off[k])
        if p_ok:
            pa, pb = int(fid.p_on[k]), int(fid.p_off[k])
            pseg = x[:, pa:pb + 1] - lev[:, None]
            forms, amps = wave_forms(pseg, P_FLAT_MV)
            # each lead's own P onset / end: the global (multi-lead) one shifted by that lead's offset on the
            # median beat, in every beat with a P (P presence kept only P waves at the typical PR: the same
            # sinus P, whose per-lead shape the median beat shows also when an RR apart from the typical one
            # kept the beat from taking the median beat's P); the global one where the lead's P is not seen
            off_delta = fid.lead_p_off_delta if PER_LEAD_P_END else None
            on_delta = fid.lead_p_on_delta if PER_LEAD_P_ON else None
            p_end = _own(pb, None if off_delta is None else off_delta[li], len(li))
            p_start = _own(fid.p_on[k], None if on_delta is None else on_delta[li], len(li))
            num["p_on_ms"][li, k] = p_start * to_ms
            num["p_off_ms"][li, k] = p_end * to_ms
            num["p_peak_ms"][li, k] = (pa + np.argmax(np.abs(pseg), axis=1)) * to_ms
            num["p_ms"][li, k] = (p_end - p_start) * to_ms
            num["pr_ms"][li, k] = (q_on - p_start) * to_ms
            num["p_amp_mv"][li, k] = amps
            num["_p_area"][li, k] = pseg.sum(axis=1) * to_ms
            txt["p_form"][li, k] = forms
        else:
            txt["p_form"][li, k] = "absent"
        t_ok = np.isfinite(fid.t_on[k]) and np.isfinite(fid.t_off[k])
        if t_ok:
            ta, tb = int(fid.t_on[k]), int(fid.t_off[k])
            tseg = x[:, ta:tb + 1] - lev[:, None]
            forms, amps = wave_forms(tseg, T_FLAT_MV)
            t_pk = ta + np.argmax(np.abs(tseg), axis=1)
            # each lead's own T end: from the median beat for the beats at the typical RR, which took the
            # median beat's T, else from the beat itself; the global, multi-lead one where the lead's T
            # shows no end (flat, gated)
            delta = None
            if PER_LEAD_T_END and fid.lead_t_off_delta is not None and fid.t_from_template[k]:
                delta = fid.lead_t_off_delta[li]
            elif PER_LEAD_T_END and fid.beat_lead_t_off_delta is not None:
                delta = fid.beat_lead_t_off_delta[li, k]
            t_end = _own(tb, delta, len(li))
            qt = (t_end - q_on) * to_ms
            num["t_on_ms"][li, k] = ta * to_ms
            num["t_off_ms"][li, k] = t_end * to_ms
            num["t_peak_ms"][li, k] = t_pk * to_ms
            num["t_ms"][li, k] = (t_end - ta) * to_ms
            num["qt_ms"][li, k] = qt
            num["t_amp_mv"][li, k] = amps
            num["_t_area"][li, k] = tseg.sum(axis=1) * to_ms
            txt["t_form"][li, k] = forms
            if np.isfinite(rr_ms[k]):
                num["qtc_bazett_ms"][li, k] = qtc_bazett_ms(qt, rr_ms[k])
                num["qtc_fridericia_ms"][li, k] = qtc_fridericia_ms(qt, rr_ms[k])
        else:
            txt["t_form"][li, k] = "absent"
    lead_stats = _lead_stats(num, txt, classes, fid)
    dom = _dominant_beats(classes, fid)
    lead_iv = {k: _lead_intervals(num[f"{k}_ms"], dom, ok) for k in ("pr", "qrs", "qt")}
    rr_typ = float(np.median(rr_ms[np.isfinite(rr_ms)])) if np.isfinite(rr_ms).any() else None
    values = {f"{k}_ms": _median(v) for k, v in lead_iv.items()}
    if not fid.p_present:
        values["pr_ms"] = None
    glob = _global_intervals(fid, classes, fs)
    conf = record_confidences(fid, ok, cl.spikes, lead_iv, dom, rr_typ, {**values, **glob}, corr, fs)
    # each beat's steepest spatial slope about its anchor (-40..+40 ms): a QRS's depolarisation is steep, a P or T
    # wave counted as a beat is not (features.rate: wave_counted)
    v = spatial_slope(cl.clean[good], fs) if good.any() else None
    half = ms(fs, 40)
    beat_slope = None if v is None else np.array([float(v[max(0, int(c) - half):int(c) + half + 1].max()) for c in r])
    conf.intervals["hr"] = rate_confidence(r, classes, fs, fid, cl.spikes, beat_slope)
    for c, per_lead in conf.lead.items():
        num[c] = np.repeat(per_lead[:, None], nb, axis=1)
    per_lead_qt = {}
    normal = np.array([c == "normal" for c in classes])
    for li_, lead in enumerate(LEADS):
        q = num["qt_ms"][li_][normal]
        q = q[np.isfinite(q)]
        if q.size:
            per_lead_qt[lead] = list(q)
    cols: dict[str, object] = {
        "record_id": [rid] * (nl * nb),
        "lead": np.repeat(np.array(LEADS, dtype=object), nb).tolist(),
        "beat": np.tile(np.arange(nb, dtype=np.int32), nl),
    }
    for c, t in BEATS_SCHEMA.items():
        if c in cols:
            continue
        if c in num:
            cols[c] = num[c].reshape(-1)
        elif c in txt:
            cols[c] = txt[c].reshape(-1).tolist()
        elif c == "beat_class":
            cols[c] = classes * nl
        elif c == "lead_quality":
            cols[c] = [("ok" if g is None else f"gated:{g}") for g in gate for _ in range(nb)]
    float_cols = [c for c, t in BEATS_SCHEMA.items() if t == pl.Float64]
    beats = pl.DataFrame(cols, schema=BEATS_SCHEMA).with_columns(pl.col(float_cols).fill_nan(None))
    record_row = _record_row(record, fid, classes, rr_ms, gate, lead_stats, per_lead_qt, fs, values, conf)
    warnings = [ErrorRow(rid, "features", "warning", GATE_CODES.get(g, "delineation_failed"), LEADS[i],
                         f"lead {LEADS[i]} gated: {g}") for i, g in enumerate(gate) if g is not None]
    return Measurement(beats=beats, record_row=record_row, warnings=warnings, confidences=conf, flutter=fid.flutter)


def _global_intervals(fid: GlobalFiducials, classes: list[str], fs: float) -> dict:
    """pr_global_ms, qrs_global_ms, qt_global_ms: the median over the normal beats (all beats without any) of
    the global (multi-lead) intervals, ms; None where not measured."""
    normal = np.array([c == "normal" for c in classes])
    use = normal if normal.any() else np.ones(len(classes), dtype=bool)

    def med(a: np.ndarray) -> float | None:
        a = a[use]
        a = a[np.isfinite(a)]
        return float(np.median(a)) * 1000.0 / fs if a.size else None

    return {"pr_global_ms": med(fid.qrs_on - fid.p_on), "qrs_global_ms": med(fid.qrs_off - fid.qrs_on),
            "qt_global_ms": med(fid.t_off - fid.qrs_on)}


def _dominant_beats(classes: list[str], fid: GlobalFiducials) -> np.ndarray:
    """The beats the record's values come from: the normal ones and the paced ones that took the median beat's
    QRS (a paced rhythm's dominant beats); every beat when there are none."""
    tmpl = fid.qrs_from_template if fid.qrs_from_template is not None else np.zeros(len(classes), dtype=bool)
    dom = np.array([c == "normal" or (c == "paced" and t) for c, t in zip(classes, tmpl)], dtype=bool)
    return dom if dom.any() else np.ones(len(classes), dtype=bool)


def _lead_intervals(values_ms: np.ndarray, dom: np.ndarray, good: np.ndarray) -> np.ndarray:
    """Per lead, the median over the dominant beats of its own interval (ms; NaN: gated or not measured)."""
    out = np.full(values_ms.shape[0], np.nan)
    sub = values_ms[:, dom]
    for i in np.flatnonzero(good):
        v = sub[i][np.isfinite(sub[i])]
        if v.size:
            out[i] = float(np.median(v))
    return out


def _record_row(record: ECGRecord, fid: GlobalFiducials, classes: list[str], rr_ms: np.ndarray,
                gate: list[str | None], lead_stats: dict, per_lead_qt: dict, fs: float, values: dict,
                conf: Confidences) -> dict:
    to_ms = 1000.0 / fs
    row = {c: None for c in RECORDS_SCHEMA}
    rr = rr_ms[np.isfinite(rr_ms)]
    row.update(record_id=record.record_id, source=record.meta.source, n_beats=len(classes))
    if rr.size:
        rr_mean = float(rr.mean())
        row.update(rr_mean_ms=rr_mean, rr_sd_ms=float(rr.std(ddof=1)) if rr.size > 1 else 0.0,
                   hr_bpm=60000.0 / rr_mean,
                   rhythm_regular=bool(rr.size >= 2 and float(rr.std()) / rr_mean < 0.1))
    row["p_waves_present"] = bool(fid.p_present)
    row["av_dissociation"] = bool(fid.av_dissociation is not None and fid.av_dissociation.present)
    fl = fid.flutter
    row["flutter_waves"] = bool(fl.present) if fl is not None else None
    # global intervals (earliest onset to latest offset over leads, as the 12-lead programs): kept beside
    row.update(_global_intervals(fid, classes, fs))
    # the record's intervals: the median over leads of each lead's own (what one reads in a typical lead)
    row.update(values)
    for k, ic in conf.intervals.items():
        value = row["hr_bpm"] if k == "hr" else row[f"{k}_ms"]
        row[f"{k}_conf"] = ic.value if value is not None else None
    row["uncertain"] = conf.uncertain({**values, "hr_bpm": row["hr_bpm"]})
    if row["qt_ms"] is not None and row["rr_mean_ms"]:
        qt, rrm = row["qt_ms"], row["rr_mean_ms"]
        row.update(qtc_bazett_ms=qtc_bazett_ms(qt, rrm), qtc_fridericia_ms=qtc_fridericia_ms(qt, rrm),
                   qtc_framingham_ms=qtc_framingham_ms(qt, rrm), qtc_hodges_ms=qtc_hodges_ms(qt, rrm))
    for wave, key in (("p", "p_area"), ("qrs", "qrs_area"), ("t", "t_area")):
        a_i, a_f = _median(lead_stats["I"][key]), _median(lead_stats["aVF"][key])
        if a_f is None:  # aVF gated: Einthoven gives aVF = II - I/2
            a_ii = _median(lead_stats["II"][key])
            a_f = a_ii - a_i / 2.0 if a_ii is not None and a_i is not None else None
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
    # QT dispersion: max - min of the leads' own QT on the median beat, over good leads whose T end is
    # visible (not flat); null with fewer than QTD_MIN_LEADS such leads (a dispersion of 2 leads says
    # nothing). Each lead's T end is searched within +-40 ms of the global one, so this saturates at 80 ms.
    delta = fid.lead_t_off_delta
    if delta is not None and np.isfinite(delta).sum() >= QTD_MIN_LEADS and row["qt_ms"] is not None:
        d = delta[np.isfinite(delta)]
        row["qt_dispersion_ms"] = float(d.max() - d.min()) * to_ms
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
