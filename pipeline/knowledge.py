"""The diagnostic knowledge base: what each ECG statement means, how it is measured, and how it is named.

``knowledge/*.yaml`` holds one entry per diagnostic statement (PTB-XL SCP statements, CinC SNOMED-CT codes,
LUDB's vocabulary, MIMIC-IV-ECG machine phrases, axis statements), validated by the pydantic models below
(``knowledge/schema.json`` is their JSON schema). This module loads it and answers three questions:

- ``KnowledgeBase.normalise(statements, report)``: which canonical ids does a source's report map to?
- ``KnowledgeBase.find_mentions(text)``: which diagnoses does a piece of free English (or German) text name,
  and is each one negated ("no ST elevation")?
- ``KnowledgeBase.closure(ids)`` / ``permitted(ids)``: what a set of statements entails, and what an answer
  may additionally name without claiming a new diagnosis.

Units in criteria are those of the measurement columns they test (ms, mV, bpm, degrees).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from pipeline.casefold import Folded
from pipeline.record import LEADS, Statement

KNOWLEDGE_DIR = Path(__file__).resolve().parents[1] / "knowledge"
SCHEMA_PATH = KNOWLEDGE_DIR / "schema.json"

Category = Literal["rhythm", "conduction", "axis", "hypertrophy", "ischemia/infarction", "st-t", "voltage", "other"]
Comparison = Literal[">", ">=", "<", "<=", "==", "between", "outside", "in", "absent", "present"]
CODE_SYSTEMS = ("scp", "snomed", "ludb", "mimic")


def _measurement_columns() -> set[str]:
    from features.schema import BEATS_SCHEMA, RECORDS_SCHEMA
    from pipeline.derived import DERIVED_LEAD_COLUMNS, DERIVED_RECORD_COLUMNS

    return set(BEATS_SCHEMA) | set(RECORDS_SCHEMA) | set(DERIVED_LEAD_COLUMNS) | set(DERIVED_RECORD_COLUMNS)


def _check_leads(leads: list[str]) -> list[str]:
    bad = [lead for lead in leads if lead not in LEADS]
    if bad:
        raise ValueError(f"unknown leads {bad}")
    return leads


class CutoffRef(BaseModel):
    """``threshold: {cutoff: NAME}``: the criterion's number comes from ``knowledge/cutoffs.yaml``."""

    model_config = ConfigDict(extra="forbid")
    cutoff: str


