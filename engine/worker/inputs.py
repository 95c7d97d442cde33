"""Turn a SchedulerOutput into model inputs: flat token ids, positions, and attention metadata."""

from dataclasses import dataclass

import torch

from engine.core.scheduler_output import SchedulerOutput
from engine.layers.attention_metadata import AttentionMetadata


@dataclass
class ModelInputs:
    input_ids: torch.Tensor  # [T]
    positions: torch.Tensor  # [T]
    meta: AttentionMetadata
    sample_indices: torch.Tensor  # [N] index into T of each sampled sequence's last token
    sample_seqs: list  # the ScheduledSeqs being sampled, in the same order


def prepare_inputs(out: SchedulerOutput, block_size: int, device) -> ModelInputs:
    ids: list[int] = []
    positions: list[int] = []
    slots: list[int] = []
    qsl = [0]
    seq_lens: list[int] = []
    rope_lens: list[int] = []
    sample_idx: list[int] = []
    sample_seqs = []
    for s in out.seqs:
        n = len(s.token_ids)
        ids.extend(s.token_ids)
        pos = range(s.start_pos, s.start_pos + n)
        positions.extend(pos)
        table = s.block_table
        slots.extend(table[p // block_size] * block_size + p % block_size for p in pos)
        qsl.append(qsl[-1] + n)
        seq_lens.append(s.start_pos + n)
        rope_lens.extend([max(s.context_len, s.start_pos + n)] * n)
        if s.sample:
            sample_idx.append(qsl[-1] - 1)
            sample_seqs.append(s)
    width = max(len(s.block_table) for s in out.seqs)
    tables = [s.block_table + [0] * (width - len(s.block_table)) for s in out.seqs]
    as_long = dict(dtype=torch.long, device=device)
    meta = AttentionMetadata(
        slot_mapping=torch.tensor(slots, **as_long), query_start_loc=qsl, seq_lens=seq_lens,
        block_tables=torch.tensor(tables, **as_long), block_size=block_size,
        rope_lens=torch.tensor(rope_lens, **as_long))
    return ModelInputs(torch.tensor(ids, **as_long), torch.tensor(positions, **as_long), meta,
                       torch.tensor(sample_idx, **as_long), sample_seqs)


def dummy_inputs(num_tokens: int, num_seqs: int, block_size: int, device) -> ModelInputs:
    """A no-cache prefill batch of `num_tokens` split over `num_seqs` sequences, for profiling
    peak activation memory before the KV cache exists."""
    per = max(1, num_tokens // num_seqs)
    lens = [per] * num_seqs
    lens[-1] += num_tokens - per * num_seqs
    qsl = [0]
    for n in lens:
        qsl.append(qsl[-1] + n)
    positions = torch.cat([torch.arange(n) for n in lens]).to(device)
    meta = AttentionMetadata(
        slot_mapping=torch.zeros(num_tokens, dtype=torch.long, device=device), query_start_loc=qsl,
        seq_lens=lens, block_tables=torch.zeros(num_seqs, 1, dtype=torch.long, device=device),
        block_size=block_size, no_cache=True)
    last = torch.tensor([q - 1 for q in qsl[1:]], dtype=torch.long, device=device)
    return ModelInputs(torch.zeros(num_tokens, dtype=torch.long, device=device), positions, meta,
                       last, [])
