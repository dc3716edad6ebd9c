"""Pacing stimuli and the QRS they pace: the stimuli that pace a beat (``paced_stimuli``), the earliest QRS onset
they allow, whether a median beat starts with one, and where a stimulus's filtered artefact ends.

Sample indices of the ``clean`` (0.5-40 Hz) leads, as ``features.delineate``, which places paced beats' QRS onsets
with these (also ``features.confidence`` and ``features.rate``).
"""
from __future__ import annotations

import math

import numpy as np

from features.fiducials import ms
from features.signal import SPIKE_BLANK_AFTER_MS

PACED_SPIKE_SEARCH_MS = 60.0  # a stimulus this far before the QRS onset (or inside it) paces that QRS
# the evoked QRS is not seen before this long after the stimulus: its blanked stretch (SPIKE_BLANK_AFTER_MS),
# the capture latency (LUDB's experts mark paced onsets 16-27 ms after the spike)
PACED_LATENCY_MS = SPIKE_BLANK_AFTER_MS


def _paced_onset(spikes: np.ndarray, q_on: float, anchor: float, fs_hz: float) -> float | None:
    """Earliest QRS onset (samples) a pacing stimulus allows: PACED_LATENCY_MS after the last stimulus
    between PACED_SPIKE_SEARCH_MS before ``q_on`` and the anchor; None when no stimulus lies there.

    The onset may lie after the anchor: the anchor (the largest spatial slope) of a paced beat can sit in
    the stimulus's own artefact (its recharge tail outlasts the blanked stretch), while the evoked QRS,
    slow from a pacing site, starts only after the capture latency."""
    train = paced_stimuli(spikes, q_on, anchor, fs_hz)
    return None if train is None else float(train[0] + ms(fs_hz, PACED_LATENCY_MS))


PACED_LOCKED_MS = 10.0  # stimuli of different beats this close relative to their QRS are the pacemaker's
# a median beat's QRS that starts from this long before a stimulus (the filters smear a stimulus over a few samples
# either side) to the capture latency after it starts with it: a heart's own QRS would start there by chance
STIMULUS_SMEAR_MS = 8.0
# a paced QRS spreads from the stimulus through the myocardium, not the conduction system: 120-200 ms, fusion beats
# less, never under this (features.confidence: a narrower QRS of paced beats is not citable)
PACED_QRS_MIN_MS = 100.0


def _starts_with_stimulus(d_on: float, d_off: float, stim: float, fs_hz: float) -> bool:
    """Whether a median beat whose QRS runs from ``d_on`` to ``d_off`` (samples from its anchor) starts with the
    stimulus at ``stim``: from STIMULUS_SMEAR_MS before it to PACED_LATENCY_MS after it, and is as broad as a paced
    QRS (a narrow QRS is the heart's own, whatever artefact lies before it)."""
    return (stim - ms(fs_hz, STIMULUS_SMEAR_MS) <= d_on <= stim + ms(fs_hz, PACED_LATENCY_MS)
            and d_off - d_on >= ms(fs_hz, PACED_QRS_MIN_MS))


PACED_TRAIN_MS = 80.0  # ventricular stimuli this close together pace one beat (biventricular: LV, then RV)


def paced_stimuli(spikes: np.ndarray, q_on: float, anchor: float, fs_hz: float) -> np.ndarray | None:
    """The stimuli that pace one beat (samples, ascending): the last stimulus between PACED_SPIKE_SEARCH_MS
    before ``q_on`` and PACED_LATENCY_MS after the anchor, and those before it that are each within PACED_TRAIN_MS of the next
    (biventricular pacing: the LV and the RV stimulus, the QRS starting after the first capture; an atrial
    stimulus lies an AV delay, >= 100 ms, before them); None when no stimulus lies there."""
    if spikes is None or len(spikes) == 0:
        return None
    sp = np.sort(np.asarray(spikes))
    lo = q_on - ms(fs_hz, PACED_SPIKE_SEARCH_MS)
    # up to the capture latency after the anchor: the anchor of a paced beat can be its stimulus's own blanked
    # stretch (the largest slope left there), the stimulus right at it
    cand = sp[(sp >= lo) & (sp <= anchor + ms(fs_hz, PACED_LATENCY_MS))]
    if cand.size == 0:
        return None
    i = int(np.searchsorted(sp, cand.max()))
    j = i
    while j > 0 and sp[j] - sp[j - 1] <= ms(fs_hz, PACED_TRAIN_MS):
        j -= 1
    return sp[j:i + 1]


PACED_ARTEFACT_MS = 30.0    # the filters' smear of a large (unipolar) stimulus lasts up to ~this long after it
PACED_ARTEFACT_DECAY = 0.5  # ... and is an artefact when the spatial slope falls below half its peak after it


def _after_artefact(v: np.ndarray, s_on: float, anchor: float, fs_hz: float) -> float:
    """A paced QRS onset (samples) past the filtered stimulus artefact behind ``s_on``.

    The 0.5-40 Hz filters turn a large stimulus into a slope lobe that outlasts its blanked stretch; the
    evoked QRS starts as it dies away. When the spatial slope ``v`` peaks within PACED_ARTEFACT_MS / 2 of
    ``s_on`` and then falls below PACED_ARTEFACT_DECAY of that peak within PACED_ARTEFACT_MS (before the
    anchor), the onset is where it first does; else ``s_on`` (the slope only rises: the QRS itself).
    """
    a = int(math.ceil(s_on))
    hi = min(int(anchor), a + ms(fs_hz, PACED_ARTEFACT_MS), v.size - 1)
    pk_hi = min(hi, a + ms(fs_hz, PACED_ARTEFACT_MS / 2))
    if a < 0 or pk_hi <= a:
        return s_on
    pk = a + int(np.argmax(v[a:pk_hi + 1]))
    below = np.flatnonzero(v[pk:hi + 1] < PACED_ARTEFACT_DECAY * v[pk])
    return float(pk + below[0]) if below.size else s_on
