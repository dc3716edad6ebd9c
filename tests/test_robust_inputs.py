"""The pieces behind the bad-input corpus, each on its own: source tables read row by row, physiological limits
on reference measurements (against synthetic records with known truth), the failures summary, run stamps."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from pipeline.batch import collect_failures
from pipeline.record import ReferenceMeasurements, RecordError, TableError
from pipeline.sources.mimic import plausible_reference
from pipeline.sources.ptbxl import ecg_id_of
from pipeline.sources.tables import read_source_table
from pipeline.synthetic import generate_record, random_params
from pipeline.synthetic_params import SynthParams

HEADER = "ecg_id,report,filename_hr\n"


def _table(tmp_path, body: bytes, **kw):
    path = tmp_path / "t.csv"
    path.write_bytes(body)
    return read_source_table(path, "ecg_id", ("filename_hr",), normalise_id=ecg_id_of, **kw)


# ------------------------------------------------------------------------------------------ source tables
def test_a_clean_table_reads_every_row_by_id(tmp_path):
    t = _table(tmp_path, (HEADER + '1,"sinus, normal",a\n2,"two\nlines",b\n3,,c\n').encode())
    assert t.ids() == ["00001", "00002", "00003"] and not t.problems
    assert t.row("00002") == {"ecg_id": "2", "report": "two\nlines", "filename_hr": "b"}
    assert list(t.lines) == [2, 3, 5]  # a quoted newline makes row 2 span lines 3-4
    with pytest.raises(RecordError) as err:
        t.row("00009")
    assert err.value.code == "bad_metadata"


def test_bad_rows_cost_only_their_record(tmp_path):
    body = (HEADER + "1,ok,a\n2,short\n3,long,c,extra\n").encode() + b"4,caf\xe9,d\n" + b"5,ok,e\n"
    t = _table(tmp_path, body)
    assert t.ids() == ["00001", "00002", "00003", "00004", "00005"]
    assert t.row("00001")["filename_hr"] == "a" and t.row("00005")["report"] == "ok"
    for rid, words in (("00002", "2 fields, the header 3"), ("00003", "4 fields"), ("00004", "byte 0xe9")):
        with pytest.raises(RecordError) as err:
            t.row(rid)
        assert err.value.code == "bad_metadata" and words in err.value.message, err.value.message


def test_every_copy_of_a_duplicated_id_fails(tmp_path):
    t = _table(tmp_path, (HEADER + "7,a,x\n8,b,y\n7.0,c,z\n").encode())
    assert sorted(t.ids()) == ["00007", "00007", "00008"]  # listed once per row: each copy gets its error row
    with pytest.raises(RecordError) as err:
        t.row("00007")
    assert err.value.code == "duplicate_id" and "lines 2, 4" in err.value.message
    assert t.row("00008")["report"] == "b"


def test_rows_without_an_id_get_a_placeholder_that_is_never_a_record_id(tmp_path):
    t = _table(tmp_path, (HEADER + "abc,a,x\n,b,y\n9,c,z\n").encode())
    assert t.ids() == ["t.csv:2", "t.csv:3", "00009"]
    with pytest.raises(RecordError) as err:
        t.row("t.csv:2")
    assert err.value.code == "bad_metadata" and "'abc' is not an id" in err.value.message


def test_a_bom_and_blank_lines_are_not_problems(tmp_path):
    t = _table(tmp_path, b"\xef\xbb\xbf" + (HEADER + "1,a,x\n\n2,b,y\n").encode())
    assert t.ids() == ["00001", "00002"] and not t.problems and t.row("00002")["report"] == "b"


def test_rows_polars_would_split_otherwise_are_read_as_the_csv_rules_say(tmp_path):
    # a bare quote inside a field, and old Mac line ends (CR only): the frame is built from the csv module's rows
    t = _table(tmp_path, (HEADER + '1,ab"c,x\n2,y,z\n').encode())
    assert t.row("00001")["report"] == 'ab"c' and t.row("00002")["filename_hr"] == "z"
    t = _table(tmp_path, (HEADER.rstrip("\n") + "\r1,a,x\r2,b,y\r").encode())
    assert t.ids() == ["00001", "00002"] and t.row("00002")["report"] == "b"


def test_an_unclosed_quote_is_a_table_error_not_lost_rows(tmp_path):
    body = HEADER + '1,"never closed,x\n' + "".join(f"{i},r,f\n" for i in range(2, 40))
    with pytest.raises(TableError) as err:
        _table(tmp_path, body.encode())
    assert "never closed" in str(err.value) and "line 2" in str(err.value)


@pytest.mark.parametrize("body, words", [
    (b"", "is empty"),
    (b"id,report,filename_hr\n1,a,b\n", "has no ecg_id column"),
    (b"ecg_id,report\n1,a\n", "has no filename_hr column"),
    (b"ecg_id,rep\xffort,filename_hr\n", "header line holds byte 0xff"),
    (b"ecg_id,ecg_id,filename_hr\n", "names column(s) ecg_id twice"),
])
def test_a_table_unusable_as_a_whole_is_one_table_error(tmp_path, body, words):
    with pytest.raises(TableError) as err:
        _table(tmp_path, body)
    assert err.value.code == "unusable_table" and words in str(err.value) and "t.csv" in str(err.value)


def test_ecg_ids_are_normalised_or_refused():
    assert [ecg_id_of(x) for x in ("6000", "6000.0", " 12 ")] == ["06000", "06000", "00012"]
    assert [ecg_id_of(x) for x in ("abc", "6000.5", "-3", "nan", "inf")] == [None] * 5


# ------------------------------------------------------------------------------------ physiological limits
def _machine_like(truth) -> ReferenceMeasurements:
    """A machine-measurement reference from a synthetic record's known truth: fiducials on a beat axis."""
    q_on = 300.0
    pr = truth.pr_ms
    return ReferenceMeasurements(
        kind="mimic_machine", rr_ms=truth.rr_mean_ms, hr_bpm=truth.hr_bpm, pr_ms=pr, qrs_ms=truth.qrs_ms,
        qt_ms=truth.qt_ms, qrs_onset_ms=q_on, qrs_end_ms=q_on + truth.qrs_ms, t_end_ms=q_on + truth.qt_ms,
        p_onset_ms=None if pr is None else q_on - pr, p_end_ms=None if pr is None else q_on - pr + 100.0,
        qrs_axis_deg=truth.qrs_axis_deg, p_axis_deg=60.0, t_axis_deg=40.0)


