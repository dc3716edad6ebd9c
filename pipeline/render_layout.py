"""Page geometry of a 12-lead ECG printout, in millimetres (origin top-left, y down).

Every drawing backend (the PIL rasteriser, the SVG writer) and the tests read the same ``PageLayout``, so
the layout and the calibration are defined once: 25 mm/s, 10 mm/mV, a 1-mV x 0.2-s calibration pulse at
the start of every row, 1-mm and 5-mm grid lines aligned with the trace origin and the row baselines.

Layouts (all for a 10-s record):
- ``3x4+II``: four 2.5-s columns (I/II/III, aVR/aVL/aVF, V1-V3, V4-V6) in time sequence - column c shows
  seconds 2.5c..2.5(c+1) - plus a 10-s lead-II rhythm strip (the clinical standard);
- ``6x2``: two 5-s columns (limb leads seconds 0-5, chest leads seconds 5-10);
- ``12x1``: each lead its full 10 s on its own row; ``12x1+II`` adds a lead-II rhythm strip.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

MM_PER_INCH = 25.4
SPEED_MM_PER_S = 25.0
GAIN_MM_PER_MV = 10.0
DURATION_S = 10.0

PAGE_WIDTH_MM = 279.4      # 11 in, landscape letter like ECG-Image-Kit
MIN_PAGE_HEIGHT_MM = 215.9  # 8.5 in; taller when a layout needs it
CAL_AREA_MM = 10.0          # left of the traces: the calibration pulse lives here
CAL_PULSE_WIDTH_MM = 0.2 * SPEED_MM_PER_S   # 0.2 s = 5 mm
CAL_PULSE_HEIGHT_MM = 1.0 * GAIN_MM_PER_MV  # 1 mV = 10 mm
HEADER_MM = 14.0
TOP_MARGIN_MM = 6.0
BOTTOM_MARGIN_MM = 6.0
# Large complexes may run this far past their own cell into the neighbouring row, as on paper, and are
# clipped there (a flat top like a saturated recorder), so nothing is cut right at a cell edge.
OVERLAP_MM = 15.0

LAYOUTS = ("3x4+II", "12x1", "12x1+II", "6x2")

_COLUMNS = {
    "3x4+II": [("I", "II", "III"), ("aVR", "aVL", "aVF"), ("V1", "V2", "V3"), ("V4", "V5", "V6")],
    "6x2": [("I", "II", "III", "aVR", "aVL", "aVF"), ("V1", "V2", "V3", "V4", "V5", "V6")],
    "12x1": [("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")],
    "12x1+II": [("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")],
}
_RHYTHM = {"3x4+II": "II", "12x1+II": "II", "6x2": None, "12x1": None}
# Row pitch (mm between baselines) and baseline offset below the cell top, per layout. Multiples of the
# 1-mm grid so every baseline sits on a grid line.
_PITCH_MM = {"3x4+II": 45.0, "6x2": 30.0, "12x1": 18.0, "12x1+II": 18.0}
_BASE_MM = {"3x4+II": 25.0, "6x2": 15.0, "12x1": 10.0, "12x1+II": 10.0}


@dataclass(frozen=True)
class Panel:
    """One lead's trace: seconds ``t0_s``..``t1_s`` drawn from ``x_mm`` on the baseline ``baseline_mm``."""

    lead: str
    row: int
    col: int
    t0_s: float
    t1_s: float
    x_mm: float
    width_mm: float
    baseline_mm: float
    cell_top_mm: float
    cell_bottom_mm: float
    clip_top_mm: float      # traces are clipped to [clip_top_mm, clip_bottom_mm]
    clip_bottom_mm: float
    label_x_mm: float       # lead label: left edge and top of its text
    label_y_mm: float
    rhythm: bool = False


@dataclass(frozen=True)
class CalPulse:
    """A 1-mV calibration pulse: rises at ``x_rise_mm``, falls at ``x_fall_mm``, on ``baseline_mm``."""

    row: int
    x_start_mm: float
    x_rise_mm: float
    x_fall_mm: float
    x_end_mm: float
    baseline_mm: float
    top_mm: float

    def polyline_mm(self) -> list[tuple[float, float]]:
        b, t = self.baseline_mm, self.top_mm
        return [(self.x_start_mm, b), (self.x_rise_mm, b), (self.x_rise_mm, t), (self.x_fall_mm, t),
                (self.x_fall_mm, b), (self.x_end_mm, b)]


@dataclass(frozen=True)
class PageLayout:
    """Everything a backend needs to draw one page, in mm."""

    name: str
    width_mm: float
    height_mm: float
    header: bool
    header_y_mm: float          # top of the header text line
    grid_left_mm: float
    grid_right_mm: float
    grid_top_mm: float
    grid_bottom_mm: float
    x0_mm: float                # where second 0 of every first-column trace sits
    panels: tuple[Panel, ...]
    pulses: tuple[CalPulse, ...]
    separators: tuple[tuple[float, float, float], ...] = field(default=())  # (x_mm, y0_mm, y1_mm) lead-change ticks
    label_size_mm: float = 3.5
    header_size_mm: float = 3.2

    def minor_lines_mm(self) -> tuple[list[float], list[float]]:
        """x and y positions (mm) of every 1-mm grid line, aligned with ``x0_mm`` and the baselines."""
        return _grid_positions(self, 1.0)

    def major_lines_mm(self) -> tuple[list[float], list[float]]:
        """x and y positions (mm) of every 5-mm grid line."""
        return _grid_positions(self, 5.0)

    def panel(self, lead: str, rhythm: bool = False) -> Panel:
        for p in self.panels:
            if p.lead == lead and p.rhythm == rhythm:
                return p
        raise KeyError(f"no {'rhythm ' if rhythm else ''}panel for lead {lead} in layout {self.name}")


