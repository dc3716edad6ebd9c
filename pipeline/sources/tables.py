"""A source's index table (PTB-XL ``ptbxl_database.csv``, MIMIC ``record_list.csv`` / ``machine_measurements.csv``,
``ludb.csv``, ``synthetic_database.csv``) read so that one bad row never costs the batch, and nothing is
silently wrong.

- A table unusable as a whole (missing file, header not decodable, a required column missing) raises
  ``TableError``: the command stops with one line naming the file and the problem (exit 2).
- A bad row (more or fewer fields than the header, bytes that are not UTF-8, an id that is not an id) costs only
  that record: ``row(record_id)`` raises ``RecordError('bad_metadata')`` naming the line.
- An id on several rows costs every copy: ``ids()`` lists the id once per row and ``row(id)`` raises
  ``RecordError('duplicate_id')`` naming the lines (the last row no longer wins silently).

Rows are kept in one polars frame plus an id -> row-number index (MIMIC's tables have ~800k rows; a dict
per row would cost gigabytes). The row problems are found by one pass of Python's ``csv`` reader over the
text, which sees field counts and record boundaries exactly as RFC 4180 defines them (polars pads short rows
with nulls, so it cannot tell an empty field from a missing one).
"""
from __future__ import annotations

import csv
import io
import re
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from pipeline.record import RecordError, TableError

_SURROGATE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, kept by errors='surrogateescape'
csv.field_size_limit(1 << 30)
# A ragged record spanning more lines than this is an unclosed quote, not a multi-line report (PTB-XL and LUDB
# reports span at most a few lines).
_MAX_RECORD_LINES = 20  # a report may be long; the default 128 kB limit would raise mid-table


def placeholder_id(table: str, line: int) -> str:
    """The id of a row that has none (empty or unreadable id cell): the file and line. It holds ':', which no
    record id may hold, so it can never collide with a real record."""
    return f"{table}:{line}"


@dataclass
class SourceTable:
    """One index table: rows by record id, with every row's problem kept for that record's ``read``."""

    path: Path
    id_column: str
    frame: pl.DataFrame                                   # every row as strings (null: empty cell)
    order: list[str] = field(default_factory=list)        # record ids in table order, one per row (copies too)
    index: dict[str, int | list[int]] = field(default_factory=dict)  # id -> frame row number(s)
    lines: array = field(default_factory=lambda: array("l"))  # frame row number -> its first line in the file
    problems: dict[int, str] = field(default_factory=dict)  # frame row number -> what is wrong with that row

    @property
    def name(self) -> str:
        return self.path.name

    def ids(self) -> list[str]:
        """Every row's record id in table order; an id on k rows is listed k times (each copy fails)."""
        return list(self.order)

    def __contains__(self, record_id: str) -> bool:
        return record_id in self.index

    def row(self, record_id: str, required: bool = True) -> dict[str, str | None] | None:
        """The row of ``record_id`` as a dict of strings, or ``RecordError`` ('duplicate_id', 'bad_metadata');
        None (or ``RecordError('bad_metadata')`` when ``required``) when the table has no row for it."""
        rows = self.index.get(record_id)
        if rows is None:
            if required:
                raise RecordError("bad_metadata", f"no row in {self.name}", record_id)
            return None
        if isinstance(rows, list):
            where = ", ".join(str(self._line(i)) for i in rows[:5]) + (" ..." if len(rows) > 5 else "")
            raise RecordError("duplicate_id", f"{self.id_column} {record_id} is on {len(rows)} rows of {self.name} "
                              f"(lines {where}): no copy is used", record_id)
        i = rows
        if i in self.problems:
            raise RecordError("bad_metadata", f"{self.name} line {self._line(i)}: {self.problems[i]}", record_id)
        return self.frame.row(i, named=True)

    def _line(self, i: int) -> int | str:
        return self.lines[i] if i < len(self.lines) else "?"


