"""Start one node (what `run_cluster` does): pre-flight checks, the spec, idempotency, readiness."""

import os
import socket
from pathlib import Path

from cluster import backend, ready
from cluster.args import RunClusterArgs
from cluster.auth import ensure_token
from cluster.progress import step
from cluster.spec import GCS_PORT, LABEL_HASH, ContainerSpec, build_spec, parse_env
from onenode.errors import ClusterError, ConfigError

HEAD_WAIT_S = 60.0


def resolve_spec(args: RunClusterArgs, caller_env: dict[str, str]) -> ContainerSpec:
    """All I/O needed by the pure spec builder: env files, token file, GPUs, node IP."""
    lines = []
    for f in args.env_files:
        if not Path(f).exists():
            raise ConfigError(f"--env-file {f} does not exist")
        lines += Path(f).read_text().splitlines()
    env = parse_env(args.env, lines, caller_env)
    node_ip = env.get("VLLM_HOST_IP") or args.ip or (args.head_ip if args.role == "head" else None)
    token = None
    if not args.no_ray_auth:
        token = str(ensure_token(args.ray_token_file, create=args.role == "head"))
    ports = ((8000, "127.0.0.1", args.api_port),) if args.api_port else ()
    return build_spec(args, env, node_ip, token, detect_gpus(), ports)


def detect_gpus() -> str | None:
    """GPUs all when NVML sees any (run_cluster.sh passes --gpus all unconditionally)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
        pynvml.nvmlShutdown()
        return "all" if count else None
    except Exception:  # noqa: BLE001 - no driver / no NVML: a CPU host
        return None


def preflight(c, args: RunClusterArgs, spec: ContainerSpec) -> None:
    if not backend.image_exists(c, args.image):
        raise ClusterError(f"image {args.image} not found; build it with `onenode image build` "
                           f"(or `make image`), or docker load it on this host")
    if not Path(args.hf_home).is_dir():
        raise ConfigError(f"HF_HOME {args.hf_home} does not exist; create it or pass the "
                          f"directory that holds your models (mounted at /root/.cache/huggingface)")
    if spec.network != "host":
        return
    ip = spec.env_dict().get("VLLM_HOST_IP")
    if ip and not _is_local_address(ip):
        raise ConfigError(f"VLLM_HOST_IP={ip} is not an address of this host; use this host's "
                          f"own IP on the cluster network (see `ip -4 addr`)")
    if args.role == "head" and not _port_free(GCS_PORT):
        raise ClusterError(f"port {GCS_PORT} is already in use on this host; stop the other Ray "
                           f"head (`ray stop` / `docker rm -f onenode-head`) first")
    # With host networking the container sees the network as this host does, so the head's GCS
    # must answer from here; bounded, because the head may still be starting.
    wait_s = min(float(args.ready_timeout), HEAD_WAIT_S)
    if args.role == "worker" and not ready.wait_reachable(args.head_ip, GCS_PORT, wait_s):
        raise ClusterError(f"HEAD_IP {args.head_ip}:{GCS_PORT} did not answer from this host "
                           f"within {wait_s:.0f}s; start the head first (run_cluster IMAGE "
                           f"{args.head_ip} --head ...), check the IP and that TCP {GCS_PORT} is "
                           f"open between the hosts")


def _is_local_address(ip: str) -> bool:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((ip, 0))
        return True
    except OSError:
        return False


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


def start_node(args: RunClusterArgs, caller_env: dict | None = None):
    """Returns (container, started_now). Same spec already running -> left alone."""
    c = backend.client()
    spec = resolve_spec(args, dict(os.environ) if caller_env is None else caller_env)
    existing = backend.get(c, spec.name)
    if existing is not None:
        same = existing.labels.get(LABEL_HASH) == dict(spec.labels)[LABEL_HASH]
        if existing.status == "running" and same:
            step(f"{spec.name} is already running with this spec; left alone")
            return existing, False
        if existing.status == "running" and not args.replace:
            raise ClusterError(f"{spec.name} is running with a different spec; pass --replace to "
                               f"recreate it (or `docker rm -f {spec.name}`)")
        backend.remove(c, spec.name)
    preflight(c, args, spec)
    step(f"starting {spec.name} ({args.role}, image {args.image}, network {spec.network})")
    container = backend.start(c, spec)
    try:
        ready.wait_ready(c, spec.name, args.role, float(args.ready_timeout))
    except (ClusterError, KeyboardInterrupt):  # a node that never became ready is not left over
        backend.remove(c, spec.name)
        raise
    return container, True
