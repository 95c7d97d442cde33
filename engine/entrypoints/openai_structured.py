"""OpenAI/vLLM request fields that constrain the output, turned into one StructuredOutputsParams.

Sources: OpenAI's `response_format` (json_object, json_schema), vLLM's `guided_json`,
`guided_regex`, `guided_choice`, `guided_grammar` and `structured_outputs`, and forced tool calls
(`tools` with `tool_choice="required"` or a named function), which become a JSON schema whose
output is returned as `tool_calls`, as vLLM does. `tool_choice="auto"` would need a model-specific
parser of free text; it is refused rather than answered with plain text.
"""

import asyncio
import json
import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field

from engine.entrypoints.errors import ApiError, from_exception
from engine.structured_outputs import StructuredOutputsParams
from onenode.errors import ConfigError


class JsonSchemaFormat(BaseModel):
    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class FunctionDefinition(BaseModel):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(BaseModel):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class NamedFunction(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    type: Literal["function"] = "function"
    function: NamedFunction


class ToolCallFunction(BaseModel):
    name: str
    arguments: str


class ToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


class GuidedFields(BaseModel):
    """Mixed into both request models."""
    response_format: ResponseFormat | None = None
    guided_json: str | dict[str, Any] | None = None
    guided_regex: str | None = None
    guided_choice: list[str] | None = None
    guided_grammar: str | None = None
    guided_decoding_backend: str | None = None
    structured_outputs: dict[str, Any] | None = None

    def structured_params(self, tool_schema: dict | None = None):
        """The request's one constraint (None when unconstrained); two at once is a 400."""
        found = {}
        fmt = self.response_format
        if fmt is not None and fmt.type == "json_object":
            found["response_format"] = {"json_object": True}
        elif fmt is not None and fmt.type == "json_schema":
            if fmt.json_schema is None or fmt.json_schema.schema_ is None:
                raise ApiError(400, "response_format json_schema needs json_schema.schema",
                               param="response_format", code="invalid_value")
            found["response_format"] = {"json": fmt.json_schema.schema_}
        for field, key in (("guided_json", "json"), ("guided_regex", "regex"),
                           ("guided_choice", "choice"), ("guided_grammar", "grammar")):
            if getattr(self, field) is not None:
                found[field] = {key: getattr(self, field)}
        if self.structured_outputs is not None:
            found["structured_outputs"] = dict(self.structured_outputs)
        if tool_schema is not None:
            found["tool_choice"] = {"json": tool_schema}
        if not found:
            return None
        if len(found) > 1:
            raise ApiError(400, f"give one output constraint, not {' and '.join(found)}",
                           param=list(found)[1], code="invalid_value")
        (field, kw), = found.items()
        kw.setdefault("backend", self.guided_decoding_backend)
        try:
            return StructuredOutputsParams(**kw)
        except (ConfigError, TypeError) as exc:
            message = str(exc) if str(exc).startswith(field) else f"{field}: {exc}"
            raise ApiError(400, message, param=field, code="invalid_value") from None


def forced_tool_schema(tools: list[Tool] | None, tool_choice,
                       parallel: bool | None = None) -> tuple[dict | None, str | None]:
    """(JSON schema the output must follow, the forced function's name or None for "required").
    Returns (None, None) when no tool call is forced."""
    if tools is not None and not tools:
        raise ApiError(400, "tools is empty; give at least one function or leave tools out",
                       param="tools", code="invalid_value")
    if tool_choice is None:
        tool_choice = "auto" if tools else "none"
    if tool_choice == "none":
        return None, None
    if not tools:
        raise ApiError(400, f"tool_choice={_show(tool_choice)} needs tools", param="tool_choice",
                       code="invalid_value")
    if tool_choice == "auto":
        raise ApiError(400, "tool_choice='auto' is not supported by onenode (it needs a "
                            "model-specific tool-call parser); use tool_choice='required' or "
                            "name a function", param="tool_choice", code="invalid_value")
    if tool_choice == "required":
        most = {"maxItems": 1} if parallel is False else {}
        return {"type": "array", "minItems": 1, **most, "items": {"anyOf": [
            {"type": "object", "properties": {
                "name": {"type": "string", "enum": [t.function.name]},
                "parameters": t.function.parameters or {"type": "object"}},
             "required": ["name", "parameters"]} for t in tools]}}, None
    name = tool_choice.function.name
    for t in tools:
        if t.function.name == name:
            return t.function.parameters or {"type": "object"}, name
    raise ApiError(400, f"tool_choice names function {name!r}, which is not in tools",
                   param="tool_choice", code="invalid_value")


def tool_calls_of(text: str, forced_name: str | None) -> list[dict] | None:
    """OpenAI tool_calls for a constrained output; None when it is not complete JSON (e.g. the
    output hit max_tokens), so the text is returned as content instead."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    calls = [(forced_name, value)] if forced_name is not None else \
        [(c["name"], c["parameters"]) for c in value]
    return [{"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
             "function": {"name": name, "arguments": json.dumps(args)}} for name, args in calls]


def _show(choice) -> str:
    return repr(choice) if isinstance(choice, str) else repr(choice.function.name)


async def compile_grammar(client, params) -> None:
    """Compile the request's grammar off the event loop and the engine thread (the engine's
    compile then hits xgrammar's cache); a bad one is a 400 before any streaming starts."""
    if params.structured_outputs is None:
        return
    try:
        await asyncio.to_thread(client.compile_grammar, params.structured_outputs)
    except ConfigError as exc:
        raise from_exception(exc) from None
