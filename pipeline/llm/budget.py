"""The ``--max-cost`` guard: each send reserves its worst case before it goes, settled at its real cost."""
from __future__ import annotations

import asyncio

from pipeline.llm.pricing import PriceTable


class CostBudget:
    """Stops before exceeding ``max_cost``: each send reserves its worst case, settled at its real cost.

    The worst case is priced from the prompt's token estimate times ``prompt_scale``, the largest ratio of
    billed to estimated prompt tokens seen so far in this run (never below 1): if the provider bills more
    than our count (another tokenizer, image tiles), later reservations grow to match instead of overspending.
    """

    def __init__(self, max_cost: float | None, prices: PriceTable, provider: str, model: str, batch: bool):
        self.max_cost, self.spent, self.reserved = max_cost, 0.0, 0.0
        self.prices, self.provider, self.model, self.batch = prices, provider, model, batch
        self.prompt_scale = 1.0
        self._cond: asyncio.Condition | None = None

    def worst(self, est_prompt_tokens: int, max_tokens: int) -> float | None:
        return self.prices.worst_case_usd(self.provider, self.model, int(est_prompt_tokens * self.prompt_scale) + 1,
                                          max_tokens, self.batch)

    def try_reserve(self, worst: float | None) -> bool:
        if self.max_cost is None:
            return True
        if self.spent + self.reserved + (worst or 0.0) > self.max_cost:
            return False
        self.reserved += worst or 0.0
        return True

    async def reserve_when_possible(self, est_prompt_tokens: int, max_tokens: int) -> tuple[bool, float | None]:
        """Reserve the worst case, waiting for in-flight requests to settle when they hold the room it needs
        (their real cost is usually far below their reservation); False only when nothing is in flight."""
        if self._cond is None:
            self._cond = asyncio.Condition()
        async with self._cond:
            while True:
                worst = self.worst(est_prompt_tokens, max_tokens)
                if self.try_reserve(worst):
                    return True, worst
                if self.reserved <= 1e-12:
                    return False, worst
                await self._cond.wait()

    async def asettle(self, *args, **kwargs) -> None:
        self.settle(*args, **kwargs)
        if self._cond is not None:
            async with self._cond:
                self._cond.notify_all()

    def settle(self, worst: float | None, actual: float | None, est_prompt_tokens: int = 0,
               billed_prompt_tokens: int = 0) -> None:
        if self.max_cost is not None:
            self.reserved -= worst or 0.0
        self.spent += actual or 0.0
        if est_prompt_tokens > 0 and billed_prompt_tokens > est_prompt_tokens * self.prompt_scale:
            self.prompt_scale = billed_prompt_tokens / est_prompt_tokens
