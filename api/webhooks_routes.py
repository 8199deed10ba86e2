"""Webhook subscriptions (admin role), their delivery log, tests and redeliveries (issue 18).

The manager and its store return frozen records (``webhooks/records.py``), serialised here.
Deliveries are sent by the background sender (``webhooks/sender.py``); the endpoints that send
something (test, redeliver) queue it and answer 202 at once, so a slow receiver never holds a
request.
"""
from __future__ import annotations

from flask import Blueprint
from spectree import Response

from api.schemas import ErrorOut, Page
from api.services import actor, services
from api.spec import spec
from api.webhook_schemas import (CreatedWebhook, CreateWebhookBody, DeliveriesQuery,
                                 DeliveryEnvelope, DeliveryList, PatchWebhookBody,
                                 WebhookEnvelope, WebhookList)

bp = Blueprint("webhooks", __name__, url_prefix="/api/webhooks")
TAGS = ["webhooks"]
E = {"HTTP_400": ErrorOut, "HTTP_404": ErrorOut}


@bp.post("")
@spec.validate(json=CreateWebhookBody, resp=Response(HTTP_201=CreatedWebhook, **E), tags=TAGS)
def create_webhook(json: CreateWebhookBody):
    """Subscribe a URL to events; the response carries the secret, which is never shown again."""
    webhook, secret = services().webhooks.create(**json.model_dump(), actor=actor())
    return {"webhook": webhook.as_dict(), "secret": secret}, 201


@bp.get("")
@spec.validate(query=Page, resp=Response(HTTP_200=WebhookList, HTTP_400=ErrorOut), tags=TAGS)
def list_webhooks(query: Page):
    """Every subscription (without secrets), paged."""
    rows, token = services().webhooks.list(query.limit, query.page_token)
    return {"webhooks": [w.as_dict() for w in rows], "next_page_token": token}


@bp.get("/<webhook_id>")
@spec.validate(resp=Response(HTTP_200=WebhookEnvelope, **E), tags=TAGS)
def get_webhook(webhook_id: str):
    """One subscription (without its secret)."""
    return {"webhook": services().webhooks.get(webhook_id).as_dict()}


@bp.patch("/<webhook_id>")
@spec.validate(json=PatchWebhookBody, resp=Response(HTTP_200=WebhookEnvelope, **E), tags=TAGS)
def patch_webhook(webhook_id: str, json: PatchWebhookBody):
    """Change a subscription; `enabled: true` re-enables one disabled after failures."""
    changes = json.model_dump(exclude_unset=True)
    return {"webhook": services().webhooks.update(webhook_id, **changes).as_dict()}


@bp.delete("/<webhook_id>")
@spec.validate(resp=Response("HTTP_204", **E), tags=TAGS)
def delete_webhook(webhook_id: str):
    """Delete a subscription, its queued deliveries and its delivery log."""
    services().webhooks.delete(webhook_id)
    return "", 204


@bp.post("/<webhook_id>/test")
@spec.validate(resp=Response(HTTP_202=DeliveryEnvelope, **E), tags=TAGS)
def test_webhook(webhook_id: str):
    """Queue a `webhook.test` delivery; follow it in the delivery log."""
    return {"delivery": services().webhooks.test(webhook_id).as_dict()}, 202


@bp.get("/<webhook_id>/deliveries")
@spec.validate(query=DeliveriesQuery, resp=Response(HTTP_200=DeliveryList, **E), tags=TAGS)
def list_deliveries(webhook_id: str, query: DeliveriesQuery):
    """The subscription's deliveries, newest first."""
    rows, token = services().webhooks.deliveries(webhook_id, query.limit, query.page_token)
    return {"deliveries": [d.as_dict() for d in rows], "next_page_token": token}


@bp.get("/<webhook_id>/deliveries/<delivery_id>")
@spec.validate(resp=Response(HTTP_200=DeliveryEnvelope, **E), tags=TAGS)
def get_delivery(webhook_id: str, delivery_id: str):
    """One delivery with its body and every attempt (time, status, latency, response)."""
    return {"delivery": services().webhooks.delivery(webhook_id, delivery_id).as_dict()}


@bp.post("/<webhook_id>/deliveries/<delivery_id>/redeliver")
@spec.validate(resp=Response(HTTP_202=DeliveryEnvelope, **E), tags=TAGS)
def redeliver(webhook_id: str, delivery_id: str):
    """Queue the delivery's original body again (same delivery id for the receiver)."""
    return {"delivery": services().webhooks.redeliver(webhook_id, delivery_id).as_dict()}, 202
