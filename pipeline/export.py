"""``ecg-grounding export``: a run's instruction set as the ONE JSON file a trainer reads.

    ecg-grounding export --run outputs/ptbxl --out outputs/ptbxl/gem.json --format gem \\
        [--ecg-root DIR] [--image-root DIR] [--split all|train|test]

Every accepted item of ``RUN/instructions/{train,test}-*.json`` goes into one JSON list, with its paths
rewritten so that they resolve against the roots the trainer is given (GEM: ``ecg_folder`` / ``image_folder``):

- ``image``: relative to ``--image-root`` (default: the run folder, where the images are). An image that does
  not lie under that root is copied to ``IMAGE_ROOT/images/<name>``.
- ``ecg`` (``--format gem``): relative to ``--ecg-root`` (default: the run's data root). GEM's loader reads the
  channels in file order, takes the first 5000 samples and never resamples, so it reads the ECG the answer
  describes only when the source file is 12 standard leads in the canonical order, at 500 Hz, in mV, and the
  answer's 10-s window starts at its first sample. A record that is all of these and lies under the ECG root is
  pointed at in place; for any other (PTB's 1000-Hz, 15-channel, 38-s ``s0010_re``, MIMIC's aVF/aVL order, a
  later window, derived leads) export writes the canonical window (12 x 5000, 500 Hz, mV, leads I ... V6) as WFDB
  to ``ECG_ROOT/ecg-grounding-canonical/<source>/<record_id>`` and points ``ecg`` there.

``--format llava`` leaves ``ecg`` (and GEM's extra keys) out, for image-only LLaVA-style trainers.
Exit status: 0 every accepted item exported; 1 some items could not be (each named on stderr); 2 bad usage.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.batch import tmp_sibling
from pipeline.record import FS_HZ, LEADS, ConfigError, canonical_lead_name

FORMATS = ("gem", "llava")
CANONICAL_DIR = "ecg-grounding-canonical"
N_SAMPLES = 5000          # GEM's ecg_seq_length: 10 s at 500 Hz
ADC_GAIN = 1000.0         # adu per mV in the written WFDB (1 uV resolution, as PTB-XL)


@dataclass
class ExportSummary:
    out: str
    format: str
    items: int = 0
    by_split: dict[str, int] = field(default_factory=dict)
    ecg_in_place: int = 0
    ecg_written: int = 0
    images_copied: int = 0
    failed: list[str] = field(default_factory=list)   # "<id>: why"
    ecg_root: str | None = None
    image_root: str = ""


def is_canonical_source(row: dict) -> bool:
    """Does the raw file of this manifest row read, GEM's way (file order, first 5000 samples, no resampling),
    as the canonical 10-s window the answer describes?"""
    leads = [canonical_lead_name(x) for x in (row.get("original_leads") or [])]
    units = [str(u).strip().lower() for u in (row.get("original_units") or [])]
    return (row.get("original_fs_hz") is not None and float(row["original_fs_hz"]) == FS_HZ
            and tuple(leads) == LEADS
            and len(units) == len(LEADS) and all(u == "mv" for u in units)
            and int(row.get("original_n_samples") or 0) >= N_SAMPLES
            and float(row.get("window_start_s") or 0.0) == 0.0
            and not (row.get("derived_leads") or [])
            and bool(row.get("path")))


def write_canonical_wfdb(signal_mv: np.ndarray, dest: Path, comments: list[str]) -> Path:
    """Write a (12, 5000) mV signal as a WFDB record ``dest`` (.hea/.dat, format 16, 1000 adu/mV), atomically
    per file so a killed export never leaves a header without its samples."""
    import wfdb

    if signal_mv.shape != (len(LEADS), N_SAMPLES):
        raise ValueError(f"canonical signal must be (12, {N_SAMPLES}), got {signal_mv.shape}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = dest.parent / f".tmp-{dest.name}-{os.getpid()}"
    tmp_dir.mkdir(exist_ok=True)
    try:
        d = np.clip(np.round(signal_mv.T.astype(np.float64) * ADC_GAIN), -32767, 32767).astype(np.int64)
        wfdb.wrsamp(dest.name, fs=FS_HZ, units=["mV"] * len(LEADS), sig_name=list(LEADS), d_signal=d,
                    fmt=["16"] * len(LEADS), adc_gain=[ADC_GAIN] * len(LEADS), baseline=[0] * len(LEADS),
                    comments=comments, write_dir=str(tmp_dir))
        os.replace(tmp_dir / f"{dest.name}.dat", dest.parent / f"{dest.name}.dat")
        os.replace(tmp_dir / f"{dest.name}.hea", dest.parent / f"{dest.name}.hea")
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return dest


def _is_under(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _rel(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path.resolve(), root.resolve())).as_posix()


def _items(instructions: Path, split: str):
    splits = ("train", "test") if split == "all" else (split,)
    for s in splits:
        for shard in sorted(instructions.glob(f"{s}-*.json")):
            for item in json.loads(shard.read_text()):
                yield s, item


class _Sources:
    """Open sources by (name, root), once each, with the run's source options."""

    def __init__(self, options: dict):
        self.options, self.open = options, {}

    def read(self, source: str, root: str, record_id: str):
        from pipeline.sources import open_source

        key = (source, root)
        if key not in self.open:
            self.open[key] = open_source(source, root, **self.options)
        return self.open[key].read(record_id)


