"""What one call's reported usage costs: the one translation from a provider's ``Usage`` to the
price book's token counts, shared by the gateway (the answered call) and the shadow mirror (the
candidate's call). ``tracking`` and ``models`` are siblings, so it lives above both."""
from __future__ import annotations

from models.base_model import Usage
from tracking.pricing import PriceBook


def usage_cost(prices: PriceBook | None, model: str, version: str,
               usage: Usage | None) -> int | None:
    """Micro-USD of a call with this usage, or None (no usage, no price book, no price)."""
    if prices is None or usage is None:
        return None
    return prices.cost(model, version, usage.input_tokens, usage.output_tokens,
                       usage.total_tokens, usage.cached_tokens, usage.reasoning_tokens)
