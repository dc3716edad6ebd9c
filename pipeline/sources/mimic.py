"""MIMIC-IV-ECG (Gow et al. 2023): ``record_list.csv``, ``machine_measurements.csv`` and
``files/pNNNN/pNNNNNNNN/sNNNNNNNN/<study_id>.{hea,dat}`` (12 leads, 500 Hz, 10 s).

The header's lead order is not PTB-XL's (aVF comes before aVL): leads are always picked by name. The
machine report (``report_0`` ... ``report_17``) is joined without its boiler-plate lines (data-quality
warnings, analysis errors, pediatric-criteria notes), which are kept in ``report_dropped``.

Machine measurements: ``rr_interval``, ``p_onset``, ``p_end``, ``qrs_onset``, ``qrs_end``, ``t_end`` are in
milliseconds (fiducials on the machine's representative-beat time axis), axes in degrees, 29999 = missing.
(The project brief suspected sample offsets at 500 Hz; PhysioNet's values - rr_interval ~ 600-1100,
qrs_end - qrs_onset ~ 80-120, qrs_onset - p_onset ~ 120-200 - only make physiological sense as ms: as
samples they would double every QRS and PR duration.) Intervals are derived: PR = qrs_onset - p_onset,
QRS = qrs_end - qrs_onset, QT = t_end - qrs_onset.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import polars as pl

from pipeline.record import ECGRecord, RecordError, RecordMeta, ReferenceMeasurements, Statement, check_record_id
from pipeline.sources.wfdb_common import read_wfdb_window

MIMIC_MISSING = 29999
N_REPORT_COLUMNS = 18

# Lines of the machine report that describe the recording, not the heart.
BOILERPLATE_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        r"^\s*-{2,}",                      # '--- Warning: Data quality ...', '--- Suspect arm lead reversal'
        r"data quality",
        r"analysis error",
        r"pediatric criteria",
        r"^\s*warning\b",
        r"unsuitable for analysis",
        r"technically (poor|limited|unsatisfactory)",
        r"\bno (previous|prior) (ecg|tracing)s? (available|for comparison)",
    )
)


def is_boilerplate(line: str) -> bool:
    """True for report lines about the recording (quality warnings, analysis errors), not the patient."""
    return any(p.search(line) for p in BOILERPLATE_PATTERNS)


def split_report(lines: list[str | None]) -> tuple[list[str], list[str]]:
    """(kept diagnostic lines, dropped boiler-plate lines) from ``report_0`` ... ``report_17``."""
    kept, dropped = [], []
    for line in lines:
        text = (line or "").strip()
        if not text:
            continue
        (dropped if is_boilerplate(text) else kept).append(text)
    return kept, dropped


def _measurement(value: str | None) -> float | None:
    """A machine measurement: None for empty, non-numeric or MIMIC's 29999 'missing' marker."""
    if value is None or str(value).strip() == "":
        return None
    try:
        x = float(value)
    except ValueError:
        return None
    return None if not math.isfinite(x) or x == MIMIC_MISSING else x


def machine_reference(row: dict[str, str | None]) -> ReferenceMeasurements:
    """``machine_measurements.csv`` row -> ``ReferenceMeasurements(kind='mimic_machine')`` in ms / degrees."""
    rr = _measurement(row.get("rr_interval"))
    p_on, p_end = _measurement(row.get("p_onset")), _measurement(row.get("p_end"))
    q_on, q_end = _measurement(row.get("qrs_onset")), _measurement(row.get("qrs_end"))
    t_end = _measurement(row.get("t_end"))

    def diff(a, b):
        return b - a if a is not None and b is not None else None

    return ReferenceMeasurements(
        kind="mimic_machine",
        rr_ms=rr,
        hr_bpm=60000.0 / rr if rr else None,
        p_onset_ms=p_on, p_end_ms=p_end, qrs_onset_ms=q_on, qrs_end_ms=q_end, t_end_ms=t_end,
        p_axis_deg=_measurement(row.get("p_axis")),
        qrs_axis_deg=_measurement(row.get("qrs_axis")),
        t_axis_deg=_measurement(row.get("t_axis")),
        pr_ms=diff(p_on, q_on), qrs_ms=diff(q_on, q_end), qt_ms=diff(q_on, t_end),
        extra={k: (row.get(k) or None) for k in ("cart_id", "bandwidth", "filtering")},
    )


class _Table:
    """A CSV kept as a polars frame plus a study_id -> row-number index (MIMIC's tables have ~800k rows:
    a dict per row would cost gigabytes; one row is materialised per read)."""

    def __init__(self, df: pl.DataFrame | None):
        self.df = df
        ids = [] if df is None else [str(x).strip() for x in df["study_id"].to_list()]
        self.index = {sid: i for i, sid in enumerate(ids)}  # a repeated study_id: its last row wins

    def keys(self) -> list[str]:
        return list(self.index)

    def get(self, study_id: str) -> dict[str, str | None] | None:
        i = self.index.get(study_id)
        return None if i is None else self.df.row(i, named=True)


class MimicSource:
    """MIMIC-IV-ECG root holding ``record_list.csv``, ``machine_measurements.csv`` and ``files/``."""

    name = "mimic"

    def __init__(self, root: Path, window_s: float | None = 10.0, window_start_s: float = 0.0, **_: object):
        self.root = Path(root)
        self.window_s = window_s
        self.window_start_s = window_start_s
        self._records: _Table | None = None
        self._machine: _Table | None = None

    def _record_list(self) -> _Table:
        if self._records is None:
            csv = self.root / "record_list.csv"
            if not csv.is_file():
                raise RecordError("missing_file", f"{csv} is missing")
            self._records = _Table(pl.read_csv(csv, infer_schema=False))
        return self._records

    def _measurements(self) -> _Table:
        if self._machine is None:
            csv = self.root / "machine_measurements.csv"
            self._machine = _Table(pl.read_csv(csv, infer_schema=False) if csv.is_file() else None)
        return self._machine

    def ids(self) -> list[str]:
        """study_ids in ``record_list.csv`` order (unsafe ones included: ``read`` rejects them)."""
        return self._record_list().keys()

    def read(self, record_id: str) -> ECGRecord:
        """Signal (leads by name), cleaned machine report, statements and machine measurements."""
        check_record_id(record_id)
        row = self._record_list().get(record_id)
        if row is None:
            raise RecordError("bad_metadata", "no row in record_list.csv", record_id)
        rel = (row.get("path") or "").strip()
        if not rel:
            raise RecordError("bad_metadata", "record_list.csv path is empty", record_id)
        win = read_wfdb_window(self.root, rel, record_id, self.window_s, self.window_start_s)
        mm = self._measurements().get(record_id)
        kept, dropped, reference = [], [], None
        if mm is not None:
            kept, dropped = split_report([mm.get(f"report_{i}") for i in range(N_REPORT_COLUMNS)])
            reference = machine_reference(mm)
        ecg_time = (row.get("ecg_time") or (mm or {}).get("ecg_time") or "").strip() or None
        meta = RecordMeta(
            record_id=record_id,
            source=self.name,
            n_samples=win.signal_mv.shape[1],
            patient_id=(str(row.get("subject_id")).strip() or None) if row.get("subject_id") else None,
            report="; ".join(kept),
            report_dropped=dropped,
            statements=[Statement(text=line, system="mimic") for line in kept],
            reference=reference,
            provenance=win.provenance,
            calibration=win.calibration,
            recorded_at=ecg_time.replace(" ", "T") if ecg_time else None,
        )
        return ECGRecord(meta=meta, signal_mv=win.signal_mv)
