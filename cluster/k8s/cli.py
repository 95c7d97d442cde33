"""`onenode k8s render`: print the manifests for a layout as YAML (thin: parse, build, dump)."""

from typing import Annotated, Optional

import typer

k8s_app = typer.Typer(help="Kubernetes manifests (LeaderWorkerSet or KubeRay).",
                      no_args_is_help=True)


def _env(items: list[str] | None) -> tuple[tuple[str, str], ...]:
    out = []
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r}: use -e NAME=VALUE (secrets belong in a Secret, "
                                     f"see docs/kubernetes.md)")
        out.append((name, value))
    return tuple(out)


@k8s_app.command("render")
def render(
    model: Annotated[str, typer.Argument(help="model path inside the pods (under "
                                              "/root/.cache/huggingface) or a hub id")],
    nodes: Annotated[int, typer.Option(help="pods (Ray nodes)")] = 2,
    gpus_per_node: Annotated[int, typer.Option(help="nvidia.com/gpu per pod")] = 8,
    tensor_parallel_size: Annotated[int, typer.Option("--tensor-parallel-size", "-tp")] = 8,
    pipeline_parallel_size: Annotated[int, typer.Option("--pipeline-parallel-size", "-pp")] = 2,
    kind: Annotated[str, typer.Option(help="lws (LeaderWorkerSet) or kuberay (RayCluster + "
                                           "serve Deployment)")] = "lws",
    image: Annotated[str, typer.Option(help="the onenode image, pushed where the cluster "
                                            "pulls from")] = "onenode:latest",
    name: Annotated[str, typer.Option(help="prefix of every object and Secret")] = "onenode",
    namespace: Annotated[Optional[str], typer.Option()] = None,
    port: Annotated[int, typer.Option(help="API port")] = 8000,
    hf_cache_pvc: Annotated[str, typer.Option(help="PersistentVolumeClaim holding the HF "
                                                   "cache")] = "huggingface-cache",
    shm_size: Annotated[str, typer.Option(help="in-memory /dev/shm per pod")] = "10.24g",
    ib: Annotated[bool, typer.Option("--ib", help="expose /dev/infiniband with IPC_LOCK "
                                                  "(NCCL over InfiniBand/RoCE)")] = False,
    rdma_resource: Annotated[Optional[str], typer.Option(
        help="an RDMA device plugin resource to request, e.g. rdma/hca_shared_devices_a")] = None,
    hf_token_secret: Annotated[Optional[str], typer.Option(
        help="Secret with key `token` for gated models")] = None,
    env: Annotated[Optional[list[str]], typer.Option("--env", "-e",
                                                     help="NAME=VALUE on every pod")] = None,
    serve_args: Annotated[str, typer.Option(help="extra `onenode serve` flags")] = "",
):
    """Print a LeaderWorkerSet or a KubeRay RayCluster, with a Service for the API, for MODEL on
    NODES pods of GPUS_PER_NODE GPUs; apply with `kubectl apply -f -` (docs/kubernetes.md)."""
    import shlex

    from cluster.k8s.layout import K8sLayout
    from cluster.k8s.render import to_yaml

    layout = K8sLayout(model=model, nodes=nodes, gpus_per_node=gpus_per_node,
                       tp=tensor_parallel_size, pp=pipeline_parallel_size, kind=kind,
                       image=image, name=name, namespace=namespace, port=port,
                       hf_cache_pvc=hf_cache_pvc, shm_size=shm_size, ib=ib,
                       rdma_resource=rdma_resource, hf_token_secret=hf_token_secret,
                       env=_env(env), serve_args=tuple(shlex.split(serve_args)))
    typer.echo(to_yaml(layout), nl=False)
