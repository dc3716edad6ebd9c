"""Beat-level measurements on synthetic records with known truth, formulas on hand-computed cases, export."""
from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from features import featuredb_rows, frontal_axis_deg, measure_record, qtc_bazett_ms, qtc_framingham_ms, \
    qtc_fridericia_ms, qtc_hodges_ms
from features.featuredb import FEATUREDB_SCHEMA
from features.measure import as_record
from features.qrs_edges import synthetic_reading, synthetic_reading_beats, synthetic_reading_intervals
from features.schema import BEATS_SCHEMA, RECORDS_SCHEMA
from pipeline.record import LEADS
from pipeline.synthetic import generate_record
from pipeline.synthetic_params import SynthParams


def match_truth(truth: pl.DataFrame, beats: pl.DataFrame) -> pl.DataFrame:
    """Join truth and detected rows per lead on the nearest QRS onset (beat numbering may differ at edges)."""
    det = beats.filter(pl.col("qrs_on_ms").is_not_null()).sort("lead", "qrs_on_ms")
    tru = truth.sort("lead", "qrs_on_ms")
    return tru.join_asof(det, on="qrs_on_ms", by="lead", strategy="nearest", tolerance=60.0, suffix="_d",
                          check_sortedness=False) \
        .filter(pl.col("beat_d").is_not_null())


CASES = {
    "normal": dict(),
    "brady": dict(hr_bpm=50, qt_ms=440),
    "tachy": dict(hr_bpm=110, qt_ms=320, pr_ms=140),
    "rbbb": dict(qrs_ms=140, bundle_branch_block="right"),
    "lbbb_lad": dict(qrs_ms=150, bundle_branch_block="left", qrs_axis_deg=-30),
    "st_elevation": dict(st_shift_mv=0.3),
    "long_pr_rad": dict(pr_ms=260, qrs_axis_deg=110),
}


@pytest.mark.parametrize("case", list(CASES))
def test_synthetic_fiducials_within_10ms(case):
    params = SynthParams(**CASES[case])
    synth = generate_record(params, seed=3, record_id=case)
    m = measure_record(as_record(synth.signal_mv, case))
    assert m.beats.columns == list(BEATS_SCHEMA) and m.beats.dtypes == list(BEATS_SCHEMA.values())
    # what we publish follows the clinicians' reading of the QRS edges (features.qrs_edges: on LUDB the detector
    # sits a median 4 ms after the experts' onset and 2 ms before their end, and the published edges are moved by
    # those fitted margins). The generator's edges are defined otherwise: a kink from exactly zero amplitude, a
    # corner no real QRS has, which the detector (through the 0.5-40 Hz cleaning) already finds 4 ms outside.
    # So the published fiducials are compared with the truth moved by the same margins (same tolerances as
    # before the convention), the detector's own edges with the bare truth
    # (test_detector_edges_against_the_bare_truth), and every citable value with the bare truth within the cited
    # tolerance (tests/test_failure_classes.py)
    truth = synthetic_reading_beats(synth.beats)
    pr_t, qrs_t, qt_t = synthetic_reading_intervals(synth.truth.pr_ms, synth.truth.qrs_ms, synth.truth.qt_ms)
    j = match_truth(truth, m.beats)
    assert j["beat"].n_unique() >= synth.truth.n_beats - 1
    # on/offsets are global (all leads; P onsets and ends per lead: below), so every lead must be within 10 ms of
    # the truth
    for col in ["p_on_ms", "p_off_ms", "qrs_on_ms", "qrs_off_ms", "t_off_ms", "p_peak_ms", "r_peak_ms"]:
        col_d = "qrs_on_ms" if col == "qrs_on_ms" else col + "_d"
        if col == "qrs_on_ms":
            continue  # the join key itself: checked below through qrs_ms
        has_truth = j.filter(pl.col(col).is_not_null())
        err = (has_truth[col_d] - has_truth[col]).drop_nulls().abs()
        assert err.len() >= 0.9 * has_truth.height, (case, col, err.len(), has_truth.height)
        if col == "r_peak_ms":  # a lead with two near-equal opposite deflections has an ambiguous peak
            assert (err <= 10.0).mean() >= 0.9, (case, col, err.max())
        elif col == "p_off_ms":
            # P ends are per lead: a lead perpendicular to the last atrial forces ends earlier than the global
            # truth (never later), and the latest lead ends where the truth does
            signed = has_truth[col_d] - has_truth[col]
            assert signed.max() <= 10.0 and signed.min() >= -30.0, (case, col, signed.min(), signed.max())
            latest = has_truth.group_by("beat").agg((pl.col(col_d) - pl.col(col)).max().alias("e"))["e"]
            assert latest.abs().max() <= 10.0, (case, col, latest.to_list())
        elif col == "p_on_ms":
            # P onsets are per lead: a lead perpendicular to the first atrial forces starts later than the global
            # truth, and the earliest lead starts where the truth does
            signed = has_truth[col_d] - has_truth[col]
            assert signed.min() >= -10.0 and signed.max() <= 30.0, (case, col, signed.min(), signed.max())
            earliest = has_truth.group_by("beat").agg((pl.col(col_d) - pl.col(col)).min().alias("e"))["e"]
            assert earliest.abs().max() <= 10.0, (case, col, earliest.to_list())
        else:
            assert err.max() <= 10.0, (case, col, err.max())
    row = m.record_row
    assert set(row) == set(RECORDS_SCHEMA)
    assert abs(row["qrs_ms"] - qrs_t) <= 12.0
    assert abs(row["qt_ms"] - qt_t) <= 12.0
    assert abs(row["pr_ms"] - pr_t) <= 10.0
    assert abs(row["hr_bpm"] - synth.truth.hr_bpm) <= 2.0
    assert abs(row["qrs_axis_deg"] - synth.truth.qrs_axis_deg) <= 5.0
    assert row["p_waves_present"] is True
    assert row["leads_ok"] == 12 and row["leads_gated"] == ""
    assert set(m.beats["lead_quality"].unique()) == {"ok"}


