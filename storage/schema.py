"""Table definitions (SQLAlchemy Core). The migrations under ``storage/migrations`` create them.

Tables of a later area are added here with a migration of their own.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (JSON, BigInteger, Column, DateTime, ForeignKey, Index, Integer,
                        LargeBinary, MetaData, String, Table, Text, UniqueConstraint, text)

metadata = MetaData()

# Row conditions of the partial indexes on model_versions (issue 14).
LIVE = "status <> 'archived'"
RELEASE = "prerelease IS NULL"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC (naive means UTC). A time that parses but lies beyond what UTC can
    hold (``0001-01-01T00:00:00+14:00``, ``9999-12-31T23:59:59-14:00``) becomes the first or
    last representable instant instead of an OverflowError: such a time is still served."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:
        edge = datetime.min if value.year == datetime.min.year else datetime.max
        return edge.replace(tzinfo=timezone.utc)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 UTC with a Z, as every API answer shows times."""
    if value is None:
        return None
    if value.tzinfo is None:   # SQLite hands back naive datetimes; they were stored as UTC
        return value.isoformat() + "Z"   # the same text, a third of the cost (issue 14)
    return as_utc(value).isoformat().replace("+00:00", "Z")


models = Table(
    "models", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("metadata", JSON, nullable=False, default=dict),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # issue 17: the next MLflow version number of this model; numbers are never reused.
    Column("next_number", Integer, nullable=False, server_default="1"),
    # Bumped by every write to the model, its tags, versions or aliases (issue 14): what each
    # process's registry read cache compares against (registry/read_cache.py). Starts at a
    # nanosecond clock so that a model deleted and registered again never repeats a revision.
    Column("revision", BigInteger, nullable=False, server_default="1"),
)

# Tags live in their own table so that `?tag=key:value` is an indexed lookup on any database.
model_tags = Table(
    "model_tags", metadata,
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("value", String(512), nullable=False),
    Index("ix_model_tags_key_value", "key", "value"),
)

model_versions = Table(
    "model_versions", metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("version", String(255), nullable=False),
    # Bytewise order == SemVer precedence (registry.version_manager.precedence_key); unique per
    # model, so two versions differing only in build metadata collide.
    Column("precedence", LargeBinary(600), nullable=False),
    Column("major", BigInteger, nullable=False),
    Column("minor", BigInteger, nullable=False),
    Column("patch", BigInteger, nullable=False),
    Column("prerelease", String(255)),
    Column("build", String(255)),
    Column("status", String(16), nullable=False),
    Column("provider", String(64), nullable=False),
    Column("config", JSON, nullable=False, default=dict),
    Column("artifact_digest", String(64)),
    Column("artifact_size", BigInteger),
    Column("description", Text, nullable=False, default=""),
    Column("tags", JSON, nullable=False, default=dict),
    Column("metadata", JSON, nullable=False, default=dict),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("model_id", "precedence", name="uq_model_versions_precedence"),
    # issue 17: MLflow's integer version (1, 2, 3... per model, never reused), and where an
    # MLflow client said the version came from.
    Column("number", Integer),
    Column("source", Text),
    Column("run_id", String(64)),
    Index("uq_model_versions_number", "model_id", "number", unique=True),
    # Issue 14: `latest`, aliases and ranges seek these instead of scanning a model's versions.
    # The WHERE texts are written literally in the queries (SQLite matches them as text).
    Index("ix_model_versions_release", "model_id", "precedence",
          sqlite_where=text(RELEASE), postgresql_where=text(RELEASE)),
    Index("ix_model_versions_live", "model_id", "precedence",
          sqlite_where=text(LIVE), postgresql_where=text(LIVE)),
    Index("ix_model_versions_live_release", "model_id", "precedence",
          sqlite_where=text(f"{LIVE} AND {RELEASE}"),
          postgresql_where=text(f"{LIVE} AND {RELEASE}")),
    Index("ix_model_versions_status", "model_id", "status", "precedence"),
)

