"""`onenode k8s render --kind kuberay`: a RayCluster (KubeRay) of N GPU pods, a Deployment for
the serve step and a Service for the API (pure).

KubeRay starts Ray in every pod itself (from rayStartParams). The serve step is a one-replica
Deployment whose pod joins the cluster as a Ray node without CPUs or GPUs and runs `onenode serve`
as the driver; the ranks are Ray actors on the GPU pods. It carries the probes. A Deployment
never runs out of restarts (a Job stops after its backoffLimit and leaves the service down for
good). Not a RayJob: KubeRay submits a RayJob only once every pod of the cluster is ready, and a
probe on the API inside the cluster would then wait on itself.
"""

from cluster.k8s import pod
from cluster.k8s.layout import K8sLayout
from cluster.lock import lock_path, locked_versions

API_VERSION = "ray.io/v1"


def render(layout: K8sLayout) -> list[dict]:
    serving = {"app.kubernetes.io/instance": layout.name, "role": "serve"}
    return [ray_cluster(layout), serve_deployment(layout), pod.api_service(layout, serving)]


def head_address(layout: K8sLayout) -> str:
    return f"{layout.name}-head-svc"  # the head Service KubeRay creates for a RayCluster


def ray_version() -> str:
    """The Ray the image ships (KubeRay checks features against it): the lock's."""
    return locked_versions(lock_path("cpu").read_text())["ray"]


def ray_cluster(layout: K8sLayout) -> dict:
    g = layout.gpus_per_node
    head = pod.node_spec(layout, "head", head_address(layout))
    worker = pod.node_spec(layout, "worker", head_address(layout))
    workers = layout.nodes - 1
    return {
        "apiVersion": API_VERSION, "kind": "RayCluster", "metadata": pod.meta(layout),
        "spec": {
            "rayVersion": ray_version(), "enableInTreeAutoscaling": False,
            "headGroupSpec": {
                "serviceType": "ClusterIP",
                "rayStartParams": {"dashboard-host": "0.0.0.0", "num-gpus": str(g)},
                "template": pod.template(layout, "head", pod.container(
                    "ray-head", head, layout, None, g), head)},
            "workerGroupSpecs": [{
                "groupName": "gpu", "replicas": workers, "minReplicas": workers,
                "maxReplicas": workers, "rayStartParams": {"num-gpus": str(g)},
                "template": pod.template(layout, "worker", pod.container(
                    "ray-worker", worker, layout, None, g), worker)}]}}


def serve_deployment(layout: K8sLayout) -> dict:
    spec = pod.node_spec(layout, "worker", head_address(layout), num_cpus="0")
    ray_start = (*spec.command[:-1], "--num-gpus", "0", spec.command[-1])
    c = pod.container("onenode-serve", spec, layout, pod.then_serve(ray_start, layout), 0,
                      serving=True)
    template = pod.template(layout, "serve", c, spec)
    selector = {k: template["metadata"]["labels"][k]
                for k in ("app.kubernetes.io/instance", "role")}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": pod.meta(layout, f"{layout.name}-serve"),
            # Recreate: two servers (old and new) must never drive the same Ray cluster at once.
            "spec": {"replicas": 1, "strategy": {"type": "Recreate"},
                     "selector": {"matchLabels": selector}, "template": template}}

