"""The ray backend asked for explicitly on a machine without a Ray cluster starts a local Ray
instance, as vLLM does; a world larger than that instance says exactly what is missing."""

import os

import pytest

from engine import LLM, SamplingParams
from onenode.errors import ResourceError
from tests.engine.oracle import hf_greedy, make_prompts
from tests.engine.tiny_models import make_llama

ray = pytest.importorskip("ray")


@pytest.fixture
def no_ray_cluster(monkeypatch):
    if ray.is_initialized():
        pytest.skip("a Ray runtime is already initialized in this process")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    yield
    if ray.is_initialized():  # the test failed before the executor stopped its own instance
        ray.shutdown()


@pytest.mark.slow
def test_explicit_ray_starts_a_local_instance(tmp_path, no_ray_cluster):
    path = make_llama(tmp_path, num_layers=2)
    prompts = make_prompts(path, lengths=(5, 9))
    llm = LLM(str(path), pipeline_parallel_size=2, distributed_executor_backend="ray",
              dtype="float32", kv_cache_space_gib=0.02)
    try:
        assert llm.engine.backend == "ray" and ray.is_initialized()
        outs = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=6, ignore_eos=True),
                            use_tqdm=False)
    finally:
        llm.shutdown()
    assert [o.outputs[0].token_ids for o in outs] == hf_greedy(path, prompts, 6)
    assert not ray.is_initialized(), "the local Ray instance onenode started should be stopped"


@pytest.mark.slow
def test_world_larger_than_the_local_instance_says_what_is_missing(tmp_path, no_ray_cluster):
    path = make_llama(tmp_path, num_layers=8)
    cpus = os.cpu_count()
    with pytest.raises(ResourceError) as err:
        LLM(str(path), pipeline_parallel_size=cpus + 1, distributed_executor_backend="ray",
            dtype="float32", kv_cache_space_gib=0.02, device="cpu")
    msg = str(err.value)
    assert f"PP={cpus + 1} needs {cpus + 1} CPUs (one per rank), this Ray cluster has " in msg
    assert "missing" in msg and "\n" not in msg and "waited" not in msg
    assert not ray.is_initialized()
