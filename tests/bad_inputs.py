"""The bad-input corpus: cases kept as DATA in ``tests/bad_inputs/*.yaml``, built and run here.

Each case names a base tree (a copy of the shared PTB-XL records, a MIMIC tree built from them, LUDB records, a
WFDB folder, a synthetic tree, a finished run folder, or nothing), the edits that break it, the command that is
run through the real CLI, and what must happen: the exit code, the reason code of every record that fails (or is
kept with a warning), the records that must come through, and for a usage error the one line on stderr.

YAML shape (one file per area; see tests/bad_inputs/README.md):

    batch:                   # optional: every case of the file shares one tree and these commands
      base: wfdb
      commands: [[ingest, --source, wfdb, --root, "{root}", --out, "{out}/ingest"], ...]
      exit: 1
    cases:
      - id: truncated                      # unique over the corpus; in a batch also the record's name
        what: the .dat file cut to half    # why this input is bad
        record: {from: "06000"}            # batch only: how the record is written (see _write_record)
        edits: [{op: truncate, file: "{id}.dat", keep: 0.5, plus: 7}]
        command: [ingest, ...]             # not in a batch
        exit: 1
        errors: {"06002": bad_metadata}    # record -> reason code, severity error (in a batch: expect)
        warnings: {...}                    # record -> reason code, severity warning
        codes: {...}                       # record -> reason code, either severity (for work in progress)
        ok: ["06000"]                      # records that must come through the command's outputs
        stderr: ["has no ecg_id column"]   # substrings of stderr (exit 2: its one line)
        pending: wip-measure               # expected to fail until that branch lands (strict xfail)

``build_bad_corpus(dest, ptbxl_root)`` writes the WFDB record cases into one folder for the stage tests
(``{record_id: Expect}``); ``add_hostile_mimic_rows`` adds record-list rows that try to leave a MIMIC root.
"""
from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import wfdb
import yaml

from mimic_tree import append_record_rows, build_mimic_tree

CORPUS_DIR = Path(__file__).resolve().parent / "bad_inputs"
REPO = Path(__file__).resolve().parents[1]
PTBXL_NAMES = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
BASES = ("none", "ptbxl", "mimic", "ludb", "wfdb", "synthetic", "run")


@dataclass(frozen=True)
class Expect:
    outcome: str  # "ok" | "warning" (kept, warning row) | "error" (dropped, error row) | "any" (either)
    code: str | None = None
    lead: str | None = None


@dataclass
class Case:
    id: str
    file: str
    what: str
    base: str = "none"
    edits: list[dict] = field(default_factory=list)
    command: list[str] = field(default_factory=list)
    env: dict[str, str | None] = field(default_factory=dict)
    exit: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    warnings: dict[str, str] = field(default_factory=dict)
    codes: dict[str, str] = field(default_factory=dict)
    answers: dict[str, str] = field(default_factory=dict)  # record -> error_code in generate's answers
    error_rows: dict[str, int] = field(default_factory=dict)  # record -> error rows in one table (copies)
    reference_none: dict[str, list[str]] = field(default_factory=dict)  # record -> reference fields dropped
    reference_kept: dict[str, list[str]] = field(default_factory=dict)  # record -> reference fields kept
    ok: list[str] = field(default_factory=list)
    n_ok: int | None = None
    stderr: list[str] = field(default_factory=list)
    stdout_json: dict = field(default_factory=dict)  # keys that --json's document must hold with these values
    pending: str | None = None
    subprocess: bool = False          # through the console script (the hidden-check mirrors), not a worker
    batch: str | None = None          # the file's batch name when the case shares a tree
    record: dict | None = None        # batch: how the case's record is written
    expect: Expect | None = None      # batch: what happens to the case's record


