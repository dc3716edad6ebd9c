"""Beat-level measurements: every number an interpretation cites comes from here.

Public API:
- ``measure_record(record) -> Measurement`` (beats in BEATS_SCHEMA, record row in RECORDS_SCHEMA, warnings);
- ``run_features(source, root, out_dir, chunk_size=200, **source_options) -> FeaturesSummary``;
- ``featuredb_rows(beats) -> pl.DataFrame``: the per-heartbeat, per-lead feature list GEM's prompts used.
"""
from features.featuredb import featuredb_rows
from features.measure import Measurement, frontal_axis_deg, measure_record, qtc_bazett_ms, qtc_fridericia_ms, \
    qtc_framingham_ms, qtc_hodges_ms
from features.run import FeaturesSummary, run_features

__all__ = ["Measurement", "measure_record", "run_features", "FeaturesSummary", "featuredb_rows",
           "frontal_axis_deg", "qtc_bazett_ms", "qtc_fridericia_ms", "qtc_framingham_ms", "qtc_hodges_ms"]
