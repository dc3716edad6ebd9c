"""What counts as a heartbeat, and how sure the heart rate is.

A heart rate is a count of ventricular depolarisations (QRS complexes) per minute. Two things make a count wrong:
a detection that is not a QRS (an atrial pacing stimulus, a tall P or T wave, an artefact) and a QRS that was
missed. Here:

- ``atrial_events``: complexes that lie an AV delay before a paced ventricular beat. A dual-chamber pacemaker
  paces the atrium, waits its AV delay (LUDB 45: ~190 ms) and then paces the ventricle; a ventricular pacemaker
  that senses a ventricular depolarisation resets its timer and does not pace the ventricle again within the
  lower-rate interval, and the ventricle is refractory for ~250-300 ms after one anyway. So a complex followed
  AV_DELAY_MS later by a captured ventricular stimulus was not a ventricular depolarisation: it is the atrial
  stimulus and the P wave it evokes (or a sinus P that a VDD pacemaker tracks), and it is no heartbeat. (LUDB
  45: the small unipolar atrial stimuli are far below the ventricular ones, not found as stimuli, and 4 of them
  were counted as beats: heart rate 88 for the experts' 61.)
- ``rate_confidence``: the heart rate's confidence (``hr_conf``), from a second look at the beats counted: the
  rate without the detections that split one cardiac cycle in two (``split``: two consecutive RR intervals that
  together make one typical RR, the first a beat that is neither premature nor paced: an extra detection inside
  a cycle; a premature beat with its compensatory pause makes two typical RRs instead), the rate with the beats
  a regular rhythm seems to have lost (``gap``: an RR of about two or three basic cycles, the regular cluster of
  the shortest RRs; only with P waves), the
  rate of the typical cycle where most cycles are alike (``typical``: 60000 / the median RR against 60000 / the
  mean of the RRs between beats that are not premature, which lost or gained beats move; only with P waves:
  atrial fibrillation is not regular, flutter with a varying block beats at multiples of its cycle),
  complexes still lying an AV delay before a paced beat (``stimuli``), complexes far less steep than both their
  neighbours and without a T wave of their own (``wave_counted``: a T or P wave counted as a beat, bundle branch
  blocks with a small QRS and tall T waves; the rate without them) and physiology (``plausible``, 20-300 bpm).
  Each is a disagreement in bpm, scored like the intervals' checks (``features.confidence.score``) against
  HR_TOLERANCE_BPM, the cited-truth tolerance of a heart rate.
"""
from __future__ import annotations

import numpy as np

from features.confidence import IntervalConfidence
from features.fiducials import GlobalFiducials, ms
from features.stimuli import paced_stimuli

AV_DELAY_MS = (60.0, 350.0)  # a ventricular stimulus this long after a complex's onset: that complex was atrial
HR_TOLERANCE_BPM = 5.0       # a cited heart rate within this of the truth is true (../shared/tools/cited_truth.py)
HR_PLAUSIBLE_BPM = (20.0, 300.0)
SPLIT_SHORT = 0.6      # an RR under this share of the typical one ...
SPLIT_SUM = 0.15       # ... that makes one typical RR with the next (within this share) split one cycle
GAP_MULTIPLE = 0.15    # an RR within this share of 2 or 3 typical RRs ...
GAP_REGULAR_CV = 0.08  # ... of a basic cycle this regular (SD / mean of the RRs up to 1.5 x the shortest) lost a beat
GAP_MIN_NN = 3         # the basic cycle from the RRs free of premature beats when at least this many are
# a complex whose steepest spatial slope is under ALT_SLOPE_RATIO of both its neighbours' is no depolarisation like
# theirs: a P or T wave is slow, its slope a fraction of the QRS's (synthetic LBBB / RBBB with a small QRS and tall
# T at 80-150 bpm, a T or P counted as a beat: 0.25-0.57 of the QRS's; one rhythm's beats vary under 15%). When
# it has no T wave of its own (its T window, up to the next complex, held none: a P), or the beat before it has
# none (that beat's T is this complex), it was no ventricular depolarisation: every ventricular beat repolarises,
# a premature ventricular beat as slow as these included (which the pause after it leaves room to show; at fast
# rates its T window can be cut, but the compensatory pause after it still tells it apart: COMPENSATORY_SPAN). At least WAVE_COUNTED_MIN of them (2,000 + 300 random synthetic
# records and the failure classes: it fires once, on a rate 13 bpm too fast)
ALT_SLOPE_RATIO = 0.7
COMPENSATORY_SPAN = 1.5  # the beats either side of a PVC are about two cycles apart (its pause), a split cycle one
WAVE_COUNTED_MIN = 2
TYPICAL_NEAR, TYPICAL_SHARE = 0.1, 0.6  # a rhythm with this share of its RRs within this share of the median RR


