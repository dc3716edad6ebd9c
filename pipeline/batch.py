"""Batch plumbing shared by every stage: chunking ids, recording per-record errors, atomic Parquet writes."""
from __future__ import annotations

import os
import traceback
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl

from features.schema import ERRORS_SCHEMA
from pipeline.record import RecordError


@dataclass(frozen=True)
class ErrorRow:
    """One row of a stage's errors table. ``severity='error'`` means the record was dropped by that stage."""

    record_id: str | None
    stage: str
    severity: str  # "error" | "warning"
    code: str
    lead: str | None
    message: str


def error_row(record_id: str | None, stage: str, exc: BaseException, severity: str = "error") -> ErrorRow:
    """Turn any exception raised while handling one record into an ``ErrorRow``.

    A ``RecordError`` keeps its reason code; anything else is a bug and is recorded as ``internal_error``
    with the exception type and its last frame, so the batch goes on and the bug is visible.
    """
    if isinstance(exc, RecordError):
        return ErrorRow(exc.record_id or record_id, stage, severity, exc.code, exc.lead, exc.message)
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
    return ErrorRow(record_id, stage, severity, "internal_error", None, f"{type(exc).__name__}: {exc}{where}")


def errors_frame(rows: Iterable[ErrorRow]) -> pl.DataFrame:
    return pl.DataFrame([asdict(r) for r in rows], schema=ERRORS_SCHEMA)


def chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    """Consecutive slices of ``items`` of at most ``size`` elements."""
    if size < 1:
        raise ValueError("chunk size must be >= 1")
    for start in range(0, len(items), size):
        yield items[start:start + size]


def write_parquet_atomic(df: pl.DataFrame, path: str | Path) -> Path:
    """Write ``df`` to ``path`` via a temporary file and a rename, so a killed run never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    df.write_parquet(tmp)
    os.replace(tmp, path)
    return path


class ParquetStream:
    """Appends frames to one Parquet file of a fixed schema (a temporary name, renamed on ``close``), so a
    table of a whole run is written one chunk at a time and a killed run never leaves half a file."""

    def __init__(self, path: str | Path, schema: dict[str, pl.DataType]):
        import pyarrow.parquet as pq

        self.path, self.schema = Path(path), schema
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.arrow = pl.DataFrame(schema=schema).to_arrow().schema
        self.writer = pq.ParquetWriter(self.tmp, self.arrow)
        self.rows = 0

    def write(self, df: pl.DataFrame) -> None:
        """Append ``df`` (its columns cast to the schema; a missing column is written as nulls)."""
        if df.height:
            df = df.select([pl.col(c).cast(t) if c in df.columns else pl.lit(None, t).alias(c)
                            for c, t in self.schema.items()])
            self.writer.write_table(df.to_arrow().cast(self.arrow))
            self.rows += df.height

    def close(self) -> Path:
        self.writer.close()
        os.replace(self.tmp, self.path)
        return self.path
