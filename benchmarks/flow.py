"""The chain at scale: ``ecg-grounding run`` (one process) against the Prefect flow on 1 and 2 Dask workers.

    python benchmarks/flow.py                       # 2,000 synthetic records: CLI, flow x1, flow x2
    python benchmarks/flow.py --n 1200 --workers 2  # one flow configuration only (plus the CLI)
    python benchmarks/flow.py --big 20000           # ... then a 20,000-record flow run (tens of minutes here)
    python benchmarks/flow.py --ephemeral           # each flow run starts its own temporary Prefect server
    python benchmarks/flow.py --scale 1000 2000 4000  # the flow at several N: memory slope per 1,000 records

Every configuration runs the whole chain from nothing (synthesis included) into its own run folder with the
same records (same ``--n`` and ``--seed``), as a subprocess, the way a user runs it; the flows talk to one
``prefect server`` started here (what a scheduled deployment has), unless ``--ephemeral``. Printed per run:
wall time, records/s, accepted records, the stage times from ``run.json``, the peak resident memory of the
main process and of each Dask worker process (``ru_maxrss``, reported by every chunk task), and the machine's
load average before and after (the machine is shared: compare runs made at the same quiet moment), and the
CPU seconds the run's processes used (the command and every descendant it waited for: the Dask workers, not
the shared server), which the other engineers' load hardly changes. Ends with the speed-ups and a JSON line
of every figure.

``--scale N1 N2 ...`` runs only the flow (``--scale-workers`` workers, default 2) at each N and fits a least-squares
line through the peak resident memory of the flow process (``memory_mb_by_stage`` in ``run.json``, and its
``VmHWM`` sampled while it runs) and of the largest Dask worker, against N: its slope in MB per 1,000 records says
whether memory is bounded by the chunk (slope near 0) or grows with the run.
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


def _vm_hwm_mb(pid: int) -> float | None:
    """The peak resident memory of process ``pid`` itself (``VmHWM``), None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def run_one(label: str, cmd: list[str], out: Path, env: dict) -> dict:
    import threading

    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    own_peak = [0.0]  # the command's own process (ru_maxrss of wait4 is the largest of it and its children)

    def watch() -> None:
        while proc.returncode is None:
            mb = _vm_hwm_mb(proc.pid)
            if mb is None:
                return
            own_peak[0] = max(own_peak[0], mb)
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    rc = os.waitstatus_to_exitcode(status)
    # exit 1 with a run.json: the run finished and some records failed or ended without an accepted answer (the
    # CLI's convention); counted below as records - accepted. Anything else is the benchmark's failure
    if rc != 0 and not (rc == 1 and (out / "run.json").is_file()):
        print(stdout[-3000:])
        raise SystemExit(f"{label}: exit code {rc}")
    report = json.loads((out / "run.json").read_text())
    workers = {pid: mb for pid, mb in report["peak_rss_mb_by_process"].items()}
    return {"label": label, "wall_s": round(wall, 1), "records": report["records"],
            "accepted": report["records_accepted"], "records_per_s": round(report["records"] / wall, 2),
            "stage_s": report["timings_s"], "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "main_peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "own_peak_rss_mb": round(own_peak[0], 1),
            "worker_peak_rss_mb": workers, "load_before": round(load_before, 2),
            "load_after": round(os.getloadavg()[0], 2)}


def slope_mb_per_1000(ns: list[int], mbs: list[float]) -> float:
    """Least-squares slope of memory (MB) against records, per 1,000 records."""
    mean_n, mean_mb = sum(ns) / len(ns), sum(mbs) / len(mbs)
    var = sum((n - mean_n) ** 2 for n in ns)
    if not var:
        return 0.0
    return 1000.0 * sum((n - mean_n) * (mb - mean_mb) for n, mb in zip(ns, mbs)) / var


def _flow_peak_mb(report: dict, fallback: float) -> float:
    """The flow process's own peak: the larger of ``run.json``'s memory_mb_by_stage (after each stage) and
    ``fallback`` (its VmHWM sampled every 0.5 s while it ran; also what older runs without the field give)."""
    mem = report.get("memory_mb_by_stage") or {}
    peaks = [v.get("peak_rss_mb", 0.0) for v in (mem.get("flow") or {}).values()]
    return max([*peaks, fallback])


def run_scale(a, work: Path, env: dict) -> int:
    rows = []
    for n in a.scale:
        out = work / f"scale-{n}"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [sys.executable, "-m", "flows.grounding", "--n", str(n), "--seed", str(a.seed), "--chunk-size",
               str(a.chunk_size), "--out", str(out), "--workers", str(a.scale_workers)]
        r = run_one(f"flow x{a.scale_workers}, {n} records", cmd, out, env)
        report = json.loads((out / "run.json").read_text())
        r["flow_peak_mb"] = round(_flow_peak_mb(report, r["own_peak_rss_mb"]), 1)
        r["worker_max_peak_mb"] = round(max(r["worker_peak_rss_mb"].values(), default=0.0), 1)
        r["memory_mb_by_stage"] = report.get("memory_mb_by_stage")
        _print(r)
        print(f"{'':<24} flow process peak {r['flow_peak_mb']:.0f} MB, largest worker peak "
              f"{r['worker_max_peak_mb']:.0f} MB")
        rows.append(r)
        if not a.keep:
            shutil.rmtree(out, ignore_errors=True)
    ns = [r["records"] for r in rows]
    flow_slope = slope_mb_per_1000(ns, [r["flow_peak_mb"] for r in rows])
    worker_slope = slope_mb_per_1000(ns, [r["worker_max_peak_mb"] for r in rows])
    print()
    print(f"memory slope (least squares, MB per 1,000 records) over N = {', '.join(map(str, ns))}: "
          f"flow process {flow_slope:+.1f}, workers {worker_slope:+.1f}")
    print(json.dumps({"scale": [{k: r[k] for k in ("records", "wall_s", "accepted", "flow_peak_mb",
                                                    "worker_max_peak_mb", "main_peak_rss_mb")} for r in rows],
                      "flow_slope_mb_per_1000": round(flow_slope, 2),
                      "worker_slope_mb_per_1000": round(worker_slope, 2)}))
    return 0


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
    p.add_argument("--scale", type=int, nargs="+", default=None, metavar="N",
                   help="only the flow, at each of these record counts: the memory slope per 1,000 records")
    p.add_argument("--scale-workers", type=int, default=2)
    a = p.parse_args(argv)
    if a.scale is not None and len(a.scale) < 2:
        p.error("--scale needs at least two record counts")

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
        if a.scale:
            return run_scale(a, work, env)
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