def ventricular_stimulus_ms(fid: GlobalFiducials, spikes: np.ndarray, k: int, fs_hz: float) -> float | None:
    """The first ventricular stimulus (ms) of paced beat ``k`` (None when beat ``k`` is not paced or its
    stimulus is not found)."""
    if fid.paced is None or not fid.paced[k] or not np.isfinite(fid.qrs_on[k]):
        return None
    train = paced_stimuli(spikes, fid.qrs_on[k], fid.r[k] + ms(fs_hz, 40), fs_hz)
    return None if train is None else float(train[0]) * 1000.0 / fs_hz


def atrial_events(fid: GlobalFiducials, spikes: np.ndarray, fs_hz: float) -> np.ndarray:
    """Bool per beat of ``fid``: a complex, not paced itself, whose onset lies AV_DELAY_MS before the ventricular
    stimulus of the next beat, a paced one: an atrial event (stimulus and P wave), not a heartbeat (module
    docstring)."""
    nb = fid.r.size
    out = np.zeros(nb, dtype=bool)
    if spikes is None or len(spikes) == 0 or fid.paced is None or not fid.paced.any():
        return out
    to_ms = 1000.0 / fs_hz
    for k in range(nb - 1):
        if fid.paced[k] or not np.isfinite(fid.qrs_on[k]):
            continue
        stim = ventricular_stimulus_ms(fid, spikes, k + 1, fs_hz)
        if stim is not None and AV_DELAY_MS[0] <= stim - fid.qrs_on[k] * to_ms <= AV_DELAY_MS[1]:
            out[k] = True
    return out


# a P wave counted as a beat: under complete AV block the sinus P waves march on, 60-110 a minute, between the
# escape rhythm's slow, often broad QRS complexes (25-60 a minute), whose squared slope the detector's per-lead cap
# (features.beats.detect_beats) brings down to the P's: synthetic complete block with a ventricular escape or a
# ventricular pacemaker counted 8 of 10 P waves as beats (heart rate 87 for 37, 86 for 61). Ventricular
# depolarisation moves several times the atrial mass: a heart's QRS complexes, from any focus, are several times
# its P wave in size, and a premature ventricular beat, slower than the conducted QRS, is no smaller. A complex
# both under SMALL_COMPLEX_RATIO of the record's large complexes' steepest spatial slope and under it of their
# spatial excursion is a P wave (a normal QRS among larger, slower PVCs is the steeper; a PVC among narrow QRS
# complexes the larger), where the beats left are regular (SMALL_COMPLEX_REGULAR_CV): no heartbeat (synthetic P
# waves counted: 0.30-0.35 and 0.22-0.35 of them)
SMALL_COMPLEX_RATIO = 0.5
SMALL_COMPLEX_REGULAR_CV = 0.1  # ... and the beats left without them are regular (RR SD under this share of the mean)
SMALL_COMPLEX_REF_PERCENTILE = 90.0  # the record's large complexes: this percentile of its detections
SMALL_COMPLEX_HALF_MS = 60.0  # a complex's steepest slope: within this of its anchor; its excursion from here ...
SMALL_COMPLEX_SIZE_AFTER_MS = 150.0  # ... to this long after it ...
SMALL_COMPLEX_NEXT_GUARD_MS = 120.0  # ... or to this long before the next complex's anchor (a broad QRS's onset)


