"""Building blocks of the synthetic heart model (``pipeline.synthetic``): the lead vectors that project the
cardiac dipole onto the 12 leads, the wave shape (``bump``), dipole components and the loops of each
conduction pattern (normal, bundle branch and fascicular blocks, paced), the P and T shapes.

Each loop is a tuple of ``Component``: a fixed 3-D direction (x = patient's left, y = inferior, z = anterior)
times a compact bump over a fraction of the wave. The first component's rise and the last one's fall have
power 1 (a kink), so a wave's onset / offset are sharp and exactly known.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# ---------------------------------------------------------------------------------------------------
# Lead vectors
# ---------------------------------------------------------------------------------------------------
LIMB_GAIN = 0.75  # limb leads see the dipole weaker than the chest leads (Dower's I/II rows are ~0.6-1.1)
_SQ3_2 = math.sqrt(3.0) / 2.0
# Dower rows (Frank X, Y, Z with Z posterior) turned to our z = anterior by flipping the Z sign.
_DOWER_V = np.array([
    [-0.515, 0.157, 0.917],
    [0.044, 0.164, 1.387],
    [0.882, 0.098, 1.277],
    [1.213, 0.127, 0.601],
    [1.125, 0.127, 0.086],
    [0.831, 0.076, -0.230],
])


def lead_matrix() -> np.ndarray:
    """(12, 3) matrix mapping the dipole (x left, y inferior, z anterior; mV) to the 12 leads (mV)."""
    lead_i = LIMB_GAIN * np.array([1.0, 0.0, 0.0])
    lead_ii = LIMB_GAIN * np.array([0.5, _SQ3_2, 0.0])
    rows = [
        lead_i, lead_ii, lead_ii - lead_i, -(lead_i + lead_ii) / 2.0,
        lead_i - lead_ii / 2.0, lead_ii - lead_i / 2.0, *_DOWER_V,
    ]
    return np.vstack(rows)


LEAD_MATRIX = lead_matrix()
RECORDED_LEADS = [0, 1, 6, 7, 8, 9, 10, 11]  # I, II, V1..V6: the leads an electrocardiograph actually forms


def derive_limb_leads(signal: np.ndarray) -> None:
    """Overwrite III, aVR, aVL, aVF of a (12, n) float32 signal from I and II, in place (float32 arithmetic)."""
    lead_i, lead_ii = signal[0], signal[1]
    half = signal.dtype.type(0.5)
    signal[2] = lead_ii - lead_i
    signal[3] = -(lead_i + lead_ii) * half
    signal[4] = lead_i - lead_ii * half
    signal[5] = lead_ii - lead_i * half


def frontal_axis_deg(lead_i_net: float, lead_avf_net: float) -> float:
    """Frontal axis (degrees, (-180, 180]) from the net (area) deflections of leads I and aVF (hexaxial)."""
    return float(math.degrees(math.atan2(2.0 * lead_avf_net / math.sqrt(3.0), lead_i_net)))


# ---------------------------------------------------------------------------------------------------
# Wave shapes
# ---------------------------------------------------------------------------------------------------
def bump(t_ms: np.ndarray, on_ms: float, peak_ms: float, off_ms: float,
         rise_pow: float = 1.5, fall_pow: float = 1.5, plateau_end_ms: float | None = None) -> np.ndarray:
    """Asymmetric compact bump: 0 outside [on, off], 1 from ``peak`` to ``plateau_end`` (default: ``peak``);
    sin^p rise, cos^p fall.

    A power of 1 leaves a kink (finite slope) at the edge, which makes that edge measurable to a sample;
    larger powers give a smoother edge. Values at ``t_ms`` (ms); unit height.
    """
    top = peak_ms if plateau_end_ms is None else plateau_end_ms
    out = np.zeros_like(t_ms, dtype=np.float64)
    rise = (t_ms >= on_ms) & (t_ms < peak_ms)
    flat = (t_ms >= peak_ms) & (t_ms < top)
    fall = (t_ms >= top) & (t_ms <= off_ms)
    if peak_ms > on_ms:
        # clip: rounding can leave sin/cos a hair below 0 at the edges, and a fractional power of it is NaN
        out[rise] = np.maximum(np.sin(0.5 * np.pi * (t_ms[rise] - on_ms) / (peak_ms - on_ms)), 0.0) ** rise_pow
    out[flat] = 1.0
    if off_ms > top:
        out[fall] = np.maximum(np.cos(0.5 * np.pi * (t_ms[fall] - top) / (off_ms - top)), 0.0) ** fall_pow
    else:
        out[fall] = 1.0  # a part cut at its top (used for areas of ramps)
    return out


@dataclass(frozen=True)
class Component:
    """One dipole component: direction (x, y, z), amplitude (mV), timing as fractions of the wave."""

    direction: tuple[float, float, float]
    amp_mv: float
    f_on: float
    f_peak: float
    f_off: float
    rise_pow: float = 1.5
    fall_pow: float = 1.5

    def vector(self) -> np.ndarray:
        d = np.asarray(self.direction, dtype=np.float64)
        return self.amp_mv * d / np.linalg.norm(d)


# QRS loops. The first component's rise and the last one's fall have power 1 (a kink), so the QRS
# onset / offset are sharp; inner edges are smooth because they overlap other components.
QRS_NORMAL = (
    Component((-0.5, 0.15, 0.85), 0.22, 0.00, 0.15, 0.34, 1.0, 1.5),   # septum: left -> right, anterior
    Component((0.75, 0.6, 0.12), 1.45, 0.12, 0.40, 0.68),              # apex / free wall: left, inferior
    Component((0.6, 0.05, -0.85), 1.25, 0.36, 0.60, 0.86),             # basal LV: left, posterior
    Component((-0.35, -0.6, -0.6), 0.30, 0.66, 0.84, 1.00, 1.5, 1.0),  # terminal basal forces
)
QRS_RBBB = (
    Component((-0.5, 0.15, 0.85), 0.35, 0.00, 0.10, 0.24, 1.0, 1.5),   # septum (normal): r in V1
    Component((0.75, 0.5, -0.35), 1.50, 0.08, 0.28, 0.50),             # LV: S in V1, R in I / V6
    Component((-0.65, 0.1, 0.75), 0.75, 0.44, 0.74, 1.00, 1.5, 1.0),   # late RV: R' in V1, broad S in I, V6
)
QRS_LBBB = (
    Component((0.75, 0.05, 0.15), 0.80, 0.00, 0.22, 0.55, 1.0, 1.5),   # septum right -> left: no q in V6
    Component((0.65, 0.15, -0.75), 1.55, 0.32, 0.68, 1.00, 1.5, 1.0),  # late LV free wall: notch, QS in V1
)
P_SINUS = (
    Component((0.25, 0.85, 0.45), 0.20, 0.00, 0.40, 0.78, 1.0, 1.5),   # right atrium: anterior
    Component((0.85, 0.45, -0.45), 0.16, 0.22, 0.60, 1.00, 1.5, 1.0),  # left atrium: left, posterior
)
# Incomplete RBBB: the normal loop plus a small, late right-anterior force (rsr' in V1, a slurred s in I, V6).
QRS_IRBBB = (
    Component((-0.5, 0.15, 0.85), 0.25, 0.00, 0.13, 0.30, 1.0, 1.5),
    Component((0.75, 0.55, -0.1), 1.45, 0.10, 0.36, 0.62),
    Component((0.6, 0.0, -0.8), 0.9, 0.32, 0.55, 0.80),
    Component((-0.7, 0.05, 0.7), 0.45, 0.62, 0.84, 1.00, 1.5, 1.0),  # late RV: r' in V1
)
# Left anterior fascicular block: the first forces go inferior and rightward (r in II, III, aVF; q in I, aVL),
# the bulk superior and leftward (R in aVL, deep S in II, III, aVF), and the last ones, slow, superior (the S
# of the inferior leads and a late r in aVR end the QRS)
QRS_LAFB = (
    Component((-0.35, 0.85, 0.3), 0.30, 0.00, 0.16, 0.34, 1.0, 1.5),
    Component((0.65, -0.7, -0.15), 1.45, 0.18, 0.46, 0.76),
    Component((-0.25, -0.85, -0.4), 0.40, 0.58, 0.82, 1.00, 1.5, 1.0),
)
# Left posterior fascicular block: the mirror image: first forces superior-left, the bulk inferior-right
QRS_LPFB = (
    Component((0.65, -0.7, 0.2), 0.30, 0.00, 0.16, 0.34, 1.0, 1.5),
    Component((-0.3, 0.95, -0.1), 1.45, 0.18, 0.46, 0.76),
    Component((0.1, 0.8, -0.55), 0.35, 0.58, 0.82, 1.00, 1.5, 1.0),
)
# Paced QRS complexes: slow muscle-to-muscle conduction from the pacing site, no His-Purkinje: broad lobes.
# Right-ventricular apex: activation spreads upward and leftward (LBBB-like, superior axis).
QRS_PACED_RV = (
    Component((0.35, -0.7, -0.45), 1.25, 0.00, 0.45, 0.80, 1.0, 1.5),
    Component((0.6, -0.45, -0.65), 0.95, 0.35, 0.72, 1.00, 1.5, 1.0),
)
# Biventricular: the LV lateral wall and the RV apex at once: the forces point right and up (negative in I,
# a dominant R in V1), and the two wavefronts meeting make a narrower, notched QRS
QRS_PACED_BIV = (
    Component((-0.75, -0.45, 0.45), 1.05, 0.00, 0.38, 0.72, 1.0, 1.5),
    Component((-0.25, -0.85, -0.2), 0.95, 0.30, 0.66, 1.00, 1.5, 1.0),
)
# Left atrial enlargement (P mitrale): a normal right atrium, then a delayed, larger, posterior left-atrial
# force; the two humps lie ~45% of the P apart (a notch in II), and V1 ends deeply negative
P_BIFID = (
    Component((0.25, 0.85, 0.45), 0.17, 0.00, 0.24, 0.52, 1.0, 1.5),
    Component((0.8, 0.4, -0.6), 0.22, 0.40, 0.70, 1.00, 1.5, 1.0),
)
U_WAVE_MS = 160.0  # U wave duration; it peaks half-way
T_NORMAL_DIR = np.array([0.7, 0.5, 0.45])
T_NORMAL_MV = 0.45
T_PEAK_FRACTION = 0.62  # T rises slowly and falls fast
T_RISE_POW = 1.2  # near-linear start: a T onset a delineator can place within a few ms (2.0 put it ~20 ms late)


def rotation_z(angle_rad: float) -> np.ndarray:
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def component_area(c: Component) -> float:
    """Integral of the unit bump over a unit-length wave (fraction-time), by fine quadrature."""
    t = np.linspace(0.0, 1.0, 20001)
    return float(np.trapezoid(bump(t, c.f_on, c.f_peak, c.f_off, c.rise_pow, c.fall_pow), t))


@lru_cache(maxsize=None)
def loop_area(loop: tuple[Component, ...]) -> tuple[float, float, float]:
    """Time integral of a loop's dipole over a unit-length wave (mV·fraction), as (x, y, z)."""
    total = np.zeros(3)
    for c in loop:
        total += component_area(c) * c.vector()
    return tuple(total)


