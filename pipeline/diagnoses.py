"""Diagnoses: every report statement stated, nothing diagnosed that the report does not make.

Mentions come from the knowledge base (its names, synonyms and abbreviations) and from the vocabulary of
terms outside it (``knowledge/vocabulary.yaml``: Brugada, junctional rhythm, pulmonary embolism, ...); where a
term of one contains a term of the other ("multifocal atrial tachycardia" / "atrial tachycardia") the longer
mention is the one meant. Negated mentions ("no pre-excitation") claim nothing.

- ``missing``: report statements (knowledge ids) the answer does not name (through ``implies``: "complete
  right bundle branch block" also states "right bundle branch block");
- ``extra``: knowledge entries named that the report neither states, implies nor relates, unless they are
  descriptive findings the measurements meet (``DESCRIPTIVE_IDS``: "normal axis" at +40); and vocabulary terms
  that the report's statements do not entail (``permitted_by``).

"Within normal limits" after an interval ("QTc 416 ms, within normal limits") describes that measurement; it
is not the diagnosis "normal ECG".
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from pipeline.context import GroundingContext
from pipeline.cutoffs import cutoffs

# Findings that describe a measurement rather than diagnose (axis, rate, interval, voltage descriptors): an
# answer may state one the report does not, when the record's measurements meet the knowledge criteria.
DESCRIPTIVE_IDS: frozenset[str] = frozenset({"NAXIS", "LAD", "RAD", "SR", "SBRAD", "STACH", "LPR", "SPR",
                                             "LVOLT", "HVOLT", "STE_", "STD_"})
# Contiguous leads (Thygesen 2018): ST deviation is a finding when two leads of one group show it.
_CONTIGUOUS = (("II", "III", "aVF"), ("I", "aVL"), ("V5", "V6"), ("V1", "V2", "V3", "V4"), ("V4", "V5", "V6"),
               ("I", "aVL", "V5", "V6"))


def _st_measured(entry_id: str, ctx: GroundingContext) -> bool:
    """ST elevation (the cut-off table's threshold for the lead and sex) or marked ST depression (0.1 mV) at the
    J point and 60 ms after it (a level, horizontal or down-sloping segment, not the T wave's upstroke) in two
    contiguous leads: then 'ST depression of 1.5 mm in V5' describes the tracing, whatever the report lists."""
    table = cutoffs()
    sex = (ctx.extra or {}).get("sex")
    sex = sex if sex in ("male", "female") else None
    for group in _CONTIGUOUS:
        n = 0
        for lead in group:
            if not ctx.citable("st_j_mv", lead):
                continue
            j, j60 = ctx.lead_value(lead, "st_j_mv"), ctx.lead_value(lead, "st_j60_mv")
            if j is None or j60 is None or j != j or j60 != j60:
                continue
            if entry_id == "STE_":
                cut = table["st_elevation_v2v3_mv" if lead in ("V2", "V3") else "st_elevation_mv"]
                n += bool(cut.abnormal(j, sex) and cut.abnormal(j60, sex))
            else:
                cut = table["st_depression_marked_mv"]
                n += bool(cut.abnormal(j) and cut.abnormal(j60))
        if n >= 2:
            return True
    return False


def _criterion_holds(crit, rec: dict) -> bool | None:
    """One knowledge criterion judged on the record row; None when it is not a record-level criterion."""
    if getattr(crit, "scope", None) != "record" or rec.get(crit.feature) is None:
        return None
    return crit.test(rec[crit.feature])


def measurement_supports(entry_id: str, ctx: GroundingContext, kb) -> bool:
    """Whether a descriptive finding (``DESCRIPTIVE_IDS``) is supported by the record's measurements alone, so
    an answer may state it although the report does not (e.g. 'normal axis' with a measured axis of +40).
    Every citable record-level criterion of the knowledge entry must hold; at least one must be evaluable."""
    if entry_id not in DESCRIPTIVE_IDS:
        return False
    if entry_id in ("STE_", "STD_"):
        return _st_measured(entry_id, ctx)
    entry = kb.entries.get(entry_id)
    crits = [c for c in (getattr(entry, "criteria", None) or []) if c.feature and ctx.citable(c.feature)]
    results = [_criterion_holds(c, ctx.record) for c in crits]
    results = [r for r in results if r is not None]
    if entry_id == "LVOLT":  # either limb or precordial low voltage is enough
        return any(results)
    return bool(results) and all(results)


_ECG_WORDS = re.compile(r"\b(?:ecg|ekg|electrocardiogram|tracing|study|recording|record)\b", re.I)
_MEASUREMENT_WORDS = re.compile(r"\b(?:intervals?|durations?|QTc?|PR|PQ|QRS|axis|rates?|amplitudes?|voltages?|waves?|"
                                r"segments?|complex(?:es)?|progression|morphology|\d+(?:\.\d+)?\s*(?:ms|bpm|mV|mm|s|"
                                r"degrees?))\b", re.I)


def measurement_normal(text: str, mention) -> bool:
    """'the QTc is within normal limits' describes one measurement; it is not the diagnosis 'normal ECG'.
    The nearest subject before the mention in its sentence decides: a measurement word or value, or the ECG."""
    if mention.entry_id != "NORM" or _ECG_WORDS.search(mention.text):
        return False
    start = max(text.rfind(ch, 0, mention.start) for ch in ".;!?") + 1
    before = text[start:mention.start]
    last_meas = max((m.end() for m in _MEASUREMENT_WORDS.finditer(before)), default=-1)
    last_ecg = max((m.end() for m in _ECG_WORDS.finditer(before)), default=-1)
    return last_meas > last_ecg


_COMPLETE = {"LBBB": "CLBBB", "RBBB": "CRBBB"}


@dataclass
class DiagnosisCheck:
    missing: list[str]
    extra: list[str]
    recall: float
    precision: float
    extra_terms: list[str] = field(default_factory=list)  # vocabulary terms (outside the knowledge base)
    denied: list[str] = field(default_factory=list)       # report findings the answer denies ("no sinus rhythm")


# "not normal sinus rhythm" in a sinus bradycardia denies the normal rate, not the sinus rhythm the
# bradycardia implies: a denied phrase with one of these qualifiers only denies an implied finding's qualifier
_QUALIFIED = re.compile(r"\b(?:normal|regular|typical|complete|marked)\b", re.I)


# "the rhythm is sinus", "rhythm: sinus" name sinus rhythm as surely as the phrase does
_SINUS_WORDS = re.compile(r"\b(?:rhythm (?:is|was|remains)|rhythm:)\s+(?:a\s+)?(?:normal\s+|regular\s+)?sinus\b"
                          r"(?!\s+(?:rhythm|bradycardia|tachycardia|arrhythmia|arrest|pause|node))", re.I)
_BE_WORDS = r"(?:is|was|remains|appears|seems|looks)(?:\s+to\s+be)?"
# Diagnoses named by a predicate rather than by their noun phrase: "the rhythm is junctional", "the limb
# leads appear reversed", "this ECG is abnormal". (source, id, pattern); source "kb" or "vocab".
_PREDICATES: list[tuple[str, str, re.Pattern]] = [
    ("kb", "SR", _SINUS_WORDS),
    ("kb", "ABNECG", re.compile(r"\b(?:ECG|EKG|tracing|electrocardiogram|recording)\s+" + _BE_WORDS +
                                r"\s+(?:\w+\s+)?abnormal\b", re.I)),
    ("kb", "NORM", re.compile(r"\b(?:ECG|EKG|tracing|electrocardiogram|recording)\s+" + _BE_WORDS +
                              r"\s+(?:otherwise\s+|entirely\s+|essentially\s+|completely\s+)?(?:normal|"
                              r"unremarkable)\b(?!\s+(?:for|in|at|apart|except|other))", re.I)),
    ("vocab", "JUNCT", re.compile(r"\brhythm\s+" + _BE_WORDS + r"\s+(?:an?\s+)?(?:\w+\s+)?(?:junctional|nodal)\b"
                                  r"(?!\s+(?:rhythm|escape|tachycardia|bradycardia))", re.I)),
    ("vocab", "IVR", re.compile(r"\brhythm\s+" + _BE_WORDS + r"\s+(?:an?\s+)?idioventricular\b(?!\s+rhythm)", re.I)),
    ("vocab", "EAR", re.compile(r"\brhythm\s+" + _BE_WORDS + r"\s+(?:an?\s+)?(?:ectopic\s+atrial|ectopic)\b"
                                r"(?!\s+(?:atrial\s+)?(?:rhythm|tachycardia|beats?))", re.I)),
    ("vocab", "LEADREV", re.compile(r"\b(?:limb |arm |leg |precordial |chest )?(?:leads?|electrodes?)\s+(?:\w+\s+){0,2}?"
                                    r"(?:reversed|swapped|switched|misplaced|interchanged|transposed)\b|"
                                    r"\b(?:reversed|swapped|switched|misplaced|interchanged|transposed)\s+(?:limb |arm |"
                                    r"leg |precordial |chest )?(?:leads?|electrodes?)\b", re.I)),
]


def _predicate_mentions(answer: str, source: str, ids, taken: list) -> list:
    """Mentions of ``_PREDICATES`` of ``source`` whose id is known (``ids``), outside spans already ``taken``."""
    from pipeline.knowledge import Mention, negations

    found: list[tuple[int, int, str]] = []
    for src, eid, rx in _PREDICATES:
        if src != source or eid not in ids:
            continue
        for m in rx.finditer(answer):
            a, b = m.start(), m.end()
            if not any(k.start < b and a < k.end for k in taken) and not any(x < b and a < y for x, y, _ in found):
                found.append((a, b, eid))
    found.sort()
    flags = negations(answer, [(a, b) for a, b, _ in found])
    return [Mention(eid, a, b, answer[a:b], neg) for (a, b, eid), neg in zip(found, flags)]


def diagnosis_mentions(answer: str, kb, vocab=None) -> tuple[list, list]:
    """(knowledge-base mentions, vocabulary mentions) of ``answer``, overlaps resolved to the longer one."""
    kb_m = kb.find_mentions(answer)
    more = _predicate_mentions(answer, "kb", kb.entries, kb_m)
    if more:
        kb_m = sorted(kb_m + more, key=lambda m: m.start)
    voc_m = vocab.find_mentions(answer) if vocab is not None else []
    if vocab is not None:
        more = _predicate_mentions(answer, "vocab", vocab.terms, kb_m + voc_m)
        if more:
            voc_m = sorted(voc_m + more, key=lambda m: m.start)
    if not voc_m:
        return kb_m, []
    keep_kb, keep_voc = [], []
    for m in kb_m:
        if not any(v.start <= m.start and m.end <= v.end and (v.end - v.start) > (m.end - m.start) for v in voc_m):
            keep_kb.append(m)
    for v in voc_m:
        if not any(m.start <= v.start and v.end <= m.end for m in keep_kb):
            keep_voc.append(v)
    return keep_kb, keep_voc


def check_diagnoses(answer: str, ctx: GroundingContext, kb, vocab=None, mentions=None) -> DiagnosisCheck:
    """Report statements the answer does not mention (``missing``) and diagnoses it makes that the report does
    not support (``extra``: knowledge ids; ``extra_terms``: vocabulary ids). ``mentions``: the answer's
    ``diagnosis_mentions`` when the caller has them already."""
    kb_m, voc_m = mentions if mentions is not None else diagnosis_mentions(answer, kb, vocab)
    positive = [m for m in kb_m if not m.negated and not measurement_normal(answer, m)]
    stated = kb.closure([m.entry_id for m in positive])
    # "left bundle branch block" unqualified is the complete block when the QRS is wide (>= 120 ms, Surawicz
    # 2009): it states the report's "complete left bundle branch block"
    qrs = ctx.record.get("qrs_ms") if ctx.record else None
    if qrs is not None and qrs == qrs and cutoffs()["qrs_wide_ms"].abnormal(qrs):
        stated |= {full for short, full in _COMPLETE.items() if short in stated and full in kb.entries}
    statements = list(dict.fromkeys(ctx.statement_ids))
    missing = [s for s in statements if s not in stated]
    # the report's statements, what they imply and their related findings ("Q waves" for an MI)
    allowed = kb.permitted(statements)
    closure = kb.closure(statements)
    extra: list[str] = []
    n_ok = 0
    for m in positive:
        if m.entry_id in allowed or measurement_supports(m.entry_id, ctx, kb):
            n_ok += 1
        elif m.entry_id not in extra:
            extra.append(m.entry_id)
    extra_terms: list[str] = []
    voc_pos = [v for v in voc_m if not v.negated]
    for v in voc_pos:
        if vocab.permitted(v.entry_id, closure):
            n_ok += 1
        elif v.entry_id not in extra_terms:
            extra_terms.append(v.entry_id)
    # a finding of the report denied anywhere ("there is no sinus rhythm") takes back what another sentence
    # says: the answer contradicts itself and the report
    denied: list[str] = []
    for m in kb_m:
        if not m.negated or m.entry_id not in closure or m.entry_id in denied:
            continue
        if m.entry_id not in statements and _QUALIFIED.search(m.text):
            continue
        denied.append(m.entry_id)
    n_pos = len(positive) + len(voc_pos)
    recall = 1.0 if not statements else (len(statements) - len(missing)) / len(statements)
    precision = 1.0 if not n_pos else n_ok / n_pos
    return DiagnosisCheck(missing, extra, recall, precision, extra_terms, denied)