def export_instructions(run: str | Path, out: str | Path, fmt: str = "gem", ecg_root: str | Path | None = None,
                        image_root: str | Path | None = None, split: str = "all") -> ExportSummary:
    """Write the accepted items of ``run`` as one JSON list ``out`` (see the module docstring)."""
    from pipeline.runinfo import read_run_info

    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: choose {' or '.join(FORMATS)}")
    if split not in ("all", "train", "test"):
        raise ConfigError(f"--split {split!r}: choose all, train or test")
    run = Path(run)
    instructions = run / "instructions"
    if not any(instructions.glob("train-*.json")) and not any(instructions.glob("test-*.json")):
        raise ConfigError(f"no instruction shards under {instructions} (run `ecg-grounding run` or `validate` first)")
    manifest_path = run / "manifest.parquet"
    if not manifest_path.is_file():
        raise ConfigError(f"no manifest.parquet in {run}: export needs the run's ingest manifest")
    info = read_run_info(run)
    config = info.get("config") or {}
    man = pl.read_parquet(manifest_path)
    rows = {r["record_id"]: r for r in man.iter_rows(named=True)}
    prov = instructions / "provenance.parquet"
    record_of = dict(pl.read_parquet(prov, columns=["id", "record_id"]).filter(pl.col("id").is_not_null())
                     .iter_rows()) if prov.is_file() else {}

    image_root = Path(image_root) if image_root else run
    data_root = next((r.get("source_root") for r in rows.values() if r.get("source_root")), None) \
        or config.get("root") or (info.get("paths") or {}).get("data_root")
    ecg_root_p = Path(ecg_root) if ecg_root else (Path(data_root) if data_root else None)
    if fmt == "gem" and ecg_root_p is None:
        raise ConfigError("cannot tell the run's data root: pass --ecg-root")
    summary = ExportSummary(out=str(out), format=fmt, ecg_root=str(ecg_root_p.resolve()) if ecg_root_p else None,
                            image_root=str(image_root.resolve()))
    sources = _Sources(config.get("source_options") or {})
    exported: list[dict] = []
    for split_name, item in _items(instructions, split):
        item_id = item.get("id")
        try:
            new = _export_item(item, record_of.get(item_id, item_id), rows, run, fmt, ecg_root_p, image_root,
                               sources, summary)
        except Exception as exc:  # noqa: BLE001 - one item's failure is reported, the rest are exported
            summary.failed.append(f"{item_id}: {type(exc).__name__}: {exc}")
            continue
        exported.append(new)
        summary.by_split[split_name] = summary.by_split.get(split_name, 0) + 1
    summary.items = len(exported)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_sibling(out)
    tmp.write_text(json.dumps(exported, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    return summary


def _export_item(item: dict, record_id: str, rows: dict, run: Path, fmt: str, ecg_root: Path | None,
                 image_root: Path, sources: _Sources, summary: ExportSummary) -> dict:
    image_file = _find_image(item.get("image"), run)
    if image_file is None:
        raise FileNotFoundError(f"image {item.get('image')!r} is not under {run}")
    if not _is_under(image_file, image_root):
        dest = image_root / "images" / image_file.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists() or dest.stat().st_size != image_file.stat().st_size:
            shutil.copy2(image_file, dest)
            summary.images_copied += 1
        image_file = dest
    if fmt == "llava":
        return {"id": item["id"], "image": _rel(image_file, image_root), "conversations": item["conversations"]}
    row = rows.get(record_id)
    if row is None:
        raise KeyError(f"record {record_id!r} is not in the run's manifest")
    raw = Path(row["source_root"]) / row["path"] if row.get("source_root") and row.get("path") else None
    if raw is not None and is_canonical_source(row) and _is_under(raw, ecg_root) and \
            any(raw.parent.glob(raw.name + ".*")):
        ecg = _rel(raw, ecg_root)
        summary.ecg_in_place += 1
    else:
        record = sources.read(row["source"], row["source_root"], record_id)
        dest = ecg_root / CANONICAL_DIR / row["source"] / record_id
        why = _why_not_canonical(row)
        write_canonical_wfdb(record.signal_mv, dest, [
            f"ecg-grounding canonical window of {row['source']} record {record_id} ({row.get('path')}): "
            f"12 leads, 500 Hz, mV, {float(row.get('window_start_s') or 0):g} s to "
            f"{float(row.get('window_start_s') or 0) + N_SAMPLES / FS_HZ:g} s", f"written because: {why}"])
        ecg = _rel(dest, ecg_root)
        summary.ecg_written += 1
    return {"id": item["id"], "ecg": ecg, "image": _rel(image_file, image_root),
            "conversations": item["conversations"], "machine_measurements": item.get("machine_measurements"),
            "report": item.get("report")}


def _why_not_canonical(row: dict) -> str:
    why = []
    if float(row.get("original_fs_hz") or 0) != FS_HZ:
        why.append(f"{row.get('original_fs_hz'):g} Hz")
    leads = [canonical_lead_name(x) for x in (row.get("original_leads") or [])]
    if tuple(leads) != LEADS:
        why.append(f"{len(leads)} channels {'/'.join(str(x) for x in (row.get('original_leads') or [])[:15])}")
    if int(row.get("original_n_samples") or 0) < N_SAMPLES:
        why.append(f"{row.get('original_n_samples')} samples")
    if float(row.get("window_start_s") or 0.0) != 0.0:
        why.append(f"window starts at {row['window_start_s']:g} s")
    if row.get("derived_leads"):
        why.append(f"derived leads {', '.join(row['derived_leads'])}")
    units = {str(u) for u in (row.get("original_units") or [])}
    if units and units != {"mV"} and {u.lower() for u in units} != {"mv"}:
        why.append(f"units {', '.join(sorted(units))}")
    return "; ".join(why) or "the raw file is not under the ECG root"


def _find_image(image: str | None, run: Path) -> Path | None:
    if not image:
        return None
    for root in (run, run / "instructions"):
        if (root / image).is_file():
            return root / image
    return None


def format_summary(s: ExportSummary) -> str:
    lines = [f"export ({s.format}): {s.items} items -> {s.out} "
             f"({', '.join(f'{k} {v}' for k, v in s.by_split.items()) or 'none'})",
             f"  image paths relative to {s.image_root}" + (f" ({s.images_copied} images copied there)"
                                                           if s.images_copied else "")]
    if s.format == "gem":
        lines.append(f"  ecg paths relative to {s.ecg_root}: {s.ecg_in_place} source records in place, "
                     f"{s.ecg_written} canonical 12 x 5000 (500 Hz) windows written under {CANONICAL_DIR}/")
    for f in s.failed:
        lines.append(f"  failed: {f}")
    return "\n".join(lines)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="write a run's accepted items as one GEM (or LLaVA) JSON file for a trainer",
        description="Write every accepted item of RUN/instructions as one JSON list, with 'image' and 'ecg' "
                    "rewritten against the roots the trainer uses. Records whose source file is not 12 leads / "
                    "500 Hz / the answer's 10-s window get that canonical window written as WFDB. An item that "
                    "cannot be exported is named on stderr and makes the exit status 1.\n\n"
                    "examples:\n"
                    "  ecg-grounding export --run outputs/demo --out outputs/demo/gem.json\n"
                    "  ecg-grounding export --run outputs/demo --out outputs/demo/llava.json --format llava")
    p.add_argument("--run", required=True, type=Path, help="run folder (holds instructions/ and manifest.parquet)")
    p.add_argument("--out", required=True, type=Path, help="the JSON file to write")
    p.add_argument("--format", default="gem", choices=FORMATS,
                   help="gem: id, ecg, image, conversations, machine_measurements, report; llava: no ecg")
    p.add_argument("--ecg-root", type=Path, default=None,
                   help="root the trainer joins 'ecg' to (default: the run's data root)")
    p.add_argument("--image-root", type=Path, default=None,
                   help="root the trainer joins 'image' to (default: the run folder)")
    p.add_argument("--split", default="all", choices=["all", "train", "test"], help="which split (default all)")
    p.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    from pipeline.cli import EXIT_FAILED, finish

    summary = export_instructions(args.run, args.out, args.format, args.ecg_root, args.image_root, args.split)
    code = finish(args, asdict(summary), format_summary(summary))  # --json, -q: the one CLI convention
    for f in summary.failed:
        print(f"export: {f}", file=sys.stderr)
    return EXIT_FAILED if summary.failed else code
