"""Render stage: standard 12-lead ECG images (PNG or SVG) at 25 mm/s and 10 mm/mV.

``render_record(record, ...) -> bytes`` draws one record; ``render(source, root, out_dir, ...)`` draws every
id of a source into ``out_dir`` (one image per record), writes ``out_dir/manifest.parquet`` (record id ->
relative image path, layout, dpi, seed, size in px) and an errors table (``ERRORS_SCHEMA``). Existing
images are kept unless ``overwrite``. The geometry lives in ``pipeline.render_layout``, the PNG
rasteriser in ``pipeline.render_raster``, the SVG writer in ``pipeline.render_svg`` and the
augmentations in ``pipeline.render_augment``.

CLI: ``ecg-grounding render --source NAME --root DIR --out DIR [--layout 3x4+II|12x1|12x1+II|6x2]
[--dpi N] [--format png|svg] [--naming plain|gem] [--augment SPEC] [--seed S]``.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

# Import ``features`` before ``pipeline.batch``: batch -> features.schema runs features/__init__, which
# imports features.measure -> pipeline.batch, a cycle that only resolves when ``features`` comes first.
import features  # noqa: F401,I001
from pipeline import progress
from pipeline.batch import ErrorRow, chunks, error_row, errors_frame, write_parquet_atomic
from pipeline.record import ConfigError, ECGRecord, LEAD_INDEX, RecordError, check_record_id
from pipeline.render_augment import Augment, apply_pixels, choose_colours, image_seed
from pipeline.render_layout import (
    GAIN_MM_PER_MV, LAYOUTS, SPEED_MM_PER_S, PageLayout, page_layout, page_size_px,
)
from pipeline.render_raster import draw_page, encode
from pipeline.render_svg import svg_page

STAGE = "render"
FORMATS = ("png", "svg")
NAMINGS = ("plain", "gem")

MANIFEST_SCHEMA: dict[str, pl.DataType] = {
    "record_id": pl.String,
    "image_path": pl.String,   # relative to the render output folder
    "source": pl.String,
    "layout": pl.String,
    "format": pl.String,
    "dpi": pl.Int32,
    "seed": pl.Int64,          # the run seed; the per-image seed is image_seed(seed, record_id)
    "augment": pl.String,      # canonical Augment spec, "none" without augmentation
    "width_px": pl.Int32,
    "height_px": pl.Int32,
}


def _highpass(signal_mv: np.ndarray, fs_hz: float, cutoff_hz: float) -> np.ndarray:
    """Zero-phase 2nd-order Butterworth high-pass (baseline-wander removal), per lead."""
    from scipy.signal import butter, sosfiltfilt

    sos = butter(2, cutoff_hz, btype="highpass", fs=fs_hz, output="sos")
    return sosfiltfilt(sos, signal_mv, axis=1).astype(np.float32)


def trace_points_mm(record: ECGRecord, layout: PageLayout, highpass_hz: float | None = None) -> list[np.ndarray]:
    """Per panel of ``layout``, an (n, 2) array of (x_mm, y_mm) page points of its lead's samples.

    Each panel shows its lead's seconds ``t0_s``..``t1_s`` (the first 10 s of the record; a shorter record
    leaves the rest blank), centred on the segment's median so the baseline sits on the row's baseline,
    and clipped to the panel's clip band (a flat top, as a saturated paper recorder draws it).
    Raises ``RecordError('render_failed')`` for empty or non-finite signals.
    """
    sig = record.signal_mv
    fs = float(record.meta.fs_hz)
    if sig.shape[1] < 2:
        raise RecordError("render_failed", f"signal has {sig.shape[1]} samples; nothing to draw", record.record_id)
    bad = [name for name, i in LEAD_INDEX.items() if not np.all(np.isfinite(sig[i]))]
    if bad:
        raise RecordError("render_failed", f"non-finite samples in leads {', '.join(bad)}", record.record_id,
                          bad[0])
    n = sig.shape[1]
    if highpass_hz:
        sig = _highpass(sig, fs, highpass_hz)
    out: list[np.ndarray] = []
    for p in layout.panels:
        i0 = int(round(p.t0_s * fs))
        # One sample past the panel end so the trace reaches the lead-change tick without a gap.
        i1 = min(n, int(round(p.t1_s * fs)) + 1)
        if i1 - i0 < 2:
            out.append(np.empty((0, 2), dtype=np.float64))
            continue
        seg = sig[LEAD_INDEX[p.lead], i0:i1].astype(np.float64)
        seg = seg - np.median(seg)
        x = p.x_mm + np.arange(i1 - i0) * (SPEED_MM_PER_S / fs)
        x = np.minimum(x, p.x_mm + p.width_mm)
        y = np.clip(p.baseline_mm - seg * GAIN_MM_PER_MV, p.clip_top_mm, p.clip_bottom_mm)
        out.append(np.column_stack([x, y]))
    return out


def header_line(record: ECGRecord, highpass_hz: float | None) -> str:
    """The page's header. A record whose amplitudes are not calibrated (LUDB's per-lead normalisation, a bad
    gain, limb leads that break Einthoven) says so where the gain is printed: a reader must not take its
    millimetres for millivolts (the calibration pulse shows the drawing scale only)."""
    filt = f"{highpass_hz:g} Hz high-pass" if highpass_hz else "none (as recorded)"
    cal = record.meta.calibration
    gain = f"{GAIN_MM_PER_MV:g} mm/mV" if cal.amplitudes_calibrated else \
        f"amplitudes not calibrated ({', '.join(cal.flags) or 'unknown gain'})"
    return (f"{record.record_id}    {SPEED_MM_PER_S:g} mm/s    {gain}    filter: {filt}    "
            f"{record.meta.fs_hz} Hz    source: {record.meta.source}")


def render_record(record: ECGRecord, layout: str = "3x4+II", dpi: int = 200, fmt: str = "png",
                  header: bool = True, augment: Augment | None = None, seed: int = 0,
                  highpass_hz: float | None = None) -> bytes:
    """One record as image bytes (PNG or SVG) on a paper-like page at 25 mm/s and 10 mm/mV.

    ``layout``: 3x4+II (default), 12x1, 12x1+II or 6x2; ``dpi``: pixels per inch of the PNG (SVG is in
    mm); ``augment``: optional variations, drawn deterministically from ``seed`` and the record id;
    ``highpass_hz``: optional baseline-wander filter (default none, the signal as recorded).
    Raises ``RecordError('render_failed')`` when the record cannot be drawn.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if not 20 <= int(dpi) <= 1200:
        raise ValueError("dpi must be within 20..1200")
    page = page_layout(layout, header)
    traces = trace_points_mm(record, page, highpass_hz)
    rng = np.random.default_rng(image_seed(seed, record.record_id))
    colours = choose_colours(augment, rng)
    head = header_line(record, highpass_hz) if header else None
    if fmt == "svg":
        if augment is not None and augment.raster_only:
            raise ValueError("noise, rotation, blur and JPEG augmentations need --format png")
        return svg_page(page, traces, colours, head, int(dpi))
    img = draw_page(page, traces, int(dpi), colours, head)
    img = apply_pixels(img, augment, rng, colours.paper)
    return encode(img, "png", int(dpi))


