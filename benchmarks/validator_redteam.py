"""The red-team set (``tests/redteam_set.py``): the validator scored per class on a second, independent mutation set.

    .venv/bin/python benchmarks/validator_redteam.py RUN_DIR [RUN_DIR ...] [--seed 0] [--misses FILE] [--holdout]

Each RUN_DIR is an ``ecg-grounding run`` folder (``manifest.parquet``, ``features/``, ``generate/answers.parquet``):
for example ``ecg-grounding run --source synthetic --n 60 --out outputs/rt/syn60`` and the shared PTB-XL,
CinC 2021 and LUDB records. The rules writer's accepted answers and GEM-style answers composed from the
measurements are the true bases; wrong versions and true paraphrases are derived from them. Prints, per class:
answers, rejected, accepted (for true classes "accepted" is the good column), and for wrong classes how many
were rejected with an expected reason. ``--misses`` writes every wrong answer accepted and every true answer
rejected (with the validator's details) for reading. Prints figures only; no assertions.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def load_run(run_dir: Path):
    import polars as pl

    from pipeline.context import load_contexts

    ctxs = load_contexts(run_dir)
    answers: dict[str, list[str]] = defaultdict(list)
    ap = run_dir / "generate" / "answers.parquet"
    if ap.is_file():
        a = pl.read_parquet(ap)
        if "accepted" in a.columns:
            a = a.filter(pl.col("accepted"))
        for rid, text in a.select("record_id", "answer").iter_rows():
            if text:
                answers[rid].append(text)
    return ctxs, dict(answers)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--misses", type=Path, default=None)
    ap.add_argument("--gem-seeds", type=int, default=2)
    ap.add_argument("--holdout", action="store_true", help="the held-out second round (tests/redteam_holdout.py)")
    args = ap.parse_args(argv)

    from pipeline.knowledge import load_knowledge
    from pipeline.validate import ValidationConfig, validate_answer
    from redteam_set import build_cases

    kb = load_knowledge()
    contexts, answers = {}, {}
    for run in args.runs:
        c, a = load_run(run)
        contexts.update(c)
        answers.update(a)
    if args.holdout:
        from redteam_holdout import holdout_cases

        cases = holdout_cases(contexts, answers, seed=args.seed, kb=kb)
    else:
        cases = build_cases(contexts, answers, seed=args.seed, kb=kb, gem_seeds=args.gem_seeds)
    config = ValidationConfig()
    table: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    misses = []
    t0 = time.process_time()
    for c in cases:
        res = validate_answer(c.answer, contexts[c.record_id], config, kb)
        row = table[c.cls]
        row["n"] += 1
        if res.accepted:
            row["accepted"] += 1
        else:
            row["rejected"] += 1
            if not c.truth and c.expect and set(res.reasons) & set(c.expect.split("|")):
                row["expected"] += 1
        if res.accepted != c.truth:
            misses.append({"cls": c.cls, "record_id": c.record_id, "note": c.note, "answer": c.answer,
                           "reasons": res.reasons, "details": res.details})
    dt = time.process_time() - t0
    wrong_n = wrong_rej = true_n = true_acc = 0
    print(f"{'class':18s} {'answers':>8s} {'rejected':>9s} {'expected':>9s} {'accepted':>9s}  good")
    for cls in sorted(table, key=lambda k: (k.startswith("true"), k)):
        row = table[cls]
        truth = cls.startswith("true")
        good = row["accepted"] if truth else row["rejected"]
        print(f"{cls:18s} {row['n']:8d} {row['rejected']:9d} {row['expected'] if not truth else 0:9d} "
              f"{row['accepted']:9d}  {100.0 * good / row['n']:6.1f} %")
        if truth:
            true_n += row["n"]
            true_acc += row["accepted"]
        else:
            wrong_n += row["n"]
            wrong_rej += row["rejected"]
    print(f"wrong answers rejected: {wrong_rej}/{wrong_n} = {100.0 * wrong_rej / max(wrong_n, 1):.2f} %")
    print(f"true answers accepted:  {true_acc}/{true_n} = {100.0 * true_acc / max(true_n, 1):.2f} %")
    print(f"{len(cases)} answers in {dt:.1f} s CPU = {len(cases) / max(dt, 1e-9):.0f} answers/s")
    if args.misses:
        args.misses.write_text("\n".join(json.dumps(m, ensure_ascii=False) for m in misses) + "\n")
        print(f"misses -> {args.misses}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
