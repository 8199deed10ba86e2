"""Request and response bodies of the REST API (pydantic v2): validation and OpenAPI in one."""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from registry.model_registry import NAME_PATTERN
from registry.pagination import MAX_PAGE_SIZE

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
