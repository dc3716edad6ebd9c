"""knowledge/vocabulary.yaml: diagnostic terms outside the knowledge base, found in free text with negation."""
from __future__ import annotations

import pytest

from pipeline.knowledge import _phrase_key, load_knowledge
from pipeline.vocabulary import load_vocabulary


@pytest.fixture(scope="module")
def vocab():
    return load_vocabulary()


@pytest.fixture(scope="module")
def kb():
    return load_knowledge()


def test_at_least_150_terms_none_of_them_in_the_knowledge_base(vocab, kb):
    assert len(vocab) >= 150
    assert sum(len(t.phrases) + len(t.abbreviations) for t in vocab.terms.values()) >= 600
    clash = [p for p in vocab._phrase_index if p in kb._phrase_index]
    assert not clash, clash
    assert not [a for a in vocab._abbrev_index if a in kb._abbrev_index]
    for t in vocab.terms.values():
        for combo in t.permitted_by:
            assert combo and all(i in kb.entries for i in combo), (t.id, combo)


def test_every_term_is_found_by_each_of_its_phrases(vocab):
    for t in vocab.terms.values():
        for p in t.phrases:
            found = vocab.find_mentions(f"The tracing suggests {p} in this patient.")
            assert [m.entry_id for m in found] == [t.id], (t.id, p, found)
            assert not found[0].negated
        for a in t.abbreviations:
            found = vocab.find_mentions(f"Findings: {a}.")
            assert [m.entry_id for m in found] == [t.id], (t.id, a)


@pytest.mark.parametrize("text, negated", [
    ("There is no pre-excitation pattern.", True),
    ("No Brugada pattern, no delta waves and no S1Q3T3.", True),
    ("Pericarditis is not suggested.", True),
    ("Without evidence of hypertrophic cardiomyopathy.", True),
    ("A Brugada pattern cannot be excluded.", False),
    ("Possible junctional rhythm.", False),
    ("No ST elevation; pericarditis is likely.", False),
])
def test_negation(vocab, text, negated):
    found = vocab.find_mentions(text)
    assert found and all(m.negated == negated for m in found), (text, found)


def test_permitted_by_the_records_statements(vocab, kb):
    bif = vocab.find_mentions("bifascicular block")[0].entry_id
    assert vocab.permitted(bif, kb.closure(["CRBBB", "LAFB"]))     # CRBBB implies RBBB
    assert not vocab.permitted(bif, kb.closure(["CRBBB"]))
    pre = vocab.find_mentions("accessory pathway")[0].entry_id
    assert vocab.permitted(pre, kb.closure(["WPW"])) and not vocab.permitted(pre, kb.closure(["SR"]))
    brugada = vocab.find_mentions("Brugada syndrome")[0].entry_id
    assert not vocab.terms[brugada].permitted_by  # nothing in our statements grounds it


def test_the_longer_mention_wins_between_knowledge_base_and_vocabulary(vocab, kb):
    from pipeline.diagnoses import diagnosis_mentions

    kb_m, voc_m = diagnosis_mentions("There is multifocal atrial tachycardia.", kb, vocab)
    assert [m.entry_id for m in voc_m] == ["MAT"] and not kb_m  # "atrial tachycardia" alone is SVTAC
    kb_m, voc_m = diagnosis_mentions("There is atrial tachycardia.", kb, vocab)
    assert [m.entry_id for m in kb_m] == ["SVTAC"] and not voc_m


def test_vocabulary_file_is_not_read_as_knowledge_entries(kb):
    assert "BRUGADA" not in kb.entries and _phrase_key("Brugada pattern") not in kb._phrase_index
