"""The words of an answer the validator reads before it judges anything: sentences, lead names and numbers.

Everything here is text only (no measurements): ``sentences`` splits an answer where a reader would,
``find_leads`` finds the leads it names (explicit names, ranges, lists and territories such as "the lateral
leads"), ``lead_groups`` joins a list of leads ("I, aVL, V5 and V6") into one group, and ``find_numbers``
finds every number with the unit written after it (a shared unit for lists and ranges: "0.1 and 0.2 mV").
``pipeline.claims`` builds typed claims from these pieces.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from pipeline.record import LEADS

# ----------------------------------------------------------------------------------------------- sentences
# A sentence ends at . ! ? before a capital, digit or bracket, at a semicolon, or at a line break. A period
# after a short abbreviation ("e.g.", "approx.", "vs.") does not end one; decimals never have a space.
_SENT_BREAK = re.compile(r"[.!?]+(?=\s+[\"'(\[]?[A-Za-z0-9\u00c0-\u00ff])|;|\n+|[.!?]+\s*$")
_ABBREV_BEFORE = re.compile(r"\b(?:e\.g|i\.e|approx|vs|cf|dr|fig|etc|ca|resp|incl)\.?$", re.I)


def sentences(text: str) -> list[tuple[int, int]]:
    """[start, end) spans of the sentences of ``text`` (semicolons and line breaks end one too)."""
    out: list[tuple[int, int]] = []
    last = 0
    for m in _SENT_BREAK.finditer(text):
        if m.group(0).startswith(".") and _ABBREV_BEFORE.search(text[max(0, m.start() - 8):m.start()]) \
                and m.end() < len(text):
            continue
        if m.start() > last:
            out.append((last, m.start()))
        last = m.end()
    if last < len(text) and text[last:].strip():
        out.append((last, len(text)))
    return out


# ----------------------------------------------------------------------------------------------- leads
# Territories: which leads a region word names. "lateral" means I, aVL, V5, V6 (the definition);
# the precordial regions follow the usual V1-V2 septal, V3-V4 anterior convention.
REGIONS: list[tuple[re.Pattern, tuple[str, ...]]] = [
    (re.compile(r"\bhigh[- ]lateral\b", re.I), ("I", "aVL")),
    (re.compile(r"\blow[- ]lateral\b", re.I), ("V5", "V6")),
    (re.compile(r"\binfero-?lateral\b", re.I), ("II", "III", "aVF", "I", "aVL", "V5", "V6")),
    (re.compile(r"\bantero-?septal\b", re.I), ("V1", "V2", "V3", "V4")),
    (re.compile(r"\bantero-?lateral\b", re.I), ("I", "aVL", "V3", "V4", "V5", "V6")),
    (re.compile(r"\binferior\b", re.I), ("II", "III", "aVF")),
    (re.compile(r"(?<![-\w])lateral\b", re.I), ("I", "aVL", "V5", "V6")),
    (re.compile(r"(?<![-\w])anterior\b", re.I), ("V3", "V4")),
    (re.compile(r"(?<![-\w])septal\b", re.I), ("V1", "V2")),
    (re.compile(r"\bright (?:precordial|chest)\b", re.I), ("V1", "V2", "V3")),
    (re.compile(r"\bleft (?:precordial|chest)\b", re.I), ("V4", "V5", "V6")),
    (re.compile(r"(?<!right )(?<!left )\b(?:precordial|chest) leads\b", re.I), ("V1", "V2", "V3", "V4", "V5", "V6")),
    (re.compile(r"\b(?:limb|frontal[- ]plane|extremity) leads\b", re.I), ("I", "II", "III", "aVR", "aVL", "aVF")),
    (re.compile(r"\b(?:all|every|each of the) (?:12 |twelve )?leads\b|\ball 12 leads\b", re.I), tuple(LEADS)),
]
# Leads as written: aVR/AVR/avr, V1..V6 (and impossible ones such as V7, V4R, caught as invalid), I/II/III.
_LEAD_TOKEN = re.compile(r"(?<![A-Za-z0-9'’])([aA][vV][RLFrlf]|[Vv]\d{1,2}R?|III|II|I)(?![A-Za-z0-9'’])")
_GLUED = re.compile(r"(?<![A-Za-z0-9])[RSQTP]\(?((?:V[1-6]|aV[RLF]))\)?(?![A-Za-z0-9])")
_SEP_SAME_GROUP = re.compile(r"^\s*(?:,\s*(?:and|or)\s+|,|and|or|&|/|\+)?\s*$", re.I)
_SEP_RANGE = re.compile(r"^\s*(?:-|\u2013|\u2014|to|through|thru)\s*$", re.I)
_LEAD_WORD_BEFORE = re.compile(r"\bleads?\s*(?:\(\s*)?$", re.I)
# A bare roman numeral is a lead after these words ("T inversion in II"); never after "type", "degree",
# "Mobitz", "grade", "class" ... (those are not in this list).
_ROMAN_PREP_BEFORE = re.compile(r"\b(?:in|on|over|across|throughout|at|except|besides|including|than)\s+$|\(\s*$", re.I)


@dataclass(frozen=True)
class LeadMention:
    start: int
    end: int
    leads: tuple[str, ...]   # canonical names; empty for an impossible lead
    text: str
    explicit: bool           # written as a lead name (not a region word)
    invalid: bool = False    # e.g. "V7", "V4R": not one of the 12 standard leads


def canonical_lead(token: str) -> str | None:
    """'avl' -> 'aVL', 'v5' -> 'V5', 'II' -> 'II'; None for anything that is not one of the 12 leads."""
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
    """See ``_find_leads``; cached per text (the validator's stages read the same answer several times)."""
    return list(_find_leads(text))


@lru_cache(maxsize=256)
def _find_leads(text: str) -> tuple[LeadMention, ...]:
    """Lead names in ``text``: explicit names ("lead II", "V1-V3", "leads V1 through V4", "I, aVL, V5") and
    region words ("inferior" -> II, III, aVF). Roman numerals count as leads only after "lead(s)", after a
    preposition ("in II"), or in a list with another lead name, so "Mobitz II" or "type I" are not leads."""
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
    # a wave glued to its lead: "RV5", "SV1", "R(aVL)", "TV2"
    for m in _GLUED.finditer(text):
        lead = canonical_lead(m.group(1))
        if lead is not None:
            out.append(LeadMention(m.start(1), m.end(1), (lead,), m.group(1), True))
    for grp in groups:
        has_named = any(tok.upper() not in ("I", "II", "III") for _, _, tok, _ in grp)
        before = text[max(0, grp[0][0] - 16):grp[0][0]]
        after_lead_word = bool(_LEAD_WORD_BEFORE.search(before))
        after_prep = bool(_ROMAN_PREP_BEFORE.search(before)) and all(
            tok in ("I", "II", "III") for _, _, tok, _ in grp) and not re.match(r"\s*(?:degree|type|°)", text[grp[-1][1]:], re.I)
        if not (has_named or after_lead_word or after_prep):
            continue
        prev_lead: str | None = None
        for start, end, tok, link in grp:
            lead = canonical_lead(tok)
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
    for pattern, leads in REGIONS:
        for m in pattern.finditer(text):
            if any(lm.start <= m.start() < lm.end for lm in out if not lm.explicit):
                continue  # "inferolateral" already matched; do not add "lateral" again
            out.append(LeadMention(m.start(), m.end(), leads, m.group(0), False))
    out.sort(key=lambda lm: (lm.start, -lm.end))
    return tuple(out)


@dataclass
class LeadGroup:
    """Consecutive lead mentions that form one list ("leads I, aVL, V5 and V6"; "V1-V3 and II")."""

    start: int
    end: int
    leads: tuple[str, ...]
    explicit: bool        # every member is a lead name (False: a territory word is part of it)
    members: int          # how many mentions (a range counts once)


_GROUP_GAP = re.compile(r"^[\s,]*(?:(?:and|or|&|/|\+|as well as|-|\u2013|\u2014|to|through|thru)\s*)?"
                        r"(?:(?:in\s+)?(?:the\s+)?leads?\s+)?$", re.I)


def lead_groups(text: str, mentions: list[LeadMention]) -> list[LeadGroup]:
    """Join the mentions of ``text`` separated only by list words ("," / "and" / "or" / "leads") into groups."""
    out: list[LeadGroup] = []
    for lm in mentions:
        if not lm.leads:
            continue
        if out and lm.start >= out[-1].end and _GROUP_GAP.match(text[out[-1].end:lm.start]):
            g = out[-1]
            g.end = lm.end
            g.leads = tuple(dict.fromkeys((*g.leads, *lm.leads)))
            g.explicit = g.explicit and lm.explicit
            g.members += 1
            continue
        if out and lm.start < out[-1].end:  # a region inside another ("lateral" in "high lateral")
            continue
        out.append(LeadGroup(lm.start, lm.end, tuple(lm.leads), lm.explicit, 1))
    return out


# ---------------------------------------------------------------------------------------------- numbers
_NUMBER_WORDS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
                 "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
                 "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "single": 1,
                 "a single": 1, "an isolated": 1, "a solitary": 1, "one single": 1, "both": 2, "a pair of": 2}
