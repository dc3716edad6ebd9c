"""Judge-free scores of one free-text ECG interpretation against what the run knows about its record.

Every score is offline and deterministic, and reuses the validator's readers (``pipeline.validate``,
``pipeline.diagnoses``, ``pipeline.claims``, ``pipeline.answer_text``) instead of parsing text again:

- diagnoses (``diagnosis_precision`` / ``_recall`` / ``_f1``): the diagnoses the text names (knowledge-base
  and vocabulary mentions, negation-aware; "QTc within normal limits" is not "normal ECG") against the
  statements of the record's report. Recall: report statements named (through ``implies``: "complete RBBB"
  names RBBB) / report statements. Precision: distinct diagnoses named that the report states, implies or
  relates, or that the measurements alone support (descriptive findings such as "normal axis") / distinct
  diagnoses named. ``hallucinated``: the rest (knowledge ids and vocabulary terms);
- ``grounding_precision``: the validator's typed numeric claims matched to this record's measurements
  (grounded / checked; quoted cut-offs are not claims);
- ``lead_coverage``: distinct standard leads named explicitly / 12;
- ``completeness``: share of the nine components a reading covers (rhythm, rate, axis, PR, QRS, QT, P, ST, T);
- ``words`` and ``rouge_l`` (ROUGE-L F1 on lower-cased alphanumeric tokens, as the ``rouge-score`` package's
  default tokenizer, no stemming) against the reference answer;
- ``expert_*``: where the record carries expert fiducials (LUDB), every PR / QRS / QT the text cites against
  the experts' value (median over leads of each lead's median interval, as ``shared/tools/cited_truth.py``),
  within 20 / 20 / 30 ms; heart rate within 5 bpm, counted apart.

A score a record cannot have (no numbers cited, no reference answer, no experts) is None and left out of the
means; ``metrics.json`` says how many records each score covers.
"""
from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field

from pipeline.context import GroundingContext

N_LEADS = 12
# shared/tools/cited_truth.py's tolerances: a cited interval is true within these of the experts' value
EXPERT_TOL = {"PR": 20.0, "QRS": 20.0, "QT": 30.0, "HR": 5.0}
_EXPERT_QUANTITY = {"pr_interval": "PR", "qrs_duration": "QRS", "qt_interval": "QT", "heart_rate": "HR"}


@dataclass
class Reference:
    """One prediction's record as the run knows it."""

    item_id: str
    record_id: str
    ctx: GroundingContext
    answer: str | None = None          # the accepted reference answer (GEM's gpt turn); None when none
    split: str | None = None           # train | test when the record is in the instruction set
    expert: dict[str, float | None] | None = None   # expert PR / QRS / QT / HR (LUDB), ms and bpm


@dataclass
class RecordScores:
    words: int = 0
    rouge_l: float | None = None
    n_statements: int = 0
    n_named: int = 0
    diagnosis_precision: float | None = None
    diagnosis_recall: float | None = None
    diagnosis_f1: float | None = None
    named: list[str] = field(default_factory=list)          # diagnoses named (knowledge ids, vocabulary ids)
    missing: list[str] = field(default_factory=list)        # report statements not named
    hallucinated: list[str] = field(default_factory=list)   # named, outside the report and the measurements
    numeric_claims: int = 0
    numeric_grounded: int = 0
    grounding_precision: float | None = None
    ungrounded: list[str] = field(default_factory=list)     # the validator's details of failed numbers
    claims_by_kind: dict[str, int] = field(default_factory=dict)    # quantity -> numbers checked (validator)
    grounded_by_kind: dict[str, int] = field(default_factory=dict)  # quantity -> of those, grounded
    leads_named: list[str] = field(default_factory=list)
    lead_coverage: float = 0.0
    topics: list[str] = field(default_factory=list)
    completeness: float = 0.0
    validator_accepted: bool = False
    validator_reasons: list[str] = field(default_factory=list)
    expert_cited: int = 0
    expert_within: int = 0
    expert_truth: float | None = None
    expert_hr_cited: int = 0
    expert_hr_within: int = 0
    expert_misses: list[str] = field(default_factory=list)
    truth_ids: list[str] = field(default_factory=list)      # closure of the report's statements
    pred_ids: list[str] = field(default_factory=list)       # closure of the diagnoses named


