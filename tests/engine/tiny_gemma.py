"""Tiny random Gemma 2 / Gemma 3 checkpoints made offline with transformers' configs (the
oracle's inputs for engine/models/gemma2.py and gemma3.py).

Every Gemma feature is set so that getting it wrong changes greedy tokens: head_dim (32) apart
from hidden / heads (16), query_pre_attn_scalar apart from head_dim, soft caps small enough to
bite on these weights' scores and logits, norm weights random (HF starts them at 0, where
x * (1 + w) and x * w differ only by a zero), sliding and global layers mixed, Gemma 3's local
and global rope bases far apart and its global rope scaled.
"""

import json
from pathlib import Path

import torch

from tests.engine.tiny_models import SHARP, VOCAB, _save

EMBED_SHRINK = 0.125

_SHAPE = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_attention_heads=4,
              num_key_value_heads=2, head_dim=32, query_pre_attn_scalar=20,
              max_position_embeddings=512, bos_token_id=1, eos_token_id=2, pad_token_id=0,
              initializer_range=SHARP)


def _random_norms(model) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_(0.0, 0.3)
        # The embedding is multiplied by sqrt(hidden) = 8: at full size it would drown what
        # attention adds, and greedy decoding would only repeat the last token.
        model.get_input_embeddings().weight.mul_(EMBED_SHRINK)


def make_gemma2(path: Path, num_layers: int = 4, sliding_window: int = 4096,
                attn_cap: float = 2.0, final_cap: float = 0.5) -> Path:
    """Layers 0 and 2 slide, 1 and 3 are global (Gemma 2's alternation)."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(11)
    cfg = Gemma2Config(**_SHAPE, num_hidden_layers=num_layers, sliding_window=sliding_window,
                       attn_logit_softcapping=attn_cap, final_logit_softcapping=final_cap)
    model = Gemma2ForCausalLM(cfg)
    _random_norms(model)
    _save(model, path)
    return path


def make_gemma3(path: Path, num_layers: int = 4, sliding_window: int = 4096,
                final_cap: float | None = 0.5) -> Path:
    """Every third layer global (sliding_window_pattern 3: layers 2 and 5 of 6); the config
    spelled as Gemma 3's releases spell it (rope_theta, rope_local_base_freq, rope_scaling,
    sliding_window_pattern), which transformers 5 still reads."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(12)
    rope = dict(rope_theta=10000.0, rope_local_base_freq=100.0,
                rope_scaling={"rope_type": "linear", "factor": 4.0})
    cfg = Gemma3TextConfig(**_SHAPE, num_hidden_layers=num_layers, sliding_window=sliding_window,
                           sliding_window_pattern=3, final_logit_softcapping=final_cap, **rope)
    model = Gemma3ForCausalLM(cfg)
    _random_norms(model)
    _save(model, path)
    config_json = path / "config.json"
    saved = json.loads(config_json.read_text())
    for key in ("rope_parameters", "layer_types"):
        saved.pop(key)
    saved.update(rope, sliding_window_pattern=3)
    config_json.write_text(json.dumps(saved, indent=2))
    return path


def make_gemma3_multimodal(path: Path, num_layers: int = 3, sliding_window: int = 32) -> Path:
    """An image-text Gemma3ForConditionalGeneration (a one-layer SigLIP tower): onenode serves
    its text model."""
    from transformers import (Gemma3Config, Gemma3ForConditionalGeneration, Gemma3TextConfig,
                              SiglipVisionConfig)

    torch.manual_seed(13)
    text = Gemma3TextConfig(**_SHAPE, num_hidden_layers=num_layers, sliding_window=sliding_window,
                            sliding_window_pattern=3, final_logit_softcapping=0.5)
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                num_attention_heads=2, image_size=28, patch_size=14)
    cfg = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4,
                       boi_token_index=VOCAB - 3, eoi_token_index=VOCAB - 2,
                       image_token_index=VOCAB - 1, bos_token_id=1, eos_token_id=2,
                       pad_token_id=0)
    model = Gemma3ForConditionalGeneration(cfg)
    _random_norms(model)
    _save(model, path)
    return path
