"""Synthetic 12-lead ECGs with exact ground truth: the embedded default source and every test's reference.

Model (consistent by construction)
----------------------------------
The heart is one time-varying dipole ``H(t) = (x, y, z)`` in mV, body axes x = patient's left, y = inferior
(feet), z = anterior. Each wave is a sum of *components*: a fixed 3-D direction times a compactly supported
asymmetric bump (a sine rise and a cosine fall raised to a power, see ``bump``), so every wave starts and
ends at an exact instant. The 12 leads are fixed linear projections of ``H``:

- frontal leads from the hexaxial angles: ``I = k·x`` (0°), ``II = k·(x/2 + √3/2·y)`` (60°), and
  ``III, aVR, aVL, aVF`` derived from I and II (Einthoven / Goldberger). With this scaling
  ``aVF = k·√3/2·y``, so the frontal axis is ``atan2(2·aVF/√3, I)``;
- precordial leads from Dower's inverse-transform rows (the Frank-lead to V1-V6 coefficients), which
  give the rS (V1) -> transition (V3/V4) -> qR (V5/V6) progression from a realistic vector loop.

Noise is simulated per *electrode* (RA, LA, LL, V1..V6) and combined the way an electrocardiograph does
(I = LA - RA, II = LL - RA, Vi = Vi - Wilson terminal); III, aVR, aVL, aVF are then computed from the
float32 I and II, so Einthoven's and Goldberger's relations hold to float precision on noisy records too.

Truth conventions (``SynthRecord.beats``; ms from record start)
----------------------------------------------------------------
- ``*_on_ms`` / ``*_off_ms``: the instants where that wave's dipole contribution starts / ends. They are
  global (the same in every lead): a lead nearly perpendicular to the first (last) component of a wave
  shows its onset (offset) later (earlier) than the truth (e.g. the P onset in lead I, where the early
  right-atrial forces project weakly). Outside the waves a clean record is exactly zero (PR and TP
  segments), inside them some lead deflects within 4 ms of every onset and offset. Edges have a finite
  slope (QRS onset/offset, P onset/offset, T offset) or a near-linear start (T onset), so a delineator
  can place them within a few ms; beats start on a sample, so every normal beat is the same waveform.
- ``*_peak_ms``: per lead, the sample of largest |deflection| of the beat's own clean waveform (its ST
  shift included; noise and AF f-waves excluded) inside that wave's support. ``r_peak_ms`` is the largest
  |QRS deflection|, which is an S wave in leads such as V1 or aVR.
- ``st_j60_mv``: per lead, the ST plateau level the generator put there (0 without an ST shift); it is the
  level at J+60 ms whenever the T wave has not started by then.
- A beat is in the truth when its QRS lies wholly inside the record; fiducials of its P or T wave that
  fall outside the record are null, as are P fiducials where there is no P wave (AF, PVC).
- Record level: ``rr_mean_ms`` = mean interval between consecutive QRS onsets of truth beats,
  ``hr_bpm = 60000 / rr_mean_ms``; ``pr_ms``, ``qrs_ms``, ``qt_ms`` = the normal beats' QRS onset - P onset,
  QRS duration and QRS onset -> T offset; ``qrs_axis_deg`` = the frontal angle of the QRS vector *area*
  (the net-QRS axis, exact for every normal beat of the clean signal).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from features.schema import FIDUCIAL_COLUMNS
from pipeline.record import LEADS, Statement

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
_RECORDED = [0, 1, 6, 7, 8, 9, 10, 11]  # I, II, V1..V6: the leads an electrocardiograph actually forms


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
# Parameters
# ---------------------------------------------------------------------------------------------------
Rhythm = Literal["sinus", "sinus_rhythm", "sinus_bradycardia", "sinus_tachycardia", "atrial_fibrillation"]
Territory = Literal["anterior", "inferior", "lateral"]

# Unit vectors (x left, y inferior, z anterior) pointing at each territory: an injury current towards a
# territory elevates ST there and depresses it in the opposite leads (reciprocal change).
TERRITORY_DIRS: dict[str, np.ndarray] = {
    "anterior": np.array([0.0, 0.1, 1.0]),
    "inferior": np.array([-0.15, 1.0, 0.0]),
    "lateral": np.array([1.0, -0.35, -0.1]),
}
TERRITORY_LEADS: dict[str, tuple[str, ...]] = {
    "anterior": ("V1", "V2", "V3", "V4"),
    "inferior": ("II", "III", "aVF"),
    "lateral": ("I", "aVL", "V5", "V6"),
}


class SynthParams(BaseModel):
    """Everything that defines one synthetic record (times in ms, amplitudes in mV, axis in degrees)."""

    model_config = ConfigDict(extra="forbid")

    hr_bpm: float = Field(70.0, ge=30.0, le=180.0)
    pr_ms: float = Field(160.0, ge=100.0, le=400.0)  # ignored (no P waves) in atrial fibrillation
    qrs_ms: float = Field(90.0, ge=60.0, le=200.0)
    qt_ms: float = Field(390.0, ge=200.0, le=600.0)
    qrs_axis_deg: float = Field(60.0, ge=-120.0, le=180.0)
    rhythm: Rhythm = "sinus"
    bundle_branch_block: Literal["none", "right", "left"] = "none"
    pvc_count: int = Field(0, ge=0, le=4)  # premature ventricular beats to place (when they fit)
    st_shift_mv: float = Field(0.0, ge=-0.5, le=0.6)  # + elevation / - depression, in the territory's leads
    st_territory: Territory = "anterior"
    t_inversion: Territory | None = None
    low_voltage: bool = False
    qrs_scale: float = Field(1.0, ge=0.5, le=2.0)  # inter-individual QRS amplitude factor
    rr_variability: float = Field(0.02, ge=0.0, le=0.1)  # sinus arrhythmia, fraction of RR
    af_rr_cv: float = Field(0.18, ge=0.05, le=0.35)  # AF RR coefficient of variation
    f_wave_mv: float = Field(0.05, ge=0.0, le=0.2)  # AF fibrillatory wave amplitude
    baseline_wander_mv: float = Field(0.0, ge=0.0, le=2.0)
    mains_hum_mv: float = Field(0.0, ge=0.0, le=1.0)
    mains_hz: Literal[50, 60] = 50
    emg_noise_mv: float = Field(0.0, ge=0.0, le=0.5)  # RMS of muscle noise per lead
    duration_s: float = Field(10.0, ge=2.0, le=120.0)
    fs_hz: int = Field(500, ge=100, le=2000)

    @model_validator(mode="after")
    def _consistent(self) -> "SynthParams":
        if self.bundle_branch_block != "none" and self.qrs_ms < 120:
            raise ValueError("a bundle branch block needs qrs_ms >= 120")
        if self.rhythm == "sinus_bradycardia" and self.hr_bpm >= 60:
            raise ValueError("sinus_bradycardia needs hr_bpm < 60")
        if self.rhythm == "sinus_tachycardia" and self.hr_bpm <= 100:
            raise ValueError("sinus_tachycardia needs hr_bpm > 100")
        if self.rhythm == "sinus_rhythm" and not 60 <= self.hr_bpm <= 100:
            raise ValueError("sinus_rhythm needs 60 <= hr_bpm <= 100")
        rr_ms = 60000.0 / self.hr_bpm
        if self.qt_ms - self.qrs_ms < 100:
            raise ValueError("qt_ms must exceed qrs_ms by at least 100 ms (ST segment + T wave)")
        gap = self.pr_ms if self.is_sinus else 60.0
        if self.qt_ms + gap + 20.0 > rr_ms:
            raise ValueError(f"qt_ms {self.qt_ms} + PR {gap} does not fit in RR {rr_ms:.0f} ms")
        return self

    @property
    def is_sinus(self) -> bool:
        return self.rhythm != "atrial_fibrillation"


class RecordTruth(BaseModel):
    """Record-level ground truth (ms, bpm, degrees; None where not defined, e.g. PR in AF)."""

    record_id: str
    hr_bpm: float
    rr_mean_ms: float
    pr_ms: float | None
    qrs_ms: float
    qt_ms: float
    qrs_axis_deg: float
    rhythm: str  # sinus_rhythm | sinus_bradycardia | sinus_tachycardia | atrial_fibrillation
    findings: list[str]  # SCP codes of the non-rhythm findings
    scp_codes: list[str]  # every statement code, rhythm first (NORM only without findings)
    n_beats: int
    n_premature: int
    st_elevation_leads: list[str] = Field(default_factory=list)  # ST at J+60 >= 0.1 mV
    st_depression_leads: list[str] = Field(default_factory=list)  # ST at J+60 <= -0.1 mV
    t_inversion_leads: list[str] = Field(default_factory=list)  # T deflection <= -0.1 mV (aVR excluded)
    heart_axis: str  # PTB-XL heart_axis: MID | LAD | RAD


@dataclass
class SynthRecord:
    """One generated record: the (12, n) float32 signal in mV, the per-beat per-lead truth and the labels.

    ``beats`` (a polars frame, ``BEATS_TRUTH_SCHEMA``: record_id, lead, beat, the 9 fiducials in ms,
    beat_class, st_j60_mv) is built on first access from plain columns.
    """

    record_id: str
    params: SynthParams
    seed: int
    signal_mv: np.ndarray
    truth: RecordTruth
    statements: list[Statement] = field(default_factory=list)
    beat_columns: dict = field(default_factory=dict, repr=False)

    @cached_property
    def beats(self) -> pl.DataFrame:
        return beats_frame([self.beat_columns])

    @property
    def report(self) -> str:
        return report_text(self.truth.scp_codes)


SCP_NAMES: dict[str, str] = {
    "NORM": "normal ECG",
    "SR": "sinus rhythm",
    "SBRAD": "sinus bradycardia",
    "STACH": "sinus tachycardia",
    "AFIB": "atrial fibrillation",
    "1AVB": "first degree AV block",
    "CRBBB": "complete right bundle branch block",
    "CLBBB": "complete left bundle branch block",
    "PVC": "ventricular premature complex",
    "STE_": "non-specific ST elevation",
    "STD_": "non-specific ST depression",
    "INVT": "inverted T-waves",
    "LVOLT": "low QRS voltages in the frontal and horizontal leads",
    "LAD": "left axis deviation",
    "RAD": "right axis deviation",
}
_RHYTHM_CODES = {"sinus_rhythm": "SR", "sinus_bradycardia": "SBRAD", "sinus_tachycardia": "STACH",
                 "atrial_fibrillation": "AFIB"}


def report_text(scp_codes: list[str]) -> str:
    """A PTB-XL-style lower-case English report, e.g. 'sinus rhythm. first degree av block.'."""
    return " ".join(f"{SCP_NAMES[c].lower()}." for c in scp_codes)


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
T_NORMAL_DIR = np.array([0.7, 0.5, 0.45])
T_NORMAL_MV = 0.45
T_PEAK_FRACTION = 0.62  # T rises slowly and falls fast
T_RISE_POW = 1.2  # near-linear start: a T onset a delineator can place within a few ms (2.0 put it ~20 ms late)


def _rotation_z(angle_rad: float) -> np.ndarray:
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _component_area(c: Component) -> float:
    """Integral of the unit bump over a unit-length wave (fraction-time), by fine quadrature."""
    t = np.linspace(0.0, 1.0, 20001)
    return float(np.trapezoid(bump(t, c.f_on, c.f_peak, c.f_off, c.rise_pow, c.fall_pow), t))


@lru_cache(maxsize=None)
def _loop_area(loop: tuple[Component, ...]) -> tuple[float, float, float]:
    """Time integral of a loop's dipole over a unit-length wave (mV·fraction), as (x, y, z)."""
    total = np.zeros(3)
    for c in loop:
        total += _component_area(c) * c.vector()
    return tuple(total)


