"""Shared material of the gem_model tests: a real run folder made by the project's own chain, tiny configs,
and the SmolLM2 GGUF file (present after `make smollm2`, which `make test` runs)."""
from __future__ import annotations

import copy
import functools
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")          # nothing may be downloaded: fail loudly instead
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_CACHE = Path(tempfile.mkdtemp(prefix="gem-tests-"))


def chain_run(n: int = 12, dpi: int = 40, seed: int = 0) -> Path:
    """A run folder written by `ecg-grounding run` on ``n`` synthetic records (images at ``dpi`` so tests
    decode them fast); made once per test process. Treat it as read-only: copy it to change it."""
    return _chain_run(n, dpi, seed)


@functools.lru_cache(maxsize=None)
def _chain_run(n: int, dpi: int, seed: int) -> Path:
    from pipeline.run_all import RunConfig, run_pipeline

    out = _CACHE / f"run-{n}-{dpi}-{seed}"
    run_pipeline(RunConfig(out=out, n=n, dpi=dpi, seed=seed))
    # the run writes run.json paths relative to the current folder: make the data root absolute for the tests
    doc = json.loads((out / "run.json").read_text())
    doc["paths"]["data_root"] = str((out / "synthetic").resolve())
    (out / "run.json").write_text(json.dumps(doc))
    return out


def copy_run(tmp: Path, n: int = 12, dpi: int = 40) -> Path:
    dest = tmp / "run"
    shutil.copytree(chain_run(n, dpi), dest)
    doc = json.loads((dest / "run.json").read_text())
    doc["paths"]["data_root"] = str((dest / "synthetic").resolve())
    (dest / "run.json").write_text(json.dumps(doc))
    return dest


def items_of(run: Path, split: str | None = None) -> list[dict]:
    from gem_model.data import read_items

    return read_items(run / "instructions", split)


def short_answer_set(run: Path, dest: Path, n: int = 8) -> Path:
    """A GEM JSON file of ``n`` items of ``run`` with one question for all and a short answer each - the
    record's first diagnosis and its heart rate, as its accepted answer states them ("sinus tachycardia,
    114 bpm.") - so that telling the items apart needs the ECG / image features."""
    import re

    out = []
    for it in items_of(run)[:n]:
        it = copy.deepcopy(it)
        rate = re.search(r"heart rate of (\d+) bpm", it["conversations"][1]["value"])
        answer = f"{it['report'].split('.')[0].strip()}, {rate.group(1)} bpm."
        it["conversations"] = [{"from": "human", "value": "<image>\nInterpret this ECG."},
                               {"from": "gpt", "value": answer}]
        out.append(it)
    assert len({it["conversations"][1]["value"] for it in out}) == len(out), "answers must differ"
    path = dest / "short.json"
    path.write_text(json.dumps(out))
    return path


def tiny_config(**train):
    from gem_model.config import preset, with_overrides

    cfg = preset("tiny")
    return with_overrides(cfg, **train)


def smollm2_path() -> str:
    """The SmolLM2 GGUF file; missing fails under CI (make test fetches it) and skips elsewhere."""
    from gem_model.config import find_smollm2

    path = find_smollm2()
    if path is None:
        msg = "SmolLM2-135M-Instruct GGUF missing: run `make smollm2`"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path
