"""LLMEngine: the loop schedule -> execute -> update, over any executor.

With pipeline parallelism several steps are in flight at once (the executor's
`max_concurrent_batches`, like vLLM's virtual engines): the scheduler splits the work into that many
even micro-batches and never samples a sequence again before its previous step returned, so
micro-batches of different sequences (and the chunks of a long prompt) fill the pipeline.
The loop reads no parallel config: depth and output rank are the executor's.
"""

import collections
import dataclasses
import itertools

from engine.config import EngineConfig
from engine.core.block_manager import BlockManager
from engine.loop.engine_setup import EngineSetup
from engine.loop.migration import Resume
from engine.loop.output_processor import OutputProcessor, RequestState
from engine.core.expert_load import ExpertLoad
from engine.core.scheduler import Scheduler
from engine.core.sequence import Sequence
from engine.loop.structured_output import StructuredOutputManager
from engine.generation_config import default_sampling_values
from engine.outputs import CompletionOutput, RequestOutput
from engine.sampling_params import SamplingParams
from engine.tokenizer import load_tokenizer
from onenode.errors import ConfigError, EngineDeadError


class LLMEngine:
    def __init__(self, config: EngineConfig):
        setup = EngineSetup(config)
        self.config = config
        self.model_config = setup.model_config
        self.max_model_len = setup.max_model_len
        self.tokenizer = load_tokenizer(setup.source, config.tokenizer)
        self._sampling_defaults = default_sampling_values(config.generation_config,
                                                          setup.source.path)
        self.executor = setup.start_executor()
        try:
            self.num_blocks = setup.size_kv_cache(self.executor)
        except BaseException:
            self.executor.shutdown()
            raise
        self.backend = self.executor.name
        self.block_manager = BlockManager(self.num_blocks, config.block_size,
                                          setup.enable_prefix_caching)
        self.scheduler = Scheduler(self.block_manager, config.max_num_seqs,
                                   setup.max_num_batched_tokens, self.max_model_len,
                                   eos_token_ids=self._eos_ids(),
                                   recompute_at=setup.recompute_at)
        self.output_processor = OutputProcessor(self.tokenizer)
        self.structured = StructuredOutputManager(self.tokenizer, self.model_config.vocab_size,
                                                  self._eos_ids())
        self.requests: dict[str, RequestState] = {}
        self.seq_to_request: dict[int, tuple[str, int]] = {}
        self.in_flight: collections.deque = collections.deque()
        self._seq_ids = itertools.count()
        self._dead: str | None = None
        self.expert_load = ExpertLoad(self.executor) if self.model_config.is_moe else None
        self.step_tokens = 0  # the batch `step` waits on: the watchdog's deadline scales with it

    def _eos_ids(self) -> tuple[int, ...]:
        ids = set(self.model_config.eos_token_ids)
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return tuple(sorted(ids))

    def default_sampling_params(self) -> dict:
        """SamplingParams field -> default from the model's generation_config.json (vLLM's
        `generation_config="auto"`); applied where the caller left a field unset."""
        return dict(self._sampling_defaults)

    def add_request(self, request_id: str, prompt: str | list[int] | Resume, params: SamplingParams,
                    prompt_text: str | None = None) -> None:
        if request_id in self.requests:
            raise ConfigError(f"request id {request_id!r} is already in use; use a unique id")
        resume = prompt if isinstance(prompt, Resume) else None
        prompt_text, token_ids = self._prompt_tokens(prompt, prompt_text)
        self._check_request(token_ids, params)
        params.bind_tokenizer(self.tokenizer, self.model_config.vocab_size)
        grammar = None
        if params.structured_outputs is not None:
            grammar = self.structured.compile(params.structured_outputs)
        state = RequestState(request_id, prompt_text, token_ids, params)
        for index in range(params.n):
            prior = resume.completions[index] if resume is not None else None
            state.completions.append(prior or CompletionOutput(index, "", []))
            if prior is not None and prior.finish_reason is not None:
                continue  # finished before the migration: nothing to run
            seq_params = params
            if params.seed is not None and index:
                seq_params = dataclasses.replace(params, seed=params.seed + index)
            seq = Sequence(next(self._seq_ids), request_id, index, token_ids, seq_params,
                           arrival=0.0, output_token_ids=list(prior.token_ids) if prior else [])
            state.seq_ids.append(seq.seq_id)
            self.seq_to_request[seq.seq_id] = (request_id, index)
            if grammar is not None:
                self._add_grammar(seq, grammar, params.structured_outputs)
            self.scheduler.add(seq)
        self.requests[request_id] = state

    def _prompt_tokens(self, prompt, prompt_text: str | None) -> tuple[str | None, list[int]]:
        if isinstance(prompt, Resume):  # a request migrated from a dead replica (migration.py)
            return prompt.prompt_text, list(prompt.prompt_token_ids)
        if isinstance(prompt, str):
            return prompt, self.tokenizer.encode(prompt)
        return prompt_text, list(prompt)

    def _check_request(self, token_ids: list[int], params: SamplingParams) -> None:
        if not token_ids:
            raise ConfigError("the prompt is empty; give at least one token")
        if (params.logprobs or 0) > self.config.max_logprobs:
            raise ConfigError(f"SamplingParams.logprobs={params.logprobs} is invalid; it must be "
                              f"<= max_logprobs={self.config.max_logprobs} (raise --max-logprobs)")
        if len(token_ids) >= self.max_model_len:
            raise ConfigError(
                f"the prompt has {len(token_ids)} tokens but max_model_len is "
                f"{self.max_model_len} (room for at least one new token is needed); shorten the "
                f"prompt or raise --max-model-len")

    def _add_grammar(self, seq: Sequence, grammar, structured_outputs) -> None:
        self.structured.add(seq.seq_id, grammar, structured_outputs)
        for token in seq.output_token_ids:  # a resumed request: its grammar state so far
            self.structured.accept(seq.seq_id, token)

    def abort_request(self, request_id: str) -> None:
        state = self.requests.pop(request_id, None)
        if state is None:
            return
        self.scheduler.abort_request(request_id)
        self._forget(state)

    def _forget(self, state: RequestState) -> None:
        for seq_id in state.seq_ids:
            self.seq_to_request.pop(seq_id, None)
            self.structured.free(seq_id)

    def has_unfinished_requests(self) -> bool:
        return bool(self.requests) or bool(self.in_flight)

    def step(self) -> list[RequestOutput]:
        if self._dead:
            raise EngineDeadError(self._dead)
        self._fill_pipeline()
        if not self.in_flight:
            return []
        out, future = self.in_flight.popleft()
        self.step_tokens = out.num_tokens
        try:
            result = future.result()
        except EngineDeadError as exc:
            self._dead = str(exc)
            raise
        seqs = self.scheduler.update_from_output(out, result)
        for seq in seqs:
            if seq.seq_id in self.structured and not seq.is_finished and \
                    self.structured.accept(seq.seq_id, seq.output_token_ids[-1]):
                self.scheduler.finish(seq.seq_id, "stop")  # the grammar is complete
        return self._process(seqs, result.sampled if result is not None else {})

    def _fill_pipeline(self) -> None:
        depth = self.executor.max_concurrent_batches
        while len(self.in_flight) < depth:
            out = self.scheduler.schedule(*self.scheduler.micro_batch_limits(depth))
            if out.is_empty:
                return
            self.structured.fill_bitmasks(out)
            self.in_flight.append((out, self.executor.execute_model_async(out)))

    def _process(self, seqs: list[Sequence], sampled: dict) -> list[RequestOutput]:
        touched: dict[str, RequestState] = {}
        for seq in seqs:
            owner = self.seq_to_request.get(seq.seq_id)
            if owner is None:
                continue  # aborted while in flight
            state = self.requests[owner[0]]
            state.num_cached_tokens = max(state.num_cached_tokens, seq.num_cached_tokens)
            stop = self.output_processor.update_text(state, seq.index, list(seq.output_token_ids),
                                                     _logprob_entry(seq, sampled))
            comp = state.completions[seq.index]
            if stop is not None and seq.finish_reason is None:
                self.scheduler.finish(seq.seq_id, "stop")
                comp.finish_reason, comp.stop_reason = "stop", stop
            elif seq.finish_reason is not None:
                comp.finish_reason = seq.finish_reason
                comp.stop_reason = getattr(seq, "stop_reason", None)
            touched[state.request_id] = state
        outputs = []
        for request_id, state in touched.items():
            outputs.append(state.to_output())
            if state.finished:
                self.requests.pop(request_id, None)
                self._forget(state)
        return outputs

    def stats(self) -> dict:
        bm, sch = self.block_manager, self.scheduler
        moe = self.expert_load.snapshot(idle=not self.in_flight) if self.expert_load else {}
        return {**moe, "num_running": sch.num_running, "num_waiting": sch.num_waiting,
                "kv_cache_usage": bm.usage, "num_preemptions": sch.num_preemptions,
                "prompt_tokens_total": getattr(sch, "prompt_tokens_total", 0),
                "generation_tokens_total": getattr(sch, "generation_tokens_total", 0),
                "prefix_cache_queries": bm.prefix_cache_queries,
                "prefix_cache_hits": bm.prefix_cache_hits, "num_blocks": self.num_blocks}

    def check_health(self) -> None:
        if self._dead:
            raise EngineDeadError(self._dead)
        try:
            self.executor.check_health()
            # A round trip to every rank: a stopped process is alive but never answers (the
            # watchdog bounds this call). Only while idle: nothing else is in flight then.
            if not self.in_flight:
                self.executor.collective_rpc("ping")
        except EngineDeadError as exc:
            self._dead = str(exc)
            raise

    def interrupt(self, reason: str) -> bool:
        """From the watchdog's thread: end a stuck step (executor.interrupt)."""
        executor = self.executor
        return executor is not None and executor.interrupt(reason)

    def shutdown(self) -> None:
        executor, self.executor = getattr(self, "executor", None), None
        if executor is not None:
            executor.shutdown()


def _logprob_entry(seq: Sequence, sampled: dict) -> dict | None:
    token = sampled.get(seq.seq_id)
    if token is None or seq.params.logprobs is None or token.logprob is None:
        return None
    entry = dict(token.top_logprobs or {})
    entry[token.token_id] = token.logprob
    return entry