# ---------------------------------------------------------------------------------------------------
# Beat layout
# ---------------------------------------------------------------------------------------------------
@dataclass
class _Wave:
    kind: str  # P | QRS | T | ST
    on_ms: float
    off_ms: float
    parts: list[tuple]  # (vector, on, peak, off, rise_pow, fall_pow[, plateau_end])


def _sinus_rr(rng: np.random.Generator, rr_ms: float, n: int, variability: float) -> np.ndarray:
    """``n`` sinus RR intervals (ms) with respiratory sinus arrhythmia, mean exactly ``rr_ms``."""
    phase = rng.uniform(0, 2 * np.pi)
    resp_beats = max(2.0, 4000.0 / rr_ms)  # one breath every ~4 s
    k = np.arange(n)
    rr = rr_ms * (1.0 + variability * np.sin(2 * np.pi * k / resp_beats + phase)
                  + 0.25 * variability * rng.standard_normal(n))
    return rr * (rr_ms / rr.mean())


def _af_rr(rng: np.random.Generator, rr_ms: float, n: int, cv: float, min_rr_ms: float) -> np.ndarray:
    """``n`` irregularly irregular RR intervals (ms): independent draws, mean ``rr_ms``, none below ``min_rr_ms``."""
    rr = rr_ms * np.exp(cv * rng.standard_normal(n) - 0.5 * cv * cv)
    rr = rr * (rr_ms / rr.mean())
    return np.maximum(rr, min_rr_ms)


