"""The chain's steps: for each stage, what one chunk of records does and how the chunks are merged.

Each function is a plain adapter over its stage's own module (the same functions its subcommand calls), so
``ecg-grounding run`` (one process, chunk after chunk) and the Prefect flow (chunk tasks on Dask workers)
run exactly the same code. ``pipeline.run_all.CHAIN`` wires them: stage order, inputs, outputs, errors
tables. A chunk writes its own part files atomically and is skipped when they exist (``*_done``), so a
killed run resumes; a chunk returns a small JSON-able dict (never records or frames), which is what travels
between Dask workers and what Prefect persists as the chunk task's result.
"""
from __future__ import annotations

import functools
import glob
import hashlib
import json
import os
import resource
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

# features before pipeline.batch: batch -> features.schema runs features/__init__, which imports
# features.measure -> pipeline.batch (a cycle that only resolves when features comes first)
import features  # noqa: F401,I001
from features.schema import ERRORS_SCHEMA
from pipeline.batch import tmp_sibling, write_parquet_atomic


@dataclass(frozen=True)
class ChunkJob:
    """One chunk of one stage: its position, its record ids, whether it must be redone although its part
    files exist (an upstream chunk of the same index was redone in this run), and the results of the
    stage's earlier chunks (only for stages that run their chunks one after another: generate with a paid
    LLM carries its spending)."""

    index: int
    ids: tuple[str, ...]
    force: bool = False
    prior: tuple[dict, ...] = field(default_factory=tuple)

    @property
    def digest(self) -> str:
        return hashlib.sha1("\n".join(self.ids).encode()).hexdigest()[:12]


def digest_of(*values) -> str:
    return hashlib.sha1(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:12]


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _done(cfg, job: ChunkJob, computed: bool, started: tuple[float, float], **extra) -> dict:
    """A chunk's result. ``run_id`` says which run of the chain computed it: a result Prefect serves from its
    cache was computed by an earlier run, and must not make this run redo the chunks downstream of it."""
    return {"index": job.index, "n": len(job.ids), "computed": computed, "run_id": cfg.run_id, "pid": os.getpid(),
            "seconds": round(time.perf_counter() - started[0], 3),
            "cpu_s": round(time.process_time() - started[1], 3),  # this process's, all its threads
            "peak_rss_mb": peak_rss_mb(), **extra}


def _errors_by_code(frames: list[pl.DataFrame]) -> tuple[dict[str, int], int]:
    """(failed records per reason code, number of failed records) over errors tables (severity 'error')."""
    codes: Counter = Counter()
    failed: set[str] = set()
    for f in frames:
        bad = f.filter(pl.col("severity") == "error")
        codes.update(bad["code"].to_list())
        failed.update(r for r in bad["record_id"].to_list() if r is not None)
    return dict(codes.most_common()), len(failed)


def read_errors(path: str | Path) -> pl.DataFrame:
    """The columns of an errors table that the counts need (not its messages)."""
    return pl.read_parquet(path, columns=["record_id", "severity", "code"])


def stream_concat(paths: list[str | Path], schema: dict[str, pl.DataType], dest: Path) -> int:
    """Concatenate Parquet files into ``dest`` one file at a time (memory bounded by one part), atomically.
    Returns the number of rows."""
    from pipeline.batch import ParquetStream

    out = ParquetStream(dest, schema)
    for p in paths:
        out.write_file(p)
    out.close()
    return out.rows


# --------------------------------------------------------------------------------------------- sources
@functools.lru_cache(maxsize=4)
def _open(source: str, root: str, options_json: str, run_id: str):
    """One open source per (source, root, options, chain run) and process: chunk after chunk (and the chunk
    tasks a Dask worker runs) reuse its parsed index tables (MIMIC's are ~800k rows); the run id keeps a
    later run in the same long-lived worker from seeing a stale index."""
    from pipeline.sources import open_source

    return open_source(source, root, **json.loads(options_json))


def open_run_source(cfg):
    return _open(cfg.source, str(cfg.data_root), json.dumps(cfg.source_options, sort_keys=True), cfg.run_id)


