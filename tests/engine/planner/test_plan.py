import math

import pytest

from engine.core import kv_blocks
from engine.core.kv_blocks import GiB
from engine.model_config import model_config_from_hf
from engine.parallel.pp_partition import pp_layer_partition
from engine.planner.known_models import KNOWN_MODELS, known_model
from tests.engine.planner.test_known_models import skip_until_supported
from engine.planner.plan import PlanRequest, cpu_kv_blocks, make_plan
from engine.planner.strategy import ClusterShape
from onenode.errors import ConfigError


def request(name, nodes, gpus, mem_gib, **kw):
    hub_id, cfg = known_model(name)
    return PlanRequest(model=model_config_from_hf(cfg), model_name=hub_id,
                       cluster=ClusterShape(nodes, gpus, mem_gib * GiB), **kw)


def test_seed_example_two_nodes_of_eight_gpus_is_tp8_pp2():
    """Llama-2-70B (fp16) on 2 nodes x 8 x 16 GiB: a node's 8 x 16 GiB cannot hold 138 GB."""
    plan = make_plan(request("Llama-2-70B", 2, 8, 16))
    assert (plan.strategy, plan.tensor_parallel_size, plan.pipeline_parallel_size) == \
        ("tp+pp", 8, 2)
    assert plan.pp_layer_partition == [40, 40] and plan.nodes_used == 2 and plan.fits
    # By hand (h=8192, i=28672, 64 heads of 128, 8 KV heads, vocab 32000, fp16):
    layer = 8192 * 1024 + 2 * 8192 * 128 + 1024 * 8192 + 3 * 8192 * 28672 // 8 + 4 * 8192
    weights = (40 * layer + 8192 + 32000 * 8192 // 8) * 2  # last stage: final norm + LM head
    act = 4096 * 2 * (4 * 8192 + 3 * 28672 // 8) + 256 * (32000 // 8) * 4  # 4096 tokens
    avail = 0.9 * 16 * GiB - weights - act - 0.75 * GiB
    block = 2 * 1 * 128 * 2 * 16 * 40  # K+V, one KV head per rank, 16 tokens, 40 layers
    assert plan.weights_bytes_per_gpu == weights == 8624553984
    assert plan.activation_bytes == act and plan.block_bytes == block == 327680
    assert plan.num_gpu_blocks == math.floor(avail / block) == 17307
    assert plan.max_tokens == 17307 * 16
    assert plan.max_concurrency == pytest.approx(17307 * 16 / 4096)
    assert plan.num_cpu_blocks == 4 * GiB // block == 13107


def test_uneven_smollm2_on_two_gpus_is_pp2(monkeypatch):
    """9 heads cannot be split over 2 GPUs: PP = 2 with TP = 1 (the seed's edge case)."""
    monkeypatch.setenv("ONENODE_ALLOW_LONG_MAX_MODEL_LEN", "1")  # 65536 > its 8192 positions
    plan = make_plan(request("SmolLM2-135M", 1, 2, 2, max_model_len=65536))
    assert (plan.strategy, plan.tensor_parallel_size, plan.pipeline_parallel_size) == \
        ("pp", 1, 2)
    assert plan.pp_layer_partition == [15, 15] and plan.fits
    assert "cannot split the 9 attention heads" in plan.reason
    # One GPU is too small for a 65536-token request; the plan says so by choosing PP.
    single = make_plan(request("SmolLM2-135M", 1, 1, 2, max_model_len=65536))
    assert not single.fits


def test_small_model_runs_on_one_gpu():
    plan = make_plan(request("Llama-3-8B", 1, 8, 80))
    # One GPU per replica; the node's other 7 GPUs serve 7 more replicas.
    assert (plan.strategy, plan.data_parallel_size, plan.gpus_used) == ("single", 8, 8)
    # bf16 KV: 2 x 8 KV heads x 128 x 2 bytes x 16 tokens x 32 layers = 2 MiB per block.
    assert plan.block_bytes == 2 << 20 and plan.num_cpu_blocks == 2048
    assert plan.max_model_len == 8192 and plan.max_num_batched_tokens == 8192


def test_tp_is_the_smallest_that_fits():
    plan = make_plan(request("Llama-2-7B", 1, 4, 16))  # 13.5 GB fp16 > one 16 GiB GPU
    assert (plan.strategy, plan.tensor_parallel_size, plan.pipeline_parallel_size) == \
        ("tp", 2, 1)


def test_model_that_does_not_fit_says_so():
    plan = make_plan(request("Llama-2-70B", 1, 1, 80))
    assert not plan.fits and plan.num_gpu_blocks == 0 and plan.max_tokens == 0
    assert "does not fit" in plan.reason


def test_target_tokens_names_the_gpus_needed():
    plan = make_plan(request("Llama-3-8B", 1, 8, 80, target_tokens=1_000_000))
    assert plan.strategy == "single" and plan.max_tokens < 1_000_000
    assert "use 1 more GPU(s) of this cluster -> TP=2 x PP=1" in plan.advice[0]
    more = make_plan(request("Llama-2-70B", 2, 8, 16, target_tokens=500_000))
    assert "add 1 node(s) (8 more GPUs)" in more.advice[0] and "TP=8 x PP=3" in more.advice[0]
    met = make_plan(request("Llama-3-8B", 1, 1, 80, target_concurrency=2))
    assert "reached with the planned layout" in met.advice[0]
    never = make_plan(request("gpt2", 1, 1, 1, target_concurrency=1e9))
    assert "not reachable" in never.advice[0]


def test_cpu_prediction_is_the_engines_formula():
    """The engine logs `# CPU blocks: N` with N = num_kv_blocks(cpu_available_bytes(space),
    bytes_per_block(model, block_size, dtype bytes, tp, pp, partition)) (model_runner.py)."""
    for name, tp, pp, space, block_size in [("SmolLM2-135M", 1, 2, None, 16),
                                            ("Llama-2-70B", 8, 2, 2.5, 32),
                                            ("gpt2", 1, 1, 0.01, 16)]:
        req = request(name, pp, tp, 80, kv_cache_space_gib=space, block_size=block_size)
        model = req.model
        dtype_bytes = 4 if model.torch_dtype == "float32" else 2  # CPU keeps the checkpoint's
        partition = pp_layer_partition(model.num_layers, pp)
        engine = kv_blocks.num_kv_blocks(
            kv_blocks.cpu_available_bytes(space),
            kv_blocks.bytes_per_block(model, block_size, dtype_bytes, tp, pp, partition))
        assert cpu_kv_blocks(model, block_size, dtype_bytes, tp, pp, partition, space) == engine


def test_plan_json_fields():
    data = make_plan(request("Qwen2-7B", 1, 1, 80)).to_dict()
    for key in ("strategy", "tensor_parallel_size", "pipeline_parallel_size", "num_gpu_blocks",
                "max_tokens", "max_concurrency", "reason"):
        assert key in data


def test_bad_requests_name_the_fix():
    with pytest.raises(ConfigError, match="--gpus-per-node"):
        make_plan(request("gpt2", 1, 0, 80))
    with pytest.raises(ConfigError, match="gpu_memory_utilization"):
        make_plan(request("gpt2", 1, 1, 80, gpu_memory_utilization=1.5))
    with pytest.raises(ConfigError, match="max_model_len"):
        make_plan(request("gpt2", 1, 1, 80, max_model_len=4096))  # GPT-2 has 1024 positions


@pytest.mark.parametrize("hub_id", sorted(KNOWN_MODELS))
def test_every_known_model_plans_on_an_8x80_node(hub_id):
    if "DeepSeek" in hub_id:  # 671B in bf16 needs more than one node (test_plan_moe.py)
        pytest.skip("needs more than one node")
    skip_until_supported(hub_id)
    plan = make_plan(request(hub_id, 1, 8, 80))
    assert plan.fits and plan.num_gpu_blocks > 0, hub_id


class _Lines(__import__("logging").Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.mark.parametrize("tp, pp, space", [(1, 1, 0.01), (1, 2, 0.02)])
def test_cpu_prediction_equals_the_engines_logged_cpu_blocks(tmp_path, tp, pp, space):
    """Start the real engine's KV sizing on a tiny checkpoint and compare its `# CPU blocks`
    log line with the plan's prediction for the same settings."""
    pytest.importorskip("engine.model_source")
    pytest.importorskip("engine.models.registry")
    import logging

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from engine.config import EngineConfig
    from engine.loop.engine_setup import EngineSetup

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2, vocab_size=256,
                      max_position_embeddings=256)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path)
    setup = EngineSetup(EngineConfig(model=str(tmp_path), tensor_parallel_size=tp,
                                     pipeline_parallel_size=pp, device="cpu",
                                     kv_cache_space_gib=space))
    handler = _Lines()
    logging.getLogger("onenode.engine").addHandler(handler)
    executor = setup.start_executor()
    try:
        setup.size_kv_cache(executor)
    finally:
        executor.shutdown()
        logging.getLogger("onenode.engine").removeHandler(handler)
    [logged] = [int(line.split(":")[1]) for line in handler.lines if "# CPU blocks" in line]
    plan = make_plan(PlanRequest(model=setup.model_config, model_name=str(tmp_path),
                                 cluster=ClusterShape(1, tp * pp, 80 * GiB),
                                 kv_cache_space_gib=space))
    predicted = cpu_kv_blocks(setup.model_config, 16, 4, tp, pp,
                              pp_layer_partition(4, pp), space)
    assert logged == predicted
    if (plan.tensor_parallel_size, plan.pipeline_parallel_size) == (tp, pp):
        assert plan.num_cpu_blocks == logged


def test_deepseek_v3_bf16_on_two_nodes_of_8x80_says_what_is_missing():
    """The issue's first example: 671B in bf16 (1.22 TiB) exceeds 16 x 72 GiB usable."""
    plan = make_plan(request("DeepSeek-V3", 2, 8, 80))
    assert not plan.fits and plan.num_gpu_blocks == 0
    assert (plan.tensor_parallel_size, plan.pipeline_parallel_size,
            plan.expert_parallel_size) == (8, 2, 8)
    missing, what_fits = plan.advice[:2]
    per_gpu = (math.ceil(163840 / 16) * plan.block_bytes + plan.weights_bytes_per_gpu
               + plan.activation_bytes + plan.non_torch_bytes - 0.9 * 80 * GiB)
    assert missing.startswith(f"Missing: {per_gpu / GiB:.2f} GiB per GPU")
    assert "3 nodes of 8 x 80 GiB (TP=8 x PP=3, EP=8" in what_fits
    assert plan.num_params == pytest.approx(671e9, rel=0.01)


def test_deepseek_v3_on_four_nodes_of_8x141_fits_with_ep():
    """The issue's second example: H200 nodes; PP between nodes, EP=8 inside each, and the
    MLA latent (576 values per token per layer) sets the block size. One replica needs 2 of the
    4 nodes, so the other 2 hold a second data-parallel replica."""
    plan = make_plan(request("DeepSeek-V3", 4, 8, 141))
    assert plan.fits and plan.strategy == "tp+pp+ep"
    assert (plan.tensor_parallel_size, plan.pipeline_parallel_size, plan.expert_parallel_size,
            plan.data_parallel_size, plan.nodes_used) == (8, 2, 8, 2, 4)
    assert plan.block_bytes == (512 + 64) * 2 * 16 * 31
    avail = 0.9 * 141 * GiB - plan.weights_bytes_per_gpu - plan.activation_bytes - 0.75 * GiB
    assert plan.num_gpu_blocks == math.floor(avail / plan.block_bytes) > 10240
    assert "Expert parallelism EP=8" in plan.reason
    speed, wide, fp8 = plan.notes
    assert speed.startswith("Speed: a token reads 37.6B of the 671.0B parameters")
    assert "EP across the nodes instead" in wide and "--tensor-parallel-size 16" in wide
    assert fp8.startswith("Checkpoint: FP8 (128x128 block scales)")
    # Speed uses active parameters: far fewer bytes read per token than held.
    assert plan.active_bytes_per_gpu < plan.weights_bytes_per_gpu / 10


def test_moe_weights_count_every_expert():
    """Qwen3-30B-A3B holds 30.5B parameters though a token reads 3.3B: memory plans the 30.5B."""
    plan = make_plan(request("Qwen3-30B-A3B", 1, 1, 80))
    assert plan.fits and plan.strategy == "single"
    assert plan.weights_bytes_per_gpu == plan.num_params * 2
    assert plan.num_active_params == pytest.approx(3.35e9, rel=0.01)
    assert "no expert parallelism" in plan.reason
