"""Flutter waves (features.flutter): found on synthetic flutter across cycle lengths and blocks and on LUDB's typical
flutter, never on sinus rhythm (with PACs / PVCs, wander, noise) nor atrial fibrillation; where found, the F-wave
train is cancelled before the QRS and T ends are read."""
from __future__ import annotations

import re

import numpy as np
import polars as pl
import pytest
from conftest import shared_path

from features.measure import as_record, delineate_record
from pipeline.synthetic import generate_record
from pipeline.synthetic_cases import failure_record
from pipeline.synthetic_params import SynthParams
from pipeline.writer import write_answer


def _flutter(rec):
    d = delineate_record(rec)
    return d.fid.flutter


@pytest.mark.parametrize("cycle_ms", [175.0, 200.0, 230.0, 260.0, 280.0])
def test_flutter_waves_are_found_across_cycle_lengths(cycle_ms):
    # 215-340 F waves a minute, variable block, F waves 0.1-0.4 mV: the cycle is found within 10 ms
    for seed in range(3):
        rng = np.random.default_rng(seed)
        p = SynthParams(hr_bpm=float(rng.uniform(60, 110)), qt_ms=340.0, rhythm="atrial_flutter",
                        flutter_cycle_ms=cycle_ms, flutter_wave_mv=float(rng.uniform(0.1, 0.4)),
                        emg_noise_mv=float(rng.uniform(0.0, 0.04)))
        ev = _flutter(as_record(generate_record(p, seed).signal_mv, f"fl_{cycle_ms}_{seed}"))
        assert ev is not None and ev.present, (cycle_ms, seed, ev)
        assert abs(ev.cycle_ms - cycle_ms) <= 10.0, (cycle_ms, seed, ev.cycle_ms)


def test_flutter_with_an_ivcd_is_found_in_every_seed():
    for seed in range(10):
        ev = _flutter(as_record(failure_record("flutter_ivcd", seed).signal_mv, f"flivcd_{seed}"))
        assert ev is not None and ev.present, (seed, ev)


def _sinus(seed: int) -> SynthParams | None:
    r = np.random.default_rng(seed)
    try:
        return SynthParams(hr_bpm=float(r.uniform(50, 100)), rr_variability=float(r.uniform(0, 0.08)),
                           pac_count=int(r.integers(0, 4)), pvc_count=int(r.integers(0, 2)),
                           baseline_wander_mv=float(r.uniform(0, 0.3)), emg_noise_mv=float(r.uniform(0, 0.05)),
                           t_scale=float(r.uniform(0.3, 1.5)), u_wave_mv=float(r.uniform(0, 0.1)))
    except ValueError:
        return None


def test_no_flutter_in_sinus_rhythm_with_ectopics_nor_in_atrial_fibrillation():
    for seed in range(30):
        p = _sinus(seed)
        if p is not None:
            ev = _flutter(as_record(generate_record(p, seed).signal_mv, f"sinus_{seed}"))
            assert ev is None or not ev.present, ("sinus", seed, ev)
        r = np.random.default_rng(seed)
        p = SynthParams(hr_bpm=float(r.uniform(60, 120)), rhythm="atrial_fibrillation", af_rr_cv=float(r.uniform(0.08, 0.3)),
                        f_wave_mv=float(r.uniform(0.02, 0.2)), emg_noise_mv=float(r.uniform(0, 0.04)))
        ev = _flutter(as_record(generate_record(p, seed).signal_mv, f"af_{seed}"))
        assert ev is None or not ev.present, ("af", seed, ev)


@pytest.fixture(scope="module")
def ludb():
    from pipeline.sources import open_source  # noqa: PLC0415
    return open_source("ludb", shared_path("data", "ludb"))


def test_ludb_typical_flutter_is_found_and_no_other_record_has_it(ludb):
    rhythm = {str(i): str(r) for i, r in pl.read_csv(shared_path("data", "ludb", "ludb.csv")).select("ID", "Rhythms").iter_rows()}
    for rid in ludb.ids():
        ev = _flutter(ludb.read(rid))
        found = ev is not None and ev.present
        assert found == ("flutter" in rhythm[rid].lower()), (rid, rhythm[rid], ev)


