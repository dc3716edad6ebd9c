"""The offline ``rules`` writer: a grounded interpretation at GEM's depth, written from the measurements and the
knowledge base without any model.

What an answer covers, in an order the seed varies: rhythm and rate with RR regularity; the early beats by ordinal
and time, with their coupling interval, the RR after them, their QRS width and whether a P wave precedes them
(supraventricular or ventricular, never both); the axis with the leads that decide it; PR, QRS, QT and QTc; then
territory by territory (inferior II/III/aVF, lateral I/aVL/V5/V6, septal-anterior V1-V4, aVR) the P wave, the QRS
form, Q waves, R and S sizes, the ST level and the T polarity with their measured values; then every report
statement with the criteria it meets.

Guarantees (tested):

- deterministic for (context, seed); the seed varies the phrasing and the structure (plan, territory order, which
  details a territory leads with);
- every number it states is a measured, citable value of this record (``GroundingContext.citable``): record
  columns, a lead's representative value (``pipeline.derived.lead_value``) or one beat's RR / QRS; each is
  recorded in ``Answer.citations``;
- the report stands, but numbers never argue against it: a statement is supported only by criteria its citable
  measurements meet (``pipeline.criteria``); a statement they contradict is named with the consistent evidence or
  none, and no sentence that names a diagnosis cites a value failing that diagnosis's criterion (``_refutes``);
- every report statement is named through its knowledge-base name, and nothing outside the closure of the report
  (plus what its entries list as related) is named (``KnowledgeBase.find_mentions`` on every sentence);
- one paragraph of at most ``MAX_WORDS`` words; no mention of a report or of provided measurements.

Numbers are rounded the way the validator compares them: ms, bpm and degrees to integers, mV to 2 decimals;
amplitudes of Q and S waves are written as positive depths.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from pipeline import derived
from pipeline.answer_form import MAX_WORDS
from pipeline.context import GroundingContext
from pipeline.cutoffs import cutoff
from pipeline.knowledge import KnowledgeBase, load_knowledge
from pipeline.writer_leads import TerritoryWriter, lead_facts

_TOKEN = re.compile("\x00(\\d+)\x00")  # a value placeholder of ``_Writer.cite``

# bumped whenever answers change, so stored answers of an older writer are not reused as if new
WRITER_VERSION = "rules-2.4"

_DEPTHS = {"q_amp_mv", "s_amp_mv"}  # written as positive depths

# Territory orders and plans the seed chooses between. A plan is a sequence of section names; 'walk' is the
# territory walk, 'statements' the report statements not named earlier, 'close' a one-sentence summary.
_ORDERS = (("inferior", "lateral", "anterior", "avr"), ("anterior", "lateral", "inferior", "avr"),
           ("lateral", "inferior", "anterior", "avr"), ("inferior", "anterior", "lateral", "avr"))
_PLANS = (
    ("rhythm", "ectopy", "axis", "intervals", "walk", "statements", "close"),
    ("rhythm", "intervals", "ectopy", "axis", "walk", "statements"),
    ("rhythm", "ectopy", "intervals", "axis", "walk_with_statements", "statements", "close"),
    ("rhythm", "axis", "intervals", "ectopy", "statements", "walk", "close"),
)
# Which statements belong to a territory (plan 'walk_with_statements' discusses them right after it).
_TERRITORY_STATEMENTS = {
    "inferior": {"IMI", "ISCIN", "INJIN", "IPMI"},
    "lateral": {"LMI", "ISCLA", "INJLA", "ALMI", "ISCAL", "INJAL", "ILMI", "ISCIL", "INJIL", "IPLMI"},
    "anterior": {"ASMI", "AMI", "ISCAS", "ISCAN", "INJAS", "PMI", "ANEUR", "PRWP", "CRBBB", "RBBB", "IRBBB"},
}


def format_value(column: str, value) -> str:
    """``value`` of ``column`` as the writer states it: '128 ms', '0.21 mV', '72 bpm', '-45 degrees'."""
    if isinstance(value, str):
        return value
    if column.endswith("_mv"):
        v = abs(value) if column in _DEPTHS else value
        text = f"{v:.2f}"
        return ("0.00" if text == "-0.00" else text) + " mV"
    if column.endswith("_bpm"):
        return f"{value:.0f} bpm"
    if column.endswith("_deg"):
        text = f"{value:.0f}"
        text = "0" if text == "-0" else text
        return text + (" degree" if text in ("1", "-1") else " degrees")
    return f"{value:.0f} ms"


@dataclass(frozen=True)
class Citation:
    """One number the answer states: the column it comes from, the lead (None: record level) and the value."""

    column: str
    lead: str | None
    value: float


@dataclass
class Answer:
    text: str
    citations: list[Citation] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)
    cited: list[list[Citation]] = field(default_factory=list)   # per sentence


class _Writer:
    """The state of one answer: the record's citable facts, the seed's choices and the sentences so far."""

    def __init__(self, ctx: GroundingContext, kb: KnowledgeBase, rng: random.Random, level: int, max_evidence: int,
                 closing: bool = True, ectopy_detail: int = 2, sizes: bool = True):
        self.ctx, self.kb, self.rng = ctx, kb, rng
        self.level, self.max_evidence, self.closing, self.ectopy_detail = level, max_evidence, closing, ectopy_detail
        self.sizes = sizes  # level 2 gives one R or S size per territory
        self.rec = ctx.record or {}
        self.sex = (ctx.extra or {}).get("sex")
        self.statements = [i for i in dict.fromkeys(ctx.statement_ids) if i in kb.entries]
        self.allowed = kb.permitted(self.statements)
        self.facts = {lead: lead_facts(ctx, lead) for lead in ctx.measured_leads}
        self.st_bounds = (cutoff("st_depression_mv"), cutoff("st_elevation_mv"))
        self.sentences: list[tuple[str, list[Citation]]] = []
        self.sections: list[str] = []   # the section of each sentence (what _trim may drop first)
        self.section = ""
        self.said_relative_st = False  # the walk explains once that the ST is placed against the QRS size
        self.st_said_globally = False  # the compact walk said the ST for all leads at once
        self.named: set[str] = set()
        self._pending: list[Citation] = []

    # --- helpers the sections use ----------------------------------------------------------------------------
    def pick(self, *options: str) -> str:
        return options[self.rng.randrange(len(options))]

    def value(self, column: str):
        """A record-level value when citable, else None."""
        if not self.ctx.citable(column):
            return None
        return derived.record_value(self.ctx, column)

    def cite(self, column: str, value, lead: str | None = None) -> str:
        """A placeholder for ``value`` that ``emit`` turns into its formatted text; only the placeholders that
        reach the chosen sentence become its citations (``pick`` builds every alternative, uses one)."""
        self._pending.append(Citation(column, lead, float(value)))  # never cleared: tokens index it for good
        return f"\x00{len(self._pending) - 1}\x00"

    def render(self, text: str) -> str:
        """``text`` with its value placeholders formatted (no sentence is added)."""
        return _TOKEN.sub(lambda m: format_value(self._pending[int(m.group(1))].column,
                                                 self._pending[int(m.group(1))].value), text)

    def emit(self, text: str) -> bool:
        """Add a sentence unless it names a diagnosis outside the report's closure or cites, next to a diagnosis
        it names, a value that fails that diagnosis's criterion. Returns whether it was added."""
        pending = self._pending
        used = [int(i) for i in _TOKEN.findall(text)]
        cites = [pending[i] for i in used]
        text = _TOKEN.sub(lambda m: format_value(pending[int(m.group(1))].column, pending[int(m.group(1))].value),
                          text)
        text = " ".join(text.split())
        if not text:
            return False
        mentions = [m for m in self.kb.find_mentions(text) if not m.negated]
        ids = {m.entry_id for m in mentions}
        if not ids <= self.allowed or self._refutes(ids, cites):
            return False
        self.named |= self.kb.closure(ids)
        self.sentences.append((text, cites))
        self.sections.append(self.section)
        return True

    def _refutes(self, ids: set[str], cites: list[Citation]) -> bool:
        """Whether a cited value fails every criterion that a named diagnosis puts on that value (a T wave of
        1.3 mV fails 'flat T' but meets 'tall T': both are criteria of a T-wave abnormality, so it stands)."""
        return bool(refuting_citations(self.kb, ids, cites, self.sex))

    def words(self) -> int:
        return sum(len(t.split()) for t, _ in self.sentences)

    # --- plan -------------------------------------------------------------------------------------------------
    def write(self) -> None:
        from pipeline import writer_statements as ws
        from pipeline import writer_text as wt

        plan = _PLANS[self.rng.randrange(len(_PLANS))]
        order = _ORDERS[self.rng.randrange(len(_ORDERS))]
        done: set[str] = set()
        for section in plan:
            self.section = section
            if section == "rhythm":
                wt.rhythm(self)
            elif section == "ectopy":
                wt.ectopy(self)
            elif section == "axis":
                wt.axis(self)
            elif section == "intervals":
                wt.intervals(self)
            elif section in ("walk", "walk_with_statements"):
                if self.level == 1:
                    from pipeline.writer_leads import global_st

                    self.section = "walk:st"
                    text = global_st(self)
                    self.st_said_globally = bool(text) and self.emit(text)
                for name in order:
                    self.section = f"walk:{name}"
                    for s in TerritoryWriter(self, name, self.level).sentences():
                        self.emit(s)
                    self.section = section
                    if section == "walk_with_statements":
                        self.section = "statements"
                        for sid in self.statements:
                            if sid in _TERRITORY_STATEMENTS.get(name, ()) and not self._is_named(sid):
                                ws.statement(self, sid)
            elif section == "statements":
                # the whole-ECG summary statements come last
                todo = [sid for sid in self.statements if self.kb.entries[sid].category != "other"
                        and sid not in done and not self._is_named(sid)]
                ws.statements(self, todo)
                done.update(todo)
            elif section == "close":
                self.section = "statements"
                for sid in self.statements:  # the summary statements just before the closing sentence
                    if self.kb.entries[sid].category == "other" and not self._is_named(sid):
                        ws.statement(self, sid)
                self.section = "close"
                if self.closing:
                    self.close()
        self.section = "statements"
        rest = [s for s in self.statements if not self._is_named(s)]
        # every statement named, whatever the plan did; the summary statements (normal / abnormal ECG) last
        for sid in sorted(rest, key=lambda s: self.kb.entries[s].category == "other"):
            if not self._is_named(sid):
                ws.statement(self, sid)

    def _is_named(self, sid: str) -> bool:
        return sid in self.named

    def close(self) -> None:
        from pipeline.criteria import evaluate

        # 'the tracing shows X' is said only of statements the measurements do not contradict (a contradicted one is
        # named once, with its caveat, by writer_statements.statement)
        names = [self.kb.entries[i].name for i in self.statements if self.kb.entries[i].category != "other"
                 and not evaluate(self.ctx, i, self.kb).conflicts]
        if len(names) < 2:
            return
        from pipeline.writer_leads import join

        top = names[:5]
        self.emit(self.pick(f"Taken together, the tracing shows {join(top)}.", f"In summary: {join(top)}.",
                            f"The picture is one of {join(top)}."))

    def answer(self) -> Answer:
        text = " ".join(t for t, _ in self.sentences)
        return Answer(text, [c for _, cs in self.sentences for c in cs], [t for t, _ in self.sentences],
                      list(self.sections), [list(cs) for _, cs in self.sentences])