def _decode(raw: bytes, path: Path) -> tuple[str, bool]:
    """(text, clean): UTF-8 text of the file (a BOM dropped); bytes that are not UTF-8 survive as surrogates
    so that only their rows fail."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8"), True
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="surrogateescape"), False


def _bad_bytes(fields: Sequence[str]) -> str | None:
    for f in fields:
        m = _SURROGATE.search(f)
        if m:
            byte = ord(m.group()) - 0xDC00
            shown = f[:40].encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            return f"holds byte 0x{byte:02x}, which is not UTF-8 (field '{shown}')"
    return None


def read_source_table(path: str | Path, id_column: str, required: Sequence[str] = (),
                      normalise_id: Callable[[str], str | None] | None = None) -> SourceTable:
    """Read ``path`` (CSV with a header) into a ``SourceTable`` keyed by ``id_column``.

    ``required`` columns (the id column always) must be in the header, or the table is unusable as a whole
    (``TableError``). ``normalise_id`` turns a cell into the record id (PTB-XL: '6000.0' -> '06000'); it
    returns None for a cell that is no id, and that row fails with ``bad_metadata``.
    """
    path = Path(path)
    if not path.is_file():
        raise TableError("missing_input", f"{path} is missing", path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TableError("unusable_table", f"{path} cannot be read: {exc.strerror or exc}", path) from exc
    text, clean = _decode(raw, path)
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise TableError("unusable_table", f"{path} is empty (no header line)", path) from None
    except csv.Error as exc:
        raise TableError("unusable_table", f"{path}: header line unreadable: {exc}", path) from exc
    header = [h.strip() for h in header]
    if not clean and _bad_bytes(header):
        raise TableError("unusable_table", f"{path}: the header line {_bad_bytes(header)}", path)
    missing = [c for c in dict.fromkeys([id_column, *required]) if c not in header]
    if missing:
        shown = ", ".join(header[:12]) + (" ..." if len(header) > 12 else "")
        raise TableError("unusable_table", f"{path} has no {', '.join(missing)} column "
                         f"(its columns: {shown or 'none'})", path)
    dupes = sorted({c for c in header if header.count(c) > 1 and c})
    if dupes:
        raise TableError("unusable_table", f"{path} names column(s) {', '.join(dupes)} twice", path)
    width, id_at = len(header), header.index(id_column)
    has_nul = "\x00" in text

    table = SourceTable(path=path, id_column=id_column, frame=pl.DataFrame())
    # one pass of the csv module; the loop is the cost of reading a table row by row (~2x polars alone,
    # benchmarks/tables.py), so it does per row only what every row needs
    lines, order, index, problems = table.lines, table.order, table.index, table.problems
    check_fields = (not clean) or has_nul
    norm = normalise_id or str.strip
    start_line = reader.line_num + 1
    i = -1
    try:
        for fields in reader:
            i += 1
            line = start_line
            start_line = reader.line_num + 1
            lines.append(line)
            n = len(fields)
            problem = None
            if n != width:
                if n == 0 or (n == 1 and not fields[0].strip()):
                    continue  # a blank line is no record
                if start_line - line > _MAX_RECORD_LINES:  # a quote opened and never closed swallowed the rows
                    raise TableError("unusable_table", f"{path} line {line}: a quoted field runs over "
                                     f"{start_line - line} lines (a quote that is never closed): the rows after "
                                     "it cannot be told apart", path)
                problem = f"has {n} fields, the header {width}"
            elif check_fields:
                problem = _bad_bytes(fields) if not clean else None
                if problem is None and has_nul and any("\x00" in f for f in fields):
                    problem = "holds a NUL byte (binary data in a text table)"
            cell = fields[id_at].strip() if id_at < n else ""
            rid = norm(cell) if cell and (clean or not _SURROGATE.search(cell)) else None
            if rid is None:
                rid = placeholder_id(path.name, line)
                problem = problem or (f"{id_column} {cell!r} is not an id" if cell else f"{id_column} is empty")
            if problem:
                problems[i] = problem
            order.append(rid)
            rows = index.get(rid)
            if rows is None:
                index[rid] = i  # an int per id; a list only for an id on several rows
            elif isinstance(rows, int):
                index[rid] = [rows, i]
            else:
                rows.append(i)
    except csv.Error as exc:  # rows past here cannot be delimited
        raise TableError("unusable_table", f"{path} line {start_line}: {exc}", path) from exc
    n_rows = i + 1

    frame = None
    try:
        frame = pl.read_csv(io.BytesIO(raw), infer_schema=False, truncate_ragged_lines=True,
                            encoding="utf8-lossy", has_header=True, new_columns=header, raise_if_empty=False)
    except pl.exceptions.PolarsError:
        frame = None
    if frame is None or frame.height != n_rows or frame.width != width:
        # polars delimited the rows differently (odd quoting): build the frame from the csv module's rows
        rows_py = [(list(f) + [""] * width)[:width] for f in csv.reader(io.StringIO(text, newline=""))][1:]
        frame = pl.DataFrame([[v or None for v in r] for r in rows_py], schema={c: pl.String for c in header},
                             orient="row")
    table.frame = frame
    return table
