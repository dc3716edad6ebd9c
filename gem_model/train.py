"""Training GEM: the loop in plain sight, on ``accelerate`` (one process, DDP, FSDP2 or DeepSpeed ZeRO-2).

One optimiser step = ``accum`` micro-batches on each of ``world`` processes (global batch = micro x world x
accum). The loss of a step is the summed cross-entropy of every learned token in the step divided by the
number of those tokens over all micro-batches and processes, so a step means the same thing whatever the
split across devices (one process with micro 4 and two with micro 2 end with the same weights).

    setup:  config -> seed -> model (+ LoRA) -> scan data (main process first) -> AdamW + cosine/warm-up
            -> accelerator.prepare -> resume (weights, optimiser, scheduler, RNG, data position)
    loop:   fetch accum micro-batches -> count learned tokens (all-reduce) -> forward/backward each
            -> clip -> step -> log a metrics.jsonl line -> maybe evaluate / save a resumable state
    end:    resumable state + final export (CKPT/model.safetensors, LoRA merged) + train_summary.json

The data order is a seeded permutation per epoch; the position (epoch, micro-batch) is saved with the state,
so ``--resume`` continues with exactly the batches an uninterrupted run would have seen.
"""
from __future__ import annotations

import json
import math
import os
import resource
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from gem_model.checkpoints import _write_json, save_checkpoint
from gem_model.config import GemConfig
from gem_model.conversation import ConversationEncoder, load_tokenizer
from gem_model.data import Collator, GemDataset, Roots, read_items, scan, skip_counts, write_skips
from pipeline.record import ConfigError

STATE_DIR = "state"
TRAINER_STATE = "trainer_state.json"
# Chips' dense bf16 peak (FLOP/s) for MFU; the GPU's name is matched by substring.
BF16_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12, "L4": 121e12}


@dataclass
class TrainRun:
    """Everything one training run needs; the CLI fills it from its arguments."""

    cfg: GemConfig
    out: Path
    train_data: Path                   # a GEM JSON file or an instructions/ folder
    roots: Roots
    eval_data: Path | None = None      # the test split (an instructions/ folder) for eval losses
    split: str | None = "train"        # shards of train_data to read when it is a folder
    resume: bool = False
    strategy: str = "auto"             # auto | ddp | fsdp2 | zero2
    init: Path | None = None           # a GEM / LLaVA-1.6 / PULSE folder to start from
    progress: bool = True


@dataclass
class Position:
    step: int = 0          # optimiser steps done
    epoch: int = 0
    batch: int = 0         # next micro-batch of this process within the epoch
    samples: int = 0       # seen, over all processes
    tokens: int = 0
    learned_tokens: int = 0


@dataclass
class TrainResult:
    steps: int
    last_loss: float | None
    eval_loss: float | None
    n_train: int
    n_eval: int
    skipped: dict[str, int] = field(default_factory=dict)
    out: str = ""


