"""The chain of ``pipeline.run_all`` as one Prefect flow: what data engineers schedule, resume and scale out.

The flow adds no stage of its own: it runs ``pipeline.run_all.CHAIN`` with an executor whose chunk tasks go
to a task runner — by default a local Dask cluster of worker processes (``--workers N``, one thread each),
or an existing Dask cluster (``--dask-address tcp://host:8786``, or ``DASK_SCHEDULER_ADDRESS``). Each chunk
(hundreds of records, never one task per record) is one task run with:
- a cache key (run folder, stage, chunk, its ids, the settings its outputs depend on) and a persisted result
  under ``RUN/.prefect/results``, so a resumed run shows finished chunks as Cached;
- retries for transient failures only (I/O, connection, a locked database), never for bugs or bad settings;
- a timeout scaled by the chunk's size.
Generate with the rules writer maps over workers like the other stages; with an LLM it answers one chunk
after another, each async with ``concurrency`` requests in flight, under one spending cap.

After the last stage the flow publishes artifacts (quality summary, failures by reason, acceptance per
diagnosis, a link to the dataset card) and ends Failed — or Completed named ``CompletedWithWarnings``
with ``on_failure_rate='warn'`` — when more than ``max_failure_rate`` of the records failed: dropped by a stage,
or validated without an accepted answer (reason ``validate:<code>``). Settings, the
LLM spec, its API key (environment or a Prefect Secret block) and the roots are checked before anything
runs.

Run it locally:   python -m flows.grounding --out outputs/flow-demo --n 50 --workers 2
Deploy it:        prefect deploy --all   (prefect.yaml; README "Scheduling with Prefect")
"""
from __future__ import annotations

import flows  # noqa: F401  (Prefect defaults before Prefect is imported)

import argparse
import builtins
import hashlib
import json
import logging
import os
import re
import sqlite3
import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.states import Completed, Failed

from flows.guard import ENV as GUARD_ENV
from flows.guard import exit_with_parent, guard_worker
from pipeline.chain_steps import ChunkJob, digest_of
from pipeline.record import ConfigError
from pipeline.sources import SOURCE_NAMES
from pipeline.run_all import (
    STAGES, RunConfig, acceptance_by_diagnosis, preflight, run_chain, stage_params,
)
from pipeline.run_outcome import outcome_line

TASK_RUNNERS = ("dask", "threads")


class _QuietThreadTimeout(logging.Filter):
    """Drop Prefect's per-task warning that a timeout in a worker thread cannot interrupt blocking calls: our
    chunks are Python loops over short numpy / polars calls, where the timeout does interrupt them, and the
    warning would otherwise repeat for every chunk of every stage."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Timeout of %s seconds configured for this task, but the task is")


logging.getLogger("prefect.task_runs").addFilter(_QuietThreadTimeout())
ON_FAILURE_RATE = ("fail", "warn")
DASK_ADDRESS_ENV = "DASK_SCHEDULER_ADDRESS"


# ----------------------------------------------------------------------------------------------- the tasks
def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the machine, the network or a busy database, not our code or the user's settings."""
    if isinstance(exc, (ConfigError, ValueError, TypeError, KeyError, AttributeError, AssertionError)):
        return False
    if isinstance(exc, sqlite3.OperationalError):
        return "locked" in str(exc) or "busy" in str(exc)
    if isinstance(exc, (builtins.TimeoutError, ConnectionError, MemoryError)):
        return True
    if isinstance(exc, OSError):  # EIO, ENOSPC freed by a cleaner, a flaky network mount; not a missing file
        return not isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError))
    try:
        import httpx

        return isinstance(exc, httpx.TransportError)
    except ImportError:  # pragma: no cover
        return False


def _retry_transient(task, task_run, state) -> bool:
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 - we only classify it
        return is_transient(exc)
    return False


@task(name="chunk", persist_result=True, retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=_retry_transient)
def chunk_task(stage: str, index: int, cfg: dict, job: dict, cache_key: str) -> dict:
    """One chunk of one stage (``pipeline.run_all.CHAIN``); ``cache_key`` is what Prefect caches it under."""
    guard_worker()
    try:
        return STAGES[stage].chunk(RunConfig.from_json(cfg), ChunkJob(**{**job, "ids": tuple(job["ids"]),
                                                                         "prior": tuple(job["prior"])}))
    finally:
        release_heap()


