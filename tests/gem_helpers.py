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
        # the writer words the rate several ways; its first "<n> bpm" is always the heart rate
        rate = re.search(r"(\d+) bpm", it["conversations"][1]["value"])
        assert rate, it["conversations"][1]["value"][:300]
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


def break_run(run: Path) -> dict[str, str]:
    """Damage a copy of a run in every way an item can be bad; returns {item id: expected reason}."""
    path = run / "instructions" / "train-00000.json"
    items = json.loads(path.read_text())
    expected = {}
    a, b, c, d, e, f, g = items[:7]
    (run / a["image"]).unlink()
    expected[a["id"]] = "missing_file (image)"
    (run / b["image"]).write_bytes((run / b["image"]).read_bytes()[:200])
    expected[b["id"]] = "corrupt_image (image)"
    ecg_root = run / "synthetic"
    (ecg_root / f"{c['ecg']}.hea").unlink()
    expected[c["id"]] = "missing_file (ecg)"
    dat = ecg_root / f"{d['ecg']}.dat"
    dat.write_bytes(dat.read_bytes()[:1000])
    expected[d["id"]] = "truncated_signal (ecg)"
    e["conversations"] = [e["conversations"][1], e["conversations"][0]]
    expected[e["id"]] = "bad_conversation"
    f["conversations"][0]["value"] = f["conversations"][0]["value"].replace("<image>", "")
    expected[f["id"]] = "bad_conversation"
    g["ecg"] = "../../etc/passwd"
    expected[g["id"]] = "unsafe_record_id (ecg)"
    items.append(dict(items[-1]))                  # a duplicate id
    expected["dup"] = "bad_conversation"
    path.write_text(json.dumps(items))
    return expected


def llava_config_json(model) -> dict:
    """The config.json of a GEM / LLaVA folder (model_type llava_llama) with ``model``'s sizes."""
    c = model.llm.config
    return {"architectures": ["LlavaLlamaForCausalLM"], "model_type": "llava_llama", "hidden_size": c.hidden_size,
            "intermediate_size": c.intermediate_size, "num_hidden_layers": c.num_hidden_layers,
            "num_attention_heads": c.num_attention_heads, "num_key_value_heads": c.num_key_value_heads,
            "vocab_size": c.vocab_size, "max_position_embeddings": c.max_position_embeddings,
            "rms_norm_eps": c.rms_norm_eps, "tie_word_embeddings": False, "mm_hidden_size": model.cfg.mm_hidden,
            "mm_projector_type": "mlp2x_gelu", "ecg_projector_type": "linear", "mm_vision_select_layer": -2,
            "mm_vision_select_feature": "patch", "image_aspect_ratio": "ori", "mm_patch_merge_type": "flat",
            "mm_vision_tower": "openai/clip-vit-large-patch14-336", "mm_ecg_tower": "/home/x/cpt_wfep_epoch_20.pt"}