# ---------------------------------------------------------------------------------------------------
# Beat templates
# ---------------------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------------------
# Beat layout
# ---------------------------------------------------------------------------------------------------
@dataclass
class Wave:
    kind: str  # P | QRS | T | ST
    on_ms: float
    off_ms: float
    parts: list[tuple]  # (vector, on, peak, off, rise_pow, fall_pow[, plateau_end])


# ---------------------------------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------------------------------
def scale_to_max_lead(vec: np.ndarray, target_mv: float) -> np.ndarray:
    """Scale ``vec`` so its largest |projection| over the 12 leads is ``target_mv``."""
    proj = np.abs(LEAD_MATRIX @ vec).max()
    return vec * (target_mv / proj) if proj > 0 else vec


WAVE_COLUMNS = {"P": ("p_on_ms", "p_peak_ms", "p_off_ms"),
                 "QRS": ("qrs_on_ms", "r_peak_ms", "qrs_off_ms"),
                 "T": ("t_on_ms", "t_peak_ms", "t_off_ms")}


@dataclass
class BeatTemplate:
    """One beat kind sampled on the record's grid, relative to a QRS onset on sample 0."""

    start: int  # first sample (relative; negative when the P wave precedes the QRS)
    dipole: np.ndarray  # (3, m)
    waves: dict[str, tuple[float, float]]  # wave -> (on_ms, off_ms) relative to the QRS onset
    peaks_ms: dict[str, np.ndarray]  # wave -> (12,) per-lead peak times relative to the QRS onset

    @classmethod
    def build(cls, waves: dict[str, Wave], dt_ms: float) -> "BeatTemplate":
        lo = min(w.on_ms for w in waves.values())
        hi = max(w.off_ms for w in waves.values())
        start, stop = int(math.ceil(lo / dt_ms)), int(math.floor(hi / dt_ms))
        t = np.arange(start, stop + 1) * dt_ms
        dip = np.zeros((3, t.size))
        for w in waves.values():
            for vec, on, peak, off, rp, fp, *plateau in w.parts:
                dip += np.outer(vec, bump(t, on, peak, off, rp, fp, plateau[0] if plateau else None))
        leads = LEAD_MATRIX @ dip
        peaks = {}
        for name in WAVE_COLUMNS:
            w = waves.get(name)
            if w is None:
                continue
            i0 = int(math.ceil(w.on_ms / dt_ms)) - start
            i1 = int(math.floor(w.off_ms / dt_ms)) - start
            # The beat's own clean deflection (its ST shift included) inside the wave's support.
            peaks[name] = (np.abs(leads[:, i0:i1 + 1]).argmax(axis=1) + i0 + start) * dt_ms
        return cls(start, dip, {k: (w.on_ms, w.off_ms) for k, w in waves.items()}, peaks)

    def add_to(self, dipole: np.ndarray, at: int) -> None:
        """Add this beat with its QRS onset on sample ``at`` (clipped to the record)."""
        n = dipole.shape[1]
        a, b = at + self.start, at + self.start + self.dipole.shape[1]
        lo, hi = max(a, 0), min(b, n)
        if hi > lo:
            dipole[:, lo:hi] += self.dipole[:, lo - a:hi - a]


def qrs_peak_to_peak(qrs_parts, qrs_ms: float, fs: int) -> np.ndarray:
    """Per-lead QRS peak-to-peak (mV) of a loop at unit scale."""
    t = np.arange(0.0, qrs_ms, 1000.0 / fs)
    h = np.zeros((3, t.size))
    for v, c in qrs_parts:
        h += np.outer(v, bump(t, c.f_on * qrs_ms, c.f_peak * qrs_ms, c.f_off * qrs_ms, c.rise_pow, c.fall_pow))
    lead = LEAD_MATRIX @ h
    return lead.max(axis=1) - lead.min(axis=1)
