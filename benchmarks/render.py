"""Render benchmark: ms per 12-lead image at 200 dpi on one core, our PNG path vs ecg-plot 0.3.0's, and
memory over many images.

    .venv/bin/python benchmarks/render.py [--n 2000] [--ecgplot 3]

Prints figures; asserts nothing. Uses the PTB-XL records in ../shared (the real signals the pipeline
draws); ecg-plot's PNG path needs cairosvg (it converts its SVG with CairoSVG).
"""
from __future__ import annotations

import os

# One core, as the brief measures it: pin before numpy / BLAS start their thread pools.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")
try:
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
except (AttributeError, OSError):  # pragma: no cover - not Linux
    pass

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import features  # noqa: E402,F401  (import order: see pipeline/render.py)
from pipeline.record import LEADS  # noqa: E402
from pipeline.render import render_record  # noqa: E402
from pipeline.render_layout import LAYOUTS  # noqa: E402
from pipeline.sources import open_source  # noqa: E402


def rss_mib() -> float:
    """Current resident set size in MiB (Linux /proc)."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def load_records():
    root = Path(os.environ.get("ECG_SHARED_DIR", REPO.parent / "shared")) / "data" / "ptbxl"
    src = open_source("ptbxl", root)
    return [src.read(rid) for rid in src.ids()]


def time_ours(records, layout: str, reps: int) -> tuple[list[float], list[float]]:
    """(wall ms, CPU ms) per image. CPU time is this process's own work: on a shared machine the wall
    time also holds the waits for the core."""
    render_record(records[0], layout=layout)  # warm the grid cache and fonts, as a batch run does
    wall, cpu = [], []
    for i in range(reps):
        rec = records[i % len(records)]
        t0, c0 = time.perf_counter(), time.process_time()
        render_record(rec, layout=layout, dpi=200)
        wall.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    return wall, cpu


def time_ecgplot(records, n: int):
    """ecg-plot 0.3.0's 3x4+II-like chart ('12lead', sequential, lead-II rhythm): PNG via CairoSVG, and
    via its Matplotlib adapter (Agg) for reference."""
    try:
        import cairosvg  # noqa: F401
        import ecg_plot
    except (ImportError, OSError) as exc:
        print(f"ecg-plot PNG path unavailable: {exc}")
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    cairo_ms, agg_ms, cairo_cpu, agg_cpu = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            rec = records[i % len(records)]
            t0, c0 = time.perf_counter(), time.process_time()
            chart = ecg_plot.plot(rec.signal_mv, sample_rate=500, lead_names=list(LEADS), layout="12lead",
                                  time_mode="sequential", rhythm_lead="II")
            chart.save(Path(tmp) / f"{i}.png", dpi=200)
            cairo_ms.append((time.perf_counter() - t0) * 1000)
            cairo_cpu.append((time.process_time() - c0) * 1000)
            t0, c0 = time.perf_counter(), time.process_time()
            chart = ecg_plot.plot(rec.signal_mv, sample_rate=500, lead_names=list(LEADS), layout="12lead",
                                  time_mode="sequential", rhythm_lead="II")
            fig, _ = chart.to_matplotlib()
            FigureCanvasAgg(fig)
            fig.savefig(Path(tmp) / f"{i}-agg.png", dpi=200)
            agg_ms.append((time.perf_counter() - t0) * 1000)
            agg_cpu.append((time.process_time() - c0) * 1000)
    return (cairo_ms, cairo_cpu), (agg_ms, agg_cpu)


def summary(times: tuple[list[float], list[float]]) -> str:
    wall, cpu = times
    return (f"wall median {statistics.median(wall):7.1f} ms  mean {statistics.fmean(wall):7.1f} ms | "
            f"CPU median {statistics.median(cpu):7.1f} ms  (n={len(wall)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="images for the memory run")
    ap.add_argument("--reps", type=int, default=40, help="images per layout for the timing")
    ap.add_argument("--ecgplot", type=int, default=3, help="images through ecg-plot's PNG path")
    args = ap.parse_args()

    print(f"cpu affinity: {sorted(os.sched_getaffinity(0))}  load avg: {os.getloadavg()[0]:.2f}")
    records = load_records()
    print(f"records: {len(records)} PTB-XL, 10 s, 500 Hz")
    print("== ours (numpy/PIL rasteriser, PNG, 200 dpi)")
    for layout in LAYOUTS:
        print(f"  {layout:8s} {summary(time_ours(records, layout, args.reps))}")
    print("== ecg-plot 0.3.0 ('12lead' sequential + II rhythm, 200 dpi)")
    res = time_ecgplot(records, args.ecgplot)
    if res:
        print(f"  PNG via CairoSVG   {summary(res[0])}")
        print(f"  PNG via Matplotlib {summary(res[1])}")

    print(f"== memory over {args.n} images (3x4+II, 200 dpi)")
    print(f"  RSS at start:        {rss_mib():7.1f} MiB")
    t0 = time.perf_counter()
    for i in range(args.n):
        render_record(records[i % len(records)], layout="3x4+II", dpi=200)
        if i + 1 == args.n // 2:
            print(f"  RSS after {i + 1:5d}:     {rss_mib():7.1f} MiB")
    elapsed = time.perf_counter() - t0
    print(f"  RSS after {args.n:5d}:     {rss_mib():7.1f} MiB   ({elapsed / args.n * 1000:.1f} ms/image over the run)")


if __name__ == "__main__":
    main()
