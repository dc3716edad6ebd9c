"""Qualitative claims: words about rhythm, rate, P waves, intervals, axis and polarity, against the measurements.

Each rule reads one kind of statement in an answer, decides whether the answer asserts or denies it, and
judges it on the record (True / False / unknown); only a statement that is clearly false is a problem.

- Rate: tachycardia / bradycardia / normal rate against ``hr_bpm`` and the cut-off table.
- Rhythm: regular / irregular against the record's statements (atrial fibrillation is irregular by definition;
  ``knowledge/`` criteria on ``rhythm_regular``) and the measured RR regularity; premature beats make both words
  defensible for the underlying rhythm.
- P waves: present / absent / before every QRS against the statements (sinus rhythms have them, AF has none)
  and ``p_waves_present``.
- Interval words: normal / prolonged / short PR, normal / narrow / wide / prolonged QRS, normal / prolonged /
  short QT and QTc (sex-aware, the formula named or Bazett), all from ``knowledge/cutoffs.yaml``.
- Axis words: normal, left / right deviation, extreme, vertical, horizontal, from the cut-off table's bands.
- Polarity per lead and territory: T and P inverted / upright / flat / biphasic, ST elevation / depression /
  isoelectric, Q waves, QRS patterns (rS, qR, rsR' ...). A claim about named leads must not be false in
  them; a claim about a territory ("the lateral leads") must hold in most of its leads; a denial ("no ST
  elevation") is false when the finding is clearly there, by the clinical cut-off, in two leads.

Measurement margins (how far from zero a T wave must be to call it upright) are validator tolerances in
``ValidationConfig``; clinical thresholds come only from the cut-off table.
"""
from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass

from pipeline.answer_text import LeadGroup, find_leads, lead_groups, sentences
from pipeline.context import GroundingContext
from pipeline.cutoffs import cutoffs
from pipeline.grounding import MeasurementIndex, _sex
from pipeline.knowledge import _negated_before
from pipeline.record import LEADS

_I = re.I
_NOT_COUNT = [0]


def _not() -> str:
    """An optional negation ("not", "n't") as a uniquely named group (a pattern may hold several)."""
    _NOT_COUNT[0] += 1
    return rf"(?P<not{_NOT_COUNT[0]}>\bnot\s+|n['’]t\s+|\bno longer\s+|\bnever\s+)?"
_BE = r"(?:is|are|was|were|remains?|appears?|looks?|seems?|being|becomes?)"


@dataclass
class QualClaim:
    concept: str
    start: int
    end: int
    text: str
    negated: bool
    leads: tuple[str, ...] = ()
    territory: bool = False        # the leads came from a region word ("the lateral leads")
    formula: str | None = None     # QTc formula named


@dataclass
class Problem:
    claim: QualClaim
    detail: str


def _rx(p: str, flags: int = _I) -> re.Pattern:
    return re.compile(p, flags)


