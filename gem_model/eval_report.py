"""``report.md`` and ``report.html`` of one evaluation: scores and what they cover, GEM's published rows beside
ours, the worst records per score, and every failure.

Both files are rendered from one list of blocks (heading, paragraph, table), so they always say the same.
"""
from __future__ import annotations

import html
from pathlib import Path

import polars as pl

from gem_model import published
from gem_model.judge import CRITERIA

Block = tuple  # ("h1"|"h2"|"h3"|"p", text) | ("table", headers, rows)


def _f(v, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def build_blocks(metrics: dict, frame: pl.DataFrame, worst: int = 5) -> list[Block]:
    from gem_model.evaluate import HEADLINE

    s = metrics["scores"]
    b: list[Block] = [("h1", "Evaluation report")]
    splits = ", ".join(f"{k} {v}" for k, v in metrics.get("records_by_split", {}).items()) or "none"
    sources = ", ".join(f"{k} {v}" for k, v in metrics.get("records_by_source", {}).items()) or "none"
    b.append(("p", f"Predictions `{metrics['predictions']}` scored against the instruction set of run "
                   f"`{metrics['run']}`: {metrics['n_scored']} of {metrics['n_predictions']} predictions scored "
                   f"(by split: {splits}; by source: {sources}); {len(metrics['failures'])} failures."))

    # --- judge-free --------------------------------------------------------------------------------------
    b.append(("h2", "Judge-free scores"))
    b.append(("p", "Offline and deterministic: the diagnoses an interpretation names (knowledge base and "
                   "vocabulary, negation-aware) against the record's report statements, its numbers against the "
                   "record's measurements (the validator's typed claims), leads, components, ROUGE-L against the "
                   "reference answer and, for LUDB records, cited intervals against the experts. Means over the "
                   "records a score covers (n); a record without a value (no number cited, no reference answer, "
                   "no experts) is left out of that score only."))
    rows = []
    for key, about in HEADLINE:
        st = s[key]
        v = st["value"]
        shown = _f(v, 1) if key == "words" else _f(v)
        rows.append([key, shown, str(st["n"]), about])
    b.append(("table", ["score", "value", "n", "what it is"], rows))
    dm, gm = s["diagnosis_micro"], s["grounding_micro"]
    kinds = list(gm.get("by_kind", {}).items())
    if kinds:
        b.append(("p", "Grounding by kind of number (pooled; the validator's quantity names), most cited first:"))
        b.append(("table", ["quantity", "cited", "grounded", "share"],
                  [[k, str(v["claims"]), str(v["grounded"]), _f(v["value"])] for k, v in kinds[:15]]))
    if metrics.get("records_with_unmapped_report"):
        b.append(("p", f"{metrics['records_with_unmapped_report']} records have report fragments the knowledge base "
                       "does not map (`report_unmapped` in per_record.parquet): a diagnosis those fragments make "
                       "counts as outside the report there, so their precision may be understated."))
    ex = s["expert_interval_truth"]
    b.append(("p", f"Pooled over records: diagnosis precision {_f(dm['precision'])} ({dm['named'] - dm['hallucinated']}"
                   f" of {dm['named']} diagnoses named), recall {_f(dm['recall'])} (of {dm['statements']} report "
                   f"statements), F1 {_f(dm['f1'])}; grounding {_f(gm['value'])} ({gm['grounded']} of {gm['claims']} "
                   f"numbers); {_f(s['hallucinated_per_record']['value'], 2)} diagnoses outside the report per "
                   f"record. Expert truth: {ex['records_with_experts']} records have expert fiducials, "
                   f"{ex['within']} of {ex['cited']} cited PR/QRS/QT within tolerance; heart rate "
                   f"{ex['heart_rate']['within']} of {ex['heart_rate']['cited']} within 5 bpm of the experts' "
                   f"annotated span."))

    # --- detection ---------------------------------------------------------------------------------------
    b.append(("h2", "ECG-Bench-style detection from free text"))
    b.append(("p", "Classes through the knowledge base (`gem_model/detection.py` `BENCH_CLASSES`): the diagnoses named (not "
                   "negated, closed under implication) against the report's statements. F1, AUC and Hamming loss "
                   "are computed as GEM's `evaluate_ecgbench.py` does: over the classes present in the references, "
                   "and **AUC on binary predictions** (it equals balanced accuracy, not a ranking AUC). ECG-Bench "
                   "asks a closed question on other records; its published rows are shown for reference only."))
    for name, d in metrics.get("detection", {}).items():
        b.append(("h3", f"{name} ({d['n_records']} records; {d['source']})"))
        b.append(("p", f"macro F1 {_pct(d['macro_f1'])}, macro AUC {_pct(d['macro_auc'])} (binary), Hamming loss "
                       f"{_pct(d['hamming_loss'])} over {', '.join(d['scored_classes']) or 'no class'} "
                       f"(over every class: {_pct(d['hamming_loss_all_classes'])}), in percent."
                       + (f" AUC undefined (class in every reference): {', '.join(d['auc_undefined'])}."
                          if d["auc_undefined"] else "")))
        b.append(("table", ["class", "support", "predicted", "TP", "FP", "FN", "F1 %", "AUC %"],
                  [[c["label"], str(c["support"]), str(c["predicted"]), str(c["tp"]), str(c["fp"]), str(c["fn"]),
                    _pct(c["f1"]), _pct(c["auc"])] for c in d["per_class"]]))
        pub = published.TABLE2.get(name)
        if pub:
            rows = [["this evaluation (free text)", _pct(d["macro_auc"]), _pct(d["macro_f1"]),
                     _pct(d["hamming_loss"])]]
            rows += [[f"{m} (published)", *(f"{x:.1f}" for x in v)] for m, v in pub.items()]
            b.append(("table", ["model", "AUC %", "F1 %", "HL %"], rows))

    # --- judge -------------------------------------------------------------------------------------------
    b.append(("h2", "GEM's grounded-understanding scores (LLM judge)"))
    j = metrics.get("judge")
    pub_cols = [(ts, m) for ts, models in published.TABLE1.items() for m in models]
    short = {"MIMIC-IV-ECG (in-domain)": "MIMIC", "PTB-XL (out-of-domain)": "PTB-XL"}
    heads = ["criterion", "this evaluation", "n", *(f"{m.replace('GEM (SFT ', 'GEM-').rstrip(')')} {short[ts]}"
                                                    for ts, m in pub_cols)]
    if j:
        req = j["requests"]
        mode = "on" if j["json_mode"] else "off"
        b.append(("p", f"Judge `{j['model']}` at temperature {j['temperature']}, JSON mode {mode}, prompt "
                       f"{j['prompt_version']} (GEM's eight criteria in our words); {j['judged']} records to judge "
                       f"({req['reused']} answers reused from the store, {req['http_sends']} HTTP sends, "
                       f"${req['cost_usd_new']:.4f} spent now), {j['not_judged_no_reference']} without a reference "
                       f"answer, {j['unparsable']} unparsable, {j['request_failed']} failed requests, "
                       f"{j['budget_skipped']} over the cost cap, {j['not_sent']} not sent after the endpoint "
                       f"failed repeatedly, {j['repaired']} read after a repair, "
                       f"{j['over_100']} with several items on a 0-100 criterion. Normalisation: "
                       f"{j['normalisation']}."))
    else:
        b.append(("p", "Not run (`--judge none`). `--judge openai:gpt-4o-2024-08-06` (or deepseek:MODEL, "
                       "openai-compatible:MODEL --base-url URL) adds GEM's eight criteria; GEM's published values "
                       "are in the table for reference."))
    rows = []
    for k, c in enumerate(CRITERIA):
        mine = j["scores"][c] if j else {"value": None, "n": 0}
        rows.append([c, _f(mine["value"], 2), str(mine["n"]),
                     *(f"{published.TABLE1[ts][m][k]:.2f}" for ts, m in pub_cols)])
    if j:
        avg = j["scores"]["Average"]
        rows.append(["Average (ECG-R1: mean of the last three)", _f(avg["value"], 2), str(avg["n"]),
                     *(f"{sum(published.TABLE1[ts][m][5:]) / 3:.2f}" for ts, m in pub_cols)])
    b.append(("table", heads, rows))
    b.append(("p", f"Published columns: {published.SOURCE} (PULSE, and GEM trained from LLaVA or from PULSE, on "
                   "MIMIC-IV-ECG in-domain and PTB-XL out-of-domain test sets). Their references and judge are "
                   "GPT-4o's, so they compare with ours in method, not in absolute value. DiagnosisAccuracy, "
                   "LeadAssessmentCoverage and LeadAssessmentAccuracy are percentages; AnalysisCompleteness and "
                   "AnalysisRelevance plain sums of item scores; the last three 0-100."))

    # --- worst cases -------------------------------------------------------------------------------------
    if worst > 0 and frame.height:
        b.append(("h2", "Worst records"))
        b.append(("p", f"Up to {worst} records per score short of its best value, worst first (ties by id); "
                       "none listed where every record is at the best value."))
        specs = [
            ("diagnosis_f1", True, lambda r: _detail_dx(r)),
            ("grounding_precision", True, lambda r: "; ".join([f"{r['numeric_grounded']}/{r['numeric_claims']} "
                                                               "grounded", *(r["ungrounded"] or [])[:2]])),
            ("n_hallucinated", False,
             lambda r: "named outside the report: " + ", ".join(r["hallucinated_diagnoses"] or [])),
            ("completeness", True, lambda r: "covers " + (", ".join(r["topics_covered"] or []) or "nothing")),
            ("lead_coverage", True, lambda r: "leads " + (", ".join(r["leads_named"] or []) or "none")),
            ("rouge_l", True, lambda r: f"{r['words']} words"),
            ("expert_interval_truth", True, lambda r: "; ".join(r["expert_misses"] or [])),
        ]
        if "judge_DiagnosisAccuracy" in frame.columns:
            specs.append(("judge_DiagnosisAccuracy", True, lambda r: r.get("judge_error") or ""))
        for col, ascending, detail in specs:
            f = frame.filter(pl.col(col).is_not_null())
            # only records short of the best value: a list of perfect records says nothing
            best = 100.0 if col.startswith("judge_") else 1.0
            f = f.filter(pl.col(col) > 0) if not ascending else f.filter(pl.col(col) < best)
            if not f.height:
                continue
            f = f.sort([col, "id"], descending=[not ascending, False]).head(worst)
            b.append(("h3", col))
            b.append(("table", ["id", col, "detail"],
                      [[r["id"], _f(r[col]) if isinstance(r[col], float) else str(r[col]), detail(r)]
                       for r in f.iter_rows(named=True)]))

    # --- failures ----------------------------------------------------------------------------------------
    fails = metrics.get("failures") or []
    if fails:
        b.append(("h2", f"Failures ({len(fails)})"))
        shown = fails[:50]
        b.append(("table", ["id", "line", "reason", "detail"],
                  [[str(x.get("id")), str(x.get("line") or ""), x["reason"], x["detail"]] for x in shown]))
        if len(fails) > len(shown):
            b.append(("p", f"... and {len(fails) - len(shown)} more in metrics.json."))
    return b


def _detail_dx(r: dict) -> str:
    parts = []
    if r["missing_diagnoses"]:
        parts.append("missing " + ", ".join(r["missing_diagnoses"]))
    if r["hallucinated_diagnoses"]:
        parts.append("outside the report " + ", ".join(r["hallucinated_diagnoses"]))
    return "; ".join(parts) or "report: " + ", ".join(r["report_statements"] or [])


# ------------------------------------------------------------------------------------------------ render
def _md_cell(x: str) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for blk in blocks:
        kind = blk[0]
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + blk[1])
        elif kind == "p":
            out.append(blk[1])
        elif kind == "table":
            heads, rows = blk[1], blk[2]
            out.append("| " + " | ".join(_md_cell(h) for h in heads) + " |")
            out.append("|" + "|".join("---" for _ in heads) + "|")
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
        out.append("")
    return "\n".join(out)


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}th{background:#f2f2f2}
td:nth-child(n+2){font-variant-numeric:tabular-nums}code{background:#f4f4f4;padding:0 .2em}h2{margin-top:1.6em}"""


def _inline(text: str) -> str:
    """Escape, then render `code` and **bold** spans (the only inline markup the blocks use)."""
    import re

    t = html.escape(text)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)


def to_html(blocks: list[Block], title: str = "Evaluation report") -> str:
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{_CSS}</style></head><body>"]
    for blk in blocks:
        kind = blk[0]
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{_inline(blk[1])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{_inline(blk[1])}</p>")
        elif kind == "table":
            out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in blk[1]) +
                       "</tr></thead><tbody>")
            for row in blk[2]:
                out.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>")
            out.append("</tbody></table>")
    out.append("</body></html>")
    return "\n".join(out)


def write_report(out: Path, metrics: dict, frame: pl.DataFrame, worst: int = 5) -> Path:
    """Write ``out/report.md`` and ``out/report.html``; return the markdown path."""
    blocks = build_blocks(metrics, frame, worst)
    md = out / "report.md"
    md.write_text(to_markdown(blocks), encoding="utf-8")
    (out / "report.html").write_text(to_html(blocks), encoding="utf-8")
    return md
