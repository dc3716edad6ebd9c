"""Claims about beats: how many there are ("2 PVCs", "two premature beats", "14 QRS complexes") and which one is
what ("the 4th beat is premature", "beat 5 is paced"). Extracted here as ``NumericClaim`` of kind ``count`` /
``ordinal``; ``pipeline.grounding`` checks them against the beats table (premature and paced counts exactly,
all beats within one: a reader may count a beat cut at either edge of the strip).
"""
from __future__ import annotations

import math
import re

from pipeline.answer_text import NumberToken, count_words, ordinals
from pipeline.claims import _PACED_CTX, _PREMATURE_CTX, NumericClaim

_COUNT_NOUN = re.compile(
    r"^\s*(?:(?:isolated|single|early|premature|ectopic|additional|further|separate|unifocal|multifocal|uniform|"
    r"ventricular|atrial|supraventricular|junctional|wide|broad|narrow|normal|sinus|conducted|paced|QRS|consecutive|"
    r"non-?conducted|individual|distinct|discrete|total|visible|captured|complete|recorded|detected|aberrant|"
    r"similar|identical|separate)[- ]?\s*){0,3}"
    r"(?P<noun>beats?|complex(?:es)?|contractions?|extrasystoles?|PVCs?|PACs?|VPBs?|APCs?|VPCs?|VEs|SVEs|SVPBs?|"
    r"ectopics?|heartbeats?|cycles|QRS complex(?:es)?|depolari[sz]ations?)\b", re.I)
_COUNT_AFTER_PREMATURE = re.compile(r"^\s*(?:that\s+(?:are|were)\s+|which\s+(?:are|were)\s+)?(?:arriving|coming|"
                                    r"occurring|appearing|falling)?\s*(?:early|prematurely|premature|ectopic)\b", re.I)
_COUNT_AFTER_PACED = re.compile(r"^\s*(?:that\s+(?:are|were)\s+|which\s+(?:are|were)\s+)?(?:showing|with)?\s*"
                                r"(?:pacing|paced|pacemaker)", re.I)
_ORDINAL_NOUN = re.compile(r"^\s*(?:and\s+(?:the\s+)?\w+\s+)?(?:(?:QRS|normal|sinus|premature|ectopic|paced)\s+)?"
                           r"(?:beats?|complex(?:es)?|QRS complex(?:es)?|cycles?|heartbeats?)\b", re.I)
_BEAT_NUMBER = re.compile(r"\b(?:beats?|complex(?:es)?)\s+(?:number\s+|no\.?\s*|#\s*)?(?P<n>\d{1,2})\b(?!\s*(?:ms|s\b|"
                          r"mv|mm|bpm|%|per))", re.I)
_ORD_PREMATURE = re.compile(r"\bpremature\b|\bearly\b|\bectopic\b|\bPVC\b|\bPAC\b|\bVPB\b|\bAPC\b|\bextrasystole\b|"
                            r"\bVPC\b", re.I)
_ORD_NEG = re.compile(r"\b(?:is|was|are|were)\s+not\b|\bisn't\b|\bwasn't\b|\bnone\b|\bneither\b|\bnor\b", re.I)



