"""The ``synthetic`` source: reads a tree written by ``pipeline.synthetic.write_synthetic_tree``.

Layout (PTB-XL-like): ``synthetic_database.csv``, ``records500/<record_id>.hea/.dat`` (WFDB format 16,
1000 adu/mV, 500 Hz, 12 leads) and ``truth/{beats,records}.parquet`` (the generator's ground truth, which
becomes the record's ``ReferenceMeasurements(kind="synthetic_truth")``).

The csv is read once per source object, the truth tables one block of ``TRUTH_BLOCK_RECORDS`` consecutive
records at a time (memory bounded by the block, not by the tree); a ``read`` then costs one header parse and
one ``np.fromfile`` (about a millisecond). The WFDB files are parsed here rather than by ``wfdb`` because
the generator writes exactly one layout; anything else is refused with a ``RecordError``.
"""
from __future__ import annotations

import ast
import threading
from pathlib import Path

import numpy as np
import polars as pl
from pydantic import TypeAdapter

from features.schema import FIDUCIAL_COLUMNS
from pipeline.record import (
    LEADS, Demographics, ECGRecord, Provenance, RecordError, RecordMeta, ReferenceMeasurements,
    ReferenceWave, Statement, TableError, canonical_lead_name, check_record_id, resolve_under, sha256_files,
)
from pipeline.sources.tables import read_source_table
from pipeline.sources.calibration import check_header, check_signal
from pipeline.synthetic_truth import SCP_NAMES

_WAVES = (("P", "p_on_ms", "p_peak_ms", "p_off_ms"),
          ("QRS", "qrs_on_ms", "r_peak_ms", "qrs_off_ms"),
          ("T", "t_on_ms", "t_peak_ms", "t_off_ms"))

_WAVES_ADAPTER = TypeAdapter(list[ReferenceWave])
TRUTH_BLOCK_RECORDS = 200  # records whose truth is read together (the chain's default chunk)
TRUTH_BLOCKS_KEPT = 2      # blocks held at once: two chunk threads of one process, each on its own block


