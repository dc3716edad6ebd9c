"""Real llama.cpp-served models on 127.0.0.1 for ``make test-llm``: llama-cpp-python's OpenAI-compatible server
from ``.venv-llm`` (never ``.venv``), SmolLM2-135M-Instruct and Gemma 3 270M from their PyPI wheels.

Each server's log is kept: its access lines are how these tests count requests *at the server*.
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))   # llm_run, fake_openai_server
sys.path.insert(0, str(REPO / "tests_llm"))

LLM_PY = Path(os.environ.get("ECG_LLM_VENV", REPO / ".venv-llm")) / "bin" / "python"
# One thread: on a shared 2-core machine OpenMP workers spin against each other (measured here: a 6,700-token
# prompt did not finish in 15 min at 2 threads). CI alone on the machine may raise it.
THREADS = os.environ.get("ECG_LLM_THREADS", "1")
CHAT_LINE = re.compile(r'"POST /v1/chat/completions HTTP/1\.1" (\d{3})')


@dataclass
class Served:
    name: str
    base_url: str
    log: Path
    proc: subprocess.Popen

    def chat_statuses(self) -> list[int]:
        """HTTP status of every chat request the server has answered, in order (from its access log)."""
        return [int(m.group(1)) for m in CHAT_LINE.finditer(self.log.read_text(errors="replace"))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(model: Path, alias: str, n_ctx: int, logs: Path) -> Served:
    if not LLM_PY.is_file():
        pytest.fail(f"no llama-cpp-python venv at {LLM_PY.parent.parent}: run `make test-llm`")
    port = _free_port()
    log = logs / f"{alias}-{n_ctx}.log"
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.Popen([str(LLM_PY), "-m", "llama_cpp.server", "--model", str(model), "--model_alias", alias,
                             "--n_ctx", str(n_ctx), "--n_threads", THREADS, "--n_threads_batch", THREADS,
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    import httpx

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama-cpp-python server for {alias} exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return Served(alias, f"http://127.0.0.1:{port}/v1", log, proc)
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    pytest.fail(f"llama-cpp-python server for {alias} did not start in 180 s")


@pytest.fixture(scope="session")
def models() -> dict[str, Path]:
    out = subprocess.run([sys.executable, str(REPO / "tests_llm" / "models.py")], capture_output=True, text=True,
                         check=True)
    return {k: Path(v) for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}


@pytest.fixture(scope="session")
def logs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("llm-logs")


def _server_fixture(model_key: str, alias: str, n_ctx: int):
    @pytest.fixture(scope="session")
    def fixture(models, logs):
        srv = _serve(models[model_key], alias, n_ctx, logs)
        yield srv
        srv.proc.terminate()
        try:
            srv.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            srv.proc.kill()
    return fixture


smollm2 = _server_fixture("smollm2", "smollm2", 4096)
smollm2_small = _server_fixture("smollm2", "smollm2", 1024)   # a window the real prompts do not fit
gemma3 = _server_fixture("gemma3", "gemma3-270m", 2048)