def list_ids(cfg) -> list[str]:
    return list(open_run_source(cfg).ids())


# ------------------------------------------------------------------------------------------- synthesize
def synth_part(cfg, job: ChunkJob) -> Path:
    return Path(cfg.data_root) / ".synth_parts" / f"part-{job.index:05d}.parquet"


def synth_done(cfg, job: ChunkJob) -> bool:
    return (Path(cfg.data_root) / "synthetic_database.csv").is_file() or synth_part(cfg, job).is_file()


def synth_chunk(cfg, job: ChunkJob) -> dict:
    from pipeline.synthetic import write_synthetic_part

    t0 = _clock()
    if synth_done(cfg, job) and not job.force:
        return _done(cfg, job, False, t0)
    start, stop = (int(x) for x in job.ids[0].split(":"))  # synthesis chunks are index ranges "start:stop"
    synth_part(cfg, job).unlink(missing_ok=True)
    write_synthetic_part(cfg.data_root, cfg.n, cfg.seed, job.index, start, stop)
    return _done(cfg, job, True, t0)


def synth_finish(cfg, results: list[dict], jobs: list[ChunkJob]) -> dict:
    from pipeline.synthetic import finish_synthetic_tree

    root = Path(cfg.data_root)
    if not (root / "synthetic_database.csv").is_file():
        parts = sorted(glob.glob(str(root / ".synth_parts" / "part-?????.parquet")))
        finish_synthetic_tree(root, cfg.n, cfg.seed, parts)
    return {"records": cfg.n, "root": str(root), "failed": 0, "failed_by_code": {}}


# ------------------------------------------------------------------------------------------------ ingest
def _ingest_paths(cfg, job: ChunkJob) -> tuple[Path, Path]:
    from pipeline.ingest import SHARD_DIR, _shard_name

    stem = Path(cfg.out) / SHARD_DIR / _shard_name(job.index, job.ids)
    return stem.with_name(stem.name + ".manifest.parquet"), stem.with_name(stem.name + ".errors.parquet")


def ingest_done(cfg, job: ChunkJob) -> bool:
    return all(p.is_file() for p in _ingest_paths(cfg, job))


def ingest_chunk(cfg, job: ChunkJob) -> dict:
    from pipeline.ingest import ingest_shard

    t0 = _clock()
    if job.force:
        for p in _ingest_paths(cfg, job):
            p.unlink(missing_ok=True)
    r = ingest_shard(cfg.source, cfg.data_root, list(job.ids), cfg.out, job.index, cfg.source_options,
                     source=open_run_source(cfg))
    return _done(cfg, job, not r.reused, t0, shard=r.model_dump())


def ingest_finish(cfg, results: list[dict], jobs: list[ChunkJob]) -> dict:
    from pipeline.ingest import ShardResult, merge_shards

    shards = [ShardResult(**r["shard"]) for r in results]
    s = merge_shards(cfg.source, cfg.data_root, cfg.out, shards, sum(r["n"] for r in results), keep_shards=True)
    return {"records": s.n_records, "ok": s.n_ok, "failed": s.n_failed, "warnings": s.n_warnings,
            "failed_by_code": s.failed_by_code, "warnings_by_code": s.warnings_by_code}


# ---------------------------------------------------------------------------------------------- features
def _features_paths(cfg, job: ChunkJob) -> list[Path]:
    from features.run import shard_paths

    return shard_paths(Path(cfg.out) / "features", job.index)


def features_done(cfg, job: ChunkJob) -> bool:
    # finished by today's measurement: a chunk an older one measured is not served from the flow's cache either
    from features.run import shard_finished

    return shard_finished(Path(cfg.out) / "features", job.index)


def features_chunk(cfg, job: ChunkJob) -> dict:
    from features.run import measure_shard

    t0 = _clock()
    if job.force:
        for p in reversed(_features_paths(cfg, job)):  # records first: it marks the shard finished
            p.unlink(missing_ok=True)
    computed = measure_shard(open_run_source(cfg), list(job.ids), Path(cfg.out) / "features", job.index)
    return _done(cfg, job, computed, t0)


