"""Flutter waves: regular atrial activity at 200-350 a minute that runs on independently of the QRS.

Typical atrial flutter is a macro-reentrant circuit round the tricuspid annulus: the atria are activated at a
fixed cycle of 170-300 ms (200-350 / min), drawing a sawtooth of F waves in II, III and aVF and discrete F waves
in V1, with no isoelectric line between them. The ventricles follow every 2nd, 3rd, 4th F wave (a fixed or a
variable block): the F waves are a second, faster, regular rhythm under the QRST.

Detection (QRST cancellation, as atrial fibrillation analysis does it): the median beat is subtracted at every
beat whose QRS matches it; what is left is the atrial activity (plus noise and the beats' own variation). A
regular atrial rhythm shows in that residual as an autocorrelation with a clear peak at the F cycle (170-300
ms lag) and again at twice the cycle, over the leads that see atrial activity best (II, III, aVF, V1):

- sinus rhythm: the P waves are locked to the QRS, the median beat holds them, the residual is noise: no peak;
- atrial fibrillation: the f waves are irregular (cycle and amplitude drift): the autocorrelation decays
  within a cycle or two, no peak at twice the cycle;
- premature atrial beats: a few beats unlike the median one; they are left out of the residual.

A second look confirms the cycle: the band-passed leads themselves, the QRS left out, must repeat best at the same
cycle (within CYCLE_AGREE_MS): two views of one atrial rhythm. Where the block is fixed and without any variation of
the AV delay the F waves are locked to the QRS and the median beat holds them: the residual loses them and flutter is
not detected (the P-presence rules then see no steady P, and nothing is cancelled).

Consequence (``f_wave_train``): the F waves are one regular wave, so the residual folded at the (refined) cycle gives
each lead's F wave; repeated over the record it is the F-wave train also under the QRS and the T, and the waves are
delineated with it subtracted (``features.measure.delineate_record``): the QRS end and the T end no longer move with
the F phase of each beat (synthetic flutter, seeds 0-19: QT within 11 ms of the truth where it was up to +33).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal as sps

from features.fiducials import GlobalFiducials, ms

FLUTTER_CYCLE_MS = (170.0, 300.0)  # 200-350 atrial activations a minute (typical and slow, treated, flutter)
ATRIAL_LEADS = (1, 2, 5, 6)        # II, III, aVF, V1 in pipeline.record.LEADS order: they see the atria best
BAND_HZ = (2.0, 20.0)              # the F waves' fundamental (3.3-6 Hz) and harmonics; not wander, not QRS
FLUTTER_AUTOCORR_MIN = 0.35        # the residual repeats itself at the F cycle at least this well ...
QRS_GUARD_MS = 20.0  # the residual is not used this close to a QRS
CYCLE_AGREE_MS = 12.0  # the residual's cycle and the leads' own agree this well ...
CLEAR_AUTOCORR, CLEAR_AUTOCORR_2X = 0.7, 0.6  # a residual repeating this well is flutter on its own
RAW_AGREE_SHARE = 0.85  # ... or the leads repeat at the residual's cycle this share as well as at their best
MATCH_CORR = 0.7  # beats whose QRS matches the median beat this well are cancelled by it
FLUTTER_AUTOCORR_2X_MIN = 0.2      # ... and still at twice the cycle (fibrillation waves have lost it by then)


@dataclass
class FlutterEvidence:
    """What ``detect_flutter`` found: the F cycle (ms) where the residual repeats best, how well it repeats
    there and at twice the cycle (autocorrelation), the residual's RMS per lead (mV; NaN: gated) and whether
    these make flutter waves."""

    cycle_ms: float | None
    autocorr: float
    autocorr_2x: float
    raw_cycle_ms: float | None
    rms_mv: np.ndarray
    present: bool
    explained: float | None = None  # the share of the residual's F-wave band the regular train explains


def _masked_autocorr(y: np.ndarray, m: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """Autocorrelation of ``y`` (leads, samples; summed over leads) at ``lags`` using only sample pairs that
    both lie in the mask ``m`` (samples)."""
    out = np.zeros(lags.size)
    ym = y * m[None, :]
    for i, lag in enumerate(lags):
        a, b = ym[:, :-lag], ym[:, lag:]
        mm = m[:-lag] * m[lag:]
        num = float(np.sum(a * b * mm))
        den = float(np.sqrt(np.sum(a * a * mm) * np.sum(b * b * mm)))
        out[i] = num / den if den > 0 else 0.0
    return out


def qrst_residual(clean: np.ndarray, fid: GlobalFiducials, match: np.ndarray, fs_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """The leads with the median beat (``fid.template``) subtracted at every beat in ``match``, and a mask of the
    samples that hold only atrial activity and noise: not within a beat the median beat does not stand for, nor
    near the record's edges. Each beat's median beat runs from its QRS's start back to the previous beat's T end
    (the atrial stretch before it is the median beat's too where the F waves are not locked)."""
    n = clean.shape[1]
    res = clean.copy()
    mask = np.zeros(n, dtype=bool)
    tmpl, before = fid.template, fid.template_before
    tf = fid.template_fid
    r = fid.r.astype(np.int64)
    after = tmpl.shape[1] - before
    t_end = int(tf.t_off[0] - before) if np.isfinite(tf.t_off[0]) else int(0.6 * after)
    for k in range(r.size):
        if not match[k]:
            continue
        # this beat's part: from half-way after the previous beat's T end to its own T end (+20 ms)
        lo = r[k] - before
        if k > 0:
            lo = max(lo, int(r[k - 1]) + t_end + ms(fs_hz, 20))
        hi = min(r[k] + t_end + ms(fs_hz, 20), r[k] + after)
        lo, hi = max(lo, 0), min(hi, n)
        if hi <= lo:
            continue
        res[:, lo:hi] -= tmpl[:, lo - (r[k] - before):hi - (r[k] - before)]
        mask[lo:hi] = True
    for k in np.flatnonzero(~match):  # an odd beat (premature, aberrant): not cancelled, so not used
        mask[max(0, r[k] - ms(fs_hz, 250)):min(n, r[k] + t_end + ms(fs_hz, 40))] = False
    edge = ms(fs_hz, 100)
    mask[:edge] = mask[n - edge:] = False
    # the QRS itself: a sample's misalignment leaves a residual there far larger than any atrial wave
    for k in range(r.size):
        on, off = fid.qrs_on[k], fid.qrs_off[k]
        a = int(on) if np.isfinite(on) else r[k] - ms(fs_hz, 60)
        b = int(off) if np.isfinite(off) else r[k] + ms(fs_hz, 80)
        mask[max(0, a - ms(fs_hz, QRS_GUARD_MS)):min(n, b + ms(fs_hz, QRS_GUARD_MS))] = False
    return res, mask


def _autocorr_peak(y: np.ndarray, m: np.ndarray, fs_hz: float) -> tuple[float, float, float]:
    """The lag (ms) in FLUTTER_CYCLE_MS where ``y`` (leads, samples; masked by ``m``) repeats best, the
    autocorrelation there and at twice that lag."""
    lo, hi = ms(fs_hz, FLUTTER_CYCLE_MS[0]), ms(fs_hz, FLUTTER_CYCLE_MS[1])
    lags = np.arange(lo, hi + 1)
    ac = _masked_autocorr(y, m, lags)
    i = int(np.argmax(ac))
    lag = int(lags[i])
    ac2 = float(_masked_autocorr(y, m, np.array([2 * lag]))[0]) if 2 * lag < y.shape[1] // 2 else 0.0
    return lag * 1000.0 / fs_hz, float(ac[i]), ac2


def detect_flutter(clean: np.ndarray, good: np.ndarray, fid: GlobalFiducials, qrs_corr: np.ndarray,
                   fs_hz: float) -> FlutterEvidence | None:
    """Flutter waves (module docstring); None without a median beat. ``qrs_corr``: (n_leads, n_beats) each
    beat's QRS against its lead's median QRS."""
    if fid.template is None or fid.template_fid is None or fid.r.size < 3 or not good.any():
        return None
    match = np.median(qrs_corr[good], axis=0) >= MATCH_CORR
    res, mask = qrst_residual(clean, fid, match, fs_hz)
    if mask.sum() < ms(fs_hz, 3 * FLUTTER_CYCLE_MS[1]):
        return None
    b, a = sps.butter(2, [BAND_HZ[0] / (fs_hz / 2.0), BAND_HZ[1] / (fs_hz / 2.0)], btype="band")
    y = sps.filtfilt(b, a, res, axis=1)
    m = mask.astype(float)
    rms = np.full(clean.shape[0], np.nan)
    for i in np.flatnonzero(good):
        rms[i] = float(np.sqrt(np.sum(y[i] ** 2 * m) / m.sum()))
    leads = [i for i in ATRIAL_LEADS if i < clean.shape[0] and good[i]]
    if not leads:
        return FlutterEvidence(None, 0.0, 0.0, None, rms, False)
    cycle, ac, ac2 = _autocorr_peak(y[leads], m, fs_hz)
    # the second look: the leads themselves (QRS left out), where F waves locked to the QRS (a fixed block) stay
    raw = sps.filtfilt(b, a, clean[leads], axis=1)
    m_raw = _qrs_free_mask(fid, clean.shape[1], fs_hz).astype(float)
    raw_cycle, raw_ac, _ = _autocorr_peak(raw, m_raw, fs_hz)
    # the leads repeat at the residual's cycle nearly as well as at their own best lag (T waves in the QRS-free
    # stretches can move that lag by a few samples where the F waves are fast)
    raw_at = float(_masked_autocorr(raw, m_raw, np.array([ms(fs_hz, cycle)]))[0])
    agree = abs(raw_cycle - cycle) <= CYCLE_AGREE_MS or (raw_ac > 0 and raw_at >= RAW_AGREE_SHARE * raw_ac)
    # a residual that repeats this clearly at once and twice the cycle needs no second look (sinus residuals
    # reach ~0.4 and fibrillation ~0.55 at one cycle, neither ~0.1 at two)
    clear = ac >= CLEAR_AUTOCORR and ac2 >= CLEAR_AUTOCORR_2X
    present = bool(clear or (ac >= FLUTTER_AUTOCORR_MIN and ac2 >= FLUTTER_AUTOCORR_2X_MIN and agree))
    return FlutterEvidence(cycle, ac, ac2, raw_cycle, rms, present)


def _qrs_free_mask(fid: GlobalFiducials, n: int, fs_hz: float) -> np.ndarray:
    """Samples away from every QRS (its onset - 30 ms to its end + 30 ms) and the record's edges."""
    mask = np.ones(n, dtype=bool)
    for on, off, c in zip(fid.qrs_on, fid.qrs_off, fid.r):
        a = int(on) if np.isfinite(on) else int(c) - ms(fs_hz, 60)
        b = int(off) if np.isfinite(off) else int(c) + ms(fs_hz, 80)
        mask[max(0, a - ms(fs_hz, 30)):min(n, b + ms(fs_hz, 30))] = False
    edge = ms(fs_hz, 100)
    mask[:edge] = mask[n - edge:] = False
    return mask


F_TRAIN_EXPLAINED_MIN = 0.4  # the F-wave train is cancelled only where it explains this share of the F-wave band
F_BINS = 64  # phases of one F cycle the F wave is averaged into
CYCLE_REFINE_MS = 4.0  # the cycle is refined this far either side of the autocorrelation's lag ...
CYCLE_STEP_MS = 0.05   # ... in these steps (over 10 s, 0.05 ms a cycle moves the last F wave ~2 ms)


def f_wave_train(clean: np.ndarray, good: np.ndarray, fid: GlobalFiducials, qrs_corr: np.ndarray,
                 ev: FlutterEvidence, fs_hz: float) -> np.ndarray | None:
    """The F-wave train under the whole record (leads, samples; mV), to be subtracted before the QRS end and the
    T end are read: the F waves are one regular wave repeating at the F cycle, so the QRST-cancelled residual,
    folded at that cycle (each sample to its phase in the cycle, averaged over the cycles), gives each lead's
    F wave, and repeating it gives the train also where it runs through the QRS and the T wave. The cycle is
    refined to a fraction of a sample (it has to hold over the ~45 cycles of 10 s), choosing the one whose
    folded F wave explains most of the residual."""
    if not ev.present or ev.cycle_ms is None:
        return None
    match = np.median(qrs_corr[good], axis=0) >= MATCH_CORR
    res, mask = qrst_residual(clean, fid, match, fs_hz)
    b, a = sps.butter(2, BAND_HZ[0] / (fs_hz / 2.0), btype="high")  # the F waves, not what wander is left
    y = sps.filtfilt(b, a, res, axis=1)
    t = np.arange(clean.shape[1], dtype=float)
    idx = np.flatnonzero(mask)
    if idx.size < F_BINS * 4:
        return None
    gi = np.flatnonzero(good)
    yy = y[gi][:, idx]
    best = None
    for c_ms in np.arange(ev.cycle_ms - CYCLE_REFINE_MS, ev.cycle_ms + CYCLE_REFINE_MS + 1e-9, CYCLE_STEP_MS):
        c = c_ms * fs_hz / 1000.0
        ph = np.floor((t[idx] / c % 1.0) * F_BINS).astype(np.int64)
        cnt = np.bincount(ph, minlength=F_BINS)
        if (cnt == 0).any():
            continue
        sums = np.stack([np.bincount(ph, weights=row, minlength=F_BINS) for row in yy])
        fw = sums / cnt
        explained = float(np.sum(fw ** 2 * cnt))
        if best is None or explained > best[0]:
            best = (explained, c, fw)
    if best is None:
        return None
    _, c, fw = best
    fw = fw - fw.mean(axis=1, keepdims=True)
    # the F wave as a closed loop, linearly interpolated between phase bins
    ph = (t / c % 1.0) * F_BINS - 0.5
    lo = np.floor(ph).astype(np.int64) % F_BINS
    frac = ph - np.floor(ph)
    train = np.zeros_like(clean)
    train[gi] = fw[:, lo] * (1.0 - frac) + fw[:, (lo + 1) % F_BINS] * frac
    # how much of the F-wave band the regular train explains where it can be seen (the atrial stretches)
    bb, ab = sps.butter(2, [BAND_HZ[0] / (fs_hz / 2.0), BAND_HZ[1] / (fs_hz / 2.0)], btype="band")
    left = sps.filtfilt(bb, ab, res[gi] - train[gi], axis=1)[:, idx]
    before = sps.filtfilt(bb, ab, res[gi], axis=1)[:, idx]
    ev.explained = float(1.0 - np.sum(left ** 2) / max(float(np.sum(before ** 2)), 1e-12))
    return train