def release_heap() -> None:
    """Hand the heap a chunk freed back to the system (glibc ``malloc_trim``). The local workers run without
    Dask's ``MALLOC_TRIM_THRESHOLD_`` (``tune_local_dask``: it costs the stages CPU), so without this a worker
    keeps the high-water mark of its largest chunk, fragmented, for the rest of a long run. A millisecond
    per chunk; nothing where there is no glibc."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@task(name="finish", retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=_retry_transient)
def finish_task(stage: str, cfg: dict, results: list[dict], jobs: list[dict]) -> dict:
    """Merge one stage's chunks into its outputs (``Stage.finish``)."""
    return STAGES[stage].finish(RunConfig.from_json(cfg), results,
                                [ChunkJob(**{**j, "ids": tuple(j["ids"]), "prior": ()}) for j in jobs])


def _cache_key(context, parameters: dict) -> str:
    return parameters["cache_key"]


def _job_json(job: ChunkJob) -> dict:
    return {"index": job.index, "ids": list(job.ids), "force": job.force, "prior": list(job.prior)}


class PrefectExecutor:
    """Runs the chain's chunks as task runs on ``runner`` (Dask or threads) and its merges in the flow."""

    def __init__(self, runner, result_storage, timeout_s: float | None = None):
        self.runner, self.storage, self.timeout_s = runner, result_storage, timeout_s

    def _task(self, stage, cfg: RunConfig, job: ChunkJob):
        refresh = job.force or not stage.done(cfg, job)
        timeout = self.timeout_s or 300 + stage.seconds_per_record * len(job.ids) * (
            cfg.max_attempts if stage.name == "generate" else 1)
        return chunk_task.with_options(
            name=f"{stage.name}-chunk", task_run_name=f"{stage.name}-{job.index:05d}", cache_key_fn=_cache_key,
            refresh_cache=refresh, result_storage=self.storage, timeout_seconds=timeout)

    def _key(self, stage, cfg: RunConfig, job: ChunkJob) -> str:
        return f"ecg-{stage.name}-{job.index:05d}-" + digest_of(
            str(Path(cfg.out).resolve()), stage.name, job.index, job.digest, stage_params(stage, cfg))

    def _params(self, stage, cfg: RunConfig, job: ChunkJob) -> dict:
        return {"stage": stage.name, "index": job.index, "cfg": cfg.to_json(), "job": _job_json(job),
                "cache_key": self._key(stage, cfg, job)}

    def map(self, stage, cfg: RunConfig, jobs: list[ChunkJob]) -> list[dict]:
        if stage.parallel(cfg):
            futures = [self.runner.submit(self._task(stage, cfg, j), self._params(stage, cfg, j)) for j in jobs]
            return [f.result() for f in futures]
        results: list[dict] = []
        for j in jobs:  # one after another: each chunk sees what the earlier ones spent
            j = replace(j, prior=tuple(results))
            results.append(self.runner.submit(self._task(stage, cfg, j), self._params(stage, cfg, j)).result())
        return results

    def finish(self, stage, cfg: RunConfig, results: list[dict], jobs: list[ChunkJob]) -> dict:
        return finish_task.with_options(name=f"{stage.name}-finish")(
            stage.name, cfg.to_json(), results, [_job_json(replace(j, prior=())) for j in jobs])


