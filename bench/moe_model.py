"""The MoE benchmark model: a random-weight Qwen3-MoE of about 0.5B total parameters, built
offline from transformers' own `Qwen3MoeConfig` (no download), written once under
~/.cache/onenode/bench/ (never into the repo). `onenode bench moe-model` prints its path for
`onenode bench throughput --model PATH`.

Shape: Qwen3-30B-A3B's proportions scaled down (64 experts, top-8, norm_topk_prob, q/k norm):
12 layers x 64 experts x 3 x 768 x 256 = 453M expert parameters, 522M in all, 125M active per
token (the 49M of embedding and LM head included). Weights are HF's default random init with a fixed seed, so every run routes the same way.
"""

import os
from pathlib import Path

NAME = "qwen3-moe-0.5b-random"
VOCAB = 32000
CONFIG = dict(vocab_size=VOCAB, hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
              num_attention_heads=12, num_key_value_heads=4, head_dim=64, num_experts=64,
              num_experts_per_tok=8, moe_intermediate_size=256, norm_topk_prob=True,
              max_position_embeddings=4096, tie_word_embeddings=False, bos_token_id=1,
              eos_token_id=2, pad_token_id=0)


def default_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "onenode" / "bench" / NAME


def write_moe_model(path: Path | None = None, seed: int = 0) -> Path:
    """The checkpoint directory (config, safetensors, tokenizer); reused when complete."""
    import torch
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    path = Path(path or default_dir())
    if (path / "model.safetensors").exists() and (path / "tokenizer.json").exists():
        return path
    torch.manual_seed(seed)
    model = Qwen3MoeForCausalLM(Qwen3MoeConfig(**CONFIG))
    model.save_pretrained(str(path), safe_serialization=True)
    _tokenizer().save_pretrained(str(path))
    return path


def _tokenizer():
    """Word-level: token i is "w{i}". The bench feeds token ids, so any tokenizer that loads
    fits; this one is built offline in a second."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i for i in range(3, VOCAB)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<pad>", pad_token="<pad>",
                                   bos_token="<s>", eos_token="</s>")
