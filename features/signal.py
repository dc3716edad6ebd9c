"""Per-lead cleaning and the quality gate that runs before any beat is looked for.

All signals are mV, (12, n) arrays at ``fs_hz``. ``clean_leads`` gives two copies:
- ``clean``: band-passed 0.5-40 Hz (zero phase) for finding and delineating waves;
- ``light``: only the baseline removed (0.5 Hz zero-phase high-pass) and 150 Hz low-pass, for amplitudes,
  which are then taken against each beat's own isoelectric PR level, so residual wander does not bias them.

Mains hum (a spectral line at 50 or 60 Hz standing far above its neighbourhood in most leads: the heart's own
spectrum is smooth there) is notched out of both first (``mains_line_hz``): the 40 Hz band-pass alone passes
28% of a 50 Hz and 15% of a 60 Hz hum's amplitude (zero phase), ripples that P and T ends and the second
method's knees then follow (LUDB with 0.05 mV of 50 Hz added: QT citable on 27 of 35 records instead of 34).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import signal as sps
from scipy.ndimage import median_filter

FLAT_PTP_MV = 0.02          # a lead whose 0.5-40 Hz signal never moves 20 uV carries no ECG
SATURATION_RUN_MS = 20.0    # a converter rail held this long is clipping, not an R peak
SATURATION_FRACTION = 0.02  # ... over at least this share of the record
NAN_FRACTION_MAX = 0.2      # above this share of non-finite samples a lead is gated
HF_POWER_FRACTION_MAX = 0.4  # white noise puts ~70% of its power in 65-250 Hz at 500 Hz; ECG a few %
HF_BAND_HZ = (65.0, 250.0)   # above the ECG and the 50/60 Hz mains (notched); 100/120 Hz left out
MAINS_HZ = (50.0, 60.0)
# a mains line: its amplitude this many times the median amplitude 1.5-6 Hz either side, in the median lead (the
# heart's spectrum near 50 Hz is smooth: LUDB's 35, PTB-XL's 10, Georgia's 10 records <= 7.6; Ningbo records with
# visible hum 8.4-15; 0.05 mV added to LUDB 58-125) and at least MAINS_MIN_MV: what the band-pass leaves of a
# smaller hum (28% at 50 Hz: under 6 uV, an electrocardiograph's resolution) moves no knee, while the notch
# takes the QRS's own energy at the line with it (synthetic wide_fast seed 1, 8 uV of 50 Hz: QRS end +4 ms)
MAINS_LINE_RATIO = 8.0
MAINS_MIN_MV = 0.02
MAINS_NOTCH_Q = 30.0  # -3 dB width f0 / Q: 1.7 Hz at 50 Hz, far from the heart's energy (mostly < 40 Hz)


@dataclass
class CleanLeads:
    clean: np.ndarray      # (12, n) float64 mV, 0.5-40 Hz band-pass (zero phase)
    light: np.ndarray      # (12, n) float64 mV, baseline removed, 150 Hz low-pass
    nan_mask: np.ndarray   # (12, n) bool, samples that were non-finite and interpolated
    gate: list[str | None]  # per lead: None (ok) or the reason it is gated ("flat", "saturated", ...)
    spikes: np.ndarray = None  # sample indices of pacemaker stimuli (blanked before filtering)
    mains_hz: float | None = None  # the mains frequency notched out (50 / 60 Hz), None when no hum was found


@lru_cache(maxsize=8)
def _sos(kind: str, fs_hz: float):
    if kind == "band":
        return sps.butter(2, [0.5, 40.0], btype="bandpass", fs=fs_hz, output="sos")
    if kind == "hp":
        return sps.butter(2, 0.5, btype="highpass", fs=fs_hz, output="sos")
    if kind == "lp150":
        return sps.butter(2, min(150.0, 0.45 * fs_hz), btype="lowpass", fs=fs_hz, output="sos")
    if kind == "lp40":
        return sps.butter(4, 40.0, btype="lowpass", fs=fs_hz, output="sos")
    raise ValueError(kind)


def _fill_nan(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation over non-finite samples of each lead (all-NaN leads become 0)."""
    x = np.array(x, dtype=np.float64, copy=True)
    bad = ~np.isfinite(x)
    if bad.any():
        idx = np.arange(x.shape[1])
        for i in np.flatnonzero(bad.any(axis=1)):
            good = ~bad[i]
            x[i, bad[i]] = np.interp(idx[bad[i]], idx[good], x[i, good]) if good.any() else 0.0
    return x, bad


