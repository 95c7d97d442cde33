"""Per-step attention metadata: where each new token's K/V goes and what each query may see.

Tokens of all scheduled sequences are flattened into one batch of T tokens (sequence after
sequence). Sequence s owns query tokens [query_start_loc[s], query_start_loc[s+1]) whose
positions are start_pos[s] .. seq_lens[s]-1; it attends to its cached tokens plus its own new
tokens causally.
"""

from dataclasses import dataclass

import torch


@dataclass
class AttentionMetadata:
    slot_mapping: torch.Tensor  # [T] long: block_id * block_size + offset for each new token
    query_start_loc: list[int]  # [S+1] cumulative query lengths
    seq_lens: list[int]  # [S] total tokens (cached + new) per sequence after this step
    block_tables: torch.Tensor  # [S, max_blocks] long, padded with 0
    block_size: int
    # Only for the profiling / no-cache path: when the cache is not allocated yet.
    no_cache: bool = False
    # [T] long: the length of each token's sequence (its known tokens when scheduled), by which
    # length-dependent rope (dynamic, longrope) picks frequencies; None: each token's position + 1.
    rope_lens: torch.Tensor | None = None

    @property
    def num_seqs(self) -> int:
        return len(self.seq_lens)

    @property
    def query_lens(self) -> list[int]:
        q = self.query_start_loc
        return [q[i + 1] - q[i] for i in range(len(q) - 1)]

    @property
    def is_decode_only(self) -> bool:
        return all(n == 1 for n in self.query_lens)
