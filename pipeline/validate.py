"""Answer validation: the gate that keeps ungrounded interpretations out of the instruction set.

``validate_answer(answer, ctx)`` checks one generated interpretation against the ``GroundingContext`` it was
written for (the same object the prompt and the offline writer saw):

- form: one paragraph, at most ``max_words`` words, no lists / headings / markdown, no leakage of the hidden
  inputs (report, machine measurements, "the data provided" ...), no "I cannot see the image" talk;
- numbers: every number with a unit (ms, s, bpm, mV, mm, degrees, also "QTc of 452" and ranges) must match a
  measurement of this record - in the lead(s) named next to it when a lead is named - within a tolerance;
- leads: every lead named exists and was measured (not gated by the quality gate);
- consistency: rhythm / rate / axis / interval words may not contradict the measurements;
- diagnoses: every report statement is mentioned (not negated); nothing outside the report is diagnosed.

The result carries stable reason codes (``REASONS``), human-readable details, metrics and ``feedback``: the
text the generation loop appends to the prompt when it asks the LLM to try again.

``register(subparsers)`` adds ``ecg-grounding validate``, which validates a whole ``answers.parquet`` and
writes the GEM instruction set (see ``pipeline.instructions``).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import polars as pl
from pydantic import BaseModel, Field

from pipeline.context import GroundingContext
from pipeline.record import LEADS

# Reason codes of a rejected answer, in one place so rejects files and summaries speak one language.
REASONS: dict[str, str] = {
    "empty_answer": "the answer is empty",
    "form_multiple_paragraphs": "the answer is not one paragraph",
    "form_too_long": "the answer has more words than allowed",
    "form_list": "the answer holds a list (bullets, numbered lines) or headings",
    "form_markdown": "the answer holds markdown or markup (bold, code, tables, <think> tags)",
    "leak_hidden_input": "the answer refers to the hidden inputs (report, machine measurements, data provided)",
    "image_missing_talk": "the answer claims the image is missing or cannot be seen",
    "ungrounded_number": "a number with a unit matches no measurement of this record",
    "lead_not_measured": "a lead named does not exist or was gated (not measured)",
    "contradicts_measurement": "a statement about rhythm, rate, axis or intervals contradicts the measurements",
    "missing_diagnosis": "a report statement is not covered by the answer",
    "extra_diagnosis": "the answer diagnoses something the report does not say",
}


class ValidationConfig(BaseModel):
    """Thresholds of the validator. Tolerances: a claim matches a value when
    ``|claim - value| <= max(abs_tol, frac_tol * |value|)``."""

    max_words: int = 300
    interval_tol_ms: float = 10.0
    interval_tol_frac: float = 0.05
    rate_tol_bpm: float = 3.0
    amp_tol_mv: float = 0.05
    amp_tol_frac: float = 0.10
    axis_tol_deg: float = 10.0
    mm_per_mv: float = 10.0  # standard calibration: 10 mm per mV
    check_diagnoses: bool = True
    # Standard clinical cut-offs an answer may quote next to a comparator ("exceeding 120 ms", "normal < 0.1 mV")
    # without it being a measurement claim. Units: ms, bpm, mV, degrees.
    reference_ms: list[float] = Field(default_factory=lambda: [
        20, 30, 40, 80, 100, 110, 120, 200, 210, 220, 300, 350, 360, 390, 400, 420, 430, 440, 450, 460, 470,
        480, 490, 500])
    reference_bpm: list[float] = Field(default_factory=lambda: [40, 50, 60, 90, 100, 120, 150])
    reference_mv: list[float] = Field(default_factory=lambda: [
        0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 1.0, 1.5, 2.0, 2.5, 2.6, 2.8, 3.0, 3.5, 4.0, 4.5])
    reference_deg: list[float] = Field(default_factory=lambda: [-180, -90, -30, 0, 60, 90, 100, 120, 180])


class ValidationMetrics(BaseModel):
    numeric_claims: int = 0        # numbers with a unit that were checked against measurements
    numeric_grounded: int = 0      # of those, how many matched
    grounding_precision: float = 1.0
    diagnosis_recall: float = 1.0  # report statements covered / report statements
    diagnosis_precision: float = 1.0  # allowed diagnostic mentions / diagnostic mentions
    leads_named: int = 0           # distinct leads named (explicitly or through a region)
    leads_covered: int = 0         # distinct measured leads named
    words: int = 0


class ValidationResult(BaseModel):
    accepted: bool
    reasons: list[str] = Field(default_factory=list)   # reason codes (REASONS keys), unique, in order found
    details: list[str] = Field(default_factory=list)   # one human-readable line per problem
    metrics: ValidationMetrics = Field(default_factory=ValidationMetrics)
    feedback: str = ""


# --------------------------------------------------------------------------------------------------- form
_LIST_LINE = re.compile(r"^\s*(?:[-*+\u2022\u25cf\u25aa\u2023\u2013\u2014]\s+|\d{1,2}[.)]\s+|[a-zA-Z][.)]\s+|#{1,6}\s)")
_INLINE_ENUM = re.compile(r"(?:^|\s)\(?1[.)]\s.+?\s\(?2[.)]\s", re.S)
_MARKDOWN = re.compile(r"\*\*|__|`|^\s*\|.*\|\s*$|</?think>|<br\s*/?>|^\s*>", re.M)
_HEADING_LINE = re.compile(r"^\s*[A-Z][A-Za-z /-]{1,40}:\s*$", re.M)

_LEAK_PATTERNS = [
    r"\breports?\b", r"\breported\b",
    r"\bmachine[- ](?:generated\s+)?(?:measurements?|readings?|interpretations?)\b",
    r"\b(?:provided|given|supplied|supplementary|accompanying|listed)\s+(?:measurements?|data|features?|values|"
    r"information|statements?|diagnos[ie]s|text|context|findings|numbers|table)\b",
    r"\b(?:measurements?|data|features?|values|information|findings|statements?)\s+(?:provided|given|supplied|"
    r"listed|above|below)\b",
    r"\bbased on the (?:data|information|measurements?|features?|values|text|input)\b",
    r"\baccording to the (?:features?|measurements?|data|report|table|input|information|statements?)\b",
    r"\b(?:feature|measurement)s?\s+table\b", r"\bthe prompt\b", r"\bknowledge base\b", r"\bground[- ]truth\b",
    r"\b(?:json|parquet|neurokit2?|dataframe)\b", r"\bas (?:stated|listed|given|mentioned) (?:in|above|below)\b",
]
_LEAK = re.compile("|".join(_LEAK_PATTERNS), re.I)

_IMAGE_TALK_PATTERNS = [
    r"\bimage (?:is|was|has)? ?(?:not|n't|never) (?:been )?(?:available|provided|shown|visible|attached|included|"
    r"accessible|uploaded|displayed|present)",
    r"\bno (?:ecg |actual )?(?:image|picture|tracing|figure) (?:is |was )?(?:provided|available|attached|"
    r"included|shown|uploaded)",
    r"\b(?:cannot|can ?not|can't|unable to|not able to|do not|don't) (?:directly )?(?:see|view|access|display|"
    r"open|visualize|visualise|look at|examine|interpret) (?:the |this |an |any )?(?:actual )?(?:ecg )?"
    r"(?:image|picture|tracing|figure|waveforms?)",
    r"\bimage (?:is|was) missing\b", r"\bmissing (?:ecg )?image\b", r"\bwithout (?:seeing|access to|viewing) "
    r"(?:the )?(?:actual )?(?:ecg )?(?:image|tracing)", r"\bas an ai\b", r"\b(?:don't|do not) have access to\b",
    r"\btext[- ]based (?:model|assistant|ai)\b", r"\bif (?:the|an) image (?:were|was|is) (?:provided|available)",
]
_IMAGE_TALK = re.compile("|".join(_IMAGE_TALK_PATTERNS), re.I)


def count_words(text: str) -> int:
    """Whitespace-separated words (what 'at most 300 words' means to a reader)."""
    return len(text.split())


def check_form(answer: str, config: ValidationConfig) -> list[tuple[str, str]]:
    """Form problems of ``answer`` as (reason code, detail) pairs; empty when the form is fine."""
    problems: list[tuple[str, str]] = []
    text = answer.strip()
    if not text:
        return [("empty_answer", "the answer is empty")]
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) > 1 or re.search(r"\n\s*\n", text):
        problems.append(("form_multiple_paragraphs", f"the answer has {len(lines)} lines; write one paragraph"))
    list_lines = [ln for ln in lines if _LIST_LINE.match(ln)] + _HEADING_LINE.findall(text)
    if list_lines:
        problems.append(("form_list", f"list item or heading: {list_lines[0].strip()[:60]!r}"))
    elif _INLINE_ENUM.search(text):
        problems.append(("form_list", "inline numbered enumeration (1. ... 2. ...)"))
    if _MARKDOWN.search(text):
        problems.append(("form_markdown", f"markup found: {_MARKDOWN.search(text).group(0).strip()!r}"))
    n_words = count_words(text)
    if n_words > config.max_words:
        problems.append(("form_too_long", f"{n_words} words (at most {config.max_words})"))
    for m in _LEAK.finditer(text):
        problems.append(("leak_hidden_input", f"refers to hidden inputs: {m.group(0)!r}"))
        break
    for m in _IMAGE_TALK.finditer(text):
        problems.append(("image_missing_talk", f"talks about the image being unavailable: {m.group(0)!r}"))
        break
    return problems


# -------------------------------------------------------------------------------------------------- leads
_REGIONS: list[tuple[re.Pattern, tuple[str, ...]]] = [
    (re.compile(r"\bhigh[- ]lateral\b", re.I), ("I", "aVL")),
    (re.compile(r"\binfero-?lateral\b", re.I), ("II", "III", "aVF", "I", "aVL", "V5", "V6")),
    (re.compile(r"\bantero-?septal\b", re.I), ("V1", "V2", "V3", "V4")),
    (re.compile(r"\bantero-?lateral\b", re.I), ("I", "aVL", "V3", "V4", "V5", "V6")),
    (re.compile(r"\binferior\b", re.I), ("II", "III", "aVF")),
    (re.compile(r"(?<![-\w])lateral\b", re.I), ("I", "aVL", "V5", "V6")),
    (re.compile(r"(?<![-\w])anterior\b", re.I), ("V3", "V4")),
    (re.compile(r"(?<![-\w])septal\b", re.I), ("V1", "V2")),
    (re.compile(r"\bright precordial\b", re.I), ("V1", "V2", "V3")),
    (re.compile(r"\bleft precordial\b", re.I), ("V4", "V5", "V6")),
    (re.compile(r"(?<!right )(?<!left )\bprecordial leads\b", re.I), ("V1", "V2", "V3", "V4", "V5", "V6")),
    (re.compile(r"\blimb leads\b", re.I), ("I", "II", "III", "aVR", "aVL", "aVF")),
]
# Leads as written: aVR/AVR/avr, V1..V6 (and impossible ones such as V7, V4R, caught as invalid), I/II/III.
_LEAD_TOKEN = re.compile(r"(?<![A-Za-z0-9'])(a[vV][RLFrlf]|AV[RLF]|[Vv]\d{1,2}R?|III|II|I)(?![A-Za-z0-9'])")
_SEP_SAME_GROUP = re.compile(r"^\s*(?:,\s*(?:and|or)\s+|,|and|or|&|/|\+)?\s*$", re.I)
_SEP_RANGE = re.compile(r"^\s*(?:-|\u2013|\u2014|to|through|thru)\s*$", re.I)
_LEAD_WORD_BEFORE = re.compile(r"\bleads?\s*$", re.I)


@dataclass
class LeadMention:
    start: int
    end: int
    leads: tuple[str, ...]   # canonical names; empty for an impossible lead
    text: str
    explicit: bool           # written as a lead name (not a region word)
    invalid: bool = False    # e.g. "V7", "V4R": not one of the 12 standard leads


def _canonical(token: str) -> str | None:
    t = token.upper()
    if t in ("AVR", "AVL", "AVF"):
        return "aV" + t[2]
    if t in ("I", "II", "III"):
        return t
    m = re.fullmatch(r"V(\d{1,2})(R?)", t)
    if m and not m.group(2) and 1 <= int(m.group(1)) <= 6:
        return f"V{int(m.group(1))}"
    return None


def find_leads(text: str) -> list[LeadMention]:
    """Lead names in ``text``: explicit names ("lead II", "V1-V3", "leads V1 through V4", "I, aVL, V5") and
    region words ("inferior" -> II, III, aVF). Roman numerals count as leads only after "lead(s)" or in a list
    with another lead name, so "Mobitz II" or "type I" are not leads."""
    raw = [(m.start(), m.end(), m.group(1)) for m in _LEAD_TOKEN.finditer(text)]
    # "V1-3" shorthand: a range whose end has no letter
    short = {m.start(): m for m in re.finditer(r"(?<![A-Za-z0-9])[Vv]([1-6])\s*[-\u2013]\s*([1-6])(?![\d])", text)}
    groups: list[list[tuple[int, int, str, str]]] = []  # (start, end, token, link-to-previous)
    for start, end, tok in raw:
        if groups:
            prev = groups[-1][-1]
            between = text[prev[1]:start]
            if _SEP_SAME_GROUP.match(between):
                groups[-1].append((start, end, tok, "list"))
                continue
            if _SEP_RANGE.match(between):
                groups[-1].append((start, end, tok, "range"))
                continue
        groups.append([(start, end, tok, "")])
    out: list[LeadMention] = []
    for grp in groups:
        has_named = any(tok.upper() not in ("I", "II", "III") for _, _, tok, _ in grp)
        after_lead_word = bool(_LEAD_WORD_BEFORE.search(text[max(0, grp[0][0] - 12):grp[0][0]]))
        if not (has_named or after_lead_word):
            continue
        prev_lead: str | None = None
        for start, end, tok, link in grp:
            lead = _canonical(tok)
            if lead is None:
                out.append(LeadMention(start, end, (), tok, True, invalid=True))
                prev_lead = None
                continue
            leads: tuple[str, ...] = (lead,)
            if link == "range" and prev_lead is not None:
                a, b = LEADS.index(prev_lead), LEADS.index(lead)
                if a < b:
                    leads = tuple(LEADS[a + 1:b + 1])
            if start in short:
                m = short[start]
                a, b = int(m.group(1)), int(m.group(2))
                if a < b:
                    leads = tuple(f"V{i}" for i in range(a, b + 1))
                    end = m.end()
            out.append(LeadMention(start, end, leads, text[start:end], True))
            prev_lead = lead
    for pattern, leads in _REGIONS:
        for m in pattern.finditer(text):
            if any(lm.start <= m.start() < lm.end for lm in out if not lm.explicit):
                continue  # "inferolateral" already matched; do not add "lateral" again
            out.append(LeadMention(m.start(), m.end(), leads, m.group(0), False))
    out.sort(key=lambda lm: lm.start)
    return out


# ------------------------------------------------------------------------------------------ numeric claims
_NUM = r"[-\u2212+]?\s?\d+(?:\.\d+)?"
_UNIT = (r"(?P<unit>milliseconds?|msecs?|ms|seconds?|secs?|s(?![\w/])|bpm|beats?\s*(?:per|/)\s*min(?:ute)?|/\s?min"
         r"|millivolts?|mv|mm(?!\s*/)|millimet(?:er|re)s?(?!\s*/)|°|º|degrees?|deg)")
_CLAIM = re.compile(
    rf"(?:(?P<between>between|from)\s+(?P<lo>{_NUM})\s*(?:{_UNIT.replace('?P<unit>', '?P<unit0>')})?\s*"
    rf"(?:and|to|-|\u2013)\s*)?"
    rf"(?<![\w.])(?P<num>{_NUM})"
    rf"(?:\s*(?:-|\u2013|\u2014|to)\s*(?P<hi>{_NUM}))?"
    rf"(?:\s*{_UNIT}(?![A-Za-z]))?",
    re.I,
)
# Keywords that say which measurement a number is about; the nearest one before the number wins.
_KEYWORDS: list[tuple[str, re.Pattern]] = [
    ("qtc", re.compile(r"\bQTc[BFHb]?\b|\bcorrected QT\b", re.I)),
    ("qt_dispersion", re.compile(r"\bQT dispersion\b", re.I)),
    ("qt", re.compile(r"\bQT\b(?!c)(?! dispersion)")),
    ("pr", re.compile(r"\bP-?R\b(?! prime)(?!')|\bPQ\b")),
    ("qrs_amp", re.compile(r"\bQRS (?:amplitude|voltage|complex(?:es)? (?:amplitude|voltage))s?\b", re.I)),
    ("qrs", re.compile(r"\bQRS\b", re.I)),
    ("rr", re.compile(r"\bR-?R\b|\bRR intervals?\b|\bcycle length\b", re.I)),
    ("st", re.compile(r"\bST\b|\bJ[- ]point\b")),
    ("r_prime", re.compile(r"\bR'|\bR[- ]prime\b|\brSR'|\brsR'")),
    ("p_wave", re.compile(r"\bP[- ]?waves?\b|\bP (?:duration|amplitude)\b")),
    ("t_wave", re.compile(r"\bT[- ]?waves?\b|\bT (?:amplitude|inversion)\b|\binverted T\b")),
    ("q_wave", re.compile(r"\bQ[- ]?waves?\b|\bQ (?:duration|amplitude)\b")),
    ("r_wave", re.compile(r"\bR[- ]?waves?\b|\bR (?:amplitude|peak)\b|\btall R\b|\bR in\b")),
    ("s_wave", re.compile(r"\bS[- ]?waves?\b|\bS (?:amplitude)\b|\bdeep S\b|\bS in\b")),
    ("sokolow", re.compile(r"\bSokolow", re.I)),
    ("cornell", re.compile(r"\bCornell\b", re.I)),
    ("p_axis", re.compile(r"\bP[- ]axis\b|\bP[- ]wave axis\b", re.I)),
    ("t_axis", re.compile(r"\bT[- ]axis\b|\bT[- ]wave axis\b", re.I)),
    ("axis", re.compile(r"\baxis\b", re.I)),
    ("rate", re.compile(r"\b(?:heart |ventricular |atrial |sinus )?rate\b|\bHR\b|\bbradycardi|\btachycardi", re.I)),
    ("voltage", re.compile(r"\bvoltage|\bamplitude", re.I)),
]
# A number without a unit is still a claim right after one of these keywords ("QTc of 452", "axis -30").
_UNITLESS_KIND = {"qtc": "ms", "qt": "ms", "pr": "ms", "qrs": "ms", "rr": "ms", "rate": "bpm", "axis": "deg",
                  "p_axis": "deg", "t_axis": "deg"}
_UNITLESS_GAP = re.compile(r"^\s*(?:\s*(?:interval|duration|segment|complex|of|is|was|=|:|at|about|around|"
                           r"approximately|approx\.?|roughly|measures?|measuring|measured|near|close to|"
                           r"~|\(|\)|Bazett|Fridericia|Framingham|Hodges|,)\s*)*$", re.I)
_COMPARATOR = re.compile(
    r"(?:>|<|\u2265|\u2264|>=|<=|\babove|\bbelow|\bexceed(?:s|ing|ed)?|\bgreater than|\bless than|\bmore than|"
    r"\bover|\bunder|\bat least|\bat most|\bupper limit(?: of normal)?(?: of)?|\blimit of|\bcut-?off(?: of)?|"
    r"\bthreshold(?: of)?|\bnormal(?: range)?(?: is| of)?|\breference(?: range)?|\bup to|\bbeyond|\bwithin|"
    r"\bunder|\bthan|\bcriteri(?:on|a)(?: of)?|\bsurpass(?:es|ing)?)\s*(?:the\s+)?(?:threshold\s+of\s+)?"
    r"(?:\(|about\s+)?$", re.I)
# ';' ends a sentence for lead attribution: "ST depression in V5; QTc of 452" does not put the QTc in V5
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])|;")
_CLAUSE_BREAK = re.compile(r";|\bwhile\b|\bwhereas\b|,\s*but\b|,\s*(?:and|with)\s+(?=[a-z])|,\s+(?=[a-zA-Z])")


@dataclass
class NumericClaim:
    text: str
    start: int
    kind: str                       # ms | bpm | mv | deg
    values: tuple[float, ...]       # one value, or (lo, hi) of a range, in ms / bpm / mV / degrees
    keyword: str | None
    leads: tuple[str, ...]
    direction: str | None = None    # "elevation" | "depression" for ST claims
    grounded: bool = False
    reference: bool = False         # a quoted clinical cut-off, not a measurement claim
    matched: str = ""


def _to_float(s: str) -> float:
    return float(s.replace("\u2212", "-").replace(" ", ""))


def _unit_kind(unit: str) -> tuple[str, float]:
    """(kind, factor to the kind's base unit) of a unit as written."""
    u = unit.lower().replace(" ", "")
    if u in ("ms", "msec", "msecs") or u.startswith("millisecond"):
        return "ms", 1.0
    if u in ("s", "sec", "secs") or u.startswith("second"):
        return "ms", 1000.0
    if u == "bpm" or u.startswith("beat") or u.startswith("/min"):
        return "bpm", 1.0
    if u == "mv" or u.startswith("millivolt"):
        return "mv", 1.0
    if u == "mm" or u.startswith("millimet"):
        return "mv", float("nan")  # resolved with config.mm_per_mv
    return "deg", 1.0


def _spans(text: str, pattern: re.Pattern) -> list[tuple[int, int]]:
    """[start, end) spans of ``text`` between matches of ``pattern`` (sentences or clauses)."""
    out, last = [], 0
    for m in pattern.finditer(text):
        out.append((last, m.start()))
        last = m.end()
    out.append((last, len(text)))
    return out


def extract_claims(text: str, config: ValidationConfig = ValidationConfig()) -> list[NumericClaim]:
    """Numbers with units (and unit-less numbers right after QTc / QT / PR / QRS / rate / axis) in ``text``,
    each with the measurement keyword and the leads it is attributed to (same clause, else same sentence)."""
    leads_all = find_leads(text)
    # commas inside a lead list ("V4, V5 and V6") are not clause breaks
    groups_spans: list[tuple[int, int]] = []
    for lm in leads_all:
        if groups_spans and re.fullmatch(r"[\s,andor&/\-\u2013]*", text[groups_spans[-1][1]:lm.start]):
            groups_spans[-1] = (groups_spans[-1][0], lm.end)
        else:
            groups_spans.append((lm.start, lm.end))
    claims: list[NumericClaim] = []
    for s0, s1 in _spans(text, _SENTENCE_END):
        sentence = text[s0:s1]
        breaks = [m for m in _CLAUSE_BREAK.finditer(sentence)
                  if not any(a <= s0 + m.start() < b for a, b in groups_spans)]
        clauses, last = [], 0
        for m in breaks:
            clauses.append((s0 + last, s0 + m.start()))
            last = m.end()
        clauses.append((s0 + last, s1))
        sent_leads = [lm for lm in leads_all if s0 <= lm.start < s1 and lm.leads]
        for m in _CLAIM.finditer(sentence):
            unit = m.group("unit") or m.group("unit0")
            num_start = s0 + m.start("num")
            c0, c1 = next(((a, b) for a, b in clauses if a <= num_start < b), (s0, s1))
            before = text[c0:num_start]
            keyword = None
            best = -1
            for name, pat in _KEYWORDS:
                for km in pat.finditer(before):
                    if km.start() > best or (km.start() == best and keyword is None):
                        best, keyword = km.start(), name
            kw_end = None
            if keyword is not None:
                kw_end = max(km.end() for km in dict(_KEYWORDS)[keyword].finditer(before))
            if unit is None:
                # unit-less: only right after a keyword that fixes the unit ("QTc of 452")
                if keyword not in _UNITLESS_KIND or kw_end is None or not _UNITLESS_GAP.match(before[kw_end:]):
                    continue
                if m.group("hi") is None and re.match(r"\s*(?:%|percent|years?|y/o|-year|leads?|beats?|:|/)",
                                                      text[s0 + m.end():], re.I):
                    continue
                kind, factor = _UNITLESS_KIND[keyword], 1.0
            else:
                kind, factor = _unit_kind(unit)
                if math.isnan(factor):
                    factor = 1.0 / config.mm_per_mv
            if keyword is None:
                after = text[s0 + m.end():min(c1, s0 + m.end() + 30)]  # "72 ms for the PR", not far beyond
                first = None
                for name, pat in _KEYWORDS:
                    km = pat.search(after)
                    if km and (first is None or km.start() < first[0]):
                        first = (km.start(), name)
                keyword = first[1] if first else None
            vals = [_to_float(m.group("num"))]
            if m.group("lo") is not None:
                vals = [_to_float(m.group("lo")), vals[0]]
            elif m.group("hi") is not None:
                hi = _to_float(m.group("hi"))
                # "80-100 ms" is a range; "-30 to -60" too; a trailing negative "5-−3" is not a thing
                vals = [vals[0], abs(hi) if vals[0] >= 0 and hi < 0 else hi]
            if unit is None and kind == "ms" and all(abs(v) < 3.0 for v in vals):
                factor = 1000.0  # "a PR interval of 0.16": seconds written without the unit
            vals = [v * factor for v in vals]
            clause_leads = [lm for lm in leads_all if c0 <= lm.start < c1 and lm.leads]
            chosen = clause_leads or sent_leads
            leads = tuple(dict.fromkeys(lead for lm in chosen for lead in lm.leads))
            clause_text = text[c0:c1].lower()
            direction = None
            if "elevat" in clause_text:
                direction = "elevation"
            elif "depress" in clause_text:
                direction = "depression"
            claim = NumericClaim(text=m.group(0).strip(), start=num_start, kind=kind, values=tuple(vals),
                                 keyword=keyword, leads=leads, direction=direction)
            claim.reference = bool(_COMPARATOR.search(text[max(c0, num_start - 40):num_start]))
            claims.append(claim)
    return claims


# Which measurement columns a keyword can refer to, per kind. Record-level columns come from RECORDS_SCHEMA,
# beat-level ones from BEATS_SCHEMA (per lead: median and every single beat).
_REC_COLS = {
    "ms": {"pr": ["pr_ms"], "qrs": ["qrs_ms"], "qt": ["qt_ms"], "qt_dispersion": ["qt_dispersion_ms"],
           "qtc": ["qtc_bazett_ms", "qtc_fridericia_ms", "qtc_framingham_ms", "qtc_hodges_ms"],
           "rr": ["rr_mean_ms", "rr_sd_ms"]},
    "bpm": {"rate": ["hr_bpm"]},
    "mv": {"sokolow": ["sokolow_lyon_mv"], "cornell": ["cornell_mv"], "voltage": ["sokolow_lyon_mv", "cornell_mv"],
           "qrs_amp": ["sokolow_lyon_mv", "cornell_mv"]},
    "deg": {"axis": ["qrs_axis_deg", "p_axis_deg", "t_axis_deg"], "p_axis": ["p_axis_deg"],
            "t_axis": ["t_axis_deg"]},
}
_BEAT_COLS = {
    "ms": {"pr": ["pr_ms"], "qrs": ["qrs_ms", "q_ms", "r_ms", "s_ms"], "qt": ["qt_ms"],
           "qtc": ["qtc_bazett_ms", "qtc_fridericia_ms"], "rr": ["rr_ms"], "p_wave": ["p_ms"], "t_wave": ["t_ms"],
           "q_wave": ["q_ms"], "r_wave": ["r_ms"], "s_wave": ["s_ms"], "r_prime": ["r_ms"]},
    "mv": {"st": ["st_j_mv", "st_j60_mv"], "p_wave": ["p_amp_mv"], "t_wave": ["t_amp_mv"], "q_wave": ["q_amp_mv"],
           "r_wave": ["r_amp_mv", "r_prime_amp_mv"], "r_prime": ["r_prime_amp_mv"], "s_wave": ["s_amp_mv"],
           "qrs_amp": ["_qrs_pp_mv", "r_amp_mv", "s_amp_mv"], "voltage": ["_qrs_pp_mv", "r_amp_mv", "s_amp_mv"],
           "qrs": ["_qrs_pp_mv", "r_amp_mv", "s_amp_mv"]},
}
_ALL_BEAT_MS = ["pr_ms", "qrs_ms", "qt_ms", "qtc_bazett_ms", "qtc_fridericia_ms", "rr_ms", "p_ms", "t_ms", "q_ms",
                "r_ms", "s_ms"]
_ALL_BEAT_MV = ["p_amp_mv", "q_amp_mv", "r_amp_mv", "r_prime_amp_mv", "s_amp_mv", "t_amp_mv", "st_j_mv",
                "st_j60_mv", "_qrs_pp_mv"]


@dataclass
class _Measurements:
    """Candidate values of one record, indexed for matching: record-level columns and per-lead beat values."""

    record: dict
    per_lead: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # lead -> col -> values (+median)
    rates_bpm: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, ctx: GroundingContext) -> _Measurements:
        rec = dict(ctx.record)
        rec["_duration_ms"] = float(ctx.extra.get("duration_ms", 10000.0))
        if rec.get("rr_mean_ms"):
            rec["_hr_from_rr"] = 60000.0 / rec["rr_mean_ms"]
        meas = cls(rec)
        beats = ctx.beats
        if beats is None or beats.height == 0:
            return meas
        cols = [c for c in set(_ALL_BEAT_MS + _ALL_BEAT_MV) if c in beats.columns]
        b = beats
        if "r_amp_mv" in b.columns and "s_amp_mv" in b.columns:
            lowest = pl.min_horizontal(pl.col("s_amp_mv").fill_null(0.0), pl.col("q_amp_mv").fill_null(0.0)) \
                if "q_amp_mv" in b.columns else pl.col("s_amp_mv").fill_null(0.0)
            b = b.with_columns((pl.col("r_amp_mv").fill_null(0.0) - lowest).alias("_qrs_pp_mv"))
            cols.append("_qrs_pp_mv")
        gated = ctx.gated_leads
        for lead, frame in b.group_by("lead"):
            lead = lead[0] if isinstance(lead, tuple) else lead
            if lead in gated:
                continue
            d: dict[str, list[float]] = {}
            for c in set(cols):
                vals = [float(v) for v in frame[c].to_list() if v is not None and math.isfinite(v)]
                if vals:
                    vals.append(float(sorted(vals)[len(vals) // 2]))
                    vals.append(float(sum(vals[:-1]) / (len(vals) - 1)))
                d[c] = vals
            meas.per_lead[lead] = d
        if "rr_ms" in b.columns:
            rr = [float(v) for v in b.filter(~pl.col("lead").is_in(list(gated)))["rr_ms"].to_list()
                  if v is not None and v > 0]
            meas.rates_bpm = [60000.0 / v for v in rr]
        return meas


def _close(claim: float, value: float, kind: str, config: ValidationConfig, absolute: bool) -> bool:
    if value is None or not math.isfinite(value):
        return False
    if kind == "deg":
        diff = abs((claim - value + 180.0) % 360.0 - 180.0)
        return diff <= config.axis_tol_deg
    if absolute:
        claim, value = abs(claim), abs(value)
    if kind == "ms":
        tol = max(config.interval_tol_ms, config.interval_tol_frac * abs(value))
    elif kind == "bpm":
        tol = config.rate_tol_bpm
    else:
        tol = max(config.amp_tol_mv, config.amp_tol_frac * abs(value))
    return abs(claim - value) <= tol + 1e-9


def _candidates(claim: NumericClaim, meas: _Measurements, measured: list[str]) -> list[tuple[str, float]]:
    """(label, value) pairs a claim may match, narrowed by its keyword and its leads."""
    kind, kw = claim.kind, claim.keyword
    out: list[tuple[str, float]] = []
    rec_map = _REC_COLS.get(kind, {})
    rec_cols = rec_map.get(kw) if kw in rec_map else (
        [] if kw in _BEAT_COLS.get(kind, {}) else sorted({c for cs in rec_map.values() for c in cs}))
    if kind == "ms" and kw is None:
        rec_cols = [*rec_cols, "_duration_ms"]  # "a 10 s recording"
    for c in rec_cols:
        v = meas.record.get(c)
        if v is not None:
            out.append((c, float(v)))
    if kind == "bpm":
        if meas.record.get("_hr_from_rr"):
            out.append(("hr from mean RR", meas.record["_hr_from_rr"]))
        out.extend(("instantaneous rate", r) for r in meas.rates_bpm)
        return out
    beat_map = _BEAT_COLS.get(kind, {})
    if kw in beat_map:
        beat_cols = beat_map[kw]
    elif kw in rec_map:
        beat_cols = []
    else:
        beat_cols = _ALL_BEAT_MS if kind == "ms" else _ALL_BEAT_MV if kind == "mv" else []
    # Amplitudes belong to a lead: with a lead named only that lead counts. Intervals named with a lead may
    # also be the global (12-lead) value, which the sentence often states next to a lead's morphology.
    leads = [lead for lead in claim.leads if lead in meas.per_lead] if claim.leads else list(meas.per_lead)
    if claim.leads and kind == "mv" and kw not in ("sokolow", "cornell", "voltage", "qrs_amp"):
        out = []
    for lead in leads:
        for c in beat_cols:
            for v in meas.per_lead[lead].get(c, []):
                out.append((f"{c} in {lead}", v))
    if kind == "ms" and claim.leads and not any(lbl.startswith(rc) for rc in rec_cols for lbl, _ in out):
        for c in sorted({c for cs in rec_map.values() for c in cs}) if kw not in rec_map else rec_map[kw]:
            v = meas.record.get(c)
            if v is not None:
                out.append((c, float(v)))
    return out


def ground_claim(claim: NumericClaim, meas: _Measurements, measured: list[str], config: ValidationConfig) -> None:
    """Set ``claim.grounded`` / ``claim.reference`` / ``claim.matched`` by matching it to the measurements."""
    refs = {"ms": config.reference_ms, "bpm": config.reference_bpm, "mv": config.reference_mv,
            "deg": config.reference_deg}[claim.kind]
    is_ref = all(any(abs(x - r) < 1e-6 for r in refs) for x in claim.values)
    if claim.reference and is_ref:
        # a standard cut-off after a comparator ("the PR stays below 200 ms") is a reference even when some
        # lead's value happens to lie near it: it states no measurement
        return
    cands = _candidates(claim, meas, measured)
    if claim.kind == "mv" and claim.keyword == "st" and claim.direction:
        # "ST elevation of 0.2 mV" must match a positive ST level, "depression" a negative one
        sign = 1 if claim.direction == "elevation" else -1
        cands = [(lbl, v) for lbl, v in cands if not lbl.startswith("st_") or v * sign > 0]
    absolute = claim.kind == "mv"  # "S wave of 1.2 mV" is written positive; the table stores -1.2
    vals = claim.values
    if len(vals) == 1:
        hit = next(((lbl, v) for lbl, v in cands if _close(vals[0], v, claim.kind, config, absolute)), None)
        if hit:
            claim.grounded, claim.matched = True, f"{hit[0]} = {hit[1]:.3g}"
    else:
        lo, hi = sorted(vals) if claim.kind != "deg" else vals
        # a range is grounded when each end matches a value, or a measured value lies within it
        ends = [next((lbl for lbl, v in cands if _close(x, v, claim.kind, config, absolute)), None) for x in vals]
        inside = [lbl for lbl, v in cands if claim.kind != "deg"
                  and lo <= (abs(v) if absolute else v) <= hi]
        if all(ends) or inside:
            claim.grounded = True
            claim.matched = ", ".join(e for e in ends if e) if all(ends) else f"{inside[0]} within range"
    if not claim.grounded:
        # a quoted cut-off ("exceeding 120 ms") or a normal range ("normal 120-200 ms") is not a claim
        claim.reference = is_ref and (claim.reference or len(vals) == 2)
    else:
        claim.reference = False


# ----------------------------------------------------------------------------------------- contradictions
_NEG_BEFORE = re.compile(r"\b(?:no|not|without|absence of|absent|lack of|negative for|rules? out|ruling out|"
                         r"neither|nor|never|free of|exclude[sd]?|excluding)\b(?:\s+\w+){0,3}\s*$", re.I)


def _negated(text: str, start: int) -> bool:
    clause_start = max(text.rfind(ch, 0, start) for ch in ".;,:")
    window = text[max(clause_start + 1, start - 40):start]
    return bool(_NEG_BEFORE.search(window)) or bool(re.match(r"[\w\s-]{0,25}\b(?:is|are|was|were) (?:not|absent)\b",
                                                             text[start:start + 50], re.I))


@dataclass
class _Rule:
    name: str
    pattern: re.Pattern
    holds: object   # (record: dict) -> bool | None (None = cannot tell)


def _f(rec: dict, key: str) -> float | None:
    v = rec.get(key)
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


def _rules(config: ValidationConfig) -> list[_Rule]:
    t = config.rate_tol_bpm

    def hr(rec):
        return _f(rec, "hr_bpm")

    def cmp(key, fn):
        return lambda rec: None if _f(rec, key) is None else fn(_f(rec, key))

    def regular(rec):
        reg = rec.get("rhythm_regular")
        if reg is None or (rec.get("n_premature") or 0) > 0:
            return None  # premature beats make both words defensible ("regular rhythm with a PVC")
        return bool(reg)

    def irregular(rec):
        r = regular(rec)
        return None if r is None else not r

    def qtc_long(rec):
        vals = [_f(rec, k) for k in ("qtc_bazett_ms", "qtc_fridericia_ms")]
        vals = [v for v in vals if v is not None]
        return None if not vals else max(vals) >= 440

    return [
        _Rule("tachycardia", re.compile(r"\btachycardi(?:a|c)\b|\btachyarrhythmia\b", re.I),
              lambda rec: None if hr(rec) is None else hr(rec) >= 100 - t),
        _Rule("bradycardia", re.compile(r"\bbradycardi(?:a|c)\b", re.I),
              lambda rec: None if hr(rec) is None else hr(rec) <= 60 + t),
        _Rule("normal rate", re.compile(r"\bnormal (?:heart |ventricular )?rate\b|\brate (?:is |was )?(?:within )?"
                                        r"normal\b", re.I),
              lambda rec: None if hr(rec) is None else 60 - t <= hr(rec) <= 100 + t),
        _Rule("regular rhythm", re.compile(r"(?<!ir)\bregular(?:ly)? (?:rhythm|rate and rhythm|R-?R|"
                                           r"ventricular rhythm|sinus)|\brhythm (?:is |was )?regular\b", re.I),
              regular),
        _Rule("irregular rhythm", re.compile(r"\birregular(?:ly)?\b", re.I), irregular),
        _Rule("prolonged PR", re.compile(r"\b(?:prolonged|long|lengthened) PR\b|\bPR (?:interval )?"
                                         r"(?:is |was )?(?:prolonged|lengthened)\b|\bPR prolongation\b", re.I),
              cmp("pr_ms", lambda v: v >= 200)),
        _Rule("short PR", re.compile(r"\bshort(?:ened)? PR\b|\bPR (?:interval )?(?:is |was )?short(?:ened)?\b",
                                     re.I), cmp("pr_ms", lambda v: v < 120)),
        _Rule("wide QRS", re.compile(r"\b(?:wide|broad|widened|prolonged) QRS\b|\bQRS (?:complex(?:es)? |duration )?"
                                     r"(?:is |are |was )?(?:wide|broad|widened|prolonged)\b|\bQRS widening\b", re.I),
              cmp("qrs_ms", lambda v: v >= 120)),
        _Rule("narrow QRS", re.compile(r"\bnarrow QRS\b|\bQRS (?:complex(?:es)? )?(?:is |are |was )?narrow\b", re.I),
              cmp("qrs_ms", lambda v: v < 120)),
        _Rule("prolonged QT", re.compile(r"\b(?:prolonged|long) QTc?\b|\bQTc? (?:interval )?(?:is |was )?"
                                         r"prolonged\b|\bQTc? prolongation\b", re.I), qtc_long),
        _Rule("left axis deviation", re.compile(r"\bleft axis deviation\b|\bleftward axis\b|\baxis (?:is )?deviated "
                                                r"to the left\b", re.I),
              cmp("qrs_axis_deg", lambda v: v <= -30 + config.axis_tol_deg)),
        _Rule("right axis deviation", re.compile(r"\bright axis deviation\b|\brightward axis\b|\baxis (?:is )?"
                                                 r"deviated to the right\b", re.I),
              cmp("qrs_axis_deg", lambda v: v >= 90 - config.axis_tol_deg)),
        _Rule("normal axis", re.compile(r"\bnormal (?:QRS |electrical |frontal )*axis\b|\baxis (?:is |was )?"
                                        r"(?:within normal limits|normal)\b", re.I),
              cmp("qrs_axis_deg", lambda v: -30 - config.axis_tol_deg <= v <= 90 + config.axis_tol_deg)),
    ]


def check_contradictions(answer: str, record: dict, config: ValidationConfig) -> list[str]:
    """Details of statements that contradict the record's measurements (empty when none)."""
    problems = []
    # Tolerances favour the answer: a claim is false only beyond the tolerance, a denial only beyond it too
    strict = config.model_copy(update={"rate_tol_bpm": 0.0, "axis_tol_deg": 0.0})
    for rule, strict_rule in zip(_rules(config), _rules(strict)):
        for m in rule.pattern.finditer(answer):
            neg = _negated(answer, m.start())
            truth = (strict_rule if neg else rule).holds(record)
            if truth is None:
                continue
            if truth == neg:  # claimed but false, or denied but true
                word = "denies" if neg else "claims"
                problems.append(f"{word} {rule.name!r} ({m.group(0)!r}) but {_evidence(rule.name, record)}")
                break
    return problems


def _evidence(rule: str, rec: dict) -> str:
    def fmt(key, unit):
        v = _f(rec, key)
        return f"{key.split('_')[0].upper()} {v:.0f} {unit}" if v is not None else f"{key} unknown"

    if "rate" in rule or "cardia" in rule:
        return f"the heart rate is {_f(rec, 'hr_bpm'):.0f} bpm"
    if "rhythm" in rule:
        return f"the measured rhythm is {'regular' if rec.get('rhythm_regular') else 'irregular'} " \
               f"(RR SD {(_f(rec, 'rr_sd_ms') or float('nan')):.0f} ms)"
    if "PR" in rule:
        return f"the PR interval is {fmt('pr_ms', 'ms')}"
    if "QRS" in rule:
        return f"the QRS duration is {fmt('qrs_ms', 'ms')}"
    if "QT" in rule:
        return f"QTc is {(_f(rec, 'qtc_bazett_ms') or float('nan')):.0f} ms (Bazett)"
    return f"the QRS axis is {(_f(rec, 'qrs_axis_deg') or float('nan')):.0f} degrees"


# ---------------------------------------------------------------------------------------------- diagnoses
# Findings that describe a measurement rather than diagnose (axis, rate, interval, voltage descriptors): an
# answer may state one the report does not, when the record's measurements meet the knowledge criteria.
DESCRIPTIVE_IDS: frozenset[str] = frozenset({"NAXIS", "LAD", "RAD", "SR", "SBRAD", "STACH", "LPR", "SPR",
                                             "LVOLT", "HVOLT"})


def _criterion_holds(crit, rec: dict) -> bool | None:
    """One knowledge criterion judged on the record row; None when it is not a record-level criterion."""
    if getattr(crit, "scope", None) != "record" or rec.get(crit.feature) is None:
        return None
    return crit.test(rec[crit.feature])


def measurement_supports(entry_id: str, ctx: GroundingContext, kb) -> bool:
    """Whether a descriptive finding (``DESCRIPTIVE_IDS``) is supported by the record's measurements alone, so
    an answer may state it although the report does not (e.g. 'normal axis' with a measured axis of +40).
    Every record-level criterion of the knowledge entry must hold; at least one must be evaluable."""
    if entry_id not in DESCRIPTIVE_IDS:
        return False
    entry = kb.entries.get(entry_id)
    crits = getattr(entry, "criteria", None) or []
    results = [_criterion_holds(c, ctx.record) for c in crits]
    results = [r for r in results if r is not None]
    if entry_id == "LVOLT":  # either limb or precordial low voltage is enough
        return any(results)
    return bool(results) and all(results)


_MEASUREMENT_WORDS = re.compile(r"\b(?:interval|duration|QTc?|PR|QRS|axis|rate|amplitudes?|voltages?|waves?|"
                                r"segments?|complex(?:es)?|progression|morphology)\b", re.I)


def _measurement_normal(text: str, mention) -> bool:
    """'the QTc is within normal limits' describes one measurement; it is not the diagnosis 'normal ECG'."""
    if mention.entry_id != "NORM" or re.search(r"\b(?:ecg|ekg|electrocardiogram|tracing)\b", mention.text, re.I):
        return False
    clause_start = max(text.rfind(ch, 0, mention.start) for ch in ".;,")
    return bool(_MEASUREMENT_WORDS.search(text[clause_start + 1:mention.start]))


@dataclass
class DiagnosisCheck:
    missing: list[str]
    extra: list[str]
    recall: float
    precision: float


def check_diagnoses(answer: str, ctx: GroundingContext, kb) -> DiagnosisCheck:
    """Report statements the answer does not mention (``missing``) and diagnoses it makes that the report does
    not support (``extra``), through the knowledge base's synonyms and ``implies`` links."""
    mentions = kb.find_mentions(answer)
    positive = [m for m in mentions if not m.negated and not _measurement_normal(answer, m)]
    stated = kb.closure([m.entry_id for m in positive])
    statements = list(dict.fromkeys(ctx.statement_ids))
    missing = [s for s in statements if s not in stated]
    # the report's statements, what they imply and their related findings ("Q waves" for an MI)
    allowed = kb.permitted(statements)
    extra: list[str] = []
    n_ok = 0
    for m in positive:
        if m.entry_id in allowed or measurement_supports(m.entry_id, ctx, kb):
            n_ok += 1
        elif m.entry_id not in extra:
            extra.append(m.entry_id)
    recall = 1.0 if not statements else (len(statements) - len(missing)) / len(statements)
    precision = 1.0 if not positive else n_ok / len(positive)
    return DiagnosisCheck(missing, extra, recall, precision)


# -------------------------------------------------------------------------------------------- the gate
_FEEDBACK_HINTS = {
    "empty_answer": "Write the interpretation.",
    "form_multiple_paragraphs": "Write exactly one paragraph, no line breaks.",
    "form_too_long": "Shorten the answer.",
    "form_list": "Do not use lists, numbered points or headings; write continuous prose.",
    "form_markdown": "Do not use markdown or tags; plain text only.",
    "leak_hidden_input": "Describe what the ECG shows as if read from the image; never mention a report, "
                         "machine measurements or data that was provided.",
    "image_missing_talk": "Interpret the ECG image directly; do not discuss whether the image is available.",
    "ungrounded_number": "Quote only values that match the measurements of this ECG (in the lead you name), or "
                         "leave the number out.",
    "lead_not_measured": "Name only the 12 standard leads that were measured.",
    "contradicts_measurement": "Make rhythm, rate, axis and interval statements agree with the measurements.",
    "missing_diagnosis": "Cover every diagnosis of this ECG.",
    "extra_diagnosis": "Do not add diagnoses beyond this ECG's findings.",
}


def _load_kb():
    from pipeline.knowledge import load_knowledge

    return load_knowledge()


_KB_CACHE: list = []


def default_knowledge():
    """The packaged knowledge base, loaded once per process."""
    if not _KB_CACHE:
        _KB_CACHE.append(_load_kb())
    return _KB_CACHE[0]


def validate_answer(answer: str, ctx: GroundingContext, config: ValidationConfig = ValidationConfig(),
                    kb=None) -> ValidationResult:
    """Validate one answer against its record's ``GroundingContext``.

    Numbers are compared in ms (intervals), bpm (rate), mV (amplitudes; mm converted at ``config.mm_per_mv``)
    and degrees (axes). ``kb`` is a ``pipeline.knowledge.KnowledgeBase``; ``None`` loads the packaged one.
    Returns a ``ValidationResult`` whose ``feedback`` is the retry instruction for an LLM.
    """
    answer = answer or ""
    problems: list[tuple[str, str]] = check_form(answer, config)
    metrics = ValidationMetrics(words=count_words(answer))
    if problems and problems[0][0] == "empty_answer":
        return _result(problems, metrics)

    # leads
    measured = ctx.measured_leads
    gated = ctx.gated_leads
    mentions = find_leads(answer)
    named: set[str] = set()
    for lm in mentions:
        if lm.invalid:
            problems.append(("lead_not_measured", f"{lm.text!r} is not one of the 12 standard leads"))
            continue
        named.update(lm.leads)
        if lm.explicit:
            for lead in lm.leads:
                if lead not in measured:
                    why = "was gated by the quality gate" if lead in gated else "was not measured"
                    problems.append(("lead_not_measured", f"lead {lead} ({lm.text!r}) {why}"))
    metrics.leads_named = len(named)
    metrics.leads_covered = len(named & set(measured))

    # numbers
    meas = _Measurements.of(ctx)
    claims = extract_claims(answer, config)
    for claim in claims:
        ground_claim(claim, meas, measured, config)
    checked = [c for c in claims if not c.reference]
    metrics.numeric_claims = len(checked)
    metrics.numeric_grounded = sum(c.grounded for c in checked)
    metrics.grounding_precision = 1.0 if not checked else metrics.numeric_grounded / len(checked)
    for c in checked:
        if not c.grounded:
            where = f" in {', '.join(c.leads)}" if c.leads else ""
            about = f" ({c.keyword})" if c.keyword else ""
            problems.append(("ungrounded_number", f"{c.text!r}{about}{where} matches no measurement"
                             f"{_nearest_hint(c, meas, measured)}"))

    # consistency with the measurements
    for detail in check_contradictions(answer, ctx.record, config):
        problems.append(("contradicts_measurement", detail))

    # diagnoses
    if config.check_diagnoses:
        if kb is None:
            kb = default_knowledge()
        dx = check_diagnoses(answer, ctx, kb)
        metrics.diagnosis_recall, metrics.diagnosis_precision = dx.recall, dx.precision
        for s in dx.missing:
            problems.append(("missing_diagnosis", f"the answer does not state {_entry_name(kb, s)!r}"))
        for s in dx.extra:
            problems.append(("extra_diagnosis", f"{_entry_name(kb, s)!r} is not among this ECG's findings"))
    return _result(problems, metrics)


def _entry_name(kb, entry_id: str) -> str:
    entry = kb.entries.get(entry_id)
    return getattr(entry, "name", None) or entry_id


def _nearest_hint(claim: NumericClaim, meas: _Measurements, measured: list[str]) -> str:
    cands = _candidates(claim, meas, measured)
    if not cands:
        return ""
    x = claim.values[0]
    lbl, v = min(cands, key=lambda lv: abs(abs(lv[1]) - abs(x)) if claim.kind == "mv" else abs(lv[1] - x))
    return f" (closest: {lbl} = {v:.3g})"


def _result(problems: list[tuple[str, str]], metrics: ValidationMetrics) -> ValidationResult:
    reasons = list(dict.fromkeys(code for code, _ in problems))
    details = [f"{code}: {d}" for code, d in problems]
    feedback = ""
    if reasons:
        lines = [f"- {d}" for _, d in problems[:12]]
        lines += ["Fix these problems: " + " ".join(_FEEDBACK_HINTS[r] for r in reasons if r in _FEEDBACK_HINTS)]
        feedback = "\n".join(lines)
    return ValidationResult(accepted=not reasons, reasons=reasons, details=details, metrics=metrics,
                            feedback=feedback)


# --------------------------------------------------------------------------------------------------- CLI
def register(subparsers) -> None:
    """Add ``ecg-grounding validate``: validate answers.parquet and write the GEM instruction set."""
    p = subparsers.add_parser("validate", help="validate answers and write the GEM instruction set")
    p.add_argument("--answers", required=True, help="answers.parquet written by `generate`")
    p.add_argument("--features", required=True, help="features folder (records.parquet, beats.parquet)")
    p.add_argument("--manifest", required=True, help="manifest.parquet written by `ingest`")
    p.add_argument("--images", default=None, help="images folder (<record_id>.png)")
    p.add_argument("--prompts", default=None, help="prompts.parquet (prompt hash, template version)")
    p.add_argument("--out", required=True, help="output folder (instructions/ lives here)")
    p.add_argument("--test-fraction", type=float, default=0.1, help="share of patients in the test split")
    p.add_argument("--shard-size", type=int, default=5000, help="items per JSON shard")
    p.add_argument("--seed", type=int, default=0, help="seed of the question phrasing draw")
    p.add_argument("--max-words", type=int, default=300)
    p.add_argument("--chunk-size", type=int, default=500, help="records validated per chunk")
    p.add_argument("--conflicts", choices=("keep", "drop"), default="keep",
                   help="records whose measurements contradict a report statement: keep them, flagged in the "
                        "provenance (default), or drop them from the set")
    p.set_defaults(func=_run_cli)


def _run_cli(args) -> int:
    from pipeline.instructions import build_instruction_set, format_summary

    summary = build_instruction_set(
        answers=args.answers, features=args.features, manifest=args.manifest, images=args.images,
        prompts=args.prompts, out=args.out, test_fraction=args.test_fraction, shard_size=args.shard_size,
        seed=args.seed, config=ValidationConfig(max_words=args.max_words), chunk_size=args.chunk_size,
        conflicts=args.conflicts)
    print(format_summary(summary))
    return 0