def _layout_qrs_onsets(params: SynthParams, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """QRS onset times (ms) of the underlying rhythm, covering the record with one beat spare each side."""
    rr_ms = 60000.0 / params.hr_bpm
    dur_ms = params.duration_s * 1000.0
    n = int(math.ceil(dur_ms / rr_ms)) + 4
    if params.is_sinus:
        # never so short that a P wave would start before the previous T has ended
        rr = np.maximum(_sinus_rr(rng, rr_ms, n, params.rr_variability), params.qt_ms + params.pr_ms + 10.0)
    else:
        rr = _af_rr(rng, rr_ms, n, params.af_rr_cv, params.qt_ms + 80.0)
    first = -rr_ms + rng.uniform(0.0, rr_ms)
    onsets = first + np.concatenate([[0.0], np.cumsum(rr[:-1])])
    return onsets, rr_ms


# ---------------------------------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------------------------------
def _scale_to_max_lead(vec: np.ndarray, target_mv: float) -> np.ndarray:
    """Scale ``vec`` so its largest |projection| over the 12 leads is ``target_mv``."""
    proj = np.abs(LEAD_MATRIX @ vec).max()
    return vec * (target_mv / proj) if proj > 0 else vec


ST_RAMP_FRACTIONS = (0.25, 0.12, 0.06, 0.0)  # of the QRS: where the ST shift starts rising (0 = a step at J)


def _qrs_rotation(loop: tuple[Component, ...], qrs_ms: float, axis_deg: float,
                  st_vec: np.ndarray | None, dt_ms: float) -> tuple[np.ndarray, float]:
    """Rotation about the antero-posterior axis that puts the net frontal QRS area at ``axis_deg``, and the
    ST ramp fraction used.

    Areas are the sums over the record's samples inside [QRS onset, QRS offset] (beats start on a sample,
    so this is exactly what a measurement sums). The ST component's ramp overlaps the end of the QRS; its
    area is added so that the *measured* net area (QRS + ST ramp) has the stated angle. A large ST shift
    on a small QRS (low voltage) would dominate that area, so the ramp is shortened until the ST share is
    at most half the QRS area.
    """
    t = np.arange(0, int(math.floor(qrs_ms / dt_ms)) + 1) * dt_ms
    area = np.zeros(2)
    for c in loop:
        b = bump(t, c.f_on * qrs_ms, c.f_peak * qrs_ms, c.f_off * qrs_ms, c.rise_pow, c.fall_pow)
        area += c.vector()[:2] * b.sum()
    u = np.array([math.cos(math.radians(axis_deg)), math.sin(math.radians(axis_deg))])
    q = float(np.linalg.norm(area))
    st_area, st_ramp_frac = np.zeros(2), ST_RAMP_FRACTIONS[0]
    if st_vec is not None:
        for st_ramp_frac in ST_RAMP_FRACTIONS:
            ramp = bump(t, qrs_ms * (1.0 - st_ramp_frac), qrs_ms, qrs_ms + 1e3, 2.0, 2.0, qrs_ms + 1.0)
            st_area = st_vec[:2] * ramp.sum()
            if np.linalg.norm(st_area) <= 0.5 * q:
                break
    us = float(u @ st_area)
    disc = us * us - float(st_area @ st_area) + q * q
    lam = us + math.sqrt(max(disc, 0.0))
    want = lam * u - st_area  # what the rotated QRS area must be
    angle = math.atan2(want[1], want[0]) - math.atan2(area[1], area[0])
    return _rotation_z(angle), st_ramp_frac


def _pvc_loop(rng: np.random.Generator) -> tuple[Component, ...]:
    """A unifocal PVC: two broad, slowly conducted components from a random ventricular focus."""
    d = rng.normal(size=3)
    d[1] = abs(d[1]) + 0.3  # most PVC foci (outflow tracts) give an inferior axis
    d /= np.linalg.norm(d)
    d2 = d + 0.5 * rng.normal(size=3)
    return (
        Component(tuple(d), 1.6, 0.0, 0.40, 0.75, 1.0, 1.5),
        Component(tuple(d2), 0.9, 0.30, 0.70, 1.0, 1.5, 1.0),
    )


def _noise(params: SynthParams, rng: np.random.Generator, n: int) -> np.ndarray:
    """Electrode noise combined into the 8 recorded leads (I, II, V1..V6) as an (8, n) array in mV."""
    fs = params.fs_hz
    t_s = np.arange(n) / fs
    electrodes = np.zeros((9, n))  # RA, LA, LL, V1..V6
    # Difference of two independent electrodes has sqrt(2) x the single-electrode amplitude.
    scale = 1.0 / math.sqrt(2.0)
    if params.baseline_wander_mv > 0:
        # Respiration and electrode drift: a few slow sinusoids shared by all electrodes, mixed with
        # electrode-specific weights (cheap: 4 sine evaluations per record instead of one per electrode).
        f = rng.uniform(0.05, 0.5, size=4)
        basis = np.sin(2 * np.pi * f[:, None] * t_s[None, :] + rng.uniform(0, 2 * np.pi, size=(4, 1)))
        weights = rng.uniform(-1.0, 1.0, size=(9, 4)) * 0.55
        electrodes += params.baseline_wander_mv * scale * (weights @ basis)
    if params.mains_hum_mv > 0:
        # a·sin(wt + phi) = a·cos(phi)·sin(wt) + a·sin(phi)·cos(wt): two sine evaluations in all.
        w = 2 * np.pi * params.mains_hz * t_s
        a = params.mains_hum_mv * scale * rng.uniform(0.6, 1.0, size=9)
        phi = rng.uniform(0, 2 * np.pi, size=9)
        electrodes += np.outer(a * np.cos(phi), np.sin(w)) + np.outer(a * np.sin(phi), np.cos(w))
    if params.emg_noise_mv > 0:
        # Muscle noise: Gaussian, band-limited to 20-150 Hz, drawn directly in the frequency domain
        # (random complex amplitudes in the band, one inverse FFT) - half the cost of filtering white noise.
        freqs = np.fft.rfftfreq(n, 1.0 / fs)
        band = np.flatnonzero((freqs >= 20.0) & (freqs <= min(150.0, 0.45 * fs)))
        spec = np.zeros((9, freqs.size), dtype=np.complex128)
        spec[:, band] = rng.standard_normal((9, band.size)) + 1j * rng.standard_normal((9, band.size))
        emg = np.fft.irfft(spec, n=n, axis=1)
        emg /= emg.std(axis=1, keepdims=True) + 1e-12
        electrodes += params.emg_noise_mv * scale * emg
    ra, la, ll = electrodes[0], electrodes[1], electrodes[2]
    wilson = (ra + la + ll) / 3.0
    out = np.empty((8, n))
    out[0] = la - ra
    out[1] = ll - ra
    out[2:] = electrodes[3:] - wilson
    return out


def _f_waves(params: SynthParams, rng: np.random.Generator, n: int) -> np.ndarray:
    """AF fibrillatory activity as a (3, n) dipole: 4-9 Hz, drifting frequency and amplitude, V1-dominant."""
    fs = params.fs_hz
    t_s = np.arange(n) / fs
    out = np.zeros((3, n))
    for d in (np.array([-0.2, 0.6, 0.8]), np.array([0.5, 0.5, -0.3])):
        f0 = rng.uniform(5.0, 8.0)
        drift = 0.8 * np.sin(2 * np.pi * rng.uniform(0.1, 0.3) * t_s + rng.uniform(0, 6.3))
        phase = 2 * np.pi * np.cumsum(f0 + drift) / fs
        amp = 1.0 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t_s + rng.uniform(0, 6.3))
        out += np.outer(d / np.linalg.norm(d), amp * np.sin(phase))
    # Scale so the largest lead carries about ``f_wave_mv`` peak amplitude.
    peak = np.abs(LEAD_MATRIX @ out).max()
    return out * (params.f_wave_mv / peak) if peak > 0 else out


