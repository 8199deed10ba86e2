"""Money and token prices: integer micro-USD, never floats in sums.

A shared helper below every layer (like ``errors``): the provider catalog validates a version's
``config.prices`` with it, tracking prices every prediction with it.

Why integers: a sum of a million float costs drifts; a sum of integers does not. A price is
kept as micro-USD per 1M tokens (``0.30`` USD/1M → ``300_000``), so the exact cost of ``n``
tokens is ``n * rate / 1e6`` micro-USD; each request's cost is rounded once, half up, to a
whole micro-USD (an error of at most $0.0000005 per request), and everything after that —
buckets, spend reports, budgets — adds integers.

Token kinds: ``cached_tokens`` are the part of the input served from the provider's context
cache (priced at ``cached_input``, or at ``input`` when the price has none); ``thinking_tokens``
are the part of the output spent on reasoning (priced at ``thinking``, or at ``output``).
Tokens reported only as a total, without an input/output split (the seed's
``track_prediction(..., tokens=100)``), are priced as input.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from errors import InvalidArgument

MICRO = 1_000_000                 # micro-USD per USD, and tokens per "1M tokens"
MAX_RATE_USD = Decimal(100_000)   # USD per 1M tokens: far above any real price
PRICE_FIELDS = ("input", "output", "cached_input", "thinking")


def usd_to_micro(value: Any, what: str) -> int:
    """A JSON number of USD (at most 6 decimals) → integer micro-USD, exactly."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise InvalidArgument(f"{what} must be a number of USD, got {value!r}")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise InvalidArgument(f"{what} must be a number of USD, got {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise InvalidArgument(f"{what} must be a finite number >= 0, got {value!r}")
    micro = amount * MICRO
    if micro != micro.to_integral_value():
        raise InvalidArgument(f"{what} has more than 6 decimals (micro-USD is the unit): "
                              f"{value!r}")
    return int(micro)


def micro_to_usd(micro: int | None) -> float | None:
    """For display only (JSON answers); sums are always made on the integers."""
    return None if micro is None else micro / MICRO


def micro_to_text(micro: int) -> str:
    """Exact decimal USD text of integer micro-USD (``1234`` → ``"0.001234"``): what the
    ``X-Cost-USD`` response header carries, with no float in between."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), MICRO)
    return f"{sign}{whole}.{frac:06d}"


@dataclass(frozen=True)
class Price:
    """Rates in micro-USD per 1M tokens (= USD per 1M tokens × 1e6)."""

    input: int
    output: int
    cached_input: int | None = None
    thinking: int | None = None

    def cost(self, input_tokens: int = 0, output_tokens: int = 0, cached_tokens: int = 0,
             thinking_tokens: int = 0, unsplit_tokens: int = 0) -> int:
        """The cost in micro-USD, rounded half up once. ``cached_tokens`` is part of
        ``input_tokens``, ``thinking_tokens`` part of ``output_tokens``."""
        cached = min(cached_tokens, input_tokens)
        thinking = min(thinking_tokens, output_tokens)
        scaled = ((input_tokens - cached + unsplit_tokens) * self.input
                  + cached * (self.input if self.cached_input is None else self.cached_input)
                  + (output_tokens - thinking) * self.output
                  + thinking * (self.output if self.thinking is None else self.thinking))
        return (scaled + MICRO // 2) // MICRO

    def as_usd(self) -> dict[str, float | None]:
        """USD per 1M tokens, as the API shows prices."""
        return {"input_per_1m": micro_to_usd(self.input),
                "output_per_1m": micro_to_usd(self.output),
                "cached_input_per_1m": micro_to_usd(self.cached_input),
                "thinking_per_1m": micro_to_usd(self.thinking)}


def parse_price(value: Any, what: str = "prices") -> Price:
    """``{"input_per_1m": 0.30, "output_per_1m": 2.50, "cached_input_per_1m"?,
    "thinking_per_1m"?}`` (USD per 1M tokens) → Price, or InvalidArgument."""
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what} must be an object such as "
                              '{"input_per_1m": 0.30, "output_per_1m": 2.50} (USD per 1M tokens)')
    known = {f"{name}_per_1m" for name in PRICE_FIELDS}
    unknown = sorted(set(value) - known)
    if unknown:
        raise InvalidArgument(f"{what}: unknown key(s) {unknown}; allowed: {sorted(known)}")
    rates: dict[str, int | None] = {}
    for name in PRICE_FIELDS:
        raw = value.get(f"{name}_per_1m")
        if raw is None:
            if name in ("input", "output"):
                raise InvalidArgument(f"{what}.{name}_per_1m is required (USD per 1M tokens)")
            rates[name] = None
            continue
        micro = usd_to_micro(raw, f"{what}.{name}_per_1m")
        if micro > MAX_RATE_USD * MICRO:
            raise InvalidArgument(f"{what}.{name}_per_1m is above {MAX_RATE_USD} USD per 1M "
                                  f"tokens: {raw!r}")
        rates[name] = micro
    return Price(**rates)  # type: ignore[arg-type]
