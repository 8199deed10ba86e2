"""Counts of what the operators' alerts watch, read from the shared database (issue 20):
deployments by outcome, rollbacks by trigger, webhook deliveries and attempts by state.

Read at scrape time from the database rather than counted in each process, so every server
of a cluster reports the same cluster-wide totals however many processes did the work (the
alert rules take ``max`` over instances).
"""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from errors import Unavailable
from storage.database import Database
from storage.schema import deployments, rollbacks, webhook_attempts, webhook_deliveries
from tracking.records import OpsCounts


class OpsStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def counts(self) -> OpsCounts:
        """Deployments by (model, strategy, state), rollbacks by (model, trigger), webhook
        deliveries by state and attempts by outcome, in one read transaction."""
        queries = {
            "deployments": select(deployments.c.model, deployments.c.strategy,
                                  deployments.c.state, func.count()).group_by(
                deployments.c.model, deployments.c.strategy, deployments.c.state),
            "rollbacks": select(rollbacks.c.model, rollbacks.c.trigger, func.count()).group_by(
                rollbacks.c.model, rollbacks.c.trigger),
            "deliveries": select(webhook_deliveries.c.state, func.count()).group_by(
                webhook_deliveries.c.state),
            "attempts": select(webhook_attempts.c.outcome, func.count()).group_by(
                webhook_attempts.c.outcome),
        }
        try:
            with self.database.read() as conn:
                return OpsCounts(**{name: tuple(tuple(row) for row in conn.execute(q))
                                    for name, q in queries.items()})
        except SQLAlchemyError as exc:
            raise Unavailable(f"the database did not answer: {exc.__class__.__name__}") from None