# -------------------------------------------------------------------------------------------- task runners
def _api_url() -> str | None:
    """The Prefect API this flow run talks to (the temporary server's, without PREFECT_API_URL)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return str(client.api_url)


class LocalDask:
    """A local Dask cluster of ``workers`` single-threaded processes, started in a background thread (so its
    start and the workers' imports overlap the flow's pre-flight), which the Dask task runner then uses.

    One thread per worker process: the stages are CPU-bound Python, where threads would share one GIL. The
    workers get this run's API URL (else each would start a temporary Prefect server of its own and record
    its task runs there), exit with this flow-run process (``flows.guard``) and keep nothing between runs."""

    def __init__(self, workers: int, api_url: str | None, memory_limit: str | None = "auto"):
        from concurrent.futures import ThreadPoolExecutor

        tune_local_dask()
        import distributed  # noqa: F401  (first: importing it configures its loggers)

        # the scheduler's and nannies' INFO lines (connections, worker start / stop) would drown the stage lines
        logging.getLogger("distributed").setLevel(logging.WARNING)
        self.workers = workers
        env = {GUARD_ENV: "1", **({"PREFECT_API_URL": api_url} if api_url else {})}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dask-start")
        self._cluster = self._pool.submit(self._start, workers, env, memory_limit)

    @staticmethod
    def _start(workers: int, env: dict, memory_limit):
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               memory_limit=memory_limit, env=env)
        with Client(cluster) as client:  # import the stages' modules now, while pre-flight runs
            client.run(_warm_worker)
        return cluster

    def runner(self):
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(cluster=self._cluster.result())

    def address(self) -> str:
        return self._cluster.result().scheduler_address

    def close(self) -> None:
        try:
            self._cluster.result().close()
        except Exception:  # noqa: BLE001 - it never started: nothing to close
            pass
        self._pool.shutdown(wait=False)


def _warm_worker() -> None:
    import prefect.task_engine  # noqa: F401

    import features.measure  # noqa: F401
    import pipeline.chain_steps  # noqa: F401
    import pipeline.instructions  # noqa: F401
    import pipeline.prompts  # noqa: F401
    import pipeline.render  # noqa: F401
    import pipeline.synthetic  # noqa: F401


def make_task_runner(task_runner: str = "dask", workers: int | None = None, dask_address: str | None = None,
                     local: LocalDask | None = None):
    """Prefect's thread pool, or a Dask task runner: on an existing cluster at ``dask_address`` (or
    ``DASK_SCHEDULER_ADDRESS``; its workers need ``PREFECT_API_URL`` set where they run), else on ``local``."""
    if task_runner == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=workers or os.cpu_count() or 1)
    if task_runner != "dask":
        raise ConfigError(f"task runner {task_runner!r}: choose one of {', '.join(TASK_RUNNERS)}")
    from prefect_dask import DaskTaskRunner

    address = dask_address or os.environ.get(DASK_ADDRESS_ENV)
    if address:
        return DaskTaskRunner(address=address)
    return (local or LocalDask(workers or os.cpu_count() or 1, _api_url())).runner()


def tune_local_dask() -> None:
    """Two Dask defaults that cost our chunks CPU (measured: features 1.6-2x the CPU seconds of the same chunk
    in one plain process): the statistical profiler samples every worker thread's stack every 10 ms, and
    ``MALLOC_TRIM_THRESHOLD_`` (set for every worker) switches off glibc's dynamic mmap threshold, so every
    large numpy array is mmapped, page-faulted and unmapped again. Off for the workers this process starts."""
    import dask

    dask.config.set({"distributed.worker.profile.enabled": False,
                     "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None})


def _result_storage(out: Path):
    """A LocalFileSystem block under the run folder for the chunks' persisted results: they live and go
    with the outputs they describe, and every worker that sees the run folder sees them."""
    from prefect.filesystems import LocalFileSystem

    path = (out / ".prefect" / "results").resolve()
    path.mkdir(parents=True, exist_ok=True)
    name = "ecg-grounding-results-" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    try:
        return LocalFileSystem.load(name)
    except ValueError:
        block = LocalFileSystem(basepath=str(path))
        block.save(name, overwrite=True)
        return block


# ------------------------------------------------------------------------------------------------ artifacts
def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:40] or "run"


def _markdown(report: dict, out: Path, threshold: float) -> str:
    from pipeline.instructions import format_summary

    f, s = report["failures"], report["summary"]
    stages = "\n".join(f"| {name} | {report['timings_s'].get(name, 0):.1f} | {st.get('failed', 0)} | "
                       f"{report['chunks'][name]['chunks']} ({report['chunks'][name]['computed']} computed) |"
                       for name, st in report["stages"].items())
    verdict = "**over the threshold**" if f["failure_rate"] > threshold else "within the threshold"
    return (f"# ECG-Grounding run `{out}`\n\n"
            f"**{report['records_accepted']} of {report['records']} records** entered the instruction set; "
            f"{f['records_failed']} did not ({f['failure_rate']:.1%}, {verdict} of {threshold:.0%}): "
            f"{f['records_without_accepted_answer']} validated without an accepted answer (`validate:<code>`), "
            f"{f['records_unexplained']} unexplained, the rest failed in a stage.\n\n"
            f"```\n{format_summary(s)}\n```\n\n"
            f"| stage | seconds | records failed | chunks |\n|---|---:|---:|---|\n{stages}\n\n"
            f"Outputs: `{out}` (`run.json` says where each one is).\n")


def publish_artifacts(report: dict, out: Path, threshold: float) -> list[str]:
    """Markdown quality summary, tables of failures by reason and acceptance per diagnosis, and a link to the
    dataset card; keys are per run folder, so each deployment's artifacts keep their own history."""
    from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

    key = f"ecg-grounding-{_slug(out.name)}"
    ids = [create_markdown_artifact(_markdown(report, out, threshold), key=f"{key}-quality",
                                    description="quality summary of the run")]
    failures = report["failures"]["by_reason"] or [{"stage": "-", "code": "none", "records": 0}]
    ids.append(create_table_artifact(failures, key=f"{key}-failures",
                                     description="records failed or without an accepted answer, by stage and reason"))
    dx = acceptance_by_diagnosis(RunConfig(out=out)).to_dicts() or [
        {"diagnosis": "-", "records": 0, "accepted": 0, "acceptance_rate": None}]
    ids.append(create_table_artifact(dx, key=f"{key}-diagnoses", description="acceptance per diagnosis"))
    card = out / "instructions" / "card.html"
    ids.append(create_link_artifact(card.resolve().as_uri(), link_text="dataset card", key=f"{key}-card",
                                    description=f"dataset card of {out / 'instructions'} (README.md beside it)"))
    return [str(i) for i in ids]


