"""Weights in and out: our checkpoints, GEM / LLaVA-1.6 / PULSE checkpoints, ECG-CoCa, merged LoRA.

Our checkpoint (``ecg-grounding train --out CKPT``)::

    CKPT/config.json          GemConfig (model, data, train) + what was trained; enough to rebuild the model
    CKPT/model.safetensors    every weight under GemModel's names (llm.*, vision.*, ecg.*, *_projector.*)
    CKPT/tokenizer/           the tokenizer (saved, so a GGUF-initialised model reloads without the GGUF)

GEM-7B, LLaVA-1.6 and PULSE save ``LlavaLlamaForCausalLM`` (``model_type`` "llava_llama"), whose keys are
mapped onto ours by ``llava_to_ours`` (GEM's module tree: ``llava/model/llava_arch.py``)::

    model.mm_projector.{0,2}.*                     -> mm_projector.{0,2}.*
    model.ecg_projector.*                          -> ecg_projector.*
    model.vision_tower.vision_tower.vision_model.* -> vision.*       (CLIPVisionModel)
    model.ecg_tower.ecg_tower.*                    -> ecg.*          (ECG-CoCa's EcgTransformer)
    model.image_newline                            -> ignored        (LLaVA-1.6 anyres; GEM uses "flat")
    lm_head.*                                      -> llm.lm_head.*
    model.*                                        -> llm.model.*    (the Llama body)

Whatever a checkpoint lacks (PULSE has no ECG parts; GEM-7B may ship without tower weights) is reported,
and comes from ``--vision`` / ``--ecg-tower`` or stays as initialised.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from gem_model.config import GemConfig

FORMAT = "ecg-grounding/gem"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be loaded (wrong format, no weights): the user's input, not a bug."""


# ------------------------------------------------------------------------------ our own checkpoints
def save_checkpoint(out: str | Path, cfg: GemConfig, state_dict: dict[str, torch.Tensor], tokenizer,
                    info: dict | None = None, dtype: torch.dtype | None = None) -> Path:
    """Write ``config.json``, ``model.safetensors`` and ``tokenizer/`` into ``out`` (weights via a temporary
    name and a rename, so a killed save never leaves a half-written file under the real name)."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors, aliases = _dedupe(state_dict, dtype)
    tmp = out / f".{WEIGHTS}.{os.getpid()}.tmp"
    save_file(tensors, str(tmp), metadata={"format": FORMAT, "aliases": json.dumps(aliases)})
    os.replace(tmp, out / WEIGHTS)
    tokenizer.save_pretrained(str(out / "tokenizer"))
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, **cfg.to_dict(), "trained": info or {}}
    doc["model"]["tokenizer"] = "tokenizer"      # relative to the checkpoint folder
    doc["model"]["llm_path"] = doc["model"]["vision_path"] = doc["model"]["ecg_path"] = None
    _write_json(out / "config.json", doc)
    return out


def _dedupe(sd: dict[str, torch.Tensor], dtype) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """safetensors refuses tensors that share memory (tied embeddings): keep one, remember the aliases."""
    seen: dict[tuple, str] = {}
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    for name, t in sd.items():
        t = t.detach()
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape)) if t.device.type != "meta" else None
        if key is not None and key in seen:
            aliases[name] = seen[key]
            continue
        if key is not None:
            seen[key] = name
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        tensors[name] = t.contiguous().cpu()
    return tensors, aliases


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A ``model.safetensors`` written by ``save_checkpoint``, aliases restored."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        sd = {k: f.get_tensor(k) for k in f.keys()}
        aliases = json.loads((f.metadata() or {}).get("aliases", "{}"))
    for alias, name in aliases.items():
        sd[alias] = sd[name]
    return sd


def load_checkpoint(ckpt: str | Path, device: str | torch.device = "cpu"):
    """(model, config, tokenizer) from a checkpoint folder. When the final export is missing (a run that was
    stopped), the newest resumable state under ``CKPT/state/`` is used."""
    from gem_model.conversation import load_tokenizer
    from gem_model.model import GemModel

    ckpt = Path(ckpt)
    doc = _read_json(ckpt / "config.json")
    if doc.get("format") != FORMAT:
        raise CheckpointError(f"{ckpt} is not an ecg-grounding GEM checkpoint (config.json format {doc.get('format')!r})")
    cfg = GemConfig.from_dict(doc)
    weights = ckpt / WEIGHTS
    if not weights.is_file():
        states = sorted((ckpt / "state").glob("step-*/" + WEIGHTS))
        if not states:
            raise CheckpointError(f"{ckpt} holds no {WEIGHTS} (training never finished a save)")
        weights = states[-1]
    tokenizer = load_tokenizer(str(ckpt / cfg.model.tokenizer))
    model = GemModel(cfg.model)
    sd = read_weights(weights)
    if any(".lora_A." in k for k in sd):  # a resumable state of a LoRA run: merge the adapters in
        sd = merge_lora(sd, cfg.train.lora_alpha / cfg.train.lora_r)
    model.load_state_dict(sd, strict=True)
    return model.to(device).eval(), cfg, tokenizer


def merge_lora(sd: dict[str, torch.Tensor], scaling: float) -> dict[str, torch.Tensor]:
    """A peft-wrapped state dict -> plain names, with W + scaling * B @ A folded into every adapted weight
    (what ``merge_and_unload`` does, on tensors, so it works on a gathered FSDP / DeepSpeed state dict)."""
    out: dict[str, torch.Tensor] = {}
    for name, t in sd.items():
        if ".lora_A." in name or ".lora_B." in name or ".lora_dropout" in name:
            continue
        plain = name.replace("base_model.model.", "", 1)
        if ".base_layer." in name:
            stem = name.split(".base_layer.")[0]
            plain = plain.replace(".base_layer.", ".")
            a = sd.get(f"{stem}.lora_A.default.weight")
            b = sd.get(f"{stem}.lora_B.default.weight")
            if a is not None and b is not None and name.endswith("weight"):
                t = (t.float() + scaling * (b.float() @ a.float())).to(t.dtype)
        out[plain] = t
    return out


def _write_json(path: Path, doc: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    return json.loads(path.read_text())


# ------------------------------------------------------------------------------ LLaVA / GEM / PULSE
def _vision_inner(model) -> str:
    """transformers 4.x nests CLIPVisionModel's weights under ``vision_model.``; 5.x does not."""
    return "vision_model." if any(k.startswith("vision_model.") for k in model.vision.state_dict()) else ""


