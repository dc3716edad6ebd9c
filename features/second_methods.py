"""The second, cheap methods that ``features.confidence``'s ``method`` check compares our median-beat fiducials
against: threshold crossings of the spatial slope for the QRS duration (QRS_THRESHOLD_FRACTION of its peak) and of
the spatial magnitude for the P onset (P_THRESHOLD_FRACTION of the P), and the tangent method for the T end (where
the tangent at the steepest descent after the T peak meets the baseline).

Each works on the median beat (``GlobalFiducials.template``) over good leads; times in ms.
"""
from __future__ import annotations

import numpy as np

from features.delineate import spatial_slope
from features.fiducials import GlobalFiducials, ms

QRS_THRESHOLD_FRACTION = 0.10  # the second QRS method: where the spatial slope crosses this share of its peak
P_THRESHOLD_FRACTION = 0.20    # the second P-onset method: where the magnitude rises above this share of the P


def qrs_threshold_ms(fid: GlobalFiducials, good: np.ndarray, fs_hz: float) -> float | None:
    """The median beat's QRS duration (ms) by the threshold method: the first and last sample where the spatial
    slope reaches QRS_THRESHOLD_FRACTION of its peak, looked for within 30 ms outside our onset / offset."""
    if fid.template is None or not np.isfinite(fid.template_d_on):
        return None
    b = fid.template_before
    v = spatial_slope(fid.template[good], fs_hz)
    on, off = int(round(b + fid.template_d_on)), int(round(b + fid.template_d_off))
    lo, hi = max(0, on - ms(fs_hz, 30)), min(v.size - 1, off + ms(fs_hz, 30))
    if hi - lo < 4:
        return None
    thr = QRS_THRESHOLD_FRACTION * float(v[on:off + 1].max())
    above = np.flatnonzero(v[lo:hi + 1] >= thr)
    inside = np.flatnonzero(v[on:off + 1] >= thr)
    if above.size < 2 or inside.size == 0:
        return None
    first = lo + int(above[0])  # anything above it before the QRS: a baseline that is no quiet one (noise, f waves)
    # the end: where the run of the slope that holds our last sample above the threshold crosses it on its way out
    # of the QRS; a wave beyond a dip below it is another one (the ST-T's first limb 14 ms after the J point at a
    # fast rate, LBBB at 127 bpm: a QRS read 28 ms long by this method)
    last = on + int(inside[-1])
    while last < hi and v[last + 1] >= thr:
        last += 1
    # a paced QRS starts after its stimulus (the threshold would see the blanked stretch's smear before it)
    if fid.paced is not None and fid.paced.any():
        first = max(first, on)
    return (last - first) * 1000.0 / fs_hz


def _magnitude(fid: GlobalFiducials, good: np.ndarray) -> np.ndarray | None:
    """The median beat's spatial magnitude about its per-lead PR level (mV), over good leads."""
    tf = fid.template_fid
    if fid.template is None or tf is None:
        return None
    iso = tf.iso[:, 0]
    ok = good & np.isfinite(iso)
    if not ok.any():
        return None
    return np.sqrt(np.sum((fid.template[ok] - iso[ok, None]) ** 2, axis=0))


def t_end_tangent_ms(fid: GlobalFiducials, good: np.ndarray, fs_hz: float) -> float | None:
    """The median beat's T end by the tangent method minus ours (ms): the tangent to the spatial magnitude
    at its steepest descent after the T peak, extended to the baseline (its lowest level over the 100 ms
    after our T end)."""
    tf = fid.template_fid
    m = _magnitude(fid, good)
    if m is None or not (np.isfinite(tf.t_peak[0]) and np.isfinite(tf.t_off[0])):
        return None
    pk, end = int(tf.t_peak[0]), int(tf.t_off[0])
    hi = min(m.size - 1, end + ms(fs_hz, 100))
    if hi - pk < 4:
        return None
    dm = np.gradient(m)
    sm = pk + int(np.argmin(dm[pk:min(hi, pk + ms(fs_hz, 200)) + 1]))
    if dm[sm] >= 0:
        return None
    base = float(m[end:hi + 1].min())
    t_tan = sm + (base - float(m[sm])) / float(dm[sm])
    return (t_tan - end) * 1000.0 / fs_hz


def p_on_threshold_ms(fid: GlobalFiducials, good: np.ndarray, fs_hz: float) -> float | None:
    """The median beat's P onset by a threshold (the magnitude rising above P_THRESHOLD_FRACTION of the P
    over its level before) minus ours (ms)."""
    tf = fid.template_fid
    m = _magnitude(fid, good)
    if m is None or not (np.isfinite(tf.p_on[0]) and np.isfinite(tf.p_peak[0])):
        return None
    on, pk = int(tf.p_on[0]), int(tf.p_peak[0])
    lo = max(0, on - ms(fs_hz, 60))
    if pk - lo < 4:
        return None
    floor = float(m[lo:pk + 1].min())
    top = float(m[pk]) - floor
    if top <= 0:
        return None
    # walking back from the peak: the last sample below the threshold, +1
    below = np.flatnonzero(m[lo:pk + 1] - floor < P_THRESHOLD_FRACTION * top)
    if below.size == 0:
        return None
    return (lo + int(below[-1]) + 1 - on) * 1000.0 / fs_hz
