"""Parse `run_cluster IMAGE HEAD_IP --head|--worker HF_HOME [options]` (vLLM's
examples/online_serving/run_cluster.sh argument order) into structured options (pure).

One table (OPTIONS) lists every option: the parser, `--help` and the unknown-option error all
read it. Docker options keep docker's names and forms (`--opt value`, `--opt=value`, `-eK=V`);
their values are read in cluster/docker_values.py and reach Docker through docker-py, never
through a shell string.
"""

import ipaddress
import re
from dataclasses import dataclass, field

from onenode.errors import ConfigError


@dataclass(frozen=True)
class Option:
    names: tuple[str, ...]
    attr: str
    kind: str  # "list" (repeatable), "value" (last wins) or "flag"
    help: str
    docker: bool = True  # a `docker run` option (else one of onenode's own)


OPTIONS = (
    Option(("-e", "--env"), "env", "list", "set VAR=VALUE, or VAR from this shell"),
    Option(("--env-file",), "env_files", "list", "read VAR=VALUE lines (bare VAR: this shell's)"),
    Option(("-v", "--volume"), "volumes", "list", "bind mount SRC:DST[:ro]"),
    Option(("-p", "--publish"), "publish", "list", "publish [IP:][HOST_PORT:]PORT (bridge only)"),
    Option(("--network", "--net"), "network", "value", "network (default: host)"),
    Option(("--ip",), "ip", "value", "fixed IP on a user-made network"),
    Option(("--add-host",), "add_hosts", "list", "add HOST:IP to /etc/hosts"),
    Option(("--hostname",), "hostname", "value", "container host name (-h is help here)"),
    Option(("--name",), "name", "value", "container name (default onenode-head / "
                                        "onenode-worker-IP)"),
    Option(("--label",), "labels", "list", "add a label KEY=VALUE"),
    Option(("--gpus",), "gpus", "value", "GPUs: all, N or device=0,1 (default: all if seen)"),
    Option(("--runtime",), "runtime", "value", "OCI runtime, e.g. nvidia"),
    Option(("--device",), "devices", "list", "HOST[:CONTAINER][:rwm], e.g. /dev/infiniband"),
    Option(("--cap-add",), "cap_add", "list", "add a capability, e.g. IPC_LOCK"),
    Option(("--privileged",), "privileged", "flag", "full device and capability access"),
    Option(("--security-opt",), "security_opt", "list", "e.g. seccomp=unconfined"),
    Option(("--ipc",), "ipc", "value", "IPC namespace, e.g. host"),
    Option(("--pid",), "pid", "value", "PID namespace, e.g. host"),
    Option(("--shm-size",), "shm_size", "value", "/dev/shm size (default 10.24g)"),
    Option(("--ulimit",), "ulimits", "list", "NAME=SOFT[:HARD], e.g. memlock=-1"),
    Option(("-m", "--memory"), "memory", "value", "memory limit, e.g. 64g"),
    Option(("--cpus",), "cpus", "value", "CPU limit, e.g. 8.5"),
    Option(("--cpuset-cpus",), "cpuset_cpus", "value", "CPUs allowed, e.g. 0-15"),
    Option(("-u", "--user"), "user", "value", "USER[:GROUP] inside the container"),
    Option(("-w", "--workdir"), "workdir", "value", "working directory inside the container"),
    Option(("--restart",), "restart", "value", "no|always|unless-stopped|on-failure[:N] "
                                               "(default unless-stopped)"),
    Option(("-d", "--detach"), "detach", "flag", "return once the node is ready", docker=False),
    Option(("--dry-run",), "dry_run", "flag", "print the container spec as JSON; touch no "
                                              "Docker", docker=False),
    Option(("--replace",), "replace", "flag", "recreate a node whose spec differs", docker=False),
    Option(("--ray-token-file",), "ray_token_file", "value", "Ray token file (default "
           "~/.config/onenode/ray_token)", docker=False),
    Option(("--no-ray-auth",), "no_ray_auth", "flag", "turn Ray token auth off (unsafe)",
           docker=False),
    Option(("--num-cpus",), "num_cpus", "value", "CPUs this node offers to Ray", docker=False),
    Option(("--object-store-memory",), "object_store_memory", "value", "Ray object store size",
           docker=False),
    Option(("--ready-timeout",), "ready_timeout", "value", "seconds to wait for readiness "
                                                           "(default 120)", docker=False),
    Option(("--partition-grace",), "partition_grace", "value", "head: seconds a node may be "
           "unreachable before Ray declares it dead and the engine rebuilds (default 10)",
           docker=False),
    Option(("--cluster-name",), "cluster_name", "value", "cluster label (default onenode)",
           docker=False),
    Option(("--serve",), "serve", "value", "head: also run `onenode serve MODEL`", docker=False),
    Option(("--serve-args",), "serve_args", "value", "extra `onenode serve` flags, quoted",
           docker=False),
    Option(("--api-key-file",), "api_key_file", "value", "file holding the API key (mounted "
                                                         "read-only)", docker=False),
    Option(("--allow-unauthenticated",), "allow_unauthenticated", "flag", "serve beyond "
           "loopback without a key (unsafe)", docker=False),
)
_BY_NAME = {n: o for o in OPTIONS for n in o.names}
HELP_FLAGS = ("-h", "--help")
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]"
                       r"{0,62}[A-Za-z0-9])?)*")


