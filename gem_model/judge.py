"""GEM's eight-criterion LLM judge, with the faults of its released scoring fixed.

GEM (``gem_evaluation/``) renders a judge prompt with the model's text and the reference answer, sends it to
GPT-4o at the API's default temperature, repairs the answer with a long list of regexes and normalises the
scores in a notebook that looks for ``ECGFeatureGrounding`` / ``ClinicalDiagnosticFidelity`` while its prompt
asks for ``GroundedECGUnderstanding`` / ``RealisticDiagnosticProcess`` (two of the three headline columns come
out empty). Here:

- the eight criteria are asked for in our own words (``JUDGE_SYSTEM`` / ``JUDGE_USER``), at temperature 0, in
  JSON mode (``response_format = json_object``);
- any provider of the generate stage (``openai:MODEL``, ``deepseek:MODEL``, ``openai-compatible:MODEL``) through
  ``pipeline.llm``: the same request keys, durable response store, bounded retries and rate-limit handling,
  so a judgement is never paid for twice;
- both key spellings are read (``canonical_criterion``), and a criterion's value may be a list of
  ``{"Score", "Explanation"}`` items, one such item, or a bare number; scores written as arithmetic ("2+2") are
  evaluated without ``eval``;
- an answer that cannot be parsed is an explained failure of that record (the raw answer stays in the store);
- GEM's normalisation (``process_grounding_scores.ipynb`` at GEM's HEAD) is reproduced in ``normalise``:
  DiagnosisAccuracy = share of items scored > 0 x 100; LeadAssessmentCoverage = min(sum, 12) / 12 x 100;
  LeadAssessmentAccuracy = sum / 24 x 100; every other criterion = the plain sum of its items. A record
  without a criterion has no value for it (GEM's table is a pandas mean, which skips it).

The notebook changed once: at GEM's commit 361784f DiagnosisAccuracy was the mean of the item scores above 0,
/ 2 x 100, and the three 0-100 criteria the mean of their items above 0; HEAD (793cdbb) is what is reproduced.
Table 1 of the paper has values in ECGFeatureGrounding and ClinicalDiagnosticFidelity, so its judge answers
must have used the notebook's spelling (or another script): with the released prompt and notebook those two
columns are empty.
"""
from __future__ import annotations

import ast
import asyncio
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

# GEM's table columns, in Table 1's order; the prompt's own spellings map onto them.
CRITERIA: tuple[str, ...] = ("DiagnosisAccuracy", "AnalysisCompleteness", "AnalysisRelevance",
                             "LeadAssessmentCoverage", "LeadAssessmentAccuracy", "ECGFeatureGrounding",
                             "EvidenceBasedReasoning", "ClinicalDiagnosticFidelity")
ALIASES: dict[str, str] = {"GroundedECGUnderstanding": "ECGFeatureGrounding",
                           "RealisticDiagnosticProcess": "ClinicalDiagnosticFidelity",
                           "Evidence-BasedReasoning": "EvidenceBasedReasoning"}
PERCENT_CRITERIA = ("ECGFeatureGrounding", "EvidenceBasedReasoning", "ClinicalDiagnosticFidelity")  # 0-100 scales
_KEY_INDEX = {re.sub(r"[^a-z]", "", k.lower()): k for k in CRITERIA}
_KEY_INDEX.update({re.sub(r"[^a-z]", "", k.lower()): v for k, v in ALIASES.items()})


def canonical_criterion(key: str) -> str | None:
    """GEM's table name of a criterion key in either spelling (case, spaces and hyphens ignored), or None."""
    return _KEY_INDEX.get(re.sub(r"[^a-z]", "", str(key).lower()))


# ------------------------------------------------------------------------------------------------- prompt
JUDGE_SYSTEM = ("You grade interpretations of 12-lead ECGs. You compare a candidate interpretation with a "
                "reference interpretation of the same ECG written by a clinician, and you reply with a single "
                "JSON object and nothing else.")