class Criterion(BaseModel):
    """One measurable criterion. ``feature`` is a RECORDS_SCHEMA / BEATS_SCHEMA column or a derived column of
    ``pipeline.derived`` (None: judged by eye).

    For a lead column, ``leads`` says where to look (empty = the entry's leads to look at) and ``require`` how
    many of them must meet it: ``any`` one, ``all`` measured ones, or ``two_contiguous`` (two neighbouring leads
    of one territory, as the infarction and ST criteria ask). For a records column the value is the record's.

    ``threshold`` is ``{cutoff: NAME}`` (resolved at load from the one cut-off table, sex-aware through
    ``test(value, sex)``), a bool, a category string (``==``) or a list of categories (``in``). Numbers are not
    written here: every clinical threshold lives in ``knowledge/cutoffs.yaml``. Comparisons without a threshold:
    ``present`` (a value, or a count above zero) and ``absent``.

    ``role``: ``required`` criteria must all hold; ``any_of`` criteria are alternatives (those sharing a
    ``group`` must hold together: the group is one alternative); ``supportive`` criteria add evidence when the
    others hold but their absence is no argument against the statement.
    """

    model_config = ConfigDict(extra="forbid")
    feature: str | None = None
    leads: list[str] = Field(default_factory=list)
    comparison: Comparison | None = None
    threshold: float | bool | str | list[float] | list[str] | CutoffRef | None = None
    units: str | None = None
    require: Literal["any", "all", "two_contiguous"] = "any"
    role: Literal["required", "any_of", "supportive"] = "required"
    group: str | None = None
    text: str
    _cutoff: str | None = PrivateAttr(default=None)

    @field_validator("leads")
    @classmethod
    def _known_leads(cls, v: list[str]) -> list[str]:
        return _check_leads(v)

    @field_validator("feature")
    @classmethod
    def _known_feature(cls, v: str | None) -> str | None:
        if v is not None and v not in _measurement_columns():
            raise ValueError(f"feature {v!r} is not a BEATS_SCHEMA / RECORDS_SCHEMA / derived column")
        return v

    @model_validator(mode="after")
    def _threshold_shape(self) -> "Criterion":
        if isinstance(self.threshold, CutoffRef):
            self._resolve_cutoff(self.threshold.cutoff)
        if self.feature is None:
            return self
        if self.comparison is None:
            raise ValueError(f"criterion on {self.feature} needs a comparison")
        if self.comparison in ("between", "outside"):
            if not (isinstance(self.threshold, list) and len(self.threshold) == 2):
                raise ValueError(f"{self.comparison} needs a [low, high] threshold")
        elif self.comparison == "in":
            if not (isinstance(self.threshold, list) and all(isinstance(t, str) for t in self.threshold)):
                raise ValueError("'in' needs a list of categories")
        elif self.comparison in ("absent", "present"):
            pass
        elif self.threshold is None:
            raise ValueError(f"comparison {self.comparison} needs a threshold")
        elif isinstance(self.threshold, (int, float)) and not isinstance(self.threshold, bool) \
                and self._cutoff is None:
            raise ValueError(f"criterion on {self.feature}: write the number in knowledge/cutoffs.yaml and refer "
                             f"to it as threshold: {{cutoff: NAME}}")
        return self

    def _resolve_cutoff(self, name: str) -> None:
        from pipeline.cutoffs import cutoffs

        table = cutoffs()
        if name not in table:
            raise ValueError(f"unknown cut-off {name!r} (knowledge/cutoffs.yaml)")
        c = table[name]
        self._cutoff = name
        if c.is_band:
            self.comparison = self.comparison or "between"
            if self.comparison not in ("between", "outside"):
                raise ValueError(f"cut-off {name} is a band: use between / outside")
            self.threshold = [float(c.range[0]), float(c.range[1])]
        else:
            self.comparison = self.comparison or c.comparison
            if self.comparison in ("between", "outside", "in", "==", "absent", "present"):
                raise ValueError(f"cut-off {name} is a threshold: compare with <, <=, > or >=")
            self.threshold = c.threshold(None)
        if self.units is None and c.units not in ("count", "ratio"):
            self.units = c.units

    @property
    def cutoff(self) -> str | None:
        """The name of the cut-off the threshold comes from (None for categories and booleans)."""
        return self._cutoff

    @property
    def scope(self) -> Literal["record", "lead", "none"]:
        """'record' for a records column, 'lead' for a beats column, 'none' for a criterion judged by eye."""
        from features.schema import RECORDS_SCHEMA
        from pipeline.derived import DERIVED_RECORD_COLUMNS

        if self.feature is None:
            return "none"
        if (self.feature in RECORDS_SCHEMA or self.feature in DERIVED_RECORD_COLUMNS) and not self.leads:
            return "record"
        return "lead"

    def threshold_for(self, sex: str | None = None):
        """The threshold for ``sex`` (the cut-off's sex-specific value where it has one)."""
        if self._cutoff is None or self.comparison in ("between", "outside"):
            return self.threshold
        from pipeline.cutoffs import cutoffs

        return cutoffs()[self._cutoff].threshold(sex if sex in ("male", "female") else None)

    def test(self, value, sex: str | None = None) -> bool | None:
        """Whether ``value`` meets the criterion (for ``sex`` where the cut-off depends on it); None when it
        cannot be judged (missing value)."""
        if self.comparison == "absent":
            return value is None
        if self.comparison == "present":  # an unknown count is unknown, not absent
            return None if value is None else value is not False and value != 0 and value not in ("none", "absent", "")
        if value is None:
            return None
        t = self.threshold_for(sex)
        try:
            if self.comparison == "==":
                return value == t
            if self.comparison == "in":
                return value in t
            if self.comparison == ">":
                return value > t
            if self.comparison == ">=":
                return value >= t
            if self.comparison == "<":
                return value < t
            if self.comparison == "<=":
                return value <= t
            if self.comparison in ("between", "outside"):
                inside = self._inside(value, t)
                return inside if self.comparison == "between" else not inside
        except TypeError:
            return None
        return None

    def _inside(self, value, t) -> bool:
        if self._cutoff is not None:
            from pipeline.cutoffs import cutoffs

            c = cutoffs()[self._cutoff]
            if c.is_band:
                return c.contains(value)
        return t[0] <= value <= t[1]

    def threshold_text(self, sex: str | None = None) -> str:
        """The threshold as a short expression, e.g. 'qrs_ms >= 120 ms' or 'qrs_axis_deg in [-90, -30] deg'."""
        if self.feature is None:
            return ""
        unit = f" {self.units}" if self.units else ""
        t = self.threshold_for(sex)
        where = f" in {', '.join(self.leads)}" if self.leads else ""
        if self.require == "all" and self.leads:
            where = f" in every one of {', '.join(self.leads)}"
        elif self.require == "two_contiguous":
            where = f" in two contiguous leads{' of ' + ', '.join(self.leads) if self.leads else ''}"
        if self.comparison == "between":
            return f"{self.feature} in [{_num(t[0])}, {_num(t[1])}]{unit}{where}"
        if self.comparison == "outside":
            return f"{self.feature} outside [{_num(t[0])}, {_num(t[1])}]{unit}{where}"
        if self.comparison in ("absent", "present"):
            return f"{self.feature} {self.comparison}{where}"
        if self.comparison == "in":
            return f"{self.feature} in {{{', '.join(t)}}}{where}"
        if isinstance(t, bool):
            return f"{self.feature} == {str(t).lower()}{where}"
        if isinstance(t, str):
            return f"{self.feature} == {t}{where}"
        return f"{self.feature} {self.comparison} {_num(t)}{unit}{where}"


