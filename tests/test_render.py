"""Render stage: scale, calibration, lead placement and rhythm-strip fidelity found in the rendered pixels;
determinism, manifest, CLI, gem naming and per-record errors on real WFDB files."""
from __future__ import annotations

import io
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import polars as pl
import pytest
from PIL import Image

from features.schema import ERRORS_SCHEMA
from pipeline.cli import main as cli_main
from pipeline.record import ECGRecord, LEADS, Provenance, RecordError, RecordMeta
from pipeline.render import MANIFEST_SCHEMA, render, render_record
from pipeline.render_augment import Augment
from pipeline.render_layout import LAYOUTS, page_layout, page_size_px
from pipeline.render_raster import trace_width_px
from conftest import shared_path

FS = 500


def make_record(signal_mv: np.ndarray, record_id: str = "constructed") -> ECGRecord:
    meta = RecordMeta(
        record_id=record_id, source="test", n_samples=signal_mv.shape[1],
        provenance=Provenance(path=record_id, files=[], sha256="", original_fs_hz=FS,
                              original_lead_names=list(LEADS), original_units=["mV"] * 12,
                              original_n_samples=signal_mv.shape[1]),
    )
    return ECGRecord(meta, signal_mv.astype(np.float32))


def lead_heights_mv() -> np.ndarray:
    """A distinct pulse height per lead: 0.25, 0.35, ... 1.35 mV (1 mm apart on paper)."""
    return 0.25 + 0.1 * np.arange(12)


def pulse_record() -> ECGRecord:
    """Lead k: 80-ms rectangular pulses of lead_heights_mv()[k] every 0.5 s starting at 0.25 s."""
    t = np.arange(10 * FS) / FS
    on = ((t - 0.25) % 0.5) < 0.08
    sig = np.zeros((12, t.size))
    for k, h in enumerate(lead_heights_mv()):
        sig[k, on] = h
    return make_record(sig, "pulses")


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)


def ink(rgb: np.ndarray) -> np.ndarray:
    """Trace / text pixels: black (the grid is pink / red, the paper white)."""
    return rgb.max(axis=2) < 60


def clusters(idx: np.ndarray) -> list[float]:
    """Centres of runs of consecutive integers."""
    if idx.size == 0:
        return []
    breaks = np.where(np.diff(idx) > 1)[0]
    starts = np.r_[idx[0], idx[breaks + 1]]
    ends = np.r_[idx[breaks], idx[-1]]
    return [(a + b) / 2 for a, b in zip(starts, ends)]


@pytest.mark.parametrize("dpi", [100, 200, 300])
def test_calibration_pulse_is_1mv_10mm_and_0_2s_5mm_on_every_row(dpi):
    k = dpi / 25.4
    page = page_layout("3x4+II")
    png = render_record(pulse_record(), dpi=dpi)
    rgb = pixels(png)
    assert rgb.shape[1::-1] == page_size_px(page, dpi)
    black = ink(rgb)
    # The calibration area: between the grid's left edge and the first trace sample.
    c0, c1 = round(page.grid_left_mm * k), round(page.x0_mm * k) - 1
    r0, r1 = round(page.grid_top_mm * k), round(page.grid_bottom_mm * k)
    area = np.zeros_like(black)
    area[r0:r1, c0:c1] = black[r0:r1, c0:c1]  # leave out the header text above the grid
    col_counts = area.sum(axis=0)
    edges = clusters(np.where(col_counts >= 0.8 * 10 * k * 4)[0])
    assert len(edges) == 2
    assert abs((edges[1] - edges[0]) - 5 * k) <= 1.0  # 0.2 s = 5 mm
    # Pulse tops: rows where the 5-mm top stroke is inked; baselines: ink left of the rising edge.
    between = area[:, int(edges[0]) + 2:int(edges[1]) - 1]
    tops = clusters(np.where(between.all(axis=1))[0])
    left = area[:, c0:int(edges[0]) - 1]
    bases = clusters(np.where(left.sum(axis=1) >= 0.5 * 1.5 * k)[0])
    assert len(tops) == len(bases) == len({p.row for p in page.panels}) == 4
    for top, base, pulse in zip(tops, bases, page.pulses):
        assert abs((base - top) - 10 * k) <= 1.0  # 1 mV = 10 mm
        assert abs(base - pulse.baseline_mm * k) <= 1.0


