"""The offline rules writer: grounded, deterministic, names exactly the record's diagnoses, passes the validator."""
from __future__ import annotations

import re

import polars as pl
import pytest

from conftest import shared_path
from features.schema import BEATS_SCHEMA, RECORDS_SCHEMA
from pipeline.context import GroundingContext, measure_context
from pipeline.knowledge import load_knowledge
from pipeline.record import LEADS
from pipeline.writer import MAX_WORDS, WRITER_VERSION, format_value, write_answer

N_SYNTHETIC = 30


@pytest.fixture(scope="module")
def kb():
    return load_knowledge()


@pytest.fixture(scope="module")
def synthetic_contexts(tmp_path_factory, kb):
    from pipeline.sources import open_source
    from pipeline.synthetic import write_synthetic_tree

    root = write_synthetic_tree(tmp_path_factory.mktemp("synthetic"), N_SYNTHETIC, 20261122)
    src = open_source("synthetic", root)
    return [measure_context(src.read(rid), kb=kb) for rid in src.ids()]


@pytest.fixture(scope="module")
def ptbxl_contexts(kb):
    from pipeline.sources import open_source

    src = open_source("ptbxl", shared_path("data", "ptbxl"))
    return [measure_context(src.read(rid), kb=kb) for rid in src.ids()]


@pytest.fixture(scope="module")
def ludb_contexts(kb):
    """LUDB's cardiologist statements cover MI, ischaemia, pacing, hypertrophy and conduction entries."""
    from pipeline.sources import open_source

    src = open_source("ludb", shared_path("data", "ludb"))
    return [measure_context(src.read(rid), kb=kb) for rid in src.ids()]


# label as the writer prints it -> beats column (see pipeline.writer._LABELS)
_LEAD_LABELS = {"P wave height": "p_amp_mv", "P wave duration": "p_ms", "Q wave depth": "q_amp_mv",
                "Q wave duration": "q_ms", "R wave height": "r_amp_mv", "terminal R'": "r_prime_amp_mv",
                "S wave depth": "s_amp_mv", "S wave duration": "s_ms", "T wave deflection": "t_amp_mv",
                "ST level at the J point": "st_j_mv", "mid-ST level": "st_j60_mv"}
_RECORD_LABELS = {"PR interval": "pr_ms", "QRS duration": "qrs_ms", "QT interval": "qt_ms", "QTc": "qtc_bazett_ms",
                  "heart rate": "hr_bpm", "QRS axis": "qrs_axis_deg", "Sokolow-Lyon voltage": "sokolow_lyon_mv",
                  "Cornell voltage": "cornell_mv", "RR standard deviation": "rr_sd_ms"}
_VALUE = r"(-?\d+(?:\.\d+)?) (mV|ms|bpm|degrees?)"


def cited_values(answer: str) -> tuple[list[tuple[str, str, float]], list[tuple[str, float]]]:
    """(per-lead citations (column, lead, value), record-level citations (column, value)) in ``answer``."""
    per_lead, record = [], []
    for label, col in _LEAD_LABELS.items():
        for m in re.finditer(re.escape(label) + r" of ((?:" + _VALUE + r" in lead \w+(?:, | and )?)+)", answer):
            for v in re.finditer(_VALUE + r" in lead (\w+)", m.group(1)):
                per_lead.append((col, v.group(3), float(v.group(1))))
    for label, col in _RECORD_LABELS.items():
        for m in re.finditer(r"(?<![\w-])" + re.escape(label) + r"(?: of| is| lies at)? " + _VALUE, answer):
            record.append((col, float(m.group(1))))
    return per_lead, record


def assert_grounded(ctx: GroundingContext, answer: str) -> int:
    per_lead, record = cited_values(answer)
    for col, lead, value in per_lead:
        assert lead in ctx.measured_leads, f"{ctx.record_id}: cites unmeasured lead {lead}"
        measured = ctx.lead_value(lead, col)
        assert measured is not None
        if col in ("q_amp_mv", "s_amp_mv"):
            measured = abs(measured)  # depths are written positive
        assert value == pytest.approx(round(measured, 2), abs=1e-9), (ctx.record_id, col, lead, answer)
    for col, value in record:
        measured = ctx.record[col]
        digits = 2 if col.endswith("_mv") else 0
        assert value == pytest.approx(round(measured, digits), abs=1e-9), (ctx.record_id, col, answer)
    return len(per_lead) + len(record)


