"""What an answer *is*, once the raw response is stored: reasoning moved apart, JSON answers parsed.

Reasoning models served without a reasoning parser (DeepSeek-R1 distills behind llama.cpp, Ollama or vLLM)
put their thinking inside ``content`` as ``<think>…</think>``; some chat templates open the block in the
prompt, so the reply holds only the closing tag; a reply cut off while thinking holds only the opening one.
All of it is reasoning, not interpretation: it is moved to ``reasoning_content`` before validation (the
validator must not check numbers the model only mused about), stored apart, and never sent back.

The ``json`` variant asks for one object matching ``prompts/answer_schema.json``; only its
``interpretation`` is validated and may enter the instruction set.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_TAGS = "think|thinking|reasoning|thought"
_BLOCK = re.compile(rf"<\s*({_TAGS})\s*>(.*?)<\s*/\s*\1\s*>", re.S | re.I)
_OPEN = re.compile(rf"<\s*({_TAGS})\s*>", re.I)
_CLOSE = re.compile(rf"<\s*/\s*({_TAGS})\s*>", re.I)
_FENCE = re.compile(r"^\s*```(?:json|JSON)?\s*\n?(.*?)\n?\s*```\s*$", re.S)


def split_reasoning(content: str | None, reasoning: str | None = None) -> tuple[str | None, str | None]:
    """(answer, reasoning): thinking blocks of ``content`` moved to the reasoning text.

    ``answer`` is None when nothing but thinking (or whitespace) is left. ``reasoning`` joins the server's
    own ``reasoning_content`` (if any) and every block found, in order.
    """
    parts: list[str] = [reasoning.strip()] if reasoning and reasoning.strip() else []
    text = content or ""
    # a closing tag with no opening one before it: the template opened the block in the prompt
    first_close, first_open = _CLOSE.search(text), _OPEN.search(text)
    if first_close and (first_open is None or first_open.start() > first_close.start()):
        parts.append(text[:first_close.start()].strip())
        text = text[first_close.end():]
    for m in _BLOCK.finditer(text):
        parts.append(m.group(2).strip())
    text = _BLOCK.sub(" ", text)
    # an opening tag never closed: the reply was cut off (or never left) its thinking
    dangling = _OPEN.search(text)
    if dangling:
        parts.append(text[dangling.end():].strip())
        text = text[:dangling.start()]
    text = _CLOSE.sub(" ", text)  # stray closing tags carry nothing
    answer = re.sub(r"[ \t]{2,}", " ", text).strip() or None
    joined = "\n\n".join(p for p in parts if p) or None
    return answer, joined


@dataclass(frozen=True)
class JsonAnswer:
    interpretation: str | None
    document: dict[str, Any] | None
    error: str | None          # why it is not a usable answer (None when it is)


def parse_json_answer(text: str | None, schema: dict | None = None) -> JsonAnswer:
    """The interpretation of a ``json``-variant answer, checked against ``schema`` when given.

    Tolerates what constrained decoding does not rule out for prompt-only JSON mode: a code fence around
    the object. Anything else that is not one JSON object with a non-empty string ``interpretation`` is
    an error, and its text never becomes an answer.
    """
    if text is None or not text.strip():
        return JsonAnswer(None, None, "the reply is empty")
    body = text.strip()
    fence = _FENCE.match(body)
    if fence:
        body = fence.group(1).strip()
    try:
        # strict=False: constrained decoders (llama.cpp's JSON grammar) let raw newlines into strings
        doc = json.loads(body, strict=False)
    except json.JSONDecodeError as exc:
        return JsonAnswer(None, None, f"the reply is not one JSON object ({exc.msg} at char {exc.pos})")
    if not isinstance(doc, dict):
        return JsonAnswer(None, None, f"the reply is JSON but a {type(doc).__name__}, not an object")
    if schema is not None:
        problem = _schema_problem(doc, schema)
        if problem:
            return JsonAnswer(None, doc, problem)
    interp = doc.get("interpretation")
    if not isinstance(interp, str) or not interp.strip():
        return JsonAnswer(None, doc, "the object has no non-empty string 'interpretation'")
    return JsonAnswer(interp.strip(), doc, None)


def _schema_problem(doc: dict, schema: dict) -> str | None:
    try:
        import jsonschema
    except ImportError:  # jsonschema comes with prefect; without it, the interpretation check still runs
        return None
    try:
        jsonschema.validate(doc, schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "the object"
        return f"the object does not match the answer schema at {where}: {exc.message[:200]}"
    except jsonschema.SchemaError:
        return None  # the user's schema is broken, not the answer
    return None
