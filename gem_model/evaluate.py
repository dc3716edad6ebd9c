"""``ecg-grounding evaluate``: score free-text ECG interpretations against a run's instruction set.

    ecg-grounding evaluate --predictions PRED.jsonl --run RUN --out DIR [--judge SPEC --base-url URL]

Predictions: JSON lines ``{"id", "text"}`` (what ``ecg-grounding interpret`` writes); GEM's own output
(``model_ecg_resume.py``: ``question_id``, ``text``, ...) with ``--predictions-format gem``; or a generate
stage's ``answers.parquet`` (each record's accepted answer, else its last one), so the rules writer or any LLM
run is scored by the same command. References: the run's instruction set (its accepted answers, the records'
reports and statements, measurements and, for LUDB, the experts' fiducials).

Writes ``DIR/metrics.json`` (every score with the number of records it covers), ``DIR/per_record.parquet``
(one row per prediction), ``DIR/report.md`` and ``DIR/report.html`` (scores beside GEM's published Table 1 and
2 rows, worst cases) and, with a judge, ``DIR/judgements.jsonl``. Judge-free scores are always computed,
offline and deterministic (``gem_model.scores``, ``gem_model.detection``); the judge is optional
(``gem_model.judge``). Nothing here imports torch: evaluation runs on a core install.

Exit codes: 0 every prediction scored (and judged when asked); 1 some records failed (unknown id, malformed
line, duplicate id, missing prediction with ``--split``, judge failure), each listed in ``metrics.json`` and the
report; 2 bad usage (missing files, not a run folder, a bad judge spec or missing key).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import polars as pl

from gem_model.eval_inputs import (SPLITS, Failure, Prediction, load_references, read_items,  # noqa: F401
                                   read_predictions)
from pipeline.record import ConfigError

PER_RECORD = "per_record.parquet"
# scores whose mean is a headline number, in the report's order: (key, what it is)
HEADLINE: tuple[tuple[str, str], ...] = (
    ("diagnosis_precision", "diagnoses named that the report (or the measurements) support"),
    ("diagnosis_recall", "report statements named"),
    ("diagnosis_f1", "harmonic mean of the two, per record"),
    ("hallucination_rate", "records naming a diagnosis outside the report"),
    ("grounding_precision", "cited numbers matching this record's measurements"),
    ("lead_coverage", "distinct leads named / 12"),
    ("completeness", "of rhythm, rate, axis, PR, QRS, QT, P, ST, T covered"),
    ("rouge_l", "ROUGE-L F1 against the reference answer"),
    ("words", "words per interpretation"),
    ("validator_acceptance", "interpretations the validator would accept into the data set"),
    ("expert_interval_truth", "cited PR / QRS / QT within 20 / 20 / 30 ms of LUDB's experts"),
)


# ---------------------------------------------------------------------------------------------- evaluate
@dataclass
class EvalOptions:
    predictions_format: str = "auto"
    split: str | None = None               # expect a prediction for every item of this split (test/train/all)
    judge: object | None = None            # gem_model.judge.JudgeSettings
    judge_store: Path | None = None
    price_table: str | Path | None = None
    worst: int = 5


@dataclass
class EvalSummary:
    n_predictions: int = 0
    n_scored: int = 0
    n_failed: int = 0
    metrics_path: str = ""
    per_record_path: str = ""
    report_path: str = ""
    wall_s: float = 0.0
    failures: list[dict] = field(default_factory=list)


def evaluate(predictions: str | Path, run: str | Path, out: str | Path, options: EvalOptions | None = None
             ) -> EvalSummary:
    """Score ``predictions`` against ``run``'s instruction set; write metrics.json, per_record.parquet and the
    report under ``out``. Raises ``ConfigError`` for unusable inputs (the CLI exits 2)."""
    from pipeline import progress
    from pipeline.validate import default_knowledge, default_vocabulary

    from gem_model.scores import score_record

    t0 = time.perf_counter()
    opts = options or EvalOptions()
    run, out, predictions = Path(run), Path(out), Path(predictions)
    _preflight(predictions, run, opts)
    items = read_items(run)
    preds, fails = read_predictions(predictions, opts.predictions_format, items)
    if not preds:
        raise ConfigError(f"no usable prediction in {predictions}" +
                          (f" ({fails[0].reason}: {fails[0].detail}, line {fails[0].line})" if fails else ""))
    refs, ref_fails = load_references(run, [p.id for p in preds], items)
    fails += ref_fails
    if not refs:
        raise ConfigError(f"none of the {len(preds)} predictions matches a record of {run} (first id "
                          f"{preds[0].id!r}); is --run the run these predictions were made for?")
    if opts.split:
        splits = SPLITS if opts.split == "all" else (opts.split,)
        got = {p.id for p in preds}
        for iid, it in items.items():
            if it["_split"] in splits and iid not in got:
                fails.append(Failure(iid, "missing_prediction", f"no prediction for this {it['_split']} item"))

    kb, vocab = default_knowledge(), default_vocabulary()
    scored = [p for p in preds if p.id in refs]
    rows: list[dict] = []
    with progress.track("evaluate", len(scored), unit="records"):
        for p in scored:
            s = score_record(p.text, refs[p.id], kb, vocab)
            rows.append(_row(p, refs[p.id], s))
            progress.tick()

    judge_block = None
    if opts.judge is not None:
        judge_block = _judge(scored, refs, rows, opts, run, out, fails)

    out.mkdir(parents=True, exist_ok=True)
    frame = _frame(rows)
    _write_parquet(frame, out / PER_RECORD)
    metrics = aggregate(rows, refs, frame)
    # headline values also flat at the top (``jq .diagnosis_f1``); ``scores`` has each with its coverage
    flat = {key: metrics["scores"][key]["value"] for key, _ in HEADLINE}
    metrics = {**flat, **metrics}
    metrics.update(
        run=str(run.resolve()), predictions=str(predictions.resolve()), n_predictions=len(preds) + sum(
            1 for f in fails if f.reason in ("bad_prediction_line", "duplicate_id", "no_answer")),
        n_scored=len(rows), failures=[asdict(f) for f in fails], judge=judge_block,
        settings={"predictions_format": opts.predictions_format, "split": opts.split})
    _write_json(out / "metrics.json", metrics)
    from gem_model.eval_report import write_report

    report = write_report(out, metrics, frame, worst=opts.worst)
    return EvalSummary(n_predictions=metrics["n_predictions"], n_scored=len(rows), n_failed=len(fails),
                       metrics_path=str(out / "metrics.json"), per_record_path=str(out / PER_RECORD),
                       report_path=str(report), wall_s=round(time.perf_counter() - t0, 2),
                       failures=[asdict(f) for f in fails])


def judge_store_dir(run: Path, opts: EvalOptions) -> Path:
    """Where judge answers are stored: ``--judge-store``, else ``RUN/judge/responses`` (shared by every
    evaluation of the run, so the same judgement is never bought twice)."""
    return Path(opts.judge_store) if opts.judge_store else run / "judge" / "responses"


def _preflight(predictions: Path, run: Path, opts: EvalOptions) -> None:
    if not predictions.is_file():
        raise ConfigError(f"--predictions {predictions} is not a file")
    if not run.is_dir():
        raise ConfigError(f"--run {run} is not a folder")
    missing = [p for p in ("manifest.parquet", "features") if not (run / p).exists()]
    if missing:
        raise ConfigError(f"--run {run} is not a run folder (no {', '.join(missing)})")
    if opts.predictions_format not in ("auto", "ours", "gem", "answers"):
        raise ConfigError(f"--predictions-format {opts.predictions_format!r}: use ours | gem | answers")
    if opts.split not in (None, "test", "train", "all"):
        raise ConfigError(f"--split {opts.split!r}: use test | train | all")
    if opts.judge is not None:
        from pipeline.llm import BackendSpec, make_backend

        spec = BackendSpec.parse(opts.judge.spec, opts.judge.base_url)
        if spec.provider == "rules":
            raise ConfigError("--judge rules: the rules writer cannot judge; use openai:MODEL, deepseek:MODEL or "
                              "openai-compatible:MODEL --base-url URL")
        make_backend(spec, timeout_s=opts.judge.timeout_s)  # a missing key fails here, before anything is sent
        for name, v in (("--judge-concurrency", opts.judge.concurrency), ("--judge-max-tokens", opts.judge.max_tokens)):
            if v < 1:
                raise ConfigError(f"{name} must be >= 1, got {v}")
        if opts.judge.max_cost is not None and not opts.judge.max_cost >= 0:
            raise ConfigError(f"--judge-max-cost must be >= 0, got {opts.judge.max_cost}")
        if not (0.0 <= opts.judge.temperature <= 2.0):
            raise ConfigError(f"--judge-temperature must be in [0, 2], got {opts.judge.temperature}")
        store = judge_store_dir(run, opts)
        try:
            store.mkdir(parents=True, exist_ok=True)
            probe = store / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(f"cannot write the judge's response store {store} ({exc.strerror}): pass "
                              f"--judge-store DIR") from exc
    if opts.price_table is not None and not Path(opts.price_table).is_file():
        raise ConfigError(f"--price-table {opts.price_table} is not a file")


def _row(p: Prediction, ref, s) -> dict:
    return {
        "id": p.id, "record_id": ref.record_id, "split": ref.split, "source": ref.ctx.source,
        "has_reference_answer": ref.answer is not None, "words": s.words, "rouge_l": s.rouge_l,
        "diagnosis_precision": s.diagnosis_precision, "diagnosis_recall": s.diagnosis_recall,
        "diagnosis_f1": s.diagnosis_f1, "n_report_statements": s.n_statements, "n_diagnoses_named": s.n_named,
        # report fragments no knowledge entry maps: a diagnosis they make is counted "outside the report"
        "report_unmapped": list(ref.ctx.unmapped_statements),
        "report_statements": list(dict.fromkeys(ref.ctx.statement_ids)), "diagnoses_named": s.named,
        "missing_diagnoses": s.missing, "hallucinated_diagnoses": s.hallucinated,
        "n_hallucinated": len(s.hallucinated), "grounding_precision": s.grounding_precision,
        "numeric_claims": s.numeric_claims, "numeric_grounded": s.numeric_grounded, "ungrounded": s.ungrounded,
        "grounding_by_kind": json.dumps({k: [s.grounded_by_kind.get(k, 0), n] for k, n in s.claims_by_kind.items()},
                                        sort_keys=True),
        "lead_coverage": s.lead_coverage, "leads_named": s.leads_named, "completeness": s.completeness,
        "topics_covered": s.topics, "validator_accepted": s.validator_accepted,
        "validator_reasons": s.validator_reasons, "expert_cited": s.expert_cited, "expert_within": s.expert_within,
        "expert_interval_truth": s.expert_truth, "expert_hr_cited": s.expert_hr_cited,
        "expert_hr_within": s.expert_hr_within, "expert_misses": s.expert_misses,
        "_truth_ids": s.truth_ids, "_pred_ids": s.pred_ids,
    }


_LIST_COLS = ("report_statements", "report_unmapped", "diagnoses_named", "missing_diagnoses", "hallucinated_diagnoses",
              "ungrounded",
              "leads_named", "topics_covered", "validator_reasons", "expert_misses", "ptbxl_super_true",
              "ptbxl_super_pred", "cpsc2018_true", "cpsc2018_pred")


def _frame(rows: list[dict]) -> pl.DataFrame:
    from gem_model.detection import label_spaces

    spaces = label_spaces()
    clean = []
    for r in rows:
        r = dict(r)
        truth, pred = set(r.pop("_truth_ids")), set(r.pop("_pred_ids"))
        for name, space in spaces.items():
            r[f"{name}_true"] = space.labels(truth)
            r[f"{name}_pred"] = space.labels(pred)
        clean.append(r)
    schema_over = {c: pl.List(pl.String) for c in _LIST_COLS}
    schema_over.update({c: pl.Float64 for c in ("rouge_l", "diagnosis_precision", "diagnosis_recall",
                                                "diagnosis_f1", "grounding_precision", "lead_coverage",
                                                "completeness", "expert_interval_truth")})
    # typed even when every value is None (a run without splits, a judge that failed everywhere)
    schema_over.update({c: pl.String for c in ("id", "record_id", "split", "source", "judge_error")})
    judged = [c for c in (rows[0] if rows else {}) if c.startswith("judge_") and c != "judge_error"]
    schema_over.update({c: pl.Float64 for c in judged})
    return pl.DataFrame(clean, schema_overrides=schema_over, infer_schema_length=None)


# ------------------------------------------------------------------------------------------------ metrics
def _stat(values: list, what: str = "") -> dict:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return {"value": (sum(vals) / len(vals)) if vals else None, "n": len(vals), "about": what}


def aggregate(rows: list[dict], refs: dict, frame: pl.DataFrame | None) -> dict:
    """Means over the records each score covers, micro sums where they say more, ECG-Bench detection."""
    from gem_model.detection import label_spaces, score_detection

    about = dict(HEADLINE)
    col = {k: [r[k] for r in rows] for k in rows[0]} if rows else {}
    scores: dict[str, dict] = {}
    for key in ("diagnosis_precision", "diagnosis_recall", "diagnosis_f1", "grounding_precision", "lead_coverage",
                "completeness", "rouge_l", "words"):
        scores[key] = _stat(col.get(key, []), about[key])
    scores["hallucination_rate"] = _stat([float(n > 0) for n in col.get("n_hallucinated", [])],
                                         about["hallucination_rate"])
    scores["hallucinated_per_record"] = _stat(col.get("n_hallucinated", []), "diagnoses outside the report per record")
    scores["validator_acceptance"] = _stat([float(a) for a in col.get("validator_accepted", [])],
                                           about["validator_acceptance"])
    cited = sum(col.get("expert_cited", []))
    within = sum(col.get("expert_within", []))
    hr_cited, hr_within = sum(col.get("expert_hr_cited", [])), sum(col.get("expert_hr_within", []))
    n_expert = sum(1 for r in rows if refs[r["id"]].expert)
    scores["expert_interval_truth"] = {
        "value": within / cited if cited else None, "n": sum(1 for c in col.get("expert_cited", []) if c),
        "cited": cited, "within": within, "records_with_experts": n_expert,
        "heart_rate": {"cited": hr_cited, "within": hr_within, "value": hr_within / hr_cited if hr_cited else None,
                       "tolerance_bpm": 5},
        "tolerance_ms": {"PR": 20, "QRS": 20, "QT": 30}, "about": about["expert_interval_truth"]}
    # micro (pooled) diagnosis and grounding: every statement / diagnosis / number counts once
    stmts = sum(col.get("n_report_statements", []))
    missing = sum(len(m) for m in col.get("missing_diagnoses", []))
    named = sum(col.get("n_diagnoses_named", []))
    hall = sum(col.get("n_hallucinated", []))
    mp = (named - hall) / named if named else None
    mr = (stmts - missing) / stmts if stmts else None
    scores["diagnosis_micro"] = {"precision": mp, "recall": mr,
                                 "f1": (2 * mp * mr / (mp + mr)) if mp is not None and mr is not None and mp + mr
                                 else None, "statements": stmts, "named": named, "hallucinated": hall}
    claims, grounded = sum(col.get("numeric_claims", [])), sum(col.get("numeric_grounded", []))
    by_kind: dict[str, list[int]] = {}
    for doc in col.get("grounding_by_kind", []):
        for kind, (g, n) in json.loads(doc).items():
            acc = by_kind.setdefault(kind, [0, 0])
            acc[0] += g
            acc[1] += n
    scores["grounding_micro"] = {
        "value": grounded / claims if claims else None, "claims": claims, "grounded": grounded,
        # which numbers are checked and how many match: a per-lead amplitude matches one of many beats within
        # 10 %, so it says less than a heart rate within 3 bpm
        "by_kind": {k: {"claims": n, "grounded": g, "value": g / n} for k, (g, n) in sorted(
            by_kind.items(), key=lambda kv: (-kv[1][1], kv[0]))}}

    detection = {}
    for name, space in label_spaces().items():
        if frame is None or not frame.height:
            break
        d = score_detection(space, frame[f"{name}_true"].to_list(), frame[f"{name}_pred"].to_list())
        detection[name] = asdict(d) | {"source": space.source}
    by_split = {}
    for split in (*SPLITS, None):
        n = sum(1 for r in rows if r["split"] == split)
        if n:
            by_split[split or "not_in_instruction_set"] = n
    return {"scores": scores, "detection": detection, "records_by_split": by_split,
            "records_by_source": _counts(col.get("source", [])),
            "records_with_unmapped_report": sum(1 for u in col.get("report_unmapped", []) if u)}


def _counts(xs: list) -> dict:
    out: dict[str, int] = {}
    for x in xs:
        out[str(x)] = out.get(str(x), 0) + 1
    return out


# --------------------------------------------------------------------------------------------------- judge
def _judge(scored: list[Prediction], refs: dict, rows: list[dict], opts: EvalOptions, run: Path, out: Path,
           fails: list[Failure]) -> dict:
    from pipeline import progress
    from pipeline.llm import PriceTable

    from gem_model.judge import (ALIASES, CRITERIA, JUDGE_PROMPT_VERSION, JudgeTask, run_judge,
                                 three_score_average)

    settings = opts.judge
    tasks = [JudgeTask(p.id, p.text, refs[p.id].answer) for p in scored if refs[p.id].answer is not None]
    store = judge_store_dir(run, opts)
    with progress.track("judge", len(tasks), unit="requests"):
        results, counts = asyncio.run(run_judge(tasks, settings, store,
                                                price_table=PriceTable.load(opts.price_table),
                                                on_done=progress.tick))
    by_id = {r.item_id: r for r in results}
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for row in rows:
        res = by_id.get(row["id"])
        for c in CRITERIA:
            row[f"judge_{c}"] = res.normalised.get(c) if res else None
        row["judge_Average"] = three_score_average(res.normalised) if res else None
        row["judge_error"] = (f"{res.error_code}: {res.error}" if res and res.error_code else
                              (None if res else "not judged: the record has no reference answer"))
        if res is None:
            continue
        if res.error_code:
            fails.append(Failure(res.item_id, res.error_code, res.error or ""))
        j = res.judgement
        lines.append({"id": res.item_id, "request_key": res.request_key, "reused": res.reused,
                      "error": row["judge_error"] if res.error_code else None, "normalised": res.normalised,
                      "scores": j.scores if j else None, "explanations": j.explanations if j else None,
                      "spellings": j.spellings if j else None, "repairs": j.repairs if j else None,
                      "unknown_keys": j.unknown_keys if j else None, "over_100": res.over_100})
    with open(out / "judgements.jsonl", "w", encoding="utf-8") as fh:
        for doc in lines:
            fh.write(json.dumps(doc, ensure_ascii=False) + "\n")
    table = {c: _stat([r.get(f"judge_{c}") for r in rows]) for c in (*CRITERIA, "Average")}
    spelled = {}
    for r in results:
        if r.judgement:
            for k, v in r.judgement.spellings.items():
                spelled.setdefault(k, {}).setdefault(v, 0)
                spelled[k][v] += 1
    return {"model": settings.spec, "base_url": settings.base_url, "temperature": settings.temperature,
            "json_mode": settings.json_mode, "max_tokens": settings.max_tokens, "prompt_version": JUDGE_PROMPT_VERSION,
            "store": str(store.resolve()), "scores": table,
            "aliases": dict(ALIASES),  # GEM's prompt spelling -> the table column it is reported under
            "requests": counts, "judged": len(tasks),
            "not_judged_no_reference": len(scored) - len(tasks),
            "unparsable": sum(1 for r in results if r.error_code == "judge_unparsable"),
            "request_failed": sum(1 for r in results if r.error_code == "judge_request_failed"),
            "budget_skipped": sum(1 for r in results if r.error_code == "judge_budget"),
            "not_sent": sum(1 for r in results if r.error_code == "judge_not_sent"),
            "repaired": sum(1 for r in results if r.judgement and r.judgement.repairs),
            "over_100": sum(1 for r in results if r.over_100), "key_spellings": spelled,
            "normalisation": "GEM process_grounding_scores.ipynb (HEAD): DiagnosisAccuracy = share of items > 0 x "
                             "100; LeadAssessmentCoverage = min(sum, 12) / 12 x 100; LeadAssessmentAccuracy = "
                             "sum / 24 x 100; others = sum; Average = mean of the three 0-100 criteria (ECG-R1)"}


# ------------------------------------------------------------------------------------------------------ io
def _write_parquet(df: pl.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    df.write_parquet(tmp)
    os.replace(tmp, path)


def _write_json(path: Path, doc: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------------------ CLI
HELP = """Score free-text ECG interpretations against a run's instruction set: judge-free scores (diagnoses
against the report, numbers against the measurements, leads, components, ROUGE-L, LUDB experts), ECG-Bench
detection (PTB-XL superclasses, CPSC 2018), and optionally GEM's eight-criterion LLM judge.