def atrial_sized(clean: np.ndarray, good: np.ndarray, r: np.ndarray, fs_hz: float) -> np.ndarray:
    """Bool per beat anchor ``r``: a complex the size and steepness of a P wave among the record's QRS complexes
    (SMALL_COMPLEX_RATIO's comment): no ventricular depolarisation."""
    out = np.zeros(r.size, dtype=bool)
    if r.size < 3 or not good.any():
        return out
    x = clean[good]
    d = np.diff(x, axis=1, prepend=x[:, :1])
    v = np.sqrt(np.sum(d * d, axis=0))
    w = ms(fs_hz, SMALL_COMPLEX_HALF_MS)
    slope = np.empty(r.size)
    size = np.empty(r.size)
    after, guard = ms(fs_hz, SMALL_COMPLEX_SIZE_AFTER_MS), ms(fs_hz, SMALL_COMPLEX_NEXT_GUARD_MS)
    rr = np.asarray(r, dtype=np.int64)
    for k, c in enumerate(rr):
        lo, hi = max(0, c - w), min(x.shape[1], c + w + 1)
        slope[k] = float(v[lo:hi].max())
        # the size over the whole of a broad complex (a PVC's QRS is 140-180 ms, its anchor anywhere in it), up to
        # well before the next complex (a P counted as a beat is followed by a QRS at any distance)
        hi = min(x.shape[1], c + after + 1, int(rr[k + 1]) - guard if k + 1 < rr.size else x.shape[1])
        size[k] = float(np.linalg.norm(np.ptp(x[:, lo:max(hi, c + 1)], axis=1)))
    ref_slope = float(np.percentile(slope, SMALL_COMPLEX_REF_PERCENTILE))
    ref_size = float(np.percentile(size, SMALL_COMPLEX_REF_PERCENTILE))
    if ref_slope <= 0 or ref_size <= 0:
        return out
    small = (slope < SMALL_COMPLEX_RATIO * ref_slope) & (size < SMALL_COMPLEX_RATIO * ref_size)
    rest = np.diff(np.asarray(r, dtype=float)[~small])
    # the ventricles of a complete block follow a regular escape rhythm (or pacemaker): without the P waves the
    # beats left are regular. A small premature ventricular beat (synthetic: 0.49 of the QRS's size) leaves a
    # pause of two cycles behind: the beats left are not, and it stays a beat
    if not small.any() or rest.size < 2 or float(np.std(rest)) >= SMALL_COMPLEX_REGULAR_CV * float(np.mean(rest)):
        return out
    return small


def _bpm(rr_ms: np.ndarray) -> float | None:
    rr_ms = rr_ms[np.isfinite(rr_ms)]
    return 60000.0 / float(rr_ms.mean()) if rr_ms.size else None


def wave_counted(beat_slope: np.ndarray | None, own_t_off: np.ndarray | None,
                 r: np.ndarray | None = None) -> np.ndarray | None:
    """Bool per beat (interior beats only): a P or T wave counted as a beat (the constants' comment: its steepest
    slope under ALT_SLOPE_RATIO of both neighbours', without a T of its own or after a beat without one:
    ``own_t_off``, each beat's own T end before the median beat's was carried to it, NaN: none; and, with the
    anchors ``r``, not followed by a compensatory pause)."""
    if beat_slope is None or own_t_off is None or beat_slope.size < 3 or beat_slope.size != own_t_off.size:
        return None
    s = np.asarray(beat_slope, dtype=float)
    out = np.zeros(s.size, dtype=bool)
    no_t = ~np.isfinite(own_t_off)
    # without a T of its own (a P counted), or after a beat without one (that beat's T counted)
    weak = np.zeros(s.size, dtype=bool)
    weak[1:-1] = s[1:-1] < ALT_SLOPE_RATIO * np.minimum(s[:-2], s[2:])
    out[1:-1] = weak[1:-1] & (no_t[1:-1] | no_t[:-2])
    if r is not None and out.any():
        # a premature ventricular beat is followed by a compensatory pause: the beats either side of it are about
        # two cycles apart, where a counted wave splits one cycle. The cycle: the RRs between two complexes
        # neither of which is that slow (none when a wave was counted in every cycle)
        r = np.asarray(r, dtype=float)
        rr = np.diff(r)
        slow = weak.copy()  # the first and last complex against their one neighbour
        slow[0], slow[-1] = s[0] < ALT_SLOPE_RATIO * s[1], s[-1] < ALT_SLOPE_RATIO * s[-2]
        clean = ~slow[:-1] & ~slow[1:]
        if clean.sum() >= 3:
            cycle = float(np.median(rr[clean]))
            span = np.full(out.size, np.nan)
            span[1:-1] = r[2:] - r[:-2]
            out &= ~(span >= COMPENSATORY_SPAN * cycle)
    return out