# ------------------------------------------------------------------------------------------------ the flow
def _mark_crashed(run_id: str) -> None:
    """The serve / worker process that started flow run ``run_id`` is gone: say so in the API (else it stays
    RUNNING forever)."""
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run_id, Crashed(message="the process that started this flow run was killed; "
                                                          "its workers were stopped"), force=True)


def _started_by_a_runner() -> bool:
    """A deployment's flow run executes in a child process of ``serve`` or of a worker (``python -m
    prefect.engine``, or a spawned process for ``serve``d in-memory flows); a flow called from a script or
    ``python -m flows.grounding`` has no deployment and is left alone when its terminal goes away."""
    from prefect.runtime import deployment

    return bool(os.environ.get("PREFECT__FLOW_RUN_ID") or deployment.id)


def resolve_out(out: str, when: datetime | None = None) -> str:
    """``{date}`` in ``out`` becomes the run's scheduled day (YYYY-MM-DD): a nightly deployment writes one
    folder per night, and a re-run of that night resumes it."""
    when = when or datetime.now(timezone.utc)
    return out.replace("{date}", when.strftime("%Y-%m-%d"))


def _scheduled() -> datetime:
    from prefect.runtime import flow_run

    t = flow_run.scheduled_start_time
    return t if isinstance(t, datetime) else datetime.now(timezone.utc)


