"""Records built by hand: a beats table and a records row with known values, for criteria and writer tests whose
truth is exact by construction (which lead has a Q wave, which beat is early, what the PR does from beat to beat).
"""
from __future__ import annotations

import polars as pl

from features.schema import BEATS_SCHEMA, RECORDS_SCHEMA
from pipeline.context import GroundingContext
from pipeline.record import LEADS

# A plain normal beat in every lead: upright P, an Rs complex, ST on the baseline, upright T.
BASE_BEAT = dict(p_amp_mv=0.12, p_ms=100.0, p_form="positive", pr_ms=160.0, qrs_ms=90.0, qt_ms=380.0,
                 r_amp_mv=0.9, s_amp_mv=-0.25, s_ms=30.0, r_ms=50.0, qrs_morphology="Rs", st_j_mv=0.0,
                 st_j60_mv=0.0, t_amp_mv=0.25, t_form="positive", t_ms=160.0, lead_quality="ok")


def hand_context(statements: list[str], n_beats: int = 10, rr_ms: float = 800.0, classes: list[str] | None = None,
                 leads: dict[str, dict] | None = None, beats: dict[int, dict] | None = None,
                 cells: dict[tuple[str, int], dict] | None = None, record: dict | None = None,
                 gated: set[str] = frozenset(), calibrated: bool = True, sex: str | None = None,
                 record_id: str = "hand") -> GroundingContext:
    """A context of ``n_beats`` beats in 12 leads. ``classes`` gives each beat's class (an early beat comes 40 %
    early and the next one late by as much, so coupling + pause = two cycles); ``leads`` overrides columns in
    every beat of a lead, ``beats`` in every lead of a beat, ``cells`` one (lead, beat); ``record`` the records
    row. Timing columns (QRS onset, R peak, P onset, RR) follow from the classes."""
    classes = classes or ["normal"] * n_beats
    onsets, t = [], 300.0
    rrs: list[float | None] = []
    for k, cls in enumerate(classes):
        if k:
            prev = classes[k - 1]
            rr = rr_ms * (0.6 if cls == "premature" else 1.4 if prev == "premature" else 1.0)
            t += rr
            rrs.append(rr)
        else:
            rrs.append(None)
        onsets.append(t)
    rows = []
    for lead in LEADS:
        for k, cls in enumerate(classes):
            r = {c: None for c in BEATS_SCHEMA}
            r.update(BASE_BEAT)
            r.update(record_id=record_id, lead=lead, beat=k, beat_class=cls, rr_ms=rrs[k], qrs_on_ms=onsets[k],
                     r_peak_ms=onsets[k] + 40.0, qrs_off_ms=onsets[k] + 90.0, p_on_ms=onsets[k] - 160.0)
            if lead == "aVR":
                r.update(p_amp_mv=-0.1, p_form="negative", r_amp_mv=None, s_amp_mv=None, q_amp_mv=-0.9, q_ms=90.0,
                         qrs_morphology="QS", t_amp_mv=-0.2, t_form="negative")
            r.update((leads or {}).get(lead, {}))
            r.update((beats or {}).get(k, {}))
            r.update((cells or {}).get((lead, k), {}))
            if r.get("p_form") == "absent" or r.get("p_amp_mv") is None and r.get("p_form") is None:
                r.update(p_on_ms=None, pr_ms=None)
            if lead in gated:
                r = {c: (r[c] if c in ("record_id", "lead", "beat", "beat_class") else None) for c in BEATS_SCHEMA}
                r["lead_quality"] = "gated:flat"
            rows.append(r)
    frame = pl.DataFrame(rows, schema=BEATS_SCHEMA)
    rec = {c: None for c in RECORDS_SCHEMA}
    normal_rr = [x for x, c in zip(rrs, classes) if x is not None]
    mean_rr = sum(normal_rr) / len(normal_rr)
    rec.update(record_id=record_id, source="hand", n_beats=n_beats, hr_bpm=60000.0 / mean_rr, rr_mean_ms=mean_rr,
               rr_sd_ms=10.0, rhythm_regular=True, p_waves_present=True, pr_ms=160.0, qrs_ms=90.0, qt_ms=380.0,
               qtc_bazett_ms=425.0, qtc_fridericia_ms=410.0, qrs_axis_deg=60.0, p_axis_deg=50.0, t_axis_deg=40.0,
               sokolow_lyon_mv=2.0, cornell_mv=1.2, low_voltage_limb=False, low_voltage_precordial=False,
               n_premature=sum(c == "premature" for c in classes), n_paced=0, leads_ok=12 - len(gated),
               leads_gated="")
    rec.update(record or {})
    return GroundingContext(record_id=record_id, source="hand", ecg_path=record_id, report="",
                            statement_ids=list(statements), unmapped_statements=[], record=rec, beats=frame,
                            extra={"duration_ms": 10000.0, "sex": sex},
                            amplitudes_calibrated=calibrated,
                            calibration_flags=[] if calibrated else ["amplitude_normalised"])
