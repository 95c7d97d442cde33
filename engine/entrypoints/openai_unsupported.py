"""Request fields that OpenAI or vLLM define, that onenode does not implement, and that would
change the answer: refused with a 400 naming the field instead of silently ignored.

Fields that do not change the answer (`user`, `metadata`, `store`, `service_tier`, ...) stay
ignored, as vLLM ignores unknown fields. A field is accepted when it holds its neutral value.
"""

from engine.entrypoints.errors import ApiError

# field -> neutral values (None always counts as neutral)
_NEUTRAL: dict[str, tuple] = {
    "suffix": ("",),
    "use_beam_search": (False,),
    "length_penalty": (1.0,),
    "prompt_logprobs": (),
    "truncate_prompt_tokens": (),
    "functions": ([],),
    "function_call": ("none",),
    "audio": (),
    "modalities": (["text"],),
    "logits_processors": ([],),
    "guided_whitespace_pattern": (),
    "chat_template": (),
    "chat_template_kwargs": ({},),
    "continue_final_message": (False,),
    "add_generation_prompt": (True,),
    "documents": ([],),
    "mm_processor_kwargs": ({},),
    "spaces_between_special_tokens": (True,),
    "web_search_options": (),
    "echo": (False,),
}


def refuse_unsupported(fields: dict, n: int) -> None:
    """`fields`: the request's values by name (declared and extra)."""
    for name, neutral in _NEUTRAL.items():
        value = fields.get(name)
        if value is not None and value not in neutral:
            raise ApiError(400, f"{name} is not supported by onenode; leave it out",
                           param=name, code="invalid_value")
    best_of = fields.get("best_of")
    if best_of is not None and best_of != n:
        raise ApiError(400, f"best_of={best_of} is not supported by onenode (only best_of = n); "
                            f"leave it out", param="best_of", code="invalid_value")
