"""AV block (issue 14: LUDB holds 5 records with third-degree AV block, LUDB 90 among the shared ones): the generator
draws it with exact truth (``pipeline.synthetic_avblock``), the measurement finds the P waves dissociated from the
QRS (``features.av_dissociation``), counts only the QRS complexes (``features.rate.atrial_sized``), publishes no
PR, and the writer says nothing false about P waves. Several records per kind, across their physiological range."""
from __future__ import annotations

import re

import numpy as np
import polars as pl
import pytest

from features import measure_record
from features.confidence import TOLERANCE_MS
from features.measure import as_record
from features.qrs_edges import synthetic_reading_intervals
from features.schema import CONFIDENCE_MIN
from pipeline.synthetic import generate_record, random_params
from pipeline.synthetic_cases import failure_record
from pipeline.synthetic_params import SynthParams

CHB = ("chb_junctional", "chb_ventricular", "chb_paced")
SEEDS = range(6)


@pytest.fixture(scope="module")
def measured() -> dict:
    out = {}
    for name in CHB + ("avb2_2to1",):
        for seed in SEEDS:
            syn = failure_record(name, seed)
            out[(name, seed)] = (syn, measure_record(as_record(syn.signal_mv, syn.record_id)))
    return out


@pytest.mark.parametrize("name", CHB)
def test_complete_block_truth_has_every_p_wave_and_the_ventricular_rate(name):
    for seed in SEEDS:
        syn = failure_record(name, seed)
        t, p = syn.truth, syn.params
        assert t.pr_ms is None and "3AVB" in t.scp_codes
        beats = syn.beats.filter(pl.col("lead") == "II")
        assert beats["p_on_ms"].null_count() == beats.height  # no P belongs to a QRS
        # the sinus P waves at their own rate cover the record; the heart rate is the QRS complexes'
        pp = np.diff(syn.atrial_on_ms)
        assert abs(60000.0 / pp.mean() - p.atrial_rate_bpm) <= 0.05 * p.atrial_rate_bpm
        dur_ms = p.duration_s * 1000.0
        assert syn.atrial_on_ms.size >= int(dur_ms / (60000.0 / p.atrial_rate_bpm)) - 1
        assert abs(t.hr_bpm - p.hr_bpm) <= 0.05 * p.hr_bpm
        # the P waves fall everywhere in the cycle: before a QRS, in it, on the ST-T
        q_on = np.asarray(beats["qrs_on_ms"].to_list())
        phase = np.array([on - q_on[q_on <= on].max() for on in syn.atrial_on_ms if (q_on <= on).any()])
        assert np.ptp(phase) > 0.5 * 60000.0 / p.hr_bpm, (seed, phase)


@pytest.mark.parametrize("name", CHB)
def test_no_pr_under_av_dissociation_and_the_rate_is_the_ventricles(measured, name):
    # the P-QRS relation changes from beat to beat while the PP stays regular: a PR read off the P nearest each QRS,
    # or off the median beat where several beats happen to have one at a similar distance, is no conduction time
    # (before: PR 123 and 406 ms cited, the P waves counted as beats: heart rate 87 for 37, 86 for 61)
    detected = 0
    for seed in SEEDS:
        syn, m = measured[(name, seed)]
        row = m.record_row
        assert row["n_beats"] == syn.truth.n_beats or abs(row["hr_bpm"] - syn.truth.hr_bpm) <= 1.0
        assert row["hr_conf"] >= CONFIDENCE_MIN and abs(row["hr_bpm"] - syn.truth.hr_bpm) <= 5.0, (seed, row["hr_bpm"])
        assert row["pr_ms"] is None or row["pr_conf"] < CONFIDENCE_MIN, (seed, row["pr_ms"], row["uncertain"])
        if not row["av_dissociation"]:
            # an atrial rate near twice the escape rate (chb_ventricular 4: 90 and 43 /min) drifts a few ms a beat:
            # left undecided, and the P the window cut is no PR (window_edge)
            continue
        detected += 1
        assert row["p_waves_present"] is False and row["pr_ms"] is None
        beats = m.beats.filter(pl.col("lead") == "II")
        assert beats["p_on_ms"].null_count() == beats.height
    assert detected >= len(SEEDS) - 1, detected


