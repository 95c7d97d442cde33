import pytest

from engine.parallel.rank_grid import (
    RankInfo,
    place_ranks,
    pp_group_ranks,
    rank_grid,
    tp_group_ranks,
)


def test_rank_is_pp_rank_times_tp_plus_tp_rank():
    grid = rank_grid(2, 3)
    assert [(r.rank, r.tp_rank, r.pp_rank) for r in grid] == [
        (0, 0, 0), (1, 1, 0), (2, 0, 1), (3, 1, 1), (4, 0, 2), (5, 1, 2)]
    assert grid[0].is_first_stage and not grid[2].is_first_stage
    assert RankInfo(3, 1, 1) in grid


def test_groups():
    assert tp_group_ranks(2, 3) == [[0, 1], [2, 3], [4, 5]]
    assert pp_group_ranks(2, 3) == [[0, 2, 4], [1, 3, 5]]
    assert tp_group_ranks(8, 2)[1] == list(range(8, 16))


def test_place_ranks_keeps_a_tp_group_on_a_node():
    assert place_ranks(8, 2, [8, 8]) == [0] * 8 + [1] * 8
    assert place_ranks(2, 2, [3, 3]) == [0, 0, 0, 1]
    with pytest.raises(ValueError, match="4 ranks need 4 devices; the nodes have 3"):
        place_ranks(2, 2, [2, 1])
