"""Parse `run_cluster IMAGE HEAD_IP --head|--worker HF_HOME [options]` (vLLM's
examples/online_serving/run_cluster.sh argument order) into structured options (pure).

Docker options are mapped one by one; anything else is a one-line error listing what is supported,
never passed through as a shell string.
"""

import ipaddress
import re
from dataclasses import dataclass, field

from onenode.errors import ConfigError

DOCKER_OPTIONS = ("-e/--env", "--env-file", "-v/--volume", "--cap-add", "--privileged",
                  "--shm-size", "--gpus", "--device", "--network", "--ip", "--name", "--ulimit",
                  "--restart")
OWN_FLAGS = ("--detach", "--replace", "--ray-token-file", "--no-ray-auth", "--num-cpus",
             "--object-store-memory", "--ready-timeout", "--cluster-name", "--serve",
             "--serve-args")
_VALUED = {"-e": "env", "--env": "env", "--env-file": "env_files", "-v": "volumes",
           "--volume": "volumes", "--cap-add": "cap_add", "--shm-size": "shm_size",
           "--gpus": "gpus", "--device": "devices", "--network": "network", "--net": "network",
           "--ip": "ip", "--name": "name", "--ulimit": "ulimits",
           "--ray-token-file": "ray_token_file", "--num-cpus": "num_cpus",
           "--object-store-memory": "object_store_memory", "--ready-timeout": "ready_timeout",
           "--cluster-name": "cluster_name", "--serve": "serve", "--serve-args": "serve_args",
           "--restart": "restart"}
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]"
                       r"{0,62}[A-Za-z0-9])?)*")
_RESTART = re.compile(r"no|always|unless-stopped|on-failure(:\d+)?")
_LISTS = {"env", "env_files", "volumes", "cap_add", "devices", "ulimits"}
_BOOLS = {"--privileged": "privileged", "--detach": "detach", "-d": "detach",
          "--replace": "replace", "--no-ray-auth": "no_ray_auth"}


@dataclass
class RunClusterArgs:
    image: str
    head_ip: str
    role: str  # "head" | "worker"
    hf_home: str
    env: list[str] = field(default_factory=list)  # "K=V" or "K" (taken from the caller's env)
    env_files: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    cap_add: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    ulimits: list[str] = field(default_factory=list)
    privileged: bool = False
    shm_size: str = "10.24g"
    gpus: str | None = None
    network: str = "host"
    ip: str | None = None
    name: str | None = None
    detach: bool = False
    replace: bool = False
    no_ray_auth: bool = False
    ray_token_file: str | None = None
    num_cpus: str | None = None
    object_store_memory: str | None = None
    ready_timeout: str = "120"
    cluster_name: str = "onenode"
    serve: str | None = None  # head only: also start `onenode serve MODEL` once the node is up
    serve_args: str = ""  # extra `onenode serve` flags, e.g. "--pipeline-parallel-size 2"
    restart: str = "unless-stopped"  # docker's --restart: no | always | unless-stopped | ...
    # Simulated clusters only (not a run_cluster flag): publish the API port on host loopback.
    api_port: int | None = None


USAGE = ("usage: run_cluster IMAGE HEAD_IP --head|--worker HF_HOME [docker options: "
         + ", ".join(DOCKER_OPTIONS) + "] [" + ", ".join(OWN_FLAGS) + "]")


def parse_run_cluster(argv: list[str]) -> RunClusterArgs:
    if len(argv) < 4 or argv[2] not in ("--head", "--worker"):
        raise ConfigError(USAGE)
    args = RunClusterArgs(image=argv[0], head_ip=argv[1], role=argv[2][2:], hf_home=argv[3])
    rest = list(argv[4:])
    while rest:
        opt = rest.pop(0)
        key, value = _split(opt)
        if key in _BOOLS:
            setattr(args, _BOOLS[key], True)
            continue
        if key not in _VALUED:
            raise ConfigError(f"unsupported option {opt!r}; supported docker options: "
                              f"{', '.join(DOCKER_OPTIONS)}; onenode flags: {', '.join(OWN_FLAGS)}")
        if value is None:
            if not rest:
                raise ConfigError(f"option {key} needs a value")
            value = rest.pop(0)
        attr = _VALUED[key]
        if attr in _LISTS:
            getattr(args, attr).append(value)
        else:
            setattr(args, attr, value)
    if args.serve and args.role != "head":
        raise ConfigError("--serve starts the API server on the head; pass it with --head")
    _validate(args)
    return args


def _validate(args: RunClusterArgs) -> None:
    name_ok = _HOSTNAME.fullmatch(args.head_ip) and not args.head_ip.replace(".", "").isdigit()
    if not is_ip(args.head_ip) and not name_ok:
        raise ConfigError(f"HEAD_IP {args.head_ip!r} is not an IP address or host name; pass the "
                          f"head's address on the cluster network, e.g. 10.0.0.1")
    if args.ip is not None and not is_ip(args.ip):
        raise ConfigError(f"--ip {args.ip!r} is not an IP address; pass e.g. 172.30.1.11")
    if not _RESTART.fullmatch(args.restart):
        raise ConfigError(f"--restart {args.restart!r}; use no, always, unless-stopped or "
                          f"on-failure[:N] (as docker run takes it)")
    for flag, value, kind in (("--ready-timeout", args.ready_timeout, float),
                              ("--num-cpus", args.num_cpus, int)):
        try:
            if value is not None and kind(value) < 0:
                raise ValueError
        except ValueError:
            raise ConfigError(f"{flag} {value!r} must be a non-negative number") from None


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _split(opt: str) -> tuple[str, str | None]:
    if opt.startswith("--") and "=" in opt:
        key, value = opt.split("=", 1)
        return key, value
    return opt, None
