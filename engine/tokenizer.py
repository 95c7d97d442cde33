"""The model's tokenizer (HF fast tokenizer; from GGUF metadata for GGUF models) and chat
template application."""

from onenode.errors import ModelLoadError


def load_tokenizer(source, override: str | None = None):
    """`override` is a tokenizer directory (vLLM's --tokenizer); default: the model's own."""
    from transformers import AutoTokenizer

    kwargs = {"gguf_file": source.gguf_file} if source.gguf_file and not override else {}
    try:
        return AutoTokenizer.from_pretrained(override or str(source.path), **kwargs)
    except Exception as exc:  # noqa: BLE001 - one line for the user
        raise ModelLoadError(f"cannot load the tokenizer from {source.path}: "
                             f"{str(exc).splitlines()[0][:200]}; the model directory needs "
                             f"tokenizer.json (or the tokenizer files save_pretrained writes)") \
            from None


def apply_chat_template(tokenizer, messages: list[dict], tools: list[dict] | None = None
                        ) -> list[int]:
    if not getattr(tokenizer, "chat_template", None):
        raise ModelLoadError("this model has no chat template; use generate()/completions with "
                             "a plain prompt instead of chat")
    kw = {"tools": tools} if tools else {}
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, **kw)
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):
        ids = ids["input_ids"]
    return list(ids)
