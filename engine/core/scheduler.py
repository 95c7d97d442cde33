"""Scheduler: which sequences run next and with how many tokens (pure decisions, no model).

Continuous batching: every step first continues running sequences (one decode token, or the next
chunk of a long prompt), then admits waiting ones within the token budget, chunking the last
prompt. When KV blocks run out, the most recently admitted sequence is preempted by recompute: its
blocks are freed and it re-enters the front of the queue, keeping its generated tokens. Under
pipeline parallelism a sequence waits for its in-flight step before it samples again, but a long
prompt's next chunk may follow its previous one at once (the stages keep step order), so one prompt
can be spread over several micro-batches instead of stalling the pipeline in one.
"""

from collections import deque

from engine.core.block_manager import BlockManager
from engine.core.scheduler_output import (
    ModelRunnerOutput,
    ScheduledSeq,
    SchedulerOutput,
)
from engine.core.sequence import SeqStatus, Sequence
from onenode.errors import ConfigError, ResourceError

# Smallest prompt chunk a micro-batch is cut to: below this a step's fixed cost outweighs the
# balance it buys.
MIN_CHUNK = 64


class Scheduler:
    def __init__(self, block_manager: BlockManager, max_num_seqs: int,
                 max_num_batched_tokens: int, max_model_len: int,
                 eos_token_ids: tuple[int, ...] = (), recompute_at: int | None = None):
        self.bm = block_manager
        # A sequence growing from `recompute_at` to recompute_at + 1 tokens has its KV computed
        # again from the start: longrope switches every position's frequencies there (HF's
        # Phi-3 drops its cache at that point too).
        self.recompute_at = recompute_at
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.max_model_len = max_model_len
        self.eos_token_ids = set(eos_token_ids)
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.seqs: dict[int, Sequence] = {}
        self._finished_ids: list[int] = []
        self._preempted_ids: list[int] = []
        # seq_id -> (blocks, output tokens) the workers hold; absent: send the full state.
        self._sent: dict[int, tuple[int, int]] = {}
        self._pending_finish: dict[int, str] = {}
        self._step = 0
        self.num_preemptions = 0
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0

    @property
    def num_running(self) -> int:
        return len(self.running)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def add(self, seq: Sequence) -> None:
        if seq.num_tokens >= self.max_model_len:
            raise ConfigError(f"the prompt has {seq.num_tokens} tokens but max_model_len is "
                              f"{self.max_model_len}; shorten it or raise --max-model-len")
        self.seqs[seq.seq_id] = seq
        self.waiting.append(seq)
        self.prompt_tokens_total += seq.num_prompt_tokens

    @property
    def num_pending_tokens(self) -> int:
        """Tokens still to compute: prompt chunks left, and one per decoding sequence (those in
        flight included, as they will be back)."""
        running = sum(max(1, s.num_uncomputed) for s in self.running)
        return running + sum(s.num_uncomputed for s in self.waiting)

    def micro_batch_limits(self, depth: int) -> tuple[int | None, int | None]:
        """(max sequences, max tokens) of the next step when `depth` steps share the pipeline:
        the work is split into `depth` even micro-batches, so every stage does the same amount
        per step and none waits on a long prompt that landed in one micro-batch."""
        if depth <= 1:
            return None, None
        max_seqs = -(-(self.num_running + self.num_waiting) // depth)
        return max(1, max_seqs), max(MIN_CHUNK, -(-self.num_pending_tokens // depth))

    def schedule(self, max_seqs: int | None = None,
                 max_tokens: int | None = None) -> SchedulerOutput:
        budget = min(self.max_num_batched_tokens, max_tokens or self.max_num_batched_tokens)
        cap = min(self.max_num_seqs, max_seqs or self.max_num_seqs)
        chosen: list[tuple[Sequence, int]] = []
        budget = self._schedule_running(chosen, budget, cap)
        self._admit_waiting(chosen, budget, cap)
        self._step += 1
        if not chosen:
            # Keep finished ids for the next step that actually reaches the workers.
            return SchedulerOutput([], self._step)
        out = SchedulerOutput([self._to_scheduled(seq, n) for seq, n in chosen], self._step,
                              self._finished_ids, self._preempted_ids)
        self._finished_ids, self._preempted_ids = [], []
        return out

    def _schedule_running(self, chosen, budget: int, cap: int) -> int:
        for seq in list(self.running):
            # Nothing to compute until its in-flight step samples (or it is finishing).
            if seq.num_uncomputed == 0 or seq.status is not SeqStatus.RUNNING \
                    or seq.seq_id in self._pending_finish:
                continue
            if len(chosen) >= cap or budget <= 0:
                break
            if self.recompute_at is not None and seq.num_tokens == self.recompute_at + 1 \
                    and seq.num_computed_tokens == self.recompute_at:
                self._preempt(seq, count=False)  # admitted again below, from token 0
                continue
            n = min(seq.num_uncomputed, budget)
            if not self._make_room(seq, n, chosen):
                continue
            self.bm.append_slots(seq, n)
            chosen.append((seq, n))
            budget -= n
        return budget

    def _make_room(self, seq: Sequence, n: int, chosen) -> bool:
        """Preempt later sequences until `seq` can grow by n tokens; False if seq itself had to
        go (or must wait for in-flight sequences to release blocks)."""
        scheduled = {s.seq_id for s, _ in chosen}
        while not self.bm.can_append(seq, n):
            victims = [s for s in self.running
                       if not s.in_flight and s.seq_id not in scheduled]
            if not victims:
                return False
            # The latest arrival loses (ties: the latest admitted), so older requests finish.
            victim = max(reversed(victims), key=lambda s: s.arrival)
            self._preempt(victim)
            if victim is seq:
                return False
        return True

    def _preempt(self, seq: Sequence, count: bool = True) -> None:
        self.bm.free(seq)
        if self._sent.pop(seq.seq_id, None) is not None:
            self._preempted_ids.append(seq.seq_id)
        seq.num_computed_tokens = 0
        seq.status = SeqStatus.WAITING
        self.running.remove(seq)
        self.waiting.appendleft(seq)
        self.num_preemptions += count

    def _admit_waiting(self, chosen, budget: int, cap: int) -> None:
        while (self.waiting and budget > 0 and len(chosen) < cap
               and len(self.running) < self.max_num_seqs):
            seq = self.waiting[0]
            if not self.bm.can_allocate(seq):
                self._check_fits(seq)
                break
            self.waiting.popleft()
            self.bm.allocate(seq)
            seq.status = SeqStatus.RUNNING
            self.running.append(seq)
            n = min(seq.num_uncomputed, budget)
            chosen.append((seq, n))
            budget -= n

    def _check_fits(self, seq: Sequence) -> None:
        """A sequence that cannot be admitted into an otherwise empty cache never will be; fail
        instead of looping forever."""
        if self.running or self.bm.num_free_blocks < self.bm.num_blocks:
            return
        need = -(-seq.num_tokens // self.bm.block_size)
        raise ResourceError(
            f"a sequence of {seq.num_tokens} tokens needs {need} KV blocks but the cache has "
            f"{self.bm.num_blocks}; give the KV cache more memory or lower max_model_len")

    def _to_scheduled(self, seq: Sequence, n: int) -> ScheduledSeq:
        start = seq.num_computed_tokens
        tokens = seq.all_token_ids[start:start + n]
        seq.num_computed_tokens += n
        seq.in_flight += 1
        sent = self._sent.get(seq.seq_id)
        self._sent[seq.seq_id] = (len(seq.block_table), len(seq.output_token_ids))
        sample = seq.num_computed_tokens == seq.num_tokens
        bans = self._min_tokens_bans(seq)
        if sent is not None:
            return ScheduledSeq(
                seq_id=seq.seq_id, token_ids=tokens, start_pos=start,
                block_table=seq.block_table[sent[0]:], sample=sample, params=None,
                output_token_ids=seq.output_token_ids[sent[1]:], banned_token_ids=bans,
                context_len=seq.num_tokens, full=False)
        penalty = seq.params.repetition_penalty != 1.0
        return ScheduledSeq(
            seq_id=seq.seq_id, token_ids=tokens, start_pos=start,
            block_table=list(seq.block_table), sample=sample,
            params=seq.params, output_token_ids=list(seq.output_token_ids),
            prompt_token_ids=list(seq.prompt_token_ids) if penalty else None,
            banned_token_ids=bans, context_len=seq.num_tokens)

    def _min_tokens_bans(self, seq: Sequence) -> list[int] | None:
        """vLLM's min_tokens: EOS (unless ignore_eos) and stop_token_ids cannot be sampled yet."""
        p = seq.params
        if len(seq.output_token_ids) >= p.min_tokens:
            return None
        eos = set() if p.ignore_eos else self.eos_token_ids
        return sorted(eos | set(p.stop_token_ids)) or None

    def update_from_output(self, out: SchedulerOutput,
                           result: ModelRunnerOutput | None) -> list[Sequence]:
        """Append sampled tokens; returns sequences that got a token (finished ones included)."""
        sampled = result.sampled if result is not None else {}
        updated = []
        for s in out.seqs:
            seq = self.seqs.get(s.seq_id)
            if seq is None:
                continue
            seq.in_flight -= 1
            if seq.in_flight:
                continue  # a later chunk of this prompt is still in flight
            if s.seq_id in self._pending_finish:
                self._finish(seq, self._pending_finish.pop(s.seq_id))
                continue
            if seq.status is not SeqStatus.RUNNING:
                continue
            self.bm.register_full_blocks(seq)
            token = sampled.get(s.seq_id) if s.sample else None
            if token is None:
                continue
            seq.output_token_ids.append(token.token_id)
            self.generation_tokens_total += 1
            self._check_finish(seq, token.token_id)
            updated.append(seq)
        return updated

    def _check_finish(self, seq: Sequence, token: int) -> None:
        p = seq.params
        if len(seq.output_token_ids) < p.min_tokens and not self._hits_limit(seq):
            return  # stop ids are banned until min_tokens; only a hard limit may end it
        if not p.ignore_eos and token in self.eos_token_ids:
            self._finish(seq, "stop")
        elif token in p.stop_token_ids:
            self._finish(seq, "stop")
            seq.stop_reason = token
        elif self._hits_limit(seq):
            self._finish(seq, "length")

    def _hits_limit(self, seq: Sequence) -> bool:
        p = seq.params
        return ((p.max_tokens is not None and len(seq.output_token_ids) >= p.max_tokens)
                or seq.num_tokens >= self.max_model_len)

    def finish(self, seq_id: int, reason: str) -> None:
        """Finish from outside (stop strings, aborts); deferred while the seq is in flight so its
        blocks are not reused under a running step."""
        seq = self.seqs.get(seq_id)
        if seq is None or seq.is_finished:
            return
        if seq.in_flight:
            self._pending_finish[seq_id] = reason
            seq.finish_reason = reason
            return
        self._finish(seq, reason)

    def _finish(self, seq: Sequence, reason: str) -> None:
        if seq.status is SeqStatus.RUNNING:
            self.running.remove(seq)
            self.bm.free(seq)
        elif seq.status is SeqStatus.WAITING and seq in self.waiting:
            self.waiting.remove(seq)
        seq.status = SeqStatus.FINISHED
        seq.finish_reason = reason
        self.seqs.pop(seq.seq_id, None)
        self._sent.pop(seq.seq_id, None)
        self._finished_ids.append(seq.seq_id)

    def abort_request(self, request_id: str) -> None:
        for seq in [s for s in self.seqs.values() if s.request_id == request_id]:
            self.finish(seq.seq_id, "abort")