def _grid_positions(page: PageLayout, step_mm: float) -> tuple[list[float], list[float]]:
    # Anchor the grid at the trace origin (x) and the first baseline (y) so 0 s and 0 mV lie on major lines.
    ax, ay = page.x0_mm, page.panels[0].baseline_mm
    xs, ys = [], []
    k = -int((ax - page.grid_left_mm) // step_mm)
    while ax + k * step_mm <= page.grid_right_mm + 1e-9:
        xs.append(ax + k * step_mm)
        k += 1
    k = -int((ay - page.grid_top_mm) // step_mm)
    while ay + k * step_mm <= page.grid_bottom_mm + 1e-9:
        ys.append(ay + k * step_mm)
        k += 1
    return xs, ys


@lru_cache(maxsize=16)
def page_layout(name: str = "3x4+II", header: bool = True) -> PageLayout:
    """The page geometry (mm) of layout ``name`` for a 10-s record; ``header`` reserves the header line."""
    if name not in _COLUMNS:
        raise ValueError(f"unknown layout {name!r}; choose one of {', '.join(LAYOUTS)}")
    columns = _COLUMNS[name]
    rhythm_lead = _RHYTHM[name]
    n_rows = len(columns[0]) + (1 if rhythm_lead else 0)
    pitch, base = _PITCH_MM[name], _BASE_MM[name]
    col_s = DURATION_S / len(columns)
    col_mm = col_s * SPEED_MM_PER_S

    top = TOP_MARGIN_MM + (HEADER_MM if header else 0.0)
    rows_mm = n_rows * pitch
    height = max(MIN_PAGE_HEIGHT_MM, top + rows_mm + BOTTOM_MARGIN_MM)
    grid_top = top
    grid_bottom = height - BOTTOM_MARGIN_MM
    # Rows sit at the bottom of the grid; spare height goes to the first row's headroom.
    first_cell_top = grid_bottom - rows_mm
    content_mm = CAL_AREA_MM + DURATION_S * SPEED_MM_PER_S
    grid_left = (PAGE_WIDTH_MM - content_mm) / 2.0
    x0 = grid_left + CAL_AREA_MM

    panels: list[Panel] = []
    pulses: list[CalPulse] = []
    separators: list[tuple[float, float, float]] = []
    for row in range(n_rows):
        cell_top = first_cell_top + row * pitch
        cell_bottom = cell_top + pitch
        baseline = cell_top + base
        clip_top = max(grid_top, (grid_top if row == 0 else cell_top - OVERLAP_MM))
        clip_bottom = min(grid_bottom, cell_bottom + OVERLAP_MM)
        is_rhythm = rhythm_lead is not None and row == n_rows - 1
        leads = [rhythm_lead] if is_rhythm else [col[row] for col in columns]
        ncol = 1 if is_rhythm else len(columns)
        width = DURATION_S * SPEED_MM_PER_S if is_rhythm else col_mm
        for c in range(ncol):
            x = x0 + c * col_mm
            t0 = 0.0 if is_rhythm else c * col_s
            panels.append(Panel(
                lead=leads[c], row=row, col=c, t0_s=t0, t1_s=t0 + width / SPEED_MM_PER_S, x_mm=x,
                width_mm=width, baseline_mm=baseline, cell_top_mm=cell_top, cell_bottom_mm=cell_bottom,
                clip_top_mm=clip_top, clip_bottom_mm=clip_bottom,
                label_x_mm=x + 1.5, label_y_mm=max(grid_top + 0.5, baseline - min(base - 1.0, 9.0)),
                rhythm=is_rhythm,
            ))
            if c > 0:  # a short tick where one lead hands over to the next, as on printed ECGs
                separators.append((x, baseline - 3.0, baseline + 3.0))
        pulses.append(CalPulse(
            row=row, x_start_mm=grid_left + 1.0, x_rise_mm=grid_left + 2.5,
            x_fall_mm=grid_left + 2.5 + CAL_PULSE_WIDTH_MM, x_end_mm=x0,
            baseline_mm=baseline, top_mm=baseline - CAL_PULSE_HEIGHT_MM,
        ))
    return PageLayout(
        name=name, width_mm=PAGE_WIDTH_MM, height_mm=height, header=header, header_y_mm=TOP_MARGIN_MM,
        grid_left_mm=grid_left, grid_right_mm=grid_left + content_mm, grid_top_mm=grid_top,
        grid_bottom_mm=grid_bottom, x0_mm=x0, panels=tuple(panels), pulses=tuple(pulses),
        separators=tuple(separators),
    )


def page_size_px(layout: PageLayout, dpi: int) -> tuple[int, int]:
    """(width, height) in pixels of ``layout`` at ``dpi``."""
    return round(layout.width_mm / MM_PER_INCH * dpi), round(layout.height_mm / MM_PER_INCH * dpi)