def count_claims(text: str, s0: int, s1: int, numbers: list[NumberToken]) -> list[NumericClaim]:
    """'2 PVCs', 'two premature beats', '1 beat arriving early', '14 QRS complexes', 'a single PVC'."""
    out: list[NumericClaim] = []
    cands: list[tuple[int, int, float]] = [(n.start, n.end, n.value) for n in numbers
                                           if s0 <= n.start < s1 and n.unit is None and float(n.value).is_integer()
                                           and 0 <= n.value <= 60 and not n.explicit_sign]
    cands += [(a + s0, b + s0, float(v)) for a, b, v in count_words(text[s0:s1])]
    seen: set[int] = set()
    for a, b, v in sorted(cands):
        if a in seen:
            continue
        seen.add(a)
        after = text[b:min(s1, b + 80)]
        m = _COUNT_NOUN.match(after)
        if m is None:
            continue
        phrase = text[a:b + m.end()]
        rest = text[b + m.end():min(s1, b + m.end() + 40)]
        before = text[max(s0, a - 30):a]
        if re.search(r"\b(?:of|in|every|each|per|than|about|after|before|within|next|last|first|over)\s*$", before, re.I) \
                and not re.search(r"\bof the\s*$", before, re.I):
            continue  # "every 2 beats", "one in three beats": a pattern, not a count
        if re.match(r"\s*(?:of|in)\s+(?:the\s+)?(?:\d+|\w+)\s+(?:beats|complexes)", rest, re.I):
            subject = "premature" if _ORD_PREMATURE.search(rest) or _PREMATURE_CTX.search(phrase) else None
            if subject is None:
                continue
        noun_phrase = m.group(0)
        if _PREMATURE_CTX.search(noun_phrase) or _COUNT_AFTER_PREMATURE.match(rest):
            subject = "premature"
        elif _PACED_CTX.search(noun_phrase) or _COUNT_AFTER_PACED.match(rest):
            subject = "paced"
        elif re.search(r"\b(?:normal|sinus|conducted)\b", noun_phrase, re.I):
            subject = "normal"
        else:
            subject = "all"
        c = NumericClaim(text=phrase.strip(), start=a, end=b + m.end(), kind="count", values=(float(v),),
                         keyword="beats", leads=(), subject=subject, sentence=(s0, s1))
        out.append(c)
    return out


def ordinal_claims(text: str, s0: int, s1: int, sentence: str) -> list[NumericClaim]:
    """'the 4th beat is premature', 'the third and seventh complexes are PVCs', 'beat 5 is paced'."""
    out: list[NumericClaim] = []
    hits: list[tuple[int, int, list[int]]] = []
    ords = ordinals(sentence)
    for k, (a, b, v) in enumerate(ords):
        m = _ORDINAL_NOUN.match(sentence[b:])
        if m is None:
            # "the third and seventh beats": the first ordinal of a pair takes the noun of the second
            nxt = ords[k + 1] if k + 1 < len(ords) else None
            if nxt is None or not re.match(r"^\s*(?:,|and|or)\s*(?:the\s+)?$", sentence[b:nxt[0]], re.I) or \
                    _ORDINAL_NOUN.match(sentence[nxt[1]:]) is None:
                continue
            hits.append((a, nxt[1] + _ORDINAL_NOUN.match(sentence[nxt[1]:]).end(), [v]))
            continue
        if v == 2 and re.match(r"^\s*degree", sentence[b:], re.I):
            continue
        hits.append((a, b + m.end(), [v]))
    for m in _BEAT_NUMBER.finditer(sentence):
        hits.append((m.start(), m.end(), [int(m.group("n"))]))
    for a, b, vs in hits:
        rest = sentence[b:]
        clause_end = re.search(r"[,;]\s+(?:and\s+)?(?:the|a|an|with|while|which)\b|$", rest)
        pred = rest[:clause_end.start()] if clause_end else rest
        pre = sentence[max(0, a - 40):a]
        subject = None
        if _ORD_PREMATURE.search(pred) or _ORD_PREMATURE.search(sentence[a:b]) or re.search(
                r"\b(?:PVC|PAC|premature|ectopic)\s+(?:is|was|occurs|appears|falls)\s+(?:as\s+)?(?:the\s+)?$", pre, re.I):
            subject = "premature"
        elif _PACED_CTX.search(pred) or _PACED_CTX.search(sentence[a:b]):
            subject = "paced"
        elif re.search(r"\b(?:normal|sinus|conducted)\b", pred, re.I):
            subject = "normal"
        negated = bool(_ORD_NEG.search(pred[:40]))
        for v in vs:
            out.append(NumericClaim(text=sentence[a:b].strip(), start=s0 + a, end=s0 + b, kind="ordinal",
                                    values=(float(v),), keyword="ordinal", leads=(), subject=subject,
                                    negated=negated, sentence=(s0, s1)))
    return out


