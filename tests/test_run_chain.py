"""The one chain run by ``ecg-grounding run`` (no Prefect): resume after a real SIGKILL, redraw on a new layout,
refuse a folder made with other data or being written by a live process, and the chain's own bookkeeping."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from pipeline.cli import main
from pipeline.run_all import CHAIN, STAGES, RunConfig, run_pipeline, stage_params

REPO = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).parent / "ecg-grounding")


def _tables(run: Path) -> dict:
    out = {}
    for rel in ("manifest.parquet", "images/manifest.parquet", "prompts/prompts.parquet", "generate/answers.parquet",
                "instructions/provenance.parquet"):
        out[rel] = pl.read_parquet(run / rel).drop(["source_root", "latency_s", "reused"], strict=False)
    return out


def test_a_sigkilled_run_resumes_to_the_same_outputs(tmp_path):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    args = ["run", "--n", "24", "--seed", "4", "--chunk-size", "6"]
    proc = subprocess.Popen([CLI, *args, "--out", str(killed)], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while len(list((killed / "images").glob("*.png"))) < 8:  # in the middle of render
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lock = json.loads((killed / "run.lock").read_text())
    assert lock["status"] == "running" and lock["stage"] == "render" and lock["pid"] == proc.pid
    assert not (killed / "run.json").exists()

    assert main([*args, "--out", str(killed)]) == 0
    report = json.loads((killed / "run.json").read_text())
    assert report["resumed_after_crash"]["stage"] == "render"
    assert report["chunks"]["features"]["computed"] == 0  # every features chunk was finished before the kill
    assert report["chunks"]["render"]["computed"] < 4
    assert not (killed / "run.lock").exists()

    assert main([*args, "--out", str(clean)]) == 0
    a, b = _tables(killed), _tables(clean)
    for rel in a:
        assert a[rel].equals(b[rel]), rel
    for name in ("train-00000.json", "test-00000.json"):
        assert (killed / "instructions" / name).read_bytes() == (clean / "instructions" / name).read_bytes()
    for png in sorted((clean / "images").glob("*.png")):
        assert (killed / "images" / png.name).read_bytes() == png.read_bytes(), png.name


def test_a_new_layout_redraws_the_images_and_what_depends_on_them(tmp_path):
    out = tmp_path / "run"
    run_pipeline(RunConfig(out=out, n=4, seed=1))
    sizes = pl.read_parquet(out / "images" / "manifest.parquet")["height_px"].to_list()
    report = run_pipeline(RunConfig(out=out, n=4, seed=1, layout="12x1"))
    man = pl.read_parquet(out / "images" / "manifest.parquet")
    assert set(man["layout"]) == {"12x1"} and man["height_px"].to_list() != sizes
    from PIL import Image

    for r in man.iter_rows(named=True):
        with Image.open(out / "images" / r["image_path"]) as im:
            assert im.size == (r["width_px"], r["height_px"])
    assert report["chunks"]["render"]["computed"] == 1 and report["chunks"]["prompts"]["computed"] == 1
    assert report["chunks"]["features"]["computed"] == 0


def test_a_folder_of_other_data_or_a_live_writer_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--n", "3", "--out", str(out)]) == 0
    assert main(["run", "--n", "5", "--out", str(out)]) == 2
    assert "other data or chunking (n 3 -> 5)" in capsys.readouterr().err
    assert main(["run", "--n", "3", "--chunk-size", "2", "--out", str(out)]) == 2
    # a lock held by a live process on this machine (this test's parent, say) is respected
    lock = json.loads((out / ".chain.json").read_text())
    assert lock["chunk_size"] == 200
    (out / "run.lock").write_text(json.dumps({"status": "running", "pid": os.getppid(), "host": os.uname().nodename,
                                              "stage": "features", "run_id": "x"}))
    assert main(["run", "--n", "3", "--out", str(out)]) == 2
    assert f"is being written by pid {os.getppid()}" in capsys.readouterr().err


def test_the_chain_is_defined_once_with_what_each_stage_reads_and_writes():
    assert [s.name for s in CHAIN] == ["synth", "ingest", "features", "render", "prompts", "generate", "validate"]
    written = {w for s in CHAIN for w in s.writes}
    for s in CHAIN:
        for a in s.after:
            assert a in STAGES and [x.name for x in CHAIN].index(a) < [x.name for x in CHAIN].index(s.name)
        for r in s.reads:  # everything a stage reads is the data root or another stage's output
            assert r.startswith("{data}") or any(r.startswith(w) or w.startswith(r) for w in written), (s.name, r)
    # a stage's cache key follows the settings of everything upstream of it
    assert {"n", "seed", "source", "layout", "dpi", "budget"} <= set(stage_params(STAGES["generate"], RunConfig()))
    assert "layout" not in stage_params(STAGES["features"], RunConfig())