@pytest.mark.parametrize("dpi", [100, 200])
def test_grid_is_1mm_and_5mm_and_one_second_is_25mm(dpi):
    k = dpi / 25.4
    page = page_layout("3x4+II")
    rgb = pixels(render_record(pulse_record(), dpi=dpi))
    major = np.all(rgb == (232, 128, 128), axis=2)
    minor = np.all(rgb == (250, 206, 206), axis=2)
    # Horizontal scan 4.3 mm below the first baseline: no trace, label or lead-change tick there.
    y = round((page.panels[0].baseline_mm + 4.3) * k)
    x_lo, x_hi = round(page.x0_mm * k) - 2, round((page.x0_mm + 250) * k) + 3
    xs = clusters(np.where(major[y, x_lo:x_hi])[0] + x_lo)
    assert len(xs) == 51  # 0..250 mm in 5-mm steps
    expect = page.x0_mm * k + np.arange(51) * 5 * k
    assert np.max(np.abs(np.array(xs) - expect)) <= 1.0
    minor_xs = clusters(np.where(minor[y, x_lo:x_hi] | major[y, x_lo:x_hi])[0] + x_lo)
    assert len(minor_xs) == 251 and np.max(np.abs(np.diff(minor_xs) - k)) <= 1.0
    # Vertical scan left of the calibration pulses: major lines every 5 mm through the baselines.
    x = round((page.grid_left_mm + 0.6) * k)
    ys = np.array(clusters(np.where(major[:, x])[0]))
    assert np.max(np.abs(np.diff(ys) - 5 * k)) <= 1.0
    assert np.min(np.abs(ys - page.panels[0].baseline_mm * k)) <= 1.0
    # 1 s = 25 mm: the pulses of lead II in the rhythm strip start every 0.5 s = 12.5 mm.
    strip = page.panel("II", rhythm=True)
    top_y = round((strip.baseline_mm - 10 * lead_heights_mv()[1]) * k)
    on = ink(rgb)[top_y - 1:top_y + 2, :].any(axis=0)
    starts = np.where(on[1:] & ~on[:-1])[0] + 1
    starts = starts[starts >= round(page.x0_mm * k) - 1]  # not the calibration pulse
    t_s = 0.25 + 0.5 * np.arange(20)
    assert len(starts) == 20
    # The square pen reaches pen // 2 pixels left of the stroke's position.
    expect = (page.x0_mm + t_s * 25) * k - trace_width_px(dpi) // 2
    assert np.max(np.abs(starts - expect)) <= 1.0


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_lead_is_where_its_label_says(layout):
    k = 200 / 25.4
    page = page_layout(layout)
    rgb = pixels(render_record(pulse_record(), layout=layout))
    black = ink(rgb)
    heights = lead_heights_mv()
    for p in page.panels:
        # The label's ink is where the layout puts it.
        lx, ly = round(p.label_x_mm * k), round(p.label_y_mm * k)
        assert black[ly:ly + round(3.5 * k), lx:lx + round(2 * k)].any(), (layout, p.lead)
        # Trace height in the cell (right of the label): topmost ink above the baseline.
        x0, x1 = round((p.x_mm + 12) * k), round((p.x_mm + p.width_mm - 1) * k)
        base = round(p.baseline_mm * k)
        band = black[base - round(16 * k):base + round(2 * k), x0:x1]
        top_rows = np.argmax(band, axis=0)[band.any(axis=0)]
        # Baseline = the commonest top-of-ink row (pulses fill 16 % of the time); pulse top = the highest.
        baseline_row = np.bincount(top_rows).argmax()
        measured_px = baseline_row - top_rows.min()
        expected_px = heights[LEADS.index(p.lead)] * 10 * k
        assert abs(measured_px - expected_px) <= 1.0, (layout, p.lead, measured_px, expected_px)


