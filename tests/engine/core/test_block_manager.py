"""BlockManager: reference counts, prefix caching by chained block hash, LRU eviction."""

import pytest

from engine.core.block_manager import BlockManager
from engine.core.sequence import Sequence
from engine.sampling_params import SamplingParams

BS = 4


def make_seq(seq_id: int, tokens: list[int]) -> Sequence:
    return Sequence(seq_id, f"r{seq_id}", 0, list(tokens), SamplingParams())


def compute_all(bm: BlockManager, seq: Sequence) -> None:
    """What the scheduler does after a step returns: the KV exists, so full blocks are hashed."""
    seq.num_computed_tokens = seq.num_tokens
    bm.register_full_blocks(seq)


def test_allocate_and_free_without_caching():
    bm = BlockManager(8, BS, enable_prefix_caching=False)
    seq = make_seq(0, range(10))
    assert bm.can_allocate(seq)
    bm.allocate(seq)
    assert len(seq.block_table) == 3 and bm.num_free_blocks == 5
    assert bm.usage == pytest.approx(3 / 8)
    assert seq.num_computed_tokens == 0
    bm.free(seq)
    assert bm.num_free_blocks == 8 and seq.block_table == [] and bm.usage == 0


def test_block_zero_is_an_ordinary_block():
    bm = BlockManager(2, BS, enable_prefix_caching=False)
    seq = make_seq(0, range(8))
    bm.allocate(seq)
    assert sorted(seq.block_table) == [0, 1]


def test_can_allocate_refuses_when_blocks_run_out():
    bm = BlockManager(2, BS, enable_prefix_caching=False)
    assert not bm.can_allocate(make_seq(0, range(9)))  # needs 3
    assert bm.can_allocate(make_seq(1, range(8)))


def test_shared_prefix_hits_and_ref_counts():
    bm = BlockManager(16, BS, enable_prefix_caching=True)
    a = make_seq(0, list(range(10)))
    bm.allocate(a)
    compute_all(bm, a)  # blocks 0..1 full and hashed, third partial
    b = make_seq(1, list(range(8)) + [99, 98, 97])
    assert bm.can_allocate(b)
    bm.allocate(b)
    assert b.block_table[:2] == a.block_table[:2]
    assert b.block_table[2] != a.block_table[2]
    assert b.num_cached_tokens == 8 and b.num_computed_tokens == 8
    assert [bm.ref[x] for x in a.block_table] == [2, 2, 1]
    assert bm.prefix_cache_queries == 10 + 11 and bm.prefix_cache_hits == 8
    bm.free(a)
    assert [bm.ref[x] for x in b.block_table] == [1, 1, 1]
    bm.free(b)
    assert bm.num_free_blocks == 16


def test_full_prompt_hit_leaves_one_token_to_compute():
    bm = BlockManager(8, BS)
    a = make_seq(0, range(8))
    bm.allocate(a)
    compute_all(bm, a)
    b = make_seq(1, range(8))
    bm.allocate(b)
    # Both blocks are cached, but the last token must be computed to sample from it.
    assert b.num_cached_tokens == 4 and b.num_computed_tokens == 4


def test_chained_hash_depends_on_parent():
    bm = BlockManager(8, BS)
    a = make_seq(0, [1, 1, 1, 1, 2, 2, 2, 2, 0])
    bm.allocate(a)
    compute_all(bm, a)
    b = make_seq(1, [3, 3, 3, 3, 2, 2, 2, 2, 0])  # same second block, different first
    bm.allocate(b)
    assert b.num_cached_tokens == 0


def test_freed_cached_blocks_are_reused_then_evicted_lru():
    bm = BlockManager(4, BS)
    a = make_seq(0, range(9))
    bm.allocate(a)
    compute_all(bm, a)
    bm.free(a)
    assert bm.num_free_blocks == 4  # cached but unreferenced: free and still reusable
    again = make_seq(1, range(9))
    bm.allocate(again)
    assert again.num_cached_tokens == 8
    bm.free(again)
    other = make_seq(2, range(100, 116))  # needs all 4 blocks: evicts every cached one
    assert bm.can_allocate(other)
    bm.allocate(other)
    bm.free(other)
    late = make_seq(3, range(9))
    bm.allocate(late)
    assert late.num_cached_tokens == 0


def test_tail_is_evicted_before_shared_prefix():
    bm = BlockManager(4, BS)
    a = make_seq(0, range(12))  # 3 full blocks, all hashed
    bm.allocate(a)
    compute_all(bm, a)
    tail = a.block_table[2]
    bm.free(a)
    c = make_seq(1, [50] * 5)  # 2 blocks: the never-used one, then the least recent: a's tail
    bm.allocate(c)
    assert tail in c.block_table
    bm.free(c)
    d = make_seq(2, list(range(12)) + [0])
    bm.allocate(d)
    assert d.num_cached_tokens == 8  # the shared prefix survived; only the tail was evicted


def test_can_allocate_counts_cached_free_blocks_it_would_reuse():
    bm = BlockManager(3, BS)
    a = make_seq(0, range(9))
    bm.allocate(a)
    compute_all(bm, a)
    bm.free(a)
    # 3 free blocks, 2 of them are this prompt's cached prefix: 12 tokens need 3 blocks in all.
    assert bm.can_allocate(make_seq(1, list(range(8)) + [1, 2, 3, 4]))
    assert not bm.can_allocate(make_seq(2, list(range(8)) + list(range(20, 25))))


def test_append_slots_grows_at_block_boundary_and_registers_generated_blocks():
    bm = BlockManager(8, BS)
    seq = make_seq(0, range(3))
    bm.allocate(seq)
    compute_all(bm, seq)
    for tok in (3, 4):  # generated tokens fill block 0, then spill into a new block
        seq.output_token_ids.append(tok)
        assert bm.can_append(seq, 1)
        bm.append_slots(seq, 1)
        compute_all(bm, seq)
    assert len(seq.block_table) == 2
    follower = make_seq(1, range(6))
    bm.allocate(follower)
    assert follower.num_cached_tokens == 4  # a block completed by decode is cached too


def test_can_append_false_when_full():
    bm = BlockManager(1, BS, enable_prefix_caching=False)
    seq = make_seq(0, range(4))
    bm.allocate(seq)
    seq.num_computed_tokens = 4
    assert not bm.can_append(seq, 1)
    assert bm.can_append(make_seq(1, []), 0)