@pytest.mark.parametrize("name", CHB)
def test_qrs_and_qt_are_true_where_citable_with_p_waves_through_them(measured, name):
    # the dissociated P waves land on the T end, in the QRS, on the ST: the median beat leaves them out; at
    # 25-45 bpm (ventricular escape) only 4-7 beats make it. Both stay citable (the P waves are not hidden in the
    # T: QT hidden_p does not apply) and true
    citable = 0
    for seed in SEEDS:
        syn, m = measured[(name, seed)]
        row, t = m.record_row, syn.truth
        read = dict(zip(("pr", "qrs", "qt"), synthetic_reading_intervals(t.pr_ms, t.qrs_ms, t.qt_ms,
                                                                          paced=syn.params.pacing != "none")))
        for key in ("qrs", "qt"):
            if row[f"{key}_ms"] is None or row[f"{key}_conf"] < CONFIDENCE_MIN:
                continue
            citable += 1
            assert abs(row[f"{key}_ms"] - read[key]) <= TOLERANCE_MS[key], (seed, key, row[f"{key}_ms"], read[key])
            if key == "qt":  # the broad QRS's end is read late like an LBBB's (test_failure_classes: OPEN)
                assert abs(row[f"{key}_ms"] - getattr(t, f"{key}_ms")) <= TOLERANCE_MS[key], (seed, key)
    assert citable >= 0.9 * 2 * len(SEEDS), citable


def test_two_to_one_block_keeps_its_pr_and_counts_no_blocked_p():
    # 2:1 block conducts every second P with a fixed PR: the PR is measurable and true, the blocked P (locked to the
    # QRS as well) is no dissociation and no beat
    for seed in SEEDS:
        syn = failure_record("avb2_2to1", seed)
        row = measure_record(as_record(syn.signal_mv, syn.record_id)).record_row
        assert row["av_dissociation"] is False and row["n_beats"] == syn.truth.n_beats
        assert row["pr_conf"] >= CONFIDENCE_MIN and abs(row["pr_ms"] - syn.truth.pr_ms) <= TOLERANCE_MS["pr"]


def test_no_av_dissociation_in_sinus_rhythm_or_fibrillation():
    # sinus rhythm (its P locked to the QRS, in the median beat), PVCs, PACs, first-degree block, fibrillation
    rng = np.random.default_rng(14)
    for i in range(60):
        syn = generate_record(random_params(rng), seed=i)
        row = measure_record(as_record(syn.signal_mv, f"r{i}")).record_row
        assert row["av_dissociation"] is False, (i, syn.truth.scp_codes)
    for name in ("avb1_pac", "avb1_p_on_t", "flutter_ivcd", "af_demand_paced", "rv_paced"):
        for seed in range(3):
            syn = failure_record(name, seed)
            assert measure_record(as_record(syn.signal_mv, syn.record_id)).record_row["av_dissociation"] is False


def test_small_premature_beats_stay_beats():
    # a premature ventricular beat half the size of the QRS (synthetic, seed 1398 of the benchmark's draw) is not
    # taken for a P wave: it leaves a pause behind, the beats left would not be regular
    for seed in range(6):
        syn = generate_record(SynthParams(hr_bpm=73.0, pvc_count=2, qrs_ms=75.0, qt_ms=367.0, qrs_axis_deg=16.0), seed)
        row = measure_record(as_record(syn.signal_mv, f"pvc{seed}")).record_row
        assert row["n_beats"] == syn.truth.n_beats, (seed, row["n_beats"], syn.truth.n_beats)


