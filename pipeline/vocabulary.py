"""Diagnostic terms outside the knowledge base (``knowledge/vocabulary.yaml``): what an answer may not diagnose.

The knowledge base knows the statements a report can make; an LLM can name many more ("Brugada pattern",
"junctional rhythm", "pulmonary embolism", "bifascicular block"). Each term here names a diagnosis with its
synonyms; ``permitted_by`` says which sets of knowledge ids, all in the closure of the record's statements,
make it true (bifascicular block = RBBB + LAFB). ``Vocabulary.find_mentions`` finds terms in free text with the
knowledge base's own negation rule (``pipeline.knowledge.negations``: "no pre-excitation" is not a claim).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from pipeline.casefold import Folded
from pipeline.knowledge import KNOWLEDGE_DIR, Category, Mention, _phrase_key, negations, phrases_pattern

VOCABULARY_PATH = KNOWLEDGE_DIR / "vocabulary.yaml"


class VocabularyTerm(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    name: str
    category: Category
    synonyms: list[str] = Field(default_factory=list)
    abbreviations: list[str] = Field(default_factory=list)
    permitted_by: list[list[str]] = Field(default_factory=list)

    @property
    def phrases(self) -> list[str]:
        return list(dict.fromkeys([self.name, *self.synonyms]))


class VocabularyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    vocabulary: list[VocabularyTerm]


@dataclass
class Vocabulary:
    terms: dict[str, VocabularyTerm]
    _phrase_index: dict[str, str] = field(default_factory=dict, repr=False)
    _abbrev_index: dict[str, str] = field(default_factory=dict, repr=False)
    _phrase_re: re.Pattern | None = field(default=None, repr=False)
    _abbrev_re: re.Pattern | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        problems = []
        for t in self.terms.values():
            for p in t.phrases:
                other = self._phrase_index.setdefault(_phrase_key(p), t.id)
                if other != t.id:
                    problems.append(f"phrase {p!r} names both {other} and {t.id}")
            for a in t.abbreviations:
                other = self._abbrev_index.setdefault(a, t.id)
                if other != t.id:
                    problems.append(f"abbreviation {a!r} names both {other} and {t.id}")
        if problems:
            raise ValueError("vocabulary is inconsistent:\n  " + "\n  ".join(problems))
        self._phrase_re = re.compile(r"(?<![\w])" + phrases_pattern(list(self._phrase_index)) + r"(?![\w])",
                                     re.IGNORECASE)
        self._phrase_folded = Folded(self._phrase_re)
        abbrs = sorted(self._abbrev_index, key=lambda k: (-len(k), k))
        self._abbrev_re = re.compile(r"(?<![\w-])(?:" + "|".join(re.escape(a) for a in abbrs) + r")(?![\w-])") \
            if abbrs else None

    def __len__(self) -> int:
        return len(self.terms)

    def find_mentions(self, text: str) -> list[Mention]:
        """Terms named in ``text`` (longest phrase first at a position), each with its negation."""
        hits: list[tuple[int, int, str]] = []
        for start, end in self._phrase_folded.spans(text):
            tid = self._phrase_index.get(_phrase_key(text[start:end]))
            if tid:
                hits.append((start, end, tid))
        if self._abbrev_re is not None:
            for m in self._abbrev_re.finditer(text):
                hits.append((m.start(), m.end(), self._abbrev_index[m.group(0)]))
        hits.sort(key=lambda h: (h[0], -(h[1] - h[0])))
        kept: list[tuple[int, int, str]] = []
        for h in hits:
            if kept and h[0] < kept[-1][1]:
                continue
            kept.append(h)
        flags = negations(text, [(a, b) for a, b, _ in kept])
        return [Mention(tid, a, b, text[a:b], neg) for (a, b, tid), neg in zip(kept, flags)]

    def permitted(self, term_id: str, closure: set[str]) -> bool:
        """Whether the record's statements (their knowledge-base closure) entail term ``term_id``."""
        term = self.terms[term_id]
        return any(all(i in closure for i in combo) for combo in term.permitted_by)


def load_vocabulary(path: Path | str | None = None) -> Vocabulary:
    """The vocabulary (cached per path). Raises on a duplicate id, phrase or abbreviation."""
    return _load(str(path or VOCABULARY_PATH))


@lru_cache(maxsize=4)
def _load(path: str) -> Vocabulary:
    data = VocabularyFile.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")))
    terms: dict[str, VocabularyTerm] = {}
    for t in data.vocabulary:
        if t.id in terms:
            raise ValueError(f"duplicate vocabulary id {t.id!r}")
        terms[t.id] = t
    return Vocabulary(terms)
