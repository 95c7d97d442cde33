"""GGUF weights -> HF-named float tensors, dequantized lazily per tensor (a pipeline stage only
dequantizes its own layers).

llama.cpp's converter stores Llama/Mistral q_proj/k_proj rows permuted for its rotary layout;
`unpermute` undoes it exactly as transformers' GGUF loader does. Skipping it yields fluent-looking
garbage that only an oracle comparison catches.
"""

import re

import numpy as np
import torch

from onenode.errors import ModelLoadError

LAYER_NAMES = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
TOP_NAMES = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight":
             "model.norm.weight", "output.weight": "lm_head.weight"}
PERMUTED_TYPES = ("llama", "mistral")


def hf_name(gguf_name: str) -> str | None:
    if gguf_name in TOP_NAMES:
        return TOP_NAMES[gguf_name]
    m = re.fullmatch(r"blk\.(\d+)\.(\w+)\.(weight|bias)", gguf_name)
    if m and m.group(2) in LAYER_NAMES:
        return f"model.layers.{m.group(1)}.{LAYER_NAMES[m.group(2)]}.{m.group(3)}"
    return None


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    dim = w.shape[0] // n_head // 2
    return w.reshape(n_head, dim, 2, *w.shape[1:]).swapaxes(2, 1).reshape(w.shape)


class GGUFReader:
    """`fetch(name, dim, start, end)` over a GGUF file, with HF tensor names."""

    def __init__(self, path: str, hf_config: dict):
        import gguf

        self._gguf = gguf
        try:
            reader = gguf.GGUFReader(path)
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"cannot read GGUF {path}: {exc}") from None
        self.tensors = {hf_name(t.name): t for t in reader.tensors if hf_name(t.name)}
        self.cfg = hf_config
        self.cache: dict[str, torch.Tensor] = {}

    def names(self) -> set[str]:
        return set(self.tensors)

    def _load(self, name: str) -> torch.Tensor:
        if name in self.cache:
            return self.cache[name]
        t = self.tensors.get(name)
        if t is None:
            raise ModelLoadError(f"weight {name!r} is missing from the GGUF file")
        w = self._gguf.quants.dequantize(t.data, t.tensor_type)
        if self.cfg.get("model_type") in PERMUTED_TYPES:
            heads = self.cfg["num_attention_heads"]
            if name.endswith("q_proj.weight"):
                w = unpermute(w, heads)
            elif name.endswith("k_proj.weight"):
                w = unpermute(w, self.cfg.get("num_key_value_heads") or heads)
        tensor = torch.from_numpy(np.array(w, dtype=np.float32, copy=True))
        if name == "model.embed_tokens.weight":
            self.cache[name] = tensor  # used twice when embeddings are tied
        return tensor

    def fetch(self, name: str, dim, start, end):
        t = self._load(name)
        if dim is None:
            return t
        return t[start:end] if dim == 0 else t[:, start:end]