# ---------------------------------------------------------------------------------------- record-level
_RECORD_RULES: list[tuple[str, re.Pattern]] = [
    ("tachycardia", _rx(r"\btachycardi(?:a|c)\b|\btachyarrhythmias?\b|\b(?:rapid|fast|accelerated) (?:heart |ventricular )?"
                        r"(?:rate|response)\b|\bRVR\b|\b(?:heart |ventricular )?rate " + _BE + r" " + _not() +
                        r"(?:fast|rapid|elevated|increased|high)\b")),
    ("bradycardia", _rx(r"\bbradycardi(?:a|c)\b|\bslow (?:heart |ventricular )?(?:rate|response)\b|\b(?:heart |ventricular )?"
                        r"rate " + _BE + r" " + _not() + r"(?:slow|low|reduced|decreased)\b")),
    ("rate_normal", _rx(r"\bnormal (?:heart |ventricular |sinus )?rate\b|\b(?:heart |ventricular )?rate " + _BE + r" " + _not()
                        + r"(?:within (?:the )?normal (?:range|limits)|normal)\b|\bnormal sinus rhythm\b|\bnormocardi\w*")),
    ("irregular", _rx(r"\birregularly irregular\b|\birregular(?:ly)?(?:\s+\w+){0,2}?\s+(?:rhythm|R-?R|RR|ventricular "
                      r"(?:rhythm|response)|cadence|intervals?|rate)\b|\b(?:rhythm|R-?R(?: intervals?)?|RR intervals?|"
                      r"ventricular (?:rhythm|response)|cadence) " + _BE + r" " + _not() + r"(?:\w+ ){0,2}?irregular\b|"
                      r"\b(?:variable|varying) R-?R\b|\bR-?R intervals? (?:vary|varies|are variable)\b")),
    ("regular", _rx(r"\bregularly regular\b|(?<![\w-])regular(?:ly)?(?:\s+\w+){0,2}?\s+(?:rhythm|R-?R|RR|ventricular "
                    r"(?:rhythm|response)|cadence|intervals?|rate and rhythm|narrow[- ]complex)\b|\b(?:rhythm|R-?R(?: "
                    r"intervals?)?|RR intervals?|ventricular (?:rhythm|response)|cadence) " + _BE + r" " + _not() +
                    r"(?:\w+ ){0,2}?(?<!ir)regular\b|\bR-?R intervals? (?:are )?(?:constant|uniform|equal|even)\b")),
    ("p_each", _rx(r"\bP[- ]?waves? (?:\w+ ){0,3}?(?:precedes?|preceding|before|ahead of|in front of) (?:each|every|all|"
                   r"the|each of the) ?(?:\w+ )?(?:QRS|ventricular|beat)|\b(?:each|every|all) (?:\w+ )?(?:QRS|beat)"
                   r"(?: complex(?:es)?)?,? " r"(?:" + _BE + r" )?" + _not() + r"(?:\w+ ){0,2}?(?:preceded|led) by "
                   r"(?:an? |its own )?(?:\w+ )?P\b|\b1:1 (?:AV |atrioventricular )?(?:conduction|relationship)\b")),
    ("p_present", _rx(r"\bP[- ]?waves? " + _BE + r" " + _not() + r"(?:clearly |consistently |easily )?(?:present|visible|seen|"
                      r"identifiable|discernible|evident)\b|\b(?:absent|absence of|no (?:\w+ )?|without (?:\w+ )?|"
                      r"lack of|loss of) ?P[- ]?waves?\b(?! (?:\w+ ){0,2}?(?:ahead of|before|preceding|in front of))|\bP[- ]?waves? " + _BE + r" (?P<absent>absent|missing|lacking)\b"
                      r"|\b(?:visible|discernible|identifiable|distinct|clear|consistent|normal|sinus) P[- ]?waves?\b"
                      r"(?! (?:\w+ ){0,2}?(?:ahead of|before|preceding|in front of))")),
]
# interval qualifiers: prefix ("prolonged QTc") and postfix ("the QTc of 474 ms is prolonged") forms
_IV_KEY = r"(?P<k>P-?R|PQ|QRS|QTc\s?[BFH]?|QT-?c|corrected QT|QT)"
_IV_QUAL = (r"(?P<q>prolonged|lengthened|long|increased|wide|widened|broad|narrow|short|shortened|normal|within "
            r"(?:the )?normal (?:limits|range)|WNL|unremarkable|borderline|upper limit of normal)")
_IV_PREFIX = re.compile(r"\b(?:markedly |mildly |slightly |significantly |moderately |borderline )?"
                        r"(?P<q>prolonged|lengthened|long|increased|wide|widened|broad|narrow|short|shortened|normal)"
                        r"\s+" + _IV_KEY + r"(?![\w'’])", re.I)
_IV_POSTFIX = re.compile(r"\b" + _IV_KEY + r"(?![\w'’])(?P<mid>[^.;]{0,70}?)\b" + _not() + _IV_QUAL + r"\b", re.I)
_IV_NOUN = re.compile(r"\b" + _IV_KEY + r"[- ](?:interval |duration )?(?P<q>prolongation|widening|shortening|lengthening)\b",
                      re.I)
_IV_ALL = re.compile(r"\b(?:normal|unremarkable) (?:conduction )?intervals\b|\bintervals " + _BE + r" " + _not() +
                     r"(?:all )?(?:normal|within (?:the )?normal (?:limits|range)|unremarkable)\b", re.I)
_MID_STOP = re.compile(r"\b(?:PR|PQ|QRS|QTc?|QT|axis|rate|P[- ]?waves?|T[- ]?waves?|ST|R[- ]?waves?|S[- ]?waves?|"
                       r"Q[- ]?waves?|while|whereas|but|although|and (?:the|a|an|there)|with (?:a|an|the))\b|\(normal",
                       re.I)