@flow(name="ecg-grounding", log_prints=False)
def grounding_flow(out: str, source: str = "synthetic", root: str | None = None, n: int = 50,
                   seed: int | None = 0, chunk_size: int = 200, layout: str = "3x4+II", dpi: int = 200,
                   budget: int = 6000, llm: str = "rules", base_url: str | None = None, variant: str | None = None,
                   concurrency: int = 16, max_attempts: int = 3, max_cost: float | None = None,
                   timeout_s: float = 120.0, api_key_secret: str | None = None, test_fraction: float = 0.1,
                   source_options: dict | None = None, task_runner: str = "dask", workers: int | None = None,
                   dask_address: str | None = None, task_timeout_s: float | None = None,
                   max_failure_rate: float = 0.05, on_failure_rate: str = "fail"):
    """(synthesize ->) ingest -> features -> render -> prompts -> generate -> validate, chunk by chunk.

    ``out`` may hold ``{date}`` (the scheduled day); ``seed=None`` draws the seed from that day (a fresh one
    every night, the same one when that night is re-run). ``api_key_secret`` names a Prefect Secret block
    with the LLM's API key. Returns the instruction set's quality summary (``run.json`` has the full report).
    """
    logger = get_run_logger()
    if _started_by_a_runner():  # serve / a worker started this process: die with it, never orphaned
        from prefect.runtime import flow_run

        run_id = flow_run.id  # read here: the watch thread has no run context
        exit_with_parent(on_orphan=lambda: _mark_crashed(run_id))
    when = _scheduled()
    cfg = RunConfig(source=source, root=Path(root) if root else None, out=Path(resolve_out(out, when)), n=n,
                    seed=int(when.strftime("%Y%m%d")) if seed is None else seed, layout=layout, dpi=dpi,
                    budget=budget, llm=llm, base_url=base_url, variant=variant, concurrency=concurrency,
                    max_attempts=max_attempts, max_cost=max_cost, timeout_s=timeout_s, api_key_secret=api_key_secret,
                    chunk_size=chunk_size, test_fraction=test_fraction, source_options=dict(source_options or {}))
    local = None
    if task_runner == "dask" and not (dask_address or os.environ.get(DASK_ADDRESS_ENV)):
        local = LocalDask(workers or os.cpu_count() or 1, _api_url())  # starts while pre-flight runs
    try:
        try:
            if on_failure_rate not in ON_FAILURE_RATE:
                raise ConfigError(f"on_failure_rate {on_failure_rate!r}: choose one of "
                                  f"{', '.join(ON_FAILURE_RATE)}")
            if not 0.0 <= max_failure_rate <= 1.0:
                raise ConfigError("max_failure_rate must be within [0, 1]")
            preflight(cfg)
            runner = make_task_runner(task_runner, workers, dask_address, local)
        except ConfigError as exc:
            logger.error("pre-flight: %s", exc)
            return Failed(message=f"pre-flight: {exc}")
        storage = _result_storage(cfg.out)
        logger.info("run folder %s, %s task runner (%s)", cfg.out.resolve(), task_runner,
                    dask_address or os.environ.get(DASK_ADDRESS_ENV) or f"{workers or os.cpu_count()} workers")
        with runner:
            report = run_chain(cfg, PrefectExecutor(runner, storage, task_timeout_s), log=logger.info)
        logger.info(outcome_line(report))
    finally:
        if local is not None:
            local.close()
    publish_artifacts(report, cfg.out, max_failure_rate)
    f = report["failures"]
    summary = {**report["summary"], "records_listed": report["records"], "records_failed": f["records_failed"],
               "failure_rate": f["failure_rate"], "records_without_accepted_answer": f["records_without_accepted_answer"],
               "records_unexplained": f["records_unexplained"], "run_folder": str(cfg.out)}
    if f["failure_rate"] > max_failure_rate:
        top = ", ".join((r["code"] if r["code"].startswith(f"{r['stage']}:") else f"{r['stage']}/{r['code']}")
                        + f" {r['records']}" for r in f["by_reason"][:5])
        # failed: dropped by a stage, or validated without an accepted answer (validate:<code>)
        msg = (f"{f['records_failed']} of {report['records']} records failed ({f['failure_rate']:.1%} > "
               f"{max_failure_rate:.1%}): {top}; see {cfg.out / 'errors'}")
        logger.warning(msg)
        if on_failure_rate == "fail":
            return Failed(message=msg, data=summary)
        return Completed(message=msg, name="CompletedWithWarnings", data=summary)
    return summary


@flow(name="ecg-grounding-llm", log_prints=False)
def llm_flow(root: str, out: str, llm: str, source: str = "ptbxl", max_cost: float | None = None,
             api_key_secret: str | None = None, base_url: str | None = None, variant: str | None = None,
             concurrency: int = 16, max_attempts: int = 3, timeout_s: float = 120.0, seed: int | None = 0,
             chunk_size: int = 200, layout: str = "3x4+II", dpi: int = 200, budget: int = 6000,
             test_fraction: float = 0.1, source_options: dict | None = None, task_runner: str = "dask",
             workers: int | None = None, dask_address: str | None = None, task_timeout_s: float | None = None,
             max_failure_rate: float = 0.05, on_failure_rate: str = "fail"):
    """The chain on a real source with an LLM (the paid deployments): like ``grounding_flow``, but the data
    ``root`` and the ``llm`` have no defaults, so a run is refused until they are given (a paid run never
    falls back to a guessed, relative data folder)."""
    if not root or not str(root).strip():
        get_run_logger().error("pre-flight: root is required: the data root of source %r", source)
        return Failed(message=f"pre-flight: root is required: the data root of source {source!r}")
    return grounding_flow.fn(
        out=out, source=source, root=root, seed=seed, chunk_size=chunk_size, layout=layout, dpi=dpi, budget=budget,
        llm=llm, base_url=base_url, variant=variant, concurrency=concurrency, max_attempts=max_attempts,
        max_cost=max_cost, timeout_s=timeout_s, api_key_secret=api_key_secret, test_fraction=test_fraction,
        source_options=source_options, task_runner=task_runner, workers=workers, dask_address=dask_address,
        task_timeout_s=task_timeout_s, max_failure_rate=max_failure_rate, on_failure_rate=on_failure_rate)


