"""ECG-Bench-style abnormality detection from free text: class labels through the knowledge base, F1, AUC, HL.

ECG-Bench (PULSE, reused by GEM's ``evaluation/evaluate_ecgbench.py``) asks a closed question and finds the
label names (``NORM``, ``MI`` ...) in the answer by substring. A free-text interpretation names diagnoses in
words, so here the diagnoses it names (knowledge-base mentions, not negated, closed under ``implies``) and the
statements of the record's report (closed likewise) are mapped to classes through ``knowledge/ecg_bench.yaml``.

Scores follow ``evaluate_ecgbench.py``'s ``compute_f1_auc`` on purpose, so numbers are computed the same way:

- the classes scored are those that occur in the references (its ``MultiLabelBinarizer`` is fitted on the
  true labels; a predicted class no reference has is ignored by its F1, AUC and Hamming loss);
- per-class F1 on binary predictions, macro F1 = their mean;
- AUC per class on the *binary* predictions (so it equals balanced accuracy, (TPR + TNR) / 2), macro = mean;
  a class present in every reference has no AUC (sklearn raises, GEM stores NaN and its ``np.mean`` then
  returns NaN): here it is left out of the mean and listed in ``auc_undefined``;
- Hamming loss over those classes.

Every class of the label space is also reported with its support and predicted count, and the Hamming loss
over the whole label space, so a class predicted but never true is visible.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from pipeline.knowledge import KNOWLEDGE_DIR

BENCH_PATH = KNOWLEDGE_DIR / "ecg_bench.yaml"


@dataclass(frozen=True)
class LabelSpace:
    name: str
    source: str
    classes: dict[str, tuple[str, ...]]   # class label -> knowledge ids, in the benchmark's label order

    def labels(self, ids: set[str] | frozenset[str]) -> list[str]:
        """The classes ``ids`` (already closed under ``implies``) make true, in label order."""
        return [c for c, members in self.classes.items() if any(i in ids for i in members)]


@lru_cache(maxsize=4)
def label_spaces(path: str | None = None) -> dict[str, LabelSpace]:
    """The label spaces of ``knowledge/ecg_bench.yaml`` (``ptbxl_super``, ``cpsc2018``)."""
    doc = yaml.safe_load(Path(path or BENCH_PATH).read_text(encoding="utf-8")) or {}
    out = {}
    for name, spec in (doc.get("ecg_bench") or {}).items():
        out[name] = LabelSpace(name, str(spec.get("source", "")),
                               {str(c): tuple(str(i) for i in ids) for c, ids in spec["classes"].items()})
    return out


@dataclass
class ClassScore:
    label: str
    support: int          # references with the class
    predicted: int        # predictions with the class
    tp: int
    fp: int
    fn: int
    tn: int
    f1: float | None      # None for a class no reference has (outside GEM's scored classes)
    auc: float | None     # None where undefined (class in no or in every reference)


@dataclass
class DetectionScores:
    label_space: str
    n_records: int
    scored_classes: list[str]                 # classes present in the references (GEM's MultiLabelBinarizer)
    macro_f1: float | None
    macro_auc: float | None
    hamming_loss: float | None                # over scored_classes (as GEM)
    hamming_loss_all_classes: float | None    # over the whole label space
    auc_undefined: list[str] = field(default_factory=list)
    per_class: list[ClassScore] = field(default_factory=list)
    note: str = ("AUC from binary predictions, as GEM's evaluate_ecgbench.py computes it (equals balanced "
                 "accuracy); labels extracted from free text through the knowledge base, not from a closed "
                 "question, so not directly comparable with ECG-Bench's published numbers")


def score_detection(space: LabelSpace, truths: list[list[str]], preds: list[list[str]]) -> DetectionScores:
    """Per-class and macro F1, AUC on binary predictions and Hamming loss of ``preds`` against ``truths``
    (one label list per record, same order)."""
    if len(truths) != len(preds):
        raise ValueError("truths and predictions differ in length")
    n = len(truths)
    t_sets = [set(t) for t in truths]
    p_sets = [set(p) for p in preds]
    present = [c for c in space.classes if any(c in t for t in t_sets)]
    per_class: list[ClassScore] = []
    for c in space.classes:
        tp = sum(1 for t, p in zip(t_sets, p_sets) if c in t and c in p)
        fp = sum(1 for t, p in zip(t_sets, p_sets) if c not in t and c in p)
        fn = sum(1 for t, p in zip(t_sets, p_sets) if c in t and c not in p)
        tn = n - tp - fp - fn
        f1 = (2 * tp / (2 * tp + fp + fn)) if c in present else None
        auc = None
        if tp + fn > 0 and fp + tn > 0:
            auc = 0.5 * (tp / (tp + fn) + tn / (fp + tn))
        per_class.append(ClassScore(c, tp + fn, tp + fp, tp, fp, fn, tn, f1, auc))
    scored = [cs for cs in per_class if cs.label in present]
    aucs = [cs.auc for cs in scored if cs.auc is not None]

    def hamming(classes: list[ClassScore]) -> float | None:
        cells = n * len(classes)
        return sum(cs.fp + cs.fn for cs in classes) / cells if cells else None

    return DetectionScores(
        label_space=space.name, n_records=n, scored_classes=present,
        macro_f1=_mean([cs.f1 for cs in scored]), macro_auc=_mean(aucs),
        hamming_loss=hamming(scored), hamming_loss_all_classes=hamming(per_class),
        auc_undefined=[cs.label for cs in scored if cs.auc is None], per_class=per_class)


def _mean(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None and not math.isnan(x)]
    return sum(vals) / len(vals) if vals else None
