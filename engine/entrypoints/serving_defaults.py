"""Engine defaults that differ when serving, as vLLM's usage context makes them differ between
`LLM(...)` and `vllm serve`.

On CPU the step's token budget (max_num_batched_tokens) is 256 when serving. A step runs every
running stream's next token together with a chunk of the waiting prompts, so the chunk sets the
worst gap between two tokens of a stream: on the rig (2 cores, SmolLM2-135M, vLLM's `bench serve`
at concurrency 32) a 2048-token budget gave a p99 inter-token latency of 1.9 s, 512 gave 0.67 s
and 256 gave 0.41 s, at 4 % less output throughput; the mean time to first token also fell
(4.5 s, 3.6 s, 4.1 s), as smaller chunks let the first prompts of a burst start sooner.
Offline (`LLM`) keeps the large budget: there only the total time counts. An explicit
--max-num-batched-tokens always wins. docs/performance.md has the table.
"""

import dataclasses

from engine.config import EngineConfig
from engine.parallel.distributed_init import pick_device

CPU_SERVE_MAX_NUM_BATCHED_TOKENS = 256


def serving_defaults(config: EngineConfig) -> EngineConfig:
    if config.max_num_batched_tokens is not None or pick_device(config.device) != "cpu":
        return config
    return dataclasses.replace(config, max_num_batched_tokens=CPU_SERVE_MAX_NUM_BATCHED_TOKENS)
