"""Beats other than the conducted sinus beat, for ``pipeline.synthetic``: premature ventricular beats (their
loop, where they go), premature atrial beats (an ectopic P, the sinus node reset) and pacing stimuli."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from pipeline.synthetic_waves import (
    LEAD_MATRIX, P_SINUS, Component, loop_area, scale_to_max_lead, BeatTemplate, Wave,
)

if TYPE_CHECKING:
    from pipeline.synthetic_params import SynthParams


def pvc_loop(rng: np.random.Generator) -> tuple[Component, ...]:
    """A unifocal PVC: two broad, slowly conducted components from a random ventricular focus."""
    d = rng.normal(size=3)
    d[1] = abs(d[1]) + 0.3  # most PVC foci (outflow tracts) give an inferior axis
    d /= np.linalg.norm(d)
    d2 = d + 0.5 * rng.normal(size=3)
    return (
        Component(tuple(d), 1.6, 0.0, 0.40, 0.75, 1.0, 1.5),
        Component(tuple(d2), 0.9, 0.30, 0.70, 1.0, 1.5, 1.0),
    )


# an ectopic atrial focus: its P's direction differs from the sinus P's by at least this much (degrees)
PAC_MIN_ANGLE_DEG = 70.0
PAC_P_MS = 90.0


def place_pacs(params: SynthParams, rng: np.random.Generator, normal_waves: dict[str, Wave],
                templates: dict, times: np.ndarray, kinds: list[str], dur_ms: float, dt_ms: float) -> None:
    """Turn up to ``params.pac_count`` beats into premature atrial beats, in place (``times``, ``kinds``).

    An ectopic focus fires early (``pac_coupling`` of the RR): its P (another direction, from a focus away
    from the sinus node) is conducted with a PR a little longer than the sinus one (the AV node is still
    partly refractory) and a normal QRS; the sinus node is reset, so the next beat comes one cycle after the
    ectopic P (a non-compensatory pause). Its P starts after the previous T (or, with ``p_on_t``, after the
    previous QRS and ST segment, on the T)."""
    sinus = np.asarray(loop_area(P_SINUS))
    while True:
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        if math.degrees(math.acos(float(np.clip(d @ sinus / np.linalg.norm(sinus), -1, 1)))) >= PAC_MIN_ANGLE_DEG:
            break
    pr_pac = params.pr_ms + float(rng.uniform(0.0, 40.0))
    p_on = -pr_pac
    p_amp = float(np.abs(LEAD_MATRIX @ sinus).max() / max(np.abs(LEAD_MATRIX @ d).max(), 1e-9))
    waves = dict(normal_waves)
    waves["P"] = Wave("P", p_on, p_on + PAC_P_MS, [
        (d * 0.16 * p_amp / 0.2, p_on, p_on + 0.45 * PAC_P_MS, p_on + PAC_P_MS, 1.0, 1.0)])
    templates["pac"] = BeatTemplate.build(waves, dt_ms)
    taken = [k for k, kind in enumerate(kinds) if kind != "normal"]
    candidates = [k for k in range(1, len(times) - 1) if 0.1 * dur_ms < times[k] < 0.85 * dur_ms
                  and kinds[k - 1] == "normal" and kinds[k] == "normal" and all(abs(k - j) > 2 for j in taken)]
    rng.shuffle(candidates)
    earliest = (params.qrs_ms + 80.0) if params.p_on_t else params.repolarisation_end_ms + 10.0
    placed = 0
    for k in candidates:
        if placed >= params.pac_count:
            break
        if any(abs(k - j) <= 2 for j in taken):
            continue
        rr = times[k] - times[k - 1]
        coupling = max(params.pac_coupling * rr * float(rng.uniform(0.97, 1.03)), earliest + pr_pac)
        if coupling > 0.9 * rr:
            continue
        new = times[k - 1] + coupling
        cycle = times[k + 1] - times[k]
        times[k + 1:] += (new - pr_pac + cycle + params.pr_ms) - times[k + 1]  # the reset sinus node
        times[k] = new
        kinds[k] = "pac"
        taken.append(k)
        placed += 1


# right ventricular apex, left ventricular (coronary sinus) and right atrial appendage electrodes
PACING_SPIKE_DIRS = {"rv": np.array([0.2, -0.9, 0.35]), "lv": np.array([-0.85, -0.3, 0.4]),
                     "ra": np.array([-0.45, 0.6, 0.65])}
# the stimulus as sampled at 500 Hz: a sharp rise, then the lead's coupling / polarisation tail of the same
# polarity decaying exponentially (the shape of LUDB 45's stimuli: -0.59, -0.37, -0.25, -0.15 mV)
PACING_RISE = 0.3
PACING_TAIL_MS = 4.0


def add_pacing_spikes(dipole: np.ndarray, params: SynthParams, times: np.ndarray, kinds: list[str],
                       dt_ms: float) -> None:
    """Add the pacing stimuli of every paced beat to ``dipole`` (in place): a spike (PACING_RISE, then the tail) of
    ``pacing_spike_mv`` in the largest lead, ``pacing_latency_ms`` before the QRS onset; biventricular: the
    LV stimulus there and the RV one ``biv_delay_ms`` after it; with ``atrial_spike_mv`` also an atrial stimulus
    ``atrial_latency_ms`` before the beat's P (dual-chamber pacing). The QRS truth starts at the capture (its
    dipole's onset), not at the spike."""
    n = dipole.shape[1]
    sites = ("rv",) if params.pacing == "ventricular" else ("lv", "rv")
    k = np.arange(int(round(6 * PACING_TAIL_MS / dt_ms)) + 1)
    shape = np.concatenate(([PACING_RISE], np.exp(-k * dt_ms / PACING_TAIL_MS)))
    atrial = scale_to_max_lead(PACING_SPIKE_DIRS["ra"], params.atrial_spike_mv) if params.atrial_spike_mv else None
    for t0, kind in zip(times, kinds):
        if kind != "paced":
            continue
        if atrial is not None:  # dual-chamber: the atrial stimulus, then its P, then the AV delay
            at = int(round((t0 - params.pr_ms - params.atrial_latency_ms) / dt_ms)) - 1
            idx = at + np.arange(shape.size)
            ok = (idx >= 0) & (idx < n)
            dipole[:, idx[ok]] += np.outer(atrial, shape[ok])
        for j, site in enumerate(sites):
            vec = scale_to_max_lead(PACING_SPIKE_DIRS[site], params.pacing_spike_mv)
            at = int(round((t0 - params.pacing_latency_ms + j * params.biv_delay_ms) / dt_ms)) - 1
            idx = at + np.arange(shape.size)
            ok = (idx >= 0) & (idx < n)
            dipole[:, idx[ok]] += np.outer(vec, shape[ok])


def pvc_positions(rng: np.random.Generator, times: np.ndarray, dur_ms: float, count: int) -> list[int]:
    """Indices of beats to turn into PVCs: inside the middle 80 % of the record, never adjacent."""
    candidates = [k for k in range(1, len(times) - 1) if 0.1 * dur_ms < times[k] < 0.9 * dur_ms]
    rng.shuffle(candidates)
    chosen: list[int] = []
    for k in candidates:
        if len(chosen) >= count:
            break
        if all(abs(k - j) > 2 for j in chosen):
            chosen.append(k)
    return sorted(chosen)