@dataclass(frozen=True)
class RenderOptions:
    """What one render run draws; the same for every record of the run."""

    layout: str = "3x4+II"
    dpi: int = 200
    fmt: str = "png"
    naming: str = "plain"
    augment: Augment | None = None
    seed: int = 0
    header: bool = True
    highpass_hz: float | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout {self.layout!r}: choose one of {', '.join(LAYOUTS)}")
        if self.fmt not in FORMATS:
            raise ValueError(f"format {self.fmt!r}: choose one of {', '.join(FORMATS)}")
        if self.naming not in NAMINGS:
            raise ValueError(f"naming {self.naming!r}: choose one of {', '.join(NAMINGS)}")
        if self.fmt == "svg" and self.augment is not None and self.augment.raster_only:
            raise ValueError("noise, rotation, blur and JPEG augmentations need --format png")

    def image_name(self, record_id: str) -> str:
        """``<id>.png`` (plain) or ``<id>-0.png`` (gem: GEM / PULSE's first-image naming)."""
        check_record_id(record_id)
        stem = f"{record_id}-0" if self.naming == "gem" else record_id
        return f"{stem}.{self.fmt}"

    def manifest_row(self, record_id: str, source: str) -> dict:
        w, h = page_size_px(page_layout(self.layout, self.header), self.dpi)
        return {"record_id": record_id, "image_path": self.image_name(record_id), "source": source,
                "layout": self.layout, "format": self.fmt, "dpi": self.dpi, "seed": self.seed,
                "augment": self.augment.spec() if self.augment else "none", "width_px": w, "height_px": h}


@dataclass
class RenderSummary:
    rendered: int
    skipped: int
    failed: int
    manifest_path: Path
    errors_path: Path


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _same_params(row: dict, want: dict) -> bool:
    keys = ("layout", "format", "dpi", "seed", "augment", "width_px", "height_px")
    return all(row.get(k) == want[k] for k in keys)


