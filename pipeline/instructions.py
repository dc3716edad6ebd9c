"""The GEM instruction set: validated answers -> GEM's JSON format, a provenance sidecar, rejects, a summary.

Output (``out`` folder, normally ``RUN/instructions``):
- ``train-00000.json``, ``train-00001.json``, ..., ``test-00000.json``: JSON lists of at most ``shard_size``
  items in GEM's format (what GEM's own trainer reads)::

      {"id": ..., "ecg": WFDB path relative to the data root without extension, "image": relative PNG path,
       "conversations": [{"from": "human", "value": "<image>\\n" + question}, {"from": "gpt", "value": answer}],
       "machine_measurements": {rr_interval, p_onset, p_end, qrs_onset, qrs_end, t_end, p_axis, qrs_axis,
                                t_axis}, "report": the report text}

  Items are streamed to disk shard by shard, never held all in memory. Only accepted answers enter.
- ``provenance.parquet``: one row per validated attempt (backend, model, provider-reported model, prompt hash,
  template version, request key, tokens, cost, attempt, validation metrics and reasons, split, shard).
- ``rejects.parquet``: every rejected attempt with its answer, reason codes and details.
- ``unaccepted.parquet``: every record (variant) that ended without an accepted answer, with the reason codes
  of its last attempt (``no_answer`` / ``no_context`` when nothing could be validated).
- ``summary.json``: acceptance rate, rejection reasons, grounding precision, diagnosis recall / precision,
  lead coverage, tokens and cost, and the report conflicts (``conflicts``): per statement, how often the citable
  measurements fail its criteria (``pipeline.criteria``), and how many records the ``conflicts`` policy dropped.
- ``README.md`` (Hugging Face dataset card) and ``card.html`` (plots, per-diagnosis acceptance, examples):
  ``pipeline/card.py``.

Conflicts: the report is trusted, so a record whose statement its measurements contradict is still written
(``conflicts="keep"``, the default; its provenance rows list each conflict: statement, criterion, measured
value) unless ``conflicts="drop"``, which keeps such records out of the set (reason ``report_conflict``).

Train / test split is by patient (deterministic SHA-256 of the patient id, ``test_fraction``), so no patient
is in both; records whose source knows no patient are split by record id.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from pipeline.context import GroundingContext, build_context
from pipeline.record import LEADS, RecordMeta
from pipeline.validate import ValidationConfig, ValidationResult, validate_answer

# GEM's own question first; the others say the same in other words, so the model does not learn one string.
QUESTIONS: tuple[str, ...] = (
    "Interpret the provided ECG image, identify key features and abnormalities in each lead, and generate a "
    "clinical diagnosis that is supported by the observed evidence.",
    "Analyze this 12-lead ECG image: describe the rhythm, rate, axis and intervals, point out abnormal findings "
    "lead by lead, and give a diagnosis grounded in what you observe.",
    "Read this electrocardiogram and explain, lead by lead, the features that support your final diagnosis.",
    "Provide a detailed interpretation of this ECG, naming the leads where each abnormality appears, and "
    "conclude with an evidence-based diagnosis.",
    "Examine the ECG image and report the key waveform features in each lead together with the clinical "
    "diagnosis they support.",
    "What does this 12-lead ECG show? Describe the measurable features and the abnormalities in the relevant "
    "leads, then state the diagnosis they justify.",
    "Interpret this ECG as a cardiologist would: rhythm, rate, conduction intervals, axis, morphology per lead, "
    "and a diagnosis supported by these observations.",
    "Look at this ECG tracing and give a grounded interpretation: which features in which leads lead to which "
    "diagnosis?",
    "Describe the findings on this 12-lead ECG, linking each abnormality to the leads that show it, and provide "
    "the resulting clinical impression.",
    "Give a systematic reading of this ECG image (rhythm, rate, intervals, axis, P waves, QRS complexes, ST "
    "segments and T waves) and a diagnosis backed by the evidence.",
    "Identify the key ECG features and lead-specific abnormalities visible in this image and explain the "
    "diagnosis they support.",
    "Please interpret the attached ECG, citing the observed evidence in each lead for your diagnostic "
    "conclusion.",
)

MIMIC_FIELDS = ("rr_interval", "p_onset", "p_end", "qrs_onset", "qrs_end", "t_end", "p_axis", "qrs_axis", "t_axis")
SPLITS = ("train", "test")
_REFERENCE_NAMES = {"rr_interval": "rr_ms", "p_onset": "p_onset_ms", "p_end": "p_end_ms", "qrs_onset": "qrs_onset_ms",
                    "qrs_end": "qrs_end_ms", "t_end": "t_end_ms", "p_axis": "p_axis_deg", "qrs_axis": "qrs_axis_deg",
                    "t_axis": "t_axis_deg"}


def pick_question(record_id: str, seed: int = 0) -> str:
    """The question phrasing of one record: a deterministic draw from ``QUESTIONS`` by (seed, record id)."""
    h = hashlib.sha256(f"question:{seed}:{record_id}".encode()).digest()
    return QUESTIONS[int.from_bytes(h[:8], "big") % len(QUESTIONS)]


def assign_split(patient_id: str | None, record_id: str, test_fraction: float = 0.1) -> str:
    """'train' or 'test' from a SHA-256 of the patient id (the record id when the source knows no patient),
    so every record of a patient lands in the same split on every run and machine."""
    key = f"patient:{patient_id}" if patient_id not in (None, "") else f"record:{record_id}"
    u = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2.0 ** 64
    return "test" if u < test_fraction else "train"


# ------------------------------------------------------------------------------------ GEM item & checks
def machine_measurements(ctx: GroundingContext, reference: dict | None = None) -> dict:
    """MIMIC-style machine measurements: the source's own (MIMIC machine readings) when present, else our
    measured global values under MIMIC's field names (ms, degrees). Our fiducials (p_onset ... t_end) are those
    of one representative beat - the normal beat whose RR is closest to the median - in ms from record start,
    onsets the earliest and offsets the latest over the measured leads (the 12-lead convention)."""
    source = ctx.machine_measurements or (reference if reference and reference.get("kind") == "mimic_machine"
                                          else None)
    if source:
        # MIMIC's own names, or ReferenceMeasurements' (rr_ms, p_onset_ms, ..., qrs_axis_deg)
        return {k: _num(source.get(k, source.get(_REFERENCE_NAMES[k]))) for k in MIMIC_FIELDS}
    rec = ctx.record
    out = {k: None for k in MIMIC_FIELDS}
    out.update(rr_interval=_num(rec.get("rr_mean_ms")), p_axis=_num(rec.get("p_axis_deg")),
               qrs_axis=_num(rec.get("qrs_axis_deg")), t_axis=_num(rec.get("t_axis_deg")))
    b = ctx.beats
    if b is not None and b.height:
        ok = b.filter(pl.col("lead").is_in(ctx.measured_leads))
        if "beat_class" in ok.columns:
            ok = ok.filter(pl.col("beat_class").fill_null("normal") == "normal")
        per_beat = ok.group_by("beat").agg(
            pl.col("p_on_ms").min().alias("p_onset"), pl.col("p_off_ms").max().alias("p_end"),
            pl.col("qrs_on_ms").min().alias("qrs_onset"), pl.col("qrs_off_ms").max().alias("qrs_end"),
            pl.col("t_off_ms").max().alias("t_end"), pl.col("rr_ms").median().alias("rr"),
        ).drop_nulls(["qrs_onset", "qrs_end"])
        if per_beat.height:
            med = per_beat["rr"].median()
            per_beat = per_beat.with_columns(
                (pl.col("rr") - med).abs().fill_null(float("inf")).alias("_d"),
                pl.sum_horizontal(pl.col(["p_onset", "p_end", "t_end"]).is_null()).alias("_missing"))
            best = per_beat.sort(["_missing", "_d", "beat"]).row(0, named=True)
            for k in ("p_onset", "p_end", "qrs_onset", "qrs_end", "t_end"):
                out[k] = _num(best[k])
    return out


def _num(v) -> float | None:
    if v is None:
        return None
    v = float(v)
    return round(v, 1) if math.isfinite(v) else None


def gem_item(item_id: str, ctx: GroundingContext, answer: str, question: str, image: str | None,
             reference: dict | None = None) -> dict:
    """One instruction in GEM's JSON format."""
    return {
        "id": item_id,
        "ecg": ctx.ecg_path,
        "image": image,
        "conversations": [{"from": "human", "value": "<image>\n" + question},
                          {"from": "gpt", "value": answer}],
        "machine_measurements": machine_measurements(ctx, reference),
        "report": ctx.report,
    }


