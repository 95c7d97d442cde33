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
loop on spaces until max_tokens. xgrammar lets raw control characters into JSON strings, which
strict parsers (Python's json, JavaScript's JSON.parse) reject; compact JSON never needs them, so
tokens containing them are masked too.

`compile` is thread-safe: the API server compiles each request's grammar on a worker thread
before submitting it, so the engine thread's own compile is a cache hit and a slow grammar never
stalls other requests' steps.
"""

import json
import logging
import re
import threading

import torch

from engine.structured_outputs import StructuredOutputsParams
from onenode.errors import ConfigError

log = logging.getLogger("onenode.engine")
_XGR_PREFIX = re.compile(r"^\[[\d:]+\] \S+:\d+: ")


class StructuredOutputManager:
    def __init__(self, tokenizer, vocab_size: int, eos_token_ids: tuple[int, ...]):
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.eos_token_ids = list(eos_token_ids)
        self._compiler = None
        self._matchers: dict[int, tuple] = {}  # seq_id -> (xgrammar.GrammarMatcher, is_json)
        self._bitmask = None
        self._no_control = None  # bitmask words: tokens without raw control characters
        self._lock = threading.Lock()  # first use may race between the server and engine threads

    def __contains__(self, seq_id: int) -> bool:
        return seq_id in self._matchers

    def _xgr(self):
        """xgrammar and the compiler, built on first use (TokenizerInfo reads the whole vocab)."""
        try:
            import xgrammar as xgr
        except ImportError:
            raise ConfigError("structured output needs the xgrammar package; install it with "
                              "`pip install xgrammar`") from None
        with self._lock:
            if self._compiler is None:
                info = xgr.TokenizerInfo.from_huggingface(
                    self.tokenizer, vocab_size=self.vocab_size,
                    stop_token_ids=self.eos_token_ids)
                self._bitmask = xgr.allocate_token_bitmask(1, self.vocab_size)
                self._no_control = _no_control_words(info, self._bitmask.shape[1])
                self._compiler = xgr.GrammarCompiler(info, max_threads=2)
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
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            first = _XGR_PREFIX.sub("", first)[:300]  # "[12:00:00] /project/cpp/x.cc:83: "
            raise ConfigError(f"structured_outputs.{so.kind} cannot be compiled: {first}") \
                from None

    def add(self, seq_id: int, compiled, so: StructuredOutputsParams) -> None:
        is_json = so.kind in ("json", "json_object")
        self._matchers[seq_id] = (self._xgr().GrammarMatcher(compiled), is_json)

    def fill_bitmasks(self, out) -> None:
        """Attach the allowed-token bitmask to every constrained sequence sampled this step."""
        for s in out.seqs:
            entry = self._matchers.get(s.seq_id)
            if entry is None or not s.sample:
                continue
            matcher, is_json = entry
            matcher.fill_next_token_bitmask(self._bitmask, 0)
            words = self._bitmask[0] & self._no_control if is_json else self._bitmask[0]
            s.grammar_bitmask = words.numpy().tobytes()

    def accept(self, seq_id: int, token_id: int) -> bool:
        """Advance the grammar; True when the sequence must end now (the grammar is complete,
        or the token broke it, which the mask rules out)."""
        entry = self._matchers.get(seq_id)
        if entry is None:
            return False
        matcher = entry[0]
        if not matcher.accept_token(token_id):
            # Only when no token could continue the grammar (a vocabulary that cannot spell
            # the text the grammar requires); the sampler then fell back to the model.
            log.warning("sequence %d: token %d breaks its grammar; ending it", seq_id, token_id)
            return True
        return matcher.is_terminated()

    def free(self, seq_id: int) -> None:
        self._matchers.pop(seq_id, None)


def _no_control_words(info, num_words: int) -> torch.Tensor:
    """Bitmask words with every token set except those whose text has a byte below 0x20."""
    bits = torch.ones(num_words * 32, dtype=torch.bool)
    for token_id, text in enumerate(info.decoded_vocab):
        if any(b < 0x20 for b in text) and token_id not in info.stop_token_ids:
            bits[token_id] = False
    weights = torch.tensor([1 << j for j in range(32)], dtype=torch.int64)
    words = (bits.view(num_words, 32).to(torch.int64) * weights).sum(-1)
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


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
