"""The kinds of records whose intervals were measured worst on LUDB (issue 14), as synthetic records with exact
truth (``pipeline.synthetic_cases``): every published PR / QRS / QT is within the cited-value tolerance of the
truth or is marked not citable, and the classes each fix was made for are measured right. Several records per
class, drawn across its physiological range: nothing here is tuned on one record."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from features import measure_record
from features.confidence import TOLERANCE_MS
from features.measure import as_record
from features.qrs_edges import synthetic_reading_intervals
from features.schema import CONFIDENCE_MIN
from pipeline.synthetic import generate_record
from pipeline.synthetic_cases import FAILURE_CLASSES, failure_record
from pipeline.synthetic_params import SynthParams

SEEDS = range(5)
OPEN: set[tuple[str, str]] = set()  # failure classes and intervals known to be open: none
# ... against the generator's own (kinked) edges: a ventricular escape's broad, LBBB-like QRS is read late as an
# LBBB's is (chb_ventricular seed 0: 158 ms for 138, within the tolerance of the reading convention's 144 but not
# of the generator's own edges; the same record drawn as a conducted LBBB without dissociated P waves reads 156)
BARE_OPEN: set[tuple[str, str]] = {("chb_ventricular", "qrs")}


def _read(syn) -> dict[str, float | None]:
    """The record's truth moved as the published QRS edges are (features.qrs_edges: the generator's edges are
    kinks at zero amplitude, which the detector already finds ~4 ms outside; the published edges are moved a
    further LUDB-fitted margin to the clinicians' reading: the onset earlier, not in paced beats, the end later).
    PR / QRS / QT keyed pr, qrs, qt. test_every_citable_interval_is_a_true_citation_of_the_bare_truth checks the
    published values against the bare truth."""
    t = syn.truth
    pr, qrs, qt = synthetic_reading_intervals(t.pr_ms, t.qrs_ms, t.qt_ms, paced=syn.params.pacing != "none")
    return {"pr": pr, "qrs": qrs, "qt": qt}


def _measured(name: str, seed: int):
    syn = failure_record(name, seed)
    return syn, measure_record(as_record(syn.signal_mv, syn.record_id))


@pytest.fixture(scope="module")
def measured() -> dict:
    return {(name, seed): _measured(name, seed) for name in FAILURE_CLASSES for seed in SEEDS}


def _citable_counts(measured, names) -> tuple[int, int]:
    citable = total = 0
    for name in names:
        for seed in SEEDS:
            syn, m = measured[(name, seed)]
            row, truth = m.record_row, syn.truth
            for key in ("pr", "qrs", "qt"):
                if getattr(truth, f"{key}_ms") is None:
                    continue
                total += 1
                citable += row[f"{key}_ms"] is not None and row[f"{key}_conf"] >= CONFIDENCE_MIN
    return citable, total


@pytest.mark.parametrize("name", list(FAILURE_CLASSES))
def test_every_citable_interval_is_within_tolerance_of_the_truth(measured, name):
    for seed in SEEDS:
        syn, m = measured[(name, seed)]
        row, truth = m.record_row, _read(syn)
        for key in ("pr", "qrs", "qt"):
            true_ms = truth[key]
            value, conf = row[f"{key}_ms"], row[f"{key}_conf"]
            if true_ms is None or value is None or conf < CONFIDENCE_MIN or (name, key) in OPEN:
                continue
            assert abs(value - true_ms) <= TOLERANCE_MS[key], (name, seed, key, value, true_ms, row["uncertain"])


def test_every_citable_interval_is_a_true_citation_of_the_bare_truth(measured):
    # the published edges follow the clinicians' reading (features.qrs_edges), which on the generator's kinked
    # edges lies outside them: still, a cited value must be true of the generator's own truth within the cited
    # tolerance (../shared/tools/cited_truth.py: 20 / 20 / 30 ms), in every class and seed
    worst = {}
    for (name, seed), (syn, m) in measured.items():
        row = m.record_row
        for key in ("pr", "qrs", "qt"):
            true_ms, value, conf = getattr(syn.truth, f"{key}_ms"), row[f"{key}_ms"], row[f"{key}_conf"]
            if true_ms is None or value is None or conf < CONFIDENCE_MIN or (name, key) in OPEN | BARE_OPEN:
                continue
            worst[key] = max(worst.get(key, 0.0), abs(value - true_ms))
            assert abs(value - true_ms) <= TOLERANCE_MS[key], (name, seed, key, value, true_ms)
    assert set(worst) == {"pr", "qrs", "qt"}, worst


def test_most_values_of_the_failure_classes_stay_citable(measured):
    # a confidence that hid the values would pass the test above: over all classes, most stay citable; only
    # where the P hides in the T (its onset a guess, the T's end perhaps the P's) are most PR / QT not
    # ... and where paced and conducted beats are both common (two QRS populations: the QRS and QT are of neither)
    hidden = {"avb1_p_on_t", "avb1_p_in_t", "af_demand_paced"}
    citable, total = _citable_counts(measured, [n for n in FAILURE_CLASSES if n not in hidden])
    assert citable >= 0.9 * total, (citable, total)
    citable, total = _citable_counts(measured, list(FAILURE_CLASSES))
    assert citable >= 0.8 * total, (citable, total)


@pytest.mark.parametrize("seed", SEEDS)
def test_bifid_p_of_left_atrial_enlargement_starts_at_its_first_hump(measured, seed):
    # the knee of the spatial magnitude sat in the notch between the right- and the left-atrial hump: PR -60 ms
    syn, m = measured[("brady_lae", seed)]
    pr = _read(syn)["pr"]
    assert abs(m.record_row["pr_ms"] - pr) <= 10, (m.record_row["pr_ms"], pr)
    assert abs(m.record_row["pr_global_ms"] - pr) <= 10
    # the widest P of physiology (120-150 ms: left atrial enlargement) is no P too long to be one (p_duration)
    assert m.confidences.intervals["pr"].checks.get("p_duration", 0.0) == 0.0, m.confidences.intervals["pr"].checks


@pytest.mark.parametrize("seed", SEEDS)
def test_p_on_the_preceding_t_keeps_the_multi_lead_onset(measured, seed):
    # each lead's P onset was moved by the T's slope it starts on: PR up to +22 ms
    # (a P starting inside the T's tail still starts a little late: within 15 ms; and it is not citable)
    syn, m = measured[("avb1_p_on_t", seed)]
    pr = _read(syn)["pr"]
    assert abs(m.record_row["pr_ms"] - pr) <= 15, (m.record_row["pr_ms"], pr)


@pytest.mark.parametrize("name", ["biv_paced", "rv_paced"])
def test_paced_beats_are_found_and_their_qrs_starts_after_the_stimulus(measured, name):
    # every stimulus of a biventricular record was missed (two per beat set the detector's own scale), and a
    # stimulus tail outweighing the slow paced QRS put its end 40 ms after its start (QRS 42 for 144 ms)
    for seed in SEEDS:
        syn, m = measured[(name, seed)]
        row = m.record_row
        assert row["n_paced"] >= 0.7 * row["n_beats"], (seed, row["n_paced"], row["n_beats"])
        qrs = _read(syn)["qrs"]
        assert abs(row["qrs_ms"] - qrs) <= TOLERANCE_MS["qrs"], (seed, row["qrs_ms"], qrs)


def test_atrial_premature_beats_are_premature_and_keep_their_own_p(measured):
    for seed in SEEDS:
        syn, m = measured[("avb1_pac", seed)]
        assert m.record_row["n_premature"] == syn.truth.n_premature >= 1
        ours = m.beats.filter((pl.col("lead") == "II") & (pl.col("beat_class") == "premature"))
        truth = syn.beats.filter((pl.col("lead") == "II") & (pl.col("beat_class") == "premature"))
        for q_on, p_on in zip(truth["qrs_on_ms"], truth["p_on_ms"]):
            mine = ours.filter((pl.col("qrs_on_ms") - q_on).abs() < 30)
            if mine.height and p_on is not None and mine["p_on_ms"][0] is not None:
                # an ectopic P, earlier than the sinus P would be: not the median beat's
                assert abs(mine["p_on_ms"][0] - p_on) <= 30, (seed, mine["p_on_ms"][0], p_on)


@pytest.mark.parametrize("name", ["lvh_flat_t_u", "lvh_low_t"])
def test_flat_t_ends_before_the_u_wave_and_after_the_st_segment(measured, name):
    # a flat T followed by a larger U: the U was taken for the T (QT +145 to +194 ms); a T rising out of a
    # depressed ST: a ripple on the ST's decline was taken for its peak and the T's end for a notch (QT -109)
    for seed in SEEDS:
        syn, m = measured[(name, seed)]
        qt = _read(syn)["qt"]
        assert abs(m.record_row["qt_ms"] - qt) <= TOLERANCE_MS["qt"], (seed, m.record_row["qt_ms"], qt)


def test_a_j_point_the_beats_put_apart_makes_the_qrs_not_citable(measured):
    # atrial flutter with variable block: the F waves ride on each QRS end at another phase, a step at the J
    # point in some beats only (LUDB 103), which spread the beats' own QRS ends (up to 58 ms, seed 3) and made the
    # median beat's end a guess. With the F-wave train cancelled first (features.flutter) the beats agree on the J
    # point and the QRS is citable and true; where they still spread wider than the tolerance it is not citable
    from features.confidence import score  # noqa: PLC0415
    for seed in SEEDS:
        syn, m = measured[("flutter_ivcd", seed)]
        ic = m.confidences.intervals["qrs"]
        spread = ic.checks.get("beat_ends", 0.0)
        if score(spread, TOLERANCE_MS["qrs"]) < CONFIDENCE_MIN:
            assert m.record_row["qrs_conf"] < CONFIDENCE_MIN, (seed, ic.checks)
            assert "qrs_ms:" in m.record_row["uncertain"]
        else:
            assert m.record_row["qrs_conf"] >= CONFIDENCE_MIN, (seed, ic.checks)
            assert abs(m.record_row["qrs_ms"] - _read(syn)["qrs"]) <= TOLERANCE_MS["qrs"], (seed, m.record_row["qrs_ms"])


def test_flutter_qt_is_read_with_the_f_waves_cancelled(measured):
    # F waves running through the T's end read the QT late (seeds 3, 9, 13 of 0-19: +30-37 ms) until the F-wave
    # train is cancelled first (features.flutter); LUDB 35's and 103's QT stay citable where right (test_flutter)
    for seed in SEEDS:
        syn, m = measured[("flutter_ivcd", seed)]
        row, truth = m.record_row, _read(syn)
        if row["qt_ms"] is not None and row["qt_conf"] >= CONFIDENCE_MIN:
            assert abs(row["qt_ms"] - truth["qt"]) <= TOLERANCE_MS["qt"], (seed, row["qt_ms"], truth["qt"])


def test_paced_and_conducted_beats_both_common_are_all_found_and_the_conducted_qrs_is_cited():
    # a demand pacemaker in atrial fibrillation, half the beats paced (broad: a third of a conducted beat's
    # squared slope, under the detector's bar; with several lost, the gaps they leave look like the rhythm's
    # own): every captured beat is found from its stimulus, the rate is true, and the record's QRS is the
    # conducted beats' (the dominant kind) or not cited; one paced beat among a dozen changes nothing
    from pipeline.synthetic import generate_record
    from pipeline.synthetic_params import SynthParams

    for seed in range(8):
        base = dict(hr_bpm=75.0, qrs_ms=90.0, qt_ms=380.0, rhythm="atrial_fibrillation", af_rr_cv=0.2,
                    baseline_wander_mv=0.1, emg_noise_mv=0.01)
        syn = generate_record(SynthParams(**base, demand_paced_beats=6), seed)
        row = measure_record(as_record(syn.signal_mv, f"mixed_{seed}")).record_row
        assert row["n_beats"] == syn.truth.n_beats, (seed, row["n_beats"], syn.truth.n_beats)
        assert abs(row["hr_bpm"] - syn.truth.hr_bpm) <= 5.0
        if row["qrs_conf"] >= CONFIDENCE_MIN:
            assert abs(row["qrs_ms"] - _read(syn)["qrs"]) <= TOLERANCE_MS["qrs"], (seed, row)
        syn = generate_record(SynthParams(**base, demand_paced_beats=1), seed)
        row = measure_record(as_record(syn.signal_mv, f"one_paced_{seed}")).record_row
        assert "mixed_capture" not in row["uncertain"] and row["qrs_conf"] >= CONFIDENCE_MIN, (seed, row)
        assert abs(row["qrs_ms"] - _read(syn)["qrs"]) <= TOLERANCE_MS["qrs"]


def test_wide_qrs_at_fast_rates_keeps_its_window():
    # a bundle branch block at 110-160 bpm, the T squeezed right behind the QRS: the T's first limb after the J point
    # was taken for a brief terminal r' (and the whole T for QRS lobes), the window ending 60-75 ms late in a quarter
    # of such records and the axis read off it (syn00245: 92 degrees for -71). The detector's own edges (the earliest
    # onset and latest end over leads, median over beats) and the axis against the generator's truth, seed by seed;
    # nearly all keep a citable QRS (the second, threshold method no longer ends in the T's first limb either)
    citable = 0
    for seed in range(12):
        syn = failure_record("wide_fast", seed)
        m = measure_record(as_record(syn.signal_mv, syn.record_id), reading_convention=False)
        row = m.record_row
        if row["qrs_conf"] < CONFIDENCE_MIN:
            continue
        citable += 1
        ours = m.beats.group_by("beat").agg(pl.col("qrs_on_ms").min(), pl.col("qrs_off_ms").max()).drop_nulls()
        truth = syn.beats.filter(pl.col("lead") == "II")
        d_on, d_off = [], []
        for on, off in zip(truth["qrs_on_ms"], truth["qrs_off_ms"]):
            near = ours.filter((pl.col("qrs_on_ms") - on).abs() < 60)
            if near.height:
                d_on.append(near["qrs_on_ms"][0] - on)
                d_off.append(near["qrs_off_ms"][0] - off)
        assert len(d_on) >= 0.8 * truth.height, (seed, len(d_on), truth.height)
        d_on, d_off = sorted(d_on)[len(d_on) // 2], sorted(d_off)[len(d_off) // 2]
        assert -10.0 <= d_on <= 2.0 and -2.0 <= d_off <= 10.0, (seed, syn.params.bundle_branch_block, d_on, d_off)
        assert abs(row["qrs_ms"] - syn.truth.qrs_ms) <= 16.0, (seed, row["qrs_ms"], syn.truth.qrs_ms)
        d_axis = (row["qrs_axis_deg"] - syn.truth.qrs_axis_deg + 180.0) % 360.0 - 180.0
        assert abs(d_axis) <= 5.0, (seed, row["qrs_axis_deg"], syn.truth.qrs_axis_deg)
    assert citable >= 11, citable


def _long_reads(name: str, key: str, long_ms: float, truth, seeds=range(40)) -> dict:
    """Records ``seeds`` of class ``name``: every citable ``key`` interval within tolerance of ``truth(syn)``;
    returns, by seed, the confidence checks of those read more than ``long_ms`` long (cited or not)."""
    out = {}
    for seed in seeds:
        syn, m = _measured(name, seed)
        row, true_ms = m.record_row, truth(syn)
        value = row[f"{key}_ms"]
        if value is None:
            continue
        if row[f"{key}_conf"] >= CONFIDENCE_MIN:
            assert abs(value - true_ms) <= TOLERANCE_MS[key], (name, seed, value, true_ms, row["uncertain"])
        if value - true_ms > long_ms:
            out[seed] = m.confidences.intervals[key].checks
    return out


def test_a_u_wave_taken_for_the_p_leaves_no_pr_to_cite():
    """A large U wave in the next beat's P window, the P small beside it (u_wave_as_p): the P search takes the U,
    PR 190-250 ms long. Such a wave keeps its distance to the previous beat as the RR varies (``previous_beat``)
    or leaves the true P between it and the QRS (``later_rival``): no PR read to a U wave is citable (before
    these checks: 54 of 432 grid records cited one, at confidence 0.6-1; LUDB 130's 6 s window 0: 404 ms for the
    experts' 192). Forty records, across the class's range of rates, U sizes, voltages and RR variation."""
    from features.p_locking import p_locking
    from features.measure import delineate_record

    taken = _long_reads("u_wave_as_p", "pr", 100.0, lambda syn: syn.truth.pr_ms)
    flagged = sum("previous_beat" in c or c.get("later_rival", 0.0) >= TOLERANCE_MS["pr"] for c in taken.values())
    assert len(taken) >= 20 and flagged == len(taken), (len(taken), flagged)
    # the locking itself: a U wave's distance to the next QRS follows the RR one for one, a P's does not
    slopes_u = []
    for seed in range(40):
        d = delineate_record(as_record(failure_record("u_wave_as_p", seed).signal_mv, "u"))
        lock = p_locking(d.fid, d.fs_hz)
        pr = d.fid.r[1:] - d.fid.p_diag["p_peak_raw"][1:]
        if lock is not None and np.nanmedian(pr) * 2.0 > 300:  # the U taken: its slope is ~1
            slopes_u.append(lock[0])
    assert len(slopes_u) >= 5 and np.median(slopes_u) > 0.8, slopes_u
    sinus = [generate_record(SynthParams(hr_bpm=70.0, rr_variability=0.03), seed=s) for s in range(5)]
    for s in sinus:
        d = delineate_record(as_record(s.signal_mv, "s"))
        lock = p_locking(d.fid, d.fs_hz)
        assert lock is not None and abs(lock[0]) < 0.3, lock


def test_a_u_wave_fused_to_the_t_end_leaves_no_qt_read_to_its_end():
    """LVH with a low T and a U wave fused to its end (lvh_tu_fusion), across forty records: where the T's end is
    read at the U's end (QT +87 to +110 ms), the T's fall from peak to end lasts 146-168 ms, longer than a T's own
    (``t_descent``); no citable QT is off its truth (seed 34 cited 549 ms for 443 at confidence 1 before)."""
    long_read = _long_reads("lvh_tu_fusion", "qt", 60.0, lambda syn: _read(syn)["qt"])
    for seed, checks in long_read.items():
        assert checks.get("t_descent", 0.0) > 0.0, seed
    assert len(long_read) >= 2
