"""Beat-level measurements: every number an interpretation cites comes from here.

Public API:
- ``measure_record(record) -> Measurement`` (beats in BEATS_SCHEMA, record row in RECORDS_SCHEMA, warnings);
- ``run_features(source, root, out_dir, chunk_size=200, **source_options) -> FeaturesSummary``;
- ``featuredb_rows(beats) -> pl.DataFrame``: the per-heartbeat, per-lead feature list GEM's prompts used.

Names are resolved lazily (PEP 562) so that ``import features.schema`` (the column contract, imported by
``pipeline.batch``) neither drags in the signal-processing stack nor forms an import cycle with it.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "featuredb_rows": "features.featuredb",
    "Measurement": "features.measure",
    "measure_record": "features.measure",
    "frontal_axis_deg": "features.measure",
    "qtc_bazett_ms": "features.measure",
    "qtc_fridericia_ms": "features.measure",
    "qtc_framingham_ms": "features.measure",
    "qtc_hodges_ms": "features.measure",
    "FeaturesSummary": "features.run",
    "run_features": "features.run",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'features' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
