"""Build a small MIMIC-IV-ECG tree at test time from real PTB-XL signals (no MIMIC data exists here).

Layout and conventions copied from MIMIC-IV-ECG v1.0: ``record_list.csv``, ``machine_measurements.csv``,
``files/pNNNN/pNNNNNNNN/sNNNNNNNN/<study_id>.{hea,dat}``; header lead order I, II, III, aVR, aVF, aVL,
V1-V6 (aVF before aVL, unlike PTB-XL); ADC gain 200 adu/mV, format 16; 29999 marks a missing measurement.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import wfdb

MIMIC_LEAD_ORDER = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]

# (report lines, machine measurements rr, p_on, p_end, qrs_on, qrs_end, t_end, p_axis, qrs_axis, t_axis)
_STUDIES = [
    (
        ["Sinus rhythm", "--- Warning: Data quality may affect interpretation ---", "Borderline ECG"],
        (857, 40, 128, 170, 262, 548, 51, 42, 37),
    ),
    (
        ["Sinus bradycardia", "Incomplete right bundle branch block", "--- Pediatric criteria used ---", "Abnormal ECG"],
        (1132, 36, 144, 188, 290, 612, 60, 75, 44),
    ),
    (
        ["Atrial fibrillation", "Analysis error", "Left axis deviation", "--- Suspect arm lead reversal"],
        (731, 29999, 29999, 150, 244, 522, 29999, -38, 61),
    ),
    (
        ["Sinus tachycardia", "Nonspecific T wave abnormality", "Abnormal ECG"],
        (590, 42, 120, 160, 246, 500, 66, 58, 29999),
    ),
]


@dataclass
class MimicTree:
    root: Path
    study_ids: list[str]
    subject_ids: list[str]
    ptbxl_ids: list[str]  # the PTB-XL record each study's signal was taken from
    reports: list[list[str]]
    measurements: list[tuple]


def study_path(subject_id: int, study_id: int) -> str:
    """MIMIC's relative path (no extension) of a study: files/p1000/p10000032/s40689238/40689238."""
    return f"files/p{str(subject_id)[:4]}/p{subject_id}/s{study_id}/{study_id}"


def write_mimic_signal(dest_dir: Path, study_id: int, signal_mv_by_lead: dict[str, np.ndarray], fs_hz: int = 500) -> None:
    """Write one study as MIMIC does: 12 channels in MIMIC lead order, gain 200 adu/mV, format 16."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    p_signal = np.stack([signal_mv_by_lead[name] for name in MIMIC_LEAD_ORDER], axis=1).astype(np.float64)
    wfdb.wrsamp(
        str(study_id), fs=fs_hz, units=["mV"] * 12, sig_name=MIMIC_LEAD_ORDER, p_signal=p_signal,
        fmt=["16"] * 12, adc_gain=[200.0] * 12, baseline=[0] * 12, write_dir=str(dest_dir),
    )


def build_mimic_tree(dest: Path, ptbxl_root: Path, ptbxl_ids: list[str] | None = None) -> MimicTree:
    """Write a 4-study MIMIC-IV-ECG tree under ``dest`` from real PTB-XL records."""
    ptbxl_ids = ptbxl_ids or ["06000", "06001", "06002", "06003"]
    dest.mkdir(parents=True, exist_ok=True)
    tree = MimicTree(dest, [], [], [], [], [])
    records, machine = [], []
    for k, (pid, (report, mm)) in enumerate(zip(ptbxl_ids, _STUDIES)):
        subject_id, study_id = 10000032 + 17 * k, 40689238 + 1001 * k
        src = wfdb.rdrecord(str(ptbxl_root / "records500" / f"{pid[:3]}00" / f"{pid}_hr"))
        by_lead = {name.upper(): src.p_signal[:, i] for i, name in enumerate(src.sig_name)}
        by_lead = {name: by_lead[name.upper()] for name in MIMIC_LEAD_ORDER}
        rel = study_path(subject_id, study_id)
        write_mimic_signal(dest / Path(rel).parent, study_id, by_lead)
        ecg_time = f"2180-07-{10 + k:02d} 08:{15 + k:02d}:00"
        records.append({"subject_id": subject_id, "study_id": study_id, "file_name": study_id, "ecg_time": ecg_time, "path": rel})
        row = {"subject_id": subject_id, "study_id": study_id, "cart_id": 6848296 + k, "ecg_time": ecg_time}
        row.update({f"report_{i}": (report[i] if i < len(report) else "") for i in range(18)})
        row.update({"bandwidth": "0.005-150 Hz", "filtering": "60 Hz  notch Baseline filter"})
        keys = ["rr_interval", "p_onset", "p_end", "qrs_onset", "qrs_end", "t_end", "p_axis", "qrs_axis", "t_axis"]
        row.update(dict(zip(keys, mm)))
        machine.append(row)
        tree.study_ids.append(str(study_id))
        tree.subject_ids.append(str(subject_id))
        tree.ptbxl_ids.append(pid)
        tree.reports.append(report)
        tree.measurements.append(mm)
    _write_csv(dest / "record_list.csv", records)
    _write_csv(dest / "machine_measurements.csv", machine)
    return tree


def append_record_rows(root: Path, rows: list[dict]) -> None:
    """Add rows to ``record_list.csv`` (used by the bad-input corpus for hostile paths / ids)."""
    path = root / "record_list.csv"
    with open(path, newline="") as fh:
        existing = list(csv.DictReader(fh))
    _write_csv(path, existing + rows)


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(rows)
