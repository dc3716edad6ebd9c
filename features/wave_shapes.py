"""Shapes of the P and T waves on the spatial magnitude, for ``features.delineate``: local maxima, the first
hump of a bifid P, a T before a larger U wave, and the notch where the wave after a T begins.

Sample indices into the curves passed in (the spatial magnitude over a P or T window).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import signal as sps

from features.fiducials import P_KNEE_REF_MS, knee_before, ms


def _interior_max(y: np.ndarray, lo: int, hi: int) -> int | None:
    """Index of the largest local maximum of ``y`` strictly inside [lo, hi) (not a window edge)."""
    lo, hi = max(lo, 1), min(hi, y.size - 1)
    if hi <= lo:
        return None
    seg = y[lo:hi]
    left, right = y[lo - 1:hi - 1], y[lo + 1:hi + 1]
    is_max = (seg >= left) & (seg > right)
    if not is_max.any():
        return None
    idx = np.flatnonzero(is_max)
    return lo + int(idx[np.argmax(seg[idx])])


def _prominent_max(y: np.ndarray, lo: int, hi: int) -> int | None:
    """Index of the most prominent local maximum of ``y`` strictly inside [lo, hi): the wave that stands out
    most from the troughs around it, not merely the highest point. A T wave rising out of a depressed ST
    segment (LVH strain) can be lower than a ripple on that ST's decline, which the highest-maximum rule took
    for the T peak (QT 100 ms short)."""
    lo, hi = max(lo, 1), min(hi, y.size - 1)
    if hi - lo < 2:
        return None
    seg = y[lo - 1:hi + 1]
    peaks, props = sps.find_peaks(seg, prominence=0.0)
    keep = (peaks >= 1) & (peaks <= seg.size - 2)
    if not keep.any():
        return None
    peaks, prom = peaks[keep], props["prominences"][keep]
    return lo - 1 + int(peaks[np.argmax(prom)])


P_FIRST_HUMP_MIN = 0.4   # a bifid P's first hump rises at least this share of the P above the level before it
P_NOTCH_MIN = 0.15       # ... and the magnitude dips this share of that hump between the two humps
P_FIRST_HUMP_MS = 60.0   # ... which lies at most this far before the onset knee


def _bifid_p_start(mp: np.ndarray, dm: np.ndarray, p_start: int, pk: int, fs_hz: float) -> int:
    """The onset of a bifid P whose first hump the knee ``p_start`` (before the peak ``pk``) left out.

    ``mp``: the spatial magnitude over the P window (its gradient ``dm``). When the highest point of
    ``mp`` in the P_FIRST_HUMP_MS before ``p_start`` is a hump (not the window's edge) rising
    P_FIRST_HUMP_MIN of the P above the lowest level before it, with a notch of P_NOTCH_MIN of its height
    between it and the peak, the P starts at the trapezium knee before that hump's steepest rise."""
    lo = max(0, p_start - ms(fs_hz, P_FIRST_HUMP_MS))
    if p_start - lo < 4:
        return p_start
    h = lo + int(np.argmax(mp[lo:p_start + 1]))
    if h <= lo + 1 or h >= p_start - 1:
        return p_start
    floor = float(mp[lo:h + 1].min())
    notch = float(mp[h:pk + 1].min())
    rise, top = float(mp[h]) - floor, float(mp[pk]) - floor
    if top <= 0 or rise < P_FIRST_HUMP_MIN * top or float(mp[h]) - notch < P_NOTCH_MIN * rise:
        return p_start
    su = lo + int(np.argmax(dm[lo:h + 1]))
    return max(0, knee_before(mp, su, max(0, su - ms(fs_hz, P_KNEE_REF_MS))))


# A T wave peaks inside the QT, ~100 ms before its end: corrected for the rate (Bazett), within ~450 ms of the QRS
# onset even with a long QT (QTc 500-550); a U wave peaks ~100 ms after the T end, beyond that
T_PEAK_C_MAX_MS = 450.0
T_HUMP_MIN = 0.25  # the earlier hump (the T) is at least this share of the later one (the U) above the baseline
T_U_DIP = 0.5      # ... and the magnitude between them falls by at least this share of the earlier hump's height


def _t_before_u(mt: np.ndarray, pk: int, lo: int, off_from_on: int, rr: float, fs_hz: float) -> int:
    """The T peak when the largest repolarisation hump ``pk`` (index into ``mt``, the spatial magnitude from
    the QRS offset, which lies ``off_from_on`` samples after its onset) is a U wave: a later hump than the T
    can be (Bazett-corrected peak time beyond T_PEAK_C_MAX_MS at the RR ``rr``, samples) after an earlier
    hump of at least T_HUMP_MIN of it that the magnitude falls from by T_U_DIP towards the baseline; else
    ``pk``. A low, flat T followed by a larger U (LVH with repolarisation changes, hypokalaemia) put the T end
    at the U's: QT +150-190 ms."""
    if rr <= 0:
        return pk
    corr = math.sqrt(rr / fs_hz)  # sqrt(RR in s)
    if (pk + off_from_on) / corr * 1000.0 / fs_hz <= T_PEAK_C_MAX_MS:
        return pk
    late = lo + int((T_PEAK_C_MAX_MS / 1000.0 * fs_hz) * corr) - off_from_on  # the last place a T may peak
    h = _interior_max(mt, lo, min(pk - ms(fs_hz, 40), late + 1))
    if h is None:
        return pk
    base = float(mt[lo:].min())
    dip = float(mt[h:pk + 1].min())
    top_h, top_pk = float(mt[h]) - base, float(mt[pk]) - base
    if top_pk <= 0 or top_h < T_HUMP_MIN * top_pk or float(mt[h]) - dip < T_U_DIP * top_h:
        return pk
    return h


T_NEXT_WAVE_RISE = 0.2   # a rise this share of the T's height after a notch is the next wave (U, P), not the T
T_NOTCH_DEPTH = 0.6      # ... from a notch the T has fallen to at most this share of its height ...
T_NEXT_WAVE_MS = 80.0    # ... rising within this long


def _next_wave_notch(mt: np.ndarray, pk: int, hi: int, fs_hz: float) -> int:
    """Where another wave begins after the T peak ``pk`` of the spatial magnitude ``mt``: the first local minimum
    up to ``hi`` that the T has fallen into (to T_NOTCH_DEPTH of its height above ``mt``'s lowest level) and
    from which the magnitude rises again by T_NEXT_WAVE_RISE of that height within T_NEXT_WAVE_MS (a U wave,
    fused with the T or not; the next P); ``mt.size - 1`` when none does."""
    base = float(mt.min())
    top = float(mt[pk]) - base
    if hi <= pk + 2 or top <= 0:
        return mt.size - 1
    seg = mt[pk:min(mt.size, hi + 1)]
    is_min = np.flatnonzero((seg[1:-1] <= seg[:-2]) & (seg[1:-1] < seg[2:])) + 1
    w = ms(fs_hz, T_NEXT_WAVE_MS)
    for j in is_min:
        low = float(seg[j])
        if low - base > T_NOTCH_DEPTH * top:
            continue
        if float(mt[pk + j:min(mt.size, pk + j + w + 1)].max()) - low >= T_NEXT_WAVE_RISE * top:
            return pk + int(j)
    return mt.size - 1