def _rail_fraction(raw: np.ndarray, fs_hz: float) -> float:
    """Share of samples sitting on the lead's max or min value in runs >= SATURATION_RUN_MS."""
    run = max(2, int(round(SATURATION_RUN_MS * fs_hz / 1000.0)))
    hi, lo = np.nanmax(raw), np.nanmin(raw)
    total = 0
    med, span = float(np.median(raw)), float(hi - lo)
    # exact plateaus away from both extremes: a noiseless (simulated) or coarsely quantised lead, where
    # constant runs at an extreme prove nothing about clipping
    flat = np.concatenate(([False], np.diff(raw) == 0))
    away = (np.abs(raw - hi) > 1e-6) & (np.abs(raw - lo) > 1e-6)
    if np.any(np.convolve((flat & away).astype(np.int8), np.ones(run, dtype=np.int8), "valid") >= run):
        return 0.0
    for level in (hi, lo):
        # a rail lies far from the baseline; a noiseless record's flat baseline can be its max or min
        if abs(level - med) < 0.3 * span:
            continue
        at = np.abs(raw - level) < 1e-6
        if at.sum() < run:
            continue
        # run lengths of True values
        d = np.diff(np.concatenate(([0], at.astype(np.int8), [0])))
        starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
        lengths = ends - starts
        # a clipped wave hits the rail at speed (it would have gone on); a noiseless plateau (an ideal ST
        # segment) is approached gently: count only runs entered with a steep slope
        slope = np.abs(np.diff(raw))
        steep = max(float(np.percentile(slope, 99)) * 0.3, 1e-9)
        for a, length in zip(starts, lengths):
            if length >= run and a >= 3 and abs(raw[a] - raw[a - 3]) / 3.0 >= steep:
                total += int(length)
    return total / raw.size


SPIKE_FACTOR = 5.0      # a pacing stimulus: curvature this many times the lead's own QRS curvature ...
SPIKE_MIN_LEADS = 0.5   # ... at the same sample in at least half of the leads
SPIKE_MIN_D2_MV = 0.1   # ... and at least this second difference (mV per sample^2) at 500 Hz
SPIKE_BLANK_MS = 8.0    # samples blanked (interpolated) before a stimulus ...
# ... and after it, where its own exponential tail (recharge, polarisation: tau 2-5 ms at 500 Hz, LUDB 8, 45,
# 95) still moves every lead and nothing cardiac is seen yet (capture latency: LUDB's experts mark paced
# onsets 16-27 ms after the spike); a shorter blank left a tail whose slope outweighed a slow paced QRS
SPIKE_BLANK_AFTER_MS = 16.0
# a median over 22 ms at 500 Hz removes a stimulus with its exponential tail (<= 5 samples through the
# recorder's filters) and keeps the heart's waves, whose narrowest lobes last ~20 ms or more (on LUDB, PTB-XL,
# CinC, PTB and synthetic paced records: stimuli >= 8x the curvature so measured, R peaks <= 3.3x)
SPIKE_MEDIAN_SAMPLES = 11


