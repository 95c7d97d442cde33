"""The in-place decode kernel's fallback: a kernel that fails (a Triton compile error at warm-up)
is tried once, named in one warning, and decode attention runs through SDPA with the same tokens."""

import logging
import subprocess

import pytest

from engine import LLM, SamplingParams
from engine.kernels import triton_decode
from engine.layers import decode_kernel
from tests.engine.oracle import hf_greedy, make_prompts
from tests.engine.tiny_models import make_llama


@pytest.fixture
def warnings(monkeypatch):
    """A fresh failure table (the fallback is per process) and the warnings it logs."""
    monkeypatch.setattr(decode_kernel, "_failed", {})
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    decode_kernel.log.addHandler(handler)
    yield records
    decode_kernel.log.removeHandler(handler)


def _broken_triton(calls: list):
    """What Triton raises in a container without Python headers, on its first launch."""
    def launch(*args, **kwargs):
        calls.append(args)
        raise subprocess.CalledProcessError(1, ["gcc", "main.c"], stderr="fatal error: Python.h")
    return launch


def test_cuda_rows_go_to_the_triton_kernel():
    assert decode_kernel.kernel_for("cuda") is triton_decode.paged_decode


def test_a_failing_kernel_falls_back_to_sdpa_once_with_one_warning(tmp_path, monkeypatch,
                                                                      warnings):
    path = make_llama(tmp_path)
    prompts = make_prompts(path, lengths=(3, 17, 9))
    calls: list = []
    monkeypatch.setattr(triton_decode, "paged_decode", _broken_triton(calls))
    # The CPU stands in for CUDA: its rows go to the (broken) Triton kernel.
    monkeypatch.setattr(decode_kernel, "kernel_for", lambda device_type: triton_decode.paged_decode)
    llm = LLM(str(path), kv_cache_space_gib=0.05, dtype="float32")  # warm-up decodes: no raise
    params = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)
    outs = llm.generate(prompts, params, use_tqdm=False)
    assert [o.outputs[0].token_ids for o in outs] == hf_greedy(path, prompts, 8)
    assert len(calls) == 1 and len(warnings) == 1
    assert "CalledProcessError" in warnings[0] and "SDPA" in warnings[0]
    assert "\n" not in warnings[0]
    assert decode_kernel.failure("cpu").startswith("CalledProcessError")
    llm.shutdown()
    # A second engine in the process does not try the kernel again.
    llm = LLM(str(path), kv_cache_space_gib=0.05, dtype="float32")
    model = llm.engine.executor.worker.runner.model
    assert not any(a.in_place for a in model.attention_layers()) and len(calls) == 1
    llm.shutdown()


def test_a_working_kernel_is_not_turned_off(tmp_path, warnings):
    path = make_llama(tmp_path)
    llm = LLM(str(path), kv_cache_space_gib=0.05, dtype="float32")
    llm.generate(make_prompts(path, lengths=(5,)), SamplingParams(temperature=0, max_tokens=4),
                 use_tqdm=False)
    model = llm.engine.executor.worker.runner.model
    if not decode_kernel.available("cpu"):
        pytest.skip("no C++ kernels on this machine")
    assert all(a.in_place for a in model.attention_layers()) and not warnings
    assert decode_kernel.failure("cpu") is None
    llm.shutdown()
