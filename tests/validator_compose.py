"""A second writer for the validator's tests: true interpretations of a record in randomised phrasing.

``compose(ctx, kb, rng)`` writes what the rules writer would say in other words: units ms / s and mV / mm,
leads before or after their values, lists with "respectively", hedges, summaries. Every number is a measured
value rounded as written; a value is cited as the evidence of a diagnosis only when it meets one of the
diagnosis' criteria (otherwise it is stated as "the relevant values"); LUDB's normalised amplitudes are not
cited at all. Shared helpers for ``validator_mutations`` live here too.
"""
from __future__ import annotations

import math
import random

from pipeline.context import GroundingContext
from pipeline.cutoffs import cutoffs

# ------------------------------------------------------------------------------------------------ helpers
def _num(v):
    if v is None or isinstance(v, bool):
        return None
    v = float(v)
    return v if math.isfinite(v) else None



def _rv(ctx, key):
    """A record value an answer may state: None when ``ctx.citable`` says it is not (low confidence,
    uncalibrated amplitudes)."""
    return _num(ctx.record.get(key)) if ctx.citable(key) else None

def amplitudes_ok(ctx: GroundingContext) -> bool:
    return ctx.citable("r_amp_mv") and ctx.citable("qrs_axis_deg")


def lv(ctx: GroundingContext, lead: str, col: str):
    return _num(ctx.lead_value(lead, col)) if lead in ctx.measured_leads else None


def lead_all(ctx: GroundingContext, lead: str, col: str) -> list[float]:
    b = ctx.beats
    vals = b.filter(b["lead"] == lead)[col].to_list() if col in b.columns else []
    return [float(v) for v in vals if v is not None and math.isfinite(v)]


def fmt_mv(v: float, rng: random.Random, signed: bool = True) -> str:
    if rng.random() < 0.3:
        mm = round(v * 10.0, 1)
        return (f"{mm:.1f}" if signed else f"{abs(mm):.1f}") + " mm"
    return (f"{v:.2f}" if signed else f"{abs(v):.2f}") + " mV"


def fmt_ms(v: float, rng: random.Random) -> str:
    if rng.random() < 0.2:
        return f"{v / 1000.0:.3f} s"
    return f"{v:.0f} ms"


def lead_word(lead: str, rng: random.Random) -> str:
    return f"lead {lead}" if lead in ("I", "II", "III") or rng.random() < 0.4 else lead


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def qtc_cut(ctx) -> tuple[float, float]:
    """(value above which QTc is surely prolonged, value below which it is surely normal) for this record's sex."""
    c = cutoffs()["qtc_prolonged_ms"]
    sex = (ctx.extra or {}).get("sex")
    if sex in ("male", "female"):
        t = c.threshold(sex)
        return t, t
    return c.female, c.male


def names(ctx, kb) -> list[str]:
    return [kb.entries[i].name for i in dict.fromkeys(ctx.statement_ids) if i in kb.entries]


# ----------------------------------------------------------------------------------------- the composer
def compose(ctx: GroundingContext, kb, rng: random.Random) -> str:
    """A true one-paragraph interpretation of ``ctx`` in randomised phrasing (see the module docstring)."""
    rec = ctx.record
    amp = amplitudes_ok(ctx)
    out: list[str] = []
    hr, pr, qrs, qt = (_rv(ctx, k) for k in ("hr_bpm", "pr_ms", "qrs_ms", "qt_ms"))
    qtcb, qtcf = _rv(ctx, "qtc_bazett_ms"), _rv(ctx, "qtc_fridericia_ms")
    rhythm = [kb.entries[i].name for i in ctx.statement_ids if kb.entries[i].category == "rhythm"]
    if hr is not None:
        rate_word = rng.choice(["heart rate", "ventricular rate", "rate"])
        if rhythm:
            out.append(rng.choice([f"The rhythm is {join(rhythm)} with a {rate_word} of {hr:.0f} bpm",
                                   f"{_cap(join(rhythm))} is present at {hr:.0f} beats per minute",
                                   f"This ECG shows {join(rhythm)}; the {rate_word} is {hr:.0f} bpm"]) + ".")
        else:
            out.append(f"The {rate_word} is {hr:.0f} bpm.")
    elif rhythm:  # a rate that is not citable still leaves the rhythm to name
        out.append(rng.choice([f"The rhythm is {join(rhythm)}.", f"This ECG shows {join(rhythm)}."]))
    parts = []
    if pr is not None:
        parts.append(rng.choice([f"a PR interval of {fmt_ms(pr, rng)}", f"PR {pr:.0f} ms",
                                 f"the PR interval measures {fmt_ms(pr, rng)}"]))
    if qrs is not None:
        parts.append(rng.choice([f"a QRS duration of {fmt_ms(qrs, rng)}", f"QRS width {qrs:.0f} ms",
                                 f"the QRS complex lasts {fmt_ms(qrs, rng)}"]))
    if qt is not None:
        parts.append(rng.choice([f"a QT interval of {qt:.0f} ms", f"QT {qt:.0f} ms"]))
    if parts:
        out.append(rng.choice(["Intervals: ", "The intervals are ", "Conduction intervals show "]) + join(parts) + ".")
    if qtcb is not None:
        if qtcf is not None and rng.random() < 0.4:
            out.append(f"The corrected QT is {qtcb:.0f} ms by Bazett and {qtcf:.0f} ms by Fridericia.")
        else:
            out.append(rng.choice([f"The QTc is {qtcb:.0f} ms.", f"QTc (Bazett) measures {qtcb:.0f} ms.",
                                   f"The heart-rate corrected QT interval is {qtcb:.0f} ms."]))
    axis = _rv(ctx, "qrs_axis_deg")
    if axis is not None and amp:
        out.append(rng.choice([f"The frontal QRS axis is {axis:.0f} degrees.", f"The electrical axis lies at {axis:.0f}°.",
                               f"QRS axis {axis:+.0f} degrees."]))
    for sid in dict.fromkeys(ctx.statement_ids):
        e = kb.entries[sid]
        if e.category == "rhythm" and sid not in ("PVC", "PAC", "PRC(S)", "BIGU", "TRIGU", "PACE"):
            continue
        out.append(_dx_sentence(ctx, kb, sid, rng, amp))
    nm = names(ctx, kb)
    if nm and rng.random() < 0.6:
        out.append(rng.choice([f"In summary: {join(nm)}.", f"Overall impression: {join(nm)}.",
                               f"The findings are consistent with {join(nm)}."]))
    return " ".join(s for s in out if s)


