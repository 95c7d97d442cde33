"""Model family -> module class; build one pipeline stage on a device and load its weights."""

import torch
from tqdm.auto import tqdm

from engine.model_config import ModelConfig
from engine.models.loader import load_model_weights
from onenode.errors import ModelLoadError


def _family_class(family: str):
    if family == "llama":
        from engine.models.llama import LlamaForCausalLM as cls
    elif family == "phi3":
        from engine.models.phi3 import Phi3ForCausalLM as cls
    elif family == "gpt2":
        from engine.models.gpt2 import GPT2LMHeadModel as cls
    elif family == "opt":
        from engine.models.opt import OPTForCausalLM as cls
    elif family == "qwen3":
        from engine.models.qwen3 import Qwen3ForCausalLM as cls
    elif family == "qwen3_moe":
        from engine.models.qwen3_moe import Qwen3MoeForCausalLM as cls
    elif family == "qwen2_moe":
        from engine.models.qwen2_moe import Qwen2MoeForCausalLM as cls
    elif family == "mixtral":
        from engine.models.mixtral import MixtralForCausalLM as cls
    elif family == "gemma2":
        from engine.models.gemma2 import Gemma2ForCausalLM as cls
    elif family == "gemma3":
        from engine.models.gemma3 import Gemma3ForCausalLM as cls
    elif family == "deepseek_v3":
        from engine.models.deepseek_v3 import DeepseekV3ForCausalLM as cls
    else:
        raise ModelLoadError(f"no implementation for model family {family!r}")
    return cls


def build_model(cfg: ModelConfig, layer_range: tuple[int, int], is_first: bool, is_last: bool,
                dtype: torch.dtype, device) -> torch.nn.Module:
    """Parameters are created uninitialized, directly in `dtype` on `device`: loading overwrites
    them, so no time or memory goes to a random init."""
    cls = _family_class(cfg.family)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return cls(cfg, layer_range, is_first, is_last)
    finally:
        torch.set_default_dtype(old)


def load_weights(model: torch.nn.Module, source, progress: bool = False) -> None:
    reader = open_reader(source)
    bar = tqdm(desc="Loading weights", unit=" tensors", disable=not progress, dynamic_ncols=True)
    inner = reader.fetch

    def fetch(name, dim, start, end):
        t = inner(name, dim, start, end)
        bar.update(1)
        return t

    reader.fetch = fetch
    try:
        with torch.no_grad():
            load_model_weights(model, reader)
    finally:
        bar.close()


def open_reader(source):
    if source.gguf_file:
        from engine.models.gguf_loader import GGUFReader

        return GGUFReader(str(source.path / source.gguf_file), source.hf_config)
    from engine.models.weights import SafetensorsReader

    return SafetensorsReader(source.path, source.model_config.weight_block_size)
