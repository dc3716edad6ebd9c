"""The offline ``rules`` writer: a grounded interpretation written from the measurements and the knowledge base.

It writes the kind of paragraph the LLM is asked for - rhythm and rate, axis, intervals, then each diagnosis
with the leads and values that support it - without any model. Guarantees (tested):

- deterministic for a given (context, seed); the seed only varies the phrasing;
- every number it states is a measured value of this record: record-level columns, or ``lead_value`` of a
  measured (not gated) lead; nulls and gated leads are skipped, never guessed;
- every diagnosis of the record is named through its knowledge-base name, and no diagnosis outside the
  closure of the record's statements is named (checked with ``KnowledgeBase.find_mentions``);
- one paragraph of at most ``MAX_WORDS`` words; no mention of a report or of provided measurements.

Numbers are rounded the way the validator compares them: ms, bpm and degrees to integers, mV to 2 decimals;
amplitudes of Q and S waves are written as positive depths.
"""
from __future__ import annotations

import random

from pipeline.context import GroundingContext
from pipeline.knowledge import Criterion, KnowledgeBase, load_knowledge
from pipeline.record import LEADS

WRITER_VERSION = "rules-1.0"
MAX_WORDS = 300

# Rhythm statements that describe the underlying rhythm (ectopy such as PVC is a diagnosis sentence instead).
_PRIMARY_RHYTHMS = ("SR", "SBRAD", "STACH", "SARRH", "AFIB", "AFLT", "PSVT", "SVTAC", "SVARR", "PACE", "WAP")

# How a measurement column is named next to its value. Neutral wording on purpose: "ST elevation" would name
# a diagnosis (STE_) the record may not carry, so values are stated as levels and heights. Each label ends
# with the wave it is about and avoids "amplitude" / "voltage", so a reader (and the validator) ties the
# number to that wave.
_LABELS: dict[str, str] = {
    "hr_bpm": "heart rate",
    "rr_sd_ms": "RR standard deviation",
    "pr_ms": "PR interval",
    "qrs_ms": "QRS duration",
    "qt_ms": "QT interval",
    "qtc_bazett_ms": "QTc",
    "qtc_fridericia_ms": "QTc (Fridericia)",
    "qrs_axis_deg": "QRS axis",
    "p_axis_deg": "P axis",
    "t_axis_deg": "T axis",
    "sokolow_lyon_mv": "Sokolow-Lyon voltage",
    "cornell_mv": "Cornell voltage",
    "p_amp_mv": "P wave height",
    "p_ms": "P wave duration",
    "q_amp_mv": "Q wave depth",
    "q_ms": "Q wave duration",
    "r_amp_mv": "R wave height",
    "r_prime_amp_mv": "terminal R'",
    "s_amp_mv": "S wave depth",
    "s_ms": "S wave duration",
    "r_ms": "R wave duration",
    "t_amp_mv": "T wave deflection",
    "st_j_mv": "ST level at the J point",
    "st_j60_mv": "mid-ST level",
    "t_form": "T wave polarity",
    "p_form": "P wave polarity",
    "qrs_morphology": "QRS pattern",
}
_DEPTHS = {"q_amp_mv", "s_amp_mv"}  # written as positive depths


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


def _article(phrase: str) -> str:
    """'a ' or 'an ' before ``phrase``, reading initialisms by their letters ('an R wave', 'a QRS')."""
    first = phrase.split()[0] if phrase.split() else phrase
    if first.isupper() or (len(first) <= 2 and first[:1].isupper()):
        return "an " if first[0] in "AEFHILMNORSX" else "a "
    return "an " if phrase[:1].lower() in "aeiou" else "a "


def _is_plural(name: str) -> bool:
    last = name.split()[-1].lower()
    return last.endswith("s") and last not in ("sinus", "axis")


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


