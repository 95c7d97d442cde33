"""The seeded benchmark workload shared by every bench (pure)."""

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BenchRequest:
    prompt_token_ids: tuple[int, ...]
    output_len: int


def make_workload(num_requests: int = 64, prompt_len: tuple[int, int] = (32, 512),
                  output_len: tuple[int, int] = (16, 128), vocab_size: int = 32000,
                  seed: int = 0) -> list[BenchRequest]:
    """Random-token prompts (ids kept clear of the low special-token range) and output lengths,
    identical for every engine compared."""
    rng = random.Random(seed)
    low = min(100, vocab_size // 4)
    reqs = []
    for _ in range(num_requests):
        n = rng.randint(*prompt_len)
        ids = tuple(rng.randrange(low, vocab_size) for _ in range(n))
        reqs.append(BenchRequest(ids, rng.randint(*output_len)))
    return reqs


def total_tokens(reqs: list[BenchRequest]) -> tuple[int, int]:
    return sum(len(r.prompt_token_ids) for r in reqs), sum(r.output_len for r in reqs)
