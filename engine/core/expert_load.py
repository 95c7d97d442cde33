"""Expert load: how many (token, expert) pairs each EP rank computed, and the imbalance
max / mean over ranks, the first number users of wide expert parallelism watch.

Workers count (Worker.expert_load, through collective_rpc); this reads them between steps only:
an RPC sent while steps are in flight would take those steps' replies on the mp pipes.
"""

import collections
import time

REFRESH_S = 1.0


def imbalance(tokens: dict[int, int]) -> float:
    """max / mean of the per-rank counts (1.0: perfectly even; 0 ranks or tokens: 1.0)."""
    total = sum(tokens.values())
    return max(tokens.values()) * len(tokens) / total if total else 1.0


class ExpertLoad:
    def __init__(self, executor):
        self.executor = executor
        self.tokens: dict[int, int] = {}
        self._at = float("-inf")

    def snapshot(self, idle: bool) -> dict:
        now = time.monotonic()
        if idle and now - self._at >= REFRESH_S:
            self._at = now
            per_rank: collections.Counter = collections.Counter()
            for ep_rank, count in self.executor.collective_rpc("expert_load"):
                per_rank[ep_rank] += count  # a rank's experts of every pipeline stage
            self.tokens = dict(per_rank)
        return {"expert_tokens": dict(self.tokens), "expert_imbalance": imbalance(self.tokens)}
