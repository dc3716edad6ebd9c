"""What the prompt assembler, the offline writer and the validator know about one record.

``GroundingContext`` is the contract between the measurement stage and everything downstream: the writer
may only cite what is in it, and the validator checks answers against exactly the same object.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl


@dataclass
class GroundingContext:
    record_id: str
    source: str
    ecg_path: str                      # WFDB path relative to the data root, no extension (GEM's ``ecg``)
    report: str                        # the report as the source gives it (may be German for PTB-XL)
    statement_ids: list[str]           # canonical knowledge/ ids the report normalises to
    unmapped_statements: list[str]     # report fragments / codes no knowledge entry matched
    record: dict                       # one row of features/schema.py RECORDS_SCHEMA
    beats: pl.DataFrame                # this record's rows of BEATS_SCHEMA
    image_path: str | None = None      # relative PNG path, when rendered
    machine_measurements: dict | None = None  # MIMIC-style machine measurements when the source has them
    extra: dict = field(default_factory=dict)

    @property
    def gated_leads(self) -> set[str]:
        """Leads the quality gate rejected: nothing may be cited from them."""
        q = self.beats.select("lead", "lead_quality").unique()
        return {r["lead"] for r in q.iter_rows(named=True) if (r["lead_quality"] or "").startswith("gated")}

    @property
    def measured_leads(self) -> list[str]:
        from pipeline.record import LEADS

        present = set(self.beats["lead"].unique().to_list()) - self.gated_leads
        return [lead for lead in LEADS if lead in present]
