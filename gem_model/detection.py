"""ECG-Bench-style abnormality detection from free text: class labels through the knowledge base, F1, AUC, HL.

ECG-Bench (PULSE, reused by GEM's ``evaluation/evaluate_ecgbench.py``) asks a closed question and finds the
label names (``NORM``, ``MI`` ...) in the answer by substring. A free-text interpretation names diagnoses in
words, so here the diagnoses it names (knowledge-base mentions, not negated, closed under ``implies``) and the
statements of the record's report (closed likewise) are mapped to classes through ``BENCH_CLASSES``.

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

# Label space -> (source, {class: knowledge ids that make it true}). A class holds when any of its ids is in the
# closure (under ``implies``) of the diagnoses named / the report's statements.
#
# ptbxl_super: PTB-XL's five diagnostic superclasses, from PTB-XL's scp_statements.csv column
#   ``diagnostic_class`` for its 44 diagnostic SCP statements (Wagner et al., Scientific Data 2020); form and
#   rhythm statements (SR, AFIB, STD_, INVT ...) have no superclass there and none here. Knowledge ids without an
#   SCP code that name the same diagnosis join its class: MI and STEMI (SNOMED only) in MI; RBBB, LBBB and BBB
#   (SNOMED only) in CD.
# cpsc2018: the nine classes of the China Physiological Signal Challenge 2018 (Liu et al., J Med Imaging Health
#   Inform 2018), spelled as ECG-Bench's cpsc-test labels (PULSE's evaluate_ecgbench.py, which GEM copies).
BENCH_CLASSES: dict[str, tuple[str, dict[str, tuple[str, ...]]]] = {
    "ptbxl_super": ("PTB-XL scp_statements.csv diagnostic_class (Wagner et al. 2020)", {
        "NORM": ("NORM",),
        "MI": ("IMI", "ASMI", "ILMI", "AMI", "ALMI", "INJAS", "LMI", "INJAL", "IPLMI", "IPMI", "INJIN", "INJLA", "PMI",
               "INJIL", "MI", "STEMI"),
        "STTC": ("NDT", "NST_", "DIG", "LNGQT", "ISC_", "ISCAL", "ISCIN", "ISCIL", "ISCAS", "ISCLA", "ANEUR", "EL",
                 "ISCAN"),
        "CD": ("LAFB", "IRBBB", "1AVB", "IVCD", "CRBBB", "CLBBB", "LPFB", "WPW", "ILBBB", "3AVB", "2AVB", "RBBB", "LBBB",
               "BBB"),
        "HYP": ("LVH", "LAO/LAE", "RVH", "RAO/RAE", "SEHYP"),
    }),
    "cpsc2018": ("CPSC 2018 classes as ECG-Bench's cpsc-test labels (Liu et al. 2018; PULSE / GEM "
                 "evaluate_ecgbench.py)", {
        "NORM": ("NORM",), "AF": ("AFIB",), "I-AVB": ("1AVB",), "LBBB": ("CLBBB", "LBBB"), "RBBB": ("CRBBB", "RBBB"),
        "PAC": ("PAC",), "PVC": ("PVC",), "STD": ("STD_",), "STE": ("STE_",),
    }),
}


@dataclass(frozen=True)
class LabelSpace:
    name: str
    source: str
    classes: dict[str, tuple[str, ...]]   # class label -> knowledge ids, in the benchmark's label order

    def labels(self, ids: set[str] | frozenset[str]) -> list[str]:
        """The classes ``ids`` (already closed under ``implies``) make true, in label order."""
        return [c for c, members in self.classes.items() if any(i in ids for i in members)]


def label_spaces() -> dict[str, LabelSpace]:
    """The label spaces of ``BENCH_CLASSES`` (``ptbxl_super``, ``cpsc2018``)."""
    return {name: LabelSpace(name, source, dict(classes)) for name, (source, classes) in BENCH_CLASSES.items()}


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
