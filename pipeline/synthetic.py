"""Synthetic 12-lead ECGs with exact ground truth: the embedded default source and every test's reference.

Model (consistent by construction)
----------------------------------
The heart is one time-varying dipole ``H(t) = (x, y, z)`` in mV, body axes x = patient's left, y = inferior
(feet), z = anterior. Each wave is a sum of *components*: a fixed 3-D direction times a compactly supported
asymmetric bump (a sine rise and a cosine fall raised to a power, see ``bump``), so every wave starts and
ends at an exact instant. The 12 leads are fixed linear projections of ``H``:

- frontal leads from the hexaxial angles: ``I = k·x`` (0°), ``II = k·(x/2 + √3/2·y)`` (60°), and
  ``III, aVR, aVL, aVF`` derived from I and II (Einthoven / Goldberger). With this scaling
  ``aVF = k·√3/2·y``, so the frontal axis is ``atan2(2·aVF/√3, I)``;
- precordial leads from Dower's inverse-transform rows (the Frank-lead to V1-V6 coefficients), which
  give the rS (V1) -> transition (V3/V4) -> qR (V5/V6) progression from a realistic vector loop.

Noise is simulated per *electrode* (RA, LA, LL, V1..V6) and combined the way an electrocardiograph does
(I = LA - RA, II = LL - RA, Vi = Vi - Wilson terminal); III, aVR, aVL, aVF are then computed from the
float32 I and II, so Einthoven's and Goldberger's relations hold to float precision on noisy records too.

Truth conventions (``SynthRecord.beats``; ms from record start)
----------------------------------------------------------------
- ``*_on_ms`` / ``*_off_ms``: the instants where that wave's dipole contribution starts / ends. They are
  global (the same in every lead): a lead nearly perpendicular to the first (last) component of a wave
  shows its onset (offset) later (earlier) than the truth (e.g. the P onset in lead I, where the early
  right-atrial forces project weakly). Outside the waves a clean record is exactly zero (PR and TP
  segments), inside them some lead deflects within 4 ms of every onset and offset. Edges have a finite
  slope (QRS onset/offset, P onset/offset, T offset) or a near-linear start (T onset), so a delineator
  can place them within a few ms; beats start on a sample, so every normal beat is the same waveform.
- ``*_peak_ms``: per lead, the sample of largest |deflection| of the beat's own clean waveform (its ST
  shift included; noise and AF f-waves excluded) inside that wave's support. ``r_peak_ms`` is the largest
  |QRS deflection|, which is an S wave in leads such as V1 or aVR.
- ``st_j60_mv``: per lead, the ST plateau level the generator put there (0 without an ST shift); it is the
  level at J+60 ms whenever the T wave has not started by then.
- A beat is in the truth when its QRS lies wholly inside the record; fiducials of its P or T wave that
  fall outside the record are null, as are P fiducials where there is no P wave (AF, PVC).
- Record level: ``rr_mean_ms`` = mean interval between consecutive QRS onsets of truth beats,
  ``hr_bpm = 60000 / rr_mean_ms``; ``pr_ms``, ``qrs_ms``, ``qt_ms`` = the normal beats' QRS onset - P onset,
  QRS duration and QRS onset -> T offset; ``qrs_axis_deg`` = the frontal angle of the QRS vector *area*
  (the net-QRS axis, exact for every normal beat of the clean signal).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import polars as pl

from pipeline.record import Statement
from pipeline.synthetic_avblock import add_blocked_p_waves, escape_loop, p_wave
from pipeline.synthetic_flutter import flutter_rr, flutter_waves
from pipeline.synthetic_ectopy import add_pacing_spikes, place_pacs, pvc_loop, pvc_positions
from pipeline.synthetic_noise import electrode_noise
from pipeline.synthetic_params import TERRITORY_DIRS, SynthParams
from pipeline.synthetic_truth import SCP_NAMES, RecordTruth, _truth, beats_frame, report_text
from pipeline.synthetic_waves import (  # noqa: F401 - some re-exported: tests and callers import them from here
    LEAD_MATRIX, P_BIFID, P_SINUS, QRS_IRBBB, QRS_LAFB, QRS_LBBB, QRS_LPFB, QRS_NORMAL, QRS_PACED_BIV,
    QRS_PACED_RV, QRS_RBBB, RECORDED_LEADS, T_NORMAL_DIR, T_NORMAL_MV, T_PEAK_FRACTION, T_RISE_POW, U_WAVE_MS,
    BeatTemplate, Component, Wave, bump, derive_limb_leads, frontal_axis_deg, lead_matrix,
    loop_area, qrs_peak_to_peak, rotation_z, scale_to_max_lead,
)


@dataclass
class SynthRecord:
    """One generated record: the (12, n) float32 signal in mV, the per-beat per-lead truth and the labels.

    ``beats`` (a polars frame, ``BEATS_TRUTH_SCHEMA``: record_id, lead, beat, the 9 fiducials in ms,
    beat_class, st_j60_mv) is built on first access from plain columns.
    """

    record_id: str
    params: SynthParams
    seed: int
    signal_mv: np.ndarray
    truth: RecordTruth
    statements: list[Statement] = field(default_factory=list)
    beat_columns: dict = field(default_factory=dict, repr=False)
    # under AV block: every P wave's onset (ms), conducted or not (the beats carry only the conducted ones)
    atrial_on_ms: np.ndarray | None = None

    @cached_property
    def beats(self) -> pl.DataFrame:
        return beats_frame([self.beat_columns])

    @property
    def report(self) -> str:
        return report_text(self.truth.scp_codes)


def _sinus_rr(rng: np.random.Generator, rr_ms: float, n: int, variability: float) -> np.ndarray:
    """``n`` sinus RR intervals (ms) with respiratory sinus arrhythmia, mean exactly ``rr_ms``."""
    phase = rng.uniform(0, 2 * np.pi)
    resp_beats = max(2.0, 4000.0 / rr_ms)  # one breath every ~4 s
    k = np.arange(n)
    rr = rr_ms * (1.0 + variability * np.sin(2 * np.pi * k / resp_beats + phase)
                  + 0.25 * variability * rng.standard_normal(n))
    return rr * (rr_ms / rr.mean())


def _af_rr(rng: np.random.Generator, rr_ms: float, n: int, cv: float, min_rr_ms: float) -> np.ndarray:
    """``n`` irregularly irregular RR intervals (ms): independent draws, mean ``rr_ms``, none below ``min_rr_ms``."""
    rr = rr_ms * np.exp(cv * rng.standard_normal(n) - 0.5 * cv * cv)
    rr = rr * (rr_ms / rr.mean())
    return np.maximum(rr, min_rr_ms)


def _layout_qrs_onsets(params: SynthParams, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """QRS onset times (ms) of the underlying rhythm, covering the record with one beat spare each side."""
    rr_ms = 60000.0 / params.hr_bpm
    dur_ms = params.duration_s * 1000.0
    n = int(math.ceil(dur_ms / rr_ms)) + 4
    if params.is_sinus:
        # never so short that a P wave would start before the previous T has ended (with ``p_on_t``: before
        # the previous QRS and its ST segment have)
        floor = (params.qrs_ms + 80.0 if params.p_on_t else params.repolarisation_end_ms + 10.0) + params.pr_ms
        rr = np.maximum(_sinus_rr(rng, rr_ms, n, params.rr_variability), floor)
    elif params.rhythm == "atrial_flutter":
        rr = flutter_rr(rng, rr_ms, n, params.flutter_cycle_ms, params.qt_ms + 80.0, params.flutter_block)
    else:
        rr = _af_rr(rng, rr_ms, n, params.af_rr_cv, params.qt_ms + 80.0)
    first = -rr_ms + rng.uniform(0.0, rr_ms)
    onsets = first + np.concatenate([[0.0], np.cumsum(rr[:-1])])
    return onsets, rr_ms


ST_RAMP_FRACTIONS = (0.25, 0.12, 0.06, 0.0)  # of the QRS: where the ST shift starts rising (0 = a step at J)


def _qrs_rotation(loop: tuple[Component, ...], qrs_ms: float, axis_deg: float,
                  st_vec: np.ndarray | None, dt_ms: float) -> tuple[np.ndarray, float]:
    """Rotation about the antero-posterior axis that puts the net frontal QRS area at ``axis_deg``, and the
    ST ramp fraction used.

    Areas are the sums over the record's samples inside [QRS onset, QRS offset] (beats start on a sample,
    so this is exactly what a measurement sums). The ST component's ramp overlaps the end of the QRS; its
    area is added so that the *measured* net area (QRS + ST ramp) has the stated angle. A large ST shift
    on a small QRS (low voltage) would dominate that area, so the ramp is shortened until the ST share is
    at most half the QRS area.
    """
    t = np.arange(0, int(math.floor(qrs_ms / dt_ms)) + 1) * dt_ms
    area = np.zeros(2)
    for c in loop:
        b = bump(t, c.f_on * qrs_ms, c.f_peak * qrs_ms, c.f_off * qrs_ms, c.rise_pow, c.fall_pow)
        area += c.vector()[:2] * b.sum()
    u = np.array([math.cos(math.radians(axis_deg)), math.sin(math.radians(axis_deg))])
    q = float(np.linalg.norm(area))
    st_area, st_ramp_frac = np.zeros(2), ST_RAMP_FRACTIONS[0]
    if st_vec is not None:
        for st_ramp_frac in ST_RAMP_FRACTIONS:
            ramp = bump(t, qrs_ms * (1.0 - st_ramp_frac), qrs_ms, qrs_ms + 1e3, 2.0, 2.0, qrs_ms + 1.0)
            st_area = st_vec[:2] * ramp.sum()
            if np.linalg.norm(st_area) <= 0.5 * q:
                break
    us = float(u @ st_area)
    disc = us * us - float(st_area @ st_area) + q * q
    lam = us + math.sqrt(max(disc, 0.0))
    want = lam * u - st_area  # what the rotated QRS area must be
    angle = math.atan2(want[1], want[0]) - math.atan2(area[1], area[0])
    return rotation_z(angle), st_ramp_frac


def _f_waves(params: SynthParams, rng: np.random.Generator, n: int) -> np.ndarray:
    """AF fibrillatory activity as a (3, n) dipole: 4-9 Hz, drifting frequency and amplitude, V1-dominant."""
    fs = params.fs_hz
    t_s = np.arange(n) / fs
    out = np.zeros((3, n))
    for d in (np.array([-0.2, 0.6, 0.8]), np.array([0.5, 0.5, -0.3])):
        f0 = rng.uniform(5.0, 8.0)
        drift = 0.8 * np.sin(2 * np.pi * rng.uniform(0.1, 0.3) * t_s + rng.uniform(0, 6.3))
        phase = 2 * np.pi * np.cumsum(f0 + drift) / fs
        amp = 1.0 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t_s + rng.uniform(0, 6.3))
        out += np.outer(d / np.linalg.norm(d), amp * np.sin(phase))
    # Scale so the largest lead carries about ``f_wave_mv`` peak amplitude.
    peak = np.abs(LEAD_MATRIX @ out).max()
    return out * (params.f_wave_mv / peak) if peak > 0 else out


def generate_record(params: SynthParams, seed: int, record_id: str = "synthetic") -> SynthRecord:
    """Generate one 12-lead record and its truth. Deterministic in ``(params, seed)``.

    Returns a ``SynthRecord`` whose ``signal_mv`` is float32 (12, n) in mV, leads in ``LEADS`` order.
    """
    rng = np.random.default_rng(seed)
    fs = params.fs_hz
    dt_ms = 1000.0 / fs
    n = int(round(params.duration_s * fs))
    dur_ms = n * dt_ms

    loop = _qrs_loop(params)
    qrs_ms, qt_ms, pr_ms = params.qrs_ms, params.qt_ms, params.pr_ms

    # Amplitude scaling: individual factor, and low voltage keeps limb QRS < 0.5 mV, chest QRS < 1 mV.
    scale = params.qrs_scale * rng.uniform(0.9, 1.1)
    other_scale = 1.0

    # ST injury vector (elevation towards the territory, depression away from it).
    st_vec = None
    if abs(params.st_shift_mv) >= 1e-6:
        d = TERRITORY_DIRS[params.st_territory]
        st_vec = scale_to_max_lead(d, abs(params.st_shift_mv)) * math.copysign(1.0, params.st_shift_mv)

    rot, st_ramp_frac = _qrs_rotation(loop, qrs_ms, params.qrs_axis_deg,
                                      None if st_vec is None else st_vec / scale, dt_ms)
    qrs_parts = [(rot @ c.vector(), c) for c in loop]
    if params.low_voltage:
        pp = qrs_peak_to_peak(qrs_parts, qrs_ms, fs)
        scale = min(scale, 0.42 / max(pp[:6].max(), 1e-9), 0.85 / max(pp[6:].max(), 1e-9))
        other_scale = 0.6
        if st_vec is not None:  # the ST ramp's share of the net area changed with the QRS scale
            rot, st_ramp_frac = _qrs_rotation(loop, qrs_ms, params.qrs_axis_deg, st_vec / scale, dt_ms)
            qrs_parts = [(rot @ c.vector(), c) for c in loop]

    # T wave: normally concordant with QRS; discordant in bundle branch blocks; inverted in a territory.
    qrs_area = rot @ np.asarray(loop_area(loop))
    t_frontal = float(np.clip(0.5 * params.qrs_axis_deg + 15.0, -10.0, 75.0))
    if params.bundle_branch_block in ("none", "incomplete_right") and params.pacing == "none" \
            and escape_loop(params) is None:  # a ventricular beat repolarises against its QRS: discordant T
        t_vec = np.array([math.cos(math.radians(t_frontal)), math.sin(math.radians(t_frontal)), 0.0])
        t_vec = t_vec * math.hypot(T_NORMAL_DIR[0], T_NORMAL_DIR[1]) + np.array([0.0, 0.0, T_NORMAL_DIR[2]])
        t_vec = T_NORMAL_MV * t_vec / np.linalg.norm(t_vec)
    else:
        t_vec = -0.35 * qrs_area / np.linalg.norm(qrs_area) * 1.2
        if params.bundle_branch_block == "right":  # RBBB: T opposite to the terminal (right, anterior) forces
            term = rot @ QRS_RBBB[-1].vector()
            t_vec = -0.4 * term / np.linalg.norm(term)
    if params.t_inversion is not None:
        d = TERRITORY_DIRS[params.t_inversion]
        d = d / np.linalg.norm(d)
        t_vec = t_vec - (t_vec @ d) * d - 0.45 * d  # remove the territory component, then point away
    t_vec = t_vec * other_scale * params.t_scale

    t_dur = float(np.clip(0.45 * qt_ms, 100.0, 240.0))
    t_dur = min(t_dur, qt_ms - qrs_ms - 20.0)
    p_loop = P_BIFID if params.p_wave == "bifid" else P_SINUS

    # Beat templates (relative to the QRS onset at 0 ms): every beat of one kind is the same waveform.
    normal_waves: dict[str, Wave] = {}
    if params.is_sinus and params.av_block != "complete":  # complete block: no P belongs to a QRS
        normal_waves["P"] = p_wave(params, -pr_ms, p_loop, other_scale)
    normal_waves["QRS"] = Wave("QRS", 0.0, qrs_ms, [
        (v * scale, c.f_on * qrs_ms, c.f_peak * qrs_ms, c.f_off * qrs_ms, c.rise_pow, c.fall_pow)
        for v, c in qrs_parts])
    t_on = qt_ms - t_dur
    normal_waves["T"] = Wave("T", t_on, qt_ms, _t_parts(t_vec, t_on, t_dur, qt_ms, params.t_notch))
    if params.u_wave_mv > 0:
        # the U wave: a small, slow wave concordant with the T, after it or (fusion) riding on its end
        u_vec = scale_to_max_lead(t_vec, params.u_wave_mv) * (1.0 if np.abs(LEAD_MATRIX @ t_vec).max() > 0 else 0.0)
        u_on = qt_ms + params.u_offset_ms
        normal_waves["U"] = Wave("U", u_on, u_on + U_WAVE_MS,
                                  [(u_vec, u_on, u_on + 0.5 * U_WAVE_MS, u_on + U_WAVE_MS, 1.5, 1.5)])
    if st_vec is not None:
        # ST plateau: ramps up over the end of the QRS (usually its last quarter), flat to the T onset, fades
        # out with the T.
        ramp_on = qrs_ms * (1.0 - st_ramp_frac)
        normal_waves["ST"] = Wave("ST", ramp_on, qt_ms, [(st_vec, ramp_on, qrs_ms, qt_ms, 2.0, 2.0, t_on)])
    templates = {"normal": BeatTemplate.build(normal_waves, dt_ms)}
    base_kind = "normal"
    if params.pacing != "none":  # every QRS is paced (atrial-sensed, ventricular-paced: the P keeps its PR)
        templates["paced"] = templates["normal"]
        base_kind = "paced"

    onsets, rr_ms = _layout_qrs_onsets(params, rng)
    kinds = [base_kind] * len(onsets)
    times = onsets.copy()
    if params.pvc_count:
        ectopic_loop = pvc_loop(rng)
        q = float(rng.uniform(140.0, 180.0))
        pvc_t_off = q + 240.0
        templates["premature"] = _ventricular_beat(ectopic_loop, q, 60.0, 180.0, scale, other_scale, dt_ms)
        # PVCs replace beats in the middle of the record; the sinus schedule goes on, so the RR intervals
        # around a PVC sum to two cycles (full compensatory pause). It must start after the previous T
        # and end before the next beat's P.
        next_gap = pr_ms if params.is_sinus else 40.0
        for k in pvc_positions(rng, times, dur_ms, params.pvc_count):
            coupling = max(0.6 * (times[k] - times[k - 1]), qt_ms + 40.0) * rng.uniform(1.0, 1.04)
            fits = (coupling <= 0.85 * (times[k] - times[k - 1])
                    and times[k - 1] + coupling + pvc_t_off + 20.0 < times[k + 1] - next_gap)
            if fits:
                kinds[k] = "premature"
                times[k] = times[k - 1] + coupling
    if params.demand_paced_beats:
        # the pacemaker fires where no conducted beat came within its interval: the longest RR intervals end
        # with a paced beat, whose QRS spreads from the lead's tip (a ventricular focus) with a discordant T
        paced_loop = pvc_loop(rng)
        q = float(rng.uniform(140.0, 170.0))
        templates["paced"] = _ventricular_beat(paced_loop, q, 70.0, 190.0, scale, other_scale, dt_ms)
        longest = np.argsort(-np.diff(times), kind="stable") + 1
        for k in [int(k) for k in longest if kinds[k] == base_kind][:params.demand_paced_beats]:
            kinds[k] = "paced"
    if params.pac_count and params.is_sinus:
        place_pacs(params, rng, normal_waves, templates, times, kinds, dur_ms, dt_ms)
    times = np.round(times / dt_ms) * dt_ms  # beats start on a sample, so one template serves every beat

    dipole = np.zeros((3, n))
    for t0, kind in zip(times, kinds):
        templates[kind].add_to(dipole, int(round(t0 / dt_ms)))
    atrial_on = None
    if params.av_block != "none":  # the P waves no QRS template carries
        atrial_on = add_blocked_p_waves(dipole, params, rng, times, dur_ms, dt_ms, p_loop, other_scale)

    if params.pacing != "none":
        add_pacing_spikes(dipole, params, times, kinds, dt_ms)
    elif params.demand_paced_beats:
        add_pacing_spikes(dipole, params.model_copy(update={"pacing": "ventricular"}), times, kinds, dt_ms)
    total = dipole
    if params.rhythm == "atrial_flutter":
        total = dipole + flutter_waves(params, rng, n)
    elif not params.is_sinus and params.f_wave_mv > 0:
        total = dipole + _f_waves(params, rng, n)
    recorded = LEAD_MATRIX[RECORDED_LEADS] @ total + electrode_noise(params, rng, n)
    signal = np.zeros((12, n), dtype=np.float32)
    signal[RECORDED_LEADS] = recorded.astype(np.float32)
    derive_limb_leads(signal)

    beat_columns, truth = _truth(record_id, params, times, kinds, templates, st_vec, t_vec, dur_ms - dt_ms)
    statements = [Statement(text=SCP_NAMES[c], code=c, system="scp", likelihood=100.0) for c in truth.scp_codes]
    return SynthRecord(record_id, params, int(seed), signal, truth, statements, beat_columns, atrial_on)


def _ventricular_beat(loop: tuple[Component, ...], qrs_ms: float, t_gap_ms: float, t_ms: float, scale: float,
                      t_scale: float, dt_ms: float) -> BeatTemplate:
    """A beat that starts in the ventricles (a PVC, a paced beat): a broad QRS of ``qrs_ms`` from ``loop`` and
    a discordant T (secondary repolarisation) ``t_gap_ms`` after it, ``t_ms`` long."""
    area = np.asarray(loop_area(loop))
    t_vec = -0.5 * area / np.linalg.norm(area) * t_scale
    t_on, t_off = qrs_ms + t_gap_ms, qrs_ms + t_gap_ms + t_ms
    return BeatTemplate.build({
        "QRS": Wave("QRS", 0.0, qrs_ms, [(c.vector() * scale, c.f_on * qrs_ms, c.f_peak * qrs_ms, c.f_off * qrs_ms,
                                          c.rise_pow, c.fall_pow) for c in loop]),
        "T": Wave("T", t_on, t_off, [(t_vec, t_on, t_on + 0.55 * t_ms, t_off, T_RISE_POW, 1.0)]),
    }, dt_ms)


def _qrs_loop(params: SynthParams) -> tuple[Component, ...]:
    """The QRS loop of the record's conducted (or paced) beats."""
    if params.pacing == "ventricular":
        return QRS_PACED_RV
    if escape_loop(params) is not None:
        return escape_loop(params)
    if params.pacing == "biventricular":
        return QRS_PACED_BIV
    if params.fascicular_block == "left_anterior":
        return QRS_LAFB
    if params.fascicular_block == "left_posterior":
        return QRS_LPFB
    return {"none": QRS_NORMAL, "right": QRS_RBBB, "left": QRS_LBBB,
            "incomplete_right": QRS_IRBBB}[params.bundle_branch_block]


