"""GEM's published numbers, printed beside ours in ``report.md`` for reference only.

Source: Lan et al., "GEM: Empowering MLLM for Grounded ECG Understanding with Time Series and Images",
NeurIPS 2025 (arXiv 2503.06073v2), Table 1 (Grounded ECG Understanding, GPT-4o judge; test sets MIMIC-IV-ECG
2,381 and PTB-XL 2,041 records) and Table 2 (ECG-Bench abnormality detection). The values were read from the
paper's text layer, whose table cells come out by column; every value the paper's prose restates (e.g.
diagnosis accuracy 81.14 -> 87.24 on MIMIC-IV-ECG, lead coverage 7.11 -> 71.07, PTB-XL relevance +45 %)
agrees with the column order used here.

Their references are GPT-4o answers on MIMIC-IV-ECG / PTB-XL, scored by GPT-4o; ours are this project's
validated answers, so a score here is comparable in method, not in absolute value.
"""
from __future__ import annotations

from gem_model.judge import CRITERIA

# test set -> model -> the eight criteria in CRITERIA order (DiagnosisAccuracy ... ClinicalDiagnosticFidelity)
TABLE1: dict[str, dict[str, tuple[float, ...]]] = {
    "MIMIC-IV-ECG (in-domain)": {
        "PULSE": (81.14, 2.37, 2.39, 7.11, 2.95, 50.18, 52.40, 51.63),
        "GEM (SFT LLaVA)": (87.24, 4.41, 5.01, 71.07, 46.44, 75.48, 75.09, 75.28),
        "GEM (SFT PULSE)": (86.49, 4.43, 4.91, 69.80, 45.33, 74.95, 74.70, 74.87),
    },
    "PTB-XL (out-of-domain)": {
        "PULSE": (59.24, 2.20, 2.06, 11.20, 6.27, 52.52, 55.48, 53.85),
        "GEM (SFT LLaVA)": (73.53, 4.19, 2.96, 79.54, 49.01, 74.48, 74.61, 73.84),
        "GEM (SFT PULSE)": (73.59, 4.19, 3.00, 78.86, 47.96, 74.97, 75.41, 74.24),
    },
}
assert all(len(v) == len(CRITERIA) for rows in TABLE1.values() for v in rows.values())

# ECG-Bench label space -> model -> (AUC, F1, Hamming loss), in percent, Table 2
TABLE2: dict[str, dict[str, tuple[float, float, float]]] = {
    "ptbxl_super": {
        "Random": (50.3, 33.2, 50.1), "GPT-4o": (55.6, 28.3, 26.2), "PULSE": (82.4, 74.8, 11.0),
        "GEM (SFT LLaVA)": (81.8, 73.6, 11.6), "GEM (SFT PULSE)": (83.4, 75.8, 11.0),
    },
    "cpsc2018": {
        "Random": (51.2, 15.1, 28.8), "GPT-4o": (50.9, 10.6, 18.2), "PULSE": (76.9, 57.6, 8.6),
        "GEM (SFT LLaVA)": (74.1, 52.0, 9.0), "GEM (SFT PULSE)": (79.1, 61.1, 8.1),
    },
}
SOURCE = "Lan et al., NeurIPS 2025 (arXiv 2503.06073v2), Tables 1 and 2"
