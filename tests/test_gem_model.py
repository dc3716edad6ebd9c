"""gem_model.model and gem_model.checkpoints: the ECG encoder against ECG-CoCa's definition, the splice at
<image>, the loss, and the GEM / LLaVA / ECG-CoCa key maps, on random weights built from configs."""
from __future__ import annotations

import json

import gem_helpers
import pytest
import torch
import torch.nn.functional as F

from gem_model.checkpoints import (export_llava, llava_model_config, llava_to_ours, load_checkpoint, load_ecg_coca,
                                   load_llava_weights, merge_lora, ours_to_llava, read_hf_weights, save_checkpoint)
from gem_model.config import ECGConfig, preset
from gem_model.conversation import IGNORE, IMAGE_TOKEN_ID, byte_tokenizer
from gem_model.model import ECGEncoder, GemModel, build_projector


def ecg_coca_keys(layers: int) -> set[str]:
    """The parameter names of ECG-CoCa's EcgTransformer (ecg_coca/open_clip/transformer.py), written out."""
    keys = {"conv1.weight", "class_embedding", "positional_embedding", "ln_pre.weight", "ln_pre.bias",
            "ln_post.weight", "ln_post.bias", "proj"}
    for i in range(layers):
        b = f"transformer.resblocks.{i}."
        keys |= {b + k for k in ("ln_1.weight", "ln_1.bias", "attn.in_proj_weight", "attn.in_proj_bias",
                                 "attn.out_proj.weight", "attn.out_proj.bias", "ln_2.weight", "ln_2.bias",
                                 "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias")}
    return keys


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return GemModel(preset("tiny").model).eval()


def test_ecg_encoder_has_ecg_cocas_names_shapes_and_size():
    torch.manual_seed(0)
    enc = ECGEncoder(ECGConfig())   # GEM's: 12 x 5000, patch 50, width 768, 12 blocks, 12 heads
    sd = enc.state_dict()
    assert set(sd) == ecg_coca_keys(12)
    assert sd["conv1.weight"].shape == (768, 12, 50)
    assert sd["positional_embedding"].shape == (101, 768)
    assert sd["transformer.resblocks.0.attn.in_proj_weight"].shape == (2304, 768)
    assert sd["transformer.resblocks.11.mlp.c_fc.weight"].shape == (3072, 768)
    assert sd["transformer.resblocks.11.mlp.c_proj.weight"].shape == (768, 3072)
    assert sd["proj"].shape == (768, 512)
    total = sum(p.numel() for p in enc.parameters())
    unused = sum(p.numel() for n, p in enc.named_parameters() if n.startswith(("ln_post", "proj")))
    assert total == 85_989_888 and total - unused == 85_595_136   # the design note's 86.0 M / 85.6 M
    with torch.no_grad():
        out = enc(torch.randn(1, 12, 5000))
    assert out.shape == (1, 101, 768)


