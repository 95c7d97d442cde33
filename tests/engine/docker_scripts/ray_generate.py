"""Run inside the head container: generate with the ray backend, print JSON with the tokens and
the node IP of every rank (uni run for comparison when --compare-uni).

--one-cpu-per-node: hold one CPU of every node first (the test nodes have two), so that one
stage's ranks cannot pack onto a node and land one per container, as on hosts of one device."""

import json
import sys

from engine import LLM, SamplingParams

model, tp, pp = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
prompts = json.loads(sys.argv[4])
sp = SamplingParams(temperature=0, max_tokens=int(sys.argv[5]), ignore_eos=True)
if "--one-cpu-per-node" in sys.argv:
    import ray

    ray.init(address="auto", logging_level="WARNING")
    nodes = len([n for n in ray.nodes() if n["Alive"]])
    held = ray.util.placement_group([{"CPU": 1}] * nodes, strategy="STRICT_SPREAD")
    ray.get(held.ready(), timeout=120)
kw = dict(kv_cache_space_gib=0.25, max_model_len=256, dtype="float32")
llm = LLM(model, tensor_parallel_size=tp, pipeline_parallel_size=pp,
          distributed_executor_backend="ray",
          enable_expert_parallel="--enable-expert-parallel" in sys.argv, **kw)
ips = [info["ray_ip"] for info in llm.engine.executor.node_infos]
tokens = [o.outputs[0].token_ids for o in llm.generate(prompts, sp, use_tqdm=False)]
llm.shutdown()
result = {"ips": ips, "tokens": tokens}
if "--compare-uni" in sys.argv:
    uni = LLM(model, **kw)
    result["uni"] = [o.outputs[0].token_ids for o in uni.generate(prompts, sp, use_tqdm=False)]
print("RESULT=" + json.dumps(result))
