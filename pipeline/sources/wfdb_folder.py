"""Any folder of WFDB records, searched recursively (``.dat``, ``.mat`` and multi-file records alike).

Handles other sampling rates (resampled to 500 Hz), extra channels (Frank ``vx vy vz``: ignored with a
warning), lower-case lead names, missing limb leads (derived from I and II), and PhysioNet/CinC 2021
header comments: ``# Dx:`` SNOMED-CT codes become statements (system 'snomed'), ``# Age:`` / ``# Sex:``
demographics. record_id = the path relative to the root without extension, '/' -> '__', unsafe
characters -> '_' (e.g. ``s0010_re``, ``georgia__E07500``).
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from pipeline.record import Demographics, ECGRecord, RecordError, RecordMeta, Statement, check_record_id
from pipeline.sources.wfdb_common import parse_header_demographics, read_wfdb_window

# Names of the SNOMED-CT codes used by the PhysioNet/CinC Challenge 2021 labels (scored ones and the
# frequent unscored ones). Unknown codes keep the code itself as text.
SNOMED_EN: dict[str, str] = {
    "164889003": "atrial fibrillation", "164890007": "atrial flutter", "6374002": "bundle branch block",
    "426627000": "bradycardia", "733534002": "complete left bundle branch block",
    "713427006": "complete right bundle branch block", "270492004": "first degree AV block",
    "713426002": "incomplete right bundle branch block", "39732003": "left axis deviation",
    "445118002": "left anterior fascicular block", "164909002": "left bundle branch block",
    "251146004": "low QRS voltages", "698252002": "nonspecific intraventricular conduction disorder",
    "426783006": "sinus rhythm", "284470004": "premature atrial contraction", "10370003": "pacing rhythm",
    "365413008": "poor R wave progression", "427172004": "premature ventricular contractions",
    "164947007": "prolonged PR interval", "111975006": "prolonged QT interval", "164917005": "Q wave abnormal",
    "47665007": "right axis deviation", "59118001": "right bundle branch block", "427393009": "sinus arrhythmia",
    "426177001": "sinus bradycardia", "427084000": "sinus tachycardia",
    "63593006": "supraventricular premature beats", "164934002": "T wave abnormal",
    "59931005": "T wave inversion", "17338001": "ventricular premature beats",
    "55930002": "ST changes", "428750005": "nonspecific ST-T abnormality", "164873001": "left ventricular hypertrophy",
    "55827005": "left ventricular high voltage", "253352002": "left atrial abnormality",
    "67741000119109": "left atrial enlargement", "89792004": "right ventricular hypertrophy",
    "164865005": "myocardial infarction", "164861001": "myocardial ischemia", "429622005": "ST depression",
    "164931005": "ST elevation", "164930006": "ST interval abnormal", "251199001": "counterclockwise rotation",
    "251198002": "clockwise rotation", "164912004": "P wave change", "195042002": "second degree AV block",
    "27885002": "complete heart block", "426761007": "supraventricular tachycardia", "74390002": "Wolff-Parkinson-White pattern",
    "713422000": "atrial tachycardia", "164951009": "abnormal QRS", "428417006": "early repolarization",
}

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


_MAX_ID = 128  # pipeline.record's limit on an id (it is a file stem in every stage's outputs)
_DIGEST = 12


def _digest_id(rid: str, rel_path: str) -> str:
    """``rid`` cut to leave room for a digest of the full relative path, so that two long paths sharing their
    first 128 characters still get two ids (a plain cut made them collide, and the second record was lost)."""
    return f"{rid[:_MAX_ID - _DIGEST - 1]}-{hashlib.sha1(rel_path.encode()).hexdigest()[:_DIGEST]}"


def safe_record_id(rel_path: str) -> str:
    """'georgia/E07500' -> 'georgia__E07500'; characters ids may not have become '_'; a path longer than an id
    may be keeps its first 115 characters and a digest of the whole path."""
    rid = _UNSAFE.sub("_", rel_path.replace("/", "__"))
    rid = rid.lstrip("._-") or "record"
    while ".." in rid:
        rid = rid.replace("..", "_.")
    return rid if len(rid) <= _MAX_ID else _digest_id(rid, rel_path)


def parse_dx(comments: list[str]) -> list[Statement]:
    """``Dx: 426783006,164889003`` header comment -> one SNOMED statement per code."""
    out: list[Statement] = []
    for line in comments:
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == "dx":
            for code in value.split(","):
                code = code.strip()
                if code:
                    out.append(Statement(text=SNOMED_EN.get(code, f"SNOMED-CT {code}"), code=code, system="snomed"))
    return out


class WfdbFolderSource:
    """Every ``*.hea`` under ``root`` (recursively) is one record."""

    name = "wfdb"

    def __init__(self, root: Path, window_s: float | None = 10.0, window_start_s: float = 0.0, **_: object):
        self.root = Path(root)
        self.window_s = window_s
        self.window_start_s = window_start_s
        self._paths: dict[str, str] | None = None

    def _index(self) -> dict[str, str]:
        """record_id -> relative path without extension, in sorted path order."""
        if self._paths is None:
            # `ecg-grounding export` writes canonical copies under ROOT/ecg-grounding-canonical/: not new records
            rels = sorted(p.relative_to(self.root).as_posix()[: -len(".hea")] for p in self.root.rglob("*.hea")
                          if p.relative_to(self.root).parts[0] != "ecg-grounding-canonical")
            paths: dict[str, str] = {}
            for rel in rels:
                rid = safe_record_id(rel)
                if rid in paths:  # two paths that make the same safe id ('a b' and 'a_b'): keep both
                    rid = _digest_id(rid, rel)
                n = 1
                while rid in paths:  # a digest collision: never seen, but never lose a record either
                    n += 1
                    rid = _digest_id(rid, f"{rel}#{n}")
                paths[rid] = rel
            self._paths = paths
        return self._paths

    def ids(self) -> list[str]:
        """Safe record ids of all headers under the root, sorted by relative path."""
        return list(self._index())

    def read(self, record_id: str) -> ECGRecord:
        """The record's window at 500 Hz with SNOMED statements and demographics from header comments."""
        check_record_id(record_id)
        rel = self._index().get(record_id)
        if rel is None:
            raise RecordError("missing_file", f"no header for record id {record_id!r} under the root", record_id)
        win = read_wfdb_window(self.root, rel, record_id, self.window_s, self.window_start_s)
        statements = parse_dx(win.comments)
        meta = RecordMeta(
            record_id=record_id,
            source=self.name,
            n_samples=win.signal_mv.shape[1],
            demographics=Demographics(**parse_header_demographics(win.comments)),
            report="; ".join(s.text for s in statements),
            statements=statements,
            provenance=win.provenance,
            calibration=win.calibration,
        )
        return ECGRecord(meta=meta, signal_mv=win.signal_mv)
