"""The absorbed latent attention equals plain attention over expanded per-head K and V, through
the paged cache (prefill, then decode) and without it (the profiling pass)."""

import torch

from engine.layers.attention_metadata import AttentionMetadata
from engine.layers.mla_attention import MLAAttention

H, NOPE, ROPE, RANK, V = 3, 16, 8, 12, 10
BLOCK = 4


def _inputs(n: int, gen: torch.Generator):
    return (torch.randn(n, H, NOPE, generator=gen), torch.randn(n, H, ROPE, generator=gen),
            torch.randn(n, RANK, generator=gen), torch.randn(n, ROPE, generator=gen))


def _expanded(q_nope, q_pe, latent, k_pe, w, scale):
    """HF's form for one sequence: K = [W_UK c, k_pe] and V = W_UV c per head, causal."""
    kv = torch.einsum("hdr,tr->htd", w.view(H, NOPE + V, RANK), latent)
    keys = torch.cat((kv[..., :NOPE], k_pe[None].expand(H, -1, -1)), dim=-1)
    q = torch.cat((q_nope, q_pe), dim=-1).transpose(0, 1)
    scores = (q @ keys.transpose(1, 2)) * scale
    n = q.shape[1]
    scores = scores.masked_fill(torch.ones(n, n).triu(1).bool(), float("-inf"))
    return (scores.softmax(-1) @ kv[..., NOPE:]).transpose(0, 1).reshape(n, -1)


def _meta(slots, qsl, lens, tables, no_cache=False):
    return AttentionMetadata(torch.tensor(slots), qsl, lens, torch.tensor(tables), BLOCK,
                             no_cache=no_cache)


def test_absorbed_equals_expanded_with_and_without_cache():
    gen = torch.Generator().manual_seed(0)
    attn = MLAAttention(H, NOPE, V, RANK, ROPE, scale=0.3)
    w = torch.randn(H * (NOPE + V), RANK, generator=gen) / 4
    lens = (6, 9)
    seqs = [_inputs(n, gen) for n in lens]
    want = [_expanded(*s, w, 0.3) for s in seqs]
    prompt = [torch.cat([s[i][:n - 1] for s, n in zip(seqs, lens)]) for i in range(4)]
    tables = [[2, 0, 0], [5, 1, 3]]  # blocks out of order: the table, not the id, orders keys
    # seq 0: positions 0-3 in block 2, 4 in block 0; seq 1: 0-3 in block 5, 4-7 in block 1
    slots = [8, 9, 10, 11, 0, 20, 21, 22, 23, 4, 5, 6, 7]

    no_cache = attn(*prompt, w, _meta(slots, [0, 5, 13], [5, 8], tables, no_cache=True))
    attn.allocate_cache(6, BLOCK, torch.float32, "cpu")
    cached = attn(*prompt, w, _meta(slots, [0, 5, 13], [5, 8], tables))
    torch.testing.assert_close(no_cache, cached)
    torch.testing.assert_close(cached, torch.cat([want[0][:5], want[1][:8]]))
    assert attn.cache.shape == (6, BLOCK, RANK + ROPE)  # one row per token, no head dimension

    last = [torch.stack([s[i][n - 1] for s, n in zip(seqs, lens)]) for i in range(4)]
    decode = attn(*last, w, _meta([1, 12], [0, 1, 2], [6, 9], tables))
    torch.testing.assert_close(decode, torch.stack([want[0][5], want[1][8]]))