# ------------------------------------------------------------------------------------------------ ROUGE-L
_TOKEN = re.compile(r"[a-z0-9]+")


def rouge_tokens(text: str) -> list[str]:
    return _TOKEN.findall((text or "").lower())


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of two token lists.

    Bit-parallel (Hyyro 2004): one big-integer update per token of ``a``, ``len(a) * len(b) / 64`` word
    operations instead of the ``len(a) * len(b)`` steps of the dynamic programme (300-word answers: ~2 ms)."""
    if not a or not b:
        return 0
    masks: dict[str, int] = {}
    for j, tok in enumerate(b):
        masks[tok] = masks.get(tok, 0) | (1 << j)
    full = (1 << len(b)) - 1
    v = full
    for tok in a:
        u = v & masks.get(tok, 0)
        v = ((v + u) | (v - u)) & full
    return len(b) - bin(v).count("1")


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 (beta = 1) of ``candidate`` against ``reference``."""
    c, r = rouge_tokens(candidate), rouge_tokens(reference)
    lcs = lcs_length(c, r)
    if lcs == 0:
        return 0.0
    p, rec = lcs / len(c), lcs / len(r)
    return 2 * p * rec / (p + rec)


# ---------------------------------------------------------------------------------------------- completeness
TOPICS: tuple[str, ...] = ("rhythm", "rate", "axis", "PR", "QRS", "QT", "P", "ST", "T")
# The validator's quantity lexicon (pipeline.claims.find_quantities) names most components; these words add
# what it leaves out (rhythm names, rate words, a component named without a quantity word).
_TOPIC_QUANTITIES = {"rate": {"rate"}, "axis": {"axis", "p_axis", "t_axis"}, "PR": {"pr", "pr_segment"},
                     "QRS": {"qrs"}, "QT": {"qt", "qtc", "qt_dispersion"}, "P": {"p_wave"},
                     "ST": {"st", "st_j", "st_j60"}, "T": {"t_wave"}}
_TOPIC_WORDS = {
    "rhythm": re.compile(r"\brhythms?\b|\bsinus\b|\bfibrillation\b|\bflutter\b|\bpac(?:ed|ing|emaker)\b|"
                         r"\bjunctional\b|\bectopic\b|\bpremature\b|\bextrasystol|\b(?:ir)?regular(?:ly)?\b|"
                         r"\barrhythmi", re.I),
    "rate": re.compile(r"\bbpm\b|\bbeats? (?:per|/) ?min|\btachycardi|\bbradycardi", re.I),
    "axis": re.compile(r"\baxis\b|\baxes\b", re.I),
    "PR": re.compile(r"\bP-?R\b|\bPQ\b|\bAV (?:block|conduction)\b|\batrioventricular (?:block|conduction)\b"),
    "QRS": re.compile(r"\bQRS\b|\bbundle branch block\b|\b[LR]BBB\b|\bintraventricular conduction\b", re.I),
    "QT": re.compile(r"\bQTc?\b"),
    "P": re.compile(r"\bP[- ]?waves?\b|\bP (?:duration|amplitude|axis)\b|\bno P\b"),
    "ST": re.compile(r"\bS-?T\b|\bJ[- ]point\b"),
    "T": re.compile(r"\bT[- ]?waves?\b|\bT (?:inversion|amplitude|axis)\b|\binverted T\b"),
}


def topics_covered(text: str, kb=None) -> list[str]:
    """The components of ``TOPICS`` that ``text`` addresses (any mention, affirmed or denied: "no P waves"
    addresses the P wave)."""
    from pipeline.claims import find_quantities

    names = {q.name for q in find_quantities(text)}
    rhythm_named = False
    if kb is not None:
        rhythm_named = any(kb.entries[m.entry_id].category == "rhythm" for m in kb.find_mentions(text))
    out = []
    for topic in TOPICS:
        hit = bool(names & _TOPIC_QUANTITIES.get(topic, set())) or bool(_TOPIC_WORDS[topic].search(text))
        if topic == "rhythm":
            hit = hit or rhythm_named
        if hit:
            out.append(topic)
    return out


