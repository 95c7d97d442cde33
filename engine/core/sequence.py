"""Sequence: one generated continuation of a prompt (a request with n=2 has two)."""

import enum
from dataclasses import dataclass, field

from engine.sampling_params import SamplingParams


class SeqStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(eq=False)
class Sequence:
    seq_id: int
    request_id: str
    index: int
    prompt_token_ids: list[int]
    params: SamplingParams
    arrival: float = 0.0
    status: SeqStatus = SeqStatus.WAITING
    output_token_ids: list[int] = field(default_factory=list)
    num_computed_tokens: int = 0  # tokens whose KV is in the cache
    block_table: list[int] = field(default_factory=list)
    num_cached_tokens: int = 0  # prefix-cache hits at the last admission
    finish_reason: str | None = None
    stop_reason: int | str | None = None
    # Steps scheduled whose output has not come back yet. Under pipeline parallelism a prompt's
    # chunks may be in flight together (the stages run steps in order, so chunk 2 finds chunk 1's
    # KV); anything that samples waits for its previous step.
    in_flight: int = 0

    @property
    def all_token_ids(self) -> list[int]:
        return self.prompt_token_ids + self.output_token_ids

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_token_ids) + len(self.output_token_ids)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def is_finished(self) -> bool:
        return self.status is SeqStatus.FINISHED

    @property
    def num_uncomputed(self) -> int:
        return self.num_tokens - self.num_computed_tokens
