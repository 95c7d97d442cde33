import json

import pytest

from engine.generation_config import default_sampling_values
from onenode.errors import ConfigError


def test_auto_reads_the_models_recommended_values(tmp_path):
    (tmp_path / "generation_config.json").write_text(json.dumps(
        {"temperature": 0.6, "top_p": 0.9, "top_k": 0, "max_new_tokens": 64, "bos_token_id": 1}))
    assert default_sampling_values("auto", tmp_path) == {"temperature": 0.6, "top_p": 0.9,
                                                         "top_k": -1, "max_tokens": 64}


def test_vllm_and_missing_file_mean_no_defaults(tmp_path):
    (tmp_path / "generation_config.json").write_text(json.dumps({"temperature": 0.6}))
    assert default_sampling_values("vllm", tmp_path) == {}
    assert default_sampling_values("auto", tmp_path / "nothing-here") == {}


def test_a_directory_setting_and_a_bad_one(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "generation_config.json").write_text(json.dumps({"repetition_penalty": 1.1}))
    assert default_sampling_values(str(other), tmp_path) == {"repetition_penalty": 1.1}
    with pytest.raises(ConfigError, match="not a directory"):
        default_sampling_values(str(tmp_path / "missing"), tmp_path)


def test_llm_takes_defaults_from_generation_config_and_caps_logprobs(tmp_path):
    from engine import LLM, SamplingParams
    from tests.engine.oracle import hf_greedy, make_prompts
    from tests.engine.tiny_models import make_llama

    path = make_llama(tmp_path)
    # The model's authors ask for greedy decoding of at most 5 tokens.
    (path / "generation_config.json").write_text(json.dumps(
        {"temperature": 0.0, "max_new_tokens": 5, "eos_token_id": 2}))
    prompts = make_prompts(path, lengths=(6,))
    llm = LLM(str(path), dtype="float32", kv_cache_space_gib=0.01, max_logprobs=2)
    try:
        defaults = llm.get_default_sampling_params()
        assert (defaults.temperature, defaults.max_tokens) == (0.0, 5)
        out = llm.generate(prompts, use_tqdm=False)[0].outputs[0]
        hf = hf_greedy(path, prompts, 5)[0]
        assert out.token_ids == hf[:len(out.token_ids)] and len(out.token_ids) <= 5
        with pytest.raises(ConfigError, match="max_logprobs=2"):
            llm.generate(prompts, SamplingParams(logprobs=3), use_tqdm=False)
    finally:
        llm.shutdown()
