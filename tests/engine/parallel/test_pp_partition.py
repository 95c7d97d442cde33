import pytest

from engine.parallel.pp_partition import pp_layer_partition, stage_layer_range
from onenode.errors import ConfigError


@pytest.mark.parametrize("layers, pp, parts", [
    (32, 1, [32]), (32, 2, [16, 16]), (32, 3, [11, 11, 10]), (30, 4, [7, 8, 8, 7]),
    (30, 7, [4, 4, 4, 4, 5, 5, 4]), (5, 5, [1, 1, 1, 1, 1]),
])
def test_vllm_rule_remainder_before_the_last_stage(layers, pp, parts):
    assert pp_layer_partition(layers, pp) == parts
    assert sum(parts) == layers


def test_more_stages_than_layers_names_the_limit():
    with pytest.raises(ConfigError, match="use at most 4 stages"):
        pp_layer_partition(4, 5)


def test_override():
    assert pp_layer_partition(30, 3, "10, 12,8") == [10, 12, 8]
    with pytest.raises(ConfigError, match="give exactly 3 numbers"):
        pp_layer_partition(30, 3, "15,15")
    with pytest.raises(ConfigError, match="must sum to the model's 30 layers"):
        pp_layer_partition(30, 2, "10,10")
    with pytest.raises(ConfigError, match="comma-separated integers, e.g. 15,15"):
        pp_layer_partition(30, 2, "a,b")


def test_stage_layer_range():
    parts = [11, 11, 10]
    assert [stage_layer_range(parts, s) for s in range(3)] == [(0, 11), (11, 22), (22, 32)]
