"""Where a run's records ended and what its processes held: helpers of ``pipeline.run_all``'s report.

- ``memory_mb_by_stage`` (run.json): after each stage, the flow process's peak and current resident memory, and
  each chunk process's peak as its chunks reported it, so a run shows whether memory grows with the number
  of records or stays at one chunk's (``benchmarks/flow.py --scale`` fits the slope);
- every record of the source ends in the instruction set, dropped by a stage (its errors table) or validated
  without an accepted answer (``errors/validate.parquet``, code ``validate:<reason>``); one that ends nowhere is
  ``unexplained`` (a bug of the chain: it must be 0, and it counts as a failure).
"""
from __future__ import annotations

import os
from pathlib import Path


def rss_mb() -> float:
    """This process's resident memory now (``/proc/self/statm``; 0.0 where there is none)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def note_memory(memory: dict, stage: str, results: list[dict], run_id: str) -> None:
    """After ``stage``: the flow process's peak and current resident memory, and each chunk process's peak as
    its chunks of this stage reported it (``memory_mb_by_stage`` in run.json: where memory grows, and whether
    it grows with the number of records or stays at one chunk's)."""
    from pipeline.chain_steps import peak_rss_mb

    memory["flow"][stage] = {"peak_rss_mb": peak_rss_mb(), "rss_mb": rss_mb()}
    for r in results:
        if r.get("pid") is None or r.get("pid") == os.getpid() or r.get("run_id") != run_id:
            continue  # run in the flow process itself (the CLI: its figure is the flow's), or cached from a past run
        per = memory["workers"].setdefault(str(r["pid"]), {})
        per[stage] = max(per.get(stage, 0.0), float(r.get("peak_rss_mb", 0.0)))


def unexplained_ids(cfg, listed: list[str], failed_ids: set[str]) -> list[str]:
    """Records of the source that are neither in the instruction set nor listed with a reason by some stage
    (errors tables, ``validate:<code>`` included). Every record must end one way or the other: a record
    here is lost without a word, a bug of the chain, and counts as a failure (code ``unexplained``)."""
    import polars as pl

    prov = Path(cfg.out) / "instructions" / "provenance.parquet"
    accepted: set[str] = set()
    if prov.is_file():
        accepted = set(pl.scan_parquet(prov).filter(pl.col("in_set")).select("record_id").unique()
                       .collect()["record_id"].to_list())
    return sorted(set(listed) - accepted - failed_ids)


def outcome_line(report: dict) -> str:
    """Where every record of the run ended: in the set, dropped by a stage, or validated without an accepted
    answer (by validator reason), and how many are unexplained (must be 0)."""
    f = report["failures"]
    rejected = [r for r in f["by_reason"] if r["stage"] == "validate"]
    n_stage = f["records_failed"] - f["records_without_accepted_answer"] - f["records_unexplained"]
    line = (f"records: {report['records']} listed, {report['records_accepted']} accepted, {n_stage} failed in a "
            f"stage, {f['records_without_accepted_answer']} without an accepted answer"
            + (f" ({', '.join(r['code'] + ' ' + str(r['records']) for r in rejected)})" if rejected else "")
            + f", {f['records_unexplained']} unexplained; failure rate {f['failure_rate']:.2%}")
    return line
