"""Gemma 3 text models (`Gemma3ForCausalLM`, and the text model of an image-text
`Gemma3ForConditionalGeneration` checkpoint): Gemma 2's layer (engine/models/gemma2.py) with, as
HF's modeling_gemma3 computes it:
- a Gemma RMSNorm over each query and key head before rope;
- two rotary embeddings: sliding layers rotate with rope_local_base_freq and no scaling, global
  layers with rope_theta and the config's rope scaling;
- five sliding layers to one global one (sliding_window_pattern 6) unless layer_types says;
- no attention soft cap (HF's Gemma 3 ignores the config's), a final one only when set.
"""

from engine.layers.norm import GemmaRMSNorm
from engine.layers.rotary import RotaryEmbedding
from engine.model_config import ModelConfig
from engine.models.gemma2 import Gemma2Attention, Gemma2DecoderLayer, Gemma2ForCausalLM
from engine.models.gemma_config import FULL, SLIDING
from engine.models.llama import LlamaForCausalLM
from engine.models.qwen3 import Qwen3Attention


class Gemma3Attention(Qwen3Attention, Gemma2Attention):
    """Qwen 3's q/k-normed attention (with Gemma's norm) over Gemma 2's scale, window and
    per-layer-type rope."""
    qk_norm_cls = GemmaRMSNorm


class Gemma3DecoderLayer(Gemma2DecoderLayer):
    attention_cls = Gemma3Attention


class Gemma3ForCausalLM(Gemma2ForCausalLM):
    layer_cls = Gemma3DecoderLayer
    # Image-text checkpoints hold the text model under their language model (transformers 5's
    # spelling, then 4's); their vision tower's tensors map to nothing here and are not read.
    checkpoint_prefixes = ("model.language_model.", "language_model.model.", "model.")

    def make_rotary(self, cfg: ModelConfig) -> dict:
        local = RotaryEmbedding(cfg.head_dim, cfg.max_position_embeddings, cfg.rope_local_theta,
                                None)
        return {FULL: LlamaForCausalLM.make_rotary(self, cfg), SLIDING: local}
