"""Polarity per lead and per territory: T and P inverted / upright / flat / biphasic, ST elevation / depression /
isoelectric, Q waves and QRS patterns (rS, qR, rsR' ...), against the measurements of the leads named.

A claim about named leads must not be false in them (a list of four or more may hold one exception); a claim
about a territory ("the lateral leads": I, aVL, V5, V6) must hold in most of its leads; a denial ("no ST
elevation") is false when the finding reaches its clinical cut-off (``knowledge/cutoffs.yaml``) in two leads
(one when a single lead is named). With no lead named, an assertion must hold somewhere (inversion, elevation,
depression) or in most leads (upright, isoelectric). Amplitude margins (``ValidationConfig.t_margin_mv`` ...)
are measurement tolerances: a T wave within them of zero is neither upright nor inverted. On a record whose
amplitudes are not calibrated, polarity is read from the measured forms only.
"""
from __future__ import annotations

import re

from pipeline.answer_text import LeadGroup
from pipeline.context import UNSURE_REASONS, GroundingContext
from pipeline.grounding import MeasurementIndex
from pipeline.record import LEADS
from pipeline.words import BE as _BE, QualClaim, negated, not_ as _not, rx as _rx

# ------------------------------------------------------------------------------------------- per lead


def _wave_rule(wave: str, words: str, adjectives: str, extra: str = "") -> re.Pattern:
    """T / P polarity in its three forms: "T wave polarity negative", "inverted T waves", "the T waves in V1-V3
    are inverted" (``words`` after the verb, ``adjectives`` before the wave), plus ``extra`` alternatives."""
    w = rf"\b{wave}[- ]?waves?"
    return _rx(rf"{w} (?:polarity|deflections?|direction|orientation) (?:is |was |are )?" + _not()
               + rf"(?:\w+ )?(?:{words})\b"
               + rf"|\b(?:{adjectives}) {wave}(?:[- ]?waves?)?\b"
               + rf"|{w} (?:[\w,/-]+ ){{0,4}}?" + _BE + " " + _not() + rf"(?:\w+ |{_SHAPES})?(?:{words})\b"
               + extra)


# Shape words a polarity word may follow ("tall and upright", "deep, symmetric and inverted"); never a lead or a
# preposition, so "inverted in V1 and upright in I" stays two claims.
_SHAPES = (r"(?:(?:tall|deep|deeply|broad|broad-based|peaked|symmetric(?:al)?|asymmetric(?:al)?|prominent|large|"
           r"small|shallow|slightly|markedly|clearly|mildly|sharply|pointed|notched|narrow|rounded|wide)"
           r"(?:,? and|,| but)? ){1,3}")


