"""Figures of an interpretation that the writer's benchmark and tests measure (and that any answer can be held to):
words, distinct leads named, topics discussed, sentences whose numbers argue against the diagnosis they sit next
to, and the variety of a set of answers.

- ``leads_named(text)``: the 12 standard leads named explicitly ('lead II', 'V1-V3', 'aVF'); region words such
  as 'inferior' do not count here;
- ``topics(text, ctx)``: rhythm, rate, axis, PR (only asked when the record has P waves), QRS, QT/QTc, P wave,
  ST and T, each discussed or not;
- ``refuting_sentences(text, ctx, kb)``: sentences that name a diagnosis (through the knowledge base) and cite a
  value of a feature that diagnosis has criteria on, where the value meets none of them ('incomplete LBBB with a
  QRS of 94 ms');
- ``distinct_4gram_share(texts)``: distinct word 4-grams over all 4-grams of the answers (1.0: no phrase
  repeats).
"""
from __future__ import annotations

import re

TOPICS = ("rhythm", "rate", "axis", "pr", "qrs", "qt", "p_wave", "st", "t_wave")
_TOPIC_RE = {
    "rhythm": re.compile(r"\brhythm\b|\bfibrillation\b|\bflutter\b|\bpaced\b", re.I),
    "rate": re.compile(r"\brate\b|\bbpm\b", re.I),
    "axis": re.compile(r"\baxis\b", re.I),
    "pr": re.compile(r"\bPR\b"),
    "qrs": re.compile(r"\bQRS\b"),
    "qt": re.compile(r"\bQTc?\b"),
    "p_wave": re.compile(r"\bP[- ]waves?\b"),
    "st": re.compile(r"\bST\b|\bJ[- ]point\b"),
    "t_wave": re.compile(r"\bT[- ]waves?\b"),
}
# measurement keyword of a claim (pipeline.validate.extract_claims) -> the columns it may be a value of
_CLAIM_COLUMNS = {
    "ms": {"pr": ["pr_ms"], "qrs": ["qrs_ms"], "qt": ["qt_ms"], "qtc": ["qtc_bazett_ms", "qtc_fridericia_ms"],
           "rr": ["rr_ms", "rr_mean_ms"], "p_wave": ["p_ms", "ptf_v1_ms"], "q_wave": ["q_ms"], "s_wave": ["s_ms"],
           "r_wave": ["r_ms"]},
    "bpm": {"rate": ["hr_bpm"]},
    "deg": {"axis": ["qrs_axis_deg"]},
    "mv": {"st": ["st_j_mv", "st_j60_mv"], "t_wave": ["t_amp_mv"], "p_wave": ["p_amp_mv", "ptf_v1_depth_mv"],
           "q_wave": ["q_amp_mv"],
           "r_wave": ["r_amp_mv"], "r_prime": ["r_prime_amp_mv"], "s_wave": ["s_amp_mv"],
           "sokolow": ["sokolow_lyon_mv"], "cornell": ["cornell_mv"], "voltage": ["sokolow_lyon_mv", "cornell_mv"],
           "qrs_amp": ["sokolow_lyon_mv", "cornell_mv"]},
}
_DEPTH_COLUMNS = {"q_amp_mv", "s_amp_mv"}
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def words(text: str) -> int:
    return len(text.split())


def leads_named(text: str) -> set[str]:
    """Standard leads named explicitly in ``text`` (the validator's lead finder, region words left out)."""
    from pipeline.validate import find_leads

    return {lead for m in find_leads(text) if m.explicit and not m.invalid for lead in m.leads}


def topics(text: str, ctx=None) -> dict[str, bool | None]:
    """Which topics ``text`` discusses; PR is None (not asked) for a record without P waves."""
    out: dict[str, bool | None] = {t: bool(_TOPIC_RE[t].search(text)) for t in TOPICS}
    if ctx is not None and (ctx.record or {}).get("p_waves_present") is not True:
        out["pr"] = None
    return out


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE.split(text) if s.strip()]


def refuting_sentences(text: str, ctx, kb) -> list[tuple[str, str, str]]:
    """(sentence, diagnosis id, number) for every number that fails all the criteria its sentence's diagnosis puts
    on that measurement. Judged through the knowledge base, with the record's sex for sex-specific cut-offs."""
    from pipeline.validate import extract_claims

    sex = (ctx.extra or {}).get("sex")
    out = []
    for sentence in sentences(text):
        ids = {m.entry_id for m in kb.find_mentions(sentence) if not m.negated}
        if not ids:
            continue
        for claim in extract_claims(sentence):
            if getattr(claim, "reference", False) or len(claim.values) != 1:
                continue
            cols = _CLAIM_COLUMNS.get(claim.kind, {}).get(claim.keyword or "", [])
            for sid in ids:
                entry = kb.entries[sid]
                tests = []
                for crit in entry.criteria:
                    if crit.feature not in cols:
                        continue
                    value = claim.values[0]
                    if crit.feature in _DEPTH_COLUMNS:
                        value = -abs(value)
                    if crit.scope == "lead":
                        look = crit.leads or entry.leads_to_look_at
                        if claim.leads and look and not set(claim.leads) & set(look):
                            continue
                    tests.append(crit.test(value, sex))
                if tests and not any(tests) and any(t is False for t in tests):
                    out.append((sentence, sid, claim.text))
    return out


def distinct_4gram_share(texts: list[str]) -> float:
    """Distinct word 4-grams / all word 4-grams over ``texts`` (lower case, numbers kept)."""
    grams = []
    for t in texts:
        w = re.findall(r"[\w'+-]+", t.lower())
        grams.extend(tuple(w[i:i + 4]) for i in range(len(w) - 3))
    return len(set(grams)) / len(grams) if grams else 1.0
