"""Prefill attention for many sequences in one SDPA call ("varlen" prefill): the step's prefill
sequences padded into one batch [S, heads, rows, head_dim], planned once per step and shared by
every layer (engine/layers/attention.py runs it).

A batch has one of two layouts, whichever costs less work:
- aligned: each query sits in the row of its position (rows = keys). Without a sliding window
  this is plain causal attention (`is_causal`: no mask tensor, the kernels skip the blocks above
  the diagonal). A sequence with a cached prefix also computes its prefix rows, then drops them.
- top: each sequence's queries fill rows 0..n-1 (rows = the longest query), under an explicit
  mask (engine/layers/prefill_mask.py): the whole rows x keys rectangle, but no prefix rows. It
  wins for short suffixes of long cached prefixes (a prefix-cache hit).
Keys come from the step's new K/V when no sequence of the batch has a cached prefix; otherwise
from the paged cache, by whole blocks (the new K/V are already written there).

Padding and packing are work too, so sequences sorted by length are cut into batches where that
is cheaper (`_cut`, an exact split under a cost model per device type); a lone sequence runs
unpadded, on views. On CUDA, where a launch costs more than most padding, a step is normally one
call. On CPU a call costs ~10 us and packing ~1 us a row, so steps run one call per sequence
except for prompts of a few tokens (measured: docs/performance.md, bench/varlen_prefill.py).
"""

from dataclasses import dataclass, field

import numpy as np
import torch

from engine.layers.attention_metadata import AttentionMetadata
from engine.layers.attention_plan import PrefillSeq
from engine.layers.prefill_mask import prefill_mask
from engine.layers.sliding_window import narrows


@dataclass(frozen=True)
class Costs:
    """Estimated costs, in scores: one query row against one key row, all heads, under a mask."""
    call: float  # one more SDPA call: dispatch, launch, thread start-up
    row: float  # copying one token row into or out of a padded batch (q, k and v, output)
    causal: float  # a score of the rows x keys rectangle under is_causal (blocks above the
    # diagonal skipped): 1/2 at fine block granularity


# CPU: measured on the rig with SmolLM2-135M's heads (bench/varlen_prefill.py; 1 thread: a
# call ~10 us, a score ~25 ns, a row ~1.2 us). Torch's CPU flash kernel skips keys above the
# diagonal only per block of queries (64 or 256 rows), so causal saves little below ~768 rows.
# CUDA: estimates until a GPU measures them: launches ~20 us against ~6 ps a score; a masked
# call leaves the flash kernel, priced as 1/causal = 4x.
COSTS = {"cpu": Costs(call=600, row=50, causal=0.8),
         "cuda": Costs(call=3_000_000, row=300, causal=0.25)}


@dataclass
class PrefillBatch:
    seqs: list[PrefillSeq]
    rows: int  # query rows per sequence
    keys: int  # key rows per sequence
    aligned: bool  # query rows at their positions (causal), else from row 0 (masked)
    q_index: torch.Tensor | None  # [S * rows] token row of each query row; None: one sequence
    out_rows: torch.Tensor | None  # [N] batch rows of the real queries, in token_rows' order
    token_rows: torch.Tensor | None  # [N] their rows in the step, ascending; None: one sequence
    key_index: torch.Tensor | None  # [S * keys] token rows of the keys (nothing cached)
    blocks: torch.Tensor | None  # [S * keys / block_size] cache blocks (a cached prefix)
    lens: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # query_lens, context_lens, offsets
    _masks: dict = field(default_factory=dict)

    @property
    def num_seqs(self) -> int:
        return len(self.seqs)

    def covers(self, num_tokens: int) -> bool:
        """Whether the batch's outputs are the step's every row, in order."""
        return sum(p.end - p.start for p in self.seqs) == num_tokens

    def mask(self, sliding_window: int | None = None) -> torch.Tensor | None:
        """None where `is_causal` says it all; else the [S, 1, rows, keys] bool mask, built once
        per window size and step (layers may differ in window: Gemma alternates)."""
        if not narrows(self.keys, sliding_window):
            sliding_window = None  # a window as long as every context hides nothing
        if self.aligned and sliding_window is None:
            return None
        if sliding_window not in self._masks:
            self._masks[sliding_window] = prefill_mask(*self.lens, self.rows, self.keys,
                                                       sliding_window)
        return self._masks[sliding_window]


def prefill_batches(meta: AttentionMetadata, seqs: list[PrefillSeq],
                    device_type: str) -> list[PrefillBatch]:
    """The step's prefill sequences as padded batches, built by the first layer that asks and
    cached on `meta` (the layers share it)."""
    batches = getattr(meta, "_prefill_batches", None)
    if batches is None:
        costs = COSTS.get(device_type, COSTS["cuda"])
        batches = [_batch(part, meta, costs) for part in _cut(seqs, meta.block_size, costs)]
        meta._prefill_batches = batches
    return batches


def pack_queries(q: torch.Tensor, batch: PrefillBatch) -> torch.Tensor:
    """q [T, h, d] -> [S, h, rows, d] (padding rows hold token row 0: finite, dropped)."""
    return q.index_select(0, batch.q_index).view(batch.num_seqs, batch.rows, *q.shape[1:]) \
        .transpose(1, 2)


