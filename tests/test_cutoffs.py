"""The one table of clinical cut-offs and the citability contract of GroundingContext."""
from __future__ import annotations

import pytest
import yaml

from pipeline.context import amplitude_derived
from pipeline.cutoffs import CUTOFFS_PATH, Cutoff, band, cutoff, cutoffs
from pipeline.knowledge import KNOWLEDGE_DIR


def test_every_cutoff_loads_and_cites_a_known_reference():
    refs = yaml.safe_load((KNOWLEDGE_DIR / "references.yaml").read_text())["references"]
    table = cutoffs()
    assert len(table) >= 30
    for name, c in table.items():
        assert c.name == name
        assert c.source in refs, f"{name} cites unknown reference {c.source}"
        # the unit suffix of the name says the unit
        suffix = name.rsplit("_", 1)[-1]
        assert {"ms": "ms", "bpm": "bpm", "mv": "mV", "deg": "deg", "count": "count", "ratio": "ratio"}[suffix] == c.units, name


def test_sex_specific_qtc_and_cornell():
    assert cutoff("qtc_prolonged_ms", sex="male") == 450.0
    assert cutoff("qtc_prolonged_ms", sex="female") == 460.0
    assert cutoff("qtc_prolonged_ms") == 460.0  # unknown sex: the value that flags fewer records
    q = cutoffs()["qtc_prolonged_ms"]
    assert q.abnormal(455, "male") is True and q.abnormal(455, "female") is False
    assert q.abnormal(None) is None
    assert cutoff("cornell_mv", sex="female") == 2.0


def test_bands_and_thresholds():
    assert band("axis_normal_deg") == (-30.0, 90.0)
    normal = cutoffs()["axis_normal_deg"]
    assert normal.contains(90.0) and normal.contains(-30.0) and not normal.contains(-31.0)
    incomplete = cutoffs()["qrs_incomplete_bbb_ms"]
    assert incomplete.contains(110) and incomplete.contains(119) and not incomplete.contains(120)
    assert cutoffs()["pr_prolonged_ms"].abnormal(204) and not cutoffs()["pr_prolonged_ms"].abnormal(194)
    assert cutoffs()["lafb_axis_deg"].boundaries() == (-90.0, -45.0)
    with pytest.raises(KeyError):
        cutoff("no_such_cutoff_ms")
    with pytest.raises(ValueError):
        band("pr_prolonged_ms")


def test_malformed_cutoffs_are_refused():
    with pytest.raises(ValueError):
        Cutoff(name="x_ms", units="ms", text="t", source="S")  # neither value nor range
    with pytest.raises(ValueError):
        Cutoff(name="x_ms", units="ms", text="t", source="S", value=1.0)  # no comparison
    with pytest.raises(ValueError):
        Cutoff(name="x_ms", units="ms", text="t", source="S", range=(5.0, 1.0))
    with pytest.raises(ValueError):
        Cutoff(name="x_ms", units="ms", text="t", source="S", comparison=">", male=1.0)


def test_cutoffs_file_is_the_packaged_one():
    assert CUTOFFS_PATH.name == "cutoffs.yaml" and CUTOFFS_PATH.parent == KNOWLEDGE_DIR


def test_amplitude_derived_columns():
    for col in ("st_j_mv", "r_amp_mv", "sokolow_lyon_mv", "qrs_axis_deg", "low_voltage_limb"):
        assert amplitude_derived(col)
    for col in ("pr_ms", "qrs_ms", "hr_bpm", "t_form", "qrs_morphology"):
        assert not amplitude_derived(col)


def test_ludb_records_are_flagged_and_their_millivolts_are_not_citable(shared_dir):
    from pipeline.context import measure_context
    from pipeline.sources import open_source

    src = open_source("ludb", shared_dir / "data" / "ludb")
    rec = src.read(src.ids()[0])
    assert rec.meta.calibration.amplitudes_calibrated is False
    assert "amplitude_normalised" in rec.meta.calibration.flags
    ctx = measure_context(rec)
    assert not ctx.citable("st_j_mv", "II") and not ctx.citable("qrs_axis_deg")
    assert ctx.uncitable_reason("sokolow_lyon_mv") == "amplitude_normalised"
    assert ctx.citable("pr_ms") and ctx.citable("t_form", "II")


def test_synthetic_records_are_calibrated(tmp_path):
    from pipeline.context import measure_context
    from pipeline.sources import open_source
    from pipeline.synthetic import write_synthetic_tree

    write_synthetic_tree(tmp_path, 1, 3)
    src = open_source("synthetic", tmp_path)
    ctx = measure_context(src.read(src.ids()[0]))
    assert ctx.amplitudes_calibrated and ctx.calibration_flags == []
    assert ctx.citable("qrs_axis_deg") and ctx.citable("st_j_mv", "V2")