examples:
  ecg-grounding evaluate --predictions outputs/demo/pred.jsonl --run outputs/demo --out outputs/demo/eval
  ecg-grounding evaluate --predictions outputs/demo/generate/answers.parquet --run outputs/demo \\
      --out outputs/demo/eval-rules
  ecg-grounding evaluate --predictions outputs/demo/pred.jsonl --run outputs/demo --out outputs/demo/eval-judged \\
      --judge openai:gpt-4o-2024-08-06 --judge-max-cost 5
  ecg-grounding evaluate --predictions outputs/gem7b.jsonl --predictions-format gem --run outputs/ptbxl \\
      --out outputs/ptbxl/eval-gem7b --split test

outputs: DIR/metrics.json, DIR/per_record.parquet, DIR/report.md, DIR/report.html (+ DIR/judgements.jsonl)

exit codes: 0 every prediction scored (and judged); 1 some records failed (each in metrics.json and the
report); 2 bad usage."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="score interpretations against a run: judge-free scores, ECG-Bench detection, GEM's judge",
        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--predictions", required=True, type=Path,
                   help="JSON lines {\"id\", \"text\"} (interpret's output), GEM's JSONL, or an answers.parquet")
    p.add_argument("--run", required=True, type=Path, help="the run folder whose instruction set holds the references")
    p.add_argument("--out", required=True, type=Path, help="output folder: metrics.json, per_record.parquet, report")
    p.add_argument("--predictions-format", default="auto", choices=["auto", "ours", "gem", "answers"],
                   help="ours: {id, text}; gem: GEM's model_ecg_resume.py JSONL (question_id, text); answers: a "
                        "generate answers.parquet (auto: by extension)")
    p.add_argument("--split", default=None, choices=["test", "train", "all"],
                   help="expect a prediction for every item of this split (missing ones fail)")
    p.add_argument("--judge", default="none",
                   help="none (default) | openai:MODEL | deepseek:MODEL | openai-compatible:MODEL")
    p.add_argument("--base-url", default=None, help="the judge's API base URL (openai-compatible)")
    p.add_argument("--judge-temperature", type=float, default=0.0, help="default 0 (GEM sent none: the API's 1.0)")
    p.add_argument("--judge-max-tokens", type=int, default=4096)
    p.add_argument("--judge-concurrency", type=int, default=8)
    p.add_argument("--judge-max-cost", type=float, default=None, help="USD cap for new judge requests")
    p.add_argument("--judge-timeout", type=float, default=120.0, help="seconds per judge request")
    p.add_argument("--judge-store", type=Path, default=None,
                   help="response store of the judge (default RUN/judge/responses: shared by every evaluation of "
                        "the run, so a judgement is never bought twice)")
    p.add_argument("--no-judge-json-mode", action="store_true",
                   help="do not ask for response_format json_object (servers that reject it)")
    p.add_argument("--price-table", default=None, help="YAML/JSON prices overriding the defaults")
    p.add_argument("--worst", type=int, default=5, help="worst records listed per score in the report")
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    """Exit codes: 0 every prediction scored, 1 some records failed (listed), 2 bad usage."""
    from gem_model.judge import JudgeSettings

    judge = None
    if args.judge and args.judge.lower() != "none":
        judge = JudgeSettings(spec=args.judge, base_url=args.base_url, temperature=args.judge_temperature,
                              max_tokens=args.judge_max_tokens, json_mode=not args.no_judge_json_mode,
                              concurrency=args.judge_concurrency, max_cost=args.judge_max_cost,
                              timeout_s=args.judge_timeout)
    if args.worst < 0:
        raise ConfigError(f"--worst must be >= 0, got {args.worst}")
    opts = EvalOptions(predictions_format=args.predictions_format, split=args.split, judge=judge,
                       judge_store=args.judge_store, price_table=args.price_table, worst=args.worst)
    summary = evaluate(args.predictions, args.run, args.out, opts)
    metrics = json.loads(Path(summary.metrics_path).read_text())
    from pipeline.batch import collect_failures
    from pipeline.cli import finish

    # the one CLI convention: --json prints the metrics as one document, -q prints nothing, failed records go to
    # stderr by reason code and make the exit code 1
    failures = collect_failures([(summary.metrics_path, pl.DataFrame(
        {"record_id": [f["id"] for f in summary.failures], "code": [f["reason"] for f in summary.failures],
         "stage": ["evaluate"] * len(summary.failures)}, schema={"record_id": pl.String, "code": pl.String,
                                                                 "stage": pl.String}))])
    payload = {k: v for k, v in metrics.items() if k != "failures"}
    payload["paths"] = {"metrics": summary.metrics_path, "per_record": summary.per_record_path,
                        "report": summary.report_path}
    return finish(args, payload, format_summary(metrics, summary), failures)


