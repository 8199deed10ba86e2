"""The objects one app instance works with, built once in ``create_app``."""
from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, g, request

from config import Settings
from api.auth import Authenticator
from deployment.deployment_manager import DeploymentManager
from deployment.gateway import Gateway, highest_stable
from deployment.health_checker import HealthChecker
from deployment.router import Router
from deployment.traffic_store import TrafficStore
from models.base_model import ProviderLimits
from models.model_loader import ModelLoader, ProviderCatalog
from registry.model_registry import ModelRegistry
from rollback.rollback_manager import RollbackManager
from rollback.snapshot_manager import SnapshotManager
from storage.database import Database
from storage.key_store import KeyStore
from storage.model_store import ArtifactStore
from tracking.alerting import AlertManager
from tracking.budgets import Budgets
from tracking.metrics_collector import MetricsCollector, default_collector
from tracking.performance_tracker import PerformanceTracker
from tracking.pricing import PriceBook
from tracking.prometheus import limit_versions
from tracking.spend import SpendReports
from webhooks.sender import WebhookSender
from webhooks.url_safety import Destinations
from webhooks.webhook_manager import WebhookManager
from webhooks.webhook_store import WebhookStore

EXTENSION_KEY = "model_registry"
# A webhook disabled after repeated failures raises this alert (model, rule; version = its id).
WEBHOOK_ALERT_MODEL = "webhooks"
WEBHOOK_DISABLED_RULE = "webhook_disabled"


@dataclass
class Services:
    settings: Settings
    database: Database
    registry: ModelRegistry
    artifacts: ArtifactStore
    loader: ModelLoader
    collector: MetricsCollector
    tracker: PerformanceTracker
    alerts: AlertManager
    traffic: TrafficStore
    router: Router
    gateway: Gateway
    deployments: DeploymentManager
    keys: KeyStore
    auth: Authenticator
    rollbacks: RollbackManager
    snapshots: SnapshotManager
    prices: PriceBook
    budgets: Budgets
    spend: SpendReports
    webhooks: WebhookManager
    webhook_sender: WebhookSender

    def close(self) -> None:
        self.webhook_sender.close()
        self.collector.flush()
        self.loader.close()
        self.database.dispose()


def build_services(settings: Settings) -> Services:
    """Wire every layer once: the registry validates configs through the provider catalog, the
    gateway routes through the traffic table, the tracker reads what the collector recorded."""
    database = Database(settings.database_url)
    catalog = ProviderCatalog()
    registry = ModelRegistry(database, validate_config=catalog.validate_config)
    artifacts = ArtifactStore(settings.artifact_root)
    artifacts.cleanup_temp()
    traffic = TrafficStore(database)
    limit_versions(settings.max_series_versions)
    limits = ProviderLimits(timeout_s=settings.onnx_timeout_s,
                            max_output_bytes=settings.max_output_bytes,
                            memory_bytes=settings.onnx_memory_bytes)
    deployments: DeploymentManager | None = None

    def serving(model: str) -> set[str]:
        """What the loader must keep loaded: routed, stable, and an active rollout's pair."""
        table = traffic.get(model)
        keep = set(table.weights) | {table.stable_version} if table else set()
        active = deployments.store.active_for_model(model) if deployments else None
        if active is not None:
            keep |= {active.version, active.previous_version}
        return {v for v in keep if v}

    loader = ModelLoader(registry, artifacts, catalog, limits=limits,
                         max_loaded=settings.max_loaded_versions,
                         max_loaded_bytes=settings.max_loaded_bytes, serving=serving)
    collector = default_collector(database)
    prices = PriceBook(database, registry, default_gemini_model=settings.gemini_model)
    tracker = PerformanceTracker(database, collector, prices,
                                 max_series_versions=settings.max_series_versions)
    router = Router(traffic, highest_stable(registry))
    alerts = AlertManager(database, tracker=tracker)
    budgets = Budgets(database, collector, alerts=alerts)
    keys = KeyStore(database)
    # A probe lasts at least the ONNX deadline: the run it starts is stopped by that deadline
    # by the time the probe is given up, never left spinning (issue 21).
    health = HealthChecker(loader, timeout_s=max(10.0, settings.onnx_timeout_s))
    snapshots = SnapshotManager(database, health=health, router=router)
    deployments = DeploymentManager(database, registry=registry, loader=loader, tracker=tracker,
                                    alerts=alerts, traffic=traffic, router=router,
                                    health_checker=health, before_deploy=snapshots.before_deploy)
    rollbacks = RollbackManager(database, registry=registry, tracker=tracker, alerts=alerts,
                                health=health, router=router)
    webhook_store = WebhookStore(database)
    webhooks = WebhookManager(
        webhook_store, Destinations(settings.webhook_allowed_http_hosts,
                                    settings.webhook_allow_private),
        on_enabled=lambda sub: alerts.resolve(WEBHOOK_ALERT_MODEL, sub["id"],
                                              WEBHOOK_DISABLED_RULE))
    sender = WebhookSender(webhook_store, settings,
                           on_disabled=lambda sub: alerts.record_event_alert(
                               WEBHOOK_ALERT_MODEL, sub["id"], WEBHOOK_DISABLED_RULE,
                               f"webhook {sub['id']} ({sub['url']}) "
                               f"{sub['disabled_reason']}", "critical",
                               {"webhook_id": sub["id"]}))
    return Services(
        settings=settings, database=database, registry=registry, artifacts=artifacts,
        loader=loader, collector=collector, tracker=tracker,
        alerts=alerts, traffic=traffic, router=router,
        gateway=Gateway(registry, loader, router, collector,
                        settings.inflight_limit, prices=prices, budgets=budgets),
        deployments=deployments, keys=keys, auth=Authenticator(keys, settings.admin_token),
        rollbacks=rollbacks, snapshots=snapshots, prices=prices, budgets=budgets,
        spend=SpendReports(database, collector), webhooks=webhooks, webhook_sender=sender)


def services() -> Services:
    return current_app.extensions[EXTENSION_KEY]


def api_key_name() -> str | None:
    """The calling API key's name (None while auth is off): what spend is counted by."""
    return getattr(g, "api_key", None)


def actor() -> str:
    """Who is acting, for the audit trail: the API key's name once auth is on."""
    return getattr(g, "actor", None) or f"api:{request.remote_addr or 'local'}"
