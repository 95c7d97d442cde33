"""StructuredOutputsParams: which grammar a request's output must follow (vLLM's names).

vLLM >= 0.11 spells it `SamplingParams(structured_outputs=StructuredOutputsParams(...))`; older
scripts use `guided_decoding=GuidedDecodingParams(...)` with the same fields, so both names are
this one class. Exactly one kind of constraint is allowed per request.
"""

import json
from dataclasses import dataclass

from onenode.errors import ConfigError

KINDS = ("json", "regex", "choice", "grammar", "json_object", "structural_tag")
# vLLM knobs that change nothing here: onenode always uses xgrammar and never falls back.
_IGNORABLE_BACKENDS = (None, "auto", "xgrammar", "guidance", "outlines", "lm-format-enforcer")


@dataclass(slots=True)
class StructuredOutputsParams:
    json: str | dict | None = None
    regex: str | None = None
    choice: list[str] | None = None
    grammar: str | None = None
    json_object: bool | None = None
    structural_tag: str | None = None
    backend: str | None = None
    disable_fallback: bool = False
    disable_any_whitespace: bool = False
    disable_additional_properties: bool = False
    whitespace_pattern: str | None = None

    def __post_init__(self):
        chosen = [k for k in KINDS if getattr(self, k) not in (None, False)]
        if len(chosen) != 1:
            raise ConfigError(
                f"structured output needs exactly one of json, regex, choice, grammar, "
                f"json_object; got {', '.join(chosen) or 'none'}")
        if self.structural_tag is not None:
            raise ConfigError("structured_outputs.structural_tag is not supported by onenode "
                              "yet; use json, regex, choice or grammar")
        if self.whitespace_pattern is not None:
            raise ConfigError("structured_outputs.whitespace_pattern is not supported by onenode; "
                              "leave it unset")
        if self.backend not in _IGNORABLE_BACKENDS:
            raise ConfigError(f"structured_outputs.backend={self.backend!r} is unknown; use "
                              f"'xgrammar' or leave it unset")
        if self.choice is not None and (
                not isinstance(self.choice, list | tuple) or not self.choice
                or not all(isinstance(c, str) for c in self.choice)):
            raise ConfigError("structured_outputs.choice must be a non-empty list of strings")
        if self.json is not None and not isinstance(self.json, str | dict):
            raise ConfigError("structured_outputs.json must be a JSON schema (dict or string)")
        if isinstance(self.json, str):
            try:
                json.loads(self.json)
            except ValueError as exc:
                raise ConfigError(f"structured_outputs.json is not valid JSON: {exc}") from None

    @classmethod
    def from_optional(cls, **kw) -> "StructuredOutputsParams | None":
        """vLLM's helper: None when no constraint is given."""
        if all(kw.get(k) in (None, False) for k in KINDS):
            return None
        return cls(**kw)

    @property
    def kind(self) -> str:
        return next(k for k in KINDS if getattr(self, k) not in (None, False))

    def key(self) -> tuple:
        """Identifies the compiled grammar, so identical requests share one compilation."""
        value = getattr(self, self.kind)
        if isinstance(value, dict):
            value = json.dumps(value, sort_keys=True)
        elif isinstance(value, list | tuple):
            value = tuple(value)
        return (self.kind, value, self.disable_any_whitespace,
                self.disable_additional_properties)


GuidedDecodingParams = StructuredOutputsParams  # vLLM < 0.11 name
