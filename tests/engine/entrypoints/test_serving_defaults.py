"""`onenode serve` on CPU takes a small step budget unless told otherwise; LLM keeps its own."""

import pytest

from engine.config import EngineConfig
from engine.entrypoints.serving_defaults import (
    CPU_SERVE_MAX_NUM_BATCHED_TOKENS,
    serving_defaults,
)


def test_cpu_serving_gets_the_small_budget():
    config = serving_defaults(EngineConfig(model="m", device="cpu"))
    assert config.max_num_batched_tokens == CPU_SERVE_MAX_NUM_BATCHED_TOKENS


@pytest.mark.parametrize("config", [
    EngineConfig(model="m", device="cpu", max_num_batched_tokens=4096),
    EngineConfig(model="m", device="cuda"),
])
def test_an_explicit_budget_or_another_device_is_left_alone(config):
    assert serving_defaults(config) is config