def check_gem_item(item: dict) -> list[str]:
    """Problems of one item against GEM's format (empty when it is well formed)."""
    problems = []
    if set(item) != {"id", "ecg", "image", "conversations", "machine_measurements", "report"}:
        problems.append(f"keys {sorted(item)}")
    if not isinstance(item.get("id"), str) or not item.get("id"):
        problems.append("id must be a non-empty string")
    ecg = item.get("ecg")
    if not isinstance(ecg, str) or not ecg or ecg.startswith("/") or ".." in ecg.split("/") or \
            ecg.endswith((".hea", ".dat", ".mat")):
        problems.append(f"ecg must be a relative WFDB path without extension, got {ecg!r}")
    img = item.get("image")
    if not isinstance(img, str) or not img.endswith(".png") or img.startswith("/"):
        problems.append(f"image must be a relative .png path, got {img!r}")
    conv = item.get("conversations")
    if not (isinstance(conv, list) and len(conv) == 2 and [c.get("from") for c in conv] == ["human", "gpt"]
            and all(isinstance(c.get("value"), str) and c["value"] for c in conv)
            and conv[0]["value"].startswith("<image>\n")):
        problems.append("conversations must be [human '<image>\\n'+question, gpt answer]")
    mm = item.get("machine_measurements")
    if not isinstance(mm, dict) or set(mm) != set(MIMIC_FIELDS) or \
            any(v is not None and not isinstance(v, (int, float)) for v in mm.values()):
        problems.append("machine_measurements must hold MIMIC's fields with numbers or null")
    if not isinstance(item.get("report"), str):
        problems.append("report must be a string")
    return problems


