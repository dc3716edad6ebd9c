"""The offline writer's sections before the territory walk: rhythm and rate, ectopic beats, axis and intervals (the
report statements are in ``pipeline.writer_statements``).

Each function takes the writer state ``w`` (``pipeline.writer._Writer``) and emits sentences through ``w.emit``,
which refuses a sentence that names a diagnosis outside the report's closure or cites a value that fails the
criterion of a diagnosis it names. Statement sentences only ever draw their evidence from met criteria
(``pipeline.criteria``), so a refused sentence is a bug guard, not the normal path.
"""
from __future__ import annotations

import re

from pipeline import derived
from pipeline.criteria import evaluate
from pipeline.cutoffs import cutoff, cutoffs
from pipeline.writer_leads import join, lead_list

# Rhythm statements that name the underlying rhythm (ectopy and AV conduction get their own sentences).
PRIMARY_RHYTHMS = ("SR", "SBRAD", "STACH", "SARRH", "AFIB", "AFLT", "PSVT", "SVTAC", "SVARR", "PACE", "WAP")
ECTOPY = ("PAC", "PVC", "PRC(S)", "BIGU", "TRIGU")
INTERVAL_STATEMENTS = ("1AVB", "LPR", "SPR", "LNGQT", "SQT", "IVCD", "BBB", "WPW")

_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                 "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
                 "twenty")
_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
             "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth", "seventeenth",
             "eighteenth", "nineteenth", "twentieth")


def ordinal(n: int) -> str:
    return _ORDINALS[n - 1] if 1 <= n <= len(_ORDINALS) else f"number {n}"


def seconds_in_words(ms: float) -> str:
    """A time in the tracing to the nearest half second, in words: 'about two and a half seconds in'."""
    half = round(ms / 500.0)
    whole, frac = divmod(half, 2)
    if whole == 0:
        return "within the first half second" if frac == 0 else "about half a second in"
    word = _NUMBER_WORDS[whole] if whole < len(_NUMBER_WORDS) else str(whole)
    unit = "second" if whole == 1 and not frac else "seconds"
    return f"about {word}{' and a half' if frac else ''} {unit} in"


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _is_plural(name: str) -> bool:
    """Whether a statement's name takes 'are': its head noun, before 'in' / 'of' / 'for' ('ischemia in lateral
    leads' is singular, 'premature atrial complexes' plural)."""
    name = re.split(r" (?:in|of|for) ", name.lower())[0]
    words = name.split()
    return (words[-1].endswith("s") and words[-1] not in ("sinus", "axis")) or words[0] in ("changes", "criteria") \
        or (len(words) > 1 and words[1] == "criteria")


def name_of(w, sid: str) -> str:
    return w.kb.entries[sid].name


# --- rhythm and rate ----------------------------------------------------------------------------------------

