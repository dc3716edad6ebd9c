"""The chain, defined once: ``ecg-grounding run`` runs it in this process, the Prefect flow on Dask workers.

synthesize (synthetic source without --root) -> ingest -> features -> render -> prompts -> generate
(rules by default) -> validate. ``CHAIN`` below is the only place that says which stages run, in which
order, what each reads and writes and where its failed records are listed. Every stage works chunk by
chunk (hundreds of records; ``pipeline.chain_steps`` holds what a chunk does and how the chunks are
merged), writes into the run folder's standard layout (DEVELOPERS.md) and skips finished chunks, so
re-running a killed run resumes it and never re-buys a stored LLM response.

Hooks for other parts of the project, so that nobody re-spells the chain:
- ``RunConfig``: add a field (and its ``--flag`` in ``register``; ``config_from_args`` copies every field
  whose name is an argparse dest) and read it in the stage that needs it;
- ``PREFLIGHT``: checks ``(cfg) -> None`` that raise ``ConfigError`` before any stage runs;
- ``AFTER_RUN``: ``(cfg, report) -> None`` after the last stage, before ``run.json`` is written (add to the
  report, write a dataset card, ...);
- ``RunConfig.stage_options``: extra keyword arguments for one stage's function, by stage name.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Protocol

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
    concurrency: int = 16             # most LLM requests in flight (openai-compatible starts at 1 and adapts)
    timeout_s: float | None = None    # bound of one whole LLM request; None: sized from the measured speed
    max_tokens: int | None = None     # answer tokens per LLM request (None: the provider's default)
    max_attempts: int = 3
    max_cost: float | None = None
    api_key_secret: str | None = None  # name of a Prefect Secret block holding the LLM API key
    chunk_size: int = DEFAULT_CHUNK_SIZE
    test_fraction: float = 0.1
    conflicts: str = "keep"           # records whose measurements contradict the report: keep (flagged) | drop
    source_options: dict = field(default_factory=dict)
    stage_options: dict = field(default_factory=dict)  # {stage name: {keyword: value}}
    run_id: str = ""                  # set per run of the chain (not a setting: keys per-process caches)

    @property
    def data_root(self) -> Path:
        """The data root every stage reads: ``root``, or the generated tree of a synthetic run."""
        return Path(self.root) if self.root is not None else Path(self.out) / "synthetic"

    def to_json(self) -> dict:
        d = asdict(self)
        d.update(root=None if self.root is None else str(self.root), out=str(self.out))
        return d

    @classmethod
    def from_json(cls, d: dict) -> RunConfig:
        known = {f.name for f in fields(cls)}
        cfg = cls(**{k: v for k, v in d.items() if k in known})
        cfg.out = Path(cfg.out)
        cfg.root = None if cfg.root is None else Path(cfg.root)
        return cfg


# ------------------------------------------------------------------------------------------------ the chain
@dataclass(frozen=True)
class Stage:
    """One stage of the chain. ``chunk(cfg, job) -> dict`` does one chunk of records (idempotent: it skips
    work whose part files exist unless ``job.force``), ``finish(cfg, results, jobs) -> dict`` merges the
    chunks into the stage's outputs and returns its summary (with ``failed`` / ``failed_by_code``)."""

    name: str
    reads: tuple[str, ...]            # run-folder paths it reads ({data} = the data root)
    writes: tuple[str, ...]           # run-folder paths it writes
    errors: str | None                # its errors table (ERRORS_SCHEMA): severity 'error' = record dropped
    chunk: Callable
    finish: Callable
    done: Callable                    # (cfg, job) -> bool: the chunk's part files are there
    describe: Callable[[dict], str]
    after: tuple[str, ...] = ()       # stages whose chunk i feeds this stage's chunk i (redone -> redo)
    params: tuple[str, ...] = ()      # RunConfig fields its outputs depend on (cache keys)
    when: Callable = lambda cfg: True
    parallel: Callable = lambda cfg: True  # False: chunks one after another, each sees the earlier results
    seconds_per_record: float = 2.0   # generous per-record time for the chunk task timeout


