"""Validator benchmark: the confusion table per class of wrong and true answers, and answers validated per second.

    .venv/bin/python benchmarks/validator.py [--n 40] [--seed 0] [--no-shared] [--repeat 3]

Builds the cases of ``tests/validator_mutations.py`` (wrong answers of every class the validator must catch,
true answers that must pass) from ``--n`` synthetic records and, unless ``--no-shared``, the shared PTB-XL,
LUDB and CinC 2021 records in ``../shared``, validates each, and prints per class: answers, rejected with the
expected reason, rejected for another reason only, accepted. For true classes "accepted" is the good column.
Then the speed: answers per second of CPU time in this one process (one core; the process is pinned to one
CPU where the OS allows), best of ``--repeat`` passes over every case, contexts already measured. Prints
figures only; no assertions.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def contexts(n: int, seed: int, shared: bool, workdir: Path) -> list:
    from pipeline.context import measure_context
    from pipeline.knowledge import load_knowledge
    from pipeline.sources import open_source
    from pipeline.synthetic import write_synthetic_tree

    kb = load_knowledge()
    sources = [open_source("synthetic", write_synthetic_tree(workdir / "synthetic", n, seed))]
    data = ROOT.parent / "shared" / "data"
    if shared:
        for name, folder in (("ptbxl", "ptbxl"), ("ludb", "ludb"), ("wfdb", "cinc2021")):
            if (data / folder).is_dir():
                sources.append(open_source(name, data / folder))
            else:
                print(f"(no {data / folder}: skipped)")
    return [measure_context(src.read(rid), kb=kb) for src in sources for rid in src.ids()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="synthetic records")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-shared", action="store_true", help="synthetic records only")
    ap.add_argument("--repeat", type=int, default=3, help="timing passes (best is printed)")
    args = ap.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        except OSError:
            pass

    from pipeline.knowledge import load_knowledge
    from pipeline.validate import validate_answer
    from pipeline.vocabulary import load_vocabulary
    from pipeline.writer import write_answer
    from validator_mutations import build_cases

    kb = load_knowledge()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ctxs = contexts(args.n, args.seed, not args.no_shared, Path(tmp))
        by_id = {c.record_id: c for c in ctxs}
        cases = build_cases(ctxs, kb, load_vocabulary(), lambda a, c: validate_answer(a, c, kb=kb), write_answer,
                            seed=args.seed)
        print(f"{len(ctxs)} records, {len(cases)} answers built in {time.perf_counter() - t0:.1f} s")
        table: dict[str, Counter] = defaultdict(Counter)
        for case in cases:
            res = validate_answer(case.answer, by_id[case.record_id], kb=kb)
            row = table[case.cls]
            row["n"] += 1
            if res.accepted:
                row["accepted"] += 1
            elif case.expected is not None and case.expected in res.reasons:
                row["right"] += 1
            else:
                row["other"] += 1
                if case.expected is None:
                    for r in res.reasons:
                        row[f"why:{r}"] += 1
        print(f"\n{'class':18s} {'expected':24s} {'n':>5s} {'rejected, right code':>21s} {'other code':>11s} "
              f"{'accepted':>9s}")
        expected = {c.cls: c.expected or "(accept)" for c in cases}
        wrong_n = wrong_ok = true_n = true_ok = 0
        for cls in sorted(table, key=lambda k: (k.startswith("true"), k)):
            row = table[cls]
            print(f"{cls:18s} {expected[cls]:24s} {row['n']:5d} {row['right']:21d} {row['other']:11d} "
                  f"{row['accepted']:9d}")
            if cls.startswith("true"):
                true_n, true_ok = true_n + row["n"], true_ok + row["accepted"]
            else:
                wrong_n, wrong_ok = wrong_n + row["n"], wrong_ok + row["right"]
        print(f"\nwrong answers rejected with the right code: {wrong_ok}/{wrong_n} = {wrong_ok / max(1, wrong_n):.4f}")
        print(f"true answers accepted: {true_ok}/{true_n} = {true_ok / max(1, true_n):.4f}")
        best = 0.0
        for _ in range(max(1, args.repeat)):
            c0 = time.process_time()
            for case in cases:
                validate_answer(case.answer, by_id[case.record_id], kb=kb)
            best = max(best, len(cases) / max(1e-9, time.process_time() - c0))
        words = sum(len(c.answer.split()) for c in cases) / max(1, len(cases))
        print(f"speed: {best:.0f} answers/s on one core (CPU time, best of {args.repeat}; {words:.0f} words per answer)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
