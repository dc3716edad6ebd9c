"""The knowledge base: schema, coverage of every vocabulary we ingest, report normalisation, mention finding."""
from __future__ import annotations

import ast
import csv
import json
import re
import shutil

import pytest
import yaml
from pydantic import ValidationError

from pipeline.knowledge import KNOWLEDGE_DIR, SCHEMA_PATH, knowledge_schema, load_knowledge
from pipeline.record import Statement
from conftest import shared_path

# Every PTB-XL SCP statement (diagnostic, form, rhythm: scp_statements.csv) plus PTB-XL's heart_axis values.
PTBXL_SCP = """NDT NST_ DIG LNGQT NORM IMI ASMI LVH LAFB ISC_ IRBBB 1AVB IVCD ISCAL CRBBB CLBBB ILMI LAO/LAE AMI
ALMI ISCIN INJAS LMI ISCIL LPFB ISCAS INJAL ISCLA RVH ANEUR RAO/RAE EL WPW ILBBB IPLMI ISCAN IPMI SEHYP INJIN
INJLA PMI 3AVB INJIL 2AVB ABQRS PVC STD_ VCLVH QWAVE LOWT NT_ PAC LPR INVT LVOLT HVOLT TAB_ STE_ PRC(S) SR AFIB
STACH SARRH SBRAD PACE SVARR BIGU AFLT SVTAC PSVT TRIGU LAD RAD ALAD ARAD MID AXL AXR SAG""".split()

MIMIC_PHRASES = {
    "Sinus rhythm": "SR", "Sinus bradycardia": "SBRAD", "Atrial fibrillation": "AFIB",
    "Left ventricular hypertrophy": "LVH", "Prolonged QT interval": "LNGQT", "Abnormal ECG": "ABNECG",
    "Normal ECG": "NORM", "Borderline ECG": "BORDER", "Nonspecific T wave abnormalities": "NT_",
    "Possible anterior infarct - age undetermined": "AMI", "Left axis deviation": "LAD",
    "Low QRS voltages in limb leads": "LVOLT", "Poor R wave progression": "PRWP",
    "Septal infarct - age undetermined": "ASMI", "1st degree A-V block": "1AVB",
    "Atrial fibrillation with rapid ventricular response": "AFIB", "Sinus tachycardia": "STACH",
}


@pytest.fixture(scope="module")
def kb():
    return load_knowledge()


def test_entries_validate_and_cover_required_statements(kb):
    assert len(kb.entries) >= 60
    required = {"SR", "SBRAD", "STACH", "SARRH", "AFIB", "AFLT", "PSVT", "PAC", "PVC", "BIGU", "TRIGU", "PACE",
                "1AVB", "2AVB", "3AVB", "CRBBB", "IRBBB", "CLBBB", "ILBBB", "LAFB", "LPFB", "IVCD", "WPW", "LVH",
                "RVH", "LAO/LAE", "RAO/RAE", "SEHYP", "IMI", "ASMI", "AMI", "ALMI", "LMI", "ILMI", "IPLMI", "IPMI",
                "PMI", "INJAS", "INJAL", "INJIN", "INJLA", "INJIL", "ISC_", "NST_", "ISCAL", "ISCIN", "ISCIL",
                "ISCAS", "ISCLA", "ISCAN", "LNGQT", "LOWT", "NT_", "INVT", "QWAVE", "LVOLT", "HVOLT", "LPR",
                "STE_", "STD_", "NDT", "DIG", "EL", "ANEUR", "ABQRS", "PRC(S)", "TAB_", "VCLVH", "LAD", "RAD",
                "NAXIS", "AXIND", "NORM"}
    assert required <= set(kb.entries)
    from features.schema import BEATS_SCHEMA, RECORDS_SCHEMA
    from pipeline.derived import DERIVED_LEAD_COLUMNS, DERIVED_RECORD_COLUMNS

    columns = set(BEATS_SCHEMA) | set(RECORDS_SCHEMA) | set(DERIVED_LEAD_COLUMNS) | set(DERIVED_RECORD_COLUMNS)
    for e in kb.entries.values():
        assert e.name and e.mechanism.endswith(".") and e.reference in kb.references, e.id
        assert any(c.feature for c in e.criteria) or e.category == "other", f"{e.id} has no measurable criterion"
        for c in e.criteria:
            assert c.feature is None or c.feature in columns
            assert c.feature is None or c.comparison is not None


