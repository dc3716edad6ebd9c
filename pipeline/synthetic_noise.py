"""Electrode noise for ``pipeline.synthetic``: baseline wander, mains hum and muscle noise drawn per electrode
(RA, LA, LL, V1..V6) and combined the way an electrocardiograph does.
"""
from __future__ import annotations

import math

import numpy as np

from pipeline.synthetic_params import SynthParams


def electrode_noise(params: SynthParams, rng: np.random.Generator, n: int) -> np.ndarray:
    """Electrode noise combined into the 8 recorded leads (I, II, V1..V6) as an (8, n) array in mV."""
    fs = params.fs_hz
    t_s = np.arange(n) / fs
    electrodes = np.zeros((9, n))  # RA, LA, LL, V1..V6
    # Difference of two independent electrodes has sqrt(2) x the single-electrode amplitude.
    scale = 1.0 / math.sqrt(2.0)
    if params.baseline_wander_mv > 0:
        # Respiration and electrode drift: a few slow sinusoids shared by all electrodes, mixed with
        # electrode-specific weights (cheap: 4 sine evaluations per record instead of one per electrode).
        f = rng.uniform(0.05, 0.5, size=4)
        basis = np.sin(2 * np.pi * f[:, None] * t_s[None, :] + rng.uniform(0, 2 * np.pi, size=(4, 1)))
        weights = rng.uniform(-1.0, 1.0, size=(9, 4)) * 0.55
        electrodes += params.baseline_wander_mv * scale * (weights @ basis)
    if params.mains_hum_mv > 0:
        # a·sin(wt + phi) = a·cos(phi)·sin(wt) + a·sin(phi)·cos(wt): two sine evaluations in all.
        w = 2 * np.pi * params.mains_hz * t_s
        a = params.mains_hum_mv * scale * rng.uniform(0.6, 1.0, size=9)
        phi = rng.uniform(0, 2 * np.pi, size=9)
        electrodes += np.outer(a * np.cos(phi), np.sin(w)) + np.outer(a * np.sin(phi), np.cos(w))
    if params.emg_noise_mv > 0:
        # Muscle noise: Gaussian, band-limited to 20-150 Hz, drawn directly in the frequency domain
        # (random complex amplitudes in the band, one inverse FFT) - half the cost of filtering white noise.
        freqs = np.fft.rfftfreq(n, 1.0 / fs)
        band = np.flatnonzero((freqs >= 20.0) & (freqs <= min(150.0, 0.45 * fs)))
        spec = np.zeros((9, freqs.size), dtype=np.complex128)
        spec[:, band] = rng.standard_normal((9, band.size)) + 1j * rng.standard_normal((9, band.size))
        emg = np.fft.irfft(spec, n=n, axis=1)
        emg /= emg.std(axis=1, keepdims=True) + 1e-12
        electrodes += params.emg_noise_mv * scale * emg
    ra, la, ll = electrodes[0], electrodes[1], electrodes[2]
    wilson = (ra + la + ll) / 3.0
    out = np.empty((8, n))
    out[0] = la - ra
    out[1] = ll - ra
    out[2:] = electrodes[3:] - wilson
    return out
