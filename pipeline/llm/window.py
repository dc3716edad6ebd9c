"""Fitting requests into the served context window.

Prompt sizes are known exactly in o200k tokens (the prompts stage counts them); a local model's own
tokenizer counts more (SmolLM2: 1.15-1.19x on our ECG prompts). Where the server can tokenize, the request
is counted by the served tokenizer itself, plus the chat template's framing learned from the ``usage`` of
answers; elsewhere our count is scaled by a margin of at least 1.25x, raised to what the answers'
``usage.prompt_tokens`` (and context refusals) show. A request that does not fit is re-budgeted (fewer
answer tokens), a follow-up is shortened (previous answer dropped, feedback cut), and what still does not fit
is refused here, without being sent.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

MIN_MARGIN = 1.25             # o200k -> unknown served tokenizer, before (and at least after) measuring
MARGIN_HEADROOM = 1.02        # on top of the largest measured ratio
MIN_COMPLETION_TOKENS = 256   # below this a re-budgeted answer would be useless: refuse instead
DEFAULT_FRAMING_PER_MESSAGE = 8


@dataclass
class ContextBudget:
    """The served window and how to count against it, learned as the run goes."""

    n_ctx: int | None = None
    source: str | None = None
    margin: float = MIN_MARGIN
    served_tokenizer: bool = False
    framing_per_message: int = DEFAULT_FRAMING_PER_MESSAGE
    ratios: list[float] = field(default_factory=list)
    version: int = 0          # bumped whenever what decides a fit changes (plans made before are stale)

    def learn_window(self, n_ctx: int, source: str) -> bool:
        """Take a window the server revealed; True when it is news."""
        if n_ctx and n_ctx != self.n_ctx:
            self.n_ctx, self.source = int(n_ctx), source
            self.version += 1
            return True
        return False

    def observe(self, est_o200k: int, served_prompt_tokens: int, served_text_tokens: int | None = None,
                n_messages: int = 2) -> None:
        """A request of ``est_o200k`` (our count) was ``served_prompt_tokens`` for the server."""
        if est_o200k > 0 and served_prompt_tokens > 0:
            ratio = served_prompt_tokens / est_o200k
            self.ratios.append(ratio)
            if ratio * MARGIN_HEADROOM > self.margin:
                self.margin = ratio * MARGIN_HEADROOM
                self.version += self.n_ctx is not None  # only matters once there is a window to fit
        if served_text_tokens is not None and served_prompt_tokens > served_text_tokens and n_messages:
            per = math.ceil((served_prompt_tokens - served_text_tokens) / n_messages)
            if per > self.framing_per_message:
                self.framing_per_message = per
                self.version += self.n_ctx is not None

    def prompt_need(self, est_o200k: int, served_text_tokens: int | None = None, n_messages: int = 2) -> int:
        """Tokens the prompt will take on the server."""
        if served_text_tokens is not None:
            return served_text_tokens + self.framing_per_message * n_messages + 1
        return math.ceil(est_o200k * self.margin)

    def fits(self, prompt_need: int, max_tokens: int) -> bool:
        return self.n_ctx is None or prompt_need + max_tokens <= self.n_ctx

    def rebudget(self, prompt_need: int, max_tokens: int) -> int | None:
        """The answer tokens to ask for (``max_tokens`` or fewer); None when not even the minimum fits."""
        if self.n_ctx is None or prompt_need + max_tokens <= self.n_ctx:
            return max_tokens
        room = self.n_ctx - prompt_need
        return room if room >= min(MIN_COMPLETION_TOKENS, max_tokens) else None


def shorten_feedback(feedback: str, max_lines: int = 3) -> str:
    """The first problems of a validator feedback and its closing instruction."""
    lines = [ln for ln in feedback.splitlines() if ln.strip()]
    if len(lines) <= max_lines + 1:
        return feedback
    return "\n".join(lines[:max_lines] + [f"(and {len(lines) - max_lines - 1} more problems)", lines[-1]])
