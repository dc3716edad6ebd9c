"""Knowledge criteria judged on one record: which are met, by which citable values, and where the report and the
measurements disagree (conflicts).

The prompts, the offline writer and the instruction set's provenance ask this module, so that "met" means the same
everywhere: a value is only used when ``GroundingContext.citable`` allows it (LUDB's millivolts, gated leads and
low-confidence values are left out, never argued from), thresholds come from the cut-off table for the record's
sex, and lead criteria are counted as the knowledge entry asks (any lead, every lead, two contiguous leads).

A *conflict* is a report statement whose own criteria the citable measurements fail: a required criterion that is
not met, or an entry whose alternatives are all not met. The statement still stands (the report is trusted); the
conflict is recorded, and the writer never offers a failing value as its support.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.knowledge import Criterion, KnowledgeBase
from pipeline.record import LEADS

# Contiguous leads (Thygesen 2018: neighbours on the hexaxial / precordial sequence, and the inferior group).
CONTIGUOUS_PAIRS: frozenset[frozenset[str]] = frozenset(frozenset(p) for p in (
    ("aVL", "I"), ("I", "II"), ("II", "aVF"), ("aVF", "III"), ("II", "III"),
    ("V1", "V2"), ("V2", "V3"), ("V3", "V4"), ("V4", "V5"), ("V5", "V6"),
))

Status = str  # met | unmet | unknown | uncitable | by_eye


@dataclass(frozen=True)
class Reading:
    """One citable value tested against a criterion: the record's (``lead`` None) or one lead's."""

    lead: str | None
    column: str
    value: object
    met: bool | None


@dataclass
class CriterionResult:
    entry_id: str
    criterion: Criterion
    status: Status
    readings: list[Reading] = field(default_factory=list)      # citable values, in lead order
    uncitable: list[tuple[str | None, str]] = field(default_factory=list)  # (lead, reason) left out

    @property
    def met_readings(self) -> list[Reading]:
        return [r for r in self.readings if r.met]

    @property
    def failing_readings(self) -> list[Reading]:
        return [r for r in self.readings if r.met is False]


@dataclass(frozen=True)
class Conflict:
    """A report statement whose criterion the citable measurements do not meet."""

    statement: str
    criterion: str
    measured: str

    def as_dict(self) -> dict:
        return {"statement": self.statement, "criterion": self.criterion, "measured": self.measured}


@dataclass
class EntryVerdict:
    entry_id: str
    results: list[CriterionResult]
    conflicts: list[Conflict]
    core_met: bool   # something met, no required criterion failing, and one alternative met where there are any

    def met(self, include_supportive: bool = True) -> list[CriterionResult]:
        """Met criteria in knowledge order; supportive ones only when the core holds (a strain pattern is no
        evidence for hypertrophy on its own)."""
        return [r for r in self.results if r.status == "met"
                and (r.criterion.role != "supportive" or (include_supportive and self.core_met))]


def format_reading_value(column: str, value) -> str:
    """A reading as a short text with its unit: '94 ms', '-0.12 mV', 'negative', 'yes'."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if column.endswith("_mv"):
        text = f"{value:.2f}"
        return ("0.00" if text == "-0.00" else text) + " mV"
    if column.endswith("_ms"):
        return f"{value:.0f} ms"
    if column.endswith("_bpm"):
        return f"{value:.0f} bpm"
    if column.endswith("_deg"):
        return f"{value:.0f} deg"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _readings_text(readings: list[Reading]) -> str:
    """'qrs_ms 94 ms' for a record value, 'aVF qrs_polarity positive, V5 st_j60_mv -0.12 mV' for lead values."""
    return ", ".join(f"{r.lead + ' ' if r.lead else ''}{r.column} {format_reading_value(r.column, r.value)}"
                     for r in readings)


def _sex(ctx) -> str | None:
    sex = (ctx.extra or {}).get("sex")
    return sex if sex in ("male", "female") else None