class SyntheticSource:
    """Records of a synthetic tree under ``root`` (see module docstring). No options."""

    name = "synthetic"

    def __init__(self, root: Path, **options):
        if options:
            raise TypeError(f"synthetic source takes no options, got {sorted(options)}")
        self.root = Path(root)
        csv = self.root / "synthetic_database.csv"
        if not csv.is_file():
            raise TableError("missing_input", f"{csv} not found: write a tree with "
                             f"`ecg-grounding synth --out {root}`", csv)
        self._table = read_source_table(csv, "record_id", ("filename_hr",), normalise_id=str.strip)
        # the truth of one block of records (TRUTH_BLOCK_RECORDS consecutive rows of the csv) at a time: a chunk
        # of the chain reads consecutive records, and a Dask worker that reads a 20,000-record tree must not
        # hold the whole tree's truth (every beat of every lead) for the rest of the run
        self._truth_blocks: dict[int, tuple[dict[str, dict], dict[str, pl.DataFrame]]] = {}
        self._truth_lock = threading.Lock()
        self.truth_blocks_loaded = 0  # how many block reads happened (tests: one per block, not per record)

    def ids(self) -> list[str]:
        """Record ids in the csv's order (ecg_id order; an id on several rows: once per row)."""
        return self._table.ids()

    def _block_of(self, record_id: str) -> int:
        rows = self._table.index.get(record_id)
        row = rows[0] if isinstance(rows, list) else rows
        return int(row) // TRUTH_BLOCK_RECORDS

    def _truth(self, record_id: str) -> tuple[dict | None, pl.DataFrame | None]:
        """(truth row, truth beats) of ``record_id``, from its block's cached truth, loaded when first needed.

        Shared by a flow run's chunk tasks (threads): the block is loaded under a lock and published whole,
        so a reader never sees a block's records without its beats."""
        block = self._block_of(record_id)
        with self._truth_lock:
            if block not in self._truth_blocks:
                while len(self._truth_blocks) >= TRUTH_BLOCKS_KEPT:  # the oldest block goes first
                    self._truth_blocks.pop(next(iter(self._truth_blocks)))
                self._truth_blocks[block] = self._load_truth_block(block)
                self.truth_blocks_loaded += 1
            records, beats = self._truth_blocks[block]
        return records.get(record_id), beats.get(record_id)

    def _load_truth_block(self, block: int) -> tuple[dict[str, dict], dict[str, pl.DataFrame]]:
        rec_path, beats_path = self.root / "truth" / "records.parquet", self.root / "truth" / "beats.parquet"
        if not (rec_path.is_file() and beats_path.is_file()):  # a tree without truth reads with no reference
            return {}, {}
        order = self._table.order
        ids = sorted(set(order[block * TRUTH_BLOCK_RECORDS:(block + 1) * TRUTH_BLOCK_RECORDS]))
        if not ids:
            return {}, {}
        # the range predicate lets the scan skip row groups by their min/max statistics (the tree writes one
        # row group per part, in id order); is_in keeps exactly the block's records
        pick = pl.col("record_id").is_between(pl.lit(ids[0]), pl.lit(ids[-1])) & pl.col("record_id").is_in(ids)
        records = {r["record_id"]: r for r in pl.scan_parquet(rec_path).filter(pick).collect().iter_rows(named=True)}
        beats = pl.scan_parquet(beats_path).filter(pick).collect()
        return records, {k[0]: v for k, v in beats.partition_by("record_id", as_dict=True).items()}

    def read(self, record_id: str) -> ECGRecord:
        """The canonical record with the generator's truth as reference; ``RecordError`` when unreadable."""
        if record_id not in self._table:
            check_record_id(record_id)
            raise RecordError("missing_file", "not in synthetic_database.csv", record_id)
        row = self._table.row(record_id)  # duplicate_id / bad_metadata for this record only
        check_record_id(record_id)
        try:
            rel = str(row["filename_hr"])
            stem = resolve_under(self.root, rel)
            hea, dat = stem.with_suffix(".hea"), stem.with_suffix(".dat")
            findings = check_header(hea, record_id)  # before the reader trusts its sampling rate and gains
            signal, fs_hz, names, units, n = _read_format16(hea, dat, record_id)
            findings.extend(check_signal(signal, list(LEADS), {ld: float(np.ptp(signal[i])) for i, ld in
                                                              enumerate(LEADS)}))
            meta = RecordMeta(
                record_id=record_id, source=self.name, fs_hz=500, n_samples=n,
                patient_id=str(row["patient_id"]) if row.get("patient_id") is not None else None,
                demographics=Demographics(age_years=row.get("age"), sex=row.get("sex")),
                report=row.get("report") or "",
                statements=_statements(row.get("scp_codes"), record_id),
                reference=self._reference(record_id),
                provenance=Provenance(
                    path=rel, files=[f"{rel}.hea", f"{rel}.dat"], sha256=sha256_files([hea, dat]),
                    original_fs_hz=fs_hz, original_lead_names=names, original_units=units,
                    original_n_samples=n),
                calibration=findings.calibration(),
            )
        except RecordError as exc:
            exc.record_id = exc.record_id or record_id
            raise
        except (ValueError, TypeError, KeyError) as exc:  # a malformed csv row: pydantic / field errors
            raise RecordError("bad_metadata", f"{type(exc).__name__}: {exc}", record_id) from exc
        return ECGRecord(meta=meta, signal_mv=signal)

    def _reference(self, record_id: str) -> ReferenceMeasurements | None:
        t, beats = self._truth(record_id)
        if t is None:
            return None
        raw: list[dict] = []
        if beats is not None:
            cols = {c: beats[c].to_list() for c in ["lead", *FIDUCIAL_COLUMNS]}
            for i, lead in enumerate(cols["lead"]):
                for wave, on_c, peak_c, off_c in _WAVES:
                    on, peak, off = cols[on_c][i], cols[peak_c][i], cols[off_c][i]
                    if on is None and peak is None and off is None:
                        continue  # absent wave (P in AF or in a PVC)
                    raw.append({"lead": lead, "wave": wave, "on_ms": on, "peak_ms": peak, "off_ms": off})
        # One validation call for all waves (pydantic-core in Rust): ~20x faster than a model per wave.
        waves = _WAVES_ADAPTER.validate_python(raw)
        return ReferenceMeasurements(
            kind="synthetic_truth", rr_ms=t["rr_mean_ms"], hr_bpm=t["hr_bpm"], pr_ms=t["pr_ms"],
            qrs_ms=t["qrs_ms"], qt_ms=t["qt_ms"], qrs_axis_deg=t["qrs_axis_deg"], waves=waves,
            extra={"rhythm": t["rhythm"], "findings": t["findings"], "heart_axis": t["heart_axis"],
                   "n_premature": t["n_premature"], "st_elevation_leads": t["st_elevation_leads"],
                   "st_depression_leads": t["st_depression_leads"],
                   "t_inversion_leads": t["t_inversion_leads"], "seed": t["seed"]},
        )


