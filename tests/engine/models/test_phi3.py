"""Phi-3's fused checkpoint tensors map onto the packed layers whole (the layer's loader slices
each part per TP rank; tests/engine/test_rope_oracle.py runs it at TP=2 against HF)."""

from engine.models.loader import param_targets
from engine.models.phi3 import Phi3ForCausalLM


def test_fused_tensors_keep_their_names_and_fill_every_part():
    model = Phi3ForCausalLM.__new__(Phi3ForCausalLM)  # name maps only: no layers built
    model.__dict__["tied_weights"] = {}
    assert param_targets(model, "model.layers.0.self_attn.qkv_proj.weight") == [
        ("layers.0.self_attn.qkv_proj.weight", None)]
    assert param_targets(model, "model.layers.3.mlp.gate_up_proj.weight") == [
        ("layers.3.mlp.gate_up_proj.weight", None)]