# ------------------------------------------------------------------------------------------ shard writer
class ShardWriter:
    """Streams items into ``{split}-{index:05d}.json`` files of at most ``shard_size`` items each. A shard is
    written to a temporary name and renamed when closed, so a killed run leaves no half-written JSON."""

    def __init__(self, out: Path, split: str, shard_size: int):
        if shard_size < 1:
            raise ValueError("shard_size must be >= 1")
        self.out, self.split, self.shard_size = out, split, shard_size
        self.index, self.in_shard, self.total = -1, 0, 0
        self.fh = None
        self.paths: list[Path] = []

    def _open(self) -> None:
        self.index += 1
        self.path = self.out / f"{self.split}-{self.index:05d}.json"
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.fh = open(self.tmp, "w", encoding="utf-8")
        self.fh.write("[\n")
        self.in_shard = 0

    def _close(self) -> None:
        if self.fh is None:
            return
        self.fh.write("\n]\n")
        self.fh.close()
        os.replace(self.tmp, self.path)
        self.paths.append(self.path)
        self.fh = None

    def write(self, item: dict) -> str:
        """Append one item; returns the shard file name it went to."""
        if self.fh is None or self.in_shard >= self.shard_size:
            self._close()
            self._open()
        if self.in_shard:
            self.fh.write(",\n")
        self.fh.write(json.dumps(item, ensure_ascii=False))
        self.in_shard += 1
        self.total += 1
        return self.path.name

    def close(self) -> list[Path]:
        self._close()
        return self.paths