_AXIS_RULES: list[tuple[str, re.Pattern]] = [
    ("axis_normal", _rx(r"\bnormal (?:QRS |electrical |frontal(?: plane)? |cardiac |heart )*axis\b|\baxis " + _BE
                        + r" " + _not() + r"(?:\w+ ){0,3}?(?:within (?:the )?normal (?:limits|range)|normal)\b")),
    ("axis_left", _rx(r"\bleft(?:ward)? (?:QRS |electrical |frontal |cardiac )?axis(?: deviation)?\b|\baxis " + _BE + r"? ?"
                      + _not() + r"(?:deviated|shifted|rotated|directed) (?:to the )?left(?:ward)?\b|\bleftward "
                      r"(?:axis )?(?:deviation|shift)\b|\bLAD\b", 0)),
    ("axis_right", _rx(r"\bright(?:ward)? (?:QRS |electrical |frontal |cardiac )?axis(?: deviation)?\b|\baxis " + _BE
                       + r"? ?" + _not() + r"(?:deviated|shifted|rotated|directed) (?:to the )?right(?:ward)?\b|\brightward "
                       r"(?:axis )?(?:deviation|shift)\b|\bRAD\b", 0)),
    ("axis_extreme", _rx(r"\bextreme (?:right |left )?(?:QRS )?axis(?: deviation)?\b|\bnorth-?west(?:ern)? (?:QRS )?axis\b|"
                         r"\bindeterminate (?:QRS |electrical |cardiac )?axis\b|\bno[- ]man'?s[- ]land\b")),
    ("axis_vertical", _rx(r"\bvertical (?:electrical |QRS |frontal )?axis\b|\bvertical heart position\b|\baxis " + _BE
                          + r" " + _not() + r"vertical\b")),
    ("axis_horizontal", _rx(r"\bhorizontal (?:electrical |QRS |frontal )?axis\b|\bhorizontal heart position\b|\baxis "
                            + _BE + r" " + _not() + r"horizontal\b")),
]
_AXIS_BAND = {"axis_normal": "axis_normal_deg", "axis_left": "axis_left_deg", "axis_right": "axis_right_deg",
              "axis_extreme": "axis_extreme_deg", "axis_vertical": "axis_vertical_deg",
              "axis_horizontal": "axis_horizontal_deg"}

