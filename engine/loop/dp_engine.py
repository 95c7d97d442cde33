"""DataParallelEngine: N replica LLMEngines behind LLMEngine's own face, for offline LLM(...).

`add_request` routes each prompt (router.py), `step` steps every busy replica at once (one thread
each; the work happens in the replicas' worker processes) and returns their outputs together, so
LLM.generate runs unchanged and keeps its output order.
"""

from concurrent.futures import ThreadPoolExecutor

from engine.config import EngineConfig
from engine.loop.llm_engine import LLMEngine
from engine.loop.replicas import start_replicas
from engine.loop.router import Router


class DataParallelEngine:
    def __init__(self, config: EngineConfig):
        self.config = config
        self.replicas: list[LLMEngine] = start_replicas(config, LLMEngine)
        first = self.replicas[0]
        self.tokenizer, self.model_config = first.tokenizer, first.model_config
        self.max_model_len, self.backend = first.max_model_len, first.backend
        self.num_blocks = sum(e.num_blocks for e in self.replicas)
        self.router = Router(len(self.replicas), config.block_size)
        self._where: dict[str, int] = {}
        self._pool = ThreadPoolExecutor(len(self.replicas), thread_name_prefix="onenode-dp-step")

    def default_sampling_params(self) -> dict:
        return self.replicas[0].default_sampling_params()

    def add_request(self, request_id: str, prompt, params, prompt_text: str | None = None):
        token_ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        replica = self.router.pick(token_ids)
        self.replicas[replica].add_request(request_id, prompt, params, prompt_text=prompt_text)
        self.router.assign(request_id, replica, token_ids)
        self._where[request_id] = replica

    def abort_request(self, request_id: str) -> None:
        replica = self._where.pop(request_id, None)
        if replica is not None:
            self.replicas[replica].abort_request(request_id)
            self.router.release(request_id)

    def has_unfinished_requests(self) -> bool:
        return any(e.has_unfinished_requests() for e in self.replicas)

    def step(self) -> list:
        busy = [e for e in self.replicas if e.has_unfinished_requests()]
        outputs = []
        for result in self._pool.map(LLMEngine.step, busy):
            outputs.extend(result)
        for out in outputs:
            if out.finished:
                self._where.pop(out.request_id, None)
                self.router.release(out.request_id)
            else:
                self.router.progress(out.request_id, len(out.prompt_token_ids) + sum(
                    len(c.token_ids) for c in out.outputs))
        return outputs

    def stats(self) -> dict:
        per = [e.stats() for e in self.replicas]
        total = {k: sum(s[k] for s in per) for k in per[0] if k != "kv_cache_usage"}
        total["kv_cache_usage"] = sum(s["kv_cache_usage"] for s in per) / len(per)
        return total

    def check_health(self) -> None:
        for engine in self.replicas:
            engine.check_health()

    def shutdown(self) -> None:
        replicas, self.replicas = getattr(self, "replicas", []), []
        for engine in replicas:
            engine.shutdown()
        if hasattr(self, "_pool"):
            self._pool.shutdown(wait=False)
