"""Model references as the client protocols spell them: ``name`` or ``name@ref``.

``name`` is routed by the traffic table; ``name@ref`` pins ``ref`` (an exact version,
``latest``, an alias or a range), resolved by the registry exactly as predict's ``"version"``.
"""
from __future__ import annotations

from dataclasses import dataclass

from errors import InvalidArgument


@dataclass(frozen=True)
class ModelRef:
    name: str
    ref: str | None = None   # None: routed by the traffic table

    def __str__(self) -> str:
        return self.name if self.ref is None else f"{self.name}@{self.ref}"


def parse_model_ref(text: object, param: str = "model") -> ModelRef:
    """``"summarizer"`` → routed; ``"summarizer@^1.2"`` → pinned to the highest 1.x ≥ 1.2.
    ``param`` names the request field in the error, for protocols that report it."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgument(f"{param} must be a model name, or name@version|alias|range",
                              details={"param": param})
    name, at, ref = text.strip().partition("@")
    if not name or (at and not ref):
        raise InvalidArgument(f"{param} '{text}' is not 'name' or 'name@ref' (ref: a version, "
                              f"'latest', an alias or a range such as ^1.2)",
                              details={"param": param})
    return ModelRef(name, ref if at else None)
