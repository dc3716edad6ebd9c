"""LUDB v1.0.1 (Kalyakulina et al. 2020): ``data/<n>.hea/.dat``, one annotation file per lead, ``ludb.csv``.

Statements come from ``ludb.csv`` (one per non-empty finding line, system 'ludb'); the cardiologists'
fiducials come from the per-lead annotation files (``(`` onset, ``p``/``N``/``t`` peak, ``)`` offset) as
``ReferenceMeasurements(kind='ludb_expert')``. Only the middle ~1.4-8.6 s of each record is annotated.
"""
from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np

from pipeline.record import (
    LEADS, Demographics, ECGRecord, RecordError, RecordMeta, ReferenceMeasurements, ReferenceWave,
    Statement,
    check_record_id, resolve_under,
)
from pipeline.sources.tables import SourceTable, read_source_table
from pipeline.sources.calibration import with_flag
from pipeline.sources.wfdb_common import parse_header_demographics, read_wfdb_window

_PEAK_WAVE = {"p": "P", "N": "QRS", "t": "T"}
_NOT_FINDINGS = {"ID", "Sex", "Age"}
_GROUP_MS = 150.0  # peaks of the same wave in different leads of one beat lie within this distance


# MIT annotation codes LUDB uses (wfdb's ann_label_table): 1 'N', 24 'p', 27 't', 39 '(', 40 ')'.
_MIT_SYMBOL = {1: "N", 24: "p", 27: "t", 39: "(", 40: ")"}
_MIT_SKIP, _MIT_NUM, _MIT_SUB, _MIT_CHN, _MIT_AUX = 59, 60, 61, 62, 63


def read_mit_annotation(path: Path, n_samples: int | None = None) -> tuple[list[str], list[int]]:
    """(symbols, sample indices) of an MIT-format annotation file.

    A small reader instead of ``wfdb.rdann``, which re-parses the record header through pandas on every
    call (~4 ms per file, 12 files per LUDB record). Raises ``ValueError`` for a file that is not a whole MIT
    annotation stream: an odd byte count, no end-of-file marker (a truncated file), a code LUDB never writes
    (random bytes hit one within a few words: every real LUDB file holds only its five codes and the MIT
    control codes), or a sample past the record's ``n_samples``. Such a file used to read as "0 waves".
    """
    data = path.read_bytes()
    if len(data) % 2:
        raise ValueError(f"{len(data)} bytes: an MIT annotation file holds 16-bit words")
    words = np.frombuffer(data, dtype="<u2")
    symbols: list[str] = []
    samples: list[int] = []
    t, k, n = 0, 0, len(words)
    ended = False
    while k < n:
        code, value = int(words[k]) >> 10, int(words[k]) & 0x3FF
        k += 1
        if code == 0 and value == 0:
            ended = True
            break
        if code == _MIT_SKIP:  # a 32-bit interval follows: high word, then low word
            if k + 1 < n:
                t += int(np.int32((int(words[k]) << 16) | int(words[k + 1])))
            k += 2
        elif code == _MIT_AUX:
            k += (value + 1) // 2
        elif code in (_MIT_NUM, _MIT_SUB, _MIT_CHN):
            continue
        elif code in _MIT_SYMBOL:
            t += value
            if t < 0 or (n_samples is not None and t >= n_samples):
                raise ValueError(f"annotation {len(symbols) + 1} at sample {t}, outside the record's "
                                 f"{n_samples} samples")
            symbols.append(_MIT_SYMBOL[code])
            samples.append(t)
        else:
            raise ValueError(f"word {k - 1} holds annotation code {code}, which LUDB never writes (not an "
                             "annotation file, or a corrupt one)")
    if not ended:
        raise ValueError(f"no end-of-file marker after {n} words (truncated)")
    return symbols, samples


def parse_ludb_annotation(symbols: list[str], samples: list[int], lead: str, fs_hz: float, offset_ms: float = 0.0) -> list[ReferenceWave]:
    """Turn one lead's annotation stream into waves (ms from window start; None where not annotated).

    Triplets are ``(`` ``peak`` ``)``, but LUDB has incomplete ones at the annotated segment's edges: an
    onset without offset or a peak without onset. A wave is kept when its peak is annotated.
    """
    waves: list[ReferenceWave] = []
    cur: dict | None = None

    def flush() -> None:
        nonlocal cur
        if cur is not None and cur.get("wave"):
            waves.append(ReferenceWave(lead=lead, wave=cur["wave"], on_ms=cur.get("on"), peak_ms=cur.get("peak"), off_ms=cur.get("off")))
        cur = None

    for sym, smp in zip(symbols, samples):
        t_ms = float(smp) * 1000.0 / fs_hz - offset_ms
        if sym == "(":
            flush()
            cur = {"on": t_ms}
        elif sym in _PEAK_WAVE:
            if cur is None or cur.get("wave"):
                flush()
                cur = {}
            cur["wave"], cur["peak"] = _PEAK_WAVE[sym], t_ms
        elif sym == ")":
            if cur is not None:
                cur["off"] = t_ms
            flush()
    flush()
    return waves


