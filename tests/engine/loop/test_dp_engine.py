"""Offline data parallelism: LLM(..., data_parallel_size=N).generate spreads prompts over N
replicas (each its own worker processes and gloo world) and keeps the output order; greedy tokens
equal HF's and the single engine's."""

import pytest

from engine import LLM, SamplingParams
from engine.config import EngineConfig
from engine.loop.replicas import replica_config
from tests.engine.oracle import hf_greedy, make_prompts
from tests.engine.tiny_models import make_llama

NEW = 8


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    path = make_llama(tmp_path_factory.mktemp("dp-llama"))
    prompts = make_prompts(path, lengths=(5, 17, 9, 12, 3, 21))
    return path, prompts, hf_greedy(path, prompts, NEW)


def run(path, prompts, **kw):
    llm = LLM(str(path), kv_cache_space_gib=0.02, dtype="float32", block_size=4, **kw)
    try:
        outs = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=NEW,
                                                    ignore_eos=True), use_tqdm=False)
        replicas = getattr(llm.engine, "replicas", [llm.engine])
        facts = {"prompt_tokens": [e.stats()["prompt_tokens_total"] for e in replicas],
                 "ports": [getattr(e.executor, "master_port", None) for e in replicas],
                 "pids": {p.pid for e in replicas for p in getattr(e.executor, "procs", [])}}
        return [o.outputs[0].token_ids for o in outs], facts
    finally:
        llm.shutdown()


@pytest.mark.parametrize("pp", [1, 2])
def test_dp2_on_mp_matches_hf_and_spreads_prompts(llama, pp):
    path, prompts, ref = llama
    tokens, facts = run(path, prompts, data_parallel_size=2, pipeline_parallel_size=pp)
    assert tokens == ref
    # The check sees DP: both replicas prefilled prompts, each in its own world and processes.
    assert all(facts["prompt_tokens"]), f"prompts not spread: {facts['prompt_tokens']}"
    assert sum(facts["prompt_tokens"]) == sum(map(len, prompts))
    assert len(set(facts["ports"])) == 2, "two replicas' gloo worlds share a rendezvous port"
    assert len(facts["pids"]) == 2 * pp


def test_in_process_replicas_match_hf(llama):
    """--distributed-executor-backend uni: both replicas in this process, stepped together."""
    path, prompts, ref = llama
    tokens, facts = run(path, prompts, data_parallel_size=2, distributed_executor_backend="uni")
    assert tokens == ref and all(facts["prompt_tokens"])


def test_replica_configs():
    cfg = EngineConfig(model="m", data_parallel_size=3)
    assert [replica_config(cfg, r).data_parallel_rank for r in range(3)] == [0, 1, 2]
    assert replica_config(cfg, 1).distributed_executor_backend == "mp"  # own process each
    ray = EngineConfig(model="m", data_parallel_size=2, data_parallel_backend="ray")
    assert replica_config(ray, 0).distributed_executor_backend == "ray"
