"""Progress: a rich bar on a terminal, plain lines every few percent elsewhere, nothing when quiet; every
per-record stage ticks it (through the real CLI, on a real pseudo-terminal)."""
from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import progress

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "pipeline.cli"]


def _lines(stream: io.StringIO) -> list[str]:
    return [x for x in stream.getvalue().splitlines() if x.strip()]


def test_plain_lines_every_few_percent_with_rate_and_eta(monkeypatch):
    monkeypatch.setattr(progress, "_LINE_CADENCE", {0: (10.0, 0.0, 3600.0), 1: (1.0, 0.0, 3600.0)})
    out = io.StringIO()
    with progress.track("features", 200, stream=out, level=0) as p:
        assert p.mode == "lines"  # a StringIO is no terminal
        for _ in range(200):
            progress.tick()
    lines = _lines(out)
    # one line per 10 % step (10 % .. 90 %) and the final line
    assert len(lines) == 10, lines
    assert lines[0].startswith("features: 20/200 records (10%), ") and "records/s, ETA " in lines[0]
    assert re.fullmatch(r"features: 200/200 records \(100%\) in \d+\.\d s, [\d.]+ records/s", lines[-1]), lines[-1]


def test_lines_are_spaced_in_time(monkeypatch):
    # default cadence: a fast stage prints only its final line, however many percent steps it crosses
    out = io.StringIO()
    with progress.track("render", 1000, stream=out, level=0):
        for _ in range(1000):
            progress.tick()
    assert len(_lines(out)) == 1


def test_heartbeat_when_percent_steps_are_far_apart(monkeypatch):
    monkeypatch.setattr(progress, "_LINE_CADENCE", {0: (5.0, 0.0, 0.05)})
    out = io.StringIO()
    with progress.track("generate", 10_000, unit="requests", stream=out, level=0):
        for _ in range(3):
            time.sleep(0.06)
            progress.tick()
    lines = _lines(out)
    assert [x.split(" requests")[0] for x in lines[:3]] == [f"generate: {i}/10000" for i in (1, 2, 3)]
    assert "ETA" in lines[0]  # three heartbeats below 1 %, then the final line, which says the count is partial
    assert lines[-1].startswith("generate: 3 of 10000 requests processed now in ") and "done before or failed" in lines[-1]


def test_quiet_prints_nothing_and_verbosity_from_environment(monkeypatch):
    for value, want in (("-1", -1), ("0", 0), ("1", 1), ("2", 1), ("", 0), ("loud", 0)):
        monkeypatch.setenv(progress.VERBOSITY_ENV, value)
        assert progress.verbosity() == want
    monkeypatch.setenv(progress.VERBOSITY_ENV, "-1")
    out = io.StringIO()
    with progress.track("ingest", 5, stream=out) as p:
        assert p.mode == "off"
        for _ in range(5):
            progress.tick()
    assert out.getvalue() == ""


def test_tick_outside_a_bar_is_harmless_and_bars_nest():
    progress.tick()  # e.g. a Prefect task calling measure_shard: no bar, nothing happens
    outer, inner = io.StringIO(), io.StringIO()
    with progress.track("validate", 2, stream=outer, level=0) as a:
        with progress.track("inner", 3, stream=inner, level=0) as b:
            progress.tick(3)
        progress.tick()
        progress.add_total(1)
    assert (a.done, a.total, b.done) == (1, 3, 3)


def test_iterate_weights(monkeypatch):
    out = io.StringIO()
    seen = []
    monkeypatch.setattr(sys, "stderr", out)
    for chunk in progress.iterate("validate", [[1, 2], [3]], total=3, weight=lambda _: 0):
        for x in chunk:
            seen.append(x)
            progress.tick()
    assert seen == [1, 2, 3]
    assert _lines(out)[-1].startswith("validate: 3/3 records (100%)")


def _run_on_pty(args: list[str], env: dict) -> str:
    """Run the CLI with stdout and stderr on a pseudo-terminal (what a person at a terminal sees)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, stdout=slave, stderr=slave, stdin=subprocess.DEVNULL, cwd=REPO, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=300)
    os.close(master)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")[-2000:]
    return b"".join(chunks).decode(errors="replace")


def test_every_per_record_stage_shows_a_bar_on_a_terminal(tmp_path):
    env = {**os.environ, "COLUMNS": "140", "ECG_GROUNDING_VERBOSITY": "0"}
    screen = _run_on_pty([*CLI, "run", "--n", "12", "--out", str(tmp_path / "run")], env)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    for stage in ("synth", "ingest", "features", "render", "prompts", "generate", "validate"):
        unit = "requests" if stage == "generate" else "records"
        done = re.findall(rf"{stage} ━+\s+12/12 100% [\d.]+ {unit}/s ETA", text)
        assert done, f"no finished bar for {stage}:\n{text[-3000:]}"
    assert "\u2501" in text  # rich's bar glyph: a real bar, not plain lines


@pytest.mark.parametrize("verbosity,expect_lines", [("0", True), ("-1", False)])
def test_cli_off_a_terminal_prints_lines_to_stderr_only(tmp_path, verbosity, expect_lines):
    env = {**os.environ, "ECG_GROUNDING_VERBOSITY": verbosity}
    out = tmp_path / "syn"
    r = subprocess.run([*CLI, "synth", "--n", "5", "--out", str(out)], capture_output=True, text=True, env=env,
                       cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "synth: 5/5 records" not in r.stdout  # stdout stays the command's own output
    assert ("synth: 5/5 records (100%) in " in r.stderr) is expect_lines
