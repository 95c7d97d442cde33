"""What `onenode k8s render` is asked for, validated once (pure).

A layout fits when every GPU of every pod runs one rank (TP x PP = nodes x GPUs per pod) and a
tensor-parallel group either divides one pod's GPUs or spans whole pods; anything else is refused
in one line that says which numbers would fit, like `onenode plan` does.
"""

import re
from dataclasses import dataclass, field

from onenode.errors import ConfigError

KINDS = ("lws", "kuberay")
_DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class K8sLayout:
    model: str  # path inside the pods (under the HF cache volume) or a hub id
    nodes: int
    gpus_per_node: int
    tp: int
    pp: int
    kind: str = "lws"
    image: str = "onenode:latest"
    name: str = "onenode"
    namespace: str | None = None
    port: int = 8000
    hf_cache_pvc: str = "huggingface-cache"
    shm_size: str = "10.24g"
    ib: bool = False  # expose /dev/infiniband + IPC_LOCK for NCCL's IB transport
    rdma_resource: str | None = None  # e.g. rdma/hca_shared_devices_a from an RDMA device plugin
    hf_token_secret: str | None = None
    env: tuple[tuple[str, str], ...] = field(default=())
    serve_args: tuple[str, ...] = ()

    def __post_init__(self):
        validate(self)

    @property
    def ray_token_secret(self) -> str:
        return f"{self.name}-ray-token"

    @property
    def api_key_secret(self) -> str:
        return f"{self.name}-api-key"


def validate(layout: K8sLayout) -> None:
    if layout.kind not in KINDS:
        raise ConfigError(f"--kind {layout.kind!r} is not one of {', '.join(KINDS)}")
    for flag, value in (("--nodes", layout.nodes), ("--gpus-per-node", layout.gpus_per_node),
                        ("--tensor-parallel-size", layout.tp),
                        ("--pipeline-parallel-size", layout.pp)):
        if value < 1:
            raise ConfigError(f"{flag} must be >= 1 (got {value})")
    if not _DNS_LABEL.fullmatch(layout.name):
        raise ConfigError(f"--name {layout.name!r} must be a DNS label of at most 40 characters "
                          f"(lower case letters, digits and '-', starting with a letter)")
    if not layout.model.strip():
        raise ConfigError("MODEL is empty; pass a path inside the pods or a hub id")
    if not 1 <= layout.port <= 65535:
        raise ConfigError(f"--port {layout.port} is not a TCP port")
    for name, _ in layout.env:
        if not _ENV_NAME.fullmatch(name):
            raise ConfigError(f"-e {name!r}: use -e NAME=VALUE with a valid variable name")
    _check_fit(layout)


def _check_fit(layout: K8sLayout) -> None:
    n, g, t, p = layout.nodes, layout.gpus_per_node, layout.tp, layout.pp
    gpus = n * g
    if t * p != gpus:
        hint = f"; e.g. --pipeline-parallel-size {gpus // t}" if gpus % t == 0 else ""
        raise ConfigError(f"TP {t} x PP {p} = {t * p} ranks, but {n} pod(s) x {g} GPU(s) = "
                          f"{gpus} GPUs; every GPU runs one rank, so use TP x PP = {gpus}{hint}")
    if t <= g and g % t:
        raise ConfigError(f"--tensor-parallel-size {t} does not divide the {g} GPUs per pod; a "
                          f"TP group must fit a pod evenly (TP in {_divisors(g)})")
    if t > g and t % g:
        raise ConfigError(f"--tensor-parallel-size {t} spans pods unevenly ({g} GPUs per pod); "
                          f"use a multiple of {g}, or TP {g} x PP {n} (TP inside a pod, PP across pods)")


def _divisors(n: int) -> str:
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)
