"""The rank grid: rank = pp_rank * tp_size + tp_rank (pure).

A TP group is `tp` consecutive ranks, so when ranks are placed on nodes in order (the driver's node
first, `devices_per_node` each) a TP group shares a node and its fast links, while PP stages cross
nodes — the seed's rule: TP = GPUs per node, PP = nodes.
"""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RankInfo:
    rank: int
    tp_rank: int
    pp_rank: int

    @property
    def is_first_stage(self) -> bool:
        return self.pp_rank == 0


def rank_grid(tp: int, pp: int) -> list[RankInfo]:
    return [RankInfo(rank=p * tp + t, tp_rank=t, pp_rank=p) for p in range(pp) for t in range(tp)]


def tp_group_ranks(tp: int, pp: int) -> list[list[int]]:
    return [[p * tp + t for t in range(tp)] for p in range(pp)]


def pp_group_ranks(tp: int, pp: int) -> list[list[int]]:
    return [[p * tp + t for p in range(pp)] for t in range(tp)]


def place_ranks(tp: int, pp: int, devices_per_node: list[int]) -> list[int]:
    """Node index for each rank, filling nodes in the given order (driver's node first).
    Raises ValueError when the nodes hold fewer devices than tp*pp."""
    world = tp * pp
    placement: list[int] = []
    for node, count in enumerate(devices_per_node):
        placement.extend([node] * min(count, world - len(placement)))
        if len(placement) == world:
            return placement
    raise ValueError(f"{world} ranks need {world} devices; the nodes have {sum(devices_per_node)}")