# ------------------------------------------------------------------------------------------- per lead
_T = r"T(?:[- ]?waves?)?"
_P = r"P(?:[- ]?waves?)?"
_ST = r"(?:ST|S-T)(?:[- ]segments?)?"
_LEAD_RULES: list[tuple[str, re.Pattern]] = [
    ("t_inverted", _rx(r"\bT[- ]?waves? (?:polarity|deflections?|direction|orientation) (?:is |was |are )?" + _not() +
                       r"(?:\w+ )?(?:negative|inverted)\b|"r"\b(?:deep(?:ly)? |symmetric(?:al(?:ly)?)? |new |diffuse |widespread )?(?:inverted|negative) T"
                       r"(?:[- ]?waves?)?\b|\bT[- ]?waves? (?:\w+ ){0,2}?inversions?\b|\binversion of (?:the )?T[- ]?waves?\b"
                       r"|\bTWI\b|\bT[- ]?waves? (?:[\w,/-]+ ){0,4}?" + _BE + r" " + _not() + r"(?:\w+ )?(?:inverted|negative)\b"
                       r"|\bT inversions?\b")),
    ("t_upright", _rx(r"\bT[- ]?waves? (?:polarity|deflections?|direction|orientation) (?:is |was |are )?" + _not() +
                      r"(?:\w+ )?(?:positive|upright)\b|"r"\b(?:upright|positive) T(?:[- ]?waves?)?\b|\bT[- ]?waves? (?:[\w,/-]+ ){0,4}?" + _BE + r" " + _not() +
                      r"(?:\w+ )?(?:upright|positive)\b")),
    ("t_flat", _rx(r"\bT[- ]?waves? (?:polarity|deflections?) (?:is |was |are )?" + _not() + r"flat\b|"r"\b(?:flat|flattened|low(?:[- ]amplitude)?|isoelectric) T(?:[- ]?waves?)?\b|\bT[- ]?waves? (?:\w+ ){0,3}?"
                   + _BE + r" " + _not() + r"(?:\w+ )?(?:flat|flattened|low|isoelectric)\b|\bT[- ]?wave flattening\b|"
                   r"\bflattening of (?:the )?T[- ]?waves?\b")),
    ("t_biphasic", _rx(r"\bT[- ]?waves? (?:polarity|deflections?) (?:is |was |are )?" + _not() + r"biphasic\b|"r"\bbiphasic T(?:[- ]?waves?)?\b|\bT[- ]?waves? (?:[\w,/-]+ ){0,4}?" + _BE + r" " + _not() + r"biphasic\b")),
    ("p_inverted", _rx(r"\bP[- ]?waves? (?:polarity|deflections?|direction|orientation) (?:is |was |are )?" + _not() +
                       r"(?:\w+ )?(?:negative|inverted)\b|"r"\b(?:inverted|negative|retrograde) P(?:[- ]?waves?)?\b|\bP[- ]?waves? (?:[\w,/-]+ ){0,4}?" + _BE + r" "
                       + _not() + r"(?:\w+ )?(?:inverted|negative)\b|\bP[- ]?wave inversions?\b")),
    ("p_upright", _rx(r"\bP[- ]?waves? (?:polarity|deflections?|direction|orientation) (?:is |was |are )?" + _not() +
                      r"(?:\w+ )?(?:positive|upright)\b|"r"\b(?:upright|positive) P(?:[- ]?waves?)?\b|\bP[- ]?waves? (?:[\w,/-]+ ){0,4}?" + _BE + r" " + _not() +
                      r"(?:\w+ )?(?:upright|positive)\b")),
    ("p_biphasic", _rx(r"\bP[- ]?waves? (?:polarity|deflections?) (?:is |was |are )?" + _not() + r"biphasic\b|"r"\bbiphasic P(?:[- ]?waves?)?\b|\bP[- ]?waves? (?:[\w,/-]+ ){0,4}?" + _BE + r" " + _not() + r"biphasic\b")),
    ("st_elevation", _rx(r"\b(?:ST|S-T)(?:[- ]segments?)?[- ](?:\w+[- ])?elevations?\b|\belevat(?:ed|ion of) (?:the )?"
                         r"(?:ST|S-T)(?:[- ]segments?)?\b|\b(?:ST|S-T)(?:[- ]segments?)? (?:[\w,/-]+ ){0,4}?" + _BE + r" " + _not() +
                         r"(?:\w+ )?elevated\b|\bJ[- ]point elevations?\b|\bST[- ]?(?:segment )?(?:is |are )?raised\b")),
    ("st_depression", _rx(r"\b(?:ST|S-T)(?:[- ]segments?)?[- ](?:\w+[- ])?depressions?\b|\bdepress(?:ed|ion of) (?:the )?"
                          r"(?:ST|S-T)(?:[- ]segments?)?\b|\b(?:ST|S-T)(?:[- ]segments?)? (?:[\w,/-]+ ){0,4}?" + _BE + r" " + _not() +
                          r"(?:\w+ )?depressed\b|\bJ[- ]point depressions?\b")),
    ("st_isoelectric", _rx(r"\bisoelectric (?:ST|S-T)(?:[- ]segments?)?\b|\b(?:ST|S-T)(?:[- ]segments?)? (?:\w+ ){0,2}?"
                           + _BE + r" " + _not() + r"(?:\w+ )?(?:isoelectric|at baseline|on the baseline)\b")),
    ("q_present", _rx(r"\b(?:pathological |pathologic |significant |deep |broad |wide |prominent |abnormal |small |septal )?"
                      r"Q[- ]?waves?\b(?! (?:duration|depth|amplitude))")),
]
_MORPH = re.compile(r"(?<![\w'’])(?P<m>(?:[qQ]?[rR][sS](?:[rR]['’′])?|[qQ][rR](?:[sS](?:[rR]['’′])?)?|QS|Qr|qrS|rsR['’′]|"
                    r"rSR['’′]|RSR['’′]|rsr['’′]|rSr['’′]|RsR['’′]|rR['’′]|qR|Rs|rS|RS))(?![\w'’])"
                    r"(?P<noun> (?:pattern|complex(?:es)?|morpholog(?:y|ies)|configuration|shape|waves?))?")
_MORPH_ALLOWED_BARE = {"qR", "Rs", "rS", "QS", "Qr", "qRs", "rsR'", "rSR'", "RSR'", "rsr'", "rSr'", "RsR'", "rR'", "qrS",
                       "QR", "RS", "Rsr'", "RSr'", "qRS"}
_LEAD_ATTACH = re.compile(r"^(?:\s*(?:of|measuring|reaching|up to|at|by|about|approximately|around)?\s*[-+\u2212]?\d+(?:\.\d+)?"
                          r"\s*(?:mV|mm|millivolts?|ms)\b)?[\s,]*(?:(?:is|are|was|were)\s+(?:seen|present|noted|visible)\s+)?"
                          r"(?:(?:in|across|over|throughout|at|within|involving|affecting|of)\s+)?(?:the\s+)?(?:leads?\s+)?\(?\s*$",
                          re.I)
