"""What the prompt assembler, the offline writer and the validator know about one record.

``GroundingContext`` is the contract between the measurement stage and everything downstream: the writer
may only cite what is in it, and the validator checks answers against exactly the same object.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

# Values that depend on the record's amplitudes (absolute, or relative between leads): millivolts, voltage
# criteria and flags, and the frontal axes (computed from the net QRS / P / T areas of the limb leads).
# Polarity words (t_form, p_form) and QRS patterns (rS, qR) survive a positive per-lead gain and stay citable.
AMPLITUDE_DERIVED_COLUMNS: frozenset[str] = frozenset({
    "p_axis_deg", "qrs_axis_deg", "t_axis_deg", "low_voltage_limb", "low_voltage_precordial",
})


LIMB_LEADS: frozenset[str] = frozenset({"I", "II", "III", "aVR", "aVL", "aVF"})


# what the atrial waves are measured as: a report that has no P waves (atrial fibrillation, flutter) leaves none of
# them to cite, whatever the measurement took for P waves (synthetic AF at 102-118 bpm: the previous T's tail at a
# steady distance before the QRS read as P, "atrial fibrillation ... the PR interval measures 136 ms" accepted)
P_WAVE_COLUMNS: frozenset[str] = frozenset({
    "pr_ms", "pr_global_ms", "p_axis_deg", "pr_sd_ms", "p_morphology_count", "ptf_v1_depth_mv", "ptf_v1_ms",
    "p_on_ms", "p_peak_ms", "p_off_ms", "p_ms", "p_amp_mv", "p_form"})


# what a report of a pacemaker makes of a record where the measurement found no paced beat though its QRS is as broad
# as a paced one: the stimuli may be too small to be found (bipolar leads), and a paced QRS read as the heart's own
# starts at its stimulus, before the capture (synthetic ventricular pacing with stimuli of 0.1-0.14 mV, none found:
# QRS cited 14-24 ms long, QT 15-42 ms at confidence 0.8-1); a demand pacemaker that was not pacing, or an atrial
# one, leaves a narrow conducted QRS, which stays citable. The durations that begin or end at the QRS onset (PR, QRS,
# QT, QTc; a lead's Q, R, S) are not citable there.
PACED_ONSET_CONFIDENCES: frozenset[str] = frozenset({"pr_conf", "qrs_conf", "qt_conf"})
REPORT_PACED_IDS: frozenset[str] = frozenset({"PACE"})
# what a report of atrial flutter makes of a record whose flutter waves the measurement did not find under the QRST
# (features.flutter; record column flutter_waves): conducted with a fixed block (2:1, 3:1, 4:1) the F waves sit at
# the same phase in every beat, inside the median beat, where they ride on the QRS end, the ST segment and the T
# wave as if they were theirs (synthetic fixed-block flutter, benchmarks/flutter.py: QT cited up to 122 ms late,
# QRS up to 47 ms, ST levels 0.1-0.25 mV off in II / III / aVF, T forms inverted). Every value whose confidence rests
# on these windows is not citable there.
FLUTTER_LOCKED_CONFIDENCES: frozenset[str] = frozenset({"qrs_conf", "qt_conf", "t_conf", "t_wave_conf",
                                                        "st_level_conf"})
REPORT_FLUTTER_IDS: frozenset[str] = frozenset({"AFLT"})
# uncitable reasons of a value that was measured but may be wrong (as opposed to a gated lead, an uncalibrated
# amplitude): a word about it (a wide QRS, a pattern, the ST's place) is as unsure as its number
UNSURE_REASONS: frozenset[str] = frozenset({"low_confidence", "flutter_waves_locked", "paced_unseen"})


def amplitude_derived(column: str) -> bool:
    """Whether ``column``'s value depends on the record's amplitude calibration."""
    return column.endswith("_mv") or column in AMPLITUDE_DERIVED_COLUMNS


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
    amplitudes_calibrated: bool = True       # RecordMeta.calibration: False -> no amplitude value is citable
    calibration_flags: list[str] = field(default_factory=list)
    # what the report's statements say of P waves (their knowledge criteria on p_waves_present; None: nothing, or
    # they disagree): False (atrial fibrillation, flutter) makes every P-wave value not citable
    report_p_waves: bool | None = None
    # the report names a pacemaker (REPORT_PACED_IDS, with their implications)
    report_paced: bool = False
    # the report names atrial flutter (REPORT_FLUTTER_IDS, with their implications)
    report_flutter: bool = False

    def citable(self, column: str, lead: str | None = None) -> bool:
        """Whether the value of ``column`` (record-level when ``lead`` is None, else that lead's) may be stated
        by a writer or an answer. The one place every consumer (prompts, writer, validator) asks.

        Not citable: amplitude-derived values (``amplitude_derived``) of a record whose amplitudes are not
        calibrated (LUDB's per-lead normalisation, a bad gain, limb leads that break Einthoven), values of a
        gated lead, and values measured with a confidence below ``features.schema.CONFIDENCE_MIN``
        (``confidence``)."""
        return self.uncitable_reason(column, lead) is None

    def uncitable_reason(self, column: str, lead: str | None = None) -> str | None:
        """Why ``column`` (in ``lead``) is not citable, as a reason code; None when it is citable.

        Codes: ``gated_lead``; ``report_no_p_waves`` (a P-wave value, ``P_WAVE_COLUMNS``, of a record whose report
        has no P waves); a calibration flag (``RecordMeta.calibration.flags``, e.g.
        ``amplitude_normalised``) or ``amplitude_uncalibrated``; ``limb_lead_reversal`` (every value of a limb
        lead of a record whose arm electrodes look swapped: the lead is another one); ``flutter_waves_locked``
        (a value read in the QRS end, ST or T windows of a record whose report names flutter where the measurement
        found no flutter waves under the QRST: FLUTTER_LOCKED_CONFIDENCES); ``paced_unseen`` (a duration read from
        the QRS onset, of a record whose report names a pacemaker where the measurement found no paced beat in a QRS
        as broad as a paced one: ``paced_onset_unsure``); ``low_confidence``."""
        from features.schema import CONFIDENCE_MIN, LEAD_CONFIDENCE_OF, RECORD_CONFIDENCE_OF

        if lead is not None and lead in self.gated_leads:
            return "gated_lead"
        if self.report_p_waves is False and column in P_WAVE_COLUMNS:
            return "report_no_p_waves"
        if not self.amplitudes_calibrated and amplitude_derived(column):
            return self.calibration_flags[0] if self.calibration_flags else "amplitude_uncalibrated"
        if lead in LIMB_LEADS and "limb_lead_reversal" in self.calibration_flags:
            return "limb_lead_reversal"  # what the file calls lead I (II, aVR, ...) is another lead
        if self.report_flutter and self.record.get("flutter_waves") is not True:
            behind = (RECORD_CONFIDENCE_OF if lead is None else LEAD_CONFIDENCE_OF).get(column, ())
            if FLUTTER_LOCKED_CONFIDENCES.intersection(behind):
                return "flutter_waves_locked"
        if column.endswith("_ms") and self.paced_onset_unsure:
            behind = (RECORD_CONFIDENCE_OF if lead is None else LEAD_CONFIDENCE_OF).get(column, ())
            if PACED_ONSET_CONFIDENCES.intersection(behind):
                return "paced_unseen"
        conf = self.confidence(column, lead)
        if conf is not None and conf < CONFIDENCE_MIN:
            return "low_confidence"
        return None

    def confidence(self, column: str, lead: str | None = None) -> float | None:
        """The measurement stage's confidence (0-1) in ``column``'s value (record-level when ``lead`` is None,
        else that lead's): the least of the confidence columns behind it (``features.schema``
        RECORD_CONFIDENCE_OF / LEAD_CONFIDENCE_OF); None when the column carries none (or the tables predate
        confidences)."""
        from features.schema import LEAD_CONFIDENCE_OF, RECORD_CONFIDENCE_OF

        if lead is None:
            vals = [self.record.get(c) for c in RECORD_CONFIDENCE_OF.get(column, ())]
        else:
            vals = [self.lead_confidence(lead, c) for c in LEAD_CONFIDENCE_OF.get(column, ())]
        vals = [float(v) for v in vals if v is not None and v == v]
        return min(vals) if vals else None

    def lead_confidence(self, lead: str, conf_column: str) -> float | None:
        """A lead's confidence column (``p_conf``, ``qrs_conf``, ``t_conf``, ``amp_conf``, ``t_wave_conf``,
        ``st_level_conf``: the same on every beat row of the lead); None when absent. Computed once per beats frame
        and cached on the context."""
        cache = self.__dict__.get("_lead_conf_cache")
        if cache is None or cache[0] is not self.beats:
            table: dict[tuple[str, str], float] = {}
            cols = [c for c in ("p_conf", "qrs_conf", "t_conf", "amp_conf", "t_wave_conf", "st_level_conf")
                    if c in self.beats.columns]
            if cols and self.beats.height:
                first = self.beats.group_by("lead").agg([pl.col(c).drop_nulls().first() for c in cols])
                for row in first.iter_rows(named=True):
                    for c in cols:
                        if row[c] is not None:
                            table[(row["lead"], c)] = float(row[c])
            cache = (self.beats, table)
            self.__dict__["_lead_conf_cache"] = cache
        return cache[1].get((lead, conf_column))

    @property
    def paced_onset_unsure(self) -> bool:
        """The report names a pacemaker, the measurement found no paced beat, and the QRS is as broad as a paced one
        (``features.stimuli.PACED_QRS_MIN_MS``): where the QRS starts, at a stimulus or after its capture, is
        unknown."""
        from features.stimuli import PACED_QRS_MIN_MS

        qrs = self.record.get("qrs_ms")
        return bool(self.report_paced and not (self.record.get("n_paced") or 0)
                    and qrs is not None and qrs >= PACED_QRS_MIN_MS)

    @property
    def gated_leads(self) -> set[str]:
        """Leads the quality gate rejected: nothing may be cited from them (computed once per beats frame)."""
        cache = self.__dict__.get("_gated_cache")
        if cache is None or cache[0] is not self.beats:
            q = self.beats.select("lead", "lead_quality").unique()
            gated = {r["lead"] for r in q.iter_rows(named=True) if (r["lead_quality"] or "").startswith("gated")}
            cache = (self.beats, frozenset(gated))
            self.__dict__["_gated_cache"] = cache
        return set(cache[1])

    @property
    def measured_leads(self) -> list[str]:
        from pipeline.record import LEADS

        present = set(self.beats["lead"].unique().to_list()) - self.gated_leads
        return [lead for lead in LEADS if lead in present]

    def lead_value(self, lead: str, column: str):
        """This record's value of beats ``column`` in ``lead`` (see ``lead_value``); None for a gated lead.

        Computed once per beats frame for every (lead, column) and cached on the context."""
        cache = self.__dict__.get("_lead_value_cache")
        if cache is None or cache[0] is not self.beats:
            gated = self.gated_leads
            table = {lead_: cols for lead_, cols in lead_value_table(self.beats).items() if lead_ not in gated}
            cache = (self.beats, table)
            self.__dict__["_lead_value_cache"] = cache
        return cache[1].get(lead, {}).get(column)


# --- builders (prompts, writer, generate) -----------------------------------------------------------------

def lead_value(beats: pl.DataFrame, lead: str, column: str):
    """One representative value of beats ``column`` in ``lead``: the upper median of its non-null values.

    The upper median (``sorted(values)[n // 2]``) is always one beat's actual value, so a number the writer
    cites equals a measured beat exactly (units: the column's, ms or mV). Premature and paced beats are left
    out when normal beats exist, so an ectopic beat does not stand for the lead. String columns
    (``t_form``, ``qrs_morphology``) give their most common value. None when nothing is measured.
    """
    if beats is None or beats.height == 0 or column not in beats.columns:
        return None
    rows = beats.filter(pl.col("lead") == lead)
    if "beat_class" in rows.columns:
        normal = rows.filter(pl.col("beat_class").is_null() | (pl.col("beat_class") == "normal"))
        if normal.height and normal[column].drop_nulls().len():
            rows = normal
    return _representative(rows[column].drop_nulls().to_list(), rows.schema[column] == pl.String)


def _representative(values: list, is_string: bool):
    """The most frequent string (ties: the greatest), or the (upper) median of the numbers, NaN dropped."""
    if is_string:
        values = [v for v in values if v]
        if not values:
            return None
        counts: dict[str, int] = {}
        for v in values:
            counts[v] = counts.get(v, 0) + 1
        return max(counts, key=lambda k: (counts[k], k))
    values = [float(v) for v in values if v is not None and v == v]
    return sorted(values)[len(values) // 2] if values else None


def lead_value_table(beats: pl.DataFrame) -> dict[str, dict[str, object]]:
    """``{lead: {column: lead_value(beats, lead, column)}}`` for every lead and column at once (one pass)."""
    out: dict[str, dict[str, object]] = {}
    if beats is None or beats.height == 0:
        return out
    schema = beats.schema  # once: building a polars schema per column is the slow part otherwise
    for key, rows in beats.partition_by("lead", as_dict=True).items():
        lead = key[0] if isinstance(key, tuple) else key
        if "beat_class" in rows.columns:
            cls = rows["beat_class"].to_list()
            normal_mask = [c is None or c == "normal" for c in cls]
        else:
            normal_mask = [True] * rows.height
        cols: dict[str, object] = {}
        for c in rows.columns:
            if c in ("record_id", "lead", "beat"):
                continue
            values = rows[c].to_list()
            normal = [v for v, ok in zip(values, normal_mask) if ok and v is not None]
            use = normal if normal else values
            cols[c] = _representative(use, schema[c] == pl.String)
        out[lead] = cols
    return out


def lead_values(ctx: GroundingContext, column: str, leads: list[str] | None = None) -> dict[str, object]:
    """``{lead: lead_value}`` over ``leads`` (default: every measured lead), skipping gated leads and nulls."""
    from pipeline.record import LEADS

    measured = set(ctx.measured_leads)
    out: dict[str, object] = {}
    for lead in leads or LEADS:
        if lead not in measured:
            continue
        v = ctx.lead_value(lead, column)
        if v is not None:
            out[lead] = v
    return out


def read_features(features_dir, record_ids: list[str] | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(records, beats) from a features folder: ``records.parquet`` / ``beats.parquet`` or shard folders
    ``records/part-*.parquet`` / ``beats/part-*.parquet`` (what ``features.run`` writes). A missing or damaged
    file is a ``TableError`` naming it (``pipeline.inputs``), never a polars traceback. With ``record_ids`` only
    their rows are read (one chunk's contexts never load the whole run's beats)."""
    from pipeline.inputs import read_features_table

    return (read_features_table(features_dir, "records", record_ids),
            read_features_table(features_dir, "beats", record_ids))


def build_context(meta, record_row: dict, beats: pl.DataFrame, kb=None, image_path: str | None = None,
                  machine_measurements: dict | None = None) -> GroundingContext:
    """A ``GroundingContext`` from a record's ``RecordMeta``, its RECORDS_SCHEMA row and its beats rows.

    The report's statements are normalised through the knowledge base (``kb``; default: the packaged one).
    ``extra['duration_ms']`` is the record's length in ms (the validator grounds "10 s tracing" with it).
    """
    from pipeline.knowledge import load_knowledge

    kb = kb or load_knowledge()
    norm = kb.normalise(list(meta.statements), meta.report or "")
    if machine_measurements is None and meta.reference is not None and meta.reference.kind == "mimic_machine":
        machine_measurements = meta.reference.model_dump(exclude={"waves", "extra"}, exclude_none=True)
    return GroundingContext(
        record_id=meta.record_id,
        source=meta.source,
        ecg_path=meta.provenance.path,
        report=meta.report or "",
        statement_ids=list(norm.statement_ids),
        unmapped_statements=list(norm.unmapped),
        record=dict(record_row),
        beats=beats,
        image_path=image_path,
        machine_measurements=machine_measurements,
        extra={"duration_ms": 1000.0 * meta.n_samples / meta.fs_hz, "report_dropped": list(norm.dropped),
               "age_years": meta.demographics.age_years, "sex": meta.demographics.sex},
        amplitudes_calibrated=meta.calibration.amplitudes_calibrated,
        calibration_flags=list(meta.calibration.flags),
        report_p_waves=report_p_waves(kb, norm.statement_ids),
        report_paced=report_paced(kb, norm.statement_ids),
        report_flutter=report_flutter(kb, norm.statement_ids),
    )


def report_p_waves(kb, statement_ids) -> bool | None:
    """What the statements ``statement_ids`` (with their implications) say of P waves through their knowledge
    criteria on ``p_waves_present``: True / False, or None where they say nothing or disagree."""
    said = {crit.threshold for sid in kb.closure(list(statement_ids)) for crit in kb.entries[sid].criteria
            if crit.feature == "p_waves_present" and crit.comparison == "==" and isinstance(crit.threshold, bool)}
    return next(iter(said)) if len(said) == 1 else None


def report_paced(kb, statement_ids) -> bool:
    """Whether the statements ``statement_ids`` (with their implications) name a pacemaker."""
    return bool(REPORT_PACED_IDS.intersection(kb.closure(list(statement_ids))))


def report_flutter(kb, statement_ids) -> bool:
    """Whether the statements ``statement_ids`` (with their implications) name atrial flutter."""
    return bool(REPORT_FLUTTER_IDS.intersection(kb.closure(list(statement_ids))))


def iter_contexts(features_dir, source: str | None = None, root=None, *, manifest=None, kb=None,
                  images_dir=None, record_ids: list[str] | None = None, **source_options):
    """Yield a ``GroundingContext`` for every measured record of ``features_dir`` (records table order).

    Record metadata (report, statements) comes from ``manifest`` (an ingest ``manifest.parquet`` path or
    frame, its ``meta_json`` column) when given, else from ``open_source(source, root).read(id).meta``.
    Images: ``images_dir/<record_id>.png`` when it exists (the path is kept relative to ``images_dir``'s
    parent). Records whose metadata cannot be read raise ``RecordError`` from the source.
    """
    from pathlib import Path

    from pipeline.record import RecordMeta

    records, beats = read_features(features_dir, record_ids)
    metas: dict[str, RecordMeta] = {}
    if manifest is not None:
        from pipeline.inputs import read_parquet_checked

        cols = ("record_id", "meta_json")
        man = manifest.select(*cols) if isinstance(manifest, pl.DataFrame) else \
            read_parquet_checked(manifest, "manifest", cols, select=cols, record_ids=record_ids)
        if record_ids is not None and isinstance(manifest, pl.DataFrame):
            man = man.filter(pl.col("record_id").is_in(list(record_ids)))
        for rid, mj in man.iter_rows():
            metas[rid] = RecordMeta.model_validate_json(mj)
    src = None
    beats_by = {k[0] if isinstance(k, tuple) else k: v
                for k, v in beats.partition_by("record_id", as_dict=True).items()} if beats.height else {}
    images = Path(images_dir) if images_dir else None
    for row in records.iter_rows(named=True):
        rid = row["record_id"]
        meta = metas.get(rid)
        if meta is None:
            if source is None:
                continue
            if src is None:
                from pipeline.sources import open_source

                src = open_source(source, root, **source_options)
            meta = src.read(rid).meta
        b = beats_by.get(rid)
        if b is None:
            b = beats.clear()
        image = None
        if images is not None and (images / f"{rid}.png").exists():
            image = str((images / f"{rid}.png").relative_to(images.parent))
        yield build_context(meta, row, b, kb=kb, image_path=image)


def load_contexts(run_dir, record_ids: list[str] | None = None, *, features=None, manifest=None,
                  images=None) -> dict[str, GroundingContext]:
    """Contexts of one run folder (``manifest.parquet`` + ``features/`` [+ ``images/``]), keyed by record id;
    what ``pipeline.generate`` asks for when the rules writer needs contexts. ``features``, ``manifest`` and
    ``images`` override the run folder's own (prompts that live outside a run folder)."""
    from pathlib import Path

    import logging

    run = Path(run_dir) if run_dir is not None else None
    features = Path(features) if features is not None else (run / "features" if run is not None else None)
    manifest = Path(manifest) if manifest is not None else (run / "manifest.parquet" if run is not None else None)
    images = Path(images) if images is not None else (run / "images" if run is not None else None)
    if manifest is None or features is None or not manifest.is_file() or not features.is_dir():
        # e.g. prompts built straight from a source: no contexts here, the caller decides what that means
        logging.getLogger(__name__).warning("no manifest %s + features %s: no contexts", manifest, features)
        return {}
    return {c.record_id: c for c in iter_contexts(features, manifest=manifest,
                                                  images_dir=images if images is not None and images.is_dir()
                                                  else None, record_ids=record_ids)}


def measure_context(record, kb=None, image_path: str | None = None) -> GroundingContext:
    """Measure a canonical ``ECGRecord`` with ``features.measure_record`` and build its context (tests,
    benchmarks and one-off use; batch runs read the features tables instead)."""
    from features import measure_record

    m = measure_record(record)
    return build_context(record.meta, m.record_row, m.beats, kb=kb, image_path=image_path)
