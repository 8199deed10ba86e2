"""The provider interface: what every model backend (Gemini, ONNX, plug-ins) implements.

A provider instance is bound to one registered version: it is built from that version's
immutable ``config`` and (for providers that need one) its verified artifact file, loaded once,
then called many times from many threads.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from config import Settings
from errors import InvalidArgument


@dataclass(frozen=True)
class Usage:
    """Tokens of one call. ``output_tokens`` includes ``reasoning_tokens`` (thinking is billed
    as output), so input + output == total."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0       # part of input_tokens served from the provider's cache
    reasoning_tokens: int = 0    # part of output_tokens spent on thinking

    def as_dict(self) -> dict[str, int]:
        out = {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
               "total_tokens": self.total_tokens}
        if self.cached_tokens:
            out["cached_tokens"] = self.cached_tokens
        if self.reasoning_tokens:
            out["reasoning_tokens"] = self.reasoning_tokens
        return out


@dataclass(frozen=True)
class Prediction:
    output: Any
    usage: Usage | None = None
    # Why generation stopped (text providers): "stop", "length", "content_filter" or "other".
    finish_reason: str | None = None


# -- text generation: what every chat-like protocol (OpenAI, Gemini) is translated into -----

ROLES = ("system", "user", "assistant")
# The generation settings a chat request may carry; providers check each against what the
# version allows, and refuse (naming it) what they cannot honour.
CHAT_PARAMS = ("temperature", "top_p", "top_k", "max_output_tokens", "stop_sequences", "seed")


@dataclass(frozen=True)
class Message:
    role: str       # one of ROLES
    text: str


@dataclass(frozen=True)
class ChatRequest:
    """A multi-turn conversation and generation settings, protocol-neutral."""

    messages: tuple[Message, ...]
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Delta:
    """One piece of a streamed answer: some text, and on the last piece the finish reason
    and the usage of the whole call."""

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None


# -- tensors: what tensor protocols (Open Inference Protocol v2) are translated into ----------

@dataclass(frozen=True)
class TensorSpec:
    """One declared input or output: numpy dtype name (``"float32"``, ``"str"`` for strings)
    and shape (``None`` dimensions are dynamic; ``shape`` None: unknown rank)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...] | None


@dataclass(frozen=True)
class ProviderLimits:
    """What one provider call may use (issue 21). Local providers enforce them themselves:
    ``timeout_s`` per call, ``max_output_bytes`` per answer, ``memory_bytes`` for the
    process-wide onnxruntime arena."""

    timeout_s: float = 10.0
    max_output_bytes: int = 8 * 1024 * 1024
    memory_bytes: int = 1024 * 1024 * 1024


@dataclass(frozen=True)
class VersionSpec:
    """Everything a provider may read to load one version."""

    model: str
    version: str
    provider: str
    config: dict[str, Any] = field(default_factory=dict)
    artifact_path: Path | None = None   # a local file, valid while ``load()`` runs
    artifact_digest: str | None = None
    limits: ProviderLimits = field(default_factory=ProviderLimits)
    # The settings the loader was wired with (the Gemini provider takes its endpoint and key
    # from them when they name one; None: the process's configuration only).
    settings: Settings | None = None


@dataclass(frozen=True)
class HealthResult:
    ok: bool
    latency: float
    message: str = ""


class ModelProvider(ABC):
    """Base class of providers. Subclasses set ``name`` and implement ``predict``."""

    name: ClassVar[str] = ""
    requires_artifact: ClassVar[bool] = False
    # True when ``chat`` / ``chat_stream`` are implemented (listed by GET /v1/models).
    generates_text: ClassVar[bool] = False

    def __init__(self, spec: VersionSpec) -> None:
        self.spec = spec

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """Check a version's config at registration time; return it normalised.

        Raise ``InvalidArgument`` for a config this provider could never load.
        """
        if not isinstance(config, dict):
            raise InvalidArgument("config must be a JSON object")
        return config

    def load(self) -> None:
        """Prepare for serving (open sessions, clients). Called once, before any predict."""

    @abstractmethod
    def predict(self, input: Any, params: dict[str, Any] | None = None) -> Prediction:
        """Run one prediction. Bad input → InvalidArgument; backend failures → the
        ProviderError / ProviderTimeout / Unavailable errors of ``errors``."""

    def chat(self, request: ChatRequest) -> Prediction:
        """Generate one answer (``output``: the text) to a conversation. Providers that do not
        generate text keep this default: a clear 400."""
        raise InvalidArgument(
            f"model '{self.spec.model}' version {self.spec.version} is served by the "
            f"'{self.name}' provider, which does not generate text: call "
            f"POST /api/models/{self.spec.model}/predict (or /v2/models/{self.spec.model}/infer)",
            details={"param": "model", "provider": self.name})

    def chat_stream(self, request: ChatRequest) -> Iterator[Delta]:
        """Stream the answer to a conversation. The default streams the whole answer as one
        piece; providers with a streaming API override it. Closing the iterator must close
        the provider call."""
        result = self.chat(request)
        yield Delta(str(result.output), result.finish_reason or "stop", result.usage)

    def tensor_signature(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        """(inputs, outputs) of a tensor model. Other providers keep this default: a 400."""
        raise InvalidArgument(
            f"model '{self.spec.model}' version {self.spec.version} is served by the "
            f"'{self.name}' provider, which has no tensor inputs: use "
            f"/v1/chat/completions or POST /api/models/{self.spec.model}/predict",
            details={"param": "model", "provider": self.name})

    def infer(self, tensors: dict[str, Any]) -> dict[str, Any]:
        """Run on named numpy arrays; return every output as a numpy array."""
        self.tensor_signature()
        raise NotImplementedError

    def sample_input(self) -> Any:
        """An input that a health probe can send (from config ``sample_input`` by default)."""
        return self.spec.config.get("sample_input")

    def health(self) -> HealthResult:
        """Probe the version with its sample input; never raises."""
        started = time.perf_counter()
        try:
            self.predict(self.sample_input())
        except Exception as exc:  # a probe reports, it does not propagate
            return HealthResult(False, time.perf_counter() - started, str(exc))
        return HealthResult(True, time.perf_counter() - started)

    def close(self) -> None:
        """Release what ``load`` acquired."""