_LEAD_BEFORE = re.compile(r"(?:\b(?:in|across|over|throughout|at|within)\s+(?:the\s+)?(?:leads?\s+)?|\bleads?\s+)?$", re.I)
_LEAD_SUBJECT_GAP = re.compile(r"^[\s,:]*(?:(?:shows?|showing|shown|has|have|had|with|demonstrates?|displays?|reveals?|"
                               r"exhibits?|there (?:is|are)|the|a|an|of|its|their|leads?|lead's|leads')\s+)*(?:\w+\s+)?$",
                               re.I)
_GLOBAL_WORDS = re.compile(r"\b(?:diffuse(?:ly)?|widespread|global(?:ly)?|generali[sz]ed|all leads|every lead|throughout)\b",
                           re.I)


# --------------------------------------------------------------------------------------------- extraction
def extract_statements(text: str) -> list[QualClaim]:
    """Every qualitative claim of ``text`` (rules above), negation and leads resolved."""
    out: list[QualClaim] = []
    mentions = find_leads(text)
    groups = lead_groups(text, mentions)
    region_spans = [(m.start, m.end) for m in mentions if not m.explicit]
    sents = sentences(text) or [(0, len(text))]
    starts = [a for a, _ in sents]

    def sentence_of(pos: int) -> tuple[int, int]:
        i = max(0, bisect_right(starts, pos) - 1)
        return sents[i]

    for concept, rx in _RECORD_RULES + _AXIS_RULES:
        for m in rx.finditer(text):
            a, b = m.start(), m.end()
            neg = _negated(text, a, m)
            if concept == "p_present" and (m.groupdict().get("absent") or re.match(
                    r"(?:absent|absence of|no |without |lack of|loss of)", m.group(0), re.I)):
                neg = True  # "no P waves", "P waves are absent": the phrase itself denies them
            if concept == "p_each" and re.search(r"\b(?:absent|missing|lacking|none)\b", m.group(0), re.I):
                concept, neg = "p_present", True  # "a P wave absent before each QRS": no P waves at all
            out.append(QualClaim(concept, a, b, m.group(0), neg))
    for s0, s1 in sents:
        out.extend(_interval_claims(text, s0, s1))
    for concept, rx in _LEAD_RULES:
        for m in rx.finditer(text):
            a, b = m.start(), m.end()
            if concept == "q_present" and re.search(r"\bQ[- ]?waves?\s+(?:depth|duration|amplitude)", m.group(0)):
                continue
            s0, s1 = sentence_of(a)
            neg = _negated(text, a, m)
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
        out.append(QualClaim("morphology", a, b, tok, _negated(text, a, m), leads, territory))
    out.sort(key=lambda q: (q.start, q.concept))
    return out


def _negated(text: str, start: int, m: re.Match) -> bool:
    if any(v for k, v in m.groupdict().items() if k.startswith("not")):
        return True
    before = text[max(0, start - 60):start]
    # a negation does not reach across a new clause: "no P waves and the RR intervals are irregular"
    cut = None
    for cut in re.finditer(r"[,;:]|\b(?:and|but|while|whereas|although|though|with|which|yet)\b", before, re.I):
        pass
    if cut is not None:
        before = before[cut.end():]
    if re.search(r"\b(?:no|not|without|absence of|absent|lack of|free of|rules? out|ruled out|neither|nor|never|"
                 r"negative for|no evidence of|no sign of|no signs of)\b(?:\s+[\w'’-]+){0,4}\s*$", before, re.I) and \
            _negated_before(text, start):
        return True
    return bool(re.match(r"^[\s,]*(?:(?:is|are|was|were)\s+)?(?:absent|not (?:seen|present|observed|evident|"
                         r"identified|noted|found|visible|apparent))\b", text[m.end() + (start - m.start()):][:40], re.I))