def rhythm(w) -> None:
    rec = w.rec
    ids = [i for i in w.statements if i in PRIMARY_RHYTHMS]
    implied = set().union(*(w.kb.closure([i]) - {i} for i in ids)) if ids else set()
    ids = [i for i in ids if i not in implied]
    names = join([name_of(w, i) for i in ids])
    hr = w.value("hr_bpm")
    conflicted = any(evaluate(w.ctx, i, w.kb).conflicts for i in ids)
    regular = rec.get("rhythm_regular")
    n_early = w.value("n_premature") or 0
    closure = w.kb.closure(w.statements)
    # atrial fibrillation's RRs vary with its irregular atrial activity, those of a flutter with variable block with
    # the conduction ratio: neither has a basic cycle for early beats to interrupt (as ectopy() says), so their RRs
    # are given by their spread. A regular flutter (fixed conduction) keeps its basic cycle
    af = "AFIB" in closure or ("AFLT" in closure and regular is False)
    rr_bits = []
    if regular is not None and w.value("rr_mean_ms") is not None:
        if regular and not n_early:
            rr = w.cite("rr_mean_ms", w.value("rr_mean_ms"))
            rr_bits.append(w.pick(f"regular RR intervals averaging {rr}", f"a regular rhythm, RR intervals averaging {rr}",
                                  f"evenly spaced RR intervals with a mean of {rr}",
                                  f"regular RR intervals, {rr} on average"))
        elif not regular and (not n_early or af) and w.value("rr_sd_ms") is not None:
            # 'with' starts the tail already: 'at 80 bpm, with RR intervals that vary by an RR standard deviation ...'
            rr_bits.append(f"RR intervals that vary by an RR standard deviation of "
                           f"{w.cite('rr_sd_ms', w.value('rr_sd_ms'))}")
        elif n_early and not af and w.level >= 2:  # the compact answer leaves the basic cycle to the early beats' RRs
            basic = derived.record_value(w.ctx, "basic_rr_ms")
            if basic is not None:
                rr_bits.append(w.pick(f"a basic RR interval of {w.cite('rr_ms', basic)} interrupted by early beats",
                                      f"an underlying RR interval of {w.cite('rr_ms', basic)} apart from the early "
                                      f"beat{'s' if n_early > 1 else ''}"))
    p_present = rec.get("p_waves_present")
    # a fact that argues against a report statement is left unsaid (the report stands): no 'no P waves' in a
    # sinus rhythm, no 'a P wave before every QRS' in atrial fibrillation, no 'regular' in atrial fibrillation
    expect_p = False if closure & {"AFIB", "AFLT"} else True if closure & {"SR", "SBRAD", "STACH", "SARRH"} else None
    unresolved = expect_p is not None and p_present is not None and p_present != expect_p
    if unresolved:
        p_present = None
    if "AFIB" in closure and regular:
        rr_bits = []
    p_bit = ""
    if rec.get("av_dissociation") is True and expect_p is not False:
        # P waves found running at a regular rate of their own, unrelated to the QRS (features.av_dissociation:
        # complete AV block): they are there, but no QRS has its own P, and none of them times a PR
        p_bit = w.pick("P waves that run at their own rate, unrelated to the QRS complexes",
                       "P waves that march through at their own rate, independent of the QRS complexes")
    elif p_present is True:
        p_bit = w.pick("a P wave before every QRS complex", "each QRS preceded by a P wave",
                       "a P wave ahead of each QRS")
    elif p_present is False:
        p_bit = w.pick("no consistent P wave ahead of the QRS complexes", "no organised P waves before the QRS")
    elif unresolved and expect_p is False:  # the report's fibrillation or flutter has none: its word stands
        p_bit = w.pick("no organised P waves before the QRS", "no distinct P waves")
    elif unresolved:  # the measurement and the report disagree about P waves: say only that they are not timed
        p_bit = w.pick("P waves that cannot be timed reliably against the QRS",
                       "P waves that the measurement cannot time reliably against the QRS")
    tail = join([*rr_bits, p_bit])
    if names and not conflicted:
        rate = w.cite("hr_bpm", hr) if hr is not None else ""
        if re.search(r"\brhythm\b", names):  # 'sinus rhythm', 'paced rhythm': not 'the rhythm is sinus rhythm'
            head = w.pick(f"The tracing shows {names}" + (f" at {rate}" if rate else ""),
                          f"This 12-lead ECG shows {names}" + (f" with a heart rate of {rate}" if rate else ""),
                          f"There is {names}" + (f", rate {rate}" if rate else ""))
        else:
            head = w.pick(f"The rhythm is {names}" + (f" at {rate}" if rate else ""),
                          f"This 12-lead ECG shows {names} as the rhythm" + (f" at {rate}" if rate else ""),
                          f"The underlying rhythm is {names}" + (f", rate {rate}" if rate else ""))
        if w.emit(head + (f", with {tail}" if tail else "") + "."):
            return
        names_only = True
    else:
        names_only = bool(names)
    if names_only:  # the measurements argue against a number: the rhythm named alone, the numbers apart
        w.emit(w.pick(f"The rhythm is read as {names}.", f"The rhythm is interpreted as {names}."))
    rate = w.cite("hr_bpm", hr) if hr is not None else ""
    word = "regular" if regular and not n_early else "irregular" if regular is False and not n_early else ""
    if rate:
        lead_in = w.pick(f"The heart rate is {rate}", f"The ventricular rate measures {rate}")
        if not names:
            word = "" if rr_bits else word  # the RR clause already says regular / irregular
            lead_in = w.pick(f"The rhythm{' is ' + word + ',' if word else ' has'} a heart rate of {rate}",
                             f"The ventricular rhythm runs at {rate}" + (f" and is {word}" if word else ""))
        w.emit(lead_in + (f", with {tail}" if tail else "") + ".")
    elif tail:
        w.emit(cap(w.pick("the rhythm shows ", "the rhythm has ")) + tail + ".")