_ORDINAL_WORDS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
                  "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13,
                  "fourteenth": 14, "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18,
                  "nineteenth": 19, "twentieth": 20, "last": -1, "final": -1, "penultimate": -2}

_UNIT = (r"(?P<unit>milli-?seconds?|msecs?|ms|seconds?|secs?|s(?![\w/%'’])|bpm|b\.p\.m\.?|beats?\s*(?:per|/|"
         r"a)\s*min(?:ute)?"
         r"|/\s?min(?:ute)?|per\s+minute|millivolts?|mv|[\u00b5\u03bcu]v|microvolts?|mm(?!\s*/|\s+per\b)"
         r"|millimet(?:er|re)s?(?!\s*/|\s+per\b)|cm(?!\s*/|\s+per\b)|centimet(?:er|re)s?(?!\s*/|\s+per\b)"
         r"|°|º|degrees?|deg(?![a-z]))")
_NUM = r"(?:\d+(?:\.\d+)?|\.\d+)"
# One number, possibly signed; a sign counts only where a word cannot end before it ("V4-0.2" is a range).
_NUMBER = re.compile(
    rf"(?:(?:(?<=[\s(\[,:=~/])|^)(?P<sign>[-+\u2212\u2013]|minus\s|plus\s)?\s?|(?<=\d[-\u2013\u2014]))(?P<num>{_NUM})"
    rf"(?![\w.]*\d)"
    rf"(?P<tail>(?:\s*[-\u2010\u2011]?\s*{_UNIT}(?![A-Za-z]))?)", re.I)