# ----------------------------------------------------------------------------------------------- loading
def load_corpus(directory: Path = CORPUS_DIR) -> tuple[list[Case], dict[str, dict]]:
    """Every case of every YAML file, and the batch definitions by file name."""
    cases: list[Case] = []
    batches: dict[str, dict] = {}
    seen: set[str] = set()
    for path in sorted(directory.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        batch = doc.get("batch")
        if batch:
            batches[path.stem] = batch
        for raw in doc.get("cases") or []:
            raw = dict(raw)
            cid = raw.pop("id")
            if cid in seen:
                raise ValueError(f"{path.name}: duplicate case id {cid!r}")
            seen.add(cid)
            expect = raw.pop("expect", None)
            case = Case(id=cid, file=path.name, **raw)
            if batch:
                case.batch, case.base = path.stem, batch["base"]
                case.exit = batch.get("exit", 1)
                case.expect = _expect(expect)
            if not case.what:
                raise ValueError(f"{path.name}:{cid}: every case says what is wrong with its input")
            cases.append(case)
    return cases, batches


def _expect(spec) -> Expect:
    if spec in (None, "ok"):
        return Expect("ok")
    outcome = next(k for k in ("error", "warning", "any") if k in spec)
    return Expect(outcome, spec[outcome], spec.get("lead"))


# ------------------------------------------------------------------------------------------ WFDB records
def _source(ptbxl_root: Path, ecg_id: str = "06000") -> wfdb.Record:
    return wfdb.rdrecord(str(ptbxl_root / "records500" / f"{ecg_id[:3]}00" / f"{ecg_id}_hr"), physical=False)


def _write(dest: Path, name: str, d_signal: np.ndarray, sig_name: list[str], units: list[str] | None = None,
           fs: int = 500, gain: float | list[float] = 1000.0, fmt: str = "16") -> None:
    """Write digital samples (n, ch) as a WFDB record ``dest/name``."""
    n_ch = d_signal.shape[1]
    gains = gain if isinstance(gain, list) else [gain] * n_ch
    wfdb.wrsamp(
        name, fs=fs, units=units or ["mV"] * n_ch, sig_name=sig_name,
        d_signal=d_signal.astype(np.int16).astype(np.int64), fmt=[fmt] * n_ch, adc_gain=gains,
        baseline=[0] * n_ch, write_dir=str(dest),
    )


def _write_record(dest: Path, name: str, spec: dict, ptbxl_root: Path) -> None:
    """One WFDB record from a PTB-XL record's samples (1000 adu/mV), changed as ``spec`` says:
    ``from`` (PTB-XL id), ``names`` (lead names, e.g. lower-case), ``drop`` (leads left out), ``set``
    ({lead, start, stop, value}: digital samples), ``scale`` ({leads, factor, offset}: clipped to int16),
    ``crop`` (samples kept), ``units`` ({lead: unit}), ``units_all`` (mV, uV or V) with ``gain`` (adu per
    unit; the digits are rescaled so the millivolts stay the same), ``extra_channel`` ({name, unit}), ``fs``,
    ``fmt``, ``rename`` ({old: new} lead names), ``same_ptp`` (every lead scaled to one peak-to-peak),
    ``arm_reversal`` (left and right arm electrodes swapped: I inverted, II <-> III, aVR <-> aVL), ``swap`` ([a, b]:
    two channels' samples exchanged, so the limb leads break Einthoven's law)."""
    d = _source(ptbxl_root, spec.get("from", "06000")).d_signal.astype(np.int64)
    names = list(spec.get("names", PTBXL_NAMES))
    if "set" in spec:
        s = spec["set"]
        d[s["start"]:s["stop"], names.index(s["lead"])] = s["value"]
    if "scale" in spec:
        s = spec["scale"]
        cols = [names.index(x) for x in s["leads"]]
        d[:, cols] = np.clip(d[:, cols] * s.get("factor", 1) + s.get("offset", 0), -32767, 32767)
    if spec.get("arm_reversal"):
        i, ii, iii, avr, avl = (names.index(x) for x in ("I", "II", "III", "aVR", "aVL"))
        d[:, i] = -d[:, i]
        d[:, [ii, iii]] = d[:, [iii, ii]]
        d[:, [avr, avl]] = d[:, [avl, avr]]
    if "swap" in spec:
        a, b = (names.index(x) for x in spec["swap"])
        d[:, [a, b]] = d[:, [b, a]]
    if spec.get("same_ptp"):
        ptp = np.ptp(d, axis=0).clip(1)
        d = (d - d.mean(axis=0)) * (1000.0 / ptp)
    if "crop" in spec:
        d = d[: spec["crop"]]
    if "upsample" in spec:  # the same ECG at k x 500 Hz (sample-and-hold: no new content, just more samples)
        d = np.repeat(d, int(spec["upsample"]), axis=0)
    gain, unit_all = float(spec.get("gain", 1000.0)), spec.get("units_all", "mV")
    factor = gain / (1000.0 * {"mV": 1.0, "uV": 1e-3, "V": 1e3}[unit_all])  # same millivolts, other digits
    if factor != 1.0:
        d = np.round(d * factor)
    units = [unit_all] * len(names)
    for lead, unit in (spec.get("units") or {}).items():
        units[names.index(lead)] = unit
    if "drop" in spec:
        keep = [i for i, n in enumerate(names) if n not in spec["drop"]]
        d, names, units = d[:, keep], [names[i] for i in keep], [units[i] for i in keep]
    if "extra_channel" in spec:
        x = spec["extra_channel"]
        resp = (500 * np.sin(np.arange(d.shape[0]) * 2 * np.pi * 0.25 / 500)).astype(np.int64)[:, None]
        d, names, units = np.hstack([d, resp]), names + [x["name"]], units + [x.get("unit", "mV")]
    if "rename" in spec:
        names = [spec["rename"].get(n, n) for n in names]
    _write(dest, name, d, names, units=units, fs=int(spec.get("fs", 500)), gain=gain, fmt=str(spec.get("fmt", "16")))


# --------------------------------------------------------------------------------------------- edits
def _csv_rows(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))


