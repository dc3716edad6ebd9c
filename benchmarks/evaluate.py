"""Speed of ``ecg-grounding evaluate``'s judge-free path, and how its scores separate right from wrong answers.

    python benchmarks/evaluate.py [--n 100] [--run EXISTING_RUN]

Makes (or reuses) a synthetic run with the whole chain, then evaluates three prediction files against it:
the run's own answers (the top), a derangement of them (the bottom) and the answers cut to their first half.
Prints the headline scores of each, records per second of the scoring alone (one process), and the time of
ROUGE-L's bit-parallel LCS against the textbook dynamic programme on 300-word answers.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _dp_lcs(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--run", type=Path, default=None)
    args = ap.parse_args()
    from gem_model.evaluate import EvalOptions, evaluate, read_items
    from gem_model.scores import lcs_length, rouge_tokens

    tmp = Path(tempfile.mkdtemp(prefix="bench-evaluate-"))
    run = args.run
    if run is None:
        from pipeline.run_all import RunConfig, run_pipeline

        run = tmp / "run"
        t = time.perf_counter()
        run_pipeline(RunConfig(out=run, n=args.n, seed=7))
        print(f"run of {args.n} synthetic records: {time.perf_counter() - t:.1f} s")
    items = read_items(run)
    ids = sorted(items)
    text = {i: items[i]["conversations"][1]["value"] for i in ids}
    perm = ids[:]
    rng = random.Random(1)
    while any(a == b for a, b in zip(ids, perm)):
        rng.shuffle(perm)
    sets = {"self": [(i, text[i]) for i in ids], "shuffled": [(i, text[j]) for i, j in zip(ids, perm)],
            "first half": [(i, " ".join(text[i].split()[: len(text[i].split()) // 2])) for i in ids]}
    keys = ("diagnosis_f1", "hallucination_rate", "grounding_precision", "lead_coverage", "completeness", "rouge_l",
            "validator_acceptance")
    print(f"{'predictions':<12} " + " ".join(f"{k:>20}" for k in keys) + f" {'records/s':>10}")
    for name, pairs in sets.items():
        pred = tmp / f"{name.replace(' ', '_')}.jsonl"
        pred.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in pairs))
        t = time.perf_counter()
        evaluate(pred, run, tmp / f"eval_{name.replace(' ', '_')}", EvalOptions())
        wall = time.perf_counter() - t
        s = json.loads((tmp / f"eval_{name.replace(' ', '_')}" / "metrics.json").read_text())["scores"]
        print(f"{name:<12} " + " ".join(f"{s[k]['value']:>20.3f}" for k in keys) + f" {len(pairs) / wall:>10.1f}")

    words = [rouge_tokens(text[i]) for i in ids]
    a = (words[0] * 10)[:300]
    b = (words[1] * 10)[:300]
    reps = 50
    t = time.perf_counter()
    for _ in range(reps):
        x = lcs_length(a, b)
    bit = (time.perf_counter() - t) / reps
    t = time.perf_counter()
    y = _dp_lcs(a, b)
    dp = time.perf_counter() - t
    assert x == y
    print(f"LCS of two 300-token answers: bit-parallel {1000 * bit:.2f} ms, dynamic programme {1000 * dp:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
