"""TP x PP over real torch.distributed (gloo; NCCL where there are GPUs): greedy tokens equal HF
for every shape, with the mp backend and with ray on a local Ray instance."""

import pytest

from engine import LLM, SamplingParams
from tests.engine.oracle import hf_greedy, make_prompts
from tests.engine.tiny_models import make_gpt2, make_llama, make_opt

NEW = 10
SHAPES = [(2, 1), (1, 2), (1, 3), (2, 2)]


@pytest.fixture(scope="module")
def llama5(tmp_path_factory):
    """5 layers: PP=3 splits them unevenly (2, 2, 1)."""
    path = make_llama(tmp_path_factory.mktemp("llama5"), num_layers=5)
    prompts = make_prompts(path, lengths=(5, 23, 12))
    return path, prompts, hf_greedy(path, prompts, NEW)


def run(path, prompts, **kw):
    llm = LLM(str(path), kv_cache_space_gib=0.05, dtype="float32", **kw)
    try:
        outs = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=NEW,
                                                    ignore_eos=True), use_tqdm=False)
        return [o.outputs[0].token_ids for o in outs], llm.engine
    finally:
        llm.shutdown()


@pytest.mark.parametrize("tp,pp", SHAPES)
def test_mp_matches_hf(llama5, tp, pp):
    path, prompts, ref = llama5
    tokens, engine = run(path, prompts, tensor_parallel_size=tp, pipeline_parallel_size=pp,
                         distributed_executor_backend="mp")
    assert engine.backend == "mp"
    assert tokens == ref


@pytest.mark.gpu
@pytest.mark.parametrize("tp,pp", [(1, 1), *SHAPES])  # (1, 1): mp and NCCL on one GPU
def test_mp_on_cuda_matches_hf(llama5, tp, pp):
    """NCCL and the Triton decode kernel on every rank, against HF on the same GPU."""
    import torch

    if torch.cuda.device_count() < tp * pp:
        pytest.skip(f"needs {tp * pp} CUDA devices")
    path, prompts, _ = llama5
    tokens, _ = run(path, prompts, tensor_parallel_size=tp, pipeline_parallel_size=pp,
                    distributed_executor_backend="mp", device="cuda",
                    gpu_memory_utilization=0.3)
    assert tokens == hf_greedy(path, prompts, NEW, device="cuda")


def test_uneven_partition_and_override(llama5):
    path, prompts, ref = llama5
    _, engine = run(path, prompts[:1], pipeline_parallel_size=3,
                    distributed_executor_backend="mp")
    assert engine.config.validate_against(engine.model_config) == [2, 2, 1]
    tokens, _ = run(path, prompts, pipeline_parallel_size=3, distributed_executor_backend="mp",
                    pp_layer_partition="1,1,3")
    assert tokens == ref


@pytest.mark.parametrize("maker", [make_gpt2, make_opt], ids=["gpt2", "opt"])
def test_other_families_tp2_pp2(tmp_path, maker):
    path = maker(tmp_path, num_layers=2)
    prompts = make_prompts(path, lengths=(7, 19))
    tokens, _ = run(path, prompts, tensor_parallel_size=2, pipeline_parallel_size=2,
                    distributed_executor_backend="mp")
    assert tokens == hf_greedy(path, prompts, NEW)


def test_kv_heads_replicated_when_tp_exceeds_them(tmp_path):
    """One KV head, TP=2: each rank holds a copy of it beside its own query heads."""
    path = make_llama(tmp_path, num_layers=2, heads=4, kv_heads=1)
    prompts = make_prompts(path, lengths=(6, 21))
    tokens, _ = run(path, prompts, tensor_parallel_size=2, distributed_executor_backend="mp")
    assert tokens == hf_greedy(path, prompts, NEW)


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=4, include_dashboard=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("tp,pp", [(1, 2), (2, 2)])
def test_ray_matches_hf(llama5, local_ray, tp, pp):
    path, prompts, ref = llama5
    tokens, engine = run(path, prompts, tensor_parallel_size=tp, pipeline_parallel_size=pp,
                         distributed_executor_backend="ray")
    assert engine.backend == "ray"
    assert tokens == ref


@pytest.mark.slow
def test_ray_insufficient_resources_lists_nodes(llama5, local_ray, monkeypatch):
    import engine.executor.ray as ray_exec
    from onenode.errors import ResourceError

    monkeypatch.setattr(ray_exec, "WAIT_S", 2.0)
    path, prompts, _ = llama5
    with pytest.raises(ResourceError) as err:
        run(path, prompts, tensor_parallel_size=1, pipeline_parallel_size=5,
            distributed_executor_backend="ray")
    msg = str(err.value)
    assert "needs 5 CPUs" in msg and "missing 1" in msg
    assert "No available node types" not in msg