def _csv_write(path: Path, rows: list[list[str]]) -> None:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")


def apply_edit(edit: dict, where: dict[str, str]) -> None:
    """Apply one edit (``op`` plus its arguments; paths relative to the case's ``{root}``, placeholders filled)."""
    e = {k: fill(v, where) for k, v in edit.items()}
    op = e.pop("op")
    root = Path(where["root"])
    path = root / e["file"] if "file" in e else None
    if op == "truncate":  # keep a fraction of the bytes (plus a few): a copy cut short
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * e.get("keep", 0.5)) + int(e.get("plus", 0))])
    elif op == "random_bytes":  # same size as the file unless told
        rng = np.random.default_rng(int(e.get("seed", 7)))
        size = int(e["size"]) if "size" in e else path.stat().st_size
        path.write_bytes(rng.integers(0, 256, size=size, dtype=np.uint8).tobytes())
    elif op == "write_text":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(e["text"], encoding="utf-8")
    elif op == "write_hex":
        path.write_bytes(bytes.fromhex(e["hex"]))
    elif op == "append_hex":
        path.write_bytes(path.read_bytes() + bytes.fromhex(e["hex"]))
    elif op == "prepend_hex":
        path.write_bytes(bytes.fromhex(e["hex"]) + path.read_bytes())
    elif op == "delete":
        path.unlink()
    elif op == "record":  # write a WFDB record (see _write_record) as root/name
        dst = root / e["name"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        _write_record(dst.parent, dst.name, e.get("spec") or {}, Path(where["ptbxl"]))
    elif op == "replace_bytes":  # find -> replace in the file's bytes; replace_hex for bytes that are not UTF-8
        data = path.read_bytes()
        new = bytes.fromhex(e["replace_hex"]) if "replace_hex" in e else e["replace"].encode()
        assert e["find"].encode() in data, (e["find"], path)
        path.write_bytes(data.replace(e["find"].encode(), new, int(e.get("count", 1))))
    elif op == "header_sub":  # regex on a text file (WFDB headers)
        text = path.read_text()
        new = re.sub(e["pattern"], e["repl"], text, count=int(e.get("count", 0)), flags=re.M)
        assert new != text, (e["pattern"], path)
        path.write_text(new)
    elif op == "csv_drop_column":
        rows = _csv_rows(path)
        i = rows[0].index(e["column"])
        _csv_write(path, [r[:i] + r[i + 1:] for r in rows])
    elif op == "csv_rename_column":
        rows = _csv_rows(path)
        rows[0][rows[0].index(e["column"])] = e["to"]
        _csv_write(path, rows)
    elif op == "csv_set":  # row: 1 = first data row
        rows = _csv_rows(path)
        rows[int(e["row"])][rows[0].index(e["column"])] = str(e["value"])
        _csv_write(path, rows)
    elif op == "csv_duplicate_row":
        rows = _csv_rows(path)
        rows.insert(int(e["row"]) + 1, list(rows[int(e["row"])]))
        _csv_write(path, rows)
    elif op == "csv_ragged":  # fields: -1 drops the row's last field, +1 adds one
        rows = _csv_rows(path)
        r = rows[int(e["row"])]
        n = int(e["fields"])
        rows[int(e["row"])] = r[:n] if n < 0 else r + ["extra"] * n
        _csv_write(path, rows)
    elif op == "csv_header_only":
        _csv_write(path, _csv_rows(path)[:1])
    elif op == "csv_keep_rows":  # the header and the first n rows
        _csv_write(path, _csv_rows(path)[: 1 + int(e["rows"])])
    elif op == "csv_append_rows":  # rows: list of {column: value}
        append_record_rows(root, e["rows"]) if path.name == "record_list.csv" else _append(path, e["rows"])
    elif op == "copy":
        src, dst = root / e["from"], root / e["to"]  # an absolute path stays absolute
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    elif op == "copy_record":  # a WFDB record (.hea/.dat) under another name, header rewritten
        src, dst = root / e["from"], root / e["to"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        hea = src.with_suffix(".hea").read_text().replace(src.name, dst.name)
        dst.with_suffix(".hea").write_text(hea)
        shutil.copy(src.with_suffix(".dat"), dst.with_suffix(".dat"))
    elif op == "copy_ludb":  # a LUDB record (header, signal, 12 annotation files) under another name
        data = root / "data"
        for f in data.glob(f"{e['from']}.*"):
            dst = data / f"{e['to']}{f.suffix}"
            if f.suffix == ".hea":
                lines = f.read_text().splitlines()
                lines = [ln.replace(f"{e['from']}.dat", f"{e['to']}.dat") for ln in lines]
                lines[0] = lines[0].replace(e["from"], e["to"], 1)
                dst.write_text("\n".join(lines) + "\n")
            else:
                shutil.copy(f, dst)
    elif op == "symlink":  # a link to a file outside the root
        os.symlink(Path(e["target"]), path)
    elif op == "write_annotation":  # an MIT annotation file (LUDB's codes): samples and symbols
        codes = {"N": 1, "p": 24, "t": 27, "(": 39, ")": 40}
        words, t = [], 0
        for sample, sym in zip(e["samples"], e["symbols"]):
            delta = int(sample) - t
            if delta > 1023:  # SKIP: a 32-bit interval in two words, high first
                words += [59 << 10, (delta >> 16) & 0xFFFF, delta & 0xFFFF]
                delta = 0
            words.append((codes[sym] << 10) | delta)
            t = int(sample)
        path.write_bytes(np.asarray(words + [0], dtype="<u2").tobytes())
    elif op == "parquet_set":  # set a column (to null when value is absent) where columns equal values
        import polars as pl

        df = pl.read_parquet(path)
        cond = pl.lit(True)
        for col, val in (e.get("where") or {}).items():
            cond = cond & (pl.col(col) == val)
        df = df.with_columns(pl.when(cond).then(pl.lit(e.get("value"))).otherwise(pl.col(e["column"]))
                             .cast(df.schema[e["column"]]).alias(e["column"]))
        df.write_parquet(path)
    else:
        raise ValueError(f"unknown edit op {op!r}")


def _append(path: Path, rows: list[dict]) -> None:
    existing = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(existing[0].keys()), lineterminator="\n")
    writer.writeheader()
    writer.writerows(existing + rows)
    path.write_text(buf.getvalue(), encoding="utf-8")


def fill(value, where: dict[str, str]):
    """Placeholders ``{root}``, ``{out}``, ``{run}``, ``{other}``, ``{tmp}``, ``{shared}``, ``{id}`` filled in."""
    if isinstance(value, str):
        for k, v in where.items():
            value = value.replace("{" + k + "}", str(v))
        return value
    if isinstance(value, list):
        return [fill(v, where) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, where) for k, v in value.items()}
    return value