def test_flutter_qt_and_qrs_are_true_where_citable_over_twenty_seeds():
    # the F-wave train cancelled before the T end is read: none of 20 records cites a QT over 30 ms off the truth
    # (seeds 3, 9 and 13 did, +30-37 ms, with the F waves read as the T's tail), nor a QRS over 20 ms off
    from features.confidence import TOLERANCE_MS  # noqa: PLC0415
    from features.measure import measure_record  # noqa: PLC0415
    from features.schema import CONFIDENCE_MIN  # noqa: PLC0415
    from test_failure_classes import _read  # noqa: PLC0415
    cited = 0
    for seed in range(20):
        syn = failure_record("flutter_ivcd", seed)
        row = measure_record(as_record(syn.signal_mv, f"flivcd_{seed}")).record_row
        truth = _read(syn)
        for key in ("qrs", "qt"):
            if row[f"{key}_ms"] is not None and row[f"{key}_conf"] >= CONFIDENCE_MIN:
                cited += 1
                assert abs(row[f"{key}_ms"] - truth[key]) <= TOLERANCE_MS[key], (seed, key, row[f"{key}_ms"], truth[key])
    assert cited >= 30  # and most are citable (coverage)


def _context(m, rid):
    from pipeline.context import GroundingContext  # noqa: PLC0415
    return GroundingContext(record_id=rid, source="synthetic", ecg_path=rid, report="", statement_ids=[],
                            unmapped_statements=[], record=m.record_row, beats=m.beats)


def test_t_form_and_st_level_are_not_published_where_flutter_waves_are_as_large():
    # large F waves (0.4 mV, II / III / aVF: FLUTTER_DIR points superiorly) over low T waves: the T's form in the
    # inferior leads is read through the sawtooth and is not citable there; in I, nearly perpendicular to the F
    # waves' direction, it is; small F waves leave every T form citable, and a sinus record has no such confidence
    from features.measure import measure_record  # noqa: PLC0415
    for seed in range(3):
        p = SynthParams(hr_bpm=70.0, qt_ms=380.0, rhythm="atrial_flutter", flutter_cycle_ms=220.0, flutter_wave_mv=0.4,
                        t_scale=0.4, emg_noise_mv=0.01)
        m = measure_record(as_record(generate_record(p, seed).signal_mv, f"big_f_{seed}"))
        ctx = _context(m, f"big_f_{seed}")
        assert not ctx.citable("t_form", "III") and not ctx.citable("t_amp_mv", "III"), seed
        assert ctx.citable("t_form", "I") and ctx.citable("t_amp_mv", "I"), seed
        # the ST level too: the J point meets the F waves at any phase (no ST shift drawn: -0.19 to +0.24 mV read in
        # II, III and aVF, "the ST segment at -0.19 mV" written); in I, across the F waves' direction, it stays
        for lead in ("II", "III", "aVF"):
            assert not ctx.citable("st_j_mv", lead) and not ctx.citable("st_j60_mv", lead), (seed, lead)
        assert ctx.citable("st_j_mv", "I"), seed
        st_said = [x for x in re.split(r"(?<=\.) ", write_answer(ctx)) if re.search(r"\bST\b|J point", x)]
        assert not any(re.search(r"\b(?:II|III|aVF)\b", x) and re.search(r"-?\d+\.\d+ mV", x) for x in st_said), st_said
        p = SynthParams(hr_bpm=70.0, qt_ms=380.0, rhythm="atrial_flutter", flutter_cycle_ms=220.0,
                        flutter_wave_mv=0.05, emg_noise_mv=0.005)
        m = measure_record(as_record(generate_record(p, seed).signal_mv, f"small_f_{seed}"))
        conf = m.confidences.lead["t_wave_conf"]
        assert np.all(conf[np.isfinite(conf)] >= 0.5), (seed, conf)
    m = measure_record(as_record(generate_record(SynthParams(hr_bpm=70.0), 0).signal_mv, "sinus"))
    assert m.beats["t_wave_conf"].is_null().all() and m.beats["st_level_conf"].is_null().all()


