"""AV block for ``pipeline.synthetic``: P waves the ventricles do not follow.

- Complete (third-degree) AV block: no atrial impulse reaches the ventricles. The sinus node goes on at its own
  rate (``atrial_rate_bpm``, 60-110 /min, with its slight respiratory variability) while a subsidiary pacemaker
  drives the ventricles, slower and regular: a junctional escape (the His bundle: a narrow QRS, 40-60 /min), a
  ventricular one (myocardium to myocardium from a focus in one ventricle: a broad QRS, 120-180 ms, whose T is
  discordant, 25-45 /min; a right-ventricular focus activates the left ventricle last, like an LBBB, a left one
  like an RBBB) or a ventricular pacemaker (``pacing``). The P waves march through the QRS-T at their own rate:
  before a QRS, inside it, on the ST, on the T; the P-QRS relation changes from beat to beat (AV dissociation)
  and there is no PR interval.
- 2:1 AV block (second degree): every second P is not conducted. The conducted ones keep a fixed PR (the PR IS
  measurable), the blocked ones fall half a ventricular cycle earlier, mostly on or after the T.

The truth: the QRS beats as usual (their P fiducials null under complete block, where no P belongs to a QRS);
the record's heart rate is the ventricular rate; ``SynthRecord.atrial_on_ms`` lists every P onset, conducted or
not, so a test knows where all the P waves are.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pipeline.synthetic_waves import QRS_LBBB, QRS_RBBB, BeatTemplate, Component, Wave

if TYPE_CHECKING:
    from pipeline.synthetic_params import SynthParams

# a ventricular focus spreads from its own ventricle: from the right one the left is activated last (LBBB-like
# QRS), from the left one the right is (RBBB-like)
ESCAPE_LOOPS = {"right_ventricular": QRS_LBBB, "left_ventricular": QRS_RBBB}
# the atrial and the ventricular rate at least this far apart (/min): nearly equal rates (isorhythmic dissociation)
# keep the P at one place for several beats, a PR that looks fixed: another failure class, not drawn here
DISSOCIATED_MIN_BPM = 8.0


def check_av_block(params: SynthParams) -> None:
    """Raise ValueError where ``params`` describe an AV block the generator does not draw consistently."""
    if params.av_block == "none":
        if params.escape != "junctional" or params.atrial_rate_bpm is not None:
            raise ValueError("an escape rhythm and an atrial rate of their own need an AV block")
        return
    if params.rhythm != "sinus":
        raise ValueError("an AV block is drawn under sinus P waves (rhythm 'sinus', named from the atrial rate)")
    if params.pvc_count or params.pac_count or params.p_on_t or params.atrial_spike_mv or params.demand_paced_beats:
        raise ValueError("an AV block is drawn without ectopic beats, P-on-T layout or dual-chamber pacing")
    if params.av_block == "complete":
        if params.atrial_rate_bpm is None or abs(params.atrial_rate_bpm - params.hr_bpm) < DISSOCIATED_MIN_BPM:
            raise ValueError("complete AV block needs an atrial rate of its own, apart from the ventricular one")
        if params.escape != "junctional":
            if params.qrs_ms < 120 or params.bundle_branch_block != "none" or params.pacing != "none":
                raise ValueError("a ventricular escape has a broad QRS (>= 120 ms) of its own, no BBB, no pacing")
    else:  # 2:1
        if params.escape != "junctional" or params.pacing != "none":
            raise ValueError("2:1 AV block conducts: no escape rhythm, no pacing")
        if params.atrial_rate_bpm is not None and abs(params.atrial_rate_bpm - 2.0 * params.hr_bpm) > 1e-6:
            raise ValueError("2:1 AV block: the atrial rate is twice the ventricular rate")
        if params.p_duration_ms + 60.0 > 30000.0 / params.hr_bpm - params.pr_ms:
            raise ValueError("2:1 AV block: the blocked P does not fit between the conducted ones")


def atrial_rate_bpm(params: SynthParams) -> float | None:
    """The rate of the P waves (/min): the sinus rate under complete block, twice the ventricular one in 2:1."""
    if params.av_block == "complete":
        return float(params.atrial_rate_bpm)
    if params.av_block == "2:1":
        return 2.0 * params.hr_bpm
    return None


def escape_loop(params: SynthParams) -> tuple[Component, ...] | None:
    """The QRS loop of a ventricular escape rhythm, None where the QRS is not one."""
    if params.av_block == "complete" and params.pacing == "none":
        return ESCAPE_LOOPS.get(params.escape)
    return None


def p_wave(params: SynthParams, p_on_ms: float, p_loop: tuple[Component, ...], other_scale: float) -> Wave:
    """The sinus P wave starting at ``p_on_ms`` (relative to the template's origin)."""
    p_dur = params.p_duration_ms
    return Wave("P", p_on_ms, p_on_ms + p_dur, [
        (c.vector() * other_scale, p_on_ms + c.f_on * p_dur, p_on_ms + c.f_peak * p_dur, p_on_ms + c.f_off * p_dur,
         c.rise_pow, c.fall_pow) for c in p_loop])


def blocked_p_onsets(params: SynthParams, rng: np.random.Generator, times: np.ndarray, dur_ms: float,
                     dt_ms: float) -> np.ndarray:
    """The onsets (ms, on the sample grid) of the P waves that no QRS template carries.

    Complete block: the whole sinus train, at ``atrial_rate_bpm`` with a slight respiratory variability (the
    record's ``rr_variability``), its phase unrelated to the QRS times. 2:1: the blocked P between two conducted
    ones (their PP halved, so the atrial cycle stays regular)."""
    if params.av_block == "complete":
        pp_ms = 60000.0 / float(params.atrial_rate_bpm)
        n = int(np.ceil(dur_ms / pp_ms)) + 4
        phase = rng.uniform(0.0, 2.0 * np.pi)
        k = np.arange(n)
        pp = pp_ms * (1.0 + params.rr_variability * np.sin(2.0 * np.pi * k * pp_ms / 4000.0 + phase)
                      + 0.25 * params.rr_variability * rng.standard_normal(n))
        on = -pp_ms * (1.0 + rng.uniform(0.0, 1.0)) + np.concatenate([[0.0], np.cumsum(pp[:-1])])
    else:
        conducted = times - params.pr_ms
        on = 0.5 * (conducted[:-1] + conducted[1:])
    on = np.round(on / dt_ms) * dt_ms
    return on[(on + params.p_duration_ms > 0.0) & (on < dur_ms)]


def add_blocked_p_waves(dipole: np.ndarray, params: SynthParams, rng: np.random.Generator, times: np.ndarray,
                        dur_ms: float, dt_ms: float, p_loop: tuple[Component, ...], other_scale: float) -> np.ndarray:
    """Add the P waves that conduct to no QRS to ``dipole`` (in place); return every P onset of the record (ms,
    sorted), conducted ones included."""
    onsets = blocked_p_onsets(params, rng, times, dur_ms, dt_ms)
    tpl = BeatTemplate.build({"P": p_wave(params, 0.0, p_loop, other_scale)}, dt_ms)
    for on in onsets:
        tpl.add_to(dipole, int(round(on / dt_ms)))
    if params.av_block == "2:1":
        conducted = times - params.pr_ms
        onsets = np.concatenate([onsets, conducted[(conducted + params.p_duration_ms > 0.0) & (conducted < dur_ms)]])
    return np.sort(onsets)
