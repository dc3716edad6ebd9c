"""The whole chain as one Prefect flow: what data engineers schedule, resume and scale out.

Thin by design: every task wraps a plain stage function that is tested without Prefect. The per-record
stages (ingest, features, render) map one task over each chunk of record ids (hundreds per task, never one
task per record), so a work pool with several workers spreads them; prompts, generate and validate run once
over the run folder. Every stage skips finished shards, images and stored LLM responses, so re-running a
failed or cancelled flow run resumes it and never pays for an answer twice.

Run it locally:   python -m flows.grounding --out outputs/flow-demo --n 50
Serve a schedule: python -m flows.deployments  (see that module)
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from prefect import flow, task, unmapped

from flows.ingest import ingest_flow
from pipeline.batch import chunks


@task(name="synthesize")
def synth_task(out: str, n: int, seed: int) -> str:
    from pipeline.synthetic import write_synthetic_tree

    root = Path(out) / "synthetic"
    if not (root / "synthetic_database.csv").is_file():
        write_synthetic_tree(root, n, seed)
    return str(root)


@task(name="list-ids")
def list_ids_task(source: str, root: str) -> list[str]:
    from pipeline.ingest import list_ids

    return list_ids(source, root)


@task(name="features-chunk")
def features_chunk_task(source: str, root: str, ids: list[str], out: str, index: int) -> bool:
    from features.run import measure_shard
    from pipeline.sources import open_source

    return measure_shard(open_source(source, root), ids, out, index)


@task(name="features-finish")
def features_finish_task(out: str, n_records: int, done: list[bool]) -> dict:
    from features.run import finish_features

    s = finish_features(out, n_records, len(done), sum(not d for d in done))
    return {"measured": s.n_measured, "failed": s.n_failed, "warnings": s.n_warnings}


@task(name="render-chunk")
def render_chunk_task(source: str, root: str, ids: list[str], out: str, layout: str, dpi: int, seed: int):
    from pipeline.render import RenderOptions, read_render_manifest, render_ids
    from pipeline.sources import open_source

    options = RenderOptions(layout=layout, dpi=dpi, seed=seed)
    return render_ids(open_source(source, root), ids, out, options, read_render_manifest(out))


@task(name="render-finish")
def render_finish_task(out: str, results: list, ids: list[str], errors_file: str) -> dict:
    from pipeline.render import merge_render_rows, read_render_manifest, write_render_tables

    done = read_render_manifest(out)
    errors = []
    for rows, errs, _ in results:
        merge_render_rows(done, rows, errs)
        errors.extend(errs)
    write_render_tables(out, done, errors, ids, errors_file)
    return {"images": len(done), "failed": len(errors)}


@task(name="prompts")
def prompts_task(source: str, root: str, run: str, budget: int) -> dict:
    from pipeline.prompts import run_prompts

    r = Path(run)
    s = run_prompts(source, root, r / "features", r / "prompts", images_dir=r / "images", budget=budget,
                    manifest=r / "manifest.parquet")
    return {"prompts": s.n_prompts, "failed": s.n_failed, "tokens_mean": s.tokens_mean, "tokens_max": s.tokens_max}


@task(name="generate")
def generate_task(run: str, llm: str, base_url: str | None, concurrency: int, max_attempts: int,
                  max_cost: float | None, seed: int) -> dict:
    from pipeline.generate import run_generate

    r = Path(run)
    s = run_generate(r / "prompts" / "prompts.parquet", r / "generate", llm=llm, base_url=base_url,
                     concurrency=concurrency, max_attempts=max_attempts, max_cost=max_cost, seed=seed)
    return {"answered": s.n_ok, "failed": s.n_failed, "reused": s.n_reused, "cost_usd_new": s.cost_usd_new}


@task(name="validate")
def validate_task(run: str, seed: int, test_fraction: float) -> dict:
    from pipeline.instructions import build_instruction_set

    r = Path(run)
    return build_instruction_set(r / "generate" / "answers.parquet", r / "features", r / "manifest.parquet",
                                 r / "instructions", images=r / "images", prompts=r / "prompts" / "prompts.parquet",
                                 test_fraction=test_fraction, seed=seed, image_root=r)


@flow(name="ecg-grounding")
def grounding_flow(out: str, source: str = "synthetic", root: str | None = None, n: int = 50, seed: int = 0,
                   chunk_size: int = 200, layout: str = "3x4+II", dpi: int = 200, budget: int = 6000,
                   llm: str = "rules", base_url: str | None = None, concurrency: int = 16, max_attempts: int = 3,
                   max_cost: float | None = None, test_fraction: float = 0.1) -> dict:
    """synthesize (synthetic without root) -> ingest -> features -> render -> prompts -> generate -> validate.

    Writes the same run folder as ``ecg-grounding run`` and returns the instruction set's quality summary.
    """
    out = str(Path(out))
    if root is None:
        if source != "synthetic":
            raise ValueError(f"root is required for source {source!r}")
        root = synth_task(out, n, seed)
    root = str(Path(root))
    ingest_flow(source, root, out, chunk_size=chunk_size)
    ids = list_ids_task(source, root)
    id_chunks = [list(c) for c in chunks(ids, chunk_size)]
    feats = features_chunk_task.map(unmapped(source), unmapped(root), id_chunks, unmapped(str(Path(out) / "features")),
                                    list(range(len(id_chunks))))
    features_finish_task(str(Path(out) / "features"), len(ids), [f.result() for f in feats])
    images = str(Path(out) / "images")
    rendered = render_chunk_task.map(unmapped(source), unmapped(root), id_chunks, unmapped(images),
                                     unmapped(layout), unmapped(dpi), unmapped(seed))
    render_finish_task(images, [r.result() for r in rendered], ids, str(Path(out) / "errors" / "render.parquet"))
    prompts_task(source, root, out, budget)
    generate_task(out, llm, base_url, concurrency, max_attempts, max_cost, seed)
    return validate_task(out, seed, test_fraction)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flows.grounding", description=grounding_flow.__doc__)
    p.add_argument("--out", required=True)
    p.add_argument("--source", default="synthetic")
    p.add_argument("--root", default=None)
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk-size", type=int, default=200)
    p.add_argument("--llm", default="rules")
    p.add_argument("--base-url", default=None)
    p.add_argument("--max-cost", type=float, default=None)
    a = p.parse_args(argv)
    summary = grounding_flow(out=a.out, source=a.source, root=a.root, n=a.n, seed=a.seed, chunk_size=a.chunk_size,
                             llm=a.llm, base_url=a.base_url, max_cost=a.max_cost)
    print(json.dumps({k: summary[k] for k in ("records", "records_accepted", "acceptance_rate",
                                              "grounding_precision", "diagnosis_recall")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