def test_ludb_flutter_qrs_is_true_or_not_citable_in_every_window_and_the_qt_stays_citable(ludb):
    # LUDB 103 (typical flutter, F waves as steep as the QRS end's criterion): its QRS read ~20 ms past the experts'
    # in every 8.8 s window and was cited in some; now within 20 ms of them or not citable in each (the cited-truth
    # benchmark's windows). LUDB 35 and 103's QT, true, stay citable over the whole record
    from features.confidence import TOLERANCE_MS  # noqa: PLC0415
    from features.measure import measure_record  # noqa: PLC0415
    from features.schema import CONFIDENCE_MIN  # noqa: PLC0415
    from pipeline.record import LEADS  # noqa: PLC0415
    from test_features_ludb import _expert_intervals  # noqa: PLC0415

    def expert(rec, key):
        return float(np.median([np.median(v) for v in (_expert_intervals(rec, lead, key) for lead in LEADS) if v]))

    rec = ludb.read("103")
    qrs = expert(rec, "qrs")
    fs = int(rec.meta.fs_hz)
    for start_s in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2):
        a = int(start_s * fs)
        row = measure_record(as_record(rec.signal_mv[:, a:a + int(8.8 * fs)], "103")).record_row
        if row["qrs_ms"] is not None and row["qrs_conf"] >= CONFIDENCE_MIN:
            assert abs(row["qrs_ms"] - qrs) <= TOLERANCE_MS["qrs"], (start_s, row["qrs_ms"], qrs)
    for rid in ("35", "103"):
        rec = ludb.read(rid)
        row = measure_record(rec).record_row
        assert row["qt_conf"] >= CONFIDENCE_MIN and abs(row["qt_ms"] - expert(rec, "qt")) <= TOLERANCE_MS["qt"], \
            (rid, row["qt_ms"], row["qt_conf"], expert(rec, "qt"))


def test_fixed_block_sets_every_rr_to_whole_f_cycles_and_the_rate_must_match():
    # a fixed 3:1 block: every RR is exactly 3 F cycles (the F waves sit at one phase in every beat)
    p = SynthParams(hr_bpm=60000.0 / (3 * 230.0), qt_ms=400.0, rhythm="atrial_flutter", flutter_cycle_ms=230.0,
                    flutter_block="3:1")
    syn = generate_record(p, 0)
    on = syn.beats.filter(pl.col("lead") == "II")["qrs_on_ms"].drop_nulls().to_numpy()
    assert np.all(np.abs(np.diff(on) - 690.0) <= 1000.0 / p.fs_hz), np.diff(on)
    with pytest.raises(ValueError):
        SynthParams(hr_bpm=100.0, qt_ms=400.0, rhythm="atrial_flutter", flutter_cycle_ms=230.0, flutter_block="3:1")


def _report_context(syn, m):
    from pipeline.context import GroundingContext, report_flutter, report_p_waves  # noqa: PLC0415
    from pipeline.knowledge import load_knowledge  # noqa: PLC0415
    kb = load_knowledge()
    norm = kb.normalise(list(syn.statements), syn.report)
    return GroundingContext(record_id=syn.record_id, source="synthetic", ecg_path=syn.record_id, report=syn.report,
                            statement_ids=list(norm.statement_ids), unmapped_statements=[], record=m.record_row,
                            beats=m.beats, report_p_waves=report_p_waves(kb, norm.statement_ids),
                            report_flutter=report_flutter(kb, norm.statement_ids))


