"""Router: which data-parallel replica serves a request (pure: no engine, no clock).

1. Prefix affinity: the replica that already holds the request's first KV blocks (their chained
   hashes, computed as the block manager does) serves it again and skips that prefill, unless it
   is much busier than the least loaded replica (the load bound).
2. Otherwise the least loaded replica, counting the tokens of the requests routed there and not
   finished yet: prompt plus tokens generated so far (waiting + running tokens).
Replicas out of rotation (dead, rebuilding) are skipped.

The router remembers which block hashes it sent where (an LRU per replica), the way SGLang's
gateway keeps an approximate radix tree: it never asks the replicas, so a pick costs no round trip.
"""

from collections import OrderedDict
from dataclasses import dataclass

from onenode.errors import EngineDeadError

MAX_REMEMBERED_BLOCKS = 65536  # per replica; about what a replica's KV cache can keep anyway


@dataclass(frozen=True, slots=True)
class LoadBound:
    """Affinity holds while the cached replica's load <= max(min_load x relative,
    min_load + absolute_tokens)."""
    relative: float = 1.5
    absolute_tokens: int = 2048


def block_hashes(token_ids: list[int], block_size: int) -> list[int]:
    """Chained hashes of the full blocks, so equal hashes mean equal prefixes."""
    hashes, parent = [], 0
    for i in range(len(token_ids) // block_size):
        parent = hash((parent, tuple(token_ids[i * block_size:(i + 1) * block_size])))
        hashes.append(parent)
    return hashes


class Router:
    def __init__(self, num_replicas: int, block_size: int, bound: LoadBound = LoadBound()):
        self.block_size, self.bound = block_size, bound
        self.in_rotation = [True] * num_replicas
        self.load = [0] * num_replicas  # tokens of unfinished requests routed there
        self._cached: list[OrderedDict] = [OrderedDict() for _ in range(num_replicas)]
        self._requests: dict[str, tuple[int, int]] = {}  # request id -> (replica, tokens)

    @property
    def num_replicas(self) -> int:
        return len(self.in_rotation)

    def pick(self, token_ids: list[int], exclude: tuple[int, ...] = ()) -> int:
        """The replica for a request with these prompt tokens; EngineDeadError when none is in
        rotation."""
        live = [r for r in range(self.num_replicas) if self.in_rotation[r] and r not in exclude]
        if not live:
            raise EngineDeadError("no data-parallel replica is serving (all are down or "
                                  "rebuilding); retry shortly")
        least = min(live, key=lambda r: (self.load[r], r))
        hit = self._longest_prefix(block_hashes(token_ids, self.block_size), live)
        if hit is not None and self._within_bound(self.load[hit], self.load[least]):
            return hit
        return least

    def _longest_prefix(self, hashes: list[int], live: list[int]) -> int | None:
        best, best_len = None, 0
        for r in live:
            n = 0
            while n < len(hashes) and hashes[n] in self._cached[r]:
                n += 1
            if n > best_len or (n == best_len and n and self.load[r] < self.load[best]):
                best, best_len = r, n
        return best

    def _within_bound(self, load: int, min_load: int) -> bool:
        return load <= max(min_load * self.bound.relative, min_load + self.bound.absolute_tokens)

    def assign(self, request_id: str, replica: int, token_ids: list[int]) -> None:
        """`request_id` now runs on `replica`: count its tokens, remember its prefix there."""
        self.release(request_id)
        self._requests[request_id] = (replica, len(token_ids))
        self.load[replica] += len(token_ids)
        cached = self._cached[replica]
        for h in block_hashes(token_ids, self.block_size):
            cached[h] = None
            cached.move_to_end(h)
        while len(cached) > MAX_REMEMBERED_BLOCKS:
            cached.popitem(last=False)

    def progress(self, request_id: str, num_tokens: int) -> None:
        """The request now holds `num_tokens` (prompt + generated)."""
        entry = self._requests.get(request_id)
        if entry is not None:
            replica, old = entry
            self.load[replica] += num_tokens - old
            self._requests[request_id] = (replica, num_tokens)

    def release(self, request_id: str) -> None:
        entry = self._requests.pop(request_id, None)
        if entry is not None:
            self.load[entry[0]] -= entry[1]

    def set_in_rotation(self, replica: int, serving: bool) -> None:
        """A replica leaving rotation loses its cache (it is rebuilt empty)."""
        if not serving and self.in_rotation[replica]:
            self._cached[replica].clear()
        self.in_rotation[replica] = serving
