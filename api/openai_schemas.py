"""OpenAI chat-completions bodies (pydantic): validation of requests, and their documentation.

Only what the gateway honours is accepted; every other OpenAI field is refused by name
(``extra="forbid"``), never silently ignored.
"""
from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: Union[str, list[TextPart]]
    name: Optional[str] = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatCompletionBody(_Strict):
    model: str = Field(min_length=1, max_length=600,
                       description="`name` (routed by the traffic table) or `name@ref` "
                                   "(a version, `latest`, an alias or a range, e.g. `name@^1.2`)")
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: Optional[float] = Field(None, ge=0, le=2)
    top_p: Optional[float] = Field(None, ge=0, le=1)
    max_tokens: Optional[int] = Field(None, ge=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    stop: Union[str, list[str], None] = None
    seed: Optional[int] = None
    user: Optional[str] = Field(None, max_length=512,
                                description="sticky routing key: one user stays on one version")
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    n: Optional[int] = Field(None, description="only 1 is supported")
    tools: Optional[list[Any]] = Field(None, description="refused: no provider has tools")
    tool_choice: Optional[Any] = Field(None, description="only `none` is accepted")

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: Optional[int]) -> Optional[int]:
        if value is not None and value != 1:
            raise ValueError("only n=1 is supported: one choice per request")
        return value

    @field_validator("tools")
    @classmethod
    def _no_tools(cls, value: Optional[list[Any]]) -> Optional[list[Any]]:
        if value:
            raise ValueError("tools are not supported: the providers behind this gateway "
                             "have no tool calling")
        return value

    @field_validator("tool_choice")
    @classmethod
    def _no_tool_choice(cls, value: Any) -> Any:
        if value not in (None, "none"):
            raise ValueError("tool_choice must be 'none': tools are not supported")
        return value


class ChoiceMessage(BaseModel):
    role: Literal["assistant"]
    content: Optional[str]


class Choice(BaseModel):
    index: int
    message: ChoiceMessage
    finish_reason: Literal["stop", "length", "content_filter"]
    logprobs: None = None


class CompletionTokensDetails(BaseModel):
    reasoning_tokens: int


class ChatUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int = Field(description="includes the reasoning (thinking) tokens")
    total_tokens: int
    completion_tokens_details: CompletionTokensDetails
    cost_micro_usd: Optional[int] = Field(None, description="the answer's cost in micro-USD "
                                          "(exact); null when the version has no price")
    cost_usd: Optional[float] = Field(None, description="the same in USD, for display")


class ChatCompletion(BaseModel):
    """With `stream: true`, Server-Sent Events of `chat.completion.chunk` objects instead,
    ending with `data: [DONE]`."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str = Field(description="`name@version` of the version that answered")
    choices: list[Choice]
    usage: Optional[ChatUsage]


class OpenAIModel(BaseModel):
    id: str = Field(description="`name`, or `name@alias`")
    object: Literal["model"]
    created: int
    owned_by: str


class OpenAIModelList(BaseModel):
    object: Literal["list"]
    data: list[OpenAIModel]


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: Optional[str]
    code: Optional[str]


class OpenAIError(BaseModel):
    error: OpenAIErrorDetail
