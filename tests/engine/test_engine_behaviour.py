"""Engine behaviour beyond token equality: the KV log line, leaks, bad input, faults, the default
backend rule in real runs, sampling."""

import logging
import os
import signal
import time

import pytest

from engine import LLM, SamplingParams
from engine.core.kv_blocks import bytes_per_block, cpu_available_bytes, num_kv_blocks
from onenode.errors import ConfigError, EngineDeadError, ModelLoadError
from tests.engine.tiny_models import make_llama


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_llama(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def llm(tiny):
    engine = LLM(str(tiny), kv_cache_space_gib=0.01, dtype="float32")
    yield engine
    engine.shutdown()


def test_block_count_line_equals_the_pure_function(tiny, caplog):
    caplog.set_level(logging.INFO, logger="onenode")
    logging.getLogger("onenode").propagate = True
    try:
        llm = LLM(str(tiny), kv_cache_space_gib=0.01, dtype="float32")
    finally:
        logging.getLogger("onenode").propagate = False
    cfg = llm.engine.model_config
    expected = num_kv_blocks(cpu_available_bytes(0.01), bytes_per_block(cfg, 16, 4))
    assert f"# CPU blocks: {expected}" in caplog.text
    assert "Maximum concurrency for 256 tokens per request:" in caplog.text
    assert llm.engine.num_blocks == expected
    llm.shutdown()


def test_mixed_sampling_and_no_block_leak(llm):
    params = [SamplingParams(temperature=0.8, top_p=0.9, top_k=20, seed=1, max_tokens=8),
              SamplingParams(temperature=0, max_tokens=5, stop_token_ids=[]),
              SamplingParams(n=2, temperature=1.0, seed=3, max_tokens=6, logprobs=2)]
    outs = llm.generate([[5, 6, 7], [8, 9], [10, 11, 12, 13]], params, use_tqdm=False)
    assert [len(o.outputs) for o in outs] == [1, 1, 2]
    assert outs[2].outputs[0].logprobs and len(outs[2].outputs[0].logprobs[0]) >= 2
    assert llm.engine.block_manager.num_free_blocks == llm.engine.num_blocks


def test_seeded_sampling_is_independent_of_the_batch(llm):
    p = SamplingParams(temperature=1.0, seed=42, max_tokens=8, ignore_eos=True)
    alone = llm.generate([[20, 21, 22]], p, use_tqdm=False)[0].outputs[0].token_ids
    batch = llm.generate([[1, 2, 3, 4], [20, 21, 22], [9] * 30], p, use_tqdm=False)
    assert batch[1].outputs[0].token_ids == alone


def test_stop_strings_cut_the_text(llm):
    first = llm.generate("w5 w6 w7", SamplingParams(temperature=0, max_tokens=6,
                                                    ignore_eos=True), use_tqdm=False)[0]
    words = first.outputs[0].text.split()
    stop = words[2]
    out = llm.generate("w5 w6 w7", SamplingParams(temperature=0, max_tokens=6, ignore_eos=True,
                                                  stop=[stop]), use_tqdm=False)[0].outputs[0]
    assert out.finish_reason == "stop" and out.stop_reason == stop and stop not in out.text


def test_prompt_longer_than_max_model_len(llm):
    with pytest.raises(ConfigError, match="300 tokens but max_model_len is 256"):
        llm.generate([[5] * 300], use_tqdm=False)


@pytest.mark.parametrize("kw,field", [({"temperature": -1}, "temperature"),
                                      ({"top_p": 0}, "top_p"), ({"n": 0}, "n"),
                                      ({"max_tokens": 0}, "max_tokens")])
def test_invalid_sampling_values_name_the_field(kw, field):
    with pytest.raises(ValueError, match=f"SamplingParams.{field}="):
        SamplingParams(**kw)


def test_missing_files_and_unknown_architecture(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        LLM(str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError, match="not in the HF cache .*HF_HUB_OFFLINE is set"):
        LLM("some-org/some-model")  # tests run with HF_HUB_OFFLINE=1 (tests/conftest.py)
    (tmp_path / "config.json").write_text('{"architectures": ["MambaForCausalLM"]}')
    with pytest.raises(ModelLoadError, match="unsupported architecture.*LlamaForCausalLM"):
        LLM(str(tmp_path))


def test_default_backend_rule_in_real_runs(tiny):
    one = LLM(str(tiny), kv_cache_space_gib=0.01)
    assert one.engine.backend == "uni"
    one.shutdown()
    two = LLM(str(tiny), kv_cache_space_gib=0.01, tensor_parallel_size=2)
    assert two.engine.backend == ("mp" if (os.cpu_count() or 1) >= 2 else "ray")
    two.shutdown()


def test_killed_mp_worker_is_an_engine_error_within_seconds(tiny):
    llm = LLM(str(tiny), kv_cache_space_gib=0.01, pipeline_parallel_size=2,
              distributed_executor_backend="mp")
    procs = list(llm.engine.executor.procs)
    os.kill(procs[1].pid, signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(EngineDeadError, match="rank 1"):
        llm.generate([[5, 6, 7]], SamplingParams(max_tokens=50, ignore_eos=True),
                     use_tqdm=False)
    assert time.monotonic() - start < 10
    llm.shutdown()
    assert all(not p.is_alive() for p in procs)  # no zombie workers left behind
