"""``ecg-grounding run``: the whole chain on one source, the way ``make demo`` runs it.

synthesize (synthetic source without --root) -> ingest -> features -> render -> prompts -> generate
(rules by default) -> validate. Every stage is the plain function its own subcommand wraps, writes into the
run folder's standard layout (DEVELOPERS.md) and skips finished work, so re-running a killed run resumes it
and never re-buys a stored LLM response.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.record import ConfigError
from pipeline.sources import SOURCE_NAMES


@dataclass
class RunConfig:
    source: str = "synthetic"
    root: Path | None = None          # None with source 'synthetic': generate n records into out/synthetic
    out: Path = Path("outputs/demo")
    n: int = 50                       # synthetic records to generate
    seed: int = 0
    layout: str = "3x4+II"
    dpi: int = 200
    budget: int = 6000
    llm: str = "rules"
    base_url: str | None = None
    variant: str | None = None        # default: multimodal for openai, text otherwise
    concurrency: int = 16             # most LLM requests in flight (openai-compatible starts at 1 and adapts)
    timeout_s: float | None = None    # bound of one whole LLM request; None: sized from the measured speed
    max_tokens: int | None = None     # answer tokens per LLM request (None: the provider's default)
    max_attempts: int = 3
    max_cost: float | None = None
    chunk_size: int = 200
    test_fraction: float = 0.1
    source_options: dict = field(default_factory=dict)


@dataclass
class StageTiming:
    stage: str
    seconds: float
    detail: str


def _timed(timings: list[StageTiming], stage: str, fn, describe) -> object:
    started = time.perf_counter()
    result = fn()
    timings.append(StageTiming(stage, time.perf_counter() - started, describe(result)))
    print(f"[{stage:>9}] {timings[-1].detail} ({timings[-1].seconds:.1f} s)", flush=True)
    return result


def run_pipeline(cfg: RunConfig) -> dict:
    """Run every stage; return the validation summary plus the paths of every output."""
    from features.delineate import p_onset_fit
    from features.run import run_features
    from pipeline.generate import run_generate
    from pipeline.ingest import ingest
    from pipeline.instructions import build_instruction_set
    from pipeline.prompts import run_prompts
    from pipeline.render import render

    p_onset_fit()  # a bad measurement setting stops the run before any stage (ConfigError)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    timings: list[StageTiming] = []
    root = cfg.root
    if root is None:
        if cfg.source != "synthetic":
            raise ConfigError(f"--root is required for source {cfg.source!r}")
        from pipeline.synthetic import write_synthetic_tree

        root = out / "synthetic"
        if not (root / "synthetic_database.csv").is_file():  # same n and seed -> same bytes; don't redo
            _timed(timings, "synth", lambda: write_synthetic_tree(root, cfg.n, cfg.seed),
                   lambda _: f"{cfg.n} synthetic records (seed {cfg.seed}) -> {root}")
    root = Path(root)
    opts = dict(cfg.source_options)

    ing = _timed(timings, "ingest", lambda: ingest(cfg.source, root, out, chunk_size=cfg.chunk_size, **opts),
                 lambda s: f"{s.n_ok}/{s.n_records} records ingested, {s.n_failed} failed")
    feats = _timed(timings, "features",
                   lambda: run_features(cfg.source, root, out / "features", chunk_size=cfg.chunk_size, **opts),
                   lambda s: f"{s.n_measured} records measured, {s.n_failed} failed, {s.n_warnings} lead warnings")
    _timed(timings, "render",
           lambda: render(cfg.source, root, out / "images", layout=cfg.layout, dpi=cfg.dpi,
                          chunk_size=cfg.chunk_size, errors_path=out / "errors" / "render.parquet"),
           lambda s: f"{s.rendered} images drawn, {s.skipped} already there ({cfg.layout}, {cfg.dpi} dpi), "
                     f"{s.failed} failed")
    _timed(timings, "prompts",
           lambda: run_prompts(cfg.source, root, out / "features", out / "prompts", images_dir=out / "images",
                               budget=cfg.budget, manifest=out / "manifest.parquet"),
           lambda s: f"{s.n_prompts} prompts, mean {s.tokens_mean:.0f} / max {s.tokens_max} tokens, "
                     f"{s.n_failed} failed")
    gen = _timed(timings, "generate",
                 lambda: run_generate(out / "prompts" / "prompts.parquet", out / "generate", llm=cfg.llm,
                                      base_url=cfg.base_url, variant=cfg.variant, concurrency=cfg.concurrency,
                                      max_attempts=cfg.max_attempts, max_cost=cfg.max_cost, seed=cfg.seed,
                                      timeout_s=cfg.timeout_s, max_tokens=cfg.max_tokens),
                 lambda s: f"{s.n_ok}/{s.n_prompts} answered ({cfg.llm}), {s.n_reused} from the store, "
                           f"${s.cost_usd_new:.4f} spent now")
    from pipeline.generate import report_lines

    for line in report_lines(gen)[1:]:  # failures by error code (prompts and sends), fallbacks, hints
        print(f"{'':>12}{line.strip()}", flush=True)
    summary = _timed(timings, "validate",
                     lambda: build_instruction_set(out / "generate" / "answers.parquet", out / "features",
                                                   out / "manifest.parquet", out / "instructions",
                                                   images=out / "images", prompts=out / "prompts" / "prompts.parquet",
                                                   test_fraction=cfg.test_fraction, seed=cfg.seed, image_root=out),
                     lambda s: f"{s['records_accepted']}/{s['records']} records accepted into the instruction set")
    paths = {
        "data_root": str(root),
        "manifest": str(out / "manifest.parquet"),
        "errors": str(out / "errors"),
        "features": str(out / "features"),
        "images": str(out / "images"),
        "prompts": str(out / "prompts" / "prompts.parquet"),
        "responses": str(out / "generate" / "responses"),
        "answers": str(out / "generate" / "answers.parquet"),
        "instructions": str(out / "instructions"),
    }
    report = {"summary": summary, "paths": paths, "ingest_failed": ing.n_failed, "features_failed": feats.n_failed,
              "generate": {"ok": gen.n_ok, "failed": gen.n_failed, "cost_usd_new": gen.cost_usd_new},
              "timings_s": {t.stage: round(t.seconds, 2) for t in timings}}
    (out / "run.json").write_text(json.dumps(report, indent=2, default=str))
    return report


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "run", help="the whole chain: (synthesize,) ingest, measure, render, prompt, generate, validate",
        description=__doc__.split("\n\n")[0])
    p.add_argument("--source", default="synthetic", choices=SOURCE_NAMES)
    p.add_argument("--root", type=Path, default=None, help="data root (synthetic: generated when omitted)")
    p.add_argument("--out", type=Path, default=Path("outputs/demo"), help="run folder (default outputs/demo)")
    p.add_argument("--n", type=int, default=50, help="synthetic records to generate (default 50)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layout", default="3x4+II", help="image layout: 3x4+II, 12x1, 12x1+II, 6x2")
    p.add_argument("--dpi", type=int, default=200)
    p.add_argument("--budget", type=int, default=6000, help="prompt token budget (hard cap)")
    p.add_argument("--llm", default="rules",
                   help="rules | openai:MODEL | deepseek:MODEL | openai-compatible:MODEL (with --base-url)")
    p.add_argument("--base-url", default=None)
    p.add_argument("--variant", default=None, choices=["multimodal", "text", "json"])
    p.add_argument("--concurrency", type=int, default=16,
                   help="most LLM requests in flight (openai-compatible starts at 1 and adapts up to this)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds one whole LLM request may take (default: sized from the server's measured speed)")
    p.add_argument("--max-tokens", type=int, default=None, help="answer tokens per LLM request")
    p.add_argument("--max-attempts", type=int, default=3)
    p.add_argument("--max-cost", type=float, default=None, help="stop before spending more than this (USD)")
    p.add_argument("--chunk-size", type=int, default=200)
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    cfg = RunConfig(source=args.source, root=args.root, out=args.out, n=args.n, seed=args.seed,
                    layout=args.layout, dpi=args.dpi, budget=args.budget, llm=args.llm, base_url=args.base_url,
                    variant=args.variant, concurrency=args.concurrency, timeout_s=args.timeout,
                    max_tokens=args.max_tokens, max_attempts=args.max_attempts,
                    max_cost=args.max_cost, chunk_size=args.chunk_size, test_fraction=args.test_fraction)
    started = time.perf_counter()
    report = run_pipeline(cfg)
    from pipeline.instructions import format_summary

    print()
    print(format_summary(report["summary"]))
    print(f"\nDone in {time.perf_counter() - started:.1f} s. Outputs under {Path(cfg.out).resolve()}:")
    for name, path in report["paths"].items():
        print(f"  {name:<13} {path}")
    return 0
