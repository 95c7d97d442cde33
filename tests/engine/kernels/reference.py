"""Reference decode attention over a paged cache, for the kernels that read it in place."""

import torch
from torch.nn.functional import scaled_dot_product_attention as sdpa

from engine.layers.sliding_window import first_key

# (heads, KV heads, head_dim): GQA groups of 1 to 4, and a head_dim of 20 (neither a multiple of
# 8 nor a power of two).
PAGED_SHAPES = [(9, 3, 64), (4, 4, 32), (8, 2, 20), (6, 3, 16)]


def random_paged_case(dtype, heads, kv_heads, d, device="cpu", num_blocks=64, bs=16,
                      lens=(1, 5, 16, 17, 40, 100, 3)):
    """(q, k_cache, v_cache, tables, lens): one sequence per length over scattered blocks; the
    default lengths end mid-block, at block edges and past one block. Every cache slot holds
    random data, so a kernel reading past a sequence's end is seen."""
    g = torch.Generator().manual_seed(heads * d + bs)
    n = len(lens)
    kc = torch.randn(kv_heads, num_blocks, bs, d, generator=g).to(dtype)
    vc = torch.randn(kv_heads, num_blocks, bs, d, generator=g).to(dtype)
    width = -(-max(lens) // bs)
    tables = torch.stack([torch.randperm(num_blocks, generator=g)[:width] for _ in range(n)])
    q = torch.randn(n, heads, d, generator=g).to(dtype)
    lens = torch.tensor(lens)
    return tuple(x.to(device) for x in (q, kc, vc, tables, lens))


def reference_decode(q, kc, vc, tables, lens, scale, window=None):
    """Gather each sequence's blocks and run SDPA in fp32 over the keys the newest query sees
    (its last `window`; None or 0: all): [n, heads*d] in fp32."""
    kvh, _, bs, d = kc.shape
    outs = []
    for s in range(q.shape[0]):
        n = int(lens[s])
        first = first_key(n, window or None)
        blocks = tables[s, :-(-n // bs)]
        k = kc[:, blocks].reshape(kvh, -1, d)[:, first:n].float()
        v = vc[:, blocks].reshape(kvh, -1, d)[:, first:n].float()
        o = sdpa(q[s].float()[None, :, None], k[None], v[None], scale=scale, enable_gqa=True)
        outs.append(o.reshape(-1))
    return torch.stack(outs)