# ------------------------------------------------------------------------------------------- grounding
def ground_count(claim: NumericClaim, idx) -> None:
    """A count against the beats table (``idx``: ``pipeline.grounding.MeasurementIndex``)."""
    rec = idx.record
    n_beats = len(idx.beat_class) or int(rec.get("n_beats") or 0)
    n_prem = sum(c == "premature" for c in idx.beat_class) if idx.beat_class else int(rec.get("n_premature") or 0)
    n_paced = sum(c == "paced" for c in idx.beat_class) if idx.beat_class else int(rec.get("n_paced") or 0)
    x = int(claim.values[0])
    subject = claim.subject or "all"
    if subject == "premature":
        ok, truth = x == n_prem, f"{n_prem} premature beat{'s' if n_prem != 1 else ''}"
    elif subject == "paced":
        ok, truth = x == n_paced, f"{n_paced} paced beat{'s' if n_paced != 1 else ''}"
    elif subject == "normal":
        n = n_beats - n_prem - n_paced
        ok, truth = abs(x - n) <= 1, f"{n} normal beats"
    else:  # a reader may count a beat cut at either edge of the strip
        ok, truth = abs(x - n_beats) <= 1, f"{n_beats} beats"
    claim.grounded = ok
    claim.matched = truth if ok else ""
    if not ok:
        claim.problem, claim.evidence = "ungrounded_number", f"measured: {truth}"


def ground_ordinal(claim: NumericClaim, idx) -> None:
    """'The 4th beat is premature': that beat exists and is of that class."""
    nb = len(idx.beat_class)
    k = int(claim.values[0])
    b = k - 1 if k > 0 else nb + k
    if not 0 <= b < nb:
        claim.problem, claim.evidence = "ungrounded_number", f"the strip has {nb} beats"
        return
    truth = idx.beat_class[b]
    if claim.subject in ("premature", "paced", "normal"):
        holds = (truth == claim.subject) != claim.negated
        if not holds:
            prem = [i + 1 for i, c in enumerate(idx.beat_class) if c == claim.subject]
            where = (f"{claim.subject} beats: {', '.join(_ordinal(i) for i in prem)}" if prem
                     else f"no {claim.subject} beat")
            claim.problem, claim.evidence = "ungrounded_number", f"beat {k} is {truth}; {where}"
            return
    claim.grounded, claim.matched = True, f"beat {b + 1} is {truth}"


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def ground_time(claim: NumericClaim, idx, config) -> None:
    """'at 2.22 s': a beat (of the class named, if any) whose QRS spans that time, within the tolerance and
    the precision written."""
    t = claim.values[0]
    step = (10.0 ** -claim.decimals) * claim.extra.get("unit_factor", 1000.0)
    tol = max(config.beat_time_tol_ms, step / 2.0)
    if claim.keyword == "time" and not idx.beat_span:
        claim.problem, claim.evidence = "ungrounded_number", "no beats measured"
        return
    best = None
    for b, (on, off) in enumerate(idx.beat_span):
        if not (math.isfinite(on) and math.isfinite(off)):
            continue
        p_on = idx.beat_p_on[b] if b < len(idx.beat_p_on) else None
        if p_on is not None and on - p_on < 400:
            on = p_on  # "a premature atrial beat at 4.1 s" may be read at its P wave
        cls_ok = claim.beat_class is None or idx.beat_class[b] == claim.beat_class
        d = 0.0 if on <= t <= off else min(abs(t - on), abs(t - off))
        if cls_ok and (best is None or d < best[0]):
            best = (d, b, on)
    if best is not None and best[0] <= tol:
        claim.grounded, claim.matched = True, f"beat {best[1] + 1} at {best[2] / 1000.0:.2f} s"
        return
    duration = idx.record.get("_duration_ms") or 0.0
    if claim.beat_class is None and abs(t - duration) <= tol:
        claim.grounded, claim.matched = True, "the end of the recording"
        return
    claim.problem = "ungrounded_number"
    claim.evidence = (f"closest {claim.beat_class or ''} beat starts at {best[2] / 1000.0:.2f} s".replace("  ", " ")
                      if best is not None else f"no {claim.beat_class or ''} beat".replace("  ", " "))