def _t_parts(t_vec: np.ndarray, t_on: float, t_dur: float, qt_ms: float, notched: bool) -> list[tuple]:
    """The T wave's components: one asymmetric bump, or (notched) two overlapping ones whose humps lie ~40%
    of the T apart, the second ending the T at ``qt_ms``."""
    if not notched:
        return [(t_vec, t_on, t_on + T_PEAK_FRACTION * t_dur, qt_ms, T_RISE_POW, 1.0)]
    return [(0.75 * t_vec, t_on, t_on + 0.3 * t_dur, t_on + 0.62 * t_dur, T_RISE_POW, 1.5),
            (0.8 * t_vec, t_on + 0.36 * t_dur, t_on + 0.72 * t_dur, qt_ms, 1.5, 1.0)]


# ---------------------------------------------------------------------------------------------------
# A realistic mix of records
# ---------------------------------------------------------------------------------------------------
def random_params(rng: np.random.Generator) -> SynthParams:
    """Draw one record's parameters: mostly normal sinus rhythm, with a realistic mix of findings.

    Roughly: 15 % AF, 12 % sinus bradycardia, 12 % sinus tachycardia; 12 % first-degree AV block (sinus,
    rate <= 100); 8 % RBBB, 7 % LBBB; 10 % PVCs; 7 % ST elevation, 7 % ST depression; 7 % T inversion;
    5 % low voltage; 12 % left and 8 % right axis deviation; most records carry some noise. Values keep a
    margin from the label thresholds (60 / 100 bpm, 200 ms PR, -30 / 90 degrees) so labels are unambiguous.
    """
    u = rng.random()
    if u < 0.15:
        rhythm, hr = "atrial_fibrillation", rng.uniform(65.0, 125.0)
    elif u < 0.27:
        rhythm, hr = "sinus_bradycardia", rng.uniform(42.0, 56.0)
    elif u < 0.39:
        rhythm, hr = "sinus_tachycardia", rng.uniform(106.0, 135.0)
    else:
        rhythm, hr = "sinus_rhythm", rng.uniform(62.0, 97.0)
    rr_ms = 60000.0 / hr

    u = rng.random()
    bbb = "right" if u < 0.08 else "left" if u < 0.15 else "none"
    # A normal QRS is drawn so that it reads normal as clinicians (and our published values) measure it: the
    # dipole's support is ~14 ms shorter than the read QRS (features.qrs_edges: the detector's edges lie ~4 ms
    # outside each kink, the reading convention adds its margins), so a support of 72-94 ms reads 86-108 ms,
    # below the 110 ms limit of a normal QRS; likewise the QTc keeps 15 ms below the 450 ms limit of men.
    qrs_ms = {"right": rng.uniform(124.0, 160.0), "left": rng.uniform(130.0, 170.0)}.get(bbb, rng.uniform(72.0, 94.0))

    qtc_ms = rng.uniform(385.0, 435.0) + (30.0 if bbb != "none" else 0.0)
    qt_ms = qtc_ms * math.sqrt(rr_ms / 1000.0)  # Bazett, inverted
    qt_ms = max(qt_ms, qrs_ms + 130.0)

    first_degree = rhythm in ("sinus_rhythm", "sinus_bradycardia") and rng.random() < 0.2
    pr_ms = rng.uniform(212.0, 300.0) if first_degree else rng.uniform(122.0, 192.0)
    gap = pr_ms if rhythm != "atrial_fibrillation" else 60.0
    if qt_ms + gap + 40.0 > rr_ms:  # fast rates: the QT shortens first, then the PR
        qt_ms = max(qrs_ms + 110.0, rr_ms - gap - 40.0)
        if qt_ms + gap + 40.0 > rr_ms:
            pr_ms = max(110.0, rr_ms - qt_ms - 40.0)

    u = rng.random()
    if u < 0.12:
        axis = rng.uniform(-75.0, -36.0)
    elif u < 0.20:
        axis = rng.uniform(96.0, 140.0)
    else:
        axis = rng.uniform(-24.0, 84.0)

    st_shift, territory = 0.0, str(rng.choice(["anterior", "inferior", "lateral"]))
    u = rng.random()
    if u < 0.07:
        st_shift = rng.uniform(0.15, 0.4)
    elif u < 0.14:
        st_shift = -rng.uniform(0.12, 0.25)
    t_inv = str(rng.choice(["anterior", "inferior", "lateral"])) if rng.random() < 0.07 else None
    low_voltage = bool(rng.random() < 0.05)
    pvc_count = int(rng.integers(1, 4)) if rng.random() < 0.10 else 0

    noisy = rng.random() < 0.8
    return SynthParams(
        hr_bpm=round(hr, 1), pr_ms=round(pr_ms, 1), qrs_ms=round(qrs_ms, 1), qt_ms=round(qt_ms, 1),
        qrs_axis_deg=round(axis, 1), rhythm=rhythm, bundle_branch_block=bbb, pvc_count=pvc_count,
        st_shift_mv=round(st_shift, 3), st_territory=territory, t_inversion=t_inv, low_voltage=low_voltage,
        qrs_scale=round(rng.uniform(0.8, 1.3), 3), rr_variability=round(rng.uniform(0.005, 0.04), 4),
        af_rr_cv=round(rng.uniform(0.12, 0.25), 3), f_wave_mv=round(rng.uniform(0.02, 0.08), 3),
        baseline_wander_mv=round(rng.uniform(0.02, 0.3), 3) if noisy and rng.random() < 0.7 else 0.0,
        mains_hum_mv=round(rng.uniform(0.005, 0.04), 3) if noisy and rng.random() < 0.3 else 0.0,
        mains_hz=int(rng.choice([50, 60])),
        emg_noise_mv=round(rng.uniform(0.005, 0.03), 3) if noisy and rng.random() < 0.35 else 0.0,
    )


# the on-disk tree (a second idea: files, not signals) lives in its own module; imported last because it
# uses the generator above
from pipeline.synthetic_tree import (  # noqa: E402
    ADC_GAIN, WFDB_LEAD_NAMES, finish_synthetic_tree, record_id_for, write_synthetic_part, write_synthetic_tree,
    write_wfdb,
)
