"""The chain at scale: ``ecg-grounding run`` (one process) against the Prefect flow on 1 and 2 Dask workers.

    python benchmarks/flow.py                       # 2,000 synthetic records: CLI, flow x1, flow x2
    python benchmarks/flow.py --n 1200 --workers 2  # one flow configuration only (plus the CLI)
    python benchmarks/flow.py --big 20000           # ... then a 20,000-record flow run (tens of minutes here)
    python benchmarks/flow.py --ephemeral           # each flow run starts its own temporary Prefect server

Every configuration runs the whole chain from nothing (synthesis included) into its own run folder with the
same records (same ``--n`` and ``--seed``), as a subprocess, the way a user runs it; the flows talk to one
``prefect server`` started here (what a scheduled deployment has), unless ``--ephemeral``. Printed per run:
wall time, records/s, accepted records, the stage times from ``run.json``, the peak resident memory of the
main process and of each Dask worker process (``ru_maxrss``, reported by every chunk task), and the machine's
load average before and after (the machine is shared: compare runs made at the same quiet moment), and the
CPU seconds the run's processes used (the command and every descendant it waited for: the Dask workers, not
the shared server), which the other engineers' load hardly changes. Ends with the speed-ups and a JSON line
of every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    url = f"http://127.0.0.1:{port}/api"
    import httpx

    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("prefect server exited")
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("prefect server did not start in 180 s")


def run_one(label: str, cmd: list[str], out: Path, env: dict) -> dict:
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        print(stdout[-3000:])
        raise SystemExit(f"{label}: exit code {rc}")
    report = json.loads((out / "run.json").read_text())
    workers = {pid: mb for pid, mb in report["peak_rss_mb_by_process"].items()}
    return {"label": label, "wall_s": round(wall, 1), "records": report["records"],
            "accepted": report["records_accepted"], "records_per_s": round(report["records"] / wall, 2),
            "stage_s": report["timings_s"], "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "main_peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "worker_peak_rss_mb": workers, "load_before": round(load_before, 2),
            "load_after": round(os.getloadavg()[0], 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=2000, help="synthetic records (default 2000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk-size", type=int, default=200)
    p.add_argument("--workers", type=int, nargs="*", default=[1, 2],
                   help="flow configurations (default 1 2; none: only --big)")
    p.add_argument("--no-cli", action="store_true", help="skip the single-process CLI run")
    p.add_argument("--big", type=int, default=0, help="then one flow run of this many records (e.g. 20000)")
    p.add_argument("--big-workers", type=int, default=2)
    p.add_argument("--ephemeral", action="store_true", help="no shared server: each flow starts its own")
    p.add_argument("--work", type=Path, default=None, help="folder for the run folders (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the run folders")
    a = p.parse_args(argv)

    work = a.work or Path(tempfile.mkdtemp(prefix="bench-flow-"))
    work.mkdir(parents=True, exist_ok=True)
    home = work / "prefect-home"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_LOGGING_LEVEL": "WARNING", "DO_NOT_TRACK": "1"}
    server = None
    if not a.ephemeral:
        server, url = start_server(home)
        env["PREFECT_API_URL"] = url
    print(f"# {a.n} synthetic records, chunks of {a.chunk_size}, {os.cpu_count()} CPUs, "
          f"{'temporary server per flow' if a.ephemeral else 'one prefect server'}; work dir {work}")
    results = []
    try:
        configs = [] if a.no_cli else [("cli", None)]
        configs += [(f"flow x{w}", w) for w in a.workers]
        for label, w in configs:
            out = work / label.replace(" ", "-")
            shutil.rmtree(out, ignore_errors=True)
            common = ["--n", str(a.n), "--seed", str(a.seed), "--chunk-size", str(a.chunk_size), "--out", str(out)]
            cmd = [str(BIN / "ecg-grounding"), "run", *common] if w is None else \
                [sys.executable, "-m", "flows.grounding", *common, "--workers", str(w)]
            r = run_one(label, cmd, out, env)
            results.append(r)
            _print(r)
            if not a.keep:
                shutil.rmtree(out, ignore_errors=True)
        if a.big:
            out = work / "big"
            shutil.rmtree(out, ignore_errors=True)
            cmd = [sys.executable, "-m", "flows.grounding", "--n", str(a.big), "--seed", str(a.seed), "--chunk-size",
                   str(a.chunk_size), "--out", str(out), "--workers", str(a.big_workers)]
            r = run_one(f"flow x{a.big_workers}, {a.big} records", cmd, out, env)
            du = subprocess.run(["du", "-sm", str(out)], capture_output=True, text=True).stdout.split()[0]
            r["run_folder_mb"] = int(du)
            results.append(r)
            _print(r)
            if not a.keep:
                shutil.rmtree(out, ignore_errors=True)
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
    by = {r["label"]: r for r in results}
    print()
    for w in a.workers:
        r = by.get(f"flow x{w}")
        if r and "cli" in by:
            print(f"flow x{w} vs cli: {by['cli']['wall_s'] / r['wall_s']:.2f}x")
    if "flow x1" in by and "flow x2" in by:
        print(f"flow x2 vs flow x1: {by['flow x1']['wall_s'] / by['flow x2']['wall_s']:.2f}x")
    print(json.dumps(results))
    if not a.keep and a.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _print(r: dict) -> None:
    workers = ", ".join(f"{mb:.0f}" for mb in sorted(r["worker_peak_rss_mb"].values(), reverse=True))
    stages = " ".join(f"{k} {v:.0f}" for k, v in r["stage_s"].items())
    print(f"{r['label']:<24} wall {r['wall_s']:7.1f} s  cpu {r['cpu_s']:7.1f} s  {r['records_per_s']:6.2f} rec/s  accepted "
          f"{r['accepted']}/{r['records']}  main peak {r['main_peak_rss_mb']:.0f} MB  chunk processes' peak "
          f"[{workers}] MB  load {r['load_before']}->{r['load_after']}"
          + (f"  folder {r['run_folder_mb']} MB" if "run_folder_mb" in r else ""))
    print(f"{'':<24} stages (s): {stages}")


if __name__ == "__main__":
    raise SystemExit(main())