def features_finish(cfg, results: list[dict], jobs: list[ChunkJob]) -> dict:
    from features.run import finish_features

    s = finish_features(Path(cfg.out) / "features", sum(r["n"] for r in results), len(results),
                        sum(not r["computed"] for r in results))
    by_code, _ = _errors_by_code([read_errors(Path(cfg.out) / "features" / "errors.parquet")])
    return {"records": s.n_records, "ok": s.n_measured, "failed": s.n_failed, "warnings": s.n_warnings,
            "failed_by_code": by_code}


# ------------------------------------------------------------------------------------------------ render
def _render_options(cfg):
    from pipeline.render import RenderOptions

    return RenderOptions(layout=cfg.layout, dpi=int(cfg.dpi), seed=int(cfg.seed))


def _render_part(cfg, job: ChunkJob) -> Path:
    o = _render_options(cfg)
    key = digest_of(o.layout, o.dpi, o.seed, o.fmt, o.naming, job.ids)
    return Path(cfg.out) / "images" / ".parts" / f"part-{job.index:05d}-{key}.parquet"


def render_done(cfg, job: ChunkJob) -> bool:
    part = _render_part(cfg, job)
    return part.is_file() and part.with_suffix(".errors.parquet").is_file()


def render_chunk(cfg, job: ChunkJob) -> dict:
    from pipeline.batch import errors_frame
    from pipeline.render import MANIFEST_SCHEMA, render_ids

    t0 = _clock()
    part = _render_part(cfg, job)
    if render_done(cfg, job) and not job.force:
        return _done(cfg, job, False, t0)
    images = Path(cfg.out) / "images"
    # images already drawn with the same options are kept (a killed chunk resumes image by image); the last
    # merged manifest says how the ones there were drawn, so an image of another layout or dpi is redrawn
    previous = {}
    if (images / "manifest.parquet").is_file():
        previous = {r["record_id"]: r for r in pl.scan_parquet(images / "manifest.parquet")
                    .filter(pl.col("record_id").is_in(list(job.ids))).collect().iter_rows(named=True)}
    rows, errors, skipped = render_ids(open_run_source(cfg), list(job.ids), images, _render_options(cfg), previous)
    write_parquet_atomic(errors_frame(errors), part.with_suffix(".errors.parquet"))
    write_parquet_atomic(pl.DataFrame(rows, schema=MANIFEST_SCHEMA), part)  # last: marks the chunk done
    return _done(cfg, job, True, t0, drawn=len(rows) - skipped, kept=skipped)


def render_finish(cfg, results: list[dict], jobs: list[ChunkJob]) -> dict:
    from pipeline.render import MANIFEST_SCHEMA

    parts = [_render_part(cfg, j) for j in jobs]
    images = Path(cfg.out) / "images"
    n_images = stream_concat(parts, MANIFEST_SCHEMA, images / "manifest.parquet")
    stream_concat([p.with_suffix(".errors.parquet") for p in parts], ERRORS_SCHEMA,
                  Path(cfg.out) / "errors" / "render.parquet")
    by_code, n_failed = _errors_by_code([read_errors(Path(cfg.out) / "errors" / "render.parquet")])
    drawn = sum(r.get("drawn", 0) for r in results)
    return {"records": sum(r["n"] for r in results), "ok": n_images, "drawn": drawn, "failed": n_failed,
            "failed_by_code": by_code}


# ----------------------------------------------------------------------------------------------- prompts
def _prompts_dir(cfg, job: ChunkJob) -> Path:
    from pipeline.prompts import knowledge_version, template_version

    # new templates or knowledge make new prompts: a finished part of older ones is not reused
    key = digest_of(cfg.budget, template_version(), knowledge_version(), job.ids)
    return Path(cfg.out) / "prompts" / ".parts" / f"part-{job.index:05d}-{key}"


def prompts_done(cfg, job: ChunkJob) -> bool:
    d = _prompts_dir(cfg, job)
    return (d / "prompts.parquet").is_file() and (d / "errors.parquet").is_file()


