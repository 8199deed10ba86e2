"""Request and response bodies of prices, spend and budgets (issue 16)."""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import Body
from shared.pagination import MAX_PAGE_SIZE

Usd = Optional[float]


class PriceBody(Body):
    input_per_1m: float = Field(ge=0, description="USD per 1M input tokens, e.g. 0.30")
    output_per_1m: float = Field(ge=0, description="USD per 1M output tokens, e.g. 2.50")
    cached_input_per_1m: Optional[float] = Field(
        None, ge=0, description="USD per 1M cached input tokens (default: the input rate)")
    thinking_per_1m: Optional[float] = Field(
        None, ge=0, description="USD per 1M thinking tokens (default: the output rate)")
    version: Optional[str] = Field(None, min_length=1, max_length=255,
                                   description="price one version only (exact, alias or "
                                               "range); default: the whole model")
    effective_from: Optional[str] = Field(None, max_length=64,
                                          description="ISO 8601 time; default now. Calls "
                                                      "after it use this price")
    source: str = Field("", max_length=1000, description="where the price comes from")


class PricesQuery(Body):
    version: Optional[str] = Field(None, min_length=1, max_length=255)


class PricesOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    current: dict[str, Any]
    history: list[dict[str, Any]]


class PricesEnvelope(BaseModel):
    prices: PricesOut


class SpendQuery(Body):
    group_by: Optional[str] = Field(None, max_length=64,
                                    description="comma-separated: model, version, key, day, "
                                                "hour")
    from_: Optional[str] = Field(None, alias="from", max_length=64,
                                 description="ISO 8601; default the start of this UTC month")
    to: Optional[str] = Field(None, max_length=64, description="ISO 8601; default now")
    model: Optional[str] = Field(None, max_length=128)
    key: Optional[str] = Field(None, max_length=128, description="an API key name")
    limit: int = Field(1000, ge=1, le=10_000)
    page_token: Optional[str] = Field(None, max_length=2048)


class SpendOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    rows: list[dict[str, Any]]
    total: dict[str, Any]
    next_page_token: Optional[str]


class SpendEnvelope(BaseModel):
    spend: SpendOut


class BudgetBody(Body):
    period: Literal["day", "month"]
    soft_limit_usd: Optional[float] = Field(None, ge=0, description="alert when reached")
    hard_limit_usd: Optional[float] = Field(None, ge=0,
                                            description="reject (429) or alert when reached")
    hard_action: Literal["reject", "alert"] = "reject"


class BudgetOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    scope: str
    name: str
    period: str
    soft_limit_usd: Usd
    hard_limit_usd: Usd
    spent_usd: float
    resets_at: str


class BudgetEnvelope(BaseModel):
    budget: BudgetOut


class BudgetsQuery(Body):
    limit: int = Field(100, ge=1, le=MAX_PAGE_SIZE)
    page_token: Optional[str] = Field(None, max_length=2048)


class BudgetList(BaseModel):
    budgets: list[BudgetOut]
    next_page_token: Optional[str]
