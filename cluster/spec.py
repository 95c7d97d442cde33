"""ContainerSpec: everything Docker needs to start one onenode node, built by a pure function from
run_cluster arguments (no I/O here: the CLI resolves env files, GPUs and the node IP first)."""

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field

from cluster import docker_values as dv
from cluster.api_key import API_KEY_MOUNT, KEY_FILE_ENV
from cluster.args import RunClusterArgs, is_ip
from onenode import names
from onenode.errors import ConfigError
from onenode.paths import CONTAINER_HF_HOME
from onenode.units import parse_bytes

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
    # ("8000/tcp", host ip ("" = all), host port or None = any free one)
    ports: tuple[tuple[str, str, int | None], ...] = ()
    labels: tuple[tuple[str, str], ...] = field(default=())
    runtime: str | None = None
    security_opt: tuple[str, ...] = ()
    ipc_mode: str | None = None
    pid_mode: str | None = None
    extra_hosts: tuple[tuple[str, str], ...] = ()
    hostname: str | None = None
    restart: tuple[str, int] = ("unless-stopped", 0)  # (policy, max retries for on-failure)
    mem_limit: int | None = None
    nano_cpus: int | None = None
    cpuset_cpus: str | None = None
    user: str | None = None
    working_dir: str | None = None

    def env_dict(self) -> dict[str, str]:
        return dict(self.env)

    def fingerprint(self) -> str:
        """Stable hash of the spec, stored as a label so an identical re-run is a no-op."""
        data = asdict(self)
        data["labels"] = [kv for kv in self.labels if kv[0] != LABEL_HASH]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


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
        size = parse_bytes(args.object_store_memory, flag="--object-store-memory")
        cmd += ["--object-store-memory", str(size)]
    return tuple(cmd + ["--disable-usage-stats", "--block"])


def node_command(args: RunClusterArgs, node_ip: str | None) -> tuple[str, ...]:
    """The container's main process is the supervisor (cluster/supervisor.py) around `ray start`:
    a restarted worker waits for the head before joining; the head keeps the API server up."""
    own = ["--serve"] if args.role == "head" else ["--wait-for", f"{args.head_ip}:{GCS_PORT}"]
    return ("python", "-m", "cluster.supervisor", *own, "--", *ray_command(args, node_ip))


DEFAULT_PARTITION_GRACE_S = 10.0


def head_health_env(grace_s: float = DEFAULT_PARTITION_GRACE_S) -> dict[str, str]:
    """Ray's GCS pings every node each second; a node that misses `grace_s` pings in a row is
    dead (its actors die, the engine rebuilds). Shorter interruptions (a switch flap, a GC pause)
    only delay the steps in flight, which the engine's step deadline (>= 30 s) allows. Ray's own
    default (~30 s) would leave a crashed node undetected for longer than that deadline."""
    return {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
            "RAY_health_check_failure_threshold": str(max(1, math.ceil(grace_s)))}


HEAD_HEALTH_ENV = head_health_env()


def build_spec(args: RunClusterArgs, env: dict[str, str], node_ip: str | None,
               token_file: str | None, gpus: str | None,
               ports: tuple[tuple[str, str, int | None], ...] = (),
               key_file: str | None = None) -> ContainerSpec:
    """`env` is the fully resolved -e/--env-file set; `token_file` the host path of the Ray token
    (None with --no-ray-auth); `key_file` the host path of the API key (--api-key-file)."""
    if env.get("VLLM_HOST_IP") is not None and not is_ip(env["VLLM_HOST_IP"]):
        raise ConfigError(f"VLLM_HOST_IP={env['VLLM_HOST_IP']!r} is not an IP address; pass this "
                          f"host's IP on the cluster network, e.g. -e VLLM_HOST_IP=10.0.0.2")
    grace = float(args.partition_grace)
    env = ({**head_health_env(grace), **env} if args.role == "head" else dict(env))
    mounts = [Mount(args.hf_home, CONTAINER_HF_HOME)] + [Mount(*dv.volume(v))
                                                          for v in args.volumes]
    # Secrets travel as read-only files, never in env or argv (docker inspect shows both).
    if token_file:
        env.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": TOKEN_MOUNT})
        mounts.append(Mount(token_file, TOKEN_MOUNT, read_only=True))
    else:  # explicit: newer Ray turns token auth on by itself when it finds a token
        env["RAY_AUTH_MODE"] = "disabled"
    if key_file:
        env[KEY_FILE_ENV] = API_KEY_MOUNT
        mounts.append(Mount(key_file, API_KEY_MOUNT, read_only=True))
    labels = tuple(_user_labels(args.labels)) + ((LABEL_CLUSTER, args.cluster_name),
                                                 (LABEL_ROLE, args.role))
    spec = ContainerSpec(
        name=container_name(args, node_ip), image=args.image, command=node_command(args, node_ip),
        env=tuple(sorted(env.items())), mounts=tuple(mounts), labels=labels,
        ports=tuple(ports) + tuple(dv.publish(p) for p in args.publish),
        **_docker_options(args, gpus))
    return ContainerSpec(**{**asdict_shallow(spec),
                            "labels": labels + ((LABEL_HASH, spec.fingerprint()),)})


def _docker_options(args: RunClusterArgs, gpus: str | None) -> dict:
    """The `docker run` options, each read the docker CLI's way (cluster/docker_values.py)."""
    ulimits = {u[0]: u for u in map(dv.ulimit, args.ulimits)}  # docker: the last one wins
    return {
        "cap_add": tuple(args.cap_add), "privileged": args.privileged,
        "shm_size": parse_bytes(args.shm_size, flag="--shm-size"), "gpus": args.gpus or gpus,
        "devices": tuple(dv.device(d) for d in args.devices), "network": args.network,
        "ip": args.ip, "ulimits": tuple(ulimits.values()), "runtime": args.runtime,
        "security_opt": tuple(args.security_opt),
        "ipc_mode": dv.namespace("--ipc", args.ipc, dv.IPC_MODES),
        "pid_mode": dv.namespace("--pid", args.pid, dv.PID_MODES),
        "extra_hosts": tuple(dv.add_host(h) for h in args.add_hosts),
        "hostname": args.hostname, "restart": dv.restart(args.restart),
        "mem_limit": parse_bytes(args.memory, flag="--memory") if args.memory else None,
        "nano_cpus": dv.cpus(args.cpus) if args.cpus else None,
        "cpuset_cpus": dv.cpuset(args.cpuset_cpus) if args.cpuset_cpus else None,
        "user": args.user, "working_dir": args.workdir}


def _user_labels(items: list[str]):
    for item in items:
        key, value = dv.label(item)
        if key.startswith("onenode."):
            raise ConfigError(f"--label {item!r}: onenode.* labels are onenode's own; pick "
                              f"another prefix")
        yield key, value


def asdict_shallow(spec: ContainerSpec) -> dict:
    return {f: getattr(spec, f) for f in spec.__dataclass_fields__}