class _Writer:
    def __init__(self, ctx: GroundingContext, kb: KnowledgeBase, rng: random.Random, max_leads: int,
                 max_criteria: int, closing: bool):
        self.ctx, self.kb, self.rng = ctx, kb, rng
        self.max_leads, self.max_criteria, self.closing = max_leads, max_criteria, closing
        self.rec = ctx.record or {}
        self.measured = ctx.measured_leads
        self.ids = [i for i in dict.fromkeys(ctx.statement_ids) if i in kb.entries]

    def pick(self, *options: str) -> str:
        return options[self.rng.randrange(len(options))]

    def num(self, column: str):
        v = self.rec.get(column)
        return None if v is None or (isinstance(v, float) and v != v) else v

    # --- sentences -----------------------------------------------------------------------------------

    def rhythm_sentence(self, named: set[str]) -> str:
        rhythm = [i for i in self.ids if i in _PRIMARY_RHYTHMS]
        # name only the most specific rhythm: "sinus bradycardia" already says "sinus rhythm"
        implied = set()
        for i in rhythm:
            implied |= self.kb.closure([i]) - {i}
        rhythm = [i for i in rhythm if i not in implied]
        named.update(self.kb.closure(rhythm))
        hr = self.num("hr_bpm")
        names = _join([self.kb.entries[i].name for i in rhythm])
        rate = f"{format_value('hr_bpm', hr)}" if hr is not None else None
        regular = self.rec.get("rhythm_regular")
        if (self.num("n_premature") or 0) > 0:
            regular = None  # an ectopic beat makes "regular" and "irregular" both arguable: say neither
        if names:
            if rate:
                s = self.pick(f"The tracing shows {names} with a heart rate of {rate}",
                              f"The underlying rhythm is {names} at a heart rate of {rate}"
                              if "rhythm" not in names else f"The tracing shows {names} at {rate}",
                              f"This 12-lead ECG shows {names}, with a heart rate of {rate}")
            else:
                s = self.pick(f"The tracing shows {names}", f"The ECG shows {names}")
        elif rate:
            s = self.pick(f"The heart rate is {rate}", f"The ventricular rate measures {rate}")
        else:
            return ""
        # the rhythm's own criteria (irregular RR, absent P waves, RR spread) beyond the rate already stated
        ev: list[str] = []
        for i in rhythm:
            if i == "SR":
                continue
            phrases, supported = self.evidence(i, skip=("hr_bpm",))
            if supported:
                ev += [p for p in phrases if p not in ev]
        if ev:
            s += f", with {_join(ev[: self.max_criteria + 1])}"
        elif self.rec.get("p_waves_present") is True and "SR" in self.kb.closure(rhythm):
            s += self.pick(", with a P wave before every QRS complex", ", each QRS complex being preceded by a P wave")
        elif regular is True:
            s += self.pick(" and the RR intervals are regular", ", with regular RR intervals")
        elif regular is False:
            s += self.pick(" and the RR intervals are irregular", ", with irregular RR intervals")
        return s + "."

    def axis_sentence(self, named: set[str]) -> str:
        axis = self.num("qrs_axis_deg")
        axis_ids = [i for i in self.ids if self.kb.entries[i].category == "axis" and i not in named]
        names = _join([self.kb.entries[i].name for i in axis_ids])
        named.update(self.kb.closure(axis_ids))
        if axis is None:
            return f"The frontal plane shows {names}." if names else ""
        s = self.pick(f"The frontal QRS axis is {format_value('qrs_axis_deg', axis)}",
                      f"The QRS axis lies at {format_value('qrs_axis_deg', axis)}")
        if names:
            holds = [c.test(axis) for i in axis_ids for c in self.kb.entries[i].criteria
                     if c.feature == "qrs_axis_deg"]
            if all(h is not False for h in holds):
                s += self.pick(f", in keeping with {names}", f", which corresponds to {names}")
            else:  # the measured axis sits outside the statement's range: say so rather than "in keeping"
                s += f", and the axis is read as {names}"
        return s + "."

    def interval_sentence(self) -> str:
        parts = []
        for col in ("pr_ms", "qrs_ms", "qt_ms"):
            v = self.num(col)
            if v is not None:
                parts.append(f"the {_LABELS[col]} {format_value(col, v)}")
        qtc = self.num("qtc_bazett_ms")
        if not parts and qtc is None:
            return ""
        if parts:
            s = self.pick("Measured intervals are ", "The intervals show ") + _join(parts)
            if qtc is not None:
                s += f", with a {_LABELS['qtc_bazett_ms']} of {format_value('qtc_bazett_ms', qtc)}"
        else:
            s = f"The {_LABELS['qtc_bazett_ms']} is {format_value('qtc_bazett_ms', qtc)}"
        return s + "."

    def evidence(self, entry_id: str, skip: tuple[str, ...] = ()) -> tuple[list[str], bool]:
        """Phrases with measured values that test the entry's criteria, met criteria first, and whether any
        stated value meets its criterion (only then is it called support)."""
        entry = self.kb.entries[entry_id]
        met: list[str] = []
        unmet: list[str] = []
        for crit in entry.criteria:
            if crit.feature in skip:
                continue
            got = self.criterion_phrase(crit, entry.leads_to_look_at)
            if got is None:
                continue
            phrase, ok = got
            if phrase in met or phrase in unmet:
                continue
            (met if ok else unmet).append(phrase)
        # values that meet no criterion are only stated when nothing meets one, so "shown by" never covers them
        phrases = (met or unmet)[: self.max_criteria]
        return phrases, bool(met)

    def criterion_phrase(self, crit: Criterion, look: list[str]) -> tuple[str, bool] | None:
        """(phrase stating the measured values that test ``crit``, whether any of them meets it)."""
        col = crit.feature
        if col is None or col in ("beat_class",):
            return None
        if crit.scope == "record":
            v = self.num(col)
            if v is None:
                return None
            ok = bool(crit.test(v))
            if isinstance(v, bool):
                phrase = self.boolean_phrase(col, v)
                return (phrase, ok) if phrase else None
            if col in ("n_premature", "n_paced"):
                if not v:
                    return None
                kind = "arriving early" if col == "n_premature" else "showing pacing"
                return f"{int(v)} beat{'s' if v != 1 else ''} {kind}", ok
            if col in _LABELS:
                return f"{_article(_LABELS[col])}{_LABELS[col]} of {format_value(col, v)}", ok
            return None
        if col not in _LABELS:
            return None
        leads = crit.leads or look or list(LEADS)
        leads = [lead for lead in leads if lead in self.measured]
        values = [(lead, self.ctx.lead_value(lead, col)) for lead in leads]
        values = [(lead, v) for lead, v in values if v is not None]
        if not values:
            return None
        met = [(lead, v) for lead, v in values if crit.test(v)]
        chosen = (met or values)[: self.max_leads]
        if isinstance(chosen[0][1], str):
            groups: dict[str, list[str]] = {}
            for lead, v in chosen:
                groups.setdefault(v, []).append(lead)
            return "; ".join(f"{_LABELS[col]} {v} in lead{'s' if len(ls) > 1 else ''} {_join(ls)}"
                             for v, ls in groups.items()), bool(met)
        # "lead I", not "I": a bare roman numeral is ambiguous to a reader (and to the validator)
        items = [f"{format_value(col, v)} in lead {lead}" for lead, v in chosen]
        label = _LABELS[col]
        return f"{self.pick(_article(label), 'a measured ')}{label} of " + _join(items), bool(met)

    def boolean_phrase(self, col: str, value: bool) -> str | None:
        phrases = {
            ("p_waves_present", True): "a P wave ahead of each QRS complex",
            ("p_waves_present", False): "no consistent P wave ahead of the QRS complexes",
            ("rhythm_regular", True): "regular RR intervals",
            ("rhythm_regular", False): "irregular RR intervals",
            ("low_voltage_limb", True): "small QRS complexes in every limb lead",
            ("low_voltage_precordial", True): "small QRS complexes in every chest lead",
        }
        if col == "rhythm_regular" and (self.num("n_premature") or 0) > 0:
            return None
        return phrases.get((col, value))

    def diagnosis_sentence(self, entry_id: str) -> str:
        entry = self.kb.entries[entry_id]
        name = entry.name
        ev, supported = self.evidence(entry_id)
        look = [lead for lead in entry.leads_to_look_at if lead in self.measured][:4]
        be = "are" if _is_plural(name) else "is"
        there = "There are" if be == "are" else "There is"
        cap = name[0].upper() + name[1:]
        if entry.category == "other":  # summary statements (normal / abnormal / borderline ECG)
            overall = f"Overall this is {_article(name)}{name}"
            return overall + (f", with {_join(ev)}." if ev and supported else ".")
        if ev and not supported:
            # the values are stated, but not called support when none of them meets the criterion
            return self.pick(f"For {name}, the relevant values are {_join(ev)}.",
                             f"{cap} {be} diagnosed, with {_join(ev)}.")
        if ev:
            return self.pick(f"{there} {name}, supported by {_join(ev)}.",
                             f"The findings indicate {name}, with {_join(ev)}.",
                             f"{cap} {be} present, shown by {_join(ev)}.")
        if look:
            look_txt = _join([f"lead {lead}" if lead in ("I", "II", "III") else lead for lead in look])
            return self.pick(f"{there} {name}, best appreciated in {look_txt}.",
                             f"{cap} {be} present, read in {look_txt}.")
        return self.pick(f"Overall this is {_article(name)}{name}.", f"The overall impression is {name}.")

    def write(self) -> str:
        named: set[str] = set()
        sentences = [self.rhythm_sentence(named), self.axis_sentence(named), self.interval_sentence()]
        rest = [i for i in self.ids if i not in named]
        for i in rest:
            if i in named:
                continue
            sentences.append(self.diagnosis_sentence(i))
            named.update(self.kb.closure([i]))
        # Summary statements (normal / abnormal ECG) already have their own "Overall this is ..." sentence;
        # listing them again reads as "the ECG shows normal ECG".
        top = [self.kb.entries[i].name for i in self.ids if self.kb.entries[i].category != "other"][:4]
        if self.closing and len(self.ids) > 1 and top:
            sentences.append(self.pick(f"Taken together, the tracing is consistent with {_join(top)}.",
                                       f"In summary, the ECG shows {_join(top)}."))
        return " ".join(s for s in sentences if s)


def write_answer(ctx: GroundingContext, seed: int = 0, kb: KnowledgeBase | None = None) -> str:
    """A grounded one-paragraph interpretation of ``ctx`` (at most ``MAX_WORDS`` words), deterministic for
    (ctx, seed). Values are the record's measurements (ms, mV, bpm, degrees) rounded as the validator reads
    them; every statement of ``ctx.statement_ids`` is named, nothing outside their closure is."""
    kb = kb or load_knowledge()
    # From the most detailed to the most compact: fewer leads per criterion, fewer criteria, no summary.
    for max_leads, max_criteria, closing in ((3, 2, True), (2, 2, False), (2, 1, False), (1, 1, False)):
        rng = random.Random(f"{WRITER_VERSION}:{ctx.record_id}:{seed}")
        text = _Writer(ctx, kb, rng, max_leads, max_criteria, closing).write()
        if len(text.split()) <= MAX_WORDS:
            return text
    return text