def _interval_claims(text: str, s0: int, s1: int) -> list[QualClaim]:
    sent = text[s0:s1]
    out: list[QualClaim] = []
    spans: list[tuple[int, int]] = []
    for rx in (_IV_NOUN, _IV_PREFIX):
        for m in rx.finditer(sent):
            a, b = s0 + m.start(), s0 + m.end()
            q = _qual_word(m.group("q"))
            if q is None:
                continue
            out.append(QualClaim(f"{_iv_key(m.group('k'))}_{q}", a, b, m.group(0), _negated(text, a, m),
                                 formula=_formula_in(m.group(0))))
            spans.append((a, b))
    for m in _IV_POSTFIX.finditer(sent):
        a, b = s0 + m.start(), s0 + m.end()
        if any(x <= a < y for x, y in spans):
            continue
        if _MID_STOP.search(m.group("mid")):
            continue
        q = _qual_word(m.group("q"))
        if q is None:
            continue
        neg = any(v for k, v in m.groupdict().items() if k.startswith("not"))
        out.append(QualClaim(f"{_iv_key(m.group('k'))}_{q}", a, b, m.group(0), neg,
                             formula=_formula_in(m.group(0))))
    for m in _IV_ALL.finditer(sent):
        a, b = s0 + m.start(), s0 + m.end()
        neg = any(v for k, v in m.groupdict().items() if k.startswith("not"))
        for k in ("pr", "qrs", "qtc"):
            out.append(QualClaim(f"{k}_normal", a, b, m.group(0), neg))
    return out


def _qual_word(q: str) -> str | None:
    q = q.lower()
    if q in ("prolonged", "lengthened", "long", "increased", "prolongation", "lengthening"):
        return "long"
    if q in ("wide", "widened", "broad", "widening"):
        return "wide"
    if q in ("narrow",):
        return "narrow"
    if q in ("short", "shortened", "shortening"):
        return "short"
    if q.startswith("normal") or q.startswith("within") or q in ("wnl", "unremarkable"):
        return "normal"
    return None


def _iv_key(k: str) -> str:
    k = k.upper().replace("-", "").replace(" ", "")
    if k in ("PR", "PQ"):
        return "pr"
    if k == "QRS":
        return "qrs"
    if k == "QT":
        return "qt"
    return "qtc"


def _formula_in(s: str) -> str | None:
    for name, rx in (("fridericia", r"Fridericia|QTcF"), ("framingham", r"Framingham|Sagie"), ("hodges", r"Hodges|QTcH"),
                     ("bazett", r"Bazett|QTcB")):
        if re.search(rx, s, re.I):
            return name
    return None


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


# --------------------------------------------------------------------------------------------- judgement
@dataclass
class _Facts:
    regular: bool | None
    p_present: bool | None


def statement_facts(ctx: GroundingContext, kb) -> _Facts:
    """What the record's statements say about regularity and P waves (their knowledge criteria on
    ``rhythm_regular`` / ``p_waves_present``); None where they say nothing or disagree."""
    vals: dict[str, set[bool]] = {"rhythm_regular": set(), "p_waves_present": set()}
    if kb is not None:
        for sid in sorted(kb.closure(ctx.statement_ids)):
            for crit in kb.entries[sid].criteria:
                if crit.feature in vals and crit.comparison == "==" and isinstance(crit.threshold, bool):
                    vals[crit.feature].add(crit.threshold)
    def one(s: set[bool]) -> bool | None:
        return next(iter(s)) if len(s) == 1 else None
    return _Facts(one(vals["rhythm_regular"]), one(vals["p_waves_present"]))


def check_statements(text: str, ctx: GroundingContext, config, kb=None,
                     claims: list[QualClaim] | None = None) -> list[Problem]:
    """The qualitative claims of ``text`` that the record shows to be false."""
    claims = extract_statements(text) if claims is None else claims
    idx = MeasurementIndex.of(ctx)
    facts = statement_facts(ctx, kb)
    problems: list[Problem] = []
    seen: set[tuple[str, bool, tuple[str, ...]]] = set()
    for c in claims:
        key = (c.concept, c.negated, c.leads)
        if key in seen:
            continue
        detail = _judge(c, ctx, idx, facts, config)
        if detail:
            seen.add(key)
            problems.append(Problem(c, detail))
    return problems


