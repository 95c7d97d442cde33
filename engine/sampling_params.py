"""SamplingParams: how to pick each next token (vLLM-compatible names), validated once.

Token-level constraints (logit_bias, allowed_token_ids, token ids of bad_words) are checked
against the vocabulary by the engine, which knows it (`bind_tokenizer`).
"""

from dataclasses import dataclass, field

from engine.structured_outputs import GuidedDecodingParams, StructuredOutputsParams
from onenode.errors import ConfigError


@dataclass(slots=True)
class SamplingParams:
    n: int = 1
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    seed: int | None = None
    stop: list[str] | str | None = None
    stop_token_ids: list[int] | None = None
    ignore_eos: bool = False
    max_tokens: int | None = 16
    min_tokens: int = 0
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    skip_special_tokens: bool = True
    include_stop_str_in_output: bool = False
    logit_bias: dict[int, float] | None = None
    allowed_token_ids: list[int] | None = None
    bad_words: list[str] | None = None
    structured_outputs: StructuredOutputsParams | None = None
    guided_decoding: StructuredOutputsParams | None = None  # vLLM < 0.11 spelling
    _stop: tuple[str, ...] = field(default=(), repr=False)
    # Token-id sequences of bad_words, filled by the engine from the model's tokenizer.
    _bad_words_token_ids: list[list[int]] | None = field(default=None, repr=False)

    def __post_init__(self):
        self._stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        self.stop_token_ids = list(self.stop_token_ids or [])
        _check(self.n >= 1, "n", self.n, "an integer >= 1")
        _check(self.temperature >= 0, "temperature", self.temperature, ">= 0 (0 means greedy)")
        _check(0 < self.top_p <= 1, "top_p", self.top_p, "in (0, 1]")
        _check(self.top_k == -1 or self.top_k >= 1, "top_k", self.top_k, "-1 (off) or >= 1")
        _check(0 <= self.min_p <= 1, "min_p", self.min_p, "in [0, 1]")
        _check(self.max_tokens is None or self.max_tokens >= 1, "max_tokens", self.max_tokens,
               ">= 1")
        _check(self.repetition_penalty > 0, "repetition_penalty", self.repetition_penalty, "> 0")
        _check(-2 <= self.presence_penalty <= 2, "presence_penalty", self.presence_penalty,
               "in [-2, 2]")
        _check(-2 <= self.frequency_penalty <= 2, "frequency_penalty", self.frequency_penalty,
               "in [-2, 2]")
        _check(isinstance(self.min_tokens, int) and self.min_tokens >= 0, "min_tokens",
               self.min_tokens, "an integer >= 0")
        _check(self.max_tokens is None or self.min_tokens <= self.max_tokens, "min_tokens",
               self.min_tokens, f"<= max_tokens ({self.max_tokens})")
        _check(self.logprobs is None or 0 <= self.logprobs <= 20, "logprobs", self.logprobs,
               "in [0, 20]")
        _check(self.seed is None or isinstance(self.seed, int), "seed", self.seed, "an integer")
        if self.prompt_logprobs is not None:
            raise ConfigError("SamplingParams.prompt_logprobs is not supported by onenode yet; "
                              "leave it None (logprobs of generated tokens work)")
        self._check_token_lists()
        self._merge_structured()

    def _check_token_lists(self) -> None:
        if self.logit_bias is not None:
            _check(isinstance(self.logit_bias, dict), "logit_bias", self.logit_bias,
                   "a dict {token_id: bias}")
            self.logit_bias = {int(k): float(v) for k, v in self.logit_bias.items()}
            bad = [v for v in self.logit_bias.values() if not -100 <= v <= 100]
            _check(not bad, "logit_bias", bad[:1], "biases in [-100, 100]")
        if self.allowed_token_ids is not None:
            _check(isinstance(self.allowed_token_ids, list | tuple) and self.allowed_token_ids,
                   "allowed_token_ids", self.allowed_token_ids, "a non-empty list of token ids")
            self.allowed_token_ids = [int(t) for t in self.allowed_token_ids]
        if self.bad_words is not None:
            _check(isinstance(self.bad_words, list | tuple)
                   and all(isinstance(w, str) and w.strip() for w in self.bad_words),
                   "bad_words", self.bad_words, "a list of non-empty strings")

    def _merge_structured(self) -> None:
        if self.guided_decoding is not None and self.structured_outputs is not None \
                and self.guided_decoding is not self.structured_outputs:
            raise ConfigError("SamplingParams: give structured_outputs or guided_decoding, not "
                              "both (they are the same setting)")
        so = self.structured_outputs or self.guided_decoding
        if so is not None and not isinstance(so, StructuredOutputsParams):
            raise ConfigError("SamplingParams.structured_outputs must be a "
                              "StructuredOutputsParams (or GuidedDecodingParams)")
        self.structured_outputs = self.guided_decoding = so

    def check_vocab(self, vocab_size: int) -> None:
        """Token ids the request names must exist in the model's vocabulary."""
        for name, ids in (("logit_bias", list(self.logit_bias or ())),
                          ("allowed_token_ids", self.allowed_token_ids or []),
                          ("stop_token_ids", self.stop_token_ids)):
            bad = [t for t in ids if not 0 <= t < vocab_size]
            if bad:
                raise ConfigError(f"SamplingParams.{name} has token id {bad[0]}, outside the "
                                  f"vocabulary of {vocab_size} tokens")

    def bind_tokenizer(self, tokenizer, vocab_size: int) -> None:
        """vLLM's rule for bad_words: each word is banned as typed and with a leading space."""
        self.check_vocab(vocab_size)
        if not self.bad_words:
            return
        seqs: list[list[int]] = []
        for word in self.bad_words:
            for text in (word.lstrip(), " " + word.lstrip()):
                ids = list(tokenizer.encode(text, add_special_tokens=False))
                if ids and ids not in seqs and all(0 <= t < vocab_size for t in ids):
                    seqs.append(ids)
        self._bad_words_token_ids = seqs

    @property
    def stop_strings(self) -> tuple[str, ...]:
        return self._stop

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or self.top_k == 1

    @property
    def has_penalties(self) -> bool:
        return (self.repetition_penalty != 1.0 or self.presence_penalty != 0.0
                or self.frequency_penalty != 0.0)


__all__ = ["GuidedDecodingParams", "SamplingParams", "StructuredOutputsParams"]


def _check(ok: bool, name: str, value, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"SamplingParams.{name}={value!r} is invalid; it must be {allowed}")
