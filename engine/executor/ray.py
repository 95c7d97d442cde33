"""ray: one Ray actor per rank in a placement group pinned to the planned nodes.

Nodes are chosen by engine/parallel/placement.py (TP groups within a node, PP across nodes, the
driver's node first). Missing resources end in a bounded wait and a message listing what each node
has, never Ray's bare "No available node types can fulfill resource request".
"""

import os

from engine.executor.base import Executor, RpcFuture
from engine.executor.ray_env import forwarded_env, ip_mismatches
from engine.executor.ray_inventory import (
    connect,
    device_kind,
    release,
    stop_local,
    wait_for_placement,
)
from onenode.errors import ClusterError, EngineDeadError, ResourceError

WAIT_S = float(os.environ.get("ONENODE_RAY_WAIT_S", "30"))
# Pessimistic device speeds for the step timeout: a step slower than this is a hung rank.
_FLOOR_FLOPS = {"CPU": 1e10, "GPU": 1e12}


def step_timeout_s(num_params: int, num_tokens: int, kind: str) -> float:
    """How long a step may take before it counts as a hung rank (the engine then recovers or
    fails): 60 s plus the step's FLOPs (2 x params x tokens) at a pessimistic device speed.
    ONENODE_STEP_TIMEOUT_S overrides it."""
    override = os.environ.get("ONENODE_STEP_TIMEOUT_S")
    if override:
        return float(override)
    return 60.0 + 2.0 * num_params * max(1, num_tokens) / _FLOOR_FLOPS[kind]


def wait_for_devices(config, timeout_s: float) -> None:
    """Recovery: block (bounded) until the Ray cluster again has the devices TP x PP needs."""
    connect()
    wait_for_placement(config.tensor_parallel_size, config.pipeline_parallel_size,
                       device_kind(config.device), timeout_s)


class RayWorkerWrapper:
    """Actor body: builds the Worker once the master address is known."""

    def __init__(self):
        self.worker = None

    def node_info(self) -> dict:
        import ray

        from onenode.net import free_port

        info = {"ray_ip": ray.util.get_node_ip_address(),
                "vllm_host_ip": os.environ.get("VLLM_HOST_IP"), "pid": os.getpid(),
                "hostname": os.uname().nodename}
        info["free_port"] = free_port()
        return info

    def init_worker(self, kwargs: dict) -> None:
        from engine.worker.worker import Worker

        self.worker = Worker(**kwargs)

    def execute_method(self, method: str, *args, **kwargs):
        return getattr(self.worker, method)(*args, **kwargs)


