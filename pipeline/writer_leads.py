"""The territory walk of the offline writer: P, QRS form, Q waves, R and S sizes, ST level and T polarity, lead by
lead, for the inferior (II, III, aVF), lateral (I, aVL, V5, V6) and septal-anterior (V1-V4) leads and aVR.

Every value comes from ``pipeline.derived.lead_value`` of a measured lead and only where ``ctx.citable`` allows it;
on a record whose millivolts are not citable (LUDB) the walk describes forms and polarities and places the ST
segment against the lead's own QRS size instead (a ratio, which a per-lead gain does not change).

Words are neutral on purpose: 'ST 0.12 mV below the baseline', 'T inverted', not 'ST depression' or 'T wave
inversion', which name diagnoses the record may not carry. ``pipeline.writer`` checks every sentence against the
knowledge base anyway.
"""
from __future__ import annotations

from dataclasses import dataclass

from features.schema import CONFIDENCE_MIN
from pipeline import derived
from pipeline.context import UNSURE_REASONS

TERRITORIES: dict[str, tuple[str, ...]] = {
    "inferior": ("II", "III", "aVF"),
    "lateral": ("I", "aVL", "V5", "V6"),
    "anterior": ("V1", "V2", "V3", "V4"),
    "avr": ("aVR",),
}
TERRITORY_WORDS: dict[str, tuple[str, ...]] = {
    "inferior": ("the inferior leads", "the inferior wall leads", "the leads facing the inferior wall"),
    "lateral": ("the lateral leads", "the high and low lateral leads", "the leads facing the lateral wall"),
    "anterior": ("the septal and anterior leads", "the right and mid precordial leads", "the anteroseptal leads"),
    "avr": ("aVR",),
}
T_WORDS = {"positive": "upright", "negative": "inverted", "flat": "flat", "biphasic": "biphasic"}
P_WORDS = {"positive": "upright", "negative": "negative", "flat": "flat", "biphasic": "biphasic"}
# The ST level is placed against the lead's own QRS size where millivolts are not citable: a level within this
# share of the QRS peak-to-peak reads as 'at the baseline', beyond twice it as above / below (a word, not a
# clinical threshold: the criteria never use it).
_ST_SHARE = 0.05


@dataclass
class LeadFacts:
    """What may be said about one measured lead (None: absent, unknown or not citable)."""

    lead: str
    form: str | None = None
    polarity: str | None = None
    q: bool = False
    q_mv: float | None = None
    q_ms: float | None = None
    r_mv: float | None = None
    s_mv: float | None = None
    s_ms: float | None = None
    st_mv: float | None = None          # J point
    st_place: str | None = None         # baseline | above | below (ratio to the QRS, for uncalibrated records)
    t_form: str | None = None
    t_mv: float | None = None
    p_form: str | None = None
    p_mv: float | None = None
    p_ms: float | None = None


