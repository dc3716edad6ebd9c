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

from pipeline.record import ECGRecord, RecordError, RecordMeta, ReferenceMeasurements, Statement, check_record_id
from pipeline.sources.tables import SourceTable, read_source_table
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


# Which fiducials each machine interval is computed from: an implausible interval condemns its fiducials, and
# every other interval computed from a condemned fiducial goes with it.
_DERIVED: dict[str, tuple[str, str]] = {
    "pr_ms": ("p_onset_ms", "qrs_onset_ms"), "qrs_ms": ("qrs_onset_ms", "qrs_end_ms"),
    "qt_ms": ("qrs_onset_ms", "t_end_ms"), "p_ms": ("p_onset_ms", "p_end_ms"),
}


def plausible_reference(ref: ReferenceMeasurements) -> tuple[ReferenceMeasurements, list[str]]:
    """``ref`` without the values outside the physiological limits (``knowledge/cutoffs.yaml``,
    ``physiological_limits``), and one 'field=value' string per value dropped.

    A machine's QRS of -400 ms or heart rate of -70 bpm is a failed measurement, not a fact about the patient:
    stored as a reference it would be compared with our measurements and shown to users as the machine's
    reading. Intervals are checked with the fiducials they come from (an impossible QRS means its onset or its
    end is wrong, so PR and QT, which share the QRS onset, are dropped too).
    """
    from pipeline.cutoffs import physiological_limits

    limits = physiological_limits()
    values = ref.model_dump(exclude={"waves", "extra"})
    if values.get("p_onset_ms") is not None and values.get("p_end_ms") is not None:
        values["p_ms"] = values["p_end_ms"] - values["p_onset_ms"]
    bad = {k for k, v in values.items() if v is not None and k in limits and not limits[k].contains(v)}
    condemned = {f for k in bad if k in _DERIVED for f in _DERIVED[k]}
    bad |= {k for k, (a, b) in _DERIVED.items() if (a in condemned or b in condemned) and values.get(k) is not None}
    bad |= {f for f in condemned if values.get(f) is not None}
    if "rr_ms" in bad:
        bad.add("hr_bpm")
    if "hr_bpm" in bad and values.get("rr_ms") is not None:
        bad.add("rr_ms")
    bad = {k for k in bad if values.get(k) is not None}
    if not bad:
        return ref, []
    dropped = [f"{k}={values[k]:g}" for k in sorted(bad)]
    return ref.model_copy(update={k: None for k in bad if k in ReferenceMeasurements.model_fields}), dropped


class MimicSource:
    """MIMIC-IV-ECG root holding ``record_list.csv``, ``machine_measurements.csv`` and ``files/``."""

    name = "mimic"

    def __init__(self, root: Path, window_s: float | None = 10.0, window_start_s: float = 0.0, **_: object):
        self.root = Path(root)
        self.window_s = window_s
        self.window_start_s = window_start_s
        self._records: SourceTable | None = None
        self._machine: SourceTable | bool | None = None  # False: the release has no measurements table

    def _record_list(self) -> SourceTable:
        if self._records is None:
            self._records = read_source_table(self.root / "record_list.csv", "study_id", ("path",),
                                              normalise_id=str.strip)
        return self._records

    def _measurements(self) -> SourceTable | None:
        """``machine_measurements.csv`` when the release has it (the report and the machine's measurements);
        a file that is there but unusable stops the run rather than leave every report silently empty."""
        if self._machine is None:
            csv = self.root / "machine_measurements.csv"
            self._machine = read_source_table(csv, "study_id", normalise_id=str.strip) if csv.is_file() else False
        return self._machine or None

    def ids(self) -> list[str]:
        """study_ids in ``record_list.csv`` order (unsafe ones included: ``read`` rejects them; an id on
        several rows: once per row, each copy fails with ``duplicate_id``)."""
        self._measurements()  # an unusable measurements table stops the run here, before any record
        return self._record_list().ids()

    def read(self, record_id: str) -> ECGRecord:
        """Signal (leads by name), cleaned machine report, statements and machine measurements."""
        table = self._record_list()
        if record_id not in table:
            check_record_id(record_id)
        row = table.row(record_id)  # duplicate_id / bad_metadata for this record only
        check_record_id(record_id)
        rel = (row.get("path") or "").strip()
        if not rel:
            raise RecordError("bad_metadata", "record_list.csv path is empty", record_id)
        win = read_wfdb_window(self.root, rel, record_id, self.window_s, self.window_start_s)
        machine = self._measurements()
        mm = machine.row(record_id, required=False) if machine is not None else None
        kept, dropped, reference, implausible = [], [], None, []
        if mm is not None:
            kept, dropped = split_report([mm.get(f"report_{i}") for i in range(N_REPORT_COLUMNS)])
            reference, implausible = plausible_reference(machine_reference(mm))
        win.provenance.warnings.extend(f"implausible_reference:{what}" for what in implausible)
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
