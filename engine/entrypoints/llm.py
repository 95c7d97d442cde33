"""LLM: offline batched inference with vLLM's signature (`LLM(model, tensor_parallel_size=4)
.generate(prompts, SamplingParams(...))`)."""

import itertools

from tqdm.auto import tqdm

from engine.loop.llm_engine import LLMEngine
from engine.outputs import RequestOutput
from engine.sampling_params import SamplingParams
from engine.tokenizer import apply_chat_template
from engine.vllm_args import engine_config_from_args
from onenode.errors import ConfigError


class LLM:
    def __init__(self, model: str, **engine_args):
        """engine_args: EngineConfig's fields by their vLLM names (tensor_parallel_size=4,
        seed=0, ...); see engine/vllm_args.py for the vLLM args refused or ignored."""
        config = engine_config_from_args(model, engine_args)
        if config.data_parallel_size > 1:
            from engine.loop.dp_engine import DataParallelEngine

            self.engine = DataParallelEngine(config)  # the same face over N replicas
        else:
            self.engine = LLMEngine(config)
        self._ids = itertools.count()

    def get_default_sampling_params(self) -> SamplingParams:
        """vLLM's: SamplingParams with the model's generation_config.json defaults applied."""
        return SamplingParams(**self.engine.default_sampling_params())

    def get_tokenizer(self):
        return self.engine.tokenizer

    def generate(self, prompts, sampling_params=None, use_tqdm: bool = True) -> list[RequestOutput]:
        """prompts: a string, a list of strings, or a list of token-id lists."""
        prompts = _as_list(prompts)
        if sampling_params is None:
            sampling_params = self.get_default_sampling_params()
        params = _params_per_prompt(sampling_params, len(prompts))
        ids = []
        for prompt, p in zip(prompts, params):
            request_id = str(next(self._ids))
            self.engine.add_request(request_id, prompt, p)
            ids.append(request_id)
        return self._run(ids, use_tqdm)

    def chat(self, messages, sampling_params=None, use_tqdm: bool = True) -> list[RequestOutput]:
        """messages: one conversation (list of {"role", "content"}) or a list of them."""
        conversations = [messages] if messages and isinstance(messages[0], dict) else messages
        tok = self.engine.tokenizer
        prompts = [apply_chat_template(tok, conv) for conv in conversations]
        return self.generate(prompts, sampling_params, use_tqdm)

    def _run(self, ids: list[str], use_tqdm: bool) -> list[RequestOutput]:
        done: dict[str, RequestOutput] = {}
        bar = tqdm(total=len(ids), desc="Processed prompts", disable=not use_tqdm,
                   dynamic_ncols=True)
        try:
            while len(done) < len(ids):
                for out in self.engine.step():
                    if out.finished and out.request_id in ids and out.request_id not in done:
                        done[out.request_id] = out
                        bar.update(1)
        except BaseException:
            for request_id in ids:
                self.engine.abort_request(request_id)
            raise
        finally:
            bar.close()
        return [done[i] for i in ids]

    def shutdown(self) -> None:
        self.engine.shutdown()

    def __del__(self):
        try:
            self.shutdown()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def _as_list(prompts):
    if isinstance(prompts, str):
        return [prompts]
    prompts = list(prompts)
    if prompts and isinstance(prompts[0], int):
        return [prompts]
    return prompts


def _params_per_prompt(sampling_params, n: int) -> list[SamplingParams]:
    if sampling_params is None:
        return [SamplingParams()] * n
    if isinstance(sampling_params, SamplingParams):
        return [sampling_params] * n
    params = list(sampling_params)
    if len(params) != n:
        raise ConfigError(f"got {len(params)} SamplingParams for {n} prompts; give one, or one "
                          f"per prompt")
    return params