def _steps():
    from pipeline import chain_steps as s

    return s


def _lazy(name: str) -> Callable:
    return lambda *a, **k: getattr(_steps(), name)(*a, **k)


CHAIN: tuple[Stage, ...] = (
    Stage("synth", reads=(), writes=("{data}/synthetic_database.csv", "{data}/records500/", "{data}/truth/"),
          errors=None, chunk=_lazy("synth_chunk"), finish=_lazy("synth_finish"), done=_lazy("synth_done"),
          describe=lambda s: f"{s['records']} synthetic records -> {s['root']}",
          params=("n", "seed"), when=lambda cfg: cfg.source == "synthetic" and cfg.root is None,
          seconds_per_record=1.0),
    Stage("ingest", reads=("{data}",), writes=("manifest.parquet", "errors/ingest.parquet", ".ingest_shards/"),
          errors="errors/ingest.parquet", chunk=_lazy("ingest_chunk"), finish=_lazy("ingest_finish"),
          done=_lazy("ingest_done"), after=("synth",), params=("source", "root", "source_options"),
          describe=lambda s: f"{s['ok']}/{s['records']} records ingested, {s['failed']} failed",
          seconds_per_record=1.0),
    Stage("features", reads=("{data}",), writes=("features/",), errors="features/errors.parquet",
          chunk=_lazy("features_chunk"), finish=_lazy("features_finish"), done=_lazy("features_done"),
          after=("synth",), params=("source", "root", "source_options"),
          describe=lambda s: f"{s['ok']} records measured, {s['failed']} failed, {s['warnings']} lead warnings"),
    Stage("render", reads=("{data}",), writes=("images/",), errors="errors/render.parquet",
          chunk=_lazy("render_chunk"), finish=_lazy("render_finish"), done=_lazy("render_done"),
          after=("synth",), params=("source", "root", "source_options", "layout", "dpi", "seed"),
          describe=lambda s: f"{s['ok']} images ({s['drawn']} drawn now), {s['failed']} failed"),
    Stage("prompts", reads=("features/", "manifest.parquet", "images/"), writes=("prompts/",),
          errors="prompts/errors.parquet", chunk=_lazy("prompts_chunk"), finish=_lazy("prompts_finish"),
          done=_lazy("prompts_done"), after=("ingest", "features", "render"), params=("budget",),
          describe=lambda s: f"{s['prompts']} prompts, mean {s['tokens_mean']:.0f} / max {s['tokens_max']} "
                             f"tokens, {s['failed']} failed"),
    Stage("generate", reads=("prompts/", "features/", "manifest.parquet", "images/"),
          writes=("generate/responses/", "generate/answers.parquet", "errors/generate.parquet"),
          errors="errors/generate.parquet", chunk=_lazy("generate_chunk"), finish=_lazy("generate_finish"),
          done=_lazy("generate_done"), after=("prompts",),
          params=("llm", "base_url", "variant", "max_attempts", "max_tokens", "seed"),
          parallel=lambda cfg: _steps().generate_parallel(cfg), seconds_per_record=60.0,
          describe=_lazy("generate_describe")),
    Stage("validate", reads=("generate/answers.parquet", "features/", "manifest.parquet", "images/", "prompts/"),
          writes=("instructions/", "errors/validate.parquet"), errors="errors/validate.parquet",
          chunk=_lazy("validate_chunk"), finish=_lazy("validate_finish"),
          done=_lazy("validate_done"), after=("generate",), params=("test_fraction", "seed", "conflicts"),
          describe=lambda s: f"{s['records_accepted']}/{s['records']} records accepted into the instruction set"
                             + (f", {s['failed']} without an accepted answer: " + ", ".join(
                                 f"{c} {n}" for c, n in s["failed_by_code"].items()) if s.get("failed") else "")),
)
STAGES: dict[str, Stage] = {s.name: s for s in CHAIN}


def stage_params(stage: Stage, cfg: RunConfig) -> dict:
    """The settings a stage's outputs depend on: its own and its upstream stages' (transitively)."""
    names, todo = set(), [stage.name]
    while todo:
        s = STAGES[todo.pop()]
        names.update(s.params)
        todo.extend(a for a in s.after if a in STAGES)
    d = cfg.to_json()
    return {k: d[k] for k in sorted(names)}


