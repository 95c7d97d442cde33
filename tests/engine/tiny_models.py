"""Tiny random HF checkpoints made offline with transformers configs (the oracle's inputs)."""

import json
from pathlib import Path

import torch

VOCAB = 512
# Weights 5x HF's default spread: attention then depends on positions enough that a wrong rope
# changes greedy tokens (with the default 0.02 the tiny models barely look at positions).
SHARP = 0.1


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
                      num_key_value_heads=kv_heads,
                      **{"max_position_embeddings": 256, "tie_word_embeddings": False, **kw})
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


def make_phi3(path: Path, num_layers: int = 2) -> Path:
    """Phi-4-mini's shape in small: fused qkv/gate_up, 3/4 of each head rotated, longrope with a
    32-token original context, so a prompt of a few hundred tokens runs on the long factors."""
    from transformers import Phi3Config, Phi3ForCausalLM

    torch.manual_seed(4)
    pairs = int(16 * 0.75) // 2
    cfg = Phi3Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=128,
                     num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
                     max_position_embeddings=512, original_max_position_embeddings=32,
                     partial_rotary_factor=0.75, tie_word_embeddings=True,
                     rope_scaling={"rope_type": "longrope",
                                   "short_factor": [1.0 + 0.05 * i for i in range(pairs)],
                                   "long_factor": [1.0 + 3.0 * i for i in range(pairs)]},
                     bos_token_id=1, eos_token_id=2, pad_token_id=0, initializer_range=SHARP)
    _save(Phi3ForCausalLM(cfg), path)
    return path


def make_qwen2_yarn(path: Path, num_layers: int = 2) -> Path:
    """YaRN over a 32-token original context, factor 16 (Qwen2.5's long-context recipe)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(5)
    cfg = Qwen2Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=128,
                      num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=512, tie_word_embeddings=True,
                      rope_scaling={"rope_type": "yarn", "factor": 16.0,
                                    "original_max_position_embeddings": 32},
                      initializer_range=SHARP)
    _save(Qwen2ForCausalLM(cfg), path)
    return path


def make_llama_dynamic(path: Path, num_layers: int = 2) -> Path:
    """Dynamic NTK rope past a 64-token max_position_embeddings (factor 8: 512 positions)."""
    return make_llama(path, num_layers=num_layers, max_position_embeddings=64,
                      rope_scaling={"rope_type": "dynamic", "factor": 8.0},
                      initializer_range=SHARP)


def make_mistral_window(path: Path, num_layers: int = 2) -> Path:
    """Every layer slides over 32 positions, so prompts of 100-200 tokens cross the window."""
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(8)
    cfg = MistralConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128,
                        num_hidden_layers=num_layers, num_attention_heads=4,
                        num_key_value_heads=2, max_position_embeddings=512, sliding_window=32,
                        tie_word_embeddings=False, initializer_range=SHARP)
    _save(MistralForCausalLM(cfg), path)
    return path


def make_qwen2_window(path: Path, num_layers: int = 3) -> Path:
    """Layer 0 attends to the whole context, layers 1 and 2 (from max_window_layers on) slide
    over 32 positions."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(9)
    cfg = Qwen2Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=128,
                      num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=512, tie_word_embeddings=True,
                      use_sliding_window=True, sliding_window=32, max_window_layers=1,
                      initializer_range=SHARP)
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


# MoE shapes: hidden 64, 8 experts of intermediate 32, top-2; 4 query heads over 2 KV heads so
# TP (= EP) of 4 still splits attention. Random init gives no exactly tied router scores; seeds
# and init widths are picked so that no two bf16 logits the greedy path compares tie.
_MOE = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False,
            num_experts_per_tok=2)


def make_mixtral(path: Path, num_layers: int = 2, seed: int = 4) -> Path:
    from transformers import MixtralConfig, MixtralForCausalLM

    torch.manual_seed(seed)
    cfg = MixtralConfig(**{**_MOE, "intermediate_size": 32}, num_hidden_layers=num_layers,
                        num_local_experts=8, initializer_range=0.08)
    _save(MixtralForCausalLM(cfg), path)
    return path


