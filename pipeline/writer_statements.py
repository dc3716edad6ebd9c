"""The offline writer's report statements: each named with the evidence its met criteria give (never a value
that fails a criterion), statements with the very same evidence in one sentence, those that can only be named
together in one.

Sentences go through ``w.emit`` (``pipeline.writer._Writer``), which refuses a sentence naming a diagnosis outside
the report's closure or citing, next to a diagnosis, a value that fails that diagnosis's criterion.
"""
from __future__ import annotations

from pipeline.criteria import CriterionResult, evaluate
from pipeline.writer_leads import join, lead_list, lead_name, qrs_article
from pipeline.writer_text import _NUMBER_WORDS, _count, _is_plural, cap, name_of


def evidence_phrase(w, r: CriterionResult, max_leads: int = 3) -> str:
    """A phrase stating the met values of one criterion, with their leads; '' when nothing can be said."""
    c = r.criterion
    col = c.feature
    # a value is evidence only when it meets the criterion as written too (0.0996 mV is 'flat' but reads 0.10)
    met = [x for x in r.met_readings if isinstance(x.value, (bool, str)) or
           c.test(_as_written(col, x.value), w.sex) is not False]
    if not met:
        return ""
    if met[0].lead is None:
        v = met[0].value
        if col in ("pr_ms", "qrs_ms", "qt_ms", "qtc_bazett_ms", "hr_bpm", "qrs_axis_deg", "sokolow_lyon_mv",
                   "cornell_mv", "rr_sd_ms", "rr_mean_ms"):
            label = {"pr_ms": "a PR interval of", "qrs_ms": "a QRS duration of", "qt_ms": "a QT of",
                     "qtc_bazett_ms": "a QTc of", "hr_bpm": "a rate of", "qrs_axis_deg": "an axis of",
                     "sokolow_lyon_mv": "a Sokolow-Lyon voltage of", "cornell_mv": "a Cornell voltage of",
                     "rr_sd_ms": "an RR standard deviation of", "rr_mean_ms": "a mean RR of"}[col]
            return f"{label} {w.cite(col, v)}"
        words = {
            ("rhythm_regular", True): "regular RR intervals", ("rhythm_regular", False): "irregular RR intervals",
            ("p_waves_present", True): "a P wave before every QRS",
            ("p_waves_present", False): "no organised P waves",
            ("low_voltage_limb", True): "small QRS complexes in every limb lead",
            ("low_voltage_precordial", True): "small QRS complexes in every chest lead",
        }
        if (col, v) == ("p_waves_present", False) and (w.rec or {}).get("av_dissociation") is True:
            # the P waves are there, organised, at their own rate (features.av_dissociation): only none before each QRS
            return "no P wave at a steady place before the QRS complexes"
        if (col, v) in words:
            return words[(col, v)]
        if col == "n_paced":
            return f"{_count(int(v))} paced beat{'s' if v != 1 else ''}"
        if col in ("n_premature", "n_supraventricular_premature", "n_ventricular_premature"):
            return f"{_count(int(v))} early beat{'s' if v != 1 else ''}"
        if col == "n_long_pauses":
            return f"{_count(int(v))} long pause{'s' if v != 1 else ''} in the rhythm"
        if col == "ectopic_pattern":
            return {"bigeminy": "early beats on every other beat", "trigeminy": "early beats on every third beat"
                    }.get(v, "")
        if col == "rr_range_ms":
            return "sinus cycle lengths that change from beat to beat"
        if col == "pr_sd_ms":
            return "a PR interval that changes from beat to beat"
        if col == "p_morphology_count":
            return f"{_count(int(v))} different P-wave shapes in lead II"
        if col == "ptf_v1_depth_mv":  # said as V1's P amplitude: cited only where that is citable
            return f"a negative P wave of {w.cite('p_amp_mv', v, 'V1')} in V1" if w.ctx.citable("p_amp_mv", "V1") \
                else ""
        if col == "ptf_v1_ms":
            return f"a negative P wave in V1 lasting {w.cite('p_ms', v, 'V1')}" if w.ctx.citable("p_ms", "V1") else ""
        return ""
    leads = met[:max_leads]
    names = lead_list([r_.lead for r_ in leads])
    if col in ("q_wave_present", "r_prime_present", "s_wave_present", "qrs_polarity", "qrs_morphology",
               "p_form", "t_form", "r_peak_time_ms"):
        if col == "q_wave_present":
            return f"a q wave in {names}" if met[0].value else f"no q wave in {names}"
        if col == "r_prime_present":
            by_form: dict[str, list[str]] = {}
            for x in leads:
                fm = w.facts[x.lead].form if x.lead in w.facts else None
                if fm:
                    by_form.setdefault(fm, []).append(x.lead)
            return join([f"{qrs_article(fm)} {fm} pattern in {lead_list(ls)}" for fm, ls in by_form.items()]) or \
                f"a terminal R' in {names}"
        if col == "s_wave_present":
            return f"an S wave in {names}"
        if col == "qrs_polarity":
            groups: dict[str, list[str]] = {}
            for x in leads:
                groups.setdefault(x.value, []).append(x.lead)
            return join([f"a QRS {'mainly ' if p != 'equiphasic' else ''}{p} in {lead_list(ls)}"
                         for p, ls in groups.items()])
        if col == "qrs_morphology":
            return f"QS complexes in {names}"
        if col == "p_form":
            return f"{join(sorted({x.value for x in leads}))} P waves in {names}".replace("positive", "upright")
        if col == "t_form":
            words = {"negative": "inverted", "flat": "flat", "biphasic": "biphasic", "positive": "upright"}
            groups = {}
            for x in leads:
                groups.setdefault(words.get(x.value, x.value), []).append(x.lead)
            return "T waves " + join([f"{k} in {lead_list(v)}" for k, v in groups.items()])
        if col == "r_peak_time_ms":
            return f"a late R-peak time in {names}"
    label = {"st_j_mv": "an ST level of", "st_j60_mv": "a mid-ST level of", "t_amp_mv": _t_label(c),
             "q_ms": "Q waves lasting", "q_amp_mv": "Q waves", "r_amp_mv": "an R wave of", "s_amp_mv": "an S wave",
             "s_ms": "a broad S wave of", "p_amp_mv": "a P wave of", "p_ms": "a P wave duration of"}.get(col)
    if label is None:
        return ""
    vals = join([f"{w.cite(col, x.value, x.lead)} in {lead_name(x.lead)}" for x in leads])
    if col in ("q_amp_mv", "s_amp_mv"):
        return f"{label} {vals} deep" if len(leads) == 1 else f"{label} as deep as {vals}"
    return f"{label} {vals}"