def test_synthetic_answers_pass_the_validator(synthetic_contexts, kb):
    from pipeline.validate import validate_answer

    failures = []
    for ctx in synthetic_contexts:
        answer = write_answer(ctx, seed=0, kb=kb)
        result = validate_answer(answer, ctx, kb=kb)
        if not result.accepted:
            failures.append((ctx.record_id, result.details))
    # the contract with the validator is >= 99 %; on 30 records that allows no failure
    assert failures == []


def test_numbers_equal_the_measurements_they_cite(synthetic_contexts, ptbxl_contexts, kb):
    n_cited = 0
    for ctx in [*synthetic_contexts, *ptbxl_contexts]:
        for seed in (0, 1):
            n_cited += assert_grounded(ctx, write_answer(ctx, seed=seed, kb=kb))
    assert n_cited > 10 * len(synthetic_contexts)  # the check really ran over many citations


def test_names_every_diagnosis_and_no_other(synthetic_contexts, ptbxl_contexts, ludb_contexts, kb):
    n_ids = set()
    for ctx in [*synthetic_contexts, *ptbxl_contexts, *ludb_contexts]:
        n_ids.update(ctx.statement_ids)
        answer = write_answer(ctx, seed=3, kb=kb)
        named = kb.named_ids(answer)
        wanted = {s for s in ctx.statement_ids if s in kb.entries}
        assert wanted <= kb.closure(named), (ctx.record_id, wanted, named, answer)
        assert named <= kb.closure(wanted), (ctx.record_id, named - kb.closure(wanted), answer)
        assert_grounded(ctx, answer)
    assert len(n_ids) >= 30  # many different entries were exercised


def test_form_one_paragraph_no_hidden_input(synthetic_contexts, ptbxl_contexts, ludb_contexts, kb):
    for ctx in [*synthetic_contexts, *ptbxl_contexts, *ludb_contexts]:
        answer = write_answer(ctx, seed=0, kb=kb)
        assert "\n" not in answer and len(answer.split()) <= MAX_WORDS
        assert not re.search(r"\breport|\bprovided\b|\btable\b|\bmeasurements? (?:given|supplied)", answer, re.I)


def test_deterministic_and_varied_by_seed(synthetic_contexts, kb):
    ctx = synthetic_contexts[0]
    assert write_answer(ctx, seed=5, kb=kb) == write_answer(ctx, seed=5, kb=kb)
    texts = {write_answer(ctx, seed=s, kb=kb) for s in range(8)}
    assert len(texts) >= 3
    assert WRITER_VERSION.startswith("rules-")


def _hand_context(statement_ids: list[str], gated: set[str] = frozenset(), record_overrides=None) -> GroundingContext:
    """A record built by hand: 3 beats in 12 leads, RBBB-like V1/V2, with ``gated`` leads nulled."""
    rows = []
    for lead in LEADS:
        for beat in range(3):
            r = {c: None for c in BEATS_SCHEMA}
            r.update(record_id="hand", lead=lead, beat=beat, beat_class="normal", lead_quality="ok",
                     qrs_ms=136.0 + beat, pr_ms=164.0, qt_ms=420.0, r_amp_mv=0.9 + 0.01 * beat,
                     s_amp_mv=-0.3, t_amp_mv=0.25, st_j_mv=0.0, s_ms=30.0, p_amp_mv=0.12, p_ms=100.0,
                     t_form="positive")
            if lead in ("V1", "V2"):
                r.update(r_prime_amp_mv=0.61 + 0.02 * beat, t_amp_mv=-0.22, t_form="negative")
            if lead in ("I", "V6"):
                r.update(s_ms=52.0 + beat)
            if lead in gated:
                r = {c: (r[c] if c in ("record_id", "lead", "beat") else None) for c in BEATS_SCHEMA}
                r["lead_quality"] = "gated:flat"
            rows.append(r)
    beats = pl.DataFrame(rows, schema=BEATS_SCHEMA)
    rec = {c: None for c in RECORDS_SCHEMA}
    rec.update(record_id="hand", source="hand", n_beats=3, hr_bpm=71.6, rr_mean_ms=838.0, rr_sd_ms=12.0,
               rhythm_regular=True, p_waves_present=True, pr_ms=164.0, qrs_ms=137.0, qt_ms=420.0,
               qtc_bazett_ms=458.8, qrs_axis_deg=75.4, n_premature=0, n_paced=0)
    rec.update(record_overrides or {})
    return GroundingContext(record_id="hand", source="hand", ecg_path="hand", report="", statement_ids=statement_ids,
                            unmapped_statements=[], record=rec, beats=beats)


