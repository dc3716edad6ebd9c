"""The validator against wrong and true answers built from real and synthetic records' own measurements.

``tests/validator_mutations.py`` builds them: from every base answer the validator accepts (the rules writer's,
and a second composer with other phrasings) it derives wrong answers of every class the validator must catch
(a number of another kind, a single beat's rate in AF, ST levels moved or flipped, rhythm and P-wave words in
AF, polarity per lead and territory, a QTc of another formula, interval / axis / rate words against the
cut-off table, diagnoses outside the report and outside the knowledge base, values across a cut-off,
counts / ordinals / beat times, leak paraphrases, instructions, no evidence, uncitable LUDB amplitudes, leads
that do not exist) and true variants (qualitative truths, counts, beat times, bounds, negated foreign
diagnoses, unit conversions).

Done when (issue 12): >= 400 wrong answers, >= 98 % of them rejected with the right reason code; >= 100 true
answers, <= 1 % of them rejected.
"""
from __future__ import annotations

from collections import Counter

import pytest

from conftest import shared_path
from pipeline.context import measure_context
from pipeline.knowledge import load_knowledge
from pipeline.validate import ValidationConfig, validate_answer
from pipeline.vocabulary import load_vocabulary
from pipeline.writer import write_answer
from validator_mutations import build_cases

WRONG_CLASSES = {"kind", "rate_irregular", "st_level", "rhythm_words", "polarity", "territory", "qtc_formula",
                 "interval_words", "axis_words", "rate_words", "dx_vocabulary", "dx_knowledge", "cutoff", "count",
                 "ordinal", "beat_time", "leak", "injection", "no_evidence", "uncitable", "lead_swap", "value_shift",
                 "value_at_cutoff", "bad_lead"}


@pytest.fixture(scope="module")
def kb():
    return load_knowledge()


@pytest.fixture(scope="module")
def contexts(tmp_path_factory, kb):
    from pipeline.sources import open_source
    from pipeline.synthetic import write_synthetic_tree

    root = write_synthetic_tree(tmp_path_factory.mktemp("synthetic"), 40, 12012)
    sources = [open_source("synthetic", root),
               open_source("ptbxl", shared_path("data", "ptbxl")),
               open_source("ludb", shared_path("data", "ludb")),
               open_source("wfdb", shared_path("data", "cinc2021"))]
    return [measure_context(src.read(rid), kb=kb) for src in sources for rid in src.ids()]


@pytest.fixture(scope="module")
def outcomes(contexts, kb):
    vocab = load_vocabulary()
    by_id = {c.record_id: c for c in contexts}
    cases = build_cases(contexts, kb, vocab, lambda a, c: validate_answer(a, c, kb=kb), write_answer, seed=0)
    out = []
    # cases append sentences to full writer answers (up to 300 words): their length is not what is tested
    room = ValidationConfig(max_words=400)
    for case in cases:
        res = validate_answer(case.answer, by_id[case.record_id], room, kb=kb)
        out.append((case, res))
    return out


def _report(rows) -> str:
    return "\n".join(f"{c.cls} {c.record_id} expected {c.expected} got {r.reasons}: {c.answer[-200:]!r} "
                     f"{r.details[:2]}" for c, r in rows[:15])


def test_wrong_answers_are_rejected_with_the_right_reason(outcomes):
    wrong = [(c, r) for c, r in outcomes if c.expected is not None]
    assert len(wrong) >= 400
    assert {c.cls for c, _ in wrong} >= WRONG_CLASSES, WRONG_CLASSES - {c.cls for c, _ in wrong}
    missed = [(c, r) for c, r in wrong if c.expected not in r.reasons]
    rate = 1 - len(missed) / len(wrong)
    assert rate >= 0.98, f"{rate:.3f} rejected with the right code\n" + _report(missed)
    # no class may hide behind the others
    per_class = Counter(c.cls for c, _ in wrong)
    per_class_missed = Counter(c.cls for c, _ in missed)
    for cls, n in per_class.items():
        assert per_class_missed[cls] <= max(1, 0.05 * n), (cls, per_class_missed[cls], n,
                                                           _report([x for x in missed if x[0].cls == cls]))


def test_true_answers_pass(outcomes):
    true = [(c, r) for c, r in outcomes if c.expected is None]
    assert len(true) >= 100
    assert {c.cls for c, _ in true} >= {"true_writer", "true_composed", "true_appended"}
    rejected = [(c, r) for c, r in true if not r.accepted]
    assert len(rejected) <= 0.01 * len(true), _report(rejected)


def test_every_source_contributes(outcomes, contexts):
    """Mutations come from synthetic and every shared source (LUDB's through the composer: its amplitudes are
    normalised, so the writer's millivolts there are uncitable)."""
    sources = {c.record_id: c.source for c in contexts}
    seen = Counter(sources[c.record_id] for c, _ in outcomes if c.expected is not None)
    assert set(seen) >= {"synthetic", "ptbxl", "ludb", "wfdb"}, seen