def prompts_chunk(cfg, job: ChunkJob) -> dict:
    from pipeline.prompts import run_prompts

    t0 = _clock()
    if prompts_done(cfg, job) and not job.force:
        return _done(cfg, job, False, t0)
    out = Path(cfg.out)
    d = _prompts_dir(cfg, job)
    shutil.rmtree(d, ignore_errors=True)
    tmp = tmp_sibling(d)  # the folder appears whole, or not at all
    shutil.rmtree(tmp, ignore_errors=True)
    s = run_prompts(None, None, out / "features", tmp, images_dir=out / "images", budget=cfg.budget,
                    manifest=out / "manifest.parquet", record_ids=list(job.ids), run_dir=out)
    os.replace(tmp, d)
    return _done(cfg, job, True, t0, prompts=s.n_prompts, tokens_max=s.tokens_max,
                 tokens_sum=round(s.tokens_mean * s.n_prompts))


def prompts_finish(cfg, results: list[dict], jobs: list[ChunkJob]) -> dict:
    from pipeline.inputs import copy_stamp
    from pipeline.prompts import PROMPTS_SCHEMA

    out = Path(cfg.out) / "prompts"
    copy_stamp(Path(cfg.out) / "features", out)  # the prompts carry the identity of the records they describe
    dirs = [_prompts_dir(cfg, j) for j in jobs]
    n = stream_concat([d / "prompts.parquet" for d in dirs], PROMPTS_SCHEMA, out / "prompts.parquet")
    stream_concat([d / "errors.parquet" for d in dirs], ERRORS_SCHEMA, out / "errors.parquet")
    by_code, n_failed = _errors_by_code([read_errors(out / "errors.parquet")])
    stats = pl.scan_parquet(out / "prompts.parquet").select(
        pl.len().alias("n"), pl.col("prompt_tokens").mean().alias("mean"),
        pl.col("prompt_tokens").max().alias("max")).collect().row(0, named=True)
    return {"records": sum(r["n"] for r in results), "prompts": n, "failed": n_failed,
            "failed_by_code": by_code, "tokens_mean": round(stats["mean"] or 0.0, 1),
            "tokens_max": int(stats["max"] or 0)}


# ---------------------------------------------------------------------------------------------- generate
@functools.lru_cache(maxsize=1)
def _writer_version() -> str:
    """The rules writer's source: its answers change with it, so finished parts of an older writer are not
    reused (an LLM's answers are keyed by their request in the response store instead)."""
    from pipeline import writer

    return hashlib.sha1(Path(writer.__file__).read_bytes()).hexdigest()[:12]


def _generate_dir(cfg, job: ChunkJob) -> Path:
    prompts = _prompts_dir(cfg, job)  # its name digests the prompts' settings, templates and knowledge
    key = digest_of(cfg.llm, cfg.base_url, cfg.variant, cfg.max_attempts, cfg.seed, prompts.name,
                    _writer_version() if cfg.llm == "rules" else None, job.ids)
    return Path(cfg.out) / "generate" / ".parts" / f"part-{job.index:05d}-{key}"


def generate_done(cfg, job: ChunkJob) -> bool:
    return (_generate_dir(cfg, job) / "generate_summary.json").is_file()


def generate_parallel(cfg) -> bool:
    """The rules writer is CPU work: its chunks spread over workers. A paid or remote LLM is I/O: one chunk
    at a time (each async with ``concurrency`` requests in flight), so one spending cap and one rate-limit
    gate hold for the whole run."""
    return cfg.llm == "rules"


