"""Generation throughput against the fake OpenAI server (1 s simulated latency per answer).

Prints answers per second (ideal = concurrency / latency = 64) and client CPU seconds per answer for 2,000
requests at concurrency 64, everything durable (SQLite WAL, synchronous=FULL). The server runs in its own
process so its CPU is not counted as the client's.

    .venv/bin/python benchmarks/generate.py [--n 2000] [--concurrency 64] [--latency 1.0] [--baseline]
"""
from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.generate import generate_answers  # noqa: E402
from pipeline.llm import BackendSpec, ResponseStore, make_backend  # noqa: E402


async def _bare_httpx(base_url: str, prompts: pl.DataFrame, concurrency: int) -> tuple[float, float]:
    import httpx

    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=30) as client:
        async def one(row: dict) -> None:
            async with sem:
                r = await client.post(base_url + "/chat/completions", json={"model": "bench", "messages": [
                    {"role": "system", "content": row["system"]}, {"role": "user", "content": row["user"]}]})
                r.raise_for_status()

        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(r) for r in prompts.iter_rows(named=True)))
        return time.perf_counter() - t0, time.process_time() - cpu0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency", type=float, default=1.0)
    ap.add_argument("--baseline", action="store_true",
                    help="also time bare httpx on the same server: the ceiling this machine allows")
    args = ap.parse_args()

    server = subprocess.Popen([sys.executable, str(REPO / "tests/fake_openai_server.py"), str(args.latency)],
                              stdout=subprocess.PIPE, text=True)
    try:
        base_url = server.stdout.readline().strip()
        # ~6,000-token-sized prompts are not needed for throughput; realistic 2 kB user texts are.
        user = "Measured: " + ", ".join(f"lead {i}: QRS {80 + i} ms, ST {0.01 * i:.2f} mV" for i in range(60))
        prompts = pl.DataFrame({"record_id": [f"rec{i:05d}" for i in range(args.n)],
                                "system": ["You are a cardiologist."] * args.n,
                                "user": [f"ECG {i}. {user}" for i in range(args.n)]})
        with tempfile.TemporaryDirectory() as tmp:
            backend = make_backend(BackendSpec.parse("openai-compatible:bench", base_url), api_key="sk-bench",
                                   timeout_s=30)
            cpu0, t0 = time.process_time(), time.perf_counter()
            summary = generate_answers(prompts, backend, Path(tmp) / "responses", tmp,
                                       concurrency=args.concurrency, max_attempts=1)
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            with ResponseStore(Path(tmp) / "responses") as store:
                stored = len(store.ok_keys())
            # second pass: everything answered from the store
            backend = make_backend(BackendSpec.parse("openai-compatible:bench", base_url), api_key="sk-bench")
            t1 = time.perf_counter()
            again = generate_answers(prompts, backend, Path(tmp) / "responses", tmp,
                                     concurrency=args.concurrency, max_attempts=1)
            rerun = time.perf_counter() - t1
        ideal = args.concurrency / args.latency
        print(f"requests={args.n} concurrency={args.concurrency} latency_s={args.latency}")
        print(f"ok={summary.n_ok} failed={summary.n_failed} http_sends={summary.n_http_sends} stored={stored}")
        print(f"adaptive concurrency (openai-compatible starts at 1): {summary.concurrency}")
        print(f"wall_s={wall:.2f} answers_per_s={summary.n_ok / wall:.1f} (ideal {ideal:.0f}, "
              f"{100 * summary.n_ok / wall / ideal:.0f}% of ideal)")
        print(f"client_cpu_s={cpu:.2f} cpu_ms_per_answer={1000 * cpu / max(summary.n_ok, 1):.2f}")
        print(f"rerun_from_store_s={rerun:.2f} reused={again.n_reused} sends={again.n_http_sends}")
        if args.baseline:
            wall_b, cpu_b = asyncio.run(_bare_httpx(base_url, prompts, args.concurrency))
            print(f"bare_httpx: answers_per_s={args.n / wall_b:.1f} cpu_ms_per_answer={1000 * cpu_b / args.n:.2f} "
                  "(no store, no SDK, no retries)")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