def _judge(c: QualClaim, ctx: GroundingContext, idx: MeasurementIndex, facts: _Facts, config) -> str | None:
    rec = idx.record
    sex = _sex(ctx)
    table = cutoffs()
    word = "denies" if c.negated else "claims"
    # ---- rate
    if c.concept in ("tachycardia", "bradycardia", "rate_normal"):
        hr = _num(rec.get("hr_bpm"))
        if hr is None:
            return None
        fast, slow = table["tachycardia_bpm"].abnormal(hr), table["bradycardia_bpm"].abnormal(hr)
        truth = {"tachycardia": fast, "bradycardia": slow, "rate_normal": not fast and not slow}[c.concept]
        if truth == c.negated:
            return f"{word} {c.text!r} but the heart rate is {hr:.0f} bpm"
        return None
    # ---- rhythm regularity
    if c.concept in ("regular", "irregular"):
        regular = _regular(rec, facts)
        if regular is None:
            return None
        truth = regular if c.concept == "regular" else not regular
        if truth == c.negated:
            why = ("the record's rhythm is irregular by its diagnosis" if facts.regular is False else
                   f"the RR intervals are {'regular' if regular else 'irregular'} "
                   f"(RR SD {(_num(rec.get('rr_sd_ms')) or 0):.0f} ms, mean {(_num(rec.get('rr_mean_ms')) or 0):.0f} ms)")
            return f"{word} {c.text!r} but {why}"
        return None
    # ---- P waves
    if c.concept in ("p_each", "p_present"):
        present = facts.p_present if facts.p_present is not None else rec.get("p_waves_present")
        if present is None:
            return None
        ectopic = (rec.get("n_premature") or 0) + (rec.get("n_paced") or 0) > 0
        if c.concept == "p_each" and not c.negated:
            truth = False if not present else (None if ectopic else True)
        elif c.concept == "p_each":
            truth = None if (ectopic or not present) else True  # denying "a P before every QRS"
            if truth is True:
                return f"denies {c.text!r} but a P wave precedes every QRS complex"
            return None
        else:
            truth = bool(present)
        if truth is None:
            return None
        if truth == c.negated:
            return f"{word} {c.text!r} but P waves are {'present' if present else 'absent'}"
        return None
    # ---- interval words
    m = re.match(r"(pr|qrs|qtc|qt)_(long|wide|narrow|short|normal)$", c.concept)
    if m:
        return _judge_interval(c, m.group(1), m.group(2), rec, sex, table, word)
    # ---- axis words
    if c.concept in _AXIS_BAND:
        axis = _num(rec.get("qrs_axis_deg"))
        if axis is None or not ctx.citable("qrs_axis_deg"):
            return None
        truth = table[_AXIS_BAND[c.concept]].contains(axis)
        if c.concept == "axis_extreme":
            truth = truth or axis >= 180.0
        if truth == c.negated:
            return f"{word} {c.text!r} but the QRS axis is {axis:.0f} degrees"
        return None
    # ---- per lead
    return _judge_leads(c, ctx, idx, sex, table, config)


def _regular(rec: dict, facts: _Facts) -> bool | None:
    if facts.regular is not None:
        return facts.regular
    reg = rec.get("rhythm_regular")
    if reg is None or (rec.get("n_premature") or 0) > 0 or (rec.get("n_paced") or 0) > 0:
        return None  # premature beats make both words defensible ("regular rhythm with a PVC")
    return bool(reg)


def _judge_interval(c: QualClaim, key: str, qual: str, rec: dict, sex, table, word: str) -> str | None:
    if key in ("qt", "qtc"):
        col = f"qtc_{c.formula or 'bazett'}_ms"
        v = _num(rec.get(col))
        if v is None:
            return None
        long_cut = table["qtc_prolonged_ms"]
        if sex is None:  # unknown sex: long only above the women's cut-off, normal only below the men's
            lo, hi = long_cut.male, long_cut.female
            is_long = True if v >= hi else (False if v < lo else None)
        else:
            is_long = long_cut.abnormal(v, sex)
        is_short = table["qtc_short_ms"].abnormal(v)
        truth = {"long": is_long, "short": is_short,
                 "normal": None if is_long is None else (not is_long and not is_short)}.get(qual)
        label = f"QTc ({c.formula or 'Bazett'}) is {v:.0f} ms"
    elif key == "pr":
        v = _num(rec.get("pr_ms"))
        if v is None:
            return None
        is_long, is_short = table["pr_prolonged_ms"].abnormal(v), table["pr_short_ms"].abnormal(v)
        truth = {"long": is_long, "short": is_short, "normal": not is_long and not is_short}.get(qual)
        label = f"the PR interval is {v:.0f} ms"
    else:
        v = _num(rec.get("qrs_ms"))
        if v is None:
            return None
        wide = table["qrs_wide_ms"].abnormal(v)
        not_normal = table["qrs_normal_max_ms"].abnormal(v)
        truth = {"wide": wide, "long": not_normal, "narrow": not wide, "normal": not not_normal}.get(qual)
        label = f"the QRS duration is {v:.0f} ms"
    if truth is None:
        return None
    if truth == c.negated:
        return f"{word} {c.text!r} but {label}"
    return None


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