def test_flutter_locked_by_a_fixed_block_and_named_by_the_report_cites_no_qrs_qt_st_nor_t_form():
    # F waves locked to the QRS (a fixed 2:1 block at a fast rate) sit in the median beat: QRST cancellation does not
    # find them, nor do the atrial stretches (shorter than an F cycle), and they ride on the QRS end, the ST segment
    # and the T as if they were theirs. Where the report names flutter, none of those values is citable; a variable
    # block whose flutter waves are found keeps its QT; a sinus record's report changes nothing
    from features.measure import measure_record  # noqa: PLC0415
    for seed, cycle in enumerate((200.0, 230.0, 250.0)):
        p = SynthParams(hr_bpm=60000.0 / (2 * cycle), qt_ms=2 * cycle - 100.0, rhythm="atrial_flutter",
                        flutter_cycle_ms=cycle, flutter_wave_mv=0.3, flutter_block="2:1")
        syn = generate_record(p, seed, f"locked_{seed}")
        m = measure_record(as_record(syn.signal_mv, syn.record_id))
        assert m.record_row["flutter_waves"] is False, seed
        ctx = _report_context(syn, m)
        assert ctx.report_flutter
        for col, lead in (("qrs_ms", None), ("qt_ms", None), ("qtc_bazett_ms", None), ("st_j_mv", "II"),
                          ("t_form", "III"), ("qrs_morphology", "II")):
            assert ctx.uncitable_reason(col, lead) == "flutter_waves_locked", (seed, col, lead)
        assert ctx.uncitable_reason("hr_bpm") != "flutter_waves_locked"
    p = SynthParams(hr_bpm=80.0, qt_ms=340.0, rhythm="atrial_flutter", flutter_cycle_ms=220.0, flutter_wave_mv=0.2)
    syn = generate_record(p, 1, "variable")
    m = measure_record(as_record(syn.signal_mv, syn.record_id))
    assert m.record_row["flutter_waves"] is True
    assert _report_context(syn, m).uncitable_reason("qt_ms") != "flutter_waves_locked"
    syn = generate_record(SynthParams(hr_bpm=70.0), 0, "sinus")
    m = measure_record(as_record(syn.signal_mv, syn.record_id))
    ctx = _report_context(syn, m)
    assert not ctx.report_flutter and ctx.citable("qt_ms") and ctx.citable("qrs_ms")


def test_flutter_locked_by_a_fixed_three_or_four_to_one_block_is_found_in_its_atrial_stretches():
    # a 3:1 / 4:1 block leaves atrial stretches longer than an F cycle: they repeat themselves at exactly RR / k
    # (features.flutter.locked_flutter); found, the QRS and the QT are not citable (an F wave adjoining the QRS end
    # or the T end is read as theirs in every beat alike: QT up to 122 ms late on benchmarks/flutter.py's grid)
    from features.measure import measure_record  # noqa: PLC0415
    from features.schema import CONFIDENCE_MIN  # noqa: PLC0415
    # (a 3:1 block with a long QT leaves stretches barely longer than the cycle, often shorter: found in about half
    # the grid's 3:1 records; a 2:1 block at a fast rate leaves none)
    for seed, (k, cycle, qt) in enumerate(((4, 230.0, 400.0), (4, 260.0, 400.0), (4, 280.0, 400.0), (4, 200.0, 400.0),
                                           (3, 280.0, 340.0))):
        p = SynthParams(hr_bpm=60000.0 / (k * cycle), qt_ms=qt, rhythm="atrial_flutter", flutter_cycle_ms=cycle,
                        flutter_wave_mv=0.3, flutter_block=f"{k}:1")
        d = delineate_record(as_record(generate_record(p, seed).signal_mv, f"locked_{k}_{seed}"))
        ev = d.fid.flutter
        assert ev.present and ev.locked_ratio == k and abs(ev.cycle_ms - cycle) <= 5.0, (seed, ev)
        row = measure_record(as_record(generate_record(p, seed).signal_mv, f"locked_{k}_{seed}")).record_row
        assert row["flutter_waves"] is True
        assert row["qrs_conf"] < CONFIDENCE_MIN and row["qt_conf"] < CONFIDENCE_MIN, (seed, row["uncertain"])
        assert "locked_flutter" in row["uncertain"], row["uncertain"]
    # and the T form where the locked F waves run through the T window (0.3 mV, II / III / aVF)
    m = measure_record(as_record(generate_record(p, seed).signal_mv, "locked_t"))
    ctx = _context(m, "locked_t")
    assert not ctx.citable("t_form", "III") and not ctx.citable("t_form", "aVF")