# ------------------------------------------------------------------------------------------------ diagnoses
def named_diagnoses(text: str, kb, vocab=None) -> tuple[list[str], list[str]]:
    """(knowledge ids, vocabulary ids) that ``text`` names and does not negate, in order of first mention.
    "within normal limits" after a measurement is not the diagnosis "normal ECG"."""
    from pipeline.diagnoses import diagnosis_mentions, measurement_normal

    kb_m, voc_m = diagnosis_mentions(text, kb, vocab)
    kb_ids = [m.entry_id for m in kb_m if not m.negated and not measurement_normal(text, m)]
    voc_ids = [m.entry_id for m in voc_m if not m.negated]
    return list(dict.fromkeys(kb_ids)), list(dict.fromkeys(voc_ids))


@dataclass
class DiagnosisScores:
    precision: float | None
    recall: float | None
    f1: float | None
    named: list[str]
    missing: list[str]
    hallucinated: list[str]
    n_statements: int
    truth_ids: list[str]
    pred_ids: list[str]


def score_diagnoses(text: str, ctx: GroundingContext, kb, vocab=None) -> DiagnosisScores:
    """Diagnoses of ``text`` against ``ctx``'s report statements (see the module doc)."""
    from pipeline.diagnoses import measurement_supports

    kb_ids, voc_ids = named_diagnoses(text, kb, vocab)
    statements = list(dict.fromkeys(ctx.statement_ids))
    stated = kb.closure(kb_ids)
    missing = [s for s in statements if s not in stated]
    allowed = kb.permitted(statements)
    truth = kb.closure(statements)
    hallucinated = [i for i in kb_ids if i not in allowed and not measurement_supports(i, ctx, kb)]
    hallucinated += [t for t in voc_ids if not vocab.permitted(t, truth)]
    n_named = len(kb_ids) + len(voc_ids)
    recall = (len(statements) - len(missing)) / len(statements) if statements else None
    precision = (n_named - len(hallucinated)) / n_named if n_named else None
    # F1 of a record: an undefined side is vacuous (nothing to find / nothing claimed), so it counts as 1;
    # a record with neither is agreement on "nothing to diagnose"
    p = 1.0 if precision is None else precision
    r = 1.0 if recall is None else recall
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return DiagnosisScores(precision, recall, f1, kb_ids + voc_ids, missing, hallucinated, len(statements),
                           sorted(truth), sorted(stated))


# ----------------------------------------------------------------------------------------------- experts
def expert_intervals(reference) -> dict[str, float | None] | None:
    """Experts' record PR / QRS / QT (ms) and heart rate (bpm) from ``RecordMeta.reference`` (kind
    ``ludb_expert``), computed as ``shared/tools/cited_truth.py`` does: per lead, the median over its QRS
    complexes of the interval (PR from the onset of the last P peaking < 400 ms before the R peak, QT to the
    end of the first T peaking < 600 ms after it); the record's value is the median over leads. Heart rate:
    60000 / mean RR of lead II's annotated R peaks. None when the record has no expert fiducials."""
    if reference is None or getattr(reference, "kind", None) != "ludb_expert" or not reference.waves:
        return None
    per: dict[str, list[float]] = {"PR": [], "QRS": [], "QT": []}
    rpeaks: list[float] = []
    by_lead: dict[str, list] = {}
    for w in reference.waves:
        by_lead.setdefault(w.lead, []).append(w)
    for lead, waves in by_lead.items():
        waves = sorted((w for w in waves if w.peak_ms is not None), key=lambda w: w.peak_ms)
        qrs = [w for w in waves if w.wave == "QRS"]
        if lead == "II":
            rpeaks = [w.peak_ms for w in qrs]
        prs, qrss, qts = [], [], []
        for q in qrs:
            if q.on_ms is None:
                continue
            ps = [w for w in waves if w.wave == "P" and w.peak_ms < q.peak_ms and q.peak_ms - w.peak_ms < 400
                  and w.on_ms is not None]
            if ps:
                prs.append(q.on_ms - ps[-1].on_ms)
            if q.off_ms is not None:
                qrss.append(q.off_ms - q.on_ms)
            ts = [w for w in waves if w.wave == "T" and w.peak_ms > q.peak_ms and w.peak_ms - q.peak_ms < 600
                  and w.off_ms is not None]
            if ts:
                qts.append(ts[0].off_ms - q.on_ms)
        for k, v in (("PR", prs), ("QRS", qrss), ("QT", qts)):
            if v:
                per[k].append(statistics.median(v))
    out: dict[str, float | None] = {k: (float(statistics.median(v)) if v else None) for k, v in per.items()}
    out["HR"] = 60000.0 / statistics.mean(b - a for a, b in zip(rpeaks, rpeaks[1:])) if len(rpeaks) > 1 else None
    return out


