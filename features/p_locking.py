"""Which beat a P wave belongs to: a P conducts to the QRS after it, so its distance to that QRS does not follow the
RR before it; a wave the previous beat leaves (the T's tail, a U wave) keeps its distance to that beat instead, and
its distance to the next QRS changes one for one with the RR (``features.confidence``: PR ``previous_beat`` and the
exemption of ``later_rival``). Fiducials in samples in, slopes of ms on ms out.
"""
from __future__ import annotations

import numpy as np

from features.fiducials import GlobalFiducials

# p_locking: the P's distance to its QRS against the RR before it. A slope this far above 0 (less twice its standard
# error) is a wave of the previous beat; it is read only from this many beats and an RR that varies this much (SD;
# three samples at 500 Hz, above a P peak's jitter between beats, 1-5 ms on LUDB: LUDB 65, RR SD 2-3 ms, reads
# slopes of 0.5-0.8 from that jitter alone)
P_LOCK_PREVIOUS_SLOPE = 0.5
P_LOCK_MIN_BEATS = 4
P_LOCK_RR_SD_MIN_MS = 6.0


def p_locking(fid: GlobalFiducials, fs_hz: float) -> tuple[float, float, float] | None:
    """How the beats' own P peaks (as each beat alone picked them) follow the RR before them: the least-squares
    slope of (R - P peak) on (R - the previous R), both ms, over the beats with a P picked (all of them: a beat's
    class says nothing of which wave its P search took, and the beats the classes leave out are often the ones
    whose RR tells most), its standard error, and the median of the beat pairs' slopes; None with fewer than
    P_LOCK_MIN_BEATS such beats or an RR SD under P_LOCK_RR_SD_MIN_MS (nothing to tell). 0: the P keeps its
    distance to its own QRS (a P wave); 1: to the previous beat (its T's tail, a U wave)."""
    # the beats' own picks before P presence was judged (where the median beat found the P under noise, no beat
    # kept its own)
    p = (fid.p_diag or {}).get("p_peak_raw")
    if p is None or p.size != fid.r.size or fid.r.size < 2:
        return None
    r = fid.r.astype(float)
    use = np.isfinite(p[1:])
    if use.sum() < P_LOCK_MIN_BEATS:
        return None
    x = (r[1:] - r[:-1])[use] * 1000.0 / fs_hz
    y = (r[1:] - p[1:])[use] * 1000.0 / fs_hz
    sx = float(np.std(x))
    if sx < P_LOCK_RR_SD_MIN_MS:
        return None
    slope = float(np.mean((x - x.mean()) * (y - y.mean())) / sx ** 2)
    resid = y - y.mean() - slope * (x - x.mean())
    se = float(np.sqrt(np.sum(resid ** 2) / (x.size - 2)) / (sx * np.sqrt(x.size)))
    # the median of the pairwise slopes (Theil-Sen): one beat whose RR and P pick are both odd (the last beat, a
    # premature one) makes the least-squares slope its own (synthetic sinus, every other beat's P at exactly the same
    # PR: 0.75-0.80 +- 0.08 from that beat alone), not this one
    i, j = np.triu_indices(x.size, 1)
    dx = x[j] - x[i]
    far = np.abs(dx) >= 2.0 * 1000.0 / fs_hz
    median = float(np.median((y[j] - y[i])[far] / dx[far])) if far.any() else slope
    return slope, se, median
