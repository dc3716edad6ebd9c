"""Token accounting and cost, from the API's own ``usage`` fields, with an overridable price table."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field


class Price(BaseModel):
    """USD per million tokens."""

    input_per_m: float = Field(ge=0)
    cached_input_per_m: float = Field(ge=0)
    output_per_m: float = Field(ge=0)


# List prices (USD / 1M tokens). OpenAI: gpt-4o-2024-08-06 as in the task brief. DeepSeek: the API list
# price since 2025-09-29 (V3.2: deepseek-chat and deepseek-reasoner priced alike; cache hit / miss / out).
# Override any of them with --price-table FILE (YAML or JSON, same shape as below).
DEFAULT_PRICES: dict[str, dict[str, float]] = {
    "openai:gpt-4o-2024-08-06": {"input_per_m": 2.50, "cached_input_per_m": 1.25, "output_per_m": 10.00},
    "openai:gpt-4o-2024-11-20": {"input_per_m": 2.50, "cached_input_per_m": 1.25, "output_per_m": 10.00},
    "openai:gpt-4o": {"input_per_m": 2.50, "cached_input_per_m": 1.25, "output_per_m": 10.00},
    "openai:gpt-4o-mini": {"input_per_m": 0.15, "cached_input_per_m": 0.075, "output_per_m": 0.60},
    "deepseek:deepseek-reasoner": {"input_per_m": 0.28, "cached_input_per_m": 0.028, "output_per_m": 0.42},
    "deepseek:deepseek-chat": {"input_per_m": 0.28, "cached_input_per_m": 0.028, "output_per_m": 0.42},
}
BATCH_DISCOUNT = 0.5          # OpenAI Batch API: half price
FREE_PROVIDERS = {"rules", "openai-compatible"}   # local / self-hosted: no per-token bill


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0


def usage_from_body(body: dict[str, Any] | None) -> Usage:
    """Token counts from a chat-completion body; understands OpenAI's and DeepSeek's cache fields."""
    u = (body or {}).get("usage") or {}
    ptd = u.get("prompt_tokens_details") or {}
    ctd = u.get("completion_tokens_details") or {}
    cached = ptd.get("cached_tokens")
    if cached is None:
        cached = u.get("prompt_cache_hit_tokens")  # DeepSeek's name for the same thing
    return Usage(int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0), int(cached or 0),
                 int(ctd.get("reasoning_tokens") or 0))


class PriceTable:
    """Prices per ``provider:model`` (falls back to ``model`` alone); batch requests cost ``batch_discount``×."""

    def __init__(self, prices: dict[str, dict[str, float]] | None = None, batch_discount: float = BATCH_DISCOUNT):
        merged = {**DEFAULT_PRICES, **(prices or {})}
        self.prices = {k: Price(**v) for k, v in merged.items()}
        self.batch_discount = batch_discount

    @classmethod
    def load(cls, path: str | Path | None) -> PriceTable:
        """Defaults overridden by a YAML/JSON file ``{"provider:model": {input_per_m, cached_input_per_m,
        output_per_m}, ..., "batch_discount": 0.5}``."""
        if path is None:
            return cls()
        text = Path(path).read_text()
        if str(path).endswith((".yaml", ".yml")):
            import yaml
            doc = yaml.safe_load(text) or {}
        else:
            doc = json.loads(text)
        discount = float(doc.pop("batch_discount", BATCH_DISCOUNT))
        return cls(doc, discount)

    def price(self, provider: str, model: str) -> Price | None:
        """The price of ``provider:model``; zero for local providers; None when unknown."""
        p = self.prices.get(f"{provider}:{model}") or self.prices.get(model)
        if p is None and provider in FREE_PROVIDERS:
            return Price(input_per_m=0, cached_input_per_m=0, output_per_m=0)
        return p

    def cost_usd(self, provider: str, model: str, usage: Usage, batch: bool = False) -> float | None:
        """USD for one response; reasoning tokens are already inside completion_tokens (billed as output)."""
        p = self.price(provider, model)
        if p is None:
            return None
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        usd = ((usage.prompt_tokens - cached) * p.input_per_m + cached * p.cached_input_per_m
               + usage.completion_tokens * p.output_per_m) / 1e6
        return usd * (self.batch_discount if batch else 1.0)

    def worst_case_usd(self, provider: str, model: str, prompt_tokens: int, max_tokens: int,
                       batch: bool = False) -> float | None:
        """Upper bound for one request before sending: no cache hits, every allowed output token used."""
        return self.cost_usd(provider, model, Usage(prompt_tokens, max_tokens, 0, 0), batch)