_LEAD_RULES: list[tuple[str, re.Pattern]] = [
    ("t_inverted", _wave_rule("T", "inverted|negative", r"(?:deep(?:ly)? |symmetric(?:al(?:ly)?)? |new |diffuse |"
                              r"widespread )?(?:inverted|negative)",
                              r"|\bT[- ]?waves? (?:\w+ ){0,2}?inversions?\b|\binversion of (?:the )?T[- ]?waves?\b"
                              r"|\bTWI\b|\bT inversions?\b")),
    ("t_upright", _wave_rule("T", "upright|positive", "upright|positive")),
    ("t_flat", _wave_rule("T", "flat|flattened|low|isoelectric", r"flat|flattened|low(?:[- ]amplitude)?|isoelectric",
                          r"|\bT[- ]?wave flattening\b|\bflattening of (?:the )?T[- ]?waves?\b")),
    ("t_biphasic", _wave_rule("T", "biphasic", "biphasic")),
    ("p_inverted", _wave_rule("P", "inverted|negative", "inverted|negative|retrograde", r"|\bP[- ]?wave inversions?\b")),
    ("p_upright", _wave_rule("P", "upright|positive", "upright|positive")),
    ("p_biphasic", _wave_rule("P", "biphasic", "biphasic")),
    ("st_elevation", _rx(r"\b(?:ST|S-T)(?:[- ]segments?)?[- ](?:\w+[- ])?elevations?\b|\belevat(?:ed|ion of) (?:the )?"
                         r"(?:ST|S-T)(?:[- ]segments?)?\b|\b(?:ST|S-T)(?:[- ]segments?)? (?:[\w,/-]+ ){0,4}?" + _BE
                         + r" " + _not() + r"(?:\w+ )?elevated\b|\bJ[- ]point elevations?\b"
                         r"|\bST[- ]?(?:segment )?(?:is |are )?raised\b")),
    ("st_depression", _rx(r"\b(?:ST|S-T)(?:[- ]segments?)?[- ](?:\w+[- ])?depressions?\b|\bdepress(?:ed|ion of) (?:the )?"
                          r"(?:ST|S-T)(?:[- ]segments?)?\b|\b(?:ST|S-T)(?:[- ]segments?)? (?:[\w,/-]+ ){0,4}?" + _BE
                          + r" " + _not() + r"(?:\w+ )?depressed\b|\bJ[- ]point depressions?\b")),
    ("st_isoelectric", _rx(r"\bisoelectric (?:ST|S-T)(?:[- ]segments?)?\b|\b(?:ST|S-T)(?:[- ]segments?)? (?:\w+ ){0,2}?"
                           + _BE + r" " + _not() + r"(?:\w+ )?(?:isoelectric|at baseline|on the baseline)\b")),
    ("q_present", _rx(r"\b(?:pathological |pathologic |significant |deep |broad |wide |prominent |abnormal |small |"
                      r"septal )?Q[- ]?waves?\b(?! (?:duration|depth|amplitude))")),
]
_MORPH = re.compile(r"(?<![\w'’])(?P<m>(?:[qQ]?[rR][sS](?:[rR]['’′])?|[qQ][rR](?:[sS](?:[rR]['’′])?)?|QS|Qr|qrS|"
                    r"rsR['’′]|rSR['’′]|RSR['’′]|rsr['’′]|rSr['’′]|RsR['’′]|rR['’′]|qR|Rs|rS|RS))(?![\w'’])"
                    r"(?P<noun> (?:pattern|complex(?:es)?|morpholog(?:y|ies)|configuration|shape|waves?))?")
_MORPH_ALLOWED_BARE = {"qR", "Rs", "rS", "QS", "Qr", "qRs", "rsR'", "rSR'", "RSR'", "rsr'", "rSr'", "RsR'", "rR'", "qrS",
                       "QR", "RS", "Rsr'", "RSr'", "qRS"}
_LEAD_ATTACH = re.compile(r"^(?:\s*(?:of|measuring|reaching|up to|at|by|about|approximately|around)?\s*[-+\u2212]?"
                          r"\d+(?:\.\d+)?\s*(?:mV|mm|millivolts?|ms)\b)?[\s,]*"
                          r"(?:(?:is|are|was|were)\s+(?:also\s+)?(?:seen|present|noted|visible|observed|evident|"
                          r"recorded|found|apparent|identified|detected)\s+)?"
                          r"(?:(?:in|across|over|throughout|at|within|involving|affecting|of)\s+)?(?:the\s+)?"
                          r"(?:leads?\s+)?\(?\s*$", re.I)
_LEAD_BEFORE = re.compile(r"(?:\b(?:in|across|over|throughout|at|within)\s+(?:the\s+)?(?:leads?\s+)?|\bleads?\s+)?$", re.I)
_LEAD_SUBJECT_GAP = re.compile(r"^[\s,:)\]]*(?:(?:shows?|showing|shown|has|have|had|with|demonstrates?|displays?|reveals?|"
                               r"exhibits?|there (?:is|are)|the|a|an|of|its|their|leads?|lead's|leads')\s+)*(?:\w+\s+"
                               r")?$",
                               re.I)