def ink_midlines(black: np.ndarray, cols: np.ndarray, top: int, bottom: int) -> np.ndarray:
    """Per pixel column, the middle of the ink's vertical extent within rows [top, bottom) (NaN if none)."""
    band = black[top:bottom][:, cols]
    has = band.any(axis=0)
    first = np.argmax(band, axis=0)
    last = band.shape[0] - 1 - np.argmax(band[::-1], axis=0)
    return np.where(has, top + (first + last) / 2.0, np.nan)


def polyline_midlines(x_px: np.ndarray, y_px: np.ndarray, cols: np.ndarray, pen: int) -> np.ndarray:
    """Per pixel column, the middle of the vertical extent a ``pen``-wide polyline covers there.

    Vertices are rounded as the rasteriser rounds them; a polyline column holds its own vertices and the
    points where the segments to the neighbouring columns cross its edges (half-way between vertices). The
    square pen reaches ``pen // 2`` columns left and the rest right, so ink column c shows polyline columns
    c - (pen - 1 - pen // 2) .. c + pen // 2, and its rows are shifted by the same -pen // 2 (constant).
    """
    xv, yv = np.rint(x_px).astype(int), np.rint(y_px)
    lo_c, hi_c = int(xv.min()), int(xv.max())
    by_col = {c: yv[(xv == c)] for c in range(lo_c - 1, hi_c + 2)}
    ext: dict[int, tuple[float, float]] = {}
    for c in range(lo_c, hi_c + 1):
        here, before, after = by_col[c], by_col[c - 1], by_col[c + 1]
        ys = list(here)
        if here.size and before.size:
            ys.append((before[-1] + here[0]) / 2)
        if here.size and after.size:
            ys.append((here[-1] + after[0]) / 2)
        if ys:
            ext[c] = (min(ys), max(ys))
    out = np.full(cols.size, np.nan)
    shift = pen // 2
    for j, c in enumerate(cols):
        spans = [ext[q] for q in range(c - (pen - 1 - shift), c + shift + 1) if q in ext]
        if spans:
            out[j] = (min(a for a, _ in spans) + max(b for _, b in spans)) / 2 + (pen - 1) / 2 - shift
    return out


@pytest.mark.parametrize("source, folder, record_id, layout", [
    ("ptbxl", "ptbxl", "06000", "3x4+II"),        # normal sinus rhythm
    ("ptbxl", "ptbxl", "06000", "12x1+II"),
    ("ludb", "ludb", "95", "3x4+II"),             # atrial fibrillation
    ("wfdb", "ptbdb", "s0010_re", "12x1+II"),     # 1000 Hz, 15 channels, resampled by the source
])
def test_rhythm_strip_matches_lead_ii_of_a_real_record(source, folder, record_id, layout):
    from pipeline.sources import open_source

    record = open_source(source, shared_path("data", folder)).read(record_id)
    k = 200 / 25.4
    page = page_layout(layout)
    strip = page.panel("II", rhythm=True)
    black = ink(pixels(render_record(record, layout=layout)))
    cols = np.arange(round((strip.x_mm + 12) * k), round((strip.x_mm + strip.width_mm - 1) * k))
    drawn = ink_midlines(black, cols, round(strip.cell_top_mm * k), round(strip.clip_bottom_mm * k))
    # What lead II should look like there: 25 mm/s, 10 mm/mV, baseline at the segment's median.
    ii = record.lead("II").astype(np.float64)
    x_px = (strip.x_mm + np.arange(ii.size) / FS * 25) * k
    y_px = (strip.baseline_mm - (ii - np.median(ii)) * 10) * k
    expect = polyline_midlines(x_px, y_px, cols, trace_width_px(200))
    ok = ~np.isnan(drawn) & ~np.isnan(expect)
    assert ok.mean() > 0.99
    r = np.corrcoef(drawn[ok], expect[ok])[0, 1]
    assert r > 0.99, r
    assert np.median(np.abs(drawn[ok] - expect[ok])) <= 1.0  # and on the right scale and baseline
    assert np.percentile(np.abs(drawn[ok] - expect[ok]), 99) <= 2.0


