"""Training speed and memory of gem_model.

CPU (default): the real training loop (``gem_model.train``: data loading, towers, splice, LM, AdamW) on a run
folder made by the project's own chain, for the presets ``tiny`` and ``smol`` (SmolLM2-135M, needs `make
smollm2`). Each preset runs in its own process so that peak memory (max RSS) is its own. Prints the median step
time after the first step, tokens/s (spliced tokens: text + ECG + image) and learned tokens/s, peak memory.

GPU (``--device cuda``): GEM's full towers (CLIP ViT-L/14-336, ECG-CoCa ViT-B) with LLMs of 0.5B / 1.5B / 7B
class shapes built from configs with random weights (throughput needs no pretrained weights; nothing is
downloaded), synthetic grounding-sized batches (677 modality + ~550 text tokens), bf16 autocast, SDPA,
optional gradient checkpointing. Prints step time, tokens/s, peak memory (torch.cuda.max_memory_allocated)
and MFU against the chip's dense bf16 peak (model FLOPs from ``GemModel.flops_per_sample``), and greedy
generation speed. ``--device cpu --sizes toy`` runs the same path on a toy size to check it here.

    .venv/bin/python benchmarks/train.py [--steps 5] [--presets tiny smol]
    .venv/bin/python benchmarks/train.py --device cuda [--sizes 0.5b 1.5b 7b] [--micro-batch 4] [--grad-ckpt]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# LLM shapes of the classes the GPU mode measures (Qwen2.5-0.5B / 1.5B and Vicuna-7B sizes, Llama blocks).
SIZES = {
    "toy": dict(vocab_size=1000, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2),
    "0.5b": dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                 num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True),
    "1.5b": dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                 num_attention_heads=12, num_key_value_heads=2, tie_word_embeddings=True),
    "7b": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
               num_attention_heads=32, num_key_value_heads=32),
}


# --------------------------------------------------------------------------------------------- CPU
def cpu_one(preset_name: str, steps: int, run_dir: Path) -> dict:
    """One preset through the real loop (in this process); returns the figures."""
    from gem_model.config import preset, with_overrides
    from gem_model.data import run_layout
    from gem_model.train import TrainRun, train

    cfg = with_overrides(preset(preset_name), max_steps=steps + 1, micro_batch=1, global_batch=1, log_every=1)
    instructions, roots = run_layout(run_dir)
    out = Path(tempfile.mkdtemp(prefix=f"bench-{preset_name}-"))
    started = time.perf_counter()
    train(TrainRun(cfg=cfg, out=out, train_data=instructions, roots=roots, progress=False))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][1:]   # drop warm-up
    step_s = statistics.median(r["step_s"] for r in rows)
    return {"preset": preset_name, "steps": len(rows), "step_s": round(step_s, 3),
            "tokens_per_step": round(statistics.mean(r["tokens"] for r in rows)),
            "tokens_per_s": round(statistics.median(r["tokens_per_s"] for r in rows), 1),
            "learned_tokens_per_s": round(statistics.median(r["learned_tokens_per_s"] for r in rows), 1),
            "peak_rss_mb": max(r["peak_mem_mb"] for r in rows), "wall_s": round(time.perf_counter() - started, 1)}


def cpu_main(args) -> None:
    from gem_model.config import find_smollm2
    from pipeline.run_all import RunConfig, run_pipeline

    run_dir = Path(tempfile.mkdtemp(prefix="bench-run-")) / "run"
    print(f"run folder: `ecg-grounding run --n 8` -> {run_dir}", flush=True)
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        run_pipeline(RunConfig(out=run_dir, n=8, dpi=100))
    doc = json.loads((run_dir / "run.json").read_text())
    doc["paths"]["data_root"] = str((run_dir / "synthetic").resolve())
    (run_dir / "run.json").write_text(json.dumps(doc))
    import torch

    print(f"CPU: {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"micro-batch 1, {args.steps} timed steps after 1 warm-up (load average {os.getloadavg()[0]:.1f})")
    print(f"{'preset':8} {'step s':>8} {'tokens/step':>12} {'tokens/s':>9} {'learned/s':>10} {'peak RSS MB':>12}")
    for name in args.presets:
        if name == "smol" and not find_smollm2():
            print(f"{name:8} skipped: SmolLM2 GGUF missing (make smollm2)")
            continue
        proc = subprocess.run([sys.executable, __file__, "--_one", name, "--steps", str(args.steps), "--_run",
                               str(run_dir)], capture_output=True, text=True)
        if proc.returncode:
            print(f"{name:8} failed:\n{proc.stderr[-2000:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{name:8} {r['step_s']:>8.3f} {r['tokens_per_step']:>12} {r['tokens_per_s']:>9.1f} "
              f"{r['learned_tokens_per_s']:>10.1f} {r['peak_rss_mb']:>12.0f}", flush=True)


# --------------------------------------------------------------------------------------------- GPU
def device_main(args) -> None:
    import torch

    from gem_model.config import ECGConfig, ModelConfig, _clip, preset
    from gem_model.train import BF16_PEAK

    dev = torch.device(args.device)
    peak = None
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
        peak = next((v for k, v in BF16_PEAK.items() if k in name), None)
        print(f"device: {name}, dense bf16 peak {peak / 1e12 if peak else float('nan'):.0f} TFLOP/s, torch "
              f"{torch.__version__}")
    text_len, learned_len = args.text_tokens, args.learned_tokens
    print(f"batch: micro {args.micro_batch}, {text_len} text tokens ({learned_len} learned) + modality tokens, "
          f"bf16 autocast, SDPA, grad checkpointing {'on' if args.grad_ckpt else 'off'}")
    print(f"{'size':6} {'tune':6} {'params B':>9} {'seq':>5} {'step s':>8} {'tokens/s':>10} {'peak GB':>8} "
          f"{'MFU':>6} {'gen tok/s':>10}")
    for size in args.sizes:
        if size == "toy":
            mcfg = preset("tiny").model
            mcfg.llm = {"model_type": "llama", "max_position_embeddings": 4096, **SIZES["toy"]}
        else:
            mcfg = ModelConfig(llm={"model_type": "llama", "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
                                    **SIZES[size]},
                               vision=_clip(1024, 24, 16, 336, 14), ecg=ECGConfig())
        tune = args.tune or ("lora" if size == "7b" else "llm")
        try:
            r = _device_one(mcfg, tune, dev, args, text_len, learned_len, peak)
        except torch.OutOfMemoryError:
            print(f"{size:6} {tune:6} out of memory at micro-batch {args.micro_batch}")
            torch.cuda.empty_cache()
            continue
        print(f"{size:6} {tune:6} {r['params_b']:>9.2f} {r['seq']:>5} {r['step_s']:>8.3f} {r['tokens_per_s']:>10.0f} "
              f"{r['peak_gb']:>8.1f} {r['mfu'] if r['mfu'] is not None else float('nan'):>6.3f} "
              f"{r['gen_tokens_per_s']:>10.1f}", flush=True)


def _device_one(mcfg, tune: str, dev, args, text_len: int, learned_len: int, peak) -> dict:
    import torch

    from gem_model.conversation import IGNORE, IMAGE_TOKEN_ID
    from gem_model.model import GemModel

    torch.manual_seed(0)
    model = GemModel(mcfg)
    model.freeze("projectors" if tune == "lora" else tune)
    if tune == "lora":
        from peft import LoraConfig, inject_adapter_in_model

        inject_adapter_in_model(LoraConfig(r=64, lora_alpha=16, lora_dropout=0.05, target_modules=[
            "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]), model.llm)
        for n, p in model.llm.named_parameters():
            p.requires_grad_("lora_" in n)
    if args.grad_ckpt:
        model.llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.to(dev).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, fused=dev.type == "cuda")
    B, vocab = args.micro_batch, mcfg.llm["vocab_size"]
    ids = torch.randint(3, vocab, (B, text_len), device=dev)
    ids[:, 40] = IMAGE_TOKEN_ID                                 # after the system prompt, as in GEM's template
    labels = torch.full_like(ids, IGNORE)
    labels[:, -learned_len:] = ids[:, -learned_len:]
    lengths = torch.full((B,), text_len, device=dev)
    ecgs = torch.randn(B, mcfg.ecg.leads, mcfg.ecg.seq_len, device=dev)
    images = torch.randn(B, 3, mcfg.image_size, mcfg.image_size, device=dev)
    seq = text_len - 1 + mcfg.mm_tokens
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)

    def step() -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
            out = model(ids, lengths, labels, ecgs, images)
        (out["loss_sum"] / out["n_learned"]).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    times = []
    for i in range(args.steps + 1):
        if cuda:
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize(dev)
        if i:
            times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    flops = model.flops_per_sample(seq, tune) * B
    gen = _generation_speed(model, ids[:1, :41], lengths[:1] * 0 + 41, ecgs[:1], images[:1], args.new_tokens, dev)
    return {"params_b": sum(p.numel() for p in model.parameters()) / 1e9, "seq": seq, "step_s": step_s,
            "tokens_per_s": B * seq / step_s, "peak_gb": torch.cuda.max_memory_allocated(dev) / 2**30 if cuda else 0.0,
            "mfu": flops / step_s / peak if peak else None, "gen_tokens_per_s": gen}


def _generation_speed(model, ids, lengths, ecgs, images, new_tokens: int, dev) -> float:
    """Greedy tokens per second for one record (prefill of the prompt + modality tokens, then decoding)."""
    import torch

    model.eval()
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        new = model.generate(ids, lengths, ecgs, images, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                             eos_token_id=2, pad_token_id=0)   # random weights: decode all new_tokens
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
    model.train()
    return new.shape[1] / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default=None, help="cuda (GPU mode) or cpu with --sizes toy; default: CPU presets")
    ap.add_argument("--presets", nargs="+", default=["tiny", "smol"])
    ap.add_argument("--sizes", nargs="+", default=["0.5b", "1.5b", "7b"], choices=list(SIZES))
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--tune", choices=["llm", "projectors", "lora"], help="default: llm, lora for 7b")
    ap.add_argument("--grad-ckpt", action="store_true")
    ap.add_argument("--text-tokens", type=int, default=551, help="text tokens per sample (GEM: ~550)")
    ap.add_argument("--learned-tokens", type=int, default=450)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--_one")
    ap.add_argument("--_run")
    args = ap.parse_args()
    if args._one:
        print(json.dumps(cpu_one(args._one, args.steps, Path(args._run))))
    elif args.device:
        device_main(args)
    else:
        cpu_main(args)


if __name__ == "__main__":
    main()
