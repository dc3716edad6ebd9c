"""Reading one WFDB record robustly and turning its channels into the canonical 12-lead array.

Every WFDB-based source (PTB-XL, MIMIC-IV-ECG, LUDB, any folder) goes through ``read_wfdb_window``:

1. check files: header present, every signal file present, inside the data root, and of the size the header
   promises (truncated / corrupt / mismatching files are caught here, before ``wfdb`` sees them);
2. pick the 12 standard leads by name, case-insensitively, whatever their order in the header; channels that
   are not ECG leads (Frank ``vx``, respiration, ...) are ignored with a ``non_ecg_channel`` warning;
3. convert units to mV (``uV``, ``V`` ...); any other unit is ``unknown_units``;
4. cut the window (``window_start_s``, ``window_s``, seconds) and resample it to 500 Hz with a polyphase
   filter (``scipy.signal.resample_poly``);
5. derive missing limb leads (III, aVR, aVL, aVF) from two recorded ones (Einthoven / Goldberger);
6. quality: non-finite values fail the record; flat or saturated leads pass with a warning unless more than
   half of the 12 leads are bad.

Warnings travel in ``Provenance.warnings`` as ``"code:lead"`` strings (``"flat_lead:V3"``,
``"non_ecg_channel:vx"``); the part before ':' is always a reason code from ``REASON_CODES``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import wfdb
from scipy.signal import resample_poly

from pipeline.record import (
    FS_HZ, LEAD_INDEX, LEADS, Calibration, Provenance, RecordError, canonical_lead_name, resolve_under, sha256_files,
)
from pipeline.sources.calibration import check_header, check_signal

# Factor to millivolts for the voltage units seen in WFDB headers (lower-cased; 'µ' and 'μ' both occur).
_TO_MV: dict[str, float] = {
    "mv": 1.0, "millivolt": 1.0, "millivolts": 1.0,
    "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "microvolt": 1e-3, "microvolts": 1e-3,
    "v": 1e3, "volt": 1e3, "volts": 1e3,
    "nv": 1e-6,
}

# Bytes per sample of the WFDB storage formats whose file size we can predict exactly.
_BYTES_PER_SAMPLE: dict[str, float] = {
    "8": 1, "80": 1, "16": 2, "61": 2, "160": 2, "24": 3, "32": 4, "212": 1.5, "310": 4 / 3, "311": 4 / 3,
}

FLAT_PTP_MV = 0.01  # a lead whose peak-to-peak over the window is below 10 uV carries no ECG
SATURATED_FRACTION = 0.02  # >= 2 % of samples pinned at the lead's extreme value = clipped at the rails
IMPLAUSIBLE_MV = 20.0  # surface ECG never stays beyond +-20 mV; random bytes decode to +-32 mV
IMPLAUSIBLE_FRACTION = 0.05
_PAD_S = 0.5  # context resampled on each side of the window so the filter's edge transient is cut away


@dataclass
class WfdbWindow:
    """The canonical signal cut from one WFDB record, its provenance and its header comments."""

    signal_mv: np.ndarray  # float32 (12, n) at 500 Hz, LEADS order
    provenance: Provenance
    comments: list[str] = field(default_factory=list)
    header_fs_hz: float = float(FS_HZ)
    calibration: Calibration = field(default_factory=Calibration)  # pipeline.sources.calibration's findings


def unit_factor_to_mv(units: str | None) -> float | None:
    """Multiplier that turns a value in ``units`` into mV; ``None`` when ``units`` is not a voltage.

    An empty unit is taken as mV, the WFDB default when a header gives none.
    """
    key = (units or "mV").strip().lower().replace(" ", "")
    return _TO_MV.get(key)


def resample_to_fs(x: np.ndarray, fs_hz: float, target_hz: int = FS_HZ) -> np.ndarray:
    """Resample ``x`` (channels, samples) from ``fs_hz`` to ``target_hz`` with a polyphase anti-alias filter."""
    if float(fs_hz) == float(target_hz):
        return x
    ratio = Fraction(target_hz) / Fraction(fs_hz).limit_denominator(1000)
    return resample_poly(x, ratio.numerator, ratio.denominator, axis=-1)


def derive_limb_leads(leads: dict[str, np.ndarray]) -> list[str]:
    """Fill in missing limb leads in place from any two of I, II, III; return the names derived.

    Einthoven: III = II - I; Goldberger: aVR = -(I + II)/2, aVL = I - II/2, aVF = II - I/2.
    """
    derived: list[str] = []
    if "I" not in leads and "II" in leads and "III" in leads:
        leads["I"] = leads["II"] - leads["III"]
        derived.append("I")
    if "II" not in leads and "I" in leads and "III" in leads:
        leads["II"] = leads["I"] + leads["III"]
        derived.append("II")
    if "I" not in leads or "II" not in leads:
        return derived
    lead_i, lead_ii = leads["I"], leads["II"]
    formulas = {
        "III": lambda: lead_ii - lead_i,
        "aVR": lambda: -(lead_i + lead_ii) / 2.0,
        "aVL": lambda: lead_i - lead_ii / 2.0,
        "aVF": lambda: lead_ii - lead_i / 2.0,
    }
    for name, formula in formulas.items():
        if name not in leads:
            leads[name] = formula()
            derived.append(name)
    return derived


def _check_files(root: Path, hea: Path, header: wfdb.Record, record_id: str) -> list[Path]:
    """Signal files of ``header``: present, inside ``root``, and exactly as large as the header says."""
    files: list[Path] = []
    rel_dir = hea.parent.relative_to(root)
    per_file: dict[str, list[int]] = {}
    for i, name in enumerate(header.file_name or []):
        per_file.setdefault(name, []).append(i)
    for name, chans in per_file.items():
        path = resolve_under(root, rel_dir / name)
        if not path.is_file():
            raise RecordError("missing_file", f"signal file {name} is missing", record_id)
        files.append(path)
        size = path.stat().st_size
        if size == 0:
            raise RecordError("corrupt_signal", f"signal file {name} is empty", record_id)
        fmts = {header.fmt[i] for i in chans}
        spf = sum((header.samps_per_frame or [1] * header.n_sig)[i] or 1 for i in chans)
        if header.sig_len is None or len(fmts) != 1 or next(iter(fmts)) not in _BYTES_PER_SAMPLE:
            continue  # unusual layout: let wfdb decide
        offset = max((header.byte_offset[i] or 0) for i in chans) if header.byte_offset else 0
        bps = _BYTES_PER_SAMPLE[next(iter(fmts))]
        frame_bytes = spf * bps
        expected = offset + int(np.ceil(header.sig_len * frame_bytes))
        if size < expected:
            have = int((size - offset) // frame_bytes) if size > offset else 0
            raise RecordError(
                "truncated_signal", f"{name} holds {have} of {header.sig_len} samples ({size} of {expected} bytes)", record_id
            )
        if size - expected >= max(frame_bytes, 2):  # 212 may carry one pad byte; more is a disagreement
            raise RecordError(
                "header_mismatch",
                f"{name} is {size} bytes but the header ({len(chans)} channels x {header.sig_len} samples) implies {expected}",
                record_id,
            )
    return files


def read_wfdb_window(
    root: str | Path,
    rel_path: str,
    record_id: str,
    window_s: float | None = 10.0,
    window_start_s: float = 0.0,
) -> WfdbWindow:
    """Read WFDB record ``root/rel_path`` (no extension) into a 12 x n float32 mV array at 500 Hz.

    ``window_s`` seconds starting at ``window_start_s`` seconds are kept (``None``: the whole record).
    Raises ``RecordError`` with a specific reason code for every kind of bad input, never anything else
    (an unforeseen failure is ``internal_error`` with the exception in the message: a bug to fix).
    """
    try:
        return _read_wfdb_window(root, rel_path, record_id, window_s, window_start_s)
    except RecordError as exc:
        exc.record_id = exc.record_id or record_id
        raise
    except Exception as exc:
        raise RecordError("internal_error", f"{type(exc).__name__}: {exc}", record_id) from exc


def _read_wfdb_window(root: str | Path, rel_path: str, record_id: str, window_s: float | None,
                      window_start_s: float) -> WfdbWindow:
    root = Path(root).resolve()
    hea = resolve_under(root, f"{rel_path}.hea")
    if not hea.is_file():
        raise RecordError("missing_file", f"header {rel_path}.hea is missing", record_id)
    base = str(hea)[: -len(".hea")]
    # the sampling rate and gains as the header writes them: wfdb replaces a missing / bad one by a default
    findings = check_header(hea, record_id)
    try:
        header = wfdb.rdheader(base)
    except Exception as exc:  # wfdb raises ValueError, IndexError, ... for malformed headers
        raise RecordError("corrupt_header", f"cannot parse {rel_path}.hea: {type(exc).__name__}: {exc}", record_id) from exc
    if not header.n_sig or not header.fs or header.fs <= 0 or not header.sig_name:
        raise RecordError("corrupt_header", f"{rel_path}.hea declares no signals or no sampling rate", record_id)
    if len(header.sig_name) != header.n_sig:
        raise RecordError("header_mismatch", f"{rel_path}.hea declares {header.n_sig} signals but lists {len(header.sig_name)}", record_id)
    files = _check_files(root, hea, header, record_id)

    fs = float(header.fs)
    n_total = int(header.sig_len or 0)
    start = int(round(window_start_s * fs))
    n_win = n_total - start if window_s is None else int(round(window_s * fs))
    if start < 0 or n_win <= 0 or start + n_win > n_total:
        raise RecordError(
            "too_short", f"record has {n_total / fs:.2f} s; window {window_start_s}+{window_s} s asked", record_id
        )

    # Map channels to the 12 leads by name; everything else is a non-ECG channel (kept as a warning).
    warnings: list[str] = []
    channel_of: dict[str, int] = {}
    for i, name in enumerate(header.sig_name):
        lead = canonical_lead_name(name or "")
        if lead is None:
            warnings.append(f"non_ecg_channel:{name}")
        elif lead not in channel_of:
            channel_of[lead] = i
    units = list(header.units or ["mV"] * header.n_sig)
    for lead, i in channel_of.items():
        if unit_factor_to_mv(units[i]) is None:
            raise RecordError("unknown_units", f"lead {lead} is in {units[i]!r}, not a voltage", record_id, lead)

    pad = int(round(_PAD_S * fs)) if fs != FS_HZ else 0
    lo, hi = max(0, start - pad), min(n_total, start + n_win + pad)
    try:
        rec = wfdb.rdrecord(base, sampfrom=lo, sampto=hi, channels=sorted(channel_of.values()), physical=True)
    except Exception as exc:
        raise RecordError("corrupt_signal", f"cannot decode {rel_path}: {type(exc).__name__}: {exc}", record_id) from exc
    data = rec.p_signal
    if data is None or data.ndim != 2 or data.shape != (hi - lo, len(channel_of)):
        raise RecordError("header_mismatch", f"decoded {getattr(data, 'shape', None)}, header promises {(hi - lo, len(channel_of))}", record_id)
    col = {ch: k for k, ch in enumerate(sorted(channel_of.values()))}

    raw: dict[str, np.ndarray] = {}
    for lead, ch in channel_of.items():
        raw[lead] = data[:, col[ch]].astype(np.float64) * unit_factor_to_mv(units[ch])
    inner = slice(start - lo, start - lo + n_win)

    # Saturation is judged on the original samples: exact repeats of the extreme value survive only there.
    # It comes first because a lead clipped at the rails also sits beyond the plausibility limit.
    saturated = [lead for lead in LEADS if lead in raw and _is_saturated(raw[lead][inner])]
    # Random bytes decode to values spread over the whole converter range: far beyond any surface ECG.
    # Judged around the lead's median, so a DC-coupled recording with a large offset is not "corrupt".
    implausible = [lead for lead, x in raw.items() if lead not in saturated and _is_implausible(x[inner])]
    if len(implausible) > (len(raw) - len(saturated)) // 2:
        raise RecordError("corrupt_signal", f"{len(implausible)} leads hold values beyond +-{IMPLAUSIBLE_MV} mV (undecodable data)", record_id)
    for lead in LEADS:
        if lead in raw and not np.all(np.isfinite(raw[lead][inner])):
            bad = int(np.sum(~np.isfinite(raw[lead][inner])))
            raise RecordError("non_finite", f"lead {lead} holds {bad} NaN/inf samples", record_id, lead)


    lead_names = [ld for ld in LEADS if ld in raw]
    raw_ptp = {ld: float(np.ptp(raw[ld][inner])) for ld in lead_names}  # on the original samples, in mV
    stacked = np.stack([raw[ld] for ld in lead_names])
    resampled = resample_to_fs(stacked, fs)
    n_out = int(round(n_win * FS_HZ / fs))
    first = int(round((start - lo) * FS_HZ / fs))
    resampled = resampled[:, first:first + n_out]
    if resampled.shape[1] != n_out:
        raise RecordError("too_short", f"resampled window has {resampled.shape[1]} of {n_out} samples", record_id)
    leads = {ld: resampled[k] for k, ld in enumerate(lead_names)}
    derived = derive_limb_leads(leads)
    missing = [ld for ld in LEADS if ld not in leads]
    if missing:
        raise RecordError("missing_leads", f"cannot form leads {', '.join(missing)} from {header.sig_name}", record_id, missing[0])
    signal = np.stack([leads[ld] for ld in LEADS]).astype(np.float32)

    flat = [ld for ld in LEADS if float(np.ptp(signal[LEAD_INDEX[ld]])) < FLAT_PTP_MV]
    saturated = [ld for ld in saturated if ld not in flat]
    if len(flat) + len(saturated) > len(LEADS) // 2:
        code = "flat_lead" if len(flat) >= len(saturated) else "saturated_lead"
        worst = (flat if code == "flat_lead" else saturated)[0]
        raise RecordError(
            code, f"{len(flat)} flat and {len(saturated)} saturated leads ({', '.join(flat + saturated)}): more than half", record_id, worst
        )
    warnings += [f"flat_lead:{ld}" for ld in flat] + [f"saturated_lead:{ld}" for ld in saturated]
    findings.extend(check_signal(signal, lead_names, raw_ptp, float(FS_HZ)))

    rel_files = [hea] + files
    provenance = Provenance(
        path=Path(rel_path).as_posix(),
        files=[p.relative_to(root).as_posix() for p in rel_files],
        sha256=sha256_files(rel_files),
        original_fs_hz=fs,
        original_lead_names=[n or "" for n in header.sig_name],
        original_units=[u or "" for u in units],
        original_n_samples=n_total,
        window_start_s=start / fs,
        derived_leads=derived,
        warnings=warnings,
    )
    return WfdbWindow(signal_mv=signal, provenance=provenance, comments=list(header.comments or []), header_fs_hz=fs,
                      calibration=findings.calibration())


def _is_implausible(x: np.ndarray) -> bool:
    """True when >= ``IMPLAUSIBLE_FRACTION`` of the samples lie beyond +-``IMPLAUSIBLE_MV`` of the median."""
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return False
    return bool(np.mean(np.abs(finite - np.median(finite)) > IMPLAUSIBLE_MV) > IMPLAUSIBLE_FRACTION)


def _is_saturated(x: np.ndarray) -> bool:
    """True when a lead sits at its own maximum or minimum for >= ``SATURATED_FRACTION`` of the samples."""
    x = x[np.isfinite(x)]
    if x.size == 0 or float(np.ptp(x)) < FLAT_PTP_MV:
        return False
    n = x.size
    return bool(np.count_nonzero(x == x.max()) / n >= SATURATED_FRACTION or np.count_nonzero(x == x.min()) / n >= SATURATED_FRACTION)


def parse_header_demographics(comments: list[str]) -> dict[str, object]:
    """Age (years) and sex from WFDB comment lines such as 'Age: 78', 'sex: female', '<sex>: F'."""
    out: dict[str, object] = {}
    for line in comments:
        if ":" not in line:
            continue
        key, _, value = line.partition(":")
        key = key.strip().strip("<>").strip().lower()
        value = value.strip()
        if key == "age":
            try:
                age = float(value)
                if np.isfinite(age) and 0 <= age < 130:
                    out["age_years"] = age
            except ValueError:
                pass
        elif key == "sex":
            v = value.lower()
            if v in ("m", "male"):
                out["sex"] = "male"
            elif v in ("f", "female"):
                out["sex"] = "female"
    return out


def file_relative(root: Path, path: Path) -> str:
    """``path`` relative to ``root`` without the extension, with '/' separators."""
    rel = path.relative_to(root).as_posix()
    return rel[: -len(path.suffix)] if path.suffix else rel


__all__ = [
    "WfdbWindow", "read_wfdb_window", "derive_limb_leads", "resample_to_fs", "unit_factor_to_mv",
    "parse_header_demographics", "file_relative",
]
