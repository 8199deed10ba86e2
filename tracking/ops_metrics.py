"""Prometheus metrics computed at scrape time from the database (issue 20).

``registry_deployments_total{model,strategy,state}``, ``registry_rollbacks_total{model,trigger}``,
``registry_webhook_deliveries{state}``, ``registry_webhook_attempts_total{outcome}``, and
``registry_database_up`` (1 when the database answered this scrape, else 0: the server's own
health, seen from Prometheus even when every prediction still hits the cache), and
``registry_budget_spent_ratio{scope,name,limit}`` (issue 16's budgets: the stored spend of the
current period over the soft or hard limit; 1 or more = reached).
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from errors import Unavailable
from tracking.ops_store import OpsStore
from tracking.records import THRESHOLDS
from tracking.spend_store import SpendStore

log = logging.getLogger(__name__)


class OpsCollector(Collector):
    def __init__(self, store: OpsStore, spend: SpendStore | None = None) -> None:
        self.store = store
        self.spend = spend

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        up = GaugeMetricFamily("registry_database_up",
                               "1 when the database answered this scrape, else 0.")
        try:
            counts = self.store.counts()
        except Unavailable as exc:
            log.warning("metrics: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        deps = CounterMetricFamily("registry_deployments", "Deployments by final or current "
                                   "state (cluster-wide, from the database).",
                                   labels=["model", "strategy", "state"])
        for model, strategy, state, n in counts.deployments:
            deps.add_metric([model, strategy, state], n)
        yield deps
        rbs = CounterMetricFamily("registry_rollbacks", "Rollbacks by trigger (manual, "
                                  "automatic, snapshot; cluster-wide).",
                                  labels=["model", "trigger"])
        for model, trigger, n in counts.rollbacks:
            rbs.add_metric([model, trigger], n)
        yield rbs
        deliveries = GaugeMetricFamily("registry_webhook_deliveries",
                                       "Webhook deliveries by state (pending, succeeded, failed).",
                                       labels=["state"])
        for state in ("pending", "succeeded", "failed"):
            deliveries.add_metric([state], dict(counts.deliveries).get(state, 0))
        yield deliveries
        attempts = CounterMetricFamily("registry_webhook_attempts",
                                       "Webhook delivery attempts by outcome "
                                       "(succeeded, retry, failed).", labels=["outcome"])
        for outcome in ("succeeded", "retry", "failed"):
            attempts.add_metric([outcome], dict(counts.attempts).get(outcome, 0))
        yield attempts
        if self.spend is not None:
            try:
                yield self._budgets(self.spend)
            except Exception as exc:  # noqa: BLE001 - the other series are still worth serving
                log.warning("metrics: budgets not read: %s", exc.__class__.__name__)
        took = GaugeMetricFamily("registry_ops_scrape_seconds",
                                 "Time spent reading these counts from the database.")
        took.add_metric([], time.perf_counter() - started)
        yield took

    @staticmethod
    def _budgets(spend: SpendStore) -> Metric:
        ratio = GaugeMetricFamily(
            "registry_budget_spent_ratio", "Spend of the current UTC period over a budget's "
            "soft or hard limit (cluster-wide, stored spend; >= 1: reached).",
            labels=["scope", "name", "limit"])
        for budget, spent in spend.budgets_spent(time.time()):
            for threshold in THRESHOLDS:
                limit = budget.limit(threshold)
                if limit is None:
                    continue
                value = spent / limit if limit else (1.0 if spent == 0 else math.inf)
                ratio.add_metric([budget.scope, budget.name, threshold], value)
        return ratio
