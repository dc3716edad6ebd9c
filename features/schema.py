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
    # confidence (0-1) of this lead's P / QRS / T timing and of its amplitudes, the same in every beat row of
    # the lead (null: the wave is absent or the lead gated); see CONFIDENCE_OF and features/confidence.py
    "p_conf": pl.Float64,
    "qrs_conf": pl.Float64,
    "t_conf": pl.Float64,
    "amp_conf": pl.Float64,
    # how clear the lead's T wave is of flutter waves (its size and form; null: no flutter waves found)
    "t_wave_conf": pl.Float64,
    # how sure the lead's ST level is of flutter waves running through it (null: no flutter waves found)
    "st_level_conf": pl.Float64,
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
    # P waves at a regular rate of their own, unrelated to the QRS (complete AV block; features.av_dissociation)
    "av_dissociation": pl.Boolean,
    # flutter waves found under the QRST (features.flutter; null: not looked for, too few beats): a fixed block
    # locks them to the QRS, where QRST cancellation cannot see them (pipeline.context: a report of flutter then)
    "flutter_waves": pl.Boolean,
    # the record's PR / QRS / QT: the median over good leads of each lead's own interval (its median over the
    # dominant beats), i.e. what a reader measuring one typical lead finds (as LUDB's experts annotate, lead
    # by lead); the global (12-lead, earliest onset to latest offset over leads, as the IEC 60601-2-25 /
    # CSE programs) ones are *_global_ms
    "pr_ms": pl.Float64,
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
    "pr_global_ms": pl.Float64,      # global intervals: earliest onset to latest offset over leads (median beat)
    "qrs_global_ms": pl.Float64,
    "qt_global_ms": pl.Float64,
    "pr_conf": pl.Float64,           # confidence (0-1) of pr_ms / qrs_ms / qt_ms (and of what derives from them)
    "qrs_conf": pl.Float64,
    "qt_conf": pl.Float64,
    "hr_conf": pl.Float64,           # confidence (0-1) of hr_bpm and the RR values (features/rate.py)
    "uncertain": pl.String,          # "qt_ms:leads_disagree(38 ms);..." every record value below CONFIDENCE_MIN
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


# A value whose confidence is below this is kept in the tables but is not citable
# (pipeline.context.GroundingContext.citable): the writer never states it, the prompt shows it as not reliably
# measurable, the validator rejects an answer that states it. 0.5 is where one of the checks behind the
# confidence disagrees by exactly the interval's tolerance (features/confidence.py).
CONFIDENCE_MIN = 0.5

# Which confidence columns stand behind each value: record-level (RECORDS_SCHEMA) and per lead (BEATS_SCHEMA).
# A value is as sure as the least sure of them; columns not listed carry no confidence of their own.
RECORD_CONFIDENCE_OF: dict[str, tuple[str, ...]] = {
    "pr_ms": ("pr_conf",), "qrs_ms": ("qrs_conf",), "qt_ms": ("qt_conf",), "qt_dispersion_ms": ("qt_conf",),
    # a frontal axis is the angle of the net area inside the wave's window: where the window's edges are unsure,
    # so is the area (synthetic CLBBB at 127 bpm: the QRS window 35 ms late, into the ST, read 92 deg for -71)
    "qrs_axis_deg": ("qrs_conf",), "p_axis_deg": ("pr_conf",), "t_axis_deg": ("qt_conf",),
    # a QTc is corrected with the record's RR: as sure as the QT and the beats counted
    **{c: ("qt_conf", "hr_conf") for c in ("qtc_bazett_ms", "qtc_fridericia_ms", "qtc_framingham_ms",
                                           "qtc_hodges_ms")},
    # the rate and the RR values (rr_ms: the basic RR the writer reads from the beats) come from the beats counted
    **{c: ("hr_conf",) for c in ("hr_bpm", "rr_mean_ms", "rr_sd_ms", "rr_ms")},
}
LEAD_CONFIDENCE_OF: dict[str, tuple[str, ...]] = {
    **{c: ("p_conf",) for c in ("p_on_ms", "p_peak_ms", "p_off_ms", "p_ms")},
    "pr_ms": ("p_conf", "qrs_conf"),
    **{c: ("qrs_conf",) for c in ("qrs_on_ms", "r_peak_ms", "qrs_off_ms", "qrs_ms", "q_ms", "r_ms", "s_ms",
                                  "r_peak_time_ms")},
    **{c: ("t_conf", "qrs_conf") for c in ("t_on_ms", "t_peak_ms", "t_off_ms", "t_ms", "qt_ms", "qtc_bazett_ms",
                                           "qtc_fridericia_ms")},
    # amplitudes and the polarity / pattern words read from them (pipeline.derived's included): as sure as the
    # beats agree (amp_conf) and, for what is read inside the QRS window (its Q, R, S waves, its pattern and net
    # polarity, and the J point, which is the QRS end), as sure as that window (qrs_conf): a window that slid
    # 35 ms into the ST reads the ST as the QRS's end (synthetic CLBBB at 127 bpm: "qR in III", "largely
    # positive in II and aVF" for a -71 deg axis); likewise a P wave's size and form and its window (p_conf)
    # a T wave's size and form also as sure as it stands out of the flutter waves running through it (t_wave_conf)
    **{c: ("amp_conf", "t_wave_conf") for c in ("t_amp_mv", "t_form")},
    **{c: ("amp_conf", "p_conf") for c in ("p_amp_mv", "p_form")},
    **{c: ("amp_conf", "qrs_conf") for c in ("q_amp_mv", "r_amp_mv", "r_prime_amp_mv", "s_amp_mv",
                                             "qrs_morphology", "qrs_polarity", "qrs_net_mv",
                                             "q_wave_present", "r_prime_present", "s_wave_present")},
    # the ST level also as sure as the flutter waves running through it let it be (st_level_conf)
    **{c: ("amp_conf", "qrs_conf", "st_level_conf") for c in ("st_j_mv", "st_j60_mv")},
}

