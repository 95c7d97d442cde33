"""SeqStates: what a worker remembers of each running sequence, so a step only carries deltas.

The scheduler sends a sequence's whole state (block table, outputs, prompt, params) when it is
(re)scheduled, and afterwards only the blocks and output tokens added since; here the deltas are
applied and every ScheduledSeq is handed on whole, so the model runner and the sampler never see
a delta. State is dropped when the scheduler says a sequence finished (or was aborted) or was
preempted. Steps reach every rank in order, so each rank's copy follows the scheduler's.
"""

from dataclasses import dataclass

from engine.core.scheduler_output import ScheduledSeq, SchedulerOutput
from engine.sampling_params import SamplingParams
from onenode.errors import EngineDeadError


@dataclass(slots=True)
class _State:
    block_table: list[int]
    output_token_ids: list[int]
    prompt_token_ids: list[int] | None
    params: SamplingParams


class SeqStates:
    def __init__(self):
        self._states: dict[int, _State] = {}

    def __len__(self) -> int:
        return len(self._states)

    def apply(self, out: SchedulerOutput) -> SchedulerOutput:
        """`out` with every sequence whole (the same object: its seqs are updated in place)."""
        for seq_id in out.finished_seq_ids:
            self._states.pop(seq_id, None)
        for seq_id in out.preempted_seq_ids:
            self._states.pop(seq_id, None)
        for s in out.seqs:
            self._apply_one(s)
        return out

    def _apply_one(self, s: ScheduledSeq) -> None:
        if s.full:
            self._states[s.seq_id] = _State(list(s.block_table), list(s.output_token_ids),
                                            s.prompt_token_ids, s.params)
            return
        state = self._states.get(s.seq_id)
        if state is None:
            raise EngineDeadError(f"a worker got a step for sequence {s.seq_id} without its state "
                                  f"(steps arrived out of order); restart the engine")
        state.block_table.extend(s.block_table)
        state.output_token_ids.extend(s.output_token_ids)
        # Copies: the sampler reads these lists while later steps extend the state's own.
        s.block_table = list(state.block_table)
        s.output_token_ids = list(state.output_token_ids)
        s.prompt_token_ids, s.params, s.full = state.prompt_token_ids, state.params, True
