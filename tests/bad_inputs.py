"""The bad-input corpus, built at test time in a temporary folder from one real PTB-XL record.

``build_bad_corpus(dest, ptbxl_root)`` writes one WFDB record per case into ``dest`` (a folder the ``wfdb``
source reads) and returns ``{record_id: Expect}``: what ingestion must do with it. Good records sit in the
same folder, so one batch shows the bad ones failing with their own code while the good ones pass.
``add_hostile_mimic_rows`` adds record-list rows that try to leave a MIMIC root.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import wfdb

from mimic_tree import append_record_rows

PTBXL_NAMES = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


@dataclass(frozen=True)
class Expect:
    outcome: str  # "ok" | "warning" (kept, warning row) | "error" (dropped, error row)
    code: str | None = None
    lead: str | None = None


def _source(ptbxl_root: Path, ecg_id: str = "06000") -> wfdb.Record:
    return wfdb.rdrecord(str(ptbxl_root / "records500" / f"{ecg_id[:3]}00" / f"{ecg_id}_hr"), physical=False)


def _write(dest: Path, name: str, d_signal: np.ndarray, sig_name: list[str], units: list[str] | None = None,
           fs: int = 500, gain: float = 1000.0) -> None:
    """Write digital samples (n, ch) as a format-16 WFDB record ``dest/name``."""
    n_ch = d_signal.shape[1]
    wfdb.wrsamp(
        name, fs=fs, units=units or ["mV"] * n_ch, sig_name=sig_name, d_signal=d_signal.astype(np.int16).astype(np.int64),
        fmt=["16"] * n_ch, adc_gain=[gain] * n_ch, baseline=[0] * n_ch, write_dir=str(dest),
    )


def _edit_header(path: Path, edit) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")


def build_bad_corpus(dest: Path, ptbxl_root: Path) -> dict[str, Expect]:
    """Write every bad-input case (and three good records) under ``dest``; return the expectations."""
    dest.mkdir(parents=True, exist_ok=True)
    rec = _source(ptbxl_root)
    d = rec.d_signal.astype(np.int64)  # (5000, 12), 1000 adu/mV
    names = list(PTBXL_NAMES)
    expect: dict[str, Expect] = {}
    rng = np.random.default_rng(7)

    _write(dest, "good_a", d, names)
    expect["good_a"] = Expect("ok")
    _write(dest, "good_b", _source(ptbxl_root, "06003").d_signal.astype(np.int64), names)
    expect["good_b"] = Expect("ok")

    # Only I, II and V1-V6 recorded (as many Holter-style exports): the other limb leads are derived.
    keep = [0, 1, 6, 7, 8, 9, 10, 11]
    _write(dest, "limb_derived", d[:, keep], [names[i] for i in keep])
    expect["limb_derived"] = Expect("ok")

    _write(dest, "truncated", d, names)
    dat = dest / "truncated.dat"
    dat.write_bytes(dat.read_bytes()[: dat.stat().st_size // 2 + 7])
    expect["truncated"] = Expect("error", "truncated_signal")

    _write(dest, "corrupt_random", d, names)
    (dest / "corrupt_random.dat").write_bytes(rng.integers(0, 256, size=5000 * 12 * 2, dtype=np.uint8).tobytes())
    expect["corrupt_random"] = Expect("error", "corrupt_signal")

    _write(dest, "corrupt_empty", d, names)
    (dest / "corrupt_empty.dat").write_bytes(b"")
    expect["corrupt_empty"] = Expect("error", "corrupt_signal")

    # Header claims 11 channels (V6's line gone) while the file still holds 12 interleaved channels.
    _write(dest, "header_channels", d, names)
    _edit_header(dest / "header_channels.hea", lambda ls: [ls[0].replace(" 12 ", " 11 ", 1)] + ls[1:12] + ls[13:])
    expect["header_channels"] = Expect("error", "header_mismatch")

    # Header claims 4000 samples; the file holds 5000.
    _write(dest, "header_samples", d, names)
    _edit_header(dest / "header_samples.hea", lambda ls: [ls[0].replace(" 5000", " 4000", 1)] + ls[1:])
    expect["header_samples"] = Expect("error", "header_mismatch")

    _write(dest, "header_garbage", d, names)
    (dest / "header_garbage.hea").write_text("this is not a header\x00\x01 at all\n")
    expect["header_garbage"] = Expect("error", "corrupt_header")

    _write(dest, "missing_dat", d, names)
    (dest / "missing_dat.dat").unlink()
    expect["missing_dat"] = Expect("error", "missing_file")

    drop_v3 = [i for i in range(12) if names[i] != "V3"]
    _write(dest, "missing_leads", d[:, drop_v3], [names[i] for i in drop_v3])
    expect["missing_leads"] = Expect("error", "missing_leads", "V3")

    nan = d.copy()
    nan[1200:1300, 7] = -32768  # WFDB's 'no sample' value for format 16 -> NaN when read
    _write(dest, "nan_values", nan, names)
    expect["nan_values"] = Expect("error", "non_finite", "V2")

    flat1 = d.copy()
    flat1[:, 8] = 40  # V3 constant
    _write(dest, "flat_one", flat1, names)
    expect["flat_one"] = Expect("warning", "flat_lead", "V3")

    flat_many = d.copy()
    flat_many[:, [0, 1, 2, 3, 4, 5, 6]] = -12  # 7 of 12 leads constant
    _write(dest, "flat_many", flat_many, names)
    expect["flat_many"] = Expect("error", "flat_lead")

    sat1 = d.copy()
    sat1[:, 10] = np.clip(sat1[:, 10] * 200, -32767, 32767)  # V5 amplified into the converter's rails
    _write(dest, "saturated_one", sat1, names)
    expect["saturated_one"] = Expect("warning", "saturated_lead", "V5")

    sat_many = d.copy()
    # Baseline driven towards the upper rail and amplified: every upward excursion is clipped.
    sat_many[:, 4:12] = np.clip(sat_many[:, 4:12] * 200 + 30000, -32767, 32767)
    _write(dest, "saturated_many", sat_many, names)
    expect["saturated_many"] = Expect("error", "saturated_lead")

    units = ["mV"] * 12
    units[6] = "degC"
    _write(dest, "unknown_units", d, names, units=units)
    expect["unknown_units"] = Expect("error", "unknown_units", "V1")

    resp = (500 * np.sin(np.arange(5000) * 2 * np.pi * 0.25 / 500)).astype(np.int64)[:, None]
    _write(dest, "extra_channel", np.hstack([d, resp]), names + ["RESP"], units=["mV"] * 12 + ["Ohm"])
    expect["extra_channel"] = Expect("warning", "non_ecg_channel", "RESP")

    _write(dest, "too_short", d[:2500], names)
    expect["too_short"] = Expect("error", "too_short")

    # A header that is a symbolic link to a record outside the data root.
    outside = dest.parent / f"{dest.name}_outside"
    outside.mkdir(exist_ok=True)
    _write(outside, "secret", d, names)
    os.symlink(outside / "secret.hea", dest / "escape.hea")
    expect["escape"] = Expect("error", "unsafe_record_id")
    return expect


def add_hostile_mimic_rows(root: Path) -> dict[str, Expect]:
    """Record-list rows whose path or id tries to leave the MIMIC root, plus one pointing at nothing."""
    rows = [
        {"subject_id": 10009999, "study_id": "49990001", "file_name": "49990001", "ecg_time": "2180-01-01 00:00:00",
         "path": "../../etc/passwd"},
        {"subject_id": 10009999, "study_id": "../../etc/passwd", "file_name": "x", "ecg_time": "2180-01-01 00:00:00",
         "path": "files/p1000/p10009999/s49990002/49990002"},
        {"subject_id": 10009999, "study_id": "49990003", "file_name": "49990003", "ecg_time": "2180-01-01 00:00:00",
         "path": "/etc/passwd"},
        {"subject_id": 10009999, "study_id": "49990004", "file_name": "49990004", "ecg_time": "2180-01-01 00:00:00",
         "path": "files/p1000/p10009999/s49990004/49990004"},
    ]
    append_record_rows(root, rows)
    return {
        "49990001": Expect("error", "unsafe_record_id"),
        "../../etc/passwd": Expect("error", "unsafe_record_id"),
        "49990003": Expect("error", "unsafe_record_id"),
        "49990004": Expect("error", "missing_file"),
    }