def _groups(waves: list[ReferenceWave], kind: str) -> list[list[ReferenceWave]]:
    """Waves of ``kind`` from all leads grouped into beats by peak time."""
    ws = sorted((w for w in waves if w.wave == kind and w.peak_ms is not None), key=lambda w: w.peak_ms)
    groups: list[list[ReferenceWave]] = []
    for w in ws:
        if groups and w.peak_ms - groups[-1][0].peak_ms <= _GROUP_MS:
            groups[-1].append(w)
        else:
            groups.append([w])
    return groups


def global_intervals(waves: list[ReferenceWave]) -> dict[str, float | None]:
    """Medians over beats of the RR and of the 12-lead global PR, QRS and QT, ms.

    Global (as in IEC 60601-2-25 / CSE): earliest onset to latest offset over all annotated leads of a beat.
    ``*_median_lead`` variants use the median onset and offset over leads instead (the typical single lead;
    LUDB's per-lead annotations spread 10-30 ms, so the global QRS is ~25 ms longer than a lead's).
    """
    qrs = _groups(waves, "QRS")
    p_groups = _groups(waves, "P")
    t_groups = _groups(waves, "T")

    def edge(g, attr, pick):
        vals = [getattr(w, attr) for w in g if getattr(w, attr) is not None]
        return pick(vals) if vals else None

    def peak(g):
        return statistics.median(w.peak_ms for w in g)

    peaks = [peak(g) for g in qrs]
    rr = [b - a for a, b in zip(peaks, peaks[1:])]
    out: dict[str, list[float]] = {k: [] for k in ("pr", "qrs", "qt", "pr_med", "qrs_med", "qt_med")}
    for g, pk in zip(qrs, peaks):
        p = [pg for pg in p_groups if 0 < pk - peak(pg) < 400]
        t = [tg for tg in t_groups if 0 < peak(tg) - pk < 600]
        for suffix, first, last in (("", min, max), ("_med", statistics.median, statistics.median)):
            q_on, q_off = edge(g, "on_ms", first), edge(g, "off_ms", last)
            if q_on is None:
                continue
            if q_off is not None:
                out["qrs" + suffix].append(q_off - q_on)
            p_on = edge(p[-1], "on_ms", first) if p else None
            if p_on is not None:
                out["pr" + suffix].append(q_on - p_on)
            t_off = edge(t[0], "off_ms", last) if t else None
            if t_off is not None:
                out["qt" + suffix].append(t_off - q_on)

    def med(xs):
        return float(statistics.median(xs)) if xs else None

    return {
        "rr_ms": med(rr), "pr_ms": med(out["pr"]), "qrs_ms": med(out["qrs"]), "qt_ms": med(out["qt"]),
        "pr_ms_median_lead": med(out["pr_med"]), "qrs_ms_median_lead": med(out["qrs_med"]),
        "qt_ms_median_lead": med(out["qt_med"]),
    }