def pack_keys(new: torch.Tensor, cache: torch.Tensor | None, batch: PrefillBatch) -> torch.Tensor:
    """The batch's keys (or values) [S, kvh, keys, d]: from the new rows `new` [T, kvh, d], or
    gathered by block from `cache` [kvh, num_blocks, block_size, d]."""
    s = batch.num_seqs
    if batch.key_index is not None:
        return new.index_select(0, batch.key_index).view(s, batch.keys, *new.shape[1:]) \
            .transpose(1, 2)
    kvh, num_blocks = cache.shape[:2]
    return cache.view(kvh, num_blocks, -1).index_select(1, batch.blocks) \
        .view(kvh, s, batch.keys, cache.shape[-1]).transpose(0, 1)


def unpack(out: torch.Tensor, batch: PrefillBatch) -> torch.Tensor:
    """SDPA's [S, h, rows, d] -> the real queries' rows [N, h * d], in token_rows' order."""
    s, h, rows, d = out.shape
    return out.transpose(1, 2).reshape(s * rows, h * d).index_select(0, batch.out_rows)


def _work(s, longest, top, cached, block_size: int, costs: Costs):
    """(estimated cost of one call over `s` sequences whose longest context is `longest` and
    longest query `top`, whether its layout is aligned); elementwise over numpy arrays. A lone
    sequence runs unpadded."""
    keys = np.where(cached, -(-longest // block_size) * block_size, longest)
    aligned = s * keys * keys * costs.causal
    masked = s * top * keys
    rows = np.where(aligned <= masked, keys, top)
    batch = costs.call + np.minimum(aligned, masked) + s * (2 * rows + keys) * costs.row
    lone = costs.call + np.where(cached, top * longest + longest * costs.row,
                                 top * top * costs.causal)
    return np.where(s == 1, lone, batch), (s == 1) & ~cached | (s > 1) & (aligned <= masked)


def _cut(seqs: list[PrefillSeq], block_size: int, costs: Costs) -> list[list[PrefillSeq]]:
    """Sequences sorted by length, cut into runs of least total cost: exact dynamic programming
    over the cut points, each run's last sequence against every possible first one at once."""
    order = sorted(seqs, key=lambda p: (p.length, p.end - p.start))
    new = np.array([p.end - p.start for p in order], dtype=np.float64)
    cached = np.array([p.blocks is not None for p in order])
    best, start = np.zeros(len(order) + 1), [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        top = np.maximum.accumulate(new[j - 1::-1])[::-1]  # top[i]: longest query of i..j-1
        any_cached = np.logical_or.accumulate(cached[j - 1::-1])[::-1]
        cost, _ = _work(j - np.arange(j), order[j - 1].length, top, any_cached, block_size,
                        costs)
        total = best[:j] + cost
        start[j] = int(total.argmin())
        best[j] = total[start[j]]
    runs, j = [], len(order)
    while j > 0:
        runs.append(order[start[j]:j])
        j = start[j]
    return runs[::-1]


def _batch(part: list[PrefillSeq], meta: AttentionMetadata, costs: Costs) -> PrefillBatch:
    """The index tensors that pad `part` into one batch (and take its outputs back)."""
    device, bs = meta.block_tables.device, meta.block_size
    qlens = [p.end - p.start for p in part]
    lens = [p.length for p in part]
    cached = any(p.blocks is not None for p in part)
    aligned = bool(_work(len(part), max(lens), max(qlens), cached, bs, costs)[1])
    if len(part) == 1:  # its rows as they are: no copy in or out
        p = part[0]
        return PrefillBatch(part, qlens[0], lens[0], aligned, None, None, None, None, p.blocks,
                            _tensors(device, qlens, lens, [0]))
    keys = -(-max(lens) // bs) * bs if cached else max(lens)
    rows = keys if aligned else max(qlens)
    offsets = [length - n if aligned else 0 for n, length in zip(qlens, lens)]
    q_index, out_rows, token_rows = [0] * (len(part) * rows), [], []
    for s in sorted(range(len(part)), key=lambda s: part[s].start):  # outputs in step order
        first, p = s * rows + offsets[s], part[s]
        q_index[first:first + qlens[s]] = range(p.start, p.end)
        out_rows += range(first, first + qlens[s])
        token_rows += range(p.start, p.end)
    key_index = blocks = None
    if cached:  # table padding is block 0: finite, and no real query sees it
        index = torch.tensor([p.index for p in part], dtype=torch.long, device=device)
        blocks = meta.block_tables.index_select(0, index)[:, :keys // bs].reshape(-1)
    else:  # fresh prompts: the keys are their own new rows
        key_index = [0] * (len(part) * keys)
        for s, p in enumerate(part):
            key_index[s * keys:s * keys + lens[s]] = range(p.start, p.end)
    as_long = dict(dtype=torch.long, device=device)
    return PrefillBatch(
        part, rows, keys, aligned, torch.tensor(q_index, **as_long),
        torch.tensor(out_rows, **as_long), torch.tensor(token_rows, **as_long),
        None if key_index is None else torch.tensor(key_index, **as_long), blocks,
        _tensors(device, qlens, lens, offsets))


def _tensors(device, *lists) -> tuple[torch.Tensor, ...]:
    return tuple(torch.tensor(x, dtype=torch.long, device=device) for x in lists)
