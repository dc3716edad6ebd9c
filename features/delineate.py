"""Delineate P, QRS and T globally (all good leads together) on the beats found once per record
(``features.beats``).

Everything here works on sample indices of the ``clean`` (0.5-40 Hz) leads; results are float sample
positions with NaN for "absent / not measurable". Conversions to ms happen in ``features.measure``.

Method, in the spirit of the classic 12-lead programs:
- beats: ``features.beats`` (beat k is the same heartbeat in every lead);
- QRS: knees of the spatial path length (cumulative spatial slope; squared slope for the offset) found with
  the trapezium-area method (Vazquez-Seisdedos et al., IEEE TBME 2011: the knee maximises the area of the
  trapezium spanned by a steep point, the candidate point and a far reference point); the onset is
  carried back to the noise floor (earliest onset over leads), the offset through slurred terminal
  forces (latest offset). Both are bounded by the QRS lobes followed from the anchor: runs of spatial slope
  above 10% of its peak, across dips of up to 24 ms only towards a steep (>= 30%) or brief (<= 40 ms)
  lobe, so an early T wave (LBBB at high rates) or a large P wave (low voltage) stays outside, and the
  window widens for a wide QRS whose anchor lies in its last lobe (LBBB with axis deviation); a brief lobe
  followed by another shallow one and a quiet stretch is a T squeezed behind the QRS at a fast rate, not a
  terminal r' (``features.qrs_lobes``), nor is any brief lobe that would make the QRS wider than 220 ms;
- without sinus P waves (flutter, fibrillation) the median beat's QRS onset is no earlier than the median of
  the beats' own: atrial waves that drift against the QRS can leave a hump fused with the median beat's onset;
- P and T: peaks and trapezium knees of the spatial magnitude ``M(t) = sqrt(sum_i (x_i(t) - b_i)^2)``
  about each beat's PR level ``b_i``; peaks are re-picked near the record's typical position; a P end
  knee where M still holds a quarter of the P's peak ends only the first hump of a bifid P, so the end
  moves on to the knee of the next descent (the terminal, left-atrial forces);
- median beat: QRS, P and (at the typical RR) T fiducials of beats whose QRS matches the median beat are
  taken from the median beat, whose noise is ~1/sqrt(n) of one beat's (``delineate_with_template``); the P
  also by beats after a longer RR and beats with an odd QRS whose own P lies at the typical PR (a sinus P;
  those with an odd QRS placed by their QRS onset), not by premature beats (an atrial ectopic P);
- P presence: P waves at a steady distance before most QRS (sd <= 12 ms), else none (AF, flutter, ...);
- per-lead edges on the median beat and on beats that keep their own: ``features.lead_edges``;
- paced beats: the QRS onset is no earlier than 16 ms after the stimulus (its blanked stretch, which the
  filters smear into a slope that would pull the onset ahead of the stimulus, and the capture latency),
  nor than the end of the filtered stimulus artefact after it where the spatial slope visibly dies away
  (large unipolar stimuli).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import signal as sps
from scipy.ndimage import uniform_filter1d

from features.beats import beat_windows
from features.fiducials import P_KNEE_REF_MS, T_KNEE_REF_MS, GlobalFiducials, knee_after, knee_before, ms
from features.lead_edges import (P_RISE_LOOKBACK_MS, lead_p_ends, lead_p_onsets, lead_p_rise_ms, lead_qrs_ends,
                                 lead_t_ends, p_onset_fit)
from features.qrs_lobes import extend as _extend
from features.stimuli import PACED_LATENCY_MS, PACED_LOCKED_MS, _after_artefact, _paced_onset, _starts_with_stimulus
from features.wave_shapes import _bifid_p_start, _interior_max, _next_wave_notch, _prominent_max, _t_before_u

NOISE_FLOOR_FACTOR = 3.0  # a QRS edge ends where the spatial slope falls to 3x the quietest 40 ms before it
EXTEND_MS = 30.0          # ... at most this far beyond the knee
OFFSET_VELOCITY_FRACTION = 0.1  # (chosen on synthetic RBBB / LBBB records)
OFFSET_EXTEND_MS = 60.0
OFFSET_GAP_MS = 24.0  # dips of the spatial slope between QRS lobes (all leads at a peak) are crossed ...
BRIEF_LOBE_MS = 40.0  # ... or when it is brief (a terminal r' / s lobe; a T wave's slope lasts longer)
BRIEF_REJOIN_FRACTION = 0.15
MAX_QRS_MS = 220.0  # QRS lobes followed from the anchor further than this are noise or a T wave
EDGE_MS = 10.0  # a QRS starting / ending this close to the record's edge is cut by it
OFFSET_REJOIN_FRACTION = 0.3  # ... when the slope behind them climbs back to a QRS lobe's (T waves: < 0.25)
# ... and never below 4% of the QRS's peak spatial slope (noise-free records; LUDB's experts mark onsets at ~2-4%)
ONSET_VELOCITY_FRACTION = 0.04
P_WINDOW_MS = 420.0  # P waves are looked for this far before the QRS onset (first-degree AV block: PR up to ~400 ms)
PRESENT_PR_SD_MAX_MS = 12.0  # P peak to QRS onset varies a few ms in sinus rhythm; AF / flutter waves more
P_BIFID_FRACTION = 0.25  # the spatial magnitude at a P end is near its PR level, not a quarter of the P's peak
ATRIAL_RIVAL_MAX = 0.9  # a second atrial wave this large (vs the P) in most TQ windows: flutter / AF


def spatial_slope(x: np.ndarray, fs_hz: float) -> np.ndarray:
    """Spatial slope of the leads ``x`` (n_leads, n_samples; mV): |dx/dt| over leads per sample (mV/sample),
    smoothed over 8 ms. Its lobes are the QRS; its knees the QRS on- and offset."""
    return uniform_filter1d(np.sqrt(np.sum(np.gradient(x, axis=1) ** 2, axis=0)), ms(fs_hz, 8))


def delineate(clean: np.ndarray, spikes: np.ndarray, good: np.ndarray, r: np.ndarray,
              fs_hz: float, rr_default: float | None = None, typical_p: float | None = None) -> GlobalFiducials:
    """Global (multi-lead) fiducials for every beat in ``r``; see the module docstring for the method.

    ``rr_default``: the RR (samples) to assume when ``r`` holds one beat (a median beat);
    ``typical_p``: where P peaks are looked for (samples from the P peak to the QRS onset; default: the
    median of the beats' own largest atrial deflections).
    """
    n_leads, n = clean.shape
    nb = r.size
    nan = np.full(nb, np.nan)
    fid = {k: nan.copy() for k in ("qrs_on", "qrs_off", "p_on", "p_peak", "p_off", "t_on", "t_peak", "t_off")}
    iso = np.full((n_leads, nb), np.nan)
    x = clean[good]
    gi = np.flatnonzero(good)
    if nb == 0 or x.shape[0] == 0:
        return GlobalFiducials(r=r.astype(float), iso=iso, paced=np.zeros(nb, bool), p_present=False, **fid)
    v = spatial_slope(x, fs_hz)
    spike_mask = np.zeros(n, dtype=bool)
    sp = np.asarray(spikes if spikes is not None else [], dtype=np.int64)
    spike_mask[sp[(sp >= 0) & (sp < n)]] = True
    paced = np.zeros(nb, dtype=bool)
    rr = np.diff(r)
    rr_med = float(np.median(rr)) if rr.size else float(rr_default or ms(fs_hz, 1000))

    def M(lo: int, hi: int, level: np.ndarray) -> np.ndarray:
        return np.sqrt(np.sum((x[:, lo:hi] - level[:, None]) ** 2, axis=0))

    # pass 1: QRS onset / offset per beat (knees of the spatial path length), isoelectric levels
    for k in range(nb):
        c = int(r[k])
        prev_r = int(r[k - 1]) if k > 0 else None
        next_r = int(r[k + 1]) if k + 1 < nb else None
        wlo, whi = max(0, c - ms(fs_hz, 160)), min(n - 1, c + ms(fs_hz, 180))
        if prev_r is not None:
            wlo = max(wlo, (prev_r + c) // 2)
        if next_r is not None:
            whi = min(whi, (c + next_r) // 2)
        if whi - wlo < ms(fs_hz, 40) or not (wlo < c < whi):
            continue
        # the anchor (largest spatial slope) can sit in the last lobe of a wide QRS (LBBB: the QRS starts
        # up to ~170 ms before it) or in its first lobe: follow the QRS lobes from the anchor and widen the
        # window so it holds them all plus 40 ms of what lies beyond (never past half-way to a neighbour)
        v_pk = float(v[wlo:whi + 1].max())
        lim_lo = max(0, c - ms(fs_hz, MAX_QRS_MS), (prev_r + c) // 2 if prev_r is not None else 0)
        lim_hi = min(n - 1, c + ms(fs_hz, MAX_QRS_MS), (c + next_r) // 2 if next_r is not None else n - 1)
        lobes_lo, lobes_lo_why = _extend(v, c, -1, OFFSET_VELOCITY_FRACTION * v_pk, c - lim_lo,
                                         ms(fs_hz, OFFSET_GAP_MS), rejoin=OFFSET_REJOIN_FRACTION * v_pk,
                                         with_weak=True)
        brief = ms(fs_hz, BRIEF_LOBE_MS)
        lobes_hi = _extend(v, c, +1, OFFSET_VELOCITY_FRACTION * v_pk, lim_hi - c, ms(fs_hz, OFFSET_GAP_MS),
                           rejoin=OFFSET_REJOIN_FRACTION * v_pk, brief=brief,
                           brief_rejoin=BRIEF_REJOIN_FRACTION * v_pk)
        if lobes_hi - lobes_lo > ms(fs_hz, MAX_QRS_MS):
            # a brief, shallow run after the J point is a terminal r' / s only when the QRS it completes stays
            # within MAX_QRS_MS; beyond that it was the first limb of the ST-T, which at a fast rate is brief and
            # whose second limb can be as steep as a slow (LBBB) QRS's lobes (149 bpm: the walk went on through
            # the whole T). Without brief runs the walk stops at the J point; every later walk of this beat then
            # crosses no brief run either
            strict_hi = _extend(v, c, +1, OFFSET_VELOCITY_FRACTION * v_pk, lim_hi - c, ms(fs_hz, OFFSET_GAP_MS),
                                rejoin=OFFSET_REJOIN_FRACTION * v_pk)
            if strict_hi - lobes_lo <= ms(fs_hz, MAX_QRS_MS):
                lobes_hi, brief = strict_hi, 0
        if lobes_hi - lobes_lo <= ms(fs_hz, MAX_QRS_MS):
            wlo = max(lim_lo, min(wlo, lobes_lo - ms(fs_hz, 40)))
            whi = min(lim_hi, max(whi, lobes_hi + ms(fs_hz, 40)))
        else:  # the walk ran through noise or a T wave: no QRS is this wide, keep the plain window
            lobes_lo, lobes_lo_why = wlo, ""
        # path length L(t) of the spatial loop: grows fast inside the QRS, slowly outside; its knees are
        # the earliest onset / latest offset over all leads, slurred terminal forces (RBBB) included
        path = np.cumsum(v[wlo:whi + 1])
        ci = c - wlo
        # after an isoelectric stretch before the first lobe, the onset knee is looked for near that lobe
        # (a P wave close before the QRS, e.g. at high rates, would otherwise pull the knee into it)
        on_ref = max(0, lobes_lo - ms(fs_hz, 40) - wlo) if lobes_lo_why == "long_dip" else 0
        on = knee_before(path, ci, on_ref)
        # the offset on the path of squared slope: the ST-T slope, small against the QRS's, counts
        # quadratically less, so an early, steep T wave (LBBB, short ST) does not drag the offset into it
        path2 = np.cumsum(v[wlo:whi + 1] ** 2)
        off = knee_after(-path2, ci, path2.size - 1)
        # ... but a slurred terminal force (RBBB's wide S / R') is slow too: carry the offset on while the
        # spatial slope stays above OFFSET_VELOCITY_FRACTION of the QRS peak (it drops at the J point)
        v_peak = float(v[wlo:whi + 1].max())
        v_thr = OFFSET_VELOCITY_FRACTION * v_peak
        off, off_why = _extend(v, wlo + off, +1, v_thr, ms(fs_hz, OFFSET_EXTEND_MS), ms(fs_hz, OFFSET_GAP_MS),
                               rejoin=OFFSET_REJOIN_FRACTION * v_peak, brief=brief,
                               brief_rejoin=BRIEF_REJOIN_FRACTION * v_peak, with_weak=True)
        off -= wlo
        # an early, steep T wave right behind the J point (LBBB at high rates) adds so much squared slope
        # to the window that the knee itself lands inside the T wave: when the slope dips after the last
        # QRS lobe for longer than OFFSET_GAP_MS, or what follows the dip never climbs to a lobe's slope,
        # the QRS ends before that dip
        bound, weak = _extend(v, c, +1, v_thr, whi - c, ms(fs_hz, OFFSET_GAP_MS),
                              rejoin=OFFSET_REJOIN_FRACTION * v_peak, with_weak=True,
                              brief=brief, brief_rejoin=BRIEF_REJOIN_FRACTION * v_peak)
        if weak:
            off = min(off, bound - wlo)
            if off_why == "undecided":  # a knee far before a terminal r': the extension ran out on it
                off = bound - wlo
        q_on, q_off = wlo + on, wlo + off
        # the knees sit where the bulk of the QRS starts / ends; a small initial q or terminal s / r' can
        # lie outside them. Extend each side while the spatial slope stays above the noise floor of the
        # flattest 40 ms before the QRS (classic programs: earliest onset over leads). Not at the offset,
        # where the ST slope is no noise floor.
        # the onset knee can stop in the dip between two lobes of a wide QRS (LBBB's slow first forces) or
        # be pulled into a P wave whose slope is a fair share of a small QRS's (low voltage): the QRS starts
        # where the walk over its lobes from the anchor ended (dips are crossed only towards another steep
        # lobe, so a P wave, which never reaches a lobe's slope, stays outside)
        q_on = min(q_on, lobes_lo) if lobes_lo > wlo else q_on
        if lobes_lo_why == "weak_run":
            q_on = max(q_on, lobes_lo)
        b_lo = max(0, q_on - ms(fs_hz, 160))
        if q_on - b_lo > ms(fs_hz, 40):
            base = uniform_filter1d(v[b_lo:q_on], ms(fs_hz, 40))
            floor = max(float(base.min()) * NOISE_FLOOR_FACTOR, ONSET_VELOCITY_FRACTION * float(v[wlo:whi + 1].max()))
            q_on = _extend(v, q_on, -1, floor, ms(fs_hz, EXTEND_MS), 0)
            if lobes_lo_why == "weak_run":  # the extension must not walk back into that P wave either
                q_on = max(q_on, lobes_lo - ms(fs_hz, 2))
        if lobes_lo_why == "long_dip":
            # slow initial forces below 10% of the peak slope last a few tens of ms; an onset further
            # before the first lobe is a knee pulled by noise / the P wave
            q_on = max(q_on, lobes_lo - ms(fs_hz, EXTEND_MS))
        if q_on <= ms(fs_hz, EDGE_MS) or q_off >= n - 1 - ms(fs_hz, EDGE_MS):
            continue  # a QRS cut by the record's edge (or in its filter transient) cannot be delineated
        fid["qrs_on"][k], fid["qrs_off"][k] = q_on, q_off
        # isoelectric level: just before QRS onset (PR segment, 20..4 ms before it), per lead
        a, b = max(0, q_on - ms(fs_hz, 20)), max(1, q_on - ms(fs_hz, 4))
        iso[gi, k] = x[:, a:b].mean(axis=1)
        sp_lo, sp_hi = max(0, q_on - ms(fs_hz, 60)), min(n, q_on + ms(fs_hz, 20))
        paced[k] = bool(spike_mask[sp_lo:sp_hi].any())
        # a paced QRS starts with the depolarisation the stimulus triggers, after it: the filters smear the
        # blanked stimulus (a linear bridge) into a slope that pulls the onset knee before the spike
        s_on = _paced_onset(sp, q_on, c, fs_hz)
        if s_on is not None and s_on < q_off - ms(fs_hz, 40):
            fid["qrs_on"][k] = max(q_on, _after_artefact(v, s_on, c, fs_hz))

    # pass 2: T waves. A T-wave window per beat, the peak first chosen as the largest interior maximum,
    # then re-chosen near the record's typical QRS-onset-to-T-peak distance (robust to one odd pick)
    t_win = np.full((nb, 3), -1, dtype=np.int64)  # per beat: the T window's start (QRS offset), end, RR
    t_pick = np.full(nb, np.nan)
    curves: dict[int, np.ndarray] = {}
    for k in range(nb):
        q_on, q_off = fid["qrs_on"][k], fid["qrs_off"][k]
        if not (np.isfinite(q_on) and np.isfinite(q_off)):
            continue
        q_on, q_off, c = int(q_on), int(q_off), int(r[k])
        rr_k = (int(r[k + 1]) - c) if k + 1 < nb else ((c - int(r[k - 1])) if k > 0 else rr_med)
        # T ends before ~1.3 x a generous Bazett QT (440 ms at 60 bpm) and before the next beat's P wave
        t_hi = min(n - 1, q_on + int(1.3 * ms(fs_hz, 440) * math.sqrt(max(rr_k, 1) / fs_hz)))
        if k + 1 < nb:
            t_hi = min(t_hi, int(r[k + 1]) - ms(fs_hz, 120))
        t_lo = q_off + ms(fs_hz, 40)
        if t_hi - t_lo < ms(fs_hz, 80):
            continue
        mt = M(q_off, t_hi + 1, iso[gi, k])
        curves[k] = mt
        t_win[k] = (q_off, t_hi, rr_k)
        pk = _prominent_max(mt, t_lo - q_off, mt.size)
        if pk is not None:
            pk = _t_before_u(mt, pk, t_lo - q_off, q_off - q_on, rr_k, fs_hz)
            t_pick[k] = q_off + pk - q_on
    typical_t = np.nanmedian(t_pick) if np.isfinite(t_pick).any() else np.nan
    for k, mt in curves.items():
        q_on = int(fid["qrs_on"][k])
        q_off, rr_k = t_win[k, 0], t_win[k, 2]
        lo = ms(fs_hz, 40)
        if np.isfinite(typical_t):
            centre = int(q_on + typical_t - q_off)
            lo2, hi2 = max(lo, centre - ms(fs_hz, 80)), min(mt.size, centre + ms(fs_hz, 80))
            pk = _prominent_max(mt, lo2, hi2) if hi2 - lo2 > 2 else None
            if pk is None:
                pk = _prominent_max(mt, lo, mt.size)
        else:
            pk = _prominent_max(mt, lo, mt.size)
        if pk is None:
            continue
        pk = _t_before_u(mt, pk, lo, q_off - q_on, rr_k, fs_hz)
        dm = np.gradient(mt)
        s_hi = min(mt.size - 1, pk + ms(fs_hz, 200))
        # the T ends before the next wave rises (a U wave, fused or not; the next P): its descent and its knee
        # are looked for up to the notch where the magnitude turns up into it
        notch = _next_wave_notch(mt, pk, s_hi, fs_hz)
        s_hi = min(s_hi, notch)
        sm = pk + int(np.argmin(dm[pk:s_hi + 1])) if s_hi > pk else pk
        t_end = knee_after(mt, sm, min(mt.size - 1, sm + ms(fs_hz, T_KNEE_REF_MS), max(sm + 1, notch)))
        if q_off + t_end >= n - 2:
            continue  # the T wave runs past the end of the record
        su = int(np.argmax(dm[:pk + 1])) if pk > 0 else 0
        t_start = knee_before(mt, su, 0)
        fid["t_peak"][k] = q_off + pk
        fid["t_off"][k] = q_off + t_end
        fid["t_on"][k] = q_off + t_start

    # pass 3: P waves between the previous T end and this QRS onset
    p_pick = np.full(nb, np.nan)
    p_curves: dict[int, tuple[int, np.ndarray, float]] = {}
    for k in range(nb):
        q_on = fid["qrs_on"][k]
        if not np.isfinite(q_on):
            continue
        q_on = int(q_on)
        p_lo = q_on - ms(fs_hz, P_WINDOW_MS)
        if k > 0:
            prev_t = fid["t_off"][k - 1]
            p_lo = max(p_lo, int(prev_t) if np.isfinite(prev_t) else int(r[k - 1]) + ms(fs_hz, 250))
        p_lo = max(0, p_lo)
        p_hi = q_on - ms(fs_hz, 20)
        if p_hi - p_lo <= ms(fs_hz, 60):
            continue
        mp = M(p_lo, q_on + 1, iso[gi, k])
        pk = _interior_max(mp, 0, p_hi - p_lo)
        if pk is None:
            continue
        # a second atrial deflection of similar size elsewhere in the window: flutter / fibrillation waves
        far = np.ones(p_hi - p_lo, dtype=bool)
        far[max(0, pk - ms(fs_hz, 90)):pk + ms(fs_hz, 90)] = False
        pk2 = _interior_max(np.where(far, mp[:p_hi - p_lo], 0.0), 0, p_hi - p_lo)
        rival = float(mp[pk2] / mp[pk]) if pk2 is not None and mp[pk] > 0 else 0.0
        p_curves[k] = (p_lo, mp, rival)
        p_pick[k] = q_on - (p_lo + pk)
    if typical_p is None or not np.isfinite(typical_p):
        typical_p = np.nanmedian(p_pick) if np.isfinite(p_pick).any() else np.nan
    rivals = [v[2] for v in p_curves.values()]
    atrial_waves = bool(rivals) and float(np.median(rivals)) > ATRIAL_RIVAL_MAX
    for k, (p_lo, mp, rival) in p_curves.items():
        q_on = int(fid["qrs_on"][k])
        n_p = q_on - ms(fs_hz, 20) - p_lo
        centre = int(q_on - typical_p - p_lo)
        lo2, hi2 = max(0, centre - ms(fs_hz, 50)), min(n_p, centre + ms(fs_hz, 50))
        pk = _interior_max(mp, lo2, hi2) if hi2 - lo2 > 2 else None
        if pk is None:
            continue
        dm = np.gradient(mp)
        su_lo = max(0, pk - ms(fs_hz, 80))
        su = su_lo + int(np.argmax(dm[su_lo:pk + 1]))
        sd_hi = min(mp.size - 1, pk + ms(fs_hz, 80))
        sd = pk + int(np.argmin(dm[pk:sd_hi + 1]))
        p_start = knee_before(mp, su, max(0, su - ms(fs_hz, P_KNEE_REF_MS)))
        p_end = knee_after(mp, sd, min(mp.size - 1, sd + ms(fs_hz, P_KNEE_REF_MS)))
        # a bifid P (left atrial enlargement: the larger, later left-atrial hump is the peak) whose first,
        # right-atrial hump lies before the onset knee: that knee only started the second hump; the P starts
        # at the knee of the first one's rise
        p_start = _bifid_p_start(mp, dm, p_start, pk, fs_hz)
        base = float(min(mp[p_start], mp[p_end]))
        # a knee where the magnitude still holds P_BIFID_FRACTION of its peak ended only the first component
        # of a bifid / biphasic P: the P ends at the knee of the next descent (its terminal forces)
        e_hi = n_p - 1
        if mp[p_end] > P_BIFID_FRACTION * mp[pk] and p_end + 2 < e_hi:
            dm_hi = min(e_hi, p_end + ms(fs_hz, P_KNEE_REF_MS))
            sd2 = p_end + int(np.argmin(dm[p_end:dm_hi + 1]))
            if dm[sd2] < 0:
                p_end = min(e_hi, knee_after(mp, sd2, min(e_hi, sd2 + ms(fs_hz, P_KNEE_REF_MS))))
        if mp[pk] - base > 0.04:
            fid["p_peak"][k] = p_lo + pk
            fid["p_on"][k] = p_lo + p_start
            fid["p_off"][k] = p_lo + p_end
    # P presence: a P at a steady distance before most QRS onsets
    pr = fid["qrs_on"] - fid["p_peak"]
    ok = np.isfinite(pr)
    p_present = False
    diag = {"n_beats": int(nb), "n_p_found": int(ok.sum()), "atrial_waves": bool(atrial_waves),
            "p_peak_raw": fid["p_peak"].copy(),
            "rival_median": float(np.median(rivals)) if rivals else None}
    if ok.sum() >= max(1, 0.5 * nb) and not atrial_waves:
        med = float(np.median(pr[ok]))
        close = ok & (np.abs(pr - med) <= ms(fs_hz, 40))
        sd_ms = float(np.std(pr[close]) * 1000.0 / fs_hz) if close.sum() > 1 else 0.0
        p_present = bool(close.sum() >= max(1, 0.6 * nb) and sd_ms <= PRESENT_PR_SD_MAX_MS)
        diag.update(n_close=int(close.sum()), pr_sd_ms=sd_ms)
        if p_present:
            drop = ~close
        else:
            drop = np.ones(nb, dtype=bool)
        for key in ("p_on", "p_peak", "p_off"):
            fid[key][drop] = np.nan
    else:
        for key in ("p_on", "p_peak", "p_off"):
            fid[key][:] = np.nan
    return GlobalFiducials(r=r.astype(float), iso=iso, paced=paced, p_present=p_present, p_diag=diag, **fid)


def _template_rival(tmpl: np.ndarray, good: np.ndarray, tf: GlobalFiducials, rr_med: float,
                    fs_hz: float) -> tuple[float, bool] | None:
    """The median beat's largest atrial-sized wave away from its P (over 90 ms from the P peak, between the
    previous beat's typical T end and 20 ms before the QRS), as a share of the P (the single beats' measure,
    ``p_diag['rival_median']``, on the median beat), and whether it lies after the P (between it and the QRS).
    The median beat keeps what is time-locked to the QRS (a second, blocked P, a U wave, the T's tail) and
    averages away what is not (noise, fibrillation waves): in single beats a P barely above the noise has noise
    rivals as large as itself (LUDB 60: 0.89 of the P), which make no other wave a candidate for the P."""
    if not (np.isfinite(tf.p_peak[0]) and np.isfinite(tf.qrs_on[0])):
        return None
    q_on = int(tf.qrs_on[0])
    lo = q_on - ms(fs_hz, P_WINDOW_MS)
    if np.isfinite(tf.t_off[0]):
        lo = max(lo, int(tf.t_off[0] - rr_med))
    lo, hi = max(0, lo), q_on - ms(fs_hz, 20)
    pk = int(tf.p_peak[0]) - lo
    if hi - lo <= ms(fs_hz, 60) or not 0 <= pk < hi - lo:
        return None
    iso = tf.iso[good, 0]
    mp = np.sqrt(np.sum((tmpl[good, lo:hi] - iso[:, None]) ** 2, axis=0))
    far = np.ones(hi - lo, dtype=bool)
    far[max(0, pk - ms(fs_hz, 90)):pk + ms(fs_hz, 90)] = False
    pk2 = _interior_max(np.where(far, mp, 0.0), 0, hi - lo)
    if pk2 is None or mp[pk] <= 0:
        return 0.0, False
    return float(mp[pk2] / mp[pk]), bool(pk2 > pk)


P_NOISE_RR_CV = 0.1       # a rhythm this regular (RR SD / mean) ...
P_NOISE_RIVAL_MAX = 0.5   # ... whose median beat shows a P with no other wave half its size: a P under noise
TEMPLATE_QRS_CORR = 0.9  # beats whose QRS matches the median beat this well take the median beat's fiducials
P_LEAD_LOWPASS_HZ = 35.0  # a P wave holds little above this (Hz): the per-lead P fiducials' smoothing


def delineate_with_template(clean: np.ndarray, spikes: np.ndarray, good: np.ndarray, r: np.ndarray,
                            fs_hz: float, qrs_corr: np.ndarray, fid: GlobalFiducials | None = None,
                            p_onset_fit_name: str | None = None) -> GlobalFiducials:
    """Per-beat delineation, then QRS and P fiducials of typical beats taken from the median beat.

    Like the classic 12-lead programs, on- and offsets are measured on the median (representative) beat,
    whose noise is ~1/sqrt(n_beats) of a single beat's, and carried to every beat whose QRS matches it
    (median correlation over good leads >= 0.9), aligned on the beat's anchor. Premature / aberrant beats
    keep their own QRS and T fiducials. P waves are carried to matching beats at an RR within 15% of the
    typical one, and to beats that have their own P near the typical PR and are not premature (a longer RR:
    sinus arrhythmia, the pause after a premature beat); to a beat whose QRS does not match, placed by its
    QRS onset (the same sinus P, at the same PR). A premature beat keeps its own P (atrial ectopic).
    ``qrs_corr``: (n_leads, n_beats) correlation of each beat's QRS with the lead's median QRS;
    ``fid``: the per-beat delineation of these same beats when already done (it is updated in place);
    ``p_onset_fit_name``: the per-lead P-onset fit to apply (``p_onset_fit``; None: the environment's / "all").
    """
    if fid is None:
        fid = delineate(clean, spikes, good, r, fs_hz)
    fid.beat_own = {k: getattr(fid, k).copy() for k in ("qrs_on", "qrs_off", "p_on", "p_peak", "t_off")}
    nb = r.size
    if nb < 3:
        return fid
    n = clean.shape[1]
    rr_med = float(np.median(np.diff(r)))
    # the median beat must hold the P wave: up to P_WINDOW_MS before the QRS onset, which itself lies up
    # to ~150 ms before the anchor in a wide QRS (LBBB); never reaching back into the previous beat
    on_lead = np.nanmedian(r - fid.qrs_on) if np.isfinite(fid.qrs_on).any() else ms(fs_hz, 40)
    before = min(ms(fs_hz, P_WINDOW_MS) + int(on_lead) + ms(fs_hz, 20), int(0.9 * rr_med))
    after = min(int(1.2 * rr_med), ms(fs_hz, 900))
    full = (r - before >= 0) & (r + after < n)
    use = full if full.sum() >= 3 else np.ones(nb, dtype=bool)
    match = np.median(qrs_corr[good], axis=0) >= TEMPLATE_QRS_CORR if good.any() else np.zeros(nb, bool)
    if (use & match).sum() < 3:
        # fewer than three beats share the QRS the median is taken over: a median of beats of different kinds (paced,
        # fused and conducted ones) is no beat (a 6 s window of LUDB 8: its median beat's QRS ran 40 ms short in
        # most leads, QRS cited 99 ms for the experts' 127): every beat keeps its own delineation
        return fid
    use = use & match
    w = beat_windows(clean, r[use], before, after)          # (leads, beats, samples)
    tmpl = np.median(w, axis=1)
    # the median beat's P window reaches back past the previous T end (it sees no neighbour), where the
    # largest deflection can be that T wave: its P is looked for where the beats' own P waves lie
    raw_p = (fid.p_diag or {}).get("p_peak_raw", fid.p_peak)
    p_dist = fid.qrs_on[use] - raw_p[use]
    typical_p = float(np.median(p_dist[np.isfinite(p_dist)])) if np.isfinite(p_dist).any() else None
    tf = delineate(tmpl, np.empty(0, dtype=np.int64), good, np.array([before]), fs_hz, rr_default=rr_med,
                   typical_p=typical_p)
    if not (np.isfinite(tf.qrs_on[0]) and np.isfinite(tf.qrs_off[0])):
        return fid
    d_on, d_off = tf.qrs_on[0] - before, tf.qrs_off[0] - before
    # the median beat was delineated without the stimuli: when most of its beats are paced, its onset
    # follows their typical stimulus (beats whose own stimulus was too small to detect are paced alike)
    sp = np.asarray(spikes if spikes is not None else [], dtype=np.int64)
    template_paced = False
    if sp.size:
        # the stimuli of every beat whose QRS the median beat stands for, also of the beats too near the record's
        # edges to enter it: a stimulus tells of the pacemaker wherever the beat lies (a 6 s window of LUDB 90
        # found its two small bipolar stimuli on its first and last beat only: the median beat, of the four
        # between, read as conducted, and its QRS began at the stimulus, 22 ms before the experts' onset)
        kin = match if match.sum() >= 3 else np.ones(nb, dtype=bool)
        rel = []
        for c in r[kin]:
            s_on = _paced_onset(sp, float(c) + d_on, float(c), fs_hz)
            if s_on is not None and s_on - float(c) < d_off - ms(fs_hz, 40):
                rel.append(s_on - float(c))
        # a stimulus is time-locked to the QRS it paces (an artefact is not): two beats whose stimuli lie at
        # the same place tell that the beats are paced, also when the others' small (bipolar) stimuli were
        # too small to be found (LUDB 90)
        locked = len(rel) >= 2 and float(np.ptp(rel)) <= ms(fs_hz, PACED_LOCKED_MS)
        if len(rel) >= max(2, 0.5 * int(kin.sum())) or locked:
            # past the typical stimulus's filtered artefact on the median beat (as ``delineate`` per beat)
            v_tmpl = spatial_slope(tmpl[good], fs_hz)
            d_on = max(d_on, _after_artefact(v_tmpl, before + float(np.median(rel)), before, fs_hz) - before)
            template_paced = True
        elif rel and _starts_with_stimulus(d_on, d_off, float(np.median(rel)) - ms(fs_hz, PACED_LATENCY_MS), fs_hz):
            # too few stimuli found to call the beats paced, but the median beat's broad QRS starts at one or
            # within its capture latency: the median beat holds the others' stimuli, too small to be found,
            # time-locked to their QRS (small bipolar stimuli: 6 s windows of LUDB 90 held one detectable stimulus
            # and read the QRS as conducted from the undetected ones on, +22 ms; synthetic, stimuli of 0.17 mV:
            # 194 ms cited at confidence 1 for 152). Paced: its onset past the stimulus, as ``delineate`` reads
            # a paced beat
            v_tmpl = spatial_slope(tmpl[good], fs_hz)
            d_on = max(d_on, _after_artefact(v_tmpl, before + float(np.median(rel)), before, fs_hz) - before)
            template_paced = True
    if not fid.p_present and not template_paced and (use & match).sum() >= 3:
        # without a sinus P locked to the QRS the atrial waves (flutter, fibrillation) drift against it from beat to
        # beat; where several beats have one just before their QRS, the sample-wise median beat can keep a hump of
        # it fused with the QRS onset, which then starts early (synthetic flutter: 16 ms, a QRS 26 ms long), while
        # the beats, each delineated on its own, mostly start the QRS where it starts: the onset is no earlier
        # than the median of theirs (relative to the anchor)
        own_on = (fid.qrs_on - r)[use & match]
        own_on = own_on[np.isfinite(own_on)]
        if own_on.size >= 3:
            d_on = max(d_on, float(np.median(own_on)))
    rival_found = _template_rival(tmpl, good, tf, rr_med, fs_hz)
    rival_t = rival_found[0] if rival_found is not None else None
    if fid.p_diag is not None:
        fid.p_diag["rival_template"] = rival_t
        fid.p_diag["rival_template_later"] = bool(rival_found is not None and rival_found[1])
    # P waves under noise: single beats whose atrial windows hold noise as large as their P (muscle noise) read as
    # atrial waves or show their P nowhere steady, but the median beat averages the noise away and shows one P,
    # after the previous T's end, with no other wave half its size, at a regular rhythm (fibrillation has no
    # regular rhythm and no coherent P; flutter conducted at a fixed ratio shows its F waves in the median beat
    # too, each the other's rival): the P is the median beat's
    r_iv = np.diff(r)
    regular = r_iv.size >= 3 and float(np.std(r_iv)) < P_NOISE_RR_CV * float(np.mean(r_iv))
    p_in_noise = bool(np.isfinite(tf.p_on[0]) and np.isfinite(tf.p_off[0]) and regular and rival_t is not None
                      and rival_t <= P_NOISE_RIVAL_MAX and not template_paced)
    p_ok = np.isfinite(tf.p_on[0]) and np.isfinite(tf.p_off[0]) and not (fid.p_diag or {}).get("atrial_waves")
    if p_ok:
        # the median beat's P must be the beats' own P (its window cannot see the previous T's end): most
        # beats must show their own P within 20 ms of it, at a steady distance. The median beat then also
        # recovers P waves too small to pass in single noisy beats; in AF it holds no coherent P at all.
        raw = (fid.p_diag or {}).get("p_peak_raw", fid.p_peak)
        own = raw - r
        near = np.isfinite(own) & (np.abs(own - (tf.p_peak[0] - before)) <= ms(fs_hz, 20))
        spread_ms = float(np.std(own[near]) * 1000.0 / fs_hz) if near.sum() > 1 else np.inf
        p_ok = bool(near.sum() >= max(2, 0.5 * nb) and spread_ms <= PRESENT_PR_SD_MAX_MS)
        if p_ok and not fid.p_present:
            fid.p_present = True
            fid.p_diag["from_median_beat"] = True
    if not p_ok and p_in_noise and fid.p_diag is not None:
        p_ok = fid.p_present = True
        fid.p_diag["from_median_beat"] = fid.p_diag["p_in_noise"] = True
    t_ok = np.isfinite(tf.t_off[0]) and np.isfinite(tf.t_peak[0]) and np.isfinite(tf.t_on[0])
    fid.t_from_template = np.zeros(nb, dtype=bool)
    if t_ok:
        # the median beat runs on into the next beat: no lead's T ends after the next P starts (at fast rates,
        # LBBB at 125 bpm, the knees of the leads' own T ends used to land in it, 40 ms late)
        limit = before + rr_med - ms(fs_hz, 120)
        if np.isfinite(tf.p_on[0]):
            limit = min(limit, tf.p_on[0] + rr_med)
        fid.lead_t_off_delta = lead_t_ends(tmpl, good, tf.iso[:, 0], int(tf.t_on[0]), int(tf.t_peak[0]),
                                           int(tf.t_off[0]), fs_hz, limit=int(limit)) - tf.t_off[0]
    fid.p_from_template = np.zeros(nb, dtype=bool)
    if p_ok:
        # each lead's P is measured on the median beat smoothed below P_LEAD_LOWPASS_HZ: the sample-wise median
        # switches between beats, and its ragged steps pull the slopes and knees of a small P
        ptm = tmpl
        if fs_hz > 2.5 * P_LEAD_LOWPASS_HZ:
            b, a = sps.butter(2, P_LEAD_LOWPASS_HZ / (fs_hz / 2.0))
            ptm = sps.filtfilt(b, a, tmpl, axis=1)
        fid.lead_p_off_delta = lead_p_ends(ptm, good, tf.iso[:, 0], int(tf.p_on[0]), int(tf.p_off[0]),
                                           fs_hz) - tf.p_off[0]
        rule = lead_p_onsets(ptm, good, int(tf.p_on[0]), int(tf.p_peak[0]), int(tf.p_off[0]), fs_hz,
                             iso=tf.iso[:, 0]) - tf.p_on[0]
        rise = lead_p_rise_ms(ptm, good, int(tf.p_on[0]), int(tf.p_off[0]), fs_hz)
        # a lead too small for the rule (NaN) is at the global onset as far as the rule goes
        fid.lead_p_on_features = np.column_stack([np.where(np.isfinite(rule), rule * 1000.0 / fs_hz, 0.0), rise])
        fit = p_onset_fit(p_onset_fit_name)
        # on the sample grid, like every other fiducial (a fraction of a sample is no precision a P onset has)
        fid.lead_p_on_delta = rule if fit is None else np.round(fit.onset_ms(fid.lead_p_on_features) * fs_hz / 1000.0)
        if t_ok and tf.t_off[0] - rr_med + ms(fs_hz, P_RISE_LOOKBACK_MS) > tf.p_on[0]:
            # the P starts on the preceding T or right after it (a long PR at a fast rate): each lead's level
            # before its P, and the stretch its rise is looked for in, lie on that T's slope, so the leads' own
            # onsets (the rule's knee, the fit's rise times) move with the T; every lead keeps the multi-lead
            # onset, where the atrial forces' magnitude rises (synthetic first-degree AV block: PR +22 ms)
            fid.lead_p_on_delta = None
    fid.qrs_from_template = np.zeros(nb, dtype=bool)
    fid.template, fid.template_fid, fid.template_before = tmpl, tf, before
    fid.template_d_on, fid.template_d_off = float(d_on), float(d_off)
    fid.lead_qrs_off_delta = lead_qrs_ends(tmpl, good, int(round(before + d_on)), int(round(before + d_off)),
                                           fs_hz) - round(before + d_off)
    # each beat's preceding RR (samples; the first beat: the next one's)
    rr_prev = np.concatenate(([float(r[1] - r[0]) if nb > 1 else rr_med], np.diff(r).astype(float)))
    for k in np.flatnonzero(match):
        c = float(r[k])
        if c + d_on <= 0 or c + d_off >= n - 1:
            continue
        fid.qrs_on[k], fid.qrs_off[k] = c + d_on, c + d_off
        fid.qrs_from_template[k] = True
        fid.paced[k] = fid.paced[k] or template_paced  # the median beat's QRS is a paced one: so is this beat's
        # the T wave follows the preceding RR: carry the median beat's T only to beats at the typical RR
        rr_k = rr_prev[k]
        if t_ok and abs(rr_k - rr_med) <= 0.1 * rr_med and np.isfinite(fid.t_off[k]) \
                and c + tf.t_off[0] - before < n - 2:
            fid.t_on[k] = c + tf.t_on[0] - before
            fid.t_peak[k] = c + tf.t_peak[0] - before
            fid.t_off[k] = c + tf.t_off[0] - before
            fid.t_from_template[k] = True
        # the P too, at the typical RR, or after a longer one when the beat shows its own P at the typical PR:
        # a sinus P after a longer diastole (sinus arrhythmia, the pause after a premature beat) is the same
        # P; only a premature beat's P can be another (atrial ectopic) one, and it keeps its own
        if p_ok and (abs(rr_k - rr_med) <= 0.15 * rr_med or (rr_k > rr_med and np.isfinite(fid.p_peak[k]))) \
                and c + tf.p_on[0] - before > 0:
            fid.p_on[k] = c + tf.p_on[0] - before
            fid.p_peak[k] = c + tf.p_peak[0] - before
            fid.p_off[k] = c + tf.p_off[0] - before
            fid.p_from_template[k] = True
    # a beat whose QRS does not match the median beat's (aberrant conduction, noise in some leads) but that has
    # its own P at the typical PR, not premature (RR at least the typical one less 15%), holds the same sinus P:
    # it takes the median beat's P too, placed by its own QRS onset (the PR is what stays the same; the anchor
    # can sit elsewhere in an odd QRS)
    for k in np.flatnonzero(~match) if p_ok else ():
        if not (np.isfinite(fid.p_peak[k]) and np.isfinite(fid.qrs_on[k])) or rr_prev[k] < 0.85 * rr_med:
            continue
        shift = fid.qrs_on[k] - tf.qrs_on[0]
        if shift + tf.p_on[0] <= 0:
            continue
        fid.p_on[k] = shift + tf.p_on[0]
        fid.p_peak[k] = shift + tf.p_peak[0]
        fid.p_off[k] = shift + tf.p_off[0]
        fid.p_from_template[k] = True
    return fid
