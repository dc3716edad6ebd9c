"""SVG backend: the same ``PageLayout`` written as vector graphics in millimetre user units.

ecg-plot 0.3.0's SVG lays panels out with gaps and its own calibration placement, so it cannot express the
3x4+II paper layout; this small writer draws exactly what the rasteriser draws.
"""
from __future__ import annotations

from xml.sax.saxutils import escape

import numpy as np

from pipeline.render_layout import PageLayout
from pipeline.render_raster import LABEL_HALO_MM, Colours


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#%02x%02x%02x" % rgb


def _points(pts: np.ndarray) -> str:
    return " ".join(f"{x:.3f},{y:.3f}" for x, y in pts)


def svg_page(layout: PageLayout, traces_mm: list[np.ndarray], colours: Colours, header_text: str | None,
             dpi: int) -> bytes:
    """One page as SVG bytes; ``width``/``height`` in mm, so a viewer prints it at 25 mm/s and 10 mm/mV."""
    w, h = layout.width_mm, layout.height_mm
    out: list[str] = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:.2f}mm" height="{h:.2f}mm" '
        f'viewBox="0 0 {w:.3f} {h:.3f}" data-dpi="{dpi}" data-layout="{escape(layout.name)}">',
        f'<rect x="0" y="0" width="{w:.3f}" height="{h:.3f}" fill="{_hex(colours.paper)}"/>',
    ]
    gl, gr, gt, gb = layout.grid_left_mm, layout.grid_right_mm, layout.grid_top_mm, layout.grid_bottom_mm
    for step, colour, width, cls in ((1.0, colours.minor, 0.08, "minor"), (5.0, colours.major, 0.16, "major")):
        xs, ys = layout.minor_lines_mm() if step == 1.0 else layout.major_lines_mm()
        d = "".join(f"M{x:.3f} {gt:.3f}V{gb:.3f}" for x in xs) + "".join(f"M{gl:.3f} {y:.3f}H{gr:.3f}" for y in ys)
        out.append(f'<path class="grid-{cls}" d="{d}" stroke="{_hex(colour)}" stroke-width="{width}" fill="none"/>')
    out.append("<defs>")
    for i, p in enumerate(layout.panels):
        out.append(f'<clipPath id="clip{i}"><rect x="{gl:.3f}" y="{p.clip_top_mm:.3f}" width="{gr - gl:.3f}" '
                   f'height="{p.clip_bottom_mm - p.clip_top_mm:.3f}"/></clipPath>')
    out.append("</defs>")
    stroke = f'stroke="{_hex(colours.trace)}" stroke-width="0.25" fill="none" stroke-linejoin="round"'
    for i, (p, pts) in enumerate(zip(layout.panels, traces_mm)):
        if len(pts) >= 2:
            out.append(f'<polyline class="trace" data-lead="{p.lead}" data-t0-s="{p.t0_s:g}" '
                       f'clip-path="url(#clip{i})" {stroke} points="{_points(pts)}"/>')
    for pulse in layout.pulses:
        out.append(f'<polyline class="calibration" {stroke} points="{_points(np.asarray(pulse.polyline_mm()))}"/>')
    for x, y0, y1 in layout.separators:
        out.append(f'<line class="separator" x1="{x:.3f}" y1="{y0:.3f}" x2="{x:.3f}" y2="{y1:.3f}" {stroke}/>')
    text = f'fill="{_hex(colours.text)}" font-family="DejaVu Sans, Arial, sans-serif" dominant-baseline="hanging"'
    halo = f'stroke="{_hex(colours.paper)}" stroke-width="{2 * LABEL_HALO_MM:g}" paint-order="stroke"'
    for p in layout.panels:  # the halo as render_raster draws it: legible where the trace runs through
        out.append(f'<text class="lead-label" x="{p.label_x_mm:.3f}" y="{p.label_y_mm:.3f}" '
                   f'font-size="{layout.label_size_mm}" {text} {halo}>{escape(p.lead)}</text>')
    if header_text and layout.header:
        out.append(f'<text class="header" xml:space="preserve" x="{gl:.3f}" y="{layout.header_y_mm:.3f}" '
                   f'font-size="{layout.header_size_mm}" {text}>{escape(header_text)}</text>')
    out.append("</svg>")
    return "\n".join(out).encode("utf-8")