def read_instruction_set(out: str | Path, split: str | None = None) -> Iterator[dict]:
    """Every item of the instruction set under ``out`` (one split or both), shard by shard."""
    for s in (SPLITS if split is None else (split,)):
        for path in sorted(Path(out).glob(f"{s}-*.json")):
            yield from json.loads(path.read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------------------- contexts
def _features_path(features: Path, name: str) -> str:
    single = features / f"{name}.parquet"
    if single.exists():
        return str(single)
    folder = features / name
    if folder.is_dir():
        return str(folder / "*.parquet")
    raise FileNotFoundError(f"no {name}.parquet or {name}/ under {features}")


def build_contexts(record_ids: list[str], manifest: pl.DataFrame, records: pl.DataFrame, beats: pl.DataFrame,
                   kb, images_dir: Path | None = None, image_root: Path | None = None) -> dict[str, GroundingContext]:
    """GroundingContexts of ``record_ids`` from a manifest (ingest's ``MANIFEST_SCHEMA``, ``meta_json``) and the
    features tables, through ``pipeline.context.build_context`` (the same builder the writer and prompts use)."""
    man = {r["record_id"]: r for r in manifest.filter(pl.col("record_id").is_in(record_ids)).iter_rows(named=True)}
    recs = {r["record_id"]: r for r in records.filter(pl.col("record_id").is_in(record_ids)).iter_rows(named=True)}
    beats_by = {k[0]: v for k, v in beats.filter(pl.col("record_id").is_in(record_ids))
                .partition_by("record_id", as_dict=True).items()}
    out: dict[str, GroundingContext] = {}
    for rid in record_ids:
        m, rec = man.get(rid), recs.get(rid)
        if m is None or rec is None or not m.get("meta_json"):
            continue
        meta = RecordMeta.model_validate_json(m["meta_json"])
        image = None
        if images_dir is not None:
            png = images_dir / f"{rid}.png"
            if png.exists():
                image = os.path.relpath(png, image_root or images_dir.parent)
        b = beats_by.get(rid)
        if b is None:
            b = pl.DataFrame(schema=beats.schema)
        out[rid] = build_context(meta, rec, b, kb=kb, image_path=image)
    return out


# ---------------------------------------------------------------------------------------------- summary
@dataclass
class _Tally:
    records: int = 0
    records_accepted: int = 0
    attempts: int = 0
    attempts_validated: int = 0
    attempts_accepted: int = 0
    no_context: int = 0
    no_answer: int = 0
    no_image: int = 0
    reasons_attempts: Counter = field(default_factory=Counter)   # over every rejected attempt
    reasons_final: Counter = field(default_factory=Counter)      # over records never accepted (last attempt)
    claims: int = 0
    grounded: int = 0
    claims_by_kind: Counter = field(default_factory=Counter)    # quantity -> numeric claims (every attempt)
    grounded_by_kind: Counter = field(default_factory=Counter)
    claims_acc: int = 0
    grounded_acc: int = 0
    dx_recall: list = field(default_factory=list)
    dx_precision: list = field(default_factory=list)
    lead_coverage: list = field(default_factory=list)
    words: list = field(default_factory=list)
    tokens: Counter = field(default_factory=Counter)
    cost_usd: float = 0.0
    by_backend: Counter = field(default_factory=Counter)
    split_counts: Counter = field(default_factory=Counter)
    # report conflicts (pipeline.criteria): plain counters, so chunk tallies add up
    conflict_records_checked: int = 0
    conflict_records: int = 0
    conflict_dropped: int = 0
    statement_records: Counter = field(default_factory=Counter)     # records carrying each statement
    statement_conflicts: Counter = field(default_factory=Counter)   # ... whose measurements contradict it
    patients: dict = field(default_factory=lambda: {"train": set(), "test": set()})

    def to_json(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["patients"] = {k: sorted(v) for k, v in self.patients.items()}
        return d

    @classmethod
    def from_json(cls, d: dict) -> _Tally:
        t = cls(**{k: v for k, v in d.items() if k != "patients"})
        for k, f in cls.__dataclass_fields__.items():  # every Counter field (branches add their own)
            if f.default_factory is Counter:
                setattr(t, k, Counter(getattr(t, k)))
        t.patients = {k: set(v) for k, v in d["patients"].items()}
        return t

    def merge(self, o: _Tally) -> None:
        """Add another chunk's tally (counters add, lists extend in order, patient sets unite)."""
        for k in self.__dataclass_fields__:
            a, b = getattr(self, k), getattr(o, k)
            if k == "patients":
                for split in b:
                    a.setdefault(split, set()).update(b[split])
            elif isinstance(a, Counter):
                a.update(b)
            elif isinstance(a, list):
                a.extend(b)
            else:
                setattr(self, k, a + b)


CONFLICT_POLICIES = ("keep", "drop")


def _tally_conflicts(t: _Tally, found: list[dict], statements: list[str]) -> None:
    """Count one record's report conflicts: per statement it carries, whether its measurements contradict it."""
    conflicted = {c["statement"] for c in found}
    t.conflict_records_checked += 1
    t.conflict_records += bool(found)
    for sid in statements:
        t.statement_records[sid] += 1
        t.statement_conflicts[sid] += sid in conflicted


def _conflict_summary(t: _Tally, policy: str) -> dict:
    """Report conflicts: per statement, records carrying it, records whose measurements contradict it, the rate."""
    by = {sid: {"records": n, "conflicts": t.statement_conflicts[sid],
                "rate": round(t.statement_conflicts[sid] / n, 4)}
          for sid, n in sorted(t.statement_records.items(), key=lambda kv: (-t.statement_conflicts[kv[0]], kv[0]))}
    return {"policy": policy, "records_checked": t.conflict_records_checked,
            "records_with_conflicts": t.conflict_records, "dropped": t.conflict_dropped, "by_statement": by}


def _mean(xs: list[float]) -> float | None:
    return round(sum(xs) / len(xs), 4) if xs else None


def format_summary(s: dict) -> str:
    """The quality summary as a few printed lines."""
    lines = [
        f"records: {s['records']}  accepted: {s['records_accepted']}  acceptance rate: {s['acceptance_rate']}",
        f"attempts validated: {s['attempts_validated']}  accepted: {s['attempts_accepted']}  "
        f"(attempt acceptance {s['attempt_acceptance_rate']})",
        f"grounding precision: {s['grounding_precision']} ({s['numeric_grounded']}/{s['numeric_claims']} numbers)  "
        f"diagnosis recall: {s['diagnosis_recall']}  precision: {s['diagnosis_precision']}  "
        f"lead coverage: {s['lead_coverage']}",
        f"tokens: {s['tokens']}  cost: ${s['cost_usd']:.4f}",
        f"splits: {s['splits']}  shards: {len(s['shards'])}",
    ]
    by_kind = s.get("claims_by_kind") or {}
    if by_kind:
        top = sorted(by_kind.items(), key=lambda kv: (-kv[1]["claims"], kv[0]))[:8]
        lines.append("grounding by kind: " + ", ".join(f"{k} {v['grounded']}/{v['claims']}" for k, v in top))
    if s["rejection_reasons"]:
        lines.append("rejection reasons (attempts): " + ", ".join(f"{k}={v}" for k, v in s["rejection_reasons"].items()))
    c = s.get("conflicts")
    if c and c.get("records_checked"):
        worst = [f"{sid} {v['conflicts']}/{v['records']}" for sid, v in c["by_statement"].items() if v["conflicts"]]
        lines.append(f"report conflicts: {c['records_with_conflicts']} of {c['records_checked']} records "
                     f"(policy {c['policy']}, {c['dropped']} dropped)" +
                     (f"; by statement: {', '.join(worst[:8])}" if worst else ""))
    if s["no_context"] or s["no_answer"]:
        lines.append(f"records without context: {s['no_context']}  without an answer: {s['no_answer']}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- the stage
_FAILED = ("failed", "skipped_budget", "refused_context")


def build_instruction_set(answers: str | Path, features: str | Path, manifest: str | Path, out: str | Path,
                          images: str | Path | None = None, prompts: str | Path | None = None,
                          test_fraction: float = 0.1, shard_size: int = 5000, seed: int = 0,
                          config: ValidationConfig = ValidationConfig(), chunk_size: int = 500, kb=None,
                          image_root: str | Path | None = None, conflicts: str = "keep") -> dict:
    """Validate every answer of ``answers`` (generate's answers.parquet) and write the instruction set,
    provenance, rejects and ``summary.json`` under ``out``. Returns the summary (also written as JSON).

    Per (record, variant) the earliest accepted attempt enters the set; every attempt is validated again here
    (the generation loop may have run without a validator, or an older one) and recorded in the provenance.
    The work is ``validate_part`` over chunks of record ids (sorted) and ``finish_instruction_set``; the
    chain (``pipeline.run_all``) maps the first over its chunks, in worker processes.
    """
    # imported here: pipeline.batch -> features -> features.measure -> pipeline.batch is a cycle when
    # pipeline.batch is the first of them imported
    from pipeline import progress
    from pipeline.batch import chunks

    out = Path(out)
    answers_lf = pl.scan_parquet(answers)
    ans_ids = answers_lf.select("record_id").unique().collect()["record_id"].sort().to_list()
    keys = [c for c in ("record_id", "variant") if c in answers_lf.collect_schema().names()]
    with progress.track("validate", answers_lf.select(keys).unique().collect().height):
        parts = [validate_part(answers, features, manifest, list(chunk), out / PARTS_DIR / f"part-{i:05d}",
                               images=images, prompts=prompts, test_fraction=test_fraction, seed=seed,
                               config=config, kb=kb, image_root=image_root, conflicts=conflicts)
                 for i, chunk in enumerate(chunks(ans_ids, chunk_size))]
    summary = finish_instruction_set(out, parts, test_fraction=test_fraction, shard_size=shard_size, config=config,
                                     conflicts=conflicts)
    from pipeline.card import write_card  # README.md (Hugging Face dataset card) + card.html

    images_dir = Path(images) if images else None
    write_card(out, manifest, features, image_root or (images_dir.parent if images_dir else None), kb)
    return summary


PARTS_DIR = ".parts"


def validate_part(answers: str | Path, features: str | Path, manifest: str | Path, record_ids: list[str],
                  part_dir: str | Path, images: str | Path | None = None, prompts: str | Path | None = None,
                  test_fraction: float = 0.1, seed: int = 0, config: ValidationConfig = ValidationConfig(),
                  kb=None, image_root: str | Path | None = None, conflicts: str = "keep") -> Path:
    """Validate the answers of ``record_ids`` into ``part_dir`` (written whole, via a temporary folder):
    ``items.jsonl`` (accepted GEM items with their split, in record order), ``provenance.parquet`` (shard
    still empty), ``rejects.parquet`` and ``tally.json``. Reads only these records' rows of every table.
    ``conflicts``: 'keep' records whose measurements contradict a report statement (flagged in the
    provenance) or 'drop' them (reason ``report_conflict``)."""
    import shutil

    from pipeline import progress
    from pipeline.batch import write_parquet_atomic
    from pipeline.criteria import record_conflicts, statement_ids

    if conflicts not in CONFLICT_POLICIES:
        raise ValueError(f"conflicts must be one of {CONFLICT_POLICIES}, got {conflicts!r}")

    if kb is None:
        from pipeline.validate import default_knowledge

        kb = default_knowledge()
    part_dir = Path(part_dir)
    features = Path(features)
    images_dir = Path(images) if images else None
    chunk = list(record_ids)
    man_lf = pl.scan_parquet(manifest)
    man_cols = [c for c in ("record_id", "source", "patient_id", "report", "path", "n_samples", "fs_hz",
                            "reference", "meta_json") if c in man_lf.collect_schema().names()]
    man_all = man_lf.select(man_cols).filter(pl.col("record_id").is_in(chunk)).collect()
    patient_of = dict(zip(man_all["record_id"].to_list(), man_all["patient_id"].to_list())) \
        if "patient_id" in man_all.columns else {}
    prompt_info = _prompt_info(prompts, chunk)
    t = _Tally()
    prov_rows: list[dict] = []
    reject_rows: list[dict] = []
    unaccepted_rows: list[dict] = []  # one per record (variant) that ends without an accepted answer, and why
    items: list[dict] = []
    ans = pl.scan_parquet(answers).filter(pl.col("record_id").is_in(chunk)).collect()
    recs = pl.scan_parquet(_features_path(features, "records")).filter(pl.col("record_id").is_in(chunk)).collect()
    bts = pl.scan_parquet(_features_path(features, "beats")).filter(pl.col("record_id").is_in(chunk)).collect()
    ctxs = build_contexts(chunk, man_all, recs, bts, kb, images_dir, Path(image_root) if image_root else None)
    refs = {}
    if "reference" in man_all.columns:
        for r in man_all.select("record_id", "reference").iter_rows():
            refs[r[0]] = json.loads(r[1]) if r[1] else None
    if "variant" not in ans.columns:
        ans = ans.with_columns(pl.lit(None, pl.String).alias("variant"))
    variants_per_record = ans.group_by("record_id").agg(pl.col("variant").n_unique().alias("n"))
    multi = set(variants_per_record.filter(pl.col("n") > 1)["record_id"].to_list())
    conflicts_counted: set[str] = set()
    for (rid, variant), rows in ans.sort(["record_id", "variant", "attempt"], nulls_last=True) \
            .group_by(["record_id", "variant"], maintain_order=True):
        progress.tick()  # the validate stage's bar, when one is open
        t.records += 1
        ctx = ctxs.get(rid)
        item_id = f"{rid}-{variant}" if rid in multi and variant else rid
        split = assign_split(patient_of.get(rid), rid, test_fraction)
        accepted_row: tuple[dict, ValidationResult] | None = None
        last_reasons: list[str] = []
        last_details: list[str] = []
        any_answer = False
        found = [c.as_dict() for c in record_conflicts(ctx, kb)] if ctx is not None else []
        if ctx is not None and rid not in conflicts_counted:  # once per record, whatever its variants
            conflicts_counted.add(rid)
            _tally_conflicts(t, found, statement_ids(ctx, kb))
        for row in rows.iter_rows(named=True):
            t.attempts += 1
            t.cost_usd += row.get("cost_usd") or 0.0
            for k in ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens"):
                t.tokens[k] += row.get(k) or 0
            text = row.get("answer")
            if row.get("status") in _FAILED or text is None:
                continue
            any_answer = True
            if ctx is None:
                continue
            res = validate_answer(text, ctx, config, kb)
            t.attempts_validated += 1
            _tally_result(t, res, ctx)
            prompt = prompt_info.get((rid, variant)) or prompt_info.get((rid, None)) or {}
            prov = _provenance_row(item_id, row, res, prompt, ctx)
            prov["conflicts"] = found
            # the rendered PNG when --images is given, else the prompt's image, else the run layout's
            image = ctx.image_path or (None if images_dir is not None else
                                       prompt.get("image_path") or f"images/{rid}.png")
            if res.accepted and accepted_row is None and image is None:
                t.no_image += 1
                t.attempts_accepted += 1
                reject_rows.append({"id": item_id, "record_id": rid, "variant": variant,
                                    "attempt": row.get("attempt"), "backend": row.get("backend"),
                                    "model": row.get("model"), "answer": text, "reasons": ["no_image"],
                                    "details": [f"no {rid}.png under {images_dir}"]})
                last_reasons, last_details = ["no_image"], reject_rows[-1]["details"]
                prov_rows.append(prov)
                break  # every attempt of this record lacks the same image
            if res.accepted and accepted_row is None and found and conflicts == "drop":
                t.attempts_accepted += 1
                t.conflict_dropped += 1
                reject_rows.append({"id": item_id, "record_id": rid, "variant": variant,
                                    "attempt": row.get("attempt"), "backend": row.get("backend"),
                                    "model": row.get("model"), "answer": text, "reasons": ["report_conflict"],
                                    "details": [f"{c['statement']}: {c['criterion']} ({c['measured']})"
                                                for c in found]})
                last_reasons, last_details = ["report_conflict"], reject_rows[-1]["details"]
                prov_rows.append(prov)
                break  # the record stays out whatever the later attempts say: its report conflicts
            if res.accepted and accepted_row is None:
                accepted_row = (row, res)
                t.attempts_accepted += 1
                t.claims_acc += res.metrics.numeric_claims
                t.grounded_acc += res.metrics.numeric_grounded
                item = gem_item(item_id, ctx, text.strip(), pick_question(rid, seed), image, refs.get(rid))
                prov.update(in_set=True, split=split)
                items.append({"split": split, "item": item})
                t.split_counts[split] += 1
                t.patients[split].add(patient_of.get(rid) or f"record:{rid}")
                t.by_backend[row.get("backend") or "unknown"] += 1
            elif res.accepted:
                t.attempts_accepted += 1
            else:
                last_reasons, last_details = res.reasons, list(res.details)
                t.reasons_attempts.update(res.reasons)
                reject_rows.append({"id": item_id, "record_id": rid, "variant": variant,
                                    "attempt": row.get("attempt"), "backend": row.get("backend"),
                                    "model": row.get("model"), "answer": text,
                                    "reasons": res.reasons, "details": res.details})
            prov_rows.append(prov)
        if ctx is None:
            t.no_context += 1
        elif not any_answer:
            t.no_answer += 1
        if accepted_row is not None:
            t.records_accepted += 1
        else:
            final = last_reasons or (["no_context"] if ctx is None else ["no_answer"])
            t.reasons_final.update(final)
            unaccepted_rows.append({"id": item_id, "record_id": rid, "variant": variant, "reasons": list(final),
                                    "details": [str(d) for d in last_details]})

    tmp = part_dir.with_name(f".{part_dir.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with open(tmp / "items.jsonl", "w", encoding="utf-8") as fh:
        for it in items:
            fh.write(json.dumps(it, ensure_ascii=False) + "\n")
    write_parquet_atomic(pl.DataFrame(prov_rows, schema=PROVENANCE_SCHEMA), tmp / "provenance.parquet")
    write_parquet_atomic(pl.DataFrame(reject_rows, schema=REJECTS_SCHEMA), tmp / "rejects.parquet")
    write_parquet_atomic(pl.DataFrame(unaccepted_rows, schema=UNACCEPTED_SCHEMA), tmp / "unaccepted.parquet")
    (tmp / "tally.json").write_text(json.dumps(t.to_json()))
    shutil.rmtree(part_dir, ignore_errors=True)
    os.replace(tmp, part_dir)
    return part_dir


def finish_instruction_set(out: str | Path, parts: list[str | Path], test_fraction: float = 0.1,
                           shard_size: int = 5000, config: ValidationConfig = ValidationConfig(),
                           keep_parts: bool = False, conflicts: str = "keep") -> dict:
    """The instruction set from ``validate_part`` folders, in their order: GEM shards (items streamed, one
    part at a time), provenance with each item's shard, rejects, and the summary (``summary.json``)."""
    import shutil

    from pipeline.batch import ParquetStream

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.glob("train-*.json"), *out.glob("test-*.json")]:
        old.unlink()  # a re-run replaces the set; stale shards of a bigger earlier run must not survive
    writers = {s: ShardWriter(out, s, shard_size) for s in SPLITS}
    t = _Tally()
    prov_out = ParquetStream(out / "provenance.parquet", PROVENANCE_SCHEMA)
    rejects_out = ParquetStream(out / "rejects.parquet", REJECTS_SCHEMA)
    unaccepted_out = ParquetStream(out / UNACCEPTED_FILE, UNACCEPTED_SCHEMA)
    for part in map(Path, parts):  # one part in memory at a time
        shard_of: dict[str, str] = {}
        with open(part / "items.jsonl", encoding="utf-8") as fh:
            for line in fh:
                it = json.loads(line)
                shard_of[it["item"]["id"]] = writers[it["split"]].write(it["item"])
        prov = pl.read_parquet(part / "provenance.parquet")
        if shard_of:
            prov = prov.with_columns(pl.when(pl.col("in_set")).then(
                pl.col("id").replace_strict(shard_of, default=None, return_dtype=pl.String))
                .otherwise(pl.col("shard")).alias("shard"))
        prov_out.write(prov)
        rejects_out.write(pl.read_parquet(part / "rejects.parquet"))
        if (part / "unaccepted.parquet").is_file():  # a part validated by an older version has none
            unaccepted_out.write(pl.read_parquet(part / "unaccepted.parquet"))
        t.merge(_Tally.from_json(json.loads((part / "tally.json").read_text())))
    shards = [p.name for s in SPLITS for p in writers[s].close()]
    prov_out.close()
    rejects_out.close()
    unaccepted_out.close()
    summary = {
        "records": t.records,
        "records_accepted": t.records_accepted,
        "acceptance_rate": round(t.records_accepted / t.records, 4) if t.records else None,
        "attempts": t.attempts,
        "attempts_validated": t.attempts_validated,
        "attempts_accepted": t.attempts_accepted,
        "attempt_acceptance_rate": round(t.attempts_accepted / t.attempts_validated, 4)
        if t.attempts_validated else None,
        "rejection_reasons": dict(t.reasons_attempts.most_common()),
        "final_rejection_reasons": dict(t.reasons_final.most_common()),
        "numeric_claims": t.claims,
        "numeric_grounded": t.grounded,
        "grounding_precision": round(t.grounded / t.claims, 4) if t.claims else None,
        "grounding_precision_accepted": round(t.grounded_acc / t.claims_acc, 4) if t.claims_acc else None,
        # numeric claims split by the quantity their words name, so precision can be read per kind
        "claims_by_kind": {k: {"claims": t.claims_by_kind[k], "grounded": t.grounded_by_kind[k],
                               "grounding_precision": round(t.grounded_by_kind[k] / t.claims_by_kind[k], 4)}
                           for k in sorted(t.claims_by_kind)},
        "diagnosis_recall": _mean(t.dx_recall),
        "diagnosis_precision": _mean(t.dx_precision),
        "lead_coverage": _mean(t.lead_coverage),
        "words_mean": _mean(t.words),
        "tokens": dict(t.tokens),
        "cost_usd": round(t.cost_usd, 6),
        "accepted_by_backend": dict(t.by_backend),
        "splits": {s: t.split_counts[s] for s in SPLITS},
        "patients": {s: len(t.patients[s]) for s in SPLITS},
        "patients_in_both": len(t.patients["train"] & t.patients["test"]),
        "test_fraction": test_fraction,
        "shard_size": shard_size,
        "shards": shards,
        "no_context": t.no_context,
        "no_answer": t.no_answer,
        "no_image": t.no_image,
        "conflicts": _conflict_summary(t, conflicts),
        "validation_config": config.model_dump(exclude={"reference_ms", "reference_bpm", "reference_mv",
                                                        "reference_deg"}),
    }
    tmp = out / f".summary.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, out / "summary.json")
    if not keep_parts:
        for part in parts:
            shutil.rmtree(part, ignore_errors=True)
        if (out / PARTS_DIR).is_dir() and not any((out / PARTS_DIR).iterdir()):
            (out / PARTS_DIR).rmdir()
    return summary


def _tally_result(t: _Tally, res: ValidationResult, ctx: GroundingContext) -> None:
    m = res.metrics
    t.claims += m.numeric_claims
    t.grounded += m.numeric_grounded
    t.claims_by_kind.update(m.claims_by_kind)
    t.grounded_by_kind.update(m.grounded_by_kind)
    t.dx_recall.append(m.diagnosis_recall)
    t.dx_precision.append(m.diagnosis_precision)
    n_measured = len(ctx.measured_leads) or len(LEADS)
    t.lead_coverage.append(m.leads_covered / n_measured)
    t.words.append(m.words)


def _prompt_info(prompts: str | Path | None, record_ids: list[str] | None = None) -> dict[tuple, dict]:
    """(record_id, variant) and (record_id, None) -> {prompt_hash, template_version, image_path} from
    prompts.parquet (hashing the prompt text when the
    file carries no hash column)."""
    if not prompts:
        return {}
    lf = pl.scan_parquet(prompts)
    cols = lf.collect_schema().names()
    text_col = next((c for c in ("prompt", "prompt_text", "text", "user") if c in cols), None)
    if "prompt_hash" in cols or "prompt_sha256" in cols:
        # the prompt text (~24 KB a prompt) is read only to hash it when no hash is stored
        text_col = None
    keep = {"record_id", "variant", "prompt_hash", "prompt_sha256", "template_version", "image_path", text_col}
    lf = lf.select([c for c in cols if c in keep])
    if record_ids is not None:
        lf = lf.filter(pl.col("record_id").is_in(list(record_ids)))
    df = lf.collect()
    out: dict[str, dict] = {}
    text_col = next((c for c in ("prompt", "prompt_text", "text", "user") if c in df.columns), None)
    for r in df.iter_rows(named=True):
        h = r.get("prompt_hash") or r.get("prompt_sha256")
        if h is None and text_col and r.get(text_col) is not None:
            h = hashlib.sha256(str(r[text_col]).encode()).hexdigest()
        info = {"prompt_hash": h, "template_version": r.get("template_version"), "image_path": r.get("image_path")}
        out.setdefault((r["record_id"], r.get("variant")), info)
        out.setdefault((r["record_id"], None), info)
    return out


PROVENANCE_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.String, "record_id": pl.String, "variant": pl.String, "attempt": pl.Int32,
    "backend": pl.String, "model": pl.String, "provider_model": pl.String, "prompt_hash": pl.String,
    "template_version": pl.String, "request_key": pl.String, "prompt_tokens": pl.Int64,
    "completion_tokens": pl.Int64, "cached_tokens": pl.Int64, "reasoning_tokens": pl.Int64,
    "cost_usd": pl.Float64, "finish_reason": pl.String, "accepted": pl.Boolean, "reasons": pl.List(pl.String),
    "numeric_claims": pl.Int32, "numeric_grounded": pl.Int32, "grounding_precision": pl.Float64,
    "diagnosis_recall": pl.Float64, "diagnosis_precision": pl.Float64, "leads_named": pl.Int32,
    "leads_covered": pl.Int32, "words": pl.Int32, "statement_ids": pl.List(pl.String),
    "in_set": pl.Boolean, "split": pl.String, "shard": pl.String,
    "conflicts": pl.List(pl.Struct({"statement": pl.String, "criterion": pl.String, "measured": pl.String})),
}
REJECTS_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.String, "record_id": pl.String, "variant": pl.String, "attempt": pl.Int32, "backend": pl.String,
    "model": pl.String, "answer": pl.String, "reasons": pl.List(pl.String), "details": pl.List(pl.String),
}
# Every record (variant) that ended without an accepted answer, with its last attempt's validator reason codes
# (or no_answer / no_context when nothing could be validated): what the chain lists as validate:<code> failures.
UNACCEPTED_FILE = "unaccepted.parquet"
UNACCEPTED_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.String, "record_id": pl.String, "variant": pl.String, "reasons": pl.List(pl.String),
    "details": pl.List(pl.String),
}


