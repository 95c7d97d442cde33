"""ContainerSpec: everything Docker needs to start one onenode node, built by a pure function from
run_cluster arguments (no I/O here: the CLI resolves env files, GPUs and the node IP first)."""

import hashlib
import json
from dataclasses import asdict, dataclass, field

from cluster.args import RunClusterArgs, is_ip
from onenode import names
from onenode.errors import ConfigError
from onenode.paths import CONTAINER_HF_HOME

TOKEN_MOUNT = "/run/onenode/ray_token"
GCS_PORT = 6379
LABEL_CLUSTER, LABEL_ROLE, LABEL_HASH = "onenode.cluster", "onenode.role", "onenode.spec-hash"


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str
    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    mounts: tuple[Mount, ...]
    cap_add: tuple[str, ...] = ()
    privileged: bool = False
    shm_size: int = 0
    gpus: str | None = None  # "all" or a count/device list, as docker --gpus takes it
    devices: tuple[str, ...] = ()
    network: str = "host"
    ip: str | None = None
    ulimits: tuple[tuple[str, int, int], ...] = ()
    ports: tuple[tuple[int, str, int], ...] = ()  # (container port, host ip, host port)
    labels: tuple[tuple[str, str], ...] = field(default=())
    restart: str = "unless-stopped"  # docker --restart: a crashed node comes back by itself

    def env_dict(self) -> dict[str, str]:
        return dict(self.env)

    def fingerprint(self) -> str:
        """Stable hash of the spec, stored as a label so an identical re-run is a no-op."""
        data = asdict(self)
        data["labels"] = [kv for kv in self.labels if kv[0] != LABEL_HASH]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def parse_size(text: str) -> int:
    """Docker-style sizes: 10.24g, 512m, 1024k, 2048."""
    units = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    t = text.strip().lower().rstrip("b") if text.lower().endswith(("kb", "mb", "gb")) else \
        text.strip().lower()
    mult = units.get(t[-1:], None)
    try:
        return int(float(t[:-1]) * mult) if mult else int(float(t))
    except ValueError:
        raise ConfigError(f"size {text!r} is not a size like 10.24g, 512m or 1024") from None


def container_name(args: RunClusterArgs, node_ip: str | None) -> str:
    if args.name:
        return args.name
    if args.role == "head":
        return names.head_container(args.cluster_name)
    return names.worker_container(args.cluster_name, node_ip or "local")


def ray_command(args: RunClusterArgs, node_ip: str | None) -> tuple[str, ...]:
    """`ray start ... --block`; --node-ip-address from VLLM_HOST_IP is the fix for vLLM #7815."""
    if args.role == "head":
        cmd = ["ray", "start", "--head", "--port", str(GCS_PORT)]
        dash = "127.0.0.1" if args.no_ray_auth else (node_ip or args.head_ip)
        cmd += ["--dashboard-host", dash]
    else:
        cmd = ["ray", "start", "--address", f"{args.head_ip}:{GCS_PORT}"]
    if node_ip:
        cmd += ["--node-ip-address", node_ip]
    if args.num_cpus:
        cmd += ["--num-cpus", str(args.num_cpus)]
    if args.object_store_memory:
        cmd += ["--object-store-memory", str(parse_size(args.object_store_memory))]
    return tuple(cmd + ["--disable-usage-stats", "--block"])


def node_command(args: RunClusterArgs, node_ip: str | None) -> tuple[str, ...]:
    """The container's main process is the supervisor (cluster/supervisor.py) around `ray start`:
    a restarted worker waits for the head before joining; the head keeps the API server up."""
    own = ["--serve"] if args.role == "head" else ["--wait-for", f"{args.head_ip}:{GCS_PORT}"]
    return ("python", "-m", "cluster.supervisor", *own, "--", *ray_command(args, node_ip))


# Ray's defaults notice a dead node after ~30 s; an engine should fail faster than that.
HEAD_HEALTH_ENV = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
                   "RAY_health_check_failure_threshold": "3"}


def build_spec(args: RunClusterArgs, env: dict[str, str], node_ip: str | None,
               token_file: str | None, gpus: str | None,
               ports: tuple[tuple[int, str, int], ...] = ()) -> ContainerSpec:
    """`env` is the fully resolved -e/--env-file set; `token_file` the host path of the Ray token
    (None with --no-ray-auth)."""
    if env.get("VLLM_HOST_IP") is not None and not is_ip(env["VLLM_HOST_IP"]):
        raise ConfigError(f"VLLM_HOST_IP={env['VLLM_HOST_IP']!r} is not an IP address; pass this "
                          f"host's IP on the cluster network, e.g. -e VLLM_HOST_IP=10.0.0.2")
    env = ({**HEAD_HEALTH_ENV, **env} if args.role == "head" else dict(env))
    mounts = [Mount(args.hf_home, CONTAINER_HF_HOME)] + [_volume(v) for v in args.volumes]
    if token_file:
        # The token travels as a read-only file, never in env or argv (docker inspect shows both).
        env.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": TOKEN_MOUNT})
        mounts.append(Mount(token_file, TOKEN_MOUNT, read_only=True))
    labels = ((LABEL_CLUSTER, args.cluster_name), (LABEL_ROLE, args.role))
    spec = ContainerSpec(
        name=container_name(args, node_ip), image=args.image, command=node_command(args, node_ip),
        env=tuple(sorted(env.items())), mounts=tuple(mounts), cap_add=tuple(args.cap_add),
        privileged=args.privileged, shm_size=parse_size(args.shm_size), gpus=args.gpus or gpus,
        devices=tuple(args.devices), network=args.network, ip=args.ip,
        ulimits=tuple(_ulimit(u) for u in args.ulimits), ports=ports, labels=labels,
        restart=args.restart)
    return ContainerSpec(**{**asdict_shallow(spec),
                            "labels": labels + ((LABEL_HASH, spec.fingerprint()),)})


def asdict_shallow(spec: ContainerSpec) -> dict:
    return {f: getattr(spec, f) for f in spec.__dataclass_fields__}


def _volume(text: str) -> Mount:
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise ConfigError(f"volume {text!r} must be SRC:DST or SRC:DST:ro")
    return Mount(parts[0], parts[1], read_only=len(parts) == 3 and parts[2] == "ro")


def _ulimit(text: str) -> tuple[str, int, int]:
    try:
        name, limits = text.split("=", 1)
        soft, _, hard = limits.partition(":")
        return name, int(soft), int(hard or soft)
    except ValueError:
        raise ConfigError(f"ulimit {text!r} must look like memlock=-1 or nofile=1024:2048") \
            from None


def parse_env(items: list[str], env_file_lines: list[str], caller_env: dict[str, str]) -> dict:
    """-e K=V wins over --env-file; -e K takes K from the caller's environment (docker's rule)."""
    env: dict[str, str] = {}
    for line in env_file_lines:
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            env[k.strip()] = v
    for item in items:
        if "=" in item:
            k, v = item.split("=", 1)
            env[k] = v
        elif item in caller_env:
            env[item] = caller_env[item]
    return env
