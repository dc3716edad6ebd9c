"""Batch plumbing shared by every stage: chunking ids, recording per-record errors, atomic Parquet writes."""
from __future__ import annotations

import os
import threading
import traceback
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
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


def tmp_sibling(path: Path) -> Path:
    """Where an atomic write of ``path`` writes first: a hidden sibling named for this process and thread (chunk
    tasks run in threads of one process under the thread task runner, and two of them writing the same folder's
    stamp with one pid-named file replaced each other's: FileNotFoundError)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def write_parquet_atomic(df: pl.DataFrame, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write ``df`` to ``path`` via a temporary file and a rename, so a killed run never leaves half a file;
    ``metadata``: key-value pairs for the file's Parquet metadata (``pl.read_parquet_metadata``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_sibling(path)
    df.write_parquet(tmp, metadata=metadata)
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------------------- failure summary
DEFAULT_CHUNK_SIZE = 200  # records per chunk in every stage and in `run` (one default: issue 18)
TOP_CODES = 5
STAGE_ORDER = ("ingest", "features", "render", "prompts", "generate", "validate")


@dataclass
class Failures:
    """The records a stage (or a whole run) dropped, by reason code, and the errors tables that explain them."""

    n_failed: int = 0                                   # distinct records with at least one error row
    n_rows: int = 0                                     # error rows (a duplicated id fails once per copy)
    by_code: list[tuple[str, int]] = field(default_factory=list)  # (code, distinct records), most frequent first
    stages: dict[str, list[str]] = field(default_factory=dict)    # code -> stages that reported it, in chain order
    tables: list[str] = field(default_factory=list)               # errors tables holding error rows

    def to_dict(self) -> dict:
        return {"n_failed": self.n_failed, "n_error_rows": self.n_rows, "by_code": dict(self.by_code),
                "stages": self.stages,
                "errors_tables": self.tables}

    def format(self, top: int = TOP_CODES) -> str:
        """'N records failed' with the top reason codes (count, stages) and where the errors tables are."""
        if not self.n_failed:
            return "0 records failed"
        noun = "record" if self.n_failed == 1 else "records"
        rows = f" ({self.n_rows} error rows)" if self.n_rows > self.n_failed else ""
        lines = [f"{self.n_failed} {noun} failed{rows}, by reason code:"]
        width = max(len(c) for c, _ in self.by_code[:top])
        for code, n in self.by_code[:top]:
            stages = ", ".join(self.stages.get(code, []))
            lines.append(f"  {code:<{width}}  {n:>6}  {stages}".rstrip())
        rest = self.by_code[top:]
        if rest:
            lines.append(f"  ... {len(rest)} more code(s): {', '.join(c for c, _ in rest)}")
        label = "errors table" if len(self.tables) == 1 else "errors tables"
        lines.append(f"{label}: {', '.join(self.tables)}")
        return "\n".join(lines)


def collect_failures(tables: Iterable[str | Path | tuple[str, pl.DataFrame]]) -> Failures:
    """Count the failed records of errors tables (``ERRORS_SCHEMA`` Parquet paths, or (label, frame) pairs with
    ``record_id``, ``code`` and optionally ``stage`` / ``severity``): distinct records per reason code, so a
    record that failed in ingest and again in features counts once. Missing tables are skipped."""
    frames: list[pl.DataFrame] = []
    labels: list[str] = []
    for t in tables:
        if isinstance(t, tuple):
            label, df = t
        else:
            label, path = str(t), Path(t)
            if not path.is_file():
                continue
            df = pl.read_parquet(path)
        if "severity" in df.columns:
            df = df.filter(pl.col("severity") == "error")
        if df.height == 0:
            continue
        if "stage" not in df.columns:
            df = df.with_columns(pl.lit(None, pl.String).alias("stage"))
        # a row without a record id (a table row that has none) is its own failed "record"
        df = df.with_row_index("_row").with_columns(
            pl.coalesce(pl.col("record_id"), pl.format("{}#{}", pl.lit(label), pl.col("_row"))).alias("_who"))
        frames.append(df.select(pl.col("_who"), pl.col("code").fill_null("unknown"), pl.col("stage").cast(pl.String)))
        labels.append(label)
    if not frames:
        return Failures()
    rows = pl.concat(frames)
    per_code = (rows.group_by("code").agg(pl.col("_who").n_unique().alias("n"),
                                         pl.col("stage").drop_nulls().unique().sort().alias("stages"))
                .sort(["n", "code"], descending=[True, False]))
    rank = {s: i for i, s in enumerate(STAGE_ORDER)}
    stages = {code: sorted(st, key=lambda s: (rank.get(s, len(rank)), s))
              for code, st in zip(per_code["code"].to_list(), per_code["stages"].to_list())}
    n_who = rows["_who"].n_unique()
    # error rows are told apart from records only within one table (across stages one record has many rows)
    return Failures(n_failed=n_who, n_rows=rows.height if len(labels) == 1 else n_who,
                    by_code=list(zip(per_code["code"].to_list(), per_code["n"].to_list())),
                    stages=stages, tables=labels)


class ParquetStream:
    """Appends frames to one Parquet file of a fixed schema (a temporary name, renamed on ``close``), so a
    table of a whole run is written one chunk at a time and a killed run never leaves half a file."""

    def __init__(self, path: str | Path, schema: dict[str, pl.DataType]):
        import pyarrow.parquet as pq

        self.path, self.schema = Path(path), schema
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = tmp_sibling(self.path)
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

    def write_file(self, path: str | Path) -> None:
        """Append the rows of the Parquet file ``path`` (columns by name, cast to the schema; a missing one as
        nulls). Read by pyarrow straight into the writer: the same rows through a polars frame leave
        freed-but-kept allocator memory behind on every part, so a merge of many parts grew with the run
        (measured: +4 MB per 1,000 manifest rows in the flow process)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if not table.num_rows:
            return
        names = set(table.column_names)
        columns = [table[f.name].cast(f.type) if f.name in names else pa.nulls(table.num_rows, f.type)
                   for f in self.arrow]
        self.writer.write_table(pa.Table.from_arrays(columns, schema=self.arrow))
        self.rows += table.num_rows

    def close(self) -> Path:
        self.writer.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop what was written (the destination keeps its earlier content, if any)."""
        try:
            self.writer.close()
        finally:
            self.tmp.unlink(missing_ok=True)