def generate_chunk(cfg, job: ChunkJob) -> dict:
    from pipeline.generate import run_generate

    t0 = _clock()
    d = _generate_dir(cfg, job)
    if generate_done(cfg, job) and not job.force:
        return _done(cfg, job, False, t0, **json.loads((d / "generate_summary.json").read_text()) | {"cost_usd_new": 0.0})
    (d / "generate_summary.json").unlink(missing_ok=True)
    out = Path(cfg.out)
    max_cost = cfg.max_cost
    if max_cost is not None:  # the cap is the run's: what the earlier chunks of this run spent is gone
        max_cost = max(0.0, max_cost - sum(p.get("cost_usd_new", 0.0) for p in job.prior
                                           if p.get("run_id") == cfg.run_id))
    prompts = _prompts_dir(cfg, job) / "prompts.parquet"
    s = run_generate(prompts, d, llm=cfg.llm, base_url=cfg.base_url, variant=cfg.variant,
                     concurrency=cfg.concurrency, max_attempts=cfg.max_attempts, max_cost=max_cost,
                     seed=cfg.seed, timeout_s=cfg.timeout_s, max_tokens=cfg.max_tokens,
                     api_key_secret=cfg.api_key_secret, run_dir=out, store_dir=out / "generate" / "responses")
    summary = json.loads((d / "generate_summary.json").read_text())
    return _done(cfg, job, True, t0, **summary) | {"cost_usd_new": s.cost_usd_new}


_SUMMED = ("n_prompts", "n_ok", "n_accepted", "n_rejected", "n_failed", "n_skipped_budget", "n_refused_context",
           "n_requests", "n_reused", "n_http_sends", "cost_usd_new", "cost_usd_total")


def generate_describe(s: dict) -> str:
    """The generate stage's line, and under it what generate itself would tell a person: prompts without an
    accepted answer, failed sends by error code, format fallbacks, hints (``pipeline.generate.report_lines``)."""
    from dataclasses import fields

    from pipeline.generate import GenerateSummary, report_lines

    head = f"{s['ok']}/{s['records']} answered, {s['n_reused']} from the store, ${s['cost_usd_new']:.4f} spent now"
    known = {f.name for f in fields(GenerateSummary)}
    extra = [line.strip() for line in report_lines(GenerateSummary(**{k: v for k, v in s.items() if k in known}))[1:]]
    return "\n".join([head, *(f"{'':>12}{line}" for line in extra)])


def generate_finish(cfg, results: list[dict], jobs: list[ChunkJob]) -> dict:
    from pipeline.batch import ErrorRow, errors_frame
    from pipeline.generate import ANSWERS_SCHEMA

    out = Path(cfg.out) / "generate"
    answers = out / "answers.parquet"
    # a chunk finished by an earlier run (served from Prefect's cache) sent and spent nothing now
    results = [r if r.get("run_id") == cfg.run_id else
               {**r, "cost_usd_new": 0.0, "n_http_sends": 0, "n_reused": r.get("n_requests", 0)} for r in results]
    stream_concat([_generate_dir(cfg, j) / "answers.parquet" for j in jobs], ANSWERS_SCHEMA, answers)
    merged = {k: round(sum(r.get(k, 0) or 0 for r in results), 6) for k in _SUMMED}
    for key in ("sends_by_code", "failed_by_code"):  # counts by code: added up over the chunks
        merged[key] = dict(sum((Counter(r.get(key) or {}) for r in results), Counter()).most_common())
    for key in ("format_fallbacks", "hints"):  # what to tell a person, once each
        merged[key] = list(dict.fromkeys(x for r in results for x in (r.get(key) or [])))
    merged.update(answers_path=str(answers), chunks=len(results))
    (out / "generate_summary.json").write_text(json.dumps(merged, indent=2))
    # a prompt without any answer is a failed record of this stage: its last attempt's code says why
    a = pl.read_parquet(answers, columns=["record_id", "variant", "attempt", "status", "error_code",
                                          "error_message"])
    answered = set(a.filter(pl.col("status") == "ok")["record_id"].to_list())
    last = a.filter(~pl.col("record_id").is_in(list(answered))).sort("attempt").group_by(
        "record_id", maintain_order=True).last().sort("record_id")
    rows = [ErrorRow(r["record_id"], "generate", "error", r["error_code"] or r["status"], None,
                     r["error_message"] or r["status"]) for r in last.iter_rows(named=True)]
    write_parquet_atomic(errors_frame(rows), Path(cfg.out) / "errors" / "generate.parquet")
    by_code = dict(Counter(r.code for r in rows).most_common())
    return {**merged, "records": sum(r["n"] for r in results), "ok": len(answered), "failed": len(rows),
            "failed_by_code": by_code}