_RANGE_JOIN = re.compile(r"^\s*(?:-|\u2013|\u2014|to|through)\s*$", re.I)
_LIST_JOIN = re.compile(r"^\s*(?:,\s*(?:and|or)?|and|or|/)\s*$", re.I)


@dataclass
class NumberToken:
    start: int                 # of the number (its sign included)
    end: int                   # of the unit when one follows, else of the number
    value: float               # signed as written
    text: str
    unit: str | None           # as written (None: no unit right after it)
    decimals: int              # digits after the decimal point as written
    explicit_sign: bool        # a + or - was written
    inherited_unit: bool = False  # "0.1 and 0.2 mV": the first number takes the unit of the last
    range_with: int | None = None  # index of the other end of a range ("0.1-0.2 mV", "between 60 and 80")
    range_first: bool = False


def _to_float(sign: str | None, num: str) -> float:
    v = float(num)
    s = (sign or "").strip().lower()
    return -v if s in ("-", "\u2212", "\u2013", "minus") else v


def find_numbers(text: str) -> list[NumberToken]:
    """Every number in ``text`` with the unit written after it. Lists and ranges share one unit ("0.93, 0.78
    and 1.24 mV", "80-100 ms", "between 60 and 80 bpm"); the joined ends are marked (``range_with``)."""
    toks: list[NumberToken] = []
    for m in _NUMBER.finditer(text):
        num = m.group("num")
        # digits glued to letters are names, not numbers: V1, S1Q3T3, 12-lead (handled by the lookbehind);
        # a number followed by ":" and a digit is a ratio (2:1), one followed by "th"/"st" an ordinal
        after = text[m.end("num"):m.end("num") + 3]
        if re.match(r":\d|(?:st|nd|rd|th)\b|[A-Za-z]\d", after, re.I):
            continue
        sign = m.group("sign")
        unit = m.group("unit")
        start = m.start("sign") if sign else m.start("num")
        end = m.end("tail") if unit else m.end("num")
        decimals = len(num.split(".")[1]) if "." in num else 0
        toks.append(NumberToken(start, end, _to_float(sign, num), text[start:end].strip(), unit, decimals,
                                bool(sign)))
    # ranges and lists: a number without a unit takes the unit of the next one when only a joiner lies between
    for i in range(len(toks) - 2, -1, -1):
        a, b = toks[i], toks[i + 1]
        if a.unit is not None:
            continue
        gap = text[a.end:b.start]
        before = text[max(0, a.start - 12):a.start].lower()
        if _RANGE_JOIN.match(gap) or (re.search(r"\b(?:between|from)\s*$", before) and re.match(r"^\s*(?:and|to)\s*$",
                                                                                                 gap, re.I)):
            a.unit, a.inherited_unit, a.range_with, a.range_first = b.unit, True, i + 1, True
            b.range_with = i
        elif _LIST_JOIN.match(gap) and b.unit is not None:
            a.unit, a.inherited_unit = b.unit, True
    # "from 0.1 mV to 0.2 mV": both ends carry units
    for i in range(len(toks) - 1):
        a, b = toks[i], toks[i + 1]
        if a.range_with is None and b.range_with is None and a.unit and b.unit and a.unit.lower() == b.unit.lower():
            before = text[max(0, a.start - 12):a.start].lower()
            if re.search(r"\b(?:between|from)\s*$", before) and re.match(r"^\s*(?:and|to|-|\u2013)\s*$",
                                                                          text[a.end:b.start], re.I):
                a.range_with, a.range_first, b.range_with = i + 1, True, i
    return toks


