"""Expert dispatch: how tokens reach the ranks that hold their experts, and how the experts'
outputs come back (vLLM's "all2all manager", one small interface).

`ReplicatedDispatch` is the first implementation (vLLM's naive backend): after attention's
row-parallel all-reduce every rank of a stage already holds every token, so dispatch moves nothing
(each rank computes its own experts', or its own slice of every expert's, share for all tokens)
and combine sums the partial outputs with one all-reduce over the group. An all-to-all dispatch
(send each token only to the ranks of its k experts) can replace it behind the same two calls.
"""

from typing import Protocol

import torch

from engine.parallel.parallel_state import GroupInfo, all_reduce, ep, tp


class ExpertDispatch(Protocol):
    def dispatch(self, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor):
        """(tokens, routing weights, expert ids) this rank computes experts for."""

    def combine(self, partial: torch.Tensor) -> torch.Tensor:
        """Every token's summed expert output, from this rank's partial output."""


class ReplicatedDispatch:
    def __init__(self, group: GroupInfo):
        self.group = group

    def dispatch(self, x, weights, ids):
        return x, weights, ids

    def combine(self, partial):
        return all_reduce(partial, self.group)


def make_dispatch() -> ExpertDispatch:
    """Whole experts split over the EP group, else every expert sliced over the TP group: either
    way each rank holds a share of every token's output, summed over that group."""
    return ReplicatedDispatch(ep() if ep().size > 1 else tp())
