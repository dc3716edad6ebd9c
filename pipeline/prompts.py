"""Knowledge-guided prompts with exact token counts, within a token budget.

One prompt per (record, variant): a static system message (role, lead-by-lead reading guidance, writing
rules; identical for every record of a variant, so providers can cache it as a prefix) and a record-specific
user message (this record's diagnoses with the knowledge criteria that test them next to the measured
values, whole-ECG measurements, a per-lead table, and a beat-by-beat table).

Variants: ``multimodal`` (GPT-4o; the image is attached by the generate stage), ``text`` (DeepSeek-R1 and
other text models; ``<image>`` placeholder the model must not call missing), ``json`` (structured output
matching ``prompts/answer_schema.json``).

Budget (default 6,000 prompt tokens, a hard cap): the beat-by-beat table shows all leads of a representative
subset of beats (the most typical normal beat first, then one of each ectopic class, then beats spread over
the record), as many as fit; if not even one fits, it is replaced by the per-lead summary alone. Text is never
cut mid-way. Image tokens (GPT-4o tile formula, detail high) are counted separately.

CLI: ``ecg-grounding prompts --source NAME --root DIR --features DIR --out DIR [--images DIR]
[--variant multimodal|text|json|all] [--budget N]`` writes ``OUT/prompts.parquet`` and ``OUT/errors.parquet``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import jinja2
import polars as pl

from pipeline.answer_form import MAX_WORDS
from pipeline.context import GroundingContext
from pipeline.knowledge import KnowledgeBase, load_knowledge
from pipeline.record import LEADS, RecordError
from pipeline.tokens import TokenCounter, image_size, image_tokens

TEMPLATE_DIR = Path(__file__).resolve().parents[1] / "prompts"
TEMPLATE_FILES = ("system.j2", "user.j2", "answer_schema.json")
VARIANTS = ("multimodal", "text", "json")
IMAGE_VARIANTS = ("multimodal",)  # variants whose prompt says "the image is attached": never without it
DEFAULT_BUDGET = 6000
# Target model per variant: GPT-4o reads images and JSON mode; DeepSeek-R1 stands for the text models.
DEFAULT_MODELS = {"multimodal": "gpt-4o", "text": "deepseek-reasoner", "json": "gpt-4o"}

PROMPTS_SCHEMA: dict[str, pl.DataType] = {
    "record_id": pl.String,
    "variant": pl.String,
    "system": pl.String,
    "user": pl.String,
    "image_path": pl.String,          # relative to the run folder (the prompts folder's parent)
    "template_version": pl.String,    # sha256 (12 hex) of the template files
    "prompt_hash": pl.String,         # sha256 of system, user and image path
    "prompt_tokens": pl.Int64,        # system + user + chat framing, target model's tokenizer
    "image_tokens": pl.Int64,         # GPT-4o high-detail tiles (0 for the text variant or no image)
    "budget": pl.Int64,
    "statement_ids": pl.List(pl.String),
    "beats_shown": pl.List(pl.Int32),  # beats in the beat-by-beat table ([] = per-lead summary only)
    "beats_total": pl.Int32,
    "model": pl.String,
    "token_method": pl.String,        # exact:o200k_base | approx:o200k_base
    "static_tokens": pl.Int64,        # tokens of the static prefix (system message + its framing)
    "knowledge_version": pl.String,
}

# Per-lead table columns: (header, beats column)
_LEAD_COLS = [("P mV", "p_amp_mv"), ("P ms", "p_ms"), ("PR", "pr_ms"), ("Q mV", "q_amp_mv"), ("Q ms", "q_ms"),
              ("R mV", "r_amp_mv"), ("R' mV", "r_prime_amp_mv"), ("S mV", "s_amp_mv"), ("QRS", "qrs_ms"),
              ("ST J", "st_j_mv"), ("ST60", "st_j60_mv"), ("T mV", "t_amp_mv"), ("T", "t_form"), ("QT", "qt_ms"),
              ("QRS form", "qrs_morphology")]
# Beat-by-beat: GEM's FeatureDB fields (features.featuredb.FEATUREDB_SCHEMA). Per beat one line with rate and
# intervals, then per lead the amplitudes and forms.
_BEAT_LINE = [("HR", "hr_bpm"), ("PR", "pr_ms"), ("QRS", "qrs_ms"), ("QT", "qt_ms"), ("QTc", "qtc_ms")]
_FDB_COLS = [("P mV", "p_amp_mv"), ("QRS mV", "qrs_amp_mv"), ("R mV", "r_amp_mv"), ("S mV", "s_amp_mv"),
             ("ST mV", "st_level_mv"), ("ST", "st_form"), ("T mV", "t_amp_mv"), ("T", "t_form")]


@lru_cache(maxsize=1)
def template_version() -> str:
    """sha256 (first 12 hex digits) over the template files, in a fixed order."""
    h = hashlib.sha256()
    for name in TEMPLATE_FILES:
        h.update(name.encode() + b"\0" + (TEMPLATE_DIR / name).read_bytes() + b"\0")
    return h.hexdigest()[:12]


@lru_cache(maxsize=1)
def knowledge_version() -> str:
    """sha256 (first 12 hex digits) over the knowledge YAML files."""
    from pipeline.knowledge import KNOWLEDGE_DIR

    h = hashlib.sha256()
    for f in sorted(KNOWLEDGE_DIR.glob("*.yaml")):
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:12]


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False,
                              autoescape=False)


def answer_schema() -> dict:
    """The JSON schema of the ``json`` variant's answer."""
    return json.loads((TEMPLATE_DIR / "answer_schema.json").read_text(encoding="utf-8"))


