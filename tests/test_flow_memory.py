"""Memory bounded by the chunk, not by the number of records (issue 17), and records without an accepted answer
made visible: every finish step reads one part (or a few columns) at a time; a run's report says where every
record ended, and the failure threshold counts validator rejections (``validate:<code>``).

Memory is checked by what is read (columns, blocks) and by Python-side allocations (tracemalloc) of a small
against a larger input, never by timing or RSS (``benchmarks/flow.py --scale`` measures the real slope).
"""
from __future__ import annotations

import json
import shutil
import sys
import tracemalloc
from pathlib import Path

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from pipeline.run_all import RunConfig, run_pipeline  # noqa: E402


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("memrun") / "run"
    run_pipeline(RunConfig(n=6, seed=5, out=out, chunk_size=3))
    return out


# ------------------------------------------------------------------------------------------ the dataset card
def test_the_card_never_reads_the_beats_table(small_run, tmp_path):
    """The card's histograms come from the records table: a run folder whose beats shards are gone (the largest
    table of a run) still gets its card, with every measured record in the histograms."""
    from pipeline.card import gather

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    shutil.rmtree(run / "features" / "beats")
    data = gather(run / "instructions", run / "manifest.parquet", run / "features", run)
    assert data.measured is not None and data.measured.height == 6
    assert {"record_id", "hr_bpm", "qrs_ms", "in_set"} <= set(data.measured.columns)
    assert data.measured["in_set"].sum() == data.summary["records_accepted"]
    assert data.sources == {"synthetic": 6}


def test_the_card_reads_only_the_columns_it_shows(small_run, tmp_path, monkeypatch):
    """Manifest and provenance are read column-pruned: a manifest holding only record_id and source, and
    provenance without the answers' metrics, give the same card counts as the full tables."""
    from pipeline import card

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    full = card.gather(run / "instructions", run / "manifest.parquet", run / "features", run)
    pl.read_parquet(run / "manifest.parquet", columns=list(card.MANIFEST_COLUMNS)).write_parquet(
        run / "manifest.parquet")
    prov = run / "instructions" / "provenance.parquet"
    pl.read_parquet(prov, columns=list(card.PROVENANCE_COLUMNS)).write_parquet(prov)
    read: list[list[str] | None] = []
    real_read = pl.read_parquet

    def spy(source, *a, columns=None, **k):
        read.append(columns)
        return real_read(source, *a, columns=columns, **k)

    monkeypatch.setattr(card.pl, "read_parquet", spy)
    pruned = card.gather(run / "instructions", run / "manifest.parquet", run / "features", run)
    assert read and all(cols is not None for cols in read), read  # never a whole table
    assert pruned.sources == full.sources and pruned.accepted_by_source == full.accepted_by_source
    assert pruned.diagnoses == full.diagnoses and pruned.models == full.models
    assert pruned.measured.equals(full.measured)


# ------------------------------------------------------------------------------------- the synthetic tree
def _fabricated_parts(tmp_path: Path, n_parts: int, per_part: int) -> tuple[Path, int]:
    """``n_parts`` part files of ``per_part`` records each, copied from one real part of 2 records (the finish
    step only reads the part tables; drawing thousands of real records would only cost time)."""
    from pipeline.synthetic import write_synthetic_part

    src = tmp_path / "src"
    real = write_synthetic_part(src, 2, 7, 0, 0, 2)
    rows = pl.read_parquet(real)
    beats = pl.read_parquet(real.with_name(real.name.replace(".parquet", ".beats.parquet")))
    n = n_parts * per_part
    width = max(5, len(str(n)))
    root = tmp_path / f"tree{n}"
    parts = root / ".synth_parts"
    parts.mkdir(parents=True)
    for p in range(n_parts):
        frames, beat_frames = [], []
        for i in range(p * per_part, (p + 1) * per_part):
            rid = f"syn{i + 1:0{width}d}"
            r = rows[i % 2].with_columns(pl.lit(i, pl.Int64).alias("i"), pl.lit(rid).alias("record_id"))
            truth = json.loads(r["truth_json"][0]) | {"record_id": rid}
            frames.append(r.with_columns(pl.lit(json.dumps(truth)).alias("truth_json")))
            beat_frames.append(beats.filter(pl.col("record_id") == rows["record_id"][i % 2])
                               .with_columns(pl.lit(rid).alias("record_id")))
        pl.concat(frames).write_parquet(parts / f"part-{p:05d}.parquet")
        pl.concat(beat_frames).write_parquet(parts / f"part-{p:05d}.beats.parquet")
    return root, n


def _finish_peak_bytes(tmp_path: Path, n_parts: int) -> tuple[int, Path, int]:
    from pipeline.synthetic import finish_synthetic_tree

    root, n = _fabricated_parts(tmp_path, n_parts, 100)
    parts = sorted((root / ".synth_parts").glob("part-?????.parquet"))
    tracemalloc.start()
    try:
        finish_synthetic_tree(root, n, 7, parts)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, root, n


