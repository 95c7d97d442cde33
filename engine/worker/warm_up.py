"""Pay first-call costs at load, once, instead of in the user's first `generate`: thread-pool
start-up, kernel selection for each op, rotary tables, allocator growth. One prefill step and one
decode step run through the real cache path on the first blocks, which no sequence owns yet (a
sequence overwrites every slot it reads unmasked)."""

import torch

from engine.layers.attention_metadata import AttentionMetadata

PREFILL = 16


def _meta(slots: list[int], qsl: list[int], seq_lens: list[int], block_size: int,
          device) -> AttentionMetadata:
    width = -(-max(seq_lens) // block_size)
    tables = torch.arange(width, device=device).repeat(len(seq_lens), 1)
    return AttentionMetadata(torch.tensor(slots, device=device), qsl, seq_lens, tables,
                             block_size)


@torch.inference_mode()
def warm_up(model, block_size: int, num_blocks: int, is_first: bool, is_last: bool,
            device) -> None:
    """Runs on every rank at the same time (TP collectives inside the model); stages of a
    pipeline run locally on zeros, as in memory profiling."""
    if num_blocks * block_size <= PREFILL:
        return
    steps = [  # (positions, attention metadata): a 16-token prompt, then two decode rows
        (torch.arange(PREFILL, device=device),
         _meta(list(range(PREFILL)), [0, PREFILL], [PREFILL], block_size, device)),
        (torch.tensor([PREFILL, PREFILL // 2], device=device),
         _meta([PREFILL, PREFILL // 2], [0, 1, 2], [PREFILL + 1, PREFILL // 2 + 1],
               block_size, device)),
    ]
    for positions, meta in steps:
        inter = None
        if not is_first:
            spec = model.intermediate_spec(len(positions))
            inter = {k: torch.zeros(s, dtype=d, device=device) for k, (s, d) in spec.items()}
        out = model(torch.zeros_like(positions), positions, meta, inter)
        if is_last:
            model.compute_logits(out[-1:]).argmax(dim=-1)
