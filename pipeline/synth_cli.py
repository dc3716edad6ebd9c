"""``ecg-grounding synth``: write a synthetic PTB-XL-like tree (the embedded default source)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from pipeline.preflight import nonneg_int, positive_int

DEFAULT_N = 50  # synthetic records, for `synth` and `run` alike (one default: issue 18)


def register(subparsers) -> None:
    """Add the ``synth`` subcommand."""
    p = subparsers.add_parser(
        "synth", help="write N synthetic 12-lead records with exact ground truth (WFDB + csv + truth Parquet)",
        description="Write N synthetic 12-lead ECGs (500 Hz, 10 s) as a PTB-XL-like tree: "
                    "synthetic_database.csv, records500/<id>.hea/.dat, truth/{beats,records}.parquet. "
                    "The same --n and --seed write the same bytes.\n\n"
                    "example:\n  ecg-grounding synth --n 500 --out outputs/synth --seed 0")
    p.add_argument("--n", type=positive_int, default=DEFAULT_N, help="number of records (default %(default)s)")
    p.add_argument("--out", type=Path, default=Path("outputs/synthetic"), help="output folder (default %(default)s)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="seed; the same seed writes the same bytes")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the tree; print the count and the rate. Exit code 0 (bad options are refused by the parser)."""
    from pipeline.cli import finish
    from pipeline.preflight import check_out
    from pipeline.synthetic import write_synthetic_tree

    check_out(args.out)
    t0 = time.perf_counter()
    out = write_synthetic_tree(args.out, args.n, args.seed)
    dt = time.perf_counter() - t0
    payload = {"n_records": args.n, "seed": args.seed, "out": str(out), "seconds": round(dt, 3)}
    return finish(args, payload, f"synth: wrote {args.n} records to {out} in {dt:.2f} s "
                                 f"({args.n / dt:.1f} records/s)")