def generate_record(params: SynthParams, seed: int, record_id: str = "synthetic") -> SynthRecord:
    """Generate one 12-lead record and its truth. Deterministic in ``(params, seed)``.

    Returns a ``SynthRecord`` whose ``signal_mv`` is float32 (12, n) in mV, leads in ``LEADS`` order.
    """
    rng = np.random.default_rng(seed)
    fs = params.fs_hz
    dt_ms = 1000.0 / fs
    n = int(round(params.duration_s * fs))
    dur_ms = n * dt_ms

    loop = {"none": QRS_NORMAL, "right": QRS_RBBB, "left": QRS_LBBB}[params.bundle_branch_block]
    qrs_ms, qt_ms, pr_ms = params.qrs_ms, params.qt_ms, params.pr_ms

    # Amplitude scaling: individual factor, and low voltage keeps limb QRS < 0.5 mV, chest QRS < 1 mV.
    scale = params.qrs_scale * rng.uniform(0.9, 1.1)
    other_scale = 1.0

    # ST injury vector (elevation towards the territory, depression away from it).
    st_vec = None
    if abs(params.st_shift_mv) >= 1e-6:
        d = TERRITORY_DIRS[params.st_territory]
        st_vec = _scale_to_max_lead(d, abs(params.st_shift_mv)) * math.copysign(1.0, params.st_shift_mv)

    rot, st_ramp_frac = _qrs_rotation(loop, qrs_ms, params.qrs_axis_deg,
                                      None if st_vec is None else st_vec / scale, dt_ms)
    qrs_parts = [(rot @ c.vector(), c) for c in loop]
    if params.low_voltage:
        pp = _peak_to_peak(qrs_parts, qrs_ms, fs)
        scale = min(scale, 0.42 / max(pp[:6].max(), 1e-9), 0.85 / max(pp[6:].max(), 1e-9))
        other_scale = 0.6
        if st_vec is not None:  # the ST ramp's share of the net area changed with the QRS scale
            rot, st_ramp_frac = _qrs_rotation(loop, qrs_ms, params.qrs_axis_deg, st_vec / scale, dt_ms)
            qrs_parts = [(rot @ c.vector(), c) for c in loop]

    # T wave: normally concordant with QRS; discordant in bundle branch blocks; inverted in a territory.
    qrs_area = rot @ np.asarray(_loop_area(loop))
    t_frontal = float(np.clip(0.5 * params.qrs_axis_deg + 15.0, -10.0, 75.0))
    if params.bundle_branch_block == "none":
        t_vec = np.array([math.cos(math.radians(t_frontal)), math.sin(math.radians(t_frontal)), 0.0])
        t_vec = t_vec * math.hypot(T_NORMAL_DIR[0], T_NORMAL_DIR[1]) + np.array([0.0, 0.0, T_NORMAL_DIR[2]])
        t_vec = T_NORMAL_MV * t_vec / np.linalg.norm(t_vec)
    else:
        t_vec = -0.35 * qrs_area / np.linalg.norm(qrs_area) * 1.2
        if params.bundle_branch_block == "right":  # RBBB: T opposite to the terminal (right, anterior) forces
            term = rot @ QRS_RBBB[-1].vector()
            t_vec = -0.4 * term / np.linalg.norm(term)
    if params.t_inversion is not None:
        d = TERRITORY_DIRS[params.t_inversion]
        d = d / np.linalg.norm(d)
        t_vec = t_vec - (t_vec @ d) * d - 0.45 * d  # remove the territory component, then point away
    t_vec = t_vec * other_scale

    t_dur = float(np.clip(0.45 * qt_ms, 100.0, 240.0))
    t_dur = min(t_dur, qt_ms - qrs_ms - 20.0)
    p_dur = float(min(110.0, pr_ms - 40.0))

    # Beat templates (relative to the QRS onset at 0 ms): every beat of one kind is the same waveform.
    normal_waves: dict[str, _Wave] = {}
    if params.is_sinus:
        p_on = -pr_ms
        normal_waves["P"] = _Wave("P", p_on, p_on + p_dur, [
            (c.vector() * other_scale, p_on + c.f_on * p_dur, p_on + c.f_peak * p_dur, p_on + c.f_off * p_dur,
             c.rise_pow, c.fall_pow) for c in P_SINUS])
    normal_waves["QRS"] = _Wave("QRS", 0.0, qrs_ms, [
        (v * scale, c.f_on * qrs_ms, c.f_peak * qrs_ms, c.f_off * qrs_ms, c.rise_pow, c.fall_pow)
        for v, c in qrs_parts])
    t_on = qt_ms - t_dur
    normal_waves["T"] = _Wave("T", t_on, qt_ms, [(t_vec, t_on, t_on + T_PEAK_FRACTION * t_dur, qt_ms, T_RISE_POW, 1.0)])
    if st_vec is not None:
        # ST plateau: ramps up over the end of the QRS (usually its last quarter), flat to the T onset, fades
        # out with the T.
        ramp_on = qrs_ms * (1.0 - st_ramp_frac)
        normal_waves["ST"] = _Wave("ST", ramp_on, qt_ms, [(st_vec, ramp_on, qrs_ms, qt_ms, 2.0, 2.0, t_on)])
    templates = {"normal": _Template.build(normal_waves, dt_ms)}

    onsets, rr_ms = _layout_qrs_onsets(params, rng)
    kinds = ["normal"] * len(onsets)
    times = onsets.copy()
    if params.pvc_count:
        pvc_loop = _pvc_loop(rng)
        q = float(rng.uniform(140.0, 180.0))
        area = np.asarray(_loop_area(pvc_loop))
        pvc_t = -0.5 * area / np.linalg.norm(area) * other_scale  # discordant T
        pvc_t_on, pvc_t_off = q + 60.0, q + 240.0
        templates["premature"] = _Template.build({
            "QRS": _Wave("QRS", 0.0, q, [(c.vector() * scale, c.f_on * q, c.f_peak * q, c.f_off * q,
                                          c.rise_pow, c.fall_pow) for c in pvc_loop]),
            "T": _Wave("T", pvc_t_on, pvc_t_off, [(pvc_t, pvc_t_on, pvc_t_on + 0.55 * 180.0, pvc_t_off, T_RISE_POW, 1.0)]),
        }, dt_ms)
        # PVCs replace beats in the middle of the record; the sinus schedule goes on, so the RR intervals
        # around a PVC sum to two cycles (full compensatory pause). It must start after the previous T
        # and end before the next beat's P.
        next_gap = pr_ms if params.is_sinus else 40.0
        for k in _pvc_positions(rng, times, dur_ms, params.pvc_count):
            coupling = max(0.6 * (times[k] - times[k - 1]), qt_ms + 40.0) * rng.uniform(1.0, 1.04)
            fits = (coupling <= 0.85 * (times[k] - times[k - 1])
                    and times[k - 1] + coupling + pvc_t_off + 20.0 < times[k + 1] - next_gap)
            if fits:
                kinds[k] = "premature"
                times[k] = times[k - 1] + coupling
    times = np.round(times / dt_ms) * dt_ms  # beats start on a sample, so one template serves every beat

    dipole = np.zeros((3, n))
    for t0, kind in zip(times, kinds):
        templates[kind].add_to(dipole, int(round(t0 / dt_ms)))

    total = dipole
    if not params.is_sinus and params.f_wave_mv > 0:
        total = dipole + _f_waves(params, rng, n)
    recorded = LEAD_MATRIX[_RECORDED] @ total + _noise(params, rng, n)
    signal = np.zeros((12, n), dtype=np.float32)
    signal[_RECORDED] = recorded.astype(np.float32)
    derive_limb_leads(signal)

    beat_columns, truth = _truth(record_id, params, times, kinds, templates, st_vec, t_vec, dur_ms - dt_ms)
    statements = [Statement(text=SCP_NAMES[c], code=c, system="scp", likelihood=100.0) for c in truth.scp_codes]
    return SynthRecord(record_id, params, int(seed), signal, truth, statements, beat_columns)


