"""A second look for a blocked P wave (2:1 AV block): ``blocked_p_onset`` finds the conducted P's twin half an RR
after it on the median beat, for ``features.confidence``'s QT ``blocked_p`` check (a blocked P starting before the
T's measured end, which then takes the P's start for its own end).
"""
from __future__ import annotations

import numpy as np
from scipy import signal as sps

from features.fiducials import GlobalFiducials, ms

BLOCKED_P_BAND_HZ = (8.0, 40.0)  # a P's onset and peak, not the T's slow curve: the band its twin is matched in
BLOCKED_P_CORR = 0.85          # ... at least this well (2:1 block: 0.82-0.99; sinus, the median beat half an RR after its
BLOCKED_P_SIZE = (0.6, 1.6)    # P: at most 0.81 over 238 records), and about as large (blocked P in the T: 0.8-1.3)
BLOCKED_P_SEARCH_MS = 30.0     # ... within this of half an RR after the median beat's own P


def blocked_p_onset(fid: GlobalFiducials, good: np.ndarray, fs_hz: float) -> float | None:
    """2:1 AV block: the onset (samples, on the median beat) of the blocked P. The sinus node fires regularly and
    every second P is not conducted: the blocked P, locked to the QRS like the conducted one, lies half an RR after
    the median beat's own P, mostly on or after the T, and is its twin (the same atrial activation). None where the
    median beat holds no such twin there."""
    tf = fid.template_fid
    if tf is None or fid.template is None or not fid.p_present or fid.r.size < 3 or not good.any() \
            or not (np.isfinite(tf.p_on[0]) and np.isfinite(tf.p_off[0])):
        return None
    nyq = fs_hz / 2.0
    b, a = sps.butter(2, [BLOCKED_P_BAND_HZ[0] / nyq, min(BLOCKED_P_BAND_HZ[1] / nyq, 0.9)], btype="band")
    tm = sps.filtfilt(b, a, fid.template[good], axis=1)
    on, off = int(tf.p_on[0]), int(tf.p_off[0])
    seg = tm[:, on:off + 1]
    ss = float(np.sum(seg * seg))
    n = seg.shape[1]
    centre = int(round(on + float(np.median(np.diff(fid.r))) / 2.0))
    w = ms(fs_hz, BLOCKED_P_SEARCH_MS)
    starts = np.arange(max(0, centre - w), min(tm.shape[1] - n, centre + w) + 1)
    if ss <= 0 or n < 3 or starts.size == 0:
        return None
    win = np.lib.stride_tricks.sliding_window_view(tm, n, axis=1)[:, starts, :]
    num = np.einsum("lsk,lk->s", win, seg)
    cc = np.einsum("lsk,lsk->s", win, win)
    corr = np.where(cc > 0, num / np.sqrt(ss * np.maximum(cc, 1e-30)), 0.0)
    i = int(np.argmax(corr))
    size = float(np.sqrt(cc[i] / ss))
    if corr[i] >= BLOCKED_P_CORR and BLOCKED_P_SIZE[0] <= size <= BLOCKED_P_SIZE[1]:
        return float(starts[i])
    return None
