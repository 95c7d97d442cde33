"""vLLM engine-argument names -> EngineConfig, in one table.

`LLM(model, **kwargs)` and `onenode serve --flag` accept every EngineConfig field by its vLLM
name. The vLLM args onenode does not support yet are listed in UNSUPPORTED with the value that
means "off" (that value is accepted, so a script that spells out vLLM's default still runs) and
what to do instead; any other value is a one-line ValueError naming the arg. A name that is
neither is a TypeError naming the closest valid one.
"""

import dataclasses
import difflib

from engine.config import EngineConfig
from onenode.errors import ConfigError

# name -> (the accepted "off" value, why not / what to do instead)
UNSUPPORTED: dict[str, tuple[object, str]] = {
    "quantization": (None, ("onenode reads the checkpoint's own quantization_config (FP8 "
                            "block-quantized weights are dequantized at load) and quantizes "
                            "nothing itself; leave quantization unset")),
    "kv_cache_dtype": ("auto", "the KV cache uses the model dtype; leave kv_cache_dtype='auto'"),
    "load_format": ("auto", "onenode loads safetensors or GGUF; leave load_format='auto'"),
    "tokenizer_mode": ("auto", "onenode uses the HF fast tokenizer; leave tokenizer_mode='auto'"),
    "speculative_config": (None, "speculative decoding is not implemented yet"),
    "enable_lora": (False, ("LoRA adapters are not implemented yet; merge the adapter into the "
                            "weights")),
    "cpu_offload_gb": (0, "weights are not offloaded; use pipeline parallelism to spread them"),
    "hf_overrides": (None, "edit config.json instead"),
    "rope_scaling": (None, "set rope_scaling in the model's config.json"),
    "tokenizer_revision": (None, "pass a tokenizer directory with tokenizer=..."),
    "code_revision": (None, "onenode never runs code from a model repository"),
    "download_dir": (None, "onenode does not download; pass a local directory or set HF_HOME"),
    "limit_mm_per_prompt": (None, "multimodal inputs are not supported yet"),
    "task": ("auto", "onenode only generates text; leave task='auto' (or 'generate')"),
    "runner": ("auto", "onenode only generates text; leave runner='auto' (or 'generate')"),
}
# Values equivalent to the "off" value above.
_ALSO_ACCEPTED = {"task": ("generate",), "runner": ("generate",)}
# vLLM args that change nothing here (with vLLM's default, which gives the CLI flag its type);
# accepted so vLLM scripts and command lines run unchanged.
IGNORED: dict[str, object] = {
    "disable_log_stats": False, "disable_custom_all_reduce": False, "swap_space": 4.0,
    "max_seq_len_to_capture": 8192, "disable_async_output_proc": False,
    "compilation_config": None, "enable_chunked_prefill": False}


def check_unsupported(name: str, value) -> None:
    """ValueError (one line) when `name` is a known vLLM arg set to something onenode cannot do."""
    off, why = UNSUPPORTED[name]
    if value is None or value == off or value in _ALSO_ACCEPTED.get(name, ()):
        return
    raise ConfigError(f"{name}={value!r} is not supported by onenode yet: {why}")


def engine_fields() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(EngineConfig))


def engine_config_from_args(model: str, args: dict, caller: str = "LLM()") -> EngineConfig:
    """EngineConfig from vLLM-named keyword args; refuses what it cannot honour, by name."""
    fields, kwargs = set(engine_fields()), {}
    for name, value in args.items():
        if name in fields:
            kwargs[name] = value
        elif name in UNSUPPORTED:
            check_unsupported(name, value)
        elif name not in IGNORED:
            raise TypeError(unknown_arg_message(name, caller))
    if "model" in kwargs:
        raise TypeError(f"{caller} got 'model' twice; pass it once, as the first argument")
    return EngineConfig(model=model, **kwargs)


def unknown_arg_message(name: str, caller: str = "LLM()") -> str:
    valid = [*engine_fields(), *UNSUPPORTED, *IGNORED]
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else "; see docs/vllm_compatibility.md"
    return f"{caller} got an unexpected keyword argument {name!r}{hint}"
