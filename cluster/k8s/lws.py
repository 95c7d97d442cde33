"""`onenode k8s render --kind lws`: a LeaderWorkerSet (the layout vLLM's docs use for multi-node
serving) plus a Service for the API (pure).

One group of N pods: the leader starts the Ray head and then `onenode serve` in the foreground
(probes on /health); the N-1 workers join the leader's address, which LWS puts in
LWS_LEADER_ADDRESS. A failing pod recreates the whole group, since Ray ranks cannot rejoin a
running engine.
"""

from cluster.k8s import pod
from cluster.k8s.layout import K8sLayout

API_VERSION = "leaderworkerset.x-k8s.io/v1"
LEADER_ADDRESS = "$(LWS_LEADER_ADDRESS)"


def render(layout: K8sLayout) -> list[dict]:
    leader = {"leaderworkerset.sigs.k8s.io/name": layout.name, "role": "leader"}
    return [leader_worker_set(layout), pod.api_service(layout, leader)]


def leader_worker_set(layout: K8sLayout) -> dict:
    leader = pod.node_spec(layout, "head", LEADER_ADDRESS)
    worker = pod.node_spec(layout, "worker", LEADER_ADDRESS)
    g = layout.gpus_per_node
    leader_c = pod.container("onenode-leader", leader, layout,
                             pod.then_serve(leader.command, layout), g, serving=True)
    worker_c = pod.container("onenode-worker", worker, layout,
                             pod.retry_ray_start(worker.command), g)
    return {
        "apiVersion": API_VERSION, "kind": "LeaderWorkerSet", "metadata": pod.meta(layout),
        # LeaderCreated, not LeaderReady: the leader is ready only once serving, which needs
        # the workers
        "spec": {"replicas": 1, "startupPolicy": "LeaderCreated",
                 "leaderWorkerTemplate": {
                     "size": layout.nodes, "restartPolicy": "RecreateGroupOnPodRestart",
                     "leaderTemplate": pod.template(layout, "leader", leader_c, leader),
                     "workerTemplate": pod.template(layout, "worker", worker_c, worker)}}}

