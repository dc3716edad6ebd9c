"""Typical atrial flutter for ``pipeline.synthetic``: a macro-reentrant circuit round the tricuspid annulus that
activates the atria 240-350 times a minute, drawing a regular sawtooth of F waves (negative in II, III and aVF,
positive in V1), conducted to the ventricles with variable block or with a fixed one (2:1, 3:1, 4:1).

Variable block (2:1, 3:1, 4:1 from beat to beat) is also variable AV conduction: concealed conduction into the
AV node makes the F wave to QRS delay differ with the ratio, so the F waves ride on each QRS at another phase.
Where one lands on the end of the QRS it draws a step or a slur at the J point that some beats show and others
do not (LUDB 103, typical flutter with an intraventricular conduction delay: the beats put their own QRS end
58-88 ms after the R peak): the J point is ill defined, and a published QRS end taken from it is a guess.

Fixed block (``flutter_block`` "2:1", "3:1", "4:1"): every k-th F wave is conducted with the same AV delay, so the
RR is exactly k F cycles and the F waves sit at the same phase in every beat: they are locked to the QRS, and an
average beat holds them (no QRST cancellation sees them). The ventricular rate is then the F rate over k:
``hr_bpm`` must be 60000 / (k x ``flutter_cycle_ms``) (within 2 %).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

from pipeline.synthetic_waves import LEAD_MATRIX

if TYPE_CHECKING:
    from pipeline.synthetic_params import SynthParams

# the flutter wave's direction (x left, y inferior, z anterior): the caudo-cranial activation of the septum and
# left atrium makes it point superiorly (negative in II, III, aVF) and somewhat anteriorly (positive in V1)
FLUTTER_DIR = np.array([-0.1, -1.0, 0.45])
FLUTTER_DOWNSTROKE = 0.8  # share of each F cycle spent in the slow descent; the rest is the sharp return
FLUTTER_RATIOS = (2, 3, 4)  # conduction ratios of variable block
FlutterBlock = Literal["variable", "2:1", "3:1", "4:1"]
FIXED_RATE_TOLERANCE = 0.02  # a fixed block's hr_bpm is the F rate over the ratio within this share


def fixed_ratio(block: str) -> int | None:
    """The conduction ratio of a fixed block ("2:1" -> 2); None for a variable one."""
    return None if block == "variable" else int(block.split(":")[0])


def check_flutter_block(block: str, cycle_ms: float, rr_ms: float, wander_ms: float = 0.0) -> None:
    """A fixed block beats every k F cycles: the mean RR ``rr_ms`` must be k x ``cycle_ms``, and the cycle does not
    wander (the beats would have to follow it)."""
    k = fixed_ratio(block)
    if k is not None and wander_ms > 0:
        raise ValueError("a fixed flutter block is generated without cycle wander")
    if k is not None and abs(rr_ms - k * cycle_ms) > FIXED_RATE_TOLERANCE * k * cycle_ms:
        raise ValueError(f"a {block} flutter block at a {cycle_ms:.0f} ms cycle beats at "
                         f"{60000.0 / (k * cycle_ms):.1f} bpm, not {60000.0 / rr_ms:.1f}")


def flutter_rr(rng: np.random.Generator, rr_ms: float, n: int, cycle_ms: float, min_rr_ms: float,
               block: str = "variable") -> np.ndarray:
    """``n`` RR intervals (ms) of flutter with variable block: each a whole number of F cycles (2-4, drawn so
    their mean is near ``rr_ms``) plus the change of AV delay from beat to beat (up to a third of a cycle); with a
    fixed block each is k cycles (the same AV delay every beat)."""
    k_fixed = fixed_ratio(block)
    if k_fixed is not None:
        return np.full(n, k_fixed * cycle_ms)
    k_mean = float(np.clip(rr_ms / cycle_ms, FLUTTER_RATIOS[0], FLUTTER_RATIOS[-1]))
    lo = int(np.floor(k_mean))
    k = lo + (rng.random(n) < k_mean - lo).astype(int)
    k = np.clip(k, FLUTTER_RATIOS[0], FLUTTER_RATIOS[-1])
    # a ratio that alternates at random: draw some beats away from the mean so that the block is variable
    swap = rng.random(n) < 0.3
    k[swap] = rng.choice(FLUTTER_RATIOS, size=int(swap.sum()))
    rr = k * cycle_ms + rng.uniform(-cycle_ms / 3.0, cycle_ms / 3.0, n)
    return np.maximum(rr, min_rr_ms)


def flutter_waves(params: SynthParams, rng: np.random.Generator, n: int) -> np.ndarray:
    """The F waves as a (3, n) dipole: a regular sawtooth (slow descent, sharp return) at the flutter cycle,
    independent of the QRS times, the largest lead carrying ``flutter_wave_mv`` peak to peak."""
    fs = params.fs_hz
    phase = (np.arange(n) * 1000.0 / fs / params.flutter_cycle_ms + rng.uniform(0.0, 1.0)) % 1.0
    if params.flutter_cycle_wander_ms > 0:
        # the circuit's cycle drifts slowly (autonomic tone, respiration change its conduction velocity by a few
        # per cent): the cycle follows a slow sinusoid of that amplitude, and the phase its integral
        t_s = np.arange(n) / fs
        cycle = params.flutter_cycle_ms + params.flutter_cycle_wander_ms * np.sin(
            2 * np.pi * rng.uniform(0.1, 0.3) * t_s + rng.uniform(0.0, 2 * np.pi))
        phase = (phase[0] + np.cumsum(1000.0 / fs / cycle)) % 1.0
    down = phase < FLUTTER_DOWNSTROKE
    saw = np.where(down, 0.5 - phase / FLUTTER_DOWNSTROKE,
                   -0.5 + (phase - FLUTTER_DOWNSTROKE) / (1.0 - FLUTTER_DOWNSTROKE))
    # rounded corners: an atrial wavefront does not turn in one sample (a 10 ms moving average)
    w = max(1, int(round(0.010 * fs)))
    saw = np.convolve(saw, np.ones(w) / w, mode="same")
    d = FLUTTER_DIR / np.linalg.norm(FLUTTER_DIR)
    out = np.outer(d, saw)
    # the sawtooth spans 1 (from -0.5 to 0.5): a lead's peak to peak is its projection of the direction
    return out * (params.flutter_wave_mv / float(np.abs(LEAD_MATRIX @ d).max()))
