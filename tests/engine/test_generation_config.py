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
