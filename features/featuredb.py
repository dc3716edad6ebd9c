"""The per-heartbeat feature list in the shape GEM's prompts used (FeatureDB's field set).

GEM feeds the LLM "a time-ordered list of features for each heartbeat in every lead": heart rate, QT,
QTc, P / QRS / T amplitudes, durations and forms, PR interval, ST level and ST form. ``featuredb_rows``
turns BEATS_SCHEMA rows into exactly that list; gated leads are left out (nothing may be cited from them).
"""
from __future__ import annotations

import polars as pl

from pipeline.record import LEADS

ST_ELEVATION_MV = 0.1   # ST level at J+60 ms above which the form is "elevated" (mV)
ST_DEPRESSION_MV = -0.05  # ... below which it is "depressed"

FEATUREDB_SCHEMA: dict[str, pl.DataType] = {
    "record_id": pl.String, "lead": pl.String, "beat": pl.Int32, "time_ms": pl.Float64,
    "beat_class": pl.String, "hr_bpm": pl.Float64, "qt_ms": pl.Float64, "qtc_ms": pl.Float64,
    "pr_ms": pl.Float64, "p_ms": pl.Float64, "qrs_ms": pl.Float64, "t_ms": pl.Float64,
    "p_amp_mv": pl.Float64, "qrs_amp_mv": pl.Float64, "r_amp_mv": pl.Float64, "s_amp_mv": pl.Float64,
    "t_amp_mv": pl.Float64, "p_form": pl.String, "qrs_morphology": pl.String, "t_form": pl.String,
    "st_level_mv": pl.Float64, "st_form": pl.String,
}


def featuredb_rows(beats: pl.DataFrame) -> pl.DataFrame:
    """BEATS_SCHEMA rows -> FEATUREDB_SCHEMA rows, time-ordered per record and lead (LEADS order).

    Units: ms and mV; ``hr_bpm`` = 60000 / RR of that beat; ``qtc_ms`` is Bazett's (what FeatureDB
    reports); ``qrs_amp_mv`` = R minus S (peak-to-peak of the named waves); ``st_level_mv`` is the ST level
    60 ms after J with ``st_form`` elevated / depressed / isoelectric. Gated leads are dropped.
    """
    if beats.height == 0:
        return pl.DataFrame(schema=FEATUREDB_SCHEMA)
    lead_rank = {lead: i for i, lead in enumerate(LEADS)}
    df = beats.filter(pl.col("lead_quality") == "ok")
    r = pl.col("r_amp_mv").fill_null(0.0)
    s = pl.col("s_amp_mv").fill_null(pl.col("q_amp_mv")).fill_null(0.0)
    st = pl.col("st_j60_mv").fill_null(pl.col("st_j_mv"))
    out = df.with_columns(
        pl.col("r_peak_ms").alias("time_ms"),
        (60000.0 / pl.col("rr_ms")).alias("hr_bpm"),
        pl.col("qtc_bazett_ms").alias("qtc_ms"),
        pl.when(pl.col("r_peak_ms").is_null()).then(None).otherwise(r - s).alias("qrs_amp_mv"),
        st.alias("st_level_mv"),
        pl.when(st.is_null()).then(None)
        .when(st >= ST_ELEVATION_MV).then(pl.lit("elevated"))
        .when(st <= ST_DEPRESSION_MV).then(pl.lit("depressed"))
        .otherwise(pl.lit("isoelectric")).alias("st_form"),
        pl.col("lead").replace_strict(lead_rank, default=99).alias("_rank"),
    ).sort("record_id", "_rank", "beat")
    return out.select([pl.col(c).cast(t) for c, t in FEATUREDB_SCHEMA.items()])
