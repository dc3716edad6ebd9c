"""The offline rules writer on synthetic and real records: the figures of issue 13, per source.

    .venv/bin/python benchmarks/writer.py [--n 60] [--seed 20261122] [--shared ../shared] [--answer-seeds 0]

Measures every shared real record (PTB-XL, LUDB, CinC 2021) and ``--n`` synthetic records with
``pipeline.context.measure_context``, writes an answer per record and seed (``pipeline.writer``), and prints per
source: answers, words (mean / min / max), distinct leads named out of 12 (mean, and the share of answers naming 8
or more), each topic's share of answers (rhythm, rate, axis, PR where P waves exist, QRS, QT/QTc, P wave, ST, T),
conflicts per report statement (how often the measurements fail a statement's criteria), sentences whose cited
number fails the criterion of the diagnosis it sits next to, the validator's acceptance, the distinct 4-gram share
across the source's answers (variety), and milliseconds per answer. Prints figures only; no assertions.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]


def contexts(args) -> dict[str, list]:
    from pipeline.context import measure_context
    from pipeline.knowledge import load_knowledge
    from pipeline.sources import open_source
    from pipeline.synthetic import write_synthetic_tree

    kb = load_knowledge()
    out: dict[str, list] = {}
    shared = Path(args.shared)
    for name, source, root in (("ptbxl", "ptbxl", shared / "data" / "ptbxl"), ("ludb", "ludb", shared / "data" / "ludb"),
                               ("cinc2021", "wfdb", shared / "data" / "cinc2021")):
        if not root.exists():
            print(f"{name}: {root} missing, skipped")
            continue
        src = open_source(source, root)
        out[name] = [measure_context(src.read(rid), kb=kb) for rid in src.ids()]
    if args.n:
        tmp = Path(tempfile.mkdtemp(prefix="bench-writer-"))
        src = open_source("synthetic", write_synthetic_tree(tmp, args.n, args.seed))
        out["synthetic"] = [measure_context(src.read(rid), kb=kb) for rid in src.ids()]
    return out


def figures(ctxs: list, seeds: list[int]) -> dict:
    from pipeline.answer_metrics import TOPICS, distinct_4gram_share, leads_named, refuting_sentences, topics
    from pipeline.criteria import evaluate, statement_ids
    from pipeline.knowledge import load_knowledge
    from pipeline.validate import validate_answer
    from pipeline.writer import write_answer

    kb = load_knowledge()
    texts, n_words, n_leads, topic_hits, topic_asked = [], [], [], Counter(), Counter()
    accepted, reasons, refuting = 0, Counter(), 0
    stmt_total, stmt_conflict = Counter(), Counter()
    seconds = 0.0
    for ctx in ctxs:
        for sid in statement_ids(ctx, kb):
            stmt_total[sid] += 1
            stmt_conflict[sid] += bool(evaluate(ctx, sid, kb).conflicts)
        for seed in seeds:
            t0 = time.perf_counter()
            text = write_answer(ctx, seed=seed, kb=kb)
            seconds += time.perf_counter() - t0
            texts.append(text)
            n_words.append(len(text.split()))
            n_leads.append(len(leads_named(text)))
            for t, hit in topics(text, ctx).items():
                if hit is not None:
                    topic_asked[t] += 1
                    topic_hits[t] += hit
            res = validate_answer(text, ctx, kb=kb)
            accepted += res.accepted
            reasons.update(res.reasons)
            refuting += len(refuting_sentences(text, ctx, kb))
    n = len(texts)
    return {
        "answers": n, "words_mean": statistics.mean(n_words), "words_min": min(n_words), "words_max": max(n_words),
        "leads_mean": statistics.mean(n_leads) / 12.0, "leads_8plus": sum(x >= 8 for x in n_leads) / n,
        "topics": {t: topic_hits[t] / topic_asked[t] for t in TOPICS if topic_asked[t]},
        "conflicts": {s: (stmt_conflict[s], stmt_total[s]) for s in sorted(stmt_total, key=lambda s: -stmt_total[s])},
        "refuting": refuting, "accepted": accepted / n, "reasons": dict(reasons.most_common()),
        "variety": distinct_4gram_share(texts), "ms_per_answer": 1000.0 * seconds / n,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=60, help="synthetic records (0: none)")
    ap.add_argument("--seed", type=int, default=20261122, help="synthetic tree seed")
    ap.add_argument("--shared", default=str(REPO.parent / "shared"))
    ap.add_argument("--answer-seeds", type=int, nargs="+", default=[0], help="writer seeds per record")
    args = ap.parse_args()
    t0 = time.perf_counter()
    by_source = contexts(args)
    print(f"measured {sum(len(v) for v in by_source.values())} records in {time.perf_counter() - t0:.1f} s; "
          f"writer seeds {args.answer_seeds}")
    for name, ctxs in by_source.items():
        f = figures(ctxs, args.answer_seeds)
        print(f"\n== {name}: {len(ctxs)} records, {f['answers']} answers")
        print(f"words: mean {f['words_mean']:.0f} (min {f['words_min']}, max {f['words_max']})   "
              f"distinct leads named: {f['leads_mean']:.2f} of 12, >= 8 leads in {100 * f['leads_8plus']:.0f} %")
        print("topics discussed: " + ", ".join(f"{t} {100 * v:.0f} %" for t, v in f["topics"].items()))
        print(f"sentences citing a value that fails its diagnosis's criterion: {f['refuting']}   "
              f"validator acceptance: {100 * f['accepted']:.0f} %" +
              (f" (reasons: {f['reasons']})" if f["reasons"] else ""))
        print(f"variety (distinct 4-grams / all): {f['variety']:.2f}   {f['ms_per_answer']:.1f} ms per answer")
        print("conflicts per statement: " + ", ".join(f"{s} {c}/{t}" for s, (c, t) in f["conflicts"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
