"""`onenode serve MODEL ...`: a thin Typer command.

Flag names are vLLM's, so a runbook's `vllm serve ...` works after replacing `vllm` with
`onenode`. The root app registers it: `app.command("serve")(serve)`.
"""

from typing import Annotated, Optional

import typer

from engine.config import EngineConfig


def serve(
    model: Annotated[str, typer.Argument(help="HF model directory, GGUF file/dir or hub id")],
    tensor_parallel_size: Annotated[int, typer.Option("--tensor-parallel-size", "-tp")] = 1,
    pipeline_parallel_size: Annotated[int, typer.Option("--pipeline-parallel-size", "-pp")] = 1,
    distributed_executor_backend: Annotated[Optional[str], typer.Option(
        help="uni | mp | ray (default: uni for one rank, mp when this node has enough "
             "devices, else ray)")] = None,
    host: Annotated[str, typer.Option(help="0.0.0.0 to listen on every interface "
                                           "(inside a container)")] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    api_key: Annotated[Optional[str], typer.Option(
        envvar="ONENODE_API_KEY", show_envvar=True,
        help="require 'Authorization: Bearer KEY' on /v1/*")] = None,
    served_model_name: Annotated[Optional[str], typer.Option(
        help="model name clients send (default: MODEL as given)")] = None,
    max_model_len: Annotated[Optional[int], typer.Option()] = None,
    dtype: Annotated[str, typer.Option(help="auto | float32 | float16 | bfloat16")] = "auto",
    block_size: Annotated[int, typer.Option()] = 16,
    gpu_memory_utilization: Annotated[float, typer.Option()] = 0.9,
    kv_cache_space_gib: Annotated[Optional[float], typer.Option(
        help="KV cache size per rank on CPU (vLLM's VLLM_CPU_KVCACHE_SPACE)")] = None,
    max_num_seqs: Annotated[int, typer.Option()] = 256,
    max_num_batched_tokens: Annotated[Optional[int], typer.Option()] = None,
    pp_layer_partition: Annotated[Optional[str], typer.Option(
        help="layers per stage, e.g. 10,10,10")] = None,
    enable_prefix_caching: Annotated[bool, typer.Option(
        "--enable-prefix-caching/--no-enable-prefix-caching")] = True,
    seed: Annotated[int, typer.Option()] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    tokenizer: Annotated[Optional[str], typer.Option(help="default: MODEL")] = None,
    recovery_timeout: Annotated[float, typer.Option(
        help="seconds to rebuild the engine after a rank dies; then exit non-zero")] = 300.0,
    no_recovery: Annotated[bool, typer.Option(
        "--no-recovery", help="after a rank dies stay dead (/health 503) instead of rebuilding")
    ] = False,
    shutdown_timeout: Annotated[float, typer.Option(
        help="on SIGTERM, seconds to let streams in flight finish")] = 30.0,
):
    """Serve MODEL with an OpenAI-compatible API (/v1/completions, /v1/chat/completions, ...)."""
    engine_args = dict(locals())  # every other parameter is an EngineConfig field of that name
    server_args = {k: engine_args.pop(k) for k in ("host", "port", "api_key", "served_model_name")}
    server_args["api_key"] = server_args["api_key"] or None
    from engine.entrypoints.api_server import run_server
    from engine.entrypoints.recovery import RecoveryConfig

    server_args["recovery"] = RecoveryConfig(enabled=not engine_args.pop("no_recovery"),
                                             timeout_s=engine_args.pop("recovery_timeout"))
    server_args["shutdown_timeout"] = engine_args.pop("shutdown_timeout")

    run_server(EngineConfig(**engine_args), **server_args)
