"""``ecg-grounding features --source NAME --root DIR --out DIR [--chunk-size N]``."""
from __future__ import annotations

from dataclasses import asdict


def register(subparsers) -> None:
    from pipeline.batch import DEFAULT_CHUNK_SIZE
    from pipeline.cli import add_source_args
    from pipeline.preflight import positive_int

    p = subparsers.add_parser(
        "features", help="measure every beat in every lead: beats / records Parquet",
        description="Measure every record of a source: beats found once per record (all leads vote), P, QRS "
                    "and T delineated in every lead, a quality gate per lead, per-beat intervals, amplitudes "
                    "and forms, record-level rate, intervals, QTc and axes. Writes OUT/beats/, OUT/records/ and "
                    "OUT/errors/ shards (one per chunk; finished chunks are skipped, so a killed run resumes) "
                    "and OUT/errors.parquet.\n\n"
                    "example:\n  ecg-grounding features --source ptbxl --root ../shared/data/ptbxl \\\n"
                    "      --out outputs/ptbxl/features")
    add_source_args(p)
    p.add_argument("--out", required=True, help="features folder (beats/, records/, errors/ shards)")
    p.add_argument("--chunk-size", type=positive_int, default=DEFAULT_CHUNK_SIZE,
                   help="records per shard (default %(default)s)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from pathlib import Path

    from features.run import run_features
    from pipeline.batch import collect_failures
    from pipeline.cli import finish, source_options_from
    from pipeline.preflight import check_out, open_checked

    from features.lead_edges import p_onset_fit

    options = source_options_from(args)
    p_onset_fit()  # a bad measurement setting (ECG_GROUNDING_P_ONSET_FIT) is the run's: exit 2 before any record
    check_out(args.out)
    open_checked(args.source, args.root, **options)  # a table unusable as a whole: one line, exit 2
    summary = run_features(args.source, args.root, args.out, chunk_size=args.chunk_size, **options)
    errors = Path(args.out) / "errors.parquet"
    text = (f"features: {summary.n_measured} of {summary.n_records} records measured, {summary.n_failed} failed, "
            f"{summary.n_warnings} lead warnings; {summary.n_shards} chunks ({summary.n_shards_skipped} already "
            f"done) -> {summary.out_dir} (errors: {errors})")
    return finish(args, asdict(summary), text, collect_failures([errors]))