@pytest.mark.parametrize("case", ["normal", "rbbb", "long_pr_rad"])
def test_detector_edges_against_the_bare_truth(case):
    # the detector alone (no reading convention) against the generator's exact QRS edges; the published edges
    # lie exactly the convention's margins outside it
    synth = generate_record(SynthParams(**CASES[case]), seed=3, record_id=case)
    rec = as_record(synth.signal_mv, case)
    bare, read = measure_record(rec, reading_convention=False), measure_record(rec)
    j = match_truth(synth.beats, bare.beats)
    assert j.height >= 0.9 * synth.beats.height
    err = (j["qrs_off_ms_d"] - j["qrs_off_ms"]).drop_nulls()
    assert err.abs().max() <= 10.0, err.to_list()
    assert abs(bare.record_row["qrs_ms"] - synth.truth.qrs_ms) <= 12.0
    on, off = synthetic_reading(0.0, 0.0)
    both = bare.beats.select("qrs_on_ms", "qrs_off_ms").rename({"qrs_on_ms": "b_on", "qrs_off_ms": "b_off"}) \
        .hstack(read.beats.select("qrs_on_ms", "qrs_off_ms", "beat_class", "st_j_mv")).drop_nulls(["b_on", "qrs_on_ms"])
    assert ((both["qrs_on_ms"] - both["b_on"]) == on).all() and ((both["qrs_off_ms"] - both["b_off"]) == off).all()
    # the convention moves timing, never an amplitude: the J point stays the detected end and the isoelectric level
    # stays before the detected onset, so ST levels and P / T amplitudes are the detector's to the last digit
    for col in ("st_j_mv", "st_j60_mv", "p_amp_mv", "t_amp_mv"):
        d = (bare.beats[col] - read.beats[col]).drop_nulls().abs()
        assert d.len() > 0 and d.max() == 0.0, (col, d.max())
    assert read.record_row["qrs_ms"] == pytest.approx(bare.record_row["qrs_ms"] + off - on)
    assert read.record_row["pr_ms"] == pytest.approx(bare.record_row["pr_ms"] + on)


def test_morphology_names_rbbb_rsr_prime_in_v1():
    synth = generate_record(SynthParams(qrs_ms=140, bundle_branch_block="right"), seed=3)
    m = measure_record(as_record(synth.signal_mv))
    v1 = m.beats.filter((pl.col("lead") == "V1") & (pl.col("beat_class") == "normal"))["qrs_morphology"]
    assert v1.str.ends_with("'").mean() > 0.8, v1.to_list()  # rsR' / rSR' family
    v1_row = m.beats.filter(pl.col("lead") == "V1").row(3, named=True)
    assert v1_row["r_prime_amp_mv"] is not None and v1_row["r_prime_amp_mv"] > 0


