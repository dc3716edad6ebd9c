"""Confidences of the published values (features/confidence.py) and what GroundingContext.citable makes of them:
a value below CONFIDENCE_MIN stays in the tables with its flag and is not citable; everything else is."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from features import measure_record
from features.confidence import TOLERANCE_MS, score
from features.measure import as_record
from features.schema import CONFIDENCE_MIN
from pipeline.context import build_context
from pipeline.record import LEAD_INDEX
from pipeline.synthetic import generate_record
from pipeline.synthetic_cases import failure_record
from pipeline.synthetic_params import SynthParams


def _context(signal: np.ndarray, rid: str = "x"):
    rec = as_record(signal, rid)
    m = measure_record(rec)
    return m, build_context(rec.meta, m.record_row, m.beats)


def test_score_is_one_to_half_the_tolerance_half_at_it_and_zero_from_one_and_a_half():
    assert score(10.0, 20.0) == 1.0 and score(0.0, 20.0) == 1.0
    assert score(20.0, 20.0) == pytest.approx(CONFIDENCE_MIN)
    assert score(30.0, 20.0) == 0.0 and score(300.0, 20.0) == 0.0
    assert score(25.0, 20.0) < CONFIDENCE_MIN < score(15.0, 20.0)


def test_a_clean_record_is_sure_of_every_interval_and_lead():
    m, ctx = _context(generate_record(SynthParams(emg_noise_mv=0.01), 1).signal_mv)
    row = m.record_row
    for k in ("pr", "qrs", "qt"):
        assert row[f"{k}_conf"] >= 0.9, (k, m.confidences.intervals[k].checks)
        assert ctx.citable(f"{k}_ms")
    assert row["uncertain"] == ""
    assert ctx.citable("qtc_bazett_ms") and ctx.citable("qrs_ms", "V2") and ctx.citable("r_amp_mv", "V5")
    for c in ("p_conf", "qrs_conf", "t_conf", "amp_conf"):
        assert m.beats[c].drop_nulls().len() == m.beats.height, c


@pytest.mark.parametrize("kind", ["normal", "right", "left", "incomplete_right"])
def test_beats_with_a_clear_j_point_agree_where_their_qrs_ends(kind):
    # every beat of a record ends its QRS at the same place when nothing rides on its J point: the spread of the
    # beats' own QRS ends (beat_ends) stays well inside half the tolerance, at any rate and noise the
    # generator draws, so the check costs clean records nothing
    qrs = {"normal": 85.0, "right": 135.0, "left": 150.0, "incomplete_right": 105.0}[kind]
    for seed, hr in enumerate((55.0, 75.0, 95.0, 120.0)):
        p = SynthParams(hr_bpm=hr, qrs_ms=qrs, qt_ms=max(qrs + 150.0, 400.0 * (60.0 / hr) ** 0.5),
                        pr_ms=150.0, bundle_branch_block="none" if kind == "normal" else kind,
                        emg_noise_mv=0.015, baseline_wander_mv=0.2, rr_variability=0.03)
        m = measure_record(as_record(generate_record(p, seed).signal_mv, f"{kind}_{seed}"))
        spread = m.confidences.intervals["qrs"].checks["beat_ends"]
        assert spread <= TOLERANCE_MS["qrs"] / 2, (kind, hr, spread)


def test_a_value_below_the_threshold_stays_in_the_tables_but_is_not_citable():
    # the P inside the preceding T: the T's measured end can be the P's (QT +34 to +63 ms)
    seen = 0
    for seed in range(6):
        syn = failure_record("avb1_p_in_t", seed)
        m, ctx = _context(syn.signal_mv, syn.record_id)
        row = m.record_row
        if row["qt_conf"] >= CONFIDENCE_MIN:
            continue
        seen += 1
        assert row["qt_ms"] is not None  # kept
        assert "qt_ms:" in row["uncertain"]
        for col in ("qt_ms", "qtc_bazett_ms", "qtc_fridericia_ms"):
            assert not ctx.citable(col) and ctx.uncitable_reason(col) == "low_confidence"
        assert not ctx.citable("qt_ms", "II")  # the leads' QT rest on the same T end
        assert ctx.citable("qrs_ms") and ctx.citable("hr_bpm")
    assert seen >= 3


def test_a_flat_t_in_one_lead_makes_only_that_leads_t_timing_not_measurable():
    # the T vector perpendicular to lead I (x = 0): I's T is flat, its own T end is no measurement
    x = generate_record(SynthParams(qrs_axis_deg=-20.0, emg_noise_mv=0.005), 4).signal_mv.copy()
    m, ctx = _context(x)
    t_amp = m.beats.group_by("lead").agg(pl.col("t_amp_mv").abs().median()).sort("t_amp_mv")
    flat = [ld for ld, a in t_amp.iter_rows() if a is not None and a < 0.05]
    big = [ld for ld, a in t_amp.iter_rows() if a is not None and a > 0.1]
    assert flat and big
    for lead in flat:
        assert ctx.confidence("qt_ms", lead) <= 0.25 and not ctx.citable("t_off_ms", lead)
        assert ctx.citable("qrs_ms", lead)
    for lead in big:
        assert ctx.citable("qt_ms", lead)


def test_tables_without_confidences_stay_citable():
    m, _ = _context(generate_record(SynthParams(), 2).signal_mv)
    row = {k: v for k, v in m.record_row.items() if not k.endswith("_conf")}
    beats = m.beats.drop(["p_conf", "qrs_conf", "t_conf", "amp_conf"])
    ctx = build_context(as_record(np.zeros((12, 10)), "x").meta, row, beats)
    assert ctx.confidence("qt_ms") is None and ctx.citable("qt_ms") and ctx.citable("qt_ms", "II")


def test_the_record_value_is_the_median_over_leads_of_each_leads_own_interval():
    m, _ = _context(generate_record(SynthParams(bundle_branch_block="right", qrs_ms=140.0), 5).signal_mv)
    dom = m.beats.filter(pl.col("beat_class") == "normal")
    per_lead = dom.group_by("lead").agg(pl.col("qrs_ms").median())["qrs_ms"].to_numpy()
    assert m.record_row["qrs_ms"] == pytest.approx(float(np.median(per_lead)))
    assert m.record_row["qrs_global_ms"] >= m.record_row["qrs_ms"]  # earliest onset to latest offset
    assert abs(m.record_row["qrs_ms"] - 140.0) <= TOLERANCE_MS["qrs"]


def test_gated_leads_carry_no_confidence():
    x = generate_record(SynthParams(), 6).signal_mv.copy()
    x[LEAD_INDEX["V3"]] = 0.0
    m, ctx = _context(x)
    v3 = m.beats.filter(pl.col("lead") == "V3")
    assert v3["qrs_conf"].is_null().all() and v3["amp_conf"].is_null().all()
    assert ctx.uncitable_reason("qrs_ms", "V3") == "gated_lead"


def test_an_axis_is_as_citable_as_its_waves_window_and_every_citable_axis_is_true():
    # the frontal axis is the angle of the net area inside the wave's window: a QRS window that is not sure
    # makes an axis that is not sure (a CLBBB at 127 bpm whose window slid 35 ms into the ST read 92 deg for -71)
    from pipeline.synthetic import random_params
    from pipeline.synthetic_tree import _seeds

    hidden = 0
    for s in _seeds(120, 7):
        syn = generate_record(random_params(np.random.default_rng([int(s), 1])), int(s))
        m, ctx = _context(syn.signal_mv)
        row = m.record_row
        assert ctx.citable("qrs_axis_deg") == (row["qrs_conf"] >= CONFIDENCE_MIN)
        if row["pr_conf"] is not None:  # no P waves: no PR and no P axis, nothing to cite
            assert ctx.citable("p_axis_deg") == (row["pr_conf"] >= CONFIDENCE_MIN)
        assert ctx.citable("t_axis_deg") == (row["qt_conf"] >= CONFIDENCE_MIN)
        hidden += not ctx.citable("qrs_axis_deg")
        if row["qrs_conf"] < CONFIDENCE_MIN:
            # nor is anything read inside that window: the writer says no QRS pattern, polarity, or J point
            # place, even relative to the QRS size
            from pipeline.writer_leads import lead_facts

            import dataclasses

            uncalibrated = dataclasses.replace(ctx, amplitudes_calibrated=False,
                                               calibration_flags=["amplitude_normalised"])
            for lead in ("I", "II", "aVF", "V1", "V5"):
                f = lead_facts(ctx, lead)
                assert (f.form, f.polarity, f.q, f.r_mv, f.st_mv, f.st_place) == (None, None, False, None, None,
                                                                                  None), (lead, f)
                assert lead_facts(uncalibrated, lead).st_place is None  # the calibration flag is reported first
        if ctx.citable("qrs_axis_deg") and row["qrs_axis_deg"] is not None:
            off = abs((row["qrs_axis_deg"] - syn.truth.qrs_axis_deg + 180.0) % 360.0 - 180.0)
            assert off <= 15.0, (int(s), row["qrs_axis_deg"], syn.truth.qrs_axis_deg)
    assert hidden <= 12  # a sure window is the rule: at most a tenth of the axes are hidden


def test_a_small_p_under_muscle_noise_is_taken_from_the_median_beat_and_cited_true():
    # low voltage and 0.04 mV of muscle noise: in single beats the noise is as large as the P (atrial windows
    # read as atrial waves, the beats' own P picks are nowhere steady), but the median beat averages it away and
    # shows one P with no rival at a regular rhythm: the PR is published, citable and true
    from features.qrs_edges import synthetic_reading_intervals  # noqa: PLC0415

    found = 0
    for seed in range(6):
        syn = generate_record(SynthParams(low_voltage=True, emg_noise_mv=0.04, baseline_wander_mv=0.1), seed)
        m = measure_record(as_record(syn.signal_mv, f"noisy_p_{seed}"))
        pr_read, _, _ = synthetic_reading_intervals(syn.truth.pr_ms, syn.truth.qrs_ms, syn.truth.qt_ms)
        row = m.record_row
        if row["pr_ms"] is not None and row["pr_conf"] >= CONFIDENCE_MIN:
            found += 1
            assert abs(row["pr_ms"] - pr_read) <= TOLERANCE_MS["pr"] / 2, (seed, row["pr_ms"], pr_read)
    assert found >= 4, found


def test_fibrillation_waves_are_never_taken_for_a_p_on_the_median_beat():
    # the median beat of an irregular rhythm holds no coherent P: atrial fibrillation publishes no PR, with fine
    # or coarse f waves and with muscle noise
    for seed in range(6):
        p = SynthParams(rhythm="atrial_fibrillation", hr_bpm=70.0 + 8 * seed, f_wave_mv=0.04 + 0.03 * (seed % 3),
                        emg_noise_mv=0.03, low_voltage=seed % 2 == 1)
        m = measure_record(as_record(generate_record(p, seed).signal_mv, f"af_{seed}"))
        assert m.record_row["pr_ms"] is None, (seed, m.record_row["pr_ms"])


def test_a_pr_read_from_beats_whose_median_beat_shows_no_p_is_not_citable():
    # atrial waves in single beats that cancel in their median beat are not locked to the QRS: the PR read from
    # them is whichever the window holds. A record's median beat whose P is taken away (the same beats, the P
    # hidden at the median beat only) leaves the PR not citable, while a sinus P that survives the averaging stays
    from features import confidence as C
    from features.measure import delineate_record

    syn = generate_record(SynthParams(emg_noise_mv=0.01), 3)
    m = measure_record(as_record(syn.signal_mv, "sinus"))
    assert "unlocked_p" not in m.confidences.intervals["pr"].checks and m.record_row["pr_conf"] >= CONFIDENCE_MIN
    d = delineate_record(as_record(syn.signal_mv, "sinus"))
    d.fid.template_fid.p_on[0] = np.nan
    ic = C.record_confidences(d.fid, d.good, d.clean.spikes, {"pr": np.full(12, 160.0)}, np.ones(d.fid.r.size, bool),
                              800.0, {"pr_ms": 160.0, "qrs_ms": 90.0, "qt_ms": 380.0},
                              np.ones((12, d.fid.r.size)), d.fs_hz)
    assert ic.intervals["pr"].checks["unlocked_p"] >= TOLERANCE_MS["pr"] and ic.intervals["pr"].value < 0.5


def test_the_qrs_threshold_method_ends_with_the_qrs_and_sees_a_baseline_that_is_not_quiet():
    # the second QRS method (threshold crossings of the spatial slope) ends where the run holding the QRS's end
    # crosses 10% of its peak: at 110-160 bpm the T's first limb starts ~15 ms after the J point, and counting it
    # read the QRS 28 ms long (syn00245, LBBB at 127 bpm: a true QRS not citable). Before the QRS it still counts
    # anything above the threshold: a low-voltage AF record with muscle noise and ectopics (benchmarks/features.py
    # record 651), whose f waves and noise reach 10% of the small QRS's slope, keeps its QRS (+21 ms) not citable
    fast = failure_record("wide_fast", 4)  # LBBB at 126 bpm
    m = measure_record(as_record(fast.signal_mv, fast.record_id))
    assert m.record_row["qrs_conf"] >= CONFIDENCE_MIN, m.confidences.intervals["qrs"].checks
    noisy = generate_record(SynthParams(
        hr_bpm=71.5, pr_ms=122.5, qrs_ms=75.3, qt_ms=353.9, qrs_axis_deg=13.1, rhythm="atrial_fibrillation",
        pvc_count=3, st_shift_mv=0.206, low_voltage=True, qrs_scale=1.047, rr_variability=0.0213, af_rr_cv=0.149,
        f_wave_mv=0.07, baseline_wander_mv=0.162, mains_hum_mv=0.031, emg_noise_mv=0.02), 651)
    m = measure_record(as_record(noisy.signal_mv, "noisy_af"))
    from features.qrs_edges import synthetic_reading_intervals  # noqa: PLC0415
    qrs = synthetic_reading_intervals(None, noisy.truth.qrs_ms, None)[1]
    if m.record_row["qrs_conf"] >= CONFIDENCE_MIN:
        assert abs(m.record_row["qrs_ms"] - qrs) <= TOLERANCE_MS["qrs"], (m.record_row["qrs_ms"], qrs)


def test_a_narrow_qrs_of_paced_beats_is_not_citable():
    # biventricular pacing at 134 bpm: the QRS window of the paced beats was read 44 ms for a true 156 and cited
    # (confidence 0.9); a paced QRS spreads from the stimulus through the myocardium and is never that narrow
    syn = generate_record(SynthParams(
        hr_bpm=134.4882, pr_ms=140.2475, qrs_ms=155.8882, qt_ms=265.8882, qrs_axis_deg=-64.8603,
        rhythm="sinus_tachycardia", pacing="biventricular", pacing_spike_mv=1.7922, pacing_latency_ms=13.452,
        qrs_scale=0.8472, rr_variability=0.0, baseline_wander_mv=0.2265, mains_hum_mv=0.0047, emg_noise_mv=0.0136), 3)
    m = measure_record(as_record(syn.signal_mv, "biv_fast"))
    row = m.record_row
    assert row["n_paced"] > row["n_beats"] / 2
    if row["qrs_conf"] >= CONFIDENCE_MIN:
        assert abs(row["qrs_ms"] - syn.truth.qrs_ms) <= 1.5 * TOLERANCE_MS["qrs"], (row["qrs_ms"], syn.truth.qrs_ms)
    assert row["qrs_ms"] >= 100.0 or row["qrs_conf"] < CONFIDENCE_MIN


@pytest.mark.parametrize("seed,kw", [
    (74, dict(hr_bpm=69.9, qrs_ms=80.1, qt_ms=368.8, qrs_axis_deg=-50.5, qrs_scale=0.839, af_rr_cv=0.134,
              baseline_wander_mv=0.134)),
    (579, dict(hr_bpm=95.9, qrs_ms=79.9, qt_ms=325.3, qrs_axis_deg=18.8, qrs_scale=1.107, af_rr_cv=0.214,
               f_wave_mv=0.026, baseline_wander_mv=0.25, mains_hz=60)),
])
def test_fibrillation_that_varies_little_over_ten_seconds_hides_no_p_in_its_t(seed, kw):
    # AF whose RR SD over the record is only 7-10% of the mean (benchmarks/features.py records 74 and 579) still
    # changes the RR from beat to beat (successive differences 9-14%): no sinus P hides in its T, and its true QT
    # stays citable; a P hidden in the T of a sinus rhythm (successive differences under 6%) is still found out
    syn = generate_record(SynthParams(rhythm="atrial_fibrillation", **kw), seed)
    m = measure_record(as_record(syn.signal_mv, f"af{seed}"))
    checks = m.confidences.intervals["qt"].checks
    assert "hidden_p" not in checks, checks
    from features.qrs_edges import synthetic_reading_intervals  # noqa: PLC0415
    qt = synthetic_reading_intervals(None, None, syn.truth.qt_ms)[2]
    assert m.record_row["qt_conf"] >= CONFIDENCE_MIN and abs(m.record_row["qt_ms"] - qt) <= TOLERANCE_MS["qt"]
    hidden = [failure_record("avb1_p_in_t", s) for s in range(4)]
    flagged = [measure_record(as_record(h.signal_mv, h.record_id)).confidences.intervals["qt"].checks for h in hidden]
    assert sum("hidden_p" in c for c in flagged) >= 3, flagged


@pytest.mark.parametrize("seed,kw", [
    (30, dict(hr_bpm=121.6427, pr_ms=176.5614, qrs_ms=156.2314, qt_ms=276.6866, qrs_axis_deg=-50.5308,
              pacing="biventricular", pacing_spike_mv=1.4982, pacing_latency_ms=24.6876, qrs_scale=0.978,
              baseline_wander_mv=0.0275, emg_noise_mv=0.0022)),
    (8, dict(hr_bpm=112.4853, pr_ms=145.8563, qrs_ms=161.0084, qt_ms=307.5305, qrs_axis_deg=-50.1762,
             pacing="ventricular", pacing_spike_mv=2.8092, pacing_latency_ms=19.6312, qrs_scale=0.8328,
             baseline_wander_mv=0.2093, mains_hum_mv=0.0181, emg_noise_mv=0.0186)),
])
def test_a_qrs_window_wider_than_any_qrs_leaves_the_qt_not_citable(seed, kw):
    # paced at 112-122 bpm: the QRS window took in the ST-T (QRS ~300 ms for 156-161) and the T end found after it
    # was another wave's (QT +48 / +95 ms, cited at confidence 1); the QT is as unsure as the QRS window is too wide
    syn = generate_record(SynthParams(rhythm="sinus_tachycardia", rr_variability=0.0, **kw), seed)
    row = measure_record(as_record(syn.signal_mv, f"paced{seed}")).record_row
    from features.qrs_edges import synthetic_reading_intervals  # noqa: PLC0415
    qt = synthetic_reading_intervals(None, None, syn.truth.qt_ms, paced=True)[2]
    if row["qt_conf"] >= CONFIDENCE_MIN:
        assert abs(row["qt_ms"] - qt) <= TOLERANCE_MS["qt"], (row["qt_ms"], qt, row["qrs_ms"])
    if row["qrs_ms"] > 250.0:
        assert row["qt_conf"] < CONFIDENCE_MIN


def test_a_median_beat_that_too_few_beats_took_is_checked_against_every_beat_it_speaks_for():
    """The beats check compares each beat alone with the median beat over the beats that took its fiducials; with
    fewer than three of them it said nothing, and a median beat 24 ms wider than every beat alone gave its QRS to
    the record at confidence 1 (a 6 s window of LUDB 1: 106 ms cited for the experts' 82). Now every beat the
    record's value comes from is compared. Real delineation of a synthetic sinus bradycardia; then two beats only
    are made to carry a median beat 24 ms wider than before."""
    from features.confidence import record_confidences
    from features.measure import delineate_record

    syn = generate_record(SynthParams(hr_bpm=46, rhythm="sinus_bradycardia", duration_s=6.0), 0)
    d = delineate_record(as_record(syn.signal_mv, "brady"))
    fid = d.fid
    nb = fid.r.size
    dom = np.ones(nb, dtype=bool)
    values = {"pr_ms": syn.truth.pr_ms, "qrs_ms": syn.truth.qrs_ms, "qt_ms": syn.truth.qt_ms}
    rr_ms = 60000.0 / 46

    def qrs_checks():
        c = record_confidences(fid, d.good, d.clean.spikes, {}, dom, rr_ms, values, d.qrs_corr, d.fs_hz)
        return c.intervals["qrs"]

    assert fid.qrs_from_template.sum() >= 3
    assert qrs_checks().checks["beats"] < 0.5 * TOLERANCE_MS["qrs"]  # the beats agree with their median beat
    fid.qrs_from_template = np.zeros(nb, dtype=bool)
    fid.qrs_from_template[:2] = True
    fid.template_d_off = fid.template_d_off + 12  # 24 ms at 500 Hz
    ic = qrs_checks()
    assert ic.checks["beats"] >= 20.0 and ic.value < CONFIDENCE_MIN, ic.checks


def test_without_three_beats_of_one_qrs_there_is_no_median_beat_and_the_beats_spread_is_the_confidence():
    """A median beat taken over beats of different kinds (paced, fused, conducted: a 6 s window of LUDB 8) is no
    beat: its QRS ran 40 ms short in most leads. Where no three beats share a QRS (the correlation with the lead's
    median QRS under 0.9), each beat keeps its own delineation and the record's values are as sure as the beats
    they come from agree (beat_spread), and not citable where fewer than three beats read them (few_beats)."""
    from features.confidence import record_confidences
    from features.beats import detect_beats
    from features.delineate import delineate, delineate_with_template
    from features.signal import clean_leads

    syn = generate_record(SynthParams(hr_bpm=75.0), 2)
    cl = clean_leads(syn.signal_mv, 500.0)
    good = np.array([g is None for g in cl.gate])
    r = detect_beats(cl.clean, good, 500.0, cl.spikes)
    unlike = np.zeros((12, r.size))  # no beat's QRS like the median's
    fid = delineate_with_template(cl.clean, cl.spikes, good, r, 500.0, unlike, delineate(cl.clean, cl.spikes, good,
                                                                                           r, 500.0))
    assert fid.template is None and fid.qrs_from_template is None
    np.testing.assert_array_equal(fid.qrs_off, fid.beat_own["qrs_off"])
    values = {"pr_ms": syn.truth.pr_ms, "qrs_ms": syn.truth.qrs_ms, "qt_ms": syn.truth.qt_ms}
    every = np.ones(r.size, dtype=bool)
    c = record_confidences(fid, good, cl.spikes, {}, every, 800.0, values, unlike, 500.0)
    for k in ("pr", "qrs", "qt"):  # one sinus rhythm: its beats agree
        assert c.intervals[k].checks["beat_spread"] < 0.5 * TOLERANCE_MS[k] and "few_beats" not in c.intervals[k].checks
    # a value that fewer than three beats read on their own (here: none, 3 tolerances off each beat's reading)
    off = {f"{k}_ms": values[f"{k}_ms"] + 3 * TOLERANCE_MS[k] for k in ("pr", "qrs", "qt")}
    c = record_confidences(fid, good, cl.spikes, {}, every, 800.0, off, unlike, 500.0)
    for k in ("pr", "qrs", "qt"):
        assert c.intervals[k].value < CONFIDENCE_MIN and "few_beats" in c.intervals[k].checks, k


def test_af_with_ventricular_ectopics_in_noise_at_low_voltage_cites_its_qrs_true_or_not_at_all():
    # record 651 of benchmarks/features.py: no three beats shared a QRS, so no median beat; each beat's own QRS,
    # +21 ms, was cited at confidence 1 until the beats' spread became its confidence
    from features.qrs_edges import synthetic_reading_intervals

    p = SynthParams(hr_bpm=71.5, pr_ms=122.5, qrs_ms=75.3, qt_ms=353.9, qrs_axis_deg=13.1, rhythm="atrial_fibrillation",
                    pvc_count=3, st_shift_mv=0.206, low_voltage=True, qrs_scale=1.047, rr_variability=0.0213,
                    af_rr_cv=0.149, f_wave_mv=0.07, baseline_wander_mv=0.162, mains_hum_mv=0.031, emg_noise_mv=0.02)
    syn = generate_record(p, 651)
    row = measure_record(as_record(syn.signal_mv, "s651")).record_row
    _, qrs, qt = synthetic_reading_intervals(syn.truth.pr_ms, syn.truth.qrs_ms, syn.truth.qt_ms, paced=False)
    for k, truth in (("qrs", qrs), ("qt", qt)):
        assert row[f"{k}_ms"] is None or abs(row[f"{k}_ms"] - truth) <= TOLERANCE_MS[k] \
            or row[f"{k}_conf"] < CONFIDENCE_MIN, (k, row[f"{k}_ms"], truth, row[f"{k}_conf"])