def _ordinary(c) -> bool:
    """A criterion a normal tracing meets too (a QRS under 120 ms, P waves present, a rate up to 100 bpm): part of
    a statement's full support, but no evidence on its own for a statement the measurements do not establish."""
    return (c.feature == "qrs_ms" and c.cutoff == "qrs_wide_ms" and c.comparison == "<") or \
        (c.feature in ("p_waves_present", "rhythm_regular") and c.threshold is True) or \
        (c.feature == "hr_bpm" and c.cutoff == "tachycardia_bpm" and c.comparison == "<=")


def _evidence(w, sid: str) -> list[str]:
    """Evidence phrases of ``sid`` from its met criteria only (consistent with it, even when another fails);
    criteria a normal tracing meets count only when the statement's core holds."""
    v = evaluate(w.ctx, sid, w.kb)
    ev: list[str] = []
    # ... and only beside evidence that is not ordinary where the statement has criteria that are: a core held by
    # ordinary criteria alone, or by them and criteria no phrase can state (the rest not measurable: LUDB's
    # normalised amplitudes), shows nothing (LUDB 60: "left anterior fascicular block, shown by a QRS duration of
    # 110 ms", its qR in aVL met but unphrased)
    met = [r for r in v.met() if v.core_met or not _ordinary(r.criterion)]
    ptf = {r.criterion.feature: r for r in met if r.criterion.feature in ("ptf_v1_depth_mv", "ptf_v1_ms")}
    ordinary_only = True
    for r in met:
        if r.criterion.feature == "ptf_v1_ms" and "ptf_v1_depth_mv" in ptf:
            continue  # said with the depth, in one phrase
        p = evidence_phrase(w, r)
        if r.criterion.feature == "ptf_v1_depth_mv" and "ptf_v1_ms" in ptf and p and w.ctx.citable("p_ms", "V1"):
            p += f", lasting {w.cite('p_ms', ptf['ptf_v1_ms'].readings[0].value, 'V1')}"
        if p and p not in ev:
            ev.append(p)
            ordinary_only = ordinary_only and _ordinary(r.criterion)
        if len(ev) >= w.max_evidence:
            break
    defining = any(not _ordinary(r.criterion) and r.criterion.role != "supportive" for r in v.results)
    if ordinary_only and defining:
        return []  # (a statement whose every criterion is ordinary, sinus rhythm, is shown by them)
    return ev