def find_pacing_spikes(x: np.ndarray, fs_hz: float) -> np.ndarray:
    """Sample indices of pacemaker stimuli in a (leads, n) mV array (already NaN-free).

    A stimulus is far sharper than any QRS: its second difference exceeds SPIKE_FACTOR x the lead's own
    QRS curvature in at least half of the leads within +-1 sample. The QRS curvature is the 99.5th
    percentile of the second difference of the lead median-filtered over SPIKE_MEDIAN_SAMPLES, which keeps
    every cardiac wave and removes the stimuli: taken on the raw lead, that percentile is set by the stimuli
    themselves once they fill more than 0.5% of the samples (biventricular pacing: two per beat), and by
    a sharp R peak's tip in a record without any (a 2.5x rule on the raw lead found "stimuli" on the R
    peaks of LUDB 2, 25 and PTB-XL 06000 and missed every stimulus of a biventricular synthetic record).
    """
    if x.shape[1] < 5:
        return np.empty(0, dtype=np.int64)
    d2 = np.abs(np.diff(x, n=2, axis=1))
    heart = median_filter(x, size=(1, SPIKE_MEDIAN_SAMPLES), mode="nearest")
    scale = np.percentile(np.abs(np.diff(heart, n=2, axis=1)), 99.5, axis=1, keepdims=True) + 1e-6
    hit = (d2 > SPIKE_FACTOR * scale) & (d2 > SPIKE_MIN_D2_MV)
    hit = hit | np.roll(hit, 1, axis=1) | np.roll(hit, -1, axis=1)
    votes = hit.sum(axis=0)
    cand = np.flatnonzero(votes >= max(3, int(np.ceil(SPIKE_MIN_LEADS * x.shape[0])))) + 1
    if cand.size == 0:
        return cand
    # one index per run of adjacent samples
    starts = cand[np.concatenate(([True], np.diff(cand) > 2))]
    return starts.astype(np.int64)


def mains_line_hz(x: np.ndarray, fs_hz: float) -> float | None:
    """The mains frequency (50 or 60 Hz) whose hum ``x`` (leads, n; mV) carries, or None.

    A line: the amplitude spectrum's peak within 0.15 Hz of the mains frequency against its median 1.5-6 Hz
    either side, in the median lead (hum reaches every lead through the electrodes); above MAINS_LINE_RATIO
    and MAINS_MIN_MV. Records under 2 s are too short to tell a line from its neighbourhood."""
    n = x.shape[1]
    if n < 2 * fs_hz:
        return None
    amp = np.abs(np.fft.rfft(x - x.mean(axis=1, keepdims=True), axis=1)) * (2.0 / n)
    f = np.fft.rfftfreq(n, 1.0 / fs_hz)
    best, best_ratio = None, MAINS_LINE_RATIO
    for f0 in MAINS_HZ:
        if f0 + 6.0 >= fs_hz / 2:
            continue
        at = np.abs(f - f0) <= 0.15
        near = (np.abs(f - f0) >= 1.5) & (np.abs(f - f0) <= 6.0)
        line = amp[:, at].max(axis=1)
        ratio = float(np.median(line / (np.median(amp[:, near], axis=1) + 1e-12)))
        if ratio >= best_ratio and float(np.median(line)) >= MAINS_MIN_MV:
            best, best_ratio = f0, ratio
    return best


def _notch(x: np.ndarray, f0: float, fs_hz: float, padlen: int) -> np.ndarray:
    """``x`` with ``f0`` and its harmonics below 150 Hz (what the amplitude copy keeps) notched out, zero phase."""
    for h in np.arange(f0, min(150.0, 0.45 * fs_hz) + 1.0, f0):
        b, a = sps.iirnotch(h, MAINS_NOTCH_Q, fs=fs_hz)
        x = sps.filtfilt(b, a, x, axis=1, padlen=padlen)
    return x


def _hf_fraction(x: np.ndarray, fs_hz: float) -> np.ndarray:
    """Per lead: share of power in HF_BAND_HZ (mains harmonics at 100 / 120 Hz +-2 Hz left out).

    Broadband noise fills that band; an ECG, its baseline wander and mains hum (removed by the 40 Hz
    low-pass anyway) barely reach it, so it separates "noise-dominated" from "noisy but usable".
    """
    spec = np.abs(np.fft.rfft(x, axis=1)) ** 2
    f = np.fft.rfftfreq(x.shape[1], 1.0 / fs_hz)
    band = (f >= HF_BAND_HZ[0]) & (f <= min(HF_BAND_HZ[1], fs_hz / 2))
    for h in (100.0, 120.0):
        band &= np.abs(f - h) > 2.0
    mains = np.zeros_like(band)
    for h in (50.0, 60.0, 100.0, 120.0):
        mains |= np.abs(f - h) <= 2.0
    total = spec[:, (f >= 0.5) & ~mains].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, spec[:, band].sum(axis=1) / total, 0.0)


