"""Request and response bodies of the webhook endpoints (pydantic v2), issue 18."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, Field

from api.schemas import Body, Page
from registry.model_registry import NAME_PATTERN
from webhooks.events import MAX_PATTERNS, PUBLIC_EVENTS
from webhooks.url_safety import MAX_URL_LENGTH

Kind = Literal["generic", "slack", "pagerduty"]
_EVENTS_DOC = ("event names or patterns: " + ", ".join(PUBLIC_EVENTS) +
               "; wildcards `*` and `deployment.*`. Default: every event (`alert.*` and "
               "`rollback.performed` for pagerduty)")


class CreateWebhookBody(Body):
    url: str = Field(min_length=1, max_length=MAX_URL_LENGTH,
                     description="https URL (plain http only to WEBHOOK_ALLOWED_HTTP_HOSTS)")
    kind: Kind = Field("generic", description="generic (signed JSON envelope), slack, pagerduty")
    events: Optional[list[str]] = Field(None, max_length=MAX_PATTERNS, description=_EVENTS_DOC)
    model: Optional[str] = Field(None, pattern=NAME_PATTERN,
                                 description="only this model's events; default: every model")
    description: str = Field("", max_length=1000)
    secret: Optional[str] = Field(None, min_length=16, max_length=256,
                                  description="signing secret (generated when absent); for "
                                              "pagerduty the Events API v2 routing key")
    enabled: bool = True


class PatchWebhookBody(Body):
    url: Optional[str] = Field(None, min_length=1, max_length=MAX_URL_LENGTH)
    events: Optional[list[str]] = Field(None, max_length=MAX_PATTERNS, description=_EVENTS_DOC)
    model: Optional[str] = Field(None, pattern=NAME_PATTERN)
    description: Optional[str] = Field(None, max_length=1000)
    enabled: Optional[bool] = Field(None, description="true re-enables a disabled webhook and "
                                                      "clears its failure count")


class WebhookOut(BaseModel):
    id: str
    url: str = Field(description="a Slack URL (itself a credential) is shown shortened")
    kind: Kind
    events: list[str]
    model: Optional[str]
    description: str
    enabled: bool
    consecutive_failures: int
    disabled_reason: str
    actor: str
    created_at: str
    updated_at: str


class WebhookEnvelope(BaseModel):
    webhook: WebhookOut


class CreatedWebhook(BaseModel):
    webhook: WebhookOut
    secret: str = Field(description="shown this once; store it to verify signatures")


class WebhookList(BaseModel):
    webhooks: list[WebhookOut]
    next_page_token: Optional[str]


class AttemptOut(BaseModel):
    number: int
    at: str
    status_code: Optional[int]
    latency_ms: float
    outcome: Literal["succeeded", "retry", "failed"]
    error: str
    response_excerpt: str


class DeliveryOut(BaseModel):
    id: str
    message_id: str = Field(description="the delivery id the receiver sees "
                                        "(X-MLflow-Delivery-Id); the same on every attempt "
                                        "and redelivery")
    subscription_id: str
    event: str
    event_id: Optional[int]
    model: Optional[str]
    state: Literal["pending", "succeeded", "failed"]
    attempts: int
    last_status: Optional[int]
    last_error: str
    redelivery_of: Optional[str]
    created_at: str
    finished_at: Optional[str]
    next_attempt_at: Optional[str]


class DeliveryDetail(DeliveryOut):
    body: str = Field(description="the exact body sent (PagerDuty's routing key is added at "
                                  "send time and not shown)")
    attempt_log: list[AttemptOut]


class DeliveryEnvelope(BaseModel):
    delivery: DeliveryDetail


class DeliveryList(BaseModel):
    deliveries: list[DeliveryOut]
    next_page_token: Optional[str]


class DeliveriesQuery(Page):
    pass

