"""Regressions for measurement bugs found on synthetic truth (each would become a wrong sentence in the
generated interpretations). Parameters are written out so the cases do not move with ``random_params``."""
from __future__ import annotations

import pytest

from features import measure_record
from features.measure import as_record
from pipeline.synthetic import SynthParams, generate_record

# LBBB at ~125 bpm with the T wave rising right behind the J point: the QRS offset used to run into the
# T wave (QRS measured 105-119 ms too long). From the default synthetic tree (seed 0, records 20 and 23).
LBBB_EARLY_T = {
    "lbbb_126bpm": (308368335, dict(hr_bpm=126.3, pr_ms=130.7, qrs_ms=141.1, qt_ms=303.3, qrs_axis_deg=-11.2,
                                    rhythm="sinus_tachycardia", bundle_branch_block="left", st_shift_mv=-0.244,
                                    qrs_scale=0.812, rr_variability=0.0379, mains_hz=60)),
    "lbbb_125bpm_lad": (1448041575, dict(hr_bpm=125.1, pr_ms=160.8, qrs_ms=168.6, qt_ms=278.6,
                                         qrs_axis_deg=-38.7, rhythm="sinus_tachycardia",
                                         bundle_branch_block="left", st_territory="lateral",
                                         t_inversion="inferior", qrs_scale=0.862, rr_variability=0.0347,
                                         mains_hz=60)),
}


@pytest.mark.parametrize("case", list(LBBB_EARLY_T))
def test_lbbb_early_steep_t_does_not_lengthen_the_qrs(case):
    seed, kw = LBBB_EARLY_T[case]
    synth = generate_record(SynthParams(**kw), seed, case)
    row = measure_record(as_record(synth.signal_mv, case)).record_row
    assert abs(row["qrs_ms"] - synth.truth.qrs_ms) <= 15.0, (row["qrs_ms"], synth.truth.qrs_ms)
    assert abs(row["qt_ms"] - synth.truth.qt_ms) <= 20.0, (row["qt_ms"], synth.truth.qt_ms)
    assert abs(row["qrs_axis_deg"] - synth.truth.qrs_axis_deg) <= 5.0