def cited_against_experts(text: str, expert: dict[str, float | None]) -> tuple[list[tuple[str, float, float]], ...]:
    """(interval hits, interval misses, rate hits, rate misses): each (kind, cited, expert) for every PR / QRS /
    QT / heart rate the validator's claim reader finds in ``text`` as a plain value (no bound, no quoted norm,
    not about premature or paced beats)."""
    from pipeline.claims import extract_claims

    hits, misses, hr_hits, hr_misses = [], [], [], []
    for c in extract_claims(text):
        kind = _EXPERT_QUANTITY.get(c.quantity)
        if kind is None or len(c.values) != 1 or c.comparator is not None or c.reference_ctx or c.beat_class:
            continue
        truth = expert.get(kind)
        if truth is None:
            continue
        row = (kind, float(c.values[0]), float(truth))
        ok = abs(row[1] - row[2]) <= EXPERT_TOL[kind]
        if kind == "HR":
            (hr_hits if ok else hr_misses).append(row)
        else:
            (hits if ok else misses).append(row)
    return hits, misses, hr_hits, hr_misses


# ----------------------------------------------------------------------------------------------- one record
def score_record(text: str, ref: Reference, kb, vocab=None, config=None) -> RecordScores:
    """Every judge-free score of ``text`` as an interpretation of ``ref``'s record."""
    from pipeline.answer_text import find_leads
    from pipeline.validate import count_words, validate_answer

    text = text or ""
    s = RecordScores(words=count_words(text))
    if ref.answer is not None:
        s.rouge_l = rouge_l(text, ref.answer)
    dx = score_diagnoses(text, ref.ctx, kb, vocab)
    s.diagnosis_precision, s.diagnosis_recall, s.diagnosis_f1 = dx.precision, dx.recall, dx.f1
    s.named, s.missing, s.hallucinated = dx.named, dx.missing, dx.hallucinated
    s.n_statements, s.n_named = dx.n_statements, len(dx.named)
    s.truth_ids, s.pred_ids = dx.truth_ids, dx.pred_ids

    res = validate_answer(text, ref.ctx, config, kb)
    m = res.metrics
    s.numeric_claims, s.numeric_grounded = m.numeric_claims, m.numeric_grounded
    s.grounding_precision = m.numeric_grounded / m.numeric_claims if m.numeric_claims else None
    s.ungrounded = [d for d in res.details if d.startswith(("ungrounded_number", "crosses_cutoff", "uncitable_value"))]
    s.validator_accepted, s.validator_reasons = res.accepted, list(res.reasons)
    s.claims_by_kind, s.grounded_by_kind = dict(m.claims_by_kind), dict(m.grounded_by_kind)

    leads = {lead for lm in find_leads(text) if lm.explicit and not lm.invalid for lead in lm.leads}
    from pipeline.record import LEADS

    s.leads_named = [lead for lead in LEADS if lead in leads]
    s.lead_coverage = len(s.leads_named) / N_LEADS
    s.topics = topics_covered(text, kb)
    s.completeness = len(s.topics) / len(TOPICS)

    if ref.expert:
        hits, misses, hr_hits, hr_misses = cited_against_experts(text, ref.expert)
        s.expert_cited, s.expert_within = len(hits) + len(misses), len(hits)
        s.expert_truth = s.expert_within / s.expert_cited if s.expert_cited else None
        s.expert_hr_cited, s.expert_hr_within = len(hr_hits) + len(hr_misses), len(hr_hits)
        s.expert_misses = [f"{k} cited {v:g}, experts {t:.0f}" for k, v, t in misses + hr_misses]
    return s
