"""The bf16 oracle's criterion (tests/engine/oracle.py): token equality at decisive positions,
on synthetic logits and on a tiny model whose decode attention is deliberately broken."""

import pytest
import torch

from engine import LLM, SamplingParams
from engine.layers import decode_kernel
from tests.engine.oracle import check_by_margin, make_prompts, margin_disagreements
from tests.engine.tiny_models import make_llama


def test_near_ties_may_flip_decisive_rows_may_not():
    logits = torch.zeros(3, 8)
    logits[0, 1], logits[0, 2] = 5.0, 4.999  # a near tie between 1 and 2
    logits[1, 3] = 5.0  # decisive: 3
    logits[2, 4] = 5.0  # decisive: 4
    assert margin_disagreements(logits, [2, 3, 4]) == ([], 2)  # the tie flipped: fine
    assert margin_disagreements(logits, [1, 3, 5]) == ([2], 2)  # a decisive row differs


def _generate(path, prompts, dtype):
    llm = LLM(str(path), kv_cache_space_gib=0.05, dtype=dtype)
    params = SamplingParams(temperature=0, max_tokens=16, ignore_eos=True)
    outs = [o.outputs[0].token_ids for o in llm.generate(prompts, params, use_tqdm=False)]
    llm.shutdown()
    return outs


def test_bf16_engine_passes_and_a_broken_decode_fails(tmp_path, monkeypatch):
    if not decode_kernel.available("cpu"):
        pytest.skip("no C++ kernels here: the deliberate bug goes into the in-place kernel")
    path = make_llama(tmp_path)
    prompts = make_prompts(path, lengths=(3, 17, 40, 9, 25, 60))
    problems, checked = check_by_margin(path, prompts, _generate(path, prompts, "bfloat16"))
    assert problems == [] and checked >= 64  # most positions are decisive: not a vacuous test
    # Decode that drops each context's newest key: the kind of bug a kernel's mask makes.
    kernel_for = decode_kernel.kernel_for

    def broken(device_type):
        real = kernel_for(device_type)
        return lambda q, k, v, t, n, s, **kw: real(q, k, v, t, (n - 1).clamp(min=1), s, **kw)

    monkeypatch.setattr(decode_kernel, "kernel_for", broken)
    problems, _ = check_by_margin(path, prompts, _generate(path, prompts, "bfloat16"))
    assert len(problems) >= 2
