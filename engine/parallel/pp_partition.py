"""Which contiguous layers each pipeline stage owns (pure)."""

from onenode.errors import ConfigError

PARTITION_ENV = "ONENODE_PP_LAYER_PARTITION"


def pp_layer_partition(num_layers: int, pp: int, override: str | None = None) -> list[int]:
    """Layers per stage. vLLM's rule: L // P each, the remainder one layer each to the stages from
    the second-to-last backwards, so the last stage (which also holds the LM head) keeps the smaller
    share: 32 layers / 3 -> [11, 11, 10]. `override` is "10,10,10"-style text."""
    if override:
        return _parse_override(num_layers, pp, override)
    if pp > num_layers:
        raise ConfigError(
            f"pipeline_parallel_size={pp} exceeds the model's {num_layers} layers; "
            f"use at most {num_layers} stages")
    parts = [num_layers // pp] * pp
    remainder = num_layers % pp
    for i in range(remainder):
        parts[pp - 2 - i if pp > 1 else 0] += 1
    return parts


def _parse_override(num_layers: int, pp: int, text: str) -> list[int]:
    try:
        parts = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise ConfigError(f"pp layer partition {text!r} must be comma-separated integers, "
                          f"e.g. {','.join(map(str, pp_layer_partition(num_layers, pp)))}") from None
    if len(parts) != pp:
        raise ConfigError(f"pp layer partition {text!r} has {len(parts)} parts but "
                          f"pipeline_parallel_size={pp}; give exactly {pp} numbers")
    if sum(parts) != num_layers or min(parts) < 1:
        raise ConfigError(f"pp layer partition {text!r} must sum to the model's {num_layers} "
                          f"layers with every stage >= 1 (it sums to {sum(parts)})")
    return parts


def stage_layer_range(partition: list[int], stage: int) -> tuple[int, int]:
    """[start, end) global layer indices of `stage`."""
    start = sum(partition[:stage])
    return start, start + partition[stage]
