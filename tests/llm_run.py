"""A real run folder to generate from (synthetic records → ingest → features → text prompts), and answers a
fake server can give that the real validator rejects or accepts.

Used by the LLM reliability tests and by ``tests_llm/`` (the real llama.cpp-served model).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import polars as pl

INVENTED = ("Sinus rhythm at 140 bpm. The QRS duration is 190 ms in lead II, PR interval 300 ms, QTc 520 ms, "
            "with ST elevation of 0.4 mV in V2.")


def make_run_folder(base: Path, n: int, seed: int = 5, variants: tuple[str, ...] = ("text",),
                    budget: int = 6000) -> Path:
    """``base/run`` with manifest.parquet, features/ and prompts/prompts.parquet for ``n`` synthetic records."""
    from features import run_features
    from pipeline.ingest import ingest
    from pipeline.prompts import run_prompts
    from pipeline.synthetic import write_synthetic_tree

    root = write_synthetic_tree(base / "data", n, seed)
    out = base / "run"
    ingest("synthetic", root, out)
    run_features("synthetic", root, out / "features")
    run_prompts("synthetic", root, out / "features", out / "prompts", variants=variants,
                manifest=out / "manifest.parquet", budget=budget)
    return out


def good_answers(run: Path) -> dict[str, str]:
    """The rules writer's answer per record id (what a good LLM would write)."""
    from pipeline.context import load_contexts
    from pipeline.writer import write_answer

    return {rid: write_answer(ctx, 0) for rid, ctx in load_contexts(run).items()}


def prompt_id_of(system: str, user: str) -> str:
    """The fake server's prompt id for a prompt row (``fake_openai_server.prompt_identity``)."""
    text = json.dumps([system, user] if system else [user], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def answers_by_prompt(run: Path, first: str = INVENTED) -> dict[str, list[str]]:
    """prompt id → [attempt-1 answer, attempt-2 answer]: an invented one (rejected), then the writer's."""
    prompts = pl.read_parquet(run / "prompts" / "prompts.parquet")
    good = good_answers(run)
    return {prompt_id_of(r["system"], r["user"]): [first, good[r["record_id"]]]
            for r in prompts.iter_rows(named=True) if r["record_id"] in good}
