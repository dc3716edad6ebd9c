"""The shared grammar of word claims (``pipeline.consistency``, ``pipeline.polarity``): the claim record, the
verbs and negations they are written with, and how a claim's negation is read."""
from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.knowledge import _negated_before

_I = re.I
_NOT_COUNT = [0]


def not_() -> str:
    """An optional negation ("not", "n't") as a uniquely named group (a pattern may hold several)."""
    _NOT_COUNT[0] += 1
    return rf"(?P<not{_NOT_COUNT[0]}>\bnot\s+|n['’]t\s+|\bno longer\s+|\bnever\s+)?"
BE = r"(?:is|are|was|were|remains?|appears?|looks?|seems?|being|becomes?)"


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
    scope: str = ""                # low voltage: "limb" | "chest" | "all" leads named, "" none


@dataclass
class Problem:
    claim: QualClaim
    detail: str
    code: str = "contradicts_measurement"  # or uncitable_value: a word about a value the record may not cite


class Uncitable(str):
    """A judge's finding that a word states a value the record may not cite (``GroundingContext.citable``): its
    truth is unknown, and stating it is what the validator rejects as ``uncitable_value``."""


def rx(p: str, flags: int = _I) -> re.Pattern:
    return re.compile(p, flags)



def negated(text: str, start: int, m: re.Match) -> bool:
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
