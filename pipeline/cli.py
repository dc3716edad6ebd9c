"""``ecg-grounding``: one command, one subcommand per stage.

Each stage module exposes ``register(subparsers)`` which adds its subcommand and sets ``func`` to a
function ``(args) -> int`` (the exit code). Adding a stage = adding its module to ``STAGE_MODULES``.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# (subcommand module, one-line help). Modules are imported lazily so `--help` stays fast.
STAGE_MODULES: list[str] = [
    "pipeline.synth_cli",      # synth: the embedded synthetic generator
    "pipeline.ingest",         # ingest: sources -> manifest + errors
    "features.cli",            # features: beats / records Parquet
    "pipeline.render",         # render: 12-lead PNG / SVG images
    "pipeline.prompts",        # prompts: knowledge-guided prompts with exact token counts
    "pipeline.generate",       # generate: LLM or rules answers (durable response store)
    "pipeline.validate",       # validate: grounding checks -> GEM instruction set
    "pipeline.run_all",        # run: the whole chain (what `make demo` calls)
    "pipeline.export",         # export: one GEM / LLaVA JSON file for a trainer
    "gem_model.evaluate",      # evaluate: interpretations scored against a run (judge-free + GEM's judge)
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecg-grounding",
        description="Regenerate GEM's ECG-Grounding data: ingest, measure, render, prompt, generate, validate.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in STAGE_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # stage not built yet: leave it out rather than break every other command
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from pipeline.record import ConfigError

    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"ecg-grounding {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