# --- ectopic beats ------------------------------------------------------------------------------------------

def _singular(w, sid: str) -> str:
    """The statement's name for one beat ('premature atrial complex') when the knowledge base knows that form."""
    name = name_of(w, sid)
    for cut_ in ("es", "s"):
        one = name[:-len(cut_)] if name.endswith(cut_) else name
        if w.kb.entry_for_phrase(one) == sid:
            return one
    return name


def _beat_detail(w, e) -> str:
    """What one early beat does, by detail: the RR before and after it, then its QRS and P wave. The QRS is said
    of 'this early beat', so a reader (and the validator) takes it for the beat's own."""
    if w.ectopy_detail == 0 or e.coupling_ms is None:
        return f"arrives after an RR of {w.cite('rr_ms', e.coupling_ms)}" if e.coupling_ms is not None else \
            "comes early"
    if e.next_rr_ms is not None:
        text = w.pick(f"arrives after an RR of {w.cite('rr_ms', e.coupling_ms)} and is followed by an RR of "
                      f"{w.cite('rr_ms', e.next_rr_ms)}",
                      f"is coupled at an RR of {w.cite('rr_ms', e.coupling_ms)} with an RR of "
                      f"{w.cite('rr_ms', e.next_rr_ms)} after it")
        if e.compensatory:  # the two RR intervals make up two basic cycles: a full compensatory pause
            text += w.pick(", together two basic cycles", ", the two making two basic cycles")
    else:
        text = f"arrives after an RR of {w.cite('rr_ms', e.coupling_ms)}"
    tail = []
    if e.qrs_ms is not None and w.ctx.citable("qrs_ms"):  # a beat's QRS is as reliable as the record's
        # value first: "QRS of N ms" reads as the record's QRS to a scorer (../shared/tools/cited_truth.py)
        tail.append(f"a {w.cite('qrs_ms', e.qrs_ms)} QRS")
    tail.append("a P wave before it" if e.p_before else "no P wave before it")
    return text + ", and this early beat has " + join(tail)


def _other_beat(w, e, detail: int) -> str:
    """A further early beat: ordinal, then its time (detail 1) and the RR before it (detail 2)."""
    bits = [seconds_in_words(e.time_ms or 0.0)] if detail >= 1 else []
    if detail >= 2 and e.coupling_ms is not None:
        bits.append(f"after an RR of {w.cite('rr_ms', e.coupling_ms)}")
    return f"the {ordinal(e.ordinal)} beat" + (f" ({', '.join(bits)})" if bits else "")


def _ordinals(beats) -> str:
    """'the second beat', 'the second, fourth and tenth beats'."""
    words = [ordinal(e.ordinal) for e in beats]
    return f"the {join(words)} beat{'s' if len(words) > 1 else ''}"