# ------------------------------------------------------------------------------------------------------ CLI
def _prestart(workers: int):
    """``python -m flows.grounding`` without ``PREFECT_API_URL``: start Prefect's temporary API server and the
    local Dask workers (with their imports) at the same time, instead of the one after the other (each takes
    seconds). The workers learn the server's URL from the settings every task carries."""
    from concurrent.futures import ThreadPoolExecutor

    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import get_current_settings

    server = SubprocessASGIServer()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefect-server") as pool:
        started = pool.submit(server.start, get_current_settings().server.ephemeral.startup_timeout_seconds)
        local = LocalDask(workers, api_url=None)
        try:
            started.result()
            local.address()
        except BaseException:
            local.close()
            raise
    return server, local


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flows.grounding", description=__doc__.split("\n\n")[0],
                                epilog="Exit status: 0 completed, 1 the flow failed (or crossed "
                                       "--max-failure-rate with --on-failure-rate fail), 2 bad usage.")
    p.add_argument("--out", required=True, help="run folder ({date} = today, YYYY-MM-DD)")
    p.add_argument("--source", default="synthetic", choices=SOURCE_NAMES)
    p.add_argument("--root", default=None, help="data root (synthetic: generated when omitted)")
    p.add_argument("--n", type=int, default=50, help="synthetic records (default 50)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk-size", type=int, default=200, help="records per task (default 200)")
    p.add_argument("--layout", default="3x4+II", help="image layout: 3x4+II, 12x1, 12x1+II, 6x2")
    p.add_argument("--dpi", type=int, default=200)
    p.add_argument("--budget", type=int, default=6000, help="prompt token budget (hard cap)")
    p.add_argument("--llm", default="rules")
    p.add_argument("--base-url", default=None)
    p.add_argument("--variant", default=None, choices=["multimodal", "text", "json"])
    p.add_argument("--concurrency", type=int, default=16, help="LLM requests in flight")
    p.add_argument("--max-attempts", type=int, default=3)
    p.add_argument("--max-cost", type=float, default=None)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per LLM request")
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--api-key-secret", default=None, help="Prefect Secret block holding the LLM API key")
    p.add_argument("--task-runner", default="dask", choices=TASK_RUNNERS)
    p.add_argument("--workers", type=int, default=None, help="local Dask worker processes (default: CPU count)")
    p.add_argument("--dask-address", default=None,
                   help=f"an existing Dask scheduler, tcp://HOST:8786 (default ${DASK_ADDRESS_ENV})")
    p.add_argument("--max-failure-rate", type=float, default=0.05)
    p.add_argument("--on-failure-rate", default="fail", choices=ON_FAILURE_RATE)
    a = p.parse_args(argv)
    from contextlib import nullcontext

    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    server = local = None
    if a.task_runner == "dask" and not (a.dask_address or os.environ.get(DASK_ADDRESS_ENV)) \
            and not get_current_settings().api.url:
        try:
            server, local = _prestart(a.workers or os.cpu_count() or 1)
        except Exception as exc:  # noqa: BLE001 - the flow starts them itself then, one after the other
            print(f"(could not start the server and workers ahead: {exc})", file=sys.stderr)
            server = local = None
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}) if server else nullcontext():
            state = _run_flow(a, local.address() if local else a.dask_address)
    finally:
        if local is not None:
            local.close()
        if server is not None:
            server.stop()
    return _exit(state)


def _run_flow(a: argparse.Namespace, dask_address: str | None):
    return grounding_flow(out=a.out, source=a.source, root=a.root, n=a.n, seed=a.seed, chunk_size=a.chunk_size,
                          layout=a.layout, dpi=a.dpi, budget=a.budget, llm=a.llm, base_url=a.base_url,
                          variant=a.variant, concurrency=a.concurrency, max_attempts=a.max_attempts,
                          max_cost=a.max_cost, timeout_s=a.timeout, test_fraction=a.test_fraction,
                          api_key_secret=a.api_key_secret, task_runner=a.task_runner,
                          workers=a.workers, dask_address=dask_address, max_failure_rate=a.max_failure_rate,
                          on_failure_rate=a.on_failure_rate, return_state=True)


def _exit(state) -> int:
    if state.is_failed():
        print(f"flow failed: {state.message}", file=sys.stderr)
        return 2 if (state.message or "").startswith("pre-flight") else 1
    summary = state.result()
    print(json.dumps({k: summary.get(k) for k in ("records_listed", "records_accepted", "records_failed",
                                                   "failure_rate", "grounding_precision", "diagnosis_recall",
                                                   "run_folder")}, indent=2))
    if state.name == "CompletedWithWarnings":
        print(f"warning: {state.message}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
