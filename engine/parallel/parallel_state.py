"""Process groups for tensor, pipeline and expert parallelism and the few collectives the model
uses.

Layers ask `tp()` for their rank and size and call `tp_all_reduce` / `tp_all_gather`; with no
distributed init (world size 1) these are identities, so the same modules run unsharded.
`ep()` is the group a MoE layer splits whole experts over: the stage's TP group with
--enable-expert-parallel (data-parallel replicas would widen it), else size 1.
"""

import collections
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
_EP = GroupInfo()
# In-flight pipeline sends (work handle, tensor); see pp_send.
_PENDING_SENDS: collections.deque = collections.deque()
# Micro-batches whose activations a stage may hold for a slow next stage (the engine keeps one
# step per stage in flight, so this only bites when the next stage falls behind).
_MAX_PENDING_SENDS = 4


def tp() -> GroupInfo:
    return _TP


def pp() -> GroupInfo:
    return _PP


def ep() -> GroupInfo:
    return _EP


def init_groups(tp_size: int, pp_size: int, expert_parallel: bool = False) -> None:
    """Create TP and PP groups after dist.init_process_group; every rank must call it (new_group
    is collective), in the same order. With `expert_parallel` the EP group is the TP group."""
    from engine.parallel.rank_grid import pp_group_ranks, tp_group_ranks

    global _TP, _PP, _EP
    rank = dist.get_rank()
    for ranks in tp_group_ranks(tp_size, pp_size):
        group = dist.new_group(ranks) if tp_size > 1 else None
        if rank in ranks:
            _TP = GroupInfo(ranks.index(rank), tp_size, group, tuple(ranks))
    for ranks in pp_group_ranks(tp_size, pp_size):
        if rank in ranks:
            _PP = GroupInfo(ranks.index(rank), pp_size, None, tuple(ranks))
    _EP = _TP if expert_parallel else GroupInfo()


def reset_groups() -> None:
    global _TP, _PP, _EP
    _TP, _PP, _EP = GroupInfo(), GroupInfo(), GroupInfo()
    _PENDING_SENDS.clear()  # never wait here: the receiving stage may be gone


def tp_all_reduce(x: torch.Tensor) -> torch.Tensor:
    if _TP.size == 1:
        return x
    dist.all_reduce(x, group=_TP.group)
    return x


def all_reduce(x: torch.Tensor, group: GroupInfo) -> torch.Tensor:
    """Sum `x` over `group` in place (identity for a group of one)."""
    if group.size == 1:
        return x
    dist.all_reduce(x, group=group.group)
    return x


def tp_all_gather(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Concatenate each TP rank's `x` along `dim` (all ranks get the result)."""
    if _TP.size == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(_TP.size)]
    dist.all_gather(parts, x.contiguous(), group=_TP.group)
    return torch.cat(parts, dim=dim)


def pp_send(tensors: dict[str, torch.Tensor], to_stage: int) -> None:
    """Send named tensors to the same TP rank of another pipeline stage (point-to-point).

    Non-blocking: gloo and NCCL sends only complete once the next stage posts its receive, so a
    blocking send would hold this stage idle until the next one is free. The stage instead goes on
    with its next micro-batch; the handles (which keep the tensors alive) are waited for before
    more than `_MAX_PENDING_SENDS` micro-batches pile up, and dropped by `reset_groups`.
    """
    dst = _PP.ranks[to_stage]
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        _PENDING_SENDS.append((dist.isend(tensor, dst=dst), tensor))
    while len(_PENDING_SENDS) > _MAX_PENDING_SENDS * max(1, len(tensors)):
        _PENDING_SENDS.popleft()[0].wait()


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
