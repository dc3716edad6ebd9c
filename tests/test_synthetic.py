"""The synthetic generator: physiology by construction, exact truth, WFDB tree, source and CLI."""
from __future__ import annotations

import hashlib
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import wfdb

from features.schema import FIDUCIAL_COLUMNS
from pipeline.record import LEAD_INDEX, LEADS, RecordError
from pipeline.sources import open_source
from pipeline.synthetic import frontal_axis_deg, generate_record, random_params, write_synthetic_tree
from pipeline.synthetic_params import SynthParams

DT_MS = 2.0
NOISY = dict(baseline_wander_mv=0.3, mains_hum_mv=0.05, emg_noise_mv=0.03)


def relation_errors(s: np.ndarray) -> list[float]:
    """Max |violation| of III = II - I, aVR = -(I+II)/2, aVL = I - II/2, aVF = II - I/2 (mV)."""
    i, ii = s[0].astype(np.float64), s[1].astype(np.float64)
    return [float(np.abs(s[2] - (ii - i)).max()), float(np.abs(s[3] + (i + ii) / 2).max()),
            float(np.abs(s[4] - (i - ii / 2)).max()), float(np.abs(s[5] - (ii - i / 2)).max())]


def lead_beats(rec, lead: str) -> pl.DataFrame:
    return rec.beats.filter(pl.col("lead") == lead).sort("beat")


def qrs_window(on_ms: float, off_ms: float) -> slice:
    return slice(int(math.ceil(on_ms / DT_MS)), int(math.floor(off_ms / DT_MS)) + 1)


def net_axis(rec, beat_row: dict) -> float:
    w = qrs_window(beat_row["qrs_on_ms"], beat_row["qrs_off_ms"])
    s = rec.signal_mv.astype(np.float64)
    return frontal_axis_deg(s[LEAD_INDEX["I"], w].sum(), s[LEAD_INDEX["aVF"], w].sum())


def extrema(x: np.ndarray, min_mv: float = 0.05) -> list[float]:
    """Values of the local extrema of ``x`` whose |value| >= min_mv, in time order."""
    d = np.sign(np.diff(x))
    out = []
    for k in range(1, len(d)):
        if d[k] != d[k - 1] and d[k - 1] != 0 and abs(x[k]) >= min_mv:
            out.append(float(x[k]))
    return out


# --------------------------------------------------------------------------------------------- leads
@pytest.mark.parametrize("noise", [{}, NOISY])
def test_einthoven_goldberger_hold_to_float_precision(noise):
    for seed, extra in enumerate([{}, {"bundle_branch_block": "left", "qrs_ms": 150, "qt_ms": 440},
                                  {"rhythm": "atrial_fibrillation", "hr_bpm": 95, "qt_ms": 350}]):
        rec = generate_record(SynthParams(**extra, **noise), seed)
        assert rec.signal_mv.dtype == np.float32 and rec.signal_mv.shape == (12, 5000)
        assert max(relation_errors(rec.signal_mv)) < 1e-6
    if noise:  # the noise really is there: the relations hold on a noisy signal, not on a clean one
        clean = generate_record(SynthParams(), 0).signal_mv
        noisy = generate_record(SynthParams(**noise), 0).signal_mv
        assert np.std(noisy - clean) > 0.02


