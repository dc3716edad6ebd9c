"""The ground truth of a synthetic record: the record-level truth (``RecordTruth``), its SCP statement codes and
their names, the per-beat per-lead fiducial columns (``_truth``) and the truth tables' frames and schemas
(``beats_frame``, ``BEATS_TRUTH_SCHEMA``, ``RECORDS_TRUTH_SCHEMA``). The truth conventions: ``pipeline.synthetic``.
"""
from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import BaseModel, Field

from features.schema import FIDUCIAL_COLUMNS
from pipeline.record import LEADS
from pipeline.synthetic_avblock import atrial_rate_bpm
from pipeline.synthetic_params import SynthParams
from pipeline.synthetic_waves import LEAD_MATRIX, WAVE_COLUMNS, BeatTemplate


class RecordTruth(BaseModel):
    """Record-level ground truth (ms, bpm, degrees; None where not defined, e.g. PR in AF)."""

    record_id: str
    hr_bpm: float
    rr_mean_ms: float
    pr_ms: float | None
    qrs_ms: float
    qt_ms: float
    qrs_axis_deg: float
    rhythm: str  # sinus_rhythm | sinus_bradycardia | sinus_tachycardia | atrial_fibrillation | atrial_flutter
    findings: list[str]  # SCP codes of the non-rhythm findings
    scp_codes: list[str]  # every statement code, rhythm first (NORM only without findings)
    n_beats: int
    n_premature: int
    st_elevation_leads: list[str] = Field(default_factory=list)  # ST at J+60 >= 0.1 mV
    st_depression_leads: list[str] = Field(default_factory=list)  # ST at J+60 <= -0.1 mV
    t_inversion_leads: list[str] = Field(default_factory=list)  # T deflection <= -0.1 mV (aVR excluded)
    heart_axis: str  # PTB-XL heart_axis: MID | LAD | RAD
    atrial_rate_bpm: float | None = None  # under AV block: the P waves' own rate (hr_bpm is the ventricles')


SCP_NAMES: dict[str, str] = {
    "NORM": "normal ECG",
    "SR": "sinus rhythm",
    "SBRAD": "sinus bradycardia",
    "STACH": "sinus tachycardia",
    "AFIB": "atrial fibrillation",
    "AFLT": "atrial flutter",
    "1AVB": "first degree AV block",
    "CRBBB": "complete right bundle branch block",
    "CLBBB": "complete left bundle branch block",
    "PVC": "ventricular premature complex",
    "STE_": "non-specific ST elevation",
    "STD_": "non-specific ST depression",
    "INVT": "inverted T-waves",
    "LVOLT": "low QRS voltages in the frontal and horizontal leads",
    "LAD": "left axis deviation",
    "RAD": "right axis deviation",
    "IRBBB": "incomplete right bundle branch block",
    "LAFB": "left anterior fascicular block",
    "LPFB": "left posterior fascicular block",
    "PACE": "normal functioning artificial pacemaker",
    "LAO/LAE": "left atrial overload/enlargement",
    "PAC": "atrial premature complex",
    "2AVB": "second degree AV block",
    "3AVB": "third degree AV block",
}
_RHYTHM_CODES = {"sinus_rhythm": "SR", "sinus_bradycardia": "SBRAD", "sinus_tachycardia": "STACH",
                 "atrial_fibrillation": "AFIB", "atrial_flutter": "AFLT"}


def report_text(scp_codes: list[str]) -> str:
    """A PTB-XL-style lower-case English report, e.g. 'sinus rhythm. first degree av block.'."""
    return " ".join(f"{SCP_NAMES[c].lower()}." for c in scp_codes)


# the truth's beat_class of each beat kind: a premature atrial beat is "premature" like a ventricular one
_TRUTH_CLASS = {"pac": "premature"}