# ------------------------------------------------------------------------------------------ model
def build_model(cfg: GemConfig, init: Path | None = None, log=print):
    """The model with its pretrained parts, frozen per ``cfg.train.tune``, with LoRA when asked."""
    from gem_model.checkpoints import llava_model_config, load_ecg_coca, load_llava_weights, read_hf_weights
    from gem_model.model import GemModel

    weights = None
    if init is not None:  # GEM-7B / LLaVA / PULSE: sizes from its config.json and weights, mapped by name
        weights = read_hf_weights(init)
        vision_path, ecg_path = cfg.model.vision_path, cfg.model.ecg_path
        cfg.model = llava_model_config(init, weights)
        cfg.model.vision_path, cfg.model.ecg_path = vision_path, ecg_path
    model = GemModel(cfg.model)
    if init is not None:
        report = load_llava_weights(model, init, weights)
        del weights
        log(f"--init {init}: {len(report['loaded'])} tensors loaded, {len(report['missing'])} of ours not in it"
            f" ({_groups(report['missing'])}), {len(report['ignored'])} ignored, {len(report['unexpected'])} unexpected")
    if cfg.model.vision_path and init is not None:  # the tower's own file wins over whatever --init held
        from transformers import CLIPVisionModel

        model.vision.load_state_dict(CLIPVisionModel.from_pretrained(cfg.model.vision_path).state_dict())
    if cfg.model.ecg_path:
        load_ecg_coca(model.ecg, cfg.model.ecg_path)
    if cfg.preset == "gem7b":   # GEM's towers are pretrained: say so when they are not
        lacking = set(_groups(report["missing"]).split(", ")) if init is not None else {"vision", "ecg"}
        random = [n for n, path in (("vision", cfg.model.vision_path), ("ecg", cfg.model.ecg_path))
                  if n in lacking and not path]
        for name in random:
            log(f"warning: the {name} tower has random weights (pass {dict(vision='--vision', ecg='--ecg-tower')[name]})")
    tune = cfg.train.tune
    model.freeze(tune)
    if tune == "lora":
        from peft import LoraConfig, inject_adapter_in_model

        # GEM's find_all_linear_names: every Linear of the LM except its head (the projectors train fully)
        targets = sorted({n.split(".")[-1] for n, m in model.llm.named_modules()
                          if isinstance(m, torch.nn.Linear) and "lm_head" not in n})
        lora = LoraConfig(r=cfg.train.lora_r, lora_alpha=cfg.train.lora_alpha, lora_dropout=cfg.train.lora_dropout,
                          target_modules=targets, bias="none")
        inject_adapter_in_model(lora, model.llm)
        for name, p in model.llm.named_parameters():
            p.requires_grad_("lora_" in name)
    if cfg.train.grad_checkpointing:
        model.llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def _groups(keys: list[str]) -> str:
    heads = sorted({k.split(".")[0] for k in keys})
    return ", ".join(heads) if heads else "none"


