"""Answer validation: the gate that keeps ungrounded interpretations out of the instruction set.

``validate_answer(answer, ctx, config, kb)`` checks one generated interpretation against the
``GroundingContext`` it was written for (the same object the prompt and the offline writer saw):

- form (``pipeline.answer_form``): one paragraph, at most ``max_words`` words (10 % slack), no lists / headings /
  markup, no reference to the hidden inputs in any paraphrase, no instructions to a model, no URLs or code, no "I
  cannot see the image" talk;
- leads: every lead named exists and was measured (not gated by the quality gate);
- numbers (``pipeline.claims`` + ``pipeline.grounding``): each number is parsed with the quantity its words
  name and matched only to measurements of that kind, in the leads named; signs count; a value within the
  tolerance but across a cut-off that decides one of the record's statements is rejected (``crosses_cutoff``);
  a value the context says may not be stated is rejected (``uncitable_value``); counts, ordinals and beat
  times are checked against the beats;
- words (``pipeline.consistency``): rate, rhythm, P waves, interval and axis words, polarity per lead and
  per territory, against the measurements, the record's statements and the one cut-off table;
- diagnoses (``pipeline.diagnoses``): every report statement is mentioned (not negated); nothing outside the
  report is diagnosed, whether the knowledge base knows the term or only the vocabulary does;
- evidence: at least ``min_grounded_numbers`` grounded measurements and ``min_leads_named`` leads
  (``no_evidence``).

The result carries stable reason codes (``REASONS``), human-readable details, metrics (numeric claims split
by kind) and ``feedback``: the text the generation loop appends to the prompt when it asks the LLM to try
again. Everything in the result is a function of the input alone: no set or hash order reaches the text.

``register(subparsers)`` adds ``ecg-grounding validate``, which validates a whole ``answers.parquet`` and
writes the GEM instruction set (see ``pipeline.instructions``).
"""
from __future__ import annotations

from functools import lru_cache

from pydantic import BaseModel, Field

from pipeline.answer_form import MAX_WORDS, MAX_WORDS_SLACK, check_form, count_words  # noqa: F401  (public names of this module)
from pipeline.answer_text import LeadMention, find_leads  # noqa: F401
from pipeline.claims import NumericClaim, extract_claims  # noqa: F401
from pipeline.consistency import check_evidence, check_statements, extract_statements
from pipeline.context import GroundingContext
from pipeline.diagnoses import (DESCRIPTIVE_IDS, DiagnosisCheck, check_diagnoses,  # noqa: F401
                                diagnosis_mentions, measurement_normal, measurement_supports)
from pipeline.grounding import MeasurementIndex, ground_claim

# Reason codes of a rejected answer, in one place so rejects files and summaries speak one language.
REASONS: dict[str, str] = {
    "empty_answer": "the answer is empty",
    "form_multiple_paragraphs": "the answer is not one paragraph",
    "form_too_long": "the answer has more words than allowed",
    "form_list": "the answer holds a list (bullets, numbered lines) or headings",
    "form_markdown": "the answer holds markdown or markup (bold, code, tables, <think> tags)",
    "leak_hidden_input": "the answer refers to the hidden inputs (report, notes, machine or given values)",
    "instructions_in_answer": "the answer holds text addressed to a model or program (role markers, 'ignore "
                              "previous instructions', URLs, code)",
    "image_missing_talk": "the answer claims the image is missing or cannot be seen",
    "ungrounded_number": "a number matches no measurement of its kind (and lead) in this record",
    "crosses_cutoff": "a number is within tolerance of the measurement but on the other side of a clinical cut-off",
    "uncitable_value": "the answer states a value that may not be cited for this record (uncalibrated amplitudes, "
                       "low confidence)",
    "lead_not_measured": "a lead named does not exist or was gated (not measured)",
    "contradicts_measurement": "a statement about rate, rhythm, P waves, intervals, axis or polarity contradicts "
                               "the measurements",
    "missing_diagnosis": "a report statement is not covered by the answer",
    "extra_diagnosis": "the answer diagnoses something the report does not say",
    "no_evidence": "the answer cites too few measurements or leads to be grounded",
}