def test_finish_synthetic_tree_holds_one_part_at_a_time(tmp_path):
    """Assembling a tree of 16 parts takes about the Python memory of assembling 4 (it held every record's
    row and truth dict before: 4x), and writes the same csv and truth a one-shot write would."""
    small, _, _ = _finish_peak_bytes(tmp_path / "a", 4)
    large, root, n = _finish_peak_bytes(tmp_path / "b", 16)
    assert large < 1.6 * small, (small, large)
    db = pl.read_csv(root / "synthetic_database.csv")
    assert db.height == n and db["ecg_id"].to_list() == list(range(1, n + 1))
    records = pl.read_parquet(root / "truth" / "records.parquet")
    assert records["record_id"].to_list() == db["record_id"].to_list()
    beats = pl.read_parquet(root / "truth" / "beats.parquet")
    assert beats["record_id"].n_unique() == n
    assert not (root / ".synth_parts").exists()


def test_the_synthetic_source_reads_truth_one_block_at_a_time(tmp_path, monkeypatch):
    """A source over a tree reads its truth per block of consecutive records and keeps at most two blocks:
    reading every record in order loads each block once, and each record's reference is its own truth."""
    from pipeline.sources import synthetic as syn
    from pipeline.synthetic import write_synthetic_tree

    monkeypatch.setattr(syn, "TRUTH_BLOCK_RECORDS", 4)
    root = write_synthetic_tree(tmp_path / "tree", 10, seed=3)
    src = syn.SyntheticSource(root)
    truth = {r["record_id"]: r for r in pl.read_parquet(root / "truth" / "records.parquet").iter_rows(named=True)}
    beats = pl.read_parquet(root / "truth" / "beats.parquet")
    for rid in src.ids():
        ref = src.read(rid).meta.reference
        assert ref is not None and ref.qrs_ms == truth[rid]["qrs_ms"] and ref.hr_bpm == truth[rid]["hr_bpm"]
        n_waves = sum(beats.filter(pl.col("record_id") == rid)[c].is_not_null().sum()
                      for c in ("p_peak_ms", "r_peak_ms", "t_peak_ms"))
        assert len(ref.waves) >= n_waves > 0
        assert len(src._truth_blocks) <= syn.TRUTH_BLOCKS_KEPT
    assert src.truth_blocks_loaded == 3  # 10 records in blocks of 4: once each


def test_features_finish_streams_the_errors_shards(tmp_path):
    """finish_features counts errors and warnings shard by shard, and the merged table holds every row."""
    from features.run import finish_features
    from features.schema import ERRORS_SCHEMA

    out = tmp_path / "features"
    (out / "errors").mkdir(parents=True)
    (out / "records").mkdir()
    for k in range(3):
        pl.DataFrame({"record_id": [f"r{k}a", f"r{k}b"], "stage": ["features"] * 2, "severity": ["error", "warning"],
                      "code": ["flat_signal", "lead_noisy"], "lead": [None, "V1"], "message": ["x", "y"]},
                     schema=ERRORS_SCHEMA).write_parquet(out / "errors" / f"part-{k:05d}.parquet")
    s = finish_features(out, 6, 3, 0)
    assert (s.n_failed, s.n_warnings) == (3, 3)
    assert pl.read_parquet(out / "errors.parquet").height == 6


# ------------------------------------------------------------------------------ memory in run.json
def test_run_json_records_memory_by_stage(small_run):
    info = json.loads((small_run / "run.json").read_text())
    mem = info["memory_mb_by_stage"]
    assert list(mem["flow"]) == ["synth", "ingest", "features", "render", "prompts", "generate", "validate"]
    assert all(v["peak_rss_mb"] > 0 for v in mem["flow"].values())
    assert mem["workers"] == {}  # the CLI runs its chunks in its own process


