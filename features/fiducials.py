"""The delineator's shared vocabulary: the per-beat fiducials (``GlobalFiducials``), ms -> samples, and the
trapezium knee that finds a wave's end (Vazquez-Seisdedos et al., IEEE TBME 2011: the knee maximises the area
of the trapezium spanned by a steep point, the candidate point and a far reference point). Used by the global
delineation (``features.delineate``), the per-lead edges (``features.lead_edges``) and the checks built on
them (``features.confidence``, ``features.rate``, ``features.qrs_edges``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# trapezium reference points: how far past a wave's steepest slope its end is looked for (ms)
# (chosen on synthetic records with known fiducials: 100 / 40 ms gave the smallest bias there)
T_KNEE_REF_MS = 100.0
P_KNEE_REF_MS = 40.0

@dataclass
class GlobalFiducials:
    """Per beat (length n_beats): sample positions (float, NaN = absent) shared by all leads."""

    r: np.ndarray        # beat anchor: the sample of largest spatial slope in the QRS
    qrs_on: np.ndarray
    qrs_off: np.ndarray
    p_on: np.ndarray
    p_peak: np.ndarray
    p_off: np.ndarray
    t_on: np.ndarray
    t_peak: np.ndarray
    t_off: np.ndarray
    iso: np.ndarray      # (n_leads, n_beats) isoelectric level in mV per lead and beat (PR segment)
    paced: np.ndarray    # bool per beat: a pacing spike just before / at QRS onset
    p_present: bool      # record-level: consistent P waves before most QRS
    p_diag: dict = None  # why P waves were (not) accepted: counts, PR spread, rival atrial waves
    # per lead (n_leads): that lead's own T end minus the global one on the median beat, in samples (NaN:
    # not refined: gated, flat T, no median beat); applies to the beats in ``t_from_template``
    lead_t_off_delta: np.ndarray = None
    t_from_template: np.ndarray = None  # bool per beat: its T fiducials are the median beat's
    # (n_leads, n_beats): each lead's own T end minus the global one, measured on the beat itself, for the
    # beats not in ``t_from_template`` (samples, NaN: not refined: gated, flat T, a median-beat T)
    beat_lead_t_off_delta: np.ndarray = None
    # per lead: that lead's own P end minus the global one on the median beat (samples, NaN: not refined);
    # applies to every beat with a P (all are the same sinus P)
    lead_p_off_delta: np.ndarray = None
    # per lead: that lead's own P onset minus the global one on the median beat (samples, NaN: not refined);
    # applies to every beat with a P
    lead_p_on_delta: np.ndarray = None
    # (n_leads, 3): the P-onset fit's inputs per lead, in ms from the global onset (P_ONSET_FIT_FEATURES;
    # NaN rows: gated leads); kept so that features/fit_p_onset.py learns from exactly what is applied
    lead_p_on_features: np.ndarray = None
    p_from_template: np.ndarray = None  # bool per beat: its P fiducials are the median beat's
    # per lead: that lead's own QRS end minus the global one on the median beat (samples, NaN: not refined);
    # applies to the beats in ``qrs_from_template``
    lead_qrs_off_delta: np.ndarray = None
    qrs_from_template: np.ndarray = None  # bool per beat: its QRS fiducials are the median beat's
    # each beat's own fiducials (samples) as delineated alone, before the median beat's were carried to it
    # (keys: qrs_on, qrs_off, p_on, p_peak, t_off): how far the beats agree with the median beat
    # (features.confidence)
    beat_own: dict = None
    template: np.ndarray = None  # (n_leads, samples) the median beat (0.5-40 Hz), None without one
    template_fid: "GlobalFiducials" = None  # its own delineation (one beat, at sample ``template_before``)
    template_before: int = 0     # samples of the median beat before its anchor
    template_d_on: float = np.nan  # its QRS onset / offset relative to the anchor as carried to the beats
    template_d_off: float = np.nan  # (the paced onset adjusted), samples
    # per beat: the detected QRS end (samples) where the ST segment is read; qrs_off is the published end, moved
    # by the reading convention (features.qrs_edges.apply_reading_convention); None before it is applied
    j_point: np.ndarray = None
    # per beat: the detected QRS onset (samples), which the isoelectric level of the amplitudes is read before (a
    # reading convention moves timing only, never an amplitude); None before the convention is applied
    level_on: np.ndarray = None
    # atrial events (samples) found among the beats and dropped: atrial stimuli with their P, an AV delay before a
    # paced ventricular beat (features.rate.atrial_events); empty: none
    atrial_events: np.ndarray = None
    # flutter waves found under the QRST (``features.flutter.FlutterEvidence``; None: not looked for)
    flutter: object = None
    # P waves dissociated from the QRS (``features.av_dissociation.AVDissociation``; None: not looked for)
    av_dissociation: object = None


def ms(fs_hz: float, value_ms: float) -> int:
    """Samples in ``value_ms`` milliseconds."""
    return int(round(value_ms * fs_hz / 1000.0))


def knee_after(y: np.ndarray, m: int, r: int) -> int:
    """Trapezium knee of a falling curve ``y`` between its steep point ``m`` and reference ``r`` (m < r)."""
    if r <= m + 1:
        return m
    seg = y[m:r + 1]
    t = np.arange(m, r + 1)
    area = (y[m] - seg) * (2 * r - m - t)
    return m + int(np.argmax(area))


def knee_before(y: np.ndarray, m: int, r: int) -> int:
    """Mirror of ``knee_after`` for a rising curve: reference ``r`` < steep point ``m``."""
    if m <= r + 1:
        return m
    seg = y[r:m + 1]
    t = np.arange(r, m + 1)
    area = (y[m] - seg) * (t + m - 2 * r)
    return r + int(np.argmax(area))
