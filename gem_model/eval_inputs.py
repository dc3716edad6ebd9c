"""Inputs of ``ecg-grounding evaluate``: the predictions to score and the run's references for them.

Predictions: JSON lines ``{"id", "text"}`` (``interpret``'s output); GEM's own outputs (``--predictions-format
gem``: ``model_ecg_resume.py``'s JSON lines with ``question_id`` / ``text``, or ``process_gem_outputs.ipynb``'s
JSON list with ``id`` / ``Model_generated``); a generate stage's ``answers.parquet``. A line that cannot be used
is a ``Failure`` with a reason (``bad_prediction_line``, ``duplicate_id``, ``no_answer``) and the rest go on.

References (``load_references``): the run's instruction items (accepted answer, split), each record's
``GroundingContext`` (report statements, measurements: ``pipeline.context.load_contexts``) and, where the
source has them, the experts' intervals (``RecordMeta.reference``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipeline.record import ConfigError

SPLITS = ("train", "test")


@dataclass
class Prediction:
    id: str
    text: str
    line: int


@dataclass
class Failure:
    id: str | None
    reason: str
    detail: str
    line: int | None = None


# ------------------------------------------------------------------------------------------- predictions
def read_predictions(path: str | Path, fmt: str = "auto", run_items: dict[str, dict] | None = None
                     ) -> tuple[list[Prediction], list[Failure]]:
    """Predictions and the lines that could not be used. ``fmt``: ours (``{"id", "text"}``), gem
    (``question_id``), answers (a generate ``answers.parquet``), auto (by extension: .parquet = answers)."""
    path = Path(path)
    if fmt == "auto":
        fmt = "answers" if path.suffix == ".parquet" else "ours"
    if fmt == "answers":
        return _predictions_from_answers(path, run_items or {})
    preds: list[Prediction] = []
    fails: list[Failure] = []
    seen: set[str] = set()
    id_key, text_keys = ("question_id", _GEM_TEXT_KEYS) if fmt == "gem" else ("id", ("text",))
    for n, doc in _records(path, fmt, fails):
        if not isinstance(doc, dict):
            fails.append(Failure(None, "bad_prediction_line", "not a JSON object", n))
            continue
        pid = doc.get(id_key, doc.get("id") if fmt == "gem" else None)
        if pid is None:
            hint = " (GEM's output: use --predictions-format gem)" if fmt == "ours" and "question_id" in doc else ""
            fails.append(Failure(None, "bad_prediction_line", f"no {id_key!r}{hint}", n))
            continue
        text = next((doc[k] for k in text_keys if isinstance(doc.get(k), str)), None)
        if text is None:
            fails.append(Failure(str(pid), "bad_prediction_line", f"no {' / '.join(text_keys)} string", n))
            continue
        pid = str(pid)
        if pid in seen:
            fails.append(Failure(pid, "duplicate_id", "a second prediction for this id (the first is scored)", n))
            continue
        seen.add(pid)
        preds.append(Prediction(pid, text, n))
    return preds, fails


# GEM's model_ecg_resume.py JSONL says "text"; its process_gem_outputs.ipynb JSON list "Model_generated", and its
# generate_gpt_eval.py reads "GEM_generated"
_GEM_TEXT_KEYS = ("text", "Model_generated", "GEM_generated")


def _records(path: Path, fmt: str, fails: list[Failure]):
    """(line number, parsed object) of a JSON-lines file; for GEM, also its notebook's one JSON list (number =
    position in the list)."""
    with open(path, encoding="utf-8") as fh:
        head = fh.read(1 << 16).lstrip()
    if fmt == "gem" and head.startswith("["):
        try:
            docs = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not a JSON list ({exc.msg} at char {exc.pos})") from exc
        yield from enumerate(docs, 1)
        return
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as exc:
                fails.append(Failure(None, "bad_prediction_line", f"not JSON ({exc.msg} at char {exc.pos})", n))


def _predictions_from_answers(path: Path, run_items: dict[str, dict]) -> tuple[list[Prediction], list[Failure]]:
    """A generate stage's answers: per (record, variant) the first accepted answer, else the last answer, with
    the instruction set's id (``record`` or ``record-variant`` when the run made several variants). A record
    whose every attempt failed is a failure (``no_answer``) of the generator being evaluated."""
    try:
        df = pl.read_parquet(path)
    except Exception as exc:  # polars raises several types for a file that is not Parquet
        raise ConfigError(f"{path} cannot be read as Parquet ({type(exc).__name__}: {exc})") from exc
    if "answer" not in df.columns or "record_id" not in df.columns:
        raise ConfigError(f"{path} is not an answers.parquet (no record_id / answer columns)")
    if "variant" not in df.columns:
        df = df.with_columns(pl.lit(None, pl.String).alias("variant"))
    if "attempt" not in df.columns:
        df = df.with_columns(pl.lit(1).alias("attempt"))
    if "accepted" not in df.columns:
        df = df.with_columns(pl.lit(None, pl.Boolean).alias("accepted"))
    fails = []
    answered = set(df.filter(pl.col("answer").is_not_null())["record_id"].to_list())
    for rid in sorted(set(df["record_id"].to_list()) - answered):
        last = df.filter(pl.col("record_id") == rid).tail(1).row(0, named=True)
        why = ": ".join(str(last[c]) for c in ("error_code", "error_message") if last.get(c)) or "no answer"
        fails.append(Failure(str(rid), "no_answer", f"every attempt failed ({why})"))
    df = df.filter(pl.col("answer").is_not_null()).sort(["record_id", "variant", "attempt"], nulls_last=True)
    multi = set(df.group_by("record_id").agg(pl.col("variant").n_unique().alias("n"))
                .filter(pl.col("n") > 1)["record_id"].to_list())
    out = []
    for (rid, variant), rows in df.group_by(["record_id", "variant"], maintain_order=True):
        acc = rows.filter(pl.col("accepted").fill_null(False))
        row = (acc if acc.height else rows).row(0 if acc.height else -1, named=True)
        pid = f"{rid}-{variant}" if rid in multi and variant else rid
        if pid not in run_items and f"{rid}-{variant}" in run_items:
            pid = f"{rid}-{variant}"
        out.append(Prediction(str(pid), row["answer"], 0))
    return out, fails


# -------------------------------------------------------------------------------------------- references
def read_items(run: Path) -> dict[str, dict]:
    """Instruction items of the run by id, each with its ``_split``."""
    items: dict[str, dict] = {}
    for split in SPLITS:
        for shard in sorted((run / "instructions").glob(f"{split}-*.json")):
            for it in json.loads(shard.read_text(encoding="utf-8")):
                it["_split"] = split
                items[str(it["id"])] = it
    return items


def _record_ids(run: Path, items: dict[str, dict], manifest_ids: set[str]) -> dict[str, str]:
    """item id -> record id: the provenance sidecar's, else the id itself or the id less a variant suffix."""
    out: dict[str, str] = {}
    prov = run / "instructions" / "provenance.parquet"
    if prov.is_file():
        p = pl.read_parquet(prov, columns=["id", "record_id"]).unique(subset=["id"], keep="first")
        out.update(dict(zip(p["id"].to_list(), p["record_id"].to_list())))
    for iid in items:
        if iid in out:
            continue
        if iid in manifest_ids:
            out[iid] = iid
        elif "-" in iid and iid.rsplit("-", 1)[0] in manifest_ids:
            out[iid] = iid.rsplit("-", 1)[0]
    return out