_CRITERIA_TEXT = (
    "1. DiagnosisAccuracy: one item per diagnosis the candidate states. 2 = agrees with the reference and the "
    "candidate backs it with ECG findings; 1 = agrees with the reference but the supporting findings are missing or "
    "thin; 0 = wrong, or too vague to check.",
    "2. AnalysisCompleteness: one item per key ECG component the candidate discusses (rhythm, rate, PR interval, QRS "
    "duration, QT/QTc, axis, P waves, ST segments, T waves, findings in particular leads). 1 = discussed and "
    "consistent with the reference; 0 = left out or described wrongly.",
    "3. AnalysisRelevance: one item per finding or lead the candidate offers as evidence. 2 = clearly supports the "
    "diagnosis; 1 = relevant but not fully justified; 0 = unrelated or misleading.",
    "4. LeadAssessmentCoverage: one item per lead (I, II, III, aVR, aVL, aVF, V1 to V6) the candidate assesses. "
    "1 = assessed adequately; 0 = left out or described wrongly.",
    "5. LeadAssessmentAccuracy: one item per lead the candidate describes. 2 = the description matches the "
    "reference; 1 = roughly right with minor inconsistencies; 0 = contradicts the reference or ECG norms.",
    "6. ECGFeatureGrounding: exactly one item scored 0, 50, 80 or 100. 100 = concrete measured features (intervals, "
    "amplitudes, axis, morphology in named leads) are cited for every relevant finding and tied to the diagnoses; "
    "80 = features are cited explicitly and tied to the diagnoses; 50 = some features are cited but coverage is "
    "incomplete; 0 = only generic statements.",
    "7. EvidenceBasedReasoning: exactly one item scored 0, 50, 80 or 100. 100 = the findings lead step by step to "
    "the diagnosis with a complete justification; 80 = the path from findings to diagnosis is clear; 50 = some "
    "reasoning, with steps missing; 0 = the diagnosis does not follow from stated findings.",
    "8. ClinicalDiagnosticFidelity: exactly one item scored 0, 50, 80 or 100. 100 = the reading follows a "
    "clinician's systematic approach and weighs every relevant factor; 80 = it follows a systematic approach; "
    "50 = clinical reasoning is partial; 0 = no structured approach.",
)
# one paragraph per element; {generated} / {reference} are filled by judge_messages (str.format: literal braces
# of the JSON example are doubled)
JUDGE_USER = "\n\n".join((
    "Grade the CANDIDATE interpretation of a 12-lead ECG against the REFERENCE interpretation of the same ECG. Take "
    "the reference as correct. For each of the eight criteria below, list the items you scored, each as an object "
    "with an integer \"Score\" and a one-sentence \"Explanation\".",
    "\n".join(_CRITERIA_TEXT),
    "Score strictly, from what the two texts say and nothing else.",
    "CANDIDATE:\n{generated}",
    "REFERENCE:\n{reference}",
    "Reply with one JSON object whose keys are the eight criterion names above, each mapped to a list of "
    "{{\"Score\": <integer>, \"Explanation\": \"<one sentence>\"}} objects, for example {{\"DiagnosisAccuracy\": "
    "[{{\"Score\": 2, \"Explanation\": \"...\"}}], \"AnalysisCompleteness\": [...], ...}}. Write every score as a "
    "plain integer (no arithmetic), no comments, nothing outside the JSON object.",
))

JUDGE_PROMPT_VERSION = hashlib.sha256((JUDGE_SYSTEM + "\0" + JUDGE_USER).encode()).hexdigest()[:12]


def judge_messages(generated: str, reference: str) -> list[dict[str, str]]:
    """The chat messages of one judgement (text only, as GEM's judge)."""
    return [{"role": "system", "content": JUDGE_SYSTEM},
            {"role": "user", "content": JUDGE_USER.format(generated=generated.strip(), reference=reference.strip())}]


# -------------------------------------------------------------------------------------------------- parsing
class JudgeParseError(ValueError):
    """A judge answer that cannot be read; the message says why."""


@dataclass
class Judgement:
    """One parsed judge answer: per criterion (GEM's names) its item scores and explanations."""

    scores: dict[str, list[float]] = field(default_factory=dict)
    explanations: dict[str, list[str]] = field(default_factory=dict)
    spellings: dict[str, str] = field(default_factory=dict)   # GEM name -> the key as the judge wrote it
    repairs: list[str] = field(default_factory=list)          # what had to be fixed to read it
    unknown_keys: list[str] = field(default_factory=list)


_FENCE = re.compile(r"^\s*```(?:json|JSON)?\s*\n?|\n?\s*```\s*$")
_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_ARITH_VALUE = re.compile(r"""(["']Score["']\s*:\s*)([-+]?\d+(?:\.\d+)?(?:\s*[-+*/]\s*\d+(?:\.\d+)?)+)""")
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_SMART_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})


