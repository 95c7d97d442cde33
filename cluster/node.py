"""Start one node (what `run_cluster` does): pre-flight checks, the spec, idempotency, readiness."""

import os
import shlex
import socket
from pathlib import Path

from cluster import api_key, backend, ready
from cluster.args import RunClusterArgs
from cluster.auth import ensure_token, token_path
from cluster.bind_sources import missing_bind_sources
from cluster.docker_values import parse_env
from cluster.progress import step
from cluster.serve_check import check_serve_args
from cluster.spec import GCS_PORT, LABEL_HASH, ContainerSpec, build_spec
from onenode.errors import ClusterError, ConfigError
from onenode.secrets import read_key_file

HEAD_WAIT_S = 60.0


def resolve_spec(args: RunClusterArgs, caller_env: dict[str, str],
                 create_token: bool = True) -> ContainerSpec:
    """All I/O needed by the pure spec builder: env files, token and key files, GPUs, node IP.
    Touches no Docker, so a refused option never reaches the daemon (and --dry-run needs none);
    `create_token=False` leaves a missing head token to be generated at the real start."""
    lines = []
    for f in args.env_files:
        try:
            text = Path(f).read_text()
        except OSError as exc:
            raise ConfigError(f"--env-file {f} cannot be read ({exc.strerror}); check the "
                              f"path") from None
        lines += [(f, n, line) for n, line in enumerate(text.splitlines(), 1)]
    env = parse_env(args.env, lines, caller_env)
    node_ip = env.get("VLLM_HOST_IP") or args.ip or (args.head_ip if args.role == "head" else None)
    token = None
    if not args.no_ray_auth:
        create = args.role == "head" and create_token
        token = str(token_path(args.ray_token_file) if args.role == "head" and not create
                    else ensure_token(args.ray_token_file, create=create))
    key_file = str(read_key_file(args.api_key_file)[0]) if args.api_key_file else None
    ports = (("8000/tcp", "127.0.0.1", args.api_port),) if args.api_port else ()
    spec = build_spec(args, env, node_ip, token, detect_gpus(), ports, key_file)
    if args.serve:
        check_run_cluster_serving(args, spec)
    return spec


def check_run_cluster_serving(args: RunClusterArgs, spec: ContainerSpec) -> None:
    """`--serve` refuses an API beyond loopback without a key (before anything starts)."""
    serve_args = shlex.split(args.serve_args)
    api_key.refuse_key_in_argv(serve_args)
    check_serve_args([args.serve, *serve_args])
    _, port = api_key.serve_address(serve_args)
    published = [ip for cport, ip, _ in spec.ports if cport == f"{port}/tcp"]
    where = api_key.exposure(spec.network == "host", serve_args, published)
    warning = api_key.check_serving(where, api_key.has_key(spec.env_dict(), serve_args),
                                    args.allow_unauthenticated,
                                    "a file holding the key, mounted read-only")
    if warning:
        step(f"[yellow]warning[/]: {warning}")


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
    missing = missing_bind_sources(spec.name, [(m.source, m.target) for m in spec.mounts])
    if missing:
        raise ConfigError(missing[0])
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
    spec = resolve_spec(args, dict(os.environ) if caller_env is None else caller_env)
    c = backend.client()
    existing = backend.get(c, spec.name)
    if existing is not None:
        same = existing.labels.get(LABEL_HASH) == dict(spec.labels)[LABEL_HASH]
        if existing.status == "running" and same:
            step(f"{spec.name} is already running with this spec; left alone")
            for line in missing_bind_sources(spec.name, backend.bind_mounts(existing)):
                step(f"[red]warning[/]: {line}")
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
