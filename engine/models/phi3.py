"""Phi-3 / Phi-4 (`Phi3ForCausalLM`): the Llama architecture, read from a checkpoint that stores
q/k/v as one `qkv_proj` and gate/up as one `gate_up_proj` tensor, with longrope scaling and, in
Phi-4-mini, partial rotation (both handled by engine/layers/rotary.py from the ModelConfig).

The fused tensors load into the same packed ColumnParallelLinear layers as Llama's separate ones:
a tensor loaded without a shard id holds every part at its full size, and the layer's loader
takes this rank's rows of each part (q, k, v; gate, up) from it.
"""

from typing import ClassVar

from engine.models.llama import LlamaForCausalLM


class Phi3ForCausalLM(LlamaForCausalLM):
    # Checkpoint names already match the packed modules; Llama's substring map would rewrite
    # them ("qkv_proj" contains "v_proj", "gate_up_proj" contains "up_proj").
    packed_modules_mapping: ClassVar[dict] = {}