@lru_cache(maxsize=8)
def render_system(variant: str, max_words: int = MAX_WORDS) -> str:
    """The static system message of ``variant`` (the same for every record: the cacheable prefix)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {VARIANTS}")
    schema = json.dumps(answer_schema(), separators=(",", ":")) if variant == "json" else ""
    return _env().get_template("system.j2").render(variant=variant, max_words=max_words, json_schema=schema,
                                                   cut=_reading_cutoffs()).strip()


def _reading_cutoffs() -> dict[str, str]:
    """The reference numbers the system message quotes, from the one cut-off table (never spelled in a template)."""
    from pipeline.cutoffs import band, cutoff

    def n(x: float) -> str:
        return f"{x:g}"

    axis, pr = band("axis_normal_deg"), band("pr_normal_ms")
    return {"axis_lo": n(axis[0]), "axis_hi": n(axis[1]), "pr_lo": n(pr[0]), "pr_hi": n(pr[1]),
            "qrs_normal": n(cutoff("qrs_normal_max_ms")), "qrs_wide": n(cutoff("qrs_wide_ms")),
            "qtc_men": n(cutoff("qtc_prolonged_ms", "male")), "qtc_women": n(cutoff("qtc_prolonged_ms", "female"))}


# --- formatting -----------------------------------------------------------------------------------------

def _fmt(column: str, value) -> str:
    """A table cell: ms integers, mV 2 decimals, '-' for null."""
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if column.endswith("_mv"):
        text = f"{value:.2f}"
        return "0.00" if text == "-0.00" else text
    text = f"{value:.0f}"
    return "0" if text == "-0" else text


def _unit(column: str) -> str:
    for suffix, unit in (("_ms", " ms"), ("_mv", " mV"), ("_bpm", " bpm"), ("_deg", " deg")):
        if column.endswith(suffix):
            return unit
    return ""


def global_line(record: dict, ctx: GroundingContext | None = None) -> str:
    """Whole-ECG measurements in one line, with units; nulls left out. With ``ctx``, a value it may not cite
    (``GroundingContext.citable``: amplitudes of an uncalibrated record, axes computed from them) is shown as
    'not reliably measurable' instead of its number."""
    items = [("heart rate", "hr_bpm"), ("RR mean", "rr_mean_ms"), ("RR SD", "rr_sd_ms"),
             ("PR", "pr_ms"), ("QRS", "qrs_ms"), ("QT", "qt_ms"), ("QTc Bazett", "qtc_bazett_ms"),
             ("QTc Fridericia", "qtc_fridericia_ms"), ("P axis", "p_axis_deg"), ("QRS axis", "qrs_axis_deg"),
             ("T axis", "t_axis_deg"), ("Sokolow-Lyon", "sokolow_lyon_mv"), ("Cornell", "cornell_mv")]

    def ok(col: str) -> bool:
        return ctx is None or ctx.citable(col)

    parts = [f"{label} {_fmt(col, record.get(col))}{_unit(col)}" if ok(col) else f"{label} {UNCITABLE}"
             for label, col in items if record.get(col) is not None]
    for label, col in (("rhythm regular", "rhythm_regular"), ("P waves before QRS", "p_waves_present"),
                       ("low limb-lead voltage", "low_voltage_limb"),
                       ("low chest-lead voltage", "low_voltage_precordial")):
        if record.get(col) is not None:
            parts.append(f"{label} {_fmt(col, record[col])}" if ok(col) else f"{label} {UNCITABLE}")
    if record.get("av_dissociation") is True:  # said only where found (features.av_dissociation): P waves at their own rate
        parts.append("P waves dissociated from the QRS (own regular rate) yes")
    for label, col in (("premature beats", "n_premature"), ("paced beats", "n_paced"), ("beats", "n_beats")):
        if record.get(col) is not None:
            parts.append(f"{label} {int(record[col])}")
    return "; ".join(parts) if parts else "none measurable"


UNCITABLE = "not reliably measurable"


def _citable_columns(ctx: GroundingContext, cols: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (header, column) pairs citable in at least one measured lead: a column no lead may cite (millivolts
    of an uncalibrated record) is left out of the table rather than filled with markers."""
    leads = ctx.measured_leads
    return [(h, c) for h, c in cols if any(ctx.citable(c, lead) for lead in leads)] if leads else list(cols)