def test_svg_has_the_same_geometry():
    page = page_layout("3x4+II")
    svg = render_record(pulse_record(), fmt="svg")
    root = ET.fromstring(svg)
    ns = {"s": "http://www.w3.org/2000/svg"}
    assert root.get("width") == f"{page.width_mm:.2f}mm"
    traces = root.findall("s:polyline[@class='trace']", ns)
    assert [t.get("data-lead") for t in traces] == [p.lead for p in page.panels]
    strip = [t for t in traces if t.get("data-lead") == "II"][-1]
    pts = np.array([[float(v) for v in xy.split(",")] for xy in strip.get("points").split()])
    assert pts[0, 0] == pytest.approx(page.x0_mm) and pts[-1, 0] == pytest.approx(page.x0_mm + 250, abs=0.06)
    assert pts[:, 1].min() == pytest.approx(page.panel("II", True).baseline_mm - 10 * lead_heights_mv()[1], abs=1e-3)
    cal = root.findall("s:polyline[@class='calibration']", ns)
    assert len(cal) == 4
    c = np.array([[float(v) for v in xy.split(",")] for xy in cal[0].get("points").split()])
    assert c[:, 1].max() - c[:, 1].min() == pytest.approx(10.0)
    assert c[3, 0] - c[2, 0] == pytest.approx(5.0)
    labels = [t.text for t in root.findall("s:text[@class='lead-label']", ns)]
    assert labels == [p.lead for p in page.panels]


def test_augmentations_are_deterministic_by_seed():
    rec = pulse_record()
    heavy = Augment.parse("heavy")
    a, b = render_record(rec, dpi=100, augment=heavy, seed=3), render_record(rec, dpi=100, augment=heavy, seed=3)
    assert a == b
    assert render_record(rec, dpi=100, augment=heavy, seed=4) != a
    plain = render_record(rec, dpi=100)
    assert render_record(rec, dpi=100, seed=9) == plain  # without augmentation the seed changes nothing
    assert pixels(a).shape == pixels(plain).shape
    bw = pixels(render_record(rec, dpi=100, augment=Augment.parse("bw,noise=5")))
    assert np.array_equal(bw[..., 0], bw[..., 1]) and np.array_equal(bw[..., 1], bw[..., 2])
    blue = pixels(render_record(rec, dpi=100, augment=Augment(grid="blue")))
    assert np.all(blue == (120, 160, 225), axis=2).sum() > 2_000  # blue major grid lines
    assert Augment.parse(Augment.parse("grid=green,tint=0.3,rotate=2,jpeg=60").spec()) == \
        Augment(grid="green", tint=0.3, rotate_deg=2.0, jpeg_quality=60)
    with pytest.raises(ValueError):
        Augment.parse("sparkle=1")
    with pytest.raises(ValueError):
        render_record(rec, fmt="svg", augment=heavy)


def test_unrenderable_record_raises_render_failed():
    sig = np.zeros((12, 5000))
    sig[4, 100] = np.nan
    with pytest.raises(RecordError) as err:
        render_record(make_record(sig, "hole"))
    assert err.value.code == "render_failed" and err.value.lead == "aVL"


