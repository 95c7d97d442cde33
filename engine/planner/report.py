"""How a plan is shown: rich panels and tables, the commands to run, or one JSON object."""

import json

from rich.console import Console
from rich.table import Table

from engine.planner.plan import Plan, PlanRequest
from onenode.units import human_bytes

IMAGE = "onenode:latest"


def commands(plan: Plan, model_name: str, req: PlanRequest) -> list[str]:
    """The `run_cluster` / `onenode serve` lines that start this plan."""
    serve = [f"onenode serve {model_name}"]
    if plan.data_parallel_size > 1:
        serve.append(f"--data-parallel-size {plan.data_parallel_size}")
    if plan.tensor_parallel_size > 1:
        serve.append(f"--tensor-parallel-size {plan.tensor_parallel_size}")
    if plan.pipeline_parallel_size > 1:
        serve.append(f"--pipeline-parallel-size {plan.pipeline_parallel_size}")
    if plan.expert_parallel_size > 1:
        serve.append("--enable-expert-parallel")
    if req.max_model_len:
        serve.append(f"--max-model-len {req.max_model_len}")
    if req.gpu_memory_utilization != 0.9:
        serve.append(f"--gpu-memory-utilization {req.gpu_memory_utilization}")
    if req.dtype != "auto":
        serve.append(f"--dtype {req.dtype}")
    if plan.nodes_used == 1:
        return [" ".join(serve)]
    serve.append("--data-parallel-backend ray" if plan.data_parallel_size > 1
                 else "--distributed-executor-backend ray")
    lines = [f"run_cluster {IMAGE} HEAD_IP --head HF_HOME -e VLLM_HOST_IP=HEAD_IP"
             f"    # on the head node",
             f"run_cluster {IMAGE} HEAD_IP --worker HF_HOME -e VLLM_HOST_IP=THIS_NODE_IP"
             f"    # on each of the {plan.nodes_used - 1} other node(s)",
             "docker exec onenode-head onenode healthcheck"
             + (f" --model {model_name}" if model_name.startswith("/") else ""),
             "docker exec onenode-head " + " ".join(serve)]
    return lines


def plan_json(plan: Plan, model_name: str, source: str, req: PlanRequest) -> str:
    data = {"model": model_name, "source": source, **plan.to_dict(),
            "commands": commands(plan, model_name, req)}
    return json.dumps(data, indent=2)


def render_plan(console: Console, plan: Plan, model_name: str, source: str,
                req: PlanRequest) -> None:
    c = req.cluster
    console.print(f"[bold]onenode plan[/bold] {model_name} ({source}) on {c.nodes} node(s) x "
                  f"{c.gpus_per_node} GPU(s) x {human_bytes(c.gpu_memory_bytes)}")
    style = "green" if plan.fits else "red"
    ep = f" x EP={plan.expert_parallel_size}" if plan.expert_parallel_size > 1 else ""
    dp = f"DP={plan.data_parallel_size} x " if plan.data_parallel_size > 1 else ""
    console.print(f"[bold {style}]strategy: {plan.strategy}[/bold {style}]  "
                  f"{dp}TP={plan.tensor_parallel_size} x PP={plan.pipeline_parallel_size}{ep} "
                  f"({plan.gpus_used} GPU(s) on {plan.nodes_used} node(s), "
                  f"layers per stage {plan.pp_layer_partition})")
    console.print(plan.reason)
    for line in plan.notes:
        console.print(line)
    console.print(_numbers_table(plan))
    for line in plan.options:
        console.print(f"[cyan]{line}[/cyan]")
    for line in plan.advice:
        console.print(f"[yellow]{line}[/yellow]")
    console.print("[bold]commands[/bold]")
    for line in commands(plan, model_name, req):
        console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)


def _numbers_table(plan: Plan) -> Table:
    title = "per GPU (busiest rank)" + (", per replica" if plan.data_parallel_size > 1 else "")
    table = Table(title=title, show_header=True)
    table.add_column("item")
    table.add_column("prediction", justify="right")
    rows = [
        ("dtype", plan.dtype),
        ("weights", human_bytes(plan.weights_bytes_per_gpu)),
        ("weights read per decode token (active)", human_bytes(plan.active_bytes_per_gpu)),
        (f"activation reserve ({plan.max_num_batched_tokens} tokens)",
         human_bytes(plan.activation_bytes)),
        ("non-torch reserve", human_bytes(plan.non_torch_bytes)),
        ("KV cache", human_bytes(plan.kv_cache_bytes_per_gpu)),
        (f"KV block ({plan.block_size} tokens)", human_bytes(plan.block_bytes)),
        ("# GPU blocks", str(plan.num_gpu_blocks)),
        ("max tokens (blocks x block size)", str(plan.max_tokens)),
        (f"max concurrency at {plan.max_model_len} tokens", f"{plan.max_concurrency:.2f}x"),
        ("# CPU blocks (--device cpu, same TP x PP)", str(plan.num_cpu_blocks)),
    ]
    for item, value in rows:
        table.add_row(item, value)
    return table
