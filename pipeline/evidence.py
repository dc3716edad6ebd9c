"""Evidence: numbers an answer presents as the support of a diagnosis must meet one of its criteria.

"Left ventricular hypertrophy, with a Sokolow-Lyon voltage of 0.55 mV" states a true number and a report's
diagnosis, and is still false: the number is offered as evidence and contradicts it. Numbers in the sentence
of a diagnosis mention, joined to it by "with", "shown by", "consistent with" ..., are its evidence; when none
of them meets any of the diagnosis' own knowledge criteria (on their column and lead) the answer contradicts
the measurements. Values stated without a claim of support ("for LVH, the relevant values are ...") are not
evidence. Rhythm statements are left to the rate and rhythm words; summary statements (normal ECG) list
intervals, not evidence.
"""
from __future__ import annotations

import re

from pipeline.answer_text import sentences
from pipeline.context import GroundingContext
from pipeline.grounding import _sex

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
            tested = _test_claim(c, crits, _sex(ctx))
            if tested is not None:
                ev.append((c, tested))
        if ev and not any(ok for _, ok in ev):
            shown = ", ".join(repr(c.text) for c, _ in ev[:3])
            out.append(f"cites {shown} as evidence of {entry.name!r} but none meets its criteria "
                       f"({'; '.join(cr.text for cr in crits[:2])})")
    return out


def _test_claim(claim, crits, sex: str | None = None) -> bool | None:
    """Whether the claimed value meets one of ``crits`` on its column (and lead), with the record's sex where the
    cut-off depends on it (ST elevation in V2-V3: 0.15 mV in women, 0.2 mV in men); None when none applies."""
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
        r = crit.test(x, sex)
        if r is not None:
            results.append(bool(r))
    return any(results) if results else None