def _reference_values(units: str) -> list[float]:
    return list(_reference_values_cached(units))


@lru_cache(maxsize=8)
def _reference_values_cached(units: str) -> tuple[float, ...]:
    """Every threshold and band edge of the cut-off table in ``units`` (both sexes): the standard cut-offs an
    answer may quote next to a comparator ("exceeding 120 ms") without stating a measurement."""
    from pipeline.cutoffs import cutoffs

    out: set[float] = set()
    for c in cutoffs().values():
        if c.units != units:
            continue
        if c.range is not None:
            out.update(float(v) for v in c.range)
        for v in (c.value, c.male, c.female, c.default):
            if v is not None:
                out.add(float(v))
        if units == "mV":
            out.update(abs(v) for v in list(out))
    return tuple(sorted(out))


class ValidationConfig(BaseModel):
    """Thresholds of the validator. Tolerances: a claim matches a value when
    ``|claim - value| <= max(abs_tol, frac_tol * |value|)``. Margins: how far from zero a measured wave must be
    before a polarity word about it is called false (measurement noise, not a clinical threshold)."""

    max_words: int = MAX_WORDS
    max_words_slack: float = MAX_WORDS_SLACK  # see pipeline.answer_form.MAX_WORDS
    interval_tol_ms: float = 10.0
    interval_tol_frac: float = 0.02
    rate_tol_bpm: float = 3.0
    rate_tol_frac: float = 0.03
    rate_hedge_bpm: float = 5.0  # "about 80 bpm" (hedged, a multiple of 5) may be 5 bpm off
    amp_tol_mv: float = 0.025
    amp_tol_frac: float = 0.10
    axis_tol_deg: float = 10.0
    beat_time_tol_ms: float = 40.0
    mm_per_mv: float = 10.0  # standard calibration: 10 mm per mV
    t_margin_mv: float = 0.05
    p_margin_mv: float = 0.03
    st_margin_mv: float = 0.03
    check_diagnoses: bool = True
    check_vocabulary: bool = True
    # issue 19: an answer must cite measurements to be grounded at all
    min_grounded_numbers: int = 2
    min_leads_named: int = 0
    # Standard clinical cut-offs an answer may quote next to a comparator, from knowledge/cutoffs.yaml
    # (units: ms, bpm, mV, degrees).
    reference_ms: list[float] = Field(default_factory=lambda: _reference_values("ms"))
    reference_bpm: list[float] = Field(default_factory=lambda: _reference_values("bpm"))
    reference_mv: list[float] = Field(default_factory=lambda: _reference_values("mV"))
    reference_deg: list[float] = Field(default_factory=lambda: _reference_values("deg"))


class ValidationMetrics(BaseModel):
    numeric_claims: int = 0        # checkable numbers (values, bounds, counts, beat times) checked
    numeric_grounded: int = 0      # of those, how many matched
    grounding_precision: float = 1.0
    diagnosis_recall: float = 1.0  # report statements covered / report statements
    diagnosis_precision: float = 1.0  # allowed diagnostic mentions / diagnostic mentions
    leads_named: int = 0           # distinct leads named (explicitly or through a region)
    leads_covered: int = 0         # distinct measured leads named
    words: int = 0
    claims_by_kind: dict[str, int] = Field(default_factory=dict)    # quantity -> numeric claims checked
    grounded_by_kind: dict[str, int] = Field(default_factory=dict)  # quantity -> of those, grounded
    qualitative_claims: int = 0    # word claims (rhythm, intervals, axis, polarity) read
    qualitative_contradicted: int = 0


class ValidationResult(BaseModel):
    accepted: bool
    reasons: list[str] = Field(default_factory=list)   # reason codes (REASONS keys), unique, in order found
    details: list[str] = Field(default_factory=list)   # one human-readable line per problem
    metrics: ValidationMetrics = Field(default_factory=ValidationMetrics)
    feedback: str = ""


