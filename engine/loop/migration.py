"""Migration bookkeeping (pure): a request that ran on a replica is a record of what its client
has received (the prompt, each completion's tokens, text and logprobs so far); when the replica
dies, that record is submitted to a live one as a `Resume` prompt.

The new engine prefills prompt + tokens already generated (exactly as after a preemption by
recompute), then decodes on. Its outputs are cumulative and start from the record, so the
client's stream goes on with no token repeated or missing: greedy and seeded sampling (whose draw
for output position i depends only on the seed and i, engine/layers/sampler.py) give the tokens
the dead replica would have given. Tokens the dead replica computed but never delivered are
simply computed again.
"""

import dataclasses
from dataclasses import dataclass

from engine.outputs import CompletionOutput, RequestOutput


@dataclass(frozen=True)
class Resume:
    """A prompt that continues a request: what `add_request` takes instead of text or ids."""
    prompt_token_ids: list[int]
    prompt_text: str | None
    completions: tuple[CompletionOutput, ...]  # by index; finished ones are not run again


class MigrationRecord:
    """One client request across the replicas that serve it in turn."""

    def __init__(self, request_id: str, max_migrations: int):
        self.request_id, self.max_migrations = request_id, max_migrations
        self.migrations = 0
        self.last: RequestOutput | None = None

    @property
    def engine_request_id(self) -> str:
        """Ids differ per attempt, so a late abort of the dead attempt never hits the new one."""
        return self.request_id if not self.migrations else \
            f"{self.request_id}#migrated{self.migrations}"

    def observe(self, out: RequestOutput) -> RequestOutput:
        """An engine's output, as the client sees it (the client's request id)."""
        out = dataclasses.replace(out, request_id=self.request_id)
        self.last = out
        return out

    @property
    def num_tokens(self) -> int:
        """Prompt plus generated tokens so far (the router's load for this request)."""
        if self.last is None:
            return 0
        return len(self.last.prompt_token_ids) + sum(len(c.token_ids) for c in self.last.outputs)

    def may_migrate(self) -> bool:
        return self.migrations < self.max_migrations

    def migrate(self, prompt):
        """Count one migration; what to submit next: the original prompt when nothing came
        back yet, else a Resume from what the client has."""
        self.migrations += 1
        if self.last is None:
            return prompt
        comps = tuple(CompletionOutput(c.index, c.text, list(c.token_ids), c.finish_reason,
                                       list(c.logprobs) if c.logprobs is not None else None,
                                       c.stop_reason) for c in self.last.outputs)
        return Resume(list(self.last.prompt_token_ids), self.last.prompt, comps)