_GLOBAL_WORDS = re.compile(r"\b(?:diffuse(?:ly)?|widespread|global(?:ly)?|generali[sz]ed|all leads|every lead|througho"
                           r"ut)\b",
                           re.I)




def extract_lead_statements(text: str, groups: list[LeadGroup], region_spans, sentence_of) -> list[QualClaim]:
    """Per-lead word claims of ``text`` with their leads (``sentence_of(pos)`` gives a position's sentence)."""
    out: list[QualClaim] = []
    for concept, rx in _LEAD_RULES:
        for m in rx.finditer(text):
            a, b = m.start(), m.end()
            if concept == "q_present" and re.search(r"\bQ[- ]?waves?\s+(?:depth|duration|amplitude)", m.group(0)):
                continue
            s0, s1 = sentence_of(a)
            neg = negated(text, a, m)
            leads, territory = _claim_leads(text, a, b, s0, s1, groups, region_spans)
            if not leads and _GLOBAL_WORDS.search(text[max(s0, a - 30):min(s1, b + 30)]):
                leads, territory = tuple(LEADS), True
            out.append(QualClaim(concept, a, b, m.group(0), neg, leads, territory))
    for m in _MORPH.finditer(text):
        tok = m.group("m")
        if tok not in _MORPH_ALLOWED_BARE and not m.group("noun"):
            continue
        a, b = m.start(), m.end()
        s0, s1 = sentence_of(a)
        leads, territory = _claim_leads(text, a, b, s0, s1, groups, region_spans)
        if not leads or territory:
            continue
        out.append(QualClaim("morphology", a, b, tok, negated(text, a, m), leads, territory))
    return out


def _claim_leads(text: str, a: int, b: int, s0: int, s1: int, groups: list[LeadGroup],
                 region_spans: list[tuple[int, int]]) -> tuple[tuple[str, ...], bool]:
    """Leads of a per-lead claim: a group inside it ("T waves in V1-V3 are inverted"), right after it ("T
    inversion in II", "ST depression of 0.1 mV in V5"), else right before it ("in V1-V3 the T waves are
    inverted", "lead III shows a Q wave")."""
    inside = [g for g in groups if a <= g.start < b]
    if inside:
        return tuple(dict.fromkeys(x for g in inside for x in g.leads)), not all(g.explicit for g in inside)
    for g in groups:
        if g.start < b or g.start >= s1:
            continue
        if g.start - b <= 40 and _LEAD_ATTACH.match(text[b:g.start]):
            return g.leads, not g.explicit
        if g.start >= b + 40:
            break
    before = [g for g in groups if g.end <= a and a - g.end <= 50 and g.start >= s0 and g.start < s1]
    if before:
        g = before[-1]
        gap = text[g.end:a]
        if _LEAD_SUBJECT_GAP.match(gap) or re.match(r"^[\s,:]*(?:the\s+)?$", gap):
            return g.leads, not g.explicit
    return (), False