def _pvc_positions(rng: np.random.Generator, times: np.ndarray, dur_ms: float, count: int) -> list[int]:
    """Indices of beats to turn into PVCs: inside the middle 80 % of the record, never adjacent."""
    candidates = [k for k in range(1, len(times) - 1) if 0.1 * dur_ms < times[k] < 0.9 * dur_ms]
    rng.shuffle(candidates)
    chosen: list[int] = []
    for k in candidates:
        if len(chosen) >= count:
            break
        if all(abs(k - j) > 2 for j in chosen):
            chosen.append(k)
    return sorted(chosen)


_WAVE_COLUMNS = {"P": ("p_on_ms", "p_peak_ms", "p_off_ms"),
                 "QRS": ("qrs_on_ms", "r_peak_ms", "qrs_off_ms"),
                 "T": ("t_on_ms", "t_peak_ms", "t_off_ms")}


@dataclass
class _Template:
    """One beat kind sampled on the record's grid, relative to a QRS onset on sample 0."""

    start: int  # first sample (relative; negative when the P wave precedes the QRS)
    dipole: np.ndarray  # (3, m)
    waves: dict[str, tuple[float, float]]  # wave -> (on_ms, off_ms) relative to the QRS onset
    peaks_ms: dict[str, np.ndarray]  # wave -> (12,) per-lead peak times relative to the QRS onset

    @classmethod
    def build(cls, waves: dict[str, _Wave], dt_ms: float) -> "_Template":
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
        for name in _WAVE_COLUMNS:
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


