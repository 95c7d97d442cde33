"""vLLM engine-arg names -> EngineConfig: what works, what is refused by name, and typos."""

import pytest

from engine.config import EngineConfig
from engine.vllm_args import UNSUPPORTED, engine_config_from_args, unknown_arg_message


def test_every_engine_config_field_is_accepted_by_name():
    cfg = engine_config_from_args("m", {"tokenizer": "tok", "revision": "v1", "seed": 7,
                                        "enforce_eager": True, "max_logprobs": 5,
                                        "generation_config": "vllm", "tensor_parallel_size": 2})
    assert (cfg.tokenizer, cfg.revision, cfg.seed, cfg.enforce_eager, cfg.max_logprobs,
            cfg.generation_config, cfg.tensor_parallel_size) == ("tok", "v1", 7, True, 5,
                                                                  "vllm", 2)


def test_vllm_defaults_of_unsupported_args_are_accepted():
    cfg = engine_config_from_args("m", {name: off for name, (off, _) in UNSUPPORTED.items()})
    assert cfg == EngineConfig(model="m")
    engine_config_from_args("m", {"trust_remote_code": False, "task": "generate",
                                  "swap_space": 8, "disable_log_stats": True})


@pytest.mark.parametrize("name,value", [("quantization", "awq"), ("enable_lora", True),
                                        ("kv_cache_dtype", "fp8"), ("speculative_config", {})])
def test_unsupported_values_are_one_line_value_errors_naming_the_arg(name, value):
    with pytest.raises(ValueError) as err:
        engine_config_from_args("m", {name: value})
    msg = str(err.value)
    assert msg.startswith(f"{name}={value!r} is not supported by onenode") and "\n" not in msg


def test_trust_remote_code_true_is_refused():
    with pytest.raises(ValueError, match="trust_remote_code=True is not supported"):
        engine_config_from_args("m", {"trust_remote_code": True})


def test_misspelt_arg_is_a_type_error_naming_the_closest():
    with pytest.raises(TypeError) as err:
        engine_config_from_args("m", {"tensor_paralel_size": 2})
    assert str(err.value) == ("LLM() got an unexpected keyword argument 'tensor_paralel_size'; "
                              "did you mean 'tensor_parallel_size'?")
    assert "did you mean 'quantization'" in unknown_arg_message("quantisation")
    assert "docs/vllm_compatibility.md" in unknown_arg_message("zzz_nothing_like_it")


def test_llm_signature_rejects_unknown_before_loading():
    from engine import LLM

    with pytest.raises(TypeError, match="did you mean 'max_model_len'"):
        LLM("/nonexistent/model", max_model_length=64)