def render_ids(src, ids: list[str], out_dir: str | Path, options: RenderOptions,
               previous: dict[str, dict] | None = None) -> tuple[list[dict], list[ErrorRow], int]:
    """Render ``ids`` of the opened source ``src`` into ``out_dir`` (one chunk; what a flow task maps over).

    Returns (manifest rows, error rows, number skipped). An image already there is skipped unless
    ``options.overwrite`` or ``previous`` (the old manifest rows by id) says it was drawn differently.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    errors: list[ErrorRow] = []
    skipped = 0
    source_name = getattr(src, "name", "")
    for rid in ids:
        progress.tick()
        try:
            row = options.manifest_row(rid, source_name)
            target = out / row["image_path"]
            old = (previous or {}).get(rid)
            if target.exists() and not options.overwrite and (old is None or _same_params(old, row)):
                rows.append(row)
                skipped += 1
                continue
            record = src.read(rid)
        except Exception as exc:  # the source's reason code (or internal_error for a bug in the source)
            errors.append(error_row(rid, STAGE, exc))
            continue
        try:
            data = render_record(record, options.layout, options.dpi, options.fmt, options.header,
                                 options.augment, options.seed, options.highpass_hz)
            _write_atomic(target, data)
            rows.append(row)
        except RecordError as exc:
            errors.append(error_row(rid, STAGE, exc))
        except Exception as exc:  # a drawing failure for one record must not stop the batch
            errors.append(ErrorRow(rid, STAGE, "error", "render_failed", None, f"{type(exc).__name__}: {exc}"))
    return rows, errors, skipped


def render(source, root: str | Path | None, out_dir: str | Path, layout: str = "3x4+II", dpi: int = 200,
           fmt: str = "png", naming: str = "plain", augment: Augment | str | None = None, seed: int = 0,
           chunk_size: int = 200, overwrite: bool = False, header: bool = True,
           highpass_hz: float | None = None, ids: list[str] | None = None, limit: int | None = None,
           errors_path: str | Path | None = None, source_options: dict | None = None) -> RenderSummary:
    """Render every record of ``source`` (a registered name opened on ``root``, or an opened source).

    Writes ``out_dir/<id>.<fmt>`` (or ``<id>-0.<fmt>`` with ``naming='gem'``), ``out_dir/manifest.parquet``
    after every chunk, and the errors table (default ``out_dir/errors.parquet``). Records that fail get an
    error row (their source's reason code, or ``render_failed``) and the rest go on.
    """
    from pipeline.sources import open_source

    if isinstance(augment, str):
        augment = Augment.parse(augment)
    options = RenderOptions(layout=layout, dpi=int(dpi), fmt=fmt, naming=naming, augment=augment, seed=int(seed),
                            header=header, highpass_hz=highpass_hz, overwrite=overwrite)
    # the same window options as ingest and features, or the image would show another stretch of the record
    src = open_source(source, root if root is not None else ".", **(source_options or {})) \
        if isinstance(source, str) else source
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.parquet"
    errors_file = Path(errors_path) if errors_path else out / "errors.parquet"
    all_ids = list(ids) if ids is not None else list(src.ids())
    if limit is not None:
        all_ids = all_ids[:limit]

    previous = read_render_manifest(out)
    done: dict[str, dict] = dict(previous)
    errors: list[ErrorRow] = []
    rendered = skipped = 0
    with progress.track(STAGE, len(all_ids)):
        for chunk in chunks(all_ids, chunk_size):
            rows, errs, n_skip = render_ids(src, list(chunk), out, options, previous)
            merge_render_rows(done, rows, errs)
            errors.extend(errs)
            skipped += n_skip
            rendered += len(rows) - n_skip
            write_parquet_atomic(pl.DataFrame(list(done.values()), schema=MANIFEST_SCHEMA), manifest_path)
    write_render_tables(out, done, errors, all_ids, errors_file)
    return RenderSummary(rendered, skipped, len(errors), manifest_path, errors_file)


def read_render_manifest(out_dir: str | Path) -> dict[str, dict]:
    """The existing manifest rows by record id; rows whose image is gone are dropped (the manifest only
    lists images that exist)."""
    out = Path(out_dir)
    path = out / "manifest.parquet"
    if not path.exists():
        return {}
    try:
        frame = pl.read_parquet(path)
    except Exception as exc:  # damaged since it was written: rebuilt from the images (which are checked again)
        import logging

        logging.getLogger(__name__).warning("%s is unreadable (%s): rebuilding it", path, type(exc).__name__)
        return {}
    return {r["record_id"]: r for r in frame.iter_rows(named=True) if (out / r["image_path"]).exists()}


def merge_render_rows(done: dict[str, dict], rows: list[dict], errors: list[ErrorRow]) -> None:
    for e in errors:
        done.pop(e.record_id, None)  # a failed record has no valid image row any more
    for r in rows:
        done[r["record_id"]] = r


def write_render_tables(out_dir: str | Path, done: dict[str, dict], errors: list[ErrorRow], touched_ids,
                        errors_file: str | Path) -> None:
    """Write the manifest (every image there is) and the errors table, where this run's errors replace
    earlier errors of the ids it processed and errors of ids not processed now stay."""
    errors_file = Path(errors_file)
    write_parquet_atomic(pl.DataFrame(list(done.values()), schema=MANIFEST_SCHEMA),
                         Path(out_dir) / "manifest.parquet")
    from pipeline.inputs import parquet_readable

    # an earlier errors table damaged since: its rows are lost, this run's errors are written whole
    old_errors = pl.read_parquet(errors_file) if errors_file.exists() and parquet_readable(errors_file) \
        else errors_frame([])
    merged = pl.concat([old_errors.filter(~pl.col("record_id").is_in(list(touched_ids))), errors_frame(errors)])
    write_parquet_atomic(merged, errors_file)


def _run(args: argparse.Namespace) -> int:
    from pipeline.batch import collect_failures
    from pipeline.cli import finish, source_options_from
    from pipeline.preflight import check_out, open_checked

    options = source_options_from(args)
    try:
        augment = Augment.parse(args.augment)
    except ValueError as exc:
        raise ConfigError(f"--augment {args.augment!r}: {exc}") from exc
    check_out(args.out)
    src, _ = open_checked(args.source, args.root, **options)  # a table unusable as a whole: one line, exit 2
    summary = render(src, args.root, args.out, layout=args.layout, dpi=args.dpi, fmt=args.format,
                     naming=args.naming, augment=augment, seed=args.seed, chunk_size=args.chunk_size,
                     overwrite=args.overwrite, header=not args.no_header, highpass_hz=args.highpass,
                     limit=args.limit, errors_path=args.errors, source_options=options)
    payload = {"rendered": summary.rendered, "skipped": summary.skipped, "failed": summary.failed,
               "manifest_path": str(summary.manifest_path), "errors_path": str(summary.errors_path)}
    text = (f"render: {summary.rendered} rendered, {summary.skipped} skipped (already there), "
            f"{summary.failed} failed -> {summary.manifest_path} (errors: {summary.errors_path})")
    return finish(args, payload, text, collect_failures([summary.errors_path]))


def register(subparsers) -> None:
    """Add the ``render`` subcommand."""
    from pipeline.batch import DEFAULT_CHUNK_SIZE
    from pipeline.cli import add_source_args
    from pipeline.preflight import nonneg_int, positive_float, positive_int

    p = subparsers.add_parser(
        "render", help="draw 12-lead ECG images (PNG/SVG, 25 mm/s, 10 mm/mV)",
        description="Draw paper-style 12-lead ECG images (25 mm/s, 10 mm/mV, grid, calibration pulses) of every "
                    "record of a source into OUT/<record>.png, with OUT/manifest.parquet and an errors table. "
                    "Images already there are skipped unless they were drawn differently.\n\n"
                    "example:\n  ecg-grounding render --source ptbxl --root ../shared/data/ptbxl \\\n"
                    "      --out outputs/ptbxl/images --layout 12x1+II")
    add_source_args(p)
    p.add_argument("--out", required=True, help="output folder (images + manifest.parquet + errors.parquet)")
    p.add_argument("--layout", default="3x4+II", choices=LAYOUTS)
    p.add_argument("--dpi", type=positive_int, default=200)
    p.add_argument("--format", default="png", choices=FORMATS)
    p.add_argument("--naming", default="plain", choices=NAMINGS, help="gem: <record>-0.png (GEM / PULSE)")
    p.add_argument("--augment", default=None,
                   help="none | light | heavy | scan | 'grid=blue,bw,tint=0.3,noise=5,rotate=2,blur=1,jpeg=60'")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--highpass", type=positive_float, default=None, metavar="HZ",
                   help="baseline-wander high-pass (default off)")
    p.add_argument("--no-header", action="store_true", help="leave out the header line")
    p.add_argument("--chunk-size", type=positive_int, default=DEFAULT_CHUNK_SIZE,
                   help="records per chunk (default %(default)s)")
    p.add_argument("--limit", type=positive_int, default=None, help="render only the first N ids")
    p.add_argument("--overwrite", action="store_true", help="redraw images that already exist")
    p.add_argument("--errors", default=None, metavar="PATH",
                   help="errors table (default OUT/errors.parquet; a run uses DIR/errors/render.parquet)")
    p.set_defaults(func=_run)