def llava_to_ours(key: str, vision_inner: str = "") -> str | None:
    """Our name for a GEM / LLaVA key; None for keys GEM does not use."""
    if key.startswith("model.mm_projector."):
        return "mm_projector." + key[len("model.mm_projector."):]
    if key.startswith("model.ecg_projector."):
        return "ecg_projector." + key[len("model.ecg_projector."):]
    if key.startswith("model.vision_tower.vision_tower.vision_model."):
        return "vision." + vision_inner + key[len("model.vision_tower.vision_tower.vision_model."):]
    if key.startswith("model.ecg_tower.ecg_tower."):
        return "ecg." + key[len("model.ecg_tower.ecg_tower."):]
    if key == "model.image_newline":
        return None
    if key.startswith("lm_head."):
        return "llm." + key
    if key.startswith("model."):
        return "llm." + key
    return None


def ours_to_llava(key: str, vision_inner: str = "") -> str:
    """The GEM / LLaVA key of one of our names (``llava_to_ours`` inverted)."""
    if key.startswith("mm_projector.") or key.startswith("ecg_projector."):
        return "model." + key
    if key.startswith("vision."):
        rest = key[len("vision."):]
        if vision_inner and rest.startswith(vision_inner):
            rest = rest[len(vision_inner):]
        return "model.vision_tower.vision_tower.vision_model." + rest
    if key.startswith("ecg."):
        return "model.ecg_tower.ecg_tower." + key[len("ecg."):]
    if key.startswith("llm."):
        return key[len("llm."):]
    raise ValueError(f"no LLaVA name for {key!r}")


def read_hf_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a Hugging Face folder: sharded or single safetensors, or ``pytorch_model*.bin``."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file() or (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() \
            else ["model.safetensors"]
        sd: dict[str, torch.Tensor] = {}
        for f in files:
            sd.update(load_file(str(folder / f)))
        return sd
    bins = sorted(folder.glob("pytorch_model*.bin"))
    if not bins:
        raise FileNotFoundError(f"no safetensors or pytorch_model*.bin weights in {folder}")
    sd = {}
    for f in bins:
        sd.update(torch.load(f, map_location="cpu", weights_only=True))
    return sd