def _cell(ctx: GroundingContext, lead: str, col: str, value) -> str:
    return _fmt(col, value) if ctx.citable(col, lead) else "n/m"


def lead_table(ctx: GroundingContext) -> str:
    """Per-lead values (``pipeline.derived.lead_value``: the median beat of each measured lead; a Q, S or R' only
    where the lead's usual QRS pattern has it), pipe-separated; columns no lead may cite are left out, single
    values a lead may not cite read 'n/m'."""
    from pipeline.derived import lead_value as value

    cols = _citable_columns(ctx, _LEAD_COLS)
    rows = ["lead|" + "|".join(h for h, _ in cols)]
    for lead in ctx.measured_leads:
        rows.append(lead + "|" + "|".join(_cell(ctx, lead, c, value(ctx, lead, c)) for _, c in cols))
    return "\n".join(rows)


def beat_rows(ctx: GroundingContext) -> dict[int, list[str]]:
    """The beat-by-beat block of every beat: one line with the beat's time, class, rate and intervals, then
    one row per measured lead with FeatureDB's per-beat fields (``features.featuredb.featuredb_rows``: P,
    QRS peak-to-peak, R, S, ST level and form, T and its form). Intervals are the upper median over leads.
    Columns no lead may cite are left out (``beat_header``)."""
    from features.featuredb import featuredb_rows

    fdb = featuredb_rows(ctx.beats)
    measured = set(ctx.measured_leads)
    cols = _citable_columns(ctx, _FDB_COLS)
    rank = {lead: i for i, lead in enumerate(LEADS)}
    leads_rows: dict[int, list[tuple[int, str]]] = {}
    beat_vals: dict[int, dict[str, list]] = {}
    for r in fdb.iter_rows(named=True):
        lead, beat = r["lead"], r["beat"]
        if lead not in measured:
            continue
        vals = beat_vals.setdefault(beat, {"time_ms": [], "beat_class": [], **{c: [] for _, c in _BEAT_LINE}})
        for key in vals:
            if r.get(key) is not None:
                vals[key].append(r[key])
        row = lead + "|" + "|".join(_cell(ctx, lead, c, r.get(c)) for _, c in cols)
        leads_rows.setdefault(beat, []).append((rank[lead], row))
    out: dict[int, list[str]] = {}
    for beat, rows in leads_rows.items():
        v = beat_vals[beat]
        t = _upper_median(v["time_ms"])
        cls = max(sorted(set(v["beat_class"])), key=v["beat_class"].count) if v["beat_class"] else "uncertain"
        parts = [f"{label} {_fmt(c, _upper_median(v[c]))}{_unit(c)}" for label, c in _BEAT_LINE if v[c]]
        head = f"beat {beat} (R at {_fmt('time_ms', t)} ms, {cls})" + (": " + ", ".join(parts) if parts else "")
        out[beat] = [head] + [row for _, row in sorted(rows)]
    return out


