"""Each lead's own wave edges around the global (multi-lead) fiducials of ``features.delineate``: where a lead's
T ends, its P starts and ends and its QRS ends, on the median beat and on beats that keep their own fiducials.
A lead perpendicular to a wave's first or last forces shows it later or ends it sooner than the multi-lead
wave; the experts mark each lead's own edges (LUDB), and the beats table and the QT dispersion use them.

T ends: on the median beat, each lead's own T end within +-40 ms of the global one
(``lead_t_ends``), for the beats table and the QT dispersion; on the beat itself for beats that keep
their own T (off the typical RR, unlike the median beat), up to 40 ms before the global end and never
after it (``beat_lead_t_ends``); per-lead P ends likewise, up to 20 ms before the global one and never
after it, a biphasic P's where its terminal phase stops falling, as LUDB's experts mark V1-V2
(``lead_p_ends``), and per-lead P onsets: a rule within +-20 ms of the global one (``lead_p_onsets``: a
lead perpendicular to the first atrial forces shows its P later; the lead's P is its first phase reaching
half its amplitude, so a small P, from 0.01 mV, has its own onset), then a learned linear correction of it
by how late the lead's P reaches a quarter and half of its amplitude (``POnsetFit``, fitted on LUDB's
expert onsets by ``features.fit_p_onset``: the eye starts a slowly rising P later); a biphasic P whose
negative phase, no deeper than twice the positive one, comes first (aVL: -/+) starts, one whose negative
phase comes last (V1, III: +/-) ends at that phase's trough, as LUDB's experts mark; all per-lead P
fiducials on the median beat smoothed below 35 Hz (the sample-wise median's ragged steps); per-lead QRS
ends where a lead's QRS has visibly ended >= 20 ms before the global end (only a small straight drift
after it), or is still sloping at it in its terminal wave (steep up to 16 ms before it; up to 20 ms later)
(``lead_qrs_ends``); on beats that keep their own QRS, by the same rule on the beat itself and only before
the global end (``beat_lead_qrs_ends``); the QRS onset stays global.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.ndimage import uniform_filter1d

from features.fiducials import P_KNEE_REF_MS, T_KNEE_REF_MS, GlobalFiducials, knee_after, knee_before, ms
from pipeline.record import ConfigError


LEAD_T_SEARCH_MS = 40.0  # a lead's own T end is looked for this close to the global (multi-lead) one


def lead_t_ends(beat: np.ndarray, good: np.ndarray, iso: np.ndarray, t_on: int, t_peak: int, t_off: int,
                fs_hz: float, flat_mv: float = 0.05, late_ms: float = LEAD_T_SEARCH_MS,
                limit: int | None = None) -> np.ndarray:
    """Each lead's own T end (sample index into ``beat``) near the global one; NaN where not measurable.

    ``beat``: (n_leads, samples) median beat (0.5-40 Hz) or the record's leads; ``iso``: per-lead
    isoelectric level (mV); ``t_on`` / ``t_peak`` / ``t_off``: the global T fiducials in that beat. The
    same trapezium knee as the global T end, on the lead's own T deflection |x - iso| (signed by its T
    peak), after that lead's steepest T descent, bounded to LEAD_T_SEARCH_MS before and ``late_ms`` (ms) (and
    ``limit``, a sample: the next beat's P onset on a median beat)
    after the global end. Leads whose T is smaller than ``flat_mv`` (mV) or gated get NaN: their T end is
    not visible, and QT dispersion must not use them.
    """
    n_leads, n = beat.shape
    out = np.full(n_leads, np.nan)
    w = ms(fs_hz, LEAD_T_SEARCH_MS)
    lo, hi = max(t_on, t_off - w), min(n - 1, t_off + ms(fs_hz, late_ms))
    if limit is not None:  # what follows there is the next beat (its P wave), not this T
        hi = max(t_off, min(hi, int(limit)))
    if not (0 <= t_on < t_off < n) or hi - lo < 4:
        return out
    for i in np.flatnonzero(good):
        if not np.isfinite(iso[i]):
            continue
        y = beat[i, t_on:min(n, t_off + ms(fs_hz, T_KNEE_REF_MS) + 1)] - iso[i]
        pk = int(np.argmax(np.abs(y[:t_off - t_on + 1])))
        if abs(y[pk]) < flat_mv:
            continue
        a = y * np.sign(y[pk])  # the T deflection made positive, so its end is a falling curve's knee
        da = np.gradient(a)
        sm = pk + int(np.argmin(da[pk:hi - t_on + 1]))
        ref = min(a.size - 1, sm + ms(fs_hz, T_KNEE_REF_MS))
        if limit is not None:  # the knee's far reference point too stays before the next beat
            ref = max(sm + 1, min(ref, int(limit) - t_on))
        end = t_on + knee_after(a, sm, ref)
        out[i] = float(min(max(end, lo), hi))
    return out


def beat_lead_t_ends(clean: np.ndarray, good: np.ndarray, fid: GlobalFiducials, fs_hz: float) -> np.ndarray:
    """(n_leads, n_beats) each lead's own T end minus the global one (samples), measured on the beat itself,
    for the beats whose T fiducials are not the median beat's (off the typical RR, QRS unlike the median
    beat's, no median beat); NaN elsewhere and where ``lead_t_ends`` gives none.

    The global end (the spatial magnitude's knee) is where the last lead's T ends; the other leads' T end
    earlier in these beats, as in the median beat, so each lead's own end is looked for on the beat itself
    with the same rule (noisier than on the median beat, but at the beat's own timing: its T follows its own
    RR), up to LEAD_T_SEARCH_MS before the global end and never after it: on a single beat a lead's knee
    beyond the spatial one is the noise after the T (fibrillatory waves, the next P), which the median beat
    averages away (LUDB: allowing +40 ms there gave a T-end SD of 25.3 vs 24.8 ms, lead-II QT SD 18.6 vs 16.4).
    ``clean``: (n_leads, n_samples) 0.5-40 Hz leads; ``fid``: the record's global fiducials.
    """
    n_leads, nb = clean.shape[0], fid.r.size
    out = np.full((n_leads, nb), np.nan)
    own = fid.t_from_template if fid.t_from_template is not None else np.zeros(nb, dtype=bool)
    for k in range(nb):
        t = (fid.t_on[k], fid.t_peak[k], fid.t_off[k])
        if own[k] or not all(np.isfinite(v) for v in t):
            continue
        t_on, t_peak, t_off = (int(v) for v in t)
        out[:, k] = lead_t_ends(clean, good, fid.iso[:, k], t_on, t_peak, t_off, fs_hz, late_ms=0.0) - t_off
    return out


LEAD_P_SEARCH_MS = 20.0  # a lead's own P end is looked for this close to the global (multi-lead) one
# a lead's P this small still shows where it ends on the median beat (whose noise is ~1/sqrt(n) of a beat's);
# LUDB's experts end the small P of V1-V2 where its main deflection ends, not at the global end
LEAD_P_VISIBLE_MV = 0.01
# a biphasic P whose negative phase comes first (aVL: the first, right-atrial forces point away from it) or
# last (V1, III: the last, left-atrial forces) is marked by LUDB's experts from / to the trough of that
# negative phase, as long as it is no deeper than this many times the positive phase's height (a deeper
# negative phase is the P itself: a negative P with a small positive notch, marked over its whole extent)
P_NEG_PHASE_MAX_RATIO = 2.0
LEAD_P_ON_BASE_MS = 10.0    # the lead's level before its P: the mean of this stretch before the global onset


def _pre_p_levels(beat: np.ndarray, p_on: int, fs_hz: float) -> np.ndarray | None:
    """Each lead's level just before the global P onset (mV; the PR level can differ from it by the atrial
    repolarisation): the mean over LEAD_P_ON_BASE_MS up to ``p_on``; None when ``beat`` starts later."""
    b0 = p_on - ms(fs_hz, LEAD_P_ON_BASE_MS)
    return beat[:, b0:p_on + 1].mean(axis=1) if b0 >= 0 else None


def _negative_phase_trough(seg: np.ndarray, pre: float, iso: float, first: bool,
                           visible_mv: float = LEAD_P_VISIBLE_MV) -> int | None:
    """Index into ``seg`` of the trough of a biphasic P's leading (``first``) or trailing negative phase.

    ``seg``: one lead's P (mV, from its onset to its end); ``pre`` / ``iso``: that lead's level before the P
    and in the PR segment (mV). Both phases must clear both levels by ``visible_mv`` (a P sitting on a
    sloping baseline is no biphasic P), with no opposite phase before the leading one / the positive one;
    the negative phase at most P_NEG_PHASE_MAX_RATIO times as deep as the positive one is tall. None
    where the P is not such a biphasic one.
    """
    hi_lev, lo_lev = max(pre, iso), min(pre, iso)
    if first:
        t = int(np.argmin(seg))
        if seg[:t + 1].max() - hi_lev >= visible_mv:
            return None
        pos = float(seg[t:].max()) - hi_lev
    else:
        pk = int(np.argmax(seg))
        if pk > 0 and lo_lev - seg[:pk].min() >= visible_mv:
            return None
        pos = float(seg[pk]) - hi_lev
        t = pk + int(np.argmin(seg[pk:]))
    neg = lo_lev - float(seg[t])
    if pos < visible_mv or neg < visible_mv or neg > P_NEG_PHASE_MAX_RATIO * pos:
        return None
    return t


def lead_p_ends(beat: np.ndarray, good: np.ndarray, iso: np.ndarray, p_on: int, p_off: int, fs_hz: float,
                flat_mv: float = LEAD_P_VISIBLE_MV) -> np.ndarray:
    """Each lead's own P end (sample index into ``beat``) near the global one; NaN where not measurable.

    The global P end is the knee of the spatial magnitude, i.e. where the last lead's P ends; a lead
    whose P ends earlier is measured late by it. Same trapezium knee as the global end, on the lead's P
    signed by its main (largest) deflection, after that deflection's steepest descent: a monophasic P
    ends where it returns to the PR level, a biphasic one (V1-V2) where its terminal phase stops falling
    (the experts' mark; its slow return merges with the atrial repolarisation); at most LEAD_P_SEARCH_MS
    before the global end and never after it. ``beat``: (n_leads, samples) median beat (mV); ``iso``:
    per-lead isoelectric level (mV); ``p_on`` / ``p_off``: the global P onset and end in ``beat``. Leads
    whose P is smaller than ``flat_mv`` (mV) or gated get NaN (no visible P end: they keep the global one).
    A +/- biphasic P (V1, III) whose negative phase is no deeper than P_NEG_PHASE_MAX_RATIO times its
    positive one ends at that phase's trough, also beyond the window, as LUDB's experts mark it
    (``_negative_phase_trough``).
    """
    n_leads, n = beat.shape
    out = np.full(n_leads, np.nan)
    w = ms(fs_hz, LEAD_P_SEARCH_MS)
    # the spatial magnitude's end is where the last lead's P ends: no lead's own P ends after it
    lo, hi = max(p_on, p_off - w), p_off
    if not (0 <= p_on < p_off < n) or hi - lo < 4:
        return out
    m = p_off - p_on
    pre = _pre_p_levels(beat, p_on, fs_hz)
    for i in np.flatnonzero(good):
        if not np.isfinite(iso[i]):
            continue
        y = beat[i, p_on:min(n, p_off + ms(fs_hz, P_KNEE_REF_MS) + 1)] - iso[i]
        pk = int(np.argmax(np.abs(y[:m + 1])))
        if abs(y[pk]) < flat_mv:
            continue
        a = y * np.sign(y[pk])  # the main P deflection made positive: its end is a falling curve's knee
        da = np.gradient(a)
        sm = pk + int(np.argmin(da[pk:min(m, pk + ms(fs_hz, 80)) + 1]))  # 80 ms: as the global P end
        ref = min(a.size - 1, sm + ms(fs_hz, P_KNEE_REF_MS))
        end = p_on + knee_after(a, sm, ref)
        out[i] = float(min(max(end, lo), hi))
        # a +/- biphasic P (V1) ends at the trough of its terminal negative phase, wherever that lies
        if pre is not None:
            t = _negative_phase_trough(beat[i, p_on:p_off + 1], float(pre[i]), float(iso[i]), first=False)
            if t is not None:
                out[i] = float(min(out[i], p_on + t))
    return out


LEAD_P_ON_SEARCH_MS = 20.0  # a lead's own P onset is looked for within +-this of the global (multi-lead) one
# the lead's knee looks this far back from its steepest rise: a lead's P often starts with a slow initial
# slope that a 40 ms reference (P_KNEE_REF_MS, tuned for the sharper spatial magnitude) cuts into
LEAD_P_ON_KNEE_REF_MS = 60.0
# a lead's initial P deflection is its first phase reaching this fraction of the lead's P amplitude (at most
# flat_mv): a small P (< 0.03 mV, V1-V2, aVL, III) still has an onset of its own (LUDB's experts mark it up to
# ~40 ms away from the multi-lead one), and ripples well below its size before it are not taken for it
LEAD_P_ON_PHASE_FRACTION = 0.5


def lead_p_onsets(beat: np.ndarray, good: np.ndarray, p_on: int, p_peak: int, p_off: int, fs_hz: float,
                  flat_mv: float = 0.03, iso: np.ndarray | None = None,
                  visible_mv: float = LEAD_P_VISIBLE_MV) -> np.ndarray:
    """Each lead's own P onset (sample index into ``beat``) near the global one; NaN where not measurable.

    The global onset is the knee of the spatial magnitude, where the bulk of the atrial forces rises; a
    lead nearly perpendicular to the first atrial forces shows its P later, one with a slow initial slope
    earlier. Trapezium knee (reference LEAD_P_ON_KNEE_REF_MS back) on the lead's initial P deflection
    |x - level| (its first phase after the global onset reaching LEAD_P_ON_PHASE_FRACTION of the lead's
    P amplitude, or ``flat_mv`` (mV; lead_forms.P_FLAT_MV, a flat P) where that is less; level: the lead
    just before the global onset, as the PR level can differ by the atrial repolarisation), before its
    steepest rise, within +-LEAD_P_ON_SEARCH_MS of the global onset. ``beat``: (n_leads, samples) median
    beat (mV); ``p_on`` / ``p_peak`` / ``p_off``: the global P fiducials in it. Leads whose P is smaller
    than ``visible_mv`` (mV) or gated get NaN (for the rule, they keep the global onset; ``POnsetFit``
    then places every good lead's onset, these included).
    ``iso``: per-lead PR level (mV); when given, a -/+ biphasic P (aVL) starts at the trough of its leading
    negative phase, also beyond the +-LEAD_P_ON_SEARCH_MS window, as LUDB's experts mark it
    (``_negative_phase_trough``).
    """
    n_leads, n = beat.shape
    out = np.full(n_leads, np.nan)
    w = ms(fs_hz, LEAD_P_ON_SEARCH_MS)
    lo, hi = max(0, p_on - w), min(p_off, p_on + w)
    pre = _pre_p_levels(beat, p_on, fs_hz)
    r0 = max(0, p_on - w - ms(fs_hz, LEAD_P_ON_KNEE_REF_MS))
    if pre is None or not (p_on < p_peak < p_off < n) or hi - lo < 4:
        return out
    for i in np.flatnonzero(good):
        y = beat[i, r0:p_off + 1] - float(pre[i])
        o = p_on - r0
        amp = float(np.abs(y[o:]).max())
        if amp < visible_mv:
            continue
        big = np.flatnonzero(np.abs(y[o:]) >= min(flat_mv, LEAD_P_ON_PHASE_FRACTION * amp))
        first = o + int(big[0])
        a = y * np.sign(y[first])  # the initial P deflection made positive: its onset is a rising curve's knee
        e = first
        while e + 1 < a.size and a[e + 1] > 0:
            e += 1
        pk = first + int(np.argmax(a[first:e + 1]))
        da = np.gradient(a)
        su = o + int(np.argmax(da[o:pk + 1])) if pk > o else pk
        on = r0 + knee_before(a, su, max(0, su - ms(fs_hz, LEAD_P_ON_KNEE_REF_MS)))
        out[i] = float(min(max(on, lo), hi))
    if iso is None:
        return out
    # a -/+ biphasic P (aVL) starts at the trough of its leading negative phase, wherever that lies
    for i in np.flatnonzero(good):
        if not np.isfinite(iso[i]):
            continue
        o = int(out[i]) if np.isfinite(out[i]) else p_on
        t = _negative_phase_trough(beat[i, o:p_off + 1], float(pre[i]), float(iso[i]), first=True)
        if t is not None:
            out[i] = float(o + t)
    return out


# The rule above puts a lead's P onset where the lead starts to move; LUDB's experts start a P later in a
# lead whose P rises late (a small or slowly rising P) and earlier where it rises at once. How much is
# learned: a lead's onset is a linear function of the rule's onset and the times its P reaches a quarter and
# half of its own amplitude, all in ms from the global onset on the (35 Hz smoothed) median beat.
# features/fit_p_onset.py fits it by least squares on LUDB's expert onsets into p_onset_fit.json: "all" (all
# records; shipped) and "fold0" ... "fold4" (each without one fifth of the records; benchmarks/ludb.py
# measures every record with the fit that did not see it, so its figures are 5-fold cross-validated).
P_ONSET_FIT_FEATURES = ("rule_ms", "rise25_ms", "rise50_ms")
P_RISE_FRACTIONS = (0.25, 0.5)
P_RISE_LOOKBACK_MS = 40.0    # a lead's rise is looked for from this far before the global onset
LEAD_P_ON_FIT_MAX_MS = 40.0  # the learned onset stays within +-this of the global one
P_ONSET_FIT_PATH = Path(__file__).with_name("p_onset_fit.json")
P_ONSET_FIT_ENV = "ECG_GROUNDING_P_ONSET_FIT"  # which fit: all (default), fold0-fold4, or none (the rule alone)


def lead_p_rise_ms(beat: np.ndarray, good: np.ndarray, p_on: int, p_off: int, fs_hz: float) -> np.ndarray:
    """(n_leads, len(P_RISE_FRACTIONS)): ms from the global P onset ``p_on`` to where each lead's P first
    reaches each fraction of its own amplitude; NaN rows for leads not ``good``.

    ``beat``: (n_leads, samples) median beat (mV); level: the lead's just before ``p_on`` (``_pre_p_levels``);
    amplitude: the largest |x - level| from ``p_on`` to ``p_off``; searched from P_RISE_LOOKBACK_MS before
    ``p_on`` (a lead whose P starts early); 0 for a lead without any deflection (amplitude 0).
    """
    n_leads, n = beat.shape
    out = np.full((n_leads, len(P_RISE_FRACTIONS)), np.nan)
    lo = p_on - ms(fs_hz, P_RISE_LOOKBACK_MS)
    pre = _pre_p_levels(beat, p_on, fs_hz)
    if lo < 0 or pre is None or not (p_on < p_off < n):
        return out
    for i in np.flatnonzero(good):
        y = np.abs(beat[i, lo:p_off + 1] - float(pre[i]))
        amp = float(y[p_on - lo:].max())
        for j, f in enumerate(P_RISE_FRACTIONS):
            idx = np.flatnonzero(y >= f * amp) if amp > 0 else np.empty(0, dtype=np.int64)
            out[i, j] = (int(idx[0]) + lo - p_on) * 1000.0 / fs_hz if idx.size else 0.0
    return out


@dataclass(frozen=True)
class POnsetFit:
    """Lead P onset (ms from the global one) = ``intercept_ms`` + ``coef`` . features (P_ONSET_FIT_FEATURES)."""

    coef: tuple[float, ...]
    intercept_ms: float

    def onset_ms(self, features_ms: np.ndarray) -> np.ndarray:
        """Per lead (rows of ``features_ms``, ms); NaN rows stay NaN; clipped to +-LEAD_P_ON_FIT_MAX_MS."""
        x = np.asarray(features_ms, dtype=float) @ np.asarray(self.coef) + self.intercept_ms
        return np.clip(x, -LEAD_P_ON_FIT_MAX_MS, LEAD_P_ON_FIT_MAX_MS)


@lru_cache(maxsize=None)
def _p_onset_fits(path: str) -> dict:
    return json.loads(Path(path).read_text())


def p_onset_fit(name: str | None = None) -> POnsetFit | None:
    """The P-onset fit ``name`` (default: $ECG_GROUNDING_P_ONSET_FIT, else "all") from p_onset_fit.json;
    None for "none" (the rule's onsets unchanged)."""
    name = name or os.environ.get(P_ONSET_FIT_ENV) or "all"
    if name == "none":
        return None
    doc = _p_onset_fits(str(P_ONSET_FIT_PATH))
    if tuple(doc["features"]) != P_ONSET_FIT_FEATURES:
        raise ConfigError(f"{P_ONSET_FIT_PATH.name} was fitted on {doc['features']}, the code computes "
                         f"{list(P_ONSET_FIT_FEATURES)}: run python -m features.fit_p_onset")
    if name not in doc["fits"]:
        raise ConfigError(f"unknown P-onset fit {name!r} (${P_ONSET_FIT_ENV}): choose one of "
                         f"{', '.join(sorted(doc['fits']))} or none")
    fit = doc["fits"][name]
    return POnsetFit(coef=tuple(float(c) for c in fit["coef"]), intercept_ms=float(fit["intercept_ms"]))


LEAD_QRS_STEEP = 0.3        # a lead's terminal QRS deflection: its last slope >= 30% of its own QRS peak slope
LEAD_QRS_KNEE_REF_MS = 30.0  # ... whose end (trapezium knee) is looked for this far past its steepest point
LEAD_QRS_EARLY_MS = 20.0    # a lead's own QRS end is used only this far (or more) before the global end ...
LEAD_QRS_SETTLED = 0.15     # ... when the lead then moves less than 15% of its QRS amplitude up to the global end
LEAD_QRS_WAVE_MV = 0.04     # ... in a straight drift: a terminal s / r' this size (lead_forms.LOBE_MIN_MV) is QRS
LEAD_QRS_MOVING = 0.1       # a lead still sloping at >= 10% of its own QRS peak slope at the global end ...
LEAD_QRS_LATE_MS = 20.0     # ... ends where it stops doing so, at most this far after it ...
# ... when its own last steep point lies this close to the global end (its terminal wave is among the last
# forces); one whose steep part ended earlier is drifting into the ST-T segment there (LUDB: records 35, 65)
LEAD_QRS_TERMINAL_MS = 16.0


def lead_qrs_ends(beat: np.ndarray, good: np.ndarray, q_on: int, q_off: int, fs_hz: float,
                  late_ms: float = LEAD_QRS_LATE_MS) -> np.ndarray:
    """Each lead's own QRS end (sample index into ``beat``) where it clearly differs from the global one; NaN
    elsewhere (the lead keeps the global end).

    The global QRS end is where the spatial slope's knee (carried through slurred terminal forces) puts the
    end of the last lead's QRS. A lead whose QRS is over well before it, e.g. the precordial leads of a QRS
    whose last forces point only to the limb leads (right ventricular hypertrophy, flutter waves on the
    terminal QRS), is measured late by it: its own end is the trapezium knee of its cumulative squared
    slope (as the global end) after its last steep point (slope >= LEAD_QRS_STEEP of its own QRS peak),
    within LEAD_QRS_KNEE_REF_MS; kept when at least LEAD_QRS_EARLY_MS before the global end and the lead
    then only drifts up to it: by less than LEAD_QRS_SETTLED of its QRS amplitude, and never more than
    LEAD_QRS_WAVE_MV off a straight line (a slurred S or a terminal s / r' of that size is QRS: such a lead
    keeps the global end). Conversely a lead still sloping at the global end (>= LEAD_QRS_MOVING of its own
    QRS peak slope: a small lead's slow terminal wave, which the spatial slope of large leads hides) whose
    last steep point lies within LEAD_QRS_TERMINAL_MS of it ends where its falling slope drops below that,
    at most ``late_ms`` (ms) later (0: such a lead keeps the global end); a lead sloping there whose steep
    part ended earlier is drifting into its ST-T segment and may end early as above. ``beat``: (n_leads,
    samples) median beat or a single beat's leads (mV); ``q_on`` / ``q_off``: the global QRS fiducials in it.
    """
    n_leads, n = beat.shape
    out = np.full(n_leads, np.nan)
    if not (0 <= q_on < q_off < n - 1):
        return out
    for i in np.flatnonzero(good):
        y = beat[i]
        s = uniform_filter1d(np.abs(np.gradient(y)), ms(fs_hz, 8))
        s_pk = float(s[q_on:q_off + 1].max())
        if s_pk <= 0:
            continue
        m = q_on + int(np.flatnonzero(s[q_on:q_off + 1] >= LEAD_QRS_STEEP * s_pk)[-1])
        if s[q_off] >= LEAD_QRS_MOVING * s_pk and q_off - m <= ms(fs_hz, LEAD_QRS_TERMINAL_MS):
            if late_ms <= 0:
                continue
            end = q_off
            # ... while that slope keeps falling: a rising one is the ST-T wave (LBBB at high rates)
            while end < min(n - 1, q_off + ms(fs_hz, late_ms)) and s[end + 1] >= LEAD_QRS_MOVING * s_pk \
                    and s[end + 1] <= s[end]:
                end += 1
            out[i] = float(end)
            continue
        path2 = np.cumsum(s ** 2)
        end = knee_after(-path2, m, min(n - 1, m + ms(fs_hz, LEAD_QRS_KNEE_REF_MS)))
        if q_off - end < ms(fs_hz, LEAD_QRS_EARLY_MS):
            continue
        # what follows must be a small drift (ST slope, a flutter wave: near a straight line), not a wave
        tail = y[end:q_off + 1]
        drift = float(np.max(np.abs(tail - tail[0])))
        wave = float(np.max(np.abs(tail - np.linspace(tail[0], tail[-1], tail.size))))
        if drift < LEAD_QRS_SETTLED * float(np.ptp(y[q_on:q_off + 1])) and wave < LEAD_QRS_WAVE_MV:
            out[i] = float(end)
    return out


def beat_lead_qrs_ends(clean: np.ndarray, good: np.ndarray, fid: GlobalFiducials, fs_hz: float) -> np.ndarray:
    """(n_leads, n_beats) each lead's own QRS end minus the global one (samples), measured on the beat
    itself, for the beats that keep their own QRS fiducials (QRS unlike the median beat's: premature,
    aberrant, flutter waves riding on it; or no median beat); NaN elsewhere and where ``lead_qrs_ends``
    gives none.

    Such a beat's global end is its own spatial knee, carried by the last lead's terminal forces (in
    flutter, by the flutter wave riding on the ST segment of a few leads) well past the end that the
    other leads show; their own ends are found with the same rule as on the median beat, but only before
    the global end: on a single beat a lead still sloping at the global end is as often noise or the
    flutter wave (LUDB: also allowing the later ends there gave a QRS-off SD of 12.14 vs 12.08 ms).
    ``clean``: (n_leads, n_samples) 0.5-40 Hz leads; ``fid``: the record's global fiducials.
    """
    n_leads, nb = clean.shape[0], fid.r.size
    n = clean.shape[1]
    out = np.full((n_leads, nb), np.nan)
    tmpl = fid.qrs_from_template if fid.qrs_from_template is not None else np.zeros(nb, dtype=bool)
    pad = ms(fs_hz, LEAD_QRS_KNEE_REF_MS + 20.0)  # the lead's knee search and slope smoothing stay inside
    for k in np.flatnonzero(~tmpl):
        if not (np.isfinite(fid.qrs_on[k]) and np.isfinite(fid.qrs_off[k])):
            continue
        q_on, q_off = int(round(fid.qrs_on[k])), int(round(fid.qrs_off[k]))
        lo, hi = max(0, q_on - pad), min(n, q_off + pad)
        out[:, k] = lead_qrs_ends(clean[:, lo:hi], good, q_on - lo, q_off - lo, fs_hz, late_ms=0.0) - (q_off - lo)
    return out