def refuting_citations(kb: KnowledgeBase, ids: set[str], cites: list[Citation], sex: str | None = None
                       ) -> list[tuple[str, Citation]]:
    """(diagnosis, citation) pairs where the citation is a value of a feature the diagnosis has criteria on (in
    a lead those criteria look at) and it meets none of them: a number that argues against the diagnosis it is
    cited next to."""
    out = []
    for sid in ids:
        entry = kb.entries[sid]
        for c in cites:
            tests = []
            for crit in entry.criteria:
                if crit.feature != c.column:
                    continue
                if (crit.scope == "record") != (c.lead is None):
                    continue
                look = crit.leads or entry.leads_to_look_at
                if c.lead is not None and look and c.lead not in look:
                    continue
                tests.append(crit.test(c.value, sex))
            if tests and not any(t for t in tests) and any(t is False for t in tests):
                out.append((sid, c))
    return out


def write(ctx: GroundingContext, seed: int = 0, kb: KnowledgeBase | None = None) -> Answer:
    """The answer for ``ctx`` with the citations it makes (see ``write_answer``)."""
    kb = kb or load_knowledge()
    rng_seed = f"{WRITER_VERSION}:{ctx.record_id}:{seed}"

    def attempt(level: int, max_evidence: int, closing: bool, ectopy_detail: int, sizes: bool = True) -> Answer:
        w = _Writer(ctx, kb, random.Random(rng_seed), level, max_evidence, closing, ectopy_detail, sizes)
        w.write()
        return w.answer()

    # The usual detail first; a short answer gets the full detail when it still fits, a long one gives up, in
    # turn, the summary, ectopy and territory details and evidence phrases. The same seed keeps the same plan.
    a = attempt(2, 3, True, 2)
    n = len(a.text.split())
    if n <= _ROOM_FOR_DETAIL:
        b = attempt(3, 3, True, 2)
        return b if len(b.text.split()) <= MAX_WORDS else a
    if n <= MAX_WORDS:
        return a
    # the early beats keep their detail longest: they are what a reader cannot see at a glance
    # order of what goes first: the summary sentence, then the R / S sizes, then evidence phrases, then territory
    # values; the early beats' details last
    for step in ((2, 3, False, 2, True), (2, 3, True, 2, False), (2, 2, False, 2, False), (1, 2, False, 2),
                 (1, 1, False, 2), (1, 1, False, 1), (1, 1, False, 0)):
        a = attempt(*step)
        if len(a.text.split()) <= MAX_WORDS:
            return a
    return _trim(a)