def rate_confidence(r: np.ndarray, classes: list[str], fs_hz: float, fid: GlobalFiducials | None = None,
                    spikes: np.ndarray | None = None, beat_slope: np.ndarray | None = None) -> IntervalConfidence:
    """The checks behind the heart rate (bpm disagreements; module docstring). ``r``: the beats' anchors (samples);
    ``classes``: their beat classes (normal / premature / paced / uncertain); ``fid`` and ``spikes``: for the
    ``stimuli`` check; ``beat_slope``: each beat's steepest spatial slope about its anchor, for ``wave_counted``."""
    ic = IntervalConfidence(HR_TOLERANCE_BPM)
    rr = np.diff(np.asarray(r, dtype=float)) * 1000.0 / fs_hz
    hr = _bpm(rr)
    if hr is None:
        return ic
    ic.checks["plausible"] = float(max(0.0, HR_PLAUSIBLE_BPM[0] - hr, hr - HR_PLAUSIBLE_BPM[1]))
    typical = float(np.median(rr))
    # split: an extra detection inside one cycle (its two RRs make one typical RR); the rate without it
    extra = 0
    k = 0
    while k < rr.size - 1:
        beat = k + 1  # the beat between rr[k] and rr[k + 1]
        if classes[beat] not in ("premature", "paced") and min(rr[k], rr[k + 1]) < SPLIT_SHORT * typical \
                and abs(rr[k] + rr[k + 1] - typical) <= SPLIT_SUM * typical:
            extra += 1
            k += 2
            continue
        k += 1
    if extra:
        span = float(rr.sum())
        ic.checks["split"] = hr - 60000.0 * (rr.size - extra) / span
    # the RRs into and out of a premature beat are no basic cycles (a coupling interval; an atrial premature beat
    # resets the sinus node, no compensatory pause follows): the next two checks leave them out
    nn = np.array([classes[i] != "premature" and classes[i + 1] != "premature" for i in range(rr.size)])
    sinus_like = fid is None or bool(fid.p_present)  # flutter with a varying block beats at multiples of its cycle
    # gap: an RR of about two or three basic cycles (the regular cluster of the shortest RRs) lost a beat in it;
    # the rate with it counted (only with P waves)
    # when fewer than GAP_MIN_NN cycles are free of premature beats, the premature labels are suspect themselves: a
    # beat is judged early against the cycle that lost beats make (a sinus bradycardia whose two PVCs were missed:
    # every other normal beat "premature", RRs 1392 / 2754 / 1392 / 2764 ms), so all the RRs count
    pool = nn if nn.sum() >= GAP_MIN_NN else np.ones_like(nn)
    short = rr[pool & (rr <= 1.5 * float(rr[pool].min()))] if pool.any() else rr[:0]
    if sinus_like and short.size >= 2 and float(np.std(short)) <= GAP_REGULAR_CV * float(np.mean(short)):
        base = float(np.median(short))
        lost = 0
        for v in rr[pool]:
            for mult in (2, 3):
                if abs(v - mult * base) <= GAP_MULTIPLE * base:
                    lost += mult - 1
                    break
        if lost:
            ic.checks["gap"] = 60000.0 * (rr.size + lost) / float(rr.sum()) - hr
    # typical: a regular underlying rhythm (most RRs near the median one) beats at the median RR's rate; a count
    # whose mean RR departs from it has lost or gained beats the split / gap patterns did not describe
    near = np.abs(rr[nn] - typical) <= TYPICAL_NEAR * typical
    if nn.sum() >= 4 and near.mean() >= TYPICAL_SHARE and sinus_like:
        ic.checks["typical"] = abs(60000.0 / typical - 60000.0 / float(rr[nn].mean()))
    own_t = (fid.beat_own or {}).get("t_off") if fid is not None else None
    t_beats = wave_counted(beat_slope, own_t, r)
    if t_beats is not None and t_beats.sum() >= WAVE_COUNTED_MIN:
        ic.checks["wave_counted"] = hr - 60000.0 * (rr.size - int(t_beats.sum())) / float(rr.sum())
    if fid is not None and spikes is not None:
        left = atrial_events(fid, spikes, fs_hz)
        if left.any():
            ic.checks["stimuli"] = hr - 60000.0 * (rr.size - int(left.sum())) / float(rr.sum())
    return ic