def test_clean_signal_is_zero_outside_waves_and_live_inside():
    """Onsets / offsets are where the dipole contribution starts / ends: exactly zero outside, live inside."""
    rec = generate_record(SynthParams(hr_bpm=60, pr_ms=180, qrs_ms=96, qt_ms=400), 11)
    s = rec.signal_mv
    b = lead_beats(rec, "II").filter(pl.col("p_on_ms").is_not_null() & pl.col("t_off_ms").is_not_null())
    assert b.height >= 8
    rows = list(b.iter_rows(named=True))
    for k, row in enumerate(rows):
        for on_c, off_c in (("p_on_ms", "p_off_ms"), ("qrs_on_ms", "qrs_off_ms"), ("t_on_ms", "t_off_ms")):
            first = int(math.ceil(row[on_c] / DT_MS))
            last = int(math.floor(row[off_c] / DT_MS))
            assert np.abs(s[:, first + 2]).max() > 1e-3, (on_c, row[on_c])  # 4 ms in, some lead deflects
            assert np.abs(s[:, last - 2]).max() > 1e-3, (off_c, row[off_c])  # 4 ms before the end too
        # the PR segment (P offset -> QRS onset) of a clean sinus record is exactly zero ...
        pr_seg = s[:, int(math.floor(row["p_off_ms"] / DT_MS)) + 1:int(math.ceil(row["qrs_on_ms"] / DT_MS)) + 1]
        assert pr_seg.shape[1] >= 5 and np.abs(pr_seg).max() == 0.0
        # ... and so is the TP segment up to the next P onset
        if k + 1 < len(rows):
            tp = s[:, int(math.floor(row["t_off_ms"] / DT_MS)) + 1:int(math.ceil(rows[k + 1]["p_on_ms"] / DT_MS))]
            assert tp.shape[1] >= 50 and np.abs(tp).max() == 0.0


# ----------------------------------------------------------------------------------- stated vs truth
@pytest.mark.parametrize("params", [
    SynthParams(hr_bpm=72, pr_ms=168, qrs_ms=92, qt_ms=392, qrs_axis_deg=48),
    SynthParams(hr_bpm=52, rhythm="sinus_bradycardia", pr_ms=236, qrs_ms=84, qt_ms=430, qrs_axis_deg=-48),
    SynthParams(hr_bpm=118, rhythm="sinus_tachycardia", pr_ms=130, qrs_ms=88, qt_ms=300, qrs_axis_deg=105),
    SynthParams(hr_bpm=66, qrs_ms=142, qt_ms=450, bundle_branch_block="right", qrs_axis_deg=110),
    SynthParams(hr_bpm=75, qrs_ms=156, qt_ms=450, bundle_branch_block="left", qrs_axis_deg=-40),
    SynthParams(hr_bpm=80, qt_ms=370, st_shift_mv=0.3, st_territory="inferior", qrs_axis_deg=70),
    SynthParams(hr_bpm=70, st_shift_mv=-0.2, st_territory="lateral", low_voltage=True, qrs_axis_deg=10),
    # a big ST shift on a small, wide QRS: the ST ramp must not swamp the net area
    SynthParams(hr_bpm=70, st_shift_mv=0.5, st_territory="inferior", low_voltage=True, qrs_axis_deg=8,
                bundle_branch_block="right", qrs_ms=136, qt_ms=400),
])
def test_stated_intervals_and_axis_match_fiducials_and_signal(params):
    rec = generate_record(params, 5)
    t = rec.truth
    b = rec.beats.filter(pl.col("beat_class") == "normal")
    full = b.drop_nulls(["p_on_ms", "qrs_on_ms", "qrs_off_ms", "t_off_ms"])
    assert full.height >= 12 * 5
    assert np.allclose(full["qrs_on_ms"] - full["p_on_ms"], params.pr_ms, atol=1e-9)
    assert np.allclose(full["qrs_off_ms"] - full["qrs_on_ms"], params.qrs_ms, atol=1e-9)
    assert np.allclose(full["t_off_ms"] - full["qrs_on_ms"], params.qt_ms, atol=1e-9)
    assert (t.pr_ms, t.qrs_ms, t.qt_ms, t.qrs_axis_deg) == (params.pr_ms, params.qrs_ms, params.qt_ms,
                                                            params.qrs_axis_deg)
    # fiducials are ordered within every beat
    for row in full.iter_rows(named=True):
        seq = [row[c] for c in FIDUCIAL_COLUMNS]
        assert seq == sorted(seq), row
    # heart rate from the QRS onsets of the truth beats, and close to the stated one
    onsets = lead_beats(rec, "I")["qrs_on_ms"].to_numpy()
    assert t.rr_mean_ms == pytest.approx(np.diff(onsets).mean())
    assert t.hr_bpm == pytest.approx(60000 / t.rr_mean_ms)
    assert t.hr_bpm == pytest.approx(params.hr_bpm, rel=0.03)
    # the net-QRS axis measured from leads I and aVF of every normal beat is the stated one
    for row in lead_beats(rec, "I").filter(pl.col("beat_class") == "normal").iter_rows(named=True):
        assert net_axis(rec, row) == pytest.approx(params.qrs_axis_deg, abs=0.01)
    # per-lead peaks: the largest |deflection| of the signal inside each wave, per lead
    for row in rec.beats.filter(pl.col("beat") == 2).iter_rows(named=True):
        x = rec.signal_mv[LEAD_INDEX[row["lead"]]]
        w = qrs_window(row["qrs_on_ms"], row["qrs_off_ms"])
        assert abs(x[int(row["r_peak_ms"] / DT_MS)]) == pytest.approx(np.abs(x[w]).max(), abs=1e-6)
        w = qrs_window(row["t_on_ms"], row["t_off_ms"])
        assert abs(x[int(row["t_peak_ms"] / DT_MS)]) == pytest.approx(np.abs(x[w]).max(), abs=1e-6)
    # axis labels
    axis_code = "LAD" if params.qrs_axis_deg < -30 else "RAD" if params.qrs_axis_deg > 90 else None
    assert (axis_code in t.scp_codes) if axis_code else not ({"LAD", "RAD"} & set(t.scp_codes))


