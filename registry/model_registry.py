"""The registry: models, their SemVer versions, aliases; the seed's ``ModelRegistry``.

Validation and version resolution live here; every read and write goes through
``MetadataStore`` (one transaction each).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from errors import InvalidArgument, NotFound
from registry.metadata_store import EVERYTHING, MetadataStore, Seek, VersionKey
from registry.records import VersionRecord
from registry.version_manager import (KeyInterval, looks_like_range, parse_range, parse_version,
                                      precedence_key)
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
_RELEASES = [Seek(KeyInterval(), True)]


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
        return self.store.cache.get(name, "model", lambda: self.store.get_model(name)).as_dict()

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

    def rename_model(self, name: str, new_name: str, *, actor: str = "system") -> dict[str, Any]:
        return self.store.rename_model(name, check_name(new_name), actor).as_dict()

    def set_model_tag(self, name: str, key: str, value: str, *, actor: str = "system") -> None:
        check_tags({key: value})
        self.store.set_model_tag(name, key, value, actor)

    def delete_model_tag(self, name: str, key: str, *, actor: str = "system") -> None:
        self.store.set_model_tag(name, key, None, actor)

    def set_version_tag(self, name: str, ref: str, key: str, value: str, *,
                        actor: str = "system") -> None:
        check_tags({key: value})
        self.store.set_version_tag(name, self.resolve(name, ref), key, value, actor)

    def delete_version_tag(self, name: str, ref: str, key: str, *, actor: str = "system") -> None:
        self.store.set_version_tag(name, self.resolve(name, ref), key, None, actor)

    # -- versions -------------------------------------------------------------------------
    def register_version(self, name: str, version: str, status: str = DEFAULT_STATUS,
                         description: str = "", tags: dict[str, str] | None = None,
                         metadata: dict[str, Any] | None = None, provider: str = DEFAULT_PROVIDER,
                         config: dict[str, Any] | None = None, *, source: str | None = None,
                         run_id: str | None = None, number: int | None = None,
                         actor: str = "system") -> dict[str, Any]:
        """Register a version. ``number`` (MLflow's integer version) is normally the next of
        the model's sequence; an importer copying MLflow versions passes it explicitly."""
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
            "source": check_text(source, "source") or None,
            "run_id": check_text(run_id, "run_id")[:64] or None,
        }
        if number is not None:
            if not isinstance(number, int) or isinstance(number, bool) or number < 1:
                raise InvalidArgument(f"number must be a positive integer, got {number!r}")
            values["number"] = number
        return self.store.create_version(name, values, actor).as_dict()

    def next_patch(self, name: str) -> str:
        """The version a registration without a SemVer gets: ``1.0.0`` for a model's first,
        else the next patch of its highest version (``1.2.3`` → ``1.2.4``; a pre-release
        ``1.3.0-rc.1`` → its release ``1.3.0``)."""
        page, _ = self.list_versions_page(name, limit=1)
        if not page:
            return "1.0.0"
        highest = parse_version(page[0]["version"]).replace(build=None)
        return str(highest.finalize_version() if highest.prerelease else highest.bump_patch())

    def resolve_number(self, name: str, number: int) -> VersionKey:
        if not 0 < number < 2**31:  # beyond the column's range: no such version, not a 500
            self.store.get_model(name)
            raise NotFound(f"version {number} of model '{name}' does not exist")
        return self.store.cache.get(name, ("number", number),
                                    lambda: self.store.key_for_number(name, number))

    def newest_number(self, name: str) -> VersionKey | None:
        """The version registered last (the highest number): MLflow's "latest". Answered
        from the read cache, as every read the MLflow client repeats is."""
        return self.store.cache.get(name, ("newest-number",),
                                    lambda: self.store.highest_number(name))

    def delete_version(self, name: str, ref: str, *, actor: str = "system") -> None:
        self.store.delete_version(name, self.resolve(name, ref), actor)

    def version_by_key(self, name: str, key: VersionKey) -> dict[str, Any]:
        return self.store.cache.get(name, ("key", key.precedence),
                                    lambda: self.store.get_version(name, key)).as_dict()

    def resolve(self, name: str, ref: str) -> VersionKey:
        """Turn an exact version, ``latest``, an alias or a range into the version it names.

        ``latest`` is the highest release that is not archived (a pre-release only when there
        is no release); a range picks its highest match that is not archived. An exact version
        is not looked up (the caller's store method says whether it exists).
        """
        parsed = _exact(ref)
        if parsed is not None:
            return VersionKey(precedence_key(parsed), str(parsed))
        found = self._version(name, ref)
        return VersionKey(found.precedence, found.version)

    def get_version(self, name: str, ref: str) -> dict[str, Any]:
        """One version by exact version, ``latest``, alias or range; answered from this
        process's read cache when the model has not changed (see registry/read_cache.py)."""
        return self._version(name, ref).as_dict()

    def _version(self, name: str, ref: str) -> VersionRecord:
        if not isinstance(ref, str) or not ref:
            raise InvalidArgument("version must be a non-empty string")
        return self.store.cache.get(name, ("version", ref), lambda: self._find(name, ref))

    def _find(self, name: str, ref: str) -> VersionRecord:
        """``get_version`` without the cache: one index seek (two for ``latest`` on a model
        that only has pre-releases), never a scan of the model's versions."""
        if ref == "latest":
            rows = (self.store.versions(name, _RELEASES, live=True)
                    or self.store.versions(name, EVERYTHING, live=True))
            return _first(rows, name, ref)
        parsed = _exact(ref)
        if parsed is not None:
            key = precedence_key(parsed)
            rows = self.store.versions(name, [Seek(KeyInterval(key, True, key, True), False)])
            if not rows:
                raise NotFound(f"version '{parsed}' of model '{name}' does not exist")
            return rows[0]
        if _NAME_RE.fullmatch(ref):
            found = self.store.aliased_version(name, ref)
            if found is not None:
                return found
        if looks_like_range(ref):
            return _first(self.store.versions(name, _seeks(ref), live=True), name, ref)
        self.store.get_model(name)  # an unknown model is the better answer, when it is one
        raise NotFound(f"'{ref}' is neither a version, an alias nor a range of model '{name}'")

    def highest_stable(self, names: list[str]) -> dict[str, str]:
        """{model: its highest stable version} — what serves a model never deployed."""
        return self.store.highest_with_status(list(names), "stable")

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
        next_page_token or None). A range is resolved in SQL (index seeks over
        precedence-key intervals), so a page costs the same whatever the number of versions."""
        limit = check_limit(limit, 100)
        if status is not None:
            check_status(status)
        token = decode_token(page_token)
        try:
            before = bytes.fromhex(token) if token is not None else None
        except (TypeError, ValueError):
            raise InvalidArgument("page_token is not a token this server issued") from None

        def page() -> tuple[tuple[VersionRecord, ...], str | None]:
            seeks = _seeks(range) if range else EVERYTHING
            rows = self.store.versions(name, seeks, status=status, before=before,
                                       limit=limit + 1)
            more = len(rows) > limit
            rows = rows[:limit]
            return tuple(rows), encode_token(rows[-1].precedence.hex()) if more else None

        rows, next_token = self.store.cache.get(name, ("list", status, range, limit, before), page)
        return [v.as_dict() for v in rows], next_token

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

    def aliases(self, name: str) -> list[dict[str, Any]]:
        """Every alias of a model: [{alias, version, number}]."""
        aliases = self.store.cache.get(name, ("aliases",),
                                       lambda: tuple(self.store.model_aliases(name)))
        return [a.as_dict() for a in aliases]

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
    return _exact(text) is not None


def _exact(ref: Any) -> Any:
    """The parsed version when ``ref`` is an exact version, else None."""
    if not isinstance(ref, str) or not ref:
        raise InvalidArgument("version must be a non-empty string")
    try:
        return parse_version(ref)
    except InvalidArgument:
        return None


def _seeks(range_text: str) -> list[Seek]:
    """A range as index seeks: releases in its intervals, pre-releases in npm's."""
    intervals = parse_range(range_text).intervals()
    return ([Seek(i, True) for i in intervals.releases]
            + [Seek(i, False) for i in intervals.prereleases])


def _first(rows: list[VersionRecord], name: str, label: str) -> VersionRecord:
    if not rows:
        raise NotFound(f"no version of model '{name}' matches '{label}'")
    return rows[0]
