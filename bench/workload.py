"""The seeded benchmark workload shared by every bench (pure)."""

import random
from dataclasses import dataclass

from onenode.errors import ConfigError


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


@dataclass(frozen=True, slots=True)
class Profile:
    """A named workload: its shape and the sampling settings every request uses (the keyword
    names are SamplingParams', the same in onenode and vLLM)."""
    name: str
    prompt_len: tuple[int, int]
    output_len: tuple[int, int]
    sampling: tuple[tuple[str, float], ...] = (("temperature", 0.0),)
    num_requests: int = 64

    @property
    def sampling_kwargs(self) -> dict:
        return dict(self.sampling)

    @property
    def greedy(self) -> bool:
        return self.sampling_kwargs.get("temperature", 1.0) == 0.0


PROFILES = {p.name: p for p in (
    Profile("default", (32, 512), (16, 128)),
    Profile("chat", (32, 512), (64, 512),
            (("temperature", 0.7), ("top_p", 0.9), ("top_k", 50))),
    Profile("long-prompt", (2048, 4096), (16, 64), num_requests=16),
    Profile("long-output", (32, 256), (1024, 2048), num_requests=16),
    Profile("penalties", (32, 512), (16, 128),
            (("temperature", 0.0), ("repetition_penalty", 1.2), ("frequency_penalty", 0.5))),
)}


def profile_workload(name: str, vocab_size: int, num_requests: int | None = None,
                     seed: int = 0) -> tuple[Profile, list[BenchRequest]]:
    if name not in PROFILES:
        raise ConfigError(f"unknown workload profile {name!r}; use one of {', '.join(PROFILES)}")
    p = PROFILES[name]
    return p, make_workload(num_requests or p.num_requests, p.prompt_len, p.output_len,
                            vocab_size, seed)