def test_axis_survives_noise_within_a_few_degrees():
    for axis in (-60.0, 0.0, 60.0, 120.0):
        rec = generate_record(SynthParams(qrs_axis_deg=axis, emg_noise_mv=0.02, mains_hum_mv=0.02), 3)
        axes = [net_axis(rec, r) for r in lead_beats(rec, "I").iter_rows(named=True)]
        assert float(np.median(axes)) == pytest.approx(axis, abs=4.0)


def test_normal_morphology_amplitudes_and_r_wave_progression():
    rec = generate_record(SynthParams(qrs_axis_deg=60), 1)
    row = lead_beats(rec, "II").row(3, named=True)
    w = qrs_window(row["qrs_on_ms"], row["qrs_off_ms"])
    qrs = {lead: rec.signal_mv[LEAD_INDEX[lead], w] for lead in LEADS}
    assert 0.7 <= qrs["II"].max() <= 1.6  # R in II about 1 mV
    r = {lead: qrs[lead].max() for lead in LEADS}
    s = {lead: -qrs[lead].min() for lead in LEADS}
    assert s["V1"] > 2.5 * r["V1"] and r["V1"] > 0.1  # rS
    assert r["V6"] > 3 * s["V6"]  # qR
    assert qrs["V6"][: len(qrs["V6"]) // 5].min() < -0.03  # septal q in V6
    assert qrs["V1"][: len(qrs["V1"]) // 5].max() > 0.05  # septal r in V1
    dominant = [lead for lead in ("V1", "V2", "V3", "V4", "V5", "V6") if r[lead] > s[lead]]
    assert dominant[0] in ("V3", "V4") and dominant == ["V3", "V4", "V5", "V6"][4 - len(dominant):]
    assert r["aVR"] < s["aVR"]  # aVR looks at the heart from the right: negative
    assert rec.truth.scp_codes == ["NORM", "SR"]


# ------------------------------------------------------------------------------------ rhythms, findings
def test_atrial_fibrillation_irregular_no_p_fibrillatory_baseline():
    rec = generate_record(SynthParams(rhythm="atrial_fibrillation", hr_bpm=95, qt_ms=340, f_wave_mv=0.06), 4)
    b = lead_beats(rec, "V1")
    rr = np.diff(b["qrs_on_ms"].to_numpy())
    assert rr.std() / rr.mean() > 0.08  # irregularly irregular
    assert rec.beats["p_on_ms"].null_count() == rec.beats.height  # no P waves at all
    assert rec.beats["p_peak_ms"].null_count() == rec.beats.height and rec.truth.pr_ms is None
    assert rec.truth.rhythm == "atrial_fibrillation" and rec.truth.scp_codes[0] == "AFIB"
    # the baseline between T offset and the next QRS onset carries f-waves (a clean sinus one is zero)
    v1 = rec.signal_mv[LEAD_INDEX["V1"]]
    gaps = [v1[int(a / DT_MS) + 5:int(c / DT_MS) - 5] for a, c in zip(b["t_off_ms"][:-1], b["qrs_on_ms"][1:])
            if a is not None and c - a > 60]
    tq = np.concatenate(gaps)
    assert tq.size > 100 and 0.01 < tq.std() < 0.1
    # 4-9 Hz: count zero crossings of the TQ baseline
    crossings = sum(int(np.count_nonzero(np.diff(np.sign(g - g.mean())) != 0)) for g in gaps)
    assert 4 <= crossings / 2 / (tq.size * DT_MS / 1000) <= 10


def test_premature_ventricular_beats_early_wide_no_p_discordant_t_compensatory_pause():
    rec = generate_record(SynthParams(hr_bpm=70, pvc_count=3), 7)
    b = lead_beats(rec, "V5")
    classes = b["beat_class"].to_list()
    assert classes.count("premature") >= 2 and "PVC" in rec.truth.scp_codes
    assert rec.truth.n_premature == classes.count("premature")
    onsets = b["qrs_on_ms"].to_numpy()
    sinus_rr = 60000 / 70
    for k, row in enumerate(b.iter_rows(named=True)):
        if row["beat_class"] != "premature":
            continue
        assert row["p_on_ms"] is None and row["p_off_ms"] is None
        assert row["qrs_off_ms"] - row["qrs_on_ms"] >= 120
        before, after = onsets[k] - onsets[k - 1], onsets[k + 1] - onsets[k]
        assert before < 0.85 * sinus_rr and after > sinus_rr  # early, then a pause
        assert before + after == pytest.approx(2 * sinus_rr, rel=0.06)  # full compensatory pause
        # discordant T: in the lead with the biggest QRS, T points the other way
        rows = rec.beats.filter(pl.col("beat") == row["beat"])
        big = max(rows.iter_rows(named=True),
                  key=lambda r: abs(rec.signal_mv[LEAD_INDEX[r["lead"]], int(r["r_peak_ms"] / DT_MS)]))
        x = rec.signal_mv[LEAD_INDEX[big["lead"]]]
        assert np.sign(x[int(big["r_peak_ms"] / DT_MS)]) == -np.sign(x[int(big["t_peak_ms"] / DT_MS)])


def test_right_bundle_branch_block_rsr_prime_in_v1_wide_s_in_i_and_v6():
    rec = generate_record(SynthParams(bundle_branch_block="right", qrs_ms=140, qt_ms=430), 2)
    assert "CRBBB" in rec.truth.scp_codes and rec.truth.qrs_ms >= 120
    row = lead_beats(rec, "V1").row(2, named=True)
    w = qrs_window(row["qrs_on_ms"], row["qrs_off_ms"])
    v1 = rec.signal_mv[LEAD_INDEX["V1"], w]
    ext = extrema(v1)
    assert len(ext) >= 3 and ext[0] > 0 and ext[1] < 0 and ext[-1] > ext[0]  # r, S, taller R'
    for lead in ("I", "V6"):
        x = rec.signal_mv[LEAD_INDEX[lead], w]
        neg_tail = np.flatnonzero(x[len(x) // 2:] < -0.05).size * DT_MS
        assert neg_tail >= 30 and x.min() < -0.2  # broad terminal S


def test_left_bundle_branch_block_broad_notched_r_and_qs_in_v1():
    rec = generate_record(SynthParams(bundle_branch_block="left", qrs_ms=152, qt_ms=450, qrs_axis_deg=0), 2)
    assert "CLBBB" in rec.truth.scp_codes
    row = lead_beats(rec, "V6").row(2, named=True)
    w = qrs_window(row["qrs_on_ms"], row["qrs_off_ms"])
    v1 = rec.signal_mv[LEAD_INDEX["V1"], w]
    assert v1.min() < -0.8 and v1.max() < 0.25 * -v1.min()  # QS / rS
    for lead in ("I", "aVL", "V5", "V6"):
        x = rec.signal_mv[LEAD_INDEX[lead], w]
        assert x[: len(x) // 6].min() > -0.02  # no septal q
        assert np.flatnonzero(x > 0.1).size * DT_MS >= 70  # broad R
        peaks = [v for v in extrema(x, 0.1) if v > 0]
        assert len(peaks) >= 2  # notched (M-shaped)


def test_st_shift_t_inversion_and_low_voltage_are_in_the_signal():
    rec = generate_record(SynthParams(st_shift_mv=0.3, st_territory="inferior"), 1)
    assert "STE_" in rec.truth.scp_codes and set(rec.truth.st_elevation_leads) >= {"II", "III", "aVF"}
    for lead in ("II", "III", "aVF"):
        row = lead_beats(rec, lead).row(2, named=True)
        j60 = rec.signal_mv[LEAD_INDEX[lead], int((row["qrs_off_ms"] + 60) / DT_MS)]
        assert j60 >= 0.1
        assert j60 == pytest.approx(row["st_j60_mv"], abs=0.03)
    rec = generate_record(SynthParams(st_shift_mv=-0.2, st_territory="lateral"), 1)
    assert "STD_" in rec.truth.scp_codes and {"V5", "V6"} <= set(rec.truth.st_depression_leads)
    row = lead_beats(rec, "V6").row(2, named=True)
    assert rec.signal_mv[LEAD_INDEX["V6"], int((row["qrs_off_ms"] + 60) / DT_MS)] <= -0.1

    rec = generate_record(SynthParams(t_inversion="anterior"), 1)
    assert "INVT" in rec.truth.scp_codes
    for lead in ("V2", "V3"):
        row = lead_beats(rec, lead).row(2, named=True)
        assert rec.signal_mv[LEAD_INDEX[lead], int(row["t_peak_ms"] / DT_MS)] <= -0.1
        assert lead in rec.truth.t_inversion_leads

    rec = generate_record(SynthParams(low_voltage=True, qrs_scale=1.5), 1)
    row = lead_beats(rec, "I").row(2, named=True)
    w = qrs_window(row["qrs_on_ms"], row["qrs_off_ms"])
    ptp = np.ptp(rec.signal_mv[:, w], axis=1)
    assert ptp[:6].max() < 0.5 and ptp[6:].max() < 1.0 and "LVOLT" in rec.truth.scp_codes


def test_random_params_draw_every_finding_and_valid_records():
    rng = np.random.default_rng(0)
    seen: set[str] = set()
    for i in range(300):
        p = random_params(rng)
        if i < 60:
            rec = generate_record(p, i)
            seen |= set(rec.truth.scp_codes)
            assert rec.truth.n_beats >= 5 and np.isfinite(rec.signal_mv).all()
            assert ("NORM" in rec.truth.scp_codes) == (rec.truth.scp_codes == ["NORM", "SR"])
        else:
            seen |= {"AFIB" if p.rhythm == "atrial_fibrillation" else "SR",
                     "CRBBB" if p.bundle_branch_block == "right" else "",
                     "CLBBB" if p.bundle_branch_block == "left" else "", "PVC" if p.pvc_count else "",
                     "STE_" if p.st_shift_mv > 0 else "STD_" if p.st_shift_mv < 0 else "",
                     "INVT" if p.t_inversion else "", "LVOLT" if p.low_voltage else "",
                     "1AVB" if p.pr_ms > 200 and p.rhythm != "atrial_fibrillation" else ""}
    assert {"NORM", "SR", "SBRAD", "STACH", "AFIB", "1AVB", "CRBBB", "CLBBB", "PVC", "STE_", "STD_",
            "INVT", "LVOLT"} <= seen


# ------------------------------------------------------------------------------------------ the tree
@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return write_synthetic_tree(tmp_path_factory.mktemp("syn") / "tree", 12, seed=3)


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_bytes(tree, tmp_path):
    again = write_synthetic_tree(tmp_path / "again", 12, seed=3)
    assert _hashes(again) == _hashes(tree)
    other = _hashes(write_synthetic_tree(tmp_path / "other", 12, seed=4))
    assert other.keys() == _hashes(tree).keys() and other != _hashes(tree)


def test_tree_layout_and_wfdb_round_trip(tree):
    db = pl.read_csv(tree / "synthetic_database.csv")
    assert {"ecg_id", "record_id", "patient_id", "age", "sex", "report", "scp_codes", "filename_hr",
            "heart_axis", "seed"} <= set(db.columns)
    assert db["record_id"].to_list() == [f"syn{i:05d}" for i in range(1, 13)]
    truth = pl.read_parquet(tree / "truth" / "records.parquet")
    beats = pl.read_parquet(tree / "truth" / "beats.parquet")
    assert truth["record_id"].to_list() == db["record_id"].to_list()
    assert set(FIDUCIAL_COLUMNS) <= set(beats.columns) and beats["record_id"].n_unique() == 12
    for row in db.head(4).iter_rows(named=True):
        rec = wfdb.rdrecord(str(tree / row["filename_hr"]))
        assert rec.fs == 500 and rec.sig_len == 5000 and rec.units == ["mV"] * 12
        assert [n.upper() for n in rec.sig_name] == [n.upper() for n in LEADS]
        # regenerate from the csv's seed: the file holds the generator's signal within quantisation
        params = random_params(np.random.default_rng([row["seed"], 1]))
        gen = generate_record(params, row["seed"], record_id=row["record_id"])
        assert np.abs(rec.p_signal.T - gen.signal_mv).max() <= 0.5e-3 + 1e-6
        assert max(relation_errors(rec.p_signal.T)) <= 1.5e-3 + 1e-6
        assert gen.report == row["report"]
        assert truth.filter(pl.col("record_id") == row["record_id"])["hr_bpm"][0] == gen.truth.hr_bpm


def test_source_reads_the_tree_with_truth_and_provenance(tree):
    src = open_source("synthetic", tree)
    ids = src.ids()
    assert ids == [f"syn{i:05d}" for i in range(1, 13)]
    db = pl.read_csv(tree / "synthetic_database.csv")
    truth = pl.read_parquet(tree / "truth" / "records.parquet")
    beats = pl.read_parquet(tree / "truth" / "beats.parquet")
    for rid in ids:
        rec = src.read(rid)
        row = db.filter(pl.col("record_id") == rid).row(0, named=True)
        t = truth.filter(pl.col("record_id") == rid).row(0, named=True)
        m = rec.meta
        assert m.source == "synthetic" and m.n_samples == 5000 and rec.signal_mv.dtype == np.float32
        assert m.report == row["report"] and m.patient_id == row["patient_id"]
        assert m.demographics.age_years == row["age"] and m.demographics.sex == row["sex"]
        codes = [s.code for s in m.statements]
        assert codes == t["scp_codes"].split(";") and all(s.system == "scp" for s in m.statements)
        assert all(s.text and s.text != s.code for s in m.statements)
        ref = m.reference
        assert ref.kind == "synthetic_truth" and ref.hr_bpm == t["hr_bpm"] and ref.qrs_axis_deg == t["qrs_axis_deg"]
        assert (ref.pr_ms, ref.qrs_ms, ref.qt_ms) == (t["pr_ms"], t["qrs_ms"], t["qt_ms"])
        b = beats.filter(pl.col("record_id") == rid)
        qrs = [w for w in ref.waves if w.wave == "QRS"]
        assert len(qrs) == b.height and {w.lead for w in qrs} == set(LEADS)
        assert sorted(w.on_ms for w in qrs if w.lead == "II") == sorted(b.filter(pl.col("lead") == "II")["qrs_on_ms"])
        p = m.provenance
        assert p.path == row["filename_hr"] and p.files == [p.path + ".hea", p.path + ".dat"]
        assert p.sha256 == hashlib.sha256(b"".join((tree / f).read_bytes() for f in p.files)).hexdigest()
        assert p.original_fs_hz == 500 and p.original_units == ["mV"] * 12 and p.original_n_samples == 5000
        assert max(relation_errors(rec.signal_mv)) <= 1.5e-3 + 1e-6
    af = [r for r in ids if "AFIB" in src.read(r).meta.reference.extra["findings"] + truth.filter(
        pl.col("record_id") == r)["scp_codes"][0]]
    for rid in af:
        assert not [w for w in src.read(rid).meta.reference.waves if w.wave == "P"]


def test_source_errors_are_record_errors(tree, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tree, broken)
    src = open_source("synthetic", broken)
    with pytest.raises(RecordError) as e:
        src.read("syn99999")
    assert e.value.code == "missing_file"
    with pytest.raises(RecordError) as e:
        src.read("../etc")
    assert e.value.code == "unsafe_record_id"
    dat = broken / "records500" / "syn00002.dat"
    dat.write_bytes(dat.read_bytes()[:1000])
    with pytest.raises(RecordError) as e:
        src.read("syn00002")
    assert e.value.code == "truncated_signal" and e.value.record_id == "syn00002"
    (broken / "records500" / "syn00003.hea").unlink()
    with pytest.raises(RecordError) as e:
        src.read("syn00003")
    assert e.value.code == "missing_file"
    hea = broken / "records500" / "syn00004.hea"
    hea.write_text("syn00004 12 five 5000\n")
    with pytest.raises(RecordError) as e:
        src.read("syn00004")
    assert e.value.code == "bad_sampling_rate"  # an unparsable rate: the calibration check's own code
    hea.write_text("this is no header\n")
    with pytest.raises(RecordError) as e:
        src.read("syn00004")
    assert e.value.code == "corrupt_header"
    assert src.read("syn00005").record_id == "syn00005"  # the rest still reads


def test_cli_synth_writes_tree_and_reports_rate(tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "synth", "--n", "5", "--out", str(out),
                           "--seed", "9"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "wrote 5 records" in proc.stdout and "records/s" in proc.stdout
    assert len(list((out / "records500").glob("*.dat"))) == 5
    assert _hashes(out) == _hashes(write_synthetic_tree(tmp_path / "api", 5, seed=9))


def test_one_source_object_reads_safely_from_many_threads(tmp_path):
    """Flow chunk tasks are threads sharing one open source: its lazily loaded truth tables must never be
    seen half-built (this failed ~1 read in 5 before the tables were loaded under a lock)."""
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.sources import open_source
    from pipeline.synthetic import write_synthetic_tree

    root = write_synthetic_tree(tmp_path / "tree", 16, 3)
    for _ in range(10):
        src = open_source("synthetic", root)
        with ThreadPoolExecutor(8) as pool:
            records = list(pool.map(src.read, src.ids()))
        assert all(r.meta.reference is not None and r.meta.reference.waves for r in records)