def _provenance_row(item_id: str, row: dict, res: ValidationResult, prompt: dict, ctx: GroundingContext) -> dict:
    m = res.metrics
    tv = prompt.get("template_version")
    return {
        "id": item_id, "record_id": row["record_id"], "variant": row.get("variant"), "attempt": row.get("attempt"),
        "backend": row.get("backend"), "model": row.get("model"), "provider_model": row.get("provider_model"),
        "prompt_hash": prompt.get("prompt_hash"), "template_version": None if tv is None else str(tv),
        "request_key": row.get("request_key"), "prompt_tokens": row.get("prompt_tokens"),
        "completion_tokens": row.get("completion_tokens"), "cached_tokens": row.get("cached_tokens"),
        "reasoning_tokens": row.get("reasoning_tokens"), "cost_usd": row.get("cost_usd"),
        "finish_reason": row.get("finish_reason"), "accepted": res.accepted, "reasons": res.reasons,
        "numeric_claims": m.numeric_claims, "numeric_grounded": m.numeric_grounded,
        "grounding_precision": m.grounding_precision, "diagnosis_recall": m.diagnosis_recall,
        "diagnosis_precision": m.diagnosis_precision, "leads_named": m.leads_named,
        "leads_covered": m.leads_covered, "words": m.words, "statement_ids": list(ctx.statement_ids),
        "in_set": False, "split": None, "shard": None, "conflicts": [],
    }
