"""GEM's graph in our own code, top to bottom (Lan et al., NeurIPS 2025; ``llava/model/llava_arch.py``).

    ECG (B, 12, 5000) --ECGEncoder--> (B, 101, 768) --ecg_projector--> (B, 101, 1024) --+
                                                                                        +--mm_projector--> (B, 677, H)
    image (B, 3, 336, 336) --CLIP, layer -2, patch tokens--> (B, 576, 1024) -----------+
    text ids with one <image> sentinel --embed--> ... [677 rows spliced in at the sentinel] ... --> causal LM

- the language model is any Hugging Face causal LM (Llama / Vicuna / Qwen / SmolLM2 ...);
- the image tower is Hugging Face's ``CLIPVisionModel``; GEM takes the second-to-last layer's patch tokens;
- the ECG tower is ECG-CoCa's 1-D ViT, written here with ECG-CoCa's parameter names so its released
  checkpoint loads with a prefix strip (``gem_model.checkpoints.load_ecg_coca``); GEM uses the residual
  stream after the last block, all 101 tokens, without ``ln_post`` / ``proj``;
- ``ecg_projector`` (Linear 768 -> 1024) maps ECG tokens into CLIP's width, then the *shared* ``mm_projector``
  (``mlp2x_gelu``) maps both into the LM's embedding space; the ECG's rows come first, there is no ``<ecg>``;
- the towers are frozen (GEM locks both); attention is PyTorch SDPA everywhere.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from gem_model.config import ECGConfig, ModelConfig
from gem_model.conversation import IGNORE, IMAGE_TOKEN_ID


# -------------------------------------------------------------------------------------- ECG encoder
class ECGBlock(nn.Module):
    """Pre-norm transformer block with open_clip's names (``ResidualAttentionBlock``)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        # batch_first=True keeps nn.MultiheadAttention's parameter names and shapes (in_proj_weight, out_proj);
        # ECG-CoCa runs it sequence-first, which computes the same thing. need_weights=False -> SDPA.
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(width, hidden)), ("gelu", nn.GELU()),
                                              ("c_proj", nn.Linear(hidden, width))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class ECGTransformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.resblocks = nn.ModuleList(ECGBlock(width, heads, mlp_ratio) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


class ECGEncoder(nn.Module):
    """ECG-CoCa's ``EcgTransformer``: 12 leads x 5000 samples -> 100 patches of 50 samples + a class token."""

    def __init__(self, cfg: ECGConfig):
        super().__init__()
        if cfg.seq_len % cfg.patch:
            raise ValueError(f"seq_len {cfg.seq_len} is not a multiple of the patch size {cfg.patch}")
        self.cfg = cfg
        scale = cfg.width ** -0.5
        self.conv1 = nn.Conv1d(cfg.leads, cfg.width, kernel_size=cfg.patch, stride=cfg.patch, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(cfg.width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(cfg.tokens, cfg.width))
        self.ln_pre = nn.LayerNorm(cfg.width)
        self.transformer = ECGTransformer(cfg.width, cfg.layers, cfg.heads, cfg.mlp_ratio)
        # In ECG-CoCa's checkpoint and kept so it loads strictly; GEM does not use them.
        self.ln_post = nn.LayerNorm(cfg.width)
        self.proj = nn.Parameter(scale * torch.randn(cfg.width, cfg.output_dim))

    def forward(self, ecg: torch.Tensor) -> torch.Tensor:
        """(B, leads, seq_len) in mV -> (B, tokens, width): the residual stream after the last block."""
        x = self.conv1(ecg).transpose(1, 2)                       # (B, patches, width)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        return self.transformer(self.ln_pre(x))


# ------------------------------------------------------------------------------------- projectors
def build_projector(kind: str, d_in: int, d_out: int) -> nn.Module:
    """LLaVA's projector names: ``linear``, ``mlpNx_gelu`` (Linear, then N-1 times GELU + Linear), ``identity``."""
    if kind == "linear":
        return nn.Linear(d_in, d_out)
    if kind == "identity":
        return nn.Identity()
    if kind.startswith("mlp") and kind.endswith("x_gelu"):
        depth = int(kind[len("mlp"):-len("x_gelu")])
        layers: list[nn.Module] = [nn.Linear(d_in, d_out)]
        for _ in range(depth - 1):
            layers += [nn.GELU(), nn.Linear(d_out, d_out)]
        return nn.Sequential(*layers)
    raise ValueError(f"unknown projector {kind!r}")


# ------------------------------------------------------------------------------------------- GEM
def build_llm(cfg: ModelConfig) -> nn.Module:
    """The causal LM: pretrained from ``cfg.llm_path`` (HF folder or GGUF file), else random from ``cfg.llm``."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if cfg.llm_path:
        from pathlib import Path

        path = Path(cfg.llm_path)
        kw = {"gguf_file": path.name} if path.suffix == ".gguf" else {}
        where = str(path.parent) if path.suffix == ".gguf" else str(path)
        llm = AutoModelForCausalLM.from_pretrained(where, dtype=torch.float32, attn_implementation="sdpa",
                                                   local_files_only=True, **kw)
        cfg.llm = llm.config.to_dict()  # the checkpoint then rebuilds it without the file
        return llm
    llm_cfg = dict(cfg.llm)
    llm_cfg = AutoConfig.for_model(llm_cfg.pop("model_type"), **_hf_fields(llm_cfg))
    return AutoModelForCausalLM.from_config(llm_cfg, attn_implementation="sdpa", dtype=torch.float32)


def build_vision(cfg: ModelConfig) -> nn.Module:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    if cfg.vision_path:
        vision = CLIPVisionModel.from_pretrained(cfg.vision_path, dtype=torch.float32, attn_implementation="sdpa",
                                                 local_files_only=True)
        cfg.vision = vision.config.to_dict()
        return vision
    vcfg = CLIPVisionConfig(**_hf_fields(cfg.vision))
    vcfg._attn_implementation = "sdpa"
    return CLIPVisionModel(vcfg)


def _hf_fields(d: dict) -> dict:
    """A stored HF config dict without the bookkeeping fields that constructors refuse or recompute."""
    drop = {"model_type", "transformers_version", "architectures", "_name_or_path", "dtype", "torch_dtype",
            "_attn_implementation_autoset"}
    return {k: v for k, v in d.items() if k not in drop}


class GemModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.llm = build_llm(cfg)
        self.vision = build_vision(cfg)
        self.ecg = ECGEncoder(cfg.ecg)
        self.ecg_projector = build_projector(cfg.ecg_projector, cfg.ecg.width, cfg.mm_hidden)
        self.mm_projector = build_projector(cfg.mm_projector, cfg.mm_hidden, self.llm_hidden)
        self.freeze("llm")

    @property
    def llm_hidden(self) -> int:
        return self.llm.get_input_embeddings().weight.shape[1]

    # ---------------------------------------------------------------------------------- training mode
    def freeze(self, tune: str) -> None:
        """Which parameters learn. Towers are always frozen (GEM locks CLIP and ECG-CoCa).
        ``llm``: projectors + LM (GEM's single stage); ``projectors``: projectors only (LLaVA's alignment
        stage); ``lora``: projectors + the LoRA adapters that ``gem_model.train`` adds to the LM."""
        if tune not in ("llm", "projectors", "lora"):
            raise ValueError(f"unknown tune mode {tune!r}")
        self.requires_grad_(False)
        self.ecg_projector.requires_grad_(True)
        self.mm_projector.requires_grad_(True)
        if tune == "llm":
            self.llm.requires_grad_(True)
        self.vision.eval()
        self.ecg.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.vision.eval()   # frozen towers stay in eval mode (no dropout, fixed statistics)
        self.ecg.eval()
        return self

    # ------------------------------------------------------------------------------------ encoding
    def encode(self, ecgs: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """(B, 12, 5000) mV and (B, 3, S, S) CLIP-normalised pixels -> (B, ecg tokens + image tokens, H)."""
        with torch.no_grad():   # frozen towers: no activations kept for backward
            ecg_tokens = self.ecg(ecgs.to(self.ecg.conv1.weight.dtype))
            hidden = self.vision(pixel_values=images.to(self.vision.dtype), output_hidden_states=True).hidden_states
            image_tokens = hidden[self.cfg.vision_select_layer][:, 1:]    # drop CLIP's class token
        ecg_feats = self.mm_projector(self.ecg_projector(ecg_tokens))
        image_feats = self.mm_projector(image_tokens)
        return torch.cat([ecg_feats, image_feats], dim=1)

    def splice(self, input_ids: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor | None,
               mm: torch.Tensor, left_pad: bool = False):
        """Replace each row's ``IMAGE_TOKEN_ID`` by that row's ``mm`` rows (no Python loop over tokens).

        ``input_ids`` (B, L) are right-padded with ``lengths`` real tokens each; a row holds one sentinel or
        none (text only: nothing is inserted). Returns ``inputs_embeds`` (B, T, H), ``attention_mask`` (B, T),
        ``labels`` (B, T) with IGNORE on the spliced rows, and ``position_ids`` (B, T) counting 0.. over the
        real tokens. ``left_pad`` puts the padding first (for generation)."""
        B, L = input_ids.shape
        M = mm.shape[1]
        device = input_ids.device
        is_mm = input_ids == IMAGE_TOKEN_ID
        has_mm = is_mm.any(dim=1)
        pos = torch.arange(L, device=device).expand(B, L)
        real = pos < lengths[:, None]
        sentinel_at = torch.where(has_mm, is_mm.int().argmax(dim=1), torch.full_like(lengths, L))
        new_len = lengths + has_mm.long() * (M - 1)
        T = int(new_len.max())
        pad = (T - new_len) if left_pad else torch.zeros_like(new_len)
        # where each text token lands: after the sentinel it moves M - 1 places right
        target = pos + (pos > sentinel_at[:, None]).long() * (M - 1) + pad[:, None]
        keep = real & ~is_mm
        rows = torch.arange(B, device=device)[:, None].expand(B, L)

        embed = self.llm.get_input_embeddings()
        text = embed(input_ids.clamp(min=0))
        out = text.new_zeros(B, T, text.shape[-1])
        out[rows[keep], target[keep]] = text[keep]
        mm_rows = has_mm.nonzero(as_tuple=True)[0]
        if len(mm_rows):
            at = sentinel_at[mm_rows, None] + pad[mm_rows, None] + torch.arange(M, device=device)
            out[mm_rows[:, None].expand(-1, M), at] = mm[mm_rows].to(out.dtype)
        if len(mm_rows) < B:  # rows without a sentinel still touch mm, so every rank's graph uses the projectors
            out = out + 0.0 * mm.sum()

        span = torch.arange(T, device=device).expand(B, T)
        attention = (span >= pad[:, None]) & (span < (pad + new_len)[:, None])
        position_ids = (span - pad[:, None]).clamp(min=0)
        new_labels = None
        if labels is not None:
            new_labels = torch.full((B, T), IGNORE, dtype=labels.dtype, device=device)
            new_labels[rows[keep], target[keep]] = labels[keep]
        return out, attention.long(), new_labels, position_ids

    # ------------------------------------------------------------------------------------- forward
    def forward(self, input_ids, lengths, labels, ecgs, images):
        """Summed cross-entropy over the learned tokens and their count, so that gradient accumulation and
        data parallelism can divide by the number of learned tokens in the whole optimiser step."""
        embeds, attention, labels, position_ids = self.splice(input_ids, lengths, labels, self.encode(ecgs, images))
        hidden = self.llm.get_decoder()(inputs_embeds=embeds, attention_mask=attention, position_ids=position_ids,
                                        use_cache=False).last_hidden_state
        target = labels[:, 1:]
        learn = target != IGNORE
        # the LM head only on positions that are learned: ~40 % of a grounding sample, far less memory
        logits = self.llm.get_output_embeddings()(hidden[:, :-1][learn]).float()
        loss_sum = F.cross_entropy(logits, target[learn], reduction="sum")
        correct = (logits.argmax(-1) == target[learn]).sum()
        return {"loss_sum": loss_sum, "n_learned": learn.sum(), "n_correct": correct,
                "n_tokens": attention.sum()}

    @torch.no_grad()
    def generate(self, input_ids, lengths, ecgs, images, max_new_tokens: int = 1024, eos_token_id=None,
                 pad_token_id=None, **kwargs) -> torch.Tensor:
        """Greedy generation from prompts (right-padded ids with their lengths): (B, new tokens)."""
        embeds, attention, _, _ = self.splice(input_ids, lengths, None, self.encode(ecgs, images), left_pad=True)
        return self.llm.generate(inputs_embeds=embeds, attention_mask=attention, max_new_tokens=max_new_tokens,
                                 do_sample=False, num_beams=1, eos_token_id=eos_token_id,
                                 pad_token_id=pad_token_id if pad_token_id is not None else eos_token_id, **kwargs)

    def flops_per_sample(self, seq_len: int, tune: str = "llm") -> float:
        """Training FLOPs of one sample of ``seq_len`` tokens (after the splice), for MFU.

        PaLM's appendix-B count, as nanoGPT's ``estimate_mfu``: a matrix of N weights costs 2 N per token
        forward and 4 N backward (2 N without weight gradients, for a frozen LM that still passes gradients
        to the projectors); attention adds 12 L H T per token. The input embedding is a lookup (no FLOPs);
        the LM head is counted on every token. Frozen towers cost one forward pass over their own tokens."""
        c = self.llm.config
        n_embed = self.llm.get_input_embeddings().weight.numel()
        n_llm = sum(p.numel() for p in self.llm.parameters()) - n_embed
        if getattr(c, "tie_word_embeddings", False):
            n_llm += n_embed  # the tied head is a real matmul
        n_vision = sum(p.numel() for p in self.vision.parameters())
        n_ecg = sum(p.numel() for p in self.ecg.parameters())
        n_proj = sum(p.numel() for p in self.mm_projector.parameters()) + \
            sum(p.numel() for p in self.ecg_projector.parameters())
        llm_factor = 6 if tune == "llm" else 4
        llm = (llm_factor * n_llm + 12 * c.num_hidden_layers * c.hidden_size * seq_len) * seq_len
        projectors = 6 * n_proj * self.cfg.mm_tokens
        towers = 2 * n_vision * (self.cfg.image_tokens + 1) + 2 * n_ecg * self.cfg.ecg.tokens
        return float(llm + projectors + towers)
