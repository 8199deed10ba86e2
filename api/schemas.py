"""Request and response bodies of the REST API (pydantic v2): validation and OpenAPI in one."""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from registry.model_registry import NAME_PATTERN
from shared.pagination import MAX_PAGE_SIZE

Status = Literal["stable", "beta", "experimental", "deprecated", "archived"]
Tags = dict[str, str]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- requests ---------------------------------------------------------------------------------
class RegisterModelBody(Body):
    name: str = Field(pattern=NAME_PATTERN, description="unique model name")
    description: str = Field("", max_length=10_000)
    tags: Tags = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)


class PatchModelBody(Body):
    description: Optional[str] = Field(None, max_length=10_000)
    tags: Optional[Tags] = None
    metadata: Optional[dict[str, Any]] = None


class RegisterVersionBody(Body):
    version: str = Field(max_length=255, description="SemVer 2.0.0, e.g. 1.2.0 or 2.0.0-rc.1")
    status: Status = "experimental"
    description: str = Field("", max_length=10_000)
    tags: Tags = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    provider: str = Field("gemini", min_length=1, max_length=64)
    config: dict[str, Any] = Field(default_factory=dict)


class PatchVersionBody(Body):
    status: Optional[Status] = None
    description: Optional[str] = Field(None, max_length=10_000)
    tags: Optional[Tags] = None
    metadata: Optional[dict[str, Any]] = None


class AliasBody(Body):
    version: str = Field(min_length=1, max_length=255)


class Page(Body):
    limit: int = Field(50, ge=1, le=MAX_PAGE_SIZE)
    page_token: Optional[str] = Field(None, max_length=2048)


class ListModelsQuery(Page):
    q: Optional[str] = Field(None, max_length=128, description="name substring")
    tag: Optional[str] = Field(None, max_length=650, description="key:value")


class ListVersionsQuery(Page):
    limit: int = Field(100, ge=1, le=MAX_PAGE_SIZE)
    status: Optional[Status] = None
    range: Optional[str] = Field(None, max_length=255, description="npm range such as ^1.2")


# -- responses --------------------------------------------------------------------------------
class ModelOut(BaseModel):
    name: str
    description: str
    tags: Tags
    metadata: dict[str, Any]
    created_at: str
    updated_at: str


class ArtifactOut(BaseModel):
    digest: str
    size: int


class VersionOut(BaseModel):
    model: str
    version: str
    major: int
    minor: int
    patch: int
    prerelease: Optional[str]
    build: Optional[str]
    status: Status
    provider: str
    config: dict[str, Any]
    artifact: Optional[ArtifactOut]
    tags: Tags
    metadata: dict[str, Any]
    description: str
    aliases: list[str]
    number: Optional[int] = Field(None, description="MLflow's integer version: 1, 2, 3... per "
                                  "model in registration order, never reused")
    source: Optional[str] = Field(None, description="where an MLflow client said it came from")
    run_id: Optional[str] = None
    created_at: str
    updated_at: str


class ModelEnvelope(BaseModel):
    model: ModelOut


class ModelList(BaseModel):
    models: list[ModelOut]
    next_page_token: Optional[str]


class VersionEnvelope(BaseModel):
    version: VersionOut


class VersionList(BaseModel):
    versions: list[VersionOut]
    next_page_token: Optional[str]


class AliasOut(BaseModel):
    model: str
    alias: str
    version: str
    number: Optional[int] = Field(None, description="the version's MLflow number")


class AliasEnvelope(BaseModel):
    alias: AliasOut


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Optional[dict[str, Any]] = None


