"""The canonical record: one typed model that every stage after ingestion reads.

Conventions (the same everywhere in this project):
- signal: float32 array of shape (12, n_samples), millivolts, 500 Hz, leads in ``LEADS`` order;
- times: milliseconds from the first sample of the (windowed, resampled) signal;
- a record is addressed by ``(source, root, record_id)``; later stages pass ids and read from the source
  (``pipeline.sources.open_source(name, root).read(record_id)``) instead of copying signals around.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
LEAD_INDEX: dict[str, int] = {name: i for i, name in enumerate(LEADS)}
FS_HZ: int = 500

# Letters, digits, '.', '_' and '-'; must start with a letter or digit, so ids can never be '..', '.x'
# or contain a path separator. Used as a file stem by every stage that writes per-record outputs.
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def canonical_lead_name(name: str) -> str | None:
    """'avr', 'AVR', 'aVR', 'v1', 'MLII'? -> 'aVR', 'V1' or None when it is not one of the 12 standard leads."""
    key = name.strip().upper().replace(" ", "")
    for lead in LEADS:
        if key == lead.upper():
            return lead
    return None


class ConfigError(ValueError):
    """A bad setting of the whole run (an option, an environment variable), not any record's fault: the
    command stops before it measures or pays for anything (the CLI exits 2)."""


class TableError(ConfigError):
    """A table or stage input that is unusable as a whole (a source's index CSV without its id column, a
    truncated Parquet handed to a later stage, inputs of two different runs): no record can be trusted, so
    the command stops with one line naming the file and the problem (the CLI exits 2). ``code`` is one of
    ``TABLE_REASON_CODES``."""

    def __init__(self, code: str, message: str, path: str | Path | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.path = str(path) if path is not None else None


class RecordError(Exception):
    """A record that cannot be turned into a canonical record. ``code`` is a stable reason code."""

    def __init__(self, code: str, message: str, record_id: str | None = None, lead: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.record_id = record_id
        self.lead = lead

    def __str__(self) -> str:  # "record 06000: truncated_signal: ..."
        who = f"record {self.record_id}: " if self.record_id else ""
        return f"{who}{self.code}: {self.message}"


# Reason codes, in one place so the errors tables of every stage speak the same language.
REASON_CODES: dict[str, str] = {
    "unsafe_record_id": "the record id would leave the data root or holds characters ids may not have",
    "missing_file": "a file the record needs is not there",
    "corrupt_header": "the header cannot be parsed",
    "corrupt_signal": "the signal file cannot be decoded",
    "truncated_signal": "the signal file holds fewer samples than its header says",
    "header_mismatch": "the header disagrees with the signal file (channels, length, format)",
    "missing_leads": "the 12 standard leads cannot be formed from the channels present",
    "non_ecg_channel": "a channel is not an ECG lead (ignored, recorded as a warning)",
    "unknown_units": "a channel's physical units are not a voltage unit",
    "non_finite": "the signal holds NaN or infinite values",
    "flat_lead": "a lead carries no signal (constant)",
    "saturated_lead": "a lead is clipped at the converter's limits",
    "noisy_lead": "a lead carries noise, not a repeating ECG (beat-template or spectral quality gate)",
    "too_short": "the record is shorter than the window asked for",
    "bad_metadata": "the source's table row for this record is missing or malformed",
    "delineation_failed": "beat detection or delineation failed for the whole record",
    "render_failed": "the image could not be drawn",
    "prompt_failed": "the prompt could not be assembled within budget",
    "internal_error": "an unexpected error (a bug): the message holds the exception",
    # calibration warnings (the record is kept; its amplitude-derived values are not citable)
    "amplitude_normalised": "every lead was scaled to the same peak-to-peak: millivolts carry no meaning",
    "limb_leads_inconsistent": "the limb leads break Einthoven's / Goldberger's laws beyond noise",
    "limb_lead_reversal": "the limb leads look reversed (negative P and QRS in I with a positive aVR)",
    "bad_gain": "a channel's gain is zero, negative or missing in the header",
    "bad_sampling_rate": "the header's sampling rate is missing, zero, negative or unparsable",
    # source tables, reference values and images
    "duplicate_id": "the record's id is on more than one row of the source's table: no copy is used",
    "bad_annotation": "an annotation file cannot be decoded (not MIT format, truncated, codes the source never uses)",
    "implausible_reference": "a reference (machine) measurement lies outside physiological limits: dropped (warning)",
    "missing_image": "the record's image is missing: a multimodal prompt is never written or sent without it",
    # training data (gem_model/data.py): an instruction item the GEM trainer cannot use
    "corrupt_image": "the image file cannot be decoded",
    "bad_conversation": "the instruction item is not a usable GEM conversation (keys, roles, <image> placeholder)",
    "too_long": "the conversation leaves no answer token within the maximum sequence length",
}

# Reason codes of a whole table or input (``TableError``): the command stops, exit code 2.
TABLE_REASON_CODES: dict[str, str] = {
    "bad_usage": "an option's value is invalid, or options contradict each other",
    "missing_input": "a file or folder the command needs is not there",
    "unusable_table": "a source table cannot be used at all (encoding of its header, a required column missing, no rows)",
    "corrupt_parquet": "a Parquet input is truncated, corrupt or not Parquet",
    "wrong_table": "a Parquet input is readable but lacks the columns of the table it should be",
    "run_mismatch": "inputs that must come from one run come from different runs or sources",
}


def check_record_id(record_id: str) -> str:
    """Return ``record_id`` if it is safe to use as a file stem; raise ``RecordError('unsafe_record_id')``."""
    if not isinstance(record_id, str) or not _SAFE_ID.match(record_id) or ".." in record_id:
        raise RecordError("unsafe_record_id", f"record id {record_id!r} is not a safe identifier", None)
    return record_id


def resolve_under(root: str | Path, relative: str | Path) -> Path:
    """``root / relative`` resolved, refusing anything that escapes ``root`` (absolute paths, '..', links)."""
    root_r = Path(root).resolve()
    rel = Path(relative)
    if rel.is_absolute():
        raise RecordError("unsafe_record_id", f"path {str(relative)!r} is absolute")
    full = (root_r / rel).resolve()
    if full != root_r and root_r not in full.parents:
        raise RecordError("unsafe_record_id", f"path {str(relative)!r} escapes the data root")
    return full


def sha256_files(paths: list[Path]) -> str:
    """One SHA-256 over the bytes of ``paths`` in the given order (the record's provenance checksum)."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


class Statement(BaseModel):
    """One diagnostic statement as the source gives it.

    ``text`` is the source's own wording (PTB-XL reports are partly German; keep them), ``code`` the source's
    code (PTB-XL SCP code such as 'IRBBB', SNOMED-CT '59118001', LUDB column value, MIMIC report line).
    """

    model_config = ConfigDict(frozen=True)
    text: str
    code: str | None = None
    system: Literal["scp", "snomed", "ludb", "mimic", "synthetic", "text"] = "text"
    likelihood: float | None = None  # PTB-XL's SCP likelihood (0-100) when given


class Demographics(BaseModel):
    age_years: float | None = None
    sex: Literal["male", "female"] | None = None
    height_cm: float | None = None
    weight_kg: float | None = None


class ReferenceWave(BaseModel):
    """One expert- or generator-annotated wave in one lead (ms from record start; None = not annotated)."""

    lead: str
    wave: Literal["P", "QRS", "T"]
    on_ms: float | None = None
    peak_ms: float | None = None
    off_ms: float | None = None


class ReferenceMeasurements(BaseModel):
    """Measurements that came with the record: MIMIC machine measurements, LUDB expert fiducials,
    or the synthetic generator's ground truth. Global values are in ms / degrees; None when missing."""

    kind: Literal["mimic_machine", "ludb_expert", "synthetic_truth"]
    rr_ms: float | None = None
    p_onset_ms: float | None = None
    p_end_ms: float | None = None
    qrs_onset_ms: float | None = None
    qrs_end_ms: float | None = None
    t_end_ms: float | None = None
    p_axis_deg: float | None = None
    qrs_axis_deg: float | None = None
    t_axis_deg: float | None = None
    hr_bpm: float | None = None
    pr_ms: float | None = None
    qrs_ms: float | None = None
    qt_ms: float | None = None
    waves: list[ReferenceWave] = Field(default_factory=list)
    extra: dict[str, str | float | int | None] = Field(default_factory=dict)


class Provenance(BaseModel):
    """Where the record came from. ``path`` is relative to the data root, without extension (GEM's ``ecg``)."""

    path: str
    files: list[str]
    sha256: str
    original_fs_hz: float
    original_lead_names: list[str]
    original_units: list[str]
    original_n_samples: int
    window_start_s: float = 0.0
    derived_leads: list[str] = Field(default_factory=list)  # leads computed (e.g. III = II - I), not recorded
    warnings: list[str] = Field(default_factory=list)  # reason codes of non-fatal problems


class Calibration(BaseModel):
    """Whether this record's amplitudes mean millivolts. ``flags`` are ``REASON_CODES`` keys (calibration
    warnings); when ``amplitudes_calibrated`` is False every amplitude-derived value (mV, voltage criteria,
    axes) is kept in the tables but is not citable (``GroundingContext.citable``)."""

    amplitudes_calibrated: bool = True
    flags: list[str] = Field(default_factory=list)
    details: list[str] = Field(default_factory=list)  # one human-readable line per flag


class RecordMeta(BaseModel):
    """Everything about a record except its samples: one row of the ingestion manifest."""

    record_id: str
    source: str
    fs_hz: int = FS_HZ
    n_samples: int
    leads: list[str] = Field(default_factory=lambda: list(LEADS))
    patient_id: str | None = None
    demographics: Demographics = Field(default_factory=Demographics)
    report: str = ""  # the free-text report as the source gives it (boiler-plate dropped for MIMIC)
    report_dropped: list[str] = Field(default_factory=list)  # boiler-plate lines removed from the report
    statements: list[Statement] = Field(default_factory=list)
    reference: ReferenceMeasurements | None = None
    provenance: Provenance
    recorded_at: str | None = None  # ISO time when the source knows it
    calibration: Calibration = Field(default_factory=Calibration)

    @field_validator("record_id")
    @classmethod
    def _safe_id(cls, v: str) -> str:
        return check_record_id(v)


@dataclass
class ECGRecord:
    """A canonical record: metadata plus the (12, n) float32 signal in mV at 500 Hz."""

    meta: RecordMeta
    signal_mv: np.ndarray

    def __post_init__(self) -> None:
        s = self.signal_mv
        if not isinstance(s, np.ndarray) or s.ndim != 2 or s.shape[0] != len(LEADS):
            raise ValueError(f"signal must be (12, n), got {getattr(s, 'shape', type(s))}")
        if s.dtype != np.float32:
            self.signal_mv = s.astype(np.float32)
        if s.shape[1] != self.meta.n_samples:
            raise ValueError(f"signal has {s.shape[1]} samples, meta says {self.meta.n_samples}")

    @property
    def record_id(self) -> str:
        return self.meta.record_id

    @property
    def duration_s(self) -> float:
        return self.signal_mv.shape[1] / FS_HZ

    def lead(self, name: str) -> np.ndarray:
        return self.signal_mv[LEAD_INDEX[name]]
