"""How sure we are of each published value: a confidence in [0, 1] for the record's PR, QRS and QT and for each
lead's P, QRS and T timing and amplitudes.

A value is only as sure as the weakest of several independent looks at it agree. Each check measures a
disagreement in ms and scores it against the interval's tolerance ``TOLERANCE_MS`` (the cited-truth
tolerances of the project: PR and QRS 20 ms, QT 30 ms, about twice the IEC 60601-2-25 SD limits):
``score = clip(1.5 - disagreement / tolerance, 0, 1)``, so 1 up to half the tolerance, exactly
``CONFIDENCE_MIN`` (0.5) at the tolerance, 0 at one and a half. The confidence is the lowest score; a value
below CONFIDENCE_MIN stays in the tables but is not citable (``pipeline.context.GroundingContext.citable``).

The checks, for each interval:
- ``beats``: the beats delineated one by one, before the median beat's fiducials were carried to them,
  against the median beat (median |difference| over the beats that took it): a median beat that went wrong,
  or beats too unlike each other for one median beat to stand for them;
- QRS ``beat_ends``: the spread of the beats' own QRS ends (1.96 SD from the IQR): a J point the beats put at
  different places (a step or slur at the end of the QRS) is ill defined;
- ``leads``: the spread (interquartile range) over good leads of each lead's own interval: where leads
  disagree by more than the tolerance about where a wave starts or ends, the typical lead is ill defined;
- ``method``: a second, cheap method on the median beat against ours: threshold crossings of the spatial
  slope for the QRS (10% of its peak; the end where the run holding the QRS's end crosses it) and of the spatial magnitude for the P onset (20% of the P), the
  tangent method for the T end (where the steepest descent's tangent meets the baseline); the methods themselves:
  ``features.second_methods``;
- ``global``: how far the typical lead's interval exceeds the global one (earliest onset to latest offset
  over leads), which it cannot: no lead's wave ends after the last lead's;
- ``plausible``: physiology: PR 80-400 ms, QRS 40-200 ms (100-200 ms where most beats are paced), a Bazett
  QTc of 300-560 ms; the disagreement is how far outside; PR ``p_duration`` (a P over 160 ms on the median
  beat: the P read holds more than the P wave); QT ``t_descent`` (a T peak to T end over 125 ms: a U wave fused to
  the T's end); QT ``qrs_window``: how far the QRS exceeds 200 ms (its window took in the ST-T, and the T end
  found after it is another wave's);
- PR and QT also ``p_on_t`` (the P starts before the previous T has ended: the P onset and that T end are
  each other's noise), QT ``hidden_p`` (a regular rhythm, also beat to beat, unpaced, without flutter or fibrillation waves,
  whose P waves are not found hides them, most often in the T, whose end then is the P's), QT ``squeezed``
  (the next QRS follows the measured T end by under 80 ms: the T window was cut by it, e.g. a T wave taken for a
  beat) and PR ``atrial_rival`` (another atrial-sized wave in most PR windows: which one is the
  P is a guess), PR ``previous_beat`` (the P found keeps its distance to the previous beat, not to its QRS, as the
  RR varies: a U wave or the T's tail, ``p_locking``), PR ``later_rival`` (a wave between the P and its QRS too large
  for atrial repolarisation: the P may be it), PR ``atrial_stimuli`` (dual-chamber pacing: the P starts with an atrial stimulus's artefact), PR ``window_edge``
  (the P onset at the far edge of its search window: the window cut the wave), QT ``blocked_p`` (2:1 AV block: the
  blocked P, the conducted one's twin half an RR after it, starts before the T's measured end;
  ``features.blocked_p``);
  QRS ``stimuli`` (a paced beat's stimuli span: the QRS starts after one of them); QRS and QT
  ``mixed_capture`` (the beats the values come from are paced and conducted ones alike, both common: two QRS
  populations, the value is of whichever the window holds more of; the disagreement is how far apart their
  medians lie); QRS ``atrial_slope`` (flutter waves as steep as the QRS end's criterion ride on the J point).

Per lead (beats table): a lead's P / T timing is as sure as the record's PR / QT and is not measurable at all
(0.25) in a lead whose P / T is flat there; its QRS timing as the record's QRS; its amplitudes score how well
its beats' QRS agree with its median beat (correlation 0.6 -> 0.5, 0.9 -> 1); where flutter waves were found, its
T wave's size and form (``t_wave_conf``) how far the T stands out of them (F waves' peak to peak as large as the T
-> 0.5), and its ST level (``st_level_conf``) how far they can move it (half their peak to peak at 0.05 mV -> 0.5).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from features.blocked_p import blocked_p_onset
from features.delineate import OFFSET_VELOCITY_FRACTION, P_WINDOW_MS
from features.fiducials import GlobalFiducials, ms
from features.lead_forms import P_FLAT_MV, T_FLAT_MV
from features.p_locking import P_LOCK_PREVIOUS_SLOPE, p_locking
from features.schema import CONFIDENCE_MIN
from features.second_methods import p_on_threshold_ms, qrs_threshold_ms, t_end_tangent_ms
from features.stimuli import PACED_QRS_MIN_MS, paced_stimuli

TOLERANCE_MS = {"pr": 20.0, "qrs": 20.0, "qt": 30.0}
PLAUSIBLE_MS = {"pr": (80.0, 400.0), "qrs": (40.0, 200.0)}
QTC_PLAUSIBLE_MS = (300.0, 560.0)
P_DURATION_MAX_MS = 160.0  # PR p_duration: a median beat's P longer than this counts against the PR
T_DESCENT_MAX_MS = 125.0  # QT t_descent: a T peak to T end (median beat) longer than this counts against the QT
ATRIAL_RIVAL_DOUBT = 0.8  # a second atrial wave this large (vs the P) in most PR windows makes the P a guess
SQUEEZED_GAP_MS = 80.0  # a T end followed this closely by the next QRS (median over the beats) was cut by it
P_WINDOW_EDGE_MS = 10.0  # a P onset this close to the far edge of its search window was cut by it
P_AFTER_T_MS = 20.0     # a P starting this soon after the previous T's end may hide its first part in it
HIDDEN_P_RR_CV = 0.1    # a rhythm this regular (RR SD / mean) without P waves hides them ...
HIDDEN_P_RR_SUCCESSIVE = 0.08  # ... when its successive RR differences (RMS) stay under this share of the mean RR
HIDDEN_P_DOUBT = 1.25   # ... which costs the QT this many tolerances (a confidence of 0.25)
NOT_MEASURABLE = 0.25     # a lead's P / T timing where the wave is flat in that lead
# an ST level off by this much changes what it reads as (half the 0.1 mV elevation cut-off, twice the 0.025 mV
# of a reading's margin): flutter waves of twice it peak to peak leave the J point anywhere in that range
ST_LEVEL_TOLERANCE_MV = 0.05
AMP_CORR_HALF, AMP_CORR_FULL = 0.6, 0.9
# twice the standard error of a median of n values of spread IQR: 2 x 1.2533 x (IQR / 1.349) / sqrt(n)
LEAD_SE_FACTOR = 2.0 * 1.2533 / 1.349
BEAT_END_SD_FACTOR = 1.96 / 1.349  # an IQR -> the half-width of the 95% range of a normal spread
MIN_BEATS = 3             # fewer beats with their own delineation say nothing about agreement
LATER_RIVAL_FREE, LATER_RIVAL_DOUBT = 0.25, 0.4  # a wave between P and QRS this large (vs the P): nothing / tolerance
FEW_BEATS_AGREE_SHARE = 0.5  # few_beats: beats reading a value within this share of its tolerance read it
MIXED_MIN_BEATS, MIXED_MIN_SHARE = 2, 0.25  # paced and conducted beats both at least this many and this share


def score(disagreement_ms: float, tolerance_ms: float) -> float:
    """1 up to half the tolerance, CONFIDENCE_MIN at the tolerance, 0 from one and a half times it."""
    return float(np.clip(1.5 - disagreement_ms / tolerance_ms, 0.0, 1.0))


@dataclass
class IntervalConfidence:
    """The checks behind one record-level interval: name -> disagreement (ms)."""

    tolerance_ms: float
    checks: dict[str, float] = field(default_factory=dict)

    @property
    def value(self) -> float:
        return min((score(d, self.tolerance_ms) for d in self.checks.values()), default=1.0)

    def weakest(self) -> tuple[str, float] | None:
        return max(self.checks.items(), key=lambda kv: kv[1]) if self.checks else None


@dataclass
class Confidences:
    """What ``record_confidences`` returns: per interval (pr, qrs, qt) the checks, and per lead the four
    confidences of the beats table (p_conf, qrs_conf, t_conf, amp_conf; NaN: not defined)."""

    intervals: dict[str, IntervalConfidence]
    lead: dict[str, np.ndarray]

    def uncertain(self, values: dict[str, float | None]) -> str:
        """"pr_ms:beats(34 ms);..." for every interval (and the heart rate: "hr_bpm:split(9 bpm)") whose value
        exists and is below CONFIDENCE_MIN."""
        out = []
        for key, ic in self.intervals.items():
            col, unit = ("hr_bpm", "bpm") if key == "hr" else (f"{key}_ms", "ms")  # the rate: features.rate
            if values.get(col) is None or ic.value >= CONFIDENCE_MIN:
                continue
            name, d = ic.weakest()
            out.append(f"{col}:{name}({d:.0f} {unit})")
        return ";".join(out)


def _median_abs(a: np.ndarray) -> float | None:
    a = np.abs(a[np.isfinite(a)])
    return float(np.median(a)) if a.size >= MIN_BEATS else None


def _iqr(values: np.ndarray) -> float | None:
    v = values[np.isfinite(values)]
    if v.size < 4:
        return None
    q1, q3 = np.percentile(v, [25, 75])
    return float(q3 - q1)


def _outside(x: float | None, lo: float, hi: float) -> float | None:
    return None if x is None else float(max(0.0, lo - x, x - hi))


def record_confidences(fid: GlobalFiducials, good: np.ndarray, spikes: np.ndarray, lead_iv: dict[str, np.ndarray],
                       dom: np.ndarray, rr_ms: float | None, values: dict[str, float | None],
                       qrs_corr: np.ndarray, fs_hz: float) -> Confidences:
    """The confidences of a measured record.

    ``fid``: its global fiducials (``delineate_with_template``: the beats' own ones, the median beat);
    ``good``: bool per lead; ``spikes``: pacing stimuli (samples); ``lead_iv``: per interval key (pr, qrs, qt)
    each lead's own interval (ms, NaN: not measured) as the record row takes it; ``dom``: bool per beat, the
    dominant beats the record's values come from; ``rr_ms``: the typical RR; ``values``: the record row's
    pr_ms, qrs_ms, qt_ms; ``qrs_corr``: (n_leads, n_beats) each beat's QRS against its lead's median QRS.
    """
    to_ms = 1000.0 / fs_hz
    ic = {k: IntervalConfidence(tol) for k, tol in TOLERANCE_MS.items()}
    own = fid.beat_own or {}
    tf = fid.template_fid
    have_tmpl = tf is not None and fid.template is not None and np.isfinite(fid.template_d_on)
    tmpl_on = fid.template_before + fid.template_d_on if have_tmpl else np.nan
    qt_from = fid.qrs_from_template if fid.qrs_from_template is not None else np.zeros(fid.r.size, bool)

    # beats: each beat alone against the median beat. The beats that took the median beat's fiducials; where
    # fewer than MIN_BEATS did, every beat the record's values come from (``dom``): a median beat that too few
    # beats match still gives those its value, and the record's is then theirs (a 6 s window of LUDB 1: 2 of 5
    # beats took a median beat's QRS of 100 ms, each beat alone 72-78, the record cited 106 for the experts' 82)
    def carried(from_tmpl: np.ndarray | None) -> np.ndarray:
        f = from_tmpl if from_tmpl is not None else np.zeros(fid.r.size, bool)
        return f if f.sum() >= MIN_BEATS or not f.any() else f | dom

    if have_tmpl and own:
        qrs_t = fid.template_d_off - fid.template_d_on
        d = _median_abs(((own["qrs_off"] - own["qrs_on"]) - qrs_t)[carried(qt_from)]) if qt_from.any() else None
        if d is not None:
            ic["qrs"].checks["beats"] = d * to_ms
        if np.isfinite(tf.t_off[0]) and fid.t_from_template is not None and fid.t_from_template.any():
            qt_t = tf.t_off[0] - tmpl_on
            d = _median_abs(((own["t_off"] - own["qrs_on"]) - qt_t)[carried(fid.t_from_template)])
            if d is not None:
                ic["qt"].checks["beats"] = d * to_ms
        if np.isfinite(tf.p_on[0]) and fid.p_from_template is not None and fid.p_from_template.any():
            pr_t = tmpl_on - tf.p_on[0]
            d = _median_abs(((own["qrs_on"] - own["p_on"]) - pr_t)[carried(fid.p_from_template)])
            if d is not None:
                ic["pr"].checks["beats"] = d * to_ms

    # no median beat (fewer than three beats shared a QRS: features.delineate): each beat's own delineation is the
    # value. It is as sure as the beats it comes from agree (beat_spread: the half-width of their 95% range, from
    # the IQR; synthetic AF with PVCs in muscle noise at low voltage: QRS +21 ms at confidence 1 without it), and
    # only where at least MIN_BEATS beats, of whatever class, read it on their own within its tolerance (few_beats:
    # a 6 s window of LUDB 8, paced beats whose stimuli mostly went unseen: its one beat classed as conducted gave
    # the record a QRS of 164 ms for the experts' 127; LUDB 95, atrial fibrillation with a demand pacemaker: its
    # two beats of the dominant class read 85 ms, as do three conducted beats classed premature)
    if fid.template is None and own:
        for k, (a, b) in (("qrs", ("qrs_on", "qrs_off")), ("qt", ("qrs_on", "t_off")), ("pr", ("p_on", "qrs_on"))):
            dur = (own[b] - own[a]) * to_ms
            iqr = _iqr(dur[dom])
            if iqr is not None:
                ic[k].checks["beat_spread"] = BEAT_END_SD_FACTOR * iqr
            v = values.get(f"{k}_ms")
            if v is not None and fid.r.size >= MIN_BEATS:
                # beats of one kind read one interval within a few ms of each other; within a whole tolerance of
                # it also lie the beats of another kind a tolerance away (a 6 s window of LUDB 8: one unpaced-looking
                # beat's QT of 398 ms "read" by paced beats' 368-379, for the experts' 367; QT +31 at confidence 1)
                near = FEW_BEATS_AGREE_SHARE * ic[k].tolerance_ms
                support = int(np.sum(np.abs(dur[np.isfinite(dur)] - float(v)) <= near))
                if support < MIN_BEATS:
                    ic[k].checks["few_beats"] = HIDDEN_P_DOUBT * ic[k].tolerance_ms

    # beat_ends: where the beats, each delineated alone, put their own QRS end (relative to their anchor): the
    # half-width of its 95% range, 1.96 SD estimated robustly from the IQR (IQR / 1.349: one odd beat does not
    # move it). A J point that is clear ends every beat at the same place; where a step or slur runs into the
    # ST segment (LUDB 103: cited 110 ms for the experts' 88), some beats end at its top and some at its foot,
    # and the median beat's end is one of the two: the QRS end is ill defined
    if own and qt_from.any():
        iqr = _iqr((own["qrs_off"] - fid.r)[qt_from])
        if iqr is not None:
            ic["qrs"].checks["beat_ends"] = BEAT_END_SD_FACTOR * iqr * to_ms

    # leads: how far the median over leads could move (twice its standard error, from the leads' spread)
    for k in ic:
        v = lead_iv.get(k)
        iqr = _iqr(v) if v is not None else None
        if iqr is not None:
            ic[k].checks["leads"] = LEAD_SE_FACTOR * iqr / np.sqrt(np.isfinite(v).sum())

    # method: a second, cheap method on the median beat
    if have_tmpl:
        q2 = qrs_threshold_ms(fid, good, fs_hz)
        if q2 is not None:
            ic["qrs"].checks["method"] = abs(q2 - (fid.template_d_off - fid.template_d_on) * to_ms)
        t2 = t_end_tangent_ms(fid, good, fs_hz)
        if t2 is not None:
            ic["qt"].checks["method"] = abs(t2)
        p2 = p_on_threshold_ms(fid, good, fs_hz)
        if p2 is not None:
            ic["pr"].checks["method"] = abs(p2)
        # unlocked P: the beats show P waves but their median beat none. A sinus P at a steady PR survives the
        # averaging; single-beat atrial waves that cancel in it are not locked to the QRS (noise, fibrillatory or
        # ectopic atrial waves, a PR that varies), and the PR read from them is whichever the window holds (LUDB
        # 60 by 8.8 s windows: no PR, 166, 176, 182, 140 for the experts' 149)
        if values.get("pr_ms") is not None and not np.isfinite(tf.p_on[0]):
            ic["pr"].checks["unlocked_p"] = HIDDEN_P_DOUBT * TOLERANCE_MS["pr"]

    # global: no lead's wave ends after the last lead's, nor starts before the first's: a typical lead's
    # interval longer than the global one (earliest onset to latest offset) was measured past where the
    # multi-lead wave ends (synthetic RBBB at 134 bpm: the leads' T ends in the next P, QT +47 ms)
    for k in ic:
        g = values.get(f"{k}_global_ms")
        if g is not None and values.get(f"{k}_ms") is not None:
            ic[k].checks["global"] = max(0.0, float(values[f"{k}_ms"]) - float(g))

    # plausible: physiology; a paced QRS spreads from the stimulus through the myocardium, not the conduction system,
    # and is never narrow (synthetic biventricular pacing at 134 bpm: a QRS of 44 ms cited, 112 ms short)
    paced_dom = fid.paced is not None and dom.any() and float(np.mean(np.asarray(fid.paced, dtype=bool)[dom])) > 0.5
    for k in ("pr", "qrs"):
        lo, hi = PLAUSIBLE_MS[k]
        if k == "qrs" and paced_dom:
            lo = PACED_QRS_MIN_MS
        d = _outside(values.get(f"{k}_ms"), lo, hi)
        if d is not None:
            ic[k].checks["plausible"] = d
    # a QRS wider than any is a window that took in the ST-T (paced beats at 112-151 bpm: QRS 260-314 ms for 142-161),
    # and the T end found after it is another wave's: the QT is as unsure as the QRS window is too wide
    qrs = values.get("qrs_ms")
    if qrs is not None and qrs > PLAUSIBLE_MS["qrs"][1]:
        ic["qt"].checks["qrs_window"] = float(qrs) - PLAUSIBLE_MS["qrs"][1]
    # p_duration: atrial depolarisation lasts under 120 ms, up to ~150 with interatrial block or left atrial
    # enlargement (LUDB's 10 s records: ours at most 152); a P over P_DURATION_MAX_MS holds more than the P, its onset
    # run into the T's tail, noise or another atrial wave (LUDB 60, 6 s window at 4 s: 188 ms, PR +43 at 0.6)
    if have_tmpl and fid.p_present and np.isfinite(tf.p_on[0]) and np.isfinite(tf.p_off[0]):
        ic["pr"].checks["p_duration"] = max(0.0, float(tf.p_off[0] - tf.p_on[0]) * to_ms - P_DURATION_MAX_MS)
    qt = values.get("qt_ms")
    if qt is not None and rr_ms:
        ic["qt"].checks["plausible"] = _outside(qt / np.sqrt(rr_ms / 1000.0), *QTC_PLAUSIBLE_MS)
    # t_descent: the T's fall from its peak to its end (the dispersion of repolarisation) lasts 80-120 ms, rarely
    # longer (LUDB's experts: at most 101 ms, record medians; ours at most 104; a notched T 122-132); a fall much
    # longer holds another wave fused to the T's end, a U wave (synthetic LVH with T-U fusion: the QT read to the
    # U's end, +87 to +110 ms, peak to end 146-168 ms, once at confidence 1): the disagreement is the excess
    if qt is not None and have_tmpl and np.isfinite(tf.t_peak[0]) and np.isfinite(tf.t_off[0]):
        descent = float(tf.t_off[0] - tf.t_peak[0]) * to_ms
        ic["qt"].checks["t_descent"] = max(0.0, descent - T_DESCENT_MAX_MS)

    # P on T: the P starts before the previous beat's T has ended, or so soon after that its first part may
    # hide in the T's tail (median beat, at the typical RR)
    if have_tmpl and rr_ms and fid.p_present and np.isfinite(tf.p_on[0]) and np.isfinite(tf.t_off[0]):
        gap = (tf.p_on[0] - fid.template_before) * to_ms + rr_ms - (tf.t_off[0] - fid.template_before) * to_ms
        if gap < P_AFTER_T_MS:
            # the P's rise hides in the T's fall: its onset is a guess (synthetic, P inside the T: 22-26 ms
            # late, hiding the overlap itself); the T's end is uncertain by the overlap
            ic["pr"].checks["p_on_t"] = TOLERANCE_MS["pr"] * (1.0 + (P_AFTER_T_MS - gap) / P_AFTER_T_MS)
            if gap < 0:
                ic["qt"].checks["p_on_t"] = float(-gap)
    # 2:1 AV block: a blocked P starting before the T has ended (at 40-55 bpm it falls RR/2 - PR after the QRS onset)
    # is fused with the T's end, which the T end then takes for its own (synthetic: QT +40-45 ms); as p_on_t
    bp = blocked_p_onset(fid, good, fs_hz) if have_tmpl and np.isfinite(tf.t_off[0]) else None
    if bp is not None and bp < tf.t_off[0]:
        ic["qt"].checks["blocked_p"] = float(tf.t_off[0] - bp) * to_ms
    # the P's onset at the far edge of the window it is looked for in (P_WINDOW_MS before the QRS onset): the window
    # cut the wave, and its onset is the window's (synthetic complete block, the atrial rate near twice the escape
    # rate: P waves 450-470 ms before each QRS, drifting 4 ms a beat, read as a PR of 417 ms)
    if have_tmpl and fid.p_present and np.isfinite(tf.p_on[0]) and np.isfinite(tf.qrs_on[0]) \
            and (tf.qrs_on[0] - tf.p_on[0]) * to_ms >= P_WINDOW_MS - P_WINDOW_EDGE_MS:
        ic["pr"].checks["window_edge"] = HIDDEN_P_DOUBT * TOLERANCE_MS["pr"]
    # squeezed: the next complex follows the T's measured end too closely for the diastole a heartbeat needs
    # (the T window was cut by it: a T wave detected as a beat, an R-on-T complex): the T's true end is unknown
    nxt = np.concatenate((fid.qrs_on[1:], [np.nan]))
    gap = (nxt - fid.t_off)[dom] * to_ms
    gap = gap[np.isfinite(gap)]
    if gap.size >= MIN_BEATS and float(np.median(gap)) < SQUEEZED_GAP_MS:
        ic["qt"].checks["squeezed"] = HIDDEN_P_DOUBT * TOLERANCE_MS["qt"]
    # a regular rhythm whose P waves are not found, without flutter / fibrillation waves or pacing, hides them:
    # most often in the preceding T (a long PR at a fast rate), whose measured end then takes the P's
    diag = fid.p_diag or {}
    # (and not irregularly irregular: fibrillation changes the RR from beat to beat, a sinus rhythm only gradually,
    # so AF whose 10 s happen to vary little overall, RR SD 7-10% of the mean, still has successive differences of
    # 9-14% of it; P waves hidden in the T at a fast rate: under 6%)
    r_iv = np.diff(fid.r).astype(float)
    regular = r_iv.size >= 3 and float(np.std(r_iv)) < HIDDEN_P_RR_CV * float(np.mean(r_iv)) \
        and float(np.sqrt(np.mean(np.diff(r_iv) ** 2))) < HIDDEN_P_RR_SUCCESSIVE * float(np.mean(r_iv))
    # (P waves found marching through at their own rate, AV dissociation, are not hidden: the median beat leaves
    # them out, as the T end's median over beats does: synthetic complete block, QT within 17 ms over 24 records)
    dissociated = fid.av_dissociation is not None and fid.av_dissociation.present
    if not fid.p_present and regular and not diag.get("atrial_waves") and not dissociated \
            and not (fid.paced is not None and fid.paced.any()):
        ic["qt"].checks["hidden_p"] = HIDDEN_P_DOUBT * TOLERANCE_MS["qt"]
    rival = (fid.p_diag or {}).get("rival_median")
    rival_tmpl = (fid.p_diag or {}).get("rival_template")
    if rival is not None and rival_tmpl is not None:
        # a rival is one when the median beat shows it too (time-locked to the QRS: a blocked P, a U wave, the
        # T's tail); noise as large as a small P in the single beats is no candidate for the P
        rival = min(rival, rival_tmpl)
    if rival is not None and values.get("pr_ms") is not None:
        # as a disagreement: the tolerance at ATRIAL_RIVAL_DOUBT, nothing at half of it
        ic["pr"].checks["atrial_rival"] = max(0.0, (rival - ATRIAL_RIVAL_DOUBT / 2) / (ATRIAL_RIVAL_DOUBT / 2)) \
            * TOLERANCE_MS["pr"]
    # which beat the P belongs to (p_locking): a P conducts to the QRS after it, so its distance to that QRS does
    # not follow the RR before it; a wave the previous beat leaves (the T's tail, a U wave) keeps its distance to
    # that beat, and its distance to the next QRS changes one for one with the RR. A P found at slope ~1 is the
    # previous beat's wave, and the P is another (synthetic U waves at 62-78 bpm: PR read 190-250 ms long at
    # confidence 0.6-1; sinus P waves: slopes under 0.4)
    # (both the least-squares slope less twice its error and the pairs' median slope at P_LOCK_PREVIOUS_SLOPE)
    if values.get("pr_ms") is not None:
        lock = p_locking(fid, fs_hz)
        if lock is not None and min(lock[0] - 2.0 * lock[1], lock[2]) >= P_LOCK_PREVIOUS_SLOPE:
            ic["pr"].checks["previous_beat"] = HIDDEN_P_DOUBT * TOLERANCE_MS["pr"]
        # a wave between the P and its QRS (the median beat's, locked to the QRS) of over LATER_RIVAL_DOUBT of the P's
        # size: the PR segment holds atrial repolarisation only, a slow wave well under the P (LUDB 15: 0.31-0.33 of
        # it), so such a wave is the P and the P found the previous beat's wave, or an atrial wave of its own; which
        # one is the P is a guess (LUDB 130, 6 s windows, an RR too regular to tell the locking: a wave 230 ms after
        # the T read as the P, PR 382-404 ms for the experts' 192, the true P 0.79-0.89 of it, later; synthetic
        # u_wave_as_p at low voltage: the true P 0.40-0.43 of the U taken for it). Not where the P is seen to be
        # locked to its QRS (slope plus twice its error, and the pairs' median slope, under P_LOCK_PREVIOUS_SLOPE)
        later = diag.get("rival_template_later") and diag.get("rival_template") is not None
        locked = lock is not None and max(lock[0] + 2.0 * lock[1], lock[2]) < P_LOCK_PREVIOUS_SLOPE
        if later and not locked:
            free, doubt = LATER_RIVAL_FREE, LATER_RIVAL_DOUBT
            ic["pr"].checks["later_rival"] = max(0.0, (float(diag["rival_template"]) - free) / (doubt - free)) \
                * TOLERANCE_MS["pr"]

    # atrial stimuli (dual-chamber pacing: atrial events found among the beats): each P starts with its stimulus's
    # artefact, and its onset is the artefact's as much as the P's (synthetic, atrial stimulus 0.8 mV: PR +26 ms)
    if fid.atrial_events is not None and len(fid.atrial_events) and values.get("pr_ms") is not None:
        ic["pr"].checks["atrial_stimuli"] = HIDDEN_P_DOUBT * TOLERANCE_MS["pr"]
    # stimuli: a paced beat's stimuli (biventricular: LV and RV) span
    if fid.paced is not None and fid.paced.any() and spikes is not None and len(spikes):
        spans = []
        for k in np.flatnonzero(fid.paced & np.isfinite(fid.qrs_on)):
            train = paced_stimuli(spikes, fid.qrs_on[k], fid.r[k] + ms(fs_hz, 40), fs_hz)
            if train is not None:
                spans.append(float(train[-1] - train[0]) * to_ms)
        if spans:
            ic["qrs"].checks["stimuli"] = float(np.median(spans))
    # mixed capture: the beats the record's values come from (``dom``) are paced and conducted ones alike, both
    # common (a demand pacemaker in atrial fibrillation, whose conducted beats read as premature: no beat is the
    # dominant kind, and every beat counts): two populations of QRS complexes, and the record's QRS and QT are
    # those of whichever the window holds more of, not of the heart (LUDB 95: 6 paced beats of 114-154 ms and 3
    # conducted of 86-92 in one window, QRS cited 114 for the experts' 92; with two conducted beats of the
    # dominant kind in the next, 86 from them). The disagreement is how far apart the two populations' medians lie
    if fid.paced is not None:
        paced = np.asarray(fid.paced, dtype=bool) & dom
        conducted = ~np.asarray(fid.paced, dtype=bool) & dom & np.isfinite(fid.qrs_on) & np.isfinite(fid.qrs_off)
        n_p, n_c = int(paced.sum()), int(conducted.sum())
        if min(n_p, n_c) >= MIXED_MIN_BEATS and min(n_p, n_c) >= MIXED_MIN_SHARE * (n_p + n_c):
            for k, end in (("qrs", fid.qrs_off), ("qt", fid.t_off)):
                dur = (end - fid.qrs_on) * to_ms
                a, b = dur[paced & np.isfinite(dur)], dur[conducted & np.isfinite(dur)]
                if a.size and b.size:
                    ic[k].checks["mixed_capture"] = abs(float(np.median(a)) - float(np.median(b)))

    # atrial slope: flutter waves (features.flutter) as steep as the QRS end's criterion (the spatial slope falling to
    # OFFSET_VELOCITY_FRACTION of the QRS's peak) ride on the J point, which cannot be told from them; as a
    # disagreement: the tolerance where the F waves' slope (what is left of it where the F-wave train was
    # cancelled) reaches that criterion (LUDB 103: 0.14-0.19 of the QRS peak, its QRS read +20 ms in every window;
    # LUDB 35: 0.10; synthetic flutter, cancelled: 0.02-0.04; sinus and AF records: 0.02-0.04 as they are)
    fl = fid.flutter
    if fl is not None and fl.present:
        ratio = fl.slope_ratio_cancelled if fl.cancelled else fl.slope_ratio
        if ratio is not None:
            ic["qrs"].checks["atrial_slope"] = TOLERANCE_MS["qrs"] * ratio / OFFSET_VELOCITY_FRACTION

    # locked flutter: F waves locked to the QRS by a fixed block (features.flutter.locked_flutter) sit at the same
    # phase in every beat, so every beat and the median beat agree on a QRS end and a T end that an F wave adjoining
    # them carries on by up to half an F cycle (synthetic 3:1 / 4:1 flutter: QT read up to 122 ms, QRS 47 ms late);
    # as a disagreement, that half cycle
    if fl is not None and fl.present and fl.locked_ratio is not None and fl.cycle_ms is not None:
        for k in ("qrs", "qt"):
            ic[k].checks["locked_flutter"] = 0.5 * float(fl.cycle_ms)

    lead = _lead_confidences(fid, good, ic, dom, qrs_corr, fs_hz)
    # T under the F waves: flutter waves as large as the T wave in every lead (t_wave_conf) leave no lead where the
    # T's end stands out of them, and the T end found is an F wave's as much as the T's (synthetic flutter with an
    # LBBB at 142 bpm, 0.5 mV F waves, the cancellation not applied: QT 105 ms late at confidence 1); where the T
    # stands out in some leads (LUDB 35: 4 of 12, 103: 5 of 12, their QT true) its end is read there too
    tw = lead["t_wave_conf"][good]
    if fl is not None and fl.present and tw.size and np.isfinite(tw).all() and bool((tw < CONFIDENCE_MIN).all()):
        ic["qt"].checks["t_under_f_waves"] = HIDDEN_P_DOUBT * TOLERANCE_MS["qt"]
        lead["t_conf"][good] = np.minimum(lead["t_conf"][good], ic["qt"].value)
    return Confidences(intervals=ic, lead=lead)


def _lead_confidences(fid: GlobalFiducials, good: np.ndarray, ic: dict[str, IntervalConfidence], dom: np.ndarray,
                      qrs_corr: np.ndarray, fs_hz: float) -> dict[str, np.ndarray]:
    """Per lead: p_conf, qrs_conf, t_conf, amp_conf, t_wave_conf, st_level_conf (NaN for gated leads / absent waves;
    t_wave_conf and st_level_conf NaN without flutter waves)."""
    n_leads = good.size
    nan = np.full(n_leads, np.nan)
    out = {"p_conf": nan.copy(), "qrs_conf": nan.copy(), "t_conf": nan.copy(), "amp_conf": nan.copy(),
           "t_wave_conf": nan.copy(), "st_level_conf": nan.copy()}
    out["qrs_conf"][good] = ic["qrs"].value
    tf = fid.template_fid
    amp_p = amp_t = None
    if fid.template is not None and tf is not None:
        iso = tf.iso[:, 0]
        if np.isfinite(tf.p_on[0]) and np.isfinite(tf.p_off[0]):
            seg = fid.template[:, int(tf.p_on[0]):int(tf.p_off[0]) + 1] - iso[:, None]
            amp_p = np.abs(seg).max(axis=1) if seg.shape[1] else None
        if np.isfinite(tf.t_on[0]) and np.isfinite(tf.t_off[0]):
            seg = fid.template[:, int(tf.t_on[0]):int(tf.t_off[0]) + 1] - iso[:, None]
            amp_t = np.abs(seg).max(axis=1) if seg.shape[1] else None
    if fid.p_present:
        out["p_conf"][good] = ic["pr"].value
        if amp_p is not None:
            flat = good & ~(amp_p >= P_FLAT_MV)
            out["p_conf"][flat] = np.minimum(out["p_conf"][flat], NOT_MEASURABLE)
    out["t_conf"][good] = ic["qt"].value
    if amp_t is not None:
        flat = good & ~(amp_t >= T_FLAT_MV)
        out["t_conf"][flat] = np.minimum(out["t_conf"][flat], NOT_MEASURABLE)
    fl = fid.flutter
    if fl is not None and fl.present and fl.f_ptp_mv is not None and amp_t is not None:
        # flutter waves as large as the T wave run through it at every phase: its size and its form (upright,
        # inverted) are read through them (LUDB 103: "T waves upright in II, III and aVF" read on the sawtooth);
        # as a disagreement, the F waves' peak to peak against the T's size, whose tolerance is the T itself
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = fl.f_ptp_mv / np.maximum(amp_t, 1e-6)
        ok = good & np.isfinite(ratio)
        out["t_wave_conf"][ok] = np.clip(1.5 - ratio[ok], 0.0, 1.0)
        if fl.locked_ratio is not None:
            # F waves locked to the QRS sit in the median beat's T window at one phase, inseparable from the T, and
            # carry its end on (features.flutter.locked_flutter): a T form read there is the T and an F wave
            # together wherever the F waves are not flat (synthetic 4:1 flutter, 0.1 mV F waves: 6 of 12 leads'
            # T forms contradicted the T drawn)
            seen = ok & (np.asarray(fl.f_ptp_mv, dtype=float) >= T_FLAT_MV)
            out["t_wave_conf"][seen] = np.minimum(out["t_wave_conf"][seen], NOT_MEASURABLE)
    if fl is not None and fl.present and fl.f_ptp_mv is not None:
        # the ST segment is read where the F waves run too, at whatever phase the J point meets them: its level is
        # off by up to half their peak to peak (synthetic flutter, 0.4 mV F waves, no ST shift: J point -0.19 to
        # +0.24 mV in II, III and aVF, written as "the ST segment at -0.19 mV"); as a disagreement, that half
        # against ST_LEVEL_TOLERANCE_MV. Amplitudes come from the uncancelled signal, so this holds cancelled or not
        half = np.asarray(fl.f_ptp_mv, dtype=float) / 2.0
        ok = good & np.isfinite(half)
        out["st_level_conf"][ok] = np.clip(1.5 - half[ok] / ST_LEVEL_TOLERANCE_MV, 0.0, 1.0)
    if qrs_corr.size and dom.any():
        c = np.median(qrs_corr[:, dom], axis=1)
        amp = np.clip(0.5 + 0.5 * (c - AMP_CORR_HALF) / (AMP_CORR_FULL - AMP_CORR_HALF), 0.0, 1.0)
        out["amp_conf"][good] = amp[good]
    return out