def _bare(w, sid: str) -> bool:
    """Whether a statement can only be named: no met evidence and no unmeasurable-amplitude note."""
    v = evaluate(w.ctx, sid, w.kb)
    if w.kb.entries[sid].category == "other" or _evidence(w, sid):
        return False
    uncitable = any(r.status == "uncitable" and r.criterion.role != "supportive" for r in v.results)
    return bool(v.conflicts) or not uncitable


def statements(w, sids: list[str]) -> None:
    """The report statements in order; statements that the very same evidence fully supports share a sentence
    ('T waves inverted in V2 and V3 point to ischemia in anterior leads and ischemia in anteroseptal leads'), and
    statements that can only be named are named together in one."""
    groups: list[list[str]] = []
    seen: dict[str, int] = {}
    # a statement the measurements contradict is named alone, with its caveat (``statement``)
    bare = [sid for sid in sids if _bare(w, sid) and not evaluate(w.ctx, sid, w.kb).conflicts]
    for sid in sids:
        if sid in bare and len(bare) > 1:
            continue
        v = evaluate(w.ctx, sid, w.kb)
        key = None
        if v.core_met and not v.conflicts and w.kb.entries[sid].category != "other":
            ev = _evidence(w, sid)
            key = w.render(" | ".join(ev)) if ev else None
        if key is not None and key in seen:
            groups[seen[key]].append(sid)
            continue
        if key is not None:
            seen[key] = len(groups)
        groups.append([sid])
    for group in groups:
        if len(group) == 1:
            statement(w, group[0])
            continue
        ev = _evidence(w, group[0])
        names = join([name_of(w, s) for s in group])
        text = w.pick(f"{cap(join(ev))} point{'s' if len(ev) == 1 and not _plural_phrase(ev[0]) else ''} to "
                      f"{names}.", f"The findings fit {names}, with {join(ev)}.")
        if not w.emit(text):
            for sid in group:
                statement(w, sid)
    if len(bare) > 1:
        names = join([name_of(w, s) for s in bare])
        if not w.emit(w.pick(f"The reading also includes {names}.", f"{cap(names)} are also part of the reading.")):
            for sid in bare:
                statement(w, sid)


def _as_written(column: str, value: float) -> float:
    """``value`` rounded as the writer prints it (mV to 2 decimals, everything else to integers)."""
    return round(value, 2) if column.endswith("_mv") else float(round(value))


def _t_label(c) -> str:
    """How T-wave evidence is introduced: by what the criterion looks for (flat, inverted, tall)."""
    return {"t_flat_mv": "low T waves of", "t_inversion_mv": "T waves reaching", "t_tall_limb_mv": "tall T waves of",
            "t_tall_precordial_mv": "tall T waves of"}.get(c.cutoff or "", "a T wave of")


