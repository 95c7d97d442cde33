"""The router's choices: prefix hit, load bound, least load, replicas out of rotation."""

import pytest

from engine.loop.router import LoadBound, Router, block_hashes
from onenode.errors import EngineDeadError

PREFIX = list(range(100, 132))  # 8 blocks of 4


def test_block_hashes_are_chained_so_equal_hashes_mean_equal_prefixes():
    a, b = block_hashes([1, 2, 3, 4, 5, 6, 7, 8, 9], 4), block_hashes([9, 2, 3, 4, 5, 6, 7, 8], 4)
    assert len(a) == 2 and a[0] != b[0] and a[1] != b[1]  # same second block, other parent


def test_least_loaded_when_nothing_is_cached():
    router = Router(3, block_size=4)
    picks = []
    for i in range(6):
        r = router.pick([i] * 10)
        router.assign(f"r{i}", r, [i] * 10)
        picks.append(r)
    assert picks == [0, 1, 2, 0, 1, 2]


def test_load_counts_generated_tokens_and_finished_requests_leave():
    router = Router(2, block_size=4)
    router.assign("a", 0, [1] * 10)
    router.assign("b", 1, [2] * 10)
    router.progress("a", 50)  # a generated 40 tokens
    assert router.load == [50, 10] and router.pick([3] * 10) == 1
    router.release("a")
    assert router.load == [0, 10] and router.pick([3] * 10) == 0


def test_prefix_hit_goes_to_the_replica_holding_it():
    router = Router(3, block_size=4)
    router.assign("a", 2, PREFIX + [1, 2])
    router.assign("b", 0, [7] * 8)
    # Replica 2 is the busiest but holds the shared prefix: affinity wins within the bound.
    assert router.pick(PREFIX + [9, 9, 9]) == 2
    # A longer match beats a shorter one.
    router.assign("c", 1, PREFIX[:8])
    assert router.pick(PREFIX + [5]) == 2


def test_prefix_affinity_is_bounded_by_load():
    router = Router(2, block_size=4, bound=LoadBound(relative=1.5, absolute_tokens=100))
    router.assign("a", 0, PREFIX)
    router.progress("a", 500)  # replica 0 is far busier than replica 1 (0 tokens)
    assert router.pick(PREFIX + [1]) == 1


def test_replicas_out_of_rotation_are_skipped_and_lose_their_cache():
    router = Router(3, block_size=4)
    router.assign("a", 1, PREFIX)
    router.set_in_rotation(1, False)
    assert router.pick(PREFIX) == 0 and router.pick(PREFIX, exclude=(0,)) == 2
    router.set_in_rotation(1, True)  # rebuilt: empty cache, least loaded among equals
    router.release("a")
    assert router.pick(PREFIX) == 0
    for r in range(3):
        router.set_in_rotation(r, False)
    with pytest.raises(EngineDeadError, match="no data-parallel replica is serving"):
        router.pick(PREFIX)
