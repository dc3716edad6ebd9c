"""The parameters of one synthetic record (``SynthParams``) and the territories its ST shift and T inversion
point at: what ``pipeline.synthetic.generate_record`` builds a record from (times in ms, amplitudes in mV, axis in
degrees; the model and its conventions: ``pipeline.synthetic``).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.synthetic_avblock import check_av_block
from pipeline.synthetic_flutter import FlutterBlock, check_flutter_block
from pipeline.synthetic_waves import U_WAVE_MS

Rhythm = Literal["sinus", "sinus_rhythm", "sinus_bradycardia", "sinus_tachycardia", "atrial_fibrillation",
                 "atrial_flutter"]
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

    hr_bpm: float = Field(70.0, ge=20.0, le=180.0)  # the ventricular rate (an escape rhythm's under AV block)
    pr_ms: float = Field(160.0, ge=100.0, le=400.0)  # ignored (no P waves) in atrial fibrillation
    qrs_ms: float = Field(90.0, ge=60.0, le=200.0)
    qt_ms: float = Field(390.0, ge=200.0, le=600.0)
    qrs_axis_deg: float = Field(60.0, ge=-120.0, le=180.0)
    rhythm: Rhythm = "sinus"
    # incomplete_right: an rsr' in V1 with a QRS of 95-119 ms (a smaller, later right-ventricular force)
    bundle_branch_block: Literal["none", "right", "left", "incomplete_right"] = "none"
    # left anterior (superior axis, qR in aVL, rS inferior) / posterior (right axis) fascicular block
    fascicular_block: Literal["none", "left_anterior", "left_posterior"] = "none"
    pvc_count: int = Field(0, ge=0, le=4)  # premature ventricular beats to place (when they fit)
    pac_count: int = Field(0, ge=0, le=4)  # premature atrial beats (an ectopic P, conducted; sinus node reset)
    pac_coupling: float = Field(0.65, ge=0.4, le=0.9)  # their coupling interval, as a fraction of the RR
    # P duration (ms; default min(110, PR - 40)) and shape: "bifid" is the wide, notched P of left atrial
    # enlargement (P mitrale: a late, large, posterior left-atrial force: notch in II, deep terminal V1)
    p_ms: float | None = Field(None, ge=60.0, le=180.0)
    p_wave: Literal["normal", "bifid"] = "normal"
    # the P may start before the preceding T has ended (a long PR at a fast rate: the P rides on the T)
    p_on_t: bool = False
    t_scale: float = Field(1.0, ge=0.05, le=2.0)  # T amplitude factor (low / flat T below ~0.3)
    t_notch: bool = False  # a notched (bifid) T: two overlapping repolarisation components
    u_wave_mv: float = Field(0.0, ge=0.0, le=0.4)  # U wave (largest lead, mV), concordant with the T
    u_offset_ms: float = Field(0.0, ge=-100.0, le=100.0)  # U onset - T end; negative: T-U fusion
    # ventricular pacing: a stimulus (spike) before every QRS; "biventricular": an LV and an RV stimulus
    # ``biv_delay_ms`` apart; the paced QRS starts ``pacing_latency_ms`` after the first stimulus
    pacing: Literal["none", "ventricular", "biventricular"] = "none"
    pacing_spike_mv: float = Field(2.0, ge=0.2, le=10.0)
    pacing_latency_ms: float = Field(20.0, ge=0.0, le=40.0)
    biv_delay_ms: float = Field(20.0, ge=0.0, le=60.0)
    # dual-chamber pacing: an atrial stimulus ``atrial_latency_ms`` before every paced beat's P (the P it evokes);
    # unipolar atrial stimuli reach the recorder small (LUDB 45: 0.1-0.4 mV), well below the ventricular ones
    atrial_spike_mv: float = Field(0.0, ge=0.0, le=5.0)
    atrial_latency_ms: float = Field(10.0, ge=0.0, le=40.0)
    # a demand (VVI) pacemaker in atrial fibrillation: the beats ending this many of the longest RR intervals are
    # paced (a stimulus, a broad ventricular QRS, a discordant T); the others stay conducted (LUDB 95)
    demand_paced_beats: int = Field(0, ge=0, le=20)
    # AV block (pipeline.synthetic_avblock): "complete": sinus P waves at ``atrial_rate_bpm`` dissociated from an
    # escape rhythm at ``hr_bpm`` (junctional: narrow; right / left ventricular: broad, or ``pacing``); "2:1":
    # every second P blocked, the others conducted with ``pr_ms``
    av_block: Literal["none", "complete", "2:1"] = "none"
    atrial_rate_bpm: float | None = Field(None, ge=40.0, le=150.0)
    escape: Literal["junctional", "right_ventricular", "left_ventricular"] = "junctional"
    st_shift_mv: float = Field(0.0, ge=-0.5, le=0.6)  # + elevation / - depression, in the territory's leads
    st_territory: Territory = "anterior"
    t_inversion: Territory | None = None
    low_voltage: bool = False
    qrs_scale: float = Field(1.0, ge=0.5, le=2.0)  # inter-individual QRS amplitude factor
    rr_variability: float = Field(0.02, ge=0.0, le=0.1)  # sinus arrhythmia, fraction of RR
    af_rr_cv: float = Field(0.18, ge=0.05, le=0.35)  # AF RR coefficient of variation
    f_wave_mv: float = Field(0.05, ge=0.0, le=0.2)  # AF fibrillatory wave amplitude
    flutter_cycle_ms: float = Field(220.0, ge=170.0, le=280.0)  # atrial flutter: F wave cycle (215-350 / min)
    flutter_wave_mv: float = Field(0.15, ge=0.0, le=0.5)  # ... F wave peak to peak (largest lead)
    flutter_block: FlutterBlock = "variable"  # ... its AV conduction ratio; fixed: hr_bpm must be the cycle's share
    flutter_cycle_wander_ms: float = Field(0.0, ge=0.0, le=20.0)  # ... its slow drift (variable block only)
    baseline_wander_mv: float = Field(0.0, ge=0.0, le=2.0)
    mains_hum_mv: float = Field(0.0, ge=0.0, le=1.0)
    mains_hz: Literal[50, 60] = 50
    emg_noise_mv: float = Field(0.0, ge=0.0, le=0.5)  # RMS of muscle noise per lead
    duration_s: float = Field(10.0, ge=2.0, le=120.0)
    fs_hz: int = Field(500, ge=100, le=2000)

    @model_validator(mode="after")
    def _consistent(self) -> "SynthParams":
        if self.bundle_branch_block in ("right", "left") and self.qrs_ms < 120:
            raise ValueError("a bundle branch block needs qrs_ms >= 120")
        if self.bundle_branch_block == "incomplete_right" and not 95 <= self.qrs_ms < 120:
            raise ValueError("an incomplete right bundle branch block needs 95 <= qrs_ms < 120")
        if self.fascicular_block != "none" and (self.bundle_branch_block != "none" or self.pacing != "none"):
            raise ValueError("a fascicular block is generated alone (no bundle branch block, no pacing)")
        if self.fascicular_block == "left_anterior" and self.qrs_axis_deg > -45:
            raise ValueError("a left anterior fascicular block needs qrs_axis_deg <= -45")
        if self.fascicular_block == "left_posterior" and self.qrs_axis_deg < 90:
            raise ValueError("a left posterior fascicular block needs qrs_axis_deg >= 90")
        if self.pacing != "none" and (self.bundle_branch_block != "none" or self.qrs_ms < 120):
            raise ValueError("a paced QRS needs qrs_ms >= 120 and no bundle branch block")
        if self.demand_paced_beats and (self.pacing != "none" or self.rhythm != "atrial_fibrillation"):
            raise ValueError("demand pacing is drawn in atrial fibrillation, without fixed-rate pacing")
        if self.atrial_spike_mv > 0 and (self.pacing == "none" or not self.is_sinus):
            raise ValueError("atrial stimuli need ventricular pacing and P waves (dual-chamber pacing)")
        check_av_block(self)
        if self.is_sinus and self.pr_ms < self.p_duration_ms + 30.0:
            raise ValueError(f"pr_ms {self.pr_ms} leaves no PR segment after a {self.p_duration_ms:.0f} ms P")
        if self.rhythm == "sinus_bradycardia" and self.hr_bpm >= 60:
            raise ValueError("sinus_bradycardia needs hr_bpm < 60")
        if self.rhythm == "sinus_tachycardia" and self.hr_bpm <= 100:
            raise ValueError("sinus_tachycardia needs hr_bpm > 100")
        if self.rhythm == "sinus_rhythm" and not 60 <= self.hr_bpm <= 100:
            raise ValueError("sinus_rhythm needs 60 <= hr_bpm <= 100")
        rr_ms = 60000.0 / self.hr_bpm
        if self.rhythm == "atrial_flutter":
            check_flutter_block(self.flutter_block, self.flutter_cycle_ms, rr_ms, self.flutter_cycle_wander_ms)
        if self.qt_ms - self.qrs_ms < 100:
            raise ValueError("qt_ms must exceed qrs_ms by at least 100 ms (ST segment + T wave)")
        gap = self.pr_ms if self.is_sinus else 60.0
        if self.p_on_t and self.is_sinus:
            # the P may overlap the T, but starts after the QRS and its ST segment
            if self.qrs_ms + 80.0 + gap > rr_ms:
                raise ValueError(f"PR {gap} does not fit after the QRS in RR {rr_ms:.0f} ms")
        elif self.repolarisation_end_ms + gap + 20.0 > rr_ms:
            raise ValueError(f"qt_ms {self.qt_ms} (and U wave) + PR {gap} does not fit in RR {rr_ms:.0f} ms")
        return self

    @property
    def is_sinus(self) -> bool:
        return self.rhythm not in ("atrial_fibrillation", "atrial_flutter")

    @property
    def p_duration_ms(self) -> float:
        """The P wave's duration (ms): ``p_ms``, else min(110, PR - 40)."""
        return float(self.p_ms) if self.p_ms is not None else float(min(110.0, self.pr_ms - 40.0))

    @property
    def repolarisation_end_ms(self) -> float:
        """Where repolarisation (the T, or a U wave after it) ends, ms after the QRS onset."""
        if self.u_wave_mv > 0:
            return max(self.qt_ms, self.qt_ms + self.u_offset_ms + U_WAVE_MS)
        return self.qt_ms