def test_u_waves_and_a_p_wave_rr_over_k_apart_are_not_locked_flutter():
    # a U wave after the T and the P before the next QRS can sit RR / k apart in the diastole (the grid's negatives
    # reached a periodicity of 0.66 there, LOCKED_PERIODICITY_MIN 0.8): sinus rhythm with U waves is no flutter
    for seed in range(12):
        r = np.random.default_rng(100 + seed)
        p = SynthParams(hr_bpm=float(r.uniform(50, 80)), u_wave_mv=float(r.uniform(0.1, 0.3)),
                        u_offset_ms=float(r.uniform(-40, 40)), qt_ms=float(r.uniform(360, 420)))
        ev = _flutter(as_record(generate_record(p, seed).signal_mv, f"u_{seed}"))
        assert ev is None or not ev.present, (seed, ev)


def test_the_writer_and_the_validator_keep_to_what_locked_flutter_leaves_citable():
    # fixed 2:1 flutter at 150 bpm (not found), report "atrial flutter": the writer states no QRS duration, QT, QTc,
    # ST level nor T form in the inferior leads; an answer stating the QT or calling the QT prolonged is not accepted
    from features.measure import measure_record  # noqa: PLC0415
    from pipeline.validate import validate_answer  # noqa: PLC0415
    p = SynthParams(hr_bpm=150.0, qt_ms=300.0, rhythm="atrial_flutter", flutter_cycle_ms=200.0, flutter_wave_mv=0.3,
                    flutter_block="2:1")
    syn = generate_record(p, 0, "locked_2to1")
    m = measure_record(as_record(syn.signal_mv, syn.record_id))
    ctx = _report_context(syn, m)
    assert m.record_row["flutter_waves"] is False and ctx.report_flutter
    text = write_answer(ctx)
    assert not re.search(r"\bQTc?\b[^.]*\d+ ms|QRS (?:duration|complex)[^.]*\d+ ms", text), text
    assert not re.search(r"\bST\b[^.]*\b(?:II|III|aVF)\b[^.]*-?\d+\.\d+ mV", text), text
    qt = m.record_row["qt_ms"]
    for bad in (f"Atrial flutter. The QT interval measures {qt:.0f} ms.", "Atrial flutter with a prolonged QT interval."):
        assert not validate_answer(bad, ctx).accepted, bad


def test_a_t_wave_smaller_than_the_flutter_waves_in_every_lead_leaves_no_qt_to_cite():
    """Flutter waves of 0.5 mV at a 200 ms cycle through an LBBB at 142 bpm (benchmarks/flutter.py's grid point
    fl_variable_200_0.5_w_0): the F waves are as large as the T in every lead, the cancellation is not applied,
    and the T end found was an F wave's: QT 105 ms late at confidence 1. No lead shows the T's end: QT not citable.
    LUDB 35 and 103, whose T stands out in 4 and 5 leads, keep their true QT
    (test_ludb_flutter_qrs_is_true_or_not_citable_in_every_window_and_the_qt_stays_citable)."""
    from features.measure import measure_record
    from features.qrs_edges import synthetic_reading_intervals
    from features.schema import CONFIDENCE_MIN

    p = SynthParams(hr_bpm=141.64409268030977, qrs_ms=148.10464266141202, qt_ms=260.33729203395234,
                    qrs_axis_deg=-12.327235710512559, rhythm="atrial_flutter", bundle_branch_block="left",
                    t_scale=0.5670479947085914, flutter_cycle_ms=200.0, flutter_wave_mv=0.5)
    syn = generate_record(p, 10182)
    m = measure_record(as_record(syn.signal_mv, "f200"))
    row = m.record_row
    _, _, qt = synthetic_reading_intervals(syn.truth.pr_ms, syn.truth.qrs_ms, syn.truth.qt_ms, paced=False)
    assert row["flutter_waves"]
    assert abs(row["qt_ms"] - qt) <= 30.0 or row["qt_conf"] < CONFIDENCE_MIN, (row["qt_ms"], qt, row["qt_conf"])