def test_cli_gem_naming_manifest_and_idempotency(tmp_path):
    root = shared_path("data", "ptbxl")
    out = tmp_path / "images"
    argv = ["render", "--source", "ptbxl", "--root", str(root), "--out", str(out), "--naming", "gem",
            "--limit", "3", "--dpi", "100", "--seed", "7"]
    assert cli_main(argv) == 0
    manifest = pl.read_parquet(out / "manifest.parquet")
    assert manifest.schema == pl.Schema(MANIFEST_SCHEMA)
    assert manifest["record_id"].to_list() == ["06000", "06001", "06002"]
    assert manifest["image_path"].to_list() == ["06000-0.png", "06001-0.png", "06002-0.png"]
    for row in manifest.iter_rows(named=True):
        with Image.open(out / row["image_path"]) as im:
            assert im.size == (row["width_px"], row["height_px"])
            assert round(im.info["dpi"][0]) == 100
        assert (row["layout"], row["dpi"], row["seed"], row["augment"]) == ("3x4+II", 100, 7, "none")
    assert pl.read_parquet(out / "errors.parquet").height == 0
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    assert cli_main(argv) == 0  # a second run skips what is there
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")} == mtimes
    assert pl.read_parquet(out / "manifest.parquet").height == 3
    assert cli_main(argv + ["--overwrite"]) == 0
    assert all(p.stat().st_mtime_ns != mtimes[p.name] for p in out.glob("*.png"))
    # Asked for another dpi, the images are redrawn even without --overwrite: the manifest says they differ.
    assert cli_main(argv[:-3] + ["120", "--seed", "7"]) == 0
    manifest = pl.read_parquet(out / "manifest.parquet")
    assert manifest["dpi"].to_list() == [120] * 3
    with Image.open(out / "06000-0.png") as im:
        assert im.size == (manifest["width_px"][0], manifest["height_px"][0]) == (1320, 1020)
    assert cli_main(argv[:-6] + ["--layout", "12x1", "--format", "svg", "--limit", "1"]) == 0
    assert (out / "06000-0.svg").exists()  # gem naming, svg suffix


