"""``run_features``: a source -> sharded Parquet tables, streaming in chunks, idempotent.

Layout under ``out_dir`` (shard folders, one shard per chunk of record ids in the source's stable order):
    beats/part-00000.parquet    BEATS_SCHEMA rows of the chunk's records
    records/part-00000.parquet  RECORDS_SCHEMA rows
    errors/part-00000.parquet   ERRORS_SCHEMA rows (failed records: severity error; gated leads: warning)
    errors.parquet              all error shards concatenated (rewritten at the end of every run)
A shard is finished when its three files exist (written atomically, records last), its records and beats hold
every column of today's schemas, and its records file names today's measurement (``measurement_digest``: the
measuring code and its learned parts, in the file's Parquet metadata); finished shards are skipped on a re-run, so
a killed run resumes where it stopped. A shard another measurement wrote is measured again: a run resumed across
an upgrade would otherwise mix values of the old rules with today's (a column it did not have yet would even say
what the measurement never looked at). Memory is bounded by one chunk.
"""
from __future__ import annotations

import functools
import glob
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from features.lead_edges import P_ONSET_FIT_ENV, p_onset_fit
from features.measure import measure_record
from features.schema import BEATS_SCHEMA, ERRORS_SCHEMA, RECORDS_SCHEMA
from pipeline import progress
from pipeline.batch import chunks, error_row, errors_frame, write_parquet_atomic
from pipeline.sources import open_source

STAGE = "features"
MEASURED_BY_KEY = "ecg_grounding.measured_by"  # Parquet metadata of a records shard: the measurement that wrote it


@functools.lru_cache(maxsize=1)
def _code_digest() -> str:
    """SHA-256 over the measuring package's source and data files (``features/*.py``, ``*.json``), by name."""
    h = hashlib.sha256()
    pkg = Path(__file__).parent
    for path in sorted(list(pkg.glob("*.py")) + list(pkg.glob("*.json"))):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def measurement_digest() -> str:
    """What a records shard is stamped with: the measuring code and learned parts, and the P-onset fit the
    environment chooses (16 hex digits). Any change to them, comments included, measures finished shards again
    (cheap: tens of records a second); downstream, prompts whose values did not change keep their stored answers."""
    fit = os.environ.get(P_ONSET_FIT_ENV) or "all"  # as features.lead_edges.p_onset_fit reads it
    return hashlib.sha256(f"{_code_digest()}|{fit}".encode()).hexdigest()[:16]


def shard_paths(out_dir, index: int) -> list[Path]:
    """The beats, errors and records files of shard ``index`` under ``out_dir`` (records last: it marks it finished)."""
    name = f"part-{index:05d}.parquet"
    return [Path(out_dir) / t / name for t in ("beats", "errors", "records")]


def shard_finished(out_dir, index: int) -> bool:
    """Whether shard ``index`` under ``out_dir`` is finished by today's measurement (module doc)."""
    from pipeline.inputs import parquet_readable

    paths = shard_paths(out_dir, index)
    if not (all(p.exists() for p in paths) and all(parquet_readable(p) for p in paths)):
        return False  # damaged since (truncated copy, full disk)
    if not (_has_columns(paths[0], BEATS_SCHEMA) and _has_columns(paths[2], RECORDS_SCHEMA)):
        return False
    return pl.read_parquet_metadata(paths[2]).get(MEASURED_BY_KEY) == measurement_digest()


@dataclass
class FeaturesSummary:
    n_records: int = 0       # ids the source listed
    n_measured: int = 0      # records with a records row (this run + skipped shards)
    n_failed: int = 0        # records dropped with an error row
    n_warnings: int = 0      # gated leads
    n_shards: int = 0
    n_shards_skipped: int = 0
    out_dir: str = ""


