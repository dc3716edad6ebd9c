"""Flutter waves: regular atrial activity at 200-350 a minute that runs on independently of the QRS.

Typical atrial flutter is a macro-reentrant circuit round the tricuspid annulus: the atria are activated at a
fixed cycle of 170-300 ms (200-350 / min), drawing a sawtooth of F waves in II, III and aVF and discrete F waves
in V1, with no isoelectric line between them. The ventricles follow every 2nd, 3rd, 4th F wave (a fixed or a
variable block): the F waves are a second, faster, regular rhythm under the QRST.

Detection (QRST cancellation, as atrial fibrillation analysis does it): the median beat is subtracted at every
beat whose QRS matches it, aligned on the QRS (``_aligned_beats``); what is left is the atrial activity (plus
noise and the beats' own variation). A regular atrial rhythm shows in that residual as an autocorrelation with a
clear peak at the F cycle (170-300 ms lag) and again at twice the cycle, over the leads that see atrial activity
best (II, III, aVF, V1), and the leads themselves (QRS left out) repeat best at the same cycle:

- sinus rhythm: the P waves are locked to the QRS, the median beat holds them, the residual is noise: no peak
  (synthetic, 40 records with PACs / PVCs, wander, noise: none; LUDB: none of 30);
- atrial fibrillation: the f waves are irregular (cycle and amplitude drift): the autocorrelation decays
  within a cycle or two, no peak at twice the cycle (synthetic: none of 40; LUDB: none of 3);
- premature atrial beats: a few beats unlike the median one; they are left out of the residual.

Where the block is fixed the F waves are locked to the QRS and the median beat holds most of them: what is left is
the odd conduction ratio's (LUDB 35, 2:1 with some 3:1: 0.45 at one cycle, 0.12-0.18 at two, the leads' own cycle
within 8 ms). A fixed block without any variation of the AV delay leaves nothing there; it is looked for in the
atrial stretches themselves (``locked_flutter``): where the RR is steady (fibrillation's is not) and the stretches
from a T end to the next QRS hold more than an F cycle, they repeat themselves at exactly RR / k (k = 2, 3, 4) where
a sinus diastole is flat up to its one P wave. On benchmarks/flutter.py's grid: 4:1 found in 83 of 100, 3:1 in 14
(its stretches barely hold a cycle, and the T's tail fills their start), 2:1 at 107-176 bpm in none (no stretch
holds a cycle); negatives' periodicity at most 0.66 (U waves: a U wave after the T and the P before the QRS can
sit RR / k apart; a flat diastole, LOCKED_MIN_RMS_MV, is not compared), LOCKED_PERIODICITY_MIN 0.8 above both
halves' derived thresholds (each half's largest negative + 0.1: 0.66, 0.76); none of 2,000 random synthetic
records (benchmarks/features.py's) reaches it.
Where flutter stays unfound, a report naming it (pipeline.context ``flutter_waves_locked``) makes the values read
through the locked F waves not citable.

Consequences:
- the F-wave train (``f_wave_train``): the residual folded at the refined cycle, its phase tracked over the
  atrial stretches, is subtracted before the waves are delineated (``features.measure.delineate_record``) where it
  predicts the F waves of an atrial stretch it was not fitted on (F_TRAIN_PREDICTED_MIN): the QRS end and the T
  end no longer move with each beat's F phase (synthetic flutter, seeds 0-19: QT within 21 ms of the truth where 3
  were 30-37 ms late);
- QRS ``atrial_slope`` (``features.confidence``): F waves as steep as the QRS end's criterion ride on the J point;
- QRS and QT ``locked_flutter``: F waves locked to the QRS carry the QRS end and the T end on alike in every beat;
- per lead ``t_wave_conf``: a T wave no larger than the F waves' peak to peak has no size or form of its own;
- per lead ``st_level_conf``: the J point meets the F waves at any phase, its level off by up to half their peak to
  peak (``features.confidence.ST_LEVEL_TOLERANCE_MV``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import fft as sp_fft
from scipy import signal as sps

from features.delineate import spatial_slope
from features.fiducials import GlobalFiducials, ms

FLUTTER_CYCLE_MS = (170.0, 300.0)  # 200-350 atrial activations a minute (typical and slow, treated, flutter)
ATRIAL_LEADS = (1, 2, 5, 6)        # II, III, aVF, V1 in pipeline.record.LEADS order: they see the atria best
BAND_HZ = (2.0, 20.0)              # the F waves' fundamental (3.3-6 Hz) and harmonics; not wander, not QRS
ALIGN_MS = 40.0         # a beat's QRS is aligned with the median beat's within this shift ...
MATCH_CORR = 0.7        # ... and cancelled by it where it matches it this well (aligned)
QRS_GUARD_MS = 20.0     # the residual is not used this close to a QRS
FLUTTER_AUTOCORR_MIN = 0.35     # the residual repeats itself at the F cycle at least this well ...
FLUTTER_AUTOCORR_2X_MIN = 0.1   # ... and still at twice the cycle (fibrillation waves have lost it by then) ...
CYCLE_AGREE_MS = 12.0           # ... and the leads' own best cycle agrees with the residual's this well
CLEAR_AUTOCORR, CLEAR_AUTOCORR_2X = 0.7, 0.6  # a residual repeating this well is flutter on its own


@dataclass
class FlutterEvidence:
    """What ``detect_flutter`` found: the F cycle (ms) where the residual repeats best, how well it repeats
    there and at twice the cycle (autocorrelation), the leads' own best cycle, the residual's RMS per lead (mV;
    NaN: gated) and whether these make flutter waves; then what ``f_wave_train`` and the delineation made of it."""

    cycle_ms: float | None
    autocorr: float
    autocorr_2x: float
    raw_cycle_ms: float | None
    rms_mv: np.ndarray
    present: bool
    f_ptp_mv: np.ndarray | None = None  # per lead: the F waves' peak to peak in the atrial stretches (mV; NaN: gated)
    # the atrial waves' spatial slope (ATRIAL_SLOPE_PERCENTILE in the atrial stretches) as a share of the median
    # beat's QRS peak slope, in the leads as they are and with the F-wave train cancelled; which one holds
    slope_ratio: float | None = None
    slope_ratio_cancelled: float | None = None
    cancelled: bool = False
    predicted: float | None = None  # the share of a held-out atrial stretch's F-wave band the train predicts
    # F waves locked to the QRS by a fixed block, found in the atrial stretches themselves (``locked_flutter``):
    # the conduction ratio and how well each stretch repeats itself at RR / ratio (1 - normalised difference)
    locked_ratio: int | None = None
    locked_periodicity: float | None = None
    # the QRST-cancelled residual and its mask, kept from detection for ``f_wave_train`` and
    # ``features.av_dissociation`` (the same median beat's residual; the caller drops it once they have read it)
    residual: tuple | None = field(default=None, repr=False, compare=False)


def _masked_autocorr(y: np.ndarray, m: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """Autocorrelation of ``y`` (leads, samples; summed over leads) at ``lags`` (samples, > 0) using only sample
    pairs that both lie in the mask ``m`` (0 / 1 per sample); by FFT: sum_t u(t) v(t + lag) for all lags at once."""
    n = y.shape[1]
    size = sp_fft.next_fast_len(n + int(lags.max()) + 1, real=True)

    def xcorr(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return sp_fft.irfft(np.conj(sp_fft.rfft(u, size)) * sp_fft.rfft(v, size), size)[..., lags]

    ym = y * m[None, :]
    y2m = ym * y
    num = xcorr(ym, ym).sum(axis=0)
    a = xcorr(y2m, m[None, :]).sum(axis=0)
    b = xcorr(m[None, :], y2m).sum(axis=0)
    den = np.sqrt(np.maximum(a, 0.0) * np.maximum(b, 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-12 * max(float(np.sum(y2m)), 1e-30), num / den, 0.0)


def _aligned_beats(clean: np.ndarray, good: np.ndarray, fid: GlobalFiducials, fs_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Per beat: the shift (samples, within ALIGN_MS) that best aligns its QRS (-80..+100 ms about its anchor,
    good leads) with the median beat's, and the correlation there. The anchor (the largest spatial slope) can sit
    in another lobe of the QRS from beat to beat where an F wave rides on one (LUDB 103: half its beats correlate
    ~0 with the median QRS at their anchors, 0.98 aligned); the median beat is subtracted where the QRS lies."""
    tmpl, before = fid.template[good], fid.template_before
    w0, w1, sh = ms(fs_hz, 80), ms(fs_hz, 100), ms(fs_hz, ALIGN_MS)
    ref = tmpl[:, before - w0:before + w1]
    ref = ref - ref.mean(axis=1, keepdims=True)
    ref_norm = float(np.sqrt(np.sum(ref * ref)))
    x = clean[good]
    n = x.shape[1]
    shifts = np.zeros(fid.r.size, dtype=np.int64)
    corr = np.zeros(fid.r.size)
    for k, c in enumerate(fid.r.astype(np.int64)):
        lo, hi = c - sh - w0, c + sh + w1
        if lo < 0 or hi > n or ref_norm <= 0:
            continue
        win = np.lib.stride_tricks.sliding_window_view(x[:, lo:hi], w0 + w1, axis=1)  # (leads, shifts, samples)
        win = win - win.mean(axis=2, keepdims=True)
        num = np.einsum("lsw,lw->s", win, ref)
        den = np.sqrt(np.einsum("lsw,lsw->s", win, win)) * ref_norm
        v = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
        i = int(np.argmax(v))
        corr[k], shifts[k] = float(v[i]), i - sh
    return shifts, corr