def test_scale_benchmark_slope():
    # loaded from its file: benchmarks/ on sys.path would shadow the packages prompts/ and features/ for every
    # later test (benchmarks/prompts.py, benchmarks/features.py)
    import importlib.util

    spec = importlib.util.spec_from_file_location("benchmark_flow", Path(__file__).parents[1] / "benchmarks" / "flow.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    slope_mb_per_1000 = bench.slope_mb_per_1000

    assert slope_mb_per_1000([1000, 2000, 4000], [600.0, 600.0, 600.0]) == 0.0
    assert slope_mb_per_1000([1000, 2000, 4000], [600.0, 700.0, 900.0]) == pytest.approx(100.0)


# -------------------------------------------------------------------- records without an accepted answer
@pytest.fixture(scope="module")
def fake_llm():
    from fake_openai_server import FakeOpenAI

    fake = FakeOpenAI().start()  # its answers cite numbers no record has: the validator rejects them
    yield fake
    fake.stop()


def test_cli_run_lists_records_without_an_accepted_answer_and_exits_1(tmp_path, fake_llm, capsys):
    """Every answer of a real small run is rejected by the validator: the run no longer looks clean. The
    records are listed by validator reason (validate:<code>) in errors/validate.parquet, run.json and on
    stderr, the failure rate counts them, nothing is unexplained, and the exit code is 1."""
    from pipeline.cli import main

    out = tmp_path / "r"
    rc = main(["run", "--n", "4", "--seed", "3", "--out", str(out), "--llm", "openai-compatible:qwen",
               "--base-url", fake_llm.base_url, "--max-attempts", "2"])
    captured = capsys.readouterr()
    assert rc == 1
    errs = pl.read_parquet(out / "errors" / "validate.parquet")
    assert errs.height == 4 and errs["record_id"].n_unique() == 4
    assert all(c.startswith("validate:") for c in errs["code"].to_list())
    assert all(m.startswith("no accepted answer: ") for m in errs["message"].to_list())
    info = json.loads((out / "run.json").read_text())
    f = info["failures"]
    assert f["records_failed"] == 4 and f["failure_rate"] == 1.0 and f["records_without_accepted_answer"] == 4
    assert f["records_unexplained"] == 0
    assert sum(r["records"] for r in f["by_reason"] if r["stage"] == "validate") == 4
    assert info["exit_code"] == 1 and sorted(info["stages"]["validate"]["failed_ids"]) == sorted(errs["record_id"])
    assert "4 records failed" in captured.err and "validate:" in captured.err
    assert "4 without an accepted answer" in captured.out and "0 unexplained" in captured.out


def test_stage_failures_are_not_counted_again_as_rejections(tmp_path):
    """A record an earlier stage dropped is that stage's failure, not a validator rejection: 2 of 4 records
    with a truncated signal fail ingest, the 2 others are accepted, and errors/validate.parquet is empty."""
    from pipeline.synthetic import write_synthetic_tree
    from test_flow_grounding import _break_records

    root = write_synthetic_tree(tmp_path / "data", 4, seed=11)
    _break_records(root, 2)
    report = run_pipeline(RunConfig(source="synthetic", root=root, out=tmp_path / "r", chunk_size=2))
    f = report["failures"]
    assert f["records_failed"] == 2 and f["records_without_accepted_answer"] == 0 and f["records_unexplained"] == 0
    assert report["records_accepted"] == 2
    assert pl.read_parquet(tmp_path / "r" / "errors" / "validate.parquet").height == 0


def test_flow_fails_or_warns_when_rejections_pass_the_threshold(prefect_harness, tmp_path, fake_llm):
    """The flow's failure threshold counts records without an accepted answer: a run whose every answer is
    rejected ends Failed naming validate:<code>, CompletedWithWarnings with 'warn', Completed when the
    threshold allows it."""
    from flows.grounding import grounding_flow

    common = dict(n=4, seed=3, chunk_size=2, task_runner="threads", llm="openai-compatible:qwen",
                  base_url=fake_llm.base_url, max_attempts=1)
    state = grounding_flow(out=str(tmp_path / "fail"), return_state=True, **common)
    assert state.is_failed()
    assert "4 of 4 records failed (100.0% > 5.0%" in state.message and "validate:" in state.message, state.message
    warned = grounding_flow(out=str(tmp_path / "warn"), on_failure_rate="warn", return_state=True, **common)
    assert warned.is_completed() and warned.name == "CompletedWithWarnings", warned
    summary = warned.result()
    assert summary["records_without_accepted_answer"] == 4 and summary["records_unexplained"] == 0
    tolerant = grounding_flow(out=str(tmp_path / "tolerant"), max_failure_rate=1.0, return_state=True, **common)
    assert tolerant.is_completed() and tolerant.name == "Completed"


def test_parquet_stream_appends_files_by_column_name(tmp_path):
    """A merge appends part files straight from disk: columns matched by name and cast to the schema, a column
    a part lacks written as nulls, empty parts skipped, rows counted."""
    from pipeline.batch import ParquetStream

    schema = {"record_id": pl.String, "n": pl.Int64, "tags": pl.List(pl.String), "note": pl.String}
    pl.DataFrame({"n": [1, 2], "record_id": ["a", "b"], "tags": [["x"], []], "note": ["hi", None]},
                 schema_overrides={"n": pl.Int32}).write_parquet(tmp_path / "p0.parquet")
    pl.DataFrame({"record_id": ["c"], "n": [3], "tags": [None]}).write_parquet(tmp_path / "p1.parquet")
    pl.DataFrame(schema=schema).write_parquet(tmp_path / "p2.parquet")
    out = ParquetStream(tmp_path / "all.parquet", schema)
    for k in range(3):
        out.write_file(tmp_path / f"p{k}.parquet")
    out.close()
    merged = pl.read_parquet(tmp_path / "all.parquet")
    assert out.rows == 3 and merged.schema == pl.Schema(schema)
    assert merged.to_dicts() == [{"record_id": "a", "n": 1, "tags": ["x"], "note": "hi"},
                                 {"record_id": "b", "n": 2, "tags": [], "note": None},
                                 {"record_id": "c", "n": 3, "tags": None, "note": None}]