def _num(x) -> str:
    return f"{x:g}" if isinstance(x, (int, float)) else str(x)


class KnowledgeEntry(BaseModel):
    """One diagnostic statement: names, source codes, measurable criteria, mechanism and reference."""

    model_config = ConfigDict(extra="forbid")
    id: str
    name: str
    category: Category
    synonyms: list[str] = Field(default_factory=list)      # English + German report words (case-insensitive)
    abbreviations: list[str] = Field(default_factory=list)  # matched case-sensitively ("LVH", "AF")
    codes: dict[str, list[str]] = Field(default_factory=dict)  # system -> codes / exact phrases
    criteria: list[Criterion] = Field(default_factory=list)
    leads_to_look_at: list[str] = Field(default_factory=list)
    mechanism: str
    reference: str
    implies: list[str] = Field(default_factory=list)   # statements this one entails (SBRAD -> SR)
    excludes: list[str] = Field(default_factory=list)  # statements it contradicts (AFIB -> SR)
    related: list[str] = Field(default_factory=list)   # findings an answer may name as part of this one

    @field_validator("codes")
    @classmethod
    def _known_systems(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        bad = [k for k in v if k not in CODE_SYSTEMS]
        if bad:
            raise ValueError(f"unknown code systems {bad}; use {CODE_SYSTEMS}")
        return {k: [str(c) for c in codes] for k, codes in v.items()}

    @field_validator("leads_to_look_at")
    @classmethod
    def _known_leads(cls, v: list[str]) -> list[str]:
        return _check_leads(v)

    @field_validator("mechanism")
    @classmethod
    def _one_sentence(cls, v: str) -> str:
        if re.search(r"\.\s+[A-Z]", v) or not v.endswith("."):
            raise ValueError("mechanism must be one sentence ending with '.'")
        return v

    @property
    def phrases(self) -> list[str]:
        """Every case-insensitive phrase that names this entry: its name first, then the synonyms."""
        seen: dict[str, None] = {}
        for p in [self.name, *self.synonyms]:
            seen.setdefault(p, None)
        return list(seen)


class KnowledgeFile(BaseModel):
    """One ``knowledge/*.yaml`` file."""

    model_config = ConfigDict(extra="forbid")
    entries: list[KnowledgeEntry]


class ReferencesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    references: dict[str, str]


class NormalisedReport(BaseModel):
    """A source report mapped onto knowledge ids. ``unmapped`` keeps what no entry matched (codes as
    'system:code', report fragments as text); ``dropped`` the boiler-plate that was removed."""

    statement_ids: list[str]
    unmapped: list[str] = Field(default_factory=list)
    dropped: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class Mention:
    """A diagnosis named in free text: ``text[start:end]`` names ``entry_id``; ``negated`` if it is denied."""

    entry_id: str
    start: int
    end: int
    text: str
    negated: bool


# --- text matching ------------------------------------------------------------------------------------

_SEP = r"[\s\-‐–]+"  # spaces and hyphens are interchangeable: "st-elevation" == "st elevation"
_TOKEN_SPLIT = re.compile(r"[\s\-‐–]+")


def _canon_token(t: str) -> str:
    """One word of a phrase in the spelling every variant shares, so that the way a writer spells a diagnosis
    does not decide whether it is found: possessives ("Wellens' sign", "athlete's heart"), British spellings
    ("ischaemia", "repolarisation", "oedema"), plurals ("premature atrial beat" / "beats") and "infarct" for
    "infarction". ``_token_rx`` is the matching regex of a canonical word."""
    t = t.replace("\u2019", "'")
    if t.endswith("'s"):
        t = t[:-2]
    t = t.rstrip("'")
    t = t.replace("isation", "ization").replace("aem", "em")
    if t.startswith(("oedem", "oesophag")):
        t = t[1:]
    if len(t) > 4 and t.endswith("ies"):
        t = t[:-3] + "y"
    elif len(t) > 4 and t.endswith(("xes", "ches", "shes", "sses")):
        t = t[:-2]
    elif len(t) > 3 and t.endswith("s") and not t.endswith(("ss", "us", "is")):
        t = t[:-1]
    return "infarction" if t == "infarct" else t


def _token_rx(t: str) -> str:
    """The regex of canonical word ``t`` (``_canon_token``): every spelling that canonicalises to it."""
    r = "infarct(?:ion)?" if t == "infarction" else re.escape(t)
    r = r.replace("ization", "i[sz]ation").replace("em", "a?em")
    if t.startswith(("edem", "esophag")):
        r = "o?" + r
    if t.endswith("y") and len(t) > 3 and t[-2] not in "aeiou":
        r = r[:-1] + "(?:y|ies)"
    elif t.endswith(("x", "ch", "sh", "ss")):
        r += "(?:es)?"
    elif len(t) > 2 and not t.endswith(("us", "is")) and t[-1].isalpha():
        r += "s?"
    return r + "(?:['\u2019]s?)?"


def _phrase_key(text: str) -> str:
    """Case-, separator- and spelling-insensitive key: 'ST-Elevation' -> 'st elevation', 'Wellens' signs' ->
    'wellens sign' (``_canon_token``)."""
    return " ".join(_canon_token(t) for t in _TOKEN_SPLIT.split(text.lower().strip()) if t)


def _phrase_pattern(phrase: str) -> str:
    tokens = [re.escape(t) for t in _TOKEN_SPLIT.split(phrase.strip()) if t]
    return _SEP.join(tokens)


def phrases_pattern(phrases: list[str]) -> str:
    """One regex alternation for many phrases, factored as a trie of their tokens, so a 1,000-phrase
    vocabulary is matched in one pass without trying every phrase at every position. At a position the longest
    phrase wins (longer tokens are tried first and a continuation is greedy), as with a flat alternation sorted
    longest first; separators are ``_SEP`` as in ``_phrase_pattern``."""
    trie: dict = {}
    for p in phrases:
        node = trie
        for t in _phrase_key(p).split(" "):
            if t:
                node = node.setdefault(t, {})
        node[""] = {}  # a phrase ends here

    def build(node: dict) -> str:
        alts = []
        for tok in sorted((k for k in node if k), key=lambda k: (-len(k), k)):
            child = node[tok]
            rest = [k for k in child if k]
            if not rest:
                alts.append(_token_rx(tok))
                continue
            cont = _SEP + build(child)
            alts.append(_token_rx(tok) + ("(?:" + cont + ")" + ("?" if "" in child else "")))
        return "(?:" + "|".join(alts) + ")"

    return build(trie)


# Negation cues that deny what follows them in the same clause.
_NEG_BEFORE = re.compile(
    r"(?<![\w])(no|not|without|absence of|absent|negative for|free of|rules? out|ruled out|excludes?|excluding|"
    r"nor|neither|lacks?|lacking|never|kein|keine|keinen|keiner|ohne|kein hinweis auf|denies|no evidence of|"
    r"no sign of|no signs of|nothing to suggest)(?![\w])",
    re.IGNORECASE,
)
# ... and cues that deny what precedes them ("ST elevation is absent").
_NEG_AFTER = re.compile(
    r"^[\s,]*(?:(?:[\w'-]+\s+){1,2}(?:is|are|was|were|has been|have been)\s+|(?:is|are|was|were|has been|have been)?\s*)"
    r"(?:absent|not (?:seen|present|observed|evident|identified|"
    r"noted|found|shown|demonstrated|visible|apparent|detected|appreciated|suggested|supported|met|fulfill?ed|"
    r"satisfied|reached)|ruled out|excluded|unlikely)"
    r"(?![\w])",
    re.IGNORECASE,
)
# Clause boundaries: negation does not cross them.
_CLAUSE_BREAK = re.compile(
    r"[.;:!?\n]|,(?!\s*(?:or|nor)\b)|(?<![\w])(?:but|however|although|though|whereas|while|yet|except|apart from|"
    r"with|which|and there is|and there are|aber|jedoch|mit)(?![\w])",
    re.IGNORECASE,
)
# A gap between two mentions that only continues a list ("no X, Y or Z"): negation carries over.
_LIST_GAP = re.compile(r"^[\s,/]*(?:,|or|and|nor|oder|und|noch)?[\s,/]*$", re.IGNORECASE)

_LIST_WORD = re.compile(r"(?<![\w])(?:or|and|nor|oder|und|noch)(?![\w])", re.IGNORECASE)
_LIST_NEXT = re.compile(r"^\s*(?:,|or\b|nor\b|and\b|oder\b|und\b|noch\b)", re.IGNORECASE)

_CODE_TEXT = re.compile(r"^\s*(snomed(?:-ct)?|scp)\s*:?\s*([A-Za-z0-9_/()]+)\s*$", re.IGNORECASE)

# MIMIC-IV-ECG machine boiler-plate: lines that say nothing about the heart.
_BOILERPLATE = re.compile(
    r"^\s*(?:-+.*-+|\*+.*\*+|unconfirmed.*|confirmed by.*|compared (?:to|with).*|when compared with.*|"
    r"since (?:the )?(?:last|previous) (?:tracing|ecg).*|no (?:significant )?change.*|no previous ecgs? available.*|"
    r"previous ecg.*|baseline wander.*|artifact.*|artefact.*|technically (?:poor|limited|difficult).*|"
    r"lead\(s\) unsuitable for analysis.*|leads? unsuitable.*|data quality may affect interpretation.*|"
    r"warning.*|interpretation.*|report.*|age and (?:gender|sex) specific.*|read by.*|edit:.*|"
    r"summary:.*|\(?pediatric criteria.*|.*criteria used.*|no further analysis)\s*$",
    re.IGNORECASE,
)


# "cannot rule out X", "X cannot be excluded": a possibility raised, not a denial
_NOT_DENIAL = re.compile(r"(?<![\w])(?:cannot|can ?not|can['’]t|could not|couldn['’]t|unable to|impossible to|difficult "
                         r"to|hard to|not possible to)\s+(?:be\s+)?(?:completely\s+|entirely\s+|definitely\s+|"
                         r"reliably\s+|fully\s+)?(?:rule[sd]?\s+out|exclude[sd]?)(?![\w])", re.IGNORECASE)


def _negated_before(text: str, start: int) -> bool:
    window = text[max(0, start - 120):start]
    breaks = list(_CLAUSE_BREAK.finditer(window))
    clause = window[breaks[-1].end():] if breaks else window
    return bool(_NEG_BEFORE.search(_NOT_DENIAL.sub(" ", clause)))


def negations(text: str, spans: list[tuple[int, int]]) -> list[bool]:
    """Whether each mention at ``spans`` (sorted, non-overlapping [start, end) of ``text``) is denied: a negation
    cue opens its clause before it, the clause denies it afterwards ("... is absent"), or it continues a negated
    list ("no X, Y or Z"). The one negation rule of ``find_mentions`` and of the validator's vocabulary."""
    out: list[bool] = []
    prev: tuple[int, int, bool] | None = None
    for start, end in spans:
        negated = _negated_before(text, start) or bool(_NEG_AFTER.match(text[end:end + 60]))
        if not negated and prev is not None and prev[2] and _LIST_GAP.match(text[prev[1]:start]):
            # "no X, Y or Z": a bare comma carries the negation only while the list goes on after Y,
            # so "without X, Y is present" still claims Y.
            gap = text[prev[1]:start]
            negated = bool(_LIST_WORD.search(gap)) or bool(_LIST_NEXT.match(text[end:end + 12]))
        out.append(negated)
        prev = (start, end, negated)
    return out


@dataclass
class KnowledgeBase:
    """All knowledge entries plus the indexes that normalise reports and find mentions in text."""

    entries: dict[str, KnowledgeEntry]
    references: dict[str, str] = field(default_factory=dict)
    _code_index: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)
    _phrase_index: dict[str, str] = field(default_factory=dict, repr=False)
    _abbrev_index: dict[str, str] = field(default_factory=dict, repr=False)
    _phrase_re: re.Pattern | None = field(default=None, repr=False)
    _abbrev_re: re.Pattern | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        problems: list[str] = []
        for e in self.entries.values():
            for rel in (*e.implies, *e.excludes, *e.related):
                if rel not in self.entries:
                    problems.append(f"{e.id}: refers to unknown id {rel!r}")
            for system, codes in e.codes.items():
                for code in codes:
                    key = (system, self._code_key(system, code))
                    other = self._code_index.setdefault(key, e.id)
                    if other != e.id:
                        problems.append(f"{system} code {code!r} maps to both {other} and {e.id}")
            for phrase in e.phrases:
                key = _phrase_key(phrase)
                other = self._phrase_index.setdefault(key, e.id)
                if other != e.id:
                    problems.append(f"phrase {phrase!r} names both {other} and {e.id}")
            for abbr in e.abbreviations:
                other = self._abbrev_index.setdefault(abbr, e.id)
                if other != e.id:
                    problems.append(f"abbreviation {abbr!r} names both {other} and {e.id}")
        if problems:
            raise ValueError("knowledge base is inconsistent:\n  " + "\n  ".join(problems))
        # Longest phrase first, so the alternation prefers "complete right bundle branch block" over
        # "right bundle branch block" at the same position.
        self._phrase_re = re.compile(r"(?<![\w])" + phrases_pattern(list(self._phrase_index)) + r"(?![\w])",
                                     re.IGNORECASE)
        self._phrase_folded = Folded(self._phrase_re)
        abbrs = sorted(self._abbrev_index, key=lambda k: (-len(k), k))
        self._abbrev_re = re.compile(r"(?<![\w])(?:" + "|".join(re.escape(a) for a in abbrs) + r")(?![\w])")

    # --- lookups -------------------------------------------------------------------------------------

    @staticmethod
    def _code_key(system: str, code: str) -> str:
        # SCP and SNOMED codes are identifiers; LUDB / MIMIC codes are phrases compared loosely.
        if system in ("scp", "snomed"):
            return code.strip().upper()
        return _phrase_key(code.strip().rstrip(".").strip())

    def lookup_code(self, system: str, code: str | None) -> str | None:
        """The entry id for ``code`` in ``system`` ('scp', 'snomed', 'ludb', 'mimic'; 'synthetic' = SCP)."""
        if not code:
            return None
        system = "scp" if system == "synthetic" else system
        return self._code_index.get((system, self._code_key(system, code)))

    def entry_for_phrase(self, phrase: str) -> str | None:
        """The entry a whole phrase names (name or synonym, case/hyphen-insensitive), or None."""
        return self._phrase_index.get(_phrase_key(phrase))

    def closure(self, ids: list[str] | set[str]) -> set[str]:
        """``ids`` plus everything they imply, transitively (SBRAD -> SR; CLBBB -> LBBB -> BBB)."""
        out: set[str] = set()
        todo = [i for i in ids if i in self.entries]
        while todo:
            i = todo.pop()
            if i in out:
                continue
            out.add(i)
            todo.extend(self.entries[i].implies)
        return out

    def permitted(self, ids: list[str] | set[str]) -> set[str]:
        """Ids an answer may name for a report of ``ids``: the closure plus each entry's ``related`` findings
        (an anterior MI answer may speak of Q waves and ST elevation without claiming a new diagnosis)."""
        base = self.closure(ids)
        out = set(base)
        for i in base:
            out.update(self.entries[i].related)
        return out

    def contradictions(self, ids: list[str] | set[str]) -> list[tuple[str, str]]:
        """Pairs (a, b) in the closure of ``ids`` where a excludes b."""
        c = self.closure(ids)
        return sorted({(a, b) for a in c for b in self.entries[a].excludes if b in c})

    # --- free text -----------------------------------------------------------------------------------

    def find_mentions(self, text: str) -> list[Mention]:
        """Diagnoses named in ``text`` (names, synonyms, case-sensitive abbreviations), in order.

        Longest phrase wins at a position; overlapping hits are dropped. ``negated`` is True when a negation
        cue ("no", "without", "absence of", "kein", ...) opens the same clause before the mention, when the
        mention continues a negated list ("no ST elevation, ST depression or T wave inversion"), or when the
        clause denies it afterwards ("... is absent").
        """
        hits: list[tuple[int, int, str]] = []
        for start, end in self._phrase_folded.spans(text):
            eid = self._phrase_index.get(_phrase_key(text[start:end]))
            if eid:
                hits.append((start, end, eid))
        for m in self._abbrev_re.finditer(text):
            hits.append((m.start(), m.end(), self._abbrev_index[m.group(0)]))
        hits.sort(key=lambda h: (h[0], -(h[1] - h[0])))
        kept: list[tuple[int, int, str]] = []
        for h in hits:
            if kept and h[0] < kept[-1][1]:
                continue
            kept.append(h)
        flags = negations(text, [(start, end) for start, end, _ in kept])
        return [Mention(eid, start, end, text[start:end], neg) for (start, end, eid), neg in zip(kept, flags)]

    @staticmethod
    def _negated_before(text: str, start: int) -> bool:
        return _negated_before(text, start)

    def named_ids(self, text: str) -> set[str]:
        """Ids that ``text`` names without negating them."""
        return {m.entry_id for m in self.find_mentions(text) if not m.negated}

    def expand_abbreviations(self, text: str) -> str:
        """``text`` with every known abbreviation replaced by its entry's name ('LVH' -> 'left ventricular
        hypertrophy')."""
        return self._abbrev_re.sub(lambda m: self.entries[self._abbrev_index[m.group(0)]].name, text)

    # --- reports -------------------------------------------------------------------------------------

    @staticmethod
    def split_report(report: str) -> tuple[list[str], list[str]]:
        """Report -> (fragments to interpret, boiler-plate lines dropped). Fragments split at sentence ends,
        semicolons and line breaks; everything after an 'Edit:' marker is an annotator's note, dropped."""
        kept: list[str] = []
        dropped: list[str] = []
        text = report.replace("\r", "\n")
        edit = re.search(r"(?<![\w])edit:", text, re.IGNORECASE)
        if edit:
            dropped.append(text[edit.start():].strip())
            text = text[:edit.start()]
        for line in text.split("\n"):
            if not line.strip():
                continue
            if _BOILERPLATE.match(line):
                dropped.append(line.strip())
                continue
            # a period ends a fragment only before a space or the end: "supp.NSTEMI", "0.1 mV" stay whole
            for frag in re.split(r"\.(?=\s|$)|;", line):
                frag = frag.strip(" ,\t")
                if not frag:
                    continue
                if _BOILERPLATE.match(frag):
                    dropped.append(frag)
                else:
                    kept.append(frag)
        return kept, dropped

    def normalise(self, statements: list[Statement], report: str) -> NormalisedReport:
        """Map a source's coded statements and free-text report onto knowledge ids.

        Codes first (SCP, SNOMED-CT, LUDB column text, MIMIC lines; 'synthetic' codes are SCP), then the
        report text through names, synonyms and abbreviations; negated mentions are ignored and MIMIC
        boiler-plate is dropped. Ids keep first-seen order, without duplicates.
        """
        ids: list[str] = []
        unmapped: list[str] = []

        def add(eid: str) -> None:
            if eid not in ids:
                ids.append(eid)

        for st in statements:
            eid = self.lookup_code(st.system, st.code)
            if eid is None and st.system in ("ludb", "mimic"):
                eid = self.lookup_code(st.system, st.text)
            if eid is None and st.system in ("ludb", "mimic", "text") and st.text:
                eid = self.entry_for_phrase(st.text)
            if eid is not None:
                add(eid)
                continue
            found = self.named_ids(st.text) if st.text else set()
            if found:
                for m in self.find_mentions(st.text):
                    if not m.negated:
                        add(m.entry_id)
            elif st.text and _BOILERPLATE.match(st.text):
                continue
            else:
                unmapped.append(f"{st.system}:{st.code}" if st.code else st.text)
        fragments, dropped = self.split_report(report or "")
        for frag in fragments:
            # a whole fragment may be a LUDB / MIMIC phrase ("Electric axis of the heart: normal")
            eid = self.lookup_code("ludb", frag) or self.lookup_code("mimic", frag)
            coded = _CODE_TEXT.match(frag)  # a source's stand-in text for a code it has no name for
            if eid is None and coded:
                eid = self.lookup_code("snomed" if coded.group(1).lower().startswith("snomed") else "scp",
                                       coded.group(2))
            if eid is not None:
                add(eid)
                continue
            mentions = [m for m in self.find_mentions(frag) if not m.negated]
            for m in mentions:
                add(m.entry_id)
            if not mentions and not any(m.negated for m in self.find_mentions(frag)):
                unmapped.append(frag)
        return NormalisedReport(statement_ids=ids, unmapped=unmapped, dropped=dropped)

    # --- criteria ------------------------------------------------------------------------------------

    def criteria_for(self, ids: list[str]) -> list[tuple[str, Criterion]]:
        """(entry id, criterion) for every measurable criterion of ``ids``, in order."""
        return [(i, c) for i in ids if i in self.entries for c in self.entries[i].criteria if c.feature]

    def reference_text(self, entry_id: str) -> str:
        ref = self.entries[entry_id].reference
        return self.references.get(ref, ref)