class ErrorOut(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: str
    checks: dict[str, Any] = Field(default_factory=dict)


class PredictBody(Body):
    input: Any = Field(description="the model's input: a prompt for Gemini, arrays for ONNX")
    version: Optional[str] = Field(None, min_length=1, max_length=255,
                                   description="pin a version, alias or range (preview)")
    key: Optional[str] = Field(None, min_length=1, max_length=512,
                               description="routing key: the same key sticks to one version")
    params: Optional[dict[str, Any]] = Field(None, description="per-request generation settings")


class UsageOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cached_tokens: Optional[int] = None
    reasoning_tokens: Optional[int] = None
    cost_micro_usd: Optional[int] = Field(None, description="null when the version has no price")
    cost_usd: Optional[float] = None


class PredictionOut(BaseModel):
    model: str
    version: str
    output: Any
    latency: float
    usage: Optional[UsageOut]
    deployment_id: Optional[str]
    routed_by: Literal["weight", "key", "pin"]
    fallback: bool


TRAFFIC_FIELD = Field("routed", description="`routed` (what the traffic table sent; what "
                      "rollouts, the watcher and alerts judge) or `pinned` (predictions "
                      "that named their version), recorded apart")


class MetricsQuery(Body):
    version: Optional[str] = Field(None, min_length=1, max_length=255)
    window: Optional[str] = Field(None, max_length=32, description="e.g. 30s, 15m, 24h, 7d")
    traffic: Literal["routed", "pinned"] = TRAFFIC_FIELD


class CompareQuery(Body):
    v1: str = Field(min_length=1, max_length=255)
    v2: str = Field(min_length=1, max_length=255)
    window: Optional[str] = Field(None, max_length=32)
    traffic: Literal["routed", "pinned"] = TRAFFIC_FIELD


class SeriesQuery(MetricsQuery):
    window: str = Field("1h", max_length=32)
    step: str = Field("1m", max_length=32)


class MetricsOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    requests: int
    successes: int
    failures: int
    success_rate: Optional[float]
    error_rate: Optional[float]
    avg_latency: Optional[float]
    p50_latency: Optional[float]
    p95_latency: Optional[float]
    p99_latency: Optional[float]
    input_tokens: int
    output_tokens: int
    total_tokens: int
    avg_tokens: Optional[float]
    throughput: Optional[float]
    cost_micro_usd: int = 0
    cost_usd: float = 0.0
    cost_per_request_usd: Optional[float] = None
    cost_per_1k_requests_usd: Optional[float] = None


class ModelMetrics(BaseModel):
    model: str
    window: Optional[str]
    traffic: str = "routed"
    versions: dict[str, MetricsOut]


class Comparison(BaseModel):
    model_config = ConfigDict(extra="allow")
    v1: MetricsOut
    v2: MetricsOut
    diff: dict[str, Any]


class Series(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    points: Any


class AlertsQuery(Page):
    model: Optional[str] = Field(None, max_length=128)
    active: Optional[bool] = None


class AlertOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int
    model: str
    version: str
    rule: str
    severity: str
    message: str
    active: bool
    created_at: str


class AlertList(BaseModel):
    alerts: list[AlertOut]
    next_page_token: Optional[str]


class CreateKeyBody(Body):
    name: str = Field(min_length=1, max_length=128)
    role: Literal["read", "write", "admin"] = "read"


class KeyOut(BaseModel):
    id: int
    name: str
    prefix: str
    role: str
    created_at: str
    revoked_at: Optional[str]
    active: bool


class KeyEnvelope(BaseModel):
    key: KeyOut
    token: Optional[str] = Field(None, description="shown once, at creation")


class KeyList(BaseModel):
    keys: list[KeyOut]


class RollbackBody(Body):
    version: Optional[str] = Field(None, min_length=1, max_length=255,
                                   description="target version; default: the previous one")
    reason: str = Field("", max_length=10_000)


class RollbackOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    model: str
    from_version: Optional[str]
    to_version: Optional[str]
    trigger: Literal["manual", "automatic", "snapshot"]
    reason: str
    evidence: dict[str, Any]
    created_at: str


class RollbackEnvelope(BaseModel):
    rollback: RollbackOut


class RollbacksQuery(Page):
    model: Optional[str] = Field(None, max_length=128)


class RollbackList(BaseModel):
    rollbacks: list[RollbackOut]
    next_page_token: Optional[str]


class SnapshotBody(Body):
    model: Optional[str] = Field(None, pattern=NAME_PATTERN,
                                 description="one model; default: every model")
    reason: str = Field("", max_length=10_000)


class SnapshotsQuery(Page):
    model: Optional[str] = Field(None, max_length=128)
    automatic: Optional[bool] = None


class SnapshotOut(BaseModel):
    id: str
    model: Optional[str]
    automatic: bool
    state: dict[str, Any]
    reason: str
    actor: str
    created_at: str


class SnapshotEnvelope(BaseModel):
    snapshot: SnapshotOut


class SnapshotSummaryOut(BaseModel):
    id: str
    model: Optional[str]
    automatic: bool
    summary: dict[str, Any] = Field(description="`model_count`, and `models`: the first "
                                                "four models' traffic weights")
    reason: str
    actor: str
    created_at: str


class SnapshotList(BaseModel):
    snapshots: list[SnapshotSummaryOut]
    next_page_token: Optional[str]


class RestoreBody(Body):
    reason: str = Field("", max_length=10_000)


class RestoreOut(BaseModel):
    snapshot_id: str
    restored: list[str]
    untouched: list[str]
    rollbacks: list[RollbackOut]


class RestoreEnvelope(BaseModel):
    restore: RestoreOut


# --- issue 17: bundles ----------------------------------------------------------------------
class ImportQuery(BaseModel):
    dry_run: bool = False


class ImportReportOut(BaseModel):
    dry_run: bool
    rows: dict[str, int] = Field(description="rows added (or that would be) per table")
    artifacts_added: int
    models: list[str]


class ImportReport(BaseModel):
    import_: ImportReportOut = Field(alias="import")
