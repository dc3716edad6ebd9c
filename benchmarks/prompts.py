"""Prompt assembly benchmark: tokens per prompt, prompts per second, and GPT-4o cost per 1,000 records.

    .venv/bin/python benchmarks/prompts.py [--n 2000] [--workdir DIR] [--budget 6000] [--seed 1] [--writer]

Writes ``n`` synthetic records (``pipeline.synthetic``), measures them with ``features.run_features`` (shards
are reused when ``--workdir`` already holds them), assembles the three prompt variants per record and prints:
tokens per prompt (mean / p95 / max, exact o200k counts), beats shown, prompts per second (assembly only:
context building + templates + exact counting), the static-prefix size, and the estimated GPT-4o cost per
1,000 records at list price ($2.50 / M input, $1.25 / M cached input, $10 / M output, ~300 output tokens)
with and without prefix caching. ``--writer`` adds the rules writer's acceptance rate by the validator.
Prints figures only; no assertions.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PRICE_INPUT = 2.50 / 1e6
PRICE_CACHED = 1.25 / 1e6
PRICE_OUTPUT = 10.0 / 1e6
OUTPUT_TOKENS = 300
OPENAI_MIN_CACHE = 1024   # OpenAI caches prompt prefixes of at least 1,024 tokens ...
OPENAI_CACHE_STEP = 128   # ... in 128-token increments


def p95(values: list[float]) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]


def rendered_image_tokens(root: Path, record_id: str) -> tuple[int, tuple[int, int]]:
    """GPT-4o tokens of one image as the render stage draws it (3x4+II, 200 dpi)."""
    import io

    from PIL import Image

    from pipeline.render import render_record
    from pipeline.sources import open_source
    from pipeline.tokens import image_tokens

    png = render_record(open_source("synthetic", root).read(record_id))
    with Image.open(io.BytesIO(png)) as im:
        size = im.size
    return image_tokens(*size, "high"), size


def cost_per_1000(prompt_tokens: list[int], image_tok: int, cached_prefix: int) -> float:
    """USD per 1,000 records: every request after the first reads ``cached_prefix`` tokens from the cache."""
    n = len(prompt_tokens)
    total = 0.0
    for i, t in enumerate(prompt_tokens):
        cached = cached_prefix if i > 0 else 0
        total += (t + image_tok - cached) * PRICE_INPUT + cached * PRICE_CACHED + OUTPUT_TOKENS * PRICE_OUTPUT
    return 1000.0 * total / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--workdir", default=None, help="reuse a folder (synthetic tree + features) between runs")
    ap.add_argument("--budget", type=int, default=6000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--writer", action="store_true", help="also write + validate a rules answer per record")
    args = ap.parse_args()

    from features import run_features
    from pipeline.context import iter_contexts
    from pipeline.knowledge import load_knowledge
    from pipeline.prompts import VARIANTS, build_prompt
    from pipeline.synthetic import write_synthetic_tree
    from pipeline.tokens import get_encoding

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-prompts-"))
    root = work / "synthetic"
    t0 = time.perf_counter()
    if not (root / "synthetic_database.csv").exists():
        write_synthetic_tree(root, args.n, args.seed)
    t_synth = time.perf_counter() - t0
    t0 = time.perf_counter()
    fs = run_features("synthetic", root, work / "features")
    t_feat = time.perf_counter() - t0
    print(f"records: {args.n} synthetic (seed {args.seed}) under {work}")
    print(f"synthetic tree: {t_synth:.1f} s; features: {t_feat:.1f} s "
          f"({fs.n_measured} measured, {fs.n_failed} failed, {fs.n_shards_skipped} shards reused)")

    kb = load_knowledge()
    get_encoding("o200k_base")  # one-off BPE load (~2 s), not part of the per-prompt figure
    tokens: dict[str, list[int]] = {v: [] for v in VARIANTS}
    beats_shown, beats_total, static = [], [], {}
    n_failed = 0
    first_id = None
    t0 = time.perf_counter()
    n_records = 0
    for ctx in iter_contexts(work / "features", "synthetic", root, kb=kb):
        n_records += 1
        first_id = first_id or ctx.record_id
        for variant in VARIANTS:
            try:
                p = build_prompt(ctx, variant, args.budget, kb)
            except Exception:
                n_failed += 1
                continue
            tokens[variant].append(p.prompt_tokens)
            static[variant] = p.static_tokens
            if variant == "multimodal":
                beats_shown.append(len(p.beats_shown))
                beats_total.append(p.beats_total)
    t_prompts = time.perf_counter() - t0
    n_prompts = sum(len(v) for v in tokens.values())
    print(f"prompts: {n_prompts} for {n_records} records ({n_failed} failed) in {t_prompts:.1f} s = "
          f"{n_prompts / t_prompts:.1f} prompts/s ({n_records / t_prompts:.1f} records/s, 3 variants each)")
    print(f"budget {args.budget} tokens; counts exact for GPT-4o (o200k_base), approx for DeepSeek (text)")
    for v in VARIANTS:
        t = tokens[v]
        if t:
            print(f"  {v:10s} tokens/prompt mean {statistics.mean(t):.0f}  p95 {p95(t):.0f}  max {max(t)}  "
                  f"static prefix {static[v]}")
    if beats_shown:
        full = sum(s == t for s, t in zip(beats_shown, beats_total))
        print(f"beats shown in full (multimodal): mean {statistics.mean(beats_shown):.1f} of "
              f"{statistics.mean(beats_total):.1f}; all beats fit in {full} of {len(beats_shown)} records")

    if args.writer:
        from collections import Counter

        from pipeline.validate import validate_answer
        from pipeline.writer import write_answer

        t0 = time.perf_counter()
        accepted, words, reasons = 0, [], Counter()
        n = 0
        for ctx in iter_contexts(work / "features", "synthetic", root, kb=kb):
            answer = write_answer(ctx, seed=0, kb=kb)
            result = validate_answer(answer, ctx, kb=kb)
            n += 1
            accepted += result.accepted
            words.append(len(answer.split()))
            reasons.update(result.reasons)
        dt = time.perf_counter() - t0
        print(f"rules writer: {accepted} of {n} answers accepted by the validator ({100.0 * accepted / n:.2f} %), "
              f"words mean {statistics.mean(words):.0f} max {max(words)}, {n / dt:.1f} answers/s "
              f"(write + validate); rejections by reason: {dict(reasons) or 'none'}")

    img_tok, size = rendered_image_tokens(root, first_id)
    print(f"image: {size[0]}x{size[1]} px (3x4+II, 200 dpi) = {img_tok} GPT-4o tokens (detail high)")
    mm = tokens["multimodal"]
    s = static["multimodal"]
    openai_cached = (s // OPENAI_CACHE_STEP) * OPENAI_CACHE_STEP if s >= OPENAI_MIN_CACHE else 0
    print(f"GPT-4o cost per 1,000 records (multimodal, {OUTPUT_TOKENS} output tokens, list price):")
    print(f"  no prefix caching:                     ${cost_per_1000(mm, img_tok, 0):.2f}")
    print(f"  static prefix cached ({s} tokens):     ${cost_per_1000(mm, img_tok, s):.2f}")
    print(f"  OpenAI rule (>= {OPENAI_MIN_CACHE} tokens, 128 steps): {openai_cached} tokens cached -> "
          f"${cost_per_1000(mm, img_tok, openai_cached):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
