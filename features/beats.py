"""Find the beats once per record (all good leads voting) and gate the leads whose beats do not repeat.

Everything here works on sample indices of the ``clean`` (0.5-40 Hz) leads, as ``features.delineate``, which
delineates the beats found here.

Method:
- beats: peaks of a multi-lead QRS energy (squared slope of each lead normalised by its own scale, summed
  over good leads, integrated over 60 ms; a search-back with the absolute slope finds wide premature
  beats), so beat k is the same heartbeat in every lead; complexes < 250 ms apart are one beat;
- leads whose beats do not resemble their own median beat are noise (``gate_by_template``).
"""
from __future__ import annotations

import numpy as np
from scipy import signal as sps
from scipy.ndimage import uniform_filter1d

from features.fiducials import ms

MIN_RR_MS = 250.0  # two complexes closer than this (240 bpm) are one heartbeat
TEMPLATE_CORR_MIN = 0.5  # a lead whose beats do not resemble their own median beat is noise


def detect_beats(clean: np.ndarray, good: np.ndarray, fs_hz: float, spikes: np.ndarray | None = None) -> np.ndarray:
    """Beat positions (samples) from all good leads voting. ``good`` is a bool mask of usable leads; ``spikes``:
    pacing stimuli (samples), whose captured complexes are beats however broad (``_captured``)."""
    x = clean[good]
    if x.shape[0] == 0 or x.shape[1] < ms(fs_hz, 300):
        return np.empty(0, dtype=np.int64)
    d = np.diff(x, axis=1, prepend=x[:, :1])
    # normalise each lead's slope by a high percentile so one huge or noisy lead cannot outvote the rest
    scale = np.percentile(np.abs(d), 99, axis=1, keepdims=True)
    scale[scale <= 0] = 1.0
    # squared slope integrated over 60 ms favours sharp QRS over flutter / T waves ...
    env = uniform_filter1d(np.sum(np.minimum((d / scale) ** 2, 4.0), axis=0), ms(fs_hz, 60))
    peaks, _ = sps.find_peaks(env, distance=ms(fs_hz, MIN_RR_MS))
    if peaks.size == 0:
        return peaks
    h = env[peaks]
    k = max(1, peaks.size // 4)
    ref = float(np.median(np.sort(h)[::-1][:k]))
    keep = peaks[h >= 0.3 * ref]
    if keep.size == 0:
        return keep
    # ... then a search-back in long gaps with the absolute slope integrated over 100 ms (~ the excursion
    # of the complex), which finds wide, slow premature ventricular beats the squared slope under-rates
    env_abs = uniform_filter1d(np.sum(np.minimum(np.abs(d) / scale, 2.0), axis=0), ms(fs_hz, 100))
    ref_abs = float(np.median(env_abs[keep]))
    cand, _ = sps.find_peaks(env_abs, distance=ms(fs_hz, MIN_RR_MS), height=0.4 * ref_abs)
    if keep.size >= 2 and cand.size:
        rr_med = float(np.median(np.diff(keep)))
        added = True
        while added:
            added = False
            bounds = np.concatenate(([-ms(fs_hz, 300)], keep, [x.shape[1] + ms(fs_hz, 300)]))
            for a, b in zip(bounds[:-1], bounds[1:]):
                if b - a < 1.4 * rr_med:
                    continue
                inside = cand[(cand > a + ms(fs_hz, 250)) & (cand < b - ms(fs_hz, 250))]
                if inside.size:
                    best = inside[np.argmax(env_abs[inside])]
                    keep = np.sort(np.append(keep, best))
                    added = True
                    break
    keep = _captured(keep, env_abs, 0.4 * ref_abs, spikes, fs_hz)
    # the anchor: largest spatial slope within +-70 ms of the envelope peak
    v = np.sqrt(np.sum(d ** 2, axis=0))
    v = uniform_filter1d(v, 3)
    w = ms(fs_hz, 70)
    out = []
    for p in keep:
        lo, hi = max(0, p - w), min(v.size, p + w + 1)
        out.append(lo + int(np.argmax(v[lo:hi])))
    out = np.unique(np.asarray(out, dtype=np.int64))
    # two anchors closer than 200 ms are one beat: keep the one with more energy
    if out.size > 1:
        res = [out[0]]
        for p in out[1:]:
            if p - res[-1] < ms(fs_hz, MIN_RR_MS):
                if env[p] > env[res[-1]]:
                    res[-1] = p
            else:
                res.append(p)
        out = np.asarray(res, dtype=np.int64)
    return out


CAPTURE_WINDOW_MS = (30.0, 200.0)  # a captured QRS's excursion peaks this long after its stimulus (past its smear)


def _captured(keep: np.ndarray, env_abs: np.ndarray, bar: float, spikes: np.ndarray | None,
              fs_hz: float) -> np.ndarray:
    """``keep`` with the complexes that pacing stimuli captured: a ventricular stimulus that captures is followed
    by a QRS within CAPTURE_WINDOW_MS, which is a heartbeat however broad and slow it is (a paced QRS has a
    third of a conducted one's squared slope: among conducted beats it falls under the detector's bar, and with
    several lost the gaps they leave look like the rhythm's own). Added where no beat lies near the stimulus
    and the excursion after it reaches ``bar`` (the search-back's: an uncaptured stimulus, or an atrial one
    followed by a small P, does not)."""
    if spikes is None or len(spikes) == 0 or keep.size == 0:
        return keep
    lo, hi = ms(fs_hz, CAPTURE_WINDOW_MS[0]), ms(fs_hz, CAPTURE_WINDOW_MS[1])
    added = []
    for sp in np.unique(np.asarray(spikes, dtype=np.int64)):
        near = np.abs(np.concatenate((keep, added)) - (sp + (lo + hi) // 2)) < ms(fs_hz, MIN_RR_MS)
        if near.any() or sp + hi >= env_abs.size:
            continue
        peak = sp + lo + int(np.argmax(env_abs[sp + lo:sp + hi]))
        if env_abs[peak] >= bar:
            added.append(peak)
    return np.sort(np.concatenate((keep, np.asarray(added, dtype=np.int64)))) if added else keep


def beat_windows(x: np.ndarray, r: np.ndarray, before: int, after: int) -> np.ndarray:
    """(n_leads, n_beats, before+after) windows around each beat, edge-padded (for templates only)."""
    n = x.shape[1]
    idx = r[:, None] + np.arange(-before, after)[None, :]
    idx = np.clip(idx, 0, n - 1)
    return x[:, idx]


def _correlation(w: np.ndarray, tmpl: np.ndarray) -> np.ndarray:
    """Per lead and beat: Pearson correlation of beat windows ``w`` (leads, beats, samples) with ``tmpl``
    (leads, 1, samples)."""
    a = w - w.mean(axis=2, keepdims=True)
    b = tmpl - tmpl.mean(axis=2, keepdims=True)
    num = np.sum(a * b, axis=2)
    den = np.sqrt(np.sum(a * a, axis=2) * np.sum(b * b, axis=2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, 0.0)


def template_correlation(clean: np.ndarray, r: np.ndarray, fs_hz: float, before_ms: float = 250.0,
                         after_ms: float = 400.0) -> np.ndarray:
    """Per lead and beat: Pearson correlation of the beat (-before..+after ms) with the lead's median beat."""
    if r.size == 0:
        return np.zeros((clean.shape[0], 0))
    w = beat_windows(clean, r, ms(fs_hz, before_ms), ms(fs_hz, after_ms))
    return _correlation(w, np.median(w, axis=1, keepdims=True))


def gate_by_template(clean: np.ndarray, r: np.ndarray, gate: list[str | None], fs_hz: float) -> list[str | None]:
    """Gate leads whose beats do not repeat (median correlation with their own median beat < 0.5).

    Needs >= 4 beats: with fewer the median beat is the beats themselves and says nothing.
    """
    gate = list(gate)
    if r.size < 4:
        return gate
    c = template_correlation(clean, r, fs_hz)
    for i in range(clean.shape[0]):
        if gate[i] is None and float(np.median(c[i])) < TEMPLATE_CORR_MIN:
            gate[i] = "noise"
    return gate
