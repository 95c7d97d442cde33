"""Which keys each query row of a padded prefill batch may see.

A batch holds S sequences, each with `rows` query rows and `keys` key rows (keys are positions
0, 1, ... of its context). Sequence s has query_lens[s] new tokens, the last ones of a context of
context_lens[s] tokens; its first query sits at row offsets[s]. So the query in row r holds
position p = context_len - query_len + (r - offset), and it sees key k iff 0 <= p - k < W
(HF's sliding-window rule; W is unbounded without a window). Real rows therefore never see a
padding key (k >= context_len > p).

Rows outside [offset, offset + query_len) are padding: they see key 0 only. Their output is
dropped, but a row that sees no key at all gives NaN in some SDPA kernels (CUDA's, older CPU
ones), and a NaN row can poison a later reduction; key 0 always exists and is finite.
"""

import torch

from engine.layers.sliding_window import visible


def prefill_mask(query_lens: torch.Tensor, context_lens: torch.Tensor, offsets: torch.Tensor,
                 rows: int, keys: int, sliding_window: int | None = None) -> torch.Tensor:
    """[S, 1, rows, keys] bool, True where the key is visible. The length tensors are [S] longs
    on the batch's device."""
    if sliding_window is not None and sliding_window < 1:
        raise ValueError(f"sliding_window must be >= 1, got {sliding_window}")
    device = query_lens.device
    r = torch.arange(rows, device=device).view(1, rows)
    first, n = offsets.view(-1, 1), query_lens.view(-1, 1)
    q_pos = context_lens.view(-1, 1) - n + (r - first)  # [S, rows]
    k = torch.arange(keys, device=device)
    seen = visible(q_pos, k, sliding_window)  # [S, rows, keys]: the rule of sliding_window.py
    real = ((r >= first) & (r < first + n)).unsqueeze(-1)
    return torch.where(real, seen, k == 0).unsqueeze(1)
