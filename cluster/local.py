"""A simulated multi-host cluster on this machine: a project-made bridge network with an explicit
subnet, one container per "host" at a fixed IP with VLLM_HOST_IP set, built through the same
run_cluster spec code a real multi-host deployment uses."""

import hashlib
import ipaddress
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cluster import backend
from cluster.args import RunClusterArgs
from cluster.auth import ensure_token
from cluster.node import start_node
from cluster.progress import step
from onenode import names
from onenode.errors import ClusterError
from onenode.paths import hf_home as default_hf_home

DEFAULT_NAME = "onenode"
HEAD_HOST = 10  # head at .10, workers at .11, .12, ...


@dataclass(frozen=True)
class ClusterInfo:
    name: str
    network: str
    subnet: str
    head_ip: str
    nodes: tuple[tuple[str, str], ...]  # (container name, ip), head first
    token_path: str | None
    api_port: int | None = None

    @property
    def head(self) -> str:
        return self.nodes[0][0]


def pick_subnet(name: str, used: set[str]) -> str:
    """A free 172.30.X.0/24, X derived from the cluster name so reruns reuse it."""
    start = int(hashlib.sha256(name.encode()).hexdigest(), 16) % 250
    for i in range(250):
        cand = ipaddress.ip_network(f"172.30.{(start + i) % 250 + 1}.0/24")
        if not any(cand.overlaps(ipaddress.ip_network(u)) for u in used if ":" not in u):
            return str(cand)
    raise ClusterError("no free 172.30.x.0/24 subnet for the cluster network; pass --subnet")


def node_ips(subnet: str, nodes: int) -> list[str]:
    net = ipaddress.ip_network(subnet)
    return [str(net.network_address + HEAD_HOST + i) for i in range(nodes)]


def node_args(role: str, image: str, head_ip: str, hf_home: Path, ip: str, name: str,
              env: dict, cpus: int, object_store: str, ray_auth: bool, token: str | None,
              replace: bool = False) -> RunClusterArgs:
    args = RunClusterArgs(image=image, head_ip=head_ip, role=role, hf_home=str(hf_home),
                          network=names.network(name), ip=ip, cluster_name=name, shm_size="1g",
                          num_cpus=str(cpus), object_store_memory=object_store,
                          no_ray_auth=not ray_auth, ray_token_file=token, replace=replace,
                          detach=True)
    args.env = [f"VLLM_HOST_IP={ip}"] + [f"{k}={v}" for k, v in env.items()]
    return args


def up(nodes: int = 3, name: str = DEFAULT_NAME, image: str = "onenode:latest",
       subnet: str | None = None, cpus_per_node: int = 2, object_store_memory: str = "512m",
       hf_home: Path | None = None, env: dict | None = None, ray_auth: bool = True,
       token_file: str | None = None, replace: bool = False,
       api_port: int | None = None, api_key_file: str | None = None) -> ClusterInfo:
    if nodes < 1:
        raise ClusterError("--nodes must be >= 1")
    c = backend.client()
    hf_home = Path(hf_home or default_hf_home())
    hf_home.mkdir(parents=True, exist_ok=True)
    net_name = names.network(name)
    existing = backend.get_network(c, net_name)
    subnet = subnet or (existing and backend.network_subnet(existing)) or \
        pick_subnet(name, backend.used_subnets(c))
    ips = node_ips(subnet, nodes)
    gateway = str(ipaddress.ip_network(subnet).network_address + 1)
    backend.ensure_network(c, net_name, subnet, gateway)
    step(f"network {net_name} ({subnet}); head {ips[0]}, workers {', '.join(ips[1:]) or '-'}")
    common = dict(image=image, head_ip=ips[0], hf_home=hf_home, name=name, env=env or {},
                  cpus=cpus_per_node, object_store=object_store_memory, ray_auth=ray_auth,
                  replace=replace)
    head_args = node_args("head", ip=ips[0], token=token_file, **common)
    head_args.api_port = api_port  # `onenode cluster serve` answers on 127.0.0.1:api_port
    head_args.api_key_file = api_key_file  # mounted read-only; `onenode serve` reads it
    start_node(head_args)
    token = str(ensure_token(token_file)) if ray_auth else None
    workers = [node_args("worker", ip=ip, token=token, **common) for ip in ips[1:]]
    with ThreadPoolExecutor(max_workers=max(1, len(workers))) as pool:
        list(pool.map(start_node, workers))
    containers = [names.head_container(name)] + [names.worker_container(name, ip) for ip in ips[1:]]
    return ClusterInfo(name, net_name, subnet, ips[0], tuple(zip(containers, ips)), token,
                       api_port)


def down(name: str = DEFAULT_NAME) -> int:
    """Remove every container of the cluster and its network; returns how many containers."""
    c = backend.client()
    containers = backend.list_cluster(c, name)
    for container in containers:
        backend.remove(c, container.name, timeout=2)
    backend.remove_network(c, names.network(name))
    return len(containers)