def ectopy(w) -> None:
    """The early beats: their total, then each origin's beats by ordinal, the first of them in full. Counts are
    only of all early beats (a subgroup is named by its ordinals), so no number can be read as the total."""
    beats = derived.ectopic_beats(w.ctx)
    wanted = [i for i in w.statements if i in ECTOPY]
    if not beats:
        if not wanted and (w.value("n_premature") or 0) == 0 and w.rng.random() < 0.6 and w.ectopy_detail >= 1:
            w.section = "ectopy_none"
            w.emit(w.pick("No early beats are seen.", "There are no early beats in the strip.",
                          "Every beat arrives on time."))
            w.section = "ectopy"
        return
    dominant = derived.record_value(w.ctx, "dominant_qrs_ms")
    narrow = dominant is not None and dominant < cutoff("qrs_wide_ms")
    # 'early' in every predicate: a beat named by its ordinal is said to be early, never just 'like the others'
    kinds = {"supraventricular": ("early and narrow, shaped like the dominant beats" if narrow else
                                  "early but shaped like the dominant beats"),
             "ventricular": "early and wide, unlike the dominant beats",
             # not "but not wide": a beat narrower than broad dominant beats may still be wide (LUDB 45: 134 ms
             # among paced beats of 180)
             "unclassified": "early, of uncertain origin (its QRS unlike the dominant beats')"}
    if w.level == 1:  # the compact answer keeps the beats' numbers, not the words around them
        kinds = {"supraventricular": "early and narrow" if narrow else "early but shaped like the dominant beats",
                 "ventricular": "early and wide", "unclassified": "early, of uncertain origin"}
    statement_for = {"supraventricular": "PAC", "ventricular": "PVC"}
    in_af = bool(w.kb.closure(w.statements) & {"AFIB", "AFLT"})
    if in_af:
        # in atrial fibrillation or flutter an 'early' conducted beat is just the irregular rhythm: only beats of
        # ventricular origin are described, and not counted (the count would read as all early beats)
        beats = [e for e in beats if e.origin == "ventricular"]
        if not beats:
            return
    n = len(beats)
    groups = [(o, [e for e in beats if e.origin == o]) for o in ("supraventricular", "ventricular", "unclassified")]
    groups = [(o, own) for o, own in groups if own]
    intro = w.pick(f"{cap(_count(n))} early beat{'s' if n != 1 else ''} interrupt{'s' if n == 1 else ''} the rhythm",
                   f"There {'is' if n == 1 else 'are'} {_count(n)} early beat{'s' if n != 1 else ''}")
    sentences = []
    for origin, own in groups:
        sid = statement_for.get(origin)
        named = ""
        if sid in wanted and evaluate(w.ctx, sid, w.kb).core_met:
            named = f", {'a ' + _singular(w, sid) if len(own) == 1 else name_of(w, sid)}"
        first = own[0]
        when = f" ({seconds_in_words(first.time_ms or 0.0)})"
        if len(own) == 1:
            subject = "it" if len(groups) == 1 and n == 1 else _ordinals(own)
            text = f"{subject}{when if subject != 'it' else ''} is {kinds[origin]}{named}: it {_beat_detail(w, first)}"
            if subject == "it":
                text = f"the {ordinal(first.ordinal)} beat{when} is {kinds[origin]}{named}: it " \
                       f"{_beat_detail(w, first)}"
        else:
            shown = own[:6]
            which = _ordinals(shown) + (f" and {len(own) - len(shown)} more" if len(own) > len(shown) else "")
            text = f"{which} are {kinds[origin]}{named}; the {ordinal(first.ordinal)}{when} {_beat_detail(w, first)}"
            rest = own[1:4] if w.ectopy_detail >= 1 else []
            if rest:
                text += "; " + join([_other_beat(w, e, w.ectopy_detail) for e in rest]) + \
                    (" come" if len(rest) > 1 else " comes") + " early as well"
        sentences.append(text)
    if in_af:
        for text in sentences:
            w.emit(cap(text.replace("it is early", "is early", 1)) + ".")
    elif len(groups) == 1:
        w.emit(intro + ": " + sentences[0] + ".")
    else:
        w.emit(intro + ".")
        for text in sentences:
            w.emit(cap(text) + ".")
    for sid in wanted:
        if sid in ("BIGU", "TRIGU") and evaluate(w.ctx, sid, w.kb).core_met:
            every = "every other beat" if sid == "BIGU" else "every third beat"
            w.emit(w.pick(f"The early beats fall on {every} for several cycles, a {name_of(w, sid)}.",
                          f"The early beats recur as {every}, giving a {name_of(w, sid)}."))
        elif sid == "PRC(S)" and evaluate(w.ctx, sid, w.kb).core_met:
            w.emit(w.pick(f"These early beats are {name_of(w, sid)}.", f"The early beats amount to {name_of(w, sid)}."))