def _statements(scp_codes: str | None, record_id: str) -> list[Statement]:
    """"{'SR': 100.0, '1AVB': 100.0}" -> scp Statements named in English."""
    if not scp_codes:
        return []
    try:
        codes = ast.literal_eval(scp_codes)
    except (ValueError, SyntaxError) as exc:
        raise RecordError("bad_metadata", f"scp_codes {scp_codes!r} is not a dict literal", record_id) from exc
    if not isinstance(codes, dict):
        raise RecordError("bad_metadata", f"scp_codes {scp_codes!r} is not a dict literal", record_id)
    return [Statement(text=SCP_NAMES.get(code, code), code=code, system="scp", likelihood=float(lik))
            for code, lik in codes.items()]


def _read_format16(hea: Path, dat: Path, record_id: str) -> tuple[np.ndarray, float, list[str], list[str], int]:
    """Read a 12-channel format-16 WFDB record written by the generator: (signal mV float32 (12, n) in LEADS
    order, fs, original lead names, units, n)."""
    if not hea.is_file():
        raise RecordError("missing_file", f"{hea.name} not found", record_id)
    if not dat.is_file():
        raise RecordError("missing_file", f"{dat.name} not found", record_id)
    try:
        lines = [ln for ln in hea.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        head = lines[0].split()
        n_sig, fs_hz, n = int(head[1]), float(head[2].split("/")[0]), int(head[3])
        gains, baselines, units, names = [], [], [], []
        for ln in lines[1:1 + n_sig]:
            parts = ln.split()
            if parts[1] != "16":
                raise RecordError("header_mismatch", f"format {parts[1]} is not 16", record_id)
            gain_s, unit = parts[2].split("/")
            base = 0
            if "(" in gain_s:
                gain_s, base_s = gain_s.split("(")
                base = int(base_s.rstrip(")"))
            gains.append(float(gain_s))
            baselines.append(base)
            units.append(unit)
            names.append(parts[8] if len(parts) > 8 else "")
    except RecordError:
        raise
    except (IndexError, ValueError) as exc:
        raise RecordError("corrupt_header", f"{hea.name}: {exc}", record_id) from exc
    if len(names) != n_sig:
        raise RecordError("corrupt_header", f"{hea.name} lists {len(names)} of {n_sig} channels", record_id)
    size = dat.stat().st_size
    if size < 2 * n_sig * n:
        raise RecordError("truncated_signal", f"{dat.name} holds {size} bytes, header needs {2 * n_sig * n}",
                          record_id)
    if size > 2 * n_sig * n:
        raise RecordError("header_mismatch", f"{dat.name} holds {size} bytes, header says {2 * n_sig * n}",
                          record_id)
    if any(u.lower() != "mv" for u in units):
        raise RecordError("unknown_units", f"units {units} are not mV", record_id)
    if round(fs_hz) != 500:
        raise RecordError("header_mismatch", f"sampling rate {fs_hz} Hz is not 500 Hz", record_id)
    raw = np.fromfile(dat, dtype="<i2").reshape(n, n_sig).T
    index = {}
    for ch, name in enumerate(names):
        lead = canonical_lead_name(name)
        if lead is not None:
            index[lead] = ch
    missing = [lead for lead in LEADS if lead not in index]
    if missing:
        raise RecordError("missing_leads", f"leads {missing} not in {hea.name}", record_id)
    signal = np.empty((12, n), dtype=np.float32)
    for i, lead in enumerate(LEADS):
        ch = index[lead]
        signal[i] = (raw[ch].astype(np.float32) - baselines[ch]) / np.float32(gains[ch])
    return signal, fs_hz, names, units, n
