"""A bad-input corpus: nothing raises past the record, and a gated lead never carries a number."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from features import measure_record
from features.schema import BEATS_SCHEMA
from pipeline.record import LEAD_INDEX, RecordError
from pipeline.synthetic import generate_record
from pipeline.synthetic_params import SynthParams
from features.measure import as_record

MEASURE_COLS = [c for c in BEATS_SCHEMA if c not in ("record_id", "lead", "beat", "beat_class", "lead_quality")]


def base_signal(seed: int = 4, **kw) -> np.ndarray:
    return generate_record(SynthParams(**kw), seed=seed).signal_mv.copy()


def assert_gated_leads_empty(beats: pl.DataFrame) -> None:
    gated = beats.filter(pl.col("lead_quality").str.starts_with("gated:"))
    for col in MEASURE_COLS:
        assert gated[col].is_null().all(), f"gated lead carries {col}"


def measure_or_error(sig: np.ndarray, rid: str = "bad"):
    """Either a Measurement or a RecordError; anything else is a bug."""
    try:
        return measure_record(as_record(sig, rid))
    except RecordError as exc:
        assert exc.code in {"delineation_failed"}, exc.code
        return exc


def test_flat_record_is_a_record_error():
    out = measure_or_error(np.zeros((12, 5000)))
    assert isinstance(out, RecordError) and "flat" in out.message


def test_white_noise_yields_no_numbers():
    rng = np.random.default_rng(0)
    out = measure_or_error(rng.normal(0.0, 0.3, (12, 5000)))
    if not isinstance(out, RecordError):  # if anything survives the gate it must all be gated
        assert out.beats["lead_quality"].str.starts_with("gated:").all()


def test_band_limited_noise_lead_is_gated_by_template():
    from scipy import signal as sps
    sig = base_signal()
    rng = np.random.default_rng(1)
    sos = sps.butter(2, [1, 30], btype="bandpass", fs=500, output="sos")
    sig[LEAD_INDEX["V2"]] = sps.sosfilt(sos, rng.normal(0, 1.0, 5000))  # looks like ECG band, no beats
    m = measure_record(as_record(sig))
    q = dict(m.beats.select("lead", "lead_quality").unique().iter_rows())
    assert q["V2"] == "gated:noise" and q["V1"] == "ok"
    assert_gated_leads_empty(m.beats)
    assert any(w.lead == "V2" and w.code == "noisy_lead" and w.severity == "warning" for w in m.warnings)


@pytest.mark.parametrize("seconds", [0.6, 1.2, 2.0, 3.0])
def test_one_to_three_beats(seconds):
    sig = base_signal(hr_bpm=60)[:, : int(seconds * 500)]
    out = measure_or_error(sig, f"short{seconds}")
    if isinstance(out, RecordError):
        return
    assert_gated_leads_empty(out.beats)
    q = out.beats.filter(pl.col("qrs_ms").is_not_null())["qrs_ms"]
    assert ((q > 40) & (q < 200)).all()


def test_nan_runs_gate_or_blank_the_lead():
    sig = base_signal()
    sig[LEAD_INDEX["V2"], 1000:3000] = np.nan          # 40% missing -> gated
    sig[LEAD_INDEX["V3"], 2000:2100] = np.nan          # a short run -> that beat blank in V3 only
    m = measure_record(as_record(sig))
    v2 = m.beats.filter(pl.col("lead") == "V2")
    assert (v2["lead_quality"] == "gated:non_finite").all()
    v3 = m.beats.filter(pl.col("lead") == "V3")
    assert (v3["lead_quality"] == "ok").all()
    hole = v3.filter((pl.col("rr_ms").is_not_null()) & pl.col("qrs_ms").is_null())
    assert hole.height >= 1
    for col in ("qrs_ms", "r_amp_mv", "st_j_mv"):
        assert np.isfinite(v3[col].drop_nulls().to_numpy()).all()
    assert_gated_leads_empty(m.beats)


def test_saturated_and_dead_leads_are_gated():
    sig = base_signal(emg_noise_mv=0.01)  # real leads carry some noise; a noiseless plateau is no rail
    ii = LEAD_INDEX["II"]
    sig[ii] = np.clip(sig[ii], -0.15, 0.15)              # clipped at the converter's rails
    sig[LEAD_INDEX["V4"]] = 0.0                          # dead lead
    m = measure_record(as_record(sig))
    q = dict(m.beats.select("lead", "lead_quality").unique().iter_rows())
    assert q["II"] == "gated:saturated" and q["V4"] == "gated:flat"
    assert m.record_row["leads_ok"] == 10
    assert set(m.record_row["leads_gated"].split(";")) == {"II:saturated", "V4:flat"}
    assert_gated_leads_empty(m.beats)
    codes = {(w.lead, w.code) for w in m.warnings}
    assert codes == {("II", "saturated_lead"), ("V4", "flat_lead")}


def test_axis_survives_a_dead_avf():
    sig = base_signal(qrs_axis_deg=-30)
    sig[LEAD_INDEX["aVF"]] = 0.0
    m = measure_record(as_record(sig))
    assert m.record_row["leads_gated"] == "aVF:flat"
    assert abs(m.record_row["qrs_axis_deg"] - (-30.0)) < 5.0


def test_noiseless_st_plateau_is_not_saturation():
    sig = base_signal(st_shift_mv=0.25, st_territory="inferior", low_voltage=True)
    m = measure_record(as_record(sig))
    assert m.record_row["leads_gated"] == "" and not m.warnings


def test_inverted_limb_leads_flip_the_axis():
    sig = base_signal(qrs_axis_deg=60)
    m0 = measure_record(as_record(sig))
    sig[:6] *= -1.0  # reversed polarity of every limb lead
    m1 = measure_record(as_record(sig))
    d = (m1.record_row["qrs_axis_deg"] - m0.record_row["qrs_axis_deg"]) % 360.0
    assert abs(d - 180.0) < 3.0
    assert m1.record_row["n_beats"] == m0.record_row["n_beats"]
    assert abs(m1.record_row["qrs_ms"] - m0.record_row["qrs_ms"]) <= 4.0