# ------------------------------------------------------------------------------------- schedule
def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up to the full LR over ``warmup`` steps (the first step already learns), then a cosine
    decay towards 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def epoch_batches(n: int, seed: int, epoch: int, rank: int, world: int, micro: int) -> list[list[int]]:
    """This process's micro-batches of one epoch: a seeded permutation, padded by wrapping to whole global
    micro-batches; global micro-batch b goes to the processes in rank order."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=g).tolist()
    chunk = micro * world
    n_chunks = max(1, math.ceil(n / chunk))
    order = (order * (n_chunks * chunk // max(n, 1) + 1))[: n_chunks * chunk]
    return [order[b * chunk + rank * micro: b * chunk + (rank + 1) * micro] for b in range(n_chunks)]


def batch_stream(dataset, collate, pos: Position, seed: int, rank: int, world: int, micro: int, workers: int):
    """Micro-batches forever from ``pos`` on; ``pos.epoch`` / ``pos.batch`` advance as they are handed out."""
    from torch.utils.data import DataLoader

    while True:
        batches = epoch_batches(len(dataset), seed, pos.epoch, rank, world, micro)
        # its own generator: a DataLoader draws a worker seed when iterated, and from the global RNG that would
        # shift the random numbers (LoRA dropout) of a resumed run against an uninterrupted one
        loader = DataLoader(dataset, batch_sampler=batches[pos.batch:], collate_fn=collate, num_workers=workers,
                            generator=torch.Generator().manual_seed(seed + pos.epoch))
        for batch in loader:
            pos.batch += 1
            yield batch
        pos.epoch, pos.batch = pos.epoch + 1, 0


# --------------------------------------------------------------------------------------- helpers
def make_accelerator(tc, strategy: str, accum: int, model_layers: list[str]):
    """The Accelerator for ``strategy``; "auto" takes whatever ``accelerate launch --config_file`` set."""
    from accelerate import Accelerator

    kwargs: dict = {}
    if strategy == "fsdp2":
        from accelerate import FullyShardedDataParallelPlugin

        kwargs["fsdp_plugin"] = FullyShardedDataParallelPlugin(
            fsdp_version=2, auto_wrap_policy="transformer_based_wrap", transformer_cls_names_to_wrap=model_layers,
            reshard_after_forward=True, state_dict_type="FULL_STATE_DICT", cpu_ram_efficient_loading=False)
    elif strategy == "zero2":
        from accelerate import DeepSpeedPlugin

        kwargs["deepspeed_plugin"] = DeepSpeedPlugin(
            hf_ds_config=str(Path(__file__).parent / "accelerate_configs" / "zero2.json"))
    cuda = torch.cuda.is_available()
    mixed = {"bf16": "bf16", "fp32": "no"}.get(tc.precision) or ("bf16" if cuda else "no")
    # cpu=True: without it accelerate ignores torchrun's WORLD_SIZE on a CPU machine and every process would
    # train alone on the same batches
    accelerator = Accelerator(mixed_precision=mixed, gradient_accumulation_steps=accum, cpu=not cuda, **kwargs)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if accelerator.num_processes != world:
        raise ConfigError(f"{world} processes were launched but accelerate sees {accelerator.num_processes}")
    ds = accelerator.state.deepspeed_plugin
    if ds is not None:   # zero2.json says "auto": our loop has no DataLoader for accelerate to read them from
        ds.deepspeed_config["train_micro_batch_size_per_gpu"] = tc.micro_batch
        ds.deepspeed_config["gradient_clipping"] = tc.grad_clip
    return accelerator


def layer_classes(model) -> list[str]:
    """Block classes FSDP wraps one by one: the LM's decoder layers and both towers' blocks."""
    names = set(getattr(model.llm, "_no_split_modules", None) or [])
    names |= {"CLIPEncoderLayer", "ECGBlock"}
    present = {type(m).__name__ for m in model.modules()}
    return sorted(names & present)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # Linux reports KiB


def chip_peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in BF16_PEAK.items() if k in name), None)


def latest_state(out: Path) -> Path | None:
    states = sorted(p for p in (out / STATE_DIR).glob("step-*") if (p / TRAINER_STATE).is_file())
    return states[-1] if states else None


# Settings a resumed run must share with the run it continues (max_steps may grow).
_RESUME_FIXED = ("model", "data", "preset")
_RESUME_FIXED_TRAIN = ("tune", "lr", "weight_decay", "betas", "warmup_ratio", "micro_batch", "global_batch", "seed",
                       "precision", "lora_r", "lora_alpha", "lora_dropout")


def check_resume(saved: dict, cfg: GemConfig) -> None:
    now = cfg.to_dict()
    diffs = [k for k in _RESUME_FIXED if k != "model" and _norm(saved.get(k)) != _norm(now.get(k))]
    diffs += [f"train.{k}" for k in _RESUME_FIXED_TRAIN
              if _norm(saved.get("train", {}).get(k)) != _norm(now["train"].get(k))]
    if saved.get("preset") == now.get("preset") and _model_shape(saved["model"]) != _model_shape(now["model"]):
        diffs.append("model")
    if diffs:
        raise ConfigError(f"--resume: these settings differ from the run being resumed: {', '.join(diffs)}")


def _norm(v):
    return json.loads(json.dumps(v, default=str))


def _model_shape(m: dict) -> tuple:
    return (m.get("ecg"), m.get("vision", {}).get("hidden_size"), m.get("mm_projector"), m.get("ecg_projector"))


# ------------------------------------------------------------------------------------------ train
def train(run: TrainRun) -> TrainResult:
    cfg, out = run.cfg, Path(run.out)
    tc = cfg.train
    out.mkdir(parents=True, exist_ok=True)
    state_dir = latest_state(out) if run.resume else None
    if run.resume and state_dir is None:
        raise ConfigError(f"--resume: {out} holds no saved state to resume from")
    if not run.resume and latest_state(out) is not None:
        raise ConfigError(f"{out} already holds a training run: pass --resume to continue it, or another --out")
    if state_dir is not None:
        saved = json.loads((out / "config.json").read_text())
        check_resume(saved, cfg)
        cfg.model = GemConfig.from_dict(saved).model   # the resolved model (LLM config read from its file)
        cfg.model.llm_path = cfg.model.vision_path = cfg.model.ecg_path = None   # weights come from the state
        run.init = None

    from accelerate.utils import set_seed

    # --- model and tokenizer (identical on every process: same seed before the random init)
    set_seed(tc.seed)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if tc.global_batch % (tc.micro_batch * world):
        raise ConfigError(f"global batch {tc.global_batch} is not a multiple of micro batch {tc.micro_batch} x "
                          f"{world} processes")
    accum = tc.global_batch // (tc.micro_batch * world)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    model = build_model(cfg, run.init, log=print if rank0 else (lambda *a: None))   # --init also names the tokenizer
    tokenizer = load_tokenizer(cfg.model.tokenizer if state_dir is None else str(out / "tokenizer"))
    accelerator = make_accelerator(tc, run.strategy, accum, layer_classes(model))
    main = accelerator.is_main_process
    log = print if main else (lambda *a, **k: None)
    device = accelerator.device
    if main and state_dir is None:
        _write_json(out / "config.json", {"format": "ecg-grounding/gem", "format_version": 1, **cfg.to_dict()})
        tokenizer.save_pretrained(str(out / "tokenizer"))

    # --- data: scanned once on the main process, then read by the others from what it wrote
    encoder = ConversationEncoder(tokenizer, cfg.data.template, cfg.data.system)
    with accelerator.main_process_first():
        train_ex, skips = _scan_split(run.train_data, run.split, encoder, cfg, run.roots, out, "train", main, log)
        eval_ex, eval_skips = ([], []) if run.eval_data is None else \
            _scan_split(run.eval_data, "test", encoder, cfg, run.roots, out, "test", main, log)
    if not train_ex:
        raise ConfigError(f"no usable training item in {run.train_data} ({sum(skip_counts(skips).values())} skipped)")
    m = cfg.model
    dataset = GemDataset(train_ex, run.roots, cfg.data, m.image_size, m.ecg.seq_len, m.ecg.leads)
    collate = Collator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    steps_per_epoch = math.ceil(len(dataset) / tc.global_batch)
    max_steps = tc.max_steps or max(1, math.ceil(tc.epochs * steps_per_epoch))
    warmup = math.ceil(tc.warmup_ratio * max_steps)
    batches_per_epoch = max(1, math.ceil(len(dataset) / (tc.micro_batch * world)))

    # --- optimiser and schedule
    params = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in params)
    optimizer = torch.optim.AdamW(params, lr=tc.lr, betas=tuple(tc.betas), weight_decay=tc.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warmup, max_steps))
    accelerator.register_for_checkpointing(scheduler)
    pos = Position()
    if state_dir is not None:
        accelerator.load_state(str(state_dir))
        pos = Position(**json.loads((state_dir / TRAINER_STATE).read_text())["position"])
        log(f"resumed from {state_dir} at step {pos.step} (epoch {pos.epoch}, micro-batch {pos.batch})")
    log(f"training {cfg.preset}: {n_trainable / 1e6:.2f} M trainable parameters ({tc.tune}), {len(dataset)} "
        f"examples, {max_steps} steps of {tc.global_batch} ({tc.micro_batch} x {world} x {accum}), "
        f"{accelerator.mixed_precision} on {device}")

    raw = accelerator.unwrap_model(model)
    peak = chip_peak_flops(device)
    metrics_path = out / "metrics.jsonl"
    if main:
        _truncate_metrics(metrics_path, pos.step)
    stream = batch_stream(dataset, collate, pos, tc.seed, accelerator.process_index, world, tc.micro_batch,
                          tc.workers)
    bar = _progress(run.progress and main, max_steps, pos.step)
    last_loss = eval_loss = None
    model.train()
    while pos.step < max_steps:
        started = time.perf_counter()
        micro = [next(stream) for _ in range(accum)]
        counts = torch.tensor([sum(int((b["labels"][:, 1:] != -100).sum()) for b in micro)], device=device)
        learned_global = accelerator.reduce(counts, reduction="sum").item()
        # accelerate divides a loss by accum, and data parallelism averages gradients over processes:
        # scaling by both makes the step's gradient that of (summed loss / learned tokens in the whole step).
        scale = accum * accelerator.num_processes / max(learned_global, 1)
        stats = torch.zeros(4, device=device)   # loss_sum, learned, correct, tokens
        for batch in micro:
            with accelerator.accumulate(model):
                res = model(batch["input_ids"].to(device), batch["lengths"].to(device), batch["labels"].to(device),
                            batch["ecgs"].to(device), batch["images"].to(device))
                accelerator.backward(res["loss_sum"] * scale)
                stats += torch.stack([res["loss_sum"].detach().float(), res["n_learned"].float(),
                                      res["n_correct"].float(), res["n_tokens"].float()])
                if accelerator.sync_gradients:
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), tc.grad_clip)
                lr = optimizer.param_groups[0]["lr"]
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        stats = accelerator.reduce(stats, reduction="sum")
        pos.step += 1
        pos.samples += tc.global_batch
        pos.tokens += int(stats[3])
        pos.learned_tokens += int(stats[1])
        last_loss = float(stats[0] / max(stats[1], 1))
        step_s = time.perf_counter() - started
        row = {"step": pos.step, "epoch": round(pos.epoch + pos.batch / batches_per_epoch, 4),
            "loss": round(last_loss, 6), "lr": lr, "grad_norm": _float(grad_norm),
            "tokens_per_s": round(float(stats[3]) / step_s, 1), "learned_tokens_per_s": round(float(stats[1]) / step_s, 1),
            "samples_per_s": round(tc.global_batch / step_s, 3), "step_s": round(step_s, 4),
            "tokens": int(stats[3]), "learned_tokens": int(stats[1]),
            "token_accuracy": round(float(stats[2] / max(stats[1], 1)), 4),
            "peak_mem_mb": round(peak_memory_mb(device), 1)}
        if peak:
            seq = float(stats[3]) / tc.global_batch
            row["mfu"] = round(raw.flops_per_sample(int(seq), tc.tune) * tc.global_batch / step_s / world / peak, 4)
        if eval_ex and (pos.step == max_steps or (tc.eval_every and pos.step % tc.eval_every == 0)):
            eval_loss, eval_acc = evaluate(model, eval_ex, run.roots, cfg, collate, accelerator)
            row.update(eval_loss=round(eval_loss, 6), eval_token_accuracy=round(eval_acc, 4))
            model.train()
        if main and (pos.step % max(1, tc.log_every) == 0 or pos.step == max_steps):
            with open(metrics_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
        bar.update(1)
        bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{row['tokens_per_s']:.0f}")
        if pos.step == max_steps or (tc.save_every and pos.step % tc.save_every == 0):
            save_state(accelerator, out, pos, tc.keep_last)
    bar.close()

    # --- final export: every weight under our names, LoRA folded in
    state = accelerator.get_state_dict(model)
    if main:
        from gem_model.checkpoints import merge_lora

        if tc.tune == "lora":
            state = merge_lora(state, tc.lora_alpha / tc.lora_r)
        dtype = torch.bfloat16 if accelerator.mixed_precision == "bf16" else None
        info = {"steps": pos.step, "samples": pos.samples, "tokens": pos.tokens, "last_loss": last_loss,
                "eval_loss": eval_loss, "n_train": len(train_ex), "n_eval": len(eval_ex),
                "skipped": skip_counts(skips + eval_skips), "world_size": world, "strategy": run.strategy}
        save_checkpoint(out, cfg, state, tokenizer, info=info, dtype=dtype)
        _write_json(out / "train_summary.json", info)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return TrainResult(pos.step, last_loss, eval_loss, len(train_ex), len(eval_ex), skip_counts(skips + eval_skips),
                       str(out))


def _float(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return round(x, 6) if math.isfinite(x) else None


def _scan_split(data: Path, split: str | None, encoder, cfg: GemConfig, roots: Roots, out: Path, name: str,
                main: bool, log):
    items = read_items(data, split if Path(data).is_dir() else None)
    m = cfg.model
    examples, skips = scan(items, encoder, cfg.data, roots, m.mm_tokens, m.ecg.seq_len,
                           workers=cfg.train.workers)
    if main:
        write_skips(out / f"skipped-{name}.jsonl", skips)
        if skips:
            log(f"{name}: {len(skips)} of {len(items)} items skipped: "
                + ", ".join(f"{k} {v}" for k, v in skip_counts(skips).items()) + f" (listed in skipped-{name}.jsonl)")
    return examples, skips


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop lines logged after the state being resumed (a run killed between a log line and its save)."""
    if not path.is_file():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
    path.write_text("".join(ln + "\n" for ln in keep))