def _count(n: int) -> str:
    return _NUMBER_WORDS[n] if n < len(_NUMBER_WORDS) else str(n)


# --- axis -----------------------------------------------------------------------------------------------------

def _expected_polarity(lead: str, axis: float) -> str:
    """The net QRS polarity a frontal axis implies for a limb lead (positive within 90 degrees of its angle)."""
    angle = {"I": 0.0, "II": 60.0, "III": 120.0, "aVF": 90.0, "aVL": -30.0, "aVR": -150.0}[lead]
    diff = abs((axis - angle + 180.0) % 360.0 - 180.0)
    return "positive" if diff < 90.0 else "negative"


def _quadrant(pols: dict) -> str:
    """The hexaxial quadrant from the net QRS polarity of I and aVF (signs only, so a per-lead gain keeps it)."""
    i, f = pols.get("I"), pols.get("aVF")
    if i not in ("positive", "negative") or f not in ("positive", "negative"):
        return ""
    return {("positive", "positive"): "lower left", ("positive", "negative"): "upper left",
            ("negative", "positive"): "lower right", ("negative", "negative"): "upper right"}[(i, f)]


def axis(w) -> None:
    ids = [i for i in w.statements if w.kb.entries[i].category == "axis"]
    ax = w.value("qrs_axis_deg")
    pols = {lead: w.facts[lead].polarity for lead in ("I", "II", "aVF", "aVL", "III") if lead in w.facts}
    deciding = []
    for lead in ("I", "aVF", "II"):
        p = pols.get(lead)
        if p in ("positive", "negative") and (ax is None or _expected_polarity(lead, ax) == p):
            deciding.append((lead, p))
    if ax is not None and -30 <= ax < 0 and len(deciding) < 3 and pols.get("II") == "positive":
        pass  # lead II keeps a borderline-left axis out of left deviation; already in the list when measured
    polar = bits_text = ""
    if deciding:
        pos = [lead for lead, p in deciding if p == "positive"]
        neg = [lead for lead, p in deciding if p == "negative"]
        bits = []
        if pos:
            bits.append(f"{w.pick('mainly', 'predominantly', 'largely')} positive in {lead_list(pos)}")
        if neg:
            bits.append(f"{w.pick('mainly', 'predominantly', 'largely')} negative in {lead_list(neg)}")
        bits_text = join(bits)
        polar = w.pick("with the QRS ", "with the net QRS ", "as the QRS is ", "the QRS being ") + bits_text
    supported = [i for i in ids if evaluate(w.ctx, i, w.kb).core_met]
    other = [i for i in ids if i not in supported]
    names = join([name_of(w, i) for i in supported])
    if ax is not None:
        head = w.pick(f"The frontal QRS axis is {w.cite('qrs_axis_deg', ax)}",
                      f"The QRS axis lies at {w.cite('qrs_axis_deg', ax)}",
                      f"The electrical axis measures {w.cite('qrs_axis_deg', ax)}",
                      f"In the frontal plane the QRS axis points to {w.cite('qrs_axis_deg', ax)}")
        text = head + (f", {polar}" if polar else "") + (f", in keeping with {names}" if names else "") + "."
    elif polar:
        quadrant = _quadrant(pols)
        text = w.pick("For the axis, the QRS is ", "Judging the axis, the QRS is ") + bits_text + (
            f", which fits {names}" if names else f", which puts the frontal axis in the {quadrant} quadrant"
            if quadrant else "") + "."
    elif names:
        text = f"The frontal axis shows {names}."
    else:
        text = ""
    if text:
        w.emit(text)
    for i in other:
        w.emit(w.pick(f"The axis is read as {name_of(w, i)}.", f"The axis is interpreted as {name_of(w, i)}."))