# ------------------------------------------------------------------------------------------------ bases
class Bases:
    """Base trees, each built once per session and copied for every case that breaks it."""

    def __init__(self, cache: Path, shared: Path):
        self.cache, self.shared = cache, shared
        self.ptbxl = shared / "data" / "ptbxl"
        self._built: dict[str, Path] = {}

    def path(self, name: str) -> Path:
        if name not in self._built:
            dest = self.cache / f"base-{name}"
            getattr(self, f"_build_{name}")(dest)
            self._built[name] = dest
        return self._built[name]

    def _build_ptbxl(self, dest: Path) -> None:
        shutil.copytree(self.ptbxl, dest)

    def _build_mimic(self, dest: Path) -> None:
        build_mimic_tree(dest, self.ptbxl)

    def _build_ludb(self, dest: Path) -> None:
        src = self.shared / "data" / "ludb"
        (dest / "data").mkdir(parents=True)
        for rid in ("1", "2"):
            for f in (src / "data").glob(f"{rid}.*"):
                shutil.copy(f, dest / "data")
        shutil.copy(src / "ludb.csv", dest)

    def _build_wfdb(self, dest: Path) -> None:  # records come from the cases (op: record)
        dest.mkdir(parents=True)

    def _build_synthetic(self, dest: Path) -> None:
        run_cli(["synth", "--n", "3", "--seed", "3", "--out", str(dest)], check=0)

    def _build_run(self, dest: Path) -> None:
        run_cli(["run", "--n", "3", "--seed", "4", "--out", str(dest)], check=0)

    def _build_other(self, dest: Path) -> None:  # a second run: other data under the same ids (the hard case)
        run_cli(["run", "--n", "2", "--seed", "9", "--out", str(dest)], check=0)

    def copy(self, name: str, dest: Path) -> Path:
        if name == "none":
            dest.mkdir(parents=True, exist_ok=True)
            return dest
        shutil.copytree(self.path(name), dest, symlinks=True)
        return dest


