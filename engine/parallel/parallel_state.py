"""Process groups for tensor and pipeline parallelism and the few collectives the model uses.

Layers ask `tp()` for their rank and size and call `tp_all_reduce` / `tp_all_gather`; with no
distributed init (world size 1) these are identities, so the same modules run unsharded.
"""

from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class GroupInfo:
    rank: int = 0  # rank inside the group
    size: int = 1
    group: object = None  # torch ProcessGroup, None when size == 1
    ranks: tuple[int, ...] = (0,)  # global ranks of the group, in group-rank order


_TP = GroupInfo()
_PP = GroupInfo()


def tp() -> GroupInfo:
    return _TP


def pp() -> GroupInfo:
    return _PP


def init_groups(tp_size: int, pp_size: int) -> None:
    """Create TP and PP groups after dist.init_process_group; every rank must call it (new_group
    is collective), in the same order."""
    from engine.parallel.rank_grid import pp_group_ranks, tp_group_ranks

    global _TP, _PP
    rank = dist.get_rank()
    for ranks in tp_group_ranks(tp_size, pp_size):
        group = dist.new_group(ranks) if tp_size > 1 else None
        if rank in ranks:
            _TP = GroupInfo(ranks.index(rank), tp_size, group, tuple(ranks))
    for ranks in pp_group_ranks(tp_size, pp_size):
        if rank in ranks:
            _PP = GroupInfo(ranks.index(rank), pp_size, None, tuple(ranks))


def reset_groups() -> None:
    global _TP, _PP
    _TP, _PP = GroupInfo(), GroupInfo()


def tp_all_reduce(x: torch.Tensor) -> torch.Tensor:
    if _TP.size == 1:
        return x
    dist.all_reduce(x, group=_TP.group)
    return x


def tp_all_gather(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Concatenate each TP rank's `x` along `dim` (all ranks get the result)."""
    if _TP.size == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(_TP.size)]
    dist.all_gather(parts, x.contiguous(), group=_TP.group)
    return torch.cat(parts, dim=dim)


def pp_send(tensors: dict[str, torch.Tensor], to_stage: int) -> None:
    """Send named tensors to the same TP rank of another pipeline stage (point-to-point)."""
    dst = _PP.ranks[to_stage]
    for name in sorted(tensors):
        dist.send(tensors[name].contiguous(), dst=dst)


def pp_recv(shapes: dict[str, tuple[tuple[int, ...], torch.dtype]], from_stage: int,
            device: torch.device) -> dict[str, torch.Tensor]:
    src = _PP.ranks[from_stage]
    out = {}
    for name in sorted(shapes):
        shape, dtype = shapes[name]
        buf = torch.empty(shape, dtype=dtype, device=device)
        dist.recv(buf, src=src)
        out[name] = buf
    return out