# below this many words at the usual detail, the answer is written at full detail when that still fits
_ROOM_FOR_DETAIL = 220
# what _trim drops first: the summary, aVR, the 'no early beats' remark, then whole territories from the last
_DROP_ORDER = ("close", "walk:avr", "ectopy_none")


def _trim(a: Answer) -> Answer:
    """Drop sentences until the answer fits (a last resort for records with very many statements): the summary,
    aVR, the ectopy remark, then territory sentences from the end; statement sentences stay, so every diagnosis
    stays named."""
    keep = list(range(len(a.sentences)))

    def words() -> int:
        return sum(len(a.sentences[i].split()) for i in keep)

    for section in _DROP_ORDER:
        for i in [i for i in keep if a.sections[i] == section]:
            if words() <= MAX_WORDS:
                break
            keep.remove(i)
    while words() > MAX_WORDS:
        walk = [i for i in keep if a.sections[i].startswith("walk")]
        if not walk:
            break
        keep.remove(walk[-1])
    return Answer(" ".join(a.sentences[i] for i in keep), [c for i in keep for c in a.cited[i]],
                  [a.sentences[i] for i in keep], [a.sections[i] for i in keep], [a.cited[i] for i in keep])


def write_answer(ctx: GroundingContext, seed: int = 0, kb: KnowledgeBase | None = None) -> str:
    """A grounded one-paragraph interpretation of ``ctx`` (at most ``MAX_WORDS`` words), deterministic for
    (ctx, seed). Values are the record's citable measurements (ms, mV, bpm, degrees) rounded as the validator
    reads them; every statement of ``ctx.statement_ids`` is named, nothing outside their closure is."""
    return write(ctx, seed, kb).text
