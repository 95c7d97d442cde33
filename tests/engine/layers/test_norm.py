"""Gemma's RMSNorm (engine/layers/norm.py) against HF's."""

import pytest
import torch

from engine.layers.norm import GemmaRMSNorm


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gemma_rms_norm_matches_hf(dtype):
    """x * (1 + w) in float32 before the cast (engine/layers/norm.py), with the residual add."""
    from transformers.models.gemma2.modeling_gemma2 import Gemma2RMSNorm

    torch.manual_seed(3)
    x, res = torch.randn(5, 64, dtype=dtype), torch.randn(5, 64, dtype=dtype)
    ours, theirs = GemmaRMSNorm(64, 1e-6).to(dtype), Gemma2RMSNorm(64, 1e-6).to(dtype)
    with torch.no_grad():
        theirs.weight.normal_()
        ours.weight.copy_(theirs.weight)
        out, summed = ours(x, res)
        assert torch.equal(summed, x + res)
        assert torch.equal(out, theirs(x + res))
        assert torch.equal(ours(x), theirs(x))