def _truth(record_id: str, params: SynthParams, times: np.ndarray, kinds: list[str],
           templates: dict[str, BeatTemplate], st_vec: np.ndarray | None, t_vec: np.ndarray,
           last_ms: float) -> tuple[dict, RecordTruth]:
    """Per-beat per-lead fiducials (``beats``) and the record-level truth."""
    sel = [k for k, t0 in enumerate(times)
           if t0 >= 0.0 and t0 + templates[kinds[k]].waves["QRS"][1] <= last_ms]
    nb = len(sel)
    cols: dict[str, np.ndarray] = {c: np.full((nb, 12), np.nan) for c in FIDUCIAL_COLUMNS}
    st_proj = LEAD_MATRIX @ st_vec if st_vec is not None else np.zeros(12)
    st_j60 = np.zeros((nb, 12))
    for row, k in enumerate(sel):
        tpl, t0 = templates[kinds[k]], times[k]
        for name, (on_c, peak_c, off_c) in WAVE_COLUMNS.items():
            if name not in tpl.waves:
                continue
            on, off = t0 + tpl.waves[name][0], t0 + tpl.waves[name][1]
            on_in, off_in = 0.0 <= on <= last_ms, 0.0 <= off <= last_ms
            if on_in:
                cols[on_c][row] = on
            if off_in:
                cols[off_c][row] = off
            if on_in and off_in:
                cols[peak_c][row] = t0 + tpl.peaks_ms[name]
        if "ST" in tpl.waves:
            st_j60[row] = st_proj
    beat_columns = {
        "record_id": [record_id] * (nb * 12),
        "lead": list(LEADS) * nb,
        "beat": np.repeat(np.arange(nb, dtype=np.int32), 12),
        **{c: cols[c].ravel() for c in FIDUCIAL_COLUMNS},
        "beat_class": [_TRUTH_CLASS.get(kinds[k], kinds[k]) for k in sel for _ in range(12)],
        "st_j60_mv": st_j60.ravel(),
    }

    onsets = times[sel]
    rr_mean = float(np.diff(onsets).mean()) if nb > 1 else 60000.0 / params.hr_bpm
    hr = 60000.0 / rr_mean
    n_pvc = sum(kinds[k] == "premature" for k in sel)
    n_pac = sum(kinds[k] == "pac" for k in sel)
    n_prem = n_pvc + n_pac
    atrial_hr = atrial_rate_bpm(params)
    if params.rhythm == "sinus":  # unspecified sinus: named from the measured rate (the P waves' under AV block)
        a_hr = hr if atrial_hr is None else atrial_hr
        rhythm = "sinus_bradycardia" if a_hr < 60 else "sinus_tachycardia" if a_hr > 100 else "sinus_rhythm"
    else:
        rhythm = params.rhythm
    findings: list[str] = []
    if params.is_sinus and params.pr_ms > 200 and params.av_block == "none":
        findings.append("1AVB")
    if params.av_block != "none":
        findings.append({"complete": "3AVB", "2:1": "2AVB"}[params.av_block])
    if params.bundle_branch_block == "right":
        findings.append("CRBBB")
    if params.bundle_branch_block == "left":
        findings.append("CLBBB")
    if params.bundle_branch_block == "incomplete_right":
        findings.append("IRBBB")
    if params.fascicular_block != "none":
        findings.append({"left_anterior": "LAFB", "left_posterior": "LPFB"}[params.fascicular_block])
    if params.pacing != "none" or params.demand_paced_beats:
        findings.append("PACE")
    if params.p_wave == "bifid" and params.is_sinus:
        findings.append("LAO/LAE")
    if n_pvc:
        findings.append("PVC")
    if n_pac:
        findings.append("PAC")
    ste = [LEADS[i] for i in range(12) if st_proj[i] >= 0.1 - 1e-9]
    std = [LEADS[i] for i in range(12) if st_proj[i] <= -0.1 + 1e-9]
    if params.st_shift_mv >= 0.1:
        findings.append("STE_")
    if params.st_shift_mv <= -0.1:
        findings.append("STD_")
    t_proj = LEAD_MATRIX @ t_vec
    invt = [LEADS[i] for i in range(12) if t_proj[i] <= -0.1 and LEADS[i] != "aVR"]
    if params.t_inversion is not None:
        findings.append("INVT")
    if params.low_voltage:
        findings.append("LVOLT")
    axis = params.qrs_axis_deg
    heart_axis = "LAD" if axis < -30 else "RAD" if axis > 90 else "MID"
    if heart_axis != "MID":
        findings.append(heart_axis)
    scp = [_RHYTHM_CODES[rhythm]] + findings
    if rhythm == "sinus_rhythm" and not findings:
        scp = ["NORM", "SR"]
    truth = RecordTruth(
        record_id=record_id, hr_bpm=hr, rr_mean_ms=rr_mean,
        pr_ms=params.pr_ms if params.is_sinus and params.av_block != "complete" else None, atrial_rate_bpm=atrial_hr,
        qrs_ms=params.qrs_ms, qt_ms=params.qt_ms, qrs_axis_deg=axis, rhythm=rhythm, findings=findings,
        scp_codes=scp, n_beats=nb, n_premature=n_prem, st_elevation_leads=ste,
        st_depression_leads=std, t_inversion_leads=invt, heart_axis=heart_axis)
    return beat_columns, truth


def beats_frame(column_sets: list[dict]) -> pl.DataFrame:
    """One truth beats frame from the raw columns of one or many records (NaN fiducials -> null).

    Polars' per-frame overhead (~1 ms) would otherwise dominate writing a tree, so records keep plain
    columns and frames are built once.
    """
    if not column_sets:
        return pl.DataFrame(schema=BEATS_TRUTH_SCHEMA)
    data = {}
    for name, dtype in BEATS_TRUTH_SCHEMA.items():
        if dtype == pl.String:
            data[name] = pl.Series(name, [v for cs in column_sets for v in cs[name]], dtype=pl.String)
        else:
            data[name] = pl.Series(name, np.concatenate([cs[name] for cs in column_sets]), dtype=dtype,
                                   nan_to_null=name in FIDUCIAL_COLUMNS)
    return pl.DataFrame(data)


BEATS_TRUTH_SCHEMA: dict[str, pl.DataType] = {
    "record_id": pl.String, "lead": pl.String, "beat": pl.Int32, **{c: pl.Float64 for c in FIDUCIAL_COLUMNS},
    "beat_class": pl.String, "st_j60_mv": pl.Float64}
RECORDS_TRUTH_SCHEMA: dict[str, pl.DataType] = {
    "record_id": pl.String, "seed": pl.Int64, "hr_bpm": pl.Float64, "rr_mean_ms": pl.Float64,
    "pr_ms": pl.Float64, "qrs_ms": pl.Float64, "qt_ms": pl.Float64, "qrs_axis_deg": pl.Float64,
    "rhythm": pl.String, "heart_axis": pl.String, "findings": pl.String, "scp_codes": pl.String,
    "n_beats": pl.Int32, "n_premature": pl.Int32, "st_elevation_leads": pl.String,
    "st_depression_leads": pl.String, "t_inversion_leads": pl.String, "params_json": pl.String}
