"""PTB-XL (Wagner et al. 2020): ``ptbxl_database.csv`` + ``records500/`` WFDB files at 500 Hz.

One record per ``ecg_id`` (id = zero-padded to 5 digits, e.g. ``"06000"``). The report is kept as written
(partly German); statements are the SCP codes of ``scp_codes`` with their likelihoods and English names.
"""
from __future__ import annotations

import ast
import math
from pathlib import Path

from pipeline.record import Demographics, ECGRecord, RecordError, RecordMeta, Statement, check_record_id
from pipeline.sources.tables import SourceTable, read_source_table
from pipeline.sources.wfdb_common import read_wfdb_window

# English descriptions of PTB-XL's 71 SCP-ECG statements (scp_statements.csv). The full knowledge base
# with definitions and criteria lives elsewhere; this is only what a statement needs to be readable.
SCP_EN: dict[str, str] = {
    # diagnostic
    "NDT": "non-diagnostic T wave abnormalities", "NST_": "non-specific ST changes",
    "DIG": "digitalis effect", "LNGQT": "long QT interval", "NORM": "normal ECG",
    "IMI": "inferior myocardial infarction", "ASMI": "anteroseptal myocardial infarction",
    "LVH": "left ventricular hypertrophy", "LAFB": "left anterior fascicular block",
    "ISC_": "non-specific ischemic ST-T changes", "IRBBB": "incomplete right bundle branch block",
    "1AVB": "first degree AV block", "IVCD": "non-specific intraventricular conduction disturbance",
    "ISCAL": "ischemia in anterolateral leads", "CRBBB": "complete right bundle branch block",
    "CLBBB": "complete left bundle branch block", "ILMI": "inferolateral myocardial infarction",
    "LAO/LAE": "left atrial overload/enlargement", "AMI": "anterior myocardial infarction",
    "ALMI": "anterolateral myocardial infarction", "ISCIN": "ischemia in inferior leads",
    "INJAS": "subendocardial injury in anteroseptal leads", "LMI": "lateral myocardial infarction",
    "ISCIL": "ischemia in inferolateral leads", "LPFB": "left posterior fascicular block",
    "ISCAS": "ischemia in anteroseptal leads", "INJAL": "subendocardial injury in anterolateral leads",
    "ISCLA": "ischemia in lateral leads", "RVH": "right ventricular hypertrophy",
    "ANEUR": "ST-T changes compatible with ventricular aneurysm", "RAO/RAE": "right atrial overload/enlargement",
    "EL": "electrolyte disturbance or drug effect", "WPW": "Wolff-Parkinson-White syndrome",
    "ILBBB": "incomplete left bundle branch block", "IPLMI": "inferoposterolateral myocardial infarction",
    "ISCAN": "ischemia in anterior leads", "IPMI": "inferoposterior myocardial infarction",
    "SEHYP": "septal hypertrophy", "INJIN": "subendocardial injury in inferior leads",
    "INJLA": "subendocardial injury in lateral leads", "PMI": "posterior myocardial infarction",
    "3AVB": "third degree AV block", "INJIL": "subendocardial injury in inferolateral leads",
    "2AVB": "second degree AV block",
    # form
    "ABQRS": "abnormal QRS", "PVC": "ventricular premature complex", "STD_": "non-specific ST depression",
    "VCLVH": "voltage criteria for left ventricular hypertrophy", "QWAVE": "Q waves present",
    "LOWT": "low amplitude T waves", "NT_": "non-specific T wave changes", "PAC": "atrial premature complex",
    "LPR": "prolonged PR interval", "INVT": "inverted T waves",
    "LVOLT": "low QRS voltages in the frontal and horizontal leads", "HVOLT": "high QRS voltage",
    "TAB_": "T wave abnormality", "STE_": "non-specific ST elevation", "PRC(S)": "premature complex(es)",
    # rhythm
    "SR": "sinus rhythm", "AFIB": "atrial fibrillation", "STACH": "sinus tachycardia",
    "SARRH": "sinus arrhythmia", "SBRAD": "sinus bradycardia", "PACE": "normal functioning artificial pacemaker",
    "SVARR": "supraventricular arrhythmia", "BIGU": "bigeminal pattern (unknown origin)",
    "AFLT": "atrial flutter", "SVTAC": "supraventricular tachycardia",
    "PSVT": "paroxysmal supraventricular tachycardia", "TRIGU": "trigeminal pattern (unknown origin)",
}

