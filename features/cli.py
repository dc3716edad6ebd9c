"""``ecg-grounding features --source NAME --root DIR --out DIR [--chunk-size N]``."""
from __future__ import annotations

import json
from dataclasses import asdict


def register(subparsers) -> None:
    p = subparsers.add_parser("features", help="measure every beat in every lead: beats / records Parquet")
    p.add_argument("--source", required=True, help="source name (synthetic, ptbxl, mimic, ludb, wfdb)")
    p.add_argument("--root", required=True, help="data root of the source")
    p.add_argument("--out", required=True, help="output folder (beats/, records/, errors/ shards)")
    p.add_argument("--chunk-size", type=int, default=200, help="records per shard (default 200)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from features.run import run_features

    summary = run_features(args.source, args.root, args.out, chunk_size=args.chunk_size)
    print(json.dumps(asdict(summary)))
    return 0 if summary.n_measured > 0 or summary.n_records == 0 else 1
