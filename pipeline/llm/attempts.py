"""One prompt's attempts: what a follow-up request holds, and what a stored reply amounts to.

A follow-up (attempt k > 1) is the prompt plus what went wrong: the rejected answer as an ``assistant``
turn and the validator's feedback as a ``user`` turn. When that does not fit the served window the
follow-up is shortened, in this order: earlier rounds dropped (only the last answer and feedback kept), the
previous answer dropped (the feedback folded into the prompt's own user message, so roles still alternate:
Gemma's template refuses two user turns in a row), the feedback cut to its first problems. Thinking is
never part of it.

What a follow-up holds is stored with its plan (``ResponseStore.record_plan``) before it is sent, so a
resumed run re-issues exactly that request instead of rebuilding it from a feedback text that may come out
differently.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from pipeline.llm.answers import parse_json_answer, split_reasoning
from pipeline.llm.providers import parse_answer
from pipeline.llm.store import StoredResponse
from pipeline.llm.window import shorten_feedback

FEEDBACK_TEMPLATE = ("Your previous answer was rejected by the grounding checks ({reasons}).\n{feedback}\n"
                     "Rewrite the complete interpretation, citing only measurements given above.")
NO_ANSWER_FEEDBACK = ("Your previous reply held only reasoning and no interpretation. Reply with the "
                      "interpretation itself, without any thinking or tags.")
BAD_JSON_FEEDBACK = "Your previous reply was not usable: {error}. Reply with exactly one JSON object."
TRUNCATED_FEEDBACK = ("Your previous reply was cut off before it ended (the answer length limit). Write the "
                      "complete interpretation again, shorter.")


@dataclass
class Rejection:
    """Why attempt k's reply did not do, as the next attempt tells the model."""

    answer: str | None          # what goes back as the assistant turn (None: nothing to show)
    reasons: list[str]
    feedback: str


@dataclass
class Reply:
    """A stored reply, read: the interpretation to validate and what was set apart."""

    answer: str | None                 # the interpretation (thinking removed; the JSON's interpretation);
                                       # None when there is none: only thinking, bad JSON, cut off
    reasoning: str | None
    finish_reason: str | None
    raw: str | None                    # the content exactly as received, when it differs from ``answer``
    problem: tuple[str, str] | None = None   # (reason code, detail) when there is no usable answer


def read_reply(stored: StoredResponse, variant: str | None, schema: dict | None) -> Reply:
    content, reasoning, finish = parse_answer(stored.json())
    answer, reasoning = split_reasoning(content, reasoning)
    raw = content if content != answer else None
    if answer is None:
        return Reply(None, reasoning, finish, raw,
                     ("no_answer", f"the reply holds only reasoning (finish_reason={finish})"))
    if finish == "length":
        # cut off by max_tokens (or the window): an interpretation that stops mid-sentence is not one, and
        # must never enter the instruction set however well its first half validates
        return Reply(None, reasoning, finish, content,
                     ("truncated_answer", "the reply was cut off at the answer length limit (finish_reason=length)"))
    if variant == "json":
        parsed = parse_json_answer(answer, schema)
        if parsed.error:
            return Reply(None, reasoning, finish, content, ("invalid_json_answer", parsed.error))
        return Reply(parsed.interpretation, reasoning, finish, content)
    return Reply(answer, reasoning, finish, raw)


def rejection_for(reply: Reply, reasons: list[str], feedback: str) -> Rejection:
    if reply.problem is not None:
        code, detail = reply.problem
        if code == "no_answer":
            return Rejection(None, [code], NO_ANSWER_FEEDBACK)
        if code == "truncated_answer":
            return Rejection(None, [code], TRUNCATED_FEEDBACK)
        # an unusable JSON reply is shown back (the model sees what was wrong), never its thinking
        return Rejection(reply.raw, [code], BAD_JSON_FEEDBACK.format(error=detail))
    text = FEEDBACK_TEMPLATE.format(reasons=", ".join(reasons) or "unspecified", feedback=feedback)
    return Rejection(reply.answer, reasons, text)


@dataclass
class FollowUp:
    """What a request adds to its prompt: whole turns appended and/or text folded into the user message."""

    history: list[dict] = field(default_factory=list)
    user_suffix: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"history": self.history, "user_suffix": self.user_suffix}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> FollowUp:
        return cls(list(doc.get("history") or []), doc.get("user_suffix"))

    def apply(self, base: list[dict]) -> list[dict]:
        msgs = copy.deepcopy(base)
        if self.user_suffix:
            for m in reversed(msgs):
                if m.get("role") == "user":
                    if isinstance(m["content"], list):
                        for part in m["content"]:
                            if part.get("type") == "text":
                                part["text"] = part["text"] + "\n\n" + self.user_suffix
                                break
                    else:
                        m["content"] = (m["content"] or "") + "\n\n" + self.user_suffix
                    break
        return msgs + copy.deepcopy(self.history)

    def added_text(self) -> str:
        return (self.user_suffix or "") + "".join(json.dumps(m.get("content")) for m in self.history)


def follow_up_candidates(previous: FollowUp, rejection: Rejection) -> list[FollowUp]:
    """Follow-ups for the next attempt, longest first (the caller takes the first that fits)."""
    turn = ([{"role": "assistant", "content": rejection.answer}] if rejection.answer else [])
    cands: list[FollowUp] = []
    if rejection.answer:
        # every earlier round kept (as before), then only the last round
        cands.append(FollowUp(previous.history + turn + [{"role": "user", "content": rejection.feedback}],
                              previous.user_suffix))
        cands.append(FollowUp(turn + [{"role": "user", "content": rejection.feedback}]))
    cands.append(FollowUp([], rejection.feedback))
    short = shorten_feedback(rejection.feedback)
    if short != rejection.feedback:
        cands.append(FollowUp([], short))
    return cands