def test_schema_file_matches_models():
    assert json.loads(SCHEMA_PATH.read_text()) == json.loads(json.dumps(knowledge_schema(), sort_keys=True))


def test_invalid_entry_is_rejected(tmp_path):
    for f in KNOWLEDGE_DIR.glob("*.yaml"):
        shutil.copy(f, tmp_path / f.name)
    data = yaml.safe_load((tmp_path / "rhythm.yaml").read_text())
    data["entries"][0]["criteria"][0]["feature"] = "qrs_width_furlongs"
    (tmp_path / "rhythm.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ValidationError, match="qrs_width_furlongs"):
        load_knowledge(tmp_path)


def test_duplicate_phrase_is_rejected(tmp_path):
    for f in KNOWLEDGE_DIR.glob("*.yaml"):
        shutil.copy(f, tmp_path / f.name)
    data = yaml.safe_load((tmp_path / "rhythm.yaml").read_text())
    data["entries"][1]["synonyms"].append("sinus rhythm")  # SBRAD claiming SR's name
    (tmp_path / "rhythm.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    with pytest.raises(ValueError, match="sinus rhythm"):
        load_knowledge(tmp_path)


@pytest.mark.parametrize("code", PTBXL_SCP)
def test_every_ptbxl_scp_code_maps(kb, code):
    assert kb.lookup_code("scp", code) is not None


def test_names_find_themselves(kb):
    for e in kb.entries.values():
        mentions = kb.find_mentions(f"The tracing shows {e.name}.")
        assert [(m.entry_id, m.negated) for m in mentions] == [(e.id, False)], e.id


def test_implies_and_excludes(kb):
    assert kb.closure(["SBRAD"]) == {"SBRAD", "SR"}
    assert {"CLBBB", "LBBB", "BBB"} <= kb.closure(["CLBBB"])
    assert ("AFIB", "SR") in kb.contradictions(["AFIB", "SR"])
    assert "STD_" in kb.permitted(["ISCLA"]) and "STD_" not in kb.closure(["ISCLA"])


def test_shared_ptbxl_statements_and_reports_map(kb):
    db = shared_path("data", "ptbxl", "ptbxl_database.csv")
    rows = list(csv.DictReader(db.open(encoding="utf-8")))
    assert rows
    for row in rows:
        codes = ast.literal_eval(row["scp_codes"])
        stmts = [Statement(text=c, code=c, system="scp", likelihood=v) for c, v in codes.items()]
        norm = kb.normalise(stmts, row["report"])
        assert norm.unmapped == [], (row["ecg_id"], norm.unmapped)
        assert set(norm.statement_ids) >= {kb.lookup_code("scp", c) for c in codes}
    # German report words reach the right statements without any code
    german = kb.normalise([], "sinusrhythmus linkstyp periphere niederspannung unspezifische st-veränderungen")
    assert german.statement_ids == ["SR", "HAXIS", "LVOLT", "NST_"]
    assert kb.normalise([], "sinustachykardie lagetyp normal sonst normales ekg").statement_ids == \
        ["STACH", "NAXIS", "NORM"]


def test_shared_cinc_snomed_codes_map(kb):
    folder = shared_path("data", "cinc2021")
    codes = set()
    for hea in folder.glob("*.hea"):
        for line in hea.read_text().splitlines():
            if line.startswith("# Dx:"):
                codes.update(c.strip() for c in line.split(":", 1)[1].split(",") if c.strip())
    assert len(codes) >= 10
    unmapped = sorted(c for c in codes if kb.lookup_code("snomed", c) is None)
    assert unmapped == []
    assert kb.lookup_code("snomed", "164873001") == "LVH" and kb.lookup_code("snomed", "426177001") == "SBRAD"


def test_shared_ludb_vocabulary_maps(kb):
    table = shared_path("data", "ludb", "ludb.csv")
    rows = list(csv.DictReader(table.open(encoding="utf-8")))
    phrases = {line.strip() for r in rows for k, v in r.items() if k not in ("ID", "Sex", "Age")
               for line in (v or "").splitlines() if line.strip()}
    assert len(phrases) > 40
    unmapped = sorted(p for p in phrases if kb.lookup_code("ludb", p) is None)
    assert unmapped == []
    assert kb.lookup_code("ludb", "Electric axis of the heart: left axis deviation") == "LEFTAX"  # LUDB: axis < 0
    assert kb.lookup_code("ludb", "UNIpolar ventricular pacing") == "PACE"  # LUDB's odd capitals


def test_synthetic_vocabulary_maps(kb):
    from pipeline.synthetic_truth import SCP_NAMES

    for code, name in SCP_NAMES.items():
        norm = kb.normalise([Statement(text=name, code=code, system="synthetic")], "")
        assert norm.statement_ids == [kb.lookup_code("scp", code)] and norm.unmapped == []


@pytest.mark.parametrize("phrase,expected", sorted(MIMIC_PHRASES.items()))
def test_mimic_phrases_map(kb, phrase, expected):
    norm = kb.normalise([Statement(text=phrase, system="mimic")], "")
    assert norm.statement_ids == [expected]


def test_mimic_boilerplate_is_dropped(kb):
    report = ("Sinus rhythm\nLeft axis deviation\nAbnormal ECG\n--- Warning: Data quality may affect "
              "interpretation ---\nUnconfirmed report\nCompared to ECG of 2150-01-01, no significant change")
    norm = kb.normalise([], report)
    assert norm.statement_ids == ["SR", "LAD", "ABNECG"]
    assert norm.unmapped == [] and len(norm.dropped) == 3


def test_unknown_codes_and_fragments_are_kept_as_unmapped(kb):
    norm = kb.normalise([Statement(text="?", code="XYZ9", system="scp")], "sinus rhythm. patient moved")
    assert norm.statement_ids == ["SR"]
    assert norm.unmapped == ["scp:XYZ9", "patient moved"]


@pytest.mark.parametrize("text,expected", [
    ("Sinus rhythm with first-degree AV block.", [("SR", False), ("1AVB", False)]),
    ("There is no ST elevation.", [("STE_", True)]),
    ("No ST elevation, ST depression or T wave inversion is seen.", [("STE_", True), ("STD_", True), ("INVT", True)]),
    ("Without evidence of ischemia, left ventricular hypertrophy is present.", [("ISC_", True), ("LVH", False)]),
    ("There is no left ventricular hypertrophy, but T wave inversion in V2.", [("LVH", True), ("INVT", False)]),
    ("The T wave is upright in V1 and the T wave amplitude is 0.3 mV.", []),
    ("ST elevation is absent in V2.", [("STE_", True)]),
    ("Complete right bundle branch block, not incomplete right bundle branch block.",
     [("CRBBB", False), ("IRBBB", True)]),
    ("LVH with strain; AF with a rapid ventricular response.", [("LVH", False), ("AFIB", False)]),
    ("The ST segment is normal and the P wave is normal.", []),
    ("Findings are consistent with an inferior myocardial infarction.", [("IMI", False)]),
    ("Keine ST-Hebung, aber T-Negativierung in V2.", [("STE_", True), ("INVT", False)]),
    ("AV conduction is normal; there is no AV block.", []),
])
def test_find_mentions_tricky_sentences(kb, text, expected):
    got = [(m.entry_id, m.negated) for m in kb.find_mentions(text)]
    assert got == expected
    for m in kb.find_mentions(text):
        assert text[m.start:m.end] == m.text


def test_mention_offsets_survive_unicode(kb):
    text = "Befund: ST-Streckensenkung in V5 – sonst normales EKG."
    ms = kb.find_mentions(text)
    assert [m.entry_id for m in ms] == ["STD_", "NORM"]
    assert all(text[m.start:m.end] == m.text for m in ms)


def test_abbreviations_are_case_sensitive(kb):
    assert [m.entry_id for m in kb.find_mentions("LVH and RBBB")] == ["LVH", "RBBB"]
    assert kb.find_mentions("the lvh word in lower case is not an abbreviation") == []
    assert re.search("left ventricular hypertrophy", kb.expand_abbreviations("LVH present"))


def test_common_words_are_not_diagnoses(kb):
    # words an interpretation uses all the time must not read as claims
    text = ("The sinus node is the dominant pacemaker; the T wave and the ST segment are described in every lead, "
            "the QRS axis and the PR interval are measured, and the P wave is upright.")
    assert kb.find_mentions(text) == []