def make_qwen3_moe(path: Path, num_layers: int = 3, seed: int = 5, **kw) -> Path:
    """Layer 1 is dense (mlp_only_layers), so sparse and dense layers mix."""
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    torch.manual_seed(seed)
    args = dict(_MOE, num_hidden_layers=num_layers, num_experts=8, moe_intermediate_size=32,
                head_dim=16, norm_topk_prob=True, mlp_only_layers=[1])
    cfg = Qwen3MoeConfig(**{**args, **kw})
    _save(Qwen3MoeForCausalLM(cfg), path)
    return path


def make_qwen2_moe(path: Path, num_layers: int = 2, seed: int = 6) -> Path:
    """Shared expert with its sigmoid gate; norm_topk_prob off (Qwen1.5-MoE's setting)."""
    from transformers import Qwen2MoeConfig, Qwen2MoeForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2MoeConfig(**_MOE, num_hidden_layers=num_layers, num_experts=8,
                         moe_intermediate_size=32, shared_expert_intermediate_size=48,
                         norm_topk_prob=False)
    _save(Qwen2MoeForCausalLM(cfg), path)
    return path


def make_qwen3(path: Path, num_layers: int = 2, seed: int = 7) -> Path:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen3Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=128,
                      num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
                      head_dim=32, max_position_embeddings=256, tie_word_embeddings=True)
    _save(Qwen3ForCausalLM(cfg), path)
    return path


BUILDERS = {"llama": make_llama, "qwen2": make_qwen2, "gpt2": make_gpt2, "opt": make_opt,
            "mixtral": make_mixtral, "qwen3_moe": make_qwen3_moe, "qwen2_moe": make_qwen2_moe,
            "qwen3": make_qwen3}


# Rope scaling that changes the answer past a short original context (tests/engine/
# test_rope_oracle.py): prompts of a few hundred tokens cross it.
LONG_CONTEXT_BUILDERS = {"phi3-longrope": make_phi3, "qwen2-yarn": make_qwen2_yarn,
                         "llama-dynamic": make_llama_dynamic}


# Sliding windows of 32 positions (tests/engine/test_window_oracle.py).
WINDOW_BUILDERS = {"mistral-window": make_mistral_window, "qwen2-window": make_qwen2_window}


# YaRN as DeepSeek-V3 configures it, stretched 4x from 32 positions; mscale != mscale_all_dim
# so both the cos/sin attention factor and the softmax mscale differ from 1.
DEEPSEEK_YARN = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                 "original_max_position_embeddings": 32, "beta_fast": 32, "beta_slow": 1,
                 "mscale": 1.0, "mscale_all_dim": 0.7}


# DeepSeek-V3's routing at tiny scale: 8 experts in 4 groups, the best 2 groups kept, top-2,
# sigmoid scores with a correction bias, scaled by 2.5, one shared expert; layer 0 dense.
DEEPSEEK_MOE = dict(first_k_dense_replace=1, n_routed_experts=8, n_group=4, topk_group=2,
                    num_experts_per_tok=2, n_shared_experts=1, routed_scaling_factor=2.5)


def make_deepseek_v3(path: Path, num_layers: int = 2, q_lora_rank: int | None = 32,
                     yarn: bool = False, moe: bool = False, **kw) -> Path:
    """MLA, every layer dense unless `moe` (DEEPSEEK_MOE: routed experts from layer 1 on, with a
    random correction bias, which HF initializes to zeros); 128 positions, so prompts pass YaRN's
    original 32. Weights 10x HF's default spread: at 0.02 attention barely moves the logits of
    so small a model, and greedy tokens would not see the rope at all."""
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    torch.manual_seed(4)
    routing = DEEPSEEK_MOE if moe else dict(first_k_dense_replace=num_layers, n_routed_experts=4,
                                            num_experts_per_tok=2, n_group=1, topk_group=1)
    cfg = DeepseekV3Config(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=num_layers,
        num_attention_heads=4, num_key_value_heads=4, q_lora_rank=q_lora_rank, kv_lora_rank=16,
        qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, max_position_embeddings=128,
        moe_intermediate_size=32, bos_token_id=1, eos_token_id=2,
        rope_parameters=dict(DEEPSEEK_YARN) if yarn else None, initializer_range=0.2,
        **{**routing, **kw})
    model = DeepseekV3ForCausalLM(cfg)
    for name, buf in model.named_buffers():
        if name.endswith("e_score_correction_bias"):
            buf.copy_(torch.rand_like(buf) * 0.2)
    _save(model, path)
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