@dataclass
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    where: dict[str, str]


def run_cli(argv: list[str], env: dict | None = None, check: int | None = None, timeout: int = 300) -> Result:
    """``ecg-grounding ARGV`` as a user runs it: the installed console script in a subprocess."""
    exe = Path(sys.executable).with_name("ecg-grounding")
    full = {**os.environ, "PYTHONPATH": str(REPO)}
    for k, v in (env or {}).items():
        if v is None:
            full.pop(k, None)
        else:
            full[k] = str(v)
    proc = subprocess.run([str(exe), *argv], capture_output=True, text=True, env=full, cwd=REPO, timeout=timeout)
    if check is not None and proc.returncode != check:
        raise AssertionError(f"ecg-grounding {' '.join(argv)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return Result(argv, proc.returncode, proc.stdout, proc.stderr, {})


# ------------------------------------------------------------------------------------------------ running
def placeholders(case_dir: Path, bases: Bases, root: Path, cid: str) -> dict[str, str]:
    where = {"root": str(root), "out": str(case_dir / "out"), "tmp": str(case_dir), "id": cid,
             "shared": str(bases.shared), "repo": str(REPO), "ptbxl": str(bases.ptbxl)}
    if root.name == "run":
        where["run"] = str(root)
    return where


@dataclass
class Job:
    key: str                       # case id, or "batch:<name>:<i>"
    argv: list[str]
    env: dict[str, str | None]
    where: dict[str, str]
    subprocess: bool = False       # run through the console script rather than a worker


def prepare_case(case: Case, bases: Bases, work: Path) -> Job:
    """Build the case's tree and apply its edits; the job that runs its command."""
    case_dir = work / case.id
    root = bases.copy(case.base, case_dir / ("run" if case.base == "run" else "root"))
    where = placeholders(case_dir, bases, root, case.id)
    if "{other}" in repr([case.command, case.edits]):
        where["other"] = str(bases.path("other"))
    for edit in case.edits:
        apply_edit(edit, where)
    return Job(case.id, fill(case.command, where), case.env, where, subprocess=case.subprocess)


def prepare_batch(name: str, batch: dict, cases: list[Case], bases: Bases, work: Path) -> list[Job]:
    """Write every case's record into one tree (plus the base's own records); the jobs of the batch's commands."""
    case_dir = work / f"batch-{name}"
    root = bases.copy(batch["base"], case_dir / "root")
    for case in cases:
        where = placeholders(case_dir, bases, root, case.id)
        if case.record is not None:
            _write_record(root / batch.get("record_dir", ""), case.id, case.record, bases.ptbxl)
        for edit in case.edits:
            apply_edit(edit, where)
    where = placeholders(case_dir, bases, root, name)
    return [Job(f"batch:{name}:{i}", fill(argv, where), batch.get("env") or {}, where, subprocess=i == 0)
            for i, argv in enumerate(batch["commands"])]


def run_jobs(jobs: list[Job], workers: int = 2) -> dict[str, Result]:
    """Run the jobs: each ``subprocess`` one through the console script, the others in ``workers`` long-lived
    interpreters (tests/cli_worker.py) that call the CLI's ``main`` one command line after another, so the
    corpus does not pay Python's and polars' start-up per case. Jobs of one batch stay in order."""
    import json
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    results: dict[str, Result] = {}
    lanes: list[list[Job]] = [[] for _ in range(workers)]
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        if not job.subprocess:
            groups.setdefault(job.key.rsplit(":", 1)[0] if job.key.startswith("batch:") else job.key, []).append(job)
    for i, group in enumerate(sorted(groups.values(), key=len, reverse=True)):
        min(lanes, key=len).extend(group)

    def lane(batch_jobs: list[Job]) -> None:
        if not batch_jobs:
            return
        with tempfile.TemporaryDirectory() as tmp:
            spec, out = Path(tmp) / "jobs.json", Path(tmp) / "results.json"
            spec.write_text(json.dumps([{"argv": j.argv, "env": j.env} for j in batch_jobs]))
            worker = Path(__file__).resolve().parent / "cli_worker.py"
            proc = subprocess.run([sys.executable, str(worker), str(spec), str(out)], cwd=REPO, timeout=3600,
                                  capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
            if proc.returncode != 0 or not out.is_file():
                raise AssertionError(f"corpus worker failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
            for job, r in zip(batch_jobs, json.loads(out.read_text())):
                results[job.key] = Result(job.argv, r["returncode"], r["stdout"], r["stderr"], job.where)

    def single(job: Job) -> None:
        r = run_cli(job.argv, env=job.env)
        r.where = job.where
        results[job.key] = r

    with ThreadPoolExecutor(max_workers=workers + 1) as pool:
        futures = [pool.submit(lane, ln) for ln in lanes]
        futures += [pool.submit(single, j) for j in jobs if j.subprocess]
        for f in futures:
            f.result()
    # a batch's later commands need its earlier ones: they ran in order in one lane, or the first as a
    # subprocess while the lane waited for nothing it needed (see prepare_batch: ingest first, features reads
    # only the tree, never ingest's output)
    return results


def build_bad_corpus(dest: Path, ptbxl_root: Path, include_pending: bool = False) -> dict[str, Expect]:
    """Write the WFDB record cases of ``wfdb_records.yaml`` (and its good records) into ``dest``, a folder the
    ``wfdb`` source reads; return what ingestion must do with each record."""
    cases, batches = load_corpus()
    dest.mkdir(parents=True, exist_ok=True)
    where = {"root": str(dest), "tmp": str(dest.parent), "shared": str(ptbxl_root.parents[1]),
             "ptbxl": str(ptbxl_root)}
    expect: dict[str, Expect] = {}
    for case in cases:
        if case.batch != "wfdb_records" or (case.pending and not include_pending):
            continue
        if case.record is not None:
            _write_record(dest, case.id, case.record, ptbxl_root)
        for edit in case.edits:
            apply_edit(edit, {**where, "id": case.id})
        expect[case.id] = case.expect
    return expect


def add_hostile_mimic_rows(root: Path) -> dict[str, Expect]:
    """Record-list rows whose path or id tries to leave the MIMIC root, plus one pointing at nothing."""
    rows = [
        {"subject_id": 10009999, "study_id": "49990001", "file_name": "49990001", "ecg_time": "2180-01-01 00:00:00",
         "path": "../../etc/passwd"},
        {"subject_id": 10009999, "study_id": "../../etc/passwd", "file_name": "x", "ecg_time": "2180-01-01 00:00:00",
         "path": "files/p1000/p10009999/s49990002/49990002"},
        {"subject_id": 10009999, "study_id": "49990003", "file_name": "49990003", "ecg_time": "2180-01-01 00:00:00",
         "path": "/etc/passwd"},
        {"subject_id": 10009999, "study_id": "49990004", "file_name": "49990004", "ecg_time": "2180-01-01 00:00:00",
         "path": "files/p1000/p10009999/s49990004/49990004"},
    ]
    append_record_rows(root, rows)
    return {
        "49990001": Expect("error", "unsafe_record_id"),
        "../../etc/passwd": Expect("error", "unsafe_record_id"),
        "49990003": Expect("error", "unsafe_record_id"),
        "49990004": Expect("error", "missing_file"),
    }
