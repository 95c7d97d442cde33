"""Turns sampled tokens into RequestOutputs: incremental text, stop strings, n>1 grouping."""

from dataclasses import dataclass, field

from engine.loop.detokenizer import IncrementalDetokenizer
from engine.outputs import CompletionOutput, RequestOutput


@dataclass
class RequestState:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    params: object
    completions: list[CompletionOutput] = field(default_factory=list)
    seq_ids: list[int] = field(default_factory=list)
    num_cached_tokens: int = 0
    detokenizers: dict[int, IncrementalDetokenizer] = field(default_factory=dict)  # by index

    @property
    def finished(self) -> bool:
        return all(c.finish_reason is not None for c in self.completions)

    def to_output(self) -> RequestOutput:
        outs = [CompletionOutput(c.index, c.text, list(c.token_ids), c.finish_reason,
                                 list(c.logprobs) if c.logprobs is not None else None,
                                 c.stop_reason) for c in self.completions]
        return RequestOutput(self.request_id, self.prompt, self.prompt_token_ids, outs,
                             self.finished, self.num_cached_tokens)


class OutputProcessor:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def update_text(self, state: RequestState, index: int, token_ids: list[int],
                    logprob_entry: dict | None) -> str | None:
        """Refresh completion `index`; returns the stop string hit, if any (text is cut there)."""
        comp = state.completions[index]
        comp.token_ids = token_ids
        if logprob_entry is not None:
            comp.logprobs = (comp.logprobs or []) + [logprob_entry]
        params = state.params
        detok = state.detokenizers.get(index)
        if detok is None:
            detok = state.detokenizers[index] = IncrementalDetokenizer(
                self.tokenizer, params.skip_special_tokens)
        text = detok.decode(token_ids)
        # vLLM: stop strings only count once min_tokens tokens exist.
        stops = params.stop_strings if len(token_ids) >= params.min_tokens else ()
        hit = _first_stop(text, stops, len(comp.text))
        if hit is not None:
            stop, at = hit
            comp.text = text[:at + len(stop)] if params.include_stop_str_in_output else text[:at]
            return stop
        comp.text = text
        return None


def _first_stop(text: str, stops: tuple[str, ...], prev_len: int):
    """Earliest stop string that ends in the newly decoded tail."""
    best = None
    for stop in stops:
        at = text.find(stop, max(0, prev_len - len(stop) + 1))
        if at >= 0 and (best is None or at < best[1]):
            best = (stop, at)
    return best