def measure_chunk(source, ids) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Measure ``ids`` of an open source; a failing record becomes an error row, never an exception.

    A bad setting (``ConfigError``: the P-onset fit chosen in the environment) is the run's, not a record's:
    it raises before any record is measured."""
    p_onset_fit()
    beats, recs, errs = [], [], []
    for rid in ids:
        try:
            m = measure_record(source.read(rid))
        except Exception as exc:  # noqa: BLE001 - any failure is this record's, recorded, batch goes on
            errs.append(error_row(rid, STAGE, exc))
            continue
        finally:
            progress.tick()
        beats.append(m.beats)
        recs.append(m.record_row)
        errs.extend(m.warnings)
    b = pl.concat(beats) if beats else pl.DataFrame(schema=BEATS_SCHEMA)
    r = pl.DataFrame(recs, schema=RECORDS_SCHEMA) if recs else pl.DataFrame(schema=RECORDS_SCHEMA)
    return b, r, errors_frame(errs)


def measure_shard(source, ids, out_dir, index: int) -> bool:
    """Measure one chunk of ids of an open source into shard ``index`` under ``out_dir``.

    Returns False when the shard was already finished (nothing done). This is what a flow task maps over.
    """
    from pipeline.inputs import check_stamp, stamp_folder

    out = Path(out_dir)
    check_stamp(out, source)  # never skip shards that were measured from other data (run_mismatch)
    paths = shard_paths(out, index)
    if shard_finished(out, index):
        progress.tick(len(ids))
        return False  # a shard damaged since, or measured by other code, is measured again
    b, r, e = measure_chunk(source, ids)
    stamp_folder(out, source)
    write_parquet_atomic(b, paths[0])
    write_parquet_atomic(e, paths[1])
    # last: its presence marks the shard finished, its metadata the measurement that did
    write_parquet_atomic(r, paths[2], metadata={MEASURED_BY_KEY: measurement_digest()})
    return True


def _has_columns(path: Path, schema: dict) -> bool:
    """Whether the Parquet file ``path`` holds every column of ``schema`` (a shard written before a column was added
    lacks it: the resumed run of LUDB 35 read its missing ``flutter_waves`` as "no flutter waves found")."""
    return set(schema) <= set(pl.read_parquet_schema(path))


def finish_features(out_dir, n_records: int, n_shards: int, n_shards_skipped: int) -> FeaturesSummary:
    """Gather the shards' errors into ``out_dir/errors.parquet`` and count what was measured."""
    out = Path(out_dir)
    summary = FeaturesSummary(n_records=n_records, out_dir=str(out), n_shards=n_shards,
                              n_shards_skipped=n_shards_skipped)
    from pipeline.batch import ParquetStream

    # one shard's errors in memory at a time (a long run's lead warnings add up), counted as they stream
    stream = ParquetStream(out / "errors.parquet", ERRORS_SCHEMA)
    for p in sorted(glob.glob(str(out / "errors" / "part-*.parquet"))):
        errs = pl.read_parquet(p)
        stream.write(errs)
        summary.n_failed += errs.filter(pl.col("severity") == "error").height
        summary.n_warnings += errs.filter(pl.col("severity") == "warning").height
    stream.close()
    recs = sorted(glob.glob(str(out / "records" / "part-*.parquet")))
    summary.n_measured = sum(pl.scan_parquet(p).select(pl.len()).collect().item() for p in recs)
    return summary


def run_features(source: str, root, out_dir, chunk_size: int = 200, **source_options) -> FeaturesSummary:
    """Measure every record of ``source`` on ``root`` into shard folders under ``out_dir`` (see module doc)."""
    src = open_source(source, root, **source_options)
    ids = list(src.ids())
    id_chunks = list(chunks(ids, chunk_size))
    from pipeline.inputs import check_stamp

    check_stamp(out_dir, src)  # another run's folder: one line before any bar or record (run_mismatch)
    with progress.track(STAGE, len(ids)):
        skipped = sum(not measure_shard(src, chunk, out_dir, n) for n, chunk in enumerate(id_chunks))
    return finish_features(out_dir, len(ids), len(id_chunks), skipped)


def read_table(out_dir, table: str) -> pl.DataFrame:
    """All shards of ``table`` ('beats' or 'records') under ``out_dir`` as one frame."""
    schema = BEATS_SCHEMA if table == "beats" else RECORDS_SCHEMA
    files = sorted(glob.glob(str(Path(out_dir) / table / "part-*.parquet")))
    return pl.concat([pl.read_parquet(f) for f in files]) if files else pl.DataFrame(schema=schema)