def test_hand_built_record_cites_its_values(kb):
    ctx = _hand_context(["SR", "CRBBB"])
    answer = write_answer(ctx, seed=0, kb=kb)
    assert "complete right bundle branch block" in answer and "sinus rhythm" in answer
    assert "72 bpm" in answer and "137 ms" in answer and "75 degrees" in answer and "459 ms" in answer
    # V1's R' values are 0.61, 0.63, 0.65: the upper median is 0.63
    assert "0.63 mV in V1" in answer.replace("lead V1", "V1")
    assert_grounded(ctx, answer)


def test_gated_leads_and_null_values_are_never_cited(kb):
    ctx = _hand_context(["SR", "CRBBB", "INVT"], gated={"V1"}, record_overrides={"pr_ms": None, "qtc_bazett_ms": None})
    for seed in range(4):
        answer = write_answer(ctx, seed=seed, kb=kb)
        assert "V1" not in answer
        assert "PR interval" not in answer and "QTc" not in answer
        assert "V2" in answer  # the evidence moves to the measured lead
        assert_grounded(ctx, answer)


def test_unsupported_criteria_are_not_called_support(kb):
    # IVCD asks for QRS > 110 ms; with 94 ms the value is stated but not offered as support
    ctx = _hand_context(["SR", "IVCD"], record_overrides={"qrs_ms": 94.0})
    for seed in range(4):
        answer = write_answer(ctx, seed=seed, kb=kb)
        sentence = next(s for s in answer.split(". ") if "intraventricular conduction delay" in s)
        assert "support" not in sentence and "94 ms" in sentence


def test_format_value_rounds_like_the_validator():
    assert format_value("qrs_ms", 127.6) == "128 ms"
    assert format_value("st_j_mv", 0.214) == "0.21 mV"
    assert format_value("s_amp_mv", -1.104) == "1.10 mV"
    assert format_value("st_j_mv", -0.004) == "0.00 mV"
    assert format_value("qrs_axis_deg", -45.2) == "-45 degrees"
    assert format_value("hr_bpm", 59.5) == "60 bpm"


@pytest.mark.xfail(strict=True, reason="issue 12: the writer cites millivolts and axes on LUDB, whose amplitudes are "
                   "normalised (uncitable_value); wip-writer removes this marker when the writer asks ctx.citable")
def test_real_records_fail_only_where_label_and_measurement_disagree(ptbxl_contexts, ludb_contexts, kb):
    """On real data the validator may reject an answer only because the source's own label contradicts the
    measurement (e.g. LUDB 'sinus tachycardia' at 90 bpm): the writer must name the label, and the validator
    sees the conflict. Numbers, leads, form and diagnosis coverage must always pass."""
    from pipeline.validate import validate_answer

    accepted = 0
    for ctx in [*ptbxl_contexts, *ludb_contexts]:
        result = validate_answer(write_answer(ctx, seed=1, kb=kb), ctx, kb=kb)
        accepted += result.accepted
        assert set(result.reasons) <= {"contradicts_measurement"}, (ctx.record_id, result.details)
    assert accepted >= 0.9 * (len(ptbxl_contexts) + len(ludb_contexts))