def test_the_writer_says_nothing_false_about_dissociated_p_waves():
    from pipeline.context import measure_context
    from pipeline.knowledge import load_knowledge
    from pipeline.validate import validate_answer
    from pipeline.writer import write, write_answer

    kb = load_knowledge()
    for name in CHB:
        for seed in range(3):
            syn = failure_record(name, seed)
            ctx = measure_context(as_record(syn.signal_mv, syn.record_id))
            ctx.statement_ids = ["SR", "3AVB"] + (["PACE"] if syn.params.pacing != "none" else [])
            for s in range(3):
                a = write(ctx, seed=s, kb=kb)
                assert not [c for c in a.citations if c.column.startswith("pr")], a.text
                assert not re.search(r"P wave (?:before|ahead of) (?:every|each)|preceded by a P|\b1:1\b", a.text), a.text
                assert re.search(r"P waves that (?:run|march through) at their own rate", a.text), a.text
                assert "PR" not in re.sub(r"(?i)no measurable PR interval", "", a.text), a.text
                assert validate_answer(write_answer(ctx, seed=s, kb=kb), ctx, kb=kb).accepted


def test_ludb_90_paced_complete_block_keeps_no_pr():
    # LUDB 90: sinus P waves dissociated from a ventricular pacemaker (III degree AV block)
    from conftest import shared_path
    from pipeline.sources.ludb import LudbSource

    row = measure_record(LudbSource(shared_path("data", "ludb")).read("90")).record_row
    assert row["av_dissociation"] is True and row["p_waves_present"] is False and row["pr_ms"] is None


def test_two_to_one_block_qt_is_not_read_to_a_blocked_p_found_on_the_t():
    # 2:1 block at 40-55 bpm: the blocked P can start inside the T's end, which then was read to the P's end (QT +40-45
    # ms, seeds 3 and 7). Where the median beat holds the conducted P's twin there (features.confidence:
    # blocked_p_onset) the QT is not citable; a blocked P fused with the T's steepest part still escapes it (seeds
    # 19, 25, 34 of 0-39: pipeline.synthetic_cases.OPEN_CLASSES)
    from features.blocked_p import blocked_p_onset
    from features.measure import delineate_record

    for seed in range(10):
        syn = failure_record("avb2_2to1", seed)
        rec = as_record(syn.signal_mv, syn.record_id)
        m = measure_record(rec)
        row = m.record_row
        if row["qt_conf"] >= CONFIDENCE_MIN:
            assert abs(row["qt_ms"] - syn.truth.qt_ms) <= TOLERANCE_MS["qt"], (seed, row["qt_ms"], syn.truth.qt_ms)
        d = delineate_record(rec)
        if seed in (3, 7):
            assert blocked_p_onset(d.fid, d.good, d.fs_hz) is not None and "qt_ms:blocked_p" in row["uncertain"]
    # no twin half an RR after the P in sinus rhythm
    rng = np.random.default_rng(21)
    for i in range(40):
        syn = generate_record(random_params(rng), seed=i)
        d = delineate_record(as_record(syn.signal_mv, f"s{i}"))
        assert blocked_p_onset(d.fid, d.good, d.fs_hz) is None, i


def test_the_qrst_residual_is_computed_once_and_is_the_one_dissociation_is_read_from(monkeypatch):
    """detect_flutter and detect_av_dissociation read the same median beat's residual: it is computed once per
    record (it was computed twice on every regular record), dissociation reads the same as from its own, and the
    residual is not kept on the measurement afterwards."""
    import features.av_dissociation as avd
    import features.flutter as ffl
    from features.measure import delineate_record

    calls = []
    real = ffl.qrst_residual

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    for name, seed in (("chb_junctional", 0), ("chb_ventricular", 1)):
        syn = failure_record(name, seed)
        monkeypatch.setattr(ffl, "qrst_residual", counting)
        monkeypatch.setattr(avd, "qrst_residual", counting)
        calls.clear()
        d = delineate_record(as_record(syn.signal_mv, syn.record_id))
        assert len(calls) == 1, name
        assert d.fid.flutter is not None and d.fid.flutter.residual is None
        monkeypatch.undo()
        own = avd.detect_av_dissociation(d.clean.clean, d.good, d.fid, d.fs_hz)
        assert own is not None and own.present, name
    syn = generate_record(SynthParams(hr_bpm=72.0), seed=3)
    monkeypatch.setattr(ffl, "qrst_residual", counting)
    monkeypatch.setattr(avd, "qrst_residual", counting)
    calls.clear()
    delineate_record(as_record(syn.signal_mv, "sinus"))
    assert len(calls) == 1