def _judge_leads(c: QualClaim, ctx: GroundingContext, idx: MeasurementIndex, sex, table, config) -> str | None:
    measured = [lead for lead in (c.leads or ()) if lead in idx.rep]
    if c.concept == "morphology":
        return _judge_morphology(c, idx, measured)
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


# --------------------------------------------------------------------------------------------- evidence
# Words that present the numbers next to a diagnosis as its evidence ("LVH, with a Sokolow-Lyon voltage of
# ..."), before it ("a PR of 240 ms, consistent with first-degree AV block") or after it.
_SUPPORT_AFTER = re.compile(r"\b(?:with|shown by|supported by|evidenced by|as shown by|demonstrated by|indicated by|"
                            r"based on|given|characteri[sz]ed by|reflected (?:in|by)|manifest(?:ed|ing)? (?:as|by)|"
                            r"featuring|including|such as|defined by|meeting|fulfilling|confirmed by)\b|[:(]", re.I)
_SUPPORT_BEFORE = re.compile(r"\b(?:in keeping with|consistent with|compatible with|indicat(?:es|ing|ive of)|"
                             r"suggest(?:s|ing|ive of)|diagnostic of|typical of|corresponds? to|meets?|meeting|"
                             r"fulfil(?:l?s|ling)|supports?|supporting|confirms?|confirming|due to|from)\b", re.I)
_UNSUPPORTED = re.compile(r"\b(?:relevant values|values (?:are|were)|for (?:the )?(?:diagnosis of )?$|although|"
                          r"despite|but|however|not (?:meet|met|reach)|below the|short of|does not|do not)\b", re.I)
_EVIDENCE_SKIP = frozenset({"rhythm", "other"})  # rate words are judged by the rate rules; NORM lists intervals


def check_evidence(text: str, claims, mentions, ctx: GroundingContext, kb) -> list[str]:
    """Numbers presented as the evidence of a diagnosis (in its sentence, joined by "with", "shown by",
    "consistent with" ...) of which none meets any of the diagnosis' own knowledge criteria: "left ventricular
    hypertrophy, with a Sokolow-Lyon voltage of 0.55 mV". Values stated without a claim of support ("for LVH,
    the relevant values are ...") are not evidence."""
    if kb is None:
        return []
    out: list[str] = []
    for m in mentions:
        if m.negated:
            continue
        entry = kb.entries.get(m.entry_id)
        if entry is None or entry.category in _EVIDENCE_SKIP:
            continue
        crits = [c for c in entry.criteria if c.feature and c.comparison not in ("==", "absent")]
        if not crits:
            continue
        sent = next(((a, b) for a, b in sentences(text) if a <= m.start < b), (0, len(text)))
        ev = []
        for c in claims:
            if not (sent[0] <= c.start < sent[1]) or c.kind not in ("ms", "mv", "deg", "bpm") or len(c.values) != 1 \
                    or c.comparator is not None or c.reference:
                continue
            if c.start >= m.end:
                gap = text[m.end:c.start]
                if not _SUPPORT_AFTER.search(gap[:80]) or _UNSUPPORTED.search(gap) or \
                        _UNSUPPORTED.search(text[max(sent[0], m.start - 25):m.start]):
                    continue
            else:
                gap = text[c.end:m.start]
                if not _SUPPORT_BEFORE.search(gap) or _UNSUPPORTED.search(gap) or len(gap) > 120:
                    continue
            tested = _test_claim(c, crits)
            if tested is not None:
                ev.append((c, tested))
        if ev and not any(ok for _, ok in ev):
            shown = ", ".join(repr(c.text) for c, _ in ev[:3])
            out.append(f"cites {shown} as evidence of {entry.name!r} but none meets its criteria "
                       f"({'; '.join(cr.text for cr in crits[:2])})")
    return out


def _test_claim(claim, crits) -> bool | None:
    """Whether the claimed value meets one of ``crits`` on its column (and lead); None when none applies."""
    from pipeline.grounding import MAGNITUDE, claim_columns, claim_value

    rec_cols, beat_cols = claim_columns(claim)
    results = []
    for crit in crits:
        col = crit.feature
        if col not in rec_cols and col not in beat_cols:
            continue
        if crit.leads and not (claim.leads and set(claim.leads) & set(crit.leads)):
            continue
        x = claim_value(claim, col, claim.values[0])
        if col in ("q_amp_mv", "s_amp_mv"):
            x = -abs(x)  # stored negative; written as a depth
        elif col in MAGNITUDE:
            x = abs(x)
        r = crit.test(x)
        if r is not None:
            results.append(bool(r))
    return any(results) if results else None