def load_references(run: str | Path, ids: list[str], items: dict[str, dict] | None = None):
    """``(references by prediction id, failures)`` for ``ids``: the item's answer and split when the id is in
    the instruction set, the record's context (report, statements, measurements) and its experts' intervals.
    An id that is a record of the run without an accepted answer gets a reference without an answer."""
    from pipeline.context import load_contexts
    from pipeline.record import RecordMeta

    from gem_model.scores import Reference, expert_intervals

    run = Path(run)
    items = read_items(run) if items is None else items
    man = pl.read_parquet(run / "manifest.parquet", columns=["record_id", "meta_json"])
    manifest_ids = set(man["record_id"].to_list())
    rid_of = _record_ids(run, items, manifest_ids)
    wanted: dict[str, str] = {}
    fails: list[Failure] = []
    for pid in ids:
        rid = rid_of.get(pid) or (pid if pid in manifest_ids else None)
        if rid is None:
            fails.append(Failure(pid, "unknown_id", f"neither an item of {run / 'instructions'} nor a record of "
                                                    f"its manifest"))
        else:
            wanted[pid] = rid
    need = sorted(set(wanted.values()))
    ctxs = load_contexts(run, need) if need else {}
    metas = {}
    for rid, mj in man.filter(pl.col("record_id").is_in(need)).iter_rows():
        metas[rid] = RecordMeta.model_validate_json(mj)
    refs = {}
    for pid, rid in wanted.items():
        ctx = ctxs.get(rid)
        if ctx is None:
            fails.append(Failure(pid, "no_measurements", f"record {rid} has no row in {run / 'features'} (it "
                                                         f"failed an earlier stage)"))
            continue
        item = items.get(pid)
        answer = item["conversations"][1]["value"] if item else None
        meta = metas.get(rid)
        refs[pid] = Reference(pid, rid, ctx, answer, item["_split"] if item else None,
                              expert_intervals(meta.reference) if meta is not None else None)
    return refs, fails
