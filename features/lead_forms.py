"""Each lead's wave forms and QRS deflections, for ``features.measure``: ``wave_forms`` names a P or T wave's form
in each lead (positive, negative, biphasic, flat) with its signed dominant amplitude, ``qrs_deflections`` names a
lead's QRS deflections (q, r, s, r') with their amplitudes, durations and the morphology label (e.g. "qRs", "rSr'").
P_FLAT_MV / T_FLAT_MV say when a lead's P / T is flat (also where ``features.confidence`` finds its timing not
measurable in that lead).

Segments are referred to the lead's isoelectric PR level (mV); durations in ms.
"""
from __future__ import annotations

import numpy as np

P_FLAT_MV = 0.03     # a P deflection smaller than this in a lead is "flat" there
T_FLAT_MV = 0.05     # same for T
LOBE_MIN_MV = 0.04   # a QRS deflection smaller than this is not named a wave (no invented q / s)
BIPHASIC_RATIO = 0.3  # the smaller phase is at least this share of the larger


def wave_form(seg: np.ndarray, flat_mv: float) -> tuple[str, float | None]:
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


def wave_forms(seg: np.ndarray, flat_mv: float) -> tuple[list[str], np.ndarray]:
    """Row-wise ``wave_form`` for a (leads, samples) block: forms and signed dominant amplitudes (mV)."""
    pos, neg = seg.max(axis=1), seg.min(axis=1)
    big = np.maximum(pos, -neg)
    small = np.minimum(pos, -neg)
    amp = np.where(pos >= -neg, pos, neg)
    forms = np.where(big < flat_mv, "flat",
                     np.where((small >= flat_mv) & (small >= BIPHASIC_RATIO * big), "biphasic",
                              np.where(amp > 0, "positive", "negative")))
    return forms.tolist(), amp


def qrs_deflections(seg: np.ndarray, fs_hz: float) -> dict:
    """Name the QRS deflections of one lead (seg referred to baseline, mV).

    Returns amplitudes (mV) and durations (ms) of q, r, r', s plus the morphology label. Deflections
    smaller than LOBE_MIN_MV (or 10% of the largest) are not named, so a missing Q or S stays missing.
    """
    out = {"q_amp_mv": None, "r_amp_mv": None, "r_prime_amp_mv": None, "s_amp_mv": None,
           "q_ms": None, "r_ms": None, "s_ms": None, "qrs_morphology": None}
    if seg.size < 2:
        return out
    pos_mask = seg >= 0
    change = np.flatnonzero(pos_mask[1:] != pos_mask[:-1]) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [seg.size]))
    maxs = np.maximum.reduceat(seg, starts).tolist()
    mins = np.minimum.reduceat(seg, starts).tolist()
    signs = pos_mask[starts].tolist()
    big = max(max(maxs), -min(mins))
    thr = max(LOBE_MIN_MV, 0.1 * big)
    dur = ((ends - starts) * (1000.0 / fs_hz)).tolist()
    lobes = []  # (sign, amp, dur_ms)
    for sg, hi, lo, d in zip(signs, maxs, mins, dur):
        sgn = 1 if sg else -1
        amp = hi if sg else lo
        if abs(amp) >= thr:
            if lobes and lobes[-1][0] == sgn:  # same-sign lobes split by an unnamed notch: merge
                s0, a0, d0 = lobes[-1]
                lobes[-1] = (s0, a0 if abs(a0) >= abs(amp) else amp, d0 + d)
            else:
                lobes.append((sgn, amp, d))
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
