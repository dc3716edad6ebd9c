"""AV dissociation: P waves that run on at their own, regular rate, unrelated to the QRS complexes.

Under complete (third-degree) AV block no atrial impulse reaches the ventricles: the sinus node goes on at
60-110 a minute while a junctional or ventricular escape pacemaker (or a ventricular pacemaker) drives the
ventricles, slower and regular. The P waves then fall anywhere in the cycle (before a QRS at any distance, in it,
on the ST, on the T): the P-QRS relation changes from beat to beat and there is no PR interval. A P found before a
QRS is a P, but not that QRS's P: a PR read off it (or off the median beat where several beats happen to have one
at a similar distance) is no conduction time, and "a P wave before every QRS" is false.

Detection (QRST cancellation, as ``features.flutter`` does it): the median beat is subtracted at every beat whose
QRS matches it (``features.flutter.qrst_residual``). A P wave locked to the QRS (sinus rhythm, first-degree and 2:1
block: the blocked P at a fixed place too) is part of the median beat and leaves nothing; dissociated P waves are
not (the median over beats takes the value most beats have there, and they have none), so they stay in the
residual as a regular train at the atrial cycle. The residual (P band) repeats itself at that lag
(``DISSOCIATION_CYCLE_MS``: 40-160 a minute) and at twice it, and its peaks are P-sized. Nothing of this is
expected in sinus rhythm: the residual is noise and beat-to-beat changes of the T, which repeat at the RR (lags
near the RR or twice it are left out); flutter waves are faster and are found by ``features.flutter`` first;
fibrillation waves are irregular and have lost their repetition by twice a cycle, and the ventricular rhythm of a
complete block is regular (an escape rhythm or a pacemaker) where fibrillation's is not (``ESCAPE_RR_CV``).

Consequences (``features.measure``): the record's P waves are not "present before most QRS complexes"
(``p_waves_present`` False, every beat's and lead's P fiducials dropped: no PR is measured); the P waves are not
hidden in the T (they lie outside it, and the median beat leaves them out), so QT ``hidden_p`` does not apply; the
record row says ``av_dissociation``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal as sps

from features.fiducials import GlobalFiducials, ms
from features.flutter import _masked_autocorr, qrst_residual

DISSOCIATION_CYCLE_MS = (375.0, 1500.0)  # atrial cycles looked for: 40-160 P waves a minute
P_BAND_HZ = (1.5, 20.0)  # a P wave's band: not wander, not the QRS's sharpest edges
AUTOCORR_MIN = 0.35      # the residual repeats itself at the atrial cycle at least this well ...
AUTOCORR_2X_MIN = 0.3    # ... and still at twice the cycle (LUDB 90, paced: 0.39 / 0.37; synthetic: 0.62-0.99)
ESCAPE_RR_CV = 0.1       # an escape (or paced) rhythm is regular: RR SD under this share of the mean RR
RR_EXCLUDE = 0.12        # cycles within this share of the RR of a multiple of it (half that of an odd multiple of
                         # half the RR): the T's beat-to-beat changes repeat there
# the residual's P-band peaks (spatial magnitude, 99th percentile) at least this large: P waves, not the remains of
# baseline wander and T changes (synthetic sinus rhythm with 0.2-0.3 mV wander: 0.08-0.095 repeating at near twice
# the RR, 4 of 2,000; synthetic complete block: 0.31-0.45; LUDB 90: 0.16)
P_SIZE_MIN_MV = 0.12
HALF_LAG_SHARE = 0.8     # half the best lag is the cycle where the residual repeats this share as well there
MIN_MASK_CYCLES = 3.0    # at least this many atrial cycles' worth of usable residual
DECIMATED_HZ = 100.0     # the residual's rate for the search (10 ms blocks)


@dataclass
class AVDissociation:
    """What ``detect_av_dissociation`` found: the atrial cycle (ms) where the residual repeats best, how well it
    repeats there and at twice the cycle, the residual's P-sized peaks (spatial magnitude, mV), and whether these
    make dissociated P waves."""

    cycle_ms: float | None
    autocorr: float
    autocorr_2x: float
    p_size_mv: float
    present: bool

    @property
    def atrial_rate_bpm(self) -> float | None:
        return 60000.0 / self.cycle_ms if self.present and self.cycle_ms else None


def detect_av_dissociation(clean: np.ndarray, good: np.ndarray, fid: GlobalFiducials, fs_hz: float,
                           residual: tuple[np.ndarray, np.ndarray] | None = None) -> AVDissociation | None:
    """Dissociated P waves (module docstring); None without a median beat or enough residual to tell.
    ``residual``: ``qrst_residual(clean, good, fid, fs_hz)`` where the caller has it already (``detect_flutter``
    computed it for the same median beat); computed here otherwise."""
    if fid.template is None or fid.template_fid is None or fid.r.size < 3 or not good.any():
        return None
    if fid.flutter is not None and fid.flutter.present:
        return None
    rr_all = np.diff(fid.r).astype(float)
    if float(np.std(rr_all)) >= ESCAPE_RR_CV * float(np.mean(rr_all)):
        # the ventricles of a complete block follow a regular escape rhythm or pacemaker; an irregular rhythm
        # (fibrillation with demand pacing, LUDB 95: paced and conducted beats' residuals repeat at 1450 ms) is
        # not looked at
        return None
    res, mask = residual if residual is not None else qrst_residual(clean, good, fid, fs_hz)
    # a P wave holds nothing above P_BAND_HZ: the residual is averaged down to ~DECIMATED_HZ first (its 10 ms
    # blocks, a sample of the mask only where all of its block is), which makes the rest 5 times cheaper at 500 Hz
    k = max(1, int(fs_hz // DECIMATED_HZ))
    n = (clean.shape[1] // k) * k
    res = res[good][:, :n].reshape(int(good.sum()), n // k, k).mean(axis=2)
    mask = mask[:n].reshape(n // k, k).all(axis=1)
    fs_hz = fs_hz / k
    lo, hi = ms(fs_hz, DISSOCIATION_CYCLE_MS[0]), ms(fs_hz, DISSOCIATION_CYCLE_MS[1])
    if mask.sum() < MIN_MASK_CYCLES * lo or 2 * lo >= res.shape[1] // 2:
        return None
    b, a = sps.butter(2, [P_BAND_HZ[0] / (fs_hz / 2.0), min(P_BAND_HZ[1] / (fs_hz / 2.0), 0.9)], btype="band")
    y = sps.filtfilt(b, a, res, axis=1)
    m = mask.astype(float)
    mag = np.sqrt(np.sum(y * y, axis=0))
    p_size = float(np.percentile(mag[mask], 99.0))
    hi = min(hi, res.shape[1] // 4)
    lags = np.arange(lo, 2 * hi + 1)
    ac_all = _masked_autocorr(y, m, lags)
    ac = ac_all[:hi - lo + 1].copy()
    rr = float(np.median(np.diff(fid.r))) / k
    cyc = np.arange(lo, hi + 1)
    # the T's beat-to-beat changes repeat at every multiple of the RR, and what recurs twice a beat at every multiple
    # of half of it: neither the cycle nor twice it (its confirmation) may lie there (synthetic sinus rhythm at 68
    # bpm: 0.45 at half the RR, 0.58 at the RR, 0.34 at one and a half). An atrial rate near twice the ventricular
    # one (+-12%) is left undecided: its P waves drift so slowly against the QRS that 10 s show them all but locked
    for mult in range(1, int(2 * hi / rr) + 2):  # +-12% of the RR about its multiples, +-6% about the halves
        ac[np.abs(cyc - mult * rr / 2.0) <= RR_EXCLUDE * rr * (1.0 if mult % 2 == 0 else 0.5)] = -1.0
    i = int(np.argmax(ac))
    # a train repeats at every multiple of its cycle: the shortest lag that repeats nearly as well is the cycle
    while (i + lo) // 2 >= lo and ac[(i + lo) // 2 - lo] >= max(AUTOCORR_MIN, HALF_LAG_SHARE * ac[i]):
        i = (i + lo) // 2 - lo
    lag = lo + i
    ac1 = float(ac[i])
    ac2 = float(ac_all[2 * lag - lo]) if 2 * lag - lo < ac_all.size else 0.0
    present = bool(ac1 >= AUTOCORR_MIN and ac2 >= AUTOCORR_2X_MIN and p_size >= P_SIZE_MIN_MV)
    return AVDissociation(lag * 1000.0 / fs_hz, ac1, ac2, p_size, present)


def forget_p_waves(fid: GlobalFiducials) -> None:
    """No P wave belongs to a QRS (AV dissociation): the beats' and the leads' P fiducials are dropped."""
    fid.p_present = False
    for key in ("p_on", "p_peak", "p_off"):
        getattr(fid, key)[:] = np.nan
    fid.lead_p_on_delta = fid.lead_p_off_delta = fid.lead_p_on_features = None
    if fid.p_from_template is not None:
        fid.p_from_template[:] = False
    if fid.p_diag is not None:
        fid.p_diag["av_dissociation"] = True
