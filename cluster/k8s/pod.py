"""Pod pieces for the manifests, from the same ContainerSpec run_cluster starts (pure).

`node_spec` calls cluster.spec.build_spec, so a Kubernetes node gets what a Docker node gets: the
env (Ray health timeouts, token auth), the HF cache at /root/.cache/huggingface, the shm size, the
IB device and capabilities, the `ray start` flags. Only the sources differ: host paths become a
PersistentVolumeClaim (the model cache) and a Secret (the Ray token), and each pod's own IP comes
from the downward API as VLLM_HOST_IP, which Kubernetes substitutes into `$(VLLM_HOST_IP)` in
commands (the #7815 fix: Ray's node IP and vLLM's host IP are one value).
"""

import dataclasses
import shlex

from cluster.args import RunClusterArgs
from cluster.k8s.layout import K8sLayout
from cluster.spec import TOKEN_MOUNT, ContainerSpec, build_spec, ray_command
from onenode.paths import CONTAINER_HF_HOME

GPU_RESOURCE = "nvidia.com/gpu"
POD_IP = "$(VLLM_HOST_IP)"
TOKEN_KEY, API_KEY_KEY, HF_TOKEN_KEY = "token", "api-key", "token"
HF_VOLUME, TOKEN_VOLUME, SHM_VOLUME, IB_VOLUME = "hf-cache", "ray-token", "dshm", "infiniband"
# Ray nodes join as pods get scheduled; the engine waits this long for the GPUs it needs.
RAY_WAIT_S = "900"


def node_spec(layout: K8sLayout, role: str, head_address: str,
              num_cpus: str | None = None) -> ContainerSpec:
    """build_spec for one pod; the host paths are placeholders that `volumes` maps."""
    args = RunClusterArgs(image=layout.image, head_ip=head_address, role=role,
                          hf_home=f"pvc:{layout.hf_cache_pvc}", shm_size=layout.shm_size,
                          cluster_name=layout.name, num_cpus=num_cpus)
    if layout.ib:
        args.devices, args.cap_add = ["/dev/infiniband"], ["IPC_LOCK"]
        args.ulimits = ["memlock=-1"]  # a container runtime setting in Kubernetes: see the docs
    spec = build_spec(args, dict(layout.env), node_ip=POD_IP,
                      token_file=f"secret:{layout.ray_token_secret}",
                      gpus=str(layout.gpus_per_node))
    # Kubernetes restarts pods itself: `ray start` runs bare, not under the Docker supervisor.
    return dataclasses.replace(spec, command=ray_command(args, POD_IP))


