"""Column contracts of the measurement tables. Later stages (prompts, writer, validator) code against these.

All times are ms from record start, amplitudes mV against the isoelectric PR baseline, axes degrees in
(-180, 180]. Null means "absent or not measurable", never zero. Columns may be added; none of these may
be renamed.
"""
from __future__ import annotations

import polars as pl

FIDUCIAL_COLUMNS = [
    "p_on_ms", "p_peak_ms", "p_off_ms",
    "qrs_on_ms", "r_peak_ms", "qrs_off_ms",
    "t_on_ms", "t_peak_ms", "t_off_ms",
]

# One row per (record, lead, beat). Beat k is the same heartbeat in every lead of a record.
BEATS_SCHEMA: dict[str, pl.DataType] = {
    "record_id": pl.String,
    "lead": pl.String,            # I, II, III, aVR, aVL, aVF, V1..V6
    "beat": pl.Int32,             # 0-based, same heartbeat across leads
    # each lead's own P onset / end, QRS end and T end where its wave visibly starts / ends apart from the
    # record's global (multi-lead) fiducial, else the global one; the QRS onset is always global
    **{c: pl.Float64 for c in FIDUCIAL_COLUMNS},
    "rr_ms": pl.Float64,          # from the previous beat's R to this one's (null for the first)
    "pr_ms": pl.Float64,          # P onset -> QRS onset
    "qrs_ms": pl.Float64,
    "qt_ms": pl.Float64,          # QRS onset -> T offset
    "qtc_bazett_ms": pl.Float64,
    "qtc_fridericia_ms": pl.Float64,
    "p_ms": pl.Float64,           # P duration
    "t_ms": pl.Float64,           # T duration
    "p_amp_mv": pl.Float64,
    "q_amp_mv": pl.Float64,       # negative or null (no Q wave)
    "r_amp_mv": pl.Float64,
    "r_prime_amp_mv": pl.Float64,
    "s_amp_mv": pl.Float64,       # negative or null (no S wave)
    "t_amp_mv": pl.Float64,
    "st_j_mv": pl.Float64,        # ST level at the global J point (the record's QRS end, as 12-lead programs)
    "st_j60_mv": pl.Float64,      # ST level 60 ms after that J point
    "q_ms": pl.Float64,
    "r_ms": pl.Float64,
    "s_ms": pl.Float64,
    "p_form": pl.String,          # positive | negative | biphasic | flat | absent
    "t_form": pl.String,          # positive | negative | biphasic | flat | absent
    "qrs_morphology": pl.String,  # e.g. qRs, rS, rsR', QS, R
    "beat_class": pl.String,      # normal | premature | paced | uncertain
    "lead_quality": pl.String,    # ok | gated:<reason>  (gated -> every measurement above is null)
}

# One row per record.
RECORDS_SCHEMA: dict[str, pl.DataType] = {
    "record_id": pl.String,
    "source": pl.String,
    "n_beats": pl.Int32,
    "hr_bpm": pl.Float64,
    "rr_mean_ms": pl.Float64,
    "rr_sd_ms": pl.Float64,
    "rhythm_regular": pl.Boolean,
    "p_waves_present": pl.Boolean,   # consistent P before most QRS (False in AF / junctional)
    "pr_ms": pl.Float64,             # global (12-lead) intervals
    "qrs_ms": pl.Float64,
    "qt_ms": pl.Float64,
    "qtc_bazett_ms": pl.Float64,
    "qtc_fridericia_ms": pl.Float64,
    "qtc_framingham_ms": pl.Float64,
    "qtc_hodges_ms": pl.Float64,
    "p_axis_deg": pl.Float64,
    "qrs_axis_deg": pl.Float64,
    "t_axis_deg": pl.Float64,
    "sokolow_lyon_mv": pl.Float64,   # S(V1) + max(R(V5), R(V6))
    "cornell_mv": pl.Float64,        # R(aVL) + S(V3)
    "low_voltage_limb": pl.Boolean,  # every limb lead QRS peak-to-peak < 0.5 mV
    "low_voltage_precordial": pl.Boolean,  # every precordial lead < 1.0 mV
    "qt_dispersion_ms": pl.Float64,
    "n_premature": pl.Int32,
    "n_paced": pl.Int32,
    "leads_ok": pl.Int32,
    "leads_gated": pl.String,        # "V3:flat;aVL:noise" or ""
    # reference comparisons (null when the source has no reference): ours - reference
    "ref_kind": pl.String,
    "diff_pr_ms": pl.Float64,
    "diff_qrs_ms": pl.Float64,
    "diff_qt_ms": pl.Float64,
    "diff_rr_ms": pl.Float64,
    "diff_qrs_axis_deg": pl.Float64,
}

ERRORS_SCHEMA: dict[str, pl.DataType] = {
    "record_id": pl.String,
    "stage": pl.String,     # ingest | features | render | prompts | generate | validate
    "severity": pl.String,  # error (record dropped) | warning (record kept)
    "code": pl.String,      # see pipeline.record.REASON_CODES
    "lead": pl.String,
    "message": pl.String,
}