_FEEDBACK_HINTS = {
    "empty_answer": "Write the interpretation.",
    "form_multiple_paragraphs": "Write exactly one paragraph, no line breaks.",
    "form_too_long": "Shorten the answer.",
    "form_list": "Do not use lists, numbered points or headings; write continuous prose.",
    "form_markdown": "Do not use markdown or tags; plain text only.",
    "leak_hidden_input": "Describe what the ECG shows as if read from the image; never mention a report, notes, "
                         "another reader's interpretation, machine measurements or values that were provided.",
    "instructions_in_answer": "Write only the interpretation: no instructions, role labels, links or code.",
    "image_missing_talk": "Interpret the ECG image directly; do not discuss whether the image is available.",
    "ungrounded_number": "Quote only values that match the measurements of this ECG (of that kind, in the lead you "
                         "name), or leave the number out.",
    "crosses_cutoff": "Quote values as measured: a rounded value must not move across a clinical cut-off.",
    "uncitable_value": "Do not state values that cannot be measured reliably on this ECG (for example amplitudes "
                       "in mV when the amplitudes are not calibrated).",
    "lead_not_measured": "Name only the 12 standard leads that were measured.",
    "contradicts_measurement": "Make rate, rhythm, P wave, interval, axis and polarity statements agree with the "
                               "measurements in the leads you name.",
    "missing_diagnosis": "Cover every diagnosis of this ECG.",
    "extra_diagnosis": "Do not add diagnoses beyond this ECG's findings.",
    "no_evidence": "Support the interpretation with measured values (intervals, rate, amplitudes) and name the "
                   "leads that show each finding.",
}


def _load_kb():
    from pipeline.knowledge import load_knowledge

    return load_knowledge()


_KB_CACHE: list = []
_VOCAB_CACHE: list = []


def default_knowledge():
    """The packaged knowledge base, loaded once per process."""
    if not _KB_CACHE:
        _KB_CACHE.append(_load_kb())
    return _KB_CACHE[0]


def default_vocabulary():
    """The packaged vocabulary of diagnostic terms outside the knowledge base (cached)."""
    from pipeline.vocabulary import load_vocabulary

    if not _VOCAB_CACHE:
        _VOCAB_CACHE.append(load_vocabulary())
    return _VOCAB_CACHE[0]


def _reference_map(config: ValidationConfig) -> dict[str, list[float]]:
    return {"ms": config.reference_ms, "bpm": config.reference_bpm, "mv": config.reference_mv,
            "deg": config.reference_deg}