def lead_facts(ctx, lead: str) -> LeadFacts:
    def val(col):
        return derived.lead_value(ctx, lead, col) if ctx.citable(col, lead) else None

    f = LeadFacts(lead)
    f.form = val("qrs_morphology")
    f.polarity = val("qrs_polarity")
    f.q = bool(val("q_wave_present"))
    if f.q:
        f.q_mv, f.q_ms = val("q_amp_mv"), val("q_ms")
    if val("s_wave_present"):
        f.s_mv, f.s_ms = val("s_amp_mv"), val("s_ms")
    f.r_mv = val("r_amp_mv")
    f.st_mv = val("st_j_mv")
    if f.st_mv is None:
        # no citable millivolts: place the J point against the lead's own QRS size (both scale with the gain)
        st, r = derived.lead_value(ctx, lead, "st_j_mv"), derived.lead_value(ctx, lead, "r_amp_mv")
        lo = min(derived.lead_value(ctx, lead, "s_amp_mv") or 0.0, derived.lead_value(ctx, lead, "q_amp_mv") or 0.0)
        span = (r or 0.0) - lo
        # only where the millivolts alone are what is not citable: a J point that is not sure (low_confidence),
        # a gated lead or a reversed limb lead has no place to describe
        conf = ctx.confidence("st_j_mv", lead)
        calibration_only = ctx.uncitable_reason("st_j_mv", lead) not in UNSURE_REASONS | {"gated_lead",
                                                                                          "limb_lead_reversal"} \
            and (conf is None or conf >= CONFIDENCE_MIN)  # an uncalibrated record's J point may be unsure too
        if st is not None and span > 0 and calibration_only:
            share = st / span
            f.st_place = "baseline" if abs(share) <= _ST_SHARE else "above" if share >= 2 * _ST_SHARE else \
                "below" if share <= -2 * _ST_SHARE else None
    f.t_form = val("t_form")
    if f.t_form in ("absent",):
        f.t_form = None
    f.t_mv = val("t_amp_mv")
    if f.t_form in ("positive", "negative") and f.t_mv is not None and (f.t_mv > 0) != (f.t_form == "positive"):
        # the lead's most common T form and its median amplitude disagree (a T that changes from beat to beat):
        # neither is stated
        f.t_form = f.t_mv = None
    f.p_form = val("p_form")
    if f.p_form == "absent":
        f.p_form = None
    if f.p_form:
        f.p_mv, f.p_ms = val("p_amp_mv"), val("p_ms")
    if f.p_form in ("positive", "negative") and f.p_mv is not None and (f.p_mv > 0) != (f.p_form == "positive"):
        # as for the T: a P form and a median amplitude of the other sign (a small P that changes from beat to
        # beat): "an inverted P wave in V1 (0.03 mV)" reads as -0.03 mV, which nothing measured; neither is stated
        f.p_form = f.p_mv = f.p_ms = None
    return f


def join(items: list[str], word: str = "and") -> str:
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {word} " + items[-1]


def lead_name(lead: str) -> str:
    """'lead II' for a limb lead written as a roman numeral (alone it could be a numeral), else the lead."""
    return f"lead {lead}" if lead in ("I", "II", "III") else lead


def lead_list(leads: list[str]) -> str:
    """'II, III and aVF'; a lone limb lead gets 'lead' before it so a reader (and the validator) sees a lead."""
    if len(leads) == 1:
        return lead_name(leads[0])
    if all(lead in ("I", "II", "III") for lead in leads):
        return "leads " + join(list(leads))
    return join(list(leads))


def qrs_article(label: str) -> str:
    """'an' before a QRS label read by its letters (an rS, an R, an RsR'), 'a' before q / Q (a qR, a QS)."""
    return "an" if label[:1] in "rRsS" else "a"


def word_article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def grouped(groups: dict[str, list[str]], n_leads: int = 0, compact: bool = False) -> str:
    """'upright in II and aVF and flat in lead III': every word with its leads named. No 'throughout' and no
    'except': a reader (and the validator) must see which leads each word is about."""
    return join([f"{word} in {lead_list(leads)}" for word, leads in groups.items()])


def _t_body(words: dict[str, list[str]], amps: dict[str, str], n_leads: int = 0, compact: bool = False) -> str:
    """'upright in II and aVF and inverted in lead III (-0.21 mV)'."""
    return join([f"{word} in {lead_list(leads)}" + (f" ({amps[word]})" if word in amps else "")
                 for word, leads in words.items()])