_DX_COLS = {"st-t": ["st_j_mv", "t_amp_mv"], "ischemia/infarction": ["st_j_mv", "t_amp_mv", "q_amp_mv"],
            "conduction": ["r_prime_amp_mv", "s_amp_mv", "r_amp_mv"], "hypertrophy": ["r_amp_mv", "s_amp_mv", "p_amp_mv"],
            "voltage": ["r_amp_mv", "s_amp_mv"], "axis": [], "rhythm": [], "other": []}
_COL_WORDS = {"st_j_mv": ["ST level at the J point", "J-point ST level"], "t_amp_mv": ["T wave amplitude", "T wave"],
              "q_amp_mv": ["Q wave depth", "Q wave"], "r_prime_amp_mv": ["R' amplitude", "terminal R'"],
              "s_amp_mv": ["S wave depth", "S wave"], "r_amp_mv": ["R wave amplitude", "R wave height"],
              "p_amp_mv": ["P wave amplitude", "P wave"]}


def _dx_sentence(ctx, kb, sid, rng, amp) -> str:
    e = kb.entries[sid]
    name = e.name
    rec = ctx.record
    if sid in ("PVC", "PAC", "PRC(S)", "BIGU", "TRIGU"):
        n = int(rec.get("n_premature") or 0)
        if n:
            return rng.choice([f"There {'is' if n == 1 else 'are'} {n} premature beat{'s' if n != 1 else ''}, "
                               f"consistent with {name}.", f"{_cap(name)} are seen ({n} early beat"
                               f"{'s' if n != 1 else ''})."])
        return f"{_cap(name)} are noted."
    if sid == "PACE":
        return f"There is a {name}."
    cols = _DX_COLS.get(e.category, [])
    look = [lead for lead in (e.leads_to_look_at or []) if lead in ctx.measured_leads][:3]
    if amp and cols and look:
        # values that meet one of the entry's own criteria are cited as its evidence; otherwise the values
        # are stated without a claim of support (citing them as support would be false)
        support = []
        for crit in e.criteria:
            if crit.feature in _COL_WORDS and crit.comparison not in ("==", "absent"):
                for lead in (crit.leads or look):
                    v = lv(ctx, lead, crit.feature) if ctx.citable(crit.feature, lead) else None
                    if v is not None and crit.test(v) and (crit.feature, lead) not in [(c, x) for c, x, _ in support]:
                        support.append((crit.feature, lead, v))
        if support:
            col = support[0][0]
            vals = [(lead, v) for c, lead, v in support if c == col][:3]
            prefix = rng.choice([f"There is {name}, with", f"{_cap(name)} is present, shown by", f"Findings of {name}:"])
        else:
            col = rng.choice(cols)
            vals = [(lead, lv(ctx, lead, col)) for lead in look if ctx.citable(col, lead)]
            vals = [(lead, v) for lead, v in vals if v is not None]
            prefix = rng.choice([f"For {name}, the relevant values are", f"For {name}, the values are"])
        if vals:
            word = rng.choice(_COL_WORDS[col])
            signed = col not in ("q_amp_mv", "s_amp_mv", "r_amp_mv", "r_prime_amp_mv")
            if len(vals) >= 2 and rng.random() < 0.4:
                vs = [fmt_mv(v, random.Random(0), signed).replace(" mV", "") for _, v in vals]
                return f"{prefix} a {word} of {join(vs)} mV in {join([lead for lead, _ in vals])} respectively."
            items = [f"{fmt_mv(v, rng, signed)} in {lead_word(lead, rng)}" for lead, v in vals]
            return f"{prefix} a {word} of {join(items)}."
    if look:
        return rng.choice([f"There is {name}, best seen in {join([lead_word(x, rng) for x in look])}.",
                           f"{_cap(name)} is present."])
    return f"There is {name}."
