"""KV-cache memory: zeroed, writable, alive as long as its tensor, on CPU from a lazy mapping."""

import gc

import pytest
import torch

from engine.layers import cache_memory


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cpu_cache_memory_is_zeroed_writable_and_outlives_its_maker(dtype):
    t = cache_memory.zeros((3, 7, 16, 8), dtype, "cpu")
    assert t.shape == (3, 7, 16, 8) and t.dtype == dtype and t.is_contiguous()
    assert torch.count_nonzero(t) == 0
    gc.collect()  # the mapping lives in the tensor's storage, not in a local of zeros()
    t[1, 2].fill_(1.5)
    assert t.sum().item() == pytest.approx(1.5 * 16 * 8) and t[0].abs().sum() == 0


def test_an_empty_cache_is_a_plain_empty_tensor():
    assert cache_memory.zeros((0, 4), torch.float32, "cpu").numel() == 0
