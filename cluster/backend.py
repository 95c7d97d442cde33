"""The one container seam: every Docker call goes through here (docker-py, structured arguments,
never a shell string)."""

from pathlib import Path

from cluster.progress import console
from cluster.spec import ContainerSpec
from onenode.errors import ClusterError


def client():
    import docker

    try:
        c = docker.from_env(timeout=120)
        c.ping()
        return c
    except Exception as exc:  # noqa: BLE001 - any failure means no usable daemon
        raise ClusterError(f"the Docker daemon is not reachable ({type(exc).__name__}); start it "
                           f"with scripts/ensure_docker.sh (or `systemctl start docker`)") from None


def image_exists(c, tag: str) -> bool:
    import docker

    try:
        c.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def tag_image(c, source: str, target: str) -> None:
    repo, _, tag = target.partition(":")
    c.images.get(source).tag(repo, tag or "latest")


def build_image(c, context: str, tag: str, buildargs: dict | None = None,
                labels: dict | None = None) -> None:
    """docker build with a progress bar over the Dockerfile's steps."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[cyan]docker build"), BarColumn(), TextColumn("{task.description}"),
                  TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("", total=None)
        for chunk in c.api.build(path=context, tag=tag, rm=True, decode=True, forcerm=True,
                                  buildargs=buildargs, labels=labels):
            if "error" in chunk:
                raise ClusterError(f"docker build failed: {chunk['error'].strip()[:300]}")
            line = chunk.get("stream", "").strip()
            if line.startswith("Step "):
                done, total = line.split()[1].split("/")
                bar.update(task, completed=int(done) - 1, total=int(total),
                           description=line[:70])


def run_kwargs(spec: ContainerSpec) -> dict:
    """The docker-py `containers.run(**kwargs)` for a spec: what `run_cluster --dry-run` prints
    and what `start` passes (no daemon needed to build it)."""
    from docker.types import DeviceRequest, Mount, Ulimit

    kw = {"image": spec.image, "command": list(spec.command), "name": spec.name,
          "environment": spec.env_dict(), "detach": True, "labels": dict(spec.labels),
          "mounts": [Mount(m.target, m.source, type="bind", read_only=m.read_only)
                     for m in spec.mounts],
          "cap_add": list(spec.cap_add) or None, "privileged": spec.privileged,
          "shm_size": spec.shm_size or None, "devices": list(spec.devices) or None,
          "ulimits": [Ulimit(name=n, soft=s, hard=h) for n, s, h in spec.ulimits] or None,
          "security_opt": list(spec.security_opt) or None,
          "extra_hosts": dict(spec.extra_hosts) or None,
          "restart_policy": {"Name": spec.restart[0], "MaximumRetryCount": spec.restart[1]},
          "runtime": spec.runtime, "ipc_mode": spec.ipc_mode, "pid_mode": spec.pid_mode,
          "hostname": spec.hostname, "mem_limit": spec.mem_limit, "nano_cpus": spec.nano_cpus,
          "cpuset_cpus": spec.cpuset_cpus, "user": spec.user, "working_dir": spec.working_dir}
    kw = {k: v for k, v in kw.items() if v is not None}
    if spec.gpus:
        kw["device_requests"] = [DeviceRequest(capabilities=[["gpu"]], **_gpu_request(spec.gpus))]
    if spec.network == "host":  # Docker discards published ports on the host network
        kw["network_mode"] = "host"
        return kw
    kw["network"] = spec.network
    if spec.ports:
        kw["ports"] = _port_bindings(spec.ports)
    if spec.ip:
        family = "IPv6Address" if ":" in spec.ip else "IPv4Address"
        kw["networking_config"] = {spec.network: {"IPAMConfig": {family: spec.ip}}}
    return kw


def _gpu_request(gpus: str) -> dict:
    """docker --gpus: all | N | device=0,1 | 0,1."""
    if gpus == "all":
        return {"count": -1}
    ids = gpus.removeprefix("device=").split(",")
    if len(ids) == 1 and ids[0].isdigit() and not gpus.startswith("device="):
        return {"count": int(ids[0])}
    return {"device_ids": ids}


def _port_bindings(ports) -> dict:
    out: dict[str, list] = {}
    for cport, host_ip, host_port in ports:
        out.setdefault(cport, []).append((host_ip, host_port))
    return {k: v[0] if len(v) == 1 else v for k, v in out.items()}


def start(c, spec: ContainerSpec):
    """Create and start the container, pinned to its IP on a project network when given. A
    daemon refusal (an option this host does not allow) is one line, and nothing is left over."""
    import docker

    try:
        return c.containers.run(**run_kwargs(spec))
    except docker.errors.APIError as exc:
        remove(c, spec.name, timeout=1)  # created but not started
        reason = " ".join(str(exc.explanation or exc).split())[-300:]
        raise ClusterError(f"Docker refused to start {spec.name}: {reason}; check the docker "
                           f"options (`run_cluster ... --dry-run` prints what is sent)") from None


def get(c, name: str):
    import docker

    try:
        return c.containers.get(name)
    except docker.errors.NotFound:
        return None


def remove(c, name: str, timeout: int = 5) -> None:
    container = get(c, name)
    if container is not None:
        try:
            container.stop(timeout=timeout)
        except Exception:  # noqa: BLE001 - already stopped or gone
            pass
        container.remove(force=True)


def exec_in(c, name: str, cmd: list[str], env: dict | None = None) -> tuple[int, str]:
    container = get(c, name)
    if container is None:
        raise ClusterError(f"container {name} does not exist; start the cluster first")
    res = container.exec_run(cmd, environment=env, demux=False)
    return res.exit_code, (res.output or b"").decode(errors="replace")


def list_cluster(c, cluster: str):
    return c.containers.list(all=True, filters={"label": f"onenode.cluster={cluster}"})


def ensure_network(c, name: str, subnet: str, gateway: str):
    import docker

    try:
        return c.networks.get(name)
    except docker.errors.NotFound:
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet,
                                                                           gateway=gateway)])
        return c.networks.create(name, driver="bridge", ipam=ipam,
                                 labels={"onenode.network": name})


def remove_network(c, name: str) -> None:
    import docker

    try:
        c.networks.get(name).remove()
    except docker.errors.NotFound:
        pass


def used_subnets(c) -> set[str]:
    subnets = set()
    for net in c.networks.list():
        for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
            if cfg.get("Subnet"):
                subnets.add(cfg["Subnet"])
    return subnets


def container_ip(container, network: str) -> str | None:
    nets = container.attrs.get("NetworkSettings", {}).get("Networks", {})
    return (nets.get(network) or {}).get("IPAddress") or None


def get_network(c, name: str):
    import docker

    try:
        return c.networks.get(name)
    except docker.errors.NotFound:
        return None


def network_subnet(net) -> str | None:
    configs = (net.attrs.get("IPAM") or {}).get("Config") or []
    return configs[0].get("Subnet") if configs else None


def logs_of_file(c, name: str, path: str) -> str:
    code, out = exec_in(c, name, ["tail", "-n", "50", path])
    return out if code == 0 else ""


def import_rootfs(c, tarball: Path, tag: str) -> None:
    """`docker import TARBALL TAG`: a filesystem tarball becomes an image (the offline base)."""
    import docker

    repository, _, version = tag.partition(":")
    try:
        c.api.import_image_from_file(str(tarball), repository=repository, tag=version or "latest")
    except docker.errors.APIError as exc:
        raise ClusterError(f"docker import of {tarball} failed ({exc.explanation}); check the "
                           f"disk space of the Docker data root") from None


def exec_stream(c, name: str, cmd: list[str]):
    """`docker exec NAME CMD...` whose output arrives as it is written (bytes chunks)."""
    container = get(c, name)
    if container is None:
        raise ClusterError(f"container {name} does not exist; start the cluster first")
    return container.exec_run(cmd, stream=True).output


def logs_tail(container, tail: int = 400) -> str:
    return container.logs(tail=tail).decode(errors="replace")


def follow_logs(container, since: int | None = None):
    """`docker logs -f [--since]`: bytes chunks until the container stops."""
    return container.logs(stream=True, follow=True, since=since)


def restarting(container, settle_s: float = 2.0) -> bool:
    """True when a container that just stopped is being brought back by its restart policy
    (a crash); False when it stays down (`docker stop`, policy `no`)."""
    import time

    deadline = time.monotonic() + settle_s
    while True:
        container.reload()
        state = container.attrs["State"]
        if state.get("Restarting") or state.get("Running"):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def main_pid(container) -> int:
    """The container's main process as the host sees it (`docker inspect -f {{.State.Pid}}`)."""
    container.reload()
    return int(container.attrs["State"]["Pid"])


def restart_count(container) -> int:
    return int(container.attrs.get("RestartCount", 0))


def host_network(container) -> bool:
    return container.attrs.get("HostConfig", {}).get("NetworkMode") == "host"


def published_ips(container, port: int) -> list[str]:
    """Host addresses container port `port`/tcp is published on ('' = every interface)."""
    bindings = (container.attrs.get("HostConfig", {}).get("PortBindings") or {}).get(
        f"{port}/tcp") or []
    return [b.get("HostIp", "") for b in bindings]


def bind_mounts(container) -> list[tuple[str, str]]:
    """(host source, container target) of each bind mount."""
    return [(m["Source"], m["Destination"]) for m in container.attrs.get("Mounts") or []
            if m.get("Type") == "bind"]


def container_env(container) -> dict[str, str]:
    return dict(e.split("=", 1) for e in container.attrs["Config"].get("Env") or [] if "=" in e)
