"""Data-parallel advice (pure): how many whole replicas of the chosen layout the cluster holds,
and what each way of using the spare devices predicts.

Once the model fits on fewer devices than the cluster has, more devices buy users, not room:
N independent replicas behind one router each step on their own (about N x the throughput of one
replica, and a node's death costs one replica, whose requests resume on the others), while
stretching one replica over every device (more PP stages) adds KV room but still runs one step
stream, and a node's death stops it all.
"""

from dataclasses import dataclass

from engine.planner.strategy import ClusterShape, Layout


@dataclass(frozen=True, slots=True)
class LayoutOption:
    """One way to use the cluster: `data_parallel_size` replicas of `layout`."""
    data_parallel_size: int
    layout: Layout
    max_concurrency: float  # max_model_len requests at once, all replicas together

    @property
    def devices(self) -> int:
        return self.data_parallel_size * self.layout.world_size

    def describe(self) -> str:
        lay = self.layout
        shape = f"TP={lay.tp} x PP={lay.pp}"
        if self.data_parallel_size > 1:
            return (f"DP={self.data_parallel_size} replicas of {shape} ({self.devices} GPUs): "
                    f"{self.max_concurrency:.2f}x concurrency, {self.data_parallel_size} "
                    f"independent step streams; a node's death costs one replica")
        return (f"one replica, {shape} ({self.devices} GPUs): {self.max_concurrency:.2f}x "
                f"concurrency, one step stream; a node's death stops every request")


def replicas_that_fit(layout: Layout, cluster: ClusterShape) -> int:
    """Whole replicas of `layout` the cluster holds: a TP group never straddles nodes, and a
    layout spanning nodes takes whole nodes."""
    g = cluster.gpus_per_node
    if layout.world_size <= g:
        return (g // layout.world_size) * cluster.nodes
    return cluster.nodes // layout.nodes


def dp_options(replica: LayoutOption, whole: LayoutOption | None) -> list[str]:
    """The lines `onenode plan` prints when DP is advised: the DP layout, then one replica over
    all the devices (when the model has the layers for it), for comparison."""
    lines = [f"advised: {replica.describe()}"]
    if whole is not None and whole.layout != replica.layout:
        lines.append(f"instead: {whole.describe()}")
    return lines