def test_st_elevation_and_inverted_t_are_measured():
    synth = generate_record(SynthParams(st_shift_mv=0.3, st_territory="anterior"), seed=5)
    m = measure_record(as_record(synth.signal_mv))
    truth = synth.beats.group_by("lead").agg(pl.col("st_j60_mv").median())
    ours = m.beats.group_by("lead").agg(pl.col("st_j60_mv").median().alias("ours"))
    j = truth.join(ours, on="lead")
    assert (j["ours"] - j["st_j60_mv"]).abs().max() < 0.06, j
    synth = generate_record(SynthParams(t_inversion="lateral"), seed=5)
    m = measure_record(as_record(synth.signal_mv))
    forms = m.beats.filter(pl.col("lead").is_in(synth.truth.t_inversion_leads)).group_by("lead") \
        .agg(pl.col("t_form").mode().first())
    assert set(forms["t_form"]) <= {"negative", "biphasic"} and forms.height == len(synth.truth.t_inversion_leads)


def test_af_has_no_p_waves_and_pvcs_are_premature():
    synth = generate_record(SynthParams(rhythm="atrial_fibrillation"), seed=11)
    m = measure_record(as_record(synth.signal_mv))
    assert m.record_row["p_waves_present"] is False
    assert m.record_row["pr_ms"] is None and m.record_row["p_axis_deg"] is None
    assert m.beats["p_on_ms"].is_null().all()
    assert m.record_row["rhythm_regular"] is False
    synth = generate_record(SynthParams(pvc_count=2), seed=12)
    m = measure_record(as_record(synth.signal_mv))
    truth_pvc = synth.beats.filter((pl.col("lead") == "II") & (pl.col("beat_class") != "normal"))
    ours = m.beats.filter(pl.col("lead") == "II")
    for q_on in truth_pvc["qrs_on_ms"]:
        near = ours.filter((pl.col("qrs_on_ms") - q_on).abs() < 60)
        assert near.height == 1 and near["beat_class"][0] == "premature", (q_on, near)
    assert m.record_row["n_premature"] == truth_pvc.height


def test_axis_formula_hand_cases():
    # I = E cos(t), aVF = sqrt(3)/2 E sin(t) in the hexaxial system
    for theta in (-90.0, -30.0, 0.0, 45.0, 60.0, 120.0, 179.0):
        t = math.radians(theta)
        assert frontal_axis_deg(math.cos(t), math.sqrt(3) / 2 * math.sin(t)) == pytest.approx(theta, abs=1e-9)
    # equal net amplitudes in I and aVF: atan2(2/sqrt(3), 1) = 49.1 deg, not 45
    assert frontal_axis_deg(1.0, 1.0) == pytest.approx(49.1066, abs=1e-3)
    assert frontal_axis_deg(-1.0, 0.0) == 180.0
    assert frontal_axis_deg(0.0, 0.0) is None


def test_qtc_formulas_hand_cases():
    assert qtc_bazett_ms(400.0, 1000.0) == pytest.approx(400.0)
    assert qtc_bazett_ms(360.0, 640.0) == pytest.approx(450.0)          # 360 / 0.8
    assert qtc_fridericia_ms(360.0, 729.0) == pytest.approx(400.0)      # 360 / 0.9
    assert qtc_framingham_ms(360.0, 600.0) == pytest.approx(421.6)      # 360 + 154 * 0.4
    assert qtc_hodges_ms(360.0, 600.0) == pytest.approx(430.0)          # 360 + 1.75 * 40


def test_featuredb_rows_time_ordered_and_no_gated_leads():
    synth = generate_record(SynthParams(st_shift_mv=0.2), seed=2)
    sig = synth.signal_mv.copy()
    sig[9] = 0.0  # V4 dead
    m = measure_record(as_record(sig))
    f = featuredb_rows(m.beats)
    assert list(f.schema) == list(FEATUREDB_SCHEMA)
    assert "V4" not in set(f["lead"]) and f["lead"].n_unique() == 11
    assert f["lead"].unique(maintain_order=True).to_list()[:3] == ["I", "II", "III"]
    for _, g in f.group_by("lead"):
        assert g["time_ms"].is_sorted()
    row = f.filter((pl.col("lead") == "II") & (pl.col("beat") == 3)).row(0, named=True)
    src = m.beats.filter((pl.col("lead") == "II") & (pl.col("beat") == 3)).row(0, named=True)
    assert row["hr_bpm"] == pytest.approx(60000.0 / src["rr_ms"])
    assert row["qt_ms"] == src["qt_ms"] and row["pr_ms"] == src["pr_ms"]
    assert row["st_form"] in {"elevated", "depressed", "isoelectric"}


