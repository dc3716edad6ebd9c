"""``ecg-grounding run``: the whole chain on one source, the way ``make demo`` runs it.

synthesize (synthetic source without --root) -> ingest -> features -> render -> prompts -> generate
(rules by default) -> validate. Every stage is the plain function its own subcommand wraps, writes into the
run folder's standard layout (DEVELOPERS.md) and skips finished work, so re-running a killed run resumes it
and never re-buys a stored LLM response.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.batch import DEFAULT_CHUNK_SIZE
from pipeline.record import ConfigError
from pipeline.synth_cli import DEFAULT_N


@dataclass
class RunConfig:
    source: str = "synthetic"
    root: Path | None = None          # None with source 'synthetic': generate n records into out/synthetic
    out: Path = Path("outputs/demo")
    n: int = DEFAULT_N                # synthetic records to generate
    seed: int = 0
    layout: str = "3x4+II"
    dpi: int = 200
    budget: int = 6000
    llm: str = "rules"
    base_url: str | None = None
    variant: str | None = None        # default: multimodal for openai, text otherwise
    concurrency: int = 16
    max_attempts: int = 3
    max_cost: float | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    test_fraction: float = 0.1
    source_options: dict = field(default_factory=dict)


@dataclass
class StageTiming:
    stage: str
    seconds: float
    detail: str
    result: object = None   # the stage's summary (its counts go into run.json)


def _timed(timings: list[StageTiming], stage: str, fn, describe) -> object:
    started = time.perf_counter()
    result = fn()
    timings.append(StageTiming(stage, time.perf_counter() - started, describe(result), result))
    from pipeline.cli import say

    say(f"[{stage:>9}] {timings[-1].detail} ({timings[-1].seconds:.1f} s)")
    return result


def run_pipeline(cfg: RunConfig) -> dict:
    """Run every stage; return the validation summary plus the paths of every output. ``run.json`` records
    the run (pipeline/runinfo.py), also when a stage raises."""
    from pipeline import runinfo

    started_at, t0, timings = runinfo.utc_now(), time.perf_counter(), []
    try:
        report = _run_pipeline(cfg, timings)
    except BaseException as exc:
        # a bad setting stops the command before anything is written (no run folder); a stage that raised
        # mid-run leaves a run.json saying so beside what it wrote
        if not isinstance(exc, ConfigError) and Path(cfg.out).is_dir():
            try:
                runinfo.write_run_info(cfg.out, runinfo.build_run_info(
                    cfg, started_at, runinfo.utc_now(), time.perf_counter() - t0, _stage_counts(timings),
                    error=f"{type(exc).__name__}: {exc}"))
            except OSError:  # an unwritable --out: the original error is the one to show
                pass
        raise
    failed = runinfo.failed_record_ids(cfg.out)
    report["records_failed"] = report["failures"]["n_failed"]  # run_failures: each record once, all stages
    report["exit_code"] = 1 if report["records_failed"] else 0
    stages = _stage_counts(timings)
    for stage, ids in failed.items():
        stages.setdefault(stage, {})["failed_ids"] = ids[:100]  # enough to find them; the tables hold all
    runinfo.write_run_info(cfg.out, runinfo.build_run_info(
        cfg, started_at, runinfo.utc_now(), time.perf_counter() - t0, stages, paths=report["paths"],
        summary=report["summary"], exit_code=report["exit_code"], root=Path(report["paths"]["data_root"]),
        records_failed=report["records_failed"]))
    return report


def _stage_counts(timings: list[StageTiming]) -> dict[str, dict]:
    """stage -> its summary's counts and seconds (validate: the headline counts; its summary is separate)."""
    out = {}
    for t in timings:
        r = t.result
        if t.stage == "validate" and isinstance(r, dict):
            r = {k: r.get(k) for k in ("records", "records_accepted", "acceptance_rate", "attempts",
                                        "attempts_accepted", "splits", "patients", "cost_usd")}
        elif not isinstance(r, (dict, type(None))) and not hasattr(r, "model_dump") and \
                not hasattr(r, "__dataclass_fields__"):
            r = None  # e.g. synth returns its folder
        out[t.stage] = {**(_as_dict(r) if r is not None else {}), "seconds": round(t.seconds, 3), "detail": t.detail}
    return out


def _as_dict(r) -> dict:
    from pipeline.runinfo import _plain

    d = _plain(r)
    return d if isinstance(d, dict) else {}