def load_knowledge(path: Path | str | None = None) -> KnowledgeBase:
    """Load and validate the knowledge base from ``path`` (a folder of YAML files; default ``knowledge/``).

    Cached per resolved path. Raises ``ValueError`` (pydantic ``ValidationError``) on an invalid entry,
    a duplicate id, code, phrase or abbreviation, or a reference to an unknown id.
    """
    return _load(str(Path(path or KNOWLEDGE_DIR).resolve()))


@lru_cache(maxsize=8)
def _load(folder: str) -> KnowledgeBase:
    entries: dict[str, KnowledgeEntry] = {}
    references: dict[str, str] = {}
    for f in sorted(Path(folder).glob("*.yaml")):
        data = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
        if "references" in data:
            references.update(ReferencesFile.model_validate(data).references)
            continue
        if "cutoffs" in data:  # the cut-off table (pipeline.cutoffs), not entries
            continue
        if "vocabulary" in data:  # terms outside the knowledge base (pipeline.vocabulary), not entries
            continue
        for e in KnowledgeFile.model_validate(data).entries:
            if e.id in entries:
                raise ValueError(f"{f.name}: duplicate knowledge id {e.id!r}")
            entries[e.id] = e
    if not entries:
        raise ValueError(f"no knowledge entries under {folder}")
    unknown_refs = sorted({e.reference for e in entries.values()} - set(references))
    if references and unknown_refs:
        raise ValueError(f"entries cite unknown reference keys {unknown_refs}")
    return KnowledgeBase(entries=entries, references=references)


def knowledge_schema() -> dict:
    """The JSON schema of one ``knowledge/*.yaml`` file (what ``knowledge/schema.json`` holds)."""
    return KnowledgeFile.model_json_schema()


def write_schema(path: Path = SCHEMA_PATH) -> Path:
    """Regenerate ``knowledge/schema.json`` from the pydantic models."""
    path.write_text(json.dumps(knowledge_schema(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
