"""Shapes of well-known models, so `onenode plan Llama-2-70B` works without downloading weights.

Each entry is the model's own HF config.json (only the fields model_config_from_hf reads), so a
known name and a local config.json go through the same parser. Names match case-insensitively by
short name (`Llama-2-70B`) or hub id (`meta-llama/Llama-2-70b-hf`); chat/instruct variants share
the base model's shape and therefore match too.
"""

import re

_LLAMA2 = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32000,
           "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "torch_dtype": "float16"}
_LLAMA3 = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128256,
           "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
           "torch_dtype": "bfloat16"}
# DeepSeek-V3/R1: MLA, 256 routed experts (top-8 in 4 of 8 groups) + 1 shared, the first 3
# layers dense; published with FP8 block-quantized weights (dequantized to bf16 at load).
_DEEPSEEK_V3 = {
    "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "hidden_size": 7168,
    "intermediate_size": 18432, "moe_intermediate_size": 2048, "num_hidden_layers": 61,
    "num_attention_heads": 128, "num_key_value_heads": 128, "n_routed_experts": 256,
    "n_shared_experts": 1, "num_experts_per_tok": 8, "first_k_dense_replace": 3,
    "moe_layer_freq": 1, "n_group": 8, "topk_group": 4, "topk_method": "noaux_tc",
    "scoring_func": "sigmoid", "norm_topk_prob": True, "routed_scaling_factor": 2.5,
    "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
    "v_head_dim": 128, "vocab_size": 129280, "max_position_embeddings": 163840,
    "rms_norm_eps": 1e-6, "rope_theta": 10000,
    "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
                     "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "bos_token_id": 0,
    "eos_token_id": 1,
    "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                            "weight_block_size": [128, 128]}}
_QWEN3_MOE = {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
              "num_key_value_heads": 4, "head_dim": 128, "num_experts": 128,
              "num_experts_per_tok": 8, "norm_topk_prob": True, "decoder_sparse_step": 1,
              "mlp_only_layers": [], "vocab_size": 151936, "max_position_embeddings": 40960,
              "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": False,
              "torch_dtype": "bfloat16"}

# hub id -> config.json fields (values from the models' published config.json files).
KNOWN_MODELS: dict[str, dict] = {
    "openai-community/gpt2": {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_embd": 768, "n_layer": 12,
        "n_head": 12, "vocab_size": 50257, "n_positions": 1024, "torch_dtype": "float32"},
    "facebook/opt-13b": {
        "architectures": ["OPTForCausalLM"], "model_type": "opt", "hidden_size": 5120,
        "num_hidden_layers": 40, "num_attention_heads": 40, "ffn_dim": 20480,
        "vocab_size": 50272, "max_position_embeddings": 2048, "word_embed_proj_dim": 5120,
        "do_layer_norm_before": True, "torch_dtype": "float16"},
    "meta-llama/Llama-2-7b-hf": {
        **_LLAMA2, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 32},
    "meta-llama/Llama-2-70b-hf": {
        **_LLAMA2, "hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
        "num_attention_heads": 64, "num_key_value_heads": 8},
    "meta-llama/Meta-Llama-3-8B": {
        **_LLAMA3, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8},
    "meta-llama/Meta-Llama-3-70B": {
        **_LLAMA3, "hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
        "num_attention_heads": 64, "num_key_value_heads": 8},
    "Qwen/Qwen2-7B": {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 3584,
        "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
        "num_key_value_heads": 4, "vocab_size": 152064, "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "torch_dtype": "bfloat16"},
    "Qwen/Qwen2.5-72B-Instruct": {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 8192,
        "intermediate_size": 29568, "num_hidden_layers": 80, "num_attention_heads": 64,
        "num_key_value_heads": 8, "vocab_size": 152064, "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "torch_dtype": "bfloat16"},
    "mistralai/Mistral-Large-Instruct-2407": {
        "architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_size": 12288,
        "intermediate_size": 28672, "num_hidden_layers": 88, "num_attention_heads": 96,
        "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 32768,
        "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 1000000.0,
        "torch_dtype": "bfloat16"},
    "microsoft/phi-4": {
        "architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "hidden_size": 5120,
        "intermediate_size": 17920, "num_hidden_layers": 40, "num_attention_heads": 40,
        "num_key_value_heads": 10, "vocab_size": 100352, "max_position_embeddings": 16384,
        "rms_norm_eps": 1e-5, "rope_theta": 250000.0, "torch_dtype": "bfloat16"},
    # The text model of gemma-3-27b-it (its config.json's text_config).
    "google/gemma-3-27b-it": {
        "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
        "hidden_size": 5376, "intermediate_size": 21504, "num_hidden_layers": 62,
        "num_attention_heads": 32, "num_key_value_heads": 16, "head_dim": 128,
        "vocab_size": 262208, "max_position_embeddings": 131072, "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
        "rope_scaling": {"rope_type": "linear", "factor": 8.0}, "sliding_window": 1024,
        "query_pre_attn_scalar": 168, "hidden_activation": "gelu_pytorch_tanh",
        "tie_word_embeddings": True, "torch_dtype": "bfloat16"},
    # The demo model embedded in onenode (9 heads: the seed's "uneven" example for PP).
    "HuggingFaceTB/SmolLM2-135M-Instruct": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 576,
        "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
        "num_key_value_heads": 3, "vocab_size": 49152, "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "tie_word_embeddings": True,
        "torch_dtype": "bfloat16"},
    # Mixture-of-experts releases (the models people need several hosts for).
    "deepseek-ai/DeepSeek-V3": _DEEPSEEK_V3,
    "deepseek-ai/DeepSeek-R1": _DEEPSEEK_V3,  # R1 is V3's shape with other weights
    "Qwen/Qwen3-235B-A22B": {
        **_QWEN3_MOE, "hidden_size": 4096, "intermediate_size": 12288,
        "moe_intermediate_size": 1536, "num_hidden_layers": 94, "num_attention_heads": 64},
    "Qwen/Qwen3-30B-A3B": {
        **_QWEN3_MOE, "hidden_size": 2048, "intermediate_size": 6144,
        "moe_intermediate_size": 768, "num_hidden_layers": 48, "num_attention_heads": 32},
    "mistralai/Mixtral-8x22B-v0.1": {
        "architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "hidden_size": 6144,
        "intermediate_size": 16384, "num_hidden_layers": 56, "num_attention_heads": 48,
        "num_key_value_heads": 8, "num_local_experts": 8, "num_experts_per_tok": 2,
        "vocab_size": 32768, "max_position_embeddings": 65536, "rms_norm_eps": 1e-5,
        "rope_theta": 1000000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16"},
}


def _key(name: str) -> str:
    """'meta-llama/Llama-2-70b-chat-hf' and 'Llama-2-70B' -> 'llama-2-70b'; a release suffix
    (-v0.1) goes too."""
    key = name.strip().lower().rsplit("/", 1)[-1]
    key = re.sub(r"^meta-", "", key)
    key = re.sub(r"-v\d+(\.\d+)*$", "", key)  # release suffix: Mixtral-8x22B-v0.1
    key = re.sub(r"(-hf)?(-(chat|instruct|base|it))?(-hf)?$", "", key)
    key = key.replace("-instruct-", "-")  # Mistral-Large-Instruct-2407 -> mistral-large-2407
    return key.replace("gpt-2", "gpt2")


_BY_KEY = {_key(hub_id): hub_id for hub_id in KNOWN_MODELS}


def known_model(name: str) -> tuple[str, dict] | None:
    """(hub id, HF config dict) of a well-known model, or None when the name is not in the table."""
    hub_id = _BY_KEY.get(_key(name))
    return (hub_id, dict(KNOWN_MODELS[hub_id])) if hub_id else None


def known_model_names() -> list[str]:
    """Short names for help and error messages."""
    return sorted(hub_id.rsplit("/", 1)[-1] for hub_id in KNOWN_MODELS)
