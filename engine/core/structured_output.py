"""Structured output: one xgrammar GrammarMatcher per constrained sequence, in the engine process.

Why here and not on the sampling rank: the engine sees every accepted token of every sequence
(it appends them in Scheduler.update_from_output), and it never schedules a sequence whose
previous step is still in flight, so when it builds a step it knows the exact grammar state.
It fills the allowed-token bitmask then and ships it in the ScheduledSeq; the sampling rank
(last PP stage, TP rank 0) applies it to the logits. That is vLLM v1's split (scheduler-side
manager, runner applies the mask), and it makes TP, PP and every executor backend work unchanged:
workers hold no grammar state, need no xgrammar, and preemption by recompute needs nothing (the
matcher follows the generated tokens, which recompute keeps).

Grammars compile once per distinct constraint (xgrammar's compiler caches) with the model's
tokenizer. JSON is compact (no free whitespace between tokens): free whitespace lets small models
loop on spaces until max_tokens.
"""

import json

from engine.structured_outputs import StructuredOutputsParams
from onenode.errors import ConfigError


class StructuredOutputManager:
    def __init__(self, tokenizer, vocab_size: int, eos_token_ids: tuple[int, ...]):
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.eos_token_ids = list(eos_token_ids)
        self._compiler = None
        self._matchers: dict[int, object] = {}  # seq_id -> xgrammar.GrammarMatcher
        self._bitmask = None

    def __contains__(self, seq_id: int) -> bool:
        return seq_id in self._matchers

    def _xgr(self):
        """xgrammar and the compiler, built on first use (TokenizerInfo reads the whole vocab)."""
        try:
            import xgrammar as xgr
        except ImportError:
            raise ConfigError("structured output needs the xgrammar package; install it with "
                              "`pip install xgrammar`") from None
        if self._compiler is None:
            info = xgr.TokenizerInfo.from_huggingface(
                self.tokenizer, vocab_size=self.vocab_size, stop_token_ids=self.eos_token_ids)
            self._compiler = xgr.GrammarCompiler(info, max_threads=2)
            self._bitmask = xgr.allocate_token_bitmask(1, self.vocab_size)
        return xgr

    def compile(self, so: StructuredOutputsParams):
        """The compiled grammar; a schema, regex or grammar xgrammar rejects is the user's
        error, reported in one line naming the field."""
        self._xgr()
        try:
            return _compile(self._compiler, so)
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - xgrammar raises RuntimeError/ValueError
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise ConfigError(f"structured_outputs.{so.kind} cannot be compiled: {first}") \
                from None

    def add(self, seq_id: int, compiled) -> None:
        self._matchers[seq_id] = self._xgr().GrammarMatcher(compiled)

    def fill_bitmasks(self, out) -> None:
        """Attach the allowed-token bitmask to every constrained sequence sampled this step."""
        for s in out.seqs:
            matcher = self._matchers.get(s.seq_id)
            if matcher is None or not s.sample:
                continue
            matcher.fill_next_token_bitmask(self._bitmask, 0)
            s.grammar_bitmask = self._bitmask[0].numpy().tobytes()

    def accept(self, seq_id: int, token_id: int) -> bool:
        """Advance the grammar; True when the sequence must end now (the grammar is complete,
        or the token broke it, which the mask rules out)."""
        matcher = self._matchers.get(seq_id)
        if matcher is None:
            return False
        if not matcher.accept_token(token_id):
            return True
        return matcher.is_terminated()

    def free(self, seq_id: int) -> None:
        self._matchers.pop(seq_id, None)


def _compile(compiler, so: StructuredOutputsParams):
    kind = so.kind
    if kind == "json":
        schema = json.loads(so.json) if isinstance(so.json, str) else so.json
        if so.disable_additional_properties and isinstance(schema, dict):
            schema = {**schema, "additionalProperties": False}
        return compiler.compile_json_schema(json.dumps(schema), any_whitespace=False)
    if kind == "json_object":
        # strict_mode would forbid every property of a bare object schema.
        return compiler.compile_json_schema('{"type": "object"}', any_whitespace=False,
                                            strict_mode=False)
    if kind == "regex":
        return compiler.compile_regex(so.regex)
    if kind == "choice":
        return compiler.compile_grammar(choice_grammar(so.choice))
    return compiler.compile_grammar(so.grammar)


def choice_grammar(choices: list[str]) -> str:
    """EBNF accepting exactly one of the strings (JSON string escapes are valid EBNF literals)."""
    return "root ::= " + " | ".join(json.dumps(c) for c in choices)