class LudbSource:
    """LUDB root: ``data/*.hea`` with per-lead annotation files and ``ludb.csv``."""

    name = "ludb"

    def __init__(self, root: Path, window_s: float | None = 10.0, window_start_s: float = 0.0, **_: object):
        self.root = Path(root)
        self.window_s = window_s
        self.window_start_s = window_start_s
        self._ids: list[str] | None = None
        self._rows: SourceTable | bool | None = None  # False: the root has no ludb.csv

    def ids(self) -> list[str]:
        """Record numbers as strings ('1' ... '200'), in numeric order."""
        if self._ids is None:
            self._table()  # an unusable ludb.csv stops the run here, before any record
            stems = [p.stem for p in (self.root / "data").glob("*.hea")]
            self._ids = sorted(stems, key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))
        return list(self._ids)

    def _table(self) -> SourceTable | None:
        """``ludb.csv`` (diagnoses, sex, age) when the root has it; one source object is shared by the flow's
        chunk tasks (threads), so the table is built whole, then published."""
        if self._rows is None:
            csv = self.root / "ludb.csv"
            self._rows = read_source_table(csv, "ID", normalise_id=str.strip) if csv.is_file() else False
        return self._rows or None

    def _row(self, record_id: str) -> dict[str, str | None]:
        """The record's ``ludb.csv`` row ({} when it has none); ``RecordError`` for a duplicated or bad row."""
        table = self._table()
        return (table.row(record_id, required=False) if table is not None else None) or {}

    def statements(self, record_id: str) -> list[Statement]:
        """One 'ludb' statement per non-empty line of every finding column of ``ludb.csv``."""
        row = self._row(record_id)
        out = []
        for col, value in row.items():
            if col in _NOT_FINDINGS or not value:
                continue
            for line in str(value).splitlines():
                line = line.strip().rstrip(".")
                if line:
                    out.append(Statement(text=line, code=line, system="ludb"))
        return out

    def read(self, record_id: str) -> ECGRecord:
        """Signal, ``ludb.csv`` statements, demographics and the expert fiducials of every lead."""
        check_record_id(record_id)
        rel = f"data/{record_id}"
        win = read_wfdb_window(self.root, rel, record_id, self.window_s, self.window_start_s)
        offset_ms = win.provenance.window_start_s * 1000.0
        duration_ms = win.signal_mv.shape[1] * 2.0  # 500 Hz -> 2 ms per sample
        waves: list[ReferenceWave] = []
        ann_files: list[str] = []
        for lead_name in win.provenance.original_lead_names:
            ext = lead_name.strip().lower()
            path = resolve_under(self.root, f"{rel}.{ext}")
            if not path.is_file():
                continue
            lead = next((ld for ld in LEADS if ld.lower() == ext), None)
            if lead is None:
                continue
            try:
                symbols, samples = read_mit_annotation(path, win.provenance.original_n_samples)
            except (ValueError, OSError) as exc:  # the experts' fiducials are this source's point: no guessing
                raise RecordError("bad_annotation", f"annotation file {rel}.{ext}: {exc}", record_id, lead) from exc
            ann_files.append(f"{rel}.{ext}")
            lead_waves = parse_ludb_annotation(symbols, samples, lead, win.header_fs_hz, offset_ms)
            waves += [w for w in lead_waves if w.peak_ms is not None and 0.0 <= w.peak_ms < duration_ms]
        reference = None
        if waves:
            g = global_intervals(waves)
            rr = g["rr_ms"]
            reference = ReferenceMeasurements(
                kind="ludb_expert", waves=waves, rr_ms=rr, hr_bpm=60000.0 / rr if rr else None,
                pr_ms=g["pr_ms"], qrs_ms=g["qrs_ms"], qt_ms=g["qt_ms"],
                extra={"annotation_files": len(ann_files), "pr_ms_median_lead": g["pr_ms_median_lead"],
                       "qrs_ms_median_lead": g["qrs_ms_median_lead"], "qt_ms_median_lead": g["qt_ms_median_lead"]},
            )
        row = self._row(record_id)
        demo = parse_header_demographics(win.comments)
        sex = (row.get("Sex") or "").strip().upper()
        age = (row.get("Age") or "").strip()
        if sex in ("M", "F"):
            demo["sex"] = "male" if sex == "M" else "female"
        if age.replace(".", "", 1).isdigit():
            demo["age_years"] = float(age)
        statements = self.statements(record_id)
        diag = _header_diagnoses(win.comments)
        meta = RecordMeta(
            record_id=record_id,
            source=self.name,
            n_samples=win.signal_mv.shape[1],
            patient_id=record_id,  # LUDB has one record per patient
            demographics=Demographics(**demo),
            report=" ".join(diag) if diag else "; ".join(s.text for s in statements),
            statements=statements,
            reference=reference,
            provenance=win.provenance,
            # LUDB's per-channel gains scale every lead to the same peak-to-peak (1 mV): its timing is expert
            # annotated, its millivolts (and so voltage criteria and axes) mean nothing. The generic checks find
            # it too (and the limb leads breaking Einthoven); the source says so whatever the window shows
            calibration=with_flag(win.calibration, "amplitude_normalised",
                                  "LUDB scales every lead to the same peak-to-peak amplitude"),
        )
        return ECGRecord(meta=meta, signal_mv=win.signal_mv)


def _header_diagnoses(comments: list[str]) -> list[str]:
    """The lines after '<diagnoses>:' in a LUDB header (the cardiologist's conclusion)."""
    out, on = [], False
    for line in comments:
        if line.strip().lower().startswith("<diagnoses>"):
            on = True
            continue
        if on and line.strip():
            out.append(line.strip())
    return out