PTBXL_AGE_CENSORED = 300  # PTB-XL writes 300 for patients older than 89 (de-identification)


def _num(value: str | None) -> float | None:
    """A CSV cell as float; None for empty / NaN / non-numeric."""
    if value is None or value == "":
        return None
    try:
        x = float(value)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def ecg_id_of(cell: str) -> str | None:
    """'6000', '6000.0' -> '06000'; None for a cell that is not a positive whole number (that row fails)."""
    try:
        x = float(cell)
    except ValueError:
        return None
    if not math.isfinite(x) or x != int(x) or x < 0:
        return None
    return f"{int(x):05d}"


def parse_scp_codes(text: str) -> list[Statement]:
    """``"{'NORM': 100.0, 'SR': 0.0}"`` -> one ``Statement`` per code (system 'scp', likelihood 0-100)."""
    codes = ast.literal_eval(text) if text else {}
    if not isinstance(codes, dict):
        raise ValueError(f"scp_codes is not a dict: {text!r}")
    return [
        Statement(text=SCP_EN.get(str(code), str(code)), code=str(code), system="scp", likelihood=_num(str(lik)))
        for code, lik in codes.items()
    ]


class PtbxlSource:
    """PTB-XL release root: ``ptbxl_database.csv`` and ``records500/`` (500-Hz ``filename_hr``)."""

    name = "ptbxl"

    def __init__(self, root: Path, window_s: float | None = 10.0, window_start_s: float = 0.0, **_: object):
        self.root = Path(root)
        self.window_s = window_s
        self.window_start_s = window_start_s
        self._rows: SourceTable | None = None

    def _table(self) -> SourceTable:
        """The database table, read once per source object (see ``pipeline.sources.tables``)."""
        if self._rows is None:
            self._rows = read_source_table(self.root / "ptbxl_database.csv", "ecg_id", ("filename_hr",),
                                           normalise_id=ecg_id_of)
        return self._rows

    def ids(self) -> list[str]:
        """ecg_ids as 5-digit strings in ascending order (an id on several rows: once per row)."""
        return sorted(self._table().ids())

    def read(self, record_id: str) -> ECGRecord:
        """The record's 10-s, 500-Hz 12-lead signal plus report, SCP statements and demographics."""
        table = self._table()
        if record_id not in table:
            check_record_id(record_id)
        row = table.row(record_id)  # duplicate_id / bad_metadata for this record only
        rel = (row.get("filename_hr") or "").strip()
        if not rel:
            raise RecordError("bad_metadata", "filename_hr is empty", record_id)
        try:
            statements = parse_scp_codes(row.get("scp_codes") or "")
        except (ValueError, SyntaxError) as exc:
            raise RecordError("bad_metadata", f"scp_codes unreadable: {exc}", record_id) from exc
        win = read_wfdb_window(self.root, rel, record_id, self.window_s, self.window_start_s)
        age = _num(row.get("age"))
        sex = {"0": "male", "1": "female"}.get(str(int(_num(row.get("sex"))))) if _num(row.get("sex")) is not None else None
        patient = _num(row.get("patient_id"))
        recorded = (row.get("recording_date") or "").strip() or None
        meta = RecordMeta(
            record_id=record_id,
            source=self.name,
            n_samples=win.signal_mv.shape[1],
            patient_id=str(int(patient)) if patient is not None else None,
            demographics=Demographics(
                age_years=None if age is None or age >= PTBXL_AGE_CENSORED else age,
                sex=sex,
                height_cm=_num(row.get("height")),
                weight_kg=_num(row.get("weight")),
            ),
            report=(row.get("report") or "").strip(),
            statements=statements,
            provenance=win.provenance,
            calibration=win.calibration,
            recorded_at=recorded.replace(" ", "T") if recorded else None,
        )
        return ECGRecord(meta=meta, signal_mv=win.signal_mv)
