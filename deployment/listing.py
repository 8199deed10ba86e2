"""``GET /api/deployments``: rollouts, shadows and A/B experiments in one list (issue 19).

The three live in their own tables; each is paged newest first by (created_at, id), and all
three take the same keyset token. A page here asks each source that the filters allow for
``limit`` rows after the token, merges them by (created_at, id) and keeps the first
``limit``: the next page's token is the last kept row's, so nothing is skipped or repeated
across pages, whichever source the rows come from.
"""
from __future__ import annotations

from typing import Any

from deployment.deployment_store import DeploymentStore, page_token_of
from deployment.deployment_strategy import STRATEGIES
from deployment.experiment_store import ExperimentStore
from deployment.records import STATES, TRIAL_STATES
from deployment.shadow_store import ShadowStore
from errors import InvalidArgument
from shared.pagination import check_limit

ALL_STRATEGIES: tuple[str, ...] = STRATEGIES + ("shadow", "experiment")
ALL_STATES: tuple[str, ...] = STATES + TRIAL_STATES


class DeploymentListing:
    def __init__(self, deployments: DeploymentStore, shadows: ShadowStore,
                 experiments: ExperimentStore) -> None:
        self.deployments = deployments
        self.shadows = shadows
        self.experiments = experiments

    def list(self, model: str | None = None, state: str | None = None,
             strategy: str | None = None, limit: int = 50, page_token: str | None = None
             ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first, every kind; ``strategy`` and ``state`` filter. Returns (the API
        objects, next_page_token or None)."""
        if strategy is not None and strategy not in ALL_STRATEGIES:
            raise InvalidArgument(f"unknown strategy {strategy!r}: expected one of "
                                  f"{', '.join(ALL_STRATEGIES)}")
        if state is not None and state not in ALL_STATES:
            raise InvalidArgument(f"unknown state {state!r}: expected one of "
                                  f"{', '.join(ALL_STATES)}")
        limit = check_limit(limit, 50)
        rows: list[Any] = []
        more = False
        rollout = strategy is None or strategy in STRATEGIES
        if rollout and (state is None or state in STATES):
            found, token = self.deployments.list(model, state, limit, page_token, strategy)
            rows += found
            more |= token is not None
        trial_state = state is None or state in TRIAL_STATES
        for kind, store in (("shadow", self.shadows), ("experiment", self.experiments)):
            if trial_state and strategy in (None, kind):
                found, token = store.list(model, state, limit, page_token)
                rows += found
                more |= token is not None
        rows.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        more |= len(rows) > limit
        page = rows[:limit]
        token = page_token_of(page[-1].created_at, page[-1].id) if more and page else None
        return [r.as_dict() for r in page], token
