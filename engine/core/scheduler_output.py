"""What one engine step sends to the workers and what comes back.

These are the only objects that cross the executor seam each step, so they are plain data that
pickles small: no tensors, no tokenizer. A sequence's whole state (block table, outputs, prompt,
params) is sent only when it is (re)scheduled; afterwards each step carries its delta (new blocks,
new output tokens), and every worker rebuilds the whole state (engine/worker/seq_states.py).
"""

from dataclasses import dataclass, field

from engine.sampling_params import SamplingParams


@dataclass(slots=True)
class ScheduledSeq:
    seq_id: int
    token_ids: list[int]  # tokens whose KV is computed this step (prefill chunk or 1 decode token)
    start_pos: int  # tokens of this sequence already in the KV cache (their positions precede)
    block_table: list[int]  # physical block ids covering positions [0, start_pos + len(token_ids))
    sample: bool  # True when this step reaches the end of known tokens: sample the next token
    params: SamplingParams | None  # None in a delta: the worker kept it
    # Tokens generated so far; needed on the last stage for repetition penalty and as the seed
    # offset that keeps seeded sampling independent of batch composition.
    output_token_ids: list[int] = field(default_factory=list)
    prompt_token_ids: list[int] | None = None  # only sent when repetition_penalty != 1
    # False for a delta: block_table holds only the blocks appended and output_token_ids only the
    # tokens generated since this sequence was last sent; params and prompt are omitted.
    full: bool = True
    # Tokens the sampler must not pick this step: EOS and stop ids while min_tokens is unmet.
    banned_token_ids: list[int] | None = None
    # Structured output: the grammar's allowed next tokens (xgrammar's int32 bitmask as bytes),
    # computed by the engine, which sees every accepted token; None when unconstrained.
    grammar_bitmask: bytes | None = None
    # The sequence's known tokens (prompt + generated) when scheduled: length-dependent rope
    # (dynamic, longrope) picks its frequencies by it. 0: start_pos + len(token_ids).
    context_len: int = 0


@dataclass(slots=True)
class SchedulerOutput:
    seqs: list[ScheduledSeq]
    step_id: int = 0
    finished_seq_ids: list[int] = field(default_factory=list)  # workers may drop their state
    # Preempted since the last step: their blocks are gone, workers drop their state; they come
    # back (possibly in this very step) with their full state.
    preempted_seq_ids: list[int] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return sum(len(s.token_ids) for s in self.seqs)

    @property
    def is_empty(self) -> bool:
        return not self.seqs


@dataclass(slots=True)
class SampledToken:
    token_id: int
    logprob: float | None = None
    top_logprobs: dict[int, float] | None = None


@dataclass(slots=True)
class ModelRunnerOutput:
    """Only the last pipeline stage's first TP rank returns one; others return None."""
    sampled: dict[int, SampledToken]  # seq_id -> token, for seqs with sample=True
