"""Calibration checks at ingest: do a record's samples mean millivolts in the leads they are labelled with?

Run by every WFDB source (``wfdb_common.read_wfdb_window``) on the header text and on the canonical signal; the
findings become ``RecordMeta.calibration`` (flags, details: record-level, in the manifest and as warnings
in ``errors/ingest.parquet``). A record whose amplitudes are not calibrated keeps every value in the tables,
but its amplitude-derived values (mV, voltage criteria, axes) are not citable
(``pipeline.context.GroundingContext.citable``). A sampling rate that cannot be read is no calibration
problem but a broken time base: the record fails (``bad_sampling_rate``), since every interval and rate
would be wrong.

The checks (reason codes of ``pipeline.record.REASON_CODES``):
- ``bad_sampling_rate`` (error): the header's sampling rate is missing, unparsable, zero or negative. wfdb
  silently assumes 250 Hz then (a true 500 Hz record reads at half its rate: heart rate 34 for 69);
- ``bad_gain``: a channel's gain is 0 (WFDB: "uncalibrated"; wfdb assumes 200 adu/mV: amplitudes 5x too
  large at 1000 adu/mV), negative (the lead is inverted) or absent;
- ``amplitude_normalised``: every recorded lead spans the same peak-to-peak to 3 decimals (LUDB scales each
  lead to 1 mV): no two leads of a real ECG do;
- ``limb_leads_inconsistent``: recorded limb leads break Einthoven's (III = II - I) or Goldberger's laws
  (aVR = -(I + II)/2, aVL = I - II/2, aVF = II - I/2) by more than noise: they are three differences of the
  same three electrodes, so per-lead scaling, a swapped or mislabelled lead breaks them;
- ``limb_lead_reversal``: the left- and right-arm electrodes look swapped: lead I shows a negative P and a
  negative QRS and aVR a positive QRS, while V5-V6 show a positive QRS. In sinus rhythm the atria depolarise
  leftward (P upright in I); only arm reversal or dextrocardia invert both P and QRS in I, and dextrocardia
  also inverts the left precordial QRS (Batchvarov et al., "Incorrect electrode cable connection during
  electrocardiographic recording", Europace 2007).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.record import LEAD_INDEX, Calibration, RecordError

# flags that mean the record's millivolts (or the leads they are labelled with) cannot be trusted
AMPLITUDE_FLAGS = ("bad_gain", "amplitude_normalised", "limb_leads_inconsistent", "limb_lead_reversal")
PTP_DECIMALS = 3            # LUDB: every lead's peak-to-peak is 1.000 mV to 3 decimals
NORMALISED_MIN_LEADS = 6    # ... over at least this many recorded leads (two equal spans can be chance)
# Einthoven / Goldberger: the residual may be quantisation, resampling and filtering noise: at most 5% of the
# leads' RMS and 0.05 mV (PTB-XL, CinC, PTB: < 0.01 mV; LUDB's per-lead scaling: up to 0.44 mV)
LIMB_RESIDUAL_FRACTION = 0.05
LIMB_RESIDUAL_MIN_MV = 0.05
LIMB_RELATIONS = {  # lead -> (coefficient of I, coefficient of II): each limb lead from I and II
    "III": (-1.0, 1.0), "aVR": (-0.5, -0.5), "aVL": (1.0, -0.5), "aVF": (-0.5, 1.0),
}
REVERSAL_P_MIN = 0.3   # lead I's P must be this share of the P's largest limb-lead deflection to count as negative
REVERSAL_QRS_MIN = 0.2  # ... and its QRS net area this share of the largest limb lead's, negative


@dataclass
class CalibrationFindings:
    """Flags (reason codes) with one human-readable detail line each."""

    flags: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    def add(self, flag: str, detail: str) -> None:
        if flag not in self.flags:
            self.flags.append(flag)
            self.details.append(detail)

    def extend(self, other: "CalibrationFindings") -> None:
        for f, d in zip(other.flags, other.details):
            self.add(f, d)

    def calibration(self) -> Calibration:
        return Calibration(amplitudes_calibrated=not any(f in AMPLITUDE_FLAGS for f in self.flags),
                           flags=list(self.flags), details=list(self.details))


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def with_flag(cal: Calibration, flag: str, detail: str, amplitude: bool = True) -> Calibration:
    """``cal`` plus ``flag`` (a source's own knowledge, e.g. LUDB's normalisation), without duplicates."""
    if flag in cal.flags:
        return cal
    return Calibration(amplitudes_calibrated=cal.amplitudes_calibrated and not amplitude,
                       flags=[*cal.flags, flag], details=[*cal.details, detail])


def check_header(hea: Path, record_id: str | None = None) -> CalibrationFindings:
    """Read the header's sampling rate and gains ourselves, where wfdb falls back to defaults.

    Raises ``RecordError('bad_sampling_rate')`` for a missing, unparsable, zero or negative sampling rate;
    returns ``bad_gain`` for a channel whose gain is 0, negative, unparsable or absent."""
    out = CalibrationFindings()
    try:
        text = hea.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return out  # the reader reports the missing file
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        return out
    record_line = lines[0].split()
    if len(record_line) < 2 or not record_line[1].isdigit():
        return out  # no WFDB record line at all: the reader reports a corrupt header
    fs_text = record_line[2] if len(record_line) > 2 else None
    # "500", "500/1000" (counter frequency), "500(0)" ... : the sampling rate is the leading number
    fs_num = re.split(r"[/(]", fs_text, maxsplit=1)[0] if fs_text else None
    if fs_num is None:
        raise RecordError("bad_sampling_rate", f"{hea.name} gives no sampling rate (wfdb would assume 250 Hz)",
                          record_id)
    if not _NUMBER.match(fs_num) or float(fs_num) <= 0:
        raise RecordError("bad_sampling_rate", f"{hea.name} gives sampling rate {fs_text!r}", record_id)
    n_sig = int(record_line[1])
    bad = []
    for i, line in enumerate(lines[1:1 + n_sig]):
        tok = line.split()
        name = " ".join(tok[8:]) if len(tok) > 8 else f"channel {i + 1}"
        if len(tok) < 3:
            bad.append(f"{name}: no gain (wfdb would assume 200 adu/mV)")
            continue
        gain = re.split(r"[(/]", tok[2], maxsplit=1)[0]
        if not _NUMBER.match(gain):
            bad.append(f"{name}: gain {tok[2]!r}")
        elif float(gain) == 0:
            bad.append(f"{name}: gain 0 (uncalibrated; wfdb would assume 200 adu/mV)")
        elif float(gain) < 0:
            bad.append(f"{name}: negative gain {gain} (the lead is inverted)")
    if bad:
        out.add("bad_gain", "; ".join(bad))
    return out


def check_signal(signal_mv: np.ndarray, recorded: list[str], raw_ptp_mv: dict[str, float],
                 fs_hz: float = 500.0) -> CalibrationFindings:
    """Amplitude checks on a canonical record: ``signal_mv`` (12, n) mV in LEADS order at ``fs_hz``;
    ``recorded``: the leads the file holds (not derived from others); ``raw_ptp_mv``: each recorded lead's
    peak-to-peak (mV) on its original samples (resampling shifts it by a fraction of an adu)."""
    out = CalibrationFindings()
    ptp = {ld: round(v, PTP_DECIMALS) for ld, v in raw_ptp_mv.items() if np.isfinite(v) and v > 0}
    if len(ptp) >= NORMALISED_MIN_LEADS and len(set(ptp.values())) == 1:
        out.add("amplitude_normalised", f"all {len(ptp)} recorded leads span exactly "
                                        f"{next(iter(ptp.values())):.3f} mV peak-to-peak")
    x = np.asarray(signal_mv, dtype=np.float64)
    if "I" in recorded and "II" in recorded:
        worst = None
        i_, ii = x[LEAD_INDEX["I"]], x[LEAD_INDEX["II"]]
        for lead, (a, b) in LIMB_RELATIONS.items():
            if lead not in recorded:
                continue
            y = x[LEAD_INDEX[lead]]
            res = y - (a * i_ + b * ii)
            res = res - np.median(res)  # a constant offset (DC) breaks no law of the electrodes
            rms_res = float(np.sqrt(np.mean(res ** 2)))
            rms = float(np.sqrt(np.mean((y - np.median(y)) ** 2)))
            if rms_res > max(LIMB_RESIDUAL_MIN_MV, LIMB_RESIDUAL_FRACTION * rms):
                peak = float(np.max(np.abs(res)))
                if worst is None or peak > worst[1]:
                    worst = (lead, peak, rms_res)
        if worst is not None:
            out.add("limb_leads_inconsistent", f"{worst[0]} differs from its value from I and II by up to "
                                               f"{worst[1]:.2f} mV (RMS {worst[2]:.2f} mV)")
    reversed_detail = _arm_reversal(x, fs_hz)
    if reversed_detail:
        out.add("limb_lead_reversal", reversed_detail)
    return out


def _arm_reversal(x: np.ndarray, fs_hz: float) -> str | None:
    """The detail line when lead I shows a negative P and QRS, aVR a positive QRS and V5-V6 a positive QRS on
    the record's median beat; None otherwise (or when no beats / no clear P are found)."""
    # a cheap screen first (every stage reads the record): the largest deflection of lead I (its QRS) is
    # negative; in most ECGs it is positive
    xi = x[LEAD_INDEX["I"]] - np.median(x[LEAD_INDEX["I"]])
    if not np.isfinite(x).all() or xi.size < int(fs_hz) or xi[np.argmax(np.abs(xi))] > 0:
        return None
    from scipy.signal import sosfiltfilt  # noqa: PLC0415 - signal processing only when it may be reversed

    from features.beats import detect_beats  # noqa: PLC0415
    from features.fiducials import ms  # noqa: PLC0415
    from features.signal import _sos  # noqa: PLC0415 - the measurement stage's own 0.5-40 Hz band-pass

    clean = sosfiltfilt(_sos("band", fs_hz), x - np.median(x, axis=1, keepdims=True), axis=1)
    good = np.ptp(clean, axis=1) > 0
    if not good.any():
        return None
    r = detect_beats(clean, good, fs_hz)
    before, after = ms(fs_hz, 300), ms(fs_hz, 120)
    r = r[(r - before >= 0) & (r + after < x.shape[1])]
    if r.size < 3:
        return None
    idx = r[:, None] + np.arange(-before, after)[None, :]
    beat = np.median(clean[:, idx], axis=1)  # (leads, samples): the median beat, anchor at ``before``
    base = beat[:, before - ms(fs_hz, 70):before - ms(fs_hz, 50)].mean(axis=1)  # PR segment
    y = beat - base[:, None]
    qrs = y[:, before - ms(fs_hz, 50):before + ms(fs_hz, 70)].sum(axis=1)
    limb = [LEAD_INDEX[ld] for ld in ("I", "II", "III", "aVR", "aVL", "aVF")]
    # the P: where the limb leads' magnitude peaks 280-90 ms before the anchor
    pw = slice(before - ms(fs_hz, 280), before - ms(fs_hz, 90))
    mag = np.sqrt(np.sum(y[limb, pw] ** 2, axis=0))
    if mag.size == 0:
        return None
    k = pw.start + int(np.argmax(mag))
    p_i, p_avr, p_big = float(y[LEAD_INDEX["I"], k]), float(y[LEAD_INDEX["aVR"], k]), float(np.abs(y[limb, k]).max())
    q_i, q_avr = float(qrs[LEAD_INDEX["I"]]), float(qrs[LEAD_INDEX["aVR"]])
    q_big = float(np.abs(qrs[limb]).max())
    v56 = float(qrs[LEAD_INDEX["V5"]] + qrs[LEAD_INDEX["V6"]])
    if q_big <= 0 or p_big <= 0:
        return None
    # aVR, the old aVL after the swap: its QRS or its P upright (a normal aVR has neither)
    if p_i <= -REVERSAL_P_MIN * p_big and q_i <= -REVERSAL_QRS_MIN * q_big and (q_avr > 0 or p_avr > 0) \
            and v56 > 0:
        return ("lead I shows a negative P and QRS and aVR an upright P or QRS while V5-V6 are upright: "
                "left and right arm electrodes probably swapped")
    return None