def statement(w, sid: str) -> None:
    """One report statement with the evidence its met criteria give; named without evidence when none is met."""
    v = evaluate(w.ctx, sid, w.kb)
    entry = w.kb.entries[sid]
    name = entry.name
    be = "are" if _is_plural(name) else "is"
    ev = _evidence(w, sid)
    if entry.category == "other":
        if sid == "NORM" and v.conflicts:
            # the reading is a normal ECG, yet a cited value is outside the normal limits (a QTc of 462 ms in a man):
            # 'a normal ECG' alone would contradict the sentence that cites it, so the exception is named, as a
            # clinician writes 'borderline QTc, otherwise normal ECG' (no number here: it fails this criterion)
            names = join(list(dict.fromkeys(_NORMAL_LIMIT_NOUNS.get(r.criterion.feature, "one measurement")
                                            for r in v.results if r.status == "unmet")))
            w.emit(w.pick(f"With the exception of {names}, this is an otherwise normal ECG.",
                          f"Leaving aside {names}, the tracing reads as a normal ECG."))
        else:
            w.emit(w.pick(f"Overall, this is {_a(name)} {name}.", f"The overall impression is {_a(name)} {name}."))
        return
    if ev and not (v.core_met and not v.conflicts):
        # consistent evidence, but not all a statement needs (a criterion fails or cannot be judged): no 'supported'
        text = w.pick(f"For {name}, the tracing shows {join(ev)}.", f"{cap(name)} {be} read here, with {join(ev)}.",
                      f"In line with {name}, there {'is' if not ev[0].startswith(('T waves', 'Q waves')) else 'are'} "
                      f"{join(ev)}.")
        if not w.emit(text):
            w.emit(f"{cap(name)} {be} also part of the reading.")
        return
    if ev:
        text = w.pick(f"{cap(name)} {be} supported by {join(ev)}.",
                      f"{cap(join(ev))} point{'s' if len(ev) == 1 and not _plural_phrase(ev[0]) else ''} to {name}.",
                      f"The findings fit {name}, with {join(ev)}.",
                      f"There {be} {name}, shown by {join(ev)}.")
        if not w.emit(text):
            w.emit(f"{cap(name)} {be} present.")
        return
    look = [lead for lead in entry.leads_to_look_at if lead in w.facts][:3]
    uncitable = [r for r in v.results if r.status == "uncitable" and r.criterion.role != "supportive"]
    if uncitable and not v.conflicts and look and all(r.status in ("uncitable", "by_eye", "unknown")
                                                       for r in v.results):
        w.emit(w.pick(f"{cap(name)} {be} part of the reading, although the amplitudes in {lead_list(look)} are not "
                      f"reliably measurable on this tracing.",
                      f"The reading includes {name}; the voltages in {lead_list(look)} are not reliably measurable "
                      f"on this tracing."))
        return
    if v.conflicts:
        # the reading names it, the measurements do not meet its criteria (a first-degree AV block read over a PR
        # of 183 ms): naming it plainly would contradict the interval cited earlier, so the answer says which
        # measurement falls short, without a number (the number fails the criterion) and without the cut-off
        nouns = list(dict.fromkeys(_NORMAL_LIMIT_NOUNS.get(r.criterion.feature, "") for r in v.results
                                   if r.status == "unmet"))
        if all(nouns):
            verb = "do" if len(nouns) > 1 else "does"
            w.emit(w.pick(f"{cap(name)} {be} part of the reading, although {join(nouns)} measured on this tracing "
                          f"{verb} not meet its criteria.",
                          f"The reading includes {name}, yet {join(nouns)} measured here {verb} not meet its "
                          f"criteria."))
            return
    # nothing measurable meets a criterion: named, with no claim about where it shows
    w.emit(w.pick(f"{cap(name)} {be} also part of the reading.", f"The reading also includes {name}.",
                  f"{cap(name)} {be} noted as well."))


# how a failed normal-limit criterion is named when a normal reading makes an exception of it
_NORMAL_LIMIT_NOUNS = {"pr_ms": "the PR interval", "qrs_ms": "the QRS duration", "qtc_bazett_ms": "the corrected QT",
                       "qt_ms": "the QT interval", "qrs_axis_deg": "the axis", "hr_bpm": "the rate"}


def _plural_phrase(phrase: str) -> bool:
    """Whether an evidence phrase's head noun is plural ('T waves inverted in V2', 'two early beats')."""
    first = phrase.split(" ", 2)
    return phrase.startswith(("T waves", "Q waves", "QS complexes", "small QRS")) or \
        (len(first) > 1 and first[0] in _NUMBER_WORDS[2:] and first[1] not in ("different",) and
         first[-1].split()[0].endswith("s"))


def _a(name: str) -> str:
    return "an" if name[:1].lower() in "aeiou" else "a"
