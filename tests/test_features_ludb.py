"""Regression guard on real LUDB records (loose thresholds; benchmarks/ludb.py is the benchmark)."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from conftest import shared_path

from features import measure_record
from pipeline.record import LEADS
from pipeline.sources import open_source


@pytest.fixture(scope="module")
def ludb():
    return open_source("ludb", shared_path("data", "ludb"))


@pytest.mark.parametrize("record_id", ["2", "100"])  # sinus rhythm records
def test_ludb_sinus_record_matches_expert_annotation(ludb, record_id):
    rec = ludb.read(record_id)
    m = measure_record(rec)
    ref = rec.meta.reference
    assert m.record_row["leads_ok"] == 12
    assert m.record_row["p_waves_present"] is True and m.record_row["rhythm_regular"] is True
    assert abs(m.record_row["rr_mean_ms"] - ref.rr_ms) < 20
    # every annotated QRS in lead II is found, within 25 ms for its onset and 30 ms for its offset
    ours = m.beats.filter(pl.col("lead") == "II")
    qrs = [w for w in ref.waves if w.lead == "II" and w.wave == "QRS" and w.on_ms and w.off_ms]
    assert len(qrs) >= 5
    for w in qrs:
        near = ours.filter((pl.col("r_peak_ms") - w.peak_ms).abs() < 80)
        assert near.height == 1, w
        assert abs(near["qrs_on_ms"][0] - w.on_ms) <= 25 and abs(near["qrs_off_ms"][0] - w.off_ms) <= 30
    ts = [w for w in ref.waves if w.lead == "II" and w.wave == "T" and w.off_ms]
    t_err = [min(abs(t - w.off_ms) for t in ours["t_off_ms"].drop_nulls()) for w in ts]
    assert np.median(t_err) <= 30
    ps = [w for w in ref.waves if w.lead == "II" and w.wave == "P" and w.on_ms]
    p_err = [min(abs(t - w.on_ms) for t in ours["p_on_ms"].drop_nulls()) for w in ps]
    assert np.median(p_err) <= 25


def test_ludb_atrial_fibrillation_has_no_p_waves(ludb):
    rec = ludb.read("110")  # atrial fibrillation with a premature ventricular beat (ludb.csv)
    m = measure_record(rec)
    assert m.record_row["p_waves_present"] is False
    assert m.record_row["rhythm_regular"] is False
    assert m.beats["p_on_ms"].is_null().all()


@pytest.mark.parametrize("record_id", ["45", "90"])  # ventricular pacing (ludb.csv)
def test_ludb_paced_qrs_onset_follows_the_stimulus(ludb, record_id):
    # the blanked stimulus, smeared by the filters, used to pull the onset 20-35 ms before the experts'
    rec = ludb.read(record_id)
    m = measure_record(rec)
    ours = m.beats.filter(pl.col("lead") == "II")
    assert (ours["beat_class"] == "paced").sum() >= 3
    err = []
    for w in (w for w in rec.meta.reference.waves if w.lead == "II" and w.wave == "QRS" and w.on_ms):
        near = ours.filter((pl.col("r_peak_ms") - w.peak_ms).abs() < 80)
        if near.height == 1:
            err.append(near["qrs_on_ms"][0] - w.on_ms)
    assert len(err) >= 5
    assert abs(float(np.median(err))) <= 15, err


@pytest.mark.parametrize("record_id", ["70", "190"])
def test_ludb_median_beat_takes_the_beats_own_p_wave(ludb, record_id):
    # the median beat's P window reaches back past the previous T end; its largest deflection there used to
    # be that T wave, so no beat took the median beat's P (and its per-lead P onsets / ends)
    rec = ludb.read(record_id)
    m = measure_record(rec)
    p = m.beats.filter(pl.col("p_on_ms").is_not_null() & (pl.col("lead_quality") == "ok"))
    spread = p.group_by("beat").agg((pl.col("p_on_ms").max() - pl.col("p_on_ms").min()).alias("s"))["s"]
    assert (spread > 0).sum() >= 0.4 * m.record_row["n_beats"]
    ours = p.filter(pl.col("lead") == "II")
    ps = [w for w in rec.meta.reference.waves if w.lead == "II" and w.wave == "P" and w.on_ms]
    assert len(ps) >= 5
    p_err = [min(abs(t - w.on_ms) for t in ours["p_on_ms"]) for w in ps]
    assert np.median(p_err) <= 25


def test_ludb_paced_onset_after_the_stimulus_artefact(ludb):
    # record 45 (unipolar ventricular pacing): the filters smear its large stimulus into a slope lobe that
    # outlasts the blanked stretch; the onset used to sit on that artefact, making the QRS ~22 ms too long
    # (the stimulus and its tail are now blanked up to the capture latency: the onset lies where the experts'
    # onsets lie, whose own spread over the leads is ~40 ms)
    rec = ludb.read("45")
    m = measure_record(rec)
    err = []
    for w in rec.meta.reference.waves:
        if w.wave != "QRS" or w.on_ms is None:
            continue
        ours = m.beats.filter((pl.col("lead") == w.lead) & ((pl.col("r_peak_ms") - w.peak_ms).abs() < 80)
                              & (pl.col("beat_class") == "paced"))
        if ours.height == 1:
            err.append(ours["qrs_on_ms"][0] - w.on_ms)
    assert len(err) >= 40
    assert abs(float(np.median(err))) <= 15, err  # the artefact had put it ~22 ms early
    # the record's QRS (median over leads of each lead's) within the cited-value tolerance of the experts' (their
    # median over leads of each lead's median QRS)
    per_lead = [np.median([w.off_ms - w.on_ms for w in rec.meta.reference.waves
                           if w.lead == lead and w.wave == "QRS" and w.on_ms and w.off_ms]) for lead in LEADS]
    assert abs(m.record_row["qrs_ms"] - float(np.median(per_lead))) <= 20, (m.record_row["qrs_ms"], per_lead)


def test_ludb_per_lead_qrs_ends_in_atrial_flutter_with_rvh(ludb):
    # record 35 (typical flutter, right ventricular hypertrophy): the last QRS forces point to the inferior
    # leads only; the precordial leads' QRS ends ~30 ms before the global (latest) end, where experts mark it
    rec = ludb.read("35")
    m = measure_record(rec)
    err_global, err_own = [], []
    for lead in ("V3", "V4", "V5", "V6"):
        ours = m.beats.filter(pl.col("lead") == lead)
        for w in (w for w in rec.meta.reference.waves if w.lead == lead and w.wave == "QRS" and w.off_ms):
            near = ours.filter((pl.col("qrs_on_ms") - w.on_ms).abs() < 60)
            if near.height == 1:
                err_own.append(near["qrs_off_ms"][0] - w.off_ms)
                err_global.append(near["qrs_on_ms"][0] + m.record_row["qrs_global_ms"] - w.off_ms)
    assert len(err_own) >= 20
    assert abs(float(np.median(err_own))) <= 10 < float(np.median(err_global)), (err_own, err_global)


def test_ludb_per_lead_qrs_ends_on_beats_unlike_the_median_beat(ludb):
    # record 103 (atrial flutter): half its beats carry flutter waves that make their QRS unlike the median
    # beat's, so they keep their own (late: the flutter wave on the inferior leads' ST) global end; the
    # precordial leads' QRS ends earlier on the beat itself, where experts mark it
    rec = ludb.read("103")
    m = measure_record(rec)
    beats = m.beats.join(m.beats.group_by("beat").agg(pl.col("qrs_off_ms").max().alias("latest")), on="beat")
    err_own, err_latest = [], []
    for lead in ("V3", "V4", "V5", "V6"):
        ours = beats.filter(pl.col("lead") == lead)
        for w in (w for w in rec.meta.reference.waves if w.lead == lead and w.wave == "QRS" and w.off_ms):
            near = ours.filter((pl.col("qrs_on_ms") - w.on_ms).abs() < 60)
            if near.height == 1:
                err_own.append(near["qrs_off_ms"][0] - w.off_ms)
                err_latest.append(near["latest"][0] - w.off_ms)
    assert len(err_own) >= 40
    assert abs(float(np.median(err_own))) <= 8 and float(np.median(err_latest)) >= 12, (err_own, err_latest)


def test_ludb_flutter_waves_stepping_the_j_point_make_the_qrs_not_citable(ludb):
    # record 103 (atrial flutter with variable block): the F waves ride on the QRS ends at another phase in each beat,
    # a step at the J point in some beats only; the beats' own QRS ends spread wider than the tolerance, so the
    # median beat's end is one of them, a guess (cited 110 ms for the experts' 88): the QRS is not citable
    from features.confidence import TOLERANCE_MS  # noqa: PLC0415
    from features.schema import CONFIDENCE_MIN  # noqa: PLC0415
    m = measure_record(ludb.read("103"))
    assert m.confidences.intervals["qrs"].checks["beat_ends"] > TOLERANCE_MS["qrs"]
    assert m.record_row["qrs_conf"] < CONFIDENCE_MIN


@pytest.mark.parametrize("record_id,lead,col", [("2", "aVL", "on"), ("15", "aVL", "on"), ("80", "aVL", "on"),
                                                ("2", "V1", "off"), ("100", "V1", "off")])
def test_ludb_biphasic_p_is_marked_from_or_to_its_negative_trough(ludb, record_id, lead, col):
    # aVL's -/+ P starts, V1's +/- P ends at the trough of its negative phase for LUDB's experts; the lead's
    # knee near the global onset / end had it 35-45 ms early / late
    rec = ludb.read(record_id)
    ours = measure_record(rec).beats.filter(pl.col("lead") == lead)[f"p_{col}_ms"].drop_nulls().to_numpy()
    ref = [getattr(w, f"{col}_ms") for w in rec.meta.reference.waves if w.lead == lead and w.wave == "P"]
    ref = [v for v in ref if v is not None]
    assert len(ref) >= 5 and ours.size >= 5
    err = [ours[np.argmin(np.abs(ours - v))] - v for v in ref]
    assert abs(float(np.median(err))) <= 15, err


@pytest.mark.parametrize("record_id", ["85", "15"])
def test_ludb_beats_with_an_odd_qrs_take_the_median_beats_p(ludb, record_id):
    # sinus rhythm at a steady rate, but some beats' QRS correlates < 0.9 with the median beat's: they used to
    # keep their own, noisier P (PR up to 12 ms off); the same sinus P is now the median beat's in all
    m = measure_record(ludb.read(record_id))
    pr = m.beats.filter((pl.col("lead") == "II") & pl.col("pr_ms").is_not_null())["pr_ms"]
    assert pr.len() == m.record_row["n_beats"] and pr.max() - pr.min() <= 2.0, pr.to_list()


def test_ludb_beats_after_a_longer_rr_take_the_median_beats_p(ludb):
    # LUDB 190: sinus arrhythmia, RR 936 ms slowing to ~700 ms; the first beats' RR lies > 15% above the typical
    # one, and they kept their own, noisier P (lead II PR 106-152 ms); a sinus P after a longer diastole is the
    # same P: the median beat's in all
    m = measure_record(ludb.read("190"))
    pr = m.beats.filter((pl.col("lead") == "II") & pl.col("pr_ms").is_not_null())["pr_ms"]
    assert pr.len() == m.record_row["n_beats"] and pr.max() - pr.min() <= 2.0, pr.to_list()


def test_p_onset_fit_is_reproduced_from_ludb(tmp_path):
    # features/p_onset_fit.json is what `python -m features.fit_p_onset` makes from LUDB with this code: a
    # change to the delineator that moves the model's inputs shows here until the fit is remade
    import json

    from features.lead_edges import P_ONSET_FIT_PATH
    from features.fit_p_onset import main
    out = tmp_path / "fit.json"
    assert main(["--root", str(shared_path("data", "ludb")), "--out", str(out)]) == 0
    new, shipped = json.loads(out.read_text()), json.loads(P_ONSET_FIT_PATH.read_text())
    assert new["features"] == shipped["features"] and set(new["fits"]) == {"all"} | {f"fold{k}" for k in range(5)}
    for name, fit in shipped["fits"].items():
        assert new["fits"][name]["records"] == fit["records"]
        assert np.allclose(new["fits"][name]["coef"], fit["coef"], atol=2e-3)
        assert abs(new["fits"][name]["intercept_ms"] - fit["intercept_ms"]) <= 0.05
    # every fold's fit agrees on the direction: a later rule onset and a later half-amplitude rise, a later
    # onset; each leaves its own fold out, and together they leave every record out once
    held_out = []
    for name, fit in shipped["fits"].items():
        if name != "all":
            held_out += sorted(set(shipped["fits"]["all"]["records"]) - set(fit["records"]))
    assert sorted(held_out) == sorted(shipped["fits"]["all"]["records"])
    for fit in shipped["fits"].values():
        assert 0.3 <= fit["coef"][0] <= 1.0 and 0.0 < fit["coef"][2] <= 0.5


def test_ludb_citable_record_intervals_are_near_the_experts_and_most_are_citable(ludb):
    # every PR / QRS / QT the context lets an answer cite, against the experts' median over leads of each lead's
    # median interval (../shared/tools/cited_truth.py's reference): within 20 / 20 / 30 ms but at most one (LUDB
    # 103, flutter with a slurred S: QRS +22 ms), none more than 5 ms beyond; centred on the experts (the QRS
    # reading convention, features.qrs_edges: PR, QRS and QT each within 4 ms of them on average); and at least
    # 95% of the values with an expert value are citable
    from pipeline.context import build_context

    tol = {"pr": 20.0, "qrs": 20.0, "qt": 30.0}
    have = citable = 0
    errors: dict[str, list[tuple[str, float]]] = {k: [] for k in tol}
    for rid in ludb.ids():
        rec = ludb.read(rid)
        m = measure_record(rec)
        ctx = build_context(rec.meta, m.record_row, m.beats)
        for key in tol:
            per_lead = []
            for lead in LEADS:
                vals = _expert_intervals(rec, lead, key)
                if vals:
                    per_lead.append(float(np.median(vals)))
            if not per_lead:
                continue
            have += 1
            value = m.record_row[f"{key}_ms"]
            if value is None or not ctx.citable(f"{key}_ms"):
                continue
            citable += 1
            errors[key].append((rid, value - float(np.median(per_lead))))
    misses = [(k, rid, e) for k, es in errors.items() for rid, e in es if abs(e) > tol[k]]
    assert len(misses) <= 1 and all(abs(e) <= tol[k] + 5.0 for k, _, e in misses), misses
    for key, es in errors.items():
        assert abs(float(np.mean([e for _, e in es]))) <= 4.0, (key, np.mean([e for _, e in es]))
    assert citable >= 0.95 * have, (citable, have)


def test_qrs_reading_convention_is_reproduced_from_ludb(tmp_path):
    # features/qrs_convention.json is what `python -m features.fit_qrs_convention` makes from LUDB with this code;
    # the folds (each without one fifth of the records) agree with the shipped margins to a sample, and the
    # convention is picked by the same fold names as the P-onset fit ($ECG_GROUNDING_P_ONSET_FIT)
    import json

    from features.lead_edges import P_ONSET_FIT_PATH
    from features.fit_qrs_convention import main
    from features.qrs_edges import QRS_CONVENTION_PATH
    out = tmp_path / "conv.json"
    assert main(["--root", str(shared_path("data", "ludb")), "--out", str(out)]) == 0
    new, shipped = json.loads(out.read_text()), json.loads(QRS_CONVENTION_PATH.read_text())
    assert new["fits"] == shipped["fits"]
    assert set(shipped["fits"]) == set(json.loads(P_ONSET_FIT_PATH.read_text())["fits"])
    full = shipped["fits"]["all"]
    assert full["onset_margin_ms"] > 0 and full["end_margin_ms"] > 0  # the experts' marks enclose the detector's
    for fit in shipped["fits"].values():
        assert abs(fit["onset_margin_ms"] - full["onset_margin_ms"]) <= 2.0
        assert abs(fit["end_margin_ms"] - full["end_margin_ms"]) <= 2.0


def test_ludb_qrs_edges_are_centred_on_the_experts_beat_by_beat(ludb):
    # over every expert QRS of the 35 records: the published onset and end lie a median 0 ms from the experts'
    # marks (the detector's own: +4 ms late and 2 ms early, features.qrs_edges); paced beats keep the detector's
    # onset (after the stimulus)
    d_on, d_off = [], []
    for rid in ludb.ids():
        rec = ludb.read(rid)
        b = measure_record(rec).beats
        for lead in LEADS:
            lb = b.filter(pl.col("lead") == lead)
            peak, on, off = (lb[c].to_numpy().astype(float) for c in ("r_peak_ms", "qrs_on_ms", "qrs_off_ms"))
            if not np.isfinite(peak).any():
                continue
            for w in rec.meta.reference.waves:
                if w.lead != lead or w.wave != "QRS" or w.peak_ms is None:
                    continue
                k = int(np.nanargmin(np.abs(peak - w.peak_ms)))
                if abs(peak[k] - w.peak_ms) > 60:
                    continue
                if w.on_ms is not None and np.isfinite(on[k]):
                    d_on.append(on[k] - w.on_ms)
                if w.off_ms is not None and np.isfinite(off[k]):
                    d_off.append(off[k] - w.off_ms)
    assert len(d_on) > 3000 and len(d_off) > 3000
    assert abs(float(np.median(d_on))) <= 2.0 and abs(float(np.median(d_off))) <= 2.0, \
        (np.median(d_on), np.median(d_off))


def _expert_intervals(rec, lead: str, key: str) -> list[float]:
    """One lead's expert PR / QRS / QT per annotated beat, paired as cited_truth.py pairs them (the last P
    before the QRS peak within 400 ms, the first T after it within 600 ms)."""
    waves = [w for w in rec.meta.reference.waves if w.lead == lead]
    out = []
    for q in (w for w in waves if w.wave == "QRS" and w.on_ms is not None):
        if key == "qrs" and q.off_ms is not None:
            out.append(q.off_ms - q.on_ms)
        elif key == "pr":
            ps = [w for w in waves if w.wave == "P" and w.on_ms is not None and 0 < q.peak_ms - w.peak_ms < 400]
            if ps:
                out.append(q.on_ms - ps[-1].on_ms)
        elif key == "qt":
            ts = [w for w in waves if w.wave == "T" and w.off_ms is not None and 0 < w.peak_ms - q.peak_ms < 600]
            if ts:
                out.append(ts[0].off_ms - q.on_ms)
    return out


def test_ludb_paced_and_conducted_beats_alike_leave_no_qrs_to_cite():
    # LUDB 95, atrial fibrillation with a demand pacemaker: in its first 8.8 s six paced beats (114-154 ms) and
    # three conducted ones, which read as premature (they come before the pacemaker's interval ends), so no beat
    # is of the dominant kind and every beat makes the record's QRS: 114 ms for the experts' 92. Paced and
    # conducted beats alike, both common: two QRS populations, and the QRS and QT are not citable
    # (features.confidence mixed_capture; where no three beats share a QRS, so that there is no median beat, the
    # beats' own QRS spread as widely: beat_spread). A window with conducted beats of the dominant kind cites theirs
    from pipeline.sources.ludb import LudbSource

    first = measure_record(LudbSource(shared_path("data", "ludb"), window_s=8.8).read("95")).record_row
    assert first["qrs_conf"] < 0.5, first
    assert "qrs_ms:mixed_capture" in first["uncertain"] or "qrs_ms:beat_spread" in first["uncertain"], first
    later = measure_record(LudbSource(shared_path("data", "ludb"), window_s=8.8, window_start_s=1.0)
                           .read("95")).record_row
    assert "mixed_capture" not in later["uncertain"] and abs(later["qrs_ms"] - 92.0) <= 20.0, later


def test_ludb_a_p_wave_longer_than_any_atrial_depolarisation_leaves_no_pr_to_cite():
    # LUDB 60 (sinus rhythm, atrial extrasystoles, LAFB), 6 s from 4 s: the median beat's P read 188 ms long, its
    # onset 202 ms before the QRS where the experts mark ~150, and a PR of 192 ms was cited at confidence 0.6 for the
    # experts' 149. Atrial depolarisation lasts under 120 ms, up to ~150 with interatrial block or left atrial
    # enlargement: a P over 160 ms holds more than the P, and its excess counts against the PR (p_duration). The
    # record's whole 10 s (its P 152 ms) keeps no such doubt
    from pipeline.sources.ludb import LudbSource

    root = shared_path("data", "ludb")
    window = measure_record(LudbSource(root, window_s=6.0, window_start_s=4.0).read("60")).record_row
    assert window["pr_conf"] < 0.5 and "pr_ms:p_duration" in window["uncertain"], window
    whole = measure_record(LudbSource(root).read("60")).confidences.intervals["pr"].checks
    assert whole.get("p_duration", 0.0) == 0.0, whole
