"""Greedy interpretations of records by a trained checkpoint: one JSON line ``{"id", "text"}`` per record.

That file is the input of ``ecg-grounding evaluate``; its format is fixed: exactly these two keys, one
record per line, in the order of the input items. Records that cannot be read (missing or corrupt ECG or
image, no question) are not in it: they are listed with a reason code in ``<out stem>.skipped.jsonl``.

``--checkpoint`` is one of our checkpoints (``ecg-grounding train --out``), or a GEM-7B / LLaVA-style folder
(``config.json`` with ``model_type`` "llava_llama"): then GEM's own loading applies (ECG channels in file
order without resampling, image centre-cropped, ``llava_v1``), as the released model was trained that way.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from gem_model.config import DataConfig, GemConfig
from gem_model.conversation import IMAGE_PLACEHOLDER, ConversationEncoder, load_tokenizer, question_of
from gem_model.data import Roots, Skip, load_image, read_ecg
from pipeline.record import RecordError


@dataclass
class InterpretResult:
    written: int
    skipped: list[Skip]
    out: Path


def load_for_inference(checkpoint: str | Path, device: str = "auto", vision: str | None = None,
                       ecg_tower: str | None = None):
    """(model, cfg, tokenizer) on ``device`` ("auto": CUDA in bf16 when there is one, else CPU in fp32)."""
    from gem_model.checkpoints import load_checkpoint

    checkpoint = Path(checkpoint)
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    doc = json.loads((checkpoint / "config.json").read_text()) if (checkpoint / "config.json").is_file() else {}
    if doc.get("model_type") == "llava_llama" or "mm_projector_type" in doc:
        model, cfg, tok = _load_llava(checkpoint, vision, ecg_tower)
    else:
        model, cfg, tok = load_checkpoint(checkpoint)
    model = model.to(dev)
    if dev.type == "cuda":
        model = model.to(torch.bfloat16)
    return model.eval(), cfg, tok


def _load_llava(folder: Path, vision: str | None, ecg_tower: str | None):
    from gem_model.checkpoints import llava_model_config, load_ecg_coca, load_llava_weights, read_hf_weights
    from gem_model.model import GemModel

    weights = read_hf_weights(folder)
    mcfg = llava_model_config(folder, weights)
    mcfg.vision_path = vision
    model = GemModel(mcfg)
    report = load_llava_weights(model, folder, weights)
    del weights
    if ecg_tower:
        load_ecg_coca(model.ecg, ecg_tower)
    absent = {k.split(".")[0] for k in report["missing"]} - ({"ecg"} if ecg_tower else set()) - \
        ({"vision"} if vision else set())
    if absent:
        print(f"warning: {folder} holds no weights for {', '.join(sorted(absent))}: they stay random "
              f"(pass --vision / --ecg-tower)")
    # GEM-7B's own data handling (design note section 1.8)
    data = DataConfig(template="llava_v1", image_mode="crop", gem_compat=True)
    return model, GemConfig(model=mcfg, data=data, preset="llava"), load_tokenizer(str(folder))


def interpret(checkpoint: str | Path, items: list[dict], roots: Roots, out: str | Path, max_new_tokens: int = 1024,
              batch_size: int = 1, device: str = "auto", vision: str | None = None, ecg_tower: str | None = None,
              progress: bool = True) -> InterpretResult:
    model, cfg, tokenizer = load_for_inference(checkpoint, device, vision, ecg_tower)
    encoder = ConversationEncoder(tokenizer, cfg.data.template, cfg.data.system)
    dev = next(model.parameters()).device
    m = cfg.model
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    skipped: list[Skip] = []
    ready: list[tuple[str, list[int], np.ndarray, np.ndarray]] = []

    def flush(fh) -> None:
        if not ready:
            return
        L = max(len(r[1]) for r in ready)
        ids = torch.full((len(ready), L), tokenizer.pad_token_id or 0, dtype=torch.long)
        for i, r in enumerate(ready):
            ids[i, : len(r[1])] = torch.tensor(r[1])
        lengths = torch.tensor([len(r[1]) for r in ready])
        ecgs = torch.from_numpy(np.stack([r[2] for r in ready])).to(dev)
        images = torch.from_numpy(np.stack([r[3] for r in ready])).to(dev)
        new = model.generate(ids.to(dev), lengths.to(dev), ecgs, images, max_new_tokens=max_new_tokens,
                             eos_token_id=encoder.end_id, pad_token_id=tokenizer.pad_token_id)
        for r, row in zip(ready, new.tolist()):
            fh.write(json.dumps({"id": r[0], "text": encoder.decode(row)}, ensure_ascii=False) + "\n")
        ready.clear()

    from tqdm.auto import tqdm

    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    written = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for item in tqdm(items, desc="interpret", unit="record", disable=not progress, dynamic_ncols=True):
            item_id = str(item.get("id", "")) if isinstance(item, dict) else ""
            question = question_of(item) if isinstance(item, dict) else None
            if not item_id or not question:
                skipped.append(Skip(item_id or "?", "bad_conversation", "item", "no id or no question"))
                continue
            try:
                if IMAGE_PLACEHOLDER in question:
                    part = "ecg"
                    if not item.get("ecg") or roots.ecg is None:
                        raise RecordError("missing_file", "no ECG path or no ECG root", item_id)
                    ecg = read_ecg(roots.ecg, item["ecg"], item_id, m.ecg.seq_len, cfg.data.gem_compat,
                                   cfg.data.ecg_window_s)
                    part = "image"
                    if not item.get("image") or roots.image is None:
                        raise RecordError("missing_file", "no image path or no image root", item_id)
                    image = load_image(roots.image, item["image"], item_id, m.image_size, cfg.data.image_mode)
                else:
                    ecg = np.zeros((m.ecg.leads, m.ecg.seq_len), dtype=np.float32)
                    image = np.zeros((3, m.image_size, m.image_size), dtype=np.float32)
            except RecordError as exc:
                skipped.append(Skip(item_id, exc.code, part, exc.message))
                continue
            ready.append((item_id, encoder.prompt(question), ecg, image))
            written += 1
            if len(ready) >= batch_size:
                flush(fh)
        flush(fh)
    os.replace(tmp, out)
    skip_path = out.with_name(out.stem + ".skipped.jsonl")
    if skipped:
        with open(skip_path, "w", encoding="utf-8") as fh:
            for s in skipped:
                fh.write(json.dumps(asdict(s)) + "\n")
    elif skip_path.exists():
        skip_path.unlink()
    return InterpretResult(written, skipped, out)
