"""Tiny random HF checkpoints made offline with transformers configs (the oracle's inputs)."""

import json
from pathlib import Path

import torch

VOCAB = 512


def _save(model, tokenizer_dir: Path, tokenizer: str = "words") -> None:
    model.save_pretrained(str(tokenizer_dir), safe_serialization=True)
    (_byte_tokenizer() if tokenizer == "bytes" else _tokenizer()).save_pretrained(
        str(tokenizer_dir))


def _tokenizer():
    """A small word-level tokenizer with a chat template, built offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for i in range(3, VOCAB):
        vocab[f"w{i}"] = i
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>")
    fast.chat_template = ("{% for m in messages %}w10 {{ m['content'] }} w11 {% endfor %}"
                          "{% if add_generation_prompt %}w12{% endif %}")
    return fast


def _byte_tokenizer():
    """A byte-level BPE (GPT-2 style, no merges): every string is encodable, one token per byte,
    so grammars (JSON, regex) can be followed by a tiny model."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab, [], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>")
    fast.chat_template = ("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n"
                          "{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}")
    return fast


def make_llama(path: Path, num_layers: int = 3, heads: int = 4, kv_heads: int = 2,
               tokenizer: str = "words", hidden_size: int = 64, intermediate_size: int = 128,
               **kw) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=hidden_size,
                      intermediate_size=intermediate_size, num_hidden_layers=num_layers, num_attention_heads=heads,
                      num_key_value_heads=kv_heads, max_position_embeddings=256,
                      tie_word_embeddings=False, **kw)
    _save(LlamaForCausalLM(cfg), path, tokenizer)
    return path


def make_qwen2(path: Path, num_layers: int = 2) -> Path:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(1)
    cfg = Qwen2Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=128,
                      num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=256, tie_word_embeddings=True)
    _save(Qwen2ForCausalLM(cfg), path)
    return path


def make_gpt2(path: Path, num_layers: int = 2) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(2)
    cfg = GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=num_layers, n_head=4, n_positions=256,
                     bos_token_id=1, eos_token_id=2)
    _save(GPT2LMHeadModel(cfg), path)
    return path


def make_opt(path: Path, num_layers: int = 2) -> Path:
    from transformers import OPTConfig, OPTForCausalLM

    torch.manual_seed(3)
    cfg = OPTConfig(vocab_size=VOCAB, hidden_size=64, ffn_dim=128, num_hidden_layers=num_layers,
                    num_attention_heads=4, max_position_embeddings=256, word_embed_proj_dim=64)
    _save(OPTForCausalLM(cfg), path)
    return path


# YaRN as DeepSeek-V3 configures it, stretched 4x from 32 positions; mscale != mscale_all_dim
# so both the cos/sin attention factor and the softmax mscale differ from 1.
DEEPSEEK_YARN = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                 "original_max_position_embeddings": 32, "beta_fast": 32, "beta_slow": 1,
                 "mscale": 1.0, "mscale_all_dim": 0.7}


def make_deepseek_v3(path: Path, num_layers: int = 2, q_lora_rank: int | None = 32,
                     yarn: bool = False, **kw) -> Path:
    """MLA with every layer dense (first_k_dense_replace = num_layers); 128 positions, so
    prompts pass YaRN's original 32. Weights 10x HF's default spread: at 0.02 attention barely
    moves the logits of so small a model, and greedy tokens would not see the rope at all."""
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    torch.manual_seed(4)
    cfg = DeepseekV3Config(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=num_layers,
        num_attention_heads=4, num_key_value_heads=4, q_lora_rank=q_lora_rank, kv_lora_rank=16,
        qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, max_position_embeddings=128,
        first_k_dense_replace=num_layers, n_routed_experts=4, num_experts_per_tok=2, n_group=1,
        topk_group=1, moe_intermediate_size=32, bos_token_id=1, eos_token_id=2,
        rope_parameters=dict(DEEPSEEK_YARN) if yarn else None, initializer_range=0.2, **kw)
    _save(DeepseekV3ForCausalLM(cfg), path)
    _published_rope_keys(path / "config.json")
    return path


def _published_rope_keys(config_json: Path) -> None:
    """Spell rope as DeepSeek's released config.json files do (top-level rope_theta, rope_scaling
    with "type"), not as transformers 5 saves it (one rope_parameters dict)."""
    cfg = json.loads(config_json.read_text())
    params = cfg.pop("rope_parameters")
    cfg["rope_theta"] = params.pop("rope_theta")
    kind = params.pop("rope_type")
    if kind != "default":
        cfg["rope_scaling"] = {"type": kind, **params}
    config_json.write_text(json.dumps(cfg, indent=2))


BUILDERS = {"llama": make_llama, "qwen2": make_qwen2, "gpt2": make_gpt2, "opt": make_opt}