def _lead_truth(concept: str, lead: str, ctx: GroundingContext, idx: MeasurementIndex, sex, table, config,
                clinical: bool = False) -> bool | None:
    """Whether ``concept`` holds in ``lead``: True, False or None (cannot tell). ``clinical``: True only when
    the finding reaches its clinical cut-off (what a denial is judged against)."""
    rep = idx.rep.get(lead)
    if rep is None:
        return None
    forms = idx.text_all.get(lead, {})
    if concept.startswith("t_") or concept.startswith("p_"):
        wave = concept[0]
        amp_col = f"{wave}_amp_mv"
        form = idx.text_rep.get(lead, {}).get(f"{wave}_form")
        all_forms = forms.get(f"{wave}_form", [])
        kind = concept[2:]
        amp = rep.get(amp_col)
        if not ctx.citable(amp_col, lead) or amp is None:
            # uncalibrated amplitudes keep their sign: judge by the measured form only
            if form is None:
                return None
            return {"inverted": form == "negative" if form in ("negative", "positive") else None,
                    "upright": form == "positive" if form in ("negative", "positive") else None,
                    "flat": None, "biphasic": True if form == "biphasic" else None}.get(kind)
        m = config.t_margin_mv if wave == "t" else config.p_margin_mv
        if form == "biphasic" and kind in ("inverted", "upright"):
            return None
        if kind == "inverted":
            if clinical and wave == "t":
                return table["t_inversion_mv"].abnormal(amp)
            return True if amp <= -m else (False if amp >= m else None)
        if kind == "upright":
            return True if amp >= m else (False if amp <= -m else None)
        if kind == "flat":
            band = table["t_flat_mv"]
            lo, hi = band.range
            return True if band.contains(amp) else (False if amp > hi + m or amp < lo - m else None)
        if kind == "biphasic":
            if "biphasic" in all_forms:
                return True
            return False if all_forms and all(f in ("positive", "negative") for f in all_forms) and abs(amp) >= 2 * m \
                else None
        return None
    if concept.startswith("st_"):
        j, j60 = rep.get("st_j_mv"), rep.get("st_j60_mv")
        if j is None and j60 is None or not ctx.citable("st_j_mv", lead):
            return None
        vals = [v for v in (j, j60) if v is not None]
        hi, lo = max(vals), min(vals)
        elev_cut = table["st_elevation_v2v3_mv" if lead in ("V2", "V3") else "st_elevation_mv"]
        dep_cut = table["st_depression_mv"]
        elevated = elev_cut.abnormal(hi, sex)
        depressed = dep_cut.abnormal(lo)
        if clinical:
            # a denial ("no ST elevation") is judged where ST deviation is defined, at the J point (Thygesen 2018):
            # J+60 alone may sit on the T wave's upstroke in a tachycardia or after a wide QRS
            at_j = j if j is not None else j60
            elevated, depressed = elev_cut.abnormal(at_j, sex), dep_cut.abnormal(at_j)
        m = config.st_margin_mv
        if concept == "st_elevation":
            return True if elevated else (False if not clinical and hi < m else (False if clinical else None))
        if concept == "st_depression":
            return True if depressed else (False if not clinical and lo > -m else (False if clinical else None))
        if concept == "st_isoelectric":
            if elevated or depressed:
                return False
            return True if abs(hi) < m and abs(lo) < m else None
        return None
    if concept == "q_present":
        qs = idx.med.get(lead, {}).get("q_amp_mv")
        frac = idx.q_frac.get(lead)
        if frac is None:
            return None
        if clinical:
            qd = rep.get("q_ms")
            cut = table["mi_q_duration_v2v3_ms" if lead in ("V2", "V3") else "mi_q_duration_ms"]
            return bool(frac >= 0.5 and qd is not None and cut.abnormal(qd))
        return True if frac >= 0.5 else (False if frac == 0.0 and qs is None else None)
    return None


