"""Against a real `prefect server start` subprocess: the Prefect CLI commands a user types work with our pins,
and a SIGKILL of the serve process leaves no process writing into the run folder, marks the run Crashed,
and a re-run resumes from the finished chunks (Cached)."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-server-home")
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    log = open(home / "server.log", "w")
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.time() + 180
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, (home / "server.log").read_text()[-2000:]
        assert time.time() < deadline, "prefect server did not start in 180 s"
        time.sleep(0.5)
    yield url
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _env(url: str, tmp_path: Path, **extra) -> dict:
    home = tmp_path / "prefect-home"
    home.mkdir(exist_ok=True)
    return {**os.environ, "PREFECT_API_URL": url, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED":
            "false", "PREFECT_LOGGING_LEVEL": "INFO", "COLUMNS": "250", **extra}  # rich: no wrapped names


def _run(cmd: list[str], env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_prefect_cli_commands_work_with_our_pins(prefect_server, tmp_path):
    env = _env(prefect_server, tmp_path, ECG_GROUNDING_OUT=str(tmp_path / "out"),
               ECG_GROUNDING_REPO=REPO.as_uri(), ECG_GROUNDING_BRANCH="main")
    prefect = str(BIN / "prefect")
    # a flow run with artifacts on this server
    r = _run([sys.executable, "-m", "flows.grounding", "--out", str(tmp_path / "run"), "--n", "4",
              "--task-runner", "threads"], env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    r = _run([prefect, "work-pool", "create", "ecg-process", "--type", "process"], env)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("nightly-synthetic", "ptbxl-gpt4o"):
        r = _run([prefect, "--no-prompt", "deploy", "--name", name], env)
        assert r.returncode == 0 and "successfully created" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
        assert "Traceback" not in r.stdout + r.stderr
    for cmd, expect in ((["deployment", "ls"], ["ecg-grounding/nightly-synthetic", "ecg-grounding-llm/ptbxl-gpt4o"]),
                        (["flow-run", "ls"], ["ecg-grounding", "COMPLETED"]),
                        (["artifact", "ls"], ["ecg-grounding-run-quality", "ecg-grounding-run-failures"])):
        r = _run([prefect, *cmd], env)
        out = r.stdout + r.stderr
        # an HTTP 422 (the pins' old "'limit': Input should be a valid integer"), not the digits inside a run id
        assert r.returncode == 0 and not re.search(r"\b422\b", out) and "Traceback" not in out, (cmd, out[-3000:])
        for word in expect:
            assert word in out, (cmd, word, out[-3000:])
    # the paid deployment cannot be started without its data root
    r = _run([prefect, "deployment", "run", "ecg-grounding-llm/ptbxl-gpt4o"], env)
    assert r.returncode != 0 and "root" in (r.stdout + r.stderr), r.stdout + r.stderr
    deployment = httpx.get(f"{prefect_server}/deployments/name/ecg-grounding/nightly-synthetic").json()
    assert deployment["parameters"]["out"] == f"{tmp_path / 'out'}/nightly-synthetic/{{date}}"
    assert deployment["pull_steps"][0]["prefect.deployments.steps.git_clone"]["repository"] == REPO.as_uri()


def _tree(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _folder_state(folder: Path) -> tuple:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), max((p.stat().st_mtime_ns for p in files), default=0)


def _start_serve(env: dict, log: Path) -> subprocess.Popen:
    code = ("from flows.grounding import grounding_flow; "
            "grounding_flow.serve(name='sigkill-test', limit=1)")
    return subprocess.Popen([sys.executable, "-c", code], env=env, cwd=REPO, stdout=open(log, "a"),
                            stderr=subprocess.STDOUT)


def _start_run(url: str, params: dict) -> str:
    deadline = time.time() + 120
    while True:  # the serve process registers its deployment first
        r = httpx.get(f"{url}/deployments/name/ecg-grounding/sigkill-test")
        if r.status_code == 200:
            break
        assert time.time() < deadline, r.text
        time.sleep(1)
    dep = r.json()["id"]
    while True:  # 503: the server's database was busy (a loaded machine) and nothing was created; ask again
        r = httpx.post(f"{url}/deployments/{dep}/create_flow_run", json={"parameters": params})
        if r.status_code != 503 or time.time() > deadline:
            break
        time.sleep(1)
    assert r.status_code in (200, 201), r.text
    return r.json()["id"]


def _state(url: str, run_id: str) -> str:
    return httpx.get(f"{url}/flow_runs/{run_id}").json()["state"]["type"]


def test_sigkill_of_serve_leaves_no_writer_marks_the_run_crashed_and_a_rerun_resumes(prefect_server, tmp_path):
    out = tmp_path / "run"
    env = _env(prefect_server, tmp_path, PREFECT_RUNNER_POLL_FREQUENCY="1")
    params = {"out": str(out), "n": 60, "seed": 5, "chunk_size": 10, "workers": 2}
    log = tmp_path / "serve.log"
    serve = _start_serve(env, log)
    try:
        run_id = _start_run(prefect_server, params)
        deadline = time.time() + 300
        while not list((out / "features" / "records").glob("part-*.parquet")):  # mid-run: chunks being measured
            assert time.time() < deadline, log.read_text()[-3000:]
            assert serve.poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)
        tree = _tree(serve.pid)
        assert len(tree) >= 3, tree  # the flow-run process and its two Dask workers
        serve.send_signal(signal.SIGKILL)
        serve.wait(10)
        gone, alive = psutil.wait_procs(tree, timeout=30)
        assert not alive, [(p.pid, p.cmdline()) for p in alive]
        # nothing writes into the run folder any more
        before = _folder_state(out)
        time.sleep(3)
        assert _folder_state(out) == before
        deadline = time.time() + 30
        while _state(prefect_server, run_id) != "CRASHED":
            assert time.time() < deadline, _state(prefect_server, run_id)
            time.sleep(0.5)
        assert (out / "run.lock").is_file()  # the folder says a run died in it
        assert not (out / "run.json").exists()
    finally:
        if serve.poll() is None:
            serve.kill()

    # a new serve process, the same parameters: the run resumes and finishes
    serve = _start_serve(env, log)
    try:
        again = _start_run(prefect_server, params)
        deadline = time.time() + 600
        while _state(prefect_server, again) not in ("COMPLETED", "FAILED", "CRASHED"):
            assert time.time() < deadline, log.read_text()[-3000:]
            time.sleep(1)
        assert _state(prefect_server, again) == "COMPLETED", log.read_text()[-3000:]
        runs = httpx.post(f"{prefect_server}/task_runs/filter",
                          json={"flow_runs": {"id": {"any_": [again]}}, "limit": 200}).json()
        cached = {r["name"] for r in runs if r["state"]["name"] == "Cached"}
        assert any(n.startswith("features-") for n in cached), sorted(cached)  # chunks done before the kill
        import json

        report = json.loads((out / "run.json").read_text())
        assert report["resumed_after_crash"]["status"] == "running"
        assert report["records"] == 60 and report["records_accepted"] >= 55
        assert not (out / "run.lock").exists()
    finally:
        serve.terminate()
        try:
            serve.wait(30)
        except subprocess.TimeoutExpired:
            serve.kill()
        for p in _tree(serve.pid):
            p.kill()


def test_a_killed_dask_worker_is_replaced_and_the_run_completes(prefect_server, tmp_path):
    out = tmp_path / "run"
    env = _env(prefect_server, tmp_path)
    log = open(tmp_path / "flow.log", "w")
    flow = subprocess.Popen([sys.executable, "-m", "flows.grounding", "--out", str(out), "--n", "40", "--seed", "2",
                             "--chunk-size", "5", "--workers", "2"], env=env, cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 300
        while not list((out / "features" / "records").glob("part-*.parquet")):
            assert time.time() < deadline and flow.poll() is None, (tmp_path / "flow.log").read_text()[-3000:]
            time.sleep(0.2)
        workers = [p for p in _tree(flow.pid) if "spawn_main" in " ".join(p.cmdline())]
        assert len(workers) == 2, workers
        workers[0].send_signal(signal.SIGKILL)  # mid-stage: its chunk is lost with it
        assert flow.wait(600) == 0, (tmp_path / "flow.log").read_text()[-3000:]
    finally:
        if flow.poll() is None:
            flow.kill()
        log.close()
    import json

    report = json.loads((out / "run.json").read_text())
    assert report["records"] == 40 and report["records_accepted"] >= 36
    assert len(report["peak_rss_mb_by_process"]) >= 2
    assert len(list((out / "features" / "records").glob("part-*.parquet"))) == 8


def test_the_flow_cli_without_a_server_starts_one_server_and_leaves_nothing_running(tmp_path):
    """What a user types first: no PREFECT_API_URL. The temporary server and the Dask workers start together,
    the workers record their task runs on that one server (no second temporary server), all exit after."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home), PREFECT_LOGGING_LEVEL="INFO", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "flows.grounding", "--out", str(out), "--n", "12", "--chunk-size",
                             "4", "--workers", "2"], env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    children: set[int] = set()
    while proc.poll() is None:
        children.update(p.pid for p in _tree(proc.pid))
        time.sleep(0.5)
    log = proc.stdout.read()
    assert proc.returncode == 0, log[-3000:]
    assert log.count("Starting temporary server") == 1, log[-3000:]
    import json

    report = json.loads((out / "run.json").read_text())
    assert report["records_accepted"] >= 11 and len(report["peak_rss_mb_by_process"]) == 2
    assert '"records_listed": 12' in log
    time.sleep(2)
    assert not [pid for pid in children if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
