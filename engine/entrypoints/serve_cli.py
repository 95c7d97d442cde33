"""`onenode serve MODEL ...`: a thin Typer command.

Flag names are vLLM's, so a runbook's `vllm serve ...` works after replacing `vllm` with
`onenode`. The root app registers it: `app.command("serve")(serve)`.
"""

from typing import Annotated, Optional

import typer

from engine.config import EngineConfig
from onenode.secrets import read_key_file


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
        envvar=["ONENODE_API_KEY", "VLLM_API_KEY"], show_envvar=True,
        help="require 'Authorization: Bearer KEY' on /v1/* (prefer --api-key-file: argv is "
             "visible in ps)")] = None,
    api_key_file: Annotated[Optional[str], typer.Option(
        envvar="ONENODE_API_KEY_FILE", show_envvar=True,
        help="file holding the API key (e.g. a read-only mount)")] = None,
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
):
    """Serve MODEL with an OpenAI-compatible API (/v1/completions, /v1/chat/completions, ...)."""
    engine_args = dict(locals())  # every other parameter is an EngineConfig field of that name
    server_args = {k: engine_args.pop(k) for k in ("host", "port", "api_key", "served_model_name")}
    key_file = engine_args.pop("api_key_file")
    server_args["api_key"] = (read_key_file(key_file)[1] if key_file else None) or \
        server_args["api_key"] or None
    from engine.entrypoints.api_server import run_server

    run_server(EngineConfig(**engine_args), **server_args)