def clean_leads(signal_mv: np.ndarray, fs_hz: float) -> CleanLeads:
    """Clean every lead and gate the ones that carry no usable ECG (flat, saturated, non-finite, noise).

    Units: input and outputs in mV. The gate here only needs the lead itself; the beat-template gate
    (``gate_by_template``) runs after beats are found.
    """
    raw = np.asarray(signal_mv, dtype=np.float64)
    filled, bad = _fill_nan(raw)
    n = filled.shape[1]
    spikes = find_pacing_spikes(filled, fs_hz)
    if spikes.size:
        # blank each stimulus (linear bridge) so the filters do not smear it into the QRS onset
        filled = filled.copy()
        w = max(1, int(round(SPIKE_BLANK_MS * fs_hz / 1000.0)))
        w_after = max(1, int(round(SPIKE_BLANK_AFTER_MS * fs_hz / 1000.0)))
        for sp in spikes:
            a, b = max(0, sp - w), min(n - 1, sp + w_after)
            t = np.linspace(0.0, 1.0, b - a + 1)
            filled[:, a:b + 1] = filled[:, [a]] + (filled[:, [b]] - filled[:, [a]]) * t
    padlen = min(3 * 50, n - 1) if n > 1 else 0
    mains = mains_line_hz(filled, fs_hz)
    if n > 30:
        if mains is not None:
            filled = _notch(filled, mains, fs_hz, padlen)
        hp = sps.sosfiltfilt(_sos("hp", fs_hz), filled, axis=1, padlen=padlen)
        light = sps.sosfiltfilt(_sos("lp150", fs_hz), hp, axis=1, padlen=padlen)
        clean = sps.sosfiltfilt(_sos("band", fs_hz), filled, axis=1, padlen=padlen)
    else:
        clean = filled - filled.mean(axis=1, keepdims=True)
        light = clean.copy()
    gate: list[str | None] = []
    # only leads holding their max or min for a whole run can be clipped: a cheap vectorised pre-check
    run = max(2, int(round(SATURATION_RUN_MS * fs_hz / 1000.0)))
    finite_raw = np.where(bad, np.nan, raw)
    with np.errstate(invalid="ignore"):
        hi = np.nanmax(np.where(bad, -np.inf, raw), axis=1, keepdims=True)
        lo = np.nanmin(np.where(bad, np.inf, raw), axis=1, keepdims=True)
        at_rail = ((np.abs(finite_raw - hi) < 1e-6) | (np.abs(finite_raw - lo) < 1e-6)).sum(axis=1)
    ptp_clean = np.ptp(clean, axis=1)
    hf_fraction = _hf_fraction(hp if n > 30 else clean, fs_hz)
    ptp_raw = np.ptp(filled, axis=1)
    for i in range(raw.shape[0]):
        if bad[i].mean() > NAN_FRACTION_MAX:
            gate.append("non_finite")
            continue
        if ptp_clean[i] < FLAT_PTP_MV or ptp_raw[i] < FLAT_PTP_MV:
            gate.append("flat")
            continue
        if at_rail[i] >= max(run, SATURATION_FRACTION * n) and \
                _rail_fraction(raw[i][np.isfinite(raw[i])], fs_hz) > SATURATION_FRACTION:
            gate.append("saturated")
            continue
        if hf_fraction[i] > HF_POWER_FRACTION_MAX:
            gate.append("noise")
            continue
        gate.append(None)
    return CleanLeads(clean=clean, light=light, nan_mask=bad, gate=gate, spikes=spikes, mains_hz=mains)