aliases = Table(
    "aliases", metadata,
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
    Column("alias", String(128), primary_key=True),
    Column("version_id", Integer, ForeignKey("model_versions.id", ondelete="CASCADE"),
           nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# The audit trail: every state change, with who and why. Names, not foreign keys, so that the
# history of a deleted model survives it.
events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("model", String(128)),
    Column("version", String(255)),
    Column("deployment_id", String(64)),
    Column("reason", Text, nullable=False, default=""),
    Column("detail", JSON, nullable=False, default=dict),
    Index("ix_events_model_at", "model", "at"),
    Index("ix_events_deployment", "deployment_id"),
)

# --- tracking -----------------------------------------------------------------------------
from sqlalchemy import Boolean, Float, PrimaryKeyConstraint, text  # noqa: E402  (appended section)

# Aggregated prediction metrics. One row per (model, version, resolution, bucket_start): the
# collector flushes 10 s aggregates and adds each one into every resolution tier (10 s, 5 min,
# 1 h, 1 d), so a query over any window reads a bounded number of rows whatever the traffic.
# Rows are merged with read-modify-write under the row lock (see tracking/metrics_store.py), so
# several processes flushing the same bucket add up. Names, not foreign keys: metrics of a
# deleted model stay readable until retention prunes them.
metric_buckets = Table(
    "metric_buckets", metadata,
    Column("model", String(160), nullable=False),   # a model name, or "<model>#pinned"
    Column("version", String(255), nullable=False),
    Column("resolution", Integer, nullable=False),            # seconds: 10, 300, 3600, 86400
    Column("bucket_start", BigInteger, nullable=False),       # epoch s, multiple of resolution
    Column("requests", BigInteger, nullable=False, default=0),
    Column("successes", BigInteger, nullable=False, default=0),
    Column("failures", BigInteger, nullable=False, default=0),
    Column("latency_sum", Float, nullable=False, default=0.0),
    Column("latency_min", Float),                             # NULL only while requests = 0
    Column("latency_max", Float),
    Column("input_tokens", BigInteger, nullable=False, default=0),
    Column("output_tokens", BigInteger, nullable=False, default=0),
    Column("total_tokens", BigInteger, nullable=False, default=0),
    Column("cost_micro_usd", BigInteger, nullable=False, default=0, server_default="0"),
    Column("errors", JSON, nullable=False, default=dict),     # {error kind: failures}
    Column("latency_hist", LargeBinary, nullable=False),      # sparse log histogram, see collector
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # Key order serves both "one version" and "every version of a model" over a time range.
    PrimaryKeyConstraint("model", "resolution", "bucket_start", "version",
                         name="pk_metric_buckets"),
    Index("ix_metric_buckets_resolution_start", "resolution", "bucket_start"),  # prune, evaluate
)

# One row per (model, version) that ever reported metrics: when it was first and last seen
# (bucket starts, epoch seconds). Gives "the observed span" without scanning buckets, and the
# list of versions with recent traffic for alert evaluation.
metric_series = Table(
    "metric_series", metadata,
    Column("model", String(160), primary_key=True),
    Column("version", String(255), primary_key=True),
    Column("first_bucket", BigInteger, nullable=False),
    Column("last_bucket", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_metric_series_last", "last_bucket"),
)

# Alerts. At most one active alert per (model, version, rule): enforced by a partial unique
# index on the unresolved rows (``resolved_at IS NULL`` reads the same on SQLite and PostgreSQL,
# and is what ``INSERT ... ON CONFLICT`` names), so concurrent evaluators in several processes
# update the same row instead of piling up duplicates. ``active`` mirrors ``resolved_at IS
# NULL``. ``version`` is "" for model-level alerts.
alerts = Table(
    "alerts", metadata,
    Column("id", Integer, primary_key=True),
    Column("model", String(128), nullable=False),
    Column("version", String(255), nullable=False, default=""),
    Column("rule", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("message", Text, nullable=False, default=""),
    Column("value", Float),
    Column("threshold", Float),
    Column("details", JSON, nullable=False, default=dict),
    Column("active", Boolean, nullable=False, default=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True)),
    Index("ix_alerts_one_active", "model", "version", "rule", unique=True,
          sqlite_where=text("resolved_at IS NULL"),
          postgresql_where=text("resolved_at IS NULL")),
    Index("ix_alerts_model_id", "model", "id"),
)

# --- traffic ------------------------------------------------------------------------------
# The live traffic table of each model: {version: percent}, with a revision that every process
# compares against its cached copy (one indexed read per model and second, never per request).
# Changed only by the rollout controller and rollback, each change also a traffic_history row.
traffic = Table(
    "traffic", metadata,
    Column("model", String(128), primary_key=True),
    Column("revision", Integer, nullable=False),
    Column("weights", JSON, nullable=False),
    Column("stable_version", String(255)),
    Column("deployment_id", String(64)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

traffic_history = Table(
    "traffic_history", metadata,
    Column("id", Integer, primary_key=True),
    Column("model", String(128), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("weights", JSON, nullable=False),
    Column("stable_version", String(255)),
    Column("deployment_id", String(64)),
    Column("actor", String(128), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("model", "revision", name="uq_traffic_history_revision"),
    Index("ix_traffic_history_model_at", "model", "at"),
)

# --- deployments --------------------------------------------------------------------------
# One row per rollout: a persisted state machine (see deployment/deployment_manager.py). Every
# transition is an ``UPDATE ... WHERE id = ? AND revision = ?`` that bumps ``revision``, so
# concurrent tickers in several processes apply each step once. ``next_check_at`` and
# ``deadline_at`` are stored times: no progress lives only in memory. ``finished_at`` is NULL
# exactly while the rollout is in progress; the partial unique index on ``model`` over those
# rows is what makes "one rollout per model at a time" hold across processes.
deployments = Table(
    "deployments", metadata,
    Column("id", String(64), primary_key=True),               # "dep_<hex>", time ordered
    Column("model", String(128), nullable=False),
    Column("version", String(255), nullable=False),
    Column("previous_version", String(255)),                  # the stable version it started from
    Column("strategy", String(16), nullable=False),           # direct | blue-green | canary
    Column("state", String(16), nullable=False),
    Column("step", Integer),                                  # index into steps; NULL before any
    Column("steps", JSON, nullable=False),                    # [10, 50, 100]
    Column("traffic", JSON, nullable=False),                  # {version: percent} it applied
    Column("analysis", JSON),                                 # settings; NULL for direct
    Column("verdicts", JSON, nullable=False, default=list),   # health check and analyses
    Column("reason", Text, nullable=False, default=""),
    Column("actor", String(128), nullable=False),
    Column("revision", Integer, nullable=False, default=1),
    Column("step_started_at", DateTime(timezone=True)),
    Column("next_check_at", DateTime(timezone=True)),         # when a tick should look again
    Column("deadline_at", DateTime(timezone=True)),           # step deadline / health lease
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Index("ix_deployments_model_created", "model", "created_at"),
    Index("ix_deployments_created", "created_at"),
    Index("ix_deployments_one_active", "model", unique=True,
          sqlite_where=text("finished_at IS NULL"),
          postgresql_where=text("finished_at IS NULL")),
)

# The rollback history: written by the rollout controller (an aborted canary) and by the
# rollback manager (manual, automatic, snapshot restore). Names, not foreign keys.
rollbacks = Table(
    "rollbacks", metadata,
    Column("id", String(64), primary_key=True),               # "rb_<hex>", time ordered
    Column("model", String(128), nullable=False),
    Column("from_version", String(255)),
    Column("to_version", String(255)),
    Column("trigger", String(16), nullable=False),            # manual | automatic | snapshot
    Column("reason", Text, nullable=False, default=""),
    Column("evidence", JSON, nullable=False, default=dict),
    Column("actor", String(128), nullable=False),
    Column("deployment_id", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_rollbacks_model_created", "model", "created_at"),
    Index("ix_rollbacks_created", "created_at"),
)

# Results of health checks (probes of a version before it gets traffic), kept per version.
health_checks = Table(
    "health_checks", metadata,
    Column("id", Integer, primary_key=True),
    Column("model", String(128), nullable=False),
    Column("version", String(255), nullable=False),
    Column("deployment_id", String(64)),
    Column("ok", Boolean, nullable=False),
    Column("message", Text, nullable=False, default=""),
    Column("probes", JSON, nullable=False, default=list),     # [{ok, latency, message}]
    Column("checked_at", DateTime(timezone=True), nullable=False),
    Index("ix_health_checks_model_version", "model", "version", "checked_at"),
)

# --- api keys -------------------------------------------------------------------------------
# API keys: only a sha256 of the token is stored (tokens are 256-bit random, so a slow hash adds
# nothing); ``prefix`` finds the row, the digest is compared in constant time.
api_keys = Table(
    "api_keys", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False),
    Column("prefix", String(16), nullable=False, unique=True),
    Column("digest", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)

# One row (id 1): whether API keys are required. Set by the first key ever created and never
# cleared by the service, so revoking keys cannot switch authentication off (issue 21).
auth_state = Table(
    "auth_state", metadata,
    Column("id", Integer, primary_key=True),
    Column("keys_required", Boolean, nullable=False),
    Column("since", DateTime(timezone=True)),
)

# --- snapshots ------------------------------------------------------------------------------
# The serving state (traffic tables, aliases, version statuses, active deployment) of one model
# (``model`` set) or of all models (``model`` NULL), taken by hand or before every deployment.
snapshots = Table(
    "snapshots", metadata,
    Column("id", String(64), primary_key=True),               # "snap_<hex>", time ordered
    Column("model", String(128)),
    Column("automatic", Boolean, nullable=False),
    Column("state", JSON, nullable=False),
    Column("summary", JSON),     # what lists show: model count, first models' weights
    Column("reason", Text, nullable=False, default=""),
    Column("actor", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_snapshots_model_created", "model", "created_at"),
)

# --- cost (issue 16) ------------------------------------------------------------------------
# Price overrides with their history: a row applies to calls from ``effective_from`` until the
# next row of the same (model, version); rows are never updated, so past costs stay explained.
# ``version`` "" is the model-wide price. Rates are micro-USD per 1M tokens (see money.py).
prices = Table(
    "prices", metadata,
    Column("id", Integer, primary_key=True),
    Column("model", String(128), nullable=False),
    Column("version", String(255), nullable=False, default=""),
    Column("effective_from", DateTime(timezone=True), nullable=False),
    Column("input_rate", BigInteger, nullable=False),
    Column("output_rate", BigInteger, nullable=False),
    Column("cached_input_rate", BigInteger),
    Column("thinking_rate", BigInteger),
    Column("source", Text, nullable=False, default=""),
    Column("actor", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_prices_model_version_from", "model", "version", "effective_from"),
)

# What was spent, per hour, model, version and API key ("" = no key): written by the metrics
# flush in the same transaction as the metric buckets, merged additively across processes.
spend = Table(
    "spend", metadata,
    Column("model", String(128), nullable=False),
    Column("version", String(255), nullable=False),
    Column("api_key", String(128), nullable=False),
    Column("hour_start", BigInteger, nullable=False),          # epoch s, multiple of 3600
    Column("requests", BigInteger, nullable=False, default=0),
    Column("input_tokens", BigInteger, nullable=False, default=0),
    Column("output_tokens", BigInteger, nullable=False, default=0),
    Column("cost_micro_usd", BigInteger, nullable=False, default=0),
    PrimaryKeyConstraint("model", "hour_start", "version", "api_key", name="pk_spend"),
    Index("ix_spend_key_hour", "api_key", "hour_start"),
    Index("ix_spend_hour", "hour_start"),
)

# Spending limits of one API key or one model per day or month (UTC calendar periods).
budgets = Table(
    "budgets", metadata,
    Column("id", Integer, primary_key=True),
    Column("scope", String(8), nullable=False),                # key | model
    Column("name", String(128), nullable=False),
    Column("period", String(8), nullable=False),               # day | month
    Column("soft_limit_micro_usd", BigInteger),
    Column("hard_limit_micro_usd", BigInteger),
    Column("hard_action", String(8), nullable=False),          # reject | alert
    # the start (epoch s) of the period in which the soft/hard limit was last reached and its
    # budget.*_limit_reached event written (0015): once per budget, period and threshold
    Column("soft_reached_period", BigInteger),
    Column("hard_reached_period", BigInteger),
    Column("actor", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("scope", "name", name="uq_budgets_scope_name"),
)

# --- webhooks (issue 18) ----------------------------------------------------------------------
# Subscriptions: where to send which public events. ``secret`` is kept in clear because every
# delivery is signed with it (HMAC needs the key itself, as in MLflow); it is never returned by
# the API after creation and never logged. For ``pagerduty`` it is the integration's routing key.
webhook_subscriptions = Table(
    "webhook_subscriptions", metadata,
    Column("id", String(64), primary_key=True),               # "wh_<hex>", time ordered
    Column("url", Text, nullable=False),
    Column("kind", String(16), nullable=False),               # generic | slack | pagerduty
    Column("events", JSON, nullable=False),                   # ["deployment.*", "alert.raised"]
    Column("model", String(128)),                             # only this model's events; NULL: all
    Column("description", Text, nullable=False, default=""),
    Column("secret", String(256), nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("disabled_reason", Text, nullable=False, default=""),
    Column("actor", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# The outbox: one row per (event, subscription), written in the transaction of the change that
# produced the event, with the exact body to send. ``message_id`` is the stable id a receiver
# deduplicates on (the same on every attempt and redelivery). A sender claims a row by an
# ``UPDATE ... WHERE id = ? AND revision = ?`` that sets a lease, so several processes never send
# the same delivery at once; a lease that runs out (a killed process) makes it claimable again.
webhook_deliveries = Table(
    "webhook_deliveries", metadata,
    Column("seq", Integer, primary_key=True),                 # delivery order per subscription
    Column("id", String(64), nullable=False, unique=True),    # "whd_<hex>"
    Column("message_id", String(64), nullable=False),
    Column("subscription_id", String(64), nullable=False),
    Column("event", String(64), nullable=False),
    Column("event_id", Integer),                              # the events row; NULL for tests
    Column("model", String(128)),
    Column("body", Text, nullable=False),
    Column("state", String(16), nullable=False),              # pending|succeeded|failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True)),       # NULL once finished
    Column("lease_until", DateTime(timezone=True)),
    Column("lease_owner", String(64)),
    Column("revision", Integer, nullable=False, default=1),
    Column("last_status", Integer),
    Column("last_error", Text, nullable=False, default=""),
    Column("redelivery_of", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Index("ix_webhook_deliveries_pending", "state", "next_attempt_at"),
    Index("ix_webhook_deliveries_subscription", "subscription_id", "seq"),
)

# Every attempt of every delivery: what the receiver answered and how long it took.
webhook_attempts = Table(
    "webhook_attempts", metadata,
    Column("id", Integer, primary_key=True),
    Column("delivery_id", String(64), nullable=False),
    Column("number", Integer, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("status_code", Integer),                           # NULL: no HTTP answer
    Column("latency_ms", Float, nullable=False),
    Column("outcome", String(16), nullable=False),            # succeeded | retry | failed
    Column("error", Text, nullable=False, default=""),
    Column("response_excerpt", Text, nullable=False, default=""),
    Index("ix_webhook_attempts_delivery", "delivery_id", "number"),
)

# -- issue 19: shadow deployments ---------------------------------------------------------------
# A shadow mirrors a sampled share of a model's live requests to a candidate version; each
# mirrored pair's comparison is a row of shadow_pairs (written off the request path by the
# mirror's workers), so every server process adds to one report that survives restarts.
shadows = Table(
    "shadows", metadata,
    Column("id", String(64), primary_key=True),
    Column("model", String(128), nullable=False),
    Column("version", String(255), nullable=False),            # the candidate
    Column("state", String(16), nullable=False),                # running | finished | promoted
    Column("sample_percent", JSON, nullable=False),             # float 0-100
    Column("max_requests", Integer),
    Column("ends_at", DateTime(timezone=True)),
    Column("dropped", BigInteger, nullable=False, default=0),   # mirrors the queue refused
    Column("reason", Text, nullable=False, default=""),
    Column("actor", String(255), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Index("ix_shadows_model_state", "model", "state"),
)

shadow_pairs = Table(
    "shadow_pairs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("shadow_id", String(64), ForeignKey("shadows.id", ondelete="CASCADE"),
           nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("primary_version", String(255), nullable=False),
    Column("primary_latency", JSON, nullable=False),
    Column("shadow_latency", JSON),
    Column("shadow_error", String(64)),                         # error kind, None when it answered
    Column("agree", Integer),                                   # 1/0; None when the shadow failed
    Column("argmax_agree", Integer),                            # ONNX only
    Column("similarity", JSON),                                 # 0-1
    Column("max_abs_diff", JSON),                               # ONNX only
    Column("primary_tokens", Integer),
    Column("shadow_tokens", Integer),
    Column("example", JSON),                                    # input + outputs, if allowed
    Column("primary_cost_micro_usd", BigInteger),               # None: no price
    Column("shadow_cost_micro_usd", BigInteger),
    Index("ix_shadow_pairs_shadow", "shadow_id", "id"),
)

# -- issue 19: A/B experiments --------------------------------------------------------------------
# An experiment holds a fixed traffic split between variants for its duration; the per-variant
# metrics are the production metrics (the variants serve real users), the verdict is stored
# when it ends.
experiments = Table(
    "experiments", metadata,
    Column("id", String(64), primary_key=True),
    Column("model", String(128), nullable=False),
    Column("variants", JSON, nullable=False),                   # {version: weight}, control first
    Column("control", String(255), nullable=False),
    Column("primary_metric", String(32), nullable=False),       # error_rate | latency
    Column("alpha", JSON, nullable=False),
    Column("sample_size", Integer),                             # requests per variant
    Column("ends_at", DateTime(timezone=True)),
    Column("state", String(16), nullable=False),                # running | finished | promoted
    Column("previous", JSON),                                   # the traffic weights before
    Column("result", JSON),                                     # the final verdict
    Column("reason", Text, nullable=False, default=""),
    Column("actor", String(255), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Index("ix_experiments_model_state", "model", "state"),
)