class _RayFuture(RpcFuture):
    def __init__(self, executor: "RayExecutor", refs: list, timeout_s: float | None = None):
        self.executor, self.refs, self.timeout_s = executor, refs, timeout_s

    def result(self):
        import ray

        try:
            return ray.get(self.refs, timeout=self.timeout_s)
        except ray.exceptions.GetTimeoutError:
            # A hung rank (frozen node, stuck collective) must not hang the server forever.
            self.executor.dead = (f"a step did not return within {self.timeout_s:.0f}s (a rank "
                                  f"hangs; set ONENODE_STEP_TIMEOUT_S if steps are this slow)")
            raise EngineDeadError(self.executor.dead) from None
        except (ray.exceptions.RayActorError, ray.exceptions.ActorDiedError) as exc:
            self.executor.dead = (f"a ray worker died ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0][:200]}); a node may be down — check "
                                  f"`ray status`")
            raise EngineDeadError(self.executor.dead) from None
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if getattr(exc, "cause", None) else exc
            raise cause from None


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, config, partition, source=None):
        super().__init__(config, partition)
        self.dead: str | None = None
        self.actors, self.pg = [], None
        self.num_params = source.model_config.num_params if source is not None else 10**9
        self.kind = "CPU"
        ray = connect()
        try:
            self._create_actors(ray)
            self._init_workers(ray)
            self.start_workers(source)
        except BaseException:
            self.shutdown()
            raise

    def _create_actors(self, ray) -> None:
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        cfg = self.config
        kind = self.kind = device_kind(cfg.device)
        ips = wait_for_placement(cfg.tensor_parallel_size, cfg.pipeline_parallel_size, kind,
                                 WAIT_S, cfg.data_parallel_rank)
        bundles = [{kind: 1.0, f"node:{ip}": 0.001} for ip in ips]
        self.pg = placement_group(bundles, strategy="PACK")
        ready, _ = ray.wait([self.pg.ready()], timeout=WAIT_S)
        if not ready:
            raise ResourceError(f"Ray could not reserve {len(bundles)} {kind} bundles on "
                                f"{sorted(set(ips))} within {WAIT_S:.0f}s; check `ray status` "
                                f"(another job may hold them) or raise ONENODE_RAY_WAIT_S")
        env = {"env_vars": forwarded_env(dict(os.environ))}
        remote = ray.remote(RayWorkerWrapper)
        for i in range(len(bundles)):
            strategy = PlacementGroupSchedulingStrategy(self.pg, placement_group_bundle_index=i)
            opts = {"num_gpus": 1, "num_cpus": 0} if kind == "GPU" else {"num_cpus": 1}
            self.actors.append(remote.options(scheduling_strategy=strategy, runtime_env=env,
                                              **opts).remote())

    def _init_workers(self, ray) -> None:
        infos = ray.get([a.node_info.remote() for a in self.actors], timeout=120)
        for rank, info in enumerate(infos):
            info["rank"] = rank
        bad = ip_mismatches(infos)
        if bad:
            raise ClusterError(bad[0])
        self.node_infos = infos
        master_ip, port = infos[0]["ray_ip"], infos[0]["free_port"]
        gpu = device_kind(self.config.device) == "GPU"
        calls = []
        for rank, actor in enumerate(self.actors):
            kwargs = dict(config=self.config, rank=rank, partition=self.partition,
                          master_addr=master_ip, master_port=port, local_rank=0,
                          num_threads=None if gpu else 1)
            calls.append(actor.init_worker.remote(kwargs))
        ray.get(calls)

    def collective_rpc_async(self, method, args=(), kwargs=None):
        if self.dead:
            raise EngineDeadError(self.dead)
        kw = kwargs or {}
        refs = [a.execute_method.remote(method, *args, **kw) for a in self.actors]
        # Only steps are bounded: loading weights legitimately takes minutes.
        timeout = None
        if method == "execute_model":
            timeout = step_timeout_s(self.num_params, args[0].num_tokens, self.kind)
        return _RayFuture(self, refs, timeout)

    def check_health(self) -> None:
        """Cheap enough for /health: Ray's view of the nodes that host our ranks (a ping would
        queue behind an in-flight step)."""
        if self.dead:
            raise EngineDeadError(self.dead)
        import ray

        ours = {info["ray_ip"] for info in getattr(self, "node_infos", [])}
        gone = sorted(n["NodeManagerAddress"] for n in ray.nodes()
                      if not n["Alive"] and n["NodeManagerAddress"] in ours
                      and not any(m["Alive"] and m["NodeManagerAddress"] == n["NodeManagerAddress"]
                                  for m in ray.nodes()))
        if gone:
            self.dead = (f"Ray node(s) {', '.join(gone)} hosting engine workers died; a "
                         f"crashed node restarts by itself, a stopped one needs `docker start`")
            raise EngineDeadError(self.dead)

    def interrupt(self, reason: str) -> bool:
        """Ray kills the actors (the raylet SIGKILLs a stopped one); the waiting `ray.get`
        then raises ActorDiedError."""
        import ray

        self.dead = reason
        for actor in list(self.actors):
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone: nothing left to end
                pass
        return True

    def shutdown(self) -> None:
        release(self.actors, self.pg)
        self.actors, self.pg = [], None
        stop_local()  # only a Ray instance this process started itself
