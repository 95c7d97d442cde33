"""The MoE bench model's shape (without writing it: 2 GB) and the bench's MoE reporting."""

from transformers import Qwen3MoeConfig

from bench.cli import _layout
from bench.moe_model import CONFIG, default_dir
from bench.throughput import _summary
from engine.model_config import model_config_from_hf
from engine.model_params import num_active_params


def test_bench_moe_is_a_half_billion_parameter_qwen3_moe_in_the_cache():
    cfg = Qwen3MoeConfig(**CONFIG).to_dict()
    cfg["architectures"] = ["Qwen3MoeForCausalLM"]
    m = model_config_from_hf(cfg)
    assert m.is_moe and m.num_experts == 64 and m.num_experts_per_tok == 8
    assert 0.45e9 < m.num_params < 0.6e9
    assert num_active_params(m) < m.num_params / 4
    assert default_dir().name == "qwen3-moe-0.5b-random"


def test_expert_imbalance_is_summarised_over_rounds():
    runs = [{"batched_s": 2.0, "single_s": 1.0, "load_s": 1.0, "peak_rss_mib": 1.0,
             "rss_growth_per_request_mib": 0.1, "expert_tokens": {0: 30, 1: 10},
             "expert_imbalance": 1.5},
            {"batched_s": 2.0, "single_s": 1.0, "load_s": 1.0, "peak_rss_mib": 1.0,
             "rss_growth_per_request_mib": 0.1, "expert_tokens": {0: 20, 1: 20},
             "expert_imbalance": 1.0}]
    res = _summary(runs, prompt_toks=10, out_toks=10, skip_hf=True)
    assert res["expert_imbalance"]["max"] == 1.5 and res["expert_imbalance"]["min"] == 1.0


def test_layouts_pass_vllm_names_and_leave_uni_untouched():
    assert _layout(1, False, None) == {}
    assert _layout(2, True, None) == {"tensor_parallel_size": 2, "enable_expert_parallel": True,
                                      "distributed_executor_backend": "mp"}
    assert _layout(2, False, "ray")["distributed_executor_backend"] == "ray"