@pytest.fixture(scope="module")
def noise_free():
    """The default synthetic record without noise (seed 3) and its measurement, shared by the per-lead tests."""
    synth = generate_record(SynthParams(emg_noise_mv=0.0), seed=3)
    return synth, measure_record(as_record(synth.signal_mv, "noise_free"))


def lead_errors(synth, m, col: str, lead: str) -> np.ndarray:
    """Each beat's ``col`` in ``lead`` minus the nearest true (global, lead II) value of the generator (ms)."""
    truth = np.sort(synth.beats.filter(pl.col("lead") == "II")[col].drop_nulls().to_numpy())
    v = m.beats.filter(pl.col("lead") == lead)[col].drop_nulls().to_numpy()
    assert v.size >= 5
    return np.array([x - truth[np.argmin(np.abs(truth - x))] for x in v])


def test_per_lead_p_onsets_follow_each_leads_own_p_wave(noise_free):
    # noise-free default record: aVL is near-perpendicular to the first (right-atrial) forces, its P rises
    # above 0.01 mV only ~12 ms after the global onset (II: ~4 ms)
    synth, m = noise_free

    def err(lead):
        return lead_errors(synth, m, "p_on_ms", lead)

    e_ii = np.median(err("II"))
    assert abs(e_ii) <= 8.0
    assert np.median(err("aVL")) >= e_ii + 10.0
    # the record's PR stays the global one (earliest lead), each lead's PR is its own
    ii = m.beats.filter((pl.col("lead") == "II") & pl.col("pr_ms").is_not_null())
    avl = m.beats.filter((pl.col("lead") == "aVL") & pl.col("pr_ms").is_not_null())
    assert np.median(avl["pr_ms"].to_numpy()) <= np.median(ii["pr_ms"].to_numpy()) - 10.0
    assert abs(m.record_row["pr_ms"] - synth.truth.pr_ms) <= 10.0


def test_per_lead_p_ends_follow_each_leads_own_p_wave(noise_free):
    # noise-free default record: the P ends ~30 ms before the global end in III and ~18 ms before it in V3
    # (those leads are near-perpendicular to the last atrial forces); V2's biphasic P ends, as LUDB's
    # experts end V1-V2's, where its (smaller) negative phase stops falling, before the truth (the end of
    # the dipole), where that phase has slowly returned to the PR level
    synth, m = noise_free

    def err(lead):
        return lead_errors(synth, m, "p_off_ms", lead)

    e_ii = np.median(err("II"))
    assert abs(e_ii) <= 8.0
    assert np.median(err("III")) <= e_ii - 10.0 and np.median(err("V3")) <= e_ii - 10.0
    assert np.median(err("V2")) <= e_ii - 10.0 and err("V2").min() >= -30.0


def test_negative_phase_trough_of_biphasic_p():
    from features.lead_edges import _negative_phase_trough
    t = np.arange(60, dtype=float)
    bump = lambda c, a: a * np.exp(-0.5 * ((t - c) / 5.0) ** 2)  # noqa: E731
    # +/- P: the trailing trough when the negative phase is at most twice the positive one
    assert _negative_phase_trough(bump(20, 0.05) + bump(40, -0.06), 0.0, 0.0, first=False) == 40
    assert _negative_phase_trough(bump(20, 0.02) + bump(40, -0.06), 0.0, 0.0, first=False) is None
    # -/+ P: the leading trough; a +/- P has none
    assert _negative_phase_trough(bump(20, -0.04) + bump(40, 0.06), 0.0, 0.0, first=True) == 20
    assert _negative_phase_trough(bump(20, 0.05) + bump(40, -0.06), 0.0, 0.0, first=True) is None
    # a monophasic P on a baseline that steps down by 0.02 mV across it is no biphasic P
    step = np.where(t > 30, -0.02, 0.0)
    assert _negative_phase_trough(bump(20, 0.05) + step, 0.0, -0.02, first=False) is None


def test_small_p_has_its_own_onset():
    from features.lead_edges import lead_p_onsets
    t = np.arange(400)

    def p(start, dur, amp):  # a P wave from ``start`` over ``dur`` samples (500 Hz)
        s = t - start
        return np.where((s >= 0) & (s < dur), amp * np.sin(np.pi * np.clip(s, 0, dur) / dur) ** 1.5, 0.0)

    # global onset at sample 100; a 0.02 mV P (below the 0.03 mV flat-P threshold) 20 ms later keeps its own
    # onset, a 0.005 mV one (not visible) the global one (NaN)
    beat = np.vstack([p(100, 50, 0.15), p(110, 40, 0.02), p(100, 50, 0.005)])
    on = lead_p_onsets(beat, np.ones(3, bool), 100, 125, 150, 500.0)
    assert abs(on[0] - 100) <= 2 and abs(on[1] - 110) <= 2 and np.isnan(on[2])