def _peak_to_peak(qrs_parts, qrs_ms: float, fs: int) -> np.ndarray:
    """Per-lead QRS peak-to-peak (mV) of a loop at unit scale."""
    t = np.arange(0.0, qrs_ms, 1000.0 / fs)
    h = np.zeros((3, t.size))
    for v, c in qrs_parts:
        h += np.outer(v, bump(t, c.f_on * qrs_ms, c.f_peak * qrs_ms, c.f_off * qrs_ms, c.rise_pow, c.fall_pow))
    lead = LEAD_MATRIX @ h
    return lead.max(axis=1) - lead.min(axis=1)


def _truth(record_id: str, params: SynthParams, times: np.ndarray, kinds: list[str],
           templates: dict[str, _Template], st_vec: np.ndarray | None, t_vec: np.ndarray,
           last_ms: float) -> tuple[dict, RecordTruth]:
    """Per-beat per-lead fiducials (``beats``) and the record-level truth."""
    sel = [k for k, t0 in enumerate(times)
           if t0 >= 0.0 and t0 + templates[kinds[k]].waves["QRS"][1] <= last_ms]
    nb = len(sel)
    cols: dict[str, np.ndarray] = {c: np.full((nb, 12), np.nan) for c in FIDUCIAL_COLUMNS}
    st_proj = LEAD_MATRIX @ st_vec if st_vec is not None else np.zeros(12)
    st_j60 = np.zeros((nb, 12))
    for row, k in enumerate(sel):
        tpl, t0 = templates[kinds[k]], times[k]
        for name, (on_c, peak_c, off_c) in _WAVE_COLUMNS.items():
            if name not in tpl.waves:
                continue
            on, off = t0 + tpl.waves[name][0], t0 + tpl.waves[name][1]
            on_in, off_in = 0.0 <= on <= last_ms, 0.0 <= off <= last_ms
            if on_in:
                cols[on_c][row] = on
            if off_in:
                cols[off_c][row] = off
            if on_in and off_in:
                cols[peak_c][row] = t0 + tpl.peaks_ms[name]
        if "ST" in tpl.waves:
            st_j60[row] = st_proj
    beat_columns = {
        "record_id": [record_id] * (nb * 12),
        "lead": list(LEADS) * nb,
        "beat": np.repeat(np.arange(nb, dtype=np.int32), 12),
        **{c: cols[c].ravel() for c in FIDUCIAL_COLUMNS},
        "beat_class": [kinds[k] for k in sel for _ in range(12)],
        "st_j60_mv": st_j60.ravel(),
    }

    onsets = times[sel]
    rr_mean = float(np.diff(onsets).mean()) if nb > 1 else 60000.0 / params.hr_bpm
    hr = 60000.0 / rr_mean
    n_prem = sum(kinds[k] == "premature" for k in sel)
    if params.rhythm == "sinus":  # unspecified sinus: named from the measured rate
        rhythm = "sinus_bradycardia" if hr < 60 else "sinus_tachycardia" if hr > 100 else "sinus_rhythm"
    else:
        rhythm = params.rhythm
    findings: list[str] = []
    if params.is_sinus and params.pr_ms > 200:
        findings.append("1AVB")
    if params.bundle_branch_block == "right":
        findings.append("CRBBB")
    if params.bundle_branch_block == "left":
        findings.append("CLBBB")
    if n_prem:
        findings.append("PVC")
    ste = [LEADS[i] for i in range(12) if st_proj[i] >= 0.1 - 1e-9]
    std = [LEADS[i] for i in range(12) if st_proj[i] <= -0.1 + 1e-9]
    if params.st_shift_mv >= 0.1:
        findings.append("STE_")
    if params.st_shift_mv <= -0.1:
        findings.append("STD_")
    t_proj = LEAD_MATRIX @ t_vec
    invt = [LEADS[i] for i in range(12) if t_proj[i] <= -0.1 and LEADS[i] != "aVR"]
    if params.t_inversion is not None:
        findings.append("INVT")
    if params.low_voltage:
        findings.append("LVOLT")
    axis = params.qrs_axis_deg
    heart_axis = "LAD" if axis < -30 else "RAD" if axis > 90 else "MID"
    if heart_axis != "MID":
        findings.append(heart_axis)
    scp = [_RHYTHM_CODES[rhythm]] + findings
    if rhythm == "sinus_rhythm" and not findings:
        scp = ["NORM", "SR"]
    truth = RecordTruth(
        record_id=record_id, hr_bpm=hr, rr_mean_ms=rr_mean, pr_ms=params.pr_ms if params.is_sinus else None,
        qrs_ms=params.qrs_ms, qt_ms=params.qt_ms, qrs_axis_deg=axis, rhythm=rhythm, findings=findings,
        scp_codes=scp, n_beats=nb, n_premature=n_prem, st_elevation_leads=ste,
        st_depression_leads=std, t_inversion_leads=invt, heart_axis=heart_axis)
    return beat_columns, truth


def beats_frame(column_sets: list[dict]) -> pl.DataFrame:
    """One truth beats frame from the raw columns of one or many records (NaN fiducials -> null).

    Polars' per-frame overhead (~1 ms) would otherwise dominate writing a tree, so records keep plain
    columns and frames are built once.
    """
    if not column_sets:
        return pl.DataFrame(schema=BEATS_TRUTH_SCHEMA)
    data = {}
    for name, dtype in BEATS_TRUTH_SCHEMA.items():
        if dtype == pl.String:
            data[name] = pl.Series(name, [v for cs in column_sets for v in cs[name]], dtype=pl.String)
        else:
            data[name] = pl.Series(name, np.concatenate([cs[name] for cs in column_sets]), dtype=dtype,
                                   nan_to_null=name in FIDUCIAL_COLUMNS)
    return pl.DataFrame(data)