def test_no_physiological_ecg_loses_a_reference_value():
    """Every record the generator can make, its extremes included (30 and 180 bpm, PR 400, QRS 200 with a
    block, QT 600, axes -120..180), keeps every value: the limits only refuse the impossible."""
    rng = np.random.default_rng(0)
    params = [random_params(rng) for _ in range(150)]
    params += [SynthParams(hr_bpm=30, rhythm="sinus_bradycardia", pr_ms=400, qt_ms=600),
               SynthParams(hr_bpm=180, rhythm="sinus_tachycardia", qt_ms=200, qrs_ms=60, pr_ms=100),
               SynthParams(qrs_ms=200, bundle_branch_block="left", qt_ms=560, qrs_axis_deg=-120),
               SynthParams(qrs_axis_deg=180, rhythm="atrial_fibrillation")]
    for i, p in enumerate(params):
        truth = generate_record(p, seed=i).truth
        ref = _machine_like(truth)
        kept, dropped = plausible_reference(ref)
        assert dropped == [] and kept == ref, (p, dropped)


def test_impossible_machine_values_are_dropped_with_what_they_condemn():
    truth = generate_record(SynthParams(), seed=3).truth
    ref = _machine_like(truth)
    # QRS end before its onset: the QRS is -400 ms, and PR and QT share that onset
    bad, dropped = plausible_reference(ref.model_copy(update={"qrs_end_ms": ref.qrs_onset_ms - 400,
                                                             "qrs_ms": -400.0}))
    assert {d.split("=")[0] for d in dropped} == {"qrs_ms", "pr_ms", "qt_ms", "qrs_onset_ms", "qrs_end_ms"}
    assert bad.qrs_ms is bad.pr_ms is bad.qt_ms is None
    assert bad.rr_ms == ref.rr_ms and bad.qrs_axis_deg == ref.qrs_axis_deg and bad.p_onset_ms == ref.p_onset_ms
    assert bad.t_end_ms == ref.t_end_ms  # not known to be wrong: only what the impossible QRS condemns goes
    # a negative RR: the rate goes with it, the intervals stay
    bad, dropped = plausible_reference(ref.model_copy(update={"rr_ms": -857.0, "hr_bpm": -70.0}))
    assert sorted(d.split("=")[0] for d in dropped) == ["hr_bpm", "rr_ms"] and bad.qrs_ms == ref.qrs_ms
    # an angle that is no angle
    bad, dropped = plausible_reference(ref.model_copy(update={"t_axis_deg": 999.0}))
    assert dropped == ["t_axis_deg=999"] and bad.t_axis_deg is None and bad.qrs_axis_deg == ref.qrs_axis_deg


# ---------------------------------------------------------------------------------------- failure summary
def test_failures_count_records_once_and_list_the_top_codes():
    rows = pl.DataFrame({
        "record_id": ["a", "a", "b", "c", "d", "e", "f", "g", None, "h"],
        "stage": ["ingest", "features", "ingest", "ingest", "render", "prompts", "prompts", "ingest", "ingest",
                  "features"],
        "severity": ["error"] * 9 + ["warning"],
        "code": ["missing_file", "missing_file", "missing_file", "k1", "k2", "k3", "k4", "k5", "bad_metadata",
                 "noisy_lead"],
    })
    f = collect_failures([("x/errors.parquet", rows)])
    assert f.n_failed == 8 and f.by_code[0] == ("missing_file", 2)
    assert f.stages["missing_file"] == ["ingest", "features"]  # chain order, not alphabetical
    text = f.format()
    assert text.startswith("8 records failed (9 error rows)") and "x/errors.parquet" in text
    assert text.count("\n  ") == 6 and "... 2 more code(s)" in text  # the top five, then the rest by name
    assert collect_failures([]).n_failed == 0 and collect_failures(["/nonexistent.parquet"]).n_failed == 0