def test_broken_record_gets_an_error_row_while_the_rest_render(tmp_path):
    src = shared_path("data", "ptbxl", "records500", "06000")
    data = tmp_path / "wfdb"
    data.mkdir()
    for rid in ("06000_hr", "06001_hr", "06002_hr"):
        for ext in (".hea", ".dat"):
            shutil.copy(src / f"{rid}{ext}", data / f"{rid}{ext}")
    dat = (data / "06001_hr.dat").read_bytes()
    (data / "06001_hr.dat").write_bytes(dat[: len(dat) // 3])  # truncated signal file
    out = tmp_path / "out"
    summary = render("wfdb", data, out, dpi=100, layout="6x2")
    assert (summary.rendered, summary.failed) == (2, 1)
    assert sorted(p.name for p in out.glob("*.png")) == ["06000_hr.png", "06002_hr.png"]
    errors = pl.read_parquet(out / "errors.parquet")
    assert errors.schema == pl.Schema(ERRORS_SCHEMA)
    assert errors.select("record_id", "stage", "severity", "code").rows() == \
        [("06001_hr", "render", "error", "truncated_signal")]
    assert pl.read_parquet(out / "manifest.parquet")["record_id"].to_list() == ["06000_hr", "06002_hr"]


class _HoleySource:
    """The PTB-XL source with one record whose aVL holds a NaN (sources reject those; a bug might not)."""

    name = "ptbxl"

    def __init__(self):
        from pipeline.sources import open_source

        self.inner = open_source("ptbxl", shared_path("data", "ptbxl"))

    def ids(self):
        return self.inner.ids()[:3]

    def read(self, record_id):
        rec = self.inner.read(record_id)
        if record_id == "06001":
            rec.signal_mv[4, 2000] = np.nan
        return rec


def test_undrawable_record_is_a_render_failed_row_and_chunks_go_on(tmp_path):
    summary = render(_HoleySource(), None, tmp_path, dpi=100, chunk_size=1, naming="gem")
    assert (summary.rendered, summary.failed) == (2, 1)
    errors = pl.read_parquet(summary.errors_path)
    assert errors.select("record_id", "code", "lead").rows() == [("06001", "render_failed", "aVL")]
    manifest = pl.read_parquet(summary.manifest_path)
    assert manifest["image_path"].to_list() == ["06000-0.png", "06002-0.png"]
    assert manifest["source"].to_list() == ["ptbxl", "ptbxl"]


def test_huge_complexes_overlap_the_neighbour_row_and_are_clipped_there():
    k = 200 / 25.4
    sig = np.zeros((12, 5000))
    sig[LEADS.index("V1"), 1000:1020] = 6.0    # 60 mm up: far past its 18-mm row
    sig[LEADS.index("V1"), 3000:3020] = -6.0
    page = page_layout("12x1")
    p = page.panel("V1")
    black = ink(pixels(render_record(make_record(sig, "huge"), layout="12x1")))
    for t_s, edge_mm, cell_edge_mm in ((2.0, p.clip_top_mm, p.cell_top_mm), (6.0, p.clip_bottom_mm, p.cell_bottom_mm)):
        cols = slice(round((p.x_mm + t_s * 25 - 1) * k), round((p.x_mm + t_s * 25 + 2) * k))
        lo, hi = sorted((round((edge_mm + np.sign(edge_mm - p.baseline_mm) * 4) * k), round(p.baseline_mm * k)))
        inked = black[lo:hi, cols].any(axis=1)
        rows = np.where(inked)[0] + lo
        # A continuous stroke from the baseline through the neighbour's cell edge, ending at the clip band.
        far = rows.min() if edge_mm < p.baseline_mm else rows.max()
        assert abs(far - edge_mm * k) <= 1.5, (t_s, far, edge_mm * k)
        span = np.arange(*sorted((round(cell_edge_mm * k), round(edge_mm * k))))
        assert black[span][:, cols].any(axis=1).all()


def test_header_says_when_amplitudes_are_not_calibrated(shared_dir):
    """LUDB scales every lead to the same peak-to-peak: its page must not claim 10 mm/mV."""
    from pipeline.render import header_line
    from pipeline.sources import open_source

    ludb = open_source("ludb", shared_dir / "data" / "ludb")
    head = header_line(ludb.read(ludb.ids()[0]), None)
    assert "mm/mV" not in head and "amplitudes not calibrated (amplitude_normalised)" in head
    ptbxl = open_source("ptbxl", shared_dir / "data" / "ptbxl")
    assert "10 mm/mV" in header_line(ptbxl.read(ptbxl.ids()[0]), None)


def test_a_lead_label_stays_legible_where_the_trace_runs_through_it():
    """Labels sit above the baseline, where a tall R wave or a raised level runs (LUDB 60: lead I's label stood on
    its first R wave and could not be seen): each glyph is drawn with a paper-coloured rim, so no trace pixel
    touches a label pixel; the SVG carries the same halo."""
    from pipeline.render_raster import PAPER, TEXT, TRACE

    sig = np.zeros((12, 10 * FS))
    sig[:, : FS // 2] = 0.7  # every lead 7 mm above its baseline for 0.5 s: through the labels (9 to 5.5 mm above)
    png = render_record(make_record(sig), header=False)
    idx = np.asarray(Image.open(io.BytesIO(png)))  # palette indices, as drawn
    layout = page_layout("3x4+II", header=False)
    k = 200 / 25.4
    first = layout.panels[0]
    x0, y0 = round(first.label_x_mm * k), round(first.label_y_mm * k)
    box = idx[y0:y0 + round(layout.label_size_mm * k) + 4, x0:x0 + round(3 * k)]
    text = box == TEXT
    assert text.sum() > 20 and (box == TRACE).any()  # the glyph, and the trace crossing its box
    near = np.zeros_like(text)  # every pixel next to a glyph pixel (8-neighbourhood)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            near |= np.roll(np.roll(text, dy, axis=0), dx, axis=1)
    assert not (near & (box == TRACE)).any()
    assert (near & (box == PAPER)).any()
    svg = render_record(make_record(sig), fmt="svg").decode()
    assert 'class="lead-label"' in svg and 'paint-order="stroke"' in svg