def llava_model_config(folder: str | Path, weights: dict[str, torch.Tensor] | None = None):
    """The ``ModelConfig`` of a GEM / LLaVA / PULSE folder. Its ``config.json`` is a Llama config plus ``mm_*``
    fields; the towers' sizes are read off their weights when the folder holds them (CLIP: patch embedding,
    positions, layers; ECG-CoCa: ``conv1``, positions, blocks, 64-wide heads), else GEM's (CLIP ViT-L/14-336,
    ECG-CoCa ViT-B 768 x 12)."""
    from gem_model.config import ECGConfig, preset

    doc = _read_json(Path(folder) / "config.json")
    cfg = preset("gem7b").model
    llm_keys = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "max_position_embeddings", "rms_norm_eps", "rope_theta", "tie_word_embeddings",
                "hidden_act", "attention_bias", "rope_scaling")
    cfg.llm = {"model_type": "llama", **{k: doc[k] for k in llm_keys if k in doc and doc[k] is not None}}
    cfg.vision = dict(cfg.vision)
    if "mm_hidden_size" in doc:
        cfg.vision["hidden_size"] = doc["mm_hidden_size"]
    cfg.vision_select_layer = int(doc.get("mm_vision_select_layer", -2))
    cfg.mm_projector = doc.get("mm_projector_type", cfg.mm_projector)
    cfg.ecg_projector = doc.get("ecg_projector_type", cfg.ecg_projector)
    cfg.tokenizer = str(folder)
    w = weights if weights is not None else {}
    v = "model.vision_tower.vision_tower.vision_model."
    if f"{v}embeddings.patch_embedding.weight" in w:
        hidden, _, patch, _ = w[f"{v}embeddings.patch_embedding.weight"].shape
        n_pos = w[f"{v}embeddings.position_embedding.weight"].shape[0]
        layers = 1 + max(int(k[len(v + "encoder.layers."):].split(".")[0]) for k in w if k.startswith(v + "encoder.layers."))
        cfg.vision.update(hidden_size=hidden, patch_size=patch, image_size=int(round((n_pos - 1) ** 0.5)) * patch,
                          num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
                          intermediate_size=w[f"{v}encoder.layers.0.mlp.fc1.weight"].shape[0], projection_dim=hidden)
    e = "model.ecg_tower.ecg_tower."
    if f"{e}conv1.weight" in w:
        width, leads, patch = w[f"{e}conv1.weight"].shape
        tokens = w[f"{e}positional_embedding"].shape[0]
        blocks = 1 + max(int(k[len(e + "transformer.resblocks."):].split(".")[0])
                         for k in w if k.startswith(e + "transformer.resblocks."))
        hidden = w[f"{e}transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
        out_dim = w[f"{e}proj"].shape[1] if f"{e}proj" in w else 512
        cfg.ecg = ECGConfig(seq_len=(tokens - 1) * patch, leads=leads, patch=patch, width=width, layers=blocks,
                            heads=max(1, width // 64), mlp_ratio=hidden / width, output_dim=out_dim)
    return cfg


def load_llava_weights(model, folder: str | Path, weights: dict[str, torch.Tensor] | None = None) -> dict[str, list[str]]:
    """Load a GEM / LLaVA-1.6 / PULSE folder's weights (or ``weights`` already read from it) into ``model``.
    Returns what happened: ``loaded``, ``missing`` (our parameters the folder lacks), ``ignored`` (its keys
    GEM does not use), ``unexpected`` (its keys with no place in our model). Shapes must agree."""
    inner = _vision_inner(model)
    weights = read_hf_weights(folder) if weights is None else weights
    ours = model.state_dict()
    report: dict[str, list[str]] = {"loaded": [], "missing": [], "ignored": [], "unexpected": []}
    mapped: dict[str, torch.Tensor] = {}
    for key, tensor in weights.items():
        name = llava_to_ours(key, inner)
        if name is None:
            report["ignored"].append(key)
        elif name not in ours:
            report["unexpected"].append(key)
        elif tuple(ours[name].shape) != tuple(tensor.shape):
            raise CheckpointError(f"{key}: shape {tuple(tensor.shape)} does not fit {name} {tuple(ours[name].shape)}")
        else:
            mapped[name] = tensor
    model.load_state_dict(mapped, strict=False)
    report["loaded"] = sorted(mapped)
    tied = {"llm.lm_head.weight"} if getattr(model.llm.config, "tie_word_embeddings", False) else set()
    report["missing"] = sorted(k for k in ours if k not in mapped and k not in tied)
    return report


def export_llava(model, folder: str | Path, shard_bytes: int = 5 * 2**30) -> Path:
    """Write ``model`` under GEM / LLaVA key names as sharded safetensors with an index (what GEM's own
    scripts and ``load_llava_weights`` read)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    inner = _vision_inner(model)
    tensors, _ = _dedupe({ours_to_llava(k, inner): v for k, v in model.state_dict().items()}, None)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append({})
            size = 0
        shards[-1][k] = t
        size += nbytes
    weight_map = {}
    for i, shard in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(folder / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in shard})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    _write_json(folder / "model.safetensors.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})
    return folder


# ------------------------------------------------------------------------------------------ ECG-CoCa
def load_ecg_coca(encoder, path: str | Path) -> None:
    """ECG-CoCa's released checkpoint (``cpt_wfep_epoch_20.pt``: ``{"state_dict": {"module.ecg.*": ...}}``)
    into our ``ECGEncoder``: the prefix is stripped and the load is strict (ECG-CoCa's ``get_ecg_encoder``)."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    sd = blob.get("state_dict", blob) if isinstance(blob, dict) else blob
    prefix = next((p for p in ("module.ecg.", "ecg.") if any(k.startswith(p) for k in sd)), "")
    ecg = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if not ecg:
        raise ValueError(f"{path} holds no ECG encoder weights (keys under 'module.ecg.')")
    encoder.load_state_dict(ecg, strict=True)