def qrst_residual(clean: np.ndarray, good: np.ndarray, fid: GlobalFiducials, fs_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """The leads with the median beat (``fid.template``) subtracted at every beat whose QRS matches it (aligned,
    ``_aligned_beats``), and a mask of the samples that hold only atrial activity and noise: not within a beat
    the median beat does not stand for, nor a QRS, nor near the record's edges. Each beat's median beat runs
    from the previous beat's T end to its own T end (the atrial stretch before it is the median beat's too)."""
    shifts, corr_k = _aligned_beats(clean, good, fid, fs_hz)
    match = corr_k >= MATCH_CORR
    n = clean.shape[1]
    res = clean.copy()
    mask = np.zeros(n, dtype=bool)
    tmpl, before = fid.template, fid.template_before
    tf = fid.template_fid
    r = fid.r.astype(np.int64) + shifts
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
        if k > 0 and match[k - 1]:
            # a long diastole between the previous beat's T end and the start of this beat's median beat holds
            # atrial activity only: it is used as it is
            mask[max(0, int(r[k - 1]) + t_end + ms(fs_hz, 20)):lo] = True
    for k in np.flatnonzero(~match):  # an odd beat (premature, aberrant): not cancelled, so not used
        mask[max(0, r[k] - ms(fs_hz, 250)):min(n, r[k] + t_end + ms(fs_hz, 40))] = False
    edge = ms(fs_hz, 100)
    mask[:edge] = mask[n - edge:] = False
    # the QRS itself: a sample's misalignment leaves a residual there far larger than any atrial wave
    for k in range(r.size):
        on, off = fid.qrs_on[k], fid.qrs_off[k]
        a = min(int(on), r[k] - ms(fs_hz, 60)) if np.isfinite(on) else r[k] - ms(fs_hz, 60)
        b = max(int(off), r[k] + ms(fs_hz, 80)) if np.isfinite(off) else r[k] + ms(fs_hz, 80)
        mask[max(0, a - ms(fs_hz, QRS_GUARD_MS)):min(n, b + ms(fs_hz, QRS_GUARD_MS))] = False
    return res, mask


def _autocorr_peak(y: np.ndarray, m: np.ndarray, fs_hz: float) -> tuple[float, float, float]:
    """The lag (ms) in FLUTTER_CYCLE_MS where ``y`` (leads, samples; masked by ``m``) repeats best, the
    autocorrelation there and at twice that lag."""
    lo, hi = ms(fs_hz, FLUTTER_CYCLE_MS[0]), ms(fs_hz, FLUTTER_CYCLE_MS[1])
    lags = np.arange(lo, 2 * hi + 1)
    if 2 * hi >= y.shape[1] // 2:
        lags = np.arange(lo, hi + 1)
    ac_all = _masked_autocorr(y, m, lags)
    ac = ac_all[:hi - lo + 1]
    i = int(np.argmax(ac))
    lag = lo + i
    ac2 = float(ac_all[2 * lag - lo]) if 2 * lag - lo < ac_all.size else 0.0
    return lag * 1000.0 / fs_hz, float(ac[i]), ac2


def detect_flutter(clean: np.ndarray, good: np.ndarray, fid: GlobalFiducials, fs_hz: float) -> FlutterEvidence | None:
    """Flutter waves (module docstring); None without a median beat."""
    if fid.template is None or fid.template_fid is None or fid.r.size < 3 or not good.any():
        return None
    res, mask = qrst_residual(clean, good, fid, fs_hz)
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
        return FlutterEvidence(None, 0.0, 0.0, None, rms, False, residual=(res, mask))
    cycle, ac, ac2 = _autocorr_peak(y[leads], m, fs_hz)
    # the second look: the leads themselves (QRS left out), where F waves locked to the QRS (a fixed block) stay
    raw = sps.filtfilt(b, a, clean[leads], axis=1)
    m_raw = _qrs_free_mask(fid, clean.shape[1], fs_hz).astype(float)
    raw_cycle, _, _ = _autocorr_peak(raw, m_raw, fs_hz)
    agree = abs(raw_cycle - cycle) <= CYCLE_AGREE_MS
    # a residual that repeats this clearly at once and twice the cycle needs no second look (sinus residuals
    # reach ~0.4 and fibrillation ~0.7 at one cycle, neither 0.3 at two; the leads' own best lag can move a few
    # samples with the T waves where the F waves are fast)
    clear = ac >= CLEAR_AUTOCORR and ac2 >= CLEAR_AUTOCORR_2X
    present = bool(clear or (ac >= FLUTTER_AUTOCORR_MIN and ac2 >= FLUTTER_AUTOCORR_2X_MIN and agree))
    ev = FlutterEvidence(cycle, ac, ac2, raw_cycle, rms, present, residual=(res, mask))
    if not present:
        locked = locked_flutter(clean, good, fid, fs_hz)
        if locked is not None:
            ev.locked_ratio, ev.cycle_ms, ev.locked_periodicity = locked
            ev.present = locked[2] >= LOCKED_PERIODICITY_MIN
    if ev.present:
        ev.f_ptp_mv = _f_wave_size(clean, good, fid, mask, y, fs_hz)
    return ev


LOCKED_RATIOS = (2, 3, 4)     # fixed conduction ratios looked for
LOCKED_RR_SD_MS = 20.0        # a fixed block beats every k F cycles: its RR hardly varies (fibrillation's does)
LOCKED_STRETCH_EXTRA_MS = 20.0  # a stretch must hold the F cycle and this much more to be compared with itself
LOCKED_MIN_STRETCHES = 3
# the compared stretches (less their lines) must hold at least this RMS (mV): synthetic sinus rhythm at 83-114 bpm,
# noise-free, matched its flat TQ ends at 0.88-0.999 with 1-4 uV left; F waves of 0.05 mV leave several times it
LOCKED_MIN_RMS_MV = 0.005
LOCKED_PERIODICITY_MIN = 0.8  # benchmarks/flutter.py: negatives' largest + 0.1 in each half (0.66, 0.76), rounded up


def _less_line(x: np.ndarray) -> np.ndarray:
    """``x`` (leads, samples) less each lead's least-squares straight line."""
    tt = np.arange(x.shape[1], dtype=float) - 0.5 * (x.shape[1] - 1)
    x = x - x.mean(axis=1, keepdims=True)
    return x - ((x @ tt) / max(float(tt @ tt), 1e-12))[:, None] * tt[None, :]


def locked_flutter(clean: np.ndarray, good: np.ndarray, fid: GlobalFiducials,
                   fs_hz: float) -> tuple[int, float, float] | None:
    """F waves locked to the QRS by a fixed k:1 block: the median beat holds them, so QRST cancellation leaves
    nothing, but the atrial stretches (T end to the next QRS) are not isoelectric: they hold a wave that repeats
    itself at exactly RR / k, in 170-300 ms (a sinus TQ is flat up to its one P wave; fibrillation waves do not
    keep a cycle, nor does its RR). Per ratio k whose cycle is a flutter cycle: over the stretches at least one
    cycle and LOCKED_STRETCH_EXTRA_MS long (x(t) and x(t + C) each less its straight line), 1 - sum (x(t) - x(t + C))^2 /
    sum (x(t)^2 + x(t + C)^2) in II, III, aVF, V1. Returns (k, C in ms, that periodicity) for the k that repeats
    best, or None (irregular RR, too few long stretches: a 2:1 block at a fast rate leaves none)."""
    leads = [i for i in ATRIAL_LEADS if i < clean.shape[0] and good[i]]
    if not leads or fid.r.size < LOCKED_MIN_STRETCHES + 1:
        return None
    rr = np.diff(fid.r.astype(float))
    if float(np.std(rr)) * 1000.0 / fs_hz > LOCKED_RR_SD_MS:
        return None
    rr_med = float(np.median(rr))
    mask = _qrs_free_mask(fid, clean.shape[1], fs_hz)
    best = None
    for k in LOCKED_RATIOS:
        lag = int(round(rr_med / k))
        if not ms(fs_hz, FLUTTER_CYCLE_MS[0]) <= lag <= ms(fs_hz, FLUTTER_CYCLE_MS[1]):
            continue
        stretches = _atrial_stretches(fid, mask, lag + ms(fs_hz, LOCKED_STRETCH_EXTRA_MS), fs_hz)
        if len(stretches) < LOCKED_MIN_STRETCHES:
            continue
        num = den = 0.0
        count = 0
        for sa, sb in stretches:
            # x(t) and x(t + C), each less its own straight line: what is left of wander or a T wave's tail (near a
            # line over a stretch) cancels, and a flat diastole leaves nothing to match; a repeating wave matches
            seg = clean[leads, sa:sb]
            a, b = _less_line(seg[:, :-lag]), _less_line(seg[:, lag:])
            num += float(np.sum((a - b) ** 2))
            den += float(np.sum(a * a + b * b))
            count += 2 * a.size
        # a flat diastole has no wave to repeat: its few microvolts left after the lines match by chance
        if count and np.sqrt(den / count) >= LOCKED_MIN_RMS_MV:
            per = 1.0 - num / den
            if best is None or per > best[2]:
                best = (k, lag * 1000.0 / fs_hz, per)
    return best


def _f_wave_size(clean: np.ndarray, good: np.ndarray, fid: GlobalFiducials, mask: np.ndarray, y: np.ndarray,
                 fs_hz: float) -> np.ndarray:
    """Per lead: the F waves' peak to peak (2.5-97.5th percentile; mV; NaN: gated) in the atrial stretches (T end
    to the next QRS), or wherever the residual is used where there are none (2:1 flutter at a fast rate): the
    larger of the QRST-cancelled residual's (``y``, band-passed) and the leads' own (each stretch less its line). F waves locked to the QRS
    where the block is fixed for a while sit in the median beat and leave the residual small (synthetic 2:1 flutter,
    0.5 mV F waves, found: ST levels cited 0.1-0.25 mV off in the inferior leads); the leads show them whole."""
    stretches = _atrial_stretches(fid, mask, ms(fs_hz, 60), fs_hz)
    where = np.concatenate([np.arange(sa, sb) for sa, sb in stretches]) if stretches else np.flatnonzero(mask)
    f_ptp = np.full(clean.shape[0], np.nan)
    if where.size < ms(fs_hz, 100):
        return f_ptp
    gi = np.flatnonzero(good)
    sigs = [y[gi][:, where]]
    if stretches:  # elsewhere the leads hold the QRST too
        # each stretch less its straight line (what wander is left), not band-passed: a filter would ring the
        # QRS beside it into the stretch
        sigs.append(np.concatenate([_less_line(clean[gi, sa:sb]) for sa, sb in stretches], axis=1))
    for sig in sigs:
        lo_hi = np.percentile(sig, [2.5, 97.5], axis=1)
        f_ptp[gi] = np.fmax(f_ptp[gi], lo_hi[1] - lo_hi[0])
    return f_ptp


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


ATRIAL_SLOPE_PERCENTILE = 75.0  # the atrial waves' slope: exceeded for a quarter of the time in the atrial stretches
F_TRAIN_PREDICTED_MIN = 0.25  # the F-wave train is cancelled where it predicts this share of a held-out stretch
F_BINS = 64  # phases of one F cycle the F wave is averaged into
CYCLE_REFINE_MS = 4.0  # the cycle is refined this far either side of the autocorrelation's lag ...
CYCLE_STEP_MS = 0.05   # ... in these steps (over 10 s, 0.05 ms a cycle moves the last F wave ~2 ms)
TQ_MARGIN_MS = 20.0    # the atrial stretches: from this long after a T end to this long before the next QRS
PHASE_TRACK_CYCLES = 0.25  # each stretch's F phase is looked for this far (in cycles) from the previous one's


def _fold(yy: np.ndarray, phase: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Each lead's mean of ``yy`` (leads, samples) per F_BINS phase bin of ``phase`` (cycles), and the counts;
    None where a bin is empty."""
    ph = np.floor((phase % 1.0) * F_BINS).astype(np.int64)
    cnt = np.bincount(ph, minlength=F_BINS)
    if (cnt == 0).any():
        return None
    return np.stack([np.bincount(ph, weights=row, minlength=F_BINS) for row in yy]) / cnt, cnt


def _at(fw: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """The F wave ``fw`` (leads, F_BINS; a closed loop) at ``phase`` (cycles), linearly interpolated."""
    ph = (phase % 1.0) * F_BINS - 0.5
    lo = np.floor(ph).astype(np.int64) % F_BINS
    frac = ph - np.floor(ph)
    return fw[:, lo] * (1.0 - frac) + fw[:, (lo + 1) % F_BINS] * frac


def _atrial_stretches(fid: GlobalFiducials, mask: np.ndarray, min_len: int, fs_hz: float) -> list[tuple[int, int]]:
    """(start, end) sample ranges from each T end to the next QRS onset (less TQ_MARGIN_MS each side) inside
    ``mask``, at least ``min_len`` long: where the leads hold atrial activity only."""
    out = []
    m = ms(fs_hz, TQ_MARGIN_MS)
    for k in range(fid.r.size - 1):
        if not (np.isfinite(fid.t_off[k]) and np.isfinite(fid.qrs_on[k + 1])):
            continue
        a, b = int(fid.t_off[k]) + m, int(fid.qrs_on[k + 1]) - m
        if b - a < min_len:
            continue
        # the longest run inside the mask (the QRS guard can reach into the stretch's end)
        edges = np.flatnonzero(np.diff(np.concatenate(([0], mask[a:b].astype(np.int8), [0]))))
        runs = edges.reshape(-1, 2)
        if runs.size:
            i = int(np.argmax(runs[:, 1] - runs[:, 0]))
            if runs[i, 1] - runs[i, 0] >= min_len:
                out.append((a + int(runs[i, 0]), a + int(runs[i, 1])))
    return out


def f_wave_train(clean: np.ndarray, good: np.ndarray, fid: GlobalFiducials, ev: FlutterEvidence,
                 fs_hz: float) -> np.ndarray | None:
    """The F-wave train under the whole record (leads, samples; mV), to be subtracted before the QRS end and the
    T end are read. The F waves are one regular wave: the QRST-cancelled residual folded at the F cycle (each
    sample to its phase in the cycle, averaged over the cycles) gives each lead's F wave. The cycle is refined to
    a fraction of a sample, the one whose folded F wave explains most of the residual; a real circuit's cycle
    still wanders by a few ms, so the F phase is then read again in each atrial stretch (T end to the next QRS,
    where the leads hold nothing else), tracked from stretch to stretch, and interpolated across the QRST between
    them (the F waves run on regularly under it); the F wave is folded once more at those phases, and repeated at
    them it is the train under the QRS and the T. ``ev.predicted``: the share of a held-out atrial stretch's
    F-wave band (2-20 Hz) the train predicts."""
    res_mask = ev.residual
    if not ev.present or ev.cycle_ms is None:
        return None
    res, mask = res_mask if res_mask is not None else qrst_residual(clean, good, fid, fs_hz)
    b, a = sps.butter(2, BAND_HZ[0] / (fs_hz / 2.0), btype="high")  # the F waves, not what wander is left
    gi = np.flatnonzero(good)
    y = sps.filtfilt(b, a, res[gi], axis=1)
    t = np.arange(clean.shape[1], dtype=float)
    idx = np.flatnonzero(mask)
    if idx.size < F_BINS * 4:
        return None
    yy = y[:, idx]
    best = None
    for c_ms in np.arange(ev.cycle_ms - CYCLE_REFINE_MS, ev.cycle_ms + CYCLE_REFINE_MS + 1e-9, CYCLE_STEP_MS):
        c = c_ms * fs_hz / 1000.0
        folded = _fold(yy, t[idx] / c)
        if folded is None:
            continue
        explained = float(np.sum(folded[0] ** 2 * folded[1]))
        if best is None or explained > best[0]:
            best = (explained, c, folded[0])
    if best is None:
        return None
    _, c, fw = best
    # the F phase of each atrial stretch, tracked from the previous stretch's
    stretches = _atrial_stretches(fid, mask, int(0.5 * c), fs_hz)
    centres, shifts, prev = [], [], 0.0
    grid = np.linspace(-PHASE_TRACK_CYCLES, PHASE_TRACK_CYCLES, 51)
    for sa, sb in stretches:
        seg, ts = y[:, sa:sb], t[sa:sb] / c
        scores = [float(np.sum(_at(fw, ts + prev + g) * seg)) for g in grid]
        prev = prev + float(grid[int(np.argmax(scores))])
        centres.append(0.5 * (sa + sb))
        shifts.append(prev)
    phase = t / c + (np.interp(t, centres, shifts) if centres else 0.0)
    tq = np.zeros(t.size, dtype=bool)
    for sa, sb in stretches:
        tq[sa:sb] = True
    use = np.flatnonzero(tq) if tq.sum() >= F_BINS * 4 else idx
    folded = _fold(y[:, use], phase[use])
    if folded is not None:
        fw = folded[0]
    fw = fw - fw.mean(axis=1, keepdims=True)
    train = np.zeros_like(clean)
    train[gi] = _at(fw, phase)
    # how well the train predicts the F waves of an atrial stretch from the others (its phase interpolated from
    # theirs, as under the QRST): the test a cancellation under the QRS and the T has to pass
    bb, ab = sps.butter(2, [BAND_HZ[0] / (fs_hz / 2.0), BAND_HZ[1] / (fs_hz / 2.0)], btype="band")
    yb = sps.filtfilt(bb, ab, res[gi], axis=1)
    num = den = 0.0
    for j, (sa, sb) in enumerate(stretches):
        if not 0 < j < len(stretches) - 1:
            continue
        others = [i for i in range(len(stretches)) if i != j]
        ph = t[sa:sb] / c + np.interp(t[sa:sb], [centres[i] for i in others], [shifts[i] for i in others])
        num += float(np.sum((yb[:, sa:sb] - _at(fw, ph)) ** 2))
        den += float(np.sum(yb[:, sa:sb] ** 2))
    ev.predicted = 1.0 - num / den if den > 0 else None
    ev.slope_ratio = _atrial_slope_ratio(clean, good, fid, tq, fs_hz)
    ev.slope_ratio_cancelled = _atrial_slope_ratio(clean - train, good, fid, tq, fs_hz)
    return train


def _atrial_slope_ratio(x: np.ndarray, good: np.ndarray, fid: GlobalFiducials, tq: np.ndarray,
                        fs_hz: float) -> float | None:
    """The atrial waves' spatial slope in the atrial stretches ``tq`` (ATRIAL_SLOPE_PERCENTILE) as a share of the
    median beat's QRS peak spatial slope. The QRS end is where the spatial slope falls below a tenth of that
    peak (features.delineate OFFSET_VELOCITY_FRACTION): atrial waves as steep ride on the J point and carry it on."""
    if tq.sum() < ms(fs_hz, 100) or not np.isfinite(fid.template_d_on):
        return None
    b0 = fid.template_before
    tv = spatial_slope(fid.template[good], fs_hz)
    peak = float(tv[int(b0 + fid.template_d_on):int(b0 + fid.template_d_off) + 1].max())
    if peak <= 0:
        return None
    return float(np.percentile(spatial_slope(x[good], fs_hz)[tq], ATRIAL_SLOPE_PERCENTILE)) / peak
