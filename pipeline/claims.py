"""Typed numeric claims: every number of an answer with the quantity its words name and the leads it is about.

A number is a claim when a unit follows it (ms, s, bpm, mV, mm, degrees; "0.93, 0.78 and 1.24 mV" share one),
when it directly follows a quantity that fixes its unit ("QTc of 452", "axis -30"), when it counts beats
("2 PVCs", "two premature beats"), when it places a beat in time ("a premature beat at 2.22 s") or when it is
an ordinal of a beat ("the 4th beat is premature").

The quantity is read from the words around the number, the way a reader binds them: a quantity written
right after the number ("1 mm ST depression"), else the nearest one before it in the same sentence that fits
the unit ("QRS duration ... 146 ms"; "R wave ... 1.2 mV"), else one after it. The unit then picks duration or
amplitude of a wave (R wave + ms = R duration, + mV = R amplitude). QTc carries its formula: a formula named
next to it (QTcF, "Fridericia", "(Hodges)"), Bazett when none is named.

Leads: a lead group written right after the number ("0.93 mV in lead I") belongs to it; else the last lead
group between the previous number and this one ("in V1 the R wave is 0.8 mV"); else the lead group the
previous number of the sentence had (a list of values about one lead). A list of k values followed by k leads
pairs them in order ("1.1 and 1.5 mV in V5 and V6").
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from pipeline.answer_text import (LeadGroup, NumberToken, find_leads, find_numbers, lead_groups,
                                  sentences, unit_kind)
from pipeline.casefold import Folded

# --------------------------------------------------------------------------------------- quantity lexicon
_I = re.I
# (name, pattern, flags, dimensions it can take). Order matters only for equal spans: more specific first.
_MEASURE = r"(?:[- ](?:heights?|amplitudes?|depths?|durations?|deflections?|voltages?|widths?|polarity|levels?))?\b"
_QUANTITIES: list[tuple[str, str, int, tuple[str, ...]]] = [
    ("qtc", r"\bQTc\s?[BFH]?(?:Fra|Fram|Hod|Baz|Fri)?\b|\bQT-?c\b|\bQTC\b|\b(?i:(?:heart[- ]rate[- ]|"
            r"rate[- ])?corrected) "
            r"QT\b(?:[- ]interval)?|\bQT[- ](?i:corrected)\b|"
            r"\bQT (?:interval )?(?i:corrected for (?:the )?(?:heart )?rate)\b"
            r"|\b(?i:Bazett|Fridericia|Framingham|Hodges|Sagie)(?:['’]s)?(?:[- ](?i:formula|correction|corrected|"
            r"method|QTc?)"
            r"(?:[- ]QTc?)?)?\b"
            # "the QT interval is 378 ms, corrected to 405 ms": the corrected value is the QTc
            r"|\b(?i:corrected|corrects|correcting|correction)(?=\s+(?:(?i:for\s+(?:the\s+)?(?:heart\s+)?rate\s+)?"
            r"(?i:to|at|of|gives|yields|is))\b)", 0, ("ms",)),
    ("qt_dispersion", r"\bQT[- ]dispersion\b|\bdispersion of (?:the )?QT\b", 0, ("ms",)),
    ("qt", r"\bQ-?T\b(?![- ]?c\b)(?:[- ]interval)?|\bQT\b", 0, ("ms",)),
    ("pr_segment", r"\bP-?R[- ]segment\b|\bPQ[- ]segment\b", 0, ("ms",)),
    ("pr", r"\bP-?R\b(?![\'’′])(?:[- ]interval)?|\bPQ\b(?:[- ](?:interval|time))?|\batrioventricular conduction time\b"
           r"|\bAV conduction time\b", 0, ("ms",)),
    ("rr_sd", r"\b(?:standard deviation|SD|variability|variation|spread)\s+(?:of\s+)?(?:the\s+)?(?:R-?R|RR)\b"
              r"(?:[- ]intervals?)?|\bR-?R[- ](?:intervals?[- ])?(?:standard deviation|SD|variability)\b", 0, ("ms",)),
    ("rr", r"\bR-?R\b(?![\'’′])(?:[- ]intervals?)?|\bR-to-R\b|\bcycle length\b|\binter-?beat intervals?\b", 0, ("ms",)),
    ("r_peak_time", r"\bR[- ]peak time\b|\bintrinsicoid deflection\b|\bventricular activation time\b|\bVAT\b", _I,
     ("ms",)),
    ("st_j60", r"\bJ\s?\+\s?60\b|\bJ60\b|\bST60\b|\bmid-?ST\b|\b60 ms after the J[- ]point\b|\bmid-?(?:point of the )?"
               r"ST[- ]segment\b|\bST[- ]segment (?:plateau|midpoint)\b", 0, ("mv",)),
    ("st_j", r"\bJ[- ]point\b|\bJ[- ]junction\b|\bat J\b|\bST-?J\b", 0, ("mv",)),
    ("st", r"\bS-?T\b(?:[- ]segments?)?(?:[- ](?:levels?|deviations?|elevations?|depressions?|shifts?))?", 0, ("mv",)),
    ("r_prime", r"\bR\s?['’′]|\bR[- ]prime\b|\bterminal R\b(?:[- ]waves?)?|\bsecondary R\b(?:[- ]waves?)?|\br['’′]",
     0, ("mv",)),
    ("qrs", r"\bQRS\b(?:[- ]complex(?:es)?)?(?:[- ](?:durations?|width|interval|amplitudes?|voltages?))?"
            r"|\bventricular depolari[sz]ation\b", _I, ("ms", "mv")),
    ("p_wave", r"\batrial depolari[sz]ation\b", _I, ("ms",)),
    ("p_wave", r"\bP[- ]?waves?" + _MEASURE + r"|\bP (?:duration|amplitude|height|deflection|depth)\b", 0, ("ms", "mv")),
    ("t_wave", r"\bT[- ]?waves?" + _MEASURE + r"|\bT (?:amplitude|height|deflection|depth|inversion)\b|\binverted T\b",
     0, ("ms", "mv")),
    ("q_wave", r"\bQ[- ]?waves?" + _MEASURE + r"|\bQ (?:duration|amplitude|depth|width)\b", 0, ("ms", "mv")),
    ("r_wave", r"\bR[- ]?waves?" + _MEASURE + r"|\bR (?:amplitude|height|peak|duration)\b|\btall R\b"
               r"|\bR(?= in (?:lead|[aAV]))", 0, ("ms", "mv")),
    ("s_wave", r"\bS[- ]?waves?" + _MEASURE + r"|\bS (?:amplitude|depth|duration)\b|\bdeep S\b|\bS(?= in (?:lead|"
                                              r"[aAV]))",
     0, ("ms", "mv")),
    ("r_wave", r"\bR(?=\(?(?:V[1-6]|aV[RLF])\b)", 0, ("ms", "mv")),
    ("s_wave", r"\bS(?=\(?(?:V[1-6]|aV[RLF])\b)", 0, ("ms", "mv")),
    ("q_wave", r"\bQ(?=\(?(?:V[1-6]|aV[RLF])\b)", 0, ("ms", "mv")),
    ("t_wave", r"\bT(?=\(?(?:V[1-6]|aV[RLF])\b)", 0, ("ms", "mv")),
    ("p_wave", r"\bP(?=\(?(?:V[1-6]|aV[RLF])\b)", 0, ("ms", "mv")),
    ("sokolow", r"\bSokolow(?:[- ]Lyon)?\b(?:[- ](?:index|voltage|sum|criterion|criteria))?|\bS\s?\(?V1\)?\s?\+\s?R\s?"
                r"\(?V[56]\)?", _I, ("mv",)),
    ("cornell", r"\bCornell\b(?:[- ](?:index|voltage|product|sum|criterion|criteria))?|"
                r"\bR\s?\(?aVL\)?\s?\+\s?S\s?\(?V3\)?",
     _I, ("mv",)),
    ("p_axis", r"\bP[- ](?:wave[- ])?axis\b", 0, ("deg",)),
    ("t_axis", r"\bT[- ](?:wave[- ])?axis\b", 0, ("deg",)),
    ("axis", r"\b(?:QRS |frontal (?:plane |QRS )?|electrical |cardiac |mean )?ax[ie]s\b", _I, ("deg",)),
    ("rate", r"\b(?:(?:heart|ventricular|atrial|sinus|pulse|mean|average|overall|underlying|resting)[- ])?rates?\b"
             r"|\bHR\b|\bpulse\b|\bventricular response\b|\bbeats? per minute\b", _I, ("bpm",)),
    ("voltage", r"\bvoltages?\b|\bamplitudes?\b|\bheights?\b|\bdepths?\b|\bdeflections?\b", _I, ("mv",)),
    ("duration", r"\brecordings?\b|\btracings?\b|\bstrips?\b|\bECG\b|\belectrocardiograms?\b|\brhythm strip\b", _I,
     ("ms",)),
]
_QUANT_RES = [(name, re.compile(pat, flags), dims) for name, pat, flags, dims in _QUANTITIES]
# the case-insensitive ones matched as their lower-cased twins on the lower-cased text (pipeline.casefold)
_QUANT_FOLDED = [(name, Folded(rx) if rx.flags & re.IGNORECASE else rx, dims) for name, rx, dims in _QUANT_RES]
# A quantity whose number may follow without a unit ("QTc of 452", "axis -30", "rate 72", "PR 0.16").
UNITLESS_DIM = {"qtc": "ms", "qt": "ms", "pr": "ms", "qrs": "ms", "rr": "ms", "rate": "bpm", "axis": "deg",
                "p_axis": "deg", "t_axis": "deg"}
_UNITLESS_GAP = re.compile(r"^\s*(?:\s*(?:interval|duration|segment|complex|of|is|was|=|:|at|about|around|"
                           r"approximately|approx\.?|roughly|measures?|measuring|measured|near|close to|some|"
                           r"~|\(|\)|Bazett|Fridericia|Framingham|Hodges|by|,)\s*)*$", re.I)
_FORMULAS = [("fridericia", re.compile(r"\bFridericia(?:'s)?\b|\bQTcF\b|\bQTc-F\b|\bcube[- ]root\b", re.I)),
             ("framingham", re.compile(r"\bFramingham\b|\bSagie\b|\bQTcFra?m?\b|\blinear (?:regression )?formula\b",
                                       re.I)),
             ("hodges", re.compile(r"\bHodges?(?:'s)?\b|\bQTcH\b", re.I)),
             ("bazett", re.compile(r"\bBazett(?:'s)?\b|\bQTcB\b|\bsquare[- ]root\b", re.I))]
_FORMULA_AFTER = re.compile(r"^\s*(?:\(|,|\bby|\busing|\bwith|\bper|\baccording to|\bthrough)?\s*(?:the\s+)?"
                            r"(?:Bazett|Fridericia|Framingham|Hodges|Sagie|QTc[BFH]?)\b"
                            # ... unless the name opens the next value: "378 ms (Bazett 405 ms)", "405, Fridericia 396"
                            r"(?!['’]?s?\s*(?:formula|correction|corrected|method|QTc?)?\s*(?:of|is|=|:|at)?\s*"
                            r"(?:about|approximately|~)?\s*[-+]?\d)", re.I)
# Words that say a number is about one beat class, not the typical beat.
_PREMATURE_CTX = re.compile(r"\bpremature\b|\bectopic\b|\bextrasystol|\bPVCs?\b|\bPACs?\b|\bVPBs?\b|\bAPCs?\b|"
                            r"\bVPCs?\b|\bearly beats?\b|\barriving early\b|\bcomes? early\b", re.I)
_PACED_CTX = re.compile(r"\bpaced\b|\bpacing\b|\bpacemaker\b", re.I)
# Polarity words near a signed measurement: ST elevation +, depression -; T and P inverted / negative -, upright +
_ST_NEG = re.compile(r"\bdepress(?:ion|ions|ed|es)?\b|\bbelow (?:the )?(?:baseline|isoelectric)|\bdown-?sloping\b", re.I)
_ST_POS = re.compile(r"\belevat(?:ion|ions|ed|es)\b|\babove (?:the )?(?:baseline|isoelectric)|\braised\b", re.I)
_WAVE_NEG = re.compile(r"\binver(?:ted|sion|sions)\b|\bnegative\b|\bdeep(?:ly)?\b|\bdepth\b|\bbelow (?:the )?baseline",
                       re.I)
_WAVE_POS = re.compile(r"\bupright\b|\bpositive\b|\btall\b|\bpeaked\b|\bheight\b|\babove (?:the )?baseline", re.I)
_NEGATED_WORD = re.compile(r"\b(?:no|not|without|absence of|absent|lack of|free of|neither|nor|"
                           r"never)\s+(?:\w+\s+){0,2}$",
                           re.I)
_HEDGE = re.compile(r"(?:\babout|\bapproximately|\bapprox\.?|\baround|\broughly|\bnearly|\balmost|~|\u2248|\bcirca|"
                    r"\bca\.|\bsome)\s*$", re.I)
_COMPARATOR = re.compile(
    r"(?P<cmp>>=|<=|>|<|\u2265|\u2264|\babove|\bbelow|\bexceed(?:s|ing|ed)?|\bin excess of|\bgreater than|\bless than|"
    r"\bmore than|\bover|\bunder|\bat least|\bat most|\bno more than|\bnot exceeding|\bup to|\bbeyond|\bshorter than|"
    r"\blonger than|\bhigher than|\blower than|\bsurpass(?:es|ing)?|\bwell (?:above|below|over|under)|\bbeneath|"
    r"\bunder(?:neath)?)\s*(?:the\s+)?(?:(?:normal\s+|upper\s+|lower\s+)?(?:limit|threshold|cut-?off|"
    r"value)\s+(?:of\s+)?)?"
    r"(?:\(|about\s+|approximately\s+)?$", re.I)
_REFERENCE_CTX = re.compile(
    r"\b(?:normal(?:ly)?|reference|upper limit|lower limit|limit of|limits? of normal|cut-?off|threshold|criteri(?:on|"
    r"a)|"
    r"defined as|definition|by definition|range|considered|cutoff|standard|typical(?:ly)?|usual(?:ly)?|should be|"
    r"expected|diagnostic (?:for|of)|indicates?|required|requires|needed|consistent with a|"
    r"generally|in adults)\b[^.;]{0,40}$", re.I)
_NORM_QUOTE = re.compile(
    r"\(\s*(?:normal|reference|ref\.?|ULN|upper limit|lower limit|range|cut-?off|threshold|N)\b[^()]*$|"
    r"\b(?:upper|lower) limits? (?:of normal|of the normal range)?\s*(?:is|of|being|=|:)?\s*(?:about\s+)?$|"
    r"(?<!within )(?<!within the )\b(?:cut-?offs?|thresholds?|criteri(?:on|a)|reference (?:values?|ranges?|limits?)|"
    r"normal (?:ranges?|values?|limits?)|limits? of normal)(?: values?)?\s*(?:is|are|of|being|=|:)?\s*(?:about\s+)?$|"
    r"\bdefined as\s*$", re.I)
_CMP_DIR = {">": ">", ">=": ">=", "<": "<", "<=": "<=", "\u2265": ">=", "\u2264": "<="}


def comparator_direction(word: str) -> str:
    w = word.lower().strip()
    if w in _CMP_DIR:
        return _CMP_DIR[w]
    if w in ("at least",):
        return ">="
    if w in ("at most", "no more than", "not exceeding", "up to"):
        return "<="
    if re.match(r"(?:above|exceed|in excess|greater|more|over|beyond|longer|higher|surpass|well above|well over)", w):
        return ">"
    return "<"


# ------------------------------------------------------------------------------------------------- claims
@dataclass
class NumericClaim:
    """One checkable number of an answer. ``values`` are in the dimension's base unit (ms, bpm, mV, degrees;
    counts and ordinals as they are), signed as written; a range has two values."""

    text: str
    start: int
    kind: str                       # dimension: ms | bpm | mv | deg | count | ordinal | time
    values: tuple[float, ...]
    keyword: str | None             # the quantity its words name (see _QUANTITIES), None when none does
    leads: tuple[str, ...]
    direction: str | None = None    # "elevation" | "depression" (ST), "positive" | "negative" (P, T)
    formula: str | None = None      # QTc formula: bazett (default) | fridericia | framingham | hodges
    decimals: int = 0               # digits after the point as written (a claim equals a value rounded so)
    end: int = 0
    explicit_sign: bool = False
    beat_class: str | None = None   # "premature" | "paced": the number is about those beats
    comparator: str | None = None   # "<", "<=", ">", ">=": a bound ("QRS below 120 ms"), not a value
    reference_ctx: bool = False     # quoted as a norm or cut-off ("normal < 120 ms")
    subject: str | None = None      # counts: premature | paced | all | normal; ordinals: premature | paced | normal
    negated: bool = False           # ordinals: "the 4th beat is not premature"
    grounded: bool = False
    reference: bool = False         # a quoted clinical cut-off, not a measurement claim
    matched: str = ""
    problem: str | None = None      # why it failed: ungrounded_number | crosses_cutoff | uncitable_value | bound
    evidence: str = ""              # the nearest measurement, for the feedback
    sentence: tuple[int, int] = (0, 0)
    lead_explicit: bool = True
    extra: dict = field(default_factory=dict)

    @property
    def quantity(self) -> str:
        """A stable name of what the claim is about, for per-kind statistics ('qrs_duration', 'st_level' ...)."""
        return quantity_name(self.keyword, self.kind, self.formula, self.subject)


def quantity_name(keyword: str | None, kind: str, formula: str | None = None, subject: str | None = None) -> str:
    if kind == "count":
        return f"count_{subject or 'beats'}"
    if kind in ("ordinal", "time"):
        return f"beat_{kind}"
    if keyword is None:
        return f"unspecified_{kind}"
    wave = {"p_wave": "p", "q_wave": "q", "r_wave": "r", "s_wave": "s", "t_wave": "t", "r_prime": "r_prime"}
    if keyword in wave:
        return f"{wave[keyword]}_{'duration' if kind == 'ms' else 'amplitude'}"
    if keyword == "qrs":
        return "qrs_duration" if kind == "ms" else "qrs_amplitude"
    if keyword == "qtc":
        return f"qtc_{formula or 'bazett'}"
    return {"pr": "pr_interval", "qt": "qt_interval", "rr": "rr_interval", "rate": "heart_rate", "axis": "qrs_axis",
            "st": "st_level", "st_j": "st_level_j", "st_j60": "st_level_j60", "sokolow": "sokolow_lyon",
            "duration": "recording_duration"}.get(keyword, keyword)


@dataclass
class _Quant:
    start: int
    end: int
    name: str
    dims: tuple[str, ...]


def find_quantities(text: str) -> list[_Quant]:
    """Quantity phrases of ``text``, longest first where they overlap, in text order."""
    hits: list[_Quant] = []
    for name, rx, dims in _QUANT_FOLDED:
        spans = rx.spans(text) if isinstance(rx, Folded) else ((m.start(), m.end()) for m in rx.finditer(text))
        for start, end in spans:
            hits.append(_Quant(start, end, name, dims))
    hits.sort(key=lambda q: (q.start, -(q.end - q.start)))
    out: list[_Quant] = []
    for q in hits:
        if out and q.start < out[-1].end:
            # "ST level at the J point": the J point (inside the ST phrase's reach) refines the ST
            if q.name in ("st_j", "st_j60") and out[-1].name == "st":
                out[-1] = _Quant(out[-1].start, max(out[-1].end, q.end), q.name, q.dims)
            continue
        out.append(q)
    # "ST level at the J point of -0.07" names the J point after the ST: the later refinement wins
    merged: list[_Quant] = []
    for q in out:
        if merged and q.name in ("st_j", "st_j60") and merged[-1].name == "st" and q.start - merged[-1].end <= 16:
            merged[-1] = _Quant(merged[-1].start, q.end, q.name, q.dims)
            continue
        merged.append(q)
    return merged


_AFTER_ADJACENT = re.compile(r"^\s*(?:of\s+)?(?:the\s+)?(?:for\s+(?:the\s+)?)?$", re.I)
_ATTACH_AFTER = re.compile(r"^\s*(?:\)|,)?\s*(?:(?:is|are|was|were|being)\s+(?:also\s+)?(?:seen|noted|present|observed|"
                           r"visible|evident|recorded|measured|found|apparent|identified|detected)\s+)?"
                           r"(?:(?:in|at|on|over|across|for|from|within|throughout|of|measured in|"
                           r"seen in|recorded in)\s+)?(?:the\s+)?(?:leads?\s+)?\(?\s*$", re.I)
_TIME_PREP = re.compile(r"(?:\bat|\baround|\bnear|\bby|\bt\s*=|\bat t\s*=|\bat about|\bat approximately|\bat roughly|"
                        r"\bat ~|\bat around)\s*~?\s*$", re.I)
_BEAT_WORDS = re.compile(r"\bbeats?\b|\bcomplex(?:es)?\b|\bPVCs?\b|\bPACs?\b|\bVPBs?\b|\bextrasystol|\bpremature\b|"
                         r"\bectopic\b|\bQRS\b|\bpause\b|\bspikes?\b|\bheartbeats?\b|\bcontractions?\b|"
                         r"\bR[- ]?waves?\b|"
                         r"\boccurs?\b|\bappears?\b|\bseen\b|\bmark\b", re.I)
def _formula_for(text: str, q: _Quant, num: NumberToken, s1: int) -> str:
    """The QTc formula named with this number: in the QTc keyword itself, right after the number, or between
    the keyword and the number; Bazett when none is named (the usual default)."""
    after = text[num.end:min(s1, num.end + 40)]
    m_after = re.match(r"^\s*(?:\(|,|by|using|with|according to|per)?\s*(?:the\s+)?(?P<w>[A-Za-z']+)", after)
    if m_after and _FORMULA_AFTER.match(after):
        # "394 ms by Bazett and 412 ms by Fridericia": the name right after a number is its own (not when it
        # opens the next value: "405 ms, Fridericia 396 ms")
        for name, rx in _FORMULAS:
            if rx.match(m_after.group("w")):
                return name
    kw = text[q.start:q.end]
    for name, rx in _FORMULAS:
        if rx.search(kw):
            return name
    between = text[q.end:num.start]
    for name, rx in _FORMULAS:
        if rx.search(between):
            return name
    before = text[max(0, q.start - 30):q.start]
    for name, rx in _FORMULAS:
        m = None
        for m in rx.finditer(before):
            pass
        if m is not None and re.match(r"^[\s'’-]*(?:s\s+)?(?:corrected\s+|-corrected\s+|(?:formula|correction|method)"
                                      r"\s*,?\s*(?:the\s+)?)?$", before[m.end():], re.I):
            return name
    return "bazett"


def _direction(text: str, a: int, num_start: int, after_end: int, keyword: str | None) -> str | None:
    """Polarity named for a signed measurement (ST, T, P) by the words that govern its number: between the
    start of its quantity phrase (a few words before it: "inverted T waves") and the number, or right after the
    number ("0.1 mV of ST depression"); the nearest wins, negated words ("no ST elevation") do not count."""
    if keyword in ("q_wave", "s_wave", "r_wave", "r_prime", "qrs"):
        return None  # written as magnitudes either way ("a deep S of 1.2 mV", "tall R of 2.1 mV")
    neg_rx, pos_rx = (_ST_NEG, _ST_POS) if keyword in ("st", "st_j", "st_j60") else (_WAVE_NEG, _WAVE_POS)
    best: tuple[int, str] | None = None
    for rx, word in ((neg_rx, "negative"), (pos_rx, "positive")):
        for m in rx.finditer(text, a, after_end):
            if _NEGATED_WORD.search(text[max(0, m.start() - 30):m.start()]):
                continue
            d = num_start - m.end() if m.end() <= num_start else (m.start() - num_start) + 1000
            if best is None or d < best[0]:
                best = (d, word)
    return best[1] if best else None


def extract_claims(text: str, config=None) -> list[NumericClaim]:
    """Every checkable number of ``text`` (see the module docstring), with quantity, leads and polarity."""
    from pipeline.beat_claims import count_claims, ordinal_claims

    mm_per_mv = getattr(config, "mm_per_mv", 10.0)
    mentions = find_leads(text)
    groups = lead_groups(text, mentions)
    quants = find_quantities(text)
    # a number inside a quantity's own name ("J+60", "60 ms after the J point") states nothing
    numbers = [n for n in find_numbers(text) if not any(q.start <= n.start and n.end <= q.end for q in quants)]
    for k, n in enumerate(numbers):  # range partners are indices into this list
        if n.range_with is not None:
            n.range_with = None
    _relink_ranges(text, numbers)
    sents = sentences(text) or [(0, len(text))]
    claims: list[NumericClaim] = []
    for s0, s1 in sents:
        s_nums = [(i, n) for i, n in enumerate(numbers) if s0 <= n.start < s1]
        s_groups = [g for g in groups if s0 <= g.start < s1]
        s_quants = [q for q in quants if s0 <= q.start < s1]
        sentence = text[s0:s1]
        prev_leads: tuple[str, ...] = ()
        prev_end = s0
        made: list[tuple[NumericClaim, int]] = []
        # a list of values sharing one unit ("1.1 and 1.5 mV in V5 and V6") attaches its leads as a whole
        run_last: dict[int, int] = {}
        for k in range(len(s_nums) - 1, -1, -1):
            i, num = s_nums[k]
            nxt = s_nums[k + 1] if k + 1 < len(s_nums) else None
            joined = nxt is not None and ((num.inherited_unit and num.range_with is None) or num.range_first)
            run_last[k] = run_last[k + 1] if joined else k
        for k, (i, num) in enumerate(s_nums):
            last = run_last[k]
            next_start = s_nums[last + 1][1].start if last + 1 < len(s_nums) else s1
            claim = _numeric_claim(text, num, numbers, i, s_quants, s0, s1, prev_end, next_start, mm_per_mv)
            prev_end_this = prev_end
            if claim is None:
                prev_end = num.end
                continue
            attach_from = max(claim.end, s_nums[last][1].end, claim.extra.get("attach_from", 0))
            leads, explicit, group = _attach_leads(text, attach_from, num.start, s_groups, prev_end_this, next_start,
                                                   prev_leads)
            prev_end = num.end
            claim.leads, claim.lead_explicit = leads, explicit
            claim.sentence = (s0, s1)
            if leads:
                prev_leads = leads
            made.append((claim, id(group) if group is not None else 0))
        _pair_value_lists(made, s_groups)
        _pair_quantity_lists(text, [c for c, _ in made], s_quants, numbers)
        claims.extend(c for c, _ in made)
        claims.extend(count_claims(text, s0, s1, numbers))
        claims.extend(ordinal_claims(text, s0, s1, sentence))
    claims.sort(key=lambda c: c.start)
    return claims


def _numeric_claim(text: str, num: NumberToken, numbers: list[NumberToken], i: int, quants: list[_Quant],
                   s0: int, s1: int, prev_end: int, next_start: int, mm_per_mv: float) -> NumericClaim | None:
    if num.range_with is not None and not num.range_first:
        return None  # the second end of a range: the first end carries the range
    unit = num.unit
    other = numbers[num.range_with] if num.range_with is not None else None
    if unit is not None:
        dim, factor = unit_kind(unit)
        if math.isnan(factor):
            mm = 10.0 if unit.lower().startswith(("cm", "centi")) else 1.0
            speed = _paper_time(text, num, quants, s0, s1)
            if speed:  # millimetres of paper along the time axis: "a QT of 10 mm at 25 mm/s" is 400 ms
                dim, factor = "ms", mm * 1000.0 / speed
            else:
                factor = mm / mm_per_mv
    else:
        dim, factor = None, 1.0
    # --- which quantity: adjacent after > nearest compatible before > compatible after (same sentence)
    before_q = [q for q in quants if q.end <= num.start]
    after_q = [q for q in quants if q.start >= (other.end if other else num.end)]
    quant: _Quant | None = None
    attach_from = 0
    end_all = other.end if other else num.end
    if dim is not None:
        adj = next((q for q in after_q if _AFTER_ADJACENT.match(text[end_all:q.start]) and dim in q.dims), None)
        if adj is not None:
            quant = adj
            attach_from = adj.end
        else:
            quant = next((q for q in reversed(before_q) if dim in q.dims and q.name != "duration"), None)
            if quant is None:
                quant = next((q for q in after_q if dim in q.dims and q.start < next_start and q.name != "duration"),
                             None)
            if quant is None and dim == "ms":
                dur = [q for q in quants if q.name == "duration" and abs(q.start - num.end) <= 30]
                quant = dur[0] if dur else None
    else:
        # unit-less: only right after a quantity that fixes the unit ("QTc of 452")
        q = before_q[-1] if before_q else None
        if q is None or q.name not in UNITLESS_DIM or not _UNITLESS_GAP.match(text[q.end:num.start]):
            return None
        if num.range_with is None and re.match(r"\s*(?:%|percent|years?|y/o|-year|leads?|beats?|:|/|x\b|times)",
                                               text[num.end:], re.I):
            return None
        quant, dim = q, UNITLESS_DIM[q.name]
        if dim == "ms" and abs(num.value) < 3.0 and (other is None or abs(other.value) < 3.0):
            factor = 1000.0  # "a PR interval of 0.16": seconds written without the unit
    if dim == "ms" and quant is not None and quant.name in ("qt", "qtc") and _FORMULA_AFTER.match(text[end_all:s1]):
        # "corrected to 405 ms by Bazett's formula", "412 ms (Fridericia)": a formula named right after the
        # number makes it a QTc, whatever interval was named before it
        quant = _Quant(num.start, num.start, "qtc", ("ms",))
    if quant is not None and quant.name == "voltage" and dim == "mv":
        # "P wave duration 110 ms and amplitude 0.2 mV": the amplitude is the P wave's
        wave = next((q for q in reversed([q for q in quants if q.end <= quant.start]) if q.name in (
            "p_wave", "q_wave", "r_wave", "s_wave", "t_wave", "r_prime", "qrs") and quant.start - q.end <= 60), None)
        if wave is not None and not any(wave.end <= n.start < quant.start for n in numbers if n.unit and
                                        unit_kind(n.unit)[0] == "mv"):
            quant = wave
    if quant is not None and quant.name in ("r_wave", "s_wave") and dim == "mv" and \
            re.search(r"\b(?:sum|plus|total|combined|added)\b|\+", text[max(s0, quant.start - 40):num.start], re.I):
        sent_text = text[s0:s1]
        if re.search(r"\bV1\b", sent_text) and re.search(r"\bV[56]\b", sent_text):
            quant = _Quant(quant.start, quant.end, "sokolow", ("mv",))
        elif re.search(r"\baVL\b", sent_text) and re.search(r"\bV3\b", sent_text):
            quant = _Quant(quant.start, quant.end, "cornell", ("mv",))
    if quant is None and dim == "bpm":
        quant = _Quant(num.start, num.start, "rate", ("bpm",))  # "52 bpm" alone is a heart rate
    values = [num.value * factor]
    if other is not None:
        values.append(other.value * factor)
    keyword = quant.name if quant else None
    # --- time points: "at 2.22 s", "a PVC at 4.1 s" (a beat's position, not an interval)
    pre = text[max(s0, num.start - 24):num.start]
    if dim == "ms" and _TIME_PREP.search(pre) and keyword not in ("qtc", "qt", "pr", "qrs", "rr", "rr_sd",
                                                                  "r_peak_time", "pr_segment", "qt_dispersion") \
            or (dim == "ms" and re.search(r"\b(?:into|after the start of|from the start of) the (?:recording|tracing|"
                                          r"strip|ECG)", text[num.end:num.end + 40], re.I)):
        if _BEAT_WORDS.search(text[s0:s1]) or keyword is None or keyword == "duration":
            # the time of a beat: the beat class is read from the words right around it ("a PVC at 2.2 s")
            claim = NumericClaim(text=text[num.start:end_all].strip(), start=num.start, end=end_all, kind="time",
                                 values=tuple(values), keyword="time", leads=(), decimals=num.decimals)
            claim.beat_class = _beat_context(text, s0, s1)
            claim.extra["unit_factor"] = factor
            return claim
    claim = NumericClaim(text=text[num.start:end_all].strip(), start=num.start, end=end_all, kind=dim,
                         values=tuple(values), keyword=keyword, leads=(), decimals=max(num.decimals, other.decimals
                                                                                       if other else 0),
                         explicit_sign=num.explicit_sign)
    claim.extra["unit_factor"] = factor
    claim.extra["attach_from"] = attach_from
    if _HEDGE.search(text[max(s0, num.start - 16):num.start]):
        claim.extra["hedged"] = True
    if keyword == "qtc" and quant is not None:
        claim.formula = _formula_for(text, quant, num, s1)
    if keyword in ("st", "st_j", "st_j60", "t_wave", "p_wave", "q_wave", "r_wave", "s_wave", "r_prime", "voltage",
                   "qrs") and dim == "mv":
        a = max(s0, (quant.start if quant is not None and quant.start < num.start else num.start - 18) - 12)
        claim.direction = _direction(text, a, num.start, min(s1, end_all + 24, next_start), keyword)
    if keyword not in ("rate", "sokolow", "cornell", "axis", "p_axis", "t_axis"):
        q0 = quant.start if quant is not None and quant.start < num.start else num.start
        claim.beat_class = _beat_context(text, max(s0, q0 - 50), min(s1, end_all + 30))
    # comparators and quoted norms: "below 120 ms", "(normal < 120 ms)", "exceeding the 0.1 mV threshold"
    lead_in = text[max(s0, num.start - 48):num.start]
    cm = _COMPARATOR.search(lead_in)
    if cm is not None:
        claim.comparator = comparator_direction(cm.group("cmp"))
        claim.reference_ctx = bool(_REFERENCE_CTX.search(text[max(s0, num.start - 60):num.start]))
    else:
        # a norm quoted as such: "(normal 120-200 ms)", "upper limit of normal 440 ms", "a cut-off of 0.1 mV";
        # not "a normal QRS duration of 120 ms", which states this ECG's value
        claim.reference_ctx = bool(_NORM_QUOTE.search(lead_in))
    return claim


_SPEED = re.compile(r"\b(25|50)\s*mm\s*(?:/|per)\s*s(?:ec(?:ond)?)?\b", re.I)
_TIME_ONLY = {"qt", "qtc", "pr", "rr", "rr_sd", "qt_dispersion", "pr_segment", "r_peak_time"}


def _paper_time(text: str, num: NumberToken, quants: list[_Quant], s0: int, s1: int) -> float | None:
    """The paper speed (mm/s) when a length in mm measures time: a paper speed named in the sentence, or the
    quantity the number is about is an interval ("PR interval of 4 mm"). None: the mm are an amplitude."""
    m = _SPEED.search(text, s0, s1)
    if m is not None and not (m.start() <= num.start < m.end()):
        return float(m.group(1))
    before = [q for q in quants if q.end <= num.start]
    if before and before[-1].name in _TIME_ONLY and num.start - before[-1].end <= 40:
        return 25.0
    return None


def _beat_context(text: str, s0: int, s1: int) -> str | None:
    sent = text[s0:s1]
    if _PREMATURE_CTX.search(sent):
        return "premature"
    if _PACED_CTX.search(sent):
        return "paced"
    return None


def _attach_leads(text: str, end: int, num_start: int, groups: list[LeadGroup], prev_end: int, next_start: int,
                  prev_leads: tuple[str, ...]) -> tuple[tuple[str, ...], bool, LeadGroup | None]:
    """(leads, all explicit, the group) of the number at ``num_start`` whose claim ends at ``end``; see the module
    docstring."""
    for g in groups:
        if g.start >= end and g.start < next_start and _ATTACH_AFTER.match(text[end:g.start]):
            return g.leads, g.explicit, g
        if g.start >= end:
            break
    before = [g for g in groups if prev_end <= g.start and g.end <= num_start]
    if before:
        g = before[-1]
        return g.leads, g.explicit, g
    # a group that started before the previous number and runs on (a lead list, then "of 0.1 and 0.2 mV")
    return prev_leads, True, None


def _pair_value_lists(made: list[tuple[NumericClaim, int]], groups: list[LeadGroup]) -> None:
    """k consecutive values of one quantity attached to one group of k leads: value i is about lead i."""
    by_group: dict[int, list[NumericClaim]] = {}
    for c, gid in made:
        if gid and len(c.values) == 1:
            by_group.setdefault(gid, []).append(c)
    for gid, cs in by_group.items():
        if len(cs) < 2:
            continue
        g = next((g for g in groups if id(g) == gid), None)
        if g is None or len(g.leads) != len(cs) or g.members != len(cs) or len({c.keyword for c in cs}) != 1:
            continue
        for c, lead in zip(cs, g.leads):
            c.leads = (lead,)


def _relink_ranges(text: str, numbers: list[NumberToken]) -> None:
    """Mark the ends of ranges ("0.1-0.2 mV", "between 60 and 80 bpm") among ``numbers`` (after filtering)."""
    for i in range(len(numbers) - 1):
        a, b = numbers[i], numbers[i + 1]
        if a.range_with is not None or b.range_with is not None:
            continue
        gap = text[a.end:b.start]
        before = text[max(0, a.start - 12):a.start].lower()
        joined = re.match(r"^\s*(?:-|\u2013|\u2014|to|through)\s*$", gap, re.I) and (a.unit is None or a.inherited_unit
                                                                                     or a.unit == b.unit)
        between = re.search(r"\b(?:between|from)\s*$", before) and re.match(r"^\s*(?:and|to|-|\u2013)\s*$", gap, re.I)
        if (joined and (a.inherited_unit or a.unit == b.unit)) or (between and a.unit and b.unit and
                                                                  a.unit.lower() == b.unit.lower()) or \
                (between and a.inherited_unit):
            a.range_with, a.range_first, b.range_with = i + 1, True, i


_QLIST_GAP = re.compile(r"^\s*(?:,\s*(?:and\s+)?|and|/|&|,)\s*$", re.I)
_NLIST_GAP = re.compile(r"^\s*(?:,\s*(?:and\s+)?|and|/|,)\s*$", re.I)


def _pair_quantity_lists(text: str, claims: list[NumericClaim], quants: list[_Quant], numbers) -> None:
    """"PR, QRS and QT intervals of 160, 90 and 400 ms", "PR/QRS/QT/QTc 160/90/400/430 ms": k values in a list
    take the k quantities listed before them, in order."""
    i = 0
    while i < len(claims):
        j = i
        while j + 1 < len(claims) and claims[j + 1].kind == claims[i].kind and len(claims[j].values) == 1 and \
                _NLIST_GAP.match(text[claims[j].end if claims[j].end else claims[j].start:claims[j + 1].start]):
            j += 1
        run = claims[i:j + 1]
        if len(run) >= 2:
            before = [q for q in quants if q.end <= run[0].start]
            chain: list[_Quant] = []
            for q in reversed(before):
                if not chain:
                    if len(text[q.end:run[0].start]) > 40:
                        break
                    chain.append(q)
                elif _QLIST_GAP.match(text[q.end:chain[-1].start]):
                    chain.append(q)
                else:
                    break
            chain.reverse()
            if len(chain) == len(run) and len({q.name for q in chain}) == len(chain) and \
                    all(run[0].kind in q.dims for q in chain):
                for c, q in zip(run, chain):
                    c.keyword = q.name
                    c.formula = "bazett" if q.name == "qtc" else None
        i = j + 1
