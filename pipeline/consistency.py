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
- Polarity per lead and territory: ``pipeline.polarity``; numbers cited as a diagnosis' evidence:
  ``pipeline.evidence``.

Measurement margins (how far from zero a T wave must be to call it upright) are validator tolerances in
``ValidationConfig``; clinical thresholds come only from the cut-off table.
"""
from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass, field

from pipeline.answer_text import find_leads, lead_groups, sentences
from pipeline.casefold import Folded
from pipeline.context import UNSURE_REASONS, GroundingContext
from pipeline.cutoffs import cutoffs
from pipeline.evidence import check_evidence  # noqa: F401  (re-exported)
from pipeline.grounding import MeasurementIndex, _sex
from pipeline.polarity import extract_lead_statements, judge_leads
from pipeline.words import BE as _BE, Problem, QualClaim, Uncitable, negated as _negated, not_ as _not, rx as _rx

# ---------------------------------------------------------------------------------------- record-level
_RECORD_RULES: list[tuple[str, re.Pattern]] = [
    ("tachycardia", _rx(r"\btachycardi(?:a|c)\b|\btachyarrhythmias?\b|\b(?:rapid|fast|accelerated) (?:heart |"
                        r"ventricular )?"
                        r"(?:rate|response)\b|\bRVR\b|\b(?:heart |ventricular )?rate " + _BE + r" " + _not() +
                        r"(?:fast|rapid|elevated|increased|high)\b")),
    ("bradycardia", _rx(r"\bbradycardi(?:a|c)\b|\bslow (?:heart |ventricular )?(?:rate|response)\b|\b(?:heart |"
                        r"ventricular )?"
                        r"rate " + _BE + r" " + _not() + r"(?:slow|low|reduced|decreased)\b")),
    ("rate_normal", _rx(r"\bnormal (?:heart |ventricular |sinus )?rate\b|\b(?:heart |ventricular )?rate " + _BE + r" " + _not()
                        + r"(?:within (?:the )?normal (?:range|limits)|normal)\b|\bnormal sinus rhythm\b|"
                          r"\bnormocardi\w*")),
    ("irregular", _rx(r"\birregularly irregular\b|\birregular(?:ly)?(?:\s+\w+){0,2}?\s+(?:rhythm|R-?R|RR|ventricular "
                      r"(?:rhythm|response)|cadence|intervals?|rate)\b|\b(?:rhythm|R-?R(?: intervals?)?|RR intervals?|"
                      r"ventricular (?:rhythm|response)|cadence) " + _BE + r" " + _not() + r"(?:\w+ ){0,2}?irregular\b|"
                      r"\b(?:variable|varying) R-?R\b|\bR-?R intervals? (?:vary|varies|are variable)\b")),
    ("regular", _rx(r"\bregularly regular\b|(?<![\w-])regular(?:ly)?(?:\s+\w+){0,2}?\s+(?:rhythm|R-?R|RR|ventricular "
                    r"(?:rhythm|response)|cadence|intervals?|rate and rhythm|narrow[- ]complex)\b|\b(?:rhythm|R-?R(?: "
                    r"intervals?)?|RR intervals?|ventricular (?:rhythm|response)|cadence) " + _BE + r" " + _not() +
                    r"(?:\w+ ){0,2}?(?<!ir)regular\b|\bR-?R intervals? (?:are )?(?:constant|uniform|equal|even)\b")),
    ("p_each", _rx(r"\bP[- ]?waves? (?:\w+ ){0,3}?(?:precedes?|preceding|before|ahead of|in front of) (?:each|every|"
                   r"all|"
                   r"the|each of the) ?(?:\w+ )?(?:QRS|ventricular|beat)|\b(?:each|every|all) (?:\w+ )?(?:QRS|beat)"
                   r"(?: complex(?:es)?)?,? " r"(?:" + _BE + r" )?" + _not() + r"(?:\w+ ){0,2}?(?:preceded|led) by "
                   r"(?:an? |its own )?(?:\w+ )?P\b|\b1:1 (?:AV |atrioventricular )?(?:conduction|relationship)\b")),
    ("ectopy", _rx(r"\b(?:premature|ectopic|extra|early)\s+(?:(?:ventricular|atrial|supraventricular|junctional)\s+)?"
                   r"(?:beats?|complex(?:es)?|contractions?|systoles?)\b|\b(?:(?:ventricular|atrial|supraventricular) )?"
                   r"(?:ectopy|ectopics|extrasystoles?)\b")),
    ("low_voltage", _rx(r"\blow(?:[- ]amplitude)? (?:QRS )?voltages?\b|\b(?:QRS )?(?:voltages?|amplitudes?|"
                        r"complexes|deflections) (?:\w+ ){0,2}?" + _BE + r" " + _not() + r"(?:\w+ ){0,2}?(?:low|small|"
                        r"reduced|diminished|decreased|attenuated)\b|\bsmall(?:[- ]amplitude)? QRS complexes\b|"
                        r"\blow QRS amplitudes?\b")),
    ("p_present", _rx(r"\bP[- ]?waves? " + _BE + r" " + _not() + r"(?:clearly |consistently |easily )?(?:present|"
                                                                 r"visible|seen|"
                      r"identifiable|discernible|evident)\b|\b(?:absent|absence of|no (?:\w+ )?|without (?:\w+ )?|"
                      r"lack of|loss of) ?P[- ]?waves?\b(?! (?:\w+ ){0,2}?(?:ahead of|before|preceding|in front of))|"
                      r"\bP[- ]?waves? " + _BE + r" (?P<absent>absent|missing|lacking)\b"
                      r"|\b(?:visible|discernible|identifiable|distinct|clear|consistent|normal|sinus) P[- ]?waves?\b"
                      r"(?! (?:\w+ ){0,2}?(?:ahead of|before|preceding|in front of))")),
]
# interval qualifiers: prefix ("prolonged QTc") and postfix ("the QTc of 474 ms is prolonged") forms
_IV_KEY = r"(?P<k>P-?R|PQ|QRS|QTc\s?[BFH]?|QT-?c|corrected QT|QT|(?:AV|atrioventricular|A-V) conduction(?: time)?)"
_IV_QUAL = (r"(?P<q>prolonged|lengthened|long|increased|delayed|slowed|wide|widened|broad|narrow|short|shortened|normal|within "
            r"(?:the )?normal (?:limits|range)|WNL|unremarkable|borderline|upper limit of normal)")
_IV_PREFIX = re.compile(r"\b(?:markedly |mildly |slightly |significantly |moderately |borderline )?"
                        r"(?P<q>prolonged|lengthened|long|increased|delayed|slowed|wide|widened|broad|narrow|short|shortened|"
                        r"normal)"
                        r"\s+" + _IV_KEY + r"(?![\w'’])", re.I)
_IV_POSTFIX = re.compile(r"\b" + _IV_KEY + r"(?![\w'’])(?P<mid>[^.;]{0,70}?)\b" + _not() + _IV_QUAL + r"\b", re.I)
_IV_NOUN = re.compile(r"\b" + _IV_KEY + r"[- ](?:interval |duration )?(?P<q>prolongation|widening|shortening|"
                                        r"lengthening)\b",
                      re.I)
_IV_ALL = re.compile(r"\b(?:normal|unremarkable) (?:conduction )?intervals\b|\bintervals " + _BE + r" " + _not() +
                     r"(?:all )?(?:normal|within (?:the )?normal (?:limits|range)|unremarkable)\b", re.I)
_MID_STOP = re.compile(r"\b(?:PR|PQ|QRS|QTc?|QT|axis|rate|P[- ]?waves?|T[- ]?waves?|ST|R[- ]?waves?|S[- ]?waves?|"
                       r"amplitudes?|voltages?|morpholog(?:y|ies)|progression|transition|configuration|"
                       r"Q[- ]?waves?|while|whereas|but|although|otherwise|and (?:the|a|an|there)|with (?:a|an|the))\b|"
                       r"\(normal",
                       re.I)
# a quantity named as the exception to what follows ("apart from the QTc, the tracing reads as normal")
_EXCEPTED = re.compile(r"\b(?:except(?:ion of| for)?|apart from|aside from|leaving aside|other than|besides|save for)"
                       r"(?: the| a| an)?\s*$", re.I)
_RHYTHM_QUALIFIER = re.compile(r"\b(?:ventricular|supraventricular|atrial|junctional|nodal|re-?entrant|ectopic|"
                               r"multifocal|"
                               r"focal|paroxysmal|complex|wide|narrow|orthodromic|antidromic|sinus|AV|polymorphic|"
                               r"monomorphic|pacemaker-mediated|escape)[- ]$", re.I)
_AXIS_RULES: list[tuple[str, re.Pattern]] = [
    ("axis_normal", _rx(r"\bnormal (?:QRS |electrical |frontal(?: plane)? |cardiac |heart )*axis\b|\baxis " + _BE
                        + r" " + _not() + r"(?:\w+ ){0,3}?(?:within (?:the )?normal (?:limits|range)|normal)\b")),
    ("axis_left", _rx(r"(?i:\bleft (?:QRS |electrical |frontal |cardiac )?axis(?: deviation)?\b|\bleftward (?:QRS |"
                      r"electrical |frontal |cardiac )?axis deviation\b|\baxis " + _BE + r"? ?"
                      + _not() + r"(?:\w+ ){0,2}?(?:(?:deviated|shifted|rotated|directed) (?:to the )?left(?:ward)?|"
                      r"to the left|left-?sided)\b|\bleftward "
                      r"(?:axis )?(?:deviation|shift)\b)|\bLAD\b", 0)),
    ("axis_right", _rx(r"(?i:\bright (?:QRS |electrical |frontal |cardiac )?axis(?: deviation)?\b|\brightward (?:QRS |"
                       r"electrical |frontal |cardiac )?axis deviation\b|\baxis " + _BE
                       + r"? ?" + _not() + r"(?:\w+ ){0,2}?(?:(?:deviated|shifted|rotated|directed) (?:to the )?right(?:ward)?|"
                       r"to the right|right-?sided)\b|\brightward "
                       r"(?:axis )?(?:deviation|shift)\b)|\bRAD\b", 0)),
    # "leftward" / "rightward" without "deviation": a position toward one side, within the normal range or beyond
    ("axis_leftward", _rx(r"\bleftward (?:QRS |electrical |frontal |cardiac )?axis\b(?! deviation)|\baxis " + _BE
                          + r" " + _not() + r"(?:\w+ ){0,2}?leftward\b(?! deviation)")),
    ("axis_rightward", _rx(r"\brightward (?:QRS |electrical |frontal |cardiac )?axis\b(?! deviation)|\baxis " + _BE
                           + r" " + _not() + r"(?:\w+ ){0,2}?rightward\b(?! deviation)")),
    ("axis_extreme", _rx(r"\bextreme (?:right |left )?(?:QRS )?axis(?: deviation)?\b|"
                         r"\bnorth-?west(?:ern)? (?:QRS )?(?:axis|quadrant)\b|"
                         r"\bindeterminate (?:QRS |electrical |cardiac )?axis\b|\bno[- ]man'?s[- ]land\b|"
                         r"\baxis " + _BE + r" " + _not() + r"(?:\w+ ){0,3}?(?:extreme|indeterminate|"
                         r"north-?west(?:ern)?)\b")),
    ("axis_vertical", _rx(r"\bvertical (?:electrical |QRS |frontal )?axis\b|\bvertical heart position\b|\baxis " + _BE
                          + r" " + _not() + r"vertical\b")),
    ("axis_horizontal", _rx(r"\bhorizontal (?:electrical |QRS |frontal )?axis\b|\bhorizontal heart position\b|\baxis "
                            + _BE + r" " + _not() + r"horizontal\b")),
]
_AXIS_BAND = {"axis_normal": "axis_normal_deg", "axis_left": "axis_left_deg", "axis_right": "axis_right_deg",
              "axis_extreme": "axis_extreme_deg", "axis_vertical": "axis_vertical_deg",
              "axis_horizontal": "axis_horizontal_deg"}

# --------------------------------------------------------------------------------------------- extraction
# the record and axis rules with their lower-cased twins for case-insensitive ones (pipeline.casefold)
def _folded_twin(rx: re.Pattern) -> re.Pattern | None:
    if not rx.flags & re.IGNORECASE:
        return None
    f = Folded(rx)
    return f.fast if f.fast is not f.slow else None


_RULES_FOLDED = [(concept, rx, _folded_twin(rx)) for concept, rx in _RECORD_RULES + _AXIS_RULES]


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

    low = text.lower()
    folded = len(low) == len(text)  # pipeline.casefold: the same spans on the lower-cased text
    for concept, rx, fast in _RULES_FOLDED:
        for m in (fast.finditer(low) if folded and fast is not None else rx.finditer(text)):
            a, b = m.start(), m.end()
            said = text[a:b]
            neg = _negated(text, a, m)
            if neg and concept in ("tachycardia", "bradycardia") and _RHYTHM_QUALIFIER.search(text[max(0, a - 30):a]):
                continue  # "no ventricular tachycardia" denies a rhythm, not a fast rate
            if concept == "p_present" and (m.groupdict().get("absent") or re.match(
                    r"(?:absent|absence of|no |without |lack of|loss of)", said, re.I)):
                neg = True  # "no P waves", "P waves are absent": the phrase itself denies them
            if concept == "p_each" and re.search(r"\b(?:absent|missing|lacking|none)\b", said, re.I):
                concept, neg = "p_present", True  # "a P wave absent before each QRS": no P waves at all
            scope = ""
            if concept == "low_voltage":  # which leads: the words of its sentence around it
                s0, s1 = sentence_of(a)
                near = text[max(s0, a - 40):min(s1, b + 60)]
                scope = "all" if _ALL_WORDS.search(near) else "limb" if _LIMB_WORDS.search(near) and not \
                    _CHEST_WORDS.search(near) else "chest" if _CHEST_WORDS.search(near) and not \
                    _LIMB_WORDS.search(near) else "all" if _LIMB_WORDS.search(near) else ""
            out.append(QualClaim(concept, a, b, said, neg, scope=scope))
    for s0, s1 in sents:
        out.extend(_interval_claims(text, s0, s1))
    out.extend(extract_lead_statements(text, groups, region_spans, sentence_of))
    out.sort(key=lambda q: (q.start, q.concept))
    return out


def _interval_claims(text: str, s0: int, s1: int) -> list[QualClaim]:
    sent = text[s0:s1]
    out: list[QualClaim] = []
    spans: list[tuple[int, int]] = []
    for rx in (_IV_NOUN, _IV_PREFIX):
        for m in rx.finditer(sent):
            a, b = s0 + m.start(), s0 + m.end()
            q = _qual_word(m.group("q"))
            if q is None or re.search(r"\bborderline\b|\bupper[- ]normal\b|\bhigh[- ]normal\b",
                                      text[max(s0, a - 20):b], re.I):
                continue  # "borderline prolonged QTc": neither side of the cut-off is claimed
            out.append(QualClaim(f"{_iv_key(m.group('k'))}_{q}", a, b, m.group(0), _negated(text, a, m),
                                 formula=_formula_in(m.group(0))))
            spans.append((a, b))
    for m in _IV_POSTFIX.finditer(sent):
        a, b = s0 + m.start(), s0 + m.end()
        if any(x <= a < y for x, y in spans):
            continue
        if _MID_STOP.search(m.group("mid")) or re.search(r"\bborderline\b|\bupper[- ]normal\b|\bhigh[- ]normal\b",
                                                       m.group(0), re.I):
            continue
        if _EXCEPTED.search(text[max(s0, a - 40):a]):
            continue  # "with the exception of the QTc, ... a normal ECG": the quality is claimed of everything else
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
    if q in ("prolonged", "lengthened", "long", "increased", "prolongation", "lengthening", "delayed", "slowed"):
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
    if k in ("PR", "PQ") or "CONDUCTION" in k:
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


# --------------------------------------------------------------------------------------------- judgement
_SHAPE_FEATURES = frozenset({"qrs_morphology", "qrs_polarity", "r_prime_present", "q_wave_present", "s_wave_present"})


@dataclass
class _Facts:
    regular: bool | None
    p_present: bool | None
    ectopy_v: bool = False  # the report states ventricular ectopy (PVC, bigeminy, trigeminy)
    ectopy_a: bool = False  # ... atrial / supraventricular ectopy (PAC)
    # what the statements' criteria say of an interval (column -> high | low | mid): a word the report implies
    # is grounded in the report even where the measured value may not be cited
    implied: dict = field(default_factory=dict)
    # leads whose QRS shape the statements' criteria describe (RBBB's rsR' in V1-V2, LBBB's negative V1): a pattern
    # word there is the report's, grounded in it even where the measured pattern may not be cited
    shape_leads: frozenset = frozenset()


def statement_facts(ctx: GroundingContext, kb) -> _Facts:
    """What the record's statements say about regularity and P waves (their knowledge criteria on
    ``rhythm_regular`` / ``p_waves_present``); None where they say nothing or disagree."""
    vals: dict[str, set[bool]] = {"rhythm_regular": set(), "p_waves_present": set()}
    implied: dict[str, set[str]] = {}
    shape: set[str] = set()
    if kb is not None:
        for sid in sorted(kb.closure(ctx.statement_ids)):
            for crit in kb.entries[sid].criteria:
                if crit.feature in _SHAPE_FEATURES:
                    shape.update(crit.leads or ())
                if crit.feature in vals and crit.comparison == "==" and isinstance(crit.threshold, bool):
                    vals[crit.feature].add(crit.threshold)
                side = {">=": "high", ">": "high", "<": "low", "<=": "low", "between": "mid"}.get(crit.comparison) \
                    if crit.role != "supportive" else None
                if side and crit.feature in ("pr_ms", "qrs_ms", "hr_bpm") or side and str(crit.feature).startswith("qtc_"):
                    implied.setdefault(crit.feature, set()).add(side)
    def one(s: set[bool]) -> bool | None:
        return next(iter(s)) if len(s) == 1 else None
    closure = kb.closure(ctx.statement_ids) if kb is not None else set(ctx.statement_ids)
    return _Facts(one(vals["rhythm_regular"]), one(vals["p_waves_present"]),
                  ectopy_v=bool(closure & {"PVC", "BIGU", "TRIGU"}), ectopy_a=bool(closure & {"PAC", "PRC(S)"}),
                  implied=implied, shape_leads=frozenset(shape))


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
            problems.append(Problem(c, detail, "uncitable_value" if isinstance(detail, Uncitable)
                                    else "contradicts_measurement"))
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
        side = {"tachycardia": "high", "bradycardia": "low", "rate_normal": "mid"}[c.concept]
        if ctx.uncitable_reason("hr_bpm") == "low_confidence" and not (
                not c.negated and facts.implied.get("hr_bpm") == {side}):  # unless the report's rhythm says it
            return Uncitable(f"{word} {c.text!r} but the heart rate cannot be measured reliably on this ECG")
        fast, slow = table["tachycardia_bpm"].abnormal(hr), table["bradycardia_bpm"].abnormal(hr)
        truth = {"tachycardia": fast, "bradycardia": slow, "rate_normal": not fast and not slow}[c.concept]
        if truth == c.negated:
            return f"{word} {c.text!r} but the heart rate is {hr:.0f} bpm"
        return None
    # ---- ectopic beats
    if c.concept == "ectopy":
        return _judge_ectopy(c, rec, facts, word)
    # ---- QRS voltage
    if c.concept == "low_voltage":
        return _judge_low_voltage(c, ctx, rec, word)
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
        # a word about an interval the record may not cite states it all the same: its truth is unknown (the
        # measured value behind it is not reliable, so neither agreeing nor disagreeing with it means anything)
        col = {"pr": "pr_ms", "qrs": "qrs_ms"}.get(m.group(1), f"qtc_{c.formula or 'bazett'}_ms")
        if ctx.uncitable_reason(col) == "report_no_p_waves":
            # "no measurable PR interval" is true of it; "wide" is the QRS's word after it ("no measurable PR
            # interval, a wide QRS of 142 ms"), no PR's
            if c.negated or m.group(2) in ("wide", "narrow"):
                return None
            return Uncitable(f"{word} {c.text!r} but the report's rhythm has no P waves, so no PR interval")
        if rec.get(col) is not None and ctx.uncitable_reason(col) in UNSURE_REASONS:
            # unless the report's own diagnosis says as much (a wide QRS of a bundle branch block)
            said = facts.implied.get(col if m.group(1) in ("pr", "qrs") else next(
                (k for k in facts.implied if k.startswith("qtc_")), col), set())
            side = {"long": "high", "wide": "high", "short": "low", "narrow": "low", "normal": "mid"}[m.group(2)]
            if not c.negated and said == {side} or side == "low" and said == {"mid"}:
                return None
            name = {"pr": "PR interval", "qrs": "QRS duration"}.get(m.group(1), "QT interval")
            return Uncitable(f"{word} {c.text!r} but the {name} cannot be measured reliably on this ECG")
        return _judge_interval(c, m.group(1), m.group(2), rec, sex, table, word)
    # ---- axis words
    if c.concept in ("axis_leftward", "axis_rightward"):
        axis = _num(rec.get("qrs_axis_deg"))
        if axis is None or not ctx.citable("qrs_axis_deg"):
            return None
        # leftward: up to the top of the horizontal band (+30) and beyond to the left; rightward: from the
        # bottom of the vertical band (+70) and beyond to the right
        if c.concept == "axis_leftward":
            truth = axis <= table["axis_horizontal_deg"].range[1] or axis >= 180.0
        else:
            truth = axis >= table["axis_vertical_deg"].range[0] or axis <= table["axis_extreme_deg"].range[1]
        if truth == c.negated:
            return f"{word} {c.text!r} but the QRS axis is {axis:.0f} degrees"
        return None
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
    if c.concept == "morphology" and not c.negated:
        # a QRS pattern read inside a QRS window the record may not cite (its edges a guess: a window that slid into
        # the ST reads the ST as the QRS's end) is stated all the same: its truth is unknown, unless the report's
        # own diagnosis describes that lead's QRS
        measured = [lead for lead in (c.leads or ()) if lead in idx.rep]
        unsure = [lead for lead in measured if ctx.uncitable_reason("qrs_morphology", lead) in UNSURE_REASONS]
        if measured and len(unsure) == len(measured) and not set(measured) & facts.shape_leads:
            return Uncitable(f"claims a {c.text} pattern in {', '.join(measured)} but the QRS cannot be measured "
                             f"reliably there")
    return judge_leads(c, ctx, idx, sex, table, config)


def _judge_ectopy(c: QualClaim, rec: dict, facts: _Facts, word: str) -> str | None:
    """'No premature beats' against the report's ectopy statements and the beats classed premature; a kind
    named ("no ventricular ectopy") is judged on the report's statements of that kind. A single beat classed
    premature may be a sinus beat of an irregular rhythm, so only two or more deny 'no ectopic beats' by
    measurement alone."""
    kind = "ventricular" if re.search(r"ventricular", c.text, re.I) and not re.search(r"supraventricular", c.text,
                                                                                      re.I) else \
        "atrial" if re.search(r"atrial|supraventricular|junctional", c.text, re.I) else ""
    n = rec.get("n_premature") or 0
    in_report = {"ventricular": facts.ectopy_v, "atrial": facts.ectopy_a}.get(kind, facts.ectopy_v or facts.ectopy_a)
    if c.negated:
        if in_report or (not kind and n >= 2):
            why = "the report states them" if in_report else f"{n} beats are premature"
            return f"{word} {c.text!r} but {why}"
        return None
    if not (facts.ectopy_v or facts.ectopy_a) and n == 0:
        return f"{word} {c.text!r} but no beat is premature and the report states no ectopy"
    return None


_LIMB_WORDS = re.compile(r"\b(?:limb|frontal|extremity|standard) leads\b|\blimb\b", re.I)
_CHEST_WORDS = re.compile(r"\b(?:precordial|chest|horizontal[- ]plane)\b", re.I)
_ALL_WORDS = re.compile(r"\b(?:all|every|each of the|all 12|all twelve|twelve|12) leads\b|\bdiffuse(?:ly)?\b|"
                        r"\bglobal(?:ly)?\b|\bgenerali[sz]ed\b|\bthroughout\b|\bboth\b", re.I)


def _judge_low_voltage(c: QualClaim, ctx: GroundingContext, rec: dict, word: str) -> str | None:
    """'Low QRS voltage' against the record's flags (every limb lead below 0.5 mV, every chest lead below
    1.0 mV): the leads named pick the flag ('in the limb leads'); 'in all leads' needs both; none named, either."""
    if not ctx.citable("low_voltage_limb"):
        return None
    limb, chest = rec.get("low_voltage_limb"), rec.get("low_voltage_precordial")
    if limb is None and chest is None:
        return None
    scope = c.scope
    if scope == "limb":
        truth, where = limb, "limb"
    elif scope == "chest":
        truth, where = chest, "precordial"
    elif scope == "all":
        truth, where = (None if limb is None or chest is None else bool(limb and chest)), "limb and precordial"
    else:
        truth, where = bool(limb or chest), "limb or precordial"
    if truth is None:
        return None
    if bool(truth) == c.negated:
        return f"{word} {c.text!r} but the QRS voltage is {'low' if truth else 'not low'} in the {where} leads"
    return None


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


def _num(v) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    v = float(v)
    return v if v == v else None


