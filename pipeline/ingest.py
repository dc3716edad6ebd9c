"""The ``ingest`` stage: every record of a source -> one manifest row (metadata, never signals) or an error row.

Outputs (``out_dir``):
- ``manifest.parquet`` - one row per good record (``MANIFEST_SCHEMA``); ``meta_json`` holds the full
  ``RecordMeta`` so later stages can rebuild it with ``RecordMeta.model_validate_json``;
- ``errors/ingest.parquet`` - ``features.schema.ERRORS_SCHEMA``: severity 'error' for records dropped,
  'warning' for records kept with a problem (flat / saturated lead, ignored non-ECG channel).

Work is done in chunks of ids ("shards"): each shard is written to ``out_dir/.ingest_shards/`` atomically
and skipped when already there (a killed run resumes), then the shards are streamed into the two tables
with bounded memory. The Prefect flow (``flows/ingest.py``) maps ``ingest_shard`` over the same chunks.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from features.schema import ERRORS_SCHEMA
from pipeline import progress
from pipeline.batch import DEFAULT_CHUNK_SIZE, ErrorRow, chunks, error_row, errors_frame, write_parquet_atomic
from pipeline.record import REASON_CODES, ECGRecord, RecordError
from pipeline.sources import Source, open_source

STAGE = "ingest"
SHARD_DIR = ".ingest_shards"
# Warnings whose "code:detail" detail is not a lead or channel name (it goes into the message instead).
_DETAIL_WARNINGS = frozenset({"implausible_reference"})

_STATEMENT = pl.Struct({"text": pl.String, "code": pl.String, "system": pl.String, "likelihood": pl.Float64})

MANIFEST_SCHEMA: dict[str, pl.DataType] = {
    "record_id": pl.String,
    "source": pl.String,
    "source_root": pl.String,          # absolute data root: open_source(source, source_root).read(record_id)
    "patient_id": pl.String,
    "age_years": pl.Float64,
    "sex": pl.String,                  # male | female | null
    "height_cm": pl.Float64,
    "weight_kg": pl.Float64,
    "recorded_at": pl.String,          # ISO time when known
    "report": pl.String,
    "report_dropped": pl.List(pl.String),
    "statements": pl.List(_STATEMENT),
    "statement_codes": pl.List(pl.String),
    "reference": pl.String,            # ReferenceMeasurements JSON or null
    "ref_kind": pl.String,             # mimic_machine | ludb_expert | synthetic_truth | null
    "path": pl.String,                 # relative to the root, no extension (GEM's "ecg")
    "files": pl.List(pl.String),
    "sha256": pl.String,
    "original_fs_hz": pl.Float64,
    "original_leads": pl.List(pl.String),
    "original_units": pl.List(pl.String),
    "original_n_samples": pl.Int64,
    "window_start_s": pl.Float64,
    "derived_leads": pl.List(pl.String),
    "fs_hz": pl.Int32,
    "n_samples": pl.Int32,
    "warnings": pl.List(pl.String),    # "code:lead" strings, code from REASON_CODES
    "amplitudes_calibrated": pl.Boolean,  # RecordMeta.calibration: False -> no amplitude value is citable
    "calibration_flags": pl.List(pl.String),  # its reason codes (amplitude_normalised, bad_gain, ...)
    "meta_json": pl.String,
}


class IngestSummary(BaseModel):
    """What one ingest run did and where its outputs are."""

    source: str
    root: str
    out_dir: str
    n_records: int = 0
    n_ok: int = 0
    n_failed: int = 0
    n_warnings: int = 0
    failed_by_code: dict[str, int] = Field(default_factory=dict)
    warnings_by_code: dict[str, int] = Field(default_factory=dict)
    manifest_path: str = ""
    errors_path: str = ""
    n_shards: int = 0
    n_shards_reused: int = 0
    seconds: float = 0.0


class ShardResult(BaseModel):
    """One chunk of ids done: where its two tables are and how many records went which way."""

    index: int
    manifest_path: str
    errors_path: str
    n_ok: int
    n_failed: int
    reused: bool = False


def manifest_row(record: ECGRecord, source_root: str | Path) -> dict:
    """The manifest row of a canonical record (everything but the samples)."""
    m = record.meta
    pv = m.provenance
    return {
        "record_id": m.record_id,
        "source": m.source,
        "source_root": str(Path(source_root).resolve()),
        "patient_id": m.patient_id,
        "age_years": m.demographics.age_years,
        "sex": m.demographics.sex,
        "height_cm": m.demographics.height_cm,
        "weight_kg": m.demographics.weight_kg,
        "recorded_at": m.recorded_at,
        "report": m.report,
        "report_dropped": list(m.report_dropped),
        "statements": [s.model_dump() for s in m.statements],
        "statement_codes": [s.code for s in m.statements if s.code],
        "reference": m.reference.model_dump_json() if m.reference else None,
        "ref_kind": m.reference.kind if m.reference else None,
        "path": pv.path,
        "files": list(pv.files),
        "sha256": pv.sha256,
        "original_fs_hz": pv.original_fs_hz,
        "original_leads": list(pv.original_lead_names),
        "original_units": list(pv.original_units),
        "original_n_samples": pv.original_n_samples,
        "window_start_s": pv.window_start_s,
        "derived_leads": list(pv.derived_leads),
        "fs_hz": m.fs_hz,
        "n_samples": m.n_samples,
        "warnings": list(pv.warnings),
        "amplitudes_calibrated": m.calibration.amplitudes_calibrated,
        "calibration_flags": list(m.calibration.flags),
        "meta_json": m.model_dump_json(),
    }


def warning_rows(record: ECGRecord) -> list[ErrorRow]:
    """One 'warning' error row per non-fatal problem in the record's provenance ('flat_lead:V3' ...) and per
    calibration flag (``RecordMeta.calibration``: amplitude_normalised, bad_gain, ...)."""
    rows = []
    for w in record.meta.provenance.warnings:
        code, _, lead = w.partition(":")
        what = REASON_CODES.get(code, code)
        if code in _DETAIL_WARNINGS:  # 'implausible_reference:qrs_ms=-400': the part after ':' is no lead
            rows.append(ErrorRow(record.record_id, STAGE, "warning", code, None, f"{lead}: {what}"))
            continue
        rows.append(ErrorRow(record.record_id, STAGE, "warning", code, lead or None, f"{lead}: {what}" if lead else what))
    # calibration findings (pipeline.sources.calibration): one warning per flag, its detail as the reason
    cal = record.meta.calibration
    for i, code in enumerate(cal.flags):
        detail = cal.details[i] if i < len(cal.details) else REASON_CODES.get(code, code)
        rows.append(ErrorRow(record.record_id, STAGE, "warning", code, None, detail))
    return rows


def ingest_records(source: Source, ids: Sequence[str]) -> tuple[list[dict], list[ErrorRow]]:
    """Read ``ids`` from ``source``: (manifest rows of good records, error + warning rows). Never raises
    for a bad record; anything that is not a ``RecordError`` is recorded as ``internal_error``."""
    rows: list[dict] = []
    errors: list[ErrorRow] = []
    for rid in ids:
        try:
            record = source.read(rid)
            if record.record_id != rid:
                raise RecordError("bad_metadata", f"source returned record {record.record_id!r} for id {rid!r}", rid)
            row = manifest_row(record, source.root)
        except Exception as exc:  # one record's failure must never stop the batch
            errors.append(error_row(rid, STAGE, exc))
            continue
        finally:
            progress.tick()
        rows.append(row)
        errors += warning_rows(record)
    return rows, errors


@functools.lru_cache(maxsize=4)
def _open_cached(source_name: str, root: str, options_json: str, cache_token: str) -> Source:
    """One open source per (name, root, options, flow run) and process, so the flow's chunk tasks (threads of
    one worker) parse the source's index CSVs once, not once per chunk (MIMIC's are ~800k rows). The token
    keeps a later run in the same process from seeing a stale index."""
    return open_source(source_name, root, **json.loads(options_json))


def _shard_name(index: int, ids: Sequence[str]) -> str:
    """Shard file stem: its position plus a digest of its ids, so a changed id list never reuses a stale shard."""
    digest = hashlib.sha1("\n".join(ids).encode()).hexdigest()[:12]
    return f"shard-{index:05d}-{digest}"


def ingest_shard(
    source_name: str, root: str | Path, ids: Sequence[str], out_dir: str | Path, index: int,
    options: dict | None = None, source: Source | None = None, cache_token: str = "",
) -> ShardResult:
    """Ingest one chunk of ids into ``out_dir/.ingest_shards/<shard>.{manifest,errors}.parquet``.

    Skips the work when both files exist (idempotent). ``source`` may be passed to reuse an open source
    (its cached CSV tables); otherwise the source is opened here (what a Prefect task does), once per
    ``cache_token`` (one flow run) and process, so sibling chunk tasks share its parsed index tables.
    """
    shard_dir = Path(out_dir) / SHARD_DIR
    stem = _shard_name(index, ids)
    man_path, err_path = shard_dir / f"{stem}.manifest.parquet", shard_dir / f"{stem}.errors.parquet"
    from pipeline.inputs import parquet_readable

    if man_path.is_file() and err_path.is_file() and parquet_readable(man_path) and parquet_readable(err_path):
        man = pq.read_metadata(man_path).num_rows
        errs = pl.read_parquet(err_path, columns=["severity"])
        progress.tick(len(ids))
        return ShardResult(index=index, manifest_path=str(man_path), errors_path=str(err_path), n_ok=man,
                           n_failed=int((errs["severity"] == "error").sum()), reused=True)
    src = source or _open_cached(source_name, str(root), json.dumps(options or {}, sort_keys=True), cache_token)
    rows, errors = ingest_records(src, ids)
    write_parquet_atomic(pl.DataFrame(rows, schema=MANIFEST_SCHEMA), man_path)
    write_parquet_atomic(errors_frame(errors), err_path)
    return ShardResult(index=index, manifest_path=str(man_path), errors_path=str(err_path), n_ok=len(rows),
                       n_failed=sum(e.severity == "error" for e in errors))


def _stream_concat(paths: list[str], schema: dict[str, pl.DataType], dest: Path) -> None:
    """Concatenate Parquet files into ``dest`` one file at a time (bounded memory), atomically."""
    from pipeline.batch import ParquetStream

    out = ParquetStream(dest, schema)
    try:
        for p in paths:
            out.write_file(p)  # same column types in every shard
    except BaseException:
        out.abort()
        raise
    out.close()


def merge_shards(source_name: str, root: str | Path, out_dir: str | Path, shards: list[ShardResult],
                 n_records: int, started: float | None = None, keep_shards: bool = False) -> IngestSummary:
    """Write ``manifest.parquet`` and ``errors/ingest.parquet`` from the shards; summarise; drop the shards
    (``keep_shards``: keep them, so a resumed chain reuses its finished chunks)."""
    out = Path(out_dir)
    shards = sorted(shards, key=lambda s: s.index)
    manifest_path, errors_path = out / "manifest.parquet", out / "errors" / f"{STAGE}.parquet"
    _stream_concat([s.manifest_path for s in shards], MANIFEST_SCHEMA, manifest_path)
    _stream_concat([s.errors_path for s in shards], ERRORS_SCHEMA, errors_path)
    errs = pl.read_parquet(errors_path, columns=["severity", "code"])
    failed = Counter(errs.filter(pl.col("severity") == "error")["code"].to_list())
    warned = Counter(errs.filter(pl.col("severity") == "warning")["code"].to_list())
    summary = IngestSummary(
        source=source_name, root=str(root), out_dir=str(out), n_records=n_records,
        n_ok=sum(s.n_ok for s in shards), n_failed=sum(s.n_failed for s in shards),
        n_warnings=sum(warned.values()), failed_by_code=dict(sorted(failed.items())),
        warnings_by_code=dict(sorted(warned.items())), manifest_path=str(manifest_path), errors_path=str(errors_path),
        n_shards=len(shards), n_shards_reused=sum(s.reused for s in shards),
        seconds=round(time.perf_counter() - started, 3) if started else 0.0,
    )
    if not keep_shards:
        shutil.rmtree(out / SHARD_DIR, ignore_errors=True)
    return summary


def list_ids(source_name: str, root: str | Path, **options) -> list[str]:
    """All record ids of the source, in its stable order."""
    return list(open_source(source_name, root, **options).ids())


def ingest(source_name: str, root: str | Path, out_dir: str | Path, chunk_size: int = DEFAULT_CHUNK_SIZE,
           source: Source | None = None, **options) -> IngestSummary:
    """Ingest every record of ``source_name`` at ``root`` into ``out_dir`` (see the module docstring).

    ``options`` go to the source (e.g. ``window_s=10.0``, ``window_start_s=0.0``; ``n_records`` for synthetic).
    Raises ``ValueError`` for an unknown source and ``RecordError`` when the source itself cannot be opened
    (e.g. its index CSV is missing); bad records never raise.
    """
    started = time.perf_counter()
    source = source or open_source(source_name, root, **options)  # an open source: its tables parsed once
    ids = list(source.ids())
    with progress.track(STAGE, len(ids)):
        shards = [ingest_shard(source_name, root, chunk, out_dir, i, options, source=source)
                  for i, chunk in enumerate(chunks(ids, chunk_size))]
    return merge_shards(source_name, root, out_dir, shards, len(ids), started)


def format_summary(s: IngestSummary) -> str:
    """Human-readable summary printed by the CLI and the flow."""
    lines = [f"ingest {s.source} ({s.root}): {s.n_ok} of {s.n_records} records ok, {s.n_failed} failed, "
             f"{s.n_warnings} warnings, {s.n_shards} chunks ({s.n_shards_reused} reused), {s.seconds:.1f} s"]
    for code, n in s.failed_by_code.items():
        lines.append(f"  failed  {code:<18} {n}")
    for code, n in s.warnings_by_code.items():
        lines.append(f"  warning {code:<18} {n}")
    lines.append(f"manifest: {s.manifest_path}")
    lines.append(f"errors:   {s.errors_path}")
    return "\n".join(lines)


def register(subparsers) -> None:
    """Add ``ecg-grounding ingest``."""
    from pipeline.cli import add_source_args
    from pipeline.preflight import positive_int

    p = subparsers.add_parser(
        "ingest",
        help="read a source's records into the canonical record: manifest + errors tables",
        description="Read every record of a source into OUT/manifest.parquet (metadata, no signals) and "
                    "OUT/errors/ingest.parquet (one row per failed record or warning), in chunks; finished "
                    "chunks are kept, so a killed run resumes.\n\n"
                    "example:\n  ecg-grounding ingest --source ptbxl --root ../shared/data/ptbxl --out outputs/ptbxl",
    )
    add_source_args(p)
    p.add_argument("--out", required=True, help="run folder: manifest.parquet and errors/ingest.parquet go here")
    p.add_argument("--chunk-size", type=positive_int, default=DEFAULT_CHUNK_SIZE,
                   help="records per chunk (default %(default)s)")
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    from pipeline.batch import collect_failures
    from pipeline.cli import finish, source_options_from
    from pipeline.preflight import check_out, open_checked

    options = source_options_from(args)
    check_out(args.out)
    src, _ = open_checked(args.source, args.root, **options)  # a table unusable as a whole: one line, exit 2
    summary = ingest(args.source, args.root, args.out, chunk_size=args.chunk_size, source=src, **options)
    failures = collect_failures([summary.errors_path])
    return finish(args, summary.model_dump(), format_summary(summary), failures)