def test_lead_p_rise_times_on_a_half_sine_p():
    from features.lead_edges import lead_p_rise_ms
    fs = 500.0
    beat = np.zeros((3, 300))
    t_ms = np.arange(100) * 2.0  # a 200 ms half-sine P starting 10 ms (5 samples) after the global onset
    p = np.sin(np.pi * t_ms / 200.0)
    beat[0, 105:205] = 0.1 * p
    beat[1, 105:205] = -0.05 * p  # a negative P rises alike
    good = np.array([True, True, False])
    rise = lead_p_rise_ms(beat, good, 100, 220, fs)
    # sin reaches 1/4 at 16.1 ms and 1/2 at 33.3 ms of a 200 ms half-sine; +10 ms, to the next 2 ms sample
    for i in (0, 1):
        assert 26.0 <= rise[i, 0] <= 28.0 and 43.0 <= rise[i, 1] <= 45.0
    assert np.isnan(rise[2]).all()


def test_p_onset_fit_is_chosen_by_name_or_environment(monkeypatch, tmp_path):
    import json

    from features import lead_edges as D
    doc = json.loads(D.P_ONSET_FIT_PATH.read_text())
    assert D.p_onset_fit("none") is None
    for name in ("all", "fold0", "fold4"):
        fit = D.p_onset_fit(name)
        assert list(fit.coef) == doc["fits"][name]["coef"] and fit.intercept_ms == doc["fits"][name]["intercept_ms"]
    monkeypatch.setenv(D.P_ONSET_FIT_ENV, "fold2")
    assert D.p_onset_fit() == D.p_onset_fit("fold2") != D.p_onset_fit("all")
    monkeypatch.setenv(D.P_ONSET_FIT_ENV, "twelve")
    with pytest.raises(ValueError, match="unknown P-onset fit 'twelve'.*ECG_GROUNDING_P_ONSET_FIT"):
        D.p_onset_fit()
    # a fit made for other inputs than the code computes is refused, not silently misapplied
    stale = tmp_path / "fit.json"
    stale.write_text(json.dumps({**doc, "features": ["rule_ms", "rise50_ms"]}))
    monkeypatch.setattr(D, "P_ONSET_FIT_PATH", stale)
    with pytest.raises(ValueError, match="fit_p_onset"):
        D.p_onset_fit("all")
    # clipped to +-LEAD_P_ON_FIT_MAX_MS; a gated lead (NaN inputs) stays NaN
    fit = D.POnsetFit(coef=(1.0, 0.0, 1.0), intercept_ms=0.0)
    out = fit.onset_ms(np.array([[10.0, 0.0, 50.0], [-5.0, 0.0, 2.0], [np.nan] * 3]))
    assert out[0] == D.LEAD_P_ON_FIT_MAX_MS and out[1] == -3.0 and np.isnan(out[2])


def test_learned_p_onsets_are_what_the_beats_table_carries(noise_free, monkeypatch):
    # each lead's P onset = global onset + the fit's onset from that lead's median-beat inputs; with the fit
    # switched off ("none") it is the rule's (aVL: its own knee; II: near the global onset)
    from features import lead_edges as D
    from features.measure import delineate_record
    synth, m = noise_free
    rec = as_record(synth.signal_mv, "noise_free")
    d = delineate_record(rec)
    k = int(np.flatnonzero(d.fid.p_from_template)[2])
    to_ms = 1000.0 / d.fs_hz
    # on the sample grid (2 ms at 500 Hz), as every fiducial
    want = (d.fid.p_on[k] + np.round(D.p_onset_fit("all").onset_ms(d.fid.lead_p_on_features) / to_ms)) * to_ms
    got = m.beats.filter(pl.col("beat") == k)
    for i, lead in enumerate(LEADS):
        assert got.filter(pl.col("lead") == lead)["p_on_ms"][0] == pytest.approx(want[i], abs=1e-6)
    monkeypatch.setenv(D.P_ONSET_FIT_ENV, "none")
    rule = measure_record(rec).beats.filter(pl.col("beat") == k)
    rule_ms = d.fid.p_on[k] * to_ms + d.fid.lead_p_on_features[:, 0]
    for i, lead in enumerate(LEADS):
        assert rule.filter(pl.col("lead") == lead)["p_on_ms"][0] == pytest.approx(rule_ms[i], abs=1e-6)