# ------------------------------------------------------------------------------------------------ pre-flight
def _check_settings(cfg: RunConfig) -> None:
    """Every option of the run (``pipeline.preflight.check_run_config``: source, root and its table, numbers,
    layout, variant, LLM spec and key, price, output folder) and what only the chain has (stage options)."""
    from pipeline.preflight import check_run_config

    check_run_config(cfg)
    unknown = set(cfg.stage_options) - set(STAGES)
    if unknown:
        raise ConfigError(f"stage_options for unknown stages: {', '.join(sorted(unknown))}")


def _check_measurement_settings(cfg: RunConfig) -> None:
    from features.lead_edges import p_onset_fit

    p_onset_fit()  # a bad ECG_GROUNDING_P_ONSET_FIT stops the run here (ConfigError)


PREFLIGHT: list[Callable[[RunConfig], None]] = [_check_settings, _check_measurement_settings]
AFTER_RUN: list[Callable[[RunConfig, dict], None]] = []


def preflight(cfg: RunConfig) -> None:
    """Every check that can fail before a stage runs; raises ``ConfigError`` with one line."""
    for check in PREFLIGHT:
        check(cfg)


# ------------------------------------------------------------------------------------ run folder bookkeeping
LOCK = "run.lock"
LAYOUT_FILE = ".chain.json"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_run_folder(cfg: RunConfig) -> dict | None:
    """Mark the run folder as being written (``run.lock``: pid, host, start, stage). Returns the lock a
    crashed earlier run left (its stage tells where it died), None after a clean one. Refuses a folder that a
    live process on this machine is writing, and one made with another chunking (its finished chunks would
    not line up with this run's)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    layout = {"source": cfg.source, "root": None if cfg.root is None else str(Path(cfg.root).resolve()),
              "chunk_size": cfg.chunk_size, "n": cfg.n if cfg.root is None else None,
              "seed": cfg.seed if cfg.root is None else None}
    lf = out / LAYOUT_FILE
    if lf.is_file():
        old = json.loads(lf.read_text())
        if old != layout:
            diff = ", ".join(f"{k} {old.get(k)!r} -> {v!r}" for k, v in layout.items() if old.get(k) != v)
            raise ConfigError(f"{out} holds a run made with other data or chunking ({diff}): use a new --out")
    else:
        lf.write_text(json.dumps(layout, indent=2))
    previous = None
    lock = out / LOCK
    if lock.is_file():
        try:
            previous = json.loads(lock.read_text())
        except ValueError:
            previous = {"status": "unreadable"}
        if previous.get("host") == socket.gethostname() and previous.get("pid") != os.getpid() \
                and _pid_alive(int(previous.get("pid", 0))) and previous.get("status") == "running":
            raise ConfigError(f"{out} is being written by pid {previous['pid']} (started {previous.get('started')}); "
                              f"wait for it or stop it first")
    _write_lock(cfg, "starting")
    return previous


def _write_lock(cfg: RunConfig, stage: str) -> None:
    lock = Path(cfg.out) / LOCK
    data = {"status": "running", "pid": os.getpid(), "host": socket.gethostname(), "run_id": cfg.run_id,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "stage": stage}
    if lock.is_file():
        try:
            old = json.loads(lock.read_text())
            if old.get("run_id") == cfg.run_id:
                data["started"] = old.get("started", data["started"])
        except ValueError:
            pass
    tmp = lock.with_name(f".{LOCK}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, lock)


def release_run_folder(cfg: RunConfig) -> None:
    (Path(cfg.out) / LOCK).unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------ failures, report
def run_failures(cfg: RunConfig):
    """Every record a stage dropped (severity 'error' in its errors table): record_id, stage, code, message."""
    import polars as pl

    frames = []
    for s in CHAIN:
        if s.errors and (Path(cfg.out) / s.errors).is_file():
            # lazy: only the error rows (a long run's lead warnings stay on disk)
            frames.append(pl.scan_parquet(Path(cfg.out) / s.errors).filter(pl.col("severity") == "error")
                          .select("record_id", pl.lit(s.name).alias("stage"), "code", "message").collect())
    if not frames:
        return pl.DataFrame(schema={"record_id": pl.String, "stage": pl.String, "code": pl.String,
                                    "message": pl.String})
    return pl.concat(frames)


def failures_summary(cfg: RunConfig, unexplained: list[str] = ()):
    """The run's failed records by reason code, as every command prints them (``pipeline.batch.Failures``):
    a record that failed in ingest and again in features counts once; records that reached validation
    without an accepted answer count under ``validate:<code>``, ``unexplained`` ones under their own code."""
    import polars as pl

    from pipeline.batch import collect_failures

    tables: list = [Path(cfg.out) / s.errors for s in CHAIN if s.errors]
    if unexplained:
        tables.append(("unexplained (run.json)", pl.DataFrame(
            {"record_id": list(unexplained), "code": ["unexplained"] * len(unexplained),
             "stage": ["chain"] * len(unexplained)})))
    return collect_failures(tables)


def acceptance_by_diagnosis(cfg: RunConfig):
    """Per diagnosis statement of the source (code, else text): records ingested, accepted into the set."""
    import polars as pl

    out = Path(cfg.out)
    man, prov = out / "manifest.parquet", out / "instructions" / "provenance.parquet"
    if not man.is_file():
        return pl.DataFrame(schema={"diagnosis": pl.String, "records": pl.UInt32, "accepted": pl.UInt32,
                                    "acceptance_rate": pl.Float64})
    # lazy: a scan of two columns, the accepted ids joined, never the whole manifest in memory
    if prov.is_file():
        accepted = (pl.scan_parquet(prov).filter(pl.col("in_set")).select("record_id").unique()
                    .with_columns(pl.lit(True).alias("ok")))
    else:
        accepted = pl.LazyFrame(schema={"record_id": pl.String, "ok": pl.Boolean})
    return (pl.scan_parquet(man).select("record_id", "statements").explode("statements")
            .select("record_id", pl.coalesce(pl.col("statements").struct.field("code"),
                                             pl.col("statements").struct.field("text"),
                                             pl.lit("(no statement)")).alias("diagnosis"))
            .unique(["record_id", "diagnosis"])
            .join(accepted, on="record_id", how="left")
            .group_by("diagnosis").agg(pl.len().alias("records"), pl.col("ok").fill_null(False).sum().alias("accepted"))
            .with_columns((pl.col("accepted") / pl.col("records")).round(4).alias("acceptance_rate"))
            .sort(["records", "diagnosis"], descending=[True, False]).collect())


def _report(cfg: RunConfig, summaries: dict, timings: dict, chunk_results: dict, previous: dict | None,
            listed: list[str] | None = None) -> dict:
    import polars as pl

    from pipeline.run_outcome import unexplained_ids

    out = Path(cfg.out)
    failures = run_failures(cfg)
    n_records = summaries.get("ingest", {}).get("records", 0)
    failed_ids = set(failures["record_id"].drop_nulls().to_list())
    lost = unexplained_ids(cfg, listed, failed_ids) if listed is not None and "validate" in summaries else []
    if lost:
        failures = pl.concat([failures, pl.DataFrame(
            {"record_id": lost, "stage": ["chain"] * len(lost), "code": ["unexplained"] * len(lost),
             "message": ["neither accepted nor failed in any stage"] * len(lost)}, schema=failures.schema)])
        failed_ids.update(lost)
    order = {s.name: i for i, s in enumerate(CHAIN)}  # ties in chain order, then by code
    by = (failures.group_by("stage", "code").len()
          .with_columns(pl.col("stage").replace_strict(order, default=len(order), return_dtype=pl.Int32).alias("_o"))
          .sort(["len", "_o", "code"], descending=[True, False, False]).drop("_o"))
    n_rejected = failures.filter(pl.col("stage") == "validate")["record_id"].n_unique()
    summary = summaries.get("validate", {})
    workers: dict[str, float] = {}
    for results in chunk_results.values():
        for r in results:
            workers[str(r.get("pid"))] = max(workers.get(str(r.get("pid")), 0.0), r.get("peak_rss_mb", 0.0))
    gen = summaries.get("generate", {})
    return {
        "summary": {k: v for k, v in summary.items() if k not in ("ok", "failed", "failed_by_code")},
        "paths": {
            "data_root": str(cfg.data_root), "manifest": str(out / "manifest.parquet"), "errors": str(out / "errors"),
            "features": str(out / "features"), "images": str(out / "images"),
            "prompts": str(out / "prompts" / "prompts.parquet"), "responses": str(out / "generate" / "responses"),
            "answers": str(out / "generate" / "answers.parquet"), "instructions": str(out / "instructions"),
        },
        "config": {k: v for k, v in cfg.to_json().items() if k not in ("run_id", "api_key_secret")},
        "records": n_records,
        "records_accepted": summary.get("records_accepted", 0),
        "failures": {
            "records_failed": len(failed_ids),
            "failure_rate": round(len(failed_ids) / n_records, 4) if n_records else 0.0,
            "records_without_accepted_answer": n_rejected,  # reached validation, no answer accepted
            "records_unexplained": len(lost),
            "unexplained_ids": lost[:100],
            "by_reason": [{"stage": s, "code": c, "records": n} for s, c, n in by.iter_rows()],
        },
        "stages": summaries,
        "ingest_failed": summaries.get("ingest", {}).get("failed", 0),
        "features_failed": summaries.get("features", {}).get("failed", 0),
        "generate": {"ok": gen.get("ok", 0), "failed": gen.get("failed", 0), "cost_usd_new": gen.get("cost_usd_new", 0.0)},
        "timings_s": timings,
        "chunks": {name: {"chunks": len(rs), "computed": sum(r["computed"] and r.get("run_id") == cfg.run_id
                                                             for r in rs),
                          "seconds_in_chunks": round(sum(r.get("seconds", 0.0) for r in rs), 2),
                          "cpu_s_in_chunks": round(sum(r.get("cpu_s", 0.0) for r in rs), 2)}
                   for name, rs in chunk_results.items()},
        "peak_rss_mb_by_process": workers,
        "resumed_after_crash": previous if previous and previous.get("status") == "running" else None,
    }


# ------------------------------------------------------------------------------------------------ executors
class Executor(Protocol):
    def map(self, stage: Stage, cfg: RunConfig, jobs: list) -> list[dict]:
        """Run ``stage.chunk`` over ``jobs`` (in order and one after another when not
        ``stage.parallel(cfg)``: each job then carries the earlier results in ``prior``)."""

    def finish(self, stage: Stage, cfg: RunConfig, results: list[dict], jobs: list) -> dict:
        """Run ``stage.finish``."""


class SerialExecutor:
    """This process, chunk after chunk: what ``ecg-grounding run`` uses (no server, no workers). One progress
    bar per stage (``pipeline.progress``; the chunks' own functions tick it)."""

    def map(self, stage: Stage, cfg: RunConfig, jobs: list) -> list[dict]:
        from pipeline import progress

        results: list[dict] = []
        unit, total = ("requests", 0) if stage.name == "generate" else ("records", _job_records(stage, cfg, jobs))
        with progress.track(stage.name, total, unit=unit):
            for job in jobs:
                results.append(stage.chunk(cfg, replace(job, prior=tuple(results)) if not stage.parallel(cfg)
                                           else job))
        return results

    def finish(self, stage: Stage, cfg: RunConfig, results: list[dict], jobs: list) -> dict:
        return stage.finish(cfg, results, jobs)


def _job_records(stage: Stage, cfg: RunConfig, jobs: list) -> int:
    """How many records ``jobs`` cover (synthesis jobs hold one 'start:stop' range each)."""
    if stage.name == "synth":
        return sum(int(b) - int(a) for j in jobs for a, b in (j.ids[0].split(":"),))
    return sum(len(j.ids) for j in jobs)


def plan(stage: Stage, cfg: RunConfig, ids: Callable[[], list[str]]) -> list:
    """The chunk jobs of ``stage``: index ranges for synthesis, chunks of record ids for the rest."""
    from pipeline.batch import chunks
    from pipeline.chain_steps import ChunkJob

    if stage.name == "synth":
        return [ChunkJob(i, (f"{a}:{min(cfg.n, a + cfg.chunk_size)}",))
                for i, a in enumerate(range(0, cfg.n, cfg.chunk_size))]
    return [ChunkJob(i, tuple(c)) for i, c in enumerate(chunks(ids(), cfg.chunk_size))]


def run_chain(cfg: RunConfig, executor: Executor | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Run every stage of ``CHAIN`` with ``executor`` (default: this process); write ``run.json``
    (``pipeline.runinfo``: config, software, host, times, per-stage counts; also when a stage raises); return
    the report (validation summary, failures by reason, per-stage summaries, timings, paths, exit code)."""
    from pipeline import runinfo
    from pipeline.run_outcome import note_memory

    if log is None:
        from pipeline.cli import say as log
    executor = executor or SerialExecutor()
    cfg = replace(cfg, out=Path(cfg.out), run_id=cfg.run_id or uuid.uuid4().hex)
    preflight(cfg)  # bad usage: one line, nothing written
    started_at, t0 = runinfo.utc_now(), time.perf_counter()
    previous = claim_run_folder(cfg)
    if previous and previous.get("status") == "running":
        log(f"[    chain] resuming a run that died in stage {previous.get('stage')!r} "
            f"(pid {previous.get('pid')}, started {previous.get('started')}): finished chunks are kept")
    summaries: dict[str, dict] = {}
    timings: dict[str, float] = {}
    memory: dict[str, dict] = {"flow": {}, "workers": {}}
    chunk_results: dict[str, list[dict]] = {}
    redone: dict[str, set[int]] = {}
    listed: list[str] | None = None

    def ids() -> list[str]:
        nonlocal listed
        if listed is None:
            from pipeline.chain_steps import list_ids

            listed = list_ids(cfg)
        return listed

    def stage_counts() -> dict[str, dict]:
        return {name: {**summaries[name], "seconds": timings.get(name)} for name in summaries}

    try:
        for stage in CHAIN:
            if not stage.when(cfg):
                continue
            _write_lock(cfg, stage.name)
            started = time.perf_counter()
            forced = set().union(*(redone.get(a, set()) for a in stage.after))
            jobs = [replace(j, force=j.index in forced) for j in plan(stage, cfg, ids)]
            results = executor.map(stage, cfg, jobs)
            summary = executor.finish(stage, cfg, results, jobs)
            timings[stage.name] = round(time.perf_counter() - started, 2)
            redone[stage.name] = {r["index"] for r in results if r["computed"] and r.get("run_id") == cfg.run_id}
            chunk_results[stage.name] = results
            summaries[stage.name] = summary
            note_memory(memory, stage.name, results, cfg.run_id)
            head, *more = stage.describe(summary).split("\n")  # a stage may add lines under its own
            log("\n".join([f"[{stage.name:>9}] {head} ({timings[stage.name]:.1f} s)", *more]))
    except BaseException as exc:
        # a stage that raised mid-run leaves a run.json saying so beside what it wrote (run.lock stays: the
        # next run resumes and says where this one died)
        try:
            runinfo.write_run_info(cfg.out, runinfo.build_run_info(
                cfg, started_at, runinfo.utc_now(), time.perf_counter() - t0, stage_counts(),
                error=f"{type(exc).__name__}: {exc}", root=cfg.data_root))
        except OSError:  # an unwritable --out: the original error is the one to show
            pass
        raise
    report = _report(cfg, summaries, timings, chunk_results, previous, listed)
    report["memory_mb_by_stage"] = memory
    report["records_failed"] = report["failures"]["records_failed"]
    report["exit_code"] = 1 if report["records_failed"] else 0
    for hook in AFTER_RUN:
        hook(cfg, report)
    stages = stage_counts()
    for stage_name, failed_ids in runinfo.failed_record_ids(cfg.out).items():
        stages.setdefault(stage_name, {})["failed_ids"] = failed_ids[:100]  # enough to find them; tables hold all
    info = runinfo.build_run_info(
        cfg, started_at, runinfo.utc_now(), time.perf_counter() - t0, stages, paths=report["paths"],
        summary=report["summary"], exit_code=report["exit_code"], records_failed=report["records_failed"],
        root=cfg.data_root)
    info.update({k: v for k, v in report.items() if k not in info and k != "config"})
    runinfo.write_run_info(cfg.out, info)
    release_run_folder(cfg)
    return report


def run_pipeline(cfg: RunConfig) -> dict:
    """The whole chain in this process (what ``ecg-grounding run`` and ``make demo`` do)."""
    return run_chain(cfg)


# ------------------------------------------------------------------------------------------------------- CLI
def register(subparsers) -> None:
    from pipeline.cli import add_source_args
    from pipeline.preflight import fraction, nonneg_float, nonneg_int, positive_float, positive_int
    from pipeline.render import LAYOUTS

    p = subparsers.add_parser(
        "run", help="the whole chain: (synthesize,) ingest, measure, render, prompt, generate, validate",
        description="The whole chain on one source, the way `make demo` runs it: (synthesize,) ingest, measure, "
                    "render, prompt, generate (the rules writer by default), validate, into one run folder. "
                    "Every stage works chunk by chunk and skips finished chunks, so re-running a killed run "
                    "resumes it and never re-buys a stored LLM response. Every option is checked before the "
                    "first stage. Exit status 1 when any record failed in a stage or ended without an accepted "
                    "answer (listed by reason on stderr; validator rejections as validate:<code>).\n\n"
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
    p.add_argument("--concurrency", type=positive_int, default=16,
                   help="most LLM requests in flight (openai-compatible starts at 1 and adapts up to this)")
    p.add_argument("--timeout", dest="timeout_s", type=positive_float, default=None,
                   help="seconds one whole LLM request may take (default: sized from the server's measured speed)")
    p.add_argument("--max-tokens", type=positive_int, default=None, help="answer tokens per LLM request")
    p.add_argument("--max-attempts", type=positive_int, default=3)
    p.add_argument("--max-cost", type=nonneg_float, default=None, help="stop before spending more than this (USD)")
    p.add_argument("--api-key-secret", default=None, help="Prefect Secret block holding the LLM API key")
    p.add_argument("--chunk-size", type=positive_int, default=DEFAULT_CHUNK_SIZE,
                   help="records per chunk (default %(default)s)")
    p.add_argument("--test-fraction", type=fraction, default=0.1)
    p.add_argument("--conflicts", choices=("keep", "drop"), default="keep",
                   help="records whose measurements contradict a report statement: keep (flagged) or drop")
    p.set_defaults(func=_run_cli)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """A RunConfig from every argparse dest that names one of its fields (and the source options)."""
    from pipeline.cli import source_options_from

    cfg = RunConfig(**{f.name: getattr(args, f.name) for f in fields(RunConfig)
                       if hasattr(args, f.name) and f.name != "source_options"})
    cfg.source_options = source_options_from(args)
    return cfg


def _run_cli(args: argparse.Namespace) -> int:
    from pipeline.cli import finish
    from pipeline.instructions import format_summary
    from pipeline.run_outcome import outcome_line

    cfg = config_from_args(args)
    started = time.perf_counter()
    report = run_pipeline(cfg)
    lines = ["", format_summary(report["summary"]), outcome_line(report),
             f"\nDone in {time.perf_counter() - started:.1f} s. Outputs under {Path(cfg.out).resolve()}:"]
    lines += [f"  {name:<13} {path}" for name, path in report["paths"].items()]
    lines.append(f"  {'run record':<13} {Path(cfg.out) / 'run.json'}")
    payload = {k: v for k, v in report.items() if k != "failures"}
    return finish(args, payload, "\n".join(lines),
                  failures_summary(cfg, report["failures"]["unexplained_ids"]))