def validate_answer(answer: str, ctx: GroundingContext, config: ValidationConfig | None = None,
                    kb=None) -> ValidationResult:
    """Validate one answer against its record's ``GroundingContext``.

    Numbers are compared in ms (intervals), bpm (rate), mV (amplitudes; mm converted at ``config.mm_per_mv``)
    and degrees (axes). ``kb`` is a ``pipeline.knowledge.KnowledgeBase``; ``None`` loads the packaged one.
    Returns a ``ValidationResult`` whose ``feedback`` is the retry instruction for an LLM.
    """
    config = config or ValidationConfig()
    answer = answer or ""
    problems: list[tuple[str, str]] = check_form(answer, config)
    metrics = ValidationMetrics(words=count_words(answer))
    if problems and problems[0][0] == "empty_answer":
        return _result(problems, metrics)
    if kb is None:
        kb = default_knowledge()

    # leads
    idx = MeasurementIndex.of(ctx)
    measured = idx.measured
    gated = ctx.gated_leads
    named: set[str] = set()
    for lm in find_leads(answer):
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
    refs = _reference_map(config)
    claims = extract_claims(answer, config)
    checked: list[NumericClaim] = []
    for claim in claims:
        ground_claim(claim, idx, ctx, config, kb, refs)
        if claim.reference:
            continue
        checked.append(claim)
        q = claim.quantity if claim.comparator is None else f"bound_{claim.quantity}"
        metrics.claims_by_kind[q] = metrics.claims_by_kind.get(q, 0) + 1
        metrics.grounded_by_kind[q] = metrics.grounded_by_kind.get(q, 0) + int(claim.grounded)
        if claim.grounded:
            continue
        where = f" in {', '.join(claim.leads)}" if claim.leads and claim.kind in ("ms", "mv") else ""
        about = _about(claim)
        if claim.problem == "bound":
            problems.append(("contradicts_measurement", f"{claim.text!r} ({about}{where}) states a bound the "
                             f"measurement does not meet: {claim.evidence}"))
        elif claim.problem == "uncitable_value":
            problems.append(("uncitable_value", f"{claim.text!r} ({about}{where}): {claim.evidence}"))
        elif claim.problem == "crosses_cutoff":
            problems.append(("crosses_cutoff", f"{claim.text!r} ({about}{where}) is across a cut-off from the "
                             f"measurement: {claim.evidence}"))
        else:
            problems.append(("ungrounded_number", f"{claim.text!r} ({about}{where}) matches no measurement of "
                             f"that kind: {claim.evidence}"))
    metrics.numeric_claims = len(checked)
    metrics.numeric_grounded = sum(c.grounded for c in checked)
    metrics.grounding_precision = 1.0 if not checked else metrics.numeric_grounded / len(checked)
    metrics.claims_by_kind = dict(sorted(metrics.claims_by_kind.items()))
    metrics.grounded_by_kind = dict(sorted(metrics.grounded_by_kind.items()))

    # words: rate, rhythm, P waves, intervals, axis, polarity; numbers cited as evidence of a diagnosis
    statements = extract_statements(answer)
    metrics.qualitative_claims = len(statements)
    for p in check_statements(answer, ctx, config, kb, statements):
        metrics.qualitative_contradicted += 1
        problems.append((p.code, p.detail))
    vocab = default_vocabulary() if config.check_vocabulary else None
    kb_mentions, voc_mentions = diagnosis_mentions(answer, kb, vocab)
    for detail in check_evidence(answer, [c for c in checked if c.grounded], kb_mentions, ctx, kb):
        metrics.qualitative_contradicted += 1
        problems.append(("contradicts_measurement", detail))

    # diagnoses
    if config.check_diagnoses:
        dx = check_diagnoses(answer, ctx, kb, vocab, mentions=(kb_mentions, voc_mentions))
        metrics.diagnosis_recall, metrics.diagnosis_precision = dx.recall, dx.precision
        for s in dx.missing:
            problems.append(("missing_diagnosis", f"the answer does not state {_entry_name(kb, s)!r}"))
        for s in dx.denied:
            if s not in dx.missing:
                problems.append(("missing_diagnosis", f"the answer denies {_entry_name(kb, s)!r}, a finding of this "
                                 "ECG"))
        for s in dx.extra:
            problems.append(("extra_diagnosis", f"{_entry_name(kb, s)!r} is not among this ECG's findings"))
        for t in dx.extra_terms:
            problems.append(("extra_diagnosis", f"{vocab.terms[t].name!r} is not among this ECG's findings"))

    # evidence (issue 19): a grounded answer cites measurements and names leads
    if metrics.numeric_grounded < config.min_grounded_numbers or metrics.leads_named < config.min_leads_named:
        problems.append(("no_evidence", f"{metrics.numeric_grounded} grounded measurement(s) and "
                         f"{metrics.leads_named} lead(s) named; at least {config.min_grounded_numbers} and "
                         f"{config.min_leads_named} are needed"))
    return _result(problems, metrics)


def _about(claim: NumericClaim) -> str:
    return claim.quantity.replace("_", " ")


def _entry_name(kb, entry_id: str) -> str:
    entry = kb.entries.get(entry_id)
    return getattr(entry, "name", None) or entry_id


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


def check_contradictions(answer: str, ctx: GroundingContext, config: ValidationConfig | None = None,
                         kb=None) -> list[str]:
    """Details of the word claims of ``answer`` that contradict ``ctx``'s measurements (empty when none)."""
    return [p.detail for p in check_statements(answer, ctx, config or ValidationConfig(), kb or default_knowledge())]


