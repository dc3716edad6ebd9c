"""Walks over the lobes of the spatial slope from a QRS's anchor (``features.delineate``): where the QRS's lobes
end, which dips between them are crossed, and which brief runs after its last steep lobe are a terminal r' / s
rather than the T wave's first limb.

Why this matters at fast rates: behind a wide QRS (bundle branch block at 110-160 bpm) the ST-T follows at once and
lasts only 90-150 ms, so each of its limbs is as brief as a terminal r' and can be as steep as a slow QRS's lobes;
the walk took the T's first limb, or the whole T, for QRS (the window 35-75 ms late, the axis read off it:
synthetic LBBB at 127 bpm, 92 degrees for -71). A T wave has one direction: all leads peak at once at its apex,
where the spatial slope falls near zero between its up- and downstroke, and the isoelectric stretch follows its
second limb. A terminal r' is one run, followed by the ST segment or by a steep lobe of the same QRS.
"""
from __future__ import annotations

import numpy as np


def extend(v: np.ndarray, start: int, step: int, thr: float, max_len: int, max_gap: int,
            rejoin: float = 0.0, with_weak: bool = False, brief: int = 0, brief_rejoin: float = 0.0):
    """Walk from ``start`` in direction ``step`` while ``v`` stays above ``thr``; dips below it shorter than
    ``max_gap`` samples are crossed (the spatial slope touches zero wherever all leads peak at once), but
    when ``rejoin`` > 0 only towards another QRS lobe: a run after the dip that climbs above ``rejoin``
    (steep), or that climbs above ``brief_rejoin`` and is over within ``brief`` samples (a short terminal
    r' / s) with no other shallow run right after it (``limb_follows``). An early T wave rising behind the J
    point is neither steep nor brief (a brief T at a fast rate is followed by its other limb); a P wave is not
    steep.
    Returns the last index above ``thr`` (``start`` if none), at most ``max_len`` samples away, and with
    ``with_weak`` also why the walk stopped inside ``max_len``: "weak_run" (a run after a dip that was no
    lobe), "long_dip" (below ``thr`` for more than ``max_gap``), "undecided" (``max_len`` ran out inside a
    run after a dip) or "" (it did not)."""
    last, gap, i = start, 0, start
    weak = ""
    pending = False  # inside a run that followed a crossed dip, not yet shown to be a QRS lobe
    run_start = run_last = start
    run_max = 0.0
    for _ in range(max_len):
        i += step
        if i < 0 or i >= v.size:
            break
        if v[i] > thr:
            if gap > 0 and rejoin > 0:
                pending, run_start, run_max = True, i, 0.0
            gap = 0
            if pending:
                run_max, run_last = max(run_max, float(v[i])), i
                if run_max >= rejoin:
                    pending = False
            if not pending:
                last = i
        else:
            if pending:
                if brief and run_max >= brief_rejoin and abs(run_last - run_start) < brief \
                        and not limb_follows(v, i, step, thr, max(max_gap, brief), max_gap, rejoin):
                    pending, last, gap = False, run_last, 1
                    continue
                weak = "weak_run"
                break  # the run after the dip was no QRS lobe
            gap += 1
            if gap > max_gap:
                weak = "long_dip"
                break
    else:
        if pending:
            weak = "undecided"  # ``max_len`` ran out inside a run after a dip
    return (last, weak) if with_weak else last


def limb_follows(v: np.ndarray, i: int, step: int, thr: float, max_gap: int, quiet_len: int,
                 rejoin: float) -> bool:
    """Whether, from ``i`` (the first sample below ``thr`` after a brief run of the spatial slope ``v``), another
    run above ``thr`` starts within ``max_gap`` samples in direction ``step`` and stays below ``rejoin`` (not a
    steep QRS lobe), looked for past any walk limit, and is followed by ``quiet_len`` samples below ``thr``.

    A brief run so followed is the first limb of a wave whose leads all peak at once, where the spatial slope
    falls near zero between its up- and downstroke: a T wave with a single direction, squeezed to ~100 ms at a
    fast rate (LBBB at 127 bpm: each limb briefer than a terminal r' may be, and the QRS end was taken 35 ms into
    the T). Its apex keeps the slope low for up to ~30 ms, so ``extend`` looks as far ahead as a brief lobe may
    last (40 ms), past the dips it crosses (24 ms). A terminal r' / s is one run followed by the isoelectric ST
    segment (or by a steep lobe of the same QRS)."""
    j, gap = i, 0
    while 0 <= j + step < v.size and gap <= max_gap:
        j += step
        if v[j] > thr:
            break
        gap += 1
    else:
        return False
    if gap > max_gap or v[j] <= thr:
        return False
    top = 0.0
    while 0 <= j < v.size and v[j] > thr:
        top = max(top, float(v[j]))
        j += step
    if top >= rejoin:
        return False
    # ... and the wave is over after its second limb: the slope stays below ``thr`` for ``quiet_len`` samples (the
    # isoelectric stretch after a T). Atrial flutter waves run on, one after the other, with no such stretch: they
    # are no limbs of one wave, and a brief run among them is left to the checks of the QRS end (beat_ends)
    quiet = v[j:j + quiet_len] if step > 0 else v[max(0, j - quiet_len + 1):j + 1]
    return quiet.size >= quiet_len and bool(np.all(quiet <= thr))