def judge(ctx, entry_id: str, crit: Criterion, look: list[str]) -> CriterionResult:
    """Judge one criterion of ``entry_id`` on ``ctx`` (a ``GroundingContext``)."""
    from pipeline import derived

    if crit.feature is None:
        return CriterionResult(entry_id, crit, "by_eye")
    col, sex = crit.feature, _sex(ctx)
    if crit.scope == "record":
        value = derived.record_value(ctx, col)
        reason = ctx.uncitable_reason(col)
        if reason is not None:
            return CriterionResult(entry_id, crit, "uncitable", uncitable=[(None, reason)])
        met = crit.test(value, sex)
        if met is None:
            return CriterionResult(entry_id, crit, "unknown")
        return CriterionResult(entry_id, crit, "met" if met else "unmet", [Reading(None, col, value, met)])
    measured = set(ctx.measured_leads)
    leads = [lead for lead in (crit.leads or look or list(LEADS)) if lead in measured]
    readings: list[Reading] = []
    left_out: list[tuple[str | None, str]] = []
    for lead in leads:
        reason = ctx.uncitable_reason(col, lead)
        if reason is not None:
            left_out.append((lead, reason))
            continue
        value = derived.lead_value(ctx, lead, col)
        met = crit.test(value, sex)
        if met is None:
            continue
        readings.append(Reading(lead, col, value, met))
    met_leads = [r.lead for r in readings if r.met]
    if crit.require == "all":
        status = "unknown" if not readings else "met" if len(met_leads) == len(readings) else "unmet"
    elif crit.require == "two_contiguous":
        pair = any(frozenset((a, b)) in CONTIGUOUS_PAIRS for i, a in enumerate(met_leads) for b in met_leads[i + 1:])
        status = "met" if pair else "unmet" if len(readings) >= 2 else "unknown"
    else:
        status = "unknown" if not readings else "met" if met_leads else "unmet"
    if status == "unknown" and left_out:
        status = "uncitable"
    return CriterionResult(entry_id, crit, status, readings, left_out)


def evaluate(ctx, entry_id: str, kb: KnowledgeBase) -> EntryVerdict:
    """Every criterion of ``entry_id`` judged on ``ctx``, with the conflicts and whether the core holds.
    Cached on the context (per beats frame and knowledge base)."""
    cache = ctx.__dict__.setdefault("_criteria_cache", {})
    key = (id(ctx.beats), id(kb), entry_id)
    if key in cache:
        return cache[key]
    entry = kb.entries[entry_id]
    results = [judge(ctx, entry_id, c, entry.leads_to_look_at) for c in entry.criteria]
    conflicts: list[Conflict] = []
    required = [r for r in results if r.criterion.role == "required" and r.criterion.feature]
    for r in required:
        if r.status == "unmet":
            conflicts.append(Conflict(entry_id, r.criterion.text, _readings_text(r.failing_readings or r.readings)))
    groups: dict[str, list[CriterionResult]] = {}
    for i, r in enumerate(results):
        if r.criterion.role == "any_of" and r.criterion.feature:
            groups.setdefault(r.criterion.group or f"#{i}", []).append(r)
    alt_met: bool | None = None
    if groups:
        states = []
        for members in groups.values():
            if all(m.status == "met" for m in members):
                states.append("met")
            elif any(m.status == "unmet" for m in members):
                states.append("unmet")
            else:
                states.append("unknown")
        alt_met = True if "met" in states else False if all(s == "unmet" for s in states) else None
        if alt_met is False:
            failing = [m for members in groups.values() for m in members if m.status == "unmet"]
            conflicts.append(Conflict(entry_id, " or ".join(m.criterion.text for m in failing),
                                      "; ".join(_readings_text(m.failing_readings or m.readings) for m in failing)))
    anything_met = any(r.status == "met" for r in results if r.criterion.role != "supportive")
    # the core holds when something is met, no required criterion fails, and, where the entry has alternatives,
    # one of them is met (an alternative that cannot be judged establishes nothing)
    core = anything_met and all(r.status != "unmet" for r in required) and (alt_met is True if groups else True)
    verdict = EntryVerdict(entry_id, results, conflicts, core)
    cache[key] = verdict
    return verdict


def statement_ids(ctx, kb: KnowledgeBase) -> list[str]:
    """The record's report statements that the knowledge base knows, in report order, without repeats."""
    return [s for s in dict.fromkeys(ctx.statement_ids) if s in kb.entries]


def record_conflicts(ctx, kb: KnowledgeBase) -> list[Conflict]:
    """Every conflict between the record's report statements and its citable measurements."""
    return [c for s in statement_ids(ctx, kb) for c in evaluate(ctx, s, kb).conflicts]
