"""Which cache blocks each query reads, built once per step and shared by every layer.

Decode rows (one new token) either go all at once to the in-place CPU kernel (engine/kernels:
block tables and lengths, nothing gathered), or, for the PyTorch path, are sorted by context length
and cut into buckets of `DECODE_BUCKET_SEQS` sequences; a bucket pads only to its own longest
context, so a batch of mixed lengths wastes little. Prefill sequences keep their own rows; one
without a cached prefix needs no cache read at all (its keys are the new tokens themselves).
engine/layers/varlen_prefill.py pads them into batches of one attention call each.
"""

from dataclasses import dataclass, field

import torch

from engine.layers.attention_metadata import AttentionMetadata
from engine.layers.sliding_window import narrows, visible

DECODE_BUCKET_SEQS = 16


@dataclass(frozen=True)
class DecodeBucket:
    rows: torch.Tensor  # [n] query rows (token indices) of this bucket's sequences
    blocks: torch.Tensor  # [n * nb] block ids, each sequence padded to nb blocks
    num_seqs: int
    width: int  # nb * block_size keys per sequence
    lens: list[int]  # context lengths, ascending
    _masks: dict = field(default_factory=dict, repr=False, compare=False)

    def mask(self, window: int | None = None) -> torch.Tensor | None:
        """[n, 1, 1, width] True where the sequence's newest query sees a key (it exists, and
        lies within `window`); None: it sees every key. Built once per step and window, and
        shared by the layers that have that window."""
        if not narrows(self.lens[-1], window):
            window = None
            if self.lens[0] == self.width:
                return None
        if window not in self._masks:
            device = self.blocks.device
            newest = torch.tensor(self.lens, device=device) - 1
            keys = torch.arange(self.width, device=device)
            self._masks[window] = visible(newest, keys, window)[:, None, None]
        return self._masks[window]


@dataclass(frozen=True)
class DecodeBatch:
    """Every decode row of the step, for the kernel that reads the cache in place."""
    rows: torch.Tensor | None  # [n] query rows; None: the step's rows are exactly these, in order
    tables: torch.Tensor  # [n, max_blocks] block tables of those sequences
    lens: torch.Tensor  # [n] context lengths


@dataclass(frozen=True)
class PrefillSeq:
    index: int  # the sequence's place in the step
    start: int  # query rows [start, end)
    end: int
    length: int  # keys: cached prefix + new tokens
    blocks: torch.Tensor | None  # block ids to gather; None when nothing was cached before


@dataclass(frozen=True)
class AttentionPlan:
    decode: list[DecodeBucket]  # the PyTorch path's buckets (empty when `batch` is set)
    prefill: list[PrefillSeq]
    batch: DecodeBatch | None = None  # the in-place kernel's input


def attention_plan(meta: AttentionMetadata, in_place: bool = False,
                   rebuild: bool = False) -> AttentionPlan:
    """The plan for this step, built by the first layer that asks and cached on `meta`.
    `in_place`: decode rows go to the in-place kernel as one batch instead of buckets.
    `rebuild`: replace the cached plan (the in-place kernel failed mid-step)."""
    plan = None if rebuild else getattr(meta, "_plan", None)
    if plan is None:
        decode, prefill = [], []
        qsl = meta.query_start_loc
        for s, length in enumerate(meta.seq_lens):
            if qsl[s + 1] - qsl[s] == 1 and length > 1:
                decode.append(s)
            else:
                prefill.append(_prefill_seq(meta, s))
        if in_place and decode:
            plan = AttentionPlan([], prefill, _decode_batch(meta, decode))
        else:
            plan = AttentionPlan(_decode_buckets(meta, decode), prefill)
        meta._plan = plan
    return plan


def _prefill_seq(meta: AttentionMetadata, s: int) -> PrefillSeq:
    start, end = meta.query_start_loc[s], meta.query_start_loc[s + 1]
    length = meta.seq_lens[s]
    blocks = None
    if length > end - start:
        blocks = meta.block_tables[s, :-(-length // meta.block_size)]
    return PrefillSeq(s, start, end, length, blocks)


def _decode_buckets(meta: AttentionMetadata, seqs: list[int]) -> list[DecodeBucket]:
    seqs = sorted(seqs, key=lambda s: meta.seq_lens[s])
    device = meta.block_tables.device
    buckets = []
    for i in range(0, len(seqs), DECODE_BUCKET_SEQS):
        part = seqs[i:i + DECODE_BUCKET_SEQS]
        lens = [meta.seq_lens[s] for s in part]
        nb = -(-lens[-1] // meta.block_size)
        width = nb * meta.block_size
        index = torch.tensor(part, dtype=torch.long, device=device)
        # Table padding is block 0: finite data, masked out by DecodeBucket.mask.
        blocks = meta.block_tables.index_select(0, index)[:, :nb].reshape(-1)
        rows = torch.tensor([meta.query_start_loc[s] for s in part], dtype=torch.long,
                            device=device)
        buckets.append(DecodeBucket(rows, blocks, len(part), width, lens))
    return buckets


def _decode_batch(meta: AttentionMetadata, seqs: list[int]) -> DecodeBatch:
    device = meta.block_tables.device
    lens = torch.tensor([meta.seq_lens[s] for s in seqs], dtype=torch.long, device=device)
    if len(seqs) == meta.num_seqs:  # a decode-only step: no row selection at all
        return DecodeBatch(None, meta.block_tables, lens)
    index = torch.tensor(seqs, dtype=torch.long, device=device)
    rows = torch.tensor([meta.query_start_loc[s] for s in seqs], dtype=torch.long, device=device)
    return DecodeBatch(rows, meta.block_tables.index_select(0, index), lens)
