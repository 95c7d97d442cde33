"""BlockManager: who owns which KV block, with reference counts and prefix caching.

A full block is identified by a chained hash (parent block's hash, its tokens), so two sequences
with the same prefix share physical blocks. Blocks whose reference count drops to zero keep their
contents and hash and are reused by a later identical prefix, until the free pool runs out and the
least recently freed one is evicted.
"""

from collections import OrderedDict

from engine.core.sequence import Sequence


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True):
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.caching = enable_prefix_caching
        self.ref = [0] * num_blocks
        self.block_hash: list[int | None] = [None] * num_blocks
        self.hash_to_block: dict[int, int] = {}
        # Free blocks in LRU order (oldest first); cached ones keep their hash until evicted.
        self.free_blocks: OrderedDict[int, None] = OrderedDict((b, None) for b in range(num_blocks))
        self.seq_hashes: dict[int, list[int]] = {}  # seq_id -> hashes of its full blocks
        self.prefix_cache_queries = 0
        self.prefix_cache_hits = 0

    @property
    def num_free_blocks(self) -> int:
        return len(self.free_blocks)

    @property
    def usage(self) -> float:
        return 1.0 - len(self.free_blocks) / self.num_blocks if self.num_blocks else 0.0

    def _blocks_needed(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def _hashes(self, tokens: list[int]) -> list[int]:
        out, parent, bs = [], 0, self.block_size
        for i in range(len(tokens) // bs):
            parent = hash((parent, tuple(tokens[i * bs:(i + 1) * bs])))
            out.append(parent)
        return out

    def _cached_prefix(self, tokens: list[int]) -> list[int]:
        """Physical blocks of the longest cached prefix, leaving >= 1 token to compute."""
        if not self.caching:
            return []
        blocks = []
        for h in self._hashes(tokens[:-1]):
            b = self.hash_to_block.get(h)
            if b is None:
                break
            blocks.append(b)
        return blocks

    def can_allocate(self, seq: Sequence) -> bool:
        tokens = seq.all_token_ids
        hits = self._cached_prefix(tokens)
        reusable_free = sum(1 for b in hits if self.ref[b] == 0)
        need = self._blocks_needed(len(tokens)) - len(hits)
        return need <= len(self.free_blocks) - reusable_free

    def allocate(self, seq: Sequence) -> None:
        """Give `seq` blocks for all its known tokens, reusing cached prefix blocks."""
        tokens = seq.all_token_ids
        hits = self._cached_prefix(tokens)
        self.prefix_cache_queries += len(tokens)
        self.prefix_cache_hits += len(hits) * self.block_size
        for b in hits:
            self._take(b)
        table = list(hits)
        for _ in range(self._blocks_needed(len(tokens)) - len(hits)):
            table.append(self._pop_free())
        seq.block_table = table
        seq.num_cached_tokens = len(hits) * self.block_size
        seq.num_computed_tokens = seq.num_cached_tokens
        self.seq_hashes[seq.seq_id] = [self.block_hash[b] for b in hits]

    def _take(self, block: int) -> None:
        if self.ref[block] == 0:
            self.free_blocks.pop(block, None)
        self.ref[block] += 1

    def _pop_free(self) -> int:
        block, _ = self.free_blocks.popitem(last=False)
        old = self.block_hash[block]
        if old is not None and self.hash_to_block.get(old) == block:
            del self.hash_to_block[old]  # evict the stale cached contents
        self.block_hash[block] = None
        self.ref[block] = 1
        return block

    def can_append(self, seq: Sequence, num_new_tokens: int = 1) -> bool:
        need = self._blocks_needed(seq.num_computed_tokens + num_new_tokens) - len(seq.block_table)
        return need <= len(self.free_blocks)

    def append_slots(self, seq: Sequence, num_new_tokens: int = 1) -> None:
        """Make room for KV of `num_new_tokens` more tokens after num_computed_tokens."""
        need = self._blocks_needed(seq.num_computed_tokens + num_new_tokens) - len(seq.block_table)
        for _ in range(max(0, need)):
            seq.block_table.append(self._pop_free())

    def register_full_blocks(self, seq: Sequence) -> None:
        """Hash blocks that became full (their KV computed), so later prefixes can reuse them."""
        if not self.caching:
            return
        hashes = self.seq_hashes.setdefault(seq.seq_id, [])
        full = min(seq.num_computed_tokens, seq.num_tokens) // self.block_size
        if full <= len(hashes):
            return
        tokens = seq.all_token_ids
        parent = hashes[-1] if hashes else 0
        bs = self.block_size
        for i in range(len(hashes), full):
            parent = hash((parent, tuple(tokens[i * bs:(i + 1) * bs])))
            hashes.append(parent)
            block = seq.block_table[i]
            if parent not in self.hash_to_block:
                self.hash_to_block[parent] = block
                self.block_hash[block] = parent

    def free(self, seq: Sequence) -> None:
        # Release in reverse so the tail of a sequence is evicted before its shared prefix.
        for block in reversed(seq.block_table):
            self.ref[block] -= 1
            if self.ref[block] == 0:
                self.free_blocks[block] = None
        seq.block_table = []
        self.seq_hashes.pop(seq.seq_id, None)