def judge_leads(c: QualClaim, ctx: GroundingContext, idx: MeasurementIndex, sex, table, config) -> str | None:
    measured = [lead for lead in (c.leads or ()) if lead in idx.rep]
    if c.concept == "morphology":
        # judged only in leads whose pattern may be cited: a pattern read in an unsure QRS window proves nothing
        sure = [lead for lead in measured if ctx.uncitable_reason("qrs_morphology", lead) not in UNSURE_REASONS]
        return _judge_morphology(c, idx, sure)
    if c.leads and not measured:
        return None  # the lead check reports unmeasured leads
    if not c.leads:
        return _judge_global(c, ctx, idx, sex, table, config)
    if c.negated:
        truths = [_lead_truth(c.concept, lead, ctx, idx, sex, table, config, clinical=True) for lead in measured]
        n_true = sum(t is True for t in truths)
        need = 1 if len(measured) == 1 else 2
        if n_true >= need:
            shown = [lead for lead, t in zip(measured, truths) if t is True]
            return f"denies {c.text!r} in {_join(measured)} but it is there in {_join(shown)}" \
                   f"{_values(c.concept, shown, idx)}"
        return None
    truths = [_lead_truth(c.concept, lead, ctx, idx, sex, table, config) for lead in measured]
    n_true = sum(t is True for t in truths)
    n_false = sum(t is False for t in truths)
    false_leads = [lead for lead, t in zip(measured, truths) if t is False]
    if c.territory:
        bad = n_false >= max(1, (len(measured) + 1) // 2) or (n_true == 0 and n_false >= 1)
    else:
        bad = n_false > len(measured) // 4
    if bad:
        return f"claims {c.text!r} in {_join(measured)} but not in {_join(false_leads)}" \
               f"{_values(c.concept, false_leads, idx)}"
    return None


def _judge_global(c: QualClaim, ctx: GroundingContext, idx: MeasurementIndex, sex, table, config) -> str | None:
    """A claim with no lead named: a denial must not be contradicted by two leads; an assertion must hold
    somewhere (inversion, elevation, depression, Q waves) or in most leads (upright, isoelectric)."""
    leads = [lead for lead in idx.rep if lead != "aVR"]
    if c.concept in ("t_inverted", "t_upright", "p_inverted"):
        leads = [lead for lead in leads if lead not in ("III", "V1")]  # T (and P) may be negative there normally
    if c.concept in ("morphology", "q_present", "t_flat", "t_biphasic", "p_biphasic", "p_upright"):
        return None
    if c.negated:
        truths = [_lead_truth(c.concept, lead, ctx, idx, sex, table, config, clinical=True) for lead in leads]
        shown = [lead for lead, t in zip(leads, truths) if t is True]
        if len(shown) >= 2:
            return f"denies {c.text!r} but it is there in {_join(shown)}{_values(c.concept, shown, idx)}"
        return None
    truths = [_lead_truth(c.concept, lead, ctx, idx, sex, table, config) for lead in leads]
    n_true, n_false = sum(t is True for t in truths), sum(t is False for t in truths)
    if c.concept in ("t_upright", "st_isoelectric"):
        bad = n_false > (n_true + n_false) / 2
    else:
        bad = n_true == 0 and n_false > 0 and n_false >= len(leads) - 1
    if bad:
        return f"claims {c.text!r} but no lead shows it"
    return None


def _judge_morphology(c: QualClaim, idx: MeasurementIndex, measured: list[str]) -> str | None:
    claimed = _morph_key(c.text)
    bad = []
    for lead in measured:
        seen = {_morph_key(m) for m in idx.text_all.get(lead, {}).get("qrs_morphology", [])}
        if seen and claimed not in seen:
            bad.append(lead)
    if bad and (len(bad) > len(measured) // 4):
        shown = "; ".join(f"{lead}: {idx.text_rep.get(lead, {}).get('qrs_morphology')}" for lead in bad)
        return f"claims a {c.text} pattern in {_join(measured)} but the QRS is {shown}"
    return None


def _morph_key(m: str) -> str:
    return m.replace("’", "'").replace("′", "'").lower()


def _values(concept: str, leads: list[str], idx: MeasurementIndex) -> str:
    col = {"t": "t_amp_mv", "p": "p_amp_mv", "s": "st_j_mv", "q": "q_amp_mv"}.get(concept[0])
    if col is None:
        return ""
    parts = []
    for lead in leads[:4]:
        v = idx.rep.get(lead, {}).get(col)
        if v is not None:
            parts.append(f"{lead} {v:+.2f} mV")
    return f" ({', '.join(parts)})" if parts else ""


def _join(leads) -> str:
    leads = list(leads)
    return ", ".join(leads) if leads else "none"



def _num(v) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    v = float(v)
    return v if v == v else None
