"""Every source on real records from ../shared, the MIMIC tree built from them, and the bad-input corpus."""
from __future__ import annotations

import numpy as np
import pytest
import wfdb
from bad_inputs import add_hostile_mimic_rows, build_bad_corpus
from conftest import shared_path
from mimic_tree import MIMIC_LEAD_ORDER, build_mimic_tree

from pipeline.record import LEAD_INDEX, LEADS, RecordError, RecordMeta
from pipeline.sources import open_source
from pipeline.sources.ludb import parse_ludb_annotation
from pipeline.sources.mimic import is_boilerplate
from pipeline.sources.wfdb_common import resample_to_fs


def median_r_mv(x: np.ndarray, fs_hz: int = 500) -> float:
    """Median height of the largest deflection per second above the lead's median (a crude R amplitude)."""
    x = x - np.median(x)
    seconds = x[: len(x) // fs_hz * fs_hz].reshape(-1, fs_hz)
    return float(np.median(np.max(np.abs(seconds), axis=1)))


def assert_canonical(rec, n: int = 5000) -> None:
    assert rec.signal_mv.shape == (12, n)
    assert rec.signal_mv.dtype == np.float32
    assert np.all(np.isfinite(rec.signal_mv))
    assert rec.meta.leads == list(LEADS)
    assert 0.2 < median_r_mv(rec.lead("II")) < 4.0
    RecordMeta.model_validate_json(rec.meta.model_dump_json())  # the meta round-trips through JSON


def einthoven_residual(sig: np.ndarray) -> float:
    """RMS of III - (II - I) relative to the RMS of III."""
    i, ii, iii = sig[LEAD_INDEX["I"]], sig[LEAD_INDEX["II"]], sig[LEAD_INDEX["III"]]
    return float(np.sqrt(np.mean((iii - (ii - i)) ** 2)) / np.sqrt(np.mean((iii - iii.mean()) ** 2)))


# ---------------------------------------------------------------- PTB-XL
def test_ptbxl_reads_every_record_with_metadata():
    root = shared_path("data", "ptbxl")
    src = open_source("ptbxl", root)
    ids = src.ids()
    assert ids == [f"0600{i}" for i in range(10)]
    raw = wfdb.rdrecord(str(root / "records500/06000/06002_hr"))
    rec = src.read("06002")
    assert_canonical(rec)
    # Same samples as the file, lead by lead by name (PTB-XL writes AVR, AVL, AVF in capitals).
    for k, name in enumerate(raw.sig_name):
        lead = {"AVR": "aVR", "AVL": "aVL", "AVF": "aVF"}.get(name, name)
        np.testing.assert_allclose(rec.lead(lead), raw.p_signal[:, k], atol=1e-6)
    m = rec.meta
    assert m.patient_id == "7588" and m.demographics.sex == "male" and m.demographics.age_years == 29
    assert m.demographics.height_cm == 183 and m.demographics.weight_kg == 80
    assert m.recorded_at == "1991-04-14T16:01:41"
    assert {s.code: s.likelihood for s in m.statements} == {"NORM": 100.0, "IRBBB": 100.0, "SBRAD": 0.0}
    assert {s.code: s.text for s in m.statements}["IRBBB"] == "incomplete right bundle branch block"
    assert all(s.system == "scp" for s in m.statements)
    assert m.provenance.path == "records500/06000/06002_hr"
    assert m.provenance.files == ["records500/06000/06002_hr.hea", "records500/06000/06002_hr.dat"]
    assert len(m.provenance.sha256) == 64 and m.provenance.original_fs_hz == 500
    german = src.read("06001")
    assert german.meta.report.startswith("sinusrhythmus p-verbreiterung")  # kept as written
    assert german.meta.demographics.sex == "female"
    assert einthoven_residual(rec.signal_mv) < 0.05


def test_ptbxl_every_record_sane():
    src = open_source("ptbxl", shared_path("data", "ptbxl"))
    for rid in src.ids():
        rec = src.read(rid)
        assert_canonical(rec)
        assert rec.meta.statements and rec.meta.report


def test_unsafe_or_unknown_ids_rejected():
    src = open_source("ptbxl", shared_path("data", "ptbxl"))
    for bad in ["../06000", "/etc/passwd", "..", ".hidden", "a/b"]:
        with pytest.raises(RecordError) as err:
            src.read(bad)
        assert err.value.code == "unsafe_record_id"
    with pytest.raises(RecordError) as err:
        src.read("99999")
    assert err.value.code == "bad_metadata"


# ---------------------------------------------------------------- LUDB
def test_ludb_statements_demographics_and_expert_fiducials():
    src = open_source("ludb", shared_path("data", "ludb"))
    ids = src.ids()
    assert len(ids) == 35 and ids[:4] == ["1", "2", "3", "8"]
    rec = src.read("1")
    assert_canonical(rec)
    m = rec.meta
    assert m.demographics.sex == "female" and m.demographics.age_years == 51
    texts = [s.text for s in m.statements]
    assert "Sinus bradycardia" in texts
    assert "Electric axis of the heart: left axis deviation" in texts
    assert {"Left ventricular overload", "Left ventricular hypertrophy"} <= set(texts)
    assert all(s.system == "ludb" for s in m.statements)
    ref = m.reference
    assert ref is not None and ref.kind == "ludb_expert"
    assert {w.lead for w in ref.waves} == set(LEADS)
    assert {w.wave for w in ref.waves} == {"P", "QRS", "T"}
    # First annotated QRS of lead II in 1.ii: '(' 644, 'N' 662, ')' 682 samples at 500 Hz.
    ann = wfdb.rdann(str(shared_path("data", "ludb", "data") / "1"), "ii")
    first = next(w for w in ref.waves if w.lead == "II" and w.wave == "QRS")
    k = list(ann.symbol).index("N")
    assert first.peak_ms == ann.sample[k] * 2.0
    assert first.on_ms == ann.sample[k - 1] * 2.0 and first.off_ms == ann.sample[k + 1] * 2.0
    # Global intervals of a sinus bradycardia record: RR > 1000 ms, physiological PR / QRS / QT.
    assert ref.rr_ms > 1000 and 45 < ref.hr_bpm < 60
    assert 100 < ref.pr_ms < 250 and 60 < ref.qrs_ms < 160 and 300 < ref.qt_ms < 600
    # Global (earliest onset - latest offset over leads) is wider than the typical single lead.
    assert 60 < ref.extra["qrs_ms_median_lead"] < ref.qrs_ms
    assert ref.extra["qt_ms_median_lead"] <= ref.qt_ms


def test_ludb_annotation_parser_handles_incomplete_triplets():
    # Peak without onset at the start, onset without offset at the end, a lone pair without peak.
    waves = parse_ludb_annotation(["N", ")", "(", "t", ")", "(", ")", "(", "p"], [10, 20, 30, 40, 50, 60, 70, 80, 90], "V1", 500.0)
    assert [(w.wave, w.on_ms, w.peak_ms, w.off_ms) for w in waves] == [
        ("QRS", None, 20.0, 40.0), ("T", 60.0, 80.0, 100.0), ("P", 160.0, 180.0, None),
    ]


def test_ludb_all_records_sane():
    src = open_source("ludb", shared_path("data", "ludb"))
    for rid in src.ids():
        rec = src.read(rid)
        assert rec.signal_mv.shape == (12, 5000) and np.all(np.isfinite(rec.signal_mv))
        assert rec.meta.statements, rid
        assert rec.meta.reference is not None and rec.meta.reference.waves, rid


# ---------------------------------------------------------------- any WFDB folder
def test_wfdb_ptbdb_1000hz_15_channels_resampled_and_windowed():
    root = shared_path("data", "ptbdb")
    src = open_source("wfdb", root)
    assert src.ids() == ["s0010_re"]
    rec = src.read("s0010_re")
    assert rec.signal_mv.shape == (12, 5000) and rec.signal_mv.dtype == np.float32
    pv = rec.meta.provenance
    assert pv.original_fs_hz == 1000 and pv.original_n_samples == 38400
    assert pv.warnings == ["non_ecg_channel:vx", "non_ecg_channel:vy", "non_ecg_channel:vz"]
    assert pv.files == ["s0010_re.hea", "s0010_re.dat", "s0010_re.xyz"]
    assert rec.meta.demographics.age_years == 81 and rec.meta.demographics.sex == "female"
    # The 500-Hz lead II equals the 1000-Hz original decimated (to within the anti-alias filter's effect).
    raw = wfdb.rdrecord(str(root / "s0010_re"), sampto=10000)
    ii = raw.p_signal[:, raw.sig_name.index("ii")]
    np.testing.assert_allclose(rec.lead("II")[50:-50], ii[::2][50:-50], atol=0.05)
    assert 0.2 < median_r_mv(rec.lead("II")) < 4.0
    assert einthoven_residual(rec.signal_mv) < 0.05
    # A later window: 10 s starting at 20 s.
    later = open_source("wfdb", root, window_start_s=20.0).read("s0010_re")
    np.testing.assert_allclose(later.lead("V2")[50:-50], raw_v2_from(root, 20000)[::2][50:-50], atol=0.05)
    assert later.meta.provenance.window_start_s == 20.0
    with pytest.raises(RecordError) as err:
        open_source("wfdb", root, window_start_s=30.0).read("s0010_re")
    assert err.value.code == "too_short"


def raw_v2_from(root, start):
    raw = wfdb.rdrecord(str(root / "s0010_re"), sampfrom=start, sampto=start + 10000)
    return raw.p_signal[:, raw.sig_name.index("v2")]


def test_wfdb_cinc_mat_records_with_snomed():
    src = open_source("wfdb", shared_path("data", "cinc2021"))
    ids = src.ids()
    assert len(ids) == 20 and ids[0] == "E07500" and ids[-1] == "JS20009"
    rec = src.read("E07500")
    assert_canonical(rec)
    m = rec.meta
    assert [(s.code, s.system) for s in m.statements] == [("67741000119109", "snomed"), ("426177001", "snomed")]
    assert m.statements[1].text == "sinus bradycardia"
    assert m.demographics.age_years == 78 and m.demographics.sex == "male"
    assert m.provenance.files == ["E07500.hea", "E07500.mat"]
    assert einthoven_residual(rec.signal_mv) < 0.05
    # A real record whose V2, V4, V6 are all zero: kept, with one warning per flat lead.
    js = src.read("JS20004")
    assert js.meta.provenance.warnings == ["flat_lead:V2", "flat_lead:V4", "flat_lead:V6"]


def test_wfdb_nested_ids_and_lowercase_ludb_names():
    src = open_source("wfdb", shared_path("data"))
    ids = src.ids()
    assert "ptbdb__s0010_re" in ids and "ludb__data__1" in ids and "cinc2021__E07500" in ids
    rec = src.read("ludb__data__1")
    assert rec.meta.provenance.original_lead_names[3] == "avr"
    ludb = open_source("ludb", shared_path("data", "ludb")).read("1")
    np.testing.assert_array_equal(rec.signal_mv, ludb.signal_mv)


def test_resample_keeps_a_sine():
    t = np.arange(2570) / 257.0
    x = np.sin(2 * np.pi * 5 * t)[None, :]
    y = resample_to_fs(x, 257.0)
    assert y.shape[1] == 5000
    t2 = np.arange(5000) / 500.0
    np.testing.assert_allclose(y[0, 100:-100], np.sin(2 * np.pi * 5 * t2)[100:-100], atol=0.02)


# ---------------------------------------------------------------- MIMIC tree
@pytest.fixture(scope="module")
def mimic(tmp_path_factory):
    return build_mimic_tree(tmp_path_factory.mktemp("mimic"), shared_path("data", "ptbxl"))


def test_mimic_leads_reordered_by_name(mimic):
    src = open_source("mimic", mimic.root)
    assert src.ids() == mimic.study_ids
    hea = (mimic.root / f"files/p1000/p{mimic.subject_ids[0]}/s{mimic.study_ids[0]}/{mimic.study_ids[0]}.hea").read_text()
    assert hea.splitlines()[5].endswith("aVF") and hea.splitlines()[6].endswith("aVL")  # MIMIC's order
    ptbxl = open_source("ptbxl", shared_path("data", "ptbxl"))
    for sid, pid in zip(mimic.study_ids, mimic.ptbxl_ids):
        rec = src.read(sid)
        assert_canonical(rec)
        assert rec.meta.provenance.original_lead_names == MIMIC_LEAD_ORDER
        ref = ptbxl.read(pid)
        # aVL and aVF land in their own rows (5 uV quantisation at 200 adu/mV).
        for lead in ("aVL", "aVF", "I", "V6"):
            np.testing.assert_allclose(rec.lead(lead), ref.lead(lead), atol=0.0026)
        assert not np.allclose(rec.lead("aVL"), ref.lead("aVF"), atol=0.05)


def test_mimic_report_boilerplate_measurements_and_missing(mimic):
    src = open_source("mimic", mimic.root)
    first = src.read(mimic.study_ids[0]).meta
    assert first.patient_id == mimic.subject_ids[0]
    assert first.report == "Sinus rhythm; Borderline ECG"  # 'Borderline ECG' is diagnostic: kept
    assert first.report_dropped == ["--- Warning: Data quality may affect interpretation ---"]
    assert [s.text for s in first.statements] == ["Sinus rhythm", "Borderline ECG"]
    ref = first.reference
    assert ref.kind == "mimic_machine" and ref.rr_ms == 857 and ref.qrs_axis_deg == 42
    assert ref.pr_ms == 130 and ref.qrs_ms == 92 and ref.qt_ms == 378
    assert first.recorded_at == "2180-07-10T08:15:00"
    afib = src.read(mimic.study_ids[2]).meta
    assert afib.report_dropped == ["Analysis error", "--- Suspect arm lead reversal"]
    assert afib.reference.p_onset_ms is None and afib.reference.p_axis_deg is None and afib.reference.pr_ms is None
    assert afib.reference.qrs_ms == 94
    peds = src.read(mimic.study_ids[1]).meta
    assert "--- Pediatric criteria used ---" in peds.report_dropped and "Abnormal ECG" in peds.report
    assert is_boilerplate("--- Warning: Data quality may affect interpretation ---")
    assert not is_boilerplate("Borderline ECG") and not is_boilerplate("Left axis deviation")


def test_mimic_hostile_rows(tmp_path):
    tree = build_mimic_tree(tmp_path / "m", shared_path("data", "ptbxl"), ["06004"])
    expect = add_hostile_mimic_rows(tree.root)
    src = open_source("mimic", tree.root)
    assert src.read(tree.study_ids[0]).signal_mv.shape == (12, 5000)
    for rid, e in expect.items():
        with pytest.raises(RecordError) as err:
            src.read(rid)
        assert err.value.code == e.code, rid


# ---------------------------------------------------------------- bad inputs
def test_bad_inputs_each_get_their_code(tmp_path):
    expect = build_bad_corpus(tmp_path / "bad", shared_path("data", "ptbxl"))
    src = open_source("wfdb", tmp_path / "bad")
    assert sorted(src.ids()) == sorted(expect)
    for rid, e in expect.items():
        if e.outcome == "error":
            with pytest.raises(RecordError) as err:
                src.read(rid)
            assert err.value.code == e.code, (rid, err.value)
            if e.lead:
                assert err.value.lead == e.lead, rid
            continue
        rec = src.read(rid)
        assert rec.signal_mv.shape == (12, 5000) and np.all(np.isfinite(rec.signal_mv)), rid
        if e.outcome == "warning" and e.code in rec.meta.calibration.flags:  # a calibration finding
            assert rec.meta.provenance.warnings == [] and not rec.meta.calibration.amplitudes_calibrated, rid
        elif e.outcome == "warning":
            assert rec.meta.provenance.warnings == [f"{e.code}:{e.lead}"], rid
        else:
            assert rec.meta.provenance.warnings == [] and rec.meta.calibration.flags == [], rid
    derived = src.read("limb_derived")
    assert derived.meta.provenance.derived_leads == ["III", "aVR", "aVL", "aVF"]
    good = src.read("good_a")
    np.testing.assert_allclose(derived.lead("aVL"), good.lead("aVL"), atol=0.01)  # Goldberger vs recorded
    np.testing.assert_allclose(derived.lead("III"), good.lead("III"), atol=0.01)


def test_ludb_mit_reader_equals_wfdb_rdann():
    from pipeline.sources.ludb import read_mit_annotation

    data = shared_path("data", "ludb", "data")
    for rid in ("1", "8", "200"):
        for ext in ("i", "avr", "v6"):
            ann = wfdb.rdann(str(data / rid), ext)
            symbols, samples = read_mit_annotation(data / f"{rid}.{ext}")
            assert symbols == list(ann.symbol) and samples == [int(s) for s in ann.sample]


def test_ludb_corrupt_annotation_is_a_record_error(tmp_path):
    import shutil

    src_dir = shared_path("data", "ludb")
    (tmp_path / "data").mkdir()
    for f in (src_dir / "data").glob("1.*"):
        shutil.copy(f, tmp_path / "data")
    shutil.copy(src_dir / "ludb.csv", tmp_path)
    assert open_source("ludb", tmp_path).read("1").meta.reference.waves
    (tmp_path / "data" / "1.v2").write_bytes(b"abc")
    with pytest.raises(RecordError) as err:
        open_source("ludb", tmp_path).read("1")
    assert err.value.code == "bad_annotation" and err.value.lead == "V2"


def test_mutated_headers_and_signals_give_only_specific_record_errors(tmp_path):
    """Random damage to a real header / signal: every outcome is a record or a specific reason code."""
    import random

    rng = random.Random(5)
    src_dir = shared_path("data", "ptbxl", "records500", "06000")
    hea, dat = (src_dir / "06000_hr.hea").read_text(), (src_dir / "06000_hr.dat").read_bytes()
    for k in range(80):
        lines = hea.replace("06000_hr", f"r{k}").splitlines()
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(lines))
            toks = lines[i].split()
            if not toks:
                continue
            j = rng.randrange(len(toks))
            roll = rng.random()
            if roll < 0.35:
                toks[j] = str(rng.choice([0, -1, 3, 7, 10**9, "x", "212", "80", "nan"]))
            elif roll < 0.6:
                del toks[j]
            else:
                toks[j] += rng.choice(["x", "0", "/uV", "(3)"])
            lines[i] = " ".join(toks)
        (tmp_path / f"r{k}.hea").write_text("\n".join(lines) + "\n")
        cut = rng.randint(0, len(dat)) if rng.random() < 0.3 else len(dat)
        (tmp_path / f"r{k}.dat").write_bytes(dat[:cut])
    src = open_source("wfdb", tmp_path)
    outcomes = []
    for rid in src.ids():
        try:
            rec = src.read(rid)
            assert rec.signal_mv.shape == (12, 5000) and np.all(np.isfinite(rec.signal_mv))
            outcomes.append("ok")
        except RecordError as err:
            outcomes.append(err.code)
    assert "internal_error" not in outcomes
    assert len(set(outcomes)) >= 5  # the damage really varied
