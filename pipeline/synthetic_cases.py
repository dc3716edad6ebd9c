"""The kinds of records whose intervals were measured worst on real ECGs (LUDB), as synthetic records with
exact truth: each entry of ``FAILURE_CLASSES`` draws the parameters of one such record, varied within its
physiological range, so a fix is tested on many records of the kind, never tuned on one.

    >>> from pipeline.synthetic_cases import FAILURE_CLASSES, failure_record
    >>> rec = failure_record("avb1_pac", seed=3)      # a SynthRecord: signal, per-beat truth, labels

What each class reproduces (LUDB's experts' diagnoses; the error of the record-level interval it gave):
- ``avb1_p_on_t`` / ``avb1_p_in_t`` / ``avb1_pac``: first-degree AV block, the P right after or inside the
  preceding T, with atrial extrasystoles (PR +168 ms);
- ``brady_lae``: sinus bradycardia with left atrial enlargement: a wide, bifid P (PR +128 ms);
- ``u_wave_as_p``: a large U wave in the next P's search window, the P small beside it (LUDB 130, LVH with
  non-specific repolarisation changes, in 6 s windows: PR +212 ms);
- ``lvh_low_t``, ``lvh_tu_fusion``, ``lvh_flat_t_u``, ``lvh_notched_t``: LVH with non-specific repolarisation
  changes: a low, flat or notched T, a U wave fused with it or larger than it (QT +180 ms);
- ``irbbb_lvh``: incomplete RBBB with LVH and strain (QT -104 ms, QRS -34 ms);
- ``lafb`` / ``lpfb``: left anterior (posterior) fascicular block (QRS -30 ms);
- ``biv_paced`` / ``rv_paced``: biventricular (right-ventricular) pacing (QRS +38 ms);
- ``af_demand_paced``: atrial fibrillation with a demand pacemaker, paced and conducted beats both common
  (QRS +22 ms, LUDB 95: the record's QRS is of whichever the window holds more of);
- ``wide_fast``: a bundle branch block at 110-160 bpm, the T squeezed behind the QRS (synthetic LBBB at 127 bpm:
  the QRS window 35 ms late, the axis 92 degrees for -71);
- ``flutter_ivcd``: typical atrial flutter with variable block and LVH, the F waves stepping the J point
  (QRS +22 ms, LUDB 103).
- ``chb_junctional`` / ``chb_ventricular`` / ``chb_paced``: complete AV block (LUDB: 5 of 200 records, LUDB 90
  paced): sinus P waves marching through a junctional, ventricular or paced rhythm; no PR exists;
- ``avb2_2to1`` (in ``OPEN_CLASSES``: its QT is still cited long where the blocked P starts inside the T's end):
  2:1 AV block, every second P blocked, the conducted ones with a fixed PR.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from pipeline.synthetic import SynthRecord, generate_record
from pipeline.synthetic_params import SynthParams


def _qt_ms(rng: np.random.Generator, hr_bpm: float, qtc_lo: float = 390.0, qtc_hi: float = 450.0) -> float:
    """A QT (ms) whose Bazett QTc lies in [qtc_lo, qtc_hi] at ``hr_bpm``."""
    return float(rng.uniform(qtc_lo, qtc_hi) * math.sqrt(60.0 / hr_bpm))


def _noise(rng: np.random.Generator) -> dict:
    """Moderate, realistic noise: baseline wander, some muscle noise and mains hum."""
    return dict(baseline_wander_mv=round(float(rng.uniform(0.02, 0.25)), 3),
                emg_noise_mv=round(float(rng.uniform(0.0, 0.02)), 3),
                mains_hum_mv=round(float(rng.uniform(0.0, 0.02)), 3), mains_hz=int(rng.choice([50, 60])),
                rr_variability=round(float(rng.uniform(0.005, 0.03)), 4))


def _rhythm(hr_bpm: float) -> str:
    return "sinus_bradycardia" if hr_bpm < 60 else "sinus_tachycardia" if hr_bpm > 100 else "sinus_rhythm"


def avb1_p_on_t(rng: np.random.Generator) -> SynthParams:
    """First-degree AV block at a rate where the P starts on (or right after) the preceding T."""
    hr = float(rng.uniform(72.0, 98.0))
    rr = 60000.0 / hr
    qrs = float(rng.uniform(80.0, 105.0))
    qt = min(_qt_ms(rng, hr, 380.0, 430.0), rr - 300.0)
    pr = float(np.clip(rr - qt + rng.uniform(-40.0, 20.0), 230.0, min(360.0, rr - qrs - 90.0)))
    return SynthParams(hr_bpm=hr, pr_ms=pr, qrs_ms=qrs, qt_ms=qt, qrs_axis_deg=float(rng.uniform(-20.0, 80.0)),
                       rhythm=_rhythm(hr), p_on_t=True, p_ms=float(rng.uniform(90.0, 120.0)),
                       qrs_scale=float(rng.uniform(0.8, 1.3)), **_noise(rng))


def avb1_p_in_t(rng: np.random.Generator) -> SynthParams:
    """First-degree AV block at a fast rate: the P starts 40-130 ms before the preceding T ends (P inside T)."""
    hr = float(rng.uniform(80.0, 100.0))
    rr = 60000.0 / hr
    qrs = float(rng.uniform(80.0, 100.0))
    qt = min(_qt_ms(rng, hr, 380.0, 420.0), rr - 300.0)
    pr = float(np.clip(rr - qt + rng.uniform(40.0, 130.0), 240.0, min(400.0, rr - qrs - 90.0)))
    return SynthParams(hr_bpm=hr, pr_ms=pr, qrs_ms=qrs, qt_ms=qt, qrs_axis_deg=float(rng.uniform(-20.0, 80.0)),
                       rhythm=_rhythm(hr), p_on_t=True, p_ms=100.0, qrs_scale=float(rng.uniform(0.8, 1.3)),
                       **_noise(rng))


def avb1_pac(rng: np.random.Generator) -> SynthParams:
    """First-degree AV block with one or two atrial extrasystoles (their P early, on the preceding T)."""
    p = avb1_p_on_t(rng).model_dump()
    p.update(hr_bpm=float(rng.uniform(60.0, 80.0)))
    rr = 60000.0 / p["hr_bpm"]
    p.update(rhythm=_rhythm(p["hr_bpm"]), qt_ms=min(_qt_ms(rng, p["hr_bpm"], 380.0, 430.0), rr - 330.0),
             pr_ms=float(rng.uniform(220.0, 300.0)), pac_count=int(rng.integers(1, 3)),
             pac_coupling=float(rng.uniform(0.55, 0.75)), p_on_t=True)
    return SynthParams(**p)


def brady_lae(rng: np.random.Generator) -> SynthParams:
    """Sinus bradycardia with left atrial enlargement: a wide (120-150 ms), bifid P."""
    hr = float(rng.uniform(42.0, 57.0))
    p_ms = float(rng.uniform(120.0, 150.0))
    return SynthParams(hr_bpm=hr, pr_ms=float(rng.uniform(p_ms + 40.0, 240.0)), p_ms=p_ms, p_wave="bifid",
                       qrs_ms=float(rng.uniform(80.0, 105.0)), qt_ms=_qt_ms(rng, hr),
                       qrs_axis_deg=float(rng.uniform(-20.0, 80.0)), rhythm="sinus_bradycardia",
                       u_wave_mv=float(rng.choice([0.0, rng.uniform(0.03, 0.08)])), u_offset_ms=20.0,
                       qrs_scale=float(rng.uniform(0.8, 1.4)), **_noise(rng))


def u_wave_as_p(rng: np.random.Generator) -> SynthParams:
    """A large U wave (0.2-0.4 mV, concordant with the T: hypokalaemia, LVH, bradycardia) after the T, at a rate
    where it lies in the next beat's P search window, the P small beside it (low voltage half the time): the U
    is taken for the P (PR read 190-250 ms long, at confidence 0.6-1, before ``previous_beat`` and
    ``later_rival``; the kind of LUDB 130's 6 s windows: PR +212 ms)."""
    hr = float(rng.uniform(60.0, 80.0))
    return SynthParams(hr_bpm=hr, pr_ms=float(rng.uniform(130.0, 200.0)), qrs_ms=float(rng.uniform(80.0, 105.0)),
                       qt_ms=_qt_ms(rng, hr, 380.0, 440.0), qrs_axis_deg=float(rng.uniform(-20.0, 80.0)),
                       rhythm=_rhythm(hr), u_wave_mv=float(rng.uniform(0.2, 0.4)),
                       u_offset_ms=float(rng.uniform(20.0, 100.0)), low_voltage=bool(rng.integers(0, 2)),
                       **_noise(rng))


def _lvh(rng: np.random.Generator, **kw) -> SynthParams:
    hr = float(rng.uniform(55.0, 90.0))
    base = dict(hr_bpm=hr, pr_ms=float(rng.uniform(140.0, 200.0)), qrs_ms=float(rng.uniform(90.0, 112.0)),
                qt_ms=_qt_ms(rng, hr, 400.0, 460.0), qrs_axis_deg=float(rng.uniform(-30.0, 60.0)),
                rhythm=_rhythm(hr), qrs_scale=float(rng.uniform(1.5, 2.0)), **_noise(rng))
    base.update(kw)
    return SynthParams(**base)


def lvh_low_t(rng: np.random.Generator) -> SynthParams:
    """LVH with a low, flat T (non-specific repolarisation change) and a slightly depressed lateral ST."""
    return _lvh(rng, t_scale=float(rng.uniform(0.08, 0.3)), st_shift_mv=float(rng.uniform(-0.08, 0.0)),
                st_territory="lateral")


def lvh_tu_fusion(rng: np.random.Generator) -> SynthParams:
    """LVH with a low T and a U wave fused with its end (or just after it)."""
    hr = float(rng.uniform(50.0, 72.0))
    return _lvh(rng, hr_bpm=hr, rhythm=_rhythm(hr), qt_ms=_qt_ms(rng, hr, 400.0, 450.0),
                t_scale=float(rng.uniform(0.25, 0.6)), u_wave_mv=float(rng.uniform(0.06, 0.15)),
                u_offset_ms=float(rng.uniform(-70.0, 10.0)))


def lvh_flat_t_u(rng: np.random.Generator) -> SynthParams:
    """LVH with a flat T and a U wave larger than it after a short pause (the QT still ends with the T)."""
    hr = float(rng.uniform(50.0, 72.0))
    return _lvh(rng, hr_bpm=hr, rhythm=_rhythm(hr), qt_ms=_qt_ms(rng, hr, 400.0, 450.0),
                t_scale=float(rng.uniform(0.08, 0.2)), u_wave_mv=float(rng.uniform(0.08, 0.15)),
                u_offset_ms=float(rng.uniform(0.0, 40.0)))


def lvh_notched_t(rng: np.random.Generator) -> SynthParams:
    """LVH with a notched (bifid) T and lateral T inversion with ST depression (strain)."""
    return _lvh(rng, t_notch=True, t_scale=float(rng.uniform(0.4, 1.0)),
                t_inversion=str(rng.choice(["lateral", "anterior"])),
                st_shift_mv=float(rng.uniform(-0.15, -0.03)), st_territory="lateral")


def irbbb_lvh(rng: np.random.Generator) -> SynthParams:
    """Incomplete RBBB with LVH and strain: an rsr' in V1, large QRS, depressed ST and inverted lateral T."""
    hr = float(rng.uniform(55.0, 95.0))
    return SynthParams(hr_bpm=hr, pr_ms=float(rng.uniform(140.0, 200.0)), qrs_ms=float(rng.uniform(100.0, 118.0)),
                       qt_ms=_qt_ms(rng, hr, 400.0, 460.0), qrs_axis_deg=float(rng.uniform(-20.0, 70.0)),
                       rhythm=_rhythm(hr), bundle_branch_block="incomplete_right",
                       qrs_scale=float(rng.uniform(1.4, 2.0)), st_shift_mv=float(rng.uniform(-0.15, -0.03)),
                       st_territory="lateral", t_inversion="lateral", t_scale=float(rng.uniform(0.5, 1.0)),
                       **_noise(rng))


def lafb(rng: np.random.Generator) -> SynthParams:
    """Left anterior fascicular block: axis -50 to -85 degrees, QRS 95-118 ms."""
    hr = float(rng.uniform(55.0, 95.0))
    return SynthParams(hr_bpm=hr, pr_ms=float(rng.uniform(130.0, 200.0)), qrs_ms=float(rng.uniform(95.0, 118.0)),
                       qt_ms=_qt_ms(rng, hr), qrs_axis_deg=float(rng.uniform(-85.0, -50.0)), rhythm=_rhythm(hr),
                       fascicular_block="left_anterior", qrs_scale=float(rng.uniform(0.9, 1.6)), **_noise(rng))


def lpfb(rng: np.random.Generator) -> SynthParams:
    """Left posterior fascicular block: axis 100 to 150 degrees, QRS 95-118 ms."""
    p = lafb(rng).model_dump()
    p.update(fascicular_block="left_posterior", qrs_axis_deg=float(rng.uniform(100.0, 150.0)))
    return SynthParams(**p)


def biv_paced(rng: np.random.Generator) -> SynthParams:
    """Biventricular pacing (LV then RV stimulus), atrial-sensed: a P, then two stimuli, then a broad QRS."""
    hr = float(rng.uniform(60.0, 85.0))
    qrs = float(rng.uniform(125.0, 165.0))
    return SynthParams(hr_bpm=hr, pr_ms=float(rng.uniform(120.0, 180.0)), qrs_ms=qrs,
                       qt_ms=max(_qt_ms(rng, hr, 430.0, 490.0), qrs + 150.0),
                       qrs_axis_deg=float(rng.uniform(-150.0, -100.0) if rng.random() < 0.7 else rng.uniform(150.0, 179.0)),
                       rhythm=_rhythm(hr), pacing="biventricular", rr_variability=0.0,
                       pacing_spike_mv=float(rng.uniform(0.5, 4.0)), pacing_latency_ms=float(rng.uniform(8.0, 25.0)),
                       biv_delay_ms=float(rng.uniform(0.0, 40.0)), qrs_scale=float(rng.uniform(0.8, 1.4)),
                       baseline_wander_mv=float(rng.uniform(0.02, 0.2)), emg_noise_mv=float(rng.uniform(0.0, 0.015)))


def rv_paced(rng: np.random.Generator) -> SynthParams:
    """Right-ventricular apical pacing: one stimulus, an LBBB-like QRS with a superior axis."""
    p = biv_paced(rng).model_dump()
    p.update(pacing="ventricular", qrs_ms=float(rng.uniform(140.0, 180.0)), qrs_axis_deg=float(rng.uniform(-90.0, -40.0)))
    p["qt_ms"] = max(p["qt_ms"], p["qrs_ms"] + 150.0)
    return SynthParams(**p)


def flutter_ivcd(rng: np.random.Generator) -> SynthParams:
    """Typical atrial flutter with variable block and a non-specific intraventricular conduction delay (LVH):
    the F waves ride on the QRS ends at another phase in each beat (``pipeline.synthetic_flutter``)."""
    hr = float(rng.uniform(60.0, 100.0))
    return SynthParams(hr_bpm=hr, qrs_ms=float(rng.uniform(95.0, 118.0)), qt_ms=_qt_ms(rng, hr, 400.0, 460.0),
                       qrs_axis_deg=float(rng.uniform(-20.0, 60.0)), rhythm="atrial_flutter",
                       flutter_cycle_ms=float(rng.uniform(190.0, 250.0)),
                       flutter_wave_mv=float(rng.uniform(0.15, 0.4)), qrs_scale=float(rng.uniform(0.6, 1.2)),
                       **_noise(rng))


def af_demand_paced(rng: np.random.Generator) -> SynthParams:
    """Atrial fibrillation with a demand (VVI) pacemaker: the longest RR intervals end with a paced beat (3-6 of
    the record's ~11-15 beats), the others are conducted with a narrow QRS."""
    hr = float(rng.uniform(65.0, 90.0))
    return SynthParams(hr_bpm=hr, qrs_ms=float(rng.uniform(80.0, 100.0)), qt_ms=_qt_ms(rng, hr),
                       qrs_axis_deg=float(rng.uniform(-20.0, 70.0)), rhythm="atrial_fibrillation",
                       af_rr_cv=float(rng.uniform(0.12, 0.25)), demand_paced_beats=int(rng.integers(3, 7)),
                       pacing_spike_mv=float(rng.uniform(0.5, 4.0)), pacing_latency_ms=float(rng.uniform(8.0, 25.0)),
                       qrs_scale=float(rng.uniform(0.8, 1.3)), **_noise(rng))


def wide_fast(rng: np.random.Generator) -> SynthParams:
    """A bundle branch block (left, right or incomplete right) at 110-160 bpm: the ST-T follows the wide QRS at
    once and, with the PR fitted into the RR as the random records do (``pipeline.synthetic.random_params``), the T
    lasts only 90-150 ms, its limbs as brief as a terminal r' and as steep as a slow QRS's lobes (record syn00245
    of the seed-0 tree, LBBB at 127 bpm: the QRS window 35 ms late, the axis 92 degrees for -71)."""
    bbb = str(rng.choice(["left", "right", "incomplete_right"]))
    qrs = float({"left": rng.uniform(130.0, 170.0), "right": rng.uniform(124.0, 160.0)}.get(bbb, rng.uniform(100.0, 118.0)))
    hr = float(rng.uniform(110.0, min(160.0, 60000.0 / (qrs + 260.0))))
    rr = 60000.0 / hr
    pr = float(rng.uniform(120.0, 180.0))
    qt = max(_qt_ms(rng, hr, 400.0, 470.0), qrs + 110.0)
    if qt + pr + 40.0 > rr:  # fast rates: the QT shortens first, then the PR
        qt = max(qrs + 110.0, rr - pr - 40.0)
        if qt + pr + 40.0 > rr:
            pr = max(110.0, rr - qt - 40.0)
    axis = float(rng.uniform(-75.0, -36.0) if rng.random() < 0.3 else rng.uniform(-24.0, 100.0))
    return SynthParams(hr_bpm=hr, pr_ms=pr, qrs_ms=qrs, qt_ms=qt, qrs_axis_deg=axis, rhythm="sinus_tachycardia",
                       bundle_branch_block=bbb, qrs_scale=float(rng.uniform(0.8, 1.3)), **_noise(rng))


def _escape_noise(rng: np.random.Generator) -> dict:
    """The record's noise; an escape (or paced) rhythm is regular, the sinus P train keeps a slight variability."""
    return {**_noise(rng), "rr_variability": round(float(rng.uniform(0.0, 0.015)), 4)}


def chb_junctional(rng: np.random.Generator) -> SynthParams:
    """Complete AV block with a junctional escape: sinus P waves at 60-110 /min marching through a regular,
    narrow-QRS rhythm at 40-58 /min (on the T, in the QRS, on the ST, before a QRS at any distance)."""
    hr = float(rng.uniform(40.0, 58.0))
    return SynthParams(hr_bpm=hr, av_block="complete", escape="junctional",
                       atrial_rate_bpm=float(rng.uniform(max(60.0, hr + 10.0), 110.0)),
                       p_ms=float(rng.uniform(80.0, 110.0)), qrs_ms=float(rng.uniform(72.0, 100.0)),
                       qt_ms=_qt_ms(rng, hr, 390.0, 450.0), qrs_axis_deg=float(rng.uniform(-20.0, 80.0)),
                       qrs_scale=float(rng.uniform(0.8, 1.3)), **_escape_noise(rng))


def chb_ventricular(rng: np.random.Generator) -> SynthParams:
    """Complete AV block with a ventricular escape at 25-45 /min: a broad QRS (125-175 ms; LBBB-like from a
    right-ventricular focus, RBBB-like from a left one) with a discordant T; sinus P waves at 60-110 /min."""
    hr = float(rng.uniform(25.0, 45.0))
    qrs = float(rng.uniform(125.0, 175.0))
    return SynthParams(hr_bpm=hr, av_block="complete", escape=str(rng.choice(["right_ventricular", "left_ventricular"])),
                       atrial_rate_bpm=float(rng.uniform(60.0, 110.0)), p_ms=float(rng.uniform(80.0, 110.0)),
                       qrs_ms=qrs, qt_ms=float(np.clip(_qt_ms(rng, hr, 400.0, 460.0), qrs + 200.0, 590.0)),
                       qrs_axis_deg=float(rng.uniform(-75.0, 100.0)), qrs_scale=float(rng.uniform(0.8, 1.3)),
                       **_escape_noise(rng))


def chb_paced(rng: np.random.Generator) -> SynthParams:
    """Complete AV block with a ventricular (VVI) pacemaker at 60-75 /min: every QRS paced from the right-ventricular
    apex, the sinus P waves at 45-110 /min dissociated from it (LUDB 90)."""
    hr = float(rng.uniform(60.0, 75.0))
    atrial = float(rng.choice([rng.uniform(45.0, hr - 10.0), rng.uniform(hr + 10.0, 110.0)]))
    qrs = float(rng.uniform(140.0, 180.0))
    return SynthParams(hr_bpm=hr, av_block="complete", atrial_rate_bpm=atrial, p_ms=float(rng.uniform(80.0, 110.0)),
                       qrs_ms=qrs, qt_ms=max(_qt_ms(rng, hr, 430.0, 490.0), qrs + 150.0),
                       qrs_axis_deg=float(rng.uniform(-90.0, -40.0)), pacing="ventricular",
                       pacing_spike_mv=float(rng.uniform(0.5, 4.0)), pacing_latency_ms=float(rng.uniform(8.0, 25.0)),
                       qrs_scale=float(rng.uniform(0.8, 1.4)), **{**_noise(rng), "rr_variability": 0.0})


def avb2_2to1(rng: np.random.Generator) -> SynthParams:
    """2:1 AV block: sinus P waves at 70-110 /min, every second one blocked (on or after the T), the others
    conducted with a fixed PR (120-260 ms): a ventricular rate of 35-55 /min."""
    hr = float(rng.uniform(35.0, 55.0))
    return SynthParams(hr_bpm=hr, av_block="2:1", pr_ms=float(rng.uniform(140.0, 260.0)),
                       p_ms=float(rng.uniform(80.0, 100.0)), qrs_ms=float(rng.uniform(72.0, 100.0)),
                       qt_ms=_qt_ms(rng, hr, 390.0, 450.0), qrs_axis_deg=float(rng.uniform(-20.0, 80.0)),
                       qrs_scale=float(rng.uniform(0.8, 1.3)), **_escape_noise(rng))


FAILURE_CLASSES: dict[str, Callable[[np.random.Generator], SynthParams]] = {
    "avb1_p_on_t": avb1_p_on_t, "avb1_p_in_t": avb1_p_in_t, "avb1_pac": avb1_pac, "brady_lae": brady_lae, "lvh_low_t": lvh_low_t,
    "lvh_tu_fusion": lvh_tu_fusion, "lvh_flat_t_u": lvh_flat_t_u, "lvh_notched_t": lvh_notched_t, "irbbb_lvh": irbbb_lvh, "lafb": lafb,
    "lpfb": lpfb, "biv_paced": biv_paced, "rv_paced": rv_paced, "flutter_ivcd": flutter_ivcd,
    "af_demand_paced": af_demand_paced, "wide_fast": wide_fast, "chb_junctional": chb_junctional,
    "chb_ventricular": chb_ventricular, "chb_paced": chb_paced, "u_wave_as_p": u_wave_as_p,
}
# kinds drawn but still failing, kept out of FAILURE_CLASSES (whose every citable value the tests and
# benchmarks/features.py hold to the tolerance): 2:1 AV block whose blocked P starts inside the T's end (at
# 40-55 bpm with a PR of 140-260 ms it falls at RR/2 - PR after the QRS onset) reads the QT to the blocked P's end,
# 40-60 ms long. features.blocked_p.blocked_p_onset finds the blocked P (the conducted one's twin, 8-40 Hz) where it
# matches it well enough (seeds 3 and 7 of 0-9: QT not citable), but a P fused with the T's steep end matches it
# only 0.69-0.83 (seeds 19, 25, 34 of 0-39: QT cited 50-60 ms long), under what sinus records reach half an RR
# after their P (up to 0.81)
OPEN_CLASSES: dict[str, Callable[[np.random.Generator], SynthParams]] = {"avb2_2to1": avb2_2to1}


def failure_params(name: str, seed: int) -> SynthParams:
    """The parameters of record ``seed`` of failure class ``name`` (deterministic; retried until valid)."""
    rng = np.random.default_rng([seed, 14, sum(map(ord, name))])
    draw = FAILURE_CLASSES.get(name) or OPEN_CLASSES[name]
    for _ in range(100):
        try:
            return draw(rng)
        except ValueError:  # an unlucky draw that does not fit in the RR: draw again
            continue
    raise RuntimeError(f"no valid parameters for {name} seed {seed}")


def failure_record(name: str, seed: int) -> SynthRecord:
    """Record ``seed`` of failure class ``name``, id ``<name>_<seed>``."""
    return generate_record(failure_params(name, seed), seed, record_id=f"{name}_{seed}")