_COUNT_WORD_RE = re.compile(r"(?<![\w-])(" + "|".join(sorted((re.escape(k) for k in _NUMBER_WORDS), key=len, reverse=True))
                            + r")(?![\w-])", re.I)
_ORDINAL_RE = re.compile(r"(?<![\w-])(?:(?P<num>\d{1,2})(?:st|nd|rd|th)|(?P<word>" + "|".join(_ORDINAL_WORDS)
                         + r"))(?![\w-])", re.I)


def number_word_value(word: str) -> int | None:
    return _NUMBER_WORDS.get(word.lower().strip())


def count_words(text: str) -> list[tuple[int, int, int]]:
    """(start, end, value) of spelled-out counts ("two", "a single")."""
    return [(m.start(), m.end(), _NUMBER_WORDS[m.group(1).lower()]) for m in _COUNT_WORD_RE.finditer(text)]


def ordinals(text: str) -> list[tuple[int, int, int]]:
    """(start, end, position) of ordinals ("4th", "fourth"; "last" is -1)."""
    out = []
    for m in _ORDINAL_RE.finditer(text):
        v = int(m.group("num")) if m.group("num") else _ORDINAL_WORDS[m.group("word").lower()]
        out.append((m.start(), m.end(), v))
    return out


def unit_kind(unit: str) -> tuple[str, float]:
    """(dimension, factor to its base unit) of a unit as written; mm and cm give NaN (the caller converts with the
    calibration, 10 mm per mV, or the paper speed)."""
    u = unit.lower().replace(" ", "").replace("-", "")
    if u in ("ms", "msec", "msecs") or u.startswith("millisecond"):
        return "ms", 1.0
    if u in ("s", "sec", "secs") or u.startswith("second"):
        return "ms", 1000.0
    if u.startswith("bpm") or u.startswith("b.p.m") or u.startswith("beat") or u.startswith("/min") \
            or u.startswith("perminute"):
        return "bpm", 1.0
    if u == "mv" or u.startswith("millivolt"):
        return "mv", 1.0
    if u in ("\u00b5v", "\u03bcv", "uv") or u.startswith("microvolt"):
        return "mv", 0.001
    if u == "mm" or u.startswith("millimet") or u == "cm" or u.startswith("centimet"):
        return "mv", float("nan")  # a length on the paper: the caller converts (cm = 10 mm)
    return "deg", 1.0