# ---------------------------------------------------------------------------------------------------
# A realistic mix of records
# ---------------------------------------------------------------------------------------------------
def random_params(rng: np.random.Generator) -> SynthParams:
    """Draw one record's parameters: mostly normal sinus rhythm, with a realistic mix of findings.

    Roughly: 15 % AF, 12 % sinus bradycardia, 12 % sinus tachycardia; 12 % first-degree AV block (sinus,
    rate <= 100); 8 % RBBB, 7 % LBBB; 10 % PVCs; 7 % ST elevation, 7 % ST depression; 7 % T inversion;
    5 % low voltage; 12 % left and 8 % right axis deviation; most records carry some noise. Values keep a
    margin from the label thresholds (60 / 100 bpm, 200 ms PR, -30 / 90 degrees) so labels are unambiguous.
    """
    u = rng.random()
    if u < 0.15:
        rhythm, hr = "atrial_fibrillation", rng.uniform(65.0, 125.0)
    elif u < 0.27:
        rhythm, hr = "sinus_bradycardia", rng.uniform(42.0, 56.0)
    elif u < 0.39:
        rhythm, hr = "sinus_tachycardia", rng.uniform(106.0, 135.0)
    else:
        rhythm, hr = "sinus_rhythm", rng.uniform(62.0, 97.0)
    rr_ms = 60000.0 / hr

    u = rng.random()
    bbb = "right" if u < 0.08 else "left" if u < 0.15 else "none"
    qrs_ms = {"right": rng.uniform(124.0, 160.0), "left": rng.uniform(130.0, 170.0)}.get(bbb, rng.uniform(76.0, 108.0))

    qtc_ms = rng.uniform(385.0, 450.0) + (30.0 if bbb != "none" else 0.0)
    qt_ms = qtc_ms * math.sqrt(rr_ms / 1000.0)  # Bazett, inverted
    qt_ms = max(qt_ms, qrs_ms + 130.0)

    first_degree = rhythm in ("sinus_rhythm", "sinus_bradycardia") and rng.random() < 0.2
    pr_ms = rng.uniform(212.0, 300.0) if first_degree else rng.uniform(122.0, 192.0)
    gap = pr_ms if rhythm != "atrial_fibrillation" else 60.0
    if qt_ms + gap + 40.0 > rr_ms:  # fast rates: the QT shortens first, then the PR
        qt_ms = max(qrs_ms + 110.0, rr_ms - gap - 40.0)
        if qt_ms + gap + 40.0 > rr_ms:
            pr_ms = max(110.0, rr_ms - qt_ms - 40.0)

    u = rng.random()
    if u < 0.12:
        axis = rng.uniform(-75.0, -36.0)
    elif u < 0.20:
        axis = rng.uniform(96.0, 140.0)
    else:
        axis = rng.uniform(-24.0, 84.0)

    st_shift, territory = 0.0, str(rng.choice(["anterior", "inferior", "lateral"]))
    u = rng.random()
    if u < 0.07:
        st_shift = rng.uniform(0.15, 0.4)
    elif u < 0.14:
        st_shift = -rng.uniform(0.12, 0.25)
    t_inv = str(rng.choice(["anterior", "inferior", "lateral"])) if rng.random() < 0.07 else None
    low_voltage = bool(rng.random() < 0.05)
    pvc_count = int(rng.integers(1, 4)) if rng.random() < 0.10 else 0

    noisy = rng.random() < 0.8
    return SynthParams(
        hr_bpm=round(hr, 1), pr_ms=round(pr_ms, 1), qrs_ms=round(qrs_ms, 1), qt_ms=round(qt_ms, 1),
        qrs_axis_deg=round(axis, 1), rhythm=rhythm, bundle_branch_block=bbb, pvc_count=pvc_count,
        st_shift_mv=round(st_shift, 3), st_territory=territory, t_inversion=t_inv, low_voltage=low_voltage,
        qrs_scale=round(rng.uniform(0.8, 1.3), 3), rr_variability=round(rng.uniform(0.005, 0.04), 4),
        af_rr_cv=round(rng.uniform(0.12, 0.25), 3), f_wave_mv=round(rng.uniform(0.02, 0.08), 3),
        baseline_wander_mv=round(rng.uniform(0.02, 0.3), 3) if noisy and rng.random() < 0.7 else 0.0,
        mains_hum_mv=round(rng.uniform(0.005, 0.04), 3) if noisy and rng.random() < 0.3 else 0.0,
        mains_hz=int(rng.choice([50, 60])),
        emg_noise_mv=round(rng.uniform(0.005, 0.03), 3) if noisy and rng.random() < 0.35 else 0.0,
    )


# ---------------------------------------------------------------------------------------------------
# A PTB-XL-like tree on disk
# ---------------------------------------------------------------------------------------------------
ADC_GAIN = 1000.0  # adu per mV, as PTB-XL
WFDB_LEAD_NAMES = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")


def write_wfdb(path_stem: Path, signal_mv: np.ndarray, fs_hz: int) -> tuple[Path, Path]:
    """Write a (12, n) mV signal as WFDB format 16 (1000 adu/mV, baseline 0) at ``path_stem``.{hea,dat}.

    Written directly (a header line per channel with initial value and checksum), which is ~20x faster
    than ``wfdb.wrsamp``; wfdb reads it back within half an adu (quantisation).
    """
    digital = np.round(signal_mv.astype(np.float64) * ADC_GAIN)
    # -32768 is WFDB's "no sample" value in format 16: stay one above it.
    digital = np.clip(digital, -32767, 32767).astype("<i2")
    n = digital.shape[1]
    name = path_stem.name
    dat = path_stem.with_suffix(".dat")
    hea = path_stem.with_suffix(".hea")
    dat.write_bytes(np.ascontiguousarray(digital.T).tobytes())
    sums = digital.astype(np.int64).sum(axis=1)
    lines = [f"{name} {digital.shape[0]} {fs_hz} {n}"]
    for ch, lead in enumerate(WFDB_LEAD_NAMES):
        checksum = int(((int(sums[ch]) + 32768) % 65536) - 32768)
        lines.append(f"{name}.dat 16 {ADC_GAIN:.1f}(0)/mV 16 0 {int(digital[ch, 0])} {checksum} 0 {lead}")
    lines.append("# synthetic ECG written by ecg-grounding pipeline.synthetic")
    hea.write_text("\n".join(lines) + "\n")
    return hea, dat