def env(spec: ContainerSpec, layout: K8sLayout, serving: bool = False) -> list[dict]:
    """The spec's env, the pod IP first (later entries and commands refer to it), secrets by
    reference only."""
    out = [{"name": "VLLM_HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    out += [{"name": k, "value": v} for k, v in spec.env]
    if layout.hf_token_secret:
        out.append(_secret_env("HF_TOKEN", layout.hf_token_secret, HF_TOKEN_KEY))
    if serving:
        out.append(_secret_env("ONENODE_API_KEY", layout.api_key_secret, API_KEY_KEY))
        out.append({"name": "ONENODE_RAY_WAIT_S", "value": RAY_WAIT_S})
    return out


def _secret_env(name: str, secret: str, key: str) -> dict:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def volumes(spec: ContainerSpec, layout: K8sLayout) -> list[dict]:
    out = [{"name": HF_VOLUME, "persistentVolumeClaim": {"claimName": layout.hf_cache_pvc}},
           {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory",
                                             "sizeLimit": f"{spec.shm_size >> 20}Mi"}}]
    if any(m.target == TOKEN_MOUNT for m in spec.mounts):
        out.append({"name": TOKEN_VOLUME, "secret": {"secretName": layout.ray_token_secret,
                                                     "defaultMode": 0o400}})
    if spec.devices:
        out.append({"name": IB_VOLUME, "hostPath": {"path": "/dev/infiniband"}})
    return out


def volume_mounts(spec: ContainerSpec) -> list[dict]:
    out = [{"name": SHM_VOLUME, "mountPath": "/dev/shm"}]
    for m in spec.mounts:
        if m.target == CONTAINER_HF_HOME:
            out.append({"name": HF_VOLUME, "mountPath": m.target})
        elif m.target == TOKEN_MOUNT:  # a Secret volume is a directory: mount the one key
            out.append({"name": TOKEN_VOLUME, "mountPath": m.target, "subPath": TOKEN_KEY,
                        "readOnly": True})
    if spec.devices:
        out.append({"name": IB_VOLUME, "mountPath": "/dev/infiniband"})
    return out


def container(name: str, spec: ContainerSpec, layout: K8sLayout, command: list[str] | None,
              gpus: int, serving: bool = False) -> dict:
    out = {"name": name, "image": spec.image, "env": env(spec, layout, serving),
           "volumeMounts": volume_mounts(spec)}
    if command:
        out["command"] = command
    limits = {GPU_RESOURCE: gpus} if gpus else {}
    if layout.rdma_resource and gpus:
        limits[layout.rdma_resource] = 1
    if limits:
        out["resources"] = {"limits": limits, "requests": dict(limits)}
    security = {}
    if spec.cap_add:
        security["capabilities"] = {"add": list(spec.cap_add)}
    if spec.privileged:
        security["privileged"] = True
    if security:
        out["securityContext"] = security
    if serving:
        out["ports"] = [{"name": "http", "containerPort": layout.port}]
        out.update(probes(layout.port))
    return out


def probes(port: int) -> dict:
    """Three questions, three probes, none needing the API key. Startup: has the model loaded
    (/health, up to 30 min)? Readiness: is it making progress now (/health: 503 while stuck or
    rebuilding, so the Service stops sending traffic)? Liveness: has it given up (/live: 503 only
    once the engine's own recovery budget is spent)? Liveness on /health would kill the pod in
    the middle of the engine's recovery."""
    def get(path: str, period: int, failures: int) -> dict:  # a new dict each: no YAML aliases
        return {"httpGet": {"path": path, "port": port}, "periodSeconds": period,
                "failureThreshold": failures}

    return {"startupProbe": get("/health", 10, 180), "readinessProbe": get("/health", 5, 3),
            "livenessProbe": get("/live", 10, 3)}


def serve_command(layout: K8sLayout) -> list[str]:
    return ["onenode", "serve", layout.model, "--host", "0.0.0.0", "--port", str(layout.port),
            "--tensor-parallel-size", str(layout.tp),
            "--pipeline-parallel-size", str(layout.pp),
            "--distributed-executor-backend", "ray", *layout.serve_args]


def retry_ray_start(ray_command: tuple[str, ...], attempts: int = 60, pause_s: int = 10
                    ) -> list[str]:
    """A worker pod may start before its head answers: `ray start` is retried (10 minutes by
    default, then the pod fails and Kubernetes restarts it) instead of exiting at once, which
    under LeaderWorkerSet recreates the whole group."""
    start = shlex.join(ray_command)
    return ["bash", "-c", f"for i in $(seq {attempts}); do {start} && exit 0; echo \"ray start "
            f"failed (attempt $i/{attempts}; the head may not be up yet); retrying in "
            f"{pause_s}s\"; sleep {pause_s}; done; exit 1"]


def then_serve(ray_command: tuple[str, ...], layout: K8sLayout) -> list[str]:
    """`ray start` returning once the node is up (no --block), then the API in the foreground:
    the container lives as long as the server does."""
    start = [a for a in ray_command if a != "--block"]
    return ["bash", "-c", f"{shlex.join(start)} && exec {shlex.join(serve_command(layout))}"]


def meta(layout: K8sLayout, name: str | None = None) -> dict:
    out = {"name": name or layout.name,
           "labels": {"app.kubernetes.io/name": "onenode",
                      "app.kubernetes.io/instance": layout.name}}
    if layout.namespace:
        out["namespace"] = layout.namespace
    return out


def template(layout: K8sLayout, role: str, c: dict, spec: ContainerSpec) -> dict:
    """A pod template: one container, its volumes, labels the Services select on."""
    return {"metadata": {"labels": {"app.kubernetes.io/name": "onenode",
                                    "app.kubernetes.io/instance": layout.name, "role": role}},
            "spec": {"containers": [c], "volumes": volumes(spec, layout)}}


def api_service(layout: K8sLayout, selector: dict) -> dict:
    """The OpenAI API inside the cluster (ClusterIP): exposing it beyond is a deliberate step
    (Ingress, LoadBalancer), and the key from the Secret guards it either way."""
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta(layout, f"{layout.name}-api"),
            "spec": {"type": "ClusterIP", "selector": selector,
                     "ports": [{"name": "http", "port": layout.port, "targetPort": "http",
                                "protocol": "TCP"}]}}
