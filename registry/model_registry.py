"""The registry: models, their SemVer versions, aliases; the seed's ``ModelRegistry``.

Validation and version resolution live here; every read and write goes through
``MetadataStore`` (one transaction each).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from errors import InvalidArgument, NotFound
from registry.metadata_store import MetadataStore, VersionKey
from registry.records import VersionRecord
from registry.version_manager import looks_like_range, parse_range, parse_version, precedence_key
from defaults import parts_for
from shared.pagination import check_limit, decode_token, encode_token
from shared.text import check_text
from storage.database import Database

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
STATUSES = ("stable", "beta", "experimental", "deprecated", "archived")
DEFAULT_STATUS = "experimental"
DEFAULT_PROVIDER = "gemini"
_NAME_RE = re.compile(NAME_PATTERN)

ConfigValidator = Callable[[str, dict[str, Any]], dict[str, Any]]


def check_name(name: Any, what: str = "model name") -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise InvalidArgument(
            f"invalid {what} {name!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit")
    return name


def check_status(status: Any) -> str:
    if status not in STATUSES:
        raise InvalidArgument(f"invalid status {status!r}: expected one of {', '.join(STATUSES)}")
    return status


def check_tags(tags: Any) -> dict[str, str]:
    if tags is None:
        return {}
    if not isinstance(tags, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and 0 < len(k) <= 128 and len(v) <= 512
            and "\x00" not in k + v for k, v in tags.items()):
        raise InvalidArgument("tags must be an object of strings (keys 1-128 characters, "
                              "values up to 512, no NUL characters)")
    return tags


def check_object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what} must be a JSON object")
    return value



def parse_tag_filter(tag: str | None) -> tuple[str, str] | None:
    if not tag:
        return None
    key, sep, value = tag.partition(":")
    if not sep or not key:
        raise InvalidArgument("tag filter must look like key:value")
    return key, value


class ModelRegistry:
    """Models and versions. ``ModelRegistry()`` uses the default database.

    ``validate_config(provider, config)`` is supplied by the layer that knows the providers
    (the model loader), so that a version whose config its provider could never load is refused
    at registration.
    """

    def __init__(self, database: Database | None = None,
                 validate_config: ConfigValidator | None = None) -> None:
        self.db = database or parts_for(None).database
        self.store = MetadataStore(self.db)
        self.validate_config = validate_config

    # -- models ---------------------------------------------------------------------------
    def register_model(self, name: str, description: str = "", tags: dict[str, str] | None = None,
                       metadata: dict[str, Any] | None = None, *,
                       actor: str = "system") -> dict[str, Any]:
        return self.store.create_model(check_name(name), check_text(description), check_tags(tags),
                                       check_object(metadata, "metadata"), actor).as_dict()

    def get_model(self, name: str) -> dict[str, Any]:
        return self.store.get_model(name).as_dict()

    def list_models(self, q: str | None = None, tag: str | None = None, limit: int = 50,
                    page_token: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of models by name; returns (models, next_page_token or None)."""
        limit = check_limit(limit, 50)
        after = decode_token(page_token)
        if after is not None and not isinstance(after, str):
            raise InvalidArgument("page_token is not a token this server issued")
        rows = self.store.list_models(q, parse_tag_filter(tag), after, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return [r.as_dict() for r in rows], encode_token(rows[-1].name) if more else None

    def update_model(self, name: str, *, description: str | None = None,
                     tags: dict[str, str] | None = None, metadata: dict[str, Any] | None = None,
                     actor: str = "system") -> dict[str, Any]:
        changes = _editable(description=description, tags=tags, metadata=metadata)
        return self.store.update_model(name, changes, actor).as_dict()

    def delete_model(self, name: str, *, actor: str = "system") -> None:
        self.store.delete_model(name, actor)

    # -- versions -------------------------------------------------------------------------
    def register_version(self, name: str, version: str, status: str = DEFAULT_STATUS,
                         description: str = "", tags: dict[str, str] | None = None,
                         metadata: dict[str, Any] | None = None, provider: str = DEFAULT_PROVIDER,
                         config: dict[str, Any] | None = None, *,
                         actor: str = "system") -> dict[str, Any]:
        parsed = parse_version(version)
        config = check_object(config, "config")
        if not isinstance(provider, str) or not provider:
            raise InvalidArgument("provider must be a non-empty string such as 'gemini' or 'onnx'")
        if self.validate_config is not None:
            config = self.validate_config(provider, config)
        values = {
            "version": str(parsed), "precedence": precedence_key(parsed),
            "major": parsed.major, "minor": parsed.minor, "patch": parsed.patch,
            "prerelease": parsed.prerelease, "build": parsed.build,
            "status": check_status(status), "provider": provider, "config": config,
            "description": check_text(description), "tags": check_tags(tags),
            "metadata": check_object(metadata, "metadata"),
        }
        return self.store.create_version(name, values, actor).as_dict()

    def resolve(self, name: str, ref: str) -> VersionKey:
        """Turn an exact version, ``latest``, an alias or a range into the version it names.

        ``latest`` is the highest release that is not archived (a pre-release only when there
        is no release); a range picks its highest match that is not archived.
        """
        if not isinstance(ref, str) or not ref:
            raise InvalidArgument("version must be a non-empty string")
        if ref == "latest":
            return self._highest(name, None, ref)
        try:
            parsed = parse_version(ref)
        except InvalidArgument:
            parsed = None
        if parsed is not None:
            return VersionKey(precedence_key(parsed), str(parsed))
        if _NAME_RE.fullmatch(ref):
            key = self.store.resolve_alias(name, ref)
            if key is not None:
                return key
        if looks_like_range(ref):
            return self._highest(name, ref, ref)
        self.store.get_model(name)  # an unknown model is the better answer, when it is one
        raise NotFound(f"'{ref}' is neither a version, an alias nor a range of model '{name}'")

    def _highest(self, name: str, range_text: str | None, label: str) -> VersionKey:
        fallback = None
        for row in self.iter_versions(name, range_text=range_text):
            if row["status"] == "archived":
                continue
            key = VersionKey(precedence_key(row["version"]), row["version"])
            if range_text is not None or row["prerelease"] is None:
                return key
            fallback = fallback or key
        if fallback is not None:
            return fallback
        raise NotFound(f"no version of model '{name}' matches '{label}'")

    def highest_stable(self, names: list[str]) -> dict[str, str]:
        """{model: its highest stable version} — what serves a model never deployed."""
        return self.store.highest_with_status(list(names), "stable")

    def get_version(self, name: str, ref: str) -> dict[str, Any]:
        return self.store.get_version(name, self.resolve(name, ref)).as_dict()

    def list_versions(self, name: str, status: str | None = None,
                      range: str | None = None) -> list[dict[str, Any]]:
        """Every version of model ``name`` (filtered by ``status`` and a SemVer ``range``),
        newest first by SemVer precedence — the seed's ``list_versions``. For a model with
        many versions, page through them with :meth:`list_versions_page`."""
        return list(self.iter_versions(name, status, range))

    def list_versions_page(self, name: str, status: str | None = None,
                           range: str | None = None, limit: int = 100,
                           page_token: str | None = None
                           ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of versions, newest first by SemVer precedence; returns (versions,
        next_page_token or None)."""
        limit = check_limit(limit, 100)
        if status is not None:
            check_status(status)
        matcher = parse_range(range) if range else None
        token = decode_token(page_token)
        try:
            before = bytes.fromhex(token) if token is not None else None
        except (TypeError, ValueError):
            raise InvalidArgument("page_token is not a token this server issued") from None
        # A range is filtered here, not in SQL: fetch bigger batches until the page is full.
        fetch = limit + 1 if matcher is None else max(limit + 1, 200)
        page: list[VersionRecord] = []
        while len(page) <= limit:
            batch = self.store.list_versions(name, status, before, fetch)
            page.extend(v for v in batch if matcher is None or matcher.match(v.version))
            if len(batch) < fetch:
                break
            before = batch[-1].precedence
        more = len(page) > limit
        page = page[:limit]
        next_token = encode_token(page[-1].precedence.hex()) if more else None
        return [v.as_dict() for v in page], next_token

    def iter_versions(self, name: str, status: str | None = None,
                      range_text: str | None = None):
        """Every version, newest first, page by page."""
        token = None
        while True:
            page, token = self.list_versions_page(name, status, range_text, 500, token)
            yield from page
            if token is None:
                return

    def update_version(self, name: str, ref: str, *, status: str | None = None,
                       description: str | None = None, tags: dict[str, str] | None = None,
                       metadata: dict[str, Any] | None = None,
                       actor: str = "system") -> dict[str, Any]:
        """Change what is editable: status, description, tags, metadata (never the content)."""
        changes = _editable(status=status, description=description, tags=tags,
                            metadata=metadata)
        return self.store.update_version(name, self.resolve(name, ref), changes, actor).as_dict()

    def attach_artifact(self, name: str, ref: str, digest: str, size: int, *,
                        actor: str = "system") -> dict[str, Any]:
        return self.store.set_artifact(name, self.resolve(name, ref), digest, size,
                                       actor).as_dict()

    # -- aliases --------------------------------------------------------------------------
    def set_alias(self, name: str, alias: str, version: str, *,
                  actor: str = "system") -> dict[str, Any]:
        check_name(alias, "alias")
        if alias == "latest" or looks_like_range(alias) or _is_version(alias):
            raise InvalidArgument(f"alias {alias!r} would be read as a version or a range; "
                                  "pick a word such as 'production'")
        return self.store.set_alias(name, alias, self.resolve(name, version), actor).as_dict()

    def delete_alias(self, name: str, alias: str, *, actor: str = "system") -> None:
        self.store.delete_alias(name, alias, actor)


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "status": check_status, "description": check_text, "tags": check_tags,
    "metadata": lambda value: check_object(value, "metadata"),
}


def _editable(**fields: Any) -> dict[str, Any]:
    """The fields given (not None), each checked."""
    return {name: _CHECKS[name](value) for name, value in fields.items() if value is not None}


def _is_version(text: str) -> bool:
    try:
        parse_version(text)
    except InvalidArgument:
        return False
    return True
