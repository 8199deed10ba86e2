"""What each kind of subscription receives, and how a generic delivery is signed.

* ``generic``: the envelope ``{"id", "event", "time", "data"}``, signed as MLflow 3.3+ signs its
  webhooks: ``X-MLflow-Signature: v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>``
  with ``X-MLflow-Delivery-Id`` (= the envelope's ``id``) and ``X-MLflow-Timestamp`` (Unix
  seconds of the attempt), so MLflow's verification code works unchanged.
* ``slack``: an incoming-webhook message, ``text`` (the notification fallback) plus Block Kit
  ``blocks`` (header, section, fields, context).
* ``pagerduty``: an Events API v2 event: ``trigger`` on ``alert.raised`` and on automatic
  rollbacks, ``resolve`` on ``alert.resolved``, both with the ``dedup_key`` of (model, version,
  rule), so the resolve closes the incident the trigger opened (and an automatic rollback and
  its alert are one incident). Other events are not sent to PagerDuty.

Bodies are rendered once, when the event is written, and stored: retries and redeliveries send
the same bytes. PagerDuty's routing key (the subscription's secret) is added only when sending,
so it is never stored in a delivery nor shown in the delivery log.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

from storage.schema import iso

KINDS = ("generic", "slack", "pagerduty")
SIGNATURE_HEADER = "X-MLflow-Signature"
DELIVERY_ID_HEADER = "X-MLflow-Delivery-Id"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
SIGNATURE_VERSION = "v1"
SOURCE = "model-registry"
USER_AGENT = "model-registry-webhooks/1"
PAGERDUTY_SEVERITIES = ("critical", "error", "warning", "info")
AUTOMATIC_ROLLBACK_RULE = "automatic_rollback"   # tracking.alerting.ROLLBACK_RULE
_SLACK_HEADER_MAX = 150
_SLACK_TEXT_MAX = 3000
_PD_SUMMARY_MAX = 1024
_PD_DEDUP_MAX = 255


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def sign(secret: str, message_id: str, timestamp: str, body: str) -> str:
    """``v1,<base64>`` of HMAC-SHA256 over ``"{message_id}.{timestamp}.{body}"`` (UTF-8)."""
    digest = hmac.new(secret.encode("utf-8"), f"{message_id}.{timestamp}.{body}".encode("utf-8"),
                      hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def render(kind: str, message_id: str, event: str, at: datetime,
           data: dict[str, Any]) -> str | None:
    """The body to store for one delivery; None when this kind does not take this event."""
    if kind == "generic":
        return dumps({"id": message_id, "event": event, "time": iso(at), "data": data})
    if kind == "slack":
        return dumps(slack_message(event, at, data))
    event_v2 = pagerduty_event(event, at, data)
    return None if event_v2 is None else dumps(event_v2)


def prepare(kind: str, body: str, secret: str, message_id: str,
            timestamp: str) -> tuple[bytes, dict[str, str]]:
    """The bytes and headers of one attempt."""
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    if kind == "pagerduty":
        body = dumps({"routing_key": secret, **json.loads(body)})
    elif kind == "generic":
        headers.update({DELIVERY_ID_HEADER: message_id, TIMESTAMP_HEADER: timestamp,
                        SIGNATURE_HEADER: sign(secret, message_id, timestamp, body)})
    return body.encode("utf-8"), headers


# -- wording ---------------------------------------------------------------------------------
def summary(event: str, data: dict[str, Any]) -> str:
    """One human line about the event (Slack text, PagerDuty summary)."""
    detail = data.get("detail") or {}
    model = data.get("model") or ""
    where = f"{model}@{data['version']}" if data.get("version") else model
    reason = f": {data['reason']}" if data.get("reason") else ""
    if event.startswith("alert."):
        state = "resolved" if event == "alert.resolved" else f"[{detail.get('severity', '')}]"
        return f"{state} {detail.get('message') or detail.get('rule', 'alert')}"
    if event == "rollback.performed":
        return (f"{model} rolled back ({detail.get('trigger', '')}) from "
                f"{detail.get('from_version') or '-'} to {detail.get('to_version') or '-'}"
                f"{reason}")
    if event.startswith("deployment."):
        return f"deployment of {where} {event.split('.', 1)[1]}{reason}"
    if event == "webhook.test":
        return "test delivery from the model registry"
    return f"{event} {where}".strip()


def _escape(text: str) -> str:
    """Slack reads &, < and > as markup (``<!channel>`` would ping everyone)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def slack_message(event: str, at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    line = summary(event, data)
    fields = [("Model", data.get("model")), ("Version", data.get("version")),
              ("Deployment", data.get("deployment_id")), ("Actor", data.get("actor"))]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "emoji": True,
                                    "text": _cut(f"{event}: {data.get('model') or SOURCE}",
                                                 _SLACK_HEADER_MAX)}},
        {"type": "section", "text": {"type": "mrkdwn",
                                     "text": _cut(_escape(line), _SLACK_TEXT_MAX)}},
    ]
    shown = [{"type": "mrkdwn", "text": _cut(f"*{name}*\n{_escape(str(value))}", 2000)}
             for name, value in fields if value]
    if shown:
        blocks.append({"type": "section", "fields": shown})
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": f"{SOURCE} · {iso(at)}"}]})
    return {"text": _cut(f"[{event}] {line}", _SLACK_TEXT_MAX), "blocks": blocks}


def dedup_key(model: str, version: str, rule: str) -> str:
    key = f"{SOURCE}/{model}/{version or '-'}/{rule}"
    if len(key) > _PD_DEDUP_MAX:
        key = f"{SOURCE}/{hashlib.sha256(key.encode()).hexdigest()}"
    return key


def pagerduty_event(event: str, at: datetime, data: dict[str, Any]) -> dict[str, Any] | None:
    detail = data.get("detail") or {}
    model = data.get("model") or ""
    if event in ("alert.raised", "alert.resolved"):
        key = dedup_key(model, detail.get("version") or "", str(detail.get("rule") or ""))
        if event == "alert.resolved":
            return {"event_action": "resolve", "dedup_key": key}
        severity = detail.get("severity")
        return _trigger(key, summary(event, data), severity, at, model,
                        str(detail.get("rule") or "alert"), detail)
    if event == "rollback.performed" and detail.get("trigger") == "automatic":
        key = dedup_key(model, detail.get("from_version") or "", AUTOMATIC_ROLLBACK_RULE)
        return _trigger(key, summary(event, data), "critical", at, model,
                        AUTOMATIC_ROLLBACK_RULE, {**detail, "reason": data.get("reason", "")})
    if event == "webhook.test":
        return _trigger(dedup_key("test", "", "webhook.test"), summary(event, data), "info", at,
                        SOURCE, "test", {})
    return None


def _trigger(key: str, text: str, severity: Any, at: datetime, model: str, event_class: str,
             details: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_action": "trigger",
        "dedup_key": key,
        "payload": {
            "summary": _cut(text, _PD_SUMMARY_MAX),
            "source": f"{SOURCE}/{model}",
            "severity": severity if severity in PAGERDUTY_SEVERITIES else "error",
            "timestamp": iso(at),
            "component": model,
            "group": SOURCE,
            "class": event_class,
            "custom_details": details,
        },
        "client": "Model Registry",
    }