# ---------------------------------------------------------------------------------------------- validate
def _validate_dir(cfg, job: ChunkJob) -> Path:
    return Path(cfg.out) / "instructions" / ".parts" / f"part-{job.index:05d}"


def validate_done(cfg, job: ChunkJob) -> bool:
    """Never: validation is the truth gate and cheap, so every run checks every answer again with the
    validator it has (an older part may have been judged by older rules)."""
    return False


def validate_chunk(cfg, job: ChunkJob) -> dict:
    from pipeline.instructions import validate_part

    t0 = _clock()
    out = Path(cfg.out)
    validate_part(out / "generate" / "answers.parquet", out / "features", out / "manifest.parquet", list(job.ids),
                  _validate_dir(cfg, job), images=out / "images", prompts=out / "prompts" / "prompts.parquet",
                  test_fraction=cfg.test_fraction, seed=cfg.seed, image_root=out, conflicts=cfg.conflicts,
                  **cfg.stage_options.get("validate", {}))
    return _done(cfg, job, True, t0)


def validate_finish(cfg, results: list[dict], jobs: list[ChunkJob]) -> dict:
    from pipeline.instructions import finish_instruction_set

    from pipeline.card import write_card

    out = Path(cfg.out)
    s = finish_instruction_set(out / "instructions", [_validate_dir(cfg, j) for j in jobs],
                               test_fraction=cfg.test_fraction, conflicts=cfg.conflicts)
    write_card(out / "instructions", out / "manifest.parquet", out / "features", out)  # the dataset card
    by_code, n_failed = write_validate_errors(cfg)
    return {**s, "ok": s["records_accepted"], "failed": n_failed, "failed_by_code": by_code}


VALIDATE_ERRORS = Path("errors") / "validate.parquet"
UPSTREAM_ERRORS = (Path("errors") / "ingest.parquet", Path("features") / "errors.parquet",
                   Path("errors") / "render.parquet", Path("prompts") / "errors.parquet",
                   Path("errors") / "generate.parquet")


def write_validate_errors(cfg) -> tuple[dict[str, int], int]:
    """``errors/validate.parquet``: every record that reached validation and ended with no accepted answer for
    any of its variants, code ``validate:<reason>`` (its last attempt's first validator reason code; the
    message lists them all with their details). A record an earlier stage already dropped is left out: its
    reason is that stage's (a record without an answer is generate's failure, not the validator's verdict).
    Returns (records per code, records)."""
    from pipeline.batch import ErrorRow, errors_frame
    from pipeline.instructions import UNACCEPTED_FILE

    out = Path(cfg.out)
    path = out / "instructions" / UNACCEPTED_FILE
    rows: list = []
    if path.is_file():
        upstream = pl.concat([pl.scan_parquet(out / t).filter(pl.col("severity") == "error").select("record_id")
                              for t in UPSTREAM_ERRORS if (out / t).is_file()] or
                             [pl.LazyFrame(schema={"record_id": pl.String})])
        accepted = (pl.scan_parquet(out / "instructions" / "provenance.parquet").filter(pl.col("in_set"))
                    .select("record_id"))
        lost = (pl.scan_parquet(path).sort(["record_id", "variant"], nulls_last=True)
                .group_by("record_id", maintain_order=True).first()
                .join(accepted.unique(), on="record_id", how="anti")
                .join(upstream.unique(), on="record_id", how="anti").collect())
        for r in lost.iter_rows(named=True):
            reasons = list(r["reasons"] or []) or ["unexplained"]
            detail = "; ".join(r["details"] or [])
            rows.append(ErrorRow(r["record_id"], "validate", "error", f"validate:{reasons[0]}", None,
                                 f"no accepted answer: {', '.join(reasons)}" + (f" ({detail[:300]})" if detail else "")))
    write_parquet_atomic(errors_frame(rows), out / VALIDATE_ERRORS)
    return dict(Counter(r.code for r in rows).most_common()), len(rows)