def _run_pipeline(cfg: RunConfig, timings: list[StageTiming]) -> dict:
    from features.delineate import p_onset_fit
    from features.run import run_features
    from pipeline.generate import run_generate
    from pipeline.ingest import ingest
    from pipeline.instructions import build_instruction_set
    from pipeline.prompts import run_prompts
    from pipeline.render import render

    from pipeline.preflight import check_run_config

    check_run_config(cfg)  # bad usage stops the run before any stage: LLM spec, key, root, tables, numbers
    p_onset_fit()  # a bad measurement setting stops the run before any stage (ConfigError)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
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
    rend = _timed(timings, "render",
                  lambda: render(cfg.source, root, out / "images", layout=cfg.layout, dpi=cfg.dpi,
                                 chunk_size=cfg.chunk_size, errors_path=out / "errors" / "render.parquet",
                                 source_options=opts),
           lambda s: f"{s.rendered} images drawn, {s.skipped} already there ({cfg.layout}, {cfg.dpi} dpi), "
                     f"{s.failed} failed")
    prm = _timed(timings, "prompts",
                 lambda: run_prompts(cfg.source, root, out / "features", out / "prompts", images_dir=out / "images",
                               budget=cfg.budget, manifest=out / "manifest.parquet"),
           lambda s: f"{s.n_prompts} prompts, mean {s.tokens_mean:.0f} / max {s.tokens_max} tokens, "
                     f"{s.n_failed} failed")
    gen = _timed(timings, "generate",
                 lambda: run_generate(out / "prompts" / "prompts.parquet", out / "generate", llm=cfg.llm,
                                      base_url=cfg.base_url, variant=cfg.variant, concurrency=cfg.concurrency,
                                      max_attempts=cfg.max_attempts, max_cost=cfg.max_cost, seed=cfg.seed),
                 lambda s: f"{s.n_ok}/{s.n_prompts} answered ({cfg.llm}), {s.n_reused} from the store, "
                           f"${s.cost_usd_new:.4f} spent now")
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
    failures = run_failures(out)
    report = {"summary": summary, "paths": paths, "ingest_failed": ing.n_failed, "features_failed": feats.n_failed,
              "render_failed": rend.failed, "prompts_failed": prm.n_failed,
              "generate": {"ok": gen.n_ok, "failed": gen.n_failed, "cost_usd_new": gen.cost_usd_new},
              "failures": failures.to_dict(), "timings_s": {t.stage: round(t.seconds, 2) for t in timings}}
    return report


def run_failures(out: str | Path):
    """Every record a stage of the run folder ``out`` dropped, by reason code (``pipeline.batch.Failures``):
    a record that failed in ingest and again in features counts once."""
    from pipeline.batch import collect_failures
    from pipeline.generate import failed_answer_rows

    out = Path(out)
    answers = out / "generate" / "answers.parquet"
    tables: list = [out / "errors" / "ingest.parquet", out / "features" / "errors.parquet",
                    out / "errors" / "render.parquet", out / "prompts" / "errors.parquet"]
    if answers.is_file():
        tables.append((str(answers), failed_answer_rows(answers)))
    return collect_failures(tables)


def register(subparsers) -> None:
    from pipeline.cli import add_source_args
    from pipeline.preflight import fraction, nonneg_float, nonneg_int, positive_int
    from pipeline.render import LAYOUTS

    p = subparsers.add_parser(
        "run", help="the whole chain: (synthesize,) ingest, measure, render, prompt, generate, validate",
        description="The whole chain on one source, the way `make demo` runs it: (synthesize,) ingest, measure, "
                    "render, prompt, generate (the rules writer by default), validate, into one run folder. "
                    "Every stage skips finished work, so re-running a killed run resumes it and never re-buys a "
                    "stored LLM response. Every option is checked before the first stage.\n\n"
                    "examples:\n"
                    "  ecg-grounding run --source synthetic --n 50 --out outputs/demo\n"
                    "  ecg-grounding run --source ptbxl --root /data/ptb-xl --out outputs/ptbxl \\\n"
                    "      --llm openai:gpt-4o-2024-08-06 --max-cost 20")
    add_source_args(p, required=False, default="synthetic")
    p.add_argument("--out", type=Path, default=Path("outputs/demo"), help="run folder (default outputs/demo)")
    p.add_argument("--n", type=positive_int, default=DEFAULT_N,
                   help="synthetic records to generate when --root is not given (default %(default)s)")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--layout", default="3x4+II", choices=LAYOUTS, help="image layout")
    p.add_argument("--dpi", type=positive_int, default=200)
    p.add_argument("--budget", type=positive_int, default=6000, help="prompt token budget (hard cap)")
    p.add_argument("--llm", default="rules",
                   help="rules | openai:MODEL | deepseek:MODEL | openai-compatible:MODEL (with --base-url)")
    p.add_argument("--base-url", default=None)
    p.add_argument("--variant", default=None, choices=["multimodal", "text", "json"])
    p.add_argument("--concurrency", type=positive_int, default=16)
    p.add_argument("--max-attempts", type=positive_int, default=3)
    p.add_argument("--max-cost", type=nonneg_float, default=None, help="stop before spending more than this (USD)")
    p.add_argument("--chunk-size", type=positive_int, default=DEFAULT_CHUNK_SIZE,
                   help="records per chunk (default %(default)s)")
    p.add_argument("--test-fraction", type=fraction, default=0.1)
    p.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    from pipeline.cli import finish, source_options_from

    cfg = RunConfig(source=args.source, root=args.root, out=args.out, n=args.n, seed=args.seed,
                    layout=args.layout, dpi=args.dpi, budget=args.budget, llm=args.llm, base_url=args.base_url,
                    variant=args.variant, concurrency=args.concurrency, max_attempts=args.max_attempts,
                    max_cost=args.max_cost, chunk_size=args.chunk_size, test_fraction=args.test_fraction,
                    source_options=source_options_from(args))
    started = time.perf_counter()
    report = run_pipeline(cfg)
    from pipeline.instructions import format_summary

    lines = ["", format_summary(report["summary"]),
             f"\nDone in {time.perf_counter() - started:.1f} s. Outputs under {Path(cfg.out).resolve()}:"]
    lines += [f"  {name:<13} {path}" for name, path in report["paths"].items()]
    lines.append(f"  {'run record':<13} {Path(cfg.out) / 'run.json'}")
    payload = {k: v for k, v in report.items() if k != "failures"}
    return finish(args, payload, "\n".join(lines), run_failures(cfg.out))
