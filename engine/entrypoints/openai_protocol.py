"""Pydantic models of the OpenAI API subset onenode serves (plus vLLM's extra sampling fields).

Ranges are declared on the fields so a bad value becomes a 400 that names the field before the
request reaches the engine. Unknown fields are ignored, like vLLM does, except the known ones that
would change the answer (openai_unsupported.py). Output constraints: openai_structured.py.
"""

import time
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from engine.entrypoints.errors import ApiError, from_exception
from engine.entrypoints.openai_structured import GuidedFields, NamedToolChoice, Tool, ToolCall
from engine.entrypoints.openai_unsupported import refuse_unsupported
from engine.sampling_params import SamplingParams
from engine.structured_outputs import StructuredOutputsParams
from onenode.errors import ConfigError


def random_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


class StreamOptions(BaseModel):
    include_usage: bool = False


class _SamplingFields(GuidedFields):
    model_config = ConfigDict(extra="allow")  # kept only to refuse the known unsupported ones

    model: str | None = None
    n: int = Field(1, ge=1, le=128)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = -1
    min_p: float = Field(0.0, ge=0.0, le=1.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    logit_bias: dict[int, float] | None = None  # JSON keys are token ids as strings
    # vLLM extensions, sent by the openai client through `extra_body`.
    ignore_eos: bool = False
    repetition_penalty: float = Field(1.0, gt=0.0)
    stop_token_ids: list[int] | None = None
    skip_special_tokens: bool = True
    min_tokens: int = Field(0, ge=0)
    bad_words: list[str] | None = None
    allowed_token_ids: list[int] | None = Field(None, min_length=1)
    include_stop_str_in_output: bool = False

    @field_validator("logit_bias")
    @classmethod
    def _logit_bias(cls, v):
        if v and any(not -100 <= b <= 100 for b in v.values()):
            raise ValueError("logit_bias values must be in [-100, 100]")
        return v

    @field_validator("top_k")
    @classmethod
    def _top_k(cls, v: int) -> int:
        if v != -1 and v < 1:
            raise ValueError("top_k must be -1 (off) or >= 1")
        return v

    @field_validator("stop")
    @classmethod
    def _stop(cls, v):
        stops = [v] if isinstance(v, str) else (v or [])
        if any(s == "" for s in stops):
            raise ValueError("stop strings must not be empty")
        return v

    def check_unsupported(self) -> None:
        refuse_unsupported({**(self.model_extra or {}), **dict(self)}, self.n)

    def sampling_params(self, max_tokens: int, logprobs: int | None,
                        structured: StructuredOutputsParams | None = None) -> SamplingParams:
        if self.min_tokens > max_tokens:
            raise ApiError(400, f"min_tokens={self.min_tokens} is larger than max_tokens="
                                f"{max_tokens}", param="min_tokens", code="invalid_value")
        try:
            return self._build_params(max_tokens, logprobs, structured)
        except ConfigError as exc:  # a 400 naming the field, not the catch-all 500 path
            raise from_exception(exc) from None

    def _build_params(self, max_tokens, logprobs, structured) -> SamplingParams:
        return SamplingParams(
            n=self.n, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
            min_p=self.min_p, max_tokens=max_tokens, stop=self.stop,
            stop_token_ids=self.stop_token_ids, ignore_eos=self.ignore_eos, seed=self.seed,
            repetition_penalty=self.repetition_penalty, logprobs=logprobs,
            skip_special_tokens=self.skip_special_tokens,
            presence_penalty=self.presence_penalty, frequency_penalty=self.frequency_penalty,
            min_tokens=self.min_tokens, logit_bias=self.logit_bias, bad_words=self.bad_words,
            allowed_token_ids=self.allowed_token_ids,
            include_stop_str_in_output=self.include_stop_str_in_output,
            structured_outputs=structured)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class CompletionRequest(_SamplingFields):
    prompt: str | list[str] | list[int] | list[list[int]]
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool = False

    def prompts(self) -> list[str | list[int]]:
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if not p:
            raise ApiError(400, "prompt is empty; give a string or a list of token ids",
                           param="prompt", code="invalid_value")
        if isinstance(p[0], int):
            return [list(p)]
        return list(p)


class ChatMessage(BaseModel):
    role: str
    content: str | list[dict] | None = None
    # Tool round trips: passed to the chat template, which renders them if it knows how.
    name: str | None = None
    tool_calls: list[dict] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            kinds = {part.get("type") for part in self.content} - {"text"}
            if kinds:
                raise ApiError(400, f"message content of type {min(map(str, kinds))!r} "
                                    f"is not supported by onenode (text only)",
                               param="messages", code="invalid_value")
            return "".join(part.get("text", "") for part in self.content)
        return self.content or ""

    def as_dict(self) -> dict:
        extra = {k: getattr(self, k) for k in ("name", "tool_calls", "tool_call_id")
                 if getattr(self, k) is not None}
        return {"role": self.role, "content": self.text(), **extra}


class ChatCompletionRequest(_SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None

    def conversation(self) -> list[dict]:
        return [m.as_dict() for m in self.messages]

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def num_logprobs(self) -> int | None:
        if not self.logprobs:
            if self.top_logprobs:
                raise ApiError(400, "top_logprobs needs logprobs=true", param="top_logprobs",
                               code="invalid_value")
            return None
        return self.top_logprobs or 0


class UsageInfo(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class CompletionLogprobs(BaseModel):
    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float | None] = Field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = Field(default_factory=list)
    text_offset: list[int] = Field(default_factory=list)


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionChoice]
    usage: UsageInfo | None = None


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChatLogprobs(BaseModel):
    content: list[TokenLogprob] | None = None


class AssistantMessage(BaseModel):
    role: str = "assistant"
    content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatChoice]
    usage: UsageInfo


class DeltaMessage(BaseModel):
    role: str | None = None
    content: str | None = None


class ChatStreamChoice(BaseModel):
    index: int
    delta: DeltaMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatStreamChoice]
    usage: UsageInfo | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "onenode"
    root: str | None = None
    max_model_len: int | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class TokenizeRequest(BaseModel):
    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    add_special_tokens: bool = True


class TokenizeResponse(BaseModel):
    count: int
    max_model_len: int
    tokens: list[int]


class DetokenizeRequest(BaseModel):
    model: str | None = None
    tokens: list[int]


class DetokenizeResponse(BaseModel):
    prompt: str