class TerritoryWriter:
    """One or two sentences about one territory at a detail level: 1 gives the QRS forms, the ST level and the T
    polarity; 2 adds Q waves, the P wave and the largest values; 3 adds R and S sizes and every lead's ST level."""

    def __init__(self, w, name: str, level: int):
        self.w, self.name, self.level = w, name, level
        self.facts = [w.facts[lead] for lead in TERRITORIES[name] if lead in w.facts]
        self._style = w.rng.randrange(2)

    def sentences(self) -> list[str]:
        if not self.facts:
            return []
        if self.name == "avr":
            return self.avr()
        w = self.w
        if (self.level >= 3 or len(self.facts) <= 3) and self.level >= 2 and w.rng.random() < 0.35:
            out = self.per_lead()  # lead by lead: longer, so for three leads or when there is room
            if out:
                return out
        where = w.pick(*TERRITORY_WORDS[self.name])
        forms = self.forms_text()
        # the P wave is said in every answer (lead II's, else V1's), the Q waves from level 2
        extra = [self.q_text(), self.p_text()] if self.level >= 2 else \
            [self.p_text()] if self.name == "inferior" or (self.name == "anterior" and "II" not in w.facts) else []
        if self.level == 2 and w.sizes:  # one size per territory: the tallest R laterally, the deepest S in V1-V4
            extra.append(self.rs_text(only="S" if self.name == "anterior" else "R"))
        extra = [x for x in extra if x]
        st = "" if (self.level == 1 and w.st_said_globally) else self.st_text()
        repol = [x for x in (st, self.t_text()) if x]
        if not forms and not repol:
            return []
        first = w.rng.randrange(3)
        if forms:
            if first == 0 or self._style == 0:
                text = f"In {where}, " + w.pick("the QRS is ", "the QRS reads ", "the complexes are ",
                                                 "QRS complexes are ") + self.forms_text(plain=True)
            else:
                text = (f"{cap(where)} show {forms}", f"{cap(where)} have {forms}")[first - 1]
        else:
            text = f"In {where}"
        if extra:
            text += ", with " + join(extra)
        if repol:
            text += ("; " if forms else ", ") + join(repol, w.pick("and", "and", "while"))
        out = [text + "."]
        if self.level >= 3:
            rs = self.rs_text()
            if rs:
                out.append(w.pick("There are ", "The territory has ", "Its sizes: ") + rs + ".")
        return out

    def per_lead(self) -> list[str]:
        """The territory lead by lead: 'In the inferior leads, lead II shows an Rs complex with the ST segment at
        -0.08 mV and the T wave upright, lead III ...'. Each lead's values stay in its own clause."""
        w = self.w
        clauses = []
        for i, f in enumerate(self.facts):
            bits = []
            if f.st_mv is not None:
                bits.append(f"the ST segment at {w.cite('st_j_mv', f.st_mv, f.lead)}")
            elif f.st_place:
                bits.append({"baseline": "the ST segment at the baseline", "above": "the ST segment above the "
                             "baseline", "below": "the ST segment below the baseline"}[f.st_place])
            if f.t_form:
                t = f"the T wave {T_WORDS.get(f.t_form, f.t_form)}"
                if f.t_mv is not None and f.t_form != "positive":
                    t += f" ({w.cite('t_amp_mv', f.t_mv, f.lead)})"
                bits.append(t)
            if f.q and f.q_ms is not None and f.form != "QS":
                bits.insert(0, f"a Q wave of {w.cite('q_ms', f.q_ms, f.lead)}")
            if not f.form:
                continue
            verb = w.pick("shows", "has") if i == 0 else ""
            head = f"{lead_name(f.lead)} {verb + ' ' if verb else ''}{qrs_article(f.form)} {f.form}"
            clauses.append(head + (" with " + join(bits) if bits else ""))
        if len(clauses) < 2:
            return []
        where = w.pick(*TERRITORY_WORDS[self.name])
        # semicolons between the leads: each lead's values stay with its name (a reader's and a parser's)
        body = "; ".join(clauses[:-1]) + "; and " + clauses[-1]
        return [w.pick(f"In {where}, {body}.", f"Lead by lead in {where}: {body}.", f"Across {where}, {body}.")]

    def avr(self) -> list[str]:
        w, f = self.w, self.facts[0]
        bits = []
        if f.form:
            bits.append(f"{qrs_article(f.form)} {f.form} complex")
        if f.st_mv is not None and self.level >= 2:
            bits.append(f"the ST segment at {w.cite('st_j_mv', f.st_mv, 'aVR')}")
        elif f.st_place and self.level >= 2:
            bits.append({"baseline": "the ST segment at the baseline", "above": "the ST segment above the baseline",
                         "below": "the ST segment below the baseline"}[f.st_place])
        if f.t_form:  # 'the T wave inverted', not 'an inverted T wave' (which names a T-wave inversion)
            word = T_WORDS.get(f.t_form, f.t_form)
            bits.append(w.pick(f"the T wave {word}", f"its T wave {word}",
                               f"the T wave {word}{', as expected there' if f.t_form == 'negative' else ''}"))
        if not bits:
            return []
        # never start a sentence with 'aVR': a lower-case start hides the sentence boundary from a reader's parser
        return [w.pick(f"Lead aVR shows {join(bits)}.", f"In aVR there is {join(bits)}.",
                       f"Lead aVR has {join(bits)}.")]

    # --- parts ---------------------------------------------------------------------------------------------
    def forms_text(self, plain: bool = False) -> str:
        """'an Rs complex in lead II, qR in lead III and R in aVF' (or plainly 'Rs in lead II, ...')."""
        groups: dict[str, list[str]] = {}
        for f in self.facts:
            if f.form:
                groups.setdefault(f.form, []).append(f.lead)
        if not groups:
            return ""
        style = 0 if plain else self._style
        parts = []
        for i, (form, leads) in enumerate(groups.items()):
            if style == 0 or i > 0:
                parts.append(f"{form} in {lead_list(leads)}")
            else:
                noun = "complex" if len(leads) == 1 else "complexes"
                art = f"{qrs_article(form)} " if len(leads) == 1 else ""
                parts.append(f"{art}{form} {noun} in {lead_list(leads)}")
        return join(parts)

    def q_text(self) -> str:
        w = self.w
        with_q = [f for f in self.facts if f.q and f.form != "QS"]
        if not with_q:
            return ""
        best = max(with_q, key=lambda f: (f.q_ms or 0.0, -(f.q_mv or 0.0)))
        leads = [f.lead for f in with_q]
        # 'Q wave' with a capital: the letter names the wave (and the validator's keyword is case-sensitive)
        size = "small Q wave" if all((f.q_ms or 0) < 40 for f in with_q) else "Q wave"
        noun = f"{word_article(size)} {size}" if len(leads) == 1 else size + "s"
        if best.q_ms is not None:
            where = "" if len(leads) == 1 else f" in {lead_name(best.lead)}"
            return f"{noun} in {lead_list(leads)} ({w.cite('q_ms', best.q_ms, best.lead)}{where})"
        return f"{noun} in {lead_list(leads)}"

    def rs_text(self, only: str | None = None) -> str:
        """The tallest R and the deepest S of the territory ('R' / 'S': only that one)."""
        w = self.w
        rs = [f for f in self.facts if f.r_mv is not None] if only in (None, "R") else []
        ss = [f for f in self.facts if f.s_mv is not None] if only in (None, "S") else []
        parts = []
        if rs:
            top = max(rs, key=lambda f: f.r_mv)
            # the wave's name right before its value (a reader's parser ties the number to the nearest wave)
            parts.append(w.pick(f"an R wave of {w.cite('r_amp_mv', top.r_mv, top.lead)} in {lead_name(top.lead)}",
                                f"R waves reaching {w.cite('r_amp_mv', top.r_mv, top.lead)} in "
                                f"{lead_name(top.lead)}"))
        if ss:
            deep = min(ss, key=lambda f: f.s_mv)
            if abs(deep.s_mv) >= 0.3 or not parts:
                parts.append(w.pick(f"an S wave of {w.cite('s_amp_mv', deep.s_mv, deep.lead)} in "
                                    f"{lead_name(deep.lead)}", f"S waves reaching "
                                    f"{w.cite('s_amp_mv', deep.s_mv, deep.lead)} in {lead_name(deep.lead)}"))
        return join(parts)

    def _values(self, fs: list[LeadFacts]) -> str:
        return join([f"{self.w.cite('st_j_mv', f.st_mv, f.lead)} in {lead_name(f.lead)}" for f in fs])

    def st_text(self) -> str:
        """A clause with a verb: 'the ST segment lies below the baseline in V5 and V6 (deepest -0.25 mV in V5),
        elsewhere near it'. Level 3 gives every lead's value, lower levels the extreme one."""
        w = self.w
        with_mv = [f for f in self.facts if f.st_mv is not None]
        if with_mv:
            lo, hi = w.st_bounds
            below = [f for f in with_mv if f.st_mv <= lo]
            above = [f for f in with_mv if f.st_mv >= hi]
            near = [f for f in with_mv if lo < f.st_mv < hi]
            parts = []
            for group, low in ((below, True), (above, False)):
                if not group:
                    continue
                if len(group) == 1 and len(with_mv) > 1:
                    vals = f" ({w.cite('st_j_mv', group[0].st_mv, group[0].lead)})"
                elif self.level >= 3 or len(group) == 1:
                    vals = f" ({self._values(group)})"
                else:
                    ext = min(group, key=lambda f: f.st_mv) if low else max(group, key=lambda f: f.st_mv)
                    vals = f" ({'deepest' if low else 'highest'} {w.cite('st_j_mv', ext.st_mv, ext.lead)} in " \
                           f"{lead_name(ext.lead)})"
                where = f" in {lead_list([f.lead for f in group])}" if len(group) < len(with_mv) or \
                    self.level < 3 and len(group) > 1 else ""
                if low:
                    parts.append(w.pick(f"the ST segment lies below the baseline{where}{vals}",
                                        f"the J point sits low{where}{vals}"))
                else:
                    parts.append(w.pick(f"the ST segment is raised{where}{vals}",
                                        f"the J point sits high{where}{vals}"))
            if near and not (parts and self.level == 1):  # the compact walk names only the leads off the baseline
                if self.level >= 3 or (len(near) == 1 and not parts):
                    vals = f" ({self._values(near)})"
                elif self.level == 2 and not parts:
                    far = max(near, key=lambda f: abs(f.st_mv))
                    vals = f" (largest {w.cite('st_j_mv', far.st_mv, far.lead)} in {lead_name(far.lead)})"
                else:
                    vals = ""
                if parts:
                    parts.append(w.pick(f"elsewhere the ST segment stays near the baseline{vals}",
                                        f"in the other leads the ST segment is close to the baseline{vals}",
                                        f"the remaining leads keep the ST segment near the baseline{vals}"))
                else:
                    parts.append(w.pick(f"the ST segment stays near the baseline{vals}",
                                        f"the ST segment is close to the baseline{vals}",
                                        f"the ST segment lies on the baseline{vals}",
                                        f"the ST segment shows no real deviation{vals}",
                                        f"ST levels sit near the isoelectric line{vals}"))
            return ", ".join(parts)
        placed: dict[str, list[str]] = {}
        for f in self.facts:
            if f.st_place:
                placed.setdefault(f.st_place, []).append(f.lead)
        if not placed:
            return ""
        words = {"baseline": "at the baseline", "above": "above the baseline", "below": "below the baseline"}
        body = grouped({words[k]: v for k, v in placed.items()}, len(self.facts), self.level <= 2)
        if w.said_relative_st:
            return "the ST segment lies " + body
        w.said_relative_st = True
        return w.pick("the ST segment, judged against each lead's QRS size, ",
                      "the ST segment, relative to the QRS size, ") + "lies " + body

    def t_text(self) -> str:
        w = self.w
        groups: dict[str, list[LeadFacts]] = {}
        for f in self.facts:
            if f.t_form:
                groups.setdefault(f.t_form, []).append(f)
        if not groups:
            return ""
        words: dict[str, list[str]] = {}
        amps: dict[str, str] = {}
        # one amplitude per clause, for the most abnormal form: two signed values in one clause read ambiguously
        rank = {"negative": 0, "flat": 3, "biphasic": 2, "positive": 1}
        for form, fs in groups.items():
            words[T_WORDS.get(form, form)] = [f.lead for f in fs]
        if self.level >= 2:
            form = min(groups, key=lambda x: rank.get(x, 9))
            fs = [f for f in groups[form] if f.t_mv is not None]
            if fs and form != "flat" and (form != "positive" or len(groups) == 1):
                big = max(fs, key=lambda f: abs(f.t_mv))
                amps[T_WORDS.get(form, form)] = w.cite("t_amp_mv", big.t_mv, big.lead) + \
                    (f" in {lead_name(big.lead)}" if len(groups[form]) > 1 else "")
        body = _t_body(words, amps, len(self.facts), self.level <= 2)
        total = sum(len(fs) for fs in groups.values())
        verb = "is" if total == 1 else "are"
        lead_in = w.pick(f"the T waves {verb} ", f"T waves {verb} ", "the T wave polarity is ",
                         "the T waves stand ", "T-wave polarity is ")
        if "polarity" in lead_in:
            body = body.replace("upright", "positive").replace("inverted", "negative")
        elif lead_in.endswith("stand ") and (len(words) > 1 or "upright" not in words):
            lead_in = f"the T waves {verb} "
        return lead_in.replace("waves is", "wave is") + body

    def p_text(self) -> str:
        w = self.w
        # lead II's and V1's P waves; lead I's only at full detail
        key = {"inferior": "II", "anterior": "V1", "lateral": "I" if self.level >= 3 else None}.get(self.name)
        f = next((x for x in self.facts if x.lead == key and x.p_form), None)
        if f is None:
            return ""
        detail = []
        if f.p_mv is not None:
            detail.append(w.cite("p_amp_mv", f.p_mv, f.lead))
        if f.p_ms is not None and self.level >= 3:
            detail.append(w.cite("p_ms", f.p_ms, f.lead))
        d = f" ({join(detail)})" if detail else ""
        word = P_WORDS[f.p_form]
        lead = lead_name(f.lead)
        # never "lead II's P wave": a possessive hides the lead name from a reader's parser
        return w.pick(f"{word_article(word)} {word} P wave in {lead}{d}", f"the P wave {word} in {lead}{d}",
                      f"P waves {word} in {lead}{d}")


def global_st(w) -> str:
    """One sentence for the ST segment of the whole tracing when it is near the baseline in every measured lead
    (the compact walk then leaves the ST out of each territory); '' otherwise."""
    facts = [f for f in w.facts.values()]
    with_mv = [f for f in facts if f.st_mv is not None]
    lo, hi = w.st_bounds
    if with_mv and len(with_mv) == len(facts) and all(lo < f.st_mv < hi for f in with_mv):
        far = max(with_mv, key=lambda f: abs(f.st_mv))
        return w.pick("The ST segment stays near the baseline in every lead, the largest deviation being "
                      f"{w.cite('st_j_mv', far.st_mv, far.lead)} in {lead_name(far.lead)}.",
                      f"In every lead the ST segment is close to the baseline (largest "
                      f"{w.cite('st_j_mv', far.st_mv, far.lead)} in {lead_name(far.lead)}).")
    if facts and all(f.st_mv is None and f.st_place == "baseline" for f in facts):
        return w.pick("Judged against each lead's QRS size, the ST segment lies at the baseline in every lead.",
                      "In every lead the ST segment, relative to the QRS size, lies at the baseline.")
    return ""


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]