def record_id_for(index: int, n: int) -> str:
    """'syn00001' style ids (1-based), wide enough for ``n`` records."""
    return f"syn{index + 1:0{max(5, len(str(n)))}d}"


def write_synthetic_tree(out_dir: str | Path, n: int, seed: int) -> Path:
    """Write ``n`` random records as a PTB-XL-like tree under ``out_dir``; returns ``out_dir``.

    Layout: ``synthetic_database.csv`` (one row per record: ecg_id, record_id, patient_id, age, sex, report,
    scp_codes, heart_axis, filename_hr, seed, ...), ``records500/<record_id>.hea/.dat`` (WFDB format 16,
    1000 adu/mV) and ``truth/beats.parquet`` + ``truth/records.parquet``. Record ``i`` uses
    ``params = random_params(default_rng([seed_i, 1]))`` and ``generate_record(params, seed_i)`` with the
    csv's ``seed`` column as ``seed_i``, so any record can be regenerated alone. Same ``seed`` -> same bytes.
    """
    from pipeline import progress
    from pipeline.batch import write_parquet_atomic  # here: batch pulls the errors schema (cheap, but lazy)

    out = Path(out_dir)
    (out / "records500").mkdir(parents=True, exist_ok=True)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    seeds = np.random.SeedSequence(int(seed)).generate_state(max(n, 1), dtype=np.uint32)[:n]
    demo_rng = np.random.default_rng([int(seed), 2])
    rows: list[dict] = []
    truth_rows: list[dict] = []
    beat_frames: list[pl.DataFrame] = []
    for i in progress.iterate("synth", range(n)):
        rid = record_id_for(i, n)
        rseed = int(seeds[i])
        params = random_params(np.random.default_rng([rseed, 1]))
        rec = generate_record(params, rseed, record_id=rid)
        write_wfdb(out / "records500" / rid, rec.signal_mv, params.fs_hz)
        t = rec.truth
        age = int(demo_rng.integers(22, 90))
        sex = "male" if demo_rng.random() < 0.52 else "female"
        rows.append({
            "ecg_id": i + 1, "record_id": rid, "patient_id": f"synp{i + 1:0{max(5, len(str(n)))}d}",
            "age": age, "sex": sex, "report": rec.report,
            "scp_codes": "{" + ", ".join(f"'{c}': 100.0" for c in t.scp_codes) + "}",
            "heart_axis": t.heart_axis, "filename_hr": f"records500/{rid}", "fs_hz": params.fs_hz,
            "n_samples": int(rec.signal_mv.shape[1]), "seed": rseed,
        })
        truth_rows.append({
            "record_id": rid, "seed": rseed, "hr_bpm": t.hr_bpm, "rr_mean_ms": t.rr_mean_ms, "pr_ms": t.pr_ms,
            "qrs_ms": t.qrs_ms, "qt_ms": t.qt_ms, "qrs_axis_deg": t.qrs_axis_deg, "rhythm": t.rhythm,
            "heart_axis": t.heart_axis, "findings": ";".join(t.findings), "scp_codes": ";".join(t.scp_codes),
            "n_beats": t.n_beats, "n_premature": t.n_premature,
            "st_elevation_leads": ";".join(t.st_elevation_leads),
            "st_depression_leads": ";".join(t.st_depression_leads),
            "t_inversion_leads": ";".join(t.t_inversion_leads),
            "params_json": params.model_dump_json(),
        })
        beat_frames.append(rec.beat_columns)
    db = pl.DataFrame(rows, schema={
        "ecg_id": pl.Int64, "record_id": pl.String, "patient_id": pl.String, "age": pl.Int64, "sex": pl.String,
        "report": pl.String, "scp_codes": pl.String, "heart_axis": pl.String, "filename_hr": pl.String,
        "fs_hz": pl.Int64, "n_samples": pl.Int64, "seed": pl.Int64})
    tmp = out / f".synthetic_database.csv.{os.getpid()}.tmp"
    db.write_csv(tmp)
    os.replace(tmp, out / "synthetic_database.csv")
    records = pl.DataFrame(truth_rows, schema=RECORDS_TRUTH_SCHEMA)
    write_parquet_atomic(records, out / "truth" / "records.parquet")
    beats = beats_frame(beat_frames)
    write_parquet_atomic(beats, out / "truth" / "beats.parquet")
    return out


BEATS_TRUTH_SCHEMA: dict[str, pl.DataType] = {
    "record_id": pl.String, "lead": pl.String, "beat": pl.Int32, **{c: pl.Float64 for c in FIDUCIAL_COLUMNS},
    "beat_class": pl.String, "st_j60_mv": pl.Float64}
RECORDS_TRUTH_SCHEMA: dict[str, pl.DataType] = {
    "record_id": pl.String, "seed": pl.Int64, "hr_bpm": pl.Float64, "rr_mean_ms": pl.Float64,
    "pr_ms": pl.Float64, "qrs_ms": pl.Float64, "qt_ms": pl.Float64, "qrs_axis_deg": pl.Float64,
    "rhythm": pl.String, "heart_axis": pl.String, "findings": pl.String, "scp_codes": pl.String,
    "n_beats": pl.Int32, "n_premature": pl.Int32, "st_elevation_leads": pl.String,
    "st_depression_leads": pl.String, "t_inversion_leads": pl.String, "params_json": pl.String}