@dataclass
class RunClusterArgs:
    image: str
    head_ip: str
    role: str  # "head" | "worker"
    hf_home: str
    env: list[str] = field(default_factory=list)  # "K=V" or "K" (taken from the caller's env)
    env_files: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    publish: list[str] = field(default_factory=list)
    add_hosts: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    cap_add: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    security_opt: list[str] = field(default_factory=list)
    ulimits: list[str] = field(default_factory=list)
    privileged: bool = False
    shm_size: str = "10.24g"
    gpus: str | None = None
    runtime: str | None = None
    network: str = "host"
    ip: str | None = None
    hostname: str | None = None
    name: str | None = None
    ipc: str | None = None
    pid: str | None = None
    memory: str | None = None
    cpus: str | None = None
    cpuset_cpus: str | None = None
    user: str | None = None
    workdir: str | None = None
    # Docker restarts a node whose process died (OOM, segfault), not one an operator stopped.
    restart: str = "unless-stopped"
    detach: bool = False
    dry_run: bool = False
    replace: bool = False
    no_ray_auth: bool = False
    ray_token_file: str | None = None
    num_cpus: str | None = None
    object_store_memory: str | None = None
    ready_timeout: str = "120"
    partition_grace: str = "10"  # docs/reliability.md: Ray's health checks are derived from it
    cluster_name: str = "onenode"
    serve: str | None = None  # head only: also start `onenode serve MODEL` once the node is up
    serve_args: str = ""  # extra `onenode serve` flags, e.g. "--pipeline-parallel-size 2"
    api_key_file: str | None = None  # host file with the serving key, mounted read-only
    allow_unauthenticated: bool = False
    # Simulated clusters only (not a run_cluster flag): publish the API port on host loopback.
    api_port: int | None = None


SYNOPSIS = "usage: run_cluster IMAGE HEAD_IP --head|--worker HF_HOME [options]"
USAGE = SYNOPSIS + " (run_cluster --help lists the options)"


def help_text() -> str:
    def rows(docker: bool) -> list[str]:
        return [f"  {', '.join(o.names) + ('' if o.kind == 'flag' else ' VALUE'):<34}{o.help}"
                for o in OPTIONS if o.docker == docker]

    return "\n".join([
        SYNOPSIS, "",
        "One onenode node per host (vLLM's run_cluster.sh argument order). HF_HOME is mounted at",
        "/root/.cache/huggingface. Options take `--opt VALUE` or `--opt=VALUE`.", "",
        "docker run options (passed through docker-py):", *rows(True), "",
        "onenode options:", *rows(False), "  -h, --help" + " " * 24 + "print this help"])


def wants_help(argv: list[str]) -> bool:
    return any(a in HELP_FLAGS for a in argv)


def parse_run_cluster(argv: list[str]) -> RunClusterArgs:
    if len(argv) < 4 or argv[2] not in ("--head", "--worker"):
        raise ConfigError(USAGE)
    args = RunClusterArgs(image=argv[0], head_ip=argv[1], role=argv[2][2:], hf_home=argv[3])
    rest = list(argv[4:])
    while rest:
        opt, value = _split(rest.pop(0))
        if opt.kind == "flag":
            if value is not None:
                raise ConfigError(f"{opt.names[-1]} takes no value")
            setattr(args, opt.attr, True)
            continue
        if value is None:
            if not rest:
                raise ConfigError(f"option {opt.names[-1]} needs a value")
            value = rest.pop(0)
        if opt.kind == "list":
            getattr(args, opt.attr).append(value)
        else:
            setattr(args, opt.attr, value)
    if (args.serve or args.api_key_file or args.allow_unauthenticated) and args.role != "head":
        raise ConfigError("--serve, --api-key-file and --allow-unauthenticated are for the API "
                          "server on the head; pass them with --head")
    _validate(args)
    return args


def _split(token: str) -> tuple[Option, str | None]:
    """'--opt=value', '-eK=V', '-e=K=V' (docker's shorthand forms) or a bare option."""
    if token in _BY_NAME:
        return _BY_NAME[token], None
    if token.startswith("--") and token.split("=", 1)[0] in _BY_NAME:
        key, value = token.split("=", 1)
        return _BY_NAME[key], value
    if len(token) > 2 and token[0] == "-" and token[1] != "-" and token[:2] in _BY_NAME:
        return _BY_NAME[token[:2]], token[2:].removeprefix("=")
    raise ConfigError(f"unsupported option {token!r}; supported docker options: "
                      f"{_names(True)}; onenode options: {_names(False)}")


def _names(docker: bool) -> str:
    return ", ".join("/".join(o.names) for o in OPTIONS if o.docker == docker)


def _validate(args: RunClusterArgs) -> None:
    name_ok = _HOSTNAME.fullmatch(args.head_ip) and not args.head_ip.replace(".", "").isdigit()
    if not is_ip(args.head_ip) and not name_ok:
        raise ConfigError(f"HEAD_IP {args.head_ip!r} is not an IP address or host name; pass the "
                          f"head's address on the cluster network, e.g. 10.0.0.1")
    if args.ip is not None and not is_ip(args.ip):
        raise ConfigError(f"--ip {args.ip!r} is not an IP address; pass e.g. 172.30.1.11")
    for flag, value, kind in (("--ready-timeout", args.ready_timeout, float),
                              ("--num-cpus", args.num_cpus, int),
                              ("--partition-grace", args.partition_grace, float)):
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