# --- intervals ------------------------------------------------------------------------------------------------

MIXED_PACED_SHARE = 0.25  # paced and other beats both at least this share of the beats: two QRS populations


def _qrs_population(w) -> str:
    """'' or ' in the conducted beats' / ' in the paced beats': which of two QRS populations (paced and
    conducted beats both common: a demand pacemaker in atrial fibrillation) the record's QRS and QT describe,
    by the population whose beats' QRS lies nearer it. Unqualified, "the QRS is 85 ms" of a record whose beats are
    mostly paced at 114-154 ms reads as the paced beats' QRS (LUDB 95)."""
    from pipeline.grounding import MeasurementIndex

    qrs = w.rec.get("qrs_ms")
    idx = MeasurementIndex.of(w.ctx)
    per_beat = idx.beat_global.get("qrs_ms") or []
    if qrs is None or not idx.beat_class or len(per_beat) != len(idx.beat_class):
        return ""
    paced = [v for v, k in zip(per_beat, idx.beat_class) if k == "paced" and v is not None]
    other = [v for v, k in zip(per_beat, idx.beat_class) if k != "paced" and v is not None]
    n = len(paced) + len(other)
    if min(len(paced), len(other)) < 2 or min(len(paced), len(other)) < MIXED_PACED_SHARE * n:
        return ""
    med = {name: sorted(v)[len(v) // 2] for name, v in (("paced", paced), ("conducted", other))}
    return f" in the {min(med, key=lambda k: abs(med[k] - qrs))} beats"


def intervals(w) -> None:
    sex = w.sex
    pr, qrs, qt, qtc = (w.value(c) for c in ("pr_ms", "qrs_ms", "qt_ms", "qtc_bazett_ms"))
    population = _qrs_population(w)
    stmt = [i for i in w.statements if i in INTERVAL_STATEMENTS and evaluate(w.ctx, i, w.kb).core_met]
    parts = []
    named = {i: name_of(w, i) for i in stmt}
    # no P waves measured, or none in the report's rhythm (fibrillation, flutter): no PR to give
    no_p = w.rec.get("p_waves_present") is False or w.ctx.report_p_waves is False
    if pr is not None and not no_p:
        long_, short = cutoffs()["pr_prolonged_ms"].abnormal(pr), cutoffs()["pr_short_ms"].abnormal(pr)
        dx = next((named.pop(i) for i in ("1AVB", "LPR", "SPR", "WPW") if i in named), None)
        # 'lengthened' / 'only': not 'longer than normal', which a reader may take for 'normal'
        text = f"a {'lengthened ' if long_ and not dx else ''}PR interval of {'only ' if short and not dx else ''}" \
               f"{w.cite('pr_ms', pr)}"
        if dx:
            text += f" ({dx})"
        parts.append(("pr", text))
    elif no_p:
        parts.append(("pr", "no measurable PR interval"))
    if qrs is not None:
        word = "wide " if qrs >= cutoff("qrs_wide_ms") else "narrow " if qrs < cutoff("qrs_normal_max_ms") else ""
        text = w.pick(f"a {word}QRS of {w.cite('qrs_ms', qrs)}", f"a {word}QRS duration of {w.cite('qrs_ms', qrs)}")
        text += population
        dx = next((named.pop(i) for i in ("IVCD", "BBB") if i in named), None)
        parts.append(("qrs", text + (f" ({dx})" if dx else "")))
    if qt is not None:
        parts.append(("qt", f"a QT of {w.cite('qt_ms', qt)}{population}"))
    if qtc is not None:
        q = cutoffs()
        text = w.pick(f"a QTc (Bazett) of {w.cite('qtc_bazett_ms', qtc)}", f"a QTc of {w.cite('qtc_bazett_ms', qtc)}")
        dx = next((named.pop(i) for i in ("LNGQT", "SQT") if i in named), None)
        if dx:
            text += f" ({dx})"
        elif q["qtc_prolonged_ms"].abnormal(qtc, sex):
            who = {"male": " for a man", "female": " for a woman"}.get(sex or "", "")
            text += f", above the upper limit of normal{who}"
        elif q["qtc_short_ms"].abnormal(qtc):
            text = text.replace(" of \x00", " of only \x00")
        parts.append(("qtc", text))
    # an interval whose value is not citable (a low-confidence measurement) is named as such, never stated
    unsure = [label for col, label in (("pr_ms", "PR interval"), ("qrs_ms", "QRS duration"), ("qt_ms", "QT interval"))
              if w.rec.get(col) is not None and not w.ctx.citable(col)
              and (col != "pr_ms" or not no_p)]
    if unsure:
        w.section = "intervals"
        w.emit(w.pick(f"The {join(unsure)} cannot be measured reliably on this tracing.",
                      f"On this tracing the {join(unsure)} {'is' if len(unsure) == 1 else 'are'} not reliably "
                      f"measurable."))
    if not parts:
        return
    style = w.rng.randrange(4)
    if w.level == 1:  # the compact answer: the values in one short sentence
        short = []
        for k, p in parts:
            m = re.match(r"an? (?:lengthened |narrow |wide )?(.*?) (?:of|duration of) (?:only )?(\x00\d+\x00)(.*)", p)
            short.append(f"{m.group(1).replace(' interval', '').replace(' duration', '')} {m.group(2)}{m.group(3)}"
                         if m else p)
        w.emit(w.pick("The intervals are ", "Intervals: ", "Measured intervals are ") + join(short) + ".")
    elif style == 0:
        w.emit(cap(w.pick("the intervals show ", "measured intervals are ", "the tracing has ",
                          "interval measurements give ")) + join([p for _, p in parts]) + ".")
    elif style == 1:
        first = [p for k, p in parts if k in ("pr", "qrs")]
        second = [p for k, p in parts if k in ("qt", "qtc")]
        if first:
            w.emit(cap(w.pick("conduction shows ", "the tracing has ", "there is ", "AV and ventricular conduction "
                              "give ")) + join(first) + ".")
        if second:
            w.emit(cap(w.pick("ventricular repolarisation gives ", "for repolarisation there is ",
                              "repolarisation shows ", "repolarisation takes ")) + join(second) + ".")
    else:
        # the same values, the intervals as subjects: 'The PR interval measures 160 ms, the QRS ...'
        verbs = {"pr": ("measures", "is"), "qrs": ("measures", "is"), "qt": ("measures", "is"),
                 "qtc": ("comes to", "is")}
        clauses = []
        for k, p in parts:
            m = re.match(r"an? (.*?) (?:of|duration of) (?:only )?(\x00\d+\x00)(.*)", p)
            if m is None:
                clauses.append(p)
                continue
            # no width word here: 'the PR interval is 110 ms, the narrow QRS' reads as a narrow PR to a parser
            subject = re.sub(r"^(?:narrow|wide|lengthened) ", "", m.group(1).strip())
            clauses.append(f"the {subject} {w.pick(*verbs[k])} {m.group(2)}{m.group(3)}")
        w.emit(cap(join(clauses)) + ".")
    from pipeline.writer_statements import statement

    for sid in named:  # interval statements not attached to their interval above
        statement(w, sid)