def _upper_median(values: list):
    values = [x for x in values if x is not None and x == x]
    return sorted(values)[len(values) // 2] if values else None


def beat_header(ctx: GroundingContext | None = None) -> str:
    cols = _FDB_COLS if ctx is None else _citable_columns(ctx, _FDB_COLS)
    return "lead|" + "|".join(h for h, _ in cols)


def representative_beats(ctx: GroundingContext) -> list[int]:
    """Beats in the order they should be shown when not all fit: the most typical normal beat (RR closest to
    the median), then the first beat of each other class (premature, paced, uncertain), then the remaining
    beats spread over the record (each next one farthest from those already chosen)."""
    b = ctx.beats
    if b.height == 0:
        return []
    ok = b.filter(~pl.col("lead").is_in(list(ctx.gated_leads))) if ctx.gated_leads else b
    per_beat = (ok.group_by("beat").agg(pl.col("rr_ms").median().alias("rr"),
                                       pl.col("beat_class").drop_nulls().mode().first().alias("cls"))
                .sort("beat"))
    beats = per_beat["beat"].to_list()
    if not beats:
        return []
    cls = dict(zip(beats, per_beat["cls"].to_list()))
    rr = dict(zip(beats, per_beat["rr"].to_list()))
    normal = [x for x in beats if (cls[x] or "normal") == "normal"]
    rr_known = [rr[x] for x in normal if rr[x] is not None]
    order: list[int] = []
    if normal:
        if rr_known:
            med = sorted(rr_known)[len(rr_known) // 2]
            first = min(normal, key=lambda x: (abs(rr[x] - med) if rr[x] is not None else 1e9, x))
        else:
            first = normal[len(normal) // 2]
        order.append(first)
    seen_cls: set[str] = set()
    for x in beats:
        c = cls[x] or "normal"
        if c != "normal" and c not in seen_cls:
            seen_cls.add(c)
            order.append(x)
    rest = [x for x in beats if x not in order]
    while rest:
        nxt = max(rest, key=lambda x: (min(abs(x - y) for y in order) if order else 0, -x))
        order.append(nxt)
        rest.remove(nxt)
    return order


# --- assembly -------------------------------------------------------------------------------------------

@dataclass
class Prompt:
    record_id: str
    variant: str
    system: str
    user: str
    image_path: str | None
    prompt_tokens: int
    image_tokens: int
    budget: int
    statement_ids: list[str]
    beats_shown: list[int]
    beats_total: int
    model: str
    token_method: str
    static_tokens: int
    template_version: str = field(default_factory=template_version)
    knowledge_version: str = field(default_factory=knowledge_version)

    @property
    def prompt_hash(self) -> str:
        h = hashlib.sha256()
        for part in (self.system, self.user, self.image_path or ""):
            h.update(part.encode() + b"\0")
        return h.hexdigest()

    def messages(self) -> list[dict]:
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.user}]

    def row(self) -> dict:
        return {"record_id": self.record_id, "variant": self.variant, "system": self.system, "user": self.user,
                "image_path": self.image_path, "template_version": self.template_version,
                "prompt_hash": self.prompt_hash, "prompt_tokens": self.prompt_tokens,
                "image_tokens": self.image_tokens, "budget": self.budget, "statement_ids": self.statement_ids,
                "beats_shown": self.beats_shown, "beats_total": self.beats_total, "model": self.model,
                "token_method": self.token_method, "static_tokens": self.static_tokens,
                "knowledge_version": self.knowledge_version}


def diagnosis_blocks(ctx: GroundingContext, kb: KnowledgeBase) -> list[dict]:
    """This record's diagnoses with each criterion, the rule it applies (the record's sex picks sex-specific
    cut-offs) and the citable values that test it, judged by ``pipeline.criteria`` (the writer and the
    provenance judge the same way). Values the record may not cite read 'not reliably measurable'; a
    statement its measurements contradict carries a 'not met' line, so the answer names it without citing
    those values as support."""
    from pipeline.criteria import evaluate

    sex = (ctx.extra or {}).get("sex")
    blocks = []
    measured = ctx.measured_leads
    for sid in dict.fromkeys(ctx.statement_ids):
        entry = kb.entries.get(sid)
        if entry is None:
            continue
        verdict = evaluate(ctx, sid, kb)
        crits = []
        voltage = 0
        for r in verdict.results:
            c = r.criterion
            if r.status == "uncitable" and not ctx.amplitudes_calibrated:
                voltage += 1  # no voltage criterion on a record whose millivolts mean nothing (issue 13)
                continue
            role = {"any_of": " (one alternative is enough)", "supportive": " (supportive only)"}.get(c.role, "")
            rule = c.threshold_text(sex)
            measured_text = _measured_text(r)
            crits.append(c.text + role + (f" [{rule}]" if rule else "") +
                         (f"; measured: {measured_text}" if measured_text else ""))
        if voltage:
            crits.append(f"{voltage} amplitude criteri{'on' if voltage == 1 else 'a'}: cannot be judged on this "
                         f"recording (amplitudes not calibrated)")
        look = [lead for lead in entry.leads_to_look_at if lead in measured] or entry.leads_to_look_at
        blocks.append({"id": entry.id, "name": entry.name, "category": entry.category,
                       "mechanism": entry.mechanism, "leads": ", ".join(look) if look else "all leads",
                       "criteria": crits,
                       "not_met": "; ".join(f"{cf.criterion} ({cf.measured})" for cf in verdict.conflicts)})
    return blocks


def _measured_text(r) -> str:
    """The citable values that test one criterion, with met / not met; 'not reliably measurable' for values the
    record may not cite; '' for a criterion judged by eye or with nothing measured."""
    from pipeline.criteria import format_reading_value

    c = r.criterion
    if r.status == "by_eye":
        return "judge it on the tracing"
    if not r.readings:
        return UNCITABLE if r.status == "uncitable" else "not measured"
    if r.readings[0].lead is None:
        x = r.readings[0]
        return f"{format_reading_value(x.column, x.value)} ({'met' if x.met else 'not met'})"
    n_met = sum(bool(x.met) for x in r.readings)
    need = {"all": "needed in every one", "two_contiguous": "needed in two contiguous leads"}.get(c.require, "")
    text = ", ".join(f"{x.lead} {format_reading_value(x.column, x.value)}" for x in r.readings)
    text += f" (met in {n_met} of {len(r.readings)} leads{'; ' + need if need else ''}: " \
            f"{'met' if r.status == 'met' else 'not met'})"
    if r.uncitable:
        text += f"; {UNCITABLE} in {', '.join(lead for lead, _ in r.uncitable if lead)}"
    return text


def ectopy_text(ctx: GroundingContext) -> str:
    """The early beats from the beat table, one line each: position, RR before and after, QRS, P wave, origin
    (supraventricular: the dominant QRS; ventricular: wide and unlike it; never both), and the pattern."""
    from pipeline import derived

    beats = derived.ectopic_beats(ctx)
    if not beats:
        return ""
    words = {"supraventricular": "supraventricular (QRS like the conducted beats)",
             "ventricular": "ventricular (wide QRS unlike the conducted beats)",
             "unclassified": "origin unclear (QRS unlike the dominant beats', not clearly ventricular)"}
    lines = []
    for e in beats:
        bits = [f"beat {e.beat} (number {e.ordinal}) at {_fmt('time_ms', e.time_ms)} ms"]
        if e.coupling_ms is not None:
            bits.append(f"RR before {_fmt('rr_ms', e.coupling_ms)} ms")
        if e.next_rr_ms is not None:
            bits.append(f"RR after {_fmt('rr_ms', e.next_rr_ms)} ms" + (" (fully compensatory)" if e.compensatory
                                                                         else ""))
        if e.qrs_ms is not None:
            bits.append(f"QRS {_fmt('qrs_ms', e.qrs_ms)} ms")
        bits.append("P wave before it" if e.p_before else "no P wave before it")
        bits.append(words[e.origin])
        lines.append("- " + ", ".join(bits))
    pattern = derived.record_value(ctx, "ectopic_pattern")
    basic = derived.record_value(ctx, "basic_rr_ms")
    head = f"pattern: {pattern}" + (f"; basic RR {_fmt('rr_ms', basic)} ms" if basic is not None else "")
    return head + "\n" + "\n".join(lines)


def _patient(ctx: GroundingContext) -> str:
    age, sex = ctx.extra.get("age_years"), ctx.extra.get("sex")
    parts = []
    if age is not None:
        parts.append(f"{age:.0f} years")
    if sex:
        parts.append(str(sex))
    return ", ".join(parts)


def _gated_text(ctx: GroundingContext) -> str:
    q = ctx.beats.select("lead", "lead_quality").unique() if ctx.beats.height else None
    if q is None:
        return ""
    reasons = {r["lead"]: (r["lead_quality"] or "").split(":", 1)[-1] for r in q.iter_rows(named=True)
               if (r["lead_quality"] or "").startswith("gated")}
    return ", ".join(f"{lead} ({reasons[lead]})" for lead in LEADS if lead in reasons)


@dataclass
class _Material:
    """The record-specific parts of a prompt, shared by its variants (computed once per context)."""

    patient: str
    diagnoses: list[dict]
    globals: str
    gated: str
    lead_table: str
    ectopy: str
    uncalibrated: str
    order: list[int]
    rows_by_beat: dict[int, list[str]]
    beat_costs: dict[str, list[int]]


def _material(ctx: GroundingContext, kb: KnowledgeBase) -> _Material:
    key = (id(ctx.beats), id(kb), tuple(ctx.statement_ids))
    cached = ctx.__dict__.get("_prompt_material")
    if cached is not None and cached[0] == key:
        return cached[1]
    rows = beat_rows(ctx)
    order = [b for b in representative_beats(ctx) if b in rows]
    m = _Material(patient=_patient(ctx), diagnoses=diagnosis_blocks(ctx, kb), globals=global_line(ctx.record, ctx),
                  gated=_gated_text(ctx), lead_table=lead_table(ctx), ectopy=ectopy_text(ctx),
                  uncalibrated=_uncalibrated_text(ctx), order=order, rows_by_beat=rows, beat_costs={})
    ctx.__dict__["_prompt_material"] = (key, m)
    return m


def _uncalibrated_text(ctx: GroundingContext) -> str:
    """Why this record's millivolts are left out (its calibration flags), or ''."""
    if ctx.amplitudes_calibrated:
        return ""
    return ", ".join(ctx.calibration_flags) or "amplitude_uncalibrated"


def _beats_label(shown: list[int], total: int) -> str:
    return f"{', '.join(map(str, shown))} of {total}"


def build_prompt(ctx: GroundingContext, variant: str = "multimodal", budget: int = DEFAULT_BUDGET,
                 kb: KnowledgeBase | None = None, model: str | None = None, image_file: str | Path | None = None,
                 max_words: int = MAX_WORDS) -> Prompt:
    """Assemble one prompt for ``ctx`` within ``budget`` prompt tokens (exact count for ``model``).

    ``image_file`` (a PNG on disk) is only read for its size (image tokens). Raises
    ``RecordError('prompt_failed')`` when even the per-lead summary alone exceeds the budget.
    """
    kb = kb or load_knowledge()
    model = model or DEFAULT_MODELS[variant]
    counter = TokenCounter(model)
    system = render_system(variant, max_words)
    static_tokens = counter.count_messages([{"role": "system", "content": system}]) - 3  # minus reply priming
    m = _material(ctx, kb)
    fixed = dict(variant=variant, max_words=max_words, patient=m.patient, diagnoses=m.diagnoses,
                 globals=m.globals, gated=m.gated, lead_table=m.lead_table, ectopy=m.ectopy,
                 uncalibrated=m.uncalibrated)
    template = _env().get_template("user.j2")
    order = m.order
    total = len(order)
    rows_by_beat = m.rows_by_beat

    def render(k: int) -> tuple[str, list[int]]:
        shown = sorted(order[:k])
        table = "\n".join([beat_header(ctx)] + [r for b in shown for r in rows_by_beat[b]]) if shown else ""
        return template.render(beat_table=table, beats_label=_beats_label(shown, total), **fixed).strip(), shown

    def tokens(user: str) -> int:
        return counter.count_messages([{"role": "system", "content": system}, {"role": "user", "content": user}])

    # Estimate each beat's cost from its rows, pick the largest k the estimate allows, then count exactly and
    # step down until the exact count fits (row tokens add up almost exactly: rows end in newlines).
    base_user, _ = render(0)
    base = tokens(base_user)
    per_beat = m.beat_costs.get(counter.encoding_name)
    if per_beat is None:
        per_beat = m.beat_costs[counter.encoding_name] = [counter.count("\n".join(rows_by_beat[b]) + "\n")
                                                           for b in order]
    header_cost = counter.count(beat_header(ctx) + "\n") + 40  # header + the table's caption line
    k, spent = 0, base + header_cost
    while k < total and spent + per_beat[k] <= budget:
        spent += per_beat[k]
        k += 1
    while True:
        user, shown = render(k)
        n = tokens(user) if k else base
        if n <= budget or k == 0:
            break
        k -= 1
    if n > budget:
        raise RecordError("prompt_failed", f"the prompt needs {n} tokens without any beat table, over the budget "
                          f"of {budget}", ctx.record_id)
    img_tokens = 0
    if image_file is not None and variant != "text" and Path(image_file).is_file():
        w, h = image_size(image_file)
        img_tokens = image_tokens(w, h, "high")
    return Prompt(record_id=ctx.record_id, variant=variant, system=system, user=user,
                  image_path=ctx.image_path, prompt_tokens=n, image_tokens=img_tokens, budget=budget,
                  statement_ids=[s for s in dict.fromkeys(ctx.statement_ids) if s in kb.entries],
                  beats_shown=shown, beats_total=total, model=model, token_method=counter.method,
                  static_tokens=static_tokens)


# --- stage ----------------------------------------------------------------------------------------------

@dataclass
class PromptsSummary:
    n_records: int = 0
    n_prompts: int = 0
    n_failed: int = 0
    tokens_mean: float = 0.0
    tokens_max: int = 0
    seconds: float = 0.0
    prompts_path: str = ""
    errors_path: str = ""


def _image_index(images_dir: Path | None, record_ids: list[str] | None = None) -> dict[str, Path]:
    """record id -> image file, from the render manifest when present, else ``<id>.png`` / ``<id>-0.png``."""
    from pipeline.inputs import read_parquet_checked

    if images_dir is None or not images_dir.is_dir():
        return {}
    out: dict[str, Path] = {}
    manifest = images_dir / "manifest.parquet"
    if manifest.is_file():
        frame = read_parquet_checked(manifest, "images manifest", ("record_id", "image_path"),
                                     select=("record_id", "image_path"), record_ids=record_ids)
        for rid, rel in frame.iter_rows():
            out[rid] = images_dir / rel
        return out
    for p in images_dir.glob("*.png"):
        stem = p.stem[:-2] if p.stem.endswith("-0") else p.stem
        out.setdefault(stem, p)
    return out


def run_prompts(source: str | None, root, features_dir, out_dir, images_dir=None, variants=VARIANTS,
                budget: int = DEFAULT_BUDGET, manifest=None, model: str | None = None, limit: int | None = None,
                kb: KnowledgeBase | None = None, record_ids: list[str] | None = None, run_dir=None,
                **source_options) -> PromptsSummary:
    """Build prompts for every measured record of ``features_dir``; write ``out_dir/prompts.parquet``
    (``PROMPTS_SCHEMA``, one row per record and variant) and ``out_dir/errors.parquet``.

    Record metadata comes from the ingest ``manifest`` when given, else from ``open_source(source, root)``.
    ``image_path`` is stored relative to the run folder (``out_dir``'s parent when ``out_dir`` is named
    'prompts', else ``out_dir``, or ``run_dir`` when given), which is where the generate stage resolves it.
    ``record_ids``: only these records (one chunk of the chain, written to its own ``out_dir``).
    """
    from pipeline.batch import ErrorRow, error_row, errors_frame, write_parquet_atomic
    from pipeline.context import iter_contexts
    from pipeline.inputs import (check_features, check_same_run, copy_stamp, read_features_table,
                                 read_parquet_checked)

    if source is None and manifest is None:
        raise ValueError("record metadata needs --source/--root or --manifest")
    t0 = time.perf_counter()
    kb = kb or load_knowledge()
    # inputs first: a damaged or foreign table is one line and exit 2, not a polars traceback mid-way
    check_features(features_dir)
    measured = read_features_table(features_dir, "records", record_ids).select("record_id")["record_id"].to_list()
    if manifest is not None and not isinstance(manifest, pl.DataFrame):
        manifest_path = manifest
        manifest = read_parquet_checked(manifest, "manifest", ("record_id", "meta_json"), record_ids=record_ids)
    else:
        manifest_path = "(given frame)"
    no_metadata = check_same_run(features_dir, measured, manifest=manifest, manifest_path=manifest_path,
                                 source=source, root=root)
    out = Path(out_dir)
    if images_dir is not None and not Path(images_dir).is_dir():
        from pipeline.record import TableError

        raise TableError("missing_input", f"images folder {images_dir} is missing (render's --out)", images_dir)
    images = _image_index(Path(images_dir) if images_dir else None, record_ids)
    out.mkdir(parents=True, exist_ok=True)
    copy_stamp(features_dir, out)  # the prompts carry the identity of the records they describe
    run_dir = Path(run_dir) if run_dir is not None else out.parent if out.name == "prompts" else out
    rows: list[dict] = []
    errors = [ErrorRow(rid, "prompts", "error", "bad_metadata", None, f"measured in {features_dir} but not in "
                       f"the manifest {manifest_path}") for rid in sorted(no_metadata)]
    summary = PromptsSummary(n_failed=len(errors))
    from pipeline import progress

    n_measured = len(measured)
    contexts = progress.iterate("prompts", iter_contexts(features_dir, source, root, manifest=manifest, kb=kb,
                                                         record_ids=record_ids, **source_options),
                                total=n_measured if limit is None else min(limit, n_measured))
    while True:
        try:
            ctx = next(contexts)
        except StopIteration:
            break
        except RecordError as exc:  # the source could not give this record's metadata
            errors.append(error_row(exc.record_id, "prompts", exc))
            summary.n_failed += 1
            continue
        if limit is not None and summary.n_records >= limit:
            break
        summary.n_records += 1
        img = images.get(ctx.record_id)
        has_image = img is not None and img.is_file()
        if has_image:
            ctx.image_path = os.path.relpath(img, run_dir)
        for variant in variants:
            if variant in IMAGE_VARIANTS and not has_image:
                # a vision model would be asked to read an ECG it was never sent: no such prompt, ever
                where = f"{img} is missing" if img is not None else \
                    f"no image of it in {images_dir}" if images_dir else "no --images folder given"
                errors.append(ErrorRow(ctx.record_id, "prompts", "error", "missing_image", None,
                                       f"{variant} prompt not written: {where}"))
                summary.n_failed += 1
                continue
            try:
                p = build_prompt(ctx, variant, budget, kb, model=model, image_file=img)
                rows.append(p.row())
            except Exception as exc:  # one bad record must not stop the batch; bugs show as internal_error
                errors.append(error_row(ctx.record_id, "prompts", exc))
                summary.n_failed += 1
    df = pl.DataFrame(rows, schema=PROMPTS_SCHEMA)
    prompts_path = write_parquet_atomic(df, out / "prompts.parquet")
    errors_path = write_parquet_atomic(errors_frame(errors), out / "errors.parquet")
    summary.n_prompts = df.height
    if df.height:
        summary.tokens_mean = float(df["prompt_tokens"].mean())
        summary.tokens_max = int(df["prompt_tokens"].max())
    summary.seconds = time.perf_counter() - t0
    summary.prompts_path, summary.errors_path = str(prompts_path), str(errors_path)
    return summary


def _run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from pipeline.batch import collect_failures
    from pipeline.cli import finish
    from pipeline.preflight import check_out, check_root
    from pipeline.record import ConfigError

    if args.manifest is None and args.source is None:
        raise ConfigError("record metadata needs --manifest (ingest's manifest.parquet) or --source and --root")
    if args.source is not None:
        check_root(args.source, args.root)
    check_out(args.out)
    variants = VARIANTS if "all" in args.variant else tuple(dict.fromkeys(args.variant))
    s = run_prompts(args.source, args.root, args.features, args.out, images_dir=args.images,
                    variants=variants, budget=args.budget, manifest=args.manifest, model=args.model,
                    limit=args.limit)
    text = (f"prompts: {s.n_prompts} prompts for {s.n_records} records ({s.n_failed} failed), tokens mean "
            f"{s.tokens_mean:.0f} max {s.tokens_max} (budget {args.budget}) in {s.seconds:.1f} s -> "
            f"{s.prompts_path} (errors: {s.errors_path})")
    return finish(args, asdict(s), text, collect_failures([s.errors_path]))


def register(subparsers) -> None:
    from pipeline.preflight import positive_int
    from pipeline.sources import SOURCE_NAMES

    p = subparsers.add_parser(
        "prompts", help="knowledge-guided prompts with exact token counts",
        description="Build one prompt per measured record and variant: a static system message and a "
                    "record-specific user message (its diagnoses with the knowledge criteria next to the measured "
                    "values, a per-lead table and a beat-by-beat table), counted exactly within the token budget. "
                    "Writes OUT/prompts.parquet and OUT/errors.parquet. A multimodal prompt is only written "
                    "with its image (missing_image otherwise).\n\n"
                    "example:\n  ecg-grounding prompts --features outputs/ptbxl/features \\\n"
                    "      --manifest outputs/ptbxl/manifest.parquet --images outputs/ptbxl/images \\\n"
                    "      --out outputs/ptbxl/prompts")
    p.add_argument("--source", default=None, choices=SOURCE_NAMES,
                   help="source of the record metadata (report, statements) when there is no --manifest")
    p.add_argument("--root", default=None, help="the source's data root (with --source)")
    p.add_argument("--features", required=True, help="features folder (beats/records parquet or shard folders)")
    p.add_argument("--out", required=True, help="output folder for prompts.parquet + errors.parquet")
    p.add_argument("--images", default=None, help="rendered images folder (render's output)")
    p.add_argument("--manifest", default=None, help="ingest manifest.parquet (instead of re-reading the source)")
    p.add_argument("--variant", nargs="+", default=["all"], choices=[*VARIANTS, "all"])
    p.add_argument("--budget", type=positive_int, default=DEFAULT_BUDGET, help="prompt token budget (hard cap)")
    p.add_argument("--model", default=None, help="target model for token counts (default per variant)")
    p.add_argument("--limit", type=positive_int, default=None, help="only the first N records")
    p.set_defaults(func=_run)