def reference_ecg_coca(enc: ECGEncoder, x: torch.Tensor) -> torch.Tensor:
    """ECG-CoCa's forward (output_last_transformer_layer=True) with attention written out by hand and run
    sequence-first as open_clip's Transformer does."""
    heads = enc.cfg.heads
    h = enc.conv1(x).permute(0, 2, 1)
    h = torch.cat([enc.class_embedding.expand(h.shape[0], 1, -1), h], dim=1) + enc.positional_embedding
    h = enc.ln_pre(h).transpose(0, 1)                       # (L, B, D)
    L, B, D = h.shape
    for blk in enc.transformer.resblocks:
        y = blk.ln_1(h)
        q, k, v = F.linear(y, blk.attn.in_proj_weight, blk.attn.in_proj_bias).chunk(3, dim=-1)
        split = lambda t: t.reshape(L, B * heads, D // heads).transpose(0, 1)   # noqa: E731
        q, k, v = split(q), split(k), split(v)
        att = torch.softmax(q @ k.transpose(1, 2) / (D // heads) ** 0.5, dim=-1) @ v
        att = att.transpose(0, 1).reshape(L, B, D)
        h = h + F.linear(att, blk.attn.out_proj.weight, blk.attn.out_proj.bias)
        h = h + blk.mlp.c_proj(F.gelu(blk.mlp.c_fc(blk.ln_2(h))))
    return h.transpose(0, 1)


def test_ecg_encoder_computes_ecg_cocas_forward():
    torch.manual_seed(1)
    enc = ECGEncoder(ECGConfig(width=64, layers=3, heads=4)).eval()
    x = torch.randn(2, 12, 5000)
    with torch.no_grad():
        ours, ref = enc(x), reference_ecg_coca(enc, x)
    assert ours.shape == (2, 101, 64)
    assert torch.allclose(ours, ref, atol=1e-5), float((ours - ref).abs().max())


def test_ecg_coca_checkpoint_loads_with_a_prefix_strip(tmp_path):
    torch.manual_seed(2)
    cfg = ECGConfig(width=32, layers=2, heads=2)
    source = ECGEncoder(cfg)
    blob = {"epoch": 20, "state_dict": {**{f"module.ecg.{k}": v for k, v in source.state_dict().items()},
                                         "module.text.proj": torch.zeros(3), "module.logit_scale": torch.ones(())}}
    torch.save(blob, tmp_path / "cpt_wfep_epoch_20.pt")
    target = ECGEncoder(cfg)
    load_ecg_coca(target, tmp_path / "cpt_wfep_epoch_20.pt")
    for k, v in source.state_dict().items():
        assert torch.equal(target.state_dict()[k], v), k
    # strict: a checkpoint of another shape or with keys missing is refused
    del blob["state_dict"]["module.ecg.ln_pre.bias"]
    torch.save(blob, tmp_path / "broken.pt")
    with pytest.raises(RuntimeError, match="ln_pre.bias"):
        load_ecg_coca(ECGEncoder(cfg), tmp_path / "broken.pt")


def test_projectors_have_llavas_layout():
    mlp = build_projector("mlp2x_gelu", 1024, 4096)
    assert {k: tuple(v.shape) for k, v in mlp.state_dict().items()} == {
        "0.weight": (4096, 1024), "0.bias": (4096,), "2.weight": (4096, 4096), "2.bias": (4096,)}
    assert isinstance(mlp[1], torch.nn.GELU)
    assert tuple(build_projector("linear", 768, 1024).weight.shape) == (1024, 768)
    with pytest.raises(ValueError):
        build_projector("qformer", 1, 1)


def test_encode_puts_ecg_tokens_first_then_clip_patch_tokens(tiny):
    ecgs, images = torch.randn(2, 12, 5000), torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        mm = tiny.encode(ecgs, images)
        ecg_part = tiny.mm_projector(tiny.ecg_projector(tiny.ecg(ecgs)))
        layer = tiny.vision(pixel_values=images, output_hidden_states=True).hidden_states[-2]
        image_part = tiny.mm_projector(layer[:, 1:])
    assert mm.shape == (2, 101 + 16, 128) == (2, tiny.cfg.mm_tokens, tiny.llm_hidden)
    assert torch.allclose(mm[:, :101], ecg_part, atol=1e-6)
    assert torch.allclose(mm[:, 101:], image_part, atol=1e-6)


def test_splice_places_modalities_at_the_sentinel(tiny):
    M, H = 7, tiny.llm_hidden
    ids = torch.tensor([[1, 10, 11, 12, 13, IMAGE_TOKEN_ID, 20, 21, 22, 23],
                        [1, 30, IMAGE_TOKEN_ID, 40, 41, 42, 43, 0, 0, 0],
                        [1, 50, 51, 52, 53, 54, 0, 0, 0, 0]])
    lengths = torch.tensor([10, 7, 6])
    labels = torch.where(ids > 20, ids, torch.full_like(ids, IGNORE))
    mm = torch.randn(3, M, H)
    emb = tiny.llm.get_input_embeddings()
    with torch.no_grad():
        out, att, lab, pos = tiny.splice(ids, lengths, labels, mm)
    assert out.shape == (3, 10 + M - 1, H)
    # row 0: 5 text tokens, the 7 modality rows, then the 4 text tokens after the sentinel
    assert torch.equal(out[0, :5], emb(ids[0, :5]))
    assert torch.equal(out[0, 5:5 + M], mm[0])
    assert torch.equal(out[0, 5 + M:], emb(ids[0, 6:]))
    assert lab[0, :5 + M].eq(IGNORE).all() and lab[0, 5 + M:].tolist() == [IGNORE, 21, 22, 23]
    # row 1: sentinel at 2, 7 real tokens -> 13 positions, then padding
    assert torch.equal(out[1, 2:2 + M], mm[1])
    assert torch.equal(out[1, 2 + M:2 + M + 4], emb(ids[1, 3:7]))
    assert att[1].tolist() == [1] * 13 + [0] * 3
    assert lab[1, :2 + M].tolist() == [IGNORE, 30] + [IGNORE] * M
    assert lab[1, 2 + M:].tolist() == [40, 41, 42, 43] + [IGNORE] * 3
    assert out[1, 13:].abs().sum() == 0
    # row 2 is text only: nothing inserted, its 6 tokens then padding
    assert torch.equal(out[2, :6], emb(ids[2, :6]))
    assert att[2].tolist() == [1] * 6 + [0] * 10
    assert pos[0].tolist() == list(range(16)) and pos[1, :13].tolist() == list(range(13))
    # left padding (generation): the same rows, padding first, positions still start at 0 on the first real token
    with torch.no_grad():
        lout, latt, _, lpos = tiny.splice(ids, lengths, None, mm, left_pad=True)
    assert latt[1].tolist() == [0] * 3 + [1] * 13
    assert torch.equal(lout[1, 3:], out[1, :13])
    assert lpos[1, 3:].tolist() == list(range(13))


def test_loss_is_the_language_models_own_loss(tiny):
    """Our loss (LM head on learned positions only) equals Hugging Face's over the spliced sequence."""
    torch.manual_seed(3)
    ids = torch.tensor([[1, 5, 6, IMAGE_TOKEN_ID, 7, 8, 9, 10, 11], [1, 5, IMAGE_TOKEN_ID, 12, 13, 14, 0, 0, 0]])
    lengths = torch.tensor([9, 6])
    labels = torch.tensor([[IGNORE, IGNORE, IGNORE, IGNORE, IGNORE, 8, 9, 10, 11],
                           [IGNORE, IGNORE, IGNORE, IGNORE, 13, 14, IGNORE, IGNORE, IGNORE]])
    ecgs, images = torch.randn(2, 12, 5000), torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        res = tiny(ids, lengths, labels, ecgs, images)
        emb, att, lab, pos = tiny.splice(ids, lengths, labels, tiny.encode(ecgs, images))
        hf = tiny.llm(inputs_embeds=emb, attention_mask=att, position_ids=pos, labels=lab).loss
    assert int(res["n_learned"]) == 6
    assert torch.allclose(res["loss_sum"] / res["n_learned"], hf, atol=1e-5)


def test_llava_key_map_round_trip(tiny, tmp_path):
    folder = export_llava(tiny, tmp_path / "gem", shard_bytes=200_000)   # several shards + an index
    (folder / "config.json").write_text(json.dumps(gem_helpers.llava_config_json(tiny)))
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    keys = set(index["weight_map"])
    for k in ("model.mm_projector.0.weight", "model.mm_projector.2.bias", "model.ecg_projector.weight",
              "model.ecg_tower.ecg_tower.conv1.weight", "model.ecg_tower.ecg_tower.transformer.resblocks.1.attn.in_proj_weight",
              "model.vision_tower.vision_tower.vision_model.embeddings.patch_embedding.weight",
              "model.vision_tower.vision_tower.vision_model.encoder.layers.1.self_attn.q_proj.weight",
              "model.embed_tokens.weight", "model.layers.1.mlp.gate_proj.weight", "model.norm.weight", "lm_head.weight"):
        assert k in keys, k
    weights = read_hf_weights(folder)
    cfg = llava_model_config(folder, weights)
    assert cfg.ecg.width == 32 and cfg.ecg.layers == 2 and cfg.ecg.heads == 1   # read off the weights
    assert cfg.vision["image_size"] == 56 and cfg.vision["num_hidden_layers"] == 2
    torch.manual_seed(99)
    other = GemModel(cfg)
    report = load_llava_weights(other, folder, weights)
    assert report["missing"] == [] and report["unexpected"] == [] and report["ignored"] == []
    for k, v in tiny.state_dict().items():
        assert torch.equal(other.state_dict()[k], v), k
    for k in tiny.state_dict():
        assert llava_to_ours(ours_to_llava(k)) == k


def test_pulse_like_checkpoint_reports_what_it_lacks(tiny, tmp_path):
    """PULSE / LLaVA-1.6: no ECG parts, an unused image_newline; the loader says so and loads the rest."""
    from safetensors.torch import save_file

    folder = export_llava(tiny, tmp_path / "pulse")
    (folder / "config.json").write_text(json.dumps(gem_helpers.llava_config_json(tiny)))
    weights = {k: v for k, v in read_hf_weights(folder).items() if "ecg" not in k}
    weights["model.image_newline"] = torch.zeros(tiny.llm_hidden)
    for f in folder.glob("model-*.safetensors"):
        f.unlink()
    (folder / "model.safetensors.index.json").unlink()
    save_file(weights, str(folder / "model.safetensors"))
    other = GemModel(preset("tiny").model)
    report = load_llava_weights(other, folder)
    assert report["ignored"] == ["model.image_newline"]
    assert {k.split(".")[0] for k in report["missing"]} == {"ecg", "ecg_projector"}
    assert torch.equal(other.state_dict()["mm_projector.0.weight"], tiny.state_dict()["mm_projector.0.weight"])


def test_our_checkpoint_round_trip_gives_identical_outputs(tiny, tmp_path):
    cfg = preset("tiny")
    save_checkpoint(tmp_path / "ckpt", cfg, tiny.state_dict(), byte_tokenizer())
    loaded, cfg2, tok = load_checkpoint(tmp_path / "ckpt")
    assert cfg2.model.llm == cfg.model.llm and tok.eos_token == "</s>"
    ids = torch.tensor([[1, 5, IMAGE_TOKEN_ID, 7, 8]])
    args = (ids, torch.tensor([5]), torch.tensor([[IGNORE, IGNORE, IGNORE, 7, 8]]), torch.randn(1, 12, 5000),
            torch.randn(1, 3, 56, 56))
    with torch.no_grad():
        assert torch.equal(tiny(*args)["loss_sum"], loaded(*args)["loss_sum"])


def test_merged_lora_equals_the_adapted_model():
    from peft import LoraConfig, inject_adapter_in_model

    torch.manual_seed(4)
    model = GemModel(preset("tiny").model).eval()
    inject_adapter_in_model(LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]), model.llm)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)   # B starts at zero: make the adapters matter
    merged = GemModel(preset("tiny").model).eval()
    merged.load_state_dict(merge_lora(model.state_dict(), 8 / 4), strict=True)
    ids = torch.tensor([[1, 5, IMAGE_TOKEN_ID, 7, 8, 9]])
    args = (ids, torch.tensor([6]), torch.tensor([[IGNORE, IGNORE, IGNORE, 7, 8, 9]]), torch.randn(1, 12, 5000),
            torch.randn(1, 3, 56, 56))
    with torch.no_grad():
        assert torch.allclose(model(*args)["loss_sum"], merged(*args)["loss_sum"], atol=1e-5)