def format_summary(metrics: dict, summary: EvalSummary) -> str:
    s = metrics["scores"]
    lines = [f"evaluated {summary.n_scored} of {summary.n_predictions} predictions against {metrics['run']}"]
    for key, _ in HEADLINE:
        v = s[key]["value"]
        lines.append(f"  {key:<24} {'n/a' if v is None else f'{v:.3f}':>8}  (n={s[key]['n']})")
    for name, d in metrics["detection"].items():
        f = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
        lines.append(f"  {name:<24} macro F1 {f(d['macro_f1'])}  AUC {f(d['macro_auc'])} (binary)  "
                     f"Hamming {f(d['hamming_loss'])}  classes {','.join(d['scored_classes']) or '-'}")
    j = metrics.get("judge")
    if j:
        req = j["requests"]
        lines.append(f"  judge {j['model']}: {j['judged']} records to judge, {req['reused']} from the store, "
                     f"{req['http_sends']} HTTP sends, ${req['cost_usd_new']:.4f} new, {j['unparsable']} unparsable, "
                     f"{j['request_failed']} failed" + (f", {j['not_sent']} not sent" if j["not_sent"] else ""))
        for c, st in j["scores"].items():
            if st["value"] is not None:
                lines.append(f"    {c:<28} {st['value']:8.2f}  (n={st['n']})")
    lines.append(f"  outputs: {summary.metrics_path}, {summary.per_record_path}, {summary.report_path} "
                 f"({summary.wall_s:.1f} s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m gem_model.evaluate ARGS`` = ``ecg-grounding evaluate ARGS``."""
    parser = argparse.ArgumentParser(prog="python -m gem_model.evaluate")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["evaluate", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"ecg-grounding evaluate: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