# --------------------------------------------------------------------------------------------------- CLI
def register(subparsers) -> None:
    """Add ``ecg-grounding validate``: validate answers.parquet and write the GEM instruction set."""
    from pipeline.batch import DEFAULT_CHUNK_SIZE
    from pipeline.preflight import fraction, nonneg_int, positive_int

    p = subparsers.add_parser(
        "validate", help="validate answers and write the GEM instruction set",
        description="Check every generated answer against its record's measurements and report (form, numbers "
                    "with unit and lead, leads, contradictions, diagnosis coverage and precision) and write the "
                    "accepted ones as GEM's JSON: {train,test}-NNNNN.json shards split by patient, "
                    "provenance.parquet, rejects.parquet and summary.json, all directly in OUT.\n\n"
                    "example:\n  ecg-grounding validate --answers outputs/ptbxl/generate/answers.parquet \\\n"
                    "      --features outputs/ptbxl/features --manifest outputs/ptbxl/manifest.parquet \\\n"
                    "      --images outputs/ptbxl/images --prompts outputs/ptbxl/prompts/prompts.parquet \\\n"
                    "      --out outputs/ptbxl/instructions")
    p.add_argument("--answers", required=True, help="answers.parquet written by `generate`")
    p.add_argument("--features", required=True, help="features folder (records / beats tables or shard folders)")
    p.add_argument("--manifest", required=True, help="manifest.parquet written by `ingest`")
    p.add_argument("--images", default=None, help="images folder (<record_id>.png)")
    p.add_argument("--prompts", default=None, help="prompts.parquet (prompt hash, template version)")
    p.add_argument("--out", required=True,
                   help="instruction-set folder: the JSON shards, provenance.parquet, rejects.parquet and "
                        "summary.json are written directly into it (a run uses RUN/instructions)")
    p.add_argument("--test-fraction", type=fraction, default=0.1, help="share of patients in the test split")
    p.add_argument("--shard-size", type=positive_int, default=5000, help="items per JSON shard")
    p.add_argument("--seed", type=nonneg_int, default=0, help="seed of the question phrasing draw")
    p.add_argument("--max-words", type=positive_int, default=MAX_WORDS,
                   help="the length asked for; answers up to 10 %% longer pass (default %(default)s)")
    p.add_argument("--min-grounded-numbers", type=nonneg_int, default=ValidationConfig().min_grounded_numbers,
                   help="grounded measurements an answer must cite (no_evidence below; default %(default)s)")
    p.add_argument("--min-leads-named", type=nonneg_int, default=ValidationConfig().min_leads_named,
                   help="leads an answer must name (no_evidence below; default %(default)s)")
    p.add_argument("--chunk-size", type=positive_int, default=DEFAULT_CHUNK_SIZE,
                   help="records validated per chunk (default %(default)s)")
    p.add_argument("--conflicts", choices=("keep", "drop"), default="keep",
                   help="records whose measurements contradict a report statement: keep them, flagged in the "
                        "provenance (default), or drop them from the set")
    p.set_defaults(func=_run_cli)


def _run_cli(args) -> int:
    from pathlib import Path

    from pipeline.batch import Failures
    from pipeline.cli import finish
    from pipeline.inputs import check_validate_inputs
    from pipeline.instructions import build_instruction_set, format_summary
    from pipeline.preflight import check_out

    check_out(args.out)
    check_validate_inputs(args.answers, args.features, args.manifest, args.prompts, args.images)
    config = ValidationConfig(max_words=args.max_words, min_grounded_numbers=args.min_grounded_numbers,
                              min_leads_named=args.min_leads_named)
    summary = build_instruction_set(
        answers=args.answers, features=args.features, manifest=args.manifest, images=args.images,
        prompts=args.prompts, out=args.out, test_fraction=args.test_fraction, shard_size=args.shard_size,
        seed=args.seed, config=config, chunk_size=args.chunk_size, conflicts=args.conflicts)
    # records that could not be validated at all fail; answers the validator rejects are its verdict, listed
    # with their reasons in rejects.parquet (the acceptance rate says how many)
    lost = [(code, summary.get(code) or 0) for code in ("no_answer", "no_context")]
    lost = [(c, n) for c, n in lost if n]
    failures = Failures(n_failed=sum(n for _, n in lost), by_code=lost, stages={c: ["validate"] for c, _ in lost},
                        tables=[str(Path(args.out) / "summary.json")] if lost else [])
    return finish(args, summary, format_summary(summary), failures)