def eval_arithmetic(expr: str) -> float:
    """The value of a small arithmetic expression of numbers and + - * / ( ), without ``eval``."""
    node = ast.parse(expr.strip(), mode="eval").body

    def ev(n) -> float:
        if isinstance(n, ast.Constant) and isinstance(n.value, (int, float)) and not isinstance(n.value, bool):
            return float(n.value)
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, (ast.UAdd, ast.USub)):
            v = ev(n.operand)
            return v if isinstance(n.op, ast.UAdd) else -v
        if isinstance(n, ast.BinOp) and isinstance(n.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
            a, b = ev(n.left), ev(n.right)
            if isinstance(n.op, ast.Add):
                return a + b
            if isinstance(n.op, ast.Sub):
                return a - b
            if isinstance(n.op, ast.Mult):
                return a * b
            return a / b
        raise ValueError(f"not arithmetic: {ast.dump(n)[:60]}")

    return ev(node)


def _outer_object(text: str) -> str:
    start = text.find("{")
    end = text.rfind("}")
    if start < 0:
        raise JudgeParseError("no JSON object in the answer")
    if end <= start:
        raise JudgeParseError("the JSON object is never closed (a cut-off answer?)")
    return text[start:end + 1]


def _load_object(text: str, repairs: list[str]) -> dict:
    """The answer's JSON object, repairing only what judges are known to write: code fences, <think> blocks,
    prose around the object, arithmetic scores, trailing commas, typographic quotes, Python-style quoting."""
    raw = text
    text = _THINK.sub("", text)
    if text != raw:
        repairs.append("think_block")
    unfenced = _FENCE.sub("", text.strip())
    if unfenced != text.strip():
        repairs.append("code_fence")
    text = unfenced
    try:
        obj = json.loads(text)
        if isinstance(obj, dict):
            return obj
    except json.JSONDecodeError:
        pass
    body = _outer_object(text)
    if body != text.strip():
        repairs.append("text_around_json")
    steps = [
        ("arithmetic_score",
         lambda s: _ARITH_VALUE.sub(lambda m: m.group(1) + _num_text(eval_arithmetic(m.group(2))), s)),
        ("trailing_comma", lambda s: _TRAILING_COMMA.sub(r"\1", s)),
        ("smart_quotes", lambda s: s.translate(_SMART_QUOTES)),
    ]
    first_error = None
    for name, fix in steps:
        fixed = fix(body)
        if fixed != body:
            repairs.append(name)
            body = fixed
        try:
            obj = json.loads(body)
            if isinstance(obj, dict):
                return obj
        except json.JSONDecodeError as exc:
            first_error = first_error or exc
    try:  # {'DiagnosisAccuracy': [{'Score': 2, ...}]}: GEM's own prompt shows Python-style quotes
        obj = ast.literal_eval(body)
        if isinstance(obj, dict):
            repairs.append("python_literal")
            return obj
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        pass
    err = first_error or json.JSONDecodeError("not an object", body, 0)
    raise JudgeParseError(f"the answer is not valid JSON ({err.msg} at char {err.pos}): {_snippet(body, err.pos)}")


def _num_text(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(v)


def _snippet(text: str, pos: int, width: int = 40) -> str:
    a, b = max(0, pos - width), min(len(text), pos + width)
    return repr(text[a:b])


def _score_value(v: Any) -> float:
    if isinstance(v, bool):
        raise JudgeParseError(f"score {v!r} is not a number")
    if isinstance(v, (int, float)):
        if not math.isfinite(float(v)):
            raise JudgeParseError(f"score {v!r} is not finite")
        return float(v)
    if isinstance(v, str):
        s = v.strip().rstrip("%").strip()
        try:
            return eval_arithmetic(s)
        except (ValueError, SyntaxError, ZeroDivisionError) as exc:
            raise JudgeParseError(f"score {v!r} is not a number") from exc
    raise JudgeParseError(f"score {v!r} is not a number")


def parse_judgement(text: str) -> Judgement:
    """Read a judge answer into a :class:`Judgement`; raise :class:`JudgeParseError` (with the reason) when it
    cannot be read or names none of the eight criteria."""
    if text is None or not str(text).strip():
        raise JudgeParseError("the answer is empty")
    j = Judgement()
    obj = _load_object(str(text), j.repairs)
    for key, value in obj.items():
        name = canonical_criterion(key)
        if name is None:
            j.unknown_keys.append(str(key))
            continue
        if name in j.scores:
            raise JudgeParseError(f"criterion {name} is given twice ({j.spellings[name]!r} and {key!r})")
        items = value if isinstance(value, list) else [value]
        scores, expl = [], []
        for k, item in enumerate(items):
            if isinstance(item, dict):
                score_key = next((kk for kk in item if str(kk).strip().lower() == "score"), None)
                if score_key is None:
                    raise JudgeParseError(f"{key}[{k}] has no Score")
                scores.append(_score_value(item[score_key]))
                ex = next((item[kk] for kk in item if str(kk).strip().lower() == "explanation"), "")
                expl.append(str(ex or "").strip())
            else:
                scores.append(_score_value(item))
                expl.append("")
        j.scores[name], j.explanations[name], j.spellings[name] = scores, expl, str(key)
    if not j.scores:
        raise JudgeParseError(f"none of the eight criteria in the answer (keys: {', '.join(map(str, obj)) or 'none'})")
    return j


# ----------------------------------------------------------------------------------------------- normalise
def normalise(scores: dict[str, list[float]]) -> dict[str, float]:
    """GEM's per-record normalisation (``process_grounding_scores.ipynb``, HEAD): criterion -> value, only for
    the criteria present. An empty DiagnosisAccuracy list is 0, as in GEM."""
    out: dict[str, float] = {}
    for name, vals in scores.items():
        total = float(sum(vals))
        if name == "DiagnosisAccuracy":
            out[name] = (sum(1 for v in vals if v > 0) / len(vals) if vals else 0.0) * 100.0
        elif name == "LeadAssessmentCoverage":
            out[name] = min(total, 12.0) / 12.0 * 100.0
        elif name == "LeadAssessmentAccuracy":
            out[name] = total / 24.0 * 100.0
        else:
            out[name] = total
    return out


def three_score_average(norm: dict[str, float]) -> float | None:
    """ECG-R1's ``Average`` of the three 0-100 criteria (only when all three are present)."""
    vals = [norm.get(k) for k in PERCENT_CRITERIA]
    return sum(vals) / 3.0 if all(v is not None for v in vals) else None


# ------------------------------------------------------------------------------------------------- running
@dataclass
class JudgeTask:
    item_id: str
    generated: str
    reference: str


@dataclass
class JudgeResult:
    item_id: str
    request_key: str | None = None
    reused: bool = False
    normalised: dict[str, float] = field(default_factory=dict)
    judgement: Judgement | None = None
    error_code: str | None = None      # judge_request_failed | judge_unparsable | judge_budget
    error: str | None = None
    cost_usd: float | None = None
    over_100: list[str] = field(default_factory=list)  # 0-100 criteria given more than one item (sum may pass 100)


@dataclass
class JudgeSettings:
    spec: str
    base_url: str | None = None
    temperature: float = 0.0
    max_tokens: int = 4096
    json_mode: bool = True
    concurrency: int = 8
    max_cost: float | None = None
    timeout_s: float = 120.0
    seed: int = 0


class _Budget:
    """Never starts a request whose worst case (prompt + every allowed output token, no cache) would take the
    spend past ``max_cost``; settles each request at its billed cost."""

    def __init__(self, max_cost: float | None):
        self.max_cost, self.spent, self.reserved = max_cost, 0.0, 0.0
        self._lock = asyncio.Lock()

    async def reserve(self, worst: float) -> bool:
        async with self._lock:
            if self.max_cost is not None and self.spent + self.reserved + worst > self.max_cost:
                return False
            self.reserved += worst
            return True

    async def settle(self, worst: float, actual: float) -> None:
        async with self._lock:
            self.reserved -= worst
            self.spent += actual


# Failures that say the endpoint itself is unusable (wrong URL, key, model, account), not this one request
ENDPOINT_ERRORS = frozenset({"connection_error", "auth_error", "permission_denied", "not_found", "insufficient_quota"})
ENDPOINT_BREAKER = 5   # that many such failures in a row, and no request is sent any more


class _Breaker:
    """Stops sending after ``ENDPOINT_BREAKER`` consecutive endpoint failures: a wrong --base-url would
    otherwise cost every record its full retry budget. Any answered request resets the count."""

    def __init__(self, limit: int = ENDPOINT_BREAKER):
        self.limit, self.row, self.last = limit, 0, ""

    @property
    def open(self) -> bool:
        return self.row >= self.limit

    def observe(self, ok: bool, code: str | None, message: str | None) -> None:
        if ok or code not in ENDPOINT_ERRORS:
            self.row = 0
        else:
            self.row += 1
            self.last = f"{code}: {message}"


async def run_judge(tasks: list[JudgeTask], settings: JudgeSettings, store_dir, *, backend=None,
                    price_table=None, retry=None, on_done=None) -> tuple[list[JudgeResult], dict]:
    """Judge every task through ``pipeline.llm`` (stored answers reused, never re-bought). Returns the
    results (task order) and counts: requests, reused, http_sends, cost_usd_new."""
    from pipeline.llm import (BackendSpec, PriceTable, RateGate, ResponseStore, complete, make_backend,
                              parse_answer, request_key, usage_from_body)
    from pipeline.llm.hashing import canonical_messages
    from pipeline.tokens import chat_tokens

    spec = BackendSpec.parse(settings.spec, settings.base_url)
    backend = backend or make_backend(spec, timeout_s=settings.timeout_s)
    prices = price_table or PriceTable()
    if settings.max_cost is not None and prices.price(spec.provider, spec.model) is None:
        from pipeline.llm import LLMConfigError

        raise LLMConfigError(f"--judge-max-cost needs a price for {spec.provider}:{spec.model}: add it with "
                             "--price-table")
    store = ResponseStore(store_dir)
    gate = RateGate()
    sem = asyncio.Semaphore(max(1, settings.concurrency))
    budget = _Budget(settings.max_cost)
    breaker = _Breaker()
    counts = {"requests": 0, "reused": 0, "http_sends": 0, "cost_usd_new": 0.0, "failed": 0}
    results: list[JudgeResult | None] = [None] * len(tasks)

    async def one(i: int, task: JudgeTask) -> None:
        try:
            await _one(i, task)
        finally:
            if on_done is not None:
                on_done()

    async def _one(i: int, task: JudgeTask) -> None:
        res = JudgeResult(task.item_id)
        messages = judge_messages(task.generated, task.reference)
        params = backend.params("json" if settings.json_mode else None, settings.max_tokens, settings.temperature,
                                None, settings.seed)
        key = request_key(spec.provider, spec.model, params, messages)
        res.request_key = key
        async with sem:
            stored = store.get_ok(key)
            reused = stored is not None
            if stored is None and breaker.open:
                res.error_code = "judge_not_sent"
                res.error = (f"not sent: the judge endpoint failed {breaker.limit} requests in a row (last: "
                             f"{breaker.last}); fix --judge / --base-url / the key and run again")
                results[i] = res
                return
            if stored is None:
                worst = prices.worst_case_usd(spec.provider, spec.model,
                                              chat_tokens(messages, spec.model), settings.max_tokens) or 0.0
                if not await budget.reserve(worst):
                    res.error_code = "judge_budget"
                    res.error = (f"not sent: worst case ${worst:.4f} would take the judge past --judge-max-cost "
                                 f"${settings.max_cost:.2f} (spent ${budget.spent:.4f})")
                    results[i] = res
                    return
                try:
                    comp = await complete(backend, store, gate, key, messages, params, task.item_id, 1, None, retry,
                                          {"provider": spec.provider, "model": spec.model, "params": params,
                                           "messages": canonical_messages(messages)})
                except BaseException:
                    await budget.settle(worst, 0.0)
                    raise
                paid = sum(prices.cost_usd(spec.provider, spec.model, usage_from_body(r.json())) or 0.0
                           for r in comp.sent)
                await budget.settle(worst, paid)
                counts["http_sends"] += comp.http_attempts
                stored, reused = comp.stored, comp.reused
                breaker.observe(stored.ok, stored.error_code, stored.error_message)
        counts["requests"] += 1
        counts["reused"] += int(reused)
        res.reused = reused
        res.cost_usd = prices.cost_usd(spec.provider, spec.model, usage_from_body(stored.json()))
        if not stored.ok:
            res.error_code = "judge_request_failed"
            res.error = f"{stored.error_code}: {stored.error_message}"
        else:
            content, _, finish = parse_answer(stored.json())
            try:
                j = parse_judgement(content)
            except JudgeParseError as exc:
                res.error_code, res.error = "judge_unparsable", str(exc)
                if finish == "length":
                    res.error += f" (the answer stopped at --judge-max-tokens {settings.max_tokens})"
            else:
                res.judgement = j
                res.normalised = normalise(j.scores)
                res.over_100 = [k for k in PERCENT_CRITERIA if len(j.scores.get(k, [])) > 1]
        results[i] = res

    try:
        await asyncio.gather(*(one(i, t) for i, t in enumerate(tasks)))
    finally:
        await backend.aclose()
        store.close()
    counts["cost_usd_new"] = round(budget.spent, 6)
    out = [r for r in results if r is not None]
    counts["failed"] = sum(1 for r in out if r.error_code)
    return out, counts