def save_state(accelerator, out: Path, pos: Position, keep_last: int) -> Path:
    """A resumable state: accelerate's (model, optimiser, scheduler, RNG) + our data position. Written under a
    temporary name and renamed, so an interrupted save is never mistaken for a state."""
    final = out / STATE_DIR / f"step-{pos.step:08d}"
    tmp = out / STATE_DIR / f".tmp-step-{pos.step:08d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    # accelerate returns without a barrier while other processes may still be writing their RNG states into
    # tmp: renaming it under them made rank 1 crash now and then (seen in 2 of 4 two-process runs)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _write_json(tmp / TRAINER_STATE, {"position": asdict(pos)})
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        states = sorted((out / STATE_DIR).glob("step-*"))
        for old in states[: max(0, len(states) - max(1, keep_last))]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


@torch.no_grad()
def evaluate(model, examples, roots: Roots, cfg: GemConfig, collate, accelerator) -> tuple[float, float]:
    """Mean loss and token accuracy over the learned tokens of ``examples`` (each process takes its share)."""
    m = cfg.model
    model.eval()
    ds = GemDataset(examples, roots, cfg.data, m.image_size, m.ecg.seq_len, m.ecg.leads)
    rank, world = accelerator.process_index, accelerator.num_processes
    # Every process runs the same number of batches (FSDP's collectives need it): the short ones repeat an
    # example with its labels masked, so it adds nothing.
    per_process = math.ceil(len(ds) / world)
    mine = [rank + k * world for k in range(per_process)]
    totals = torch.zeros(3, device=accelerator.device)
    micro = cfg.train.micro_batch
    for i in range(0, len(mine), micro):
        rows = []
        for j in mine[i:i + micro]:
            row = ds[j % len(ds)]
            if j >= len(ds):
                row = {**row, "labels": row["labels"] * 0 - 100}
            rows.append(row)
        batch = collate(rows)
        d = accelerator.device
        res = model(batch["input_ids"].to(d), batch["lengths"].to(d), batch["labels"].to(d), batch["ecgs"].to(d),
                    batch["images"].to(d))
        totals += torch.stack([res["loss_sum"].float(), res["n_learned"].float(), res["n_correct"].float()])
    totals = accelerator.reduce(totals, reduction="sum")
    n = max(float(totals[1]), 1.0)
    return float(totals[0]) / n, float(totals[2]) / n


def _progress(enabled: bool, total: int, initial: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", disable=not enabled, dynamic_ncols=True)
